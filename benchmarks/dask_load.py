"""Dask DataFrame -> PostgreSQL: bulkops.dask.load against one process COPYing the same
data and against dask.dataframe.to_sql.

N rows (default 2,000,000) in 8 Parquet files (id bigint, two int columns,
numeric(10,4), a 16-character text, timestamptz) are loaded into a table with a primary
key on a throwaway PostgreSQL tuned for loading (tests/pg_cluster.py: fsync=off,
synchronous_commit=off, full_page_writes=off), or ``--dsn``. Contenders:

- ``copy, 1 process``: one process reads the files with pyarrow and sends all of them
  in one COPY, binary (pgpq's encoder, a record batch at a time) or CSV (pyarrow's
  writer); the faster of the two is what ``load / copy`` divides by;
- ``copy, 2 processes`` (info): the same binary COPY from two processes at once, four
  files each: what two writers get on this machine without Dask or bulkops;
- ``server COPY from a file`` (info, throwaway cluster only): the server reading the
  binary COPY files itself, no client at all: one backend's own rate;
- ``load`` with 1, 2 and 4 worker processes (a ``distributed.LocalCluster`` of
  one-thread workers, ``dd.read_parquet(files)`` as users write it), default publish;
  ``load publish=atomic`` and ``load upsert`` (half the keys already in the table, with
  other values) with 2 workers;
- ``dask to_sql`` (pandas per partition) with 2 workers;
- ``load`` on one worker process of 2 threads (info: threads instead of processes).

Each cluster's workers import bulkops, pgpq, pandas and SQLAlchemy before the clock
starts (a cluster that runs loads has them loaded). The table is checked after every
load (row count and per-column sums, minima and maxima against the input; the ledger
lists every partition once; the Report accounts for every row); a broken invariant
exits 1, a missed target does not. Where the server runs here (the throwaway cluster),
each contender's CPU time is shown per row: the server's (postmaster and backends) and
the client side's (this process, its scheduler and nannies, and the Dask workers). On a
machine of C cores no contender can beat ``C / (server + client CPU per row)``. For
the loads, "workers busy" is the share of the run the workers' threads spent in tasks
(Dask's task stream): below 100% is scheduling gaps, not the database.

On a machine shared with other work, wall times swing from one moment to the next:
the one-process binary COPY, each load insert and the atomic load run ``--repeat``
times (default 3), alternating, and the fastest verified run of each is shown and
compared.

    python benchmarks/dask_load.py                  # 2,000,000 rows
    python benchmarks/dask_load.py --rows 400000    # smaller
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import distributed
import numpy as np
import psutil
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlalchemy as sa
from _common import conclude, postgres, report_console, results_table
from pgpq import ArrowToPostgresBinaryEncoder
from rich.console import Console

import bulkops
from bulkops.backends.base import LOADS_TABLE
from bulkops.dask import load

TABLE = "dask_bench"
FILES = 8
DDL = (
    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, a integer NOT NULL, b integer NOT NULL, "
    "amount numeric(10,4) NOT NULL, label text NOT NULL, created timestamptz NOT NULL)"
)
# What the checks compare between the table and the input.
FACTS = (
    "count(*), sum(id), sum(a), sum(b), sum(amount), min(label), max(label), "
    "min(created), max(created), count(DISTINCT label)"
)

TARGETS = {  # from the issue: rows/s, and ratios
    "load rows/s": 600_000,
    "load / copy": 0.8,
    "load / to_sql": 8.0,
    "upsert rows/s": 300_000,
    "atomic / load": 0.5,
}
COPY_BINARY = "copy, 1 process (binary)"
COPY_CSV = "copy, 1 process (CSV)"
COPY_TWO = "copy, 2 processes (binary)"
SERVER_FILE = "server COPY from a file (no client)"
ATOMIC = "load insert atomic, 2 workers"
UPSERT = "load upsert (half exist), 2 workers"
TO_SQL = "dask to_sql, 2 workers"
THREADS = "load insert, 1 worker of 2 threads"


def load_name(workers: int) -> str:
    return f"load insert, {workers} worker{'s' if workers > 1 else ''}"


def write_files(n: int, directory: Path) -> list[Path]:
    """The N rows in FILES Parquet files (vectorized: no per-row Python)."""
    paths = []
    per = -(-n // FILES)
    for f in range(FILES):
        ids = np.arange(f * per + 1, min(n, (f + 1) * per) + 1, dtype=np.int64)
        if not len(ids):
            break
        amounts = pa.array(
            [Decimal(int(i % 100_000)) / 10_000 for i in ids], type=pa.decimal128(10, 4)
        )
        labels = np.char.add("label-", np.char.zfill(ids.astype(str), 10))
        table = pa.table(
            {
                "id": ids,
                "a": (ids % 1_000).astype(np.int32),
                "b": ((ids * 7_919) % 1_000_003).astype(np.int32),
                "amount": amounts,
                "label": pa.array(labels.tolist(), type=pa.string()),
                "created": pa.array(
                    (np.datetime64("2024-01-01T00:00:00", "us") + ids.astype("timedelta64[s]")),
                    type=pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        path = directory / f"part-{f}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def facts(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT {FACTS} FROM {TABLE}").fetchone()
    assert row is not None
    return tuple(row)


def fresh(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"DROP TABLE IF EXISTS {LOADS_TABLE}")
        conn.execute(DDL)
        conn.execute("CHECKPOINT")  # no contender pays for the one before it


COPY_BINARY_SQL = f"COPY {TABLE} (id, a, b, amount, label, created) FROM STDIN (FORMAT BINARY)"
COPY_CSV_SQL = f"COPY {TABLE} (id, a, b, amount, label, created) FROM STDIN (FORMAT CSV)"


def copy_binary(dsn: str, paths: list[Path], keep: Callable[[Any], Any] | None = None) -> None:
    """One process, one COPY: each file read with pyarrow, each record batch encoded by
    pgpq and sent as it is encoded (the server parses one batch while the next is
    encoded). ``keep``: a filter of each table (a boolean mask from its columns)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(COPY_BINARY_SQL) as copy:
        encoder: Any = None
        for path in paths:
            table = pq.read_table(path)
            if keep is not None:
                table = table.filter(keep(table))
            if encoder is None:
                encoder = ArrowToPostgresBinaryEncoder(table.schema)
                copy.write(encoder.write_header())
            for batch in table.to_batches(max_chunksize=65_536):
                copy.write(encoder.write_batch(batch))
        if encoder is not None:
            copy.write(encoder.finish())


