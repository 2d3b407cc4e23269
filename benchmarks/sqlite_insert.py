"""SQLite insert benchmark: bulkops against the raw sqlite3 limit, sqlite-utils (at its
defaults and tuned: one transaction, its largest batch) and the CLIs.

Every contender writes the same N narrow rows into its own fresh SQLite file in a
temporary directory and is timed with ``time.perf_counter`` from opening the database
to closing it (table creation included; it is negligible next to the rows). The rows
are generated once, before any timing, into a list of dicts that every library
contender consumes; the CLI contenders read one CSV file written (untimed) from the
same rows. A separate subprocess streams rows from a generator into ``db.insert`` and
reports its peak RSS.

    python benchmarks/sqlite_insert.py                # 1,000,000 rows, memory at 5,000,000
    python benchmarks/sqlite_insert.py --quick        # 100,000 rows, memory at 500,000
    python benchmarks/sqlite_insert.py --repeat 3 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import (
    BestOf,
    Row,
    Skip,
    adapted,
    amount_of,
    cli_available,
    conclude,
    make_rows,
    mark,
    missed_targets,
    ok_cell,
    ratio,
    ratio_table,
    report_console,
    results_table,
    run_cli,
    script,
    status_of,
    write_csv,
)
from rich.console import Console

import bulkops

try:
    import psutil
except ImportError:  # optional: ru_maxrss is always reported
    psutil = None

DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 100_000
DEFAULT_MEMORY_ROWS = 5_000_000
QUICK_MEMORY_ROWS = 500_000
MEMORY_TARGET_MB = 200.0
TARGET_VS_RAW = 0.8
TARGET_VS_SQLITE_UTILS = 5.0  # against its defaults
TARGET_VS_SQLITE_UTILS_TUNED = TARGET_VS_SQLITE_UTILS  # the same target, against its best
TARGET_CLI_VS_SQLITE_UTILS = 8.0

BULKOPS_TYPES = {
    "id": "integer",
    "a": "integer",
    "b": "integer",
    "amount": "decimal(10,4)",
    "label": "text",
    "created": "datetime",
}
# The table bulkops creates for BULKOPS_TYPES: the raw contenders write the same one.
# Their amounts are bound as text ("1.2340"), which NUMERIC affinity stores as bulkops
# does (REAL 1.234, INTEGER 5); bulkops reads them back at the column's scale.
RAW_CREATE = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, amount NUMERIC(10, 4), "
    "label TEXT, created DATETIME)"
)
RAW_INSERT = "INSERT INTO t VALUES (?,?,?,?,?,?)"
VALUES_GROUP_ROWS = 341  # bulkops' SQLite groups for 6 values a row (2,048 // 6)

SPOT_ID = 12_340  # its amount is 1.2340: read back with its trailing zero (the scale)


# ------------------------------------------------------------------------------ data


def spot_ids(n: int) -> list[int]:
    return sorted({1, min(SPOT_ID, n), n // 2 or 1, n})


# ------------------------------------------------------------------------ contenders


@dataclass
class Result(BestOf):
    key: str
    name: str
    rows: int
    times: list[float] = field(default_factory=list)
    count: int | None = None
    amount_spot: str = ""
    verified: bool = False
    skipped: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per run

    def units(self) -> int:
        return self.rows


Contender = Callable[[Path], dict[str, Any]]


def raw_tuples(params: list[tuple[Any, ...]]) -> Contender:
    def run(path: Path) -> dict[str, Any]:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(RAW_CREATE)
            conn.execute("BEGIN")
            conn.executemany(RAW_INSERT, params)
            conn.execute("COMMIT")
        return {}

    return run


def raw_values_groups(params: list[tuple[Any, ...]]) -> Contender:
    """The pre-adapted tuples as multi-row VALUES statements of VALUES_GROUP_ROWS rows
    (what bulkops sends), their parameter lists built before the clock starts: the
    hand-written limit of bulkops' own way, for information."""
    width = len(params[0])
    flat = [v for row in params for v in row]
    size = VALUES_GROUP_ROWS * width
    full = len(flat) // size * size
    groups = [flat[i : i + size] for i in range(0, full, size)]
    rest = flat[full:]
    one = f"({', '.join('?' * width)})"
    grouped = f"INSERT INTO t VALUES {', '.join([one] * VALUES_GROUP_ROWS)}"
    last = f"INSERT INTO t VALUES {', '.join([one] * (len(rest) // width))}"

    def run(path: Path) -> dict[str, Any]:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(RAW_CREATE)
            conn.execute("BEGIN")
            conn.executemany(grouped, groups)
            if rest:
                conn.execute(last, rest)
            conn.execute("COMMIT")
        return {}

    return run


