"""CLI benchmark: `bulkops load file.csv` against `psql \\copy` and `sqlite-utils insert --csv`.

The mixed-type table of ``benchmarks/columnar.py`` (``id int8 PRIMARY KEY, qty int4,
price numeric(12,2), label text, code varchar(8), day date, at timestamptz, ok bool``)
is written once as a CSV file (``ok`` as 1/0, which every contender reads as a boolean).
Every contender is a separate process started by the clock, as a user would run it;
the table is recreated before every timed run and checked after it (count, sums of id,
qty and price, text lengths, trues, min day, max at) against the input.

Contenders:
- PostgreSQL insert: ``bulkops load file.csv --db postgresql://...`` / ``psql -c
  "\\copy t FROM file CSV HEADER"`` (psql from ``--psql``, default PostgreSQL 15's);
- PostgreSQL upsert, half the keys existing (even ids pre-loaded, their qty changed):
  ``bulkops load --mode upsert``, compared with the same ``psql \\copy`` insert;
- SQLite: ``bulkops load file.csv --db sqlite:///...`` / ``sqlite-utils insert --csv``
  with its default batch size and with ``--batch-size 10000`` (on ``--sqlite-utils-rows``
  rows, as it is slow: its rate is what is compared);
- memory: peak RSS of ``bulkops load`` of a ``--memory-rows`` (5,000,000) row CSV into
  PostgreSQL (``os.wait4``'s rusage of that one process), against 300 MB, taken
  ``--memory-repeat`` times (default 3): the peak varies from run to run with what the
  allocators keep, so every run is printed and the worst one is judged.

    python benchmarks/cli_load.py                       # 1,000,000 rows, 5M (3 runs) for memory
    python benchmarks/cli_load.py --rows 200000 --repeat 1 --memory-rows 0
"""

from __future__ import annotations

import argparse
import compileall
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from _common import (
    Skip,
    cli_available,
    conclude,
    contenders_table,
    missed_targets,
    postgres,
    ratio_rows,
    ratio_table,
    report_console,
    script,
)
from columnar import (
    FACTS,
    PG_CREATE,
    SQLITE_CREATE,
    Case,
    Result,
    facts_of,
    make_table,
    measure,
    pgpq_copy,
)
from rich.console import Console

import bulkops

DEFAULT_ROWS = 1_000_000
MEMORY_ROWS = 5_000_000
MEMORY_LIMIT_MB = 300
PSQL = "/usr/lib/postgresql/15/bin/psql"
UPDATED = ("qty", "price", "label", "code", "day", "at", "ok")

# (label, numerator, denominator, target)
RATIOS = [
    ("PostgreSQL: bulkops load (insert) / psql \\copy", "pg_load", "pg_copy", 1.0),
    ("PostgreSQL: bulkops load --mode upsert (half existing) / psql \\copy", "pg_upsert",
     "pg_copy", 0.6),
    # No target: what the server's upsert itself costs, next to the target's \copy.
    ("PostgreSQL: psql upsert (\\copy -> temp -> ON CONFLICT) / psql \\copy", "pg_psql_upsert",
     "pg_copy", None),
    ("PostgreSQL: bulkops load --mode upsert / psql upsert", "pg_upsert", "pg_psql_upsert",
     None),
    ("SQLite: bulkops load / sqlite-utils insert --csv", "sqlite_load", "sqlite_utils", 15.0),
    ("SQLite: bulkops load / sqlite-utils insert --csv --batch-size 10000", "sqlite_load",
     "sqlite_utils_tuned", 15.0),
]  # fmt: skip


def csv_table(table: pa.Table) -> pa.Table:
    """The table as the CSV file holds it: ``ok`` as 1/0."""
    return table.set_column(7, "ok", pc.cast(table["ok"], pa.int8()))


def write_file(path: Path, n: int, start: int = 1) -> None:
    """``n`` rows from ``start`` as CSV, written a slice at a time (flat memory)."""
    step = 500_000
    with pacsv.CSVWriter(str(path), csv_table(make_table(1)).schema) as writer:
        for offset in range(0, n, step):
            writer.write_table(csv_table(make_table(min(step, n - offset), start + offset)))


def bulkops_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bulkops", "load", *args, "--quiet"]


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Skip(f"{argv[0]} exit status {done.returncode}: {' | '.join(tail)}")


