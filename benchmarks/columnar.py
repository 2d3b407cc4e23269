"""Columnar benchmark: DataFrames (pyarrow, pandas, polars) into PostgreSQL and SQLite.

By default a throwaway PostgreSQL cluster is started (``tests/pg_cluster.py``: fsync=off,
synchronous_commit=off) and stopped at the end; ``--dsn`` uses an existing server. One
mixed-type table (``id int8 PRIMARY KEY, qty int4, price numeric(12,2), label text,
code varchar(8), day date, at timestamptz, ok bool``) is recreated before every timed
run. The N rows are generated once as a pyarrow Table (ids in order); the pandas input
is that table as Arrow-backed pandas (``to_pandas(types_mapper=pd.ArrowDtype)``), the
polars input ``polars.from_arrow`` of it. After every run the table is checked (count,
sums of id, qty and price, text lengths, trues, min day, max at) against the input.

Contenders:
- insert: bulkops insert of each input / pgpq + psycopg binary COPY of the same Arrow
  table in one transaction (the limit) / ADBC ``adbc_ingest`` (the other encoder) /
  ``polars.write_database(engine="adbc")`` / ``pandas.DataFrame.to_sql(method="multi",
  chunksize=8_000)`` through SQLAlchemy + psycopg (on ``--to-sql-rows`` rows: its rate
  is what is compared);
- upsert of the table with half the keys existing (even ids pre-loaded; their qty
  changes): bulkops upsert / hand-written COPY -> temp -> INSERT ... ON CONFLICT fed by
  the same pgpq encoder;
- SQLite: bulkops insert of each input / stdlib ``executemany`` of tuples built before
  the clock starts (the values sqlite3 binds: decimals and times as ISO text), the
  target's contender / ADBC's SQLite ``adbc_ingest`` / for information, the same tuples
  as 256-row multi-row VALUES statements (what bulkops sends), also built before the
  clock: the hand-written limit of bulkops' own way.

    python benchmarks/columnar.py                  # 1,000,000 rows
    python benchmarks/columnar.py --rows 200000 --repeat 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pgpq
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from _common import (
    BestOf,
    conclude,
    contenders_table,
    missed_targets,
    postgres,
    ratio_rows,
    ratio_table,
    report_console,
)
from rich.console import Console

import bulkops

DEFAULT_ROWS = 1_000_000
VALUES_GROUP_ROWS = 256  # bulkops' SQLite groups for 8 values a row (2,048 values)
TO_SQL_ROWS = 50_000

PG_CREATE = """CREATE TABLE t (id int8 PRIMARY KEY, qty int4, price numeric(12,2), label text,
code varchar(8), day date, at timestamptz, ok bool)"""
SQLITE_CREATE = """CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER, price DECIMAL_TEXT,
label TEXT, code VARCHAR(8), day DATE, at DATETIME, ok BOOLEAN)"""
FACTS = """SELECT count(*), sum(id), sum(qty), sum(price), sum(length(label)),
sum(CASE WHEN ok THEN 1 ELSE 0 END), min(day), max(at) FROM t"""

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def make_table(n: int, start: int = 1) -> pa.Table:
    ids = pa.array(range(start, start + n), pa.int64())
    i = pc.subtract(ids, 1)
    return pa.table(
        {
            "id": ids,
            "qty": pc.cast(pc.multiply(pc.bit_wise_and(i, 1023), 7), pa.int32()),
            "price": cents_as_decimal(pc.remainder(pc.add(pc.multiply(i, 37), 1), 10**9)),
            "label": pc.binary_join_element_wise("label-", pc.cast(ids, pa.string()), ""),
            "code": pc.binary_join_element_wise(
                "c", pc.cast(pc.bit_wise_and(i, 4095), pa.string()), ""
            ),
            "day": pc.cast(pc.add(pc.bit_wise_and(i, 2047), 19_000).cast(pa.int32()), pa.date32()),
            "at": pc.cast(
                pc.add(pc.multiply(i, 1_000_000), int(EPOCH.timestamp() * 1_000_000)),
                pa.timestamp("us", tz="UTC"),
            ),
            "ok": pc.equal(pc.bit_wise_and(i, 3), 0),
        }
    )


def cents_as_decimal(cents: pa.Array) -> pa.Array:
    """int64 cents as decimal128(12, 2), built from the unscaled 128-bit integers."""
    low = cents.to_numpy()
    words = np.empty((len(low), 2), dtype=np.int64)
    words[:, 0] = low
    words[:, 1] = np.where(low < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(low), [None, pa.py_buffer(words)])


def facts_of(table: pa.Table) -> tuple[Any, ...]:
    price = pc.sum(table["price"].cast(pa.decimal128(38, 2))).as_py()
    return (
        table.num_rows,
        pc.sum(table["id"]).as_py(),
        pc.sum(table["qty"]).as_py(),
        Decimal(price),
        pc.sum(pc.utf8_length(table["label"])).as_py(),
        pc.sum(pc.cast(table["ok"], pa.int64())).as_py(),
        pc.min(table["day"]).as_py(),
        pc.max(table["at"]).as_py(),
    )


def fix_facts(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Database facts in the input's types (SQLite keeps dates and times as text)."""
    out = list(row)
    out[3] = Decimal(str(out[3])).quantize(Decimal("0.01"))
    if isinstance(out[6], str):
        out[6] = dt.date.fromisoformat(out[6])
    if isinstance(out[7], str):
        out[7] = dt.datetime.fromisoformat(out[7])
    out[7] = out[7].astimezone(dt.UTC)
    return tuple(
        int(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in out
    )


# ---------------------------------------------------------------------- results


@dataclass
class Result(BestOf):
    key: str
    name: str
    rows: int
    times: list[float] = field(default_factory=list)
    verified: bool = False
    skipped: bool = False
    note: str = ""
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per run

    def units(self) -> int:
        return self.rows


@dataclass
class Case:
    key: str
    name: str
    rows: int
    reset: Callable[[], None]
    run: Callable[[], Any]
    facts: Callable[[], tuple[Any, ...]]
    expected: tuple[Any, ...]
    check: Callable[[Any], list[str]] | None = None


def measure(cases: list[Case], repeat: int, log: Console) -> dict[str, Result]:
    results = {c.key: Result(c.key, c.name, c.rows) for c in cases}
    active = list(cases)
    for attempt in range(1, repeat + 1):
        still = []
        for case in active:
            result = results[case.key]
            try:
                case.reset()
                gc.collect()
                started, cpu = time.perf_counter(), time.process_time()
                output = case.run()
                elapsed = time.perf_counter() - started
                result.cpu.append(time.process_time() - cpu)
                problems = case.check(output) if case.check else []
                got = fix_facts(case.facts())
                if got != case.expected:
                    problems.append(f"table facts {got} != expected {case.expected}")
                result.times.append(elapsed)
                result.verified = not problems
                log.print(
                    f"  {case.name}: run {attempt}/{repeat} {elapsed:.3f}s "
                    f"({case.rows / elapsed:,.0f} rows/s)",
                    highlight=False,
                )
                if problems:
                    result.note = "; ".join(problems)
                    log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
                    continue
                still.append(case)
            except Exception as error:
                result.verified = False
                result.skipped = not result.times
                result.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
                log.print(f"  [red]{case.name}: {result.note}[/]", highlight=False)
                log.print(traceback.format_exc()[-3000:], highlight=False, markup=False)
        active = still
    return results


def report_is(inserted: int, updated: int, rows_in: int) -> Callable[[Any], list[str]]:
    def check(report: bulkops.Report) -> list[str]:
        got = (report.inserted, report.updated, report.rows_in, report.rejected)
        if got != (inserted, updated, rows_in, 0):
            return [f"report inserted/updated/rows_in/rejected {got}"]
        return []

    return check


# ------------------------------------------------------------------- PostgreSQL


def pgpq_copy(conn: psycopg.Connection[Any], table: pa.Table, target: str = "t") -> None:
    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    with conn.cursor() as cur, cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(encoder.write_header())
        for batch in table.to_batches():
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())


