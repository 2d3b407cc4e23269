"""What the benchmark scripts share: the benchmark rows, CLI helpers, best-of timing
results, the PostgreSQL server and the report tables. Not a benchmark of its own."""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rich.console import Console
from rich.table import Table

Row = dict[str, Any]

COLUMNS = ("id", "a", "b", "amount", "label", "created")
FOUR_PLACES = Decimal("0.0001")
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
BENCH_DATABASE = "bulkops_bench"


# ------------------------------------------------------------------------------ data


def amount_of(i: int) -> Decimal:
    return (Decimal(i % 100_000) / 10_000).quantize(FOUR_PLACES)


def make_rows(n: int) -> Iterator[Row]:
    """The benchmark's rows, ids 1..n, as dicts (the one generator every contender uses)."""
    for i in range(1, n + 1):
        yield {
            "id": i,
            "a": i % 1_000,
            "b": (i * 7_919) % 1_000_003,
            "amount": amount_of(i),
            "label": f"label-{i:010d}",  # 16 characters
            "created": EPOCH + i * SECOND,
        }


def adapted(row: Row) -> tuple[Any, ...]:
    """A row as the values sqlite3 binds: Decimal as text, datetime as ISO 8601 text."""
    return (
        row["id"],
        row["a"],
        row["b"],
        str(row["amount"]),
        row["label"],
        row["created"].isoformat(),
    )


