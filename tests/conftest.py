"""Fixtures: a Store per backend, and a helper to create tables with constraints.

The contract tests take the ``db`` fixture, which is parametrised over every backend
available here; tests switch on ``db.capabilities``, never on the backend's name.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from ddb_local import DynamoDBLocal, missing_tools
from pg_cluster import PgCluster, find_pg_bin

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("dynamodb", marks=pytest.mark.dynamodb),
]
_database_names = itertools.count(1)


def require_postgres() -> None:
    """Skip where no PostgreSQL server binaries exist, unless CI demands them."""
    if find_pg_bin() is None:
        message = "no PostgreSQL server binaries (set BULKOPS_PG_BIN or install postgresql)"
        if os.environ.get("BULKOPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BULKOPS_REQUIRE_POSTGRES=1 but {message}")
        pytest.skip(message)


def require_dynamodb() -> None:
    """Skip where DynamoDB Local cannot run, unless CI demands it."""
    problem = missing_tools()
    if problem is not None:
        if os.environ.get("BULKOPS_REQUIRE_DYNAMODB") == "1":
            pytest.fail(f"BULKOPS_REQUIRE_DYNAMODB=1 but {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    require_dynamodb()
    # DynamoDB Local takes any letters-and-digits credentials; boto3 still wants some.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bulkopstests")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bulkopstests")
    server = DynamoDBLocal().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ddb(dynamodb_local: DynamoDBLocal) -> Iterator[bulkops.Store]:
    """A Store on DynamoDB Local (tables are named per test: the server is shared)."""
    store = bulkops.connect(dynamodb_local.url)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    require_postgres()
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh database for one test, as a bulkops URL."""
    return pg_cluster.create_database(f"test_{next(_database_names)}")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.db"
    elif request.param == "postgres":
        yield str(request.getfixturevalue("pg_url"))
    elif request.param == "dynamodb":
        server: DynamoDBLocal = request.getfixturevalue("dynamodb_local")
        yield server.url
        # One emulator for the whole run: each test starts with no tables.
        with bulkops.connect(server.url) as store:
            client = store.backend.client  # type: ignore[attr-defined]
            for name in client.list_tables()["TableNames"]:
                client.delete_table(TableName=name)
    else:
        raise AssertionError(request.param)


@pytest.fixture
def db(db_url: str) -> Iterator[bulkops.Store]:
    store = bulkops.connect(db_url)
    try:
        yield store
    finally:
        store.close()


def needs(db: bulkops.Store | str, capability: str, why: str) -> None:
    """Skip a contract test on a backend without ``capability`` (by capability, never
    by name), saying what the backend lacks. ``db``: a Store or its URL."""
    if isinstance(db, str):
        with bulkops.connect(db) as store:
            capabilities = store.capabilities
    else:
        capabilities = db.capabilities
    if not getattr(capabilities, capability):
        pytest.skip(f"{capabilities.name}: {why}")


_declared: dict[tuple[int, str], list[str]] = {}  # columns create() declared, per store
_LOGICAL_OF = {sa.Integer: "integer", sa.Text: "text", sa.String: "text", sa.LargeBinary: "bytes"}


def create(db: bulkops.Store, name: str, *columns: Any) -> sa.Table:
    """Create a table with SQLAlchemy Core DDL (for NOT NULL, UNIQUE, CHECK ...).

    On an item store (DynamoDB) only the primary key is declared, the rest is open."""
    table = sa.Table(name, sa.MetaData(), *columns)
    _declared[(id(db), name)] = [c.name for c in table.columns]
    if db.capabilities.items:
        key = [c.name for c in table.primary_key.columns]
        types = {
            c.name: next(v for k, v in _LOGICAL_OF.items() if isinstance(c.type, k))
            for c in table.primary_key.columns
        }
        db.create_table(name, types, key=key)
        return table
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    table.create(engine)
    return table


def rows_of(db: bulkops.Store, table: str, order_by: str = "id") -> list[dict[str, Any]]:
    """Every row of ``table`` as dicts, read back through bulkops (decoded types)."""
    if db.capabilities.items:
        # Absent attributes read as None, like the NULLs of a SQL table.
        names = _declared.get((id(db), table), [])
        items = db.backend.scan(db.table(table))  # type: ignore[attr-defined]
        rows = [{**dict.fromkeys(names), **item} for item in items]
        return sorted(rows, key=lambda row: row[order_by])
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        keys = [r[0] for r in conn.execute(sa.text(f'SELECT "{order_by}" FROM "{table}"'))]
    found = db.get_many(table, keys, key=order_by)
    return [found[k] for k in sorted(found)]


def assert_accounted(report: bulkops.Report, given: int) -> None:
    """The accounting invariant: every row given ends in exactly one outcome."""
    assert report.rows_in == given, report
    assert report.accounted == given, report
    assert report.rejected == len(report.rejections), report


def pg_execute(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements on PostgreSQL through raw psycopg in autocommit mode; the rows of
    the last one that returns any."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows: list[tuple[Any, ...]] = []
        for statement in statements:
            cursor = conn.execute(statement)
            if cursor.description:
                rows = cursor.fetchall()
        return rows


def vendored_module(name: str) -> Any:
    """A vendored excerpt of an application's models (``tests/data/NAME.py``), imported
    once (SQLAlchemy and Django find a model's module through sys.modules)."""
    if name not in sys.modules:
        path = Path(__file__).parent / "data" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]
