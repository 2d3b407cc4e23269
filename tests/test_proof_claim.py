"""claim() as documented: "A batch left without ``with`` commits when the next one is
fetched, and is rolled back if the loop is abandoned"; ``order_by``; ``limit`` under
concurrency; and ``statement_timeout`` refused where the backend cannot honour it.

Runs on every backend with row locks (SQLite, PostgreSQL); the state is read back
with a plain SQLAlchemy connection of the engine, not through bulkops.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.errors import UnsupportedError
from conftest import create, needs
from test_primitives import PATIENT, run_threads


def statuses(db: bulkops.Store) -> dict[int, str]:
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, status FROM jobs")).all())  # type: ignore[arg-type]


def jobs(db: bulkops.Store, count: int, shuffle: bool = False) -> None:
    needs(db, "row_locks", "no row locks to claim rows with")
    create(
        db,
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("prio", sa.Integer, nullable=False),
    )
    ids = list(range(1, count + 1))
    prios = list(range(count))
    if shuffle:
        random.Random(7).shuffle(prios)
    rows = [{"id": i, "status": "TODO", "prio": p} for i, p in zip(ids, prios, strict=True)]
    db.insert("jobs", rows)


def test_abandoned_loop_rolls_back_the_open_batch(db: bulkops.Store) -> None:
    """A batch used without ``with``, its loop then abandoned (the generator closed):
    its update and its ``set_values=`` values are rolled back and the rows can be claimed
    again. Kills: an abandoned batch committed (or left open holding its locks)."""
    jobs(db, 30)
    loop = db.claim("jobs", where={"status": "TODO"}, chunk_size=10, set_values={"status": "TAKEN"})
    batch = next(loop)
    batch.update("jobs", [{"id": r["id"], "status": "DONE"} for r in batch.rows])
    loop.close()  # abandoned
    assert not batch.open
    assert set(statuses(db).values()) == {"TODO"}
    again = [len(b) for b in db.claim("jobs", where={"status": "TODO"}, chunk_size=10,
                                       set_values={"status": "TAKEN"})]  # fmt: skip
    assert again == [10, 10, 10]
    assert set(statuses(db).values()) == {"TAKEN"}


def test_abandoned_loop_by_an_exception_rolls_back(db: bulkops.Store) -> None:
    jobs(db, 30)
    with pytest.raises(KeyError):
        for batch in db.claim("jobs", where={"status": "TODO"}, chunk_size=10):
            batch.update("jobs", [{"id": r["id"], "status": "DONE"} for r in batch.rows])
            if batch.rows[0]["id"] > 10:
                raise KeyError("stop in the second batch")
    # the first batch committed when the second was fetched; the second rolled back
    assert Counter(statuses(db).values()) == {"DONE": 10, "TODO": 20}


def test_batch_without_with_commits_when_the_next_is_fetched(db: bulkops.Store) -> None:
    """No ``with``: each batch commits when the next one is fetched, the last when the
    loop ends. Kills: a batch without ``with`` rolled back or committed late (the loop
    would claim the same rows forever, or the end state would lack the last batch)."""
    jobs(db, 25)
    seen: list[list[int]] = []
    for batch in db.claim("jobs", where={"status": "TODO"}, chunk_size=10):
        seen.append([r["id"] for r in batch.rows])
        if len(seen) == 2:
            # the first batch is already committed: visible to a plain reader
            assert Counter(statuses(db).values())["DONE"] == 10
        batch.update("jobs", [{"id": r["id"], "status": "DONE"} for r in batch.rows])
    assert [len(s) for s in seen] == [10, 10, 5]
    assert sorted(i for s in seen for i in s) == list(range(1, 26))
    assert set(statuses(db).values()) == {"DONE"}


def test_order_by_claims_in_that_order(db: bulkops.Store) -> None:
    """order_by="prio" on shuffled priorities: each batch holds the next lowest
    priorities. Kills: order_by ignored (the key order would be used)."""
    jobs(db, 40, shuffle=True)
    order = []
    for batch in db.claim("jobs", where={"status": "TODO"}, chunk_size=8, order_by="prio",
                          set_values={"status": "DONE"}):  # fmt: skip
        with batch:
            order.append([r["prio"] for r in batch.rows])
    assert [sorted(b) for b in order] == [list(range(i, i + 8)) for i in range(0, 40, 8)]


def test_limit_under_concurrency(db_url: str, db: bulkops.Store) -> None:
    """Four claimers, each with limit=30 and chunk_size=7, from 300 rows: each takes
    exactly 30 rows (batches 7,7,7,7,2), no row twice. Kills: limit counted per batch
    instead of per loop, or ignored."""
    jobs(db, 300)

    def claimer(w: int) -> list[int]:
        mine: list[int] = []
        with bulkops.connect(db_url, retry=PATIENT) as store:
            for batch in store.claim("jobs", where={"status": "TODO"}, chunk_size=7, limit=30):
                with batch:
                    ids = [r["id"] for r in batch.rows]
                    store.update("jobs", [{"id": i, "status": f"W{w}"} for i in ids])
                    mine.extend(ids)
        return mine

    results = run_threads(4, claimer)
    assert [len(r) for r in results] == [30, 30, 30, 30]
    claimed = [i for r in results for i in r]
    assert len(set(claimed)) == 120
    got = Counter(statuses(db).values())
    assert got == {"TODO": 180, "W0": 30, "W1": 30, "W2": 30, "W3": 30}


@pytest.mark.parametrize("verb", ["insert", "upsert", "update", "delete"])
def test_statement_timeout_refused_on_sqlite(tmp_path: Path, verb: str) -> None:
    """SQLite cannot honour statement_timeout (Capabilities.statement_timeout is False):
    the call is refused with an error naming the option, before anything is written.
    Kills: the option silently ignored."""
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        raw.execute("INSERT INTO t VALUES (1, 'old')")
    with bulkops.connect(f"sqlite:///{path}") as db:
        assert db.capabilities.statement_timeout is False
        rows: list[Any] = [{"id": 1, "v": "new"}, {"id": 2, "v": "two"}]
        if verb == "delete":
            rows = [1]
        with pytest.raises(UnsupportedError, match="statement_timeout"):
            getattr(db, verb)("t", rows, statement_timeout=0.5)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT id, v FROM t").fetchall() == [(1, "old")]


def test_statement_timeout_refused_on_sqlite_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        raw.execute("INSERT INTO t VALUES (1, 'old')")
    with (
        bulkops.connect(f"sqlite:///{path}") as db,
        pytest.raises(UnsupportedError, match="statement_timeout"),
    ):
        db.sync("t", [{"id": 1, "v": "new"}], key="id", statement_timeout=0.5)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT id, v FROM t").fetchall() == [(1, "old")]
