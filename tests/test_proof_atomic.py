"""``atomic=True`` calls: all or nothing, also after a transient error, and inside
``db.atomic()`` blocks (README: "one transaction, all or nothing"; inside a scope
"every verb works in that one transaction", chunk boundaries become savepoints).

Runs on every backend with transactions (SQLite and PostgreSQL); the PostgreSQL-only
tests force a transient error after BEGIN with a trigger raising 40001.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import ConstraintError, SerializationError
from conftest import create, needs

NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda s: None)


def raw_rows(db: bulkops.Store, table: str) -> list[tuple[Any, ...]]:
    """The table read with a plain connection of the engine, not through bulkops."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f'SELECT id, v FROM "{table}" ORDER BY id'))]


def make(db: bulkops.Store) -> None:
    needs(db, "transactions", "no multi-request transactions")
    create(
        db,
        "t",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", sa.Integer, sa.CheckConstraint("v >= 0"), nullable=False),
    )
    create(db, "log", sa.Column("id", sa.Integer, primary_key=True),
           sa.Column("v", sa.Integer))  # fmt: skip


def test_atomic_call_with_a_bad_row_in_a_late_chunk_commits_nothing(db: bulkops.Store) -> None:
    """Kills: atomic=True committing per chunk (chunks 1-4 would stay)."""
    make(db)
    rows = [{"id": i, "v": -1 if i == 95 else i} for i in range(1, 101)]
    with pytest.raises(ConstraintError) as caught:
        db.insert("t", rows, chunk_size=20, atomic=True, on_error="raise")
    assert raw_rows(db, "t") == []
    assert caught.value.report is not None and caught.value.report.inserted == 0


def test_atomic_call_inside_a_block_is_a_savepoint(db: bulkops.Store) -> None:
    """insert(atomic=True) failing inside ``db.atomic()``: its own rows are undone (its
    savepoint), the block's earlier write stays and commits with the block. Kills: the
    failing call rolling back the caller's whole transaction, or keeping its chunks."""
    make(db)
    with db.atomic():
        db.insert("log", [{"id": 1, "v": 1}])
        with pytest.raises(ConstraintError):
            db.insert("t", [{"id": i, "v": -1 if i == 50 else i} for i in range(1, 61)],
                      chunk_size=10, atomic=True, on_error="raise")  # fmt: skip
        db.insert("t", [{"id": 1000, "v": 1}], atomic=True)
    assert raw_rows(db, "log") == [(1, 1)]
    assert raw_rows(db, "t") == [(1000, 1)]


def test_atomic_call_inside_a_block_rolls_back_with_the_block(db: bulkops.Store) -> None:
    """A successful insert(atomic=True) inside a block that then fails is undone: the
    call did not commit on its own. Kills: an atomic call committing inside a block."""
    make(db)
    with pytest.raises(RuntimeError), db.atomic():
        report = db.insert("t", [{"id": i, "v": i} for i in range(1, 51)], chunk_size=10,
                           atomic=True)  # fmt: skip
        assert report.inserted == 50
        raise RuntimeError("the block fails after the call")
    assert raw_rows(db, "t") == []


def test_atomic_call_inside_a_block_rerun_after_transient_error(db: bulkops.Store) -> None:
    """The block is re-run after a transient error raised by the caller's code after an
    insert(atomic=True): the rows are written once, not twice (the first run was rolled
    back). Kills: an atomic call inside a block that commits despite the block failing."""
    make(db)
    runs = 0

    @db.atomic(retry=NO_SLEEP)
    def block() -> None:
        nonlocal runs
        runs += 1
        db.insert("t", [{"id": i, "v": i} for i in range(1, 31)], chunk_size=10, atomic=True)
        if runs == 1:
            raise bulkops.errors.TransientError("simulated transient failure")

    block()
    assert runs == 2
    assert raw_rows(db, "t") == [(i, i) for i in range(1, 31)]


def test_atomic_isolate_inside_a_block_keeps_good_rows(db: bulkops.Store) -> None:
    """atomic=True with on_error="isolate" inside a block: the bad row is rejected and
    the rest commits with the block."""
    make(db)
    with db.atomic():
        report = db.insert("t", [{"id": i, "v": -1 if i == 7 else i} for i in range(1, 21)],
                           chunk_size=5, atomic=True, on_error="isolate")  # fmt: skip
    assert report.inserted == 19 and report.rejected == 1
    assert [r[0] for r in raw_rows(db, "t")] == [i for i in range(1, 21) if i != 7]