def pg_cases(dsn: str, path: Path, n: int, psql: str) -> list[Case]:
    admin = psycopg.connect(dsn, autocommit=True)
    table = make_table(n)
    expected = facts_of(table)

    def facts() -> tuple[Any, ...]:
        row = admin.execute(FACTS).fetchone()
        assert row is not None
        return tuple(row)

    def fresh() -> None:
        admin.execute("DROP TABLE IF EXISTS t")
        admin.execute(PG_CREATE)
        admin.execute("CHECKPOINT")

    existing = table.filter(pc.equal(pc.bit_wise_and(table["id"], 1), 0))
    existing = existing.set_column(1, "qty", pc.cast(pc.add(existing["qty"], 1), pa.int32()))

    def preload() -> None:
        fresh()
        with admin.transaction():
            pgpq_copy(admin, existing)
        admin.execute("VACUUM ANALYZE t")

    copy = [psql, dsn, "-v", "ON_ERROR_STOP=1", "-c", f"\\copy t FROM '{path}' CSV HEADER"]
    # The same upsert written by hand in one psql session (one transaction, no chunks):
    # the statement bulkops runs per chunk, so the floor under bulkops' upsert.
    changed = " OR ".join(f"t.{c} IS DISTINCT FROM excluded.{c}" for c in UPDATED)
    upsert = [
        psql, dsn, "-q", "-v", "ON_ERROR_STOP=1",
        "-c", "BEGIN", "-c", "CREATE TEMP TABLE s (LIKE t) ON COMMIT DROP",
        "-c", f"\\copy s FROM '{path}' CSV HEADER",
        "-c", "INSERT INTO t SELECT * FROM s ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in UPDATED) + f" WHERE {changed}",
        "-c", "COMMIT",
    ]  # fmt: skip
    return [
        Case("pg_copy", "psql \\copy (insert)", n, fresh, lambda: run(copy), facts, expected),
        Case("pg_load", "bulkops load (insert)", n, fresh,
             lambda: run(bulkops_cmd(str(path), "-t", "t", "--db", dsn)), facts, expected),
        Case("pg_upsert", "bulkops load --mode upsert (half existing)", n, preload,
             lambda: run(bulkops_cmd(str(path), "-t", "t", "--db", dsn, "--mode", "upsert")),
             facts, expected),
        Case("pg_psql_upsert", "psql upsert: \\copy -> temp -> ON CONFLICT (half existing)", n,
             preload, lambda: run(upsert), facts, expected),
    ]  # fmt: skip


def sqlite_cases(directory: Path, path: Path, n: int, small: Path, m: int) -> list[Case]:
    db = directory / "cli.db"
    admin = sqlite3.connect(db, isolation_level=None)
    expected = facts_of(make_table(n))
    expected_small = facts_of(make_table(m))
    tool = script("sqlite-utils") or "sqlite-utils"

    def fresh() -> None:
        admin.execute("DROP TABLE IF EXISTS t")
        admin.execute(SQLITE_CREATE)

    def facts() -> tuple[Any, ...]:
        return tuple(admin.execute(FACTS).fetchone())

    cases = [
        Case("sqlite_load", "bulkops load (SQLite)", n, fresh,
             lambda: run(bulkops_cmd(str(path), "-t", "t", "--db", f"sqlite:///{db}")),
             facts, expected),
    ]  # fmt: skip
    why = cli_available([tool, "--version"])
    if why is None:
        cases += [
            Case("sqlite_utils", f"sqlite-utils insert --csv ({m:,} rows)", m, fresh,
                 lambda: run([tool, "insert", str(db), "t", str(small), "--csv"]),
                 facts, expected_small),
            Case("sqlite_utils_tuned", f"sqlite-utils insert --csv --batch-size 10000 ({m:,} rows)",
                 m, fresh, lambda: run([tool, "insert", str(db), "t", str(small), "--csv",
                                        "--batch-size", "10000"]), facts, expected_small),
        ]  # fmt: skip
    return cases