def pg_cases(dsn: str, n: int, to_sql_rows: int) -> tuple[list[Case], list[Case]]:
    admin = psycopg.connect(dsn, autocommit=True)
    work = psycopg.connect(dsn, autocommit=True)
    db = bulkops.connect(dsn)
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    table = make_table(n)
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    polars_frame = pl.from_arrow(table)
    expected = facts_of(table)

    def facts() -> tuple[Any, ...]:
        row = admin.execute(FACTS).fetchone()
        assert row is not None
        return tuple(row)

    def fresh() -> None:
        admin.execute("DROP TABLE IF EXISTS t")
        admin.execute(PG_CREATE)
        admin.execute("CHECKPOINT")

    def copy_all() -> None:
        with work.transaction():
            pgpq_copy(work, table)

    def adbc_ingest() -> None:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(dsn) as conn, conn.cursor() as cur:
            cur.adbc_ingest("t", table, mode="append")
            conn.commit()

    def polars_adbc() -> None:
        polars_frame.write_database("t", dsn, engine="adbc", if_table_exists="append")

    small = table.slice(0, to_sql_rows)
    small_frame = small.to_pandas()

    def to_sql() -> None:
        small_frame.to_sql(
            "t", engine, if_exists="append", index=False, method="multi", chunksize=8_000,
            dtype={"price": sa.Numeric(12, 2)},
        )  # fmt: skip

    insert = [
        Case("copy", "pgpq + psycopg binary COPY", n, fresh, copy_all, facts, expected),
        Case("bulkops_arrow", "bulkops insert (pyarrow Table)", n, fresh,
             lambda: db.insert("t", table), facts, expected, report_is(n, 0, n)),
        Case("bulkops_pandas", "bulkops insert (pandas DataFrame)", n, fresh,
             lambda: db.insert("t", frame), facts, expected, report_is(n, 0, n)),
        Case("bulkops_polars", "bulkops insert (polars DataFrame)", n, fresh,
             lambda: db.insert("t", polars_frame), facts, expected, report_is(n, 0, n)),
        Case("adbc", "ADBC adbc_ingest (pyarrow Table)", n, fresh, adbc_ingest, facts, expected),
        Case("polars_adbc", 'polars write_database(engine="adbc")', n, fresh, polars_adbc,
             facts, expected),
        Case("to_sql", f'pandas to_sql(method="multi", chunksize=8000), {to_sql_rows:,} rows',
             to_sql_rows, fresh, to_sql, facts, facts_of(small)),
    ]  # fmt: skip

    # Upsert: even ids exist (with another qty), odd ids are new.
    existing = table.filter(pc.equal(pc.bit_wise_and(table["id"], 1), 0))
    existing = existing.set_column(1, "qty", pc.cast(pc.add(existing["qty"], 1), pa.int32()))

    def preload() -> None:
        fresh()
        with work.transaction():
            pgpq_copy(work, existing)
        admin.execute("VACUUM ANALYZE t")

    def hand_upsert() -> None:
        with work.transaction():
            work.execute("CREATE TEMP TABLE s (LIKE t INCLUDING DEFAULTS) ON COMMIT DROP")
            pgpq_copy(work, table, "s")
            work.execute(
                "INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET "
                "qty = excluded.qty, price = excluded.price, label = excluded.label, "
                "code = excluded.code, day = excluded.day, at = excluded.at, ok = excluded.ok"
            )

    half = existing.num_rows
    upsert = [
        Case("upsert_hand", "COPY -> temp -> INSERT ON CONFLICT (pgpq)", n, preload,
             hand_upsert, facts, expected),
        Case("upsert_arrow", "bulkops upsert (pyarrow Table)", n, preload,
             lambda: db.upsert("t", table), facts, expected, report_is(n - half, half, n)),
        Case("upsert_pandas", "bulkops upsert (pandas DataFrame)", n, preload,
             lambda: db.upsert("t", frame), facts, expected, report_is(n - half, half, n)),
        Case("upsert_polars", "bulkops upsert (polars DataFrame)", n, preload,
             lambda: db.upsert("t", polars_frame), facts, expected, report_is(n - half, half, n)),
    ]  # fmt: skip
    return insert, upsert


