"""`bulkops load` and `bulkops sync` read files with pyarrow's readers (record batches)
into the columnar path: which reader ran, the values stored (read back with the raw
driver: sqlite3, psycopg), and the same table, counts and rejects as the row reader
gives for the same bytes (through standard input, which the row reader reads)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from bulkops.cli import main
from bulkops.sources import ARROW_BLOCK_BYTES, infer_file, open_arrow, open_source

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

CREATE = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, price NUMERIC(8,2), note TEXT, "
    "day DATE, ok BOOLEAN, at {ts})"
)


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return str(request.getfixturevalue("pg_url"))


def cli(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def raw(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows read with the database's own driver."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        return [tuple(r) for r in pg.execute(sql)]


def run_sql(url: str, *statements: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for s in statements:
            conn.execute(s)
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for s in statements:
            pg.execute(s)


def make_table(url: str, name: str = "t") -> None:
    ts = "DATETIME" if url.startswith("sqlite") else "timestamptz"
    run_sql(url, f"DROP TABLE IF EXISTS {name}", CREATE.replace(" t ", f" {name} ").format(ts=ts))


def load(path: Path | str, url: str, *args: str, table: str = "t", **kw: Any) -> dict[str, Any]:
    result = cli("load", str(path), "-t", table, "--db", url, "--json", *args, **kw)
    assert result.exit_code in (0, 1), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


BODY = (
    "id,n,price,note,day,ok,at\n"
    '1,+5,1.50,"",2024-02-29,yes,2024-01-01 10:00:00\n'
    "2,007,,,2024-01-01,false,2024-01-01T10:00:00+02:00\n"
    "3, 12 ,3,plain,,t,2024-01-01T10:00:00Z\n"
    "4,NA,NA,NA,NA,NA,NA\n"
    '5,1_000,2.5e1,"a,b",2024-01-02,0,\n'
    "6,five,1.005,x,2024-02-30,maybe,noon\n"
    "7,99999999999999999999,1,y,2024-01-03,1,2024-01-03\n"
    "8,9\n"
    "9,9,123456789,z,2024-01-04,on,2024-01-04 00:00:00\n"
)


def rejects_of(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(r["row"], r["column"], r["values"]) for r in report["rejections"]]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
def test_file_goes_through_arrow_and_agrees_with_the_row_reader(
    url: str, tmp_path: Path, suffix: str
) -> None:
    data = BODY.encode()
    path = tmp_path / f"in{suffix}"
    if suffix == ".csv.gz":
        path.write_bytes(gzip.compress(data))
    elif suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("in.csv", data)
    else:
        path.write_bytes(data)
    make_table(url)
    via_arrow = load(path, url, "--null", "NA", "--no-run-log")
    assert via_arrow["reader"] == "arrow"
    make_table(url, "r")
    via_rows = load("-", url, "--null", "NA", "--no-run-log", table="r", stdin=data)
    assert via_rows["reader"] == "rows"
    for key in ("rows_in", "inserted", "rejected"):
        assert via_arrow[key] == via_rows[key], key
    assert rejects_of(via_arrow) == rejects_of(via_rows)
    reasons = {r["row"]: (r["column"], r["reason"]) for r in via_arrow["rejections"]}
    assert reasons[6] == ("n", "'five' is not an integer")
    assert reasons[8] == (None, "row has 2 values for 7 columns (id, n, price, note, day, ok, at)")
    # five, 1.005 and 2024-02-30: row 6; 20 digits; a short row; 123456789 for numeric(8,2)
    assert set(reasons) == {6, 7, 8, 9}
    columns = "id, n, price, note, day, ok, at"
    assert raw(url, f"SELECT {columns} FROM t ORDER BY id") == raw(
        url, f"SELECT {columns} FROM r ORDER BY id"
    )
    got = raw(url, "SELECT id, n, price, note, day, ok FROM t ORDER BY id")
    sqlite = url.startswith("sqlite")
    day = (lambda s: s) if sqlite else dt.date.fromisoformat
    yes, no = (1, 0) if sqlite else (True, False)
    assert got == [
        (1, 5, 1.5 if sqlite else Decimal("1.50"), "", day("2024-02-29"), yes),
        (2, 7, None, None, day("2024-01-01"), no),
        (3, 12, 3 if sqlite else Decimal("3.00"), "plain", None, yes),
        (4, None, None, None, None, None),
        (5, 1000, 25 if sqlite else Decimal("25.00"), "a,b", day("2024-01-02"), no),
    ]
    if not sqlite:
        at = [r[0] for r in raw(url, "SELECT at FROM t ORDER BY id")]
        utc = dt.UTC
        assert at == [
            dt.datetime(2024, 1, 1, 10, tzinfo=utc),
            dt.datetime(2024, 1, 1, 8, tzinfo=utc),
            dt.datetime(2024, 1, 1, 10, tzinfo=utc),
            None,
            None,
        ]


@pytest.mark.parametrize(
    ("times", "naive_cast_tried"),
    [
        (["2024-01-01 10:00:00.000000Z", "2024-01-02T11:30:00.25Z", ""], False),
        (["", "2024-01-01 10:00:00+00:00", "2024-01-02 11:30:00+0000"], False),
        (["2024-01-01 10:00:00", "2024-01-02T11:30:00.5", ""], True),
        (["2024-01-01 10:00:00+02:00", "2024-01-02 11:30:00", "noon"], False),
    ],
)
def test_times_into_sqlite_try_only_the_cast_their_spelling_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, times: list[str], naive_cast_tried: bool
) -> None:
    """SQLite keeps times as given: a text column whose first time gives a zone is never
    cast as naive times first (Arrow reads the whole column before refusing: 0.55 s per
    million "...Z" times), and the table is the one the row reader makes."""
    import bulkops.columnar as columnar

    tried: list[str] = []
    cast = columnar._cast_or_none

    def recorded(array: Any, typ: Any) -> Any:
        tried.append(str(typ))
        return cast(array, typ)

    monkeypatch.setattr(columnar, "_cast_or_none", recorded)
    url = f"sqlite:///{tmp_path}/test.db"
    data = "id,at\n" + "".join(f"{i},{t}\n" for i, t in enumerate(times, 1))
    path = tmp_path / "in.csv"
    path.write_text(data)
    make_table(url)
    via_arrow = load(path, url, "--no-run-log")
    assert via_arrow["reader"] == "arrow"
    assert ("timestamp[us]" in tried) is naive_cast_tried
    make_table(url, "r")
    via_rows = load("-", url, "--no-run-log", table="r", stdin=data.encode())
    assert via_rows["reader"] == "rows"
    assert rejects_of(via_arrow) == rejects_of(via_rows)
    assert raw(url, "SELECT id, at, typeof(at) FROM t ORDER BY id") == raw(
        url, "SELECT id, at, typeof(at) FROM r ORDER BY id"
    )


def test_row_numbers_after_a_short_row_deep_in_a_big_file(url: str, tmp_path: Path) -> None:
    """A row of the wrong width past the first block: the rows before it came from
    pyarrow, the rest from the row reader; every row keeps its number in the file."""
    n = 60_000
    lines = ["id,n,price,note,day,ok,at"]
    for i in range(1, n + 1):
        if i == 50_000:
            lines.append(f"{i},{i}")
        elif i in (20_000, 55_000):
            lines.append(f"{i},bad,1,note {i},2024-01-01,true,2024-01-01T00:00:00Z")
        else:
            lines.append(f"{i},{i},1.25,note {i},2024-01-01,true,2024-01-01T00:00:00Z")
    data = ("\n".join(lines) + "\n").encode()
    assert ARROW_BLOCK_BYTES == 1 << 20  # the README says 1 MiB blocks
    assert len(data) > 2 * ARROW_BLOCK_BYTES  # the short row is not in the first block
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    make_table(url)
    report = load(path, url, "--no-run-log")
    assert report["reader"] == "arrow"
    assert [(r["row"], r["column"]) for r in report["rejections"]] == [
        (20_000, "n"), (50_000, None), (55_000, "n"),
    ]  # fmt: skip
    assert report["inserted"] == n - 3
    assert raw(url, "SELECT count(*), sum(n) FROM t") == [
        (n - 3, n * (n + 1) // 2 - 20_000 - 50_000 - 55_000)
    ]


def test_tsv_and_parquet_go_through_arrow(url: str, tmp_path: Path) -> None:
    make_table(url)
    tsv = tmp_path / "in.tsv"
    tsv.write_text("id\tn\tnote\n1\t10\ta\tb\n2\t20\t\n")
    report = load(tsv, url, "--no-run-log")
    assert report["reader"] == "arrow"
    assert [r["row"] for r in report["rejections"]] == [1]
    assert raw(url, "SELECT id, n, note FROM t") == [(2, 20, None)]
    parquet = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"id": [3, 4], "n": [30, None], "price": [Decimal("1.10"), None]}), parquet
    )
    report = load(parquet, url, "--no-run-log", "--mode", "upsert")
    assert report["reader"] == "arrow" and report["inserted"] == 2
    assert raw(url, "SELECT id, n, price FROM t WHERE id > 2 ORDER BY id") == [
        (3, 30, 1.1 if url.startswith("sqlite") else Decimal("1.10")),
        (4, None, None),
    ]


def test_json_lines_and_stdin_keep_the_row_reader(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/j.db"
    make_table(url)
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "n": 2}\n{"id": 2}\n')
    assert open_arrow(str(path)) is None
    assert load(path, url, "--no-run-log")["reader"] == "rows"
    assert load("-", url, "--no-run-log", "--mode", "upsert", stdin=b"id,n\n3,4\n")["reader"] == (
        "rows"
    )
    assert raw(url, "SELECT id, n FROM t ORDER BY id") == [(1, 2), (2, None), (3, 4)]


@pytest.mark.parametrize("mode", ["update", "delete"])
def test_update_and_delete_from_a_file(url: str, tmp_path: Path, mode: str) -> None:
    make_table(url)
    run_sql(url, "INSERT INTO t (id, n) VALUES (1, 1), (2, 2), (3, 3)")
    path = tmp_path / "in.csv"
    path.write_text("id,n\n1,10\n3,30\n4,40\n")
    report = load(path, url, "--no-run-log", "--mode", mode)
    assert report["reader"] == "arrow"
    if mode == "update":
        assert (report["updated"], report["not_found"]) == (2, 1)
        assert raw(url, "SELECT id, n FROM t ORDER BY id") == [(1, 10), (2, 2), (3, 30)]
    else:
        assert (report["deleted"], report["not_found"]) == (2, 1)
        assert raw(url, "SELECT id, n FROM t ORDER BY id") == [(2, 2)]


def test_sync_reads_the_file_with_arrow(url: str, tmp_path: Path) -> None:
    make_table(url)
    path = tmp_path / "in.csv"
    path.write_text("id,n,note\n1,1,a\n2,2,b\n")
    result = cli("sync", str(path), "-t", "t", "--db", url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reader"] == "arrow" and report["added"] == 2
    path.write_text("id,n,note\n1,1,a\n2,5,b\n")
    report = json.loads(cli("sync", str(path), "-t", "t", "--db", url, "--json").stdout)
    assert (report["changed"], report["unchanged"]) == (1, 1)
    assert raw(url, "SELECT id, n, note FROM t ORDER BY id") == [(1, 1, "a"), (2, 5, "b")]


def test_inference_from_arrow_batches_matches_the_row_reader(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(
        "zip,n,x,when,flag,money,neg\n"
        "02134,1,+1,2024-01-01,true,1.50,-0\n"
        "10001,NA,2,2024-01-02 10:00:00,false,2.25,1\n"
        '"",3,,,,NA,2\n'
    )
    with open_source(str(path)) as source:
        from bulkops.sources import infer_types

        by_rows, _ = infer_types(source.columns, source.rows, None)
    by_arrow = infer_file(str(path))
    assert by_arrow.as_dict() == by_rows.as_dict()
    assert by_arrow.types == {
        "zip": "text", "n": "text", "x": "text", "when": "datetime", "flag": "boolean",
        "money": "text", "neg": "text",
    }  # fmt: skip
    assert [h.column for h in by_arrow.missing] == ["n", "money"]
    assert infer_file(str(path), null=["NA"]).types["n"] == "integer"


def test_the_load_program_imports_neither_pandas_nor_numpy(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first conversion of a Python value, if it can
    (about a second), and numpy when it is imported (0.1 s); a file load uses neither.
    Nor what pyarrow (cloudpickle) and tenacity (tornado) import if they can, for work
    the command never asks of them. tenacity itself is loaded: the chunks' retries use
    it. The program's own process (``run``), which ends with the command; its exit
    handlers still run."""
    import subprocess
    import sys

    path = tmp_path / "in.csv"
    path.write_text("id,n\n1,2\n")
    make_table(f"sqlite:///{tmp_path}/p.db")
    code = (
        "import atexit, sys; from bulkops.cli import run\n"
        "names = ('pandas', 'numpy', 'cloudpickle', 'tornado', 'pyarrow', 'tenacity')\n"
        "atexit.register(lambda: print(*(m in sys.modules for m in names)))\n"
        f"sys.argv = ['bulkops', 'load', {str(path)!r}, '-t', 't', "
        f"'--db', 'sqlite:///{tmp_path}/p.db', '--quiet']\n"
        "run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False", "False", "True", "True"]
    assert raw(f"sqlite:///{tmp_path}/p.db", "SELECT id, n FROM t") == [(1, 2)]


