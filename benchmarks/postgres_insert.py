"""PostgreSQL benchmark: bulkops insert, upsert, get_many and CLI load against raw psycopg,
SQLAlchemy Core, per-row statements and psql.

By default a throwaway PostgreSQL cluster is started (``tests/pg_cluster.py``: fsync=off,
synchronous_commit=off, full_page_writes=off) and stopped at the end; ``--dsn`` uses an
existing server instead. Every contender runs against the same server and the same table
(``CREATE TABLE t (id bigint PRIMARY KEY, a int, b int, amount numeric(10,4), label text,
created timestamptz)``, recreated before every timed run), so the ratios are fair even though
the absolute rates of the throwaway cluster are not those of a durable server.

The N rows are generated once, before any timing, into a list of dicts that every library
contender consumes; the CLI contenders read one CSV file written (untimed) from the same
rows. Library contenders are timed with ``time.perf_counter`` around the call itself, on a
connection opened beforehand (connecting is not timed); CLI contenders are timed as whole
subprocesses. After every run the table is checked (count, sum(a), sum(b), sum(amount))
against what the rows say it must hold.

    python benchmarks/postgres_insert.py                 # 1,000,000 rows, throwaway cluster
    python benchmarks/postgres_insert.py --quick         # 100,000 rows
    python benchmarks/postgres_insert.py --dsn postgresql://me@db:5432/scratch --repeat 3
    python benchmarks/postgres_insert.py --json > figures.json
    python benchmarks/postgres_insert.py --profile       # cProfile of db.insert / db.upsert
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from _common import (
    COLUMNS,
    BestOf,
    Row,
    Skip,
    cli_available,
    conclude,
    make_rows,
    missed_targets,
    ok_cell,
    postgres,
    ratio,
    ratio_rows,
    ratio_table,
    report_console,
    results_table,
    run_cli,
    script,
    write_csv,
)
from rich.console import Console

import bulkops

Facts = tuple[int, int, int, Decimal]  # count(*), sum(a), sum(b), sum(amount)

DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
DEFAULT_SUBSET_ROWS = 200_000  # SQLAlchemy Core insert and executemany upsert
DEFAULT_GET_KEYS = 100_000
DEFAULT_PER_KEY = 10_000  # one SELECT per key, extrapolated
PROFILE_ROWS = 200_000
RAW_READ_CHUNK = 10_000
SEED = 20_240_101

TARGET_INSERT_VS_COPY = 0.8
TARGET_INSERT_VS_SQLALCHEMY = 8.0
TARGET_UPSERT_VS_HAND = 0.9
TARGET_UPSERT_VS_EXECUTEMANY = 1.5
TARGET_GET_VS_ANY = 0.8
TARGET_GET_VS_PER_KEY = 15.0
TARGET_CLI_VS_PSQL = 0.6

COPY_TYPES = ["int8", "int4", "int4", "numeric", "text", "timestamptz"]


# ------------------------------------------------------------------------------ data


def changed_rows(rows: list[Row]) -> list[Row]:
    """The upsert input: every row, with ``a`` changed where the id is even (the rows
    that are pre-loaded), so half the keys exist and every existing row really changes."""
    return [{**r, "a": r["a"] + 1} if r["id"] % 2 == 0 else r for r in rows]


def facts_of(rows: Iterable[Row]) -> Facts:
    count = sum_a = sum_b = 0
    amount = Decimal(0)
    for r in rows:
        count += 1
        sum_a += r["a"]
        sum_b += r["b"]
        amount += r["amount"]
    return count, sum_a, sum_b, amount


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Sql:
    """The statements of one table name (quoted once)."""

    def __init__(self, table: str) -> None:
        t = quote_ident(table)
        cols = ", ".join(COLUMNS)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "id")
        self.table = table
        self.drop = f"DROP TABLE IF EXISTS {t}"
        self.create = (
            f"CREATE TABLE {t} (id bigint PRIMARY KEY, a int, b int, amount numeric(10,4), "
            "label text, created timestamptz)"
        )
        self.copy = f"COPY {t} ({cols}) FROM STDIN (FORMAT BINARY)"
        self.vacuum = f"VACUUM (ANALYZE) {t}"
        self.facts = (
            "SELECT count(*), coalesce(sum(a), 0), coalesce(sum(b), 0), "
            f"coalesce(sum(amount), 0) FROM {t}"
        )
        self.stage = f"CREATE TEMP TABLE bench_stage (LIKE {t}) ON COMMIT DROP"
        self.copy_stage = f"COPY bench_stage ({cols}) FROM STDIN (FORMAT BINARY)"
        self.upsert_from_stage = (
            f"INSERT INTO {t} ({cols}) SELECT {cols} FROM bench_stage "
            f"ON CONFLICT (id) DO UPDATE SET {sets}"
        )
        self.upsert_values = (
            f"INSERT INTO {t} ({cols}) VALUES ({', '.join(['%s'] * len(COLUMNS))}) "
            f"ON CONFLICT (id) DO UPDATE SET {sets}"
        )
        self.select_any = f"SELECT {cols} FROM {t} WHERE id = ANY(%s)"
        self.select_one = f"SELECT {cols} FROM {t} WHERE id = %s"
        self.psql_copy = f"\\copy {t} ({cols}) FROM {{path}} CSV HEADER"


# ------------------------------------------------------------------------ contenders


@dataclass
class Result(BestOf):
    key: str
    section: str
    name: str
    rows: int
    times: list[float] = field(default_factory=list)
    facts: Facts | None = None
    verified: bool = False
    skipped: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def units(self) -> int:
        return self.rows

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["facts"] = list(self.facts) if self.facts else None
        return data


Timed = Callable[[], Any]  # the timed call; what it returns is inspected afterwards
Contender = Callable[[], AbstractContextManager[Timed]]  # opens connections, untimed
Inspect = Callable[[Any], tuple[list[str], dict[str, Any]]]  # -> (problems, extra)


@dataclass
class Case:
    key: str
    section: str
    name: str
    rows: int
    contender: Contender | str  # a str: why it is skipped
    reset: Callable[[], None]  # untimed, before every run
    expected: Facts
    inspect: Inspect | None = None
    note: str = ""


def raw_copy_insert(dsn: str, sql: Sql, rows: list[Row]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        with psycopg.connect(dsn) as conn:

            def run() -> None:
                get = itemgetter(*COLUMNS)
                with conn.cursor() as cur, cur.copy(sql.copy) as copy:
                    copy.set_types(COPY_TYPES)
                    write_row = copy.write_row
                    for r in rows:
                        write_row(get(r))
                conn.commit()

            yield run

    return session


def bulkops_write(
    dsn: str, sql: Sql, rows: list[Row], verb: str, workers: int | None = None
) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        db = bulkops.connect(dsn)
        try:
            if verb == "insert":
                yield lambda: db.insert(sql.table, rows)
            else:
                yield lambda: db.upsert(sql.table, rows, workers=workers)
        finally:
            db.close()

    return session


def sqlalchemy_insert(dsn: str, sql: Sql, rows: list[Row]) -> Contender:
    table = sa.Table(
        sql.table,
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.Integer),
        sa.Column("amount", sa.Numeric(10, 4)),
        sa.Column("label", sa.Text),
        sa.Column("created", sa.DateTime(timezone=True)),
    )

    @contextmanager
    def session() -> Iterator[Timed]:
        engine = sa.create_engine(sqlalchemy_url(dsn))
        try:
            with engine.connect() as conn:

                def run() -> None:
                    with conn.begin():
                        conn.execute(sa.insert(table), rows)  # its defaults: insertmanyvalues

                yield run
        finally:
            engine.dispose()

    return session


def hand_upsert(dsn: str, sql: Sql, rows: list[Row]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        with psycopg.connect(dsn) as conn:

            def run() -> None:
                get = itemgetter(*COLUMNS)
                with conn.cursor() as cur:  # one transaction: stage, copy, merge, commit
                    cur.execute(sql.stage)
                    with cur.copy(sql.copy_stage) as copy:
                        copy.set_types(COPY_TYPES)
                        write_row = copy.write_row
                        for r in rows:
                            write_row(get(r))
                    cur.execute(sql.upsert_from_stage)
                conn.commit()

            yield run

    return session


def executemany_upsert(dsn: str, sql: Sql, rows: list[Row]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        with psycopg.connect(dsn) as conn:

            def run() -> None:
                get = itemgetter(*COLUMNS)
                with conn.cursor() as cur:  # psycopg pipelines executemany
                    cur.executemany(sql.upsert_values, (get(r) for r in rows))
                conn.commit()

            yield run

    return session


def bulkops_get_many(dsn: str, sql: Sql, keys: list[int]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        db = bulkops.connect(dsn)
        try:
            yield lambda: db.get_many(sql.table, keys)
        finally:
            db.close()

    return session


def raw_get_any(dsn: str, sql: Sql, keys: list[int]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        with psycopg.connect(dsn, autocommit=True) as conn:

            def run() -> dict[int, tuple[Any, ...]]:
                found: dict[int, tuple[Any, ...]] = {}
                with conn.cursor() as cur:
                    for start in range(0, len(keys), RAW_READ_CHUNK):
                        cur.execute(sql.select_any, (keys[start : start + RAW_READ_CHUNK],))
                        for row in cur.fetchall():
                            found[row[0]] = row
                return found

            yield run

    return session


def raw_get_each(dsn: str, sql: Sql, keys: list[int]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        with psycopg.connect(dsn, autocommit=True) as conn:

            def run() -> dict[int, tuple[Any, ...]]:
                found: dict[int, tuple[Any, ...]] = {}
                with conn.cursor() as cur:
                    for k in keys:
                        cur.execute(sql.select_one, (k,))
                        row = cur.fetchone()
                        if row is not None:
                            found[row[0]] = row
                return found

            yield run

    return session


def command(argv: list[str]) -> Contender:
    @contextmanager
    def session() -> Iterator[Timed]:
        yield lambda: run_cli(argv)

    return session


def sqlalchemy_url(dsn: str) -> str:
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


# ---------------------------------------------------------------------- inspections


def report_is(inserted: int, updated: int, rows_in: int) -> Inspect:
    def inspect(report: bulkops.Report) -> tuple[list[str], dict[str, Any]]:
        problems = []
        got = (report.inserted, report.updated, report.rows_in)
        if got != (inserted, updated, rows_in):
            problems.append(
                f"report says inserted/updated/rows_in {got}, expected "
                f"{(inserted, updated, rows_in)}"
            )
        extra = {
            "chunks": report.chunks,
            "statements": report.statements,
            "report_elapsed": report.elapsed,
            "report": str(report),
        }
        return problems, extra

    return inspect


def rows_found(keys: list[int], rows: list[Row], as_dicts: bool) -> Inspect:
    """Every key found, and each found row equal to the source row (ids are 1-based):
    as a dict for bulkops, as a tuple in column order for raw psycopg."""
    get = itemgetter(*COLUMNS)

    def inspect(found: dict[int, Any]) -> tuple[list[str], dict[str, Any]]:
        problems = []
        if len(found) != len(keys):
            problems.append(f"found {len(found):,} of {len(keys):,} keys")
        wrong = [k for k in keys if found.get(k) != (rows[k - 1] if as_dicts else get(rows[k - 1]))]
        if wrong:
            problems.append(f"{len(wrong):,} rows differ from the source (e.g. id {wrong[0]})")
        return problems, {}

    return inspect


# ---------------------------------------------------------------------- measurement


class Server:
    """An admin connection (autocommit) for the untimed work around the contenders."""

    def __init__(self, dsn: str, sql: Sql) -> None:
        self.dsn = dsn
        self.sql = sql
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.can_checkpoint = True

    def close(self) -> None:
        self.conn.close()

    def fresh_table(self) -> None:
        self.conn.execute(self.sql.drop)
        self.conn.execute(self.sql.create)

    def load(self, rows: Iterable[Row]) -> None:
        """Fresh table holding ``rows`` (binary COPY), vacuumed and analyzed."""
        self.fresh_table()
        get = itemgetter(*COLUMNS)
        with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(self.sql.copy) as copy:
            copy.set_types(COPY_TYPES)
            for r in rows:
                copy.write_row(get(r))
        self.conn.execute(self.sql.vacuum)

    def facts(self) -> Facts:
        row = self.conn.execute(self.sql.facts).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), Decimal(row[3])

    def settle(self) -> None:
        """Start every timed run from the same state: no garbage on our side, no dirty
        buffers of the previous run on the server's."""
        gc.collect()
        if self.can_checkpoint:
            try:
                self.conn.execute("CHECKPOINT")
            except psycopg.Error:  # not a superuser (or pg_checkpoint) on --dsn
                self.can_checkpoint = False

    def info(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes")
        out = {}
        for name in (*names, "shared_buffers", "autovacuum"):
            row = self.conn.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
        return out

    def drop(self) -> None:
        self.conn.execute(self.sql.drop)


def new_result(case: Case) -> Result:
    result = Result(key=case.key, section=case.section, name=case.name, rows=case.rows)
    result.note = case.note
    if isinstance(case.contender, str):
        result.skipped = True
        result.note = f"skipped: {case.contender}"
    return result


def run_once(
    case: Case, result: Result, attempt: int, repeat: int, server: Server, log: Console
) -> bool:
    """One timed run of ``case`` on a freshly reset table; False once it must not run again
    (skipped, failed, or the table did not check out)."""
    assert not isinstance(case.contender, str)
    try:
        case.reset()
        with case.contender() as timed:
            server.settle()
            started = time.perf_counter()
            output = timed()
            elapsed = time.perf_counter() - started
        problems, extra = case.inspect(output) if case.inspect else ([], {})
        del output
        if not result.times or elapsed < min(result.times):
            result.extra.update(extra)  # the best run's details
        result.times.append(elapsed)
        log.print(
            f"  {case.name}: run {attempt}/{repeat} {elapsed:.3f}s "
            f"({case.rows / elapsed:,.0f} rows/s)",
            highlight=False,
        )
        result.facts = server.facts()
        if result.facts != case.expected:
            problems.append(
                f"table holds count/sum(a)/sum(b)/sum(amount) {result.facts}, "
                f"expected {case.expected}"
            )
        result.verified = not problems
        if problems:
            result.note = "; ".join(problems)
            log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
            return False
        return True
    except Skip as skip:
        result.skipped = not result.times
        result.verified = result.verified and not result.skipped
        result.note = f"skipped: {skip}" if result.skipped else f"failed on a repeat: {skip}"
        log.print(f"  [yellow]{case.name}: {result.note}[/]", highlight=False)
    except Exception as error:  # a contender that breaks: report it, run the others
        result.verified = False
        result.note = f"failed: {type(error).__name__}: {error}"
        log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
        log.print(traceback.format_exc(), highlight=False, markup=False)
    return False


def measure_section(
    cases: list[Case], repeat: int, server: Server, log: Console
) -> dict[str, Result]:
    """Best of ``repeat`` for each case, the repeats interleaved (round k runs every case
    once), so that a slow drift of a shared machine does not favour one contender."""
    results = {case.key: new_result(case) for case in cases}
    active = [case for case in cases if not results[case.key].skipped]
    for case in cases:
        if results[case.key].skipped:
            log.print(f"  [yellow]{case.name}: {results[case.key].note}[/]", highlight=False)
    for attempt in range(1, repeat + 1):
        active = [c for c in active if run_once(c, results[c.key], attempt, repeat, server, log)]
    return results


# --------------------------------------------------------------------------- report


RATIOS: list[tuple[str, str, str, float | None]] = [
    ("insert: bulkops / raw binary COPY", "insert_bulkops", "insert_copy", TARGET_INSERT_VS_COPY),
    (
        "insert: bulkops / SQLAlchemy Core executemany",
        "insert_bulkops",
        "insert_sqlalchemy",
        TARGET_INSERT_VS_SQLALCHEMY,
    ),
    (
        "upsert: bulkops / COPY -> temp -> INSERT ON CONFLICT",
        "upsert_bulkops",
        "upsert_hand",
        TARGET_UPSERT_VS_HAND,
    ),
    (
        "upsert: bulkops / psycopg executemany ON CONFLICT",
        "upsert_bulkops",
        "upsert_executemany",
        TARGET_UPSERT_VS_EXECUTEMANY,
    ),
    ("get_many: bulkops / = ANY() in 10k chunks", "get_bulkops", "get_any", TARGET_GET_VS_ANY),
    ("get_many: bulkops / one SELECT per key", "get_bulkops", "get_each", TARGET_GET_VS_PER_KEY),
    ("CLI: bulkops load / psql \\copy", "cli_bulkops", "cli_psql", TARGET_CLI_VS_PSQL),
    ("upsert: bulkops workers=2 / workers=1", "upsert_bulkops_w2", "upsert_bulkops", None),
]

BASELINES = {
    "insert": "insert_copy",
    "upsert": "upsert_hand",
    "get_many": "get_any",
    "CLI load": "cli_psql",
}


def ratios(results: dict[str, Result]) -> list[dict[str, Any]]:
    return ratio_rows(results, RATIOS)


def print_report(
    config: dict[str, Any],
    results: dict[str, Result],
    ratio_rows: list[dict[str, Any]],
    console: Console,
) -> None:
    server = config["server"]
    console.print(
        f"\n[bold]PostgreSQL bulk work[/]: {config['rows']:,} rows, best of {config['repeat']}, "
        f"PostgreSQL {server['server_version']}, Python {config['python']}, "
        f"psycopg {config['psycopg']}, SQLAlchemy {config['sqlalchemy']}, "
        f"bulkops {config['bulkops']}, {config['cpus']} CPUs shared by client and server",
        highlight=False,
    )
    console.print(f"server: {config['server_note']}", highlight=False)
    console.print(f"data: {config['data']}", highlight=False)
    console.print(f"timing: {config['timing']}", highlight=False)
    table = results_table(
        [
            ("op", "left"),
            ("contender", "left"),
            ("rows timed", "right"),
            ("seconds", "right"),
            ("rows/s", "right"),
            ("vs raw", "right"),
            ("count", "right"),
            ("sum(a)", "right"),
            ("ok", "center"),
            ("notes", "left"),
        ]
    )
    section = None
    for result in results.values():
        if section is not None and result.section != section:
            table.add_section()
        first = result.section != section
        section = result.section
        best, rate = result.seconds, result.per_second
        vs_raw = ratio(result, results.get(BASELINES.get(result.section, "")))
        facts = result.facts
        table.add_row(
            result.section if first else "",
            result.name,
            f"{result.rows:,}",
            f"{best:.3f}" if best else "-",
            f"{rate:,.0f}" if rate else "-",
            f"{vs_raw:.2f}x" if vs_raw else "-",
            f"{facts[0]:,}" if facts else "-",
            f"{facts[1]:,}" if facts else "-",
            ok_cell(result),
            result.note,
        )
    console.print(table)

    for key in ("insert_bulkops", "upsert_bulkops", "upsert_bulkops_w2"):
        lib = results.get(key)
        if lib is not None and lib.extra.get("report"):
            console.print(f"{lib.name} report: {lib.extra['report']}", highlight=False)

    targets = ratio_table(ratio_rows)
    console.print(targets)
    console.print(config["workers_note"], highlight=False)


# --------------------------------------------------------------------------- the plan


def build_plan(
    args: argparse.Namespace,
    dsn: str,
    sql: Sql,
    server: Server,
    rows: list[Row],
    csv_path: Path,
    log: Console,
) -> tuple[list[Case], dict[str, Any]]:
    n = len(rows)
    subset = min(n, args.subset_rows)
    evens = [r for r in rows if r["id"] % 2 == 0]
    odd_count = n - len(evens)
    started = time.perf_counter()
    upsert_rows = changed_rows(rows)
    all_facts = facts_of(rows)
    upserted_facts = facts_of(upsert_rows)
    merged = {r["id"]: r for r in evens}
    merged.update((r["id"], r) for r in upsert_rows[:subset])
    subset_upserted_facts = facts_of(merged.values())
    del merged
    prepare_s = time.perf_counter() - started
    log.print(f"  upsert input and expected table facts: {prepare_s:.2f}s", highlight=False)

    rng = random.Random(SEED)
    keys = rng.sample(range(1, n + 1), min(args.get_keys, n))
    each_keys = keys[: min(args.per_key, len(keys))]

    def nothing() -> None:
        pass

    def preload() -> None:
        server.load(evens)

    subset_note = f"timed on the first {subset:,} rows; rows/s compared" if subset < n else ""
    cases = [
        Case("insert_copy", "insert", "raw psycopg binary COPY", n,
             raw_copy_insert(dsn, sql, rows), server.fresh_table, all_facts),
        Case("insert_bulkops", "insert", "bulkops: db.insert", n,
             bulkops_write(dsn, sql, rows, "insert"), server.fresh_table, all_facts,
             report_is(n, 0, n)),
        Case("insert_sqlalchemy", "insert", "SQLAlchemy Core execute(insert(), dicts)", subset,
             sqlalchemy_insert(dsn, sql, rows[:subset]), server.fresh_table,
             facts_of(rows[:subset]), note=subset_note),
        Case("upsert_hand", "upsert", "COPY -> temp -> INSERT … ON CONFLICT", n,
             hand_upsert(dsn, sql, upsert_rows), preload, upserted_facts),
        Case("upsert_bulkops", "upsert", "bulkops: db.upsert (workers=1)", n,
             bulkops_write(dsn, sql, upsert_rows, "upsert", 1), preload, upserted_facts,
             report_is(odd_count, len(evens), n)),
        Case("upsert_executemany", "upsert", "psycopg executemany INSERT … ON CONFLICT",
             subset, executemany_upsert(dsn, sql, upsert_rows[:subset]), preload,
             subset_upserted_facts, note=subset_note),
        Case("upsert_bulkops_w2", "upsert", "bulkops: db.upsert (workers=2)", n,
             bulkops_write(dsn, sql, upsert_rows, "upsert", 2), preload, upserted_facts,
             report_is(odd_count, len(evens), n)),
        Case("get_any", "get_many", f"raw psycopg = ANY(%s), {RAW_READ_CHUNK:,} keys each",
             len(keys), raw_get_any(dsn, sql, keys), nothing, all_facts,
             rows_found(keys, rows, as_dicts=False)),
        Case("get_bulkops", "get_many", "bulkops: db.get_many", len(keys),
             bulkops_get_many(dsn, sql, keys), nothing, all_facts,
             rows_found(keys, rows, as_dicts=True)),
        Case("get_each", "get_many", "psycopg: one SELECT … WHERE id = %s per key",
             len(each_keys), raw_get_each(dsn, sql, each_keys), nothing, all_facts,
             rows_found(each_keys, rows, as_dicts=False),
             note=f"timed on {len(each_keys):,} keys; rows/s extrapolates"
             if len(each_keys) < len(keys) else ""),
    ]  # fmt: skip

    bulkops_cli = script("bulkops") or "bulkops"
    psql = shutil.which("psql") or "/usr/bin/psql"
    bulkops_argv = [
        bulkops_cli, "load", str(csv_path), "--table", sql.table, "--db", dsn, "--quiet"
    ]  # fmt: skip
    psql_argv = [
        psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn,
        "-c", sql.psql_copy.format(path=quote_literal(str(csv_path))),
    ]  # fmt: skip
    cli_missing = cli_available([bulkops_argv[0], "load", "--help"])
    psql_missing = cli_available([psql, "--version"])
    cases += [
        Case("cli_psql", "CLI load", f"psql \\copy {sql.table} FROM 'rows.csv' CSV HEADER", n,
             psql_missing or command(psql_argv), server.fresh_table, all_facts,
             note="whole subprocess"),
        Case("cli_bulkops", "CLI load", f"bulkops load rows.csv --table {sql.table} --quiet", n,
             cli_missing or command(bulkops_argv), server.fresh_table, all_facts,
             note="whole subprocess (interpreter start-up included)"),
    ]  # fmt: skip
    plan_info = {
        "subset_rows": subset,
        "get_keys": len(keys),
        "per_key_keys": len(each_keys),
        "bulkops_cli": bulkops_argv,
        "psql_cli": psql_argv,
    }
    return cases, plan_info


def run_get_many_setup(server: Server, sql: Sql, rows: list[Row], keys_hint: int) -> None:
    """Load every row once for the read contenders, and warm the heap and index with one
    untimed pass over the keys so that no contender pays for a cold cache."""
    server.load(rows)
    with server.conn.cursor() as cur:
        for start in range(0, keys_hint, RAW_READ_CHUNK):
            cur.execute(sql.select_any, (list(range(start + 1, start + RAW_READ_CHUNK + 1)),))
            cur.fetchall()


# ----------------------------------------------------------------------------- main


def table_exists(dsn: str, table: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (quote_ident(table),)).fetchone()
    return row is not None and row[0] is not None


def profile(dsn: str, sql: Sql, n: int, console: Console, log: Console) -> int:
    """cProfile db.insert and db.upsert (half the keys existing) on ``n`` rows."""
    server = Server(dsn, sql)
    try:
        rows = list(make_rows(n))
        upsert_rows = changed_rows(rows)
        for verb, data in (("insert", rows), ("upsert", upsert_rows)):
            if verb == "insert":
                server.fresh_table()
            else:
                server.load(r for r in rows if r["id"] % 2 == 0)
            with bulkops.connect(dsn) as db:
                server.settle()
                profiler = cProfile.Profile()
                started = time.perf_counter()
                profiler.enable()
                write = db.insert if verb == "insert" else db.upsert
                report = write(sql.table, data)
                profiler.disable()
                elapsed = time.perf_counter() - started
            console.print(
                f"\n[bold]cProfile: db.{verb}[/] of {n:,} rows: {elapsed:.3f}s under the "
                f"profiler ({n / elapsed:,.0f} rows/s): {report}",
                highlight=False,
            )
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.strip_dirs().sort_stats("tottime").print_stats(15)
            sys.stdout.flush()
        log.print(f"  table facts after the upsert: {server.facts()}", highlight=False)
    finally:
        server.drop()
        server.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help=f"rows per contender (default {DEFAULT_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs (default 1)")
    parser.add_argument(
        "--dsn", help="postgresql://... of an existing server (default: a throwaway cluster)"
    )
    parser.add_argument("--table", default="t", help="table name (default t; must not exist)")
    parser.add_argument(
        "--subset-rows",
        type=int,
        default=DEFAULT_SUBSET_ROWS,
        help="rows for the slow peers: SQLAlchemy Core insert, executemany upsert "
        f"(default {DEFAULT_SUBSET_ROWS:,})",
    )
    parser.add_argument(
        "--get-keys", type=int, default=DEFAULT_GET_KEYS, help="random keys to read"
    )
    parser.add_argument(
        "--per-key",
        type=int,
        default=DEFAULT_PER_KEY,
        help=f"keys for the one-SELECT-per-key peer (default {DEFAULT_PER_KEY:,})",
    )
    parser.add_argument("--dir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"only cProfile db.insert and db.upsert (default {PROFILE_ROWS:,} rows)",
    )
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = PROFILE_ROWS if args.profile else QUICK_ROWS if args.quick else DEFAULT_ROWS
    if min(args.rows, args.repeat, args.subset_rows, args.get_keys, args.per_key) < 1:
        parser.error("--rows, --repeat, --subset-rows, --get-keys and --per-key must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = Console(stderr=True)
    console = report_console(170)
    sql = Sql(args.table)
    if args.dsn and table_exists(args.dsn, args.table):
        log.print(
            f"[red]table {args.table!r} already exists on {args.dsn}: the benchmark drops and "
            "recreates its table, so pass --table with a name that is not in use[/]",
            highlight=False,
        )
        return 2
    with postgres(args.dsn, log) as (dsn, origin):
        if args.profile:
            return profile(dsn, sql, args.rows, console, log)
        return run_benchmark(args, dsn, origin, sql, log, console)


def run_benchmark(
    args: argparse.Namespace, dsn: str, origin: str, sql: Sql, log: Console, console: Console
) -> int:
    n = args.rows
    workdir = Path(tempfile.mkdtemp(prefix="bulkops-pg-bench-", dir=args.dir))
    server = Server(dsn, sql)
    results: dict[str, Result] = {}
    try:
        log.print(f"[bold]preparing {n:,} rows[/] in {workdir}", highlight=False)
        started = time.perf_counter()
        rows = list(make_rows(n))
        generate_s = time.perf_counter() - started
        csv_path = workdir / "rows.csv"
        started = time.perf_counter()
        write_csv(rows, csv_path)
        csv_s = time.perf_counter() - started
        cases, plan_info = build_plan(args, dsn, sql, server, rows, csv_path, log)
        # The first write of N rows into a new server is slower (new WAL segments and
        # relation files, memory touched for the first time), whoever does it: do it once
        # untimed, so that it does not land on the first contender.
        started = time.perf_counter()
        server.load(rows)
        server.fresh_table()
        log.print(f"  untimed warm-up COPY: {time.perf_counter() - started:.2f}s", highlight=False)
        for section in dict.fromkeys(case.section for case in cases):
            log.print(f"[bold]{section}[/]", highlight=False)
            if section == "get_many":
                run_get_many_setup(server, sql, rows, n)
            in_section = [case for case in cases if case.section == section]
            results.update(measure_section(in_section, args.repeat, server, log))
        server_info = server.info()
    finally:
        try:
            server.drop()
        finally:
            server.close()
            shutil.rmtree(workdir, ignore_errors=True)

    durable = server_info["fsync"] == "on" and server_info["synchronous_commit"] == "on"
    server_note = (
        f"{origin}; fsync={server_info['fsync']}, "
        f"synchronous_commit={server_info['synchronous_commit']}, "
        f"full_page_writes={server_info['full_page_writes']}, "
        f"shared_buffers={server_info['shared_buffers']}, "
        f"autovacuum={server_info['autovacuum']}"
        + (
            ""
            if durable
            else " (NOT durable settings: absolute rates are higher than on a production "
            "server; every contender runs on this same server, so the ratios are fair)"
        )
    )
    w2 = results.get("upsert_bulkops_w2")
    w1 = results.get("upsert_bulkops")
    speedup = ratio(w2, w1)
    workers_note = (
        f"workers=2 vs workers=1 on the upsert: {speedup:.2f}x "
        f"on {os.cpu_count()} CPUs that the client (encoding rows, one thread at a time under "
        "the GIL) and the server (two backends) share"
        if speedup is not None
        else "workers=2 vs workers=1: n/a"
    )
    config = {
        "rows": n,
        "repeat": args.repeat,
        **plan_info,
        "server": server_info,
        "server_note": server_note,
        "data": (
            f"pre-generated once into a list of dicts ({generate_s:.2f}s, not timed) that every "
            f"library contender consumes; the CLIs read one CSV written from it ({csv_s:.2f}s, "
            "not timed); the table is recreated before every run (upserts: pre-loaded with the "
            f"{n // 2:,} even ids, then VACUUM ANALYZE, untimed; the upsert changes `a` on them)"
        ),
        "timing": (
            "time.perf_counter around the call on an already open connection (connecting is "
            "not timed), best of --repeat (repeats interleaved across a section's contenders); "
            "CLIs: the whole subprocess; one untimed warm-up COPY of all rows first; CHECKPOINT "
            "and gc.collect() before each run; get_many reads a fully loaded table after an "
            "untimed warm-up pass"
        ),
        "workers_note": workers_note,
        "python": sys.version.split()[0],
        "psycopg": psycopg.__version__,
        "sqlalchemy": sa.__version__,
        "bulkops": bulkops.__version__,
        "cpus": os.cpu_count(),
    }
    ratio_rows = ratios(results)
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
        f"{r.section}: {r.name}: table or Report does not check out ({r.note or 'see above'})"
        for r in results.values()
        if not r.skipped and not r.verified
    ]
    return conclude(broken, missed_targets(ratio_rows))


if __name__ == "__main__":
    sys.exit(main())