def raw_dicts(rows: list[Row]) -> Contender:
    def run(path: Path) -> dict[str, Any]:
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(RAW_CREATE)
            conn.execute("BEGIN")
            conn.executemany(
                RAW_INSERT,
                (
                    (
                        r["id"],
                        r["a"],
                        r["b"],
                        str(r["amount"]),
                        r["label"],
                        r["created"].isoformat(),
                    )
                    for r in rows
                ),
            )
            conn.execute("COMMIT")
        return {}

    return run


def bulkops_library(rows: list[Row]) -> Contender:
    def run(path: Path) -> dict[str, Any]:
        with bulkops.connect(f"sqlite:///{path}") as db:
            db.create_table("t", BULKOPS_TYPES, key="id")
            report = db.insert("t", rows)
        n = len(rows)
        if report.inserted != n or report.rows_in != n:
            raise AssertionError(f"bulkops report does not add up for {n} rows: {report}")
        return {
            "chunks": report.chunks,
            "statements": report.statements,
            "report_elapsed": report.elapsed,
            "report": str(report),
        }

    return run


def sqlite_utils_library(rows: list[Row]) -> Contender:
    import sqlite_utils

    def run(path: Path) -> dict[str, Any]:
        db = sqlite_utils.Database(path)
        try:
            db.table("t").insert_all(rows, pk="id")  # = db["t"]; a peer: its defaults, untuned
        finally:
            db.close()
        return {}

    return run


def sqlite_utils_tuned(rows: list[Row]) -> Contender:
    """sqlite-utils at its best: the whole load in one transaction (``db.atomic()``; each
    batch then takes a savepoint instead of a commit) and the largest batch it takes
    (asked for 100,000 rows; it caps a statement at 999 // columns = 166 rows)."""
    import sqlite_utils

    def run(path: Path) -> dict[str, Any]:
        db = sqlite_utils.Database(path)
        try:
            with db.atomic():
                db.table("t").insert_all(rows, pk="id", batch_size=100_000)
        finally:
            db.close()
        return {}

    return run


def command(argv: list[str]) -> Contender:
    def run(path: Path) -> dict[str, Any]:
        run_cli([a.replace("{db}", str(path)) for a in argv])
        return {}

    return run


# ---------------------------------------------------------------------- measurement


def table_facts(path: Path, spot: int) -> tuple[int, str]:
    """count(*) of t, and the stored type and value of one row's amount."""
    with closing(sqlite3.connect(path)) as conn:
        count = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        found = conn.execute("SELECT typeof(amount), amount FROM t WHERE id = ?", (spot,))
        row = found.fetchone()
    return count, f"{row[0]} {row[1]!r}" if row else "missing"


def bulkops_amounts_exact(path: Path, ids: list[int], *, digits: bool) -> str:
    """'' if db.get_many gives back every spot row's amount exactly, else what differs.
    ``digits``: digit for digit too (a column with a scale, as the library's table has;
    the CLI creates a plain decimal column, which keeps the value, not the zeros)."""
    with bulkops.connect(f"sqlite:///{path}") as db:
        got = db.get_many("t", ids)
    wrong = []
    for i in ids:
        amount = got.get(i, {}).get("amount")
        want = amount_of(i)
        # Equal as Decimals and digit for digit (1.2340 stays 1.2340).
        if (
            not isinstance(amount, Decimal)
            or amount != want
            or (digits and str(amount) != str(want))
        ):
            wrong.append(f"id {i}: {amount!r} != {want!r}")
    return "; ".join(wrong)


def settle() -> None:
    """Start every timed run from the same state: no garbage, no dirty pages of the
    previous contender's file still being written back (which slows fsync-heavy runs)."""
    gc.collect()
    if hasattr(os, "sync"):
        os.sync()


