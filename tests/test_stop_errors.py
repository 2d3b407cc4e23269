"""A failure that is not about a row stops the call at once.

No privilege, a read-only database, a full disk, a lost connection (after its
retries), a missing adapter: every row would fail alike, so the call stops with one
clear error after its first chunk, instead of bisecting the whole input and
rejecting every row one by one (which would cost O(rows) statements).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import (
    AccessError,
    AdapterError,
    BulkError,
    ConnectionLostError,
    DataError,
    ResourceError,
)
from conftest import pg_execute as execute

ROWS = 500_000


class Rows:
    """``ROWS`` rows made lazily, counting how many were taken."""

    def __init__(self, n: int = ROWS) -> None:
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(1, self.n + 1):
            self.taken = i
            yield {"id": i, "name": f"row {i}"}


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}@{parts.netloc.split('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def assert_stopped_at_once(error: BulkError, rows: Rows) -> None:
    """Stopped in its first chunk: a handful of statements, nothing written or
    rejected, and far from the whole input read."""
    report = error.report
    assert report is not None
    assert report.statements <= 5, report.statements
    assert report.rejected == 0 and not report.rejections
    assert report.inserted == report.updated == 0
    assert rows.taken < ROWS // 2
    assert not isinstance(error, DataError)


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_locked(pg_url: str, request: pytest.FixtureRequest) -> str:
    """A table ``locked`` that the role ``reader_N`` may read but not write; the URL
    connects as that role."""
    role = f"reader_{abs(hash(request.node.name)) % 10**8}"
    execute(
        pg_url,
        "CREATE TABLE locked (id int PRIMARY KEY, name text)",
        "INSERT INTO locked VALUES (0, 'existing')",
        f"DROP ROLE IF EXISTS {role}",
        f"CREATE ROLE {role} LOGIN",
        f"GRANT SELECT ON locked TO {role}",
    )
    return as_user(pg_url, role)


@pytest.mark.postgres
@pytest.mark.parametrize("on_error", ["raise", "isolate"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_no_privilege_stops_after_the_first_chunk(
    pg_url: str, pg_locked: str, on_error: str, verb: str
) -> None:
    rows = Rows()
    with bulkops.connect(pg_locked) as db, pytest.raises(AccessError) as caught:
        getattr(db, verb)("locked", rows, on_error=on_error)
    error = caught.value
    assert error.code == "42501"
    assert "permission denied for table locked" in str(error)
    assert "lacks a privilege" in str(error)
    assert_stopped_at_once(error, rows)
    assert execute(pg_url, "SELECT count(*) FROM locked") == [(1,)]


@pytest.mark.postgres
def test_read_only_database_stops_at_once(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE t (id int PRIMARY KEY, name text)")
    dbname = urlsplit(pg_url).path.lstrip("/")
    execute(pg_url, f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    rows = Rows()
    with bulkops.connect(pg_url) as db, pytest.raises(AccessError) as caught:
        db.insert("t", rows, on_error="isolate")
    assert caught.value.code == "25006"
    assert "read-only" in str(caught.value)
    assert_stopped_at_once(caught.value, rows)


@pytest.mark.postgres
def test_disk_full_stops_at_once(pg_url: str) -> None:
    # The server's own error (SQLSTATE 53100), raised for every statement that writes.
    execute(
        pg_url,
        "CREATE TABLE t (id int PRIMARY KEY, name text)",
        """CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'
                 USING ERRCODE = 'disk_full'; END $$""",
        "CREATE TRIGGER disk_full BEFORE INSERT ON t "
        "FOR EACH STATEMENT EXECUTE FUNCTION full_disk()",
    )
    rows = Rows()
    with bulkops.connect(pg_url) as db, pytest.raises(ResourceError) as caught:
        db.insert("t", rows, on_error="isolate")
    assert caught.value.code == "53100"
    assert "No space left on device" in str(caught.value)
    assert_stopped_at_once(caught.value, rows)
    assert execute(pg_url, "SELECT count(*) FROM t") == [(0,)]


@pytest.mark.postgres
def test_raise_from_a_statement_trigger_stops_at_once(pg_url: str) -> None:
    # A trigger's RAISE EXCEPTION (P0001) is a row's refusal only on a table with a
    # trigger FOR EACH ROW; here every statement raises it, whatever its rows.
    execute(
        pg_url,
        "CREATE TABLE t (id int PRIMARY KEY, name text)",
        """CREATE FUNCTION closed() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'the table is closed for maintenance'; END $$""",
        "CREATE TRIGGER closed BEFORE INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION closed()",
    )
    rows = Rows()
    with bulkops.connect(pg_url) as db, pytest.raises(BulkError) as caught:
        db.insert("t", rows, on_error="isolate")
    assert not isinstance(caught.value, DataError)
    assert caught.value.code == "P0001"
    assert "closed for maintenance" in str(caught.value)
    assert_stopped_at_once(caught.value, rows)


@pytest.mark.postgres
def test_lost_connection_stops_after_its_retries(pg_url: str) -> None:
    # Every write kills its own session: retried (the policy's attempts), then raised.
    execute(
        pg_url,
        "CREATE TABLE t (id int PRIMARY KEY, name text)",
        """CREATE FUNCTION hang_up() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$""",
        "CREATE TRIGGER cut BEFORE INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION hang_up()",
    )
    rows = Rows()
    retry = RetryPolicy(attempts=3, sleep=lambda seconds: None)
    with bulkops.connect(pg_url) as db, pytest.raises(ConnectionLostError) as caught:
        db.insert("t", rows, on_error="isolate", retry=retry)
    error = caught.value
    assert error.report is not None and error.report.retries == 2
    assert error.report.rejected == 0 and error.report.inserted == 0
    assert error.report.statements <= 3 * 5
    assert rows.taken < ROWS // 2
    assert execute(pg_url, "SELECT count(*) FROM t") == [(0,)]


@pytest.mark.postgres
def test_missing_adapter_stops_at_once(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every type loads now (types without a binary dumper travel as text), so the
    driver's "no dumper" is simulated: it must stop the call, not reject each row."""
    execute(pg_url, "CREATE TABLE t (id int PRIMARY KEY, name text)")
    rows = Rows()
    with bulkops.connect(pg_url) as db:
        backend: Any = db.backend

        def no_dumper(*args: Any, **kwargs: Any) -> None:
            backend.statements += 1
            with backend._errors():
                raise psycopg.ProgrammingError(
                    "cannot find a dumper for type foo (oid 16400) format BINARY"
                )

        monkeypatch.setattr(backend, "_copy_rows", no_dumper)
        with pytest.raises(AdapterError) as caught:
            db.insert("t", rows, on_error="isolate")
    assert "no adapter" in str(caught.value) and "foo" in str(caught.value)
    assert_stopped_at_once(caught.value, rows)


@pytest.mark.postgres
def test_a_bad_row_is_still_isolated(pg_url: str) -> None:
    """The contrast: a failure about one row rejects that row only."""
    execute(pg_url, "CREATE TABLE t (id int PRIMARY KEY, name varchar(8))")
    rows = [{"id": i, "name": f"row {i}"} for i in range(1, 1001)]
    rows[500]["name"] = "far too long for eight"
    with bulkops.connect(pg_url) as db:
        report = db.insert("t", rows, on_error="isolate")
    assert report.inserted == 999 and report.rejected == 1
    assert report.rejections[0].row == 501 and report.rejections[0].column == "name"


# ---------------------------------------------------------------------- SQLite


def test_sqlite_read_only_file_stops_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    rows = Rows()
    with (
        bulkops.connect(f"sqlite:///file:{path}?mode=ro&uri=true") as db,
        pytest.raises(AccessError) as caught,
    ):
        db.insert("t", rows, on_error="isolate")
    error = caught.value
    assert "readonly" in str(error)
    assert_stopped_at_once(error, rows)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
