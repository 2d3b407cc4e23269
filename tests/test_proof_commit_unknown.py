"""A connection lost during COMMIT on a real PostgreSQL server.

README/errors.py: after a lost COMMIT bulkops asks ``txid_status`` on a new connection;
committed -> done, aborted -> retried, and when the database cannot tell,
``CommitUnknownError`` is raised and nothing is retried (never applied twice).

The loader's COMMIT is held in a deferred trigger (waiting for an advisory lock), its
backend is ended with ``pg_terminate_backend`` while it waits there, and - for the
"cannot tell" case - the database refuses new connections meanwhile
(``ALTER DATABASE ... ALLOW_CONNECTIONS false``), so txid_status cannot be asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import CommitUnknownError
from test_postgres_faults import (
    GATE_LOCK,
    Background,
    add_gate,
    connect,
    execute,
    ids_in,
    load_rows,
    lock_waiters,
    terminate,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]


def kill_in_commit(
    pg_url: str, app: str, work: Callable[[bulkops.Store], Any], *, refuse_connections: bool
) -> tuple[Background, list[int]]:
    """Run ``work`` while a watcher ends the backend of ``app`` waiting in its COMMIT."""
    dbname = execute(pg_url, "SELECT current_database()")[0][0]
    killed: list[int] = []
    with (
        psycopg.connect(pg_url, autocommit=True) as ctl,
        psycopg.connect(pg_url, autocommit=True) as gate,
        psycopg.connect(pg_url, autocommit=True, dbname="postgres") as admin,
    ):
        gate.execute("SELECT pg_advisory_lock(%s)", (GATE_LOCK,))

        def strike() -> None:
            try:
                pid = wait_until(lambda: lock_waiters(ctl, app, "advisory"), "the COMMIT")[0]
                if refuse_connections:
                    admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                terminate(ctl, pid)
                killed.append(pid)
            finally:
                gate.execute("SELECT pg_advisory_unlock(%s)", (GATE_LOCK,))

        watcher = Background(strike, name="strike")
        with connect(pg_url, app) as db:
            job = Background(lambda: work(db), name=app)
            try:
                job.thread.join(30)
            finally:
                watcher.join()
                if refuse_connections:
                    admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    return job, killed


def test_commit_outcome_unknown_raises_and_is_not_retried(pg_url: str) -> None:
    """Chunk 2's COMMIT loses its connection and no new one can be opened to ask
    txid_status: CommitUnknownError, not retried (retries stay 0, chunks 3-4 are never
    written). Kills: treating the unknown outcome as transient (a retry), or as
    "not committed"."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    add_gate(pg_url, "NEW.id = 15", deferred=True)  # chunk 2 of 4 waits in COMMIT
    job, killed = kill_in_commit(
        pg_url,
        "unknown",
        lambda db: db.insert(
            "t", load_rows(40), chunk_size=10, retry=RetryPolicy(attempts=5, sleep=lambda s: None)
        ),
        refuse_connections=True,
    )
    assert killed, "the loader was never terminated in its COMMIT"
    error = job.error
    assert isinstance(error, CommitUnknownError), repr(error)
    assert not isinstance(error, bulkops.errors.TransientError)
    # The server aborted chunk 2 (its backend died inside COMMIT); chunks 3-4 never ran.
    assert ids_in(pg_url) == (10, 10, 1, 10)


def test_commit_killed_then_txid_status_aborted_retries_the_chunk(pg_url: str) -> None:
    """The same kill, with connections allowed: txid_status answers "aborted", the
    chunk is retried once on a new connection and every row lands exactly once.
    Kills: raising CommitUnknownError although the database could tell, or not retrying."""
    execute(pg_url, "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
    add_gate(pg_url, "NEW.id = 15", deferred=True)
    statements: list[str] = []

    def work(db: bulkops.Store) -> bulkops.Report:
        with db.backend.trace_statements(statements.append):  # type: ignore[attr-defined]
            return db.insert("t", load_rows(40), chunk_size=10,
                             retry=RetryPolicy(attempts=5, sleep=lambda s: None))  # fmt: skip

    job, killed = kill_in_commit(pg_url, "aborted", work, refuse_connections=False)
    report = job.join()
    assert killed
    assert report.retries == 1, report
    assert report.inserted == 40
    assert any("txid_status" in s for s in statements), "the outcome was never asked"
    assert ids_in(pg_url) == (40, 40, 1, 40)


def test_atomic_block_commit_killed_is_rerun_once(pg_url: str) -> None:
    """An ``@db.atomic()`` block whose COMMIT loses its connection: the database says
    "aborted", the block is run again, and its rows and counter change land once.
    Kills: an atomic block that does not resolve a lost COMMIT (ConnectionLostError
    escapes) or re-runs a block that did commit."""
    execute(
        pg_url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)",
        "CREATE TABLE c (id int PRIMARY KEY, n int NOT NULL)",
        "INSERT INTO c VALUES (1, 0)",
    )
    add_gate(pg_url, "NEW.id = 3", deferred=True)
    runs = 0

    def work(db: bulkops.Store) -> None:
        @db.atomic(retry=RetryPolicy(attempts=5, sleep=lambda s: None))
        def block() -> None:
            nonlocal runs
            runs += 1
            db.insert("t", load_rows(5))
            db.adjust("c", {1: 1}, column="n")

        block()

    job, killed = kill_in_commit(pg_url, "block", work, refuse_connections=False)
    job.join()
    assert killed
    assert runs == 2
    assert ids_in(pg_url) == (5, 5, 1, 5)
    assert execute(pg_url, "SELECT n FROM c") == [(1,)]