def measure(
    result: Result,
    run: Contender,
    directory: Path,
    repeat: int,
    *,
    check_bulkops_amounts: bool = False,
    log: Console,
) -> Result:
    path = directory / f"{result.key}.db"
    spot = min(SPOT_ID, result.rows)
    try:
        for attempt in range(1, repeat + 1):
            path.unlink(missing_ok=True)
            settle()
            started, cpu = time.perf_counter(), time.process_time()
            extra = run(path)
            elapsed = time.perf_counter() - started
            result.cpu.append(time.process_time() - cpu)
            if not result.times or elapsed < min(result.times):
                result.extra.update(extra)  # the best run's details
            result.times.append(elapsed)
            log.print(
                f"  {result.name}: run {attempt}/{repeat} {elapsed:.3f}s "
                f"({result.rows / elapsed:,.0f} rows/s)",
                highlight=False,
            )
            result.count, result.amount_spot = table_facts(path, spot)
            problems = []
            if result.count != result.rows:
                problems.append(f"count {result.count} != {result.rows}")
            if check_bulkops_amounts and (
                wrong := bulkops_amounts_exact(
                    path, spot_ids(result.rows), digits=result.key == "bulkops"
                )
            ):
                problems.append(f"amount not exact: {wrong}")
            result.verified = not problems
            if problems:
                result.note = "; ".join(problems)
                break
    except Skip as skip:
        result.skipped = not result.times
        result.note = f"skipped: {skip}" if result.skipped else f"failed on a repeat: {skip}"
        log.print(f"  [yellow]{result.name}: {result.note}[/]", highlight=False)
    finally:
        path.unlink(missing_ok=True)
    return result


def run_memory_child(rows: int, directory: Path) -> dict[str, Any]:
    """Run the streaming-memory measurement in a fresh interpreter; its JSON report."""
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-child",
            "--memory-rows",
            str(rows),
            "--dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"rows": rows, "error": f"exit status {done.returncode}: {' | '.join(tail)}"}
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def peak_rss_mb() -> float:
    """ru_maxrss in MB. On Linux it also carries the peak of the process that spawned
    this one (the exec'd-over memory), so the parent starts this child while still small.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def vm_hwm_mb() -> float | None:
    """This process's own peak RSS (Linux VmHWM), which nothing inherits; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory_child(rows: int, directory: Path) -> None:
    """Stream ``rows`` rows from the generator (never a list) into db.insert; print JSON."""
    path = directory / "memory.db"
    path.unlink(missing_ok=True)
    process = psutil.Process() if psutil is not None else None
    sampled: list[int] = []

    def sample(_: bulkops.Report) -> None:
        if process is not None:
            sampled.append(process.memory_info().rss)

    try:
        with bulkops.connect(f"sqlite:///{path}") as db:
            db.create_table("t", BULKOPS_TYPES, key="id")
            before = peak_rss_mb()
            started = time.perf_counter()
            report = db.insert("t", make_rows(rows), progress=sample if process else None)
            elapsed = time.perf_counter() - started
        count, _ = table_facts(path, 1)
    finally:
        path.unlink(missing_ok=True)
    out = {
        "rows": rows,
        "inserted": report.inserted,
        "count": count,
        "seconds": elapsed,
        "rows_per_second": rows / elapsed,
        "chunks": report.chunks,
        "peak_rss_before_insert_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": vm_hwm_mb(),
        "psutil_peak_sampled_rss_mb": max(sampled) / 2**20 if sampled else None,
        "psutil_final_rss_mb": process.memory_info().rss / 2**20 if process else None,
    }
    print(json.dumps(out))


# --------------------------------------------------------------------------- report


def ratios(results: dict[str, Result]) -> list[dict[str, Any]]:
    wanted = [
        ("bulkops / raw (pre-adapted tuples)", "bulkops", "raw_tuples", TARGET_VS_RAW),
        ("bulkops / raw (from dicts)", "bulkops", "raw_dicts", TARGET_VS_RAW),
        ("bulkops / raw (VALUES groups, info)", "bulkops", "raw_values", None),
        ("bulkops / sqlite-utils", "bulkops", "sqlite_utils", TARGET_VS_SQLITE_UTILS),
        (
            "bulkops / sqlite-utils tuned",
            "bulkops",
            "sqlite_utils_tuned",
            TARGET_VS_SQLITE_UTILS_TUNED,
        ),
        (
            "bulkops load / sqlite-utils insert --csv",
            "cli_bulkops",
            "cli_sqlite_utils",
            TARGET_CLI_VS_SQLITE_UTILS,
        ),
    ]
    out = []
    for label, top, bottom, target in wanted:
        value = ratio(results.get(top), results.get(bottom))
        status = status_of(value, target)
        out.append({"ratio": label, "value": value, "target": target, "status": status})
    return out


