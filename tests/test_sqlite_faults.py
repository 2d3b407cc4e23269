"""SQLite-specific behaviour: busy databases are retried, locks are short."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import BusyError


@pytest.fixture
def path(tmp_path: Any) -> str:
    return str(tmp_path / "busy.db")


def _locker(path: str) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # hold the write lock
    return other


def test_busy_database_is_retried_then_succeeds(path: str) -> None:
    waits: list[float] = []
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    other.execute("BEGIN IMMEDIATE")

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the other writer finishes while we back off
            other.execute("COMMIT")

    db = bulkops.connect(f"sqlite:///{path}", connect_args={"timeout": 0.01})
    try:
        report = db.insert(
            "t", [{"id": i, "v": "x"} for i in range(10)], retry=RetryPolicy(sleep=sleep)
        )
        assert report.inserted == 10
        assert report.retries == 2
        assert len(waits) == 2
    finally:
        db.close()
        other.close()
    # The rows are in the file, once each (the retried chunk did not apply twice).
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [
            (i, "x") for i in range(10)
        ]


def test_busy_database_gives_up_after_the_attempts(path: str) -> None:
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    setup.commit()
    setup.close()
    other = _locker(path)
    db = bulkops.connect(f"sqlite:///{path}", connect_args={"timeout": 0.01})
    try:
        with pytest.raises(BusyError) as caught:
            db.insert(
                "t", [{"id": 1, "v": "x"}], retry=RetryPolicy(attempts=3, sleep=lambda s: None)
            )
        assert "gave up after 3 attempts" in str(caught.value)
        assert "locked" in str(caught.value)
        assert caught.value.report is not None and caught.value.report.retries == 2
        assert caught.value.report.inserted == 0
    finally:
        db.close()
        other.close()
    # Nothing was written: the lock holder's transaction ended and the table is empty.
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_each_chunk_is_its_own_transaction(path: str) -> None:
    # A reader between chunks sees the committed chunks: locks are held per chunk.
    db = bulkops.connect(f"sqlite:///{path}")
    db.create_table("t", {"id": "integer", "v": "text"}, key="id")
    seen: list[int] = []
    reader = sqlite3.connect(path)

    def progress(report: bulkops.Report) -> None:
        seen.append(reader.execute("SELECT count(*) FROM t").fetchone()[0])

    db.insert("t", ({"id": i, "v": "x"} for i in range(50)), chunk_size=10, progress=progress)
    reader.close()
    db.close()
    assert seen == [10, 20, 30, 40, 50]


def test_engine_is_accepted_and_left_open(path: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}")
    with bulkops.connect(engine) as db:
        db.create_table("t", {"id": "integer"}, key="id")
        assert db.insert("t", [{"id": 1}]).inserted == 1
    with engine.connect() as conn:  # still usable: bulkops did not dispose of it
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    engine.dispose()


def test_concurrent_writers_from_threads_all_land(path: str) -> None:
    with bulkops.connect(f"sqlite:///{path}") as db:
        db.create_table("t", {"id": "integer", "w": "integer"}, key="id")
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            with bulkops.connect(f"sqlite:///{path}", connect_args={"timeout": 0.05}) as db:
                policy = RetryPolicy(attempts=200, base_delay=0.01, max_delay=0.2)
                rows = [{"id": i, "w": w} for i in range(w, 2000, 4)]
                db.upsert("t", rows, chunk_size=50, retry=policy)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = sqlite3.connect(path)
    assert check.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (2000, 2000)
    check.close()
