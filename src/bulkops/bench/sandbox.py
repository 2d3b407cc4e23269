"""Fresh, empty databases for bench runs, cleaned up afterwards.

Every run (one workload, one size, one implementation) gets its own: SQLite a new
database file (or a new in-memory database), PostgreSQL a new schema that the run's
connections find first on their ``search_path`` and that is dropped with everything
in it at the end, DynamoDB a table-name prefix of its own that the run's client puts
in front of every table name it sends, and whose tables are deleted at the end. So
workloads name their tables plainly on every backend, and the user's own tables are
never touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from ..api import connect
from ..backends.base import translate_errors
from ..backends.resolve import engine_for_url
from ..errors import BulkError, SchemaError
from ..store import Store
from .counting import StatementCounter

__all__ = [
    "DynamoDBSandbox",
    "PostgresSandbox",
    "SQLiteSandbox",
    "Sandbox",
    "Target",
    "open_sandbox",
]


@dataclass
class Target:
    """One fresh database for one run.

    ``plain`` is the database through its plain client, for naive code and checks (a
    SQLAlchemy Engine; on DynamoDB a boto3 low-level client); ``connect`` opens
    bulkops on the same database (the caller closes it); ``counter`` sees every
    statement or request either of them sends.
    """

    plain: Any
    connect: Callable[[], Store]
    counter: StatementCounter


@contextlib.contextmanager
def _sql_target(engine: sa.Engine) -> Iterator[Target]:
    counter = StatementCounter()
    with counter.attach(engine):
        yield Target(plain=engine, connect=partial(connect, engine), counter=counter)


class Sandbox(Protocol):
    backend: str  # the Capabilities.name of the databases it makes

    def target(self) -> contextlib.AbstractContextManager[Target]: ...

    def close(self) -> None: ...


def _engine(url: str | sa.URL, **options: object) -> sa.Engine:
    # No pre-ping: it would add a statement to every connection checkout.
    return engine_for_url(str(url) if isinstance(url, str) else url.render_as_string(False),
                          pool_pre_ping=False, **options)  # fmt: skip


class SQLiteSandbox:
    """A new SQLite database per run: files in a temporary directory (the default),
    files next to a given ``sqlite:///path.db`` (which itself is not touched), or
    in memory for ``sqlite://``."""

    backend = "sqlite"

    def __init__(self, url: str | None = None) -> None:
        self._numbers = itertools.count(1)
        self._tempdir: str | None = None
        self._memory = False
        if url is None:
            self._tempdir = tempfile.mkdtemp(prefix="bulkops-bench-")
            self._directory = Path(self._tempdir)
            self._stem = "run"
            return
        database = sa.make_url(url).database
        if not database or database == ":memory:":
            self._memory = True
            return
        path = Path(database)
        self._directory = path.parent
        self._stem = f"{path.stem}-bench"

    @contextlib.contextmanager
    def target(self) -> Iterator[Target]:
        path: Path | None = None
        if self._memory:
            url = "sqlite://"
        else:
            path = self._directory / f"{self._stem}-{next(self._numbers)}.db"
            for leftover in _sqlite_files(path):
                leftover.unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        engine = _engine(url)
        try:
            with _sql_target(engine) as target:
                yield target
        finally:
            engine.dispose()
            if path is not None:
                for leftover in _sqlite_files(path):
                    leftover.unlink(missing_ok=True)

    def close(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)


def _sqlite_files(path: Path) -> list[Path]:
    return [path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))]


class PostgresSandbox:
    """A new schema per run in the given database, first on the run's search_path and
    dropped (CASCADE) afterwards."""

    backend = "postgresql"

    def __init__(self, url: str) -> None:
        self._admin = _engine(url)
        self._url = self._admin.url
        try:
            with self._admin.connect():
                pass
        except sa.exc.OperationalError as error:
            self._admin.dispose()
            raise SchemaError(f"cannot connect to {self._url!r}: {error.orig}") from error
        self._numbers = itertools.count(1)

    @contextlib.contextmanager
    def target(self) -> Iterator[Target]:
        schema = f"bulkops_bench_{os.getpid()}_{next(self._numbers)}"
        quoted = self._admin.dialect.identifier_preparer.quote_identifier(schema)
        with self._admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {quoted}")
        engine = _engine(self._url, connect_args={"options": f"-c search_path={schema}"})
        try:
            with _sql_target(engine) as target:
                yield target
        finally:
            engine.dispose()
            with self._admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")

    def close(self) -> None:
        self._admin.dispose()


