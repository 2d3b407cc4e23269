"""Primitives benchmark: bulkops adjust, ensure, sequence allocation and the escrow release
against the one-statement-per-key code they replace, on SQLite and PostgreSQL.

Four operations, each timed as bulkops does it and as it is usually written by hand (the
raw driver, ``cursor.execute`` once per key, all in one transaction unless said otherwise):

- adjust: ``db.adjust("products", {id: delta})`` of N keys (deltas -1..-5) against
  ``UPDATE products SET stock = stock + ? WHERE id = ?`` per key;
- ensure: ``db.ensure("users", rows, key="email")`` of N keys, half of them existing,
  against ``SELECT … WHERE email = ?`` and, if missing, ``INSERT … RETURNING`` per key;
- allocate: ``db.sequence("lot:42", prefix="LOT-", padding=7).allocate(N)`` against one
  ``SELECT nextval('bench_seq')`` (PostgreSQL) or ``UPDATE counter SET v = v + 1
  RETURNING v`` (SQLite) per number;
- escrow: ``bulkops.bench.escrow.release`` (bulk verbs, one transaction per batch of 100)
  against ``escrow.release_naive`` (one query per escrow and lookup, one transaction per
  escrow), each on freshly created tables seeded alike.

Against the best hand-written set-based code as well (target: bulkops at >= 0.8x of it):
one guarded ``UPDATE … FROM unnest(ids, deltas)`` (SQLite: ``executemany`` of the guarded
UPDATE); ``INSERT … ON CONFLICT DO NOTHING RETURNING`` plus one SELECT; ``nextval`` over
``generate_series`` (SQLite: the counter moved by n at once). These get the same input as
bulkops (an unsorted dict, a list of rows) and sort it in the timed call. On PostgreSQL a
further adjust contender locks the rows in key order before the same UPDATE, as bulkops
does so that concurrent adjusts cannot deadlock: what that costs bounds bulkops' ratio.

Every ratio is printed with PASS or MISS against its target, and each MISS with what
bounds it, measured in the same run (for a loop ratio: how far the best set-based code
gets over that loop; for a set-based ratio: the statements and transactions bulkops
spends on top, and on PostgreSQL the key-order lock).

Every contender works on freshly reset tables (reset and connecting are not timed); the
timed call is measured with ``time.perf_counter`` and the statements it sends are counted
(bulkops: ``db.backend.statements`` before and after; hand-written: one per execute, the
escrow one through the backend's statement tracer on its SQLAlchemy engine). After every
run the database is checked: final sums, row counts, every key resolved, numbers
distinct, escrows released and the money conserved to the cent.

    python benchmarks/primitives.py                   # both backends, full size
    python benchmarks/primitives.py --quick           # everything 10x smaller
    python benchmarks/primitives.py --backend sqlite --repeat 3
    python benchmarks/primitives.py --backend postgres --dsn postgresql://me@db/scratch
    python benchmarks/primitives.py --json > figures.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from _common import (
    BestOf,
    conclude,
    missed_targets,
    ok_cell,
    postgres,
    ratio,
    ratio_table,
    report_console,
    results_table,
    status_of,
)
from rich.console import Console

import bulkops
from bulkops.backends.resolve import statement_tracer
from bulkops.bench import escrow

Row = dict[str, Any]

DEFAULT_ADJUST_KEYS = 100_000
DEFAULT_ENSURE_KEYS = 100_000
DEFAULT_NUMBERS = 500_000
DEFAULT_ESCROWS = 10_000
QUICK_DIVISOR = 10

TARGET_ADJUST = 10.0
TARGET_ENSURE = 20.0
TARGET_ALLOCATE = 100.0
TARGET_ESCROW = 10.0
TARGET_VS_SET = 0.8  # bulkops against the best hand-written set-based code

INITIAL_STOCK = 1_000
SEQUENCE_NAME = "lot:42"
SEQUENCE_PREFIX = "LOT-"
SEQUENCE_PADDING = 7
NAIVE_SEQUENCE = "bench_seq"
BULK_PROJECT = 1
NAIVE_PROJECT = 2
ESCROW_SEED = 1
SEED = 20_240_101
CENT = Decimal("0.01")
TABLES = ("products", "users", "counter", "escrows", "wallets", "wallet_transactions")
BULKOPS_SEQUENCE_LIKE = "bulkops\\_seq\\_lot\\_42\\_%"  # bulkops' name for "lot:42"

SECTIONS = ("adjust", "ensure", "allocate", "escrow")
BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
ONE_TRANSACTION = "one transaction"


# -------------------------------------------------------------------------- targets


class Target:
    """One database under test: its bulkops URL, admin access for the untimed work
    (schema, loading, checks) and driver connections for the hand-written contenders."""

    backend = ""
    mark = "?"  # the driver's placeholder

    @property
    def url(self) -> str:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """``text`` written with ``?`` placeholders, in this driver's style."""
        return text if self.mark == "?" else text.replace("?", self.mark)

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        raise NotImplementedError

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def load(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def analyze(self, table: str) -> None:
        """Fresh planner statistics (PostgreSQL); nothing to do on SQLite."""

    def fresh(self) -> None:
        """Nothing left of a previous run: no tables, no sequences."""
        raise NotImplementedError

    def settle(self) -> None:
        raise NotImplementedError

    def raw(self) -> RawConnection:
        raise NotImplementedError

    def info(self) -> dict[str, str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release admin connections and drop what the benchmark created."""


class RawConnection:
    """A driver connection for a hand-written contender: ``begin()``, ``cursor``,
    ``commit()``. sqlite3 runs in autocommit mode with explicit BEGIN/COMMIT; psycopg opens
    its transaction on the first statement."""

    def __init__(self, conn: Any, explicit_begin: bool) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.explicit_begin = explicit_begin

    def begin(self) -> None:
        if self.explicit_begin:
            self.cursor.execute("BEGIN")

    def commit(self) -> None:
        if self.explicit_begin:
            self.cursor.execute("COMMIT")
        else:
            self.conn.commit()

    def close(self) -> None:
        self.cursor.close()
        self.conn.close()


class SQLiteTarget(Target):
    """A file in the temporary directory, deleted and recreated before every run."""

    backend = "sqlite"
    mark = "?"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        with closing(self._connect()) as conn:
            conn.execute(statement, params)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(self._connect()) as conn:
            return conn.execute(statement, params).fetchall()

    def load(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        with closing(self._connect()) as conn:
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            conn.execute("COMMIT")

    def fresh(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def settle(self) -> None:
        gc.collect()
        if hasattr(os, "sync"):
            os.sync()

    def raw(self) -> RawConnection:
        return RawConnection(self._connect(), explicit_begin=True)

    def info(self) -> dict[str, str]:
        with closing(self._connect()) as conn:
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {
            "sqlite_version": sqlite3.sqlite_version,
            "journal_mode": str(journal),
            "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                synchronous, str(synchronous)
            ),
        }

    def close(self) -> None:
        self.fresh()


class PostgresTarget(Target):
    """A database on a server (the throwaway cluster or ``--dsn``); the benchmark's tables
    and sequences are dropped before every run and at the end."""

    backend = "postgresql"
    mark = "%s"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.can_checkpoint = True

    @property
    def url(self) -> str:
        return self.dsn

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(self.sql(statement), params)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(self.sql(statement), params).fetchall()

    def load(self, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        self.analyze(table)

    def analyze(self, table: str) -> None:
        self.conn.execute(f"VACUUM (ANALYZE) {table}")

    def leftovers(self) -> list[str]:
        """The benchmark's tables and sequences that exist now."""
        found = [
            name
            for name in (*TABLES, NAIVE_SEQUENCE)
            if self.conn.execute("SELECT to_regclass(%s)", (name,)).fetchone() != (None,)
        ]
        found += self.bulkops_sequences()
        return found

    def bulkops_sequences(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT quote_ident(relname) FROM pg_class WHERE relkind = 'S' AND relname LIKE %s "
            "AND relnamespace = current_schema()::regnamespace",
            (BULKOPS_SEQUENCE_LIKE,),
        ).fetchall()
        return [r[0] for r in rows]

    def fresh(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
        for name in (NAIVE_SEQUENCE, *self.bulkops_sequences()):
            self.conn.execute(f"DROP SEQUENCE IF EXISTS {name}")

    def settle(self) -> None:
        gc.collect()
        if self.can_checkpoint:
            try:
                self.conn.execute("CHECKPOINT")
            except psycopg.Error:  # not a superuser (or pg_checkpoint) on --dsn
                self.can_checkpoint = False

    def raw(self) -> RawConnection:
        return RawConnection(psycopg.connect(self.dsn), explicit_begin=False)

    def info(self) -> dict[str, str]:
        out = {}
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
            row = self.conn.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
        return out

    def close(self) -> None:
        try:
            self.fresh()
        finally:
            self.conn.close()


# ------------------------------------------------------------------------ contenders


@dataclass
class Outcome:
    """What a timed call gave back, and how many data statements it sent."""

    value: Any
    statements: int


@dataclass
class Result(BestOf):
    RATE_KEY = "items_per_second"
    key: str
    backend: str
    section: str
    name: str
    items: int
    bulkops: bool
    times: list[float] = field(default_factory=list)
    statements: int | None = None
    verified: bool = False
    skipped: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def units(self) -> int:
        return self.items


Timed = Callable[[], Outcome]  # the timed call
Contender = Callable[[], AbstractContextManager[Timed]]  # opens connections, untimed
Check = Callable[[Outcome], tuple[list[str], dict[str, Any]]]  # -> (problems, extra)


@dataclass
class Case:
    key: str
    section: str
    name: str
    items: int
    bulkops: bool
    contender: Contender
    reset: Callable[[], None]  # untimed, before every run
    check: Check  # after every run: the outcome and the database
    note: str = ""


def bulkops_session(target: Target, call: Callable[[bulkops.Store], Any]) -> Contender:
    """A Store opened untimed; the timed call is ``call(db)``, its statements counted."""

    @contextmanager
    def session() -> Iterator[Timed]:
        db = bulkops.connect(target.url)
        try:

            def run() -> Outcome:
                before = db.backend.statements
                value = call(db)
                return Outcome(value, db.backend.statements - before)

            yield run
        finally:
            db.close()

    return session


def raw_session(target: Target, work: Callable[[RawConnection], Outcome]) -> Contender:
    """A driver connection opened untimed; the timed call is ``work(raw)``."""

    @contextmanager
    def session() -> Iterator[Timed]:
        raw = target.raw()
        try:
            yield lambda: work(raw)
        finally:
            raw.close()

    return session


def cents(value: Any) -> Decimal:
    """A money value as the driver gives it (Decimal; on SQLite a REAL or an integer) to
    the cent."""
    return Decimal(str(value)).quantize(CENT)


# ----------------------------------------------------------------------- 1. adjust


def adjust_cases(target: Target, n: int) -> list[Case]:
    rng = random.Random(SEED)
    keys = list(range(1, n + 1))
    rng.shuffle(keys)  # a batch of orders comes in no particular key order
    deltas = {k: -rng.randint(1, 5) for k in keys}
    expected = (n, n * INITIAL_STOCK + sum(deltas.values()))
    # Every contender refuses to take stock below zero (the shop's rule): the guard.
    update = target.sql("UPDATE products SET stock = stock + ? WHERE id = ? AND stock + ? >= 0")
    key_type = "INTEGER" if target.backend == "sqlite" else "bigint"

    def reset() -> None:
        target.fresh()
        target.execute(f"CREATE TABLE products (id {key_type} PRIMARY KEY, stock int NOT NULL)")
        target.load("products", ("id", "stock"), ((i, INITIAL_STOCK) for i in range(1, n + 1)))

    def naive(raw: RawConnection) -> Outcome:
        cur = raw.cursor
        raw.begin()
        for k, delta in deltas.items():
            cur.execute(update, (delta, k, delta))
        raw.commit()
        return Outcome(None, len(deltas))

    # The best hand-written code: the whole batch in one statement, keys in order (sorted
    # in the timed call: it gets the same dict as bulkops).
    # PostgreSQL: one guarded UPDATE … FROM unnest(ids, deltas) RETURNING the keys it
    # applied; SQLite (in-process, no round trips): executemany of the guarded UPDATE.
    # Keys not applied (none here) would take one more SELECT to tell refused from missing.
    set_update = (
        "UPDATE products AS p SET stock = p.stock + d.delta "
        "FROM unnest(%s::bigint[], %s::int[]) AS d(id, delta) "
        "WHERE p.id = d.id AND p.stock + d.delta >= 0 RETURNING p.id"
    )
    # What bounds bulkops on PostgreSQL: the same UPDATE after locking the rows in key
    # order (concurrent adjusts cannot deadlock on each other), as bulkops does.
    lock_rows = "SELECT id FROM products WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"

    def set_based(locked: bool) -> Callable[[RawConnection], Outcome]:
        def work(raw: RawConnection) -> Outcome:
            cur = raw.cursor
            ordered = sorted(deltas.items())
            raw.begin()
            statements = 1
            if target.backend == "sqlite":
                cur.executemany(update, [(delta, k, delta) for k, delta in ordered])
                applied = cur.rowcount
            else:
                ids, ds = [k for k, _ in ordered], [d for _, d in ordered]
                if locked:
                    cur.execute(lock_rows, (ids,))
                    statements += 1
                cur.execute(set_update, (ids, ds))
                applied = len(cur.fetchall())
            if applied != len(ordered):  # refused or missing: which is which
                statements += 1
            raw.commit()
            return Outcome(applied, statements)

        return work

    def check(report_wanted: bool) -> Check:
        def inspect(outcome: Outcome) -> tuple[list[str], dict[str, Any]]:
            problems: list[str] = []
            extra: dict[str, Any] = {}
            if report_wanted:
                report: bulkops.Report = outcome.value
                got = (report.updated, report.refused, report.not_found)
                if got != (n, 0, 0):
                    problems.append(f"report says updated/refused/not_found {got}")
                extra = {"chunks": report.chunks, "report": str(report)}
            elif outcome.value is not None and outcome.value != n:
                problems.append(f"{outcome.value:,} keys applied, expected {n:,}")
            count, total = target.query("SELECT count(*), sum(stock) FROM products")[0]
            extra["sum_stock"] = int(total)
            if (count, int(total)) != expected:
                problems.append(f"count/sum(stock) {(count, total)}, expected {expected}")
            return problems, extra

        return inspect

    def bulk(db: bulkops.Store) -> bulkops.Report:
        return db.adjust("products", deltas, column="stock", min_value=0)

    per_row = "UPDATE products SET stock = stock + ? WHERE id = ? AND stock + ? >= 0"
    set_name = (
        f"sqlite3: executemany({per_row}), keys in order"
        if target.backend == "sqlite"
        else "psycopg: one UPDATE … FROM unnest(ids, deltas) … AND guard RETURNING id"
    )
    return [
        Case("adjust_naive", "adjust", f"{driver(target)}: {per_row}, per key", n, False,
             raw_session(target, naive), reset, check(False), note=ONE_TRANSACTION),
        Case("adjust_set", "adjust", set_name, n, False, raw_session(target, set_based(False)),
             reset, check(False), note=f"{ONE_TRANSACTION}; best hand-written, set-based"),
        *([Case("adjust_set_locked", "adjust",
                "psycopg: SELECT … ORDER BY id FOR UPDATE, then the same UPDATE … unnest", n,
                False, raw_session(target, set_based(True)), reset, check(False),
                note=f"{ONE_TRANSACTION}; rows locked in key order first, as bulkops does")]
          if target.backend == "postgresql" else []),
        Case("adjust_bulkops", "adjust",
             'bulkops: db.adjust("products", deltas, column="stock", min_value=0)',
             n, True, bulkops_session(target, bulk), reset, check(True)),
    ]  # fmt: skip


# ----------------------------------------------------------------------- 2. ensure


def email_of(i: int) -> str:
    return f"user{i:07d}@example.com"


def ensure_cases(target: Target, n: int) -> list[Case]:
    rng = random.Random(SEED + 1)
    rows = [{"email": email_of(i), "name": f"User {i}"} for i in range(n)]
    rng.shuffle(rows)
    existing = [(email_of(i), f"User {i}") for i in range(0, n, 2)]  # half the keys
    wanted = {r["email"] for r in rows}
    key_sql = "id INTEGER PRIMARY KEY" if target.backend == "sqlite" else "id serial PRIMARY KEY"
    select = target.sql("SELECT id, email, name FROM users WHERE email = ?")
    insert = target.sql("INSERT INTO users (email, name) VALUES (?, ?) RETURNING id, email, name")

    def reset() -> None:
        target.fresh()
        target.execute(f"CREATE TABLE users ({key_sql}, email text NOT NULL UNIQUE, name text)")
        target.load("users", ("email", "name"), existing)

    def naive(raw: RawConnection) -> Outcome:
        cur = raw.cursor
        found: dict[str, tuple[Any, ...]] = {}
        inserted = 0
        raw.begin()
        for row in rows:
            email = row["email"]
            cur.execute(select, (email,))
            got = cur.fetchone()
            if got is None:
                cur.execute(insert, (email, row["name"]))
                got = cur.fetchone()
                inserted += 1
            found[email] = got
        raw.commit()
        return Outcome(found, len(rows) + inserted)

    # The best hand-written code: insert the missing keys in one statement that skips
    # the existing ones and returns what it inserted, then one SELECT for the rest.
    # PostgreSQL: INSERT … SELECT FROM unnest(emails, names) ON CONFLICT DO NOTHING
    # RETURNING, then SELECT … WHERE email = ANY(rest). SQLite (in-process): executemany
    # of INSERT … ON CONFLICT DO NOTHING (executemany returns no rows), then one SELECT of
    # every key through json_each. Keys in order (a stable lock order).
    pg_insert = (
        "INSERT INTO users (email, name) SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ON CONFLICT (email) DO NOTHING RETURNING id, email, name"
    )
    pg_select = "SELECT id, email, name FROM users WHERE email = ANY(%s)"
    lite_insert = "INSERT INTO users (email, name) VALUES (?, ?) ON CONFLICT (email) DO NOTHING"
    lite_select = (
        "SELECT id, email, name FROM users WHERE email IN (SELECT value FROM json_each(?))"
    )

    def set_based(raw: RawConnection) -> Outcome:
        cur = raw.cursor
        ordered = sorted((r["email"], r["name"]) for r in rows)  # the same rows as bulkops
        raw.begin()
        if target.backend == "sqlite":
            cur.executemany(lite_insert, ordered)
            cur.execute(lite_select, (json.dumps([e for e, _ in ordered]),))
            found = {r[1]: r for r in cur.fetchall()}
        else:
            cur.execute(pg_insert, ([e for e, _ in ordered], [name for _, name in ordered]))
            found = {r[1]: r for r in cur.fetchall()}
            rest = [e for e, _ in ordered if e not in found]
            cur.execute(pg_select, (rest,))
            found.update((r[1], r) for r in cur.fetchall())
        raw.commit()
        return Outcome(found, 2)

    def check(as_dicts: bool) -> Check:
        def inspect(outcome: Outcome) -> tuple[list[str], dict[str, Any]]:
            problems = []
            found: dict[str, Any] = outcome.value
            ids = {e: (r["id"] if as_dicts else r[0]) for e, r in found.items()}
            if set(ids) != wanted:
                problems.append(f"resolved {len(ids):,} keys of {len(wanted):,}")
            stored = dict(target.query("SELECT email, id FROM users"))
            if len(stored) != n:
                problems.append(f"users holds {len(stored):,} rows, expected {n:,}")
            wrong = [e for e in wanted if ids.get(e) is None or ids.get(e) != stored.get(e)]
            if wrong:
                problems.append(f"{len(wrong):,} keys resolved to a wrong id (e.g. {wrong[0]})")
            return problems, {"rows_after": len(stored)}

        return inspect

    return [
        Case("ensure_naive", "ensure",
             f"{driver(target)}: SELECT by email, INSERT … RETURNING if missing, per key", n,
             False, raw_session(target, naive), reset, check(False), note=ONE_TRANSACTION),
        Case("ensure_set", "ensure",
             "sqlite3: executemany(INSERT … ON CONFLICT DO NOTHING), one SELECT … json_each"
             if target.backend == "sqlite" else
             "psycopg: INSERT … unnest … ON CONFLICT DO NOTHING RETURNING, SELECT = ANY(rest)",
             n, False, raw_session(target, set_based), reset, check(False),
             note=f"{ONE_TRANSACTION}; best hand-written, set-based"),
        Case("ensure_bulkops", "ensure", 'bulkops: db.ensure("users", rows, key="email")', n,
             True, bulkops_session(target, lambda db: db.ensure("users", rows, key="email")),
             reset, check(True)),
    ]  # fmt: skip


# --------------------------------------------------------------------- 3. allocate


def allocate_cases(target: Target, n: int) -> list[Case]:
    width = SEQUENCE_PADDING
    if target.backend == "sqlite":
        draw = "UPDATE counter SET v = v + 1 RETURNING v"
        last = "SELECT v FROM counter"
    else:
        draw = f"SELECT nextval('{NAIVE_SEQUENCE}')"
        last = f"SELECT last_value FROM {NAIVE_SEQUENCE}"

    def reset() -> None:
        target.fresh()
        if target.backend == "sqlite":
            target.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            target.execute("INSERT INTO counter (id, v) VALUES (1, 0)")
        else:
            target.execute(f"CREATE SEQUENCE {NAIVE_SEQUENCE}")

    def naive(raw: RawConnection) -> Outcome:
        cur = raw.cursor
        out = []
        raw.begin()
        for _ in range(n):
            cur.execute(draw)
            out.append(f"{SEQUENCE_PREFIX}{cur.fetchone()[0]:0{width}d}")
        raw.commit()
        return Outcome(out, n)

    # The best hand-written code: the whole block in one statement. PostgreSQL: nextval
    # over generate_series, drawn by the server, sent back as one array; SQLite: move
    # the counter by n in one UPDATE … RETURNING and number the block in Python.
    block = (
        "UPDATE counter SET v = v + ? RETURNING v"
        if target.backend == "sqlite"
        else f"SELECT array_agg(nextval('{NAIVE_SEQUENCE}')) FROM generate_series(1, %s)"
    )

    def set_based(raw: RawConnection) -> Outcome:
        cur = raw.cursor
        raw.begin()
        cur.execute(block, (n,))
        (got,) = cur.fetchone()
        raw.commit()
        numbers = range(got - n + 1, got + 1) if target.backend == "sqlite" else got
        return Outcome([f"{SEQUENCE_PREFIX}{v:0{width}d}" for v in numbers], 1)

    def bulk(formatted: bool) -> Contender:
        @contextmanager
        def session() -> Iterator[Timed]:
            db = bulkops.connect(target.url)
            try:
                seq = db.sequence(SEQUENCE_NAME, prefix=SEQUENCE_PREFIX, padding=width)
                seq.allocate_numbers(1)  # untimed: the sequence exists, as it would in use

                def run() -> Outcome:
                    before = db.backend.statements
                    value = seq.allocate(n) if formatted else seq.allocate_numbers(n)
                    return Outcome(value, db.backend.statements - before)

                yield run
            finally:
                db.close()

        return session

    def check(kind: str) -> Check:
        def inspect(outcome: Outcome) -> tuple[list[str], dict[str, Any]]:
            problems = []
            values: list[Any] = outcome.value
            distinct = len(set(values))
            if len(values) != n or distinct != n:
                problems.append(f"{len(values):,} values, {distinct:,} distinct, expected {n:,}")
            if kind in ("formatted", "set") and not all(
                v.startswith(SEQUENCE_PREFIX) and len(v) >= len(SEQUENCE_PREFIX) + width
                for v in values
            ):
                problems.append(f"values not formatted as {SEQUENCE_PREFIX}{'0' * width}")
            if kind != "naive" and outcome.statements != 1:
                problems.append(f"{outcome.statements} statements, expected 1 per allocate")
            extra: dict[str, Any] = {"first": values[0] if values else None,
                                     "last": values[-1] if values else None}  # fmt: skip
            if kind in ("naive", "set"):
                (final,) = target.query(last)[0]
                extra["counter_after"] = final
                if final != n:
                    problems.append(f"counter at {final:,} after {n:,} draws")
            return problems, extra

        return inspect

    per_number = (
        "UPDATE counter SET v = v + 1 RETURNING v, per number"
        if target.backend == "sqlite"
        else f"SELECT nextval('{NAIVE_SEQUENCE}'), per number"
    )
    seq_call = f'db.sequence("{SEQUENCE_NAME}", prefix="{SEQUENCE_PREFIX}", padding={width})'
    return [
        Case("allocate_naive", "allocate", f"{driver(target)}: {per_number}", n, False,
             raw_session(target, naive), reset, check("naive"),
             note=f"{ONE_TRANSACTION}; formatted as {SEQUENCE_PREFIX}{'0' * width} in Python"),
        Case("allocate_set", "allocate",
             "sqlite3: UPDATE counter SET v = v + n RETURNING v, the block numbered in Python"
             if target.backend == "sqlite" else
             f"psycopg: SELECT array_agg(nextval('{NAIVE_SEQUENCE}')) FROM generate_series(1, n)",
             n, False, raw_session(target, set_based), reset, check("set"),
             note=f"formatted as {SEQUENCE_PREFIX}{'0' * width} in Python; best hand-written"),
        Case("allocate_bulkops", "allocate", f"bulkops: {seq_call}.allocate(n)", n, True,
             bulk(True), reset, check("formatted")),
        Case("allocate_numbers", "allocate", "bulkops: the same, .allocate_numbers(n)", n,
             True, bulk(False), reset, check("numbers"),
             note="ints, no formatting: the round trip alone"),
    ]  # fmt: skip


# ----------------------------------------------------------------------- 4. escrow


def escrow_cases(target: Target, n: int) -> list[Case]:
    totals: dict[int, Decimal] = {}

    def reset(project: int) -> Callable[[], None]:
        def run() -> None:
            target.fresh()
            with bulkops.connect(target.url) as db:
                escrow.create_tables(engine_of(db))
                totals[project] = escrow.seed(db, project, n, seed=ESCROW_SEED)
            for table in ("escrows", "wallets", "wallet_transactions"):
                target.analyze(table)

        return run

    def naive_session(project: int) -> Contender:
        @contextmanager
        def session() -> Iterator[Timed]:
            db = bulkops.connect(target.url)
            engine = engine_of(db)
            sent = [0]

            def count(_: str) -> None:
                sent[0] += 1

            # Every statement its cursors send, as SQLAlchemy's before_cursor_execute
            # would see them (SAVEPOINT and RELEASE included).
            tracing = statement_tracer(engine).trace_statements(
                count, include_transaction_control=True
            )
            try:
                with tracing:
                    with engine.connect():
                        pass  # untimed: the pool holds the connection release_naive checks out

                    def run() -> Outcome:
                        sent[0] = 0
                        released = escrow.release_naive(engine, project)
                        return Outcome(released, sent[0])

                    yield run
            finally:
                db.close()

        return session

    def check(project: int) -> Check:
        def inspect(outcome: Outcome) -> tuple[list[str], dict[str, Any]]:
            problems = []
            if outcome.value != n:
                problems.append(f"released {outcome.value!r}, expected {n:,}")
            statuses = dict(
                target.query(
                    "SELECT status, count(*) FROM escrows WHERE project_id = ? "
                    "AND released_at IS NOT NULL GROUP BY status",
                    (project,),
                )
            )
            if statuses != {"RELEASED": n}:
                problems.append(f"escrows by status (released_at set): {statuses}")
            paid: dict[Any, Decimal] = defaultdict(Decimal)
            transactions = target.query("SELECT wallet_id, amount FROM wallet_transactions")
            for wallet_id, amount in transactions:
                paid[wallet_id] += cents(amount)
            total = sum(paid.values(), Decimal(0))
            if total != totals[project]:
                problems.append(f"transactions sum to {total}, escrowed {totals[project]}")
            wallets = target.query("SELECT id, balance FROM wallets")
            wrong = [w for w, balance in wallets if cents(balance) != paid.get(w, Decimal(0))]
            orphans = set(paid) - {w for w, _ in wallets}
            if wrong:
                problems.append(f"{len(wrong)} wallets' balance != sum of their transactions")
            if orphans:
                problems.append(f"transactions for {len(orphans)} wallets that do not exist")
            drift = sum(1 for _, balance in wallets if Decimal(str(balance)) != cents(balance))
            extra = {
                "escrowed": str(totals[project]),
                "transactions_sum": str(total),
                "wallets": len(wallets),
                "transactions": len(transactions),
                "balances_off_the_cent_as_stored": drift,
            }
            return problems, extra

        return inspect

    return [
        Case("escrow_naive", "escrow", f"escrow.release_naive(engine, {NAIVE_PROJECT})", n,
             False, naive_session(NAIVE_PROJECT), reset(NAIVE_PROJECT), check(NAIVE_PROJECT),
             note="SQLAlchemy text(): queries per escrow, one transaction per escrow"),
        Case("escrow_bulkops", "escrow", f"escrow.release(db, {BULK_PROJECT})", n, True,
             bulkops_session(target, lambda db: escrow.release(db, BULK_PROJECT)),
             reset(BULK_PROJECT), check(BULK_PROJECT),
             note="claim batches of 100; ensure, update, insert, adjust per batch"),
    ]  # fmt: skip


def engine_of(db: bulkops.Store) -> sa.Engine:
    """The SQLAlchemy Engine under a Store (both backends keep it as ``backend.engine``; the
    Backend protocol does not declare it)."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    return engine


def driver(target: Target) -> str:
    return "sqlite3" if target.backend == "sqlite" else "psycopg"


# ---------------------------------------------------------------------- measurement


def new_result(target: Target, case: Case) -> Result:
    return Result(
        key=f"{target.backend}:{case.key}",
        backend=target.backend,
        section=case.section,
        name=case.name,
        items=case.items,
        bulkops=case.bulkops,
        note=case.note,
    )


def run_once(
    target: Target, case: Case, result: Result, attempt: int, repeat: int, log: Console
) -> bool:
    """One timed run of ``case`` on freshly reset tables; False once it must not run again
    (failed, or the database did not check out)."""
    try:
        case.reset()
        with case.contender() as timed:
            target.settle()
            started = time.perf_counter()
            outcome = timed()
            elapsed = time.perf_counter() - started
        problems, extra = case.check(outcome)
        if not result.times or elapsed < min(result.times):
            result.extra.update(extra)  # the best run's details
            result.statements = outcome.statements
        result.times.append(elapsed)
        del outcome
        log.print(
            f"  {case.name}: run {attempt}/{repeat} {elapsed:.3f}s "
            f"({case.items / elapsed:,.0f}/s, {result.statements:,} statements)",
            highlight=False,
        )
        result.verified = not problems
        if problems:
            result.note = "; ".join(problems)
            log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
            return False
        return True
    except Exception as error:  # a contender that breaks: report it, run the others
        result.verified = False
        result.note = f"failed: {type(error).__name__}: {error}"
        log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
        log.print(traceback.format_exc(), highlight=False, markup=False)
    return False


def measure_section(
    target: Target, cases: list[Case], repeat: int, log: Console
) -> dict[str, Result]:
    """Best of ``repeat`` for each case, the repeats interleaved (round k runs every case
    once), so that a slow drift of a shared machine does not favour one contender."""
    results = {case.key: new_result(target, case) for case in cases}
    active = list(cases)
    for attempt in range(1, repeat + 1):
        active = [c for c in active if run_once(target, c, results[c.key], attempt, repeat, log)]
    return results


def build_cases(target: Target, sizes: dict[str, int]) -> dict[str, list[Case]]:
    return {
        "adjust": adjust_cases(target, sizes["adjust"]),
        "ensure": ensure_cases(target, sizes["ensure"]),
        "allocate": allocate_cases(target, sizes["allocate"]),
        "escrow": escrow_cases(target, sizes["escrow"]),
    }


def run_target(
    target: Target, sizes: dict[str, int], repeat: int, log: Console
) -> dict[str, Result]:
    label = BACKEND_LABELS[target.backend]
    log.print(f"[bold]{label}[/]: preparing the inputs", highlight=False)
    plan = build_cases(target, sizes)
    results: dict[str, Result] = {}
    for section in SECTIONS:
        log.print(f"[bold]{label}: {section}[/] ({sizes[section]:,})", highlight=False)
        for case_key, result in measure_section(target, plan[section], repeat, log).items():
            results[f"{target.backend}:{case_key}"] = result
    return results


# --------------------------------------------------------------------------- report


RATIOS: list[tuple[str, str, str, float | None]] = [
    ("adjust: db.adjust / per-key UPDATE", "adjust_bulkops", "adjust_naive", TARGET_ADJUST),
    ("ensure: db.ensure / per-key get-or-create", "ensure_bulkops", "ensure_naive",
     TARGET_ENSURE),
    ("allocate: sequence.allocate / per-number statement", "allocate_bulkops",
     "allocate_naive", TARGET_ALLOCATE),
    ("allocate: allocate_numbers (ints) / per-number statement (formatted)",
     "allocate_numbers", "allocate_naive", None),
    ("escrow: release / release_naive", "escrow_bulkops", "escrow_naive", TARGET_ESCROW),
    ("adjust: db.adjust / best hand-written set-based", "adjust_bulkops", "adjust_set",
     TARGET_VS_SET),
    ("ensure: db.ensure / best hand-written set-based", "ensure_bulkops", "ensure_set",
     TARGET_VS_SET),
    ("allocate: sequence.allocate / best hand-written one-statement block",
     "allocate_bulkops", "allocate_set", TARGET_VS_SET),
]  # fmt: skip

BASELINES = {
    "adjust": "adjust_naive",
    "ensure": "ensure_naive",
    "allocate": "allocate_naive",
    "escrow": "escrow_naive",
}


def ratios(results: dict[str, Result], backends: list[str]) -> list[dict[str, Any]]:
    out = []
    for backend in backends:
        for label, top, bottom, target in RATIOS:
            value = ratio(results.get(f"{backend}:{top}"), results.get(f"{backend}:{bottom}"))
            status = status_of(value, target)
            out.append(
                {
                    "backend": backend,
                    "ratio": label,
                    "value": value,
                    "target": target,
                    "status": status,
                    "bound": bound_of(results, backend, top, bottom) if status == "MISS" else "",
                }
            )
    return out


def bound_of(results: dict[str, Result], backend: str, top: str, bottom: str) -> str:
    """What keeps a ratio below its target, from figures of the same run: for a loop
    ratio, how far the best hand-written set-based code gets over the same loop; for a
    ratio over that code, the work bulkops does on top of it."""

    def get(key: str) -> Result | None:
        return results.get(f"{backend}:{key}")

    def times(a: str, b: str) -> str:
        value = ratio(get(a), get(b))
        return f"{value:.2f}x" if value is not None else "n/a"

    section = bottom.split("_")[0]
    mine, theirs = get(top), get(bottom)
    if bottom.endswith("_naive"):
        if get(f"{section}_set") is None:
            return "no set-based hand-written contender to compare with"
        said = (
            f"the best hand-written set-based code reaches {times(f'{section}_set', bottom)} "
            "over the same loop"
        )
        if section == "allocate":
            said += (
                f"; drawing the numbers alone (allocate_numbers, no text) "
                f"{times('allocate_numbers', bottom)}: the rest is formatting each number "
                "as text in Python"
            )
        return said
    parts = []
    if section == "adjust" and get("adjust_set_locked") is not None:
        parts.append(
            "that code after locking its rows in key order first (bulkops' deadlock "
            f"freedom) reaches {times('adjust_set_locked', bottom)} of itself"
        )
    if mine is not None and theirs is not None and mine.statements and theirs.statements:
        chunks = mine.extra.get("chunks")
        within = f" in {chunks} transactions" if chunks else ""
        parts.append(
            f"bulkops sends {mine.statements} statements{within}, the hand-written code "
            f"{theirs.statements} in one transaction"
        )
    return "; ".join(parts)


def print_report(
    config: dict[str, Any],
    results: dict[str, Result],
    ratio_rows: list[dict[str, Any]],
    console: Console,
) -> None:
    sizes = config["sizes"]
    console.print(
        f"\n[bold]bulkops primitives[/]: adjust {sizes['adjust']:,} keys, ensure "
        f"{sizes['ensure']:,} keys, allocate {sizes['allocate']:,} numbers, escrow release of "
        f"{sizes['escrow']:,} escrows; best of {config['repeat']}; Python {config['python']}, "
        f"bulkops {config['bulkops']}, psycopg {config['psycopg']}, SQLAlchemy "
        f"{config['sqlalchemy']}, {config['cpus']} CPUs shared by client and server",
        highlight=False,
    )
    for backend, note in config["databases"].items():
        console.print(f"{BACKEND_LABELS[backend]}: {note}", highlight=False)
    for backend, why in config["skipped_backends"].items():
        console.print(f"[yellow]{BACKEND_LABELS[backend]}: skipped: {why}[/]", highlight=False)
    console.print(f"timing: {config['timing']}", highlight=False)
    table = results_table(
        [
            ("backend", "left"),
            ("op", "left"),
            ("contender", "left"),
            ("items", "right"),
            ("seconds", "right"),
            ("items/s", "right"),
            ("statements", "right"),
            ("per item", "right"),
            ("speed-up", "right"),
            ("ok", "center"),
            ("notes", "left"),
        ]
    )
    previous: tuple[str, str] | None = None
    for result in results.values():
        where = (result.backend, result.section)
        if previous is not None and where != previous:
            table.add_section()
        first_of_backend = previous is None or previous[0] != result.backend
        first_of_section = where != previous
        previous = where
        best, rate = result.seconds, result.per_second
        baseline = results.get(f"{result.backend}:{BASELINES[result.section]}")
        speed_up = ratio(result, baseline) if result is not baseline else None
        statements = result.statements
        table.add_row(
            BACKEND_LABELS[result.backend] if first_of_backend else "",
            result.section if first_of_section else "",
            result.name,
            f"{result.items:,}",
            f"{best:.3f}" if best else "-",
            f"{rate:,.0f}" if rate else "-",
            f"{statements:,}" if statements is not None else "-",
            f"{statements / result.items:.4f}" if statements is not None else "-",
            f"{speed_up:.1f}x" if speed_up else "-",
            ok_cell(result),
            result.note,
        )
    console.print(table)

    for result in results.values():
        if result.section == "adjust" and result.extra.get("report"):
            console.print(
                f"{BACKEND_LABELS[result.backend]} adjust report: {result.extra['report']}",
                highlight=False,
            )
        if result.section == "escrow" and result.times:
            extra = result.extra
            console.print(
                f"{BACKEND_LABELS[result.backend]} {result.key.split(':')[1]}: escrowed "
                f"{extra.get('escrowed')}, wallet transactions sum {extra.get('transactions_sum')}"
                f" ({extra.get('transactions', 0):,} transactions, {extra.get('wallets', 0):,} "
                f"wallets; balances stored off the cent: "
                f"{extra.get('balances_off_the_cent_as_stored', 0)})",
                highlight=False,
            )

    targets = ratio_table(
        ratio_rows,
        "speed-ups (items/s over items/s, same items)",
        digits=1,
        target_spec="g",
        backends=BACKEND_LABELS,
    )
    console.print(targets)


# ----------------------------------------------------------------------------- main


def describe(target: Target, origin: str) -> str:
    info = target.info()
    if isinstance(target, SQLiteTarget):
        return (
            f"{origin}; sqlite {info['sqlite_version']}, journal_mode={info['journal_mode']}, "
            f"synchronous={info['synchronous']} (the defaults, for every contender); numeric "
            "columns are stored as REAL, so money is compared to the cent"
        )
    durable = info["fsync"] == "on" and info["synchronous_commit"] == "on"
    return (
        f"{origin}; PostgreSQL {info['server_version']}, fsync={info['fsync']}, "
        f"synchronous_commit={info['synchronous_commit']}, "
        f"full_page_writes={info['full_page_writes']}"
        + (
            ""
            if durable
            else " (NOT durable settings: commits cost less than on a production server, "
            "which favours the one-transaction-per-escrow contender)"
        )
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=("sqlite", "postgres", "both"), default="both",
        help="which database(s) to run on (default both)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="every size 10x smaller")
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs (default 1)")
    parser.add_argument(
        "--dsn", help="postgresql://... of an existing server (default: a throwaway cluster)"
    )
    parser.add_argument(
        "--adjust-keys", type=int, help=f"keys to adjust (default {DEFAULT_ADJUST_KEYS:,})"
    )
    parser.add_argument(
        "--ensure-keys", type=int, help=f"keys to ensure (default {DEFAULT_ENSURE_KEYS:,})"
    )
    parser.add_argument(
        "--numbers", type=int, help=f"numbers to allocate (default {DEFAULT_NUMBERS:,})"
    )
    parser.add_argument(
        "--escrows", type=int, help=f"escrows to release (default {DEFAULT_ESCROWS:,})"
    )
    parser.add_argument("--dir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON")
    args = parser.parse_args(argv)
    scale = QUICK_DIVISOR if args.quick else 1
    for name, default in (
        ("adjust_keys", DEFAULT_ADJUST_KEYS),
        ("ensure_keys", DEFAULT_ENSURE_KEYS),
        ("numbers", DEFAULT_NUMBERS),
        ("escrows", DEFAULT_ESCROWS),
    ):
        if getattr(args, name) is None:
            setattr(args, name, default // scale)
    if min(args.repeat, args.adjust_keys, args.ensure_keys, args.numbers, args.escrows) < 1:
        parser.error("--repeat and every size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = Console(stderr=True)
    console = report_console(200)
    sizes = {
        "adjust": args.adjust_keys,
        "ensure": args.ensure_keys,
        "allocate": args.numbers,
        "escrow": args.escrows,
    }
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [
        "postgresql" if args.backend == "postgres" else "sqlite"
    ]  # fmt: skip
    if "postgresql" in backends and args.dsn:
        probe = PostgresTarget(args.dsn)
        try:
            leftovers = probe.leftovers()
        finally:
            probe.conn.close()
        if leftovers:
            log.print(
                f"[red]{', '.join(leftovers)} already exist on {args.dsn}: the benchmark drops "
                "and recreates its tables and sequences, so point --dsn at a scratch database[/]",
                highlight=False,
            )
            return 2

    results: dict[str, Result] = {}
    databases: dict[str, str] = {}
    skipped: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="bulkops-primitives-", dir=args.dir))
    try:
        if "sqlite" in backends:
            target: Target = SQLiteTarget(workdir / "bench.db")
            try:
                target.fresh()
                databases["sqlite"] = describe(target, f"a fresh file per run in {workdir}")
                results.update(run_target(target, sizes, args.repeat, log))
            finally:
                target.close()
        if "postgresql" in backends:
            try:
                with postgres(args.dsn, log) as (dsn, origin):
                    target = PostgresTarget(dsn)
                    try:
                        databases["postgresql"] = describe(target, origin)
                        results.update(run_target(target, sizes, args.repeat, log))
                    finally:
                        target.close()
            except Exception as error:  # no server binaries, cannot connect, ...
                if any(r.backend == "postgresql" for r in results.values()):
                    raise
                skipped["postgresql"] = f"{type(error).__name__}: {error}"
                log.print(f"[red]PostgreSQL: {skipped['postgresql']}[/]", highlight=False)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    config = {
        "sizes": sizes,
        "repeat": args.repeat,
        "backends": backends,
        "databases": databases,
        "skipped_backends": skipped,
        "targets": {
            "adjust": TARGET_ADJUST,
            "ensure": TARGET_ENSURE,
            "allocate": TARGET_ALLOCATE,
            "escrow": TARGET_ESCROW,
            "against_best_hand_written": TARGET_VS_SET,
        },
        "timing": (
            "time.perf_counter around the call alone, on a connection opened beforehand; "
            "tables recreated and loaded (untimed) before every run; gc.collect() and "
            "CHECKPOINT (PostgreSQL) or os.sync() (SQLite) before each run; best of --repeat, "
            "repeats interleaved; statements: data statements sent by the timed call "
            "(transaction control not counted, nor bulkops' catalog reads for reflection)"
        ),
        "python": sys.version.split()[0],
        "psycopg": psycopg.__version__,
        "sqlalchemy": sa.__version__,
        "bulkops": bulkops.__version__,
        "cpus": os.cpu_count(),
    }
    ran = [b for b in backends if b not in skipped]
    ratio_rows = ratios(results, ran)
    if args.json:
        figures = {
            "config": config,
            "contenders": [r.as_dict() for r in results.values()],
            "ratios": ratio_rows,
        }
        print(json.dumps(figures, indent=2, default=str))
    else:
        print_report(config, results, ratio_rows, console)
    broken = [
        f"{r.backend}: {r.section}: {r.name}: result does not check out ({r.note or 'see above'})"
        for r in results.values()
        if not r.verified
    ]
    broken += [f"backend {b} did not run: {why}" for b, why in skipped.items()]
    return conclude(broken, missed_targets(ratio_rows))


if __name__ == "__main__":
    sys.exit(main())
