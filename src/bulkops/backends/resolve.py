"""Which backend serves a target: a URL, a SQLAlchemy Engine or Connection, a
sqlite3 or psycopg 3 connection, a framework's connection (Django's, an ORM Session:
``bulkops.integrations``) or a boto3 client.

The one place that maps URL schemes, SQLAlchemy dialects and drivers to backend
modules; each backend module is imported only when its database is used.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.mock import MockConnection

from ..errors import SchemaError
from .base import Backend, CallerConnection, StatementTracer

__all__ = [
    "SCHEMES",
    "caller_connection",
    "counts_transaction_control",
    "engine_for_url",
    "open_backend",
    "sqlalchemy_caller",
    "statement_tracer",
]

SCHEMES = ("sqlite", "postgresql", "postgres", "dynamodb")


def open_backend(target: Any, **options: Any) -> Backend:
    """The backend for what ``bulkops.connect`` was given (see there)."""
    if isinstance(target, sa.Engine):
        return _backend_for_engine(target, owns_engine=False)
    caller = target if isinstance(target, CallerConnection) else caller_connection(target)
    if caller is not None:
        if options:
            raise TypeError(f"connect() takes no engine options with {caller.describe}")
        return _backend_for_caller(caller)
    if type(target).__module__.startswith(("boto3", "botocore")):
        from .dynamodb import DynamoDBBackend, plain_client

        return DynamoDBBackend(plain_client(target))
    if not isinstance(target, str):
        raise TypeError(
            "connect() takes a URL, a SQLAlchemy Engine, Connection or Session, a sqlite3 "
            "or psycopg 3 connection, a Django connection or a boto3 DynamoDB client, "
            f"not {type(target).__module__}.{type(target).__name__}"
        )
    if target.split(":", 1)[0].lower() == "dynamodb":
        from .dynamodb import DynamoDBBackend, client_from_url

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
        from .sqlite import SQLiteBackend

        return SQLiteBackend(engine, owns_engine=owns_engine)
    if name == "postgresql":
        if engine.dialect.driver != "psycopg":
            raise SchemaError(
                "bulkops needs the psycopg (3) driver for PostgreSQL, not "
                f"{engine.dialect.driver!r}: use a postgresql+psycopg:// URL"
            )
        from .postgres import PostgresBackend

        return PostgresBackend(engine, owns_engine=owns_engine)
    raise SchemaError(f"bulkops has no backend for SQLAlchemy dialect {name!r}")


def caller_connection(target: object) -> CallerConnection | None:
    """``target`` as a connection the caller holds (bulkops joins its transactions):
    a SQLAlchemy Connection, a sqlite3 or psycopg 3 connection; None for anything else
    (frameworks' connections are described by ``bulkops.integrations``, above)."""
    if isinstance(target, sa.Connection):
        return sqlalchemy_caller(target)
    module = type(target).__module__
    if module == "sqlite3":
        from .sqlite import sqlite3_caller

        return sqlite3_caller(target)
    if module == "psycopg" or module.startswith("psycopg."):
        from .postgres import psycopg_caller

        return psycopg_caller(target)
    return None


def sqlalchemy_caller(connection: sa.Connection, describe: str = "") -> CallerConnection:
    """A SQLAlchemy Connection as bulkops runs on it. SQLAlchemy begins a transaction
    at a Connection's first statement and the application commits it ("commit as you
    go"), so bulkops works in that transaction (begun for it where none is yet), unless
    the Connection is in AUTOCOMMIT."""
    options = connection.get_execution_options()
    autocommit = options.get("isolation_level") == "AUTOCOMMIT"

    def driver() -> Any:
        if not autocommit and not connection.in_transaction():
            connection.begin()
        return connection.connection.driver_connection

    return CallerConnection(
        vendor=connection.dialect.name,
        driver=driver,
        in_transaction=lambda: not autocommit,
        describe=describe or "the SQLAlchemy Connection",
    )


def _backend_for_caller(caller: CallerConnection) -> Backend:
    if caller.vendor == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(caller=caller)
    if caller.vendor == "postgresql":
        from .postgres import PostgresBackend

        return PostgresBackend(caller=caller)
    raise SchemaError(f"bulkops has no backend for {caller.vendor!r} ({caller.describe})")


def counts_transaction_control(handle: object) -> bool:
    """Whether SAVEPOINT, RELEASE and BEGIN count as queries where ``handle`` comes
    from (SQLAlchemy's cursor events on a Connection do count them), so that bulkops'
    counters count as it does (frameworks: ``bulkops.integrations``)."""
    return isinstance(handle, sa.Connection)


def statement_tracer(handle: object) -> StatementTracer:
    """The statement tracer for ``handle``: a backend itself, or the tracer of the
    backend module whose driver ``handle`` belongs to (a SQLAlchemy Engine or
    Connection, a ``sqlite3`` or psycopg 3 connection, a boto3 DynamoDB client or
    resource)."""
    if isinstance(handle, Backend):
        return handle
    if isinstance(handle, sa.Engine | sa.Connection | MockConnection):
        dialect = handle.dialect
        name = dialect.name
        if name == "sqlite":
            from .sqlite import SQLiteTracer

            return SQLiteTracer(handle)
        if name == "postgresql" and dialect.driver == "psycopg":
            from .postgres import PostgresTracer

            return PostgresTracer(handle)
        raise ValueError(f"cannot count statements on {name!r} databases")
    module = type(handle).__module__
    if module == "sqlite3":
        from .sqlite import SQLiteTracer

        return SQLiteTracer(handle)
    if module == "psycopg" or module.startswith("psycopg."):
        from .postgres import PostgresTracer

        return PostgresTracer(handle)
    if module.startswith(("boto3", "botocore")):
        from .dynamodb import DynamoDBTracer

        return DynamoDBTracer(handle)
    raise TypeError(
        "counting statements takes a bulkops Store, a SQLAlchemy Engine or Connection, a "
        "sqlite3 or psycopg connection or a boto3 DynamoDB client, not "
        f"{type(handle).__module__}.{type(handle).__name__}"
    )