class DynamoDBSandbox:
    """New tables per run on a DynamoDB endpoint, deleted afterwards.

    DynamoDB has no schemas, so each run gets a namespace of its own the way a
    PostgreSQL run gets a schema first on its search_path: a fresh client that puts
    the run's prefix (``bulkops_bench_<random>_<n>_``) in front of every table name
    it sends and takes it off every table name it receives (``_TableNamespace``).
    Naive code and bulkops share that client, so both see ``items`` where the
    endpoint holds ``bulkops_bench_3f9a2c_1_items``, and the counter on it sees the
    requests of both. At the end every table whose name starts with the prefix is
    deleted (found by listing, so a table whose CreateTable answer was lost goes too;
    on AWS a deleted table is listed as DELETING for a while).
    """

    backend = "dynamodb"

    def __init__(self, url: str) -> None:
        from ..backends.dynamodb import DynamoDBBackend, client_from_url

        self._url = url
        self._client_from_url = client_from_url
        self._admin = client_from_url(url)
        self._classify = DynamoDBBackend(self._admin).classify_error
        try:
            with translate_errors(self._classify):
                self._admin.list_tables(Limit=1)
        except BulkError as error:
            self._admin.close()
            raise SchemaError(f"cannot reach DynamoDB at {url!r}: {error.message}") from error
        # Random, not the pid: runs on other machines may share the account.
        self._token = secrets.token_hex(3)
        self._numbers = itertools.count(1)

    @contextlib.contextmanager
    def target(self) -> Iterator[Target]:
        prefix = f"bulkops_bench_{self._token}_{next(self._numbers)}_"
        client = self._client_from_url(self._url)
        _TableNamespace(client, prefix)
        counter = StatementCounter()
        try:
            with counter.attach(client):
                yield Target(plain=client, connect=partial(connect, client), counter=counter)
        finally:
            client.close()
            self._drop_tables(prefix)

    def tables(self, prefix: str = "bulkops_bench_") -> list[str]:
        """The endpoint's tables whose names start with ``prefix``."""
        with translate_errors(self._classify):
            pages = self._admin.get_paginator("list_tables").paginate()
            return [n for page in pages for n in page["TableNames"] if n.startswith(prefix)]

    def _drop_tables(self, prefix: str) -> None:
        for name in self.tables(prefix):
            try:
                with translate_errors(self._classify):
                    self._admin.delete_table(TableName=name)
            except SchemaError:  # already gone (ResourceNotFoundException)
                pass

    def close(self) -> None:
        self._admin.close()


class _TableNamespace:
    """Makes a DynamoDB client's table names its own: ``prefix`` goes in front of
    every table name a request carries and comes off every one a response carries,
    through botocore's events (on the client's requests only, whoever sends them).

    Renamed: ``TableName`` of any request, the tables of BatchGetItem and
    BatchWriteItem (``RequestItems``, ``Responses``, ``Unprocessed*``,
    ``ItemCollectionMetrics``), TransactGetItems and TransactWriteItems
    (``TransactItems``), ``Table`` / ``TableDescription`` and ``ConsumedCapacity``.
    Refused with a clear error, because no rename can reach them: PartiQL (the table
    is named inside the statement's text) and ListTables (it lists the whole account).
    Error messages from the endpoint keep the full, prefixed name.
    """

    REFUSED = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
                         "ListTables"})  # fmt: skip
    BATCHES = frozenset({"BatchGetItem", "BatchWriteItem"})

    def __init__(self, client: Any, prefix: str) -> None:
        self.prefix = prefix
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self.outgoing)
        events.register("after-call.dynamodb", self.incoming)

    def outgoing(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in self.REFUSED:
            raise SchemaError(
                f"{model.name} is not available in a bench sandbox on DynamoDB: its tables "
                "are renamed per run, and this operation names tables where no rename "
                "reaches"
            )
        # New containers throughout: the caller's own dicts are never changed, so a
        # request sent again is not prefixed twice.
        if "TableName" in params:
            params["TableName"] = self.prefix + params["TableName"]
        if "RequestItems" in params:
            params["RequestItems"] = {self.prefix + t: r for t, r in params["RequestItems"].items()}
        if "TransactItems" in params:
            params["TransactItems"] = [
                {kind: {**request, "TableName": self.prefix + request["TableName"]}
                 for kind, request in entry.items()}
                for entry in params["TransactItems"]
            ]  # fmt: skip

    def incoming(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in self.BATCHES:
            for field in ("Responses", "UnprocessedKeys", "UnprocessedItems",
                          "ItemCollectionMetrics"):  # fmt: skip
                if isinstance(parsed.get(field), dict):
                    parsed[field] = {self.strip(t): v for t, v in parsed[field].items()}
        for field in ("Table", "TableDescription"):
            described = parsed.get(field)
            if isinstance(described, dict) and "TableName" in described:
                described["TableName"] = self.strip(described["TableName"])
        capacity = parsed.get("ConsumedCapacity")
        for entry in capacity if isinstance(capacity, list) else [capacity]:
            if isinstance(entry, dict) and "TableName" in entry:
                entry["TableName"] = self.strip(entry["TableName"])

    def strip(self, name: str) -> str:
        return name[len(self.prefix) :] if name.startswith(self.prefix) else name


def open_sandbox(url: str | None) -> Sandbox:
    """The sandbox for a database URL (None: a temporary SQLite directory)."""
    if url is None:
        return SQLiteSandbox()
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteSandbox(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresSandbox(url)
    if scheme == "dynamodb":
        return DynamoDBSandbox(url)
    raise SchemaError(
        f"bulkops bench runs on SQLite, PostgreSQL and DynamoDB URLs, not {url!r} (for "
        "example sqlite:///bench.db, postgresql://user@host/db or "
        "dynamodb://?region=us-east-1&endpoint_url=http://localhost:8000)"
    )