def copy_csv(dsn: str, paths: list[Path]) -> None:
    """One process, one COPY: each file read with pyarrow and written as CSV by
    pyarrow's writer (C++), the server parsing the text."""
    options = pacsv.WriteOptions(include_header=False)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(COPY_CSV_SQL) as copy:
        for path in paths:
            buffer = io.BytesIO()
            pacsv.write_csv(pq.read_table(path), buffer, options)
            copy.write(buffer.getbuffer())


def _copy_part(dsn: str, paths: list[str]) -> None:
    copy_binary(dsn, [Path(p) for p in paths])


def _even(table: Any) -> Any:
    return pc.equal(pc.bit_wise_and(table.column("id"), 1), 0)


def sqlalchemy_url(dsn: str) -> str:
    return "postgresql+psycopg://" + dsn.split("://", 1)[1]


# ------------------------------------------------------------------------- CPU time


def _seconds(times: Any, children: bool = False) -> float:
    total = float(times.user + times.system)
    if children:
        total += float(times.children_user + times.children_system)
    return total


class CpuMeter:
    """CPU seconds of the server (its postmaster, the backends that exited, which the
    postmaster waited for, and the live ones) and of the client side (this process, its
    threads (Dask's scheduler and nannies) and its child processes (Dask's workers, a
    process pool), the server's processes left out), read before and after a contender."""

    def __init__(self, dsn: str, local_server: bool) -> None:
        self.postmaster: psutil.Process | None = None
        if local_server:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            try:
                self.postmaster = psutil.Process(int(row[0])).parent()
            except psutil.Error:
                self.postmaster = None

    def _server_processes(self) -> list[psutil.Process]:
        if self.postmaster is None:
            return []
        try:
            return [self.postmaster, *self.postmaster.children(recursive=True)]
        except psutil.Error:
            return []

    def settle(self, dsn: str) -> None:
        """Wait until the contender's connections have ended (a backend exits just after
        its client disconnects; its CPU time reaches the postmaster when it is reaped)."""
        if self.postmaster is None:
            return
        others = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(60):
                row = conn.execute(others).fetchone()
                if row is not None and row[0] == 0:
                    break
                time.sleep(0.05)
        time.sleep(0.1)

    def server(self) -> float | None:
        if self.postmaster is None:
            return None
        try:
            total = _seconds(self.postmaster.cpu_times(), children=True)
        except psutil.Error:
            return None
        return total + _live(self._server_processes()[1:])

    def clients(self) -> float:
        server = {p.pid for p in self._server_processes()}
        me = psutil.Process()
        children = [p for p in me.children(recursive=True) if p.pid not in server]
        return _seconds(me.cpu_times(), children=True) + _live(children)