def write_csv(rows: Iterable[Row], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(adapted(row) for row in rows)


# ------------------------------------------------------------------------------ CLIs


class Skip(Exception):
    """A contender that cannot run here (e.g. a CLI that is missing or fails)."""


def run_cli(argv: list[str]) -> None:
    """Run ``argv``; Skip if it exits non-zero."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Skip(f"exit status {done.returncode}: {' | '.join(tail) or 'no output'}")


def script(name: str) -> str | None:
    """The venv's console script ``name`` (next to this interpreter), else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def cli_available(argv: list[str]) -> str | None:
    """None if ``argv`` runs, else why not."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as error:
        return str(error)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-2:]
        return f"{' '.join(argv)} exits {done.returncode}: {' | '.join(tail)}"
    return None


# ----------------------------------------------------------------------- results


class BestOf:
    """Mixed into each script's ``Result`` dataclass: the best of its timed runs.

    ``units()`` is what one run processes (rows, items); ``RATE_KEY`` names the rate in
    ``as_dict``."""

    RATE_KEY: ClassVar[str] = "rows_per_second"
    times: list[float]
    verified: bool
    skipped: bool

    def units(self) -> int:
        raise NotImplementedError

    @property
    def seconds(self) -> float | None:
        return min(self.times) if self.times else None

    @property
    def per_second(self) -> float | None:
        best = self.seconds
        return self.units() / best if best else None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)  # type: ignore[call-overload]
        data["seconds"] = self.seconds
        data[self.RATE_KEY] = self.per_second
        return data


class _Rated(Protocol):
    @property
    def verified(self) -> bool: ...

    @property
    def per_second(self) -> float | None: ...


def ratio(numerator: _Rated | None, denominator: _Rated | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    top, bottom = numerator.per_second, denominator.per_second
    if not top or not bottom or not (numerator.verified and denominator.verified):
        return None
    return top / bottom


def status_of(value: float | None, target: float | None) -> str:
    """n/a without a value, info without a target, else PASS or MISS (FAIL is for a
    broken invariant, not a target)."""
    if value is None:
        return "n/a"
    if target is None:
        return "info"
    return "PASS" if value >= target else "MISS"


# --------------------------------------------------------------------------- report


def mark(status: str) -> str:
    colour = {"PASS": "green", "FAIL": "red", "MISS": "red", "info": "cyan"}.get(status, "yellow")
    return f"[bold {colour}]{status}[/]"


def ok_cell(result: BestOf | _Contender) -> str:
    return "-" if result.skipped else ("[green]yes[/]" if result.verified else "[red]NO[/]")


def results_table(columns: list[tuple[str, str]]) -> Table:
    """An empty table with these (name, justify) columns."""
    table = Table(title_justify="left")
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    return table


def ratio_rows(
    results: Mapping[str, _Rated], specs: Iterable[tuple[str, str, str, float | None]]
) -> list[dict[str, Any]]:
    """One row per (label, numerator key, denominator key, target): the ratio of the two
    results' rates and its status against the target."""
    rows = []
    for label, top, bottom, target in specs:
        value = ratio(results.get(top), results.get(bottom))
        rows.append({"ratio": label, "value": value, "target": target,
                     "status": status_of(value, target)})  # fmt: skip
    return rows


class _Contender(_Rated, Protocol):
    name: str
    rows: int
    note: str
    skipped: bool

    @property
    def seconds(self) -> float | None: ...


def contenders_table(results: Iterable[_Contender]) -> Table:
    """Each contender's rows, best seconds, rate, whether its data was checked, its note."""
    table = results_table(
        [("contender", "left"), ("rows", "right"), ("best s", "right"), ("rows/s", "right"),
         ("checked", "left"), ("note", "left")]
    )  # fmt: skip
    for r in results:
        table.add_row(
            r.name, f"{r.rows:,}", f"{r.seconds:.3f}" if r.seconds else "-",
            f"{r.per_second:,.0f}" if r.per_second else "-", ok_cell(r), r.note,
        )  # fmt: skip
    return table


def ratio_table(
    ratio_rows: list[dict[str, Any]],
    title: str = "ratios (rows/s over rows/s)",
    *,
    digits: int = 2,
    target_spec: str = "",
    backends: dict[str, str] | None = None,
) -> Table:
    """The ratios against their targets; a backend column (labelled by ``backends``) first
    if given."""
    targets = Table(title=title, title_justify="left")
    left = ("backend", "ratio") if backends else ("ratio",)
    bounds = any(row.get("bound") for row in ratio_rows)
    for name in (*left, "value", "target", "result"):
        targets.add_column(name, justify="left" if name in left else "right")
    if bounds:
        targets.add_column("what bounds it (measured in this run)", justify="left")
    for row in ratio_rows:
        value, target = row["value"], row["target"]
        targets.add_row(
            *([backends[row["backend"]]] if backends else []),
            row["ratio"],
            f"{value:.{digits}f}x" if value is not None else "-",
            f">= {target:{target_spec}}x" if target is not None else "(no target)",
            mark(row["status"]),
            *([row.get("bound") or ""] if bounds else []),
        )
    return targets


def missed_targets(ratio_rows: Iterable[dict[str, Any]], prefix: str = "") -> list[str]:
    """One line per ratio row whose status is MISS (or FAIL): its label, value and
    target, and what bounds it where the row says (``bound``)."""
    missed = []
    for row in ratio_rows:
        if row["status"] not in ("MISS", "FAIL"):
            continue
        value, target = row["value"], row["target"]
        wanted = f"<= {target:g}" if row.get("higher_is_better") is False else f">= {target:g}"
        shown = f"{value:.2f}"
        if row.get("unit") == "%":
            shown, wanted = f"{value:.2%}", wanted.split()[0] + f" {target:.0%}"
        backend = f"{row['backend']}: " if row.get("backend") else ""
        label = f"{prefix}{backend}{row['ratio']}"
        bound = f"; bounded by: {row['bound']}" if row.get("bound") else ""
        missed.append(f"{label}: {shown} (target {wanted}){bound}")
    return missed


def conclude(broken: list[str], missed: list[str]) -> int:
    """Print every broken invariant (rows lost, doubled, counts wrong) and every missed
    target, on stderr (so ``--json`` output stays clean); the exit status: 1 if an
    invariant is broken, else 0 (a missed target is a finding, not a broken run)."""
    err = Console(stderr=True, width=150)
    for line in broken:
        err.print(f"[bold red]INVARIANT BROKEN[/] {line}", highlight=False)
    for line in missed:
        err.print(f"[bold yellow]TARGET MISSED[/] {line}", highlight=False)
    if not broken and not missed:
        err.print("[bold green]all invariants hold, all targets met[/]", highlight=False)
    elif not broken:
        err.print(f"all invariants hold; {len(missed)} target(s) missed", highlight=False)
    return 1 if broken else 0


def report_console(width: int) -> Console:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not wrap at 80 columns
        console = Console(width=width)
    return console


# ------------------------------------------------------------------------ PostgreSQL


@contextmanager
def postgres(dsn: str | None, log: Console) -> Iterator[tuple[str, str]]:
    """(dsn, how it was obtained): ``--dsn`` as given, else a throwaway cluster."""
    if dsn:
        yield dsn, "existing server (--dsn)"
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_cluster import PgCluster

    log.print("[bold]starting a throwaway PostgreSQL cluster[/]", highlight=False)
    started = time.perf_counter()
    cluster = PgCluster().start()
    try:
        bench_dsn = cluster.create_database(BENCH_DATABASE)
        log.print(f"  up in {time.perf_counter() - started:.1f}s: {bench_dsn}", highlight=False)
        yield bench_dsn, "throwaway cluster (tests/pg_cluster.py)"
    finally:
        cluster.stop()
