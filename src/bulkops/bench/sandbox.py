"""Fresh, empty databases for bench runs, cleaned up afterwards.

Every run (one workload, one size, one implementation) gets its own: SQLite a new
database file (or a new in-memory database), PostgreSQL a new schema that the run's
connections find first on their ``search_path`` and that is dropped with everything
in it at the end. The user's own tables are never touched.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from ..api import connect, engine_for_url
from ..errors import SchemaError
from ..store import Store
from .counting import StatementCounter

__all__ = ["PostgresSandbox", "SQLiteSandbox", "Sandbox", "Target", "open_sandbox"]


@dataclass
class Target:
    """One fresh database for one run.

    ``plain`` is the database through its plain client, for naive code and checks (a
    SQLAlchemy Engine here); ``connect`` opens bulkops on the same database (the caller
    closes it); ``counter`` sees every statement or request either of them sends.
    """

    plain: Any
    connect: Callable[[], Store]
    counter: StatementCounter


def _sql_target(engine: sa.Engine) -> Target:
    counter = StatementCounter()
    counter.attach(engine)
    return Target(plain=engine, connect=partial(connect, engine), counter=counter)


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
            yield _sql_target(engine)
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
            yield _sql_target(engine)
        finally:
            engine.dispose()
            with self._admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")

    def close(self) -> None:
        self._admin.dispose()


def open_sandbox(url: str | None) -> Sandbox:
    """The sandbox for a database URL (None: a temporary SQLite directory)."""
    if url is None:
        return SQLiteSandbox()
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteSandbox(url)
    if scheme in ("postgresql", "postgres"):
        return PostgresSandbox(url)
    raise SchemaError(
        f"bulkops bench runs on SQLite and PostgreSQL URLs, not {url!r} "
        "(for example sqlite:///bench.db or postgresql://user@host/db)"
    )