def _live(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with suppress(psutil.Error):  # exited meanwhile: its parent counts it
            total += _seconds(process.cpu_times())
    return total


def _warm() -> None:
    """What a cluster that runs loads has imported already."""
    import pandas  # noqa: F401
    import pgpq  # noqa: F401
    import sqlalchemy  # noqa: F401

    import bulkops.backends.postgres
    import bulkops.dask  # noqa: F401


# ------------------------------------------------------------------------- the bench


@dataclass
class Sample:
    seconds: float
    server_cpu: float | None
    client_cpu: float


class Bench:
    def __init__(self, dsn: str, paths: list[Path], n: int, log: Console, meter: CpuMeter) -> None:
        self.dsn, self.paths, self.n, self.log, self.meter = dsn, paths, n, log, meter
        fresh(dsn)
        copy_binary(dsn, paths)
        self.expected = facts(dsn)  # the input's facts, as the server computes them
        self.results: dict[str, dict[str, Any]] = {}
        self.broken: list[str] = []

    def check(self, name: str, report: bulkops.Report | None = None) -> bool:
        found = facts(self.dsn)
        ok = found == self.expected
        if not ok:
            self.broken.append(f"{name}: table facts {found} != input {self.expected}")
        if report is not None:
            with psycopg.connect(self.dsn) as conn:
                parts = conn.execute(
                    f"SELECT partition_index, count(*) FROM {LOADS_TABLE} "
                    "WHERE partition_index >= 0 GROUP BY 1 HAVING count(*) > 1"
                ).fetchall()
                listed = conn.execute(
                    f"SELECT count(*) FROM {LOADS_TABLE} WHERE partition_index >= 0"
                ).fetchone()
            if parts or not listed or listed[0] != len(self.paths):
                self.broken.append(f"{name}: ledger lists {listed} partitions, twice: {parts}")
                ok = False
            if report.accounted != self.n or report.rows_in != self.n:
                self.broken.append(f"{name}: report accounts for {report.accounted} of {self.n}")
                ok = False
        return ok

    @contextmanager
    def measured(self) -> Iterator[list[Sample]]:
        out: list[Sample] = []
        self.meter.settle(self.dsn)
        server, clients = self.meter.server(), self.meter.clients()
        started = time.perf_counter()
        yield out
        seconds = time.perf_counter() - started
        self.meter.settle(self.dsn)
        after = self.meter.server()
        used = None if server is None or after is None else after - server
        out.append(Sample(seconds, used, self.meter.clients() - clients))

    def timed(
        self,
        name: str,
        workers: int,
        run: Callable[[], bulkops.Report | None],
        *,
        setup: Callable[[], None] | None = None,
        client: distributed.Client | None = None,
        slots: int | None = None,
    ) -> None:
        """Run one contender once; run again under the same name, the fastest verified
        run is kept (and the runs counted). ``client``: the Dask cluster's, whose task
        stream gives the share of the run its ``slots`` worker threads (default: one per
        worker) spent in tasks."""
        self.log.print(f"  {name} ...", highlight=False)
        fresh(self.dsn)
        if setup is not None:
            setup()
        stream = distributed.get_task_stream(client) if client is not None else nullcontext()
        try:
            with stream as tasks, self.measured() as sample:
                report = run()
        except Exception as error:  # a contender that fails is reported, not fatal
            self.results[name] = {"workers": workers, "error": f"{type(error).__name__}: {error}"}
            self.log.print(f"    failed: {error}", highlight=False)
            return
        got = sample[0]
        ok = self.check(name, report)
        per_row = 1e6 / self.n
        busy = None if tasks is None else busy_share(tasks.data, slots or workers, got.seconds)
        before = self.results.get(name, {})
        runs = before.get("runs", 0) + 1
        self.log.print(f"    {self.n / got.seconds:,.0f} rows/s, verified={ok}"
                       + ("" if busy is None else f", workers busy {busy:.0%}"),
                       highlight=False)  # fmt: skip
        if before.get("verified") and (not ok or before["seconds"] <= got.seconds):
            before["runs"] = runs
            return
        self.results[name] = {
            "workers": workers, "seconds": round(got.seconds, 2), "runs": runs,
            "rows_per_second": round(self.n / got.seconds), "verified": ok,
            "server_cpu_us_per_row": None if got.server_cpu is None
            else round(got.server_cpu * per_row, 3),
            "client_cpu_us_per_row": round(got.client_cpu * per_row, 3),
            "workers_busy": None if busy is None else round(busy, 3),
            "report": str(report) if report is not None else None,
        }  # fmt: skip


def busy_share(tasks: list[dict[str, Any]], slots: int, seconds: float) -> float:
    """The share of ``seconds`` that ``slots`` worker threads spent running tasks (Dask's
    task stream: each task's compute spans, per worker): 1.0 is no scheduling gap."""
    busy = sum(
        span["stop"] - span["start"]
        for task in tasks
        for span in task.get("startstops", ())
        if span.get("action") == "compute"
    )
    return busy / (slots * seconds) if seconds > 0 and slots else 0.0


def cluster(workers: int, threads: int = 1) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=":0"
    )