# Starts the measured command and reports its own peak RSS. Linux keeps the memory
# high-water mark across exec, and subprocess starts children with vfork: a child of
# this process began with this process's RSS (the 1M-row tables built for the other
# contenders, ~400 MB) as its "peak". The earlier intermittent 400-422 MB readings were
# that. A small launcher in between makes the mark the command's own.
_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps([usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))
"""


def peak_rss(argv: list[str]) -> tuple[float, float, int, str]:
    """(peak RSS in MB, seconds, exit status, the end of its stderr) of one run of
    ``argv`` (that process only, started by a small launcher: see ``_LAUNCHER``). Its
    stderr goes to a file: a pipe nobody reads while it runs could fill and stall it."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *argv], stdout=subprocess.PIPE, stderr=err,
            text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    maxrss_kb, status = json.loads(done.stdout)
    return maxrss_kb / 1024, seconds, status, " | ".join(tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--memory-rows", type=int, default=MEMORY_ROWS)
    parser.add_argument("--memory-repeat", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dsn", help="an existing PostgreSQL server (default: a throwaway one)")
    parser.add_argument("--psql", default=PSQL)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--sqlite-utils-rows", type=int, default=200_000,
        help="rows for the sqlite-utils contenders (slow): their rate is what is compared",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # As an installed package has them: bulkops' bytecode (PYTHONDONTWRITEBYTECODE
    # would otherwise make every run compile it again).
    compileall.compile_dir(str(Path(bulkops.__file__).parent), quiet=1)
    console = report_console(140)
    log = Console(stderr=True)
    results: dict[str, Result] = {}
    broken: list[str] = []
    memory_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = directory / "rows.csv"
        write_file(path, args.rows)
        small_rows = min(args.rows, args.sqlite_utils_rows)
        small = directory / "small.csv"
        write_file(small, small_rows)
        log.print(f"[bold]SQLite[/], {args.rows:,} rows", highlight=False)
        cases = sqlite_cases(directory, path, args.rows, small, small_rows)
        results.update(measure(cases, args.repeat, log))
        if not args.skip_postgres:
            with postgres(args.dsn, log) as (dsn, how):
                log.print(f"[bold]PostgreSQL[/] ({how}), {args.rows:,} rows", highlight=False)
                results.update(measure(pg_cases(dsn, path, args.rows, args.psql), args.repeat, log))
                if args.memory_rows:
                    memory_rows.append(
                        memory(dsn, directory, args.memory_rows, args.memory_repeat, log, broken)
                    )
    table = contenders_table(results.values())
    console.print(
        f"\n[bold]bulkops load (CLI)[/]: {args.rows:,} rows of CSV, best of {args.repeat}, "
        f"each run a new process; pyarrow {pa.__version__}, Python {sys.version.split()[0]}",
        highlight=False,
    )
    console.print(table)
    rows = ratio_rows(results, RATIOS)
    console.print(ratio_table(rows))
    for row in memory_rows:
        runs = ", ".join(f"{mb:.0f} MB in {s:.1f}s" for mb, s in row["runs"])
        console.print(
            f"memory: bulkops load of {row['rows']:,} CSV rows into PostgreSQL: peak RSS "
            f"{row['mb']:.0f} MB, the worst of {len(row['runs'])} runs ({runs}; target < "
            f"{MEMORY_LIMIT_MB} MB): {row['status']}",
            highlight=False,
        )
    broken += [f"{r.name}: {r.note}" for r in results.values() if not r.verified and not r.skipped]
    missed = missed_targets(rows)
    missed += [
        f"peak RSS {row['mb']:.0f} MB (target < {MEMORY_LIMIT_MB} MB)"
        for row in memory_rows
        if row["status"] == "FAIL"
    ]
    return conclude(broken, missed)


def memory(
    dsn: str, directory: Path, n: int, repeat: int, log: Console, broken: list[str]
) -> dict[str, Any]:
    path = directory / "big.csv"
    log.print(f"[bold]memory[/]: writing {n:,} rows of CSV", highlight=False)
    write_file(path, n)
    admin = psycopg.connect(dsn, autocommit=True)
    runs: list[tuple[float, float]] = []
    for _ in range(max(1, repeat)):
        admin.execute("DROP TABLE IF EXISTS t")
        admin.execute(PG_CREATE)
        mb, seconds, status, stderr = peak_rss(bulkops_cmd(str(path), "-t", "t", "--db", dsn))
        count = admin.execute("SELECT count(*), sum(id) FROM t").fetchone()
        if status != 0 or count != (n, n * (n + 1) // 2):
            broken.append(
                f"memory run: exit status {status}, table count/sum(id) {count}, stderr: {stderr}"
            )
        runs.append((mb, seconds))
        log.print(f"  peak RSS {mb:.0f} MB, {seconds:.1f}s", highlight=False)
    admin.execute("DROP TABLE t")
    path.unlink()
    worst = max(mb for mb, _ in runs)
    return {"rows": n, "mb": worst, "runs": runs,
            "status": "PASS" if worst < MEMORY_LIMIT_MB else "FAIL"}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