# ------------------------------------------------------------------------ SQLite


def sqlite_cases(directory: Path, n: int) -> list[Case]:
    path = directory / "bench.db"
    url = f"sqlite:///{path}"
    table = make_table(n)
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    polars_frame = pl.from_arrow(table)
    expected = facts_of(table)
    # The values sqlite3 binds, built before the clock starts.
    tuples = list(
        zip(
            table["id"].to_pylist(),
            table["qty"].to_pylist(),
            [str(v) for v in table["price"].to_pylist()],
            table["label"].to_pylist(),
            table["code"].to_pylist(),
            [v.isoformat() for v in table["day"].to_pylist()],
            [v.isoformat() for v in table["at"].to_pylist()],
            table["ok"].to_pylist(),
            strict=True,
        )
    )
    admin = sqlite3.connect(path, isolation_level=None)
    db = bulkops.connect(url)

    def fresh() -> None:
        admin.execute("DROP TABLE IF EXISTS t")
        admin.execute(SQLITE_CREATE)

    def facts() -> tuple[Any, ...]:
        return tuple(admin.execute(FACTS).fetchone())

    def executemany() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuples)
        conn.execute("COMMIT")
        conn.close()

    # The same tuples as multi-row VALUES statements (what bulkops sends): 256 rows of
    # 8 values a statement, the parameter lists built before the clock starts too.
    per = VALUES_GROUP_ROWS
    flat = [v for row in tuples for v in row]
    full = len(tuples) // per * per * 8
    groups = [flat[i : i + per * 8] for i in range(0, full, per * 8)]
    rest = flat[full:]
    one = "(?, ?, ?, ?, ?, ?, ?, ?)"

    def values_groups() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO t VALUES {', '.join([one] * per)}", groups)
        if rest:
            conn.execute(f"INSERT INTO t VALUES {', '.join([one] * (len(rest) // 8))}", rest)
        conn.execute("COMMIT")
        conn.close()

    # ADBC's SQLite driver has no decimal128: it gets the prices as text (as stored).
    adbc_table = table.set_column(2, "price", table["price"].cast(pa.string()))

    def adbc_ingest() -> None:
        import adbc_driver_sqlite.dbapi as adbc

        with adbc.connect(str(path)) as conn, conn.cursor() as cur:
            cur.adbc_ingest("t", adbc_table, mode="append")
            conn.commit()

    return [
        Case("sqlite_executemany", "stdlib executemany of pre-built tuples", n, fresh,
             executemany, facts, expected),
        Case("sqlite_arrow", "bulkops insert (pyarrow Table)", n, fresh,
             lambda: db.insert("t", table), facts, expected, report_is(n, 0, n)),
        Case("sqlite_pandas", "bulkops insert (pandas DataFrame)", n, fresh,
             lambda: db.insert("t", frame), facts, expected, report_is(n, 0, n)),
        Case("sqlite_polars", "bulkops insert (polars DataFrame)", n, fresh,
             lambda: db.insert("t", polars_frame), facts, expected, report_is(n, 0, n)),
        Case("sqlite_adbc", "ADBC SQLite adbc_ingest (pyarrow Table)", n, fresh, adbc_ingest,
             facts, expected),
        Case("sqlite_values", f"stdlib executemany of pre-built {per}-row VALUES groups", n,
             fresh, values_groups, facts, expected),
    ]  # fmt: skip