def binary_files(paths: list[Path], directory: Path) -> list[Path]:
    """The files in PostgreSQL's binary COPY format, readable by the server's user."""
    out = []
    directory.chmod(0o755)
    for path in paths:
        table = pq.read_table(path)
        encoder = ArrowToPostgresBinaryEncoder(table.schema)
        target = directory / (path.stem + ".pgcopy")
        with target.open("wb") as f:
            f.write(encoder.write_header())
            for batch in table.to_batches():
                f.write(encoder.write_batch(batch))
            f.write(encoder.finish())
        target.chmod(0o644)
        out.append(target)
    return out


def server_copy(dsn: str, files: list[Path]) -> None:
    with psycopg.connect(dsn) as conn:
        for path in files:
            conn.execute(f"COPY {TABLE} FROM '{path}' (FORMAT BINARY)")


def run(args: argparse.Namespace, dsn: str, local_server: bool, log: Console) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bulkops-dask-bench-", dir=args.dir))
    try:
        log.print(f"[bold]writing {args.rows:,} rows to {FILES} Parquet files[/]")
        paths = write_files(args.rows, workdir)
        bench = Bench(dsn, paths, args.rows, log, CpuMeter(dsn, local_server))
        files = [str(p) for p in paths]

        def ddf() -> Any:
            return dd.read_parquet(files)

        def copy_once() -> None:
            copy_binary(dsn, paths)

        bench.timed(COPY_BINARY, 1, copy_once)
        bench.timed(COPY_CSV, 1, lambda: copy_csv(dsn, paths))
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(abs, range(2)))  # started before the clock

            def two() -> None:
                halves = [files[: len(files) // 2], files[len(files) // 2 :]]
                list(pool.map(_copy_part, [dsn, dsn], halves))

            bench.timed(COPY_TWO, 2, two)
        if local_server:
            copies = binary_files(paths, workdir)
            bench.timed(SERVER_FILE, 1, lambda: server_copy(dsn, copies))
        for workers in args.workers:
            with cluster(workers) as local, distributed.Client(local) as client:
                client.run(_warm)
                for _ in range(args.repeat):
                    # The one-process COPY again between the loads (and the atomic load
                    # with the default one): on a shared machine they meet the same
                    # moments; the fastest run of each is kept.
                    bench.timed(COPY_BINARY, 1, copy_once)
                    bench.timed(load_name(workers), workers, lambda: load(ddf(), dsn, TABLE),
                                client=client)  # fmt: skip
                    if workers == 2:
                        bench.timed(ATOMIC, 2, lambda: load(ddf(), dsn, TABLE, publish="atomic"),
                                    client=client)  # fmt: skip
                if workers != 2:
                    continue

                def half_exist() -> None:
                    copy_binary(dsn, paths, keep=_even)  # half the keys exist
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        conn.execute(f"UPDATE {TABLE} SET a = -1")  # with other values
                        conn.execute("VACUUM ANALYZE " + TABLE)
                        conn.execute("CHECKPOINT")

                bench.timed(UPSERT, 2, lambda: load(ddf(), dsn, TABLE, mode="upsert", key="id"),
                            setup=half_exist, client=client)  # fmt: skip

                def to_sql() -> None:
                    frame = ddf()
                    # Parquet decimals reach pandas as Decimals in object columns, which
                    # pandas sends as VARCHAR (refused) unless told the column's type.
                    frame["amount"] = frame["amount"].astype(object)
                    frame.to_sql(TABLE, sqlalchemy_url(dsn), if_exists="append", index=False,
                                 chunksize=10_000, parallel=True,
                                 dtype={"amount": sa.Numeric(10, 4)})  # fmt: skip

                bench.timed(TO_SQL, 2, to_sql)
        if 2 in args.workers:  # threads instead of processes (info)
            with cluster(1, threads=2) as local, distributed.Client(local) as client:
                client.run(_warm)
                bench.timed(THREADS, 1, lambda: load(ddf(), dsn, TABLE), client=client, slots=2)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(args, bench, log)


def report(args: argparse.Namespace, bench: Bench, log: Console) -> int:
    results = bench.results
    console = report_console(160)
    table = results_table(
        [("contender", "left"), ("workers", "right"), ("seconds", "right"),
         ("rows/s", "right"), ("server CPU µs/row", "right"), ("client CPU µs/row", "right"),
         ("workers busy", "right"), ("runs", "right"), ("ok", "left")]
    )  # fmt: skip
    for name, r in results.items():
        server, client = r.get("server_cpu_us_per_row"), r.get("client_cpu_us_per_row")
        table.add_row(name, str(r["workers"]), str(r.get("seconds", "-")),
                      f"{r['rows_per_second']:,}" if "rows_per_second" in r else r["error"][:60],
                      "-" if server is None else f"{server:.2f}",
                      "-" if client is None else f"{client:.2f}",
                      "-" if r.get("workers_busy") is None else f"{r['workers_busy']:.0%}",
                      str(r.get("runs", 1)), "yes" if r.get("verified") else "NO")  # fmt: skip
    console.print(table)

    def rate(name: str) -> float | None:
        r = results.get(name, {})
        return r.get("rows_per_second") if r.get("verified") else None

    loads = {w: rate(load_name(w)) for w in args.workers}
    console.print(
        "load insert rows/s by workers: "
        + ", ".join(f"{w}: {'-' if r is None else f'{r:,.0f}'}" for w, r in loads.items()),
        highlight=False,
    )
    best = max((r or 0 for r in loads.values()), default=0) or None
    copies = [r for r in (rate(COPY_BINARY), rate(COPY_CSV)) if r]
    copy = max(copies) if copies else None
    two = rate(load_name(2))
    to_sql, atomic = rate(TO_SQL), rate(ATOMIC)
    figures: dict[str, float | None] = {
        "load rows/s": best,
        "load / copy": best / copy if best and copy else None,
        "load / to_sql": two / to_sql if two and to_sql else None,
        "upsert rows/s": rate(UPSERT),
        "atomic / load": atomic / two if two and atomic else None,
    }
    explained = {
        "load rows/s": "the best of the worker counts",
        "load / copy": "best load over the faster one-process COPY (binary or CSV)",
        "load / to_sql": "2 workers each",
        "upsert rows/s": "2 workers, half the keys existing",
        "atomic / load": "2 workers each",
    }
    missed = []
    for name, value in figures.items():
        target = TARGETS[name]
        shown = "-" if value is None else f"{value:,.2f}"
        status = "n/a" if value is None else "PASS" if value >= target else "MISS"
        console.print(f"{name}: {shown} (target >= {target:,}; {explained[name]}) {status}",
                      highlight=False)  # fmt: skip
        if status == "MISS":
            missed.append(f"{name}: {shown} (target >= {target:,})")
    # What the CPU per row allows on this machine (info: no target).
    cores = psutil.cpu_count() or 1
    for name in (load_name(w) for w in args.workers):
        r = results.get(name, {})
        server, client = r.get("server_cpu_us_per_row"), r.get("client_cpu_us_per_row")
        if server is not None and client is not None and server + client > 0:
            console.print(
                f"{name}: {server + client:.2f} CPU µs/row ({server:.2f} server, "
                f"{client:.2f} client): at most {cores * 1e6 / (server + client):,.0f} "
                f"rows/s on {cores} cores",
                highlight=False,
            )
    if args.json:
        print(json.dumps({"rows": args.rows, "results": results, "figures": figures}))
    return conclude(bench.broken, missed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--dsn", help="postgresql://... of an existing server")
    parser.add_argument("--dir", type=Path, help="where the Parquet files go")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the one-process binary COPY, each load insert and "
                        "the atomic load, alternating; the fastest of each is kept "
                        "(default 3)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    log = Console(stderr=True)
    with postgres(args.dsn, log) as (dsn, _origin):
        return run(args, dsn, args.dsn is None, log)


if __name__ == "__main__":
    sys.exit(main())