# ----------------------------------------------- PostgreSQL: a transient error after BEGIN


def fail_once(url: str, times: int = 1) -> None:
    from test_postgres_faults import execute

    execute(
        url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL)",
        "CREATE SEQUENCE calls",
        f"""CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.id = 75 AND nextval('calls') <= {times} THEN
               RAISE EXCEPTION 'forced' USING ERRCODE = '40001';
             END IF;
             RETURN NEW;
           END $$""",
        "CREATE TRIGGER fail_once BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION fail_once()",
    )


@pytest.mark.postgres
def test_atomic_call_transient_error_after_begin_commits_nothing(pg_url: str) -> None:
    """A 40001 in chunk 4 of an atomic=True call, on every attempt: SerializationError
    and all or nothing - chunks 1-3 must not stay. Kills: atomic=True degrading to
    per-chunk transactions (60 rows would stay)."""
    from test_postgres_faults import execute

    fail_once(pg_url, times=100)
    with bulkops.connect(pg_url) as db, pytest.raises(SerializationError) as caught:
        db.insert("t", [{"id": i, "v": i} for i in range(1, 101)], chunk_size=20,
                  atomic=True, retry=NO_SLEEP)  # fmt: skip
    assert caught.value.report is not None and caught.value.report.inserted == 0
    assert execute(pg_url, "SELECT count(*) FROM t") == [(0,)]


@pytest.mark.postgres
def test_atomic_call_transient_error_after_begin_is_retried_as_a_whole(pg_url: str) -> None:
    from test_postgres_faults import execute

    fail_once(pg_url)
    with bulkops.connect(pg_url) as db:
        report = db.insert("t", [{"id": i, "v": i} for i in range(1, 101)], chunk_size=20,
                           atomic=True, retry=NO_SLEEP)  # fmt: skip
    assert report.retries == 1 and report.inserted == 100
    assert execute(pg_url, "SELECT count(*) FROM t") == [(100,)]


@pytest.mark.postgres
def test_atomic_call_in_a_block_transient_error_reruns_the_block(pg_url: str) -> None:
    """The documented retry for an atomic=True call: put it in ``@db.atomic()``. The
    40001 after BEGIN re-runs the block; all 100 rows land once."""
    from test_postgres_faults import execute

    fail_once(pg_url)
    runs = 0
    with bulkops.connect(pg_url) as db:

        @db.atomic(retry=NO_SLEEP)
        def block() -> bulkops.Report:
            nonlocal runs
            runs += 1
            return db.insert("t", [{"id": i, "v": i} for i in range(1, 101)], chunk_size=20,
                             atomic=True)  # fmt: skip

        report = block()
    assert runs == 2
    assert report.inserted == 100
    assert execute(pg_url, "SELECT count(*), sum(v) FROM t") == [(100, 5050)]


def test_sqlite_atomic_rows_read_back_with_the_raw_driver(tmp_path: Any) -> None:
    """SQLite: an atomic=True failure leaves the file without any of the call's rows,
    read with the stdlib driver (no bulkops, no SQLAlchemy)."""
    path = tmp_path / "a.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0))")
    setup.close()
    with bulkops.connect(f"sqlite:///{path}") as db, pytest.raises(ConstraintError):
        db.insert("t", [{"id": i, "v": -1 if i == 99 else i} for i in range(1, 101)],
                  chunk_size=10, atomic=True, on_error="raise")  # fmt: skip
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM t").fetchone() == (0,)


@pytest.mark.postgres
def test_atomic_call_rerun_writes_each_reject_once(pg_url: str, tmp_path: Path) -> None:
    """A re-run atomic call writes the rejects of the attempt that ended it, not those
    of every attempt (the rows rejected on the first try are rejected again)."""
    fail_once(pg_url)
    rejects = tmp_path / "rejects.jsonl"
    rows = [{"id": i, "v": "x" if i == 7 else i} for i in range(1, 101)]
    with bulkops.connect(pg_url) as db:
        report = db.insert("t", rows, chunk_size=20, atomic=True, retry=NO_SLEEP,
                           rejects=str(rejects))  # fmt: skip
    assert (report.retries, report.inserted, report.rejected) == (1, 99, 1)
    lines = rejects.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["row"] == 7
