"""Proof of the README's lock-order claim on a real PostgreSQL server.

"Rows written in key order (so concurrent writers lock in the same order)": with one
transaction per chunk and every chunk sorted by key, concurrent upserts of the same
keys in any input order cannot form a lock cycle. These tests fail when the sort in
``plan.py`` is removed: the writers then deadlock, which shows up as retries, as
``DeadlockError`` (retries off) and in ``pg_stat_database.deadlocks``.

With ``atomic=True`` several chunks share one transaction, so a deadlock is possible;
it must be retried as a whole and end with the right data.
"""

from __future__ import annotations

import random
import threading

import psycopg
import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import DeadlockError
from conftest import assert_accounted
from test_postgres_faults import Background, connect, execute, lock_waiters, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def deadlocks(url: str) -> int:
    row = execute(url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[
        0
    ]
    return int(row[0])


def wait_for_exit(url: str, prefix: str) -> None:
    """Backends flush their statistics when they exit: wait until ours are gone."""
    wait_until(
        lambda: (
            not execute(
                url,
                f"SELECT pid FROM pg_stat_activity WHERE application_name LIKE '{prefix}%'",
            )
        ),
        f"the {prefix} backends to exit",
    )


@pytest.mark.parametrize("orders", ["opposite", "random"])
def test_concurrent_chunked_upserts_never_deadlock(pg_url: str, orders: str) -> None:
    """Six threads upsert the same 400 keys, each in its own input order (half of them
    reversed, or each a random permutation), in chunks of 100 (one transaction each),
    for several rounds. Sorted chunks lock in one global order: no deadlock at all, so
    no retry, no DeadlockError (retries are switched off) and no deadlock counted by
    the server. Kills: removing the key sort in plan.py."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, w int NOT NULL, r int NOT NULL)")
    threads, n, rounds, chunk = 6, 400, 4, 100
    keys = list(range(1, n + 1))
    before = deadlocks(pg_url)
    errors: list[BaseException] = []
    reports: list[bulkops.Report] = []
    lock = threading.Lock()

    for r in range(rounds):
        start = threading.Barrier(threads)

        def writer(w: int, r: int = r, start: threading.Barrier = start) -> None:
            if orders == "opposite":
                order = keys if w % 2 == 0 else keys[::-1]
            else:
                order = random.Random(1000 * r + w).sample(keys, n)
            rows = [{"id": k, "w": w, "r": r} for k in order]
            # A short deadlock_timeout: a lock cycle is found within 20 ms.
            with connect(pg_url, f"sorter{w}", options="-c deadlock_timeout=20ms") as db:
                start.wait(timeout=10)
                try:
                    report = db.upsert("t", rows, chunk_size=chunk, retry=RetryPolicy(attempts=1))
                except BaseException as error:
                    with lock:
                        errors.append(error)
                    return
            with lock:
                reports.append(report)

        jobs = [Background(lambda w=w: writer(w), name=f"sorter{w}") for w in range(threads)]
        for job in jobs:
            job.join(timeout=60)

    assert not [e for e in errors if isinstance(e, DeadlockError)], errors
    assert errors == []
    assert len(reports) == threads * rounds
    for report in reports:
        assert_accounted(report, n)
        assert report.retries == 0, report
        assert report.chunks == n // chunk
    final = execute(pg_url, "SELECT id, w, r FROM t ORDER BY id")
    assert [row[0] for row in final] == keys
    assert all(row[2] == rounds - 1 and 0 <= row[1] < threads for row in final)
    wait_for_exit(pg_url, "sorter")
    assert deadlocks(pg_url) == before


def test_concurrent_chunked_upserts_with_default_retries_report_none(pg_url: str) -> None:
    """The same with the default RetryPolicy: every call succeeds and Report.retries is
    0 for every one of them (a deadlock here would be retried silently; it must not
    happen at all). Kills: removing the key sort in plan.py."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, w int NOT NULL)")
    threads, n = 6, 300
    keys = list(range(1, n + 1))
    start = threading.Barrier(threads)

    def writer(w: int) -> list[bulkops.Report]:
        order = random.Random(w).sample(keys, n)
        with connect(pg_url, f"retrier{w}", options="-c deadlock_timeout=20ms") as db:
            start.wait(timeout=10)
            return [
                db.upsert("t", [{"id": k, "w": 10 * r + w} for k in order], chunk_size=60)
                for r in range(3)
            ]

    jobs = [Background(lambda w=w: writer(w), name=f"retrier{w}") for w in range(threads)]
    reports = [report for job in jobs for report in job.join(timeout=90)]
    assert len(reports) == threads * 3
    for report in reports:
        assert_accounted(report, n)
    assert [r.retries for r in reports] == [0] * len(reports)
    assert execute(pg_url, "SELECT count(*) FROM t") == [(n,)]


