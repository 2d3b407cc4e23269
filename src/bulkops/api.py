"""connect(): a Store for a database URL or an existing SQLAlchemy Engine."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.mock import MockConnection

from .backends.base import Backend, StatementTracer
from .errors import SchemaError
from .events import EventCallback
from .retry import RetryPolicy
from .store import Store

__all__ = ["connect", "engine_for_url", "statement_tracer"]

SCHEMES = ("sqlite", "postgresql", "postgres", "dynamodb")


def connect(
    target: Any,
    *,
    retry: RetryPolicy | None = None,
    run_log: bool = False,
    label: str | None = None,
    on_event: EventCallback | None = None,
    **options: Any,
) -> Store:
    """Open a Store.

    ``target`` is a URL (``sqlite:///shop.db``, ``sqlite://`` for memory,
    ``postgresql://user@host:5432/db``,
    ``dynamodb://?region=eu-west-1[&endpoint_url=http://localhost:8000][&profile=p]``),
    a SQLAlchemy ``Engine`` (``sqlite`` or ``postgresql+psycopg``), or a boto3 DynamoDB
    client or resource. ``retry`` is the default RetryPolicy of every call on this
    Store; ``run_log=True`` records every verb call in the database's ``bulkops_runs``
    table (``label``: the default label of those rows); ``on_event`` receives the
    calls' events (``Store.subscribe``). Other ``options`` go to
    ``sqlalchemy.create_engine`` (or, for DynamoDB URLs, to ``boto3``'s ``client()``).
    """
    return Store(
        _backend(target, **options), retry=retry, run_log=run_log, label=label, on_event=on_event
    )


def _backend(target: Any, **options: Any) -> Backend:
    if isinstance(target, sa.Engine):
        return _backend_for_engine(target, owns_engine=False)
    if type(target).__module__.startswith(("boto3", "botocore")):
        from .backends.dynamodb import DynamoDBBackend, plain_client

        return DynamoDBBackend(plain_client(target))
    if not isinstance(target, str):
        raise TypeError(
            "connect() takes a URL, a SQLAlchemy Engine or a boto3 DynamoDB client, "
            f"not {type(target).__name__}"
        )
    if target.split(":", 1)[0].lower() == "dynamodb":
        from .backends.dynamodb import DynamoDBBackend, client_from_url

        return DynamoDBBackend(client_from_url(target, **options))
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
    if scheme == "dynamodb":
        raise SchemaError("DynamoDB has no SQLAlchemy Engine: connect() to it directly")
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


def statement_tracer(handle: object) -> StatementTracer:
    """The statement tracer for ``handle``: a Store's backend, or the tracer of the
    backend module whose driver ``handle`` belongs to (a SQLAlchemy Engine or
    Connection, a ``sqlite3`` or psycopg 3 connection, a boto3 DynamoDB client or
    resource)."""
    if isinstance(handle, Store):
        return handle.backend
    if isinstance(handle, sa.Engine | sa.Connection | MockConnection):
        dialect = handle.dialect
        name = dialect.name
        if name == "sqlite":
            from .backends.sqlite import SQLiteTracer

            return SQLiteTracer(handle)
        if name == "postgresql" and dialect.driver == "psycopg":
            from .backends.postgres import PostgresTracer

            return PostgresTracer(handle)
        raise ValueError(f"cannot count statements on {name!r} databases")
    module = type(handle).__module__
    if module == "sqlite3":
        from .backends.sqlite import SQLiteTracer

        return SQLiteTracer(handle)
    if module == "psycopg" or module.startswith("psycopg."):
        from .backends.postgres import PostgresTracer

        return PostgresTracer(handle)
    if module.startswith(("boto3", "botocore")):
        from .backends.dynamodb import DynamoDBTracer

        return DynamoDBTracer(handle)
    raise TypeError(
        "counting statements takes a bulkops Store, a SQLAlchemy Engine or Connection, a "
        "sqlite3 or psycopg connection or a boto3 DynamoDB client, not "
        f"{type(handle).__module__}.{type(handle).__name__}"
    )
