"""connect(): a Store for a database URL or an existing SQLAlchemy Engine."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .backends.base import Backend
from .errors import SchemaError
from .retry import RetryPolicy
from .store import Store

__all__ = ["connect", "engine_for_url"]

SCHEMES = ("sqlite", "postgresql", "postgres")


def connect(target: str | sa.Engine, *, retry: RetryPolicy | None = None, **options: Any) -> Store:
    """Open a Store.

    ``target`` is a URL (``sqlite:///shop.db``, ``sqlite://`` for memory,
    ``postgresql://user@host:5432/db``) or a SQLAlchemy ``Engine`` (``sqlite`` or
    ``postgresql+psycopg``). ``retry`` is the default RetryPolicy of every call on this Store;
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
    return _backend_for_engine(engine_for_url(target, **options), owns_engine=True)


def engine_for_url(url: str, **options: Any) -> sa.Engine:
    """The SQLAlchemy Engine bulkops opens for a ``sqlite://`` or ``postgresql://`` URL
    (``options`` go to ``sqlalchemy.create_engine``)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SchemaError(
            f"unsupported database URL {url!r}: bulkops supports {', '.join(SCHEMES)} URLs "
            "(for example sqlite:///path.db)"
        )
    if scheme in ("postgresql", "postgres"):
        # Our PostgreSQL backend speaks psycopg 3, whatever driver the URL names.
        rest = url.split("://", 1)[1] if "://" in url else ""
        url = f"postgresql+psycopg://{rest}"
        options.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **options)


def _backend_for_engine(engine: sa.Engine, *, owns_engine: bool) -> Backend:
    name = engine.dialect.name
    if name == "sqlite":
        from .backends.sqlite import SQLiteBackend

        return SQLiteBackend(engine, owns_engine=owns_engine)
    if name == "postgresql":
        if engine.dialect.driver != "psycopg":
            raise SchemaError(
                "bulkops needs the psycopg (3) driver for PostgreSQL, not "
                f"{engine.dialect.driver!r}: use a postgresql+psycopg:// URL"
            )
        from .backends.postgres import PostgresBackend

        return PostgresBackend(engine, owns_engine=owns_engine)
    raise SchemaError(f"bulkops has no backend for SQLAlchemy dialect {name!r}")