def test_atomic_call_deadlock_is_retried_as_a_whole(pg_url: str) -> None:
    """atomic=True spans chunks (here one row each), so locks are held across chunks and
    a deadlock is possible: bulkops writes row 1 (chunk 1), then waits for row 2, held
    by session A; A then asks for row 1. bulkops is made the victim (short
    deadlock_timeout): its whole call is rolled back and retried, and ends with its
    values on both rows, counted once. Kills: atomic calls not retried on a deadlock,
    or a retry that re-runs only the failed chunk (row 1 would keep A's value)."""
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old'), (2, 'old')",
    )
    before = deadlocks(pg_url)
    with (
        connect(pg_url, "atomicdl", options="-c deadlock_timeout=200ms") as db,
        psycopg.connect(pg_url, options="-c deadlock_timeout=60s") as a,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        a.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        job = Background(
            lambda: db.upsert(
                "t",
                [{"id": 1, "v": "bulk"}, {"id": 2, "v": "bulk"}],
                chunk_size=1,
                atomic=True,
                retry=RetryPolicy(attempts=5, sleep=lambda s: None),
            )
        )
        wait_until(lambda: lock_waiters(watch, "atomicdl"), "bulkops to wait for row 2")
        a.execute("UPDATE t SET v = 'A' WHERE id = 1")  # the cycle: bulkops is the victim
        a.execute("UPDATE t SET v = 'A' WHERE id = 2")
        a.commit()
        report = job.join()
    assert report.retries >= 1, report
    assert_accounted(report, 2)
    assert report.updated == 2, report
    assert report.chunks == 2
    assert dict(execute(pg_url, "SELECT id, v FROM t")) == {1: "bulk", 2: "bulk"}
    wait_for_exit(pg_url, "atomicdl")
    assert deadlocks(pg_url) > before  # the deadlock really happened


def test_atomic_block_deadlock_is_rerun_as_a_whole(pg_url: str) -> None:
    """The documented way to get a whole re-run: ``@db.atomic()`` around an atomic=True
    write. The same lock cycle makes bulkops the victim; the block is run again, and
    ends with its values on both rows. Kills: Atomic.run not retrying a DeadlockError
    (the error is raised), or re-running without rolling back first."""
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old'), (2, 'old')",
    )
    before = deadlocks(pg_url)
    runs: list[bulkops.Report] = []
    with (
        connect(pg_url, "blockdl", options="-c deadlock_timeout=200ms") as db,
        psycopg.connect(pg_url, options="-c deadlock_timeout=60s") as a,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):

        @db.atomic(retry=RetryPolicy(attempts=5, sleep=lambda s: None))
        def block() -> bulkops.Report:
            report = db.upsert(
                "t", [{"id": 1, "v": "bulk"}, {"id": 2, "v": "bulk"}], chunk_size=1, atomic=True
            )
            runs.append(report)
            return report

        a.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        job = Background(block)
        wait_until(lambda: lock_waiters(watch, "blockdl"), "bulkops to wait for row 2")
        a.execute("UPDATE t SET v = 'A' WHERE id = 1")  # the cycle: bulkops is the victim
        a.execute("UPDATE t SET v = 'A' WHERE id = 2")
        a.commit()
        report = job.join()
    assert len(runs) == 1  # the first run died inside upsert, the second completed
    assert_accounted(report, 2)
    assert report.updated == 2, report
    assert dict(execute(pg_url, "SELECT id, v FROM t")) == {1: "bulk", 2: "bulk"}
    wait_for_exit(pg_url, "blockdl")
    assert deadlocks(pg_url) > before  # the deadlock really happened


def test_atomic_call_deadlock_without_retries_commits_nothing(pg_url: str) -> None:
    """The same cycle with retries off: DeadlockError, and nothing of the call is
    committed (row 1, written by chunk 1, is rolled back with the rest)."""
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO t VALUES (1, 'old'), (2, 'old')",
    )
    with (
        connect(pg_url, "atomicdl1", options="-c deadlock_timeout=200ms") as db,
        psycopg.connect(pg_url, options="-c deadlock_timeout=60s") as a,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        a.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        job = Background(
            lambda: db.upsert(
                "t",
                [{"id": 1, "v": "bulk"}, {"id": 2, "v": "bulk"}],
                chunk_size=1,
                atomic=True,
                retry=RetryPolicy(attempts=1),
            )
        )
        wait_until(lambda: lock_waiters(watch, "atomicdl1"), "bulkops to wait for row 2")
        a.execute("SELECT 1 FROM t WHERE id = 1 FOR UPDATE")
        a.rollback()
        with pytest.raises(DeadlockError) as caught:
            job.join()
    assert caught.value.code == "40P01"
    assert dict(execute(pg_url, "SELECT id, v FROM t")) == {1: "old", 2: "old"}