def print_report(
    config: dict[str, Any],
    results: dict[str, Result],
    ratio_rows: list[dict[str, Any]],
    memory: dict[str, Any] | None,
    console: Console,
) -> None:
    console.print(
        f"\n[bold]SQLite insert[/]: {config['rows']:,} rows, best of {config['repeat']}, "
        f"sqlite {config['sqlite_version']}, Python {config['python']}, "
        f"bulkops {config['bulkops']}, sqlite-utils {config['sqlite_utils']}",
        highlight=False,
    )
    console.print(f"data: {config['data']}", highlight=False)
    table = results_table(
        [
            ("contender", "left"),
            ("seconds", "right"),
            ("rows/s", "right"),
            ("vs raw (a)", "right"),
            ("count ok", "center"),
            (f"amount of id {config['spot_id']}", "left"),
            ("notes", "left"),
        ]
    )
    raw = results.get("raw_tuples")
    for result in results.values():
        best, rate = result.seconds, result.per_second
        vs_raw = ratio(result, raw)
        table.add_row(
            result.name,
            f"{best:.3f}" if best else "-",
            f"{rate:,.0f}" if rate else "-",
            f"{vs_raw:.2f}x" if vs_raw else "-",
            ok_cell(result),
            result.amount_spot,
            result.note,
        )
    console.print(table)

    lib = results.get("bulkops")
    if lib is not None and lib.times:
        extra = lib.extra
        console.print(
            f"bulkops report: chunks {extra.get('chunks')}, statements {extra.get('statements')}, "
            f"report.elapsed {extra.get('report_elapsed', 0):.3f}s | amounts via db.get_many: "
            f"{'exact' if lib.verified else 'NOT exact'}",
            highlight=False,
        )

    targets = ratio_table(ratio_rows)
    console.print(targets)
    # The library contenders run inside this process, so its CPU time is their whole
    # work: steadier than the wall clock on a busy machine. For information.
    bulk = results.get("bulkops")
    if bulk is not None and bulk.cpu:
        cpu = min(bulk.cpu)
        console.print(
            f"best CPU seconds of this process: bulkops {cpu:.3f}; "
            + ", ".join(
                f"{key} {min(r.cpu):.3f} (bulkops / it {min(r.cpu) / cpu:.2f}x)"
                for key, r in results.items()
                if key.startswith("raw_") and r.cpu
            ),
            highlight=False,
        )

    if memory is not None:
        if "error" in memory:
            console.print(f"[red]memory run failed[/]: {memory['error']}", highlight=False)
            return
        psutil_peak = memory.get("psutil_peak_sampled_rss_mb")
        console.print(
            f"memory: streamed {memory['rows']:,} rows from a generator in "
            f"{memory['seconds']:.2f}s ({memory['rows_per_second']:,.0f} rows/s incl. generation), "
            f"count ok: {memory['count'] == memory['rows']}\n"
            f"  peak RSS (ru_maxrss) {memory['peak_rss_mb']:.1f} MB "
            f"(before the insert: {memory['peak_rss_before_insert_mb']:.1f} MB)"
            + (f"; VmHWM {memory['vm_hwm_mb']:.1f} MB" if memory.get("vm_hwm_mb") else "")
            + (f"; psutil sampled peak {psutil_peak:.1f} MB" if psutil_peak else "")
            + f"; target < {MEMORY_TARGET_MB:.0f} MB: {mark(memory['status'])}",
            highlight=False,
        )


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help=f"rows to insert (default {DEFAULT_ROWS:,})")
    parser.add_argument(
        "--memory-rows",
        type=int,
        help=f"rows for the streaming memory run (default {DEFAULT_MEMORY_ROWS:,}; 0 skips it)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS:,} rows and {QUICK_MEMORY_ROWS:,} memory rows",
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of K runs (default 1)")
    parser.add_argument("--dir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.memory_rows is None:
        args.memory_rows = QUICK_MEMORY_ROWS if args.quick else DEFAULT_MEMORY_ROWS
    if args.rows < 1 or args.repeat < 1 or args.memory_rows < 0:
        parser.error("--rows and --repeat must be at least 1, --memory-rows at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_rows, args.dir)
        return 0

    import sqlite_utils  # noqa: F401  (fail early if the peer is missing)

    log = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="bulkops-bench-", dir=args.dir))
    n = args.rows
    try:
        # First, while this process is small: a child's ru_maxrss includes our peak.
        memory: dict[str, Any] | None = None
        if args.memory_rows:
            log.print(
                f"[bold]memory[/]: streaming {args.memory_rows:,} rows in a subprocess",
                highlight=False,
            )
            memory = run_memory_child(args.memory_rows, workdir)
            if "error" not in memory:
                ok = memory["peak_rss_mb"] < MEMORY_TARGET_MB and memory["count"] == memory["rows"]
                memory["target_mb"] = MEMORY_TARGET_MB
                memory["status"] = "PASS" if ok else "FAIL"

        log.print(f"[bold]preparing {n:,} rows[/] in {workdir}", highlight=False)
        started = time.perf_counter()
        rows = list(make_rows(n))
        generate_s = time.perf_counter() - started
        params = [adapted(r) for r in rows]
        csv_path = workdir / "rows.csv"
        started = time.perf_counter()
        write_csv(rows, csv_path)
        csv_s = time.perf_counter() - started

        bulkops_cli = script("bulkops")
        sqlite_utils_cli = script("sqlite-utils")
        bulkops_argv = [
            bulkops_cli or "bulkops",
            "load",
            str(csv_path),
            "--table",
            "t",
            "--db",
            "sqlite:///{db}",
            "--key",
            "id",
            "--quiet",
        ]
        sqlite_utils_argv = [
            sqlite_utils_cli or "sqlite-utils",
            "insert",
            "{db}",
            "t",
            str(csv_path),
            "--csv",
            "--pk",
            "id",
        ]

        plan: list[tuple[str, str, Contender | str, bool]] = [
            ("raw_tuples", "raw sqlite3 (a): pre-adapted tuples", raw_tuples(params), False),
            ("raw_dicts", "raw sqlite3 (b): from dicts", raw_dicts(rows), False),
            (
                "raw_values",
                f"raw sqlite3 (c): pre-adapted tuples, {VALUES_GROUP_ROWS}-row VALUES groups",
                raw_values_groups(params),
                False,
            ),
            ("bulkops", "bulkops: db.insert", bulkops_library(rows), True),
            ("sqlite_utils", "sqlite-utils: insert_all", sqlite_utils_library(rows), False),
            (
                "sqlite_utils_tuned",
                "sqlite-utils: insert_all, tuned (one transaction, batch_size=100,000)",
                sqlite_utils_tuned(rows),
                False,
            ),
        ]
        cli_missing = cli_available([bulkops_argv[0], "load", "--help"])
        plan.append(
            (
                "cli_bulkops",
                "CLI: bulkops load --quiet",
                cli_missing or command(bulkops_argv),
                True,
            )
        )
        su_missing = cli_available([sqlite_utils_argv[0], "insert", "--help"])
        plan.append(
            (
                "cli_sqlite_utils",
                "CLI: sqlite-utils insert --csv",
                su_missing or command(sqlite_utils_argv),
                False,
            )
        )

        results: dict[str, Result] = {}
        for key, name, run, check_amounts in plan:
            result = Result(key=key, name=name, rows=n)
            results[key] = result
            if isinstance(run, str):
                result.skipped = True
                result.note = f"skipped: {run}"
                log.print(f"  [yellow]{name}: {result.note}[/]", highlight=False)
                continue
            measure(
                result,
                run,
                workdir,
                args.repeat,
                check_bulkops_amounts=check_amounts,
                log=log,
            )
        del rows, params
        csv_path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    config = {
        "rows": n,
        "repeat": args.repeat,
        "memory_rows": args.memory_rows,
        "spot_id": min(SPOT_ID, n),
        "data": (
            f"pre-generated once into a list of dicts ({generate_s:.2f}s, not timed) that every "
            f"library contender consumes; CLIs read one CSV written from it ({csv_s:.2f}s, not "
            "timed); each contender timed from open to close on its own fresh file"
        ),
        "generate_seconds": generate_s,
        "csv_seconds": csv_s,
        "timing": "time.perf_counter, best of --repeat",
        "sqlite_version": sqlite3.sqlite_version,
        "python": sys.version.split()[0],
        "bulkops": bulkops.__version__,
        "sqlite_utils": _version("sqlite-utils"),
        "cpus": os.cpu_count(),
    }
    ratio_rows = ratios(results)
    if args.json:
        figures = {
            "config": config,
            "contenders": [r.as_dict() for r in results.values()],
            "ratios": ratio_rows,
            "memory": memory,
        }
        print(json.dumps(figures, indent=2, default=str))
    else:
        console = report_console(150)
        print_report(config, results, ratio_rows, memory, console)
    broken = [
        f"{r.name}: row count or amounts do not check out ({r.note or 'see above'})"
        for r in results.values()
        if not r.skipped and not r.verified
    ]
    if memory is not None and "error" in memory:
        broken.append(f"memory run failed: {memory['error']}")
    missed = missed_targets(ratio_rows)
    if memory is not None and memory.get("status") == "FAIL":
        missed.append(f"memory: peak above {MEMORY_TARGET_MB:.0f} MB")
    return conclude(broken, missed)


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
