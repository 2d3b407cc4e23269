"""Tests for the throwaway PostgreSQL cluster helper used by the test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from pg_cluster import PgCluster, find_pg_bin

pytestmark = pytest.mark.postgres


def _pg_bin_or_skip() -> str:
    bindir = find_pg_bin()
    if bindir is None:
        message = (
            "PostgreSQL binaries not found (set BULKOPS_PG_BIN, install postgresql under "
            "/usr/lib/postgresql/*/bin, or put pg_config on PATH)"
        )
        if os.environ.get("BULKOPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BULKOPS_REQUIRE_POSTGRES=1 but {message}", pytrace=False)
        pytest.skip(message)
    return bindir


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    bindir = _pg_bin_or_skip()
    with PgCluster(bindir) as pg:
        yield pg


def _psycopg() -> ModuleType:
    return pytest.importorskip("psycopg")


def test_connect_and_version(cluster: PgCluster) -> None:
    psycopg = _psycopg()
    assert cluster.dsn == f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    with psycopg.connect(cluster.dsn) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert "PostgreSQL" in row[0]


def test_server_settings(cluster: PgCluster) -> None:
    psycopg = _psycopg()
    with psycopg.connect(cluster.dsn) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            return str(row[0])

        assert show("listen_addresses") == "127.0.0.1"
        assert show("port") == str(cluster.port)
        assert show("unix_socket_directories") == os.path.dirname(cluster.datadir)
        assert show("server_encoding") == "UTF8"
        assert show("lc_collate") == "C"
        assert show("fsync") == "off"
        assert show("synchronous_commit") == "off"
        assert show("full_page_writes") == "off"
        assert show("max_connections") == "200"
        assert show("deadlock_timeout") == "100ms"


def test_create_database(cluster: PgCluster) -> None:
    psycopg = _psycopg()
    dsn = cluster.create_database("bulkops_test_db")
    assert dsn != cluster.dsn
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row == ("bulkops_test_db",)
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    # The new database is independent of the default one.
    with psycopg.connect(cluster.dsn) as conn:
        row = conn.execute("SELECT to_regclass('public.t')").fetchone()
        assert row == (None,)


def test_stop_removes_datadir_and_is_idempotent() -> None:
    psycopg = _psycopg()
    bindir = _pg_bin_or_skip()
    pg = PgCluster(bindir).start()
    try:
        datadir = pg.datadir
        tmpdir = os.path.dirname(datadir)
        dsn = pg.dsn
        assert os.path.isdir(datadir)
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
    finally:
        pg.stop()
    assert not os.path.exists(datadir)
    assert not os.path.exists(tmpdir)
    pg.stop()  # second stop is harmless
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2).close()
