"""Serialization failures (SQLSTATE 40001) on a real PostgreSQL server.

README: transient errors are retried; ``db.atomic()`` is "re-run as a whole on
deadlocks and serialization failures". A 40001 is made two ways: a PL/pgSQL trigger
that raises it on its first call only (a sequence counts calls: ``nextval`` is not
rolled back), and a real REPEATABLE READ write conflict with a second session.
"""

from __future__ import annotations

import psycopg
import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import SerializationError
from conftest import assert_accounted
from test_postgres_faults import Background, connect, execute, lock_waiters, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda s: None)


def fail_once(url: str, times: int = 1) -> None:
    """A trigger on ``t`` raising 40001 on its first ``times`` calls."""
    execute(
        url,
        "CREATE SEQUENCE calls",
        f"""CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF nextval('calls') <= {times} THEN
                RAISE EXCEPTION 'forced serialization failure' USING ERRCODE = '40001';
              END IF;
              RETURN NEW;
            END $$""",
        "CREATE TRIGGER fail_once BEFORE INSERT OR UPDATE ON t "
        "FOR EACH ROW EXECUTE FUNCTION fail_once()",
    )


def table(url: str) -> None:
    execute(url, "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL)")


def test_40001_is_serialization_error_when_retries_are_off(pg_url: str) -> None:
    """Kills: 40001 classified as anything but SerializationError (or as a data error,
    which would isolate the row instead)."""
    table(pg_url)
    fail_once(pg_url)
    with bulkops.connect(pg_url) as db, pytest.raises(SerializationError) as caught:
        db.insert("t", [{"id": 1, "v": 1}], retry=RetryPolicy(attempts=1))
    error = caught.value
    assert isinstance(error, bulkops.errors.TransientError)
    assert error.code == "40001"
    assert execute(pg_url, "SELECT count(*) FROM t") == [(0,)]


def test_40001_in_a_chunk_is_retried_once_and_applied_once(pg_url: str) -> None:
    """Kills: 40001 not treated as transient (the call fails), or a retried chunk
    applied twice (a duplicate-key error or wrong counts)."""
    table(pg_url)
    fail_once(pg_url)
    with bulkops.connect(pg_url) as db:
        report = db.insert("t", [{"id": i, "v": i} for i in range(1, 101)], chunk_size=25,
                           retry=NO_SLEEP)  # fmt: skip
    assert report.retries == 1, report
    assert_accounted(report, 100)
    assert report.inserted == 100
    assert execute(pg_url, "SELECT count(*), sum(v) FROM t") == [(100, 5050)]


def test_atomic_decorator_reruns_the_block_on_40001(pg_url: str) -> None:
    """Kills: Atomic.run not retrying a SerializationError."""
    table(pg_url)
    execute(pg_url, "INSERT INTO t VALUES (1, 0)")
    fail_once(pg_url)
    calls = []
    with bulkops.connect(pg_url) as db:

        @db.atomic(retry=NO_SLEEP)
        def block() -> None:
            calls.append(1)
            db.insert("t", [{"id": 2, "v": 2}])
            db.adjust("t", {1: 5}, column="v")

        block()
    assert len(calls) == 2
    assert dict(execute(pg_url, "SELECT id, v FROM t")) == {1: 5, 2: 2}


def test_atomic_loop_reruns_the_block_on_40001(pg_url: str) -> None:
    """Kills: Attempt.__exit__ not swallowing a transient error (the loop would raise)
    or the loop not trying again."""
    table(pg_url)
    fail_once(pg_url, times=2)
    tries = 0
    with bulkops.connect(pg_url) as db:
        for attempt in db.atomic(retry=NO_SLEEP):
            with attempt:
                tries += 1
                db.upsert("t", [{"id": 1, "v": tries}])
    assert tries == 3
    assert execute(pg_url, "SELECT id, v FROM t") == [(1, 3)]


def test_plain_with_atomic_does_not_rerun_and_rolls_back(pg_url: str) -> None:
    """README: a plain ``with db.atomic():`` is one transaction that is not re-run."""
    table(pg_url)
    fail_once(pg_url)
    runs = 0
    with (
        bulkops.connect(pg_url) as db,
        pytest.raises(SerializationError),
        db.atomic(retry=NO_SLEEP),
    ):
        runs += 1
        db.insert("t", [{"id": 1, "v": 1}])
    assert runs == 1
    assert execute(pg_url, "SELECT count(*) FROM t") == [(0,)]


def test_repeatable_read_conflict_reruns_the_atomic_block(pg_url: str) -> None:
    """A real write conflict: at REPEATABLE READ the block reads row 1 (taking its
    snapshot), another session updates row 1 and commits, the block then updates row 1:
    "could not serialize access due to concurrent update" (40001). The block is re-run
    with a fresh snapshot and adds to the other session's value, so no update is lost.
    Kills: no re-run on 40001 (SerializationError escapes) or a re-run that keeps the
    old transaction (the conflict repeats until attempts run out)."""
    table(pg_url)
    execute(pg_url, "INSERT INTO t VALUES (1, 10)")
    runs = 0
    opts = "-c default_transaction_isolation=repeatable\\ read"
    with (
        connect(pg_url, "rr", options=opts) as db,
        psycopg.connect(pg_url, autocommit=True) as other,
    ):

        @db.atomic(retry=NO_SLEEP)
        def add_one() -> None:
            nonlocal runs
            runs += 1
            current = db.get_many("t", [1])[1]["v"]
            if runs == 1:
                other.execute("UPDATE t SET v = v + 100 WHERE id = 1")
            db.update("t", [{"id": 1, "v": current + 1}])

        add_one()
        isolation = db.backend.conn.execute("SHOW transaction_isolation").fetchone()  # type: ignore[attr-defined]
    assert isolation == ("repeatable read",)
    assert runs == 2
    assert execute(pg_url, "SELECT v FROM t") == [(111,)]


def test_serializable_conflict_between_two_blocks_loses_no_update(pg_url: str) -> None:
    """Two SERIALIZABLE atomic blocks each read the sum and insert it (write skew): one
    of them must fail with 40001 and be re-run; in the end the second row holds a sum
    that includes the first. Kills: 40001 at COMMIT or in a statement not re-run."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL)",
            "INSERT INTO t VALUES (0, 1)")  # fmt: skip
    opts = "-c default_transaction_isolation=serializable"
    runs = {"a": 0, "b": 0}
    with (
        connect(pg_url, "sa", options=opts) as a,
        connect(pg_url, "sb", options=opts) as b,
        psycopg.connect(pg_url, autocommit=True) as watch,
        psycopg.connect(pg_url) as gate,
    ):
        gate.execute("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE")  # holds both writers

        def block(db: bulkops.Store, name: str, new_id: int) -> None:
            runs[name] += 1
            total = sum(r["v"] for r in db.get_many("t", [0, 1, 2]).values())
            db.insert("t", [{"id": new_id, "v": total}])

        ja = Background(lambda: a.atomic(retry=NO_SLEEP)(block)(a, "a", 1), name="a")
        jb = Background(lambda: b.atomic(retry=NO_SLEEP)(block)(b, "b", 2), name="b")
        wait_until(lambda: len(lock_waiters(watch, "sa") + lock_waiters(watch, "sb")) == 2,
                   "both blocks to wait for the table lock")  # fmt: skip
        gate.rollback()
        ja.join()
        jb.join()
    final = dict(execute(pg_url, "SELECT id, v FROM t"))
    assert runs["a"] + runs["b"] == 3, runs  # exactly one of them was re-run
    assert sorted(final.values()) == [1, 1, 2], final