# ------------------------------------------------------------------------ report

RATIOS: list[tuple[str, str, str, float | None]] = [
    ("insert: bulkops pyarrow / pgpq COPY", "bulkops_arrow", "copy", 0.9),
    ("insert: bulkops pandas / pgpq COPY", "bulkops_pandas", "copy", 0.9),
    ("insert: bulkops polars / pgpq COPY", "bulkops_polars", "copy", 0.9),
    ("insert: bulkops pyarrow / polars write_database adbc", "bulkops_arrow", "polars_adbc", 1.2),
    ("insert: bulkops pandas / polars write_database adbc", "bulkops_pandas", "polars_adbc", 1.2),
    ("insert: bulkops polars / polars write_database adbc", "bulkops_polars", "polars_adbc", 1.2),
    ("insert: bulkops pandas / pandas to_sql multi", "bulkops_pandas", "to_sql", 10.0),
    ("insert: pgpq COPY / ADBC adbc_ingest (encoder choice)", "copy", "adbc", None),
    ("upsert: bulkops pyarrow / hand COPY->temp->ON CONFLICT", "upsert_arrow", "upsert_hand", 0.9),
    ("upsert: bulkops pandas / hand COPY->temp->ON CONFLICT", "upsert_pandas", "upsert_hand", 0.9),
    ("upsert: bulkops polars / hand COPY->temp->ON CONFLICT", "upsert_polars", "upsert_hand", 0.9),
    ("SQLite: bulkops pyarrow / executemany tuples", "sqlite_arrow", "sqlite_executemany", 0.9),
    ("SQLite: bulkops pandas / executemany tuples", "sqlite_pandas", "sqlite_executemany", 0.9),
    ("SQLite: bulkops polars / executemany tuples", "sqlite_polars", "sqlite_executemany", 0.9),
    ("SQLite: ADBC ingest / executemany tuples", "sqlite_adbc", "sqlite_executemany", None),
    ("SQLite: bulkops pyarrow / VALUES groups", "sqlite_arrow", "sqlite_values", None),
    ("SQLite: VALUES groups / executemany tuples", "sqlite_values", "sqlite_executemany", None),
]


