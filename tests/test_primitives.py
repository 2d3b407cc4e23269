"""Concurrency-safe primitives: adjust, get_or_create, ensure, claim, atomic, sequence.

Each one is checked for its invariants under real concurrency (threads and processes,
each with its own connection) on every backend.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops import RetryPolicy
from bulkops.bench import escrow
from bulkops.errors import DeadlockError, SchemaError
from conftest import create, needs, rows_of

WORKER = str(Path(__file__).with_name("_primitives_worker.py"))
PATIENT = RetryPolicy(attempts=200, base_delay=0.01, max_delay=0.2)


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads started together; re-raise failures."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as error:  # reported after join
            errors.append(error)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def accounts(db: bulkops.Store, count: int, balance: int) -> None:
    create(
        db,
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("balance", sa.Integer, nullable=False),
    )
    db.insert("accounts", [{"id": i, "balance": balance} for i in range(count)])


# ------------------------------------------------------------------------ adjust


def test_adjust_applies_refuses_and_reports_missing(db: bulkops.Store) -> None:
    accounts(db, 5, 10)
    report = db.adjust(
        "accounts", {0: -3, 1: -11, 2: 5, 99: 1, 3: 15}, column="balance", min_value=0, max_value=20
    )
    assert (report.updated, report.refused, report.not_found) == (2, 2, 1)
    assert sorted(report.refused_keys) == [1, 3] and report.not_found_keys == [99]
    assert report.rows_in == report.accounted == 5
    assert {r["id"]: r["balance"] for r in rows_of(db, "accounts")} == {
        0: 7, 1: 10, 2: 15, 3: 10, 4: 10,
    }  # fmt: skip


def test_adjust_atomic_is_all_or_nothing(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    accounts(db, 3, 5)
    report = db.adjust("accounts", {0: -5, 1: -6}, column="balance", min_value=0, atomic=True)
    assert report.updated == 0 and report.refused_keys == [1] and report.stopped
    assert [r["balance"] for r in rows_of(db, "accounts")] == [5, 5, 5]
    report = db.adjust("accounts", {0: -5, 7: 1}, column="balance", min_value=0, atomic=True)
    assert report.updated == 0 and report.not_found_keys == [7]
    report = db.adjust("accounts", {0: -5, 1: -5}, column="balance", min_value=0, atomic=True)
    assert report.updated == 2 and report.ok
    assert [r["balance"] for r in rows_of(db, "accounts")] == [0, 0, 5]


def test_work_after_a_refused_atomic_adjust_in_the_same_block(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    # The refused adjust rolls back its savepoint, and with it anything it created
    # there (PostgreSQL: its staging table); the next statement must not miss it.
    accounts(db, 2, 5)
    with db.atomic():
        refused = db.adjust("accounts", {0: -10}, column="balance", min_value=0, atomic=True)
        assert refused.refused == 1
        assert db.adjust("accounts", {0: -1}, column="balance", min_value=0).updated == 1
        assert db.upsert("accounts", [{"id": 1, "balance": 9}]).updated == 1
    assert [r["balance"] for r in rows_of(db, "accounts")] == [4, 9]


def test_adjust_of_a_big_chunk_applies_every_other_key_once(db: bulkops.Store) -> None:
    # One chunk of 30,000 keys (the default chunk is bigger) with a refused and a
    # missing key: SQLite's executemany has applied the others before the count tells,
    # so the chunk is rolled back to its savepoint and redone in statements split under
    # the parameter limit; nothing may be applied twice, nor lost. The same inside a
    # transaction, and atomic=True applies nothing.
    needs(db, "declared_columns", "one UpdateItem per key: no set-based statement")
    n = 30_000
    accounts(db, n, 10)
    deltas = dict.fromkeys(range(n), -1)
    deltas[7] = -11  # would go below zero: refused
    deltas[n + 5] = -1  # no such account
    for round_, scope in enumerate(("own", "atomic()")):
        if scope == "own":
            report = db.adjust("accounts", deltas, column="balance", min_value=0)
        else:
            with db.atomic():
                report = db.adjust("accounts", deltas, column="balance", min_value=0)
        assert (report.updated, report.refused, report.not_found) == (n - 1, 1, 1), scope
        assert report.refused_keys == [7] and report.not_found_keys == [n + 5]
        assert report.chunks == 1
        balances = {r["id"]: r["balance"] for r in rows_of(db, "accounts")}
        assert balances[7] == 10
        assert Counter(b for i, b in balances.items() if i != 7) == {9 - round_: n - 1}
    report = db.adjust("accounts", deltas, column="balance", min_value=0, atomic=True)
    assert report.updated == 0 and report.unchanged == n - 1 and report.refused_keys == [7]
    assert sum(r["balance"] for r in rows_of(db, "accounts")) == 10 + 8 * (n - 1)


def test_adjust_sends_the_readme_s_statements_per_chunk(db: bulkops.Store) -> None:
    """README: per chunk, whatever its size, when every key applies: one statement on
    SQLite; three on PostgreSQL (the transaction's id, kept to learn a commit's outcome
    after a lost connection; the key-order row lock; the UPDATE)."""
    needs(db, "declared_columns", "one UpdateItem per key: no set-based statement")
    accounts(db, 3000, 0)
    from bulkops.testing import count_queries

    with count_queries(db, include_transaction_control=False) as counted:
        report = db.adjust(
            "accounts", {i: 1 for i in range(3000)}, column="balance", chunk_size=1000
        )
    assert report.updated == 3000 and report.chunks == 3
    per_chunk = {"sqlite": 1, "postgresql": 3}[db.capabilities.name]
    # + 1: the table's definition, read once per call
    assert counted.count == 1 + 3 * per_chunk, counted.statements
    assert sum(r["balance"] for r in rows_of(db, "accounts")) == 3000


def test_adjust_costs_statements_per_chunk_not_per_key(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "one UpdateItem per key: no set-based statement")
    accounts(db, 5000, 0)
    report = db.adjust("accounts", {i: 1 for i in range(5000)}, column="balance", chunk_size=1000)
    assert report.updated == 5000 and report.chunks == 5
    assert report.statements <= 5 * 4
    pairs = [(i % 10, "1") for i in range(100)]  # pairs for one key are summed, as numbers
    report = db.adjust("accounts", pairs, column="balance")
    assert report.updated == 10 and report.duplicates == 90
    assert rows_of(db, "accounts")[3]["balance"] == 11


def test_adjust_decimal_money(db: bulkops.Store) -> None:
    db.create_table("wallet", {"id": "integer", "balance": "decimal"}, key="id")
    db.insert("wallet", [{"id": 1, "balance": Decimal("10.00")}])
    for _ in range(10):
        db.adjust("wallet", {1: Decimal("0.10")}, column="balance")
    assert db.get_many("wallet", [1])[1]["balance"] == Decimal("11.00")


def test_bank_transfers_conserve_the_total(db_url: str, db: bulkops.Store) -> None:
    """8 workers, 1,000 random transfers between 50 accounts, each an atomic block of
    one guarded adjust and one ledger row: total conserved, nothing negative, every
    transfer applied once or refused."""
    needs(db, "transactions", "no transactions across requests")
    accounts(db, 50, 100)
    create(
        db,
        "ledger",
        sa.Column("transfer", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("source", sa.Integer),
        sa.Column("target", sa.Integer),
        sa.Column("amount", sa.Integer),
    )
    plan = [(n, *random.Random(n).sample(range(50), 2), random.Random(-n).randint(1, 80))
            for n in range(1000)]  # fmt: skip

    def worker(w: int) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        with bulkops.connect(db_url, retry=PATIENT) as store:

            @store.atomic(retry=PATIENT)
            def transfer(n: int, source: int, target: int, amount: int) -> bool:
                report = store.adjust(
                    "accounts", {source: -amount, target: amount}, column="balance",
                    min_value=0, atomic=True,
                )  # fmt: skip
                if report.updated:
                    store.insert("ledger", [{"transfer": n, "source": source,
                                             "target": target, "amount": amount}])  # fmt: skip
                return bool(report.updated)

            for n, source, target, amount in plan[w::8]:
                outcomes["applied" if transfer(n, source, target, amount) else "refused"] += 1
        return outcomes

    totals = sum(run_threads(8, worker), Counter())
    assert totals["applied"] + totals["refused"] == 1000
    balances = {r["id"]: r["balance"] for r in rows_of(db, "accounts")}
    assert sum(balances.values()) == 50 * 100
    assert min(balances.values()) >= 0
    ledger = rows_of(db, "ledger", order_by="transfer")
    assert len(ledger) == totals["applied"]
    expected = Counter({i: 100 for i in range(50)})
    for entry in ledger:  # every applied transfer moved money exactly once
        expected[entry["source"]] -= entry["amount"]
        expected[entry["target"]] += entry["amount"]
    assert balances == dict(expected)


# ----------------------------------------------------------------- get_or_create


def wallets(db: bulkops.Store) -> None:
    create(
        db,
        "wallets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False, unique=True),
        sa.Column("balance", sa.Integer, nullable=False),
    )


def test_get_or_create(db: bulkops.Store) -> None:
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)
    row, created = db.get_or_create("wallets", {"user_id": 7}, defaults={"balance": 0})
    assert created and row["user_id"] == 7 and row["balance"] == 0 and row["id"] is not None
    again, created = db.get_or_create("wallets", {"user_id": "7"}, defaults={"balance": 50})
    assert not created and again == row
    with pytest.raises(SchemaError, match="unique"):
        db.get_or_create("wallets", {"balance": 0})


def test_get_or_create_100_concurrent_callers_make_one_row(db_url: str, db: bulkops.Store) -> None:
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)

    def caller(i: int) -> tuple[dict[str, Any], bool]:
        with bulkops.connect(db_url, retry=PATIENT) as store:
            return store.get_or_create("wallets", {"user_id": 42}, defaults={"balance": i})

    results = run_threads(100, caller)
    assert len(results) == 100
    assert all(row["user_id"] == 42 for row, _ in results)
    assert sum(created for _, created in results) == 1
    assert len({row["id"] for row, _ in results}) == 1
    assert len(rows_of(db, "wallets")) == 1


def test_ensure_creates_missing_in_few_statements(db: bulkops.Store) -> None:
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)
    db.insert("wallets", [{"user_id": u, "balance": 5} for u in range(0, 1000, 2)])
    before = db.backend.statements
    found = db.ensure("wallets", [{"user_id": u, "balance": 0} for u in range(1000)], key="user_id")
    assert sorted(found) == list(range(1000))
    assert found[2]["balance"] == 5 and found[3]["balance"] == 0
    assert db.backend.statements - before <= 6
    assert len({r["id"] for r in found.values()}) == 1000
    assert len(rows_of(db, "wallets")) == 1000


def test_ensure_across_chunk_boundaries_creates_only_the_missing(db: bulkops.Store) -> None:
    """Chunks of 7 over 50 keys, half of them existing, one key given twice across a
    chunk boundary: every key comes back once, the existing rows keep their values
    (the given values apply only to created rows), the created ones are exactly the
    missing ones, and no key gets two rows."""
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)
    assert db.ensure("wallets", [], key="user_id") == {}
    db.insert("wallets", [{"user_id": u, "balance": 5} for u in range(0, 50, 2)])
    given = [{"user_id": u, "balance": 0} for u in range(50)]
    given.insert(9, {"user_id": 3, "balance": 0})  # key 3 again, in the second chunk
    found = db.ensure("wallets", given, key="user_id", chunk_size=7)
    assert sorted(found) == list(range(50))
    assert all(found[u]["user_id"] == u for u in found)
    assert Counter(r["balance"] for r in found.values()) == {5: 25, 0: 25}
    assert all(found[u]["balance"] == (5 if u % 2 == 0 else 0) for u in found)
    stored = rows_of(db, "wallets")
    assert len(stored) == 50 and len({r["user_id"] for r in stored}) == 50
    assert {r["user_id"]: r for r in stored} == found
    again = db.ensure("wallets", [{"user_id": u, "balance": 9} for u in range(60)], key="user_id")
    assert again == {**found, **{u: again[u] for u in range(50, 60)}}
    assert all(again[u]["balance"] == 9 for u in range(50, 60))
    assert len(rows_of(db, "wallets")) == 60


def test_ensure_concurrent_callers_make_one_row_per_key(db_url: str, db: bulkops.Store) -> None:
    """Eight callers ensure overlapping key ranges (in different orders) at once: one
    row per key, and every caller sees the same row for a key."""
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)
    db.insert("wallets", [{"user_id": u, "balance": -1} for u in range(0, 300, 3)])

    def caller(i: int) -> dict[Any, dict[str, Any]]:
        keys = list(range(i * 25, i * 25 + 100))
        random.Random(i).shuffle(keys)
        with bulkops.connect(db_url, retry=PATIENT) as store:
            rows = [{"user_id": u, "balance": i} for u in keys]
            return store.ensure("wallets", rows, key="user_id", chunk_size=30)

    results = run_threads(8, caller)
    assert all(r is not None and len(r) == 100 for r in results)
    stored = {r["user_id"]: r for r in rows_of(db, "wallets")}
    assert (
        len(rows_of(db, "wallets")) == len(stored) == len(set(range(275)) | set(range(0, 300, 3)))
    )
    for found in results:
        for u, row in found.items():
            assert row == stored[u]
    assert all(stored[u]["balance"] == -1 for u in range(0, 300, 3))


def test_ensure_stopped_by_a_bad_row_leaves_nothing_where_one_writer(db: bulkops.Store) -> None:
    """A value that does not convert stops ensure with an error naming the column; where
    the database has one writer at a time (SQLite) the call is one transaction, so the
    rows of the chunks before it are not left behind either."""
    needs(db, "unique_constraints", "looks up by a unique column besides the key")
    wallets(db)
    rows = [{"user_id": u, "balance": 0} for u in range(20)]
    rows.append({"user_id": 99, "balance": "lots"})
    with pytest.raises(bulkops.errors.ConversionError, match="balance"):
        db.ensure("wallets", rows, key="user_id", chunk_size=7)
    left = rows_of(db, "wallets")
    if db.capabilities.one_writer:
        assert left == []
    else:  # chunk by chunk: the chunks before the bad one stay
        assert [r["user_id"] for r in left] == list(range(14))


def test_ensure_inside_atomic_rolls_back_with_the_block(db: bulkops.Store) -> None:
    needs(db, "transactions", "has no multi-request transactions")  # (nor unique constraints)
    wallets(db)
    db.insert("wallets", [{"user_id": 1, "balance": 5}])
    with pytest.raises(RuntimeError, match="undo"), db.atomic():
        found = db.ensure(
            "wallets", [{"user_id": u, "balance": 0} for u in range(5)], key="user_id"
        )
        assert sorted(found) == list(range(5))
        raise RuntimeError("undo")
    assert [(r["user_id"], r["balance"]) for r in rows_of(db, "wallets")] == [(1, 5)]


# ------------------------------------------------------------------------ claim


def work_table(db: bulkops.Store, count: int) -> None:
    create(
        db,
        "work",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.Text, nullable=False),
    )
    create(
        db,
        "processed",
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("worker", sa.Integer),
    )
    db.insert("work", [{"id": i, "status": "TODO"} for i in range(count)])


def test_claim_batches_commit_or_release(db: bulkops.Store) -> None:
    needs(db, "row_locks", "no row locks to claim rows with")
    work_table(db, 250)
    seen = []
    for batch in db.claim("work", where={"status": "TODO"}, chunk_size=100, limit=150):
        with batch:
            seen.append([r["id"] for r in batch.rows])
            batch.update("work", [{"id": r["id"], "status": "DONE"} for r in batch.rows])
    assert [len(ids) for ids in seen] == [100, 50] and seen[0] == list(range(100))
    with pytest.raises(RuntimeError, match="boom"):
        for batch in db.claim("work", where={"status": "TODO"}, chunk_size=10):
            with batch:
                batch.update("work", [{"id": r["id"], "status": "DONE"} for r in batch.rows])
                raise RuntimeError("boom")
    statuses = Counter(r["status"] for r in rows_of(db, "work"))
    assert statuses == {"DONE": 150, "TODO": 100}  # the failed batch was released
    batches = list(
        db.claim("work", where={"status": "TODO"}, chunk_size=60, set_values={"status": "X"})
    )
    assert [len(b) for b in batches] == [60, 40]
    assert Counter(r["status"] for r in rows_of(db, "work")) == {"DONE": 150, "X": 100}


def test_concurrent_claimers_never_share_a_row(db_url: str, db: bulkops.Store) -> None:
    needs(db, "row_locks", "no row locks to claim rows with")
    work_table(db, 2000)

    def claimer(w: int) -> list[int]:
        mine: list[int] = []
        with bulkops.connect(db_url, retry=PATIENT) as store:
            for batch in store.claim("work", where={"status": "TODO"}, chunk_size=50):
                with batch:
                    ids = [r["id"] for r in batch.rows]
                    store.update("work", [{"id": i, "status": "DONE"} for i in ids])
                    mine.extend(ids)
        return mine

    claimed = [i for ids in run_threads(4, claimer) for i in ids]
    assert sorted(claimed) == list(range(2000))  # every row once, none twice


def test_claim_worker_killed_mid_batch_releases_its_rows(
    db_url: str, db: bulkops.Store, tmp_path: Path
) -> None:
    """4 worker processes claiming batches of 100 from 20,000 rows; one is killed with
    SIGKILL while it holds a batch: every row is processed exactly once."""
    needs(db, "row_locks", "no row locks to claim rows with")
    work_table(db, 20_000)

    def start(worker: int, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, WORKER, "claim", db_url, str(worker), *extra],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    victim = start(0, "--die-after", "3")
    line = victim.stdout.readline() if victim.stdout else ""
    while line and not line.startswith("holding"):
        line = victim.stdout.readline() if victim.stdout else ""
    assert line.startswith("holding"), "the victim never claimed its third batch"
    held = [int(i) for i in line.split()[1].split(",")]
    others = [start(w) for w in (1, 2, 3)]
    time.sleep(0.5)  # the others are working around the held batch
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for process in others:
        assert process.wait(timeout=300) == 0
        if process.stdout:
            process.stdout.close()
    if victim.stdout:
        victim.stdout.close()
    processed = rows_of(db, "processed", order_by="n")
    ids = Counter(r["id"] for r in processed)
    assert sorted(ids) == list(range(20_000))
    assert max(ids.values()) == 1  # exactly once
    assert all(r["worker"] != 0 for r in processed if r["id"] in set(held))
    assert Counter(r["status"] for r in rows_of(db, "work")) == {"DONE": 20_000}


# ------------------------------------------------------------------------ atomic


def test_atomic_forms_commit_roll_back_and_do_not_retry_other_errors(
    db: bulkops.Store,
) -> None:
    needs(db, "transactions", "no transactions across requests")
    accounts(db, 2, 10)
    with db.atomic():
        db.adjust("accounts", {0: 1}, column="balance")
    with pytest.raises(ValueError), db.atomic():
        db.adjust("accounts", {0: 100}, column="balance")
        raise ValueError("no")
    calls = []

    @db.atomic()
    def failing() -> None:
        calls.append(1)
        db.adjust("accounts", {1: 5}, column="balance")
        raise KeyError("not transient")

    with pytest.raises(KeyError):
        failing()
    assert len(calls) == 1  # a non-transient error is not retried
    for attempt in db.atomic():
        with attempt:
            db.adjust("accounts", {1: 1}, column="balance")
    assert [r["balance"] for r in rows_of(db, "accounts")] == [11, 11]


def test_atomic_block_is_rerun_on_a_transient_error(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    accounts(db, 1, 0)
    waits: list[float] = []
    tries = []

    @db.atomic(retry=RetryPolicy(attempts=3, sleep=waits.append))
    def flaky() -> None:
        tries.append(1)
        db.adjust("accounts", {0: 1}, column="balance")
        if len(tries) < 3:
            raise DeadlockError("deadlock detected (simulated)")

    flaky()
    assert len(tries) == 3 and len(waits) == 2
    assert rows_of(db, "accounts")[0]["balance"] == 1  # the failed tries rolled back


@pytest.mark.postgres
def test_forced_deadlock_inside_atomic_is_retried_and_both_commit(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        accounts(db, 2, 0)
    barrier = threading.Barrier(2)
    tries = Counter[int]()

    def side(i: int) -> None:
        first, second = (0, 1) if i == 0 else (1, 0)
        with bulkops.connect(pg_url) as store:

            @store.atomic(retry=RetryPolicy(attempts=5, base_delay=0.01))
            def block() -> None:
                tries[i] += 1
                store.update("accounts", [{"id": first, "balance": 10 + i}])
                if tries[i] == 1:
                    barrier.wait(timeout=10)  # both hold their first row: deadlock next
                store.update("accounts", [{"id": second, "balance": 10 + i}])

            block()

    run_threads(2, side)
    assert sum(tries.values()) == 3  # one side was the deadlock victim and ran again
    with bulkops.connect(pg_url) as db:
        balances = [r["balance"] for r in rows_of(db, "accounts")]
    assert balances[0] == balances[1]  # each block wrote both rows; the later one won


# ---------------------------------------------------------------------- sequence


def test_sequence_formats_and_never_repeats(db: bulkops.Store) -> None:
    import datetime as dt

    lots = db.sequence("lot:42", prefix="LOT-{year}{month}-", padding=4, suffix="/A", start=998)
    day = dt.date(2026, 3, 9)
    assert lots.allocate(3, today=day) == [
        "LOT-202603-0998/A",
        "LOT-202603-0999/A",
        "LOT-202603-1000/A",
    ]
    assert lots.allocate(1, today=day) == ["LOT-202603-1001/A"]  # wider than padding: longer
    other = db.sequence("lot:43")
    assert other.allocate_numbers(2) == [1, 2]  # each name counts on its own
    with pytest.raises(ValueError, match="only"):
        db.sequence("x", prefix="{week}")
    before = db.backend.statements
    numbers = db.sequence("big").allocate_numbers(500_000)
    assert db.backend.statements - before == 1  # one round trip
    assert len(set(numbers)) == 500_000


def test_sequence_across_processes_is_unique(
    db_url: str, db: bulkops.Store, tmp_path: Path
) -> None:
    """8 processes x 20 allocations of 5,000: 800,000 distinct values."""
    outs = [tmp_path / f"seq{i}.txt" for i in range(8)]
    processes = [
        subprocess.Popen([sys.executable, WORKER, "seq", db_url, "serials", "5000", "20", str(o)])
        for o in outs
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0
    values = [int(x) for o in outs for x in o.read_text().split()]
    assert len(values) == 800_000
    assert len(set(values)) == 800_000


# ------------------------------------------------------------------------ escrow


def test_escrow_release_with_two_concurrent_releasers(db_url: str, db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    escrow.create_tables(db.backend.engine)  # type: ignore[attr-defined]
    total = escrow.seed(db, 3, 5000)

    def releaser(i: int) -> int:
        with bulkops.connect(db_url, retry=PATIENT) as store:
            return escrow.release(store, 3)

    released = run_threads(2, releaser)
    assert sum(released) == 5000  # each escrow released exactly once
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM escrows WHERE status <> 'RELEASED'")
            ).scalar()
            == 0
        )
        paid = conn.execute(
            sa.text(
                "SELECT count(*), count(DISTINCT escrow_id) FROM wallet_transactions "
                "WHERE kind = 'release'"
            )
        ).one()
        assert tuple(paid) == (5000, 5000)
        amounts = [
            Decimal(str(a))
            for (a,) in conn.execute(sa.text("SELECT amount FROM wallet_transactions"))
        ]
        assert sum(amounts, Decimal(0)) == total  # commission + fees + net = escrowed, to the cent
        per_wallet = conn.execute(
            sa.text(
                "SELECT w.id, w.balance, (SELECT sum(amount) FROM wallet_transactions t "
                "WHERE t.wallet_id = w.id) FROM wallets w"
            )
        ).all()
    cent = Decimal("0.01")
    for _, balance, summed in per_wallet:
        # SQLite sums NUMERIC columns in floating point: compare to the cent.
        assert Decimal(str(balance)).quantize(cent) == Decimal(str(summed)).quantize(cent)
    expected_net = sum((escrow.split(r["amount"])[2] for r in rows_of(db, "escrows")), Decimal(0))
    with engine.connect() as conn:
        net_paid = sum(
            (Decimal(str(a)) for (a,) in conn.execute(
                sa.text("SELECT amount FROM wallet_transactions WHERE kind = 'release'")
            )),
            Decimal(0),
        )  # fmt: skip
    assert net_paid == expected_net  # payees got exactly the net of every escrow
