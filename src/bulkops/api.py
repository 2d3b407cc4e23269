"""connect(): a Store for a database URL or an existing SQLAlchemy Engine."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .backends.base import Backend
from .errors import SchemaError
from .retry import RetryPolicy
from .store import Store

__all__ = ["connect"]

SCHEMES = ("sqlite",)


def connect(target: str | sa.Engine, *, retry: RetryPolicy | None = None, **options: Any) -> Store:
    """Open a Store.

    ``target`` is a URL (``sqlite:///shop.db``, ``sqlite://`` for memory) or a SQLAlchemy
    ``Engine``. ``retry`` is the default RetryPolicy of every call on this Store;
    other ``options`` go to ``sqlalchemy.create_engine``.
    """
    return Store(_backend(target, **options), retry=retry)


def _backend(target: str | sa.Engine, **options: Any) -> Backend:
    if isinstance(target, sa.Engine):
        return _backend_for_engine(target, owns_engine=False)
    if not isinstance(target, str):
        raise TypeError(
            f"connect() takes a URL or a SQLAlchemy Engine, not {type(target).__name__}"
        )
    scheme = target.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SchemaError(
            f"unsupported database URL {target!r}: bulkops supports {', '.join(SCHEMES)} URLs "
            "(for example sqlite:///path.db)"
        )
    return _backend_for_engine(sa.create_engine(target, **options), owns_engine=True)


def _backend_for_engine(engine: sa.Engine, *, owns_engine: bool) -> Backend:
    name = engine.dialect.name
    if name == "sqlite":
        from .backends.sqlite import SQLiteBackend

        return SQLiteBackend(engine, owns_engine=owns_engine)
    raise SchemaError(f"bulkops has no backend for SQLAlchemy dialect {name!r}")
