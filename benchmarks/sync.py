"""Differential sync benchmark: bulkops ``db.sync`` against a full reload and a naive
row-by-row loop, on SQLite and PostgreSQL.

A table of N rows (``id`` integer key, ``name`` text, ``price`` Decimal, ``qty`` integer,
``updated_at`` aware UTC datetime) is loaded, untimed; the source is the same table with
1% of the rows changed, 0.5% added and 0.5% deleted (seeded, deterministic). Timed, per
backend, each on a freshly reloaded table:

- sync: ``db.sync("items", source, key="id", delete_missing=True)`` on a table synced
  before (an untimed sync of the target rows kept its per-row digests), so the sync
  compares the source with the digests; on PostgreSQL the WAL it wrote
  (``pg_current_wal_lsn()`` difference after a CHECKPOINT) and, after it, the digests'
  size per row (their bytes, and their table's size);
- first sync: the same on a table without digests (full comparison in the database,
  then the digests are kept);
- full reload: emptying the table (``TRUNCATE`` / ``DELETE FROM``) + ``db.insert`` of
  every source row (bulkops' insert is the fast path: binary COPY on PostgreSQL), and
  the WAL it wrote;
- full reload from Arrow: emptying the table + ``db.insert`` of the source as a pyarrow
  Table (the columnar path: pgpq binary COPY on PostgreSQL), and the WAL it wrote;
- full reload, raw driver (the floor of any reload): in one transaction, ``TRUNCATE`` +
  psycopg binary ``COPY`` (PostgreSQL) or ``DELETE FROM`` + sqlite3 ``executemany``
  (SQLite) of every source row; sync is reported against both reloads;
- naive loop: per source row ``SELECT`` by key, compare, ``UPDATE`` or ``INSERT`` when
  different, then ``DELETE`` per missing key (raw driver, one statement each, one
  transaction), timed on a sample of ``--naive-rows`` source rows and extrapolated;
- unchanged re-sync: a second ``db.sync`` of the same source (every row hashed and
  compared with the digests, nothing sent), from the dicts and from the same rows as a
  pyarrow Table (each against the reload from the same kind of source), and
  the CLI-style path: ``file_digest(path)`` of the source file + ``db.sync(...,
  source_id=...)`` whose rows are never read;
- diff: ``db.diff(...)`` -> Changeset: its gzip bytes against the full data's bytes,
  uncompressed and gzipped the same way; the changeset is applied to a reloaded table.

After every contender the table is checked against what it must hold (count and a
BLAKE2 checksum over every row, in key order). Each contender also shows the client's
CPU time: on a machine shared with other work, wall time says little.

    python benchmarks/sync.py                       # 1,000,000 rows, SQLite + PostgreSQL
    python benchmarks/sync.py --quick               # 100,000 rows
    python benchmarks/sync.py --backend postgres --pg-url postgresql://me@db/scratch
    python benchmarks/sync.py --profile --backend sqlite   # where db.sync's time goes
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import gc
import gzip
import hashlib
import json
import os
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
from _common import conclude, mark, missed_targets, postgres, report_console, results_table
from rich.console import Console
from rich.table import Table

import bulkops
from bulkops.backends import _sql
from bulkops.backends.base import SYNC_ROWS_TABLE as ROWS_TABLE
from bulkops.backends.base import SYNC_STATE_TABLE as STATE_TABLE
from bulkops.plan import ChunkPlanner
from bulkops.sync import digests, engine, hashing

Row = dict[str, Any]

TABLE = "items"
COLUMNS = ("id", "name", "price", "qty", "updated_at")
TYPES = {
    "id": "integer",
    "name": "text",
    "price": "decimal",
    "qty": "integer",
    "updated_at": "datetime",
}
DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
DEFAULT_NAIVE_ROWS = 20_000
CHANGED = 0.01
ADDED = 0.005
DELETED = 0.005
SEED = 20_240_101
CENT = Decimal("0.01")
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
CITIES = ("Lisbon", "Oslo", "Kraków", "Zürich", "Montréal", "Osaka", "Lagos", "Lima")

TARGET_VS_RELOAD = {"postgresql": 3.0, "sqlite": 2.0}  # sync this much faster than a reload
TARGET_VS_NAIVE = 50.0  # sync >= 50x faster than the naive loop
TARGET_RESYNC_SHARE = 0.40  # unchanged re-sync of dict rows <= 40% of a reload of them
TARGET_RESYNC_ARROW_SHARE = 0.15  # the same from an Arrow Table <= 15% of its reload
TARGET_DIGEST_SHARE = 0.05  # unchanged re-sync skipped by source_id <= 5% of the reload
TARGET_CHANGESET_SHARE = 0.05  # changeset <= 5% of the full data

BACKEND_LABELS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


# ------------------------------------------------------------------------------ data


def make_row(i: int, rng: random.Random) -> Row:
    return {
        "id": i,
        "name": f"Customer {i:07d} of {rng.choice(CITIES)}",
        "price": (Decimal(rng.randrange(100, 10_000_000)) / 100).quantize(CENT),
        "qty": rng.randrange(0, 10_000),
        "updated_at": EPOCH + dt.timedelta(seconds=i, microseconds=rng.randrange(1_000_000)),
    }


def changed(row: Row, rng: random.Random) -> Row:
    """A real change of one or two columns, with a later ``updated_at``."""
    new = dict(row)
    what = rng.randrange(3)
    if what == 0:
        new["price"] = (row["price"] + Decimal(rng.randrange(1, 5_000)) / 100).quantize(CENT)
    elif what == 1:
        new["qty"] = row["qty"] + rng.randrange(1, 50)
    else:
        new["name"] = row["name"] + " (moved)"
    new["updated_at"] = row["updated_at"] + dt.timedelta(days=30)
    return new


@dataclass
class Data:
    target: list[Row]  # what the table holds before every contender
    source: list[Row]  # what it must hold after a sync (key order)
    changed: int
    added: int
    deleted: int
    arrow: Any = None  # the source as a pyarrow Table (built untimed)


def make_data(n: int, seed: int = SEED) -> Data:
    """``n`` target rows; the source has ``n`` rows too: 1% changed, 0.5% of the target's
    keys deleted, 0.5% new keys added. Keys are drawn from 1..n + added, so that new keys
    are spread among the old ones (not all at the end)."""
    rng = random.Random(seed)
    n_added, n_deleted, n_changed = round(n * ADDED), round(n * DELETED), round(n * CHANGED)
    universe = n + n_added
    added_ids = set(rng.sample(range(1, universe + 1), n_added))
    target = [make_row(i, rng) for i in range(1, universe + 1) if i not in added_ids]
    picked = rng.sample(range(len(target)), n_deleted + n_changed)
    deleted_at = set(picked[:n_deleted])
    changed_at = set(picked[n_deleted:])
    added_rows = {i: make_row(i, rng) for i in sorted(added_ids)}
    source: list[Row] = []
    position = 0
    for i in range(1, universe + 1):
        if i in added_rows:
            source.append(added_rows[i])
            continue
        if position in changed_at:
            source.append(changed(target[position], rng))
        elif position not in deleted_at:
            source.append(target[position])  # the same dict: no copy
        position += 1
    arrow = pa.Table.from_pylist(source)
    return Data(target, source, n_changed, n_added, n_deleted, arrow)


def stored(row: Row) -> tuple[Any, ...]:
    """A row as the SQLite contenders bind and compare it (bulkops' own encoding there:
    Decimal as text, datetime as ISO 8601 text)."""
    return (row["id"], row["name"], str(row["price"]), row["qty"], row["updated_at"].isoformat())


def canonical(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """One form for a row however the driver returned it: exact decimals by value,
    datetimes as UTC microseconds."""
    i, name, price, qty, at = values
    if isinstance(price, str):
        price = Decimal(price)
    elif isinstance(price, int | float):  # SQLite NUMERIC affinity: 12.34 a REAL, 12.00 an INTEGER
        price = Decimal(repr(price))
    at = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
    return (
        int(i),
        name,
        format(price.normalize(), "f"),
        int(qty),
        (at - EPOCH) // dt.timedelta(microseconds=1),
    )


@dataclass(frozen=True)
class Checksum:
    count: int
    blake2b: str

    def __str__(self) -> str:
        return f"{self.count:,} rows, {self.blake2b[:12]}"


def checksum(rows: Iterable[tuple[Any, ...]]) -> Checksum:
    """Count and BLAKE2b of the canonical rows, in the order given (key order)."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for values in rows:
        digest.update(repr(canonical(values)).encode())
        count += 1
    return Checksum(count, digest.hexdigest())