def test_load_called_in_process_leaves_numpy_pandas_and_pyarrow_as_they_were(
    tmp_path: Path,
) -> None:
    """Only the program keeps numpy and pandas out and tunes pyarrow's allocator: pyarrow
    decides once per process whether numpy is there, so a process that calls
    ``main([...])`` and goes on (a notebook, a test) must find them working after."""
    import os
    import subprocess
    import sys

    path = tmp_path / "in.csv"
    path.write_text("id,n\n1,2\n")
    db = f"sqlite:///{tmp_path}/p.db"
    make_table(db)
    code = (
        "import os; from bulkops.cli import main\n"
        "try:\n"
        f"    main(['load', {str(path)!r}, '-t', 't', '--db', {db!r}, '--quiet'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "import numpy as np, pandas as pd, pyarrow as pa\n"
        "frame = pa.Table.from_pandas(pd.DataFrame({'a': [1]}))\n"
        "print(pa.array(np.arange(3)).to_pylist(), len(frame),\n"
        "      os.environ.get('MIMALLOC_PURGE_DELAY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[0,", "1,", "2]", "1", "None"]
    assert raw(db, "SELECT id, n FROM t") == [(1, 2)]


@pytest.mark.parametrize("given", [None, "25"])
def test_load_has_pyarrow_return_freed_memory_unless_told_otherwise(
    tmp_path: Path, given: str | None
) -> None:
    """pyarrow's allocator keeps freed memory for reuse (110 MB of a 5,000,000-row
    load's 250 MB peak): the command loads pyarrow with it told to return freed memory
    at once, unless the environment says otherwise, and takes the setting back after."""
    import os
    import subprocess
    import sys

    path = tmp_path / "in.csv"
    path.write_text("id,n\n1,2\n")
    db = f"sqlite:///{tmp_path}/p.db"
    make_table(db)
    code = (
        "import os, sys\n"
        "seen = {}\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pyarrow' and not seen:\n"
        "            seen.update((k, os.environ.get(k)) for k in\n"
        "                        ('MIMALLOC_PURGE_DELAY', 'MIMALLOC_ARENA_EAGER_COMMIT'))\n"
        "sys.meta_path.insert(0, Watch())\n"
        "import atexit; from bulkops.cli import run\n"
        "atexit.register(lambda: print(\n"
        "    seen['MIMALLOC_PURGE_DELAY'], seen['MIMALLOC_ARENA_EAGER_COMMIT'],\n"
        "    os.environ.get('MIMALLOC_PURGE_DELAY'), 'pyarrow' in sys.modules))\n"
        f"sys.argv = ['bulkops', 'load', {str(path)!r}, '-t', 't', '--db', {db!r}, '--quiet']\n"
        "run()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    if given is not None:
        env["MIMALLOC_PURGE_DELAY"] = given
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    delay = given or "0"
    assert done.stdout.split() == [delay, "0", str(given), "True"]
    assert raw(db, "SELECT id, n FROM t") == [(1, 2)]


# .NET's round-trip format ("o") and SQL Server's datetime2 write 7 fractional digits,
# pandas' to_csv 9 where a time has nanoseconds; Python's fromisoformat reads them all
# and drops the digits past microseconds.
SUB_MICROSECOND_TEXT = (
    "id,at\n"
    "1,2009-06-15T13:45:30.0000000-07:00\n"
    "2,2023-01-02 10:00:00.123456789\n"
    "3,2023-01-02T10:00:00.1234567+02:00\n"
    "4,2023-01-02 10:00:00.123456000\n"
)


@pytest.mark.parametrize("reader", ["file", "stdin"])
def test_text_times_with_nanoseconds_are_refused_not_cut(
    url: str, tmp_path: Path, reader: str
) -> None:
    # Before, 10:00:00.123456789 was stored as 10:00:00.123456 (both readers, both
    # databases, dicts too), where a pandas or Arrow timestamp with nanoseconds is
    # refused. Digits past the sixth that are zeros change nothing and are stored.
    import bulkops

    with bulkops.connect(url, run_log=False) as db:
        db.create_table("ns", {"id": "integer", "at": "datetime"}, ["id"])
    path = tmp_path / "times.csv"
    path.write_text(SUB_MICROSECOND_TEXT)
    args = ["-t", "ns", "--db", url, "--json"]
    if reader == "file":
        report = load(path, url, table="ns")
    else:
        result = cli("load", "-", *args, stdin=SUB_MICROSECOND_TEXT.encode())
        assert result.exit_code == 1, result.output
        report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (2, 2)
    assert [(r["row"], r["column"], r["reason"]) for r in report["rejections"]] == [
        (2, "at", "2023-01-02 10:00:00.123456789 has nanoseconds; the database keeps microseconds"),
        (3, "at", "2023-01-02T10:00:00.1234567+02:00 has nanoseconds; the database keeps "
         "microseconds"),
    ]  # fmt: skip
    utc = dt.UTC
    with bulkops.connect(url, run_log=False) as db:
        got = {k: v["at"] for k, v in db.get_many("ns", [1, 4]).items()}
        assert got[1] == dt.datetime(2009, 6, 15, 20, 45, 30, tzinfo=utc)
        assert got[4].replace(tzinfo=None) == dt.datetime(2023, 1, 2, 10, 0, 0, 123456)
        rows = [{"id": 5, "at": "2023-01-02 10:00:00.999999999"}]
        refused = db.insert("ns", rows, on_error="isolate")
        assert refused.rejected == 1 and "has nanoseconds" in refused.rejections[0].reason


def test_parquet_nanoseconds_reject_their_rows_in_the_program(url: str, tmp_path: Path) -> None:
    # Parquet timestamps in nanoseconds (DuckDB's TIMESTAMP_NS, pandas' datetime64[ns]).
    # The program keeps pandas unloaded, and pyarrow then raises for a value with
    # nanoseconds instead of giving a pandas Timestamp: inferring the table, the
    # rejection of the row and sync's rows crashed the command with a traceback. Now
    # that row is rejected, showing the value with its nanoseconds, and the rest load.
    import subprocess
    import sys

    import bulkops

    path = tmp_path / "events.parquet"
    start = 1_704_103_200_000_000_000  # 2024-01-01 10:00:00 UTC, in nanoseconds
    at = pa.array([start, start + 500, start + 123_456_000], pa.int64())
    table = pa.table(
        {
            "id": [1, 2, 3],
            "at": at.cast(pa.timestamp("ns")),
            "zoned": at.cast(pa.timestamp("ns", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    reports = []
    options = ["-t", "ev", "--key", "id", "--db", url, "--json", "--quiet"]
    for verb in ("load", "sync"):
        done = subprocess.run(
            [sys.executable, "-m", "bulkops", verb, str(path), *options],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        reports.append(json.loads(done.stdout))
    loaded, synced = reports
    assert (loaded["inserted"], loaded["rejected"]) == (2, 1)
    (rejection,) = loaded["rejections"]
    assert (rejection["row"], rejection["column"]) == (2, "at")
    assert rejection["reason"] == (
        "2024-01-01T10:00:00.000000500 has nanoseconds; the database keeps microseconds"
    )
    assert rejection["values"]["at"] == "2024-01-01T10:00:00.000000500"
    assert (synced["unchanged"], synced["rejected"]) == (2, 1)
    with bulkops.connect(url, run_log=False) as db:
        got = db.get_many("ev", [1, 3])
    assert got[3]["zoned"] == dt.datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
    assert got[1]["at"].replace(tzinfo=None) == dt.datetime(2024, 1, 1, 10)


def test_a_polars_frame_with_nanoseconds_where_pandas_is_absent(tmp_path: Path) -> None:
    # The library in a process without pandas (a polars user's): an upsert and a sync
    # of a frame whose timestamps have nanoseconds crashed (pyarrow refuses to convert
    # such a value without pandas) instead of rejecting the row.
    import subprocess
    import sys

    pytest.importorskip("polars")
    code = f"""
import importlib.abc, sys

class NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, NoPandas())
import polars as pl
import bulkops

at = pl.Series([1_704_103_200_000_000_000, 1_704_103_200_000_000_500]).cast(pl.Datetime("ns"))
frame = pl.DataFrame({{"id": [1, 2], "at": at}})
db = bulkops.connect("sqlite:///{tmp_path}/p.db", run_log=False)
db.create_table("t", {{"id": "integer", "at": "datetime"}}, ["id"])
done = db.upsert("t", frame, key="id", on_error="isolate")
synced = db.sync("t", frame, key="id", on_error="isolate")
print(done.inserted, [(r.row, r.reason, r.values["at"]) for r in done.rejections])
print(synced.unchanged, [(r.row, r.reason) for r in synced.rejections], "pandas" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    reason = "2024-01-01T10:00:00.000000500 has nanoseconds; the database keeps microseconds"
    assert done.stdout.splitlines() == [
        f"1 [(2, {reason!r}, '2024-01-01T10:00:00.000000500')]",
        f"1 [(2, {reason!r})] False",
    ]


def test_parquet_decimals_no_float_holds_make_a_float_column_on_sqlite(tmp_path: Path) -> None:
    # DuckDB writes DECIMAL(38,10) to Parquet as decimal128(38, 10). On SQLite the
    # table `bulkops load` made was decimal (a 64-bit float there), which refused
    # every value of 22 digits: nothing loaded. As for CSV text and JSON numbers, the
    # column is now float, with the note naming --type to keep the digits.
    path = tmp_path / "money.parquet"
    values = [Decimal("1234567890124.1234567890"), Decimal("0.3333333333"), None]
    pq.write_table(pa.table({"id": [1, 2, 3], "d": pa.array(values, pa.decimal128(38, 10))}), path)
    url = f"sqlite:///{tmp_path}/m.db"
    report = load(path, url, "--key", "id", table="money")
    assert (report["inserted"], report["rejected"]) == (3, 0)
    assert report["notes"] == [
        "column 'd' was made float: 1234567890124.1234567890 has more digits than this "
        "database keeps in a decimal, and is stored as the nearest float "
        "(1234567890124.1235); to keep every digit, load it with --type d=text"
    ]
    assert raw(url, "SELECT id, d FROM money ORDER BY id") == [
        (1, 1234567890124.1235), (2, 0.3333333333), (3, None),
    ]  # fmt: skip