def print_sqlite_cpu(results: dict[str, Result], console: Console) -> None:
    """SQLite runs inside this process, so its CPU time is the whole work: on a busy
    machine (waits for a core, other processes' fsyncs) it is steadier than the wall
    clock. For information; the targets are the wall-clock ratios above."""
    base = results.get("sqlite_executemany")
    if base is None or not base.cpu:
        return
    lines = []
    for key, r in results.items():
        if key.startswith("sqlite_") and r.cpu:
            lines.append(
                f"  {r.name}: {min(r.cpu):.3f} s CPU, executemany / this "
                f"{min(base.cpu) / min(r.cpu):.2f}x"
            )
    console.print("SQLite, best CPU seconds of this process (information):", highlight=False)
    console.print("\n".join(lines), highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--to-sql-rows", type=int, default=TO_SQL_ROWS)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: a throwaway one)")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    console = report_console(140)
    log = Console(stderr=True)
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        log.print(f"[bold]SQLite[/], {args.rows:,} rows", highlight=False)
        results.update(measure(sqlite_cases(Path(tmp), args.rows), args.repeat, log))
    if not args.skip_postgres:
        with postgres(args.dsn, log) as (dsn, how):
            log.print(f"[bold]PostgreSQL[/] ({how}), {args.rows:,} rows", highlight=False)
            insert, upsert = pg_cases(dsn, args.rows, min(args.to_sql_rows, args.rows))
            results.update(measure(insert, args.repeat, log))
            results.update(measure(upsert, args.repeat, log))
    table = contenders_table(results.values())
    console.print(
        f"\n[bold]Columnar inputs[/]: {args.rows:,} rows, best of {args.repeat}, "
        f"pyarrow {pa.__version__}, pandas {pd.__version__}, polars {pl.__version__}, "
        f"Python {sys.version.split()[0]}",
        highlight=False,
    )
    console.print(table)
    rows = ratio_rows(results, RATIOS)
    console.print(ratio_table(rows))
    print_sqlite_cpu(results, console)
    broken = [f"{r.name}: {r.note}" for r in results.values() if not r.verified and not r.skipped]
    return conclude(broken, missed_targets(rows))


if __name__ == "__main__":
    sys.exit(main())