def row_values(rows: Iterable[Row]) -> Iterator[tuple[Any, ...]]:
    return (tuple(r[c] for c in COLUMNS) for r in rows)


def json_line(row: Row) -> bytes:
    """A row as one line of JSON (Decimal and datetime as text), as a changeset holds it."""
    return (json.dumps(bulkops_jsonable(row), ensure_ascii=False) + "\n").encode()


def bulkops_jsonable(row: Row) -> dict[str, Any]:
    return {
        c: str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, dt.datetime) else v
        for c, v in row.items()
    }


def full_data_bytes(rows: Iterable[Row], path: Path) -> tuple[int, int]:
    """(uncompressed, gzip level 6) bytes of the rows as JSON Lines; the gzip file stays
    at ``path`` (the source file of the CLI-style re-sync)."""
    raw = 0
    with gzip.open(path, "wb", compresslevel=6) as f:
        for row in rows:
            line = json_line(row)
            raw += len(line)
            f.write(line)
    return raw, path.stat().st_size


# ------------------------------------------------------------------------- backends


class Side:
    """One database under test: its bulkops URL and the untimed work around the
    contenders (reset, settle, checks) on a connection of its own."""

    backend = ""

    @property
    def url(self) -> str:
        raise NotImplementedError

    def reset(self, rows: list[Row], synced: bool = False) -> None:
        """The table holds ``rows`` (loaded with db.insert) and no sync state is kept;
        ``synced``: then a sync of those same rows keeps the per-row digests, as a table
        kept in sync by earlier runs has them."""
        self.drop()
        with bulkops.connect(self.url) as db:
            db.create_table(TABLE, TYPES, key="id")
            report = db.insert(TABLE, rows)
            assert report.inserted == len(rows), report
            self.analyze()
            if synced:
                first = db.sync(TABLE, rows, key="id", delete_missing=True)
                assert first.unchanged == len(rows), first

    def wal_lsn(self) -> str | None:
        """The WAL position (PostgreSQL), to measure what a contender wrote."""
        return None

    def wal_bytes(self, since: str) -> int | None:
        return None

    def state_bytes(self) -> tuple[int, int] | None:
        """(bytes of the per-row digests themselves, bytes the database spends on
        their table), if any are kept."""
        return None

    def analyze(self) -> None:
        pass

    def drop(self) -> None:
        raise NotImplementedError

    def empty_table(self) -> Callable[[], None]:
        """The timed first half of the full reload."""
        raise NotImplementedError

    def settle(self) -> None:
        raise NotImplementedError

    def rows(self) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def info(self) -> str:
        raise NotImplementedError

    def naive(self, source: list[Row], limit_key: int) -> Callable[[], dict[str, int]]:
        raise NotImplementedError

    def raw_reload(self, source: list[Row]) -> contextlib.AbstractContextManager[Callable[[], int]]:
        """A connection opened untimed; the timed call empties the table and loads every
        source row with the raw driver at its fastest, in one transaction: the floor of
        any full reload. Returns the rows written."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class SQLiteSide(Side):
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None)

    def drop(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def empty_table(self) -> Callable[[], None]:
        def run() -> None:
            # DELETE without WHERE is SQLite's truncate (it drops the pages whole).
            with contextlib.closing(self.connect()) as conn:
                conn.execute(f"DELETE FROM {TABLE}")

        return run

    def settle(self) -> None:
        gc.collect()
        os.sync()

    @contextlib.contextmanager
    def raw_reload(self, source: list[Row]) -> Iterator[Callable[[], int]]:
        insert = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)"

        def run() -> int:
            conn.execute("BEGIN")
            conn.execute(f"DELETE FROM {TABLE}")
            # each dict adapted as bulkops stores it (Decimal and datetime as text)
            written = conn.executemany(insert, (stored(row) for row in source)).rowcount
            conn.execute("COMMIT")
            return written

        with contextlib.closing(self.connect()) as conn:
            yield run

    def rows(self) -> Iterator[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as conn:
            yield from conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id")

    def state_bytes(self) -> tuple[int, int] | None:
        with contextlib.closing(self.connect()) as conn:
            data = conn.execute(f"SELECT sum(length(data)) FROM {ROWS_TABLE}").fetchone()[0]
            try:
                pages = conn.execute(
                    "SELECT sum(pgsize) FROM dbstat WHERE name = ?", (ROWS_TABLE,)
                ).fetchone()[0]
            except sqlite3.Error:  # SQLite built without dbstat
                pages = None
        return (int(data or 0), int(pages or data or 0))

    def info(self) -> str:
        with contextlib.closing(self.connect()) as conn:
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            declared = conn.execute(f"SELECT sql FROM sqlite_schema WHERE name = '{TABLE}'")
            ddl = " ".join(declared.fetchone()[0].split())
        where = f"file in {self.path.parent}"
        return f"SQLite {sqlite3.sqlite_version}, {where}, journal_mode={journal}; {ddl}"

    def naive(self, source: list[Row], limit_key: int) -> Callable[[], dict[str, int]]:
        sample = [stored(r) for r in source if r["id"] <= limit_key]  # untimed: driver form

        def run() -> dict[str, int]:
            counts = {"select": 0, "insert": 0, "update": 0, "delete": 0}
            with contextlib.closing(self.connect()) as conn:
                cur = conn.cursor()
                cur.execute("BEGIN")
                for values in sample:
                    found = cur.execute(
                        f"SELECT name, price, qty, updated_at FROM {TABLE} WHERE id = ?",
                        (values[0],),
                    ).fetchone()
                    counts["select"] += 1
                    if found is None:
                        cur.execute(
                            f"INSERT INTO {TABLE} (id, name, price, qty, updated_at) "
                            "VALUES (?, ?, ?, ?, ?)",
                            values,
                        )
                        counts["insert"] += 1
                    elif found != values[1:]:
                        cur.execute(
                            f"UPDATE {TABLE} SET name = ?, price = ?, qty = ?, updated_at = ? "
                            "WHERE id = ?",
                            (*values[1:], values[0]),
                        )
                        counts["update"] += 1
                wanted = {values[0] for values in sample}
                present = cur.execute(f"SELECT id FROM {TABLE} WHERE id <= ?", (limit_key,))
                for (key,) in present.fetchall():
                    if key not in wanted:
                        cur.execute(f"DELETE FROM {TABLE} WHERE id = ?", (key,))
                        counts["delete"] += 1
                cur.execute("COMMIT")
            return counts

        return run


class PostgresSide(Side):
    backend = "postgresql"

    def __init__(self, dsn: str, origin: str) -> None:
        self.dsn = dsn
        self.origin = origin
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.can_checkpoint = True

    @property
    def url(self) -> str:
        return self.dsn

    def drop(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {TABLE}, {STATE_TABLE}, {ROWS_TABLE}")

    def wal_lsn(self) -> str | None:
        row = self.conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        return str(row[0]) if row else None

    def wal_bytes(self, since: str) -> int | None:
        row = self.conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (since,)
        ).fetchone()
        return int(row[0]) if row else None

    def state_bytes(self) -> tuple[int, int] | None:
        row = self.conn.execute(
            f"SELECT coalesce(sum(octet_length(data)), 0), "
            f"pg_total_relation_size('{ROWS_TABLE}') FROM {ROWS_TABLE}"
        ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def analyze(self) -> None:
        self.conn.execute(f"VACUUM (ANALYZE) {TABLE}")

    def empty_table(self) -> Callable[[], None]:
        def run() -> None:
            self.conn.execute(f"TRUNCATE {TABLE}")

        return run

    def settle(self) -> None:
        gc.collect()
        if self.can_checkpoint:
            try:
                self.conn.execute("CHECKPOINT")
            except psycopg.Error:  # not a superuser (or pg_checkpoint) on --pg-url
                self.can_checkpoint = False

    def rows(self) -> Iterator[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            yield from cur.stream(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id")

    @contextlib.contextmanager
    def raw_reload(self, source: list[Row]) -> Iterator[Callable[[], int]]:
        # The column types (untimed), so that binary COPY sends each value as its column
        # wants it; the timed call: TRUNCATE + COPY in one transaction.
        types = dict(
            self.conn.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped",
                (TABLE,),
            ).fetchall()
        )
        oids = [types[c] for c in COLUMNS]
        copy_sql = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"

        def run() -> int:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"TRUNCATE {TABLE}")
                with cur.copy(copy_sql) as copy:
                    copy.set_types(oids)
                    for row in source:
                        copy.write_row(
                            (row["id"], row["name"], row["price"], row["qty"], row["updated_at"])
                        )
            return len(source)

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            yield run

    def info(self) -> str:
        settings = {}
        for name in (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
        ):
            row = self.conn.execute(f"SHOW {name}").fetchone()
            settings[name] = str(row[0]) if row else "?"
        durable = settings["fsync"] == "on" and settings["synchronous_commit"] == "on"
        columns = self.conn.execute(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' "
            "ORDER BY attnum) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (TABLE,),
        ).fetchone()
        return (
            f"PostgreSQL {settings['server_version']}, {self.origin}; fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}, "
            f"full_page_writes={settings['full_page_writes']}, "
            f"shared_buffers={settings['shared_buffers']}"
            + ("" if durable else " (not durable: every contender runs on this same server)")
            + f"; {TABLE}({columns[0] if columns else '?'}), primary key id"
        )

    def naive(self, source: list[Row], limit_key: int) -> Callable[[], dict[str, int]]:
        sample = [tuple(r[c] for c in COLUMNS) for r in source if r["id"] <= limit_key]

        def run() -> dict[str, int]:
            counts = {"select": 0, "insert": 0, "update": 0, "delete": 0}
            with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:  # one transaction
                for values in sample:
                    cur.execute(
                        f"SELECT name, price, qty, updated_at FROM {TABLE} WHERE id = %s",
                        (values[0],),
                    )
                    found = cur.fetchone()
                    counts["select"] += 1
                    if found is None:
                        cur.execute(
                            f"INSERT INTO {TABLE} (id, name, price, qty, updated_at) "
                            "VALUES (%s, %s, %s, %s, %s)",
                            values,
                        )
                        counts["insert"] += 1
                    elif found != values[1:]:
                        cur.execute(
                            f"UPDATE {TABLE} SET name = %s, price = %s, qty = %s, "
                            "updated_at = %s WHERE id = %s",
                            (*values[1:], values[0]),
                        )
                        counts["update"] += 1
                wanted = {values[0] for values in sample}
                cur.execute(f"SELECT id FROM {TABLE} WHERE id <= %s", (limit_key,))
                for (key,) in cur.fetchall():
                    if key not in wanted:
                        cur.execute(f"DELETE FROM {TABLE} WHERE id = %s", (key,))
                        counts["delete"] += 1
            return counts

        return run

    def close(self) -> None:
        try:
            self.drop()
        finally:
            self.conn.close()


# ------------------------------------------------------------------------ contenders


@dataclass
class Result:
    key: str
    name: str
    seconds: float | None = None
    measured_seconds: float | None = None  # of the sample, for an extrapolated figure
    verified: bool = False
    note: str = ""
    report: str = ""
    statements: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def took(self, seconds: float, report: Any) -> None:
        self.seconds, self.report, self.statements = seconds, str(report), report.statements

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Bench:
    side: Side
    data: Data
    log: Console
    source_file: Path
    expected: Checksum
    results: dict[str, Result] = field(default_factory=dict)

    wal: int | None = None  # WAL bytes written by the last timed call (PostgreSQL)
    cpu: float = 0.0  # this process's CPU seconds in the last timed call

    def reset(self, synced: bool = False) -> None:
        started = time.perf_counter()
        self.side.reset(self.data.target, synced=synced)
        self.log.print(
            f"    (reset: table reloaded{' and synced' if synced else ''} in "
            f"{time.perf_counter() - started:.1f}s, untimed)",
            highlight=False,
        )

    def timed(self, call: Callable[[], Any]) -> tuple[float, Any]:
        self.side.settle()
        lsn = self.side.wal_lsn()
        cpu = time.process_time()
        started = time.perf_counter()
        output = call()
        seconds = time.perf_counter() - started
        self.cpu = time.process_time() - cpu
        self.wal = None if lsn is None else self.side.wal_bytes(lsn)
        return seconds, output

    def note_wal(self, result: Result) -> None:
        if self.wal is not None:
            result.extra["wal_bytes"] = self.wal
            result.note += f"; WAL {self.wal / 1e6:,.1f} MB"

    def check(self, result: Result, expected: Checksum | None = None) -> None:
        expected = expected or self.expected
        found = checksum(self.side.rows())
        if found != expected:
            result.verified = False
            problem = f"table holds {found}, expected {expected}"
            result.note = f"{result.note}; {problem}" if result.note else problem
            self.log.print(f"    [red]{result.name}: {problem}[/]", highlight=False)
        else:
            result.verified = True

    def record(self, result: Result) -> None:
        if result.seconds is not None and "cpu_seconds" not in result.extra:
            # On a loaded machine wall time says little: the client's CPU time too
            # (all of the work on SQLite; the client's share on PostgreSQL).
            result.extra["cpu_seconds"] = self.cpu
            result.note += f"; client CPU {self.cpu:.2f}s"
        self.results[result.key] = result
        shown = "-" if result.seconds is None else f"{result.seconds:.3f}s"
        ok = "ok" if result.verified else "[red]NOT OK[/]"
        self.log.print(f"  {result.name}: {shown} {ok} {result.note}", highlight=False)
        if result.report:
            self.log.print(f"    {result.report}", highlight=False)

    def guarded(self, key: str, name: str, work: Callable[[Result], None]) -> None:
        """Run one contender; a contender that breaks is reported, the others run."""
        result = Result(key, name)
        self.cpu = 0.0
        try:
            work(result)
        except Exception as error:
            result.verified = False
            result.note = f"failed: {type(error).__name__}: {error}"
            self.log.print(traceback.format_exc(), highlight=False, markup=False)
        self.record(result)

    # ------------------------------------------------------------------ runs

    def first_sync(self) -> None:
        """A sync of a table without per-row digests (its first sync, or ``full=True``):
        the whole table is compared, then read to make them."""
        data = self.data
        self.reset()

        def sync(result: Result) -> None:
            with bulkops.connect(self.side.url) as db:
                seconds, report = self.timed(
                    lambda: db.sync(TABLE, data.source, key="id", delete_missing=True)
                )
            result.took(seconds, report)
            result.note = "no digests kept yet: full comparison, then the table read"
            self.note_wal(result)
            counts = (report.added, report.changed, report.deleted, report.up_to_date)
            if counts != (data.added, data.changed, data.deleted, False):
                result.note = f"report says added/changed/deleted/skipped {counts}"
                result.verified = False
                return
            self.check(result)

        self.guarded("sync_first", "first sync (no digests kept): db.sync", sync)

    def sync_and_resyncs(self) -> None:
        """(a) the sync of a table synced before, then on the table it left (d) the
        unchanged re-syncs."""
        data = self.data
        self.reset(synced=True)

        def sync(result: Result) -> None:
            with bulkops.connect(self.side.url) as db:
                seconds, report = self.timed(
                    lambda: db.sync(TABLE, data.source, key="id", delete_missing=True)
                )
            result.took(seconds, report)
            result.note = "compared with the per-row digests"
            self.note_wal(result)
            state = self.side.state_bytes()
            if state is not None:
                result.extra["state_bytes"], result.extra["state_table_bytes"] = state
                rows = len(data.source)
                result.extra["state_rows"] = rows
                result.note += (
                    f"; digests {state[0] / rows:.1f} B/row ({state[1] / rows:.1f} B/row "
                    "with the table's overhead)"
                )
            counts = (report.added, report.changed, report.deleted, report.up_to_date)
            if counts != (data.added, data.changed, data.deleted, False):
                result.note = f"report says added/changed/deleted/skipped {counts}"
                result.verified = False
                return
            self.check(result)

        self.guarded("sync", "bulkops: db.sync(delete_missing=True), synced before", sync)

        def resync(source: Any, what: str) -> Callable[[Result], None]:
            """An unchanged re-sync of ``source``: every row read and hashed, skipped."""

            def run(result: Result) -> None:
                with bulkops.connect(self.side.url) as db:
                    seconds, report = self.timed(
                        lambda: db.sync(TABLE, source, key="id", delete_missing=True)
                    )
                result.took(seconds, report)
                result.note = f"{what}; skipped" if report.up_to_date else "NOT skipped"
                if not report.up_to_date or report.changes:
                    result.verified = False
                    return
                self.check(result)

            return run

        self.guarded(
            "resync_rows", "unchanged re-sync: db.sync of the same rows",
            resync(data.source, "every row read and hashed"),
        )  # fmt: skip
        self.guarded(
            "resync_arrow", "unchanged re-sync: db.sync of the same rows as Arrow",
            resync(data.arrow, "the same rows as a pyarrow Table: hashed a column at a time"),
        )  # fmt: skip

        digest = bulkops.file_digest(self.source_file)

        def compare_all(result: Result) -> None:
            # A digest the state does not know: the whole source is compared (nothing
            # written); this sync records the file's digest for the next one.
            with bulkops.connect(self.side.url) as db:
                seconds, report = self.timed(
                    lambda: db.sync(
                        TABLE, data.source, key="id", delete_missing=True, source_id=digest
                    )
                )
            result.took(seconds, report)
            result.note = "every row hashed and compared with the digests, nothing to write"
            if report.changes:
                result.verified = False
                result.note = "wrote rows"
                return
            self.check(result)

        self.guarded("resync_compare", "unchanged, source_id unknown: compared", compare_all)

        def resync_digest(result: Result) -> None:
            def never() -> Iterator[Row]:
                raise AssertionError("a sync skipped by source_digest read the rows")
                yield  # pragma: no cover

            with bulkops.connect(self.side.url) as db:

                def run() -> bulkops.SyncReport:
                    return db.sync(
                        TABLE,
                        never(),
                        key="id",
                        delete_missing=True,
                        source_id=bulkops.file_digest(self.source_file),
                    )

                seconds, report = self.timed(run)
            result.took(seconds, report)
            result.note = (
                f"file_digest() of the {self.source_file.stat().st_size:,}-byte source file "
                "included; rows never read"
            )
            if not report.up_to_date:
                result.verified = False
                result.note = "NOT skipped"
                return
            self.check(result)

        self.guarded(
            "resync_digest", "unchanged re-sync: source_id=file_digest(path)", resync_digest
        )

    def reloading(self, source: Any, what: str) -> Callable[[Result], None]:
        """A contender: the table emptied, then ``source`` inserted by bulkops, checked."""

        def run(result: Result) -> None:
            empty = self.side.empty_table()
            with bulkops.connect(self.side.url) as db:

                def reload() -> bulkops.Report:
                    empty()
                    return db.insert(TABLE, source)

                seconds, report = self.timed(reload)
            result.took(seconds, report)
            result.note = (
                "TRUNCATE" if self.side.backend == "postgresql" else "DELETE FROM"
            ) + f" + {what}"
            self.note_wal(result)
            if report.inserted != len(self.data.source):
                result.verified = False
                result.note += f"; inserted {report.inserted}"
                return
            self.check(result)

        return run

    def reload(self) -> None:
        self.reset()
        self.guarded(
            "reload",
            "full reload: empty + db.insert",
            self.reloading(self.data.source, "db.insert of every row (bulkops' fast path)"),
        )
        self.reset()
        self.guarded(
            "reload_arrow",
            "full reload from Arrow: empty + db.insert(Table)",
            self.reloading(
                self.data.arrow, "db.insert of the source as a pyarrow Table (the columnar path)"
            ),
        )
        self.reset()

        def floor(result: Result) -> None:
            with self.side.raw_reload(self.data.source) as reload:
                seconds, written = self.timed(reload)
            result.seconds, result.statements = seconds, 2
            result.note = (
                "TRUNCATE + psycopg binary COPY, one transaction"
                if self.side.backend == "postgresql"
                else "DELETE FROM + sqlite3 executemany, one transaction"
            ) + ": the floor of a full reload"
            if written != len(self.data.source):
                result.verified = False
                result.note += f"; wrote {written}"
                return
            self.check(result)

        self.guarded("reload_raw", "full reload, raw driver (floor)", floor)

    def naive(self, sample_rows: int) -> None:
        data = self.data
        self.reset()
        sample_rows = min(sample_rows, len(data.source))
        limit_key = data.source[sample_rows - 1]["id"]
        in_target = sum(1 for r in data.target if r["id"] <= limit_key)
        expected = checksum(
            row_values(
                sorted(
                    [r for r in data.source if r["id"] <= limit_key]
                    + [r for r in data.target if r["id"] > limit_key],
                    key=lambda r: r["id"],
                )
            )
        )
        run = self.side.naive(data.source, limit_key)

        def work(result: Result) -> None:
            seconds, counts = self.timed(run)
            scale = len(data.source) / sample_rows
            result.measured_seconds = seconds
            result.seconds = seconds * scale
            result.statements = sum(counts.values())
            result.extra = {
                "sample_rows": sample_rows,
                "target_rows_in_range": in_target,
                "scale": scale,
                **counts,
            }
            result.report = (
                f"sample: source ids <= {limit_key:,} ({sample_rows:,} source rows, {in_target:,} "
                f"target rows): {counts['select']:,} SELECT, {counts['update']:,} UPDATE, "
                f"{counts['insert']:,} INSERT, {counts['delete']:,} DELETE in {seconds:.3f}s"
            )
            result.note = (
                f"EXTRAPOLATED x{scale:.1f} from {sample_rows:,} rows"
                if scale > 1
                else "measured on every row"
            )
            self.check(result, expected)

        self.guarded("naive", "naive loop: SELECT, compare, UPDATE/INSERT per row", work)

    def diff(self, full_raw: int, full_gzip: int) -> None:
        data = self.data
        self.reset()

        def work(result: Result) -> None:
            with bulkops.connect(self.side.url) as db:
                seconds, changeset = self.timed(
                    lambda: db.diff(TABLE, data.source, key="id", delete_missing=True)
                )
                result.seconds, result.report = seconds, str(changeset.report)
                result.statements = changeset.report.statements if changeset.report else None
                result.extra = {
                    "changeset_bytes": changeset.bytes,
                    "changeset_full_bytes": changeset.full_bytes,
                    "full_jsonl_bytes": full_raw,
                    "full_jsonl_gzip_bytes": full_gzip,
                    "added": changeset.added,
                    "changed": changeset.changed,
                    "deleted": changeset.deleted,
                }
                result.note = f"{changeset!r}"
                counts = (changeset.added, changeset.changed, changeset.deleted)
                if counts != (data.added, data.changed, data.deleted):
                    result.verified = False
                    return
                # diff writes nothing: the table still holds the target ...
                self.check(result, checksum(row_values(data.target)))
                if not result.verified:
                    return
                # ... and the changeset, applied, makes it the source.
                started = time.perf_counter()
                applied = db.apply(changeset)
                result.extra["apply_seconds"] = time.perf_counter() - started
                result.extra["apply_report"] = str(applied)
                changeset.close()
            self.check(result)

        self.guarded("diff", "db.diff(...) -> Changeset (gzip JSON Lines)", work)


# --------------------------------------------------------------------------- figures


def figures(results: dict[str, Result], backend: str) -> list[dict[str, Any]]:
    """Each target: its value and PASS / FAIL (n/a when a contender failed)."""

    def seconds(key: str) -> float | None:
        result = results.get(key)
        return result.seconds if result and result.verified and result.seconds else None

    def row(label: str, value: float | None, target: float, higher: bool, unit: str) -> dict:
        if value is None:
            status = "n/a"
        else:
            status = "PASS" if (value >= target if higher else value <= target) else "FAIL"
        return {
            "ratio": label,
            "value": value,
            "target": target,
            "higher_is_better": higher,
            "unit": unit,
            "status": status,
        }

    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    sync, reload, naive = seconds("sync"), seconds("reload"), seconds("naive")
    out = [
        row(
            "full reload time / sync time",
            over(reload, sync),
            TARGET_VS_RELOAD[backend],
            True,
            "x",
        ),
        row(
            "raw-driver reload time (floor) / sync time",
            over(seconds("reload_raw"), sync),
            TARGET_VS_RELOAD[backend],
            True,
            "x",
        ),
        row(
            "naive loop time (extrapolated) / sync time",
            over(naive, sync),
            TARGET_VS_NAIVE,
            True,
            "x",
        ),
        row(
            "unchanged re-sync (dict rows read) / full reload from dict rows",
            over(seconds("resync_rows"), reload),
            TARGET_RESYNC_SHARE,
            False,
            "%",
        ),
        row(
            "unchanged re-sync (Arrow Table read) / full reload from the Arrow Table",
            over(seconds("resync_arrow"), seconds("reload_arrow")),
            TARGET_RESYNC_ARROW_SHARE,
            False,
            "%",
        ),
        row(
            "unchanged re-sync (source_digest) / full reload",
            over(seconds("resync_digest"), reload),
            TARGET_DIGEST_SHARE,
            False,
            "%",
        ),
    ]
    diff = results.get("diff")
    extra = diff.extra if diff and diff.verified else {}
    out += [
        row(
            "changeset bytes (gzip) / changeset.full_bytes (JSONL)",
            over(extra.get("changeset_bytes"), extra.get("changeset_full_bytes")),
            TARGET_CHANGESET_SHARE,
            False,
            "%",
        ),
        row(
            "changeset bytes (gzip) / full data JSONL gzipped",
            over(extra.get("changeset_bytes"), extra.get("full_jsonl_gzip_bytes")),
            TARGET_CHANGESET_SHARE,
            False,
            "%",
        ),
    ]
    return out


def print_backend(
    console: Console, label: str, info: str, results: dict[str, Result], rows: list[dict[str, Any]]
) -> None:
    console.print(f"\n[bold]{label}[/]: {info}", highlight=False)
    table = results_table(
        [
            ("contender", "left"),
            ("seconds", "right"),
            ("vs reload", "right"),
            ("vs floor", "right"),
            ("statements", "right"),
            ("ok", "center"),
            ("notes", "left"),
        ]
    )
    reload, floor = results.get("reload"), results.get("reload_raw")

    def share(result: Result, of: Result | None) -> str:
        if result.seconds and of and of.seconds:
            return f"{result.seconds / of.seconds:.1%}"
        return "-"

    for result in results.values():
        table.add_row(
            result.name,
            "-" if result.seconds is None else f"{result.seconds:.3f}",
            share(result, reload),
            share(result, floor),
            "-" if result.statements is None else f"{result.statements:,}",
            "[green]yes[/]" if result.verified else "[red]NO[/]",
            result.note,
        )
    console.print(table)
    for result in results.values():
        if result.report:
            console.print(f"  {result.key}: {result.report}", highlight=False, markup=False)
    diff = results.get("diff")
    if diff and diff.extra:
        e = diff.extra
        console.print(
            f"  changeset: {e['changeset_bytes']:,} bytes gzip; changeset.full_bytes "
            f"{e.get('changeset_full_bytes') or 0:,} (the source as JSON Lines, uncompressed); "
            f"the source written here as JSON Lines: {e['full_jsonl_bytes']:,} bytes, "
            f"{e['full_jsonl_gzip_bytes']:,} gzipped (level 6, as the changeset)",
            highlight=False,
        )
        if "apply_seconds" in e:
            console.print(
                f"  db.apply(changeset) on the original table: "
                f"{e['apply_seconds']:.3f}s: {e['apply_report']}",
                highlight=False,
                markup=False,
            )
    targets = Table(title=f"{label}: targets", title_justify="left")
    for name, justify in (
        ("figure", "left"),
        ("value", "right"),
        ("target", "right"),
        ("result", "right"),
    ):
        targets.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        value, target = row["value"], row["target"]
        if row["unit"] == "%":
            shown = "-" if value is None else f"{value:.2%}"
            wanted = f"<= {target:.0%}"
        else:
            shown = "-" if value is None else f"{value:.2f}x"
            wanted = f">= {target:g}x"
        status = "MISS" if row["status"] == "FAIL" else row["status"]
        targets.add_row(row["ratio"], shown, wanted, mark(status))
    console.print(targets)
    sync = results.get("sync")
    reload_ = results.get("reload")
    facts = []
    if sync and reload_ and sync.seconds and reload_.seconds:
        facts.append(
            f"sync {sync.seconds:.3f}s; full reload (empty + db.insert) {reload_.seconds:.3f}s"
            + (f"; raw-driver reload floor {floor.seconds:.3f}s" if floor and floor.seconds else "")
        )
    wal = [
        (r.name, r.extra["wal_bytes"])
        for r in results.values()
        if r.extra.get("wal_bytes") is not None and r.key in ("sync", "reload", "reload_arrow")
    ]
    if wal:
        facts.append(
            "WAL written (after a CHECKPOINT): "
            + "; ".join(f"{name}: {n:,} bytes ({n / 1e6:.1f} MB)" for name, n in wal)
        )
    if sync and "state_bytes" in sync.extra:
        rows = sync.extra.get("state_rows") or 1
        facts.append(
            f"digest state: {sync.extra['state_bytes'] / rows:.1f} bytes/row of digests, "
            f"{sync.extra['state_table_bytes'] / rows:.1f} bytes/row with the table's overhead"
        )
    for fact in facts:
        console.print(f"  {fact}", highlight=False)


# ----------------------------------------------------------------------------- runs


def run_backend(
    side: Side, data: Data, args: argparse.Namespace, workdir: Path, log: Console
) -> tuple[str, dict[str, Result]]:
    label = BACKEND_LABELS[side.backend]
    log.print(f"[bold]{label}[/]", highlight=False)
    source_file = workdir / "source.jsonl.gz"
    full_raw, full_gzip = full_data_bytes(data.source, source_file)
    bench = Bench(side, data, log, source_file, checksum(row_values(data.source)))
    bench.sync_and_resyncs()
    bench.first_sync()
    bench.reload()
    if args.naive_rows:
        bench.naive(args.naive_rows)
    bench.diff(full_raw, full_gzip)
    side.reset(data.target)
    info = side.info()
    order = (
        "sync", "sync_first", "reload", "reload_raw", "reload_arrow", "naive", "resync_rows",
        "resync_arrow", "resync_digest", "resync_compare", "diff",
    )  # fmt: skip
    return info, {k: bench.results[k] for k in order if k in bench.results}


@contextlib.contextmanager
def sides(args: argparse.Namespace, workdir: Path, log: Console) -> Iterator[list[Side]]:
    found: list[Side] = []
    with contextlib.ExitStack() as stack:
        if args.backend in ("sqlite", "both"):
            found.append(SQLiteSide(workdir / "sync.db"))
        if args.backend in ("postgres", "both"):
            dsn, origin = stack.enter_context(postgres(args.pg_url, log))
            side = PostgresSide(dsn, origin)
            stack.callback(side.close)
            found.append(side)
        yield found


# -------------------------------------------------------------------------- profile


class PhaseClock:
    """Wall time of the phases of one db.sync, by wrapping bulkops' internals (only
    here, for --profile: they are private and may change)."""

    PHASES: tuple[tuple[Any, str, str], ...] = (
        (_sql.SQLSyncState, "begin", f"state: begin (create/read {STATE_TABLE})"),
        (_sql.SQLSyncState, "read_rows", f"state: read the per-row digests ({ROWS_TABLE})"),
        (engine._SourceHasher, "_hash_rows", "digests: hash a batch of rows (total)"),
        (engine._SourceHasher, "_hash_arrow", "digests: hash an Arrow record batch (total)"),
        (engine._SourceHasher, "_columns", "  digests: the batch's values a column at a time"),
        (engine, "encoded_columns", "  digests: encode columns"),
        (hashing, "hash_encoded", "  digests: hash per column (numpy)"),
        (engine._DigestDiff, "_compare", "digests: look up a batch in the state"),
        (engine._DigestDiff, "_flush", "digests: write added + changed rows"),
        (engine._DigestDiff, "_delete", "digests: delete missing keys"),
        (engine.Syncer, "_row_digests", "state: read + check the per-row digests"),
        (digests.RowDigests, "build", "state: make the next per-row digests"),
        (digests.RowDigests, "to_parts", "state: encode the per-row digests (Arrow IPC)"),
        (engine._SetBasedDiff, "_stage", "stage (total)"),
        (ChunkPlanner, "prepare", "  stage: encode/plan chunks (ChunkPlanner.prepare)"),
        (
            hashing.SourceDigest,
            "update_encoded",
            "  stage: digest hashing (SourceDigest.update_encoded)",
        ),
        (engine._SetBasedDiff, "_load", "  stage: load into the temp table"),
        (_sql.SQLStagedDiff, "unique_keys", "unique index on the stage"),
        (engine.Syncer, "count_target", "count(*) of the target (digest check, record)"),
        (_sql.SQLStagedDiff, "classify", "classify (set-based UPDATE/INSERT ... stage)"),
        (engine._SetBasedDiff, "_apply", "apply (total)"),
        (_sql.SQLStagedDiff, "pages", "  apply: read pages of the difference"),
        (engine.Syncer, "note", "  apply: note (bytes, keys) per page of changes"),
        (engine.Syncer, "write_rows", "  apply: upsert added + changed rows"),
        (engine.Syncer, "delete_keys", "  apply: delete missing keys"),
        (_sql.SQLSyncState, "invalidate", "state: invalidate (touch)"),
        (_sql.SQLSyncState, "record", "state: record the digest"),
    )

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.statements: dict[str, list[float]] = {}  # SQL -> [seconds, calls]
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> PhaseClock:
        for owner, name, label in self.PHASES:
            original = owner.__dict__[name]
            self._saved.append((owner, name, original))
            if isinstance(original, classmethod):
                setattr(owner, name, classmethod(self._wrap(original.__func__, label)))
            else:
                setattr(owner, name, self._wrap(original, label))
        # Each statement the set-based diff sends itself (DDL, classification, pages).
        original = _sql.SQLStagedDiff.__dict__["_exec"]
        self._saved.append((_sql.SQLStagedDiff, "_exec", original))
        clock = self

        @functools.wraps(original)
        def execute(diff: Any, statement: Any, values: Any = None) -> Any:
            text = " ".join(str(statement).split())
            label = text if len(text) <= 110 else text[:107] + "..."
            started = time.perf_counter()
            try:
                return original(diff, statement, values)
            finally:
                clock.statements.setdefault(label, [0.0, 0])
                clock.statements[label][0] += time.perf_counter() - started
                clock.statements[label][1] += 1

        _sql.SQLStagedDiff._exec = execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)

    def _wrap(self, function: Callable[..., Any], label: str) -> Callable[..., Any]:
        if label.startswith("  apply: read pages"):  # a generator: time each page

            @functools.wraps(function)
            def pages(*args: Any, **kwargs: Any) -> Iterator[Any]:
                iterator = function(*args, **kwargs)
                while True:
                    started = time.perf_counter()
                    try:
                        page = next(iterator)
                    except StopIteration:
                        self._add(label, time.perf_counter() - started)
                        return
                    self._add(label, time.perf_counter() - started)
                    yield page

            return pages

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._add(label, time.perf_counter() - started)

        return timed

    def _add(self, label: str, seconds: float) -> None:
        self.spent[label] = self.spent.get(label, 0.0) + seconds
        self.calls[label] = self.calls.get(label, 0) + 1


def profile(side: Side, data: Data, console: Console, log: Console) -> None:
    label = BACKEND_LABELS[side.backend]
    side.reset(data.target, synced=True)
    with bulkops.connect(side.url) as db, PhaseClock() as clock:
        side.settle()
        started = time.perf_counter()
        report = db.sync(TABLE, data.source, key="id", delete_missing=True)
        total = time.perf_counter() - started
    console.print(
        f"\n[bold]{label}: phases of db.sync[/] ({len(data.source):,} rows, "
        f"{total:.3f}s, no profiler): {report}",
        highlight=False,
    )
    table = results_table(
        [("phase", "left"), ("seconds", "right"), ("share", "right"), ("calls", "right")]
    )
    for _, _, phase in PhaseClock.PHASES:
        if phase in clock.spent:
            seconds = clock.spent[phase]
            table.add_row(
                phase, f"{seconds:.3f}", f"{seconds / total:.1%}", f"{clock.calls[phase]:,}"
            )
    console.print(table)
    table = results_table(
        [
            ("statement of the set-based diff (in the phases above)", "left"),
            ("seconds", "right"),
            ("calls", "right"),
        ]
    )
    for text, (seconds, calls) in clock.statements.items():
        table.add_row(text, f"{seconds:.3f}", f"{calls:,}")
    console.print(table)
    check = checksum(side.rows()) == checksum(row_values(data.source))
    log.print(f"  table equals the source: {check}", highlight=False)

    for title, rows in (
        ("db.sync", data.source),
        ("unchanged re-sync", data.source),
        ("unchanged re-sync from Arrow", data.arrow),
    ):
        if title == "db.sync":
            side.reset(data.target, synced=True)
        with bulkops.connect(side.url) as db:
            side.settle()
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            report = db.sync(TABLE, rows, key="id", delete_missing=True)
            profiler.disable()
            elapsed = time.perf_counter() - started
        console.print(
            f"\n[bold]{label}: cProfile of {title}[/]: {elapsed:.3f}s under the profiler: {report}",
            highlight=False,
        )
        sys.stdout.flush()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(25)
        sys.stdout.flush()


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help=f"rows in the table (default {DEFAULT_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--pg-url",
        "--dsn",
        dest="pg_url",
        help="postgresql://... of an existing server (default: a throwaway cluster); the "
        f"tables {TABLE} and {STATE_TABLE} must not exist there",
    )
    parser.add_argument(
        "--naive-rows",
        type=int,
        default=DEFAULT_NAIVE_ROWS,
        help=f"source rows the naive loop is timed on, then extrapolated (default "
        f"{DEFAULT_NAIVE_ROWS:,}; 0 skips it)",
    )
    parser.add_argument("--dir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only time the phases of db.sync and cProfile it (and an unchanged re-sync)",
    )
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.rows < 200 or args.naive_rows < 0:
        parser.error("--rows must be >= 200 and --naive-rows >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = Console(stderr=True)
    console = report_console(190)
    if args.pg_url and args.backend != "sqlite":
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            taken = [
                t
                for t in (TABLE, STATE_TABLE)
                if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone() != (None,)
            ]
        if taken:
            log.print(
                f"[red]{', '.join(taken)} already exist(s) on --pg-url: the benchmark "
                "drops and recreates them; use a scratch database[/]"
            )
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="bulkops-sync-bench-", dir=args.dir))
    started = time.perf_counter()
    data = make_data(args.rows)
    log.print(
        f"[bold]data[/]: {len(data.target):,} target rows, source {len(data.source):,} rows "
        f"({data.changed:,} changed, {data.added:,} added, {data.deleted:,} deleted) built "
        f"in {time.perf_counter() - started:.1f}s (lists of dicts, untimed)",
        highlight=False,
    )
    output: dict[str, Any] = {
        "rows": args.rows,
        "changed": data.changed,
        "added": data.added,
        "deleted": data.deleted,
        "backends": {},
    }
    broken: list[str] = []
    missed: list[str] = []
    try:
        with sides(args, workdir, log) as found:
            for side in found:
                if args.profile:
                    profile(side, data, console, log)
                    continue
                info, results = run_backend(side, data, args, workdir, log)
                rows = figures(results, side.backend)
                broken += [
                    f"{side.backend}: {r.name}: result does not check out ({r.note or 'see above'})"
                    for r in results.values()
                    if not r.verified
                ]
                missed += missed_targets(rows, f"{side.backend}: ")
                output["backends"][side.backend] = {
                    "info": info,
                    "contenders": [r.as_dict() for r in results.values()],
                    "targets": rows,
                }
                if not args.json:
                    print_backend(console, BACKEND_LABELS[side.backend], info, results, rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.profile:
        return 0
    if args.json:
        print(json.dumps(output, indent=2, default=str))
    else:
        console.print(
            f"\n{args.rows:,} rows; source: the target with {data.changed:,} rows changed, "
            f"{data.added:,} added and {data.deleted:,} deleted, in key order, built once as a "
            "list of dicts before any timing (db.sync itself streams it a chunk at a time). "
            "Timing: time.perf_counter around the call on an open connection, one run each, "
            "after gc.collect() and CHECKPOINT (PostgreSQL) / os.sync() (SQLite); the table "
            "is reloaded (untimed) before each contender. Python "
            f"{sys.version.split()[0]}, bulkops {bulkops.__version__}, psycopg "
            f"{psycopg.__version__}, {os.cpu_count()} CPUs shared by client and server.",
            highlight=False,
        )
    return conclude(broken, missed)


if __name__ == "__main__":
    sys.exit(main())
