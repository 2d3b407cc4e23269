"""Files as spreadsheets write them: ``--encoding`` and ``--delimiter`` on ``load`` and
``sync``.

Spreadsheets export CSV in the machine's code page (cp1252 on Windows in Western
Europe and the Americas) and their "Unicode text" as UTF-16 with a byte order mark; a
UTF-8-only reader refuses both. Where the decimal point is a comma (most of Europe),
their CSV separates fields with semicolons. The data: lifelines' canadian_senators.csv excerpt
(tests/data/README.md), whose names carry accents (Chrétien, Réal).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

import test_real_files
from test_real_files import cli, select, table_exists

url = test_real_files.url  # the fixture: a SQLite file, then a PostgreSQL database

SENATORS = Path(__file__).parent / "data" / "lifelines_canadian_senators_excerpt.csv"


def senators() -> str:
    return SENATORS.read_text(encoding="utf-8")


def rows(url: str, table: str) -> list[tuple[object, ...]]:
    return select(url, f'SELECT * FROM {table} ORDER BY "Name", start_date')


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_load_reads_the_file_in_its_encoding(url: str, tmp_path: Path, encoding: str) -> None:
    text = senators()
    path = tmp_path / "senators.csv"
    path.write_bytes(text.encode(encoding))
    refused = cli("load", str(path), "-t", "refused", "--db", url)
    assert refused.exit_code == 2, refused.output
    if encoding != "utf-16":  # (UTF-16's byte order mark and zeros say nothing of Latin-1)
        assert "pass --encoding" in " ".join(refused.output.split())
    result = cli("load", str(path), "-t", "senators", "--db", url, "--encoding", encoding, "-q")
    assert result.exit_code == 0, result.output
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text(text, encoding="utf-8")
    assert cli("load", str(utf8), "-t", "plain", "--db", url, "-q").exit_code == 0
    got = rows(url, "senators")
    assert got == rows(url, "plain") and len(got) == 15
    assert "Angers, Auguste Réal" in [r[0] for r in got]
    assert any("Chrétien, Joseph Jacques" in str(r) for r in got)


def test_json_lines_in_utf16(url: str, tmp_path: Path) -> None:
    rows = [{"id": 1, "name": "Chrétien"}, {"id": 2, "name": "Zürich €"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-16")
    result = cli("load", str(path), "-t", "j", "--db", url, "--key", "id", "--encoding", "utf-16")
    assert result.exit_code == 0, result.output
    assert select(url, "SELECT id, name FROM j ORDER BY id") == [(1, "Chrétien"), (2, "Zürich €")]


def test_sync_of_the_same_bytes_in_another_encoding_is_not_skipped(
    url: str, tmp_path: Path
) -> None:
    # Byte 0x80 is "€" in cp1252 and the control character U+0080 in Latin-1: the same
    # file read in another encoding holds other rows, so the file's digest alone must
    # not let the second sync skip it.
    path = tmp_path / "prices.csv"
    path.write_bytes("id,currency\n1,\u20ac\n".encode("cp1252"))
    loaded = cli("load", str(path), "-t", "prices", "--db", url, "--key", "id",
                 "--encoding", "cp1252", "-q")  # fmt: skip
    assert loaded.exit_code == 0, loaded.output
    for encoding, expected, skipped in (
        ("latin-1", "\x80", False),
        ("cp1252", "\u20ac", False),
        ("cp1252", "\u20ac", True),
    ):
        result = cli(
            "sync", str(path), "-t", "prices", "--db", url, "--key", "id",
            "--encoding", encoding, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert bool(report.get("up_to_date")) is skipped, report
        assert report["changed"] == (0 if skipped else 1), report
        assert select(url, "SELECT currency FROM prices") == [(expected,)]


def test_a_byte_the_encoding_lacks_names_the_line_and_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"id,name\n1,a\n2,b\x81c\n")  # 0x81: no character in cp1252
    result = cli("load", str(path), "-t", "bad", "--db", f"sqlite:///{tmp_path}/b.db",
                 "--encoding", "cp1252")  # fmt: skip
    assert result.exit_code == 2
    assert "bad.csv, line 3: not valid cp1252 (b'\\x81')" in result.output


def test_an_unknown_encoding_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n")
    for command in ("load", "sync"):
        result = cli(command, str(path), "-t", "a", "--db", f"sqlite:///{tmp_path}/a.db",
                     "--encoding", "klingon")  # fmt: skip
        assert result.exit_code == 2
        assert "unknown text encoding 'klingon'" in result.output


def semicolons(text: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerows(csv.reader(io.StringIO(text)))
    return out.getvalue()


def test_semicolon_separated_file_loads_with_delimiter(url: str, tmp_path: Path) -> None:
    text = senators()
    path = tmp_path / "senators.csv"
    path.write_text(semicolons(text), encoding="utf-8")
    # Read with commas, the header is one name: refused, naming the separator, and no
    # table of one column is made (whose every row would then be rejected).
    refused = cli("load", str(path), "-t", "senators", "--db", url)
    assert refused.exit_code == 2, refused.output
    assert "pass --delimiter ';'" in " ".join(refused.output.split())
    assert not table_exists(url, "senators")
    result = cli("load", str(path), "-t", "senators", "--db", url, "--delimiter", ";",
                 "--key", "Name,start_date", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    plain = tmp_path / "plain.csv"
    plain.write_text(text, encoding="utf-8")
    loaded = cli("load", str(plain), "-t", "plain", "--db", url, "--key", "Name,start_date", "-q")
    assert loaded.exit_code == 0, loaded.output
    got = rows(url, "senators")
    assert got == rows(url, "plain") and len(got) == 15
    synced = cli("sync", str(path), "-t", "senators", "--db", url, "--key", "Name,start_date",
                 "--delimiter", ";", "--json")  # fmt: skip
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["unchanged"] == 15


@pytest.mark.parametrize("spelling", ["\\t", "tab", "\t"])
def test_a_tab_delimiter_spelled_as_a_shell_passes_it(tmp_path: Path, spelling: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\tb\n1\t2\n")
    url = f"sqlite:///{tmp_path}/t.db"
    result = cli("load", str(path), "-t", "t", "--db", url, "--delimiter", spelling, "-q")
    assert result.exit_code == 0, result.output
    assert select(url, "SELECT a, b FROM t") == [(1, 2)]


def test_a_one_column_file_is_loaded_as_one_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    path = tmp_path / "o.csv"
    path.write_text("word\nfoo\nbar\n")  # no other separator in its header: as before
    assert cli("load", str(path), "-t", "o", "--db", url, "-q").exit_code == 0
    path.write_text("a;b\nx;y\n")  # one column on purpose: --delimiter ','
    result = cli("load", str(path), "-t", "p", "--db", url, "--delimiter", ",", "-q")
    assert result.exit_code == 0, result.output
    assert select(url, 'SELECT "a;b" FROM p') == [("x;y",)]


@pytest.mark.parametrize("bad", [";;", '"', "", "\n"])
def test_a_delimiter_must_be_one_plain_character(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id\n1\n")
    for command in ("load", "sync"):
        result = cli(command, str(path), "-t", "a", "--db", f"sqlite:///{tmp_path}/a.db",
                     "--delimiter", bad)  # fmt: skip
        assert result.exit_code == 2
        assert "Invalid value for '--delimiter'" in result.output


def test_a_resumed_load_knows_the_file_by_its_bytes_encoding_and_delimiter(tmp_path: Path) -> None:
    # The run log names the input a resume must match: the same bytes read in another
    # encoding are other rows, so the encoding is part of it (UTF-8: the digest alone,
    # as before).
    path = tmp_path / "prices.csv"
    path.write_bytes("id,currency\n1,\u20ac\n".encode("cp1252"))
    url = f"sqlite:///{tmp_path}/r.db"
    for table, encoding in (("a", "cp1252"), ("b", "latin-1")):
        result = cli("load", str(path), "-t", table, "--db", url, "--encoding", encoding, "-q")
        assert result.exit_code == 0, result.output
    utf8 = tmp_path / "plain.csv"
    utf8.write_text("id\n1\n")
    assert cli("load", str(utf8), "-t", "c", "--db", url, "-q").exit_code == 0
    runs = json.loads(cli("runs", "--db", url, "--json").stdout)
    sources = {run["table"]: run["source"] for run in runs}
    assert sources["a"].endswith(";encoding=cp1252")
    assert sources["b"].endswith(";encoding=iso8859-1")
    assert sources["a"].split(";")[0] == sources["b"].split(";")[0]
    assert ";" not in sources["c"] and sources["c"].startswith("sha256:")
    # So is a --delimiter: "1;2" is one value or two.
    semicolons = tmp_path / "pairs.csv"
    semicolons.write_text("id;v\n1;2\n")
    result = cli("load", str(semicolons), "-t", "d", "--db", url, "--delimiter", ";", "-q")
    assert result.exit_code == 0, result.output
    runs = json.loads(cli("runs", "--db", url, "--json").stdout)
    source = next(run["source"] for run in runs if run["table"] == "d")
    assert source.startswith("sha256:") and source.endswith(';delimiter=";"')


@pytest.mark.parametrize("separator", [";", "|", "\t"])
def test_a_one_name_header_holding_a_separator_is_refused(tmp_path: Path, separator: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"id{separator}name\n1{separator}a\n")
    url = f"sqlite:///{tmp_path}/s.db"
    result = cli("load", str(path), "-t", "s", "--db", url)
    assert result.exit_code == 2, result.output
    shown = "\\t" if separator == "\t" else separator
    assert f"pass --delimiter '{shown}'" in result.output
    assert not table_exists(url, "s")


@pytest.mark.parametrize(
    ("name", "encoding", "header", "rows"),
    [
        ("datatable_utf16le.txt", "utf-16le", ("a", "b"), [("c", "d")]),
        ("datatable_utf16le.txt", "UTF-16LE", ("a", "b"), [("c", "d")]),
        ("datatable_utf16be.txt", "utf-16-be", ("a", "b"), [("c", "d")]),
        ("datatable_utf16le.txt", "utf-16", ("a", "b"), [("c", "d")]),
        ("datatable_gb18030.txt", "gb18030", ("x", "y", "z"), [(None, None, None)]),
    ],
)
def test_a_byte_order_mark_the_codec_keeps_is_not_the_first_name(
    url: str, tmp_path: Path, name: str, encoding: str, header: tuple[str, ...], rows: list[object]
) -> None:
    # data.table's test files, each starting with a byte order mark. The utf-16 codec
    # takes the mark off; utf-16le, utf-16-be and gb18030 decode it as U+FEFF, which
    # became part of the first column's name ('\ufeffa'): --key a was "not a column of
    # the file", and a table was made with an invisible character in a name.
    path = tmp_path / "bom.csv"
    path.write_bytes((Path(__file__).parent / "data" / name).read_bytes())
    args = ["-t", "bom", "--db", url, "--encoding", encoding, "--json"]
    key = ["--key", header[0]] if rows[0] != (None, None, None) else []
    result = cli("load", str(path), *args, *key)
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)["created"]["columns"]
    assert tuple(c["name"] for c in created) == header
    columns = ", ".join(f'"{c}"' for c in header)
    assert select(url, f"SELECT {columns} FROM bom") == rows
    stdin = cli("load", "-", *args, *key, "--mode", "upsert" if key else "insert",
                stdin=path.read_bytes())  # fmt: skip
    assert stdin.exit_code == 0, stdin.output
    assert select(url, f"SELECT {columns} FROM bom") == rows * (1 if key else 2)


@pytest.mark.parametrize("how", ["extension", "format"])
def test_a_comma_file_read_as_tsv_is_refused(tmp_path: Path, how: str) -> None:
    # The gapminder excerpt (comma-separated) named .tsv, or read with --format tsv:
    # its header became one column named 'country,continent,year,...', and every row
    # loaded into it as one text value, a table nobody asked for. The guard against a
    # one-name header covered semicolons, tabs and bars, not the comma.
    source = Path(__file__).parent / "data" / "gapminder_excerpt.csv"
    path = tmp_path / ("gapminder.tsv" if how == "extension" else "gapminder.csv")
    path.write_bytes(source.read_bytes())
    url = f"sqlite:///{tmp_path}/g.db"
    args = ["load", str(path), "-t", "g", "--db", url]
    result = cli(*args, *(["--format", "tsv"] if how == "format" else []))
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert (
        "pass --delimiter ',' (or --format csv); --delimiter '\\t' reads it as one column" in said
    )
    assert not table_exists(url, "g")
    loaded = cli(*args, "--delimiter", ",", "--quiet")
    assert loaded.exit_code == 0, loaded.output
    assert select(url, "SELECT count(*) FROM g WHERE country IS NOT NULL") == [(24,)]


def test_blank_names_ending_the_header_are_left_out_with_their_empty_fields(
    url: str, tmp_path: Path
) -> None:
    # A spreadsheet's CSV export ("CSV UTF-8": a byte order mark, CRLF) writes a,b,c,,
    # for columns it once saw used, and an empty field under each on every line. Such a
    # file was refused as a whole ("a blank column name at position 4, 5"); those
    # columns are now left out. A value under one is not dropped: its row is rejected
    # with its values. A blank name elsewhere is still refused.
    text = senators()
    lines = text.splitlines()
    excel = tmp_path / "excel.csv"
    excel.write_bytes(("\r\n".join(f"{line},," for line in lines) + "\r\n").encode("utf-8-sig"))
    plain = tmp_path / "plain.csv"
    plain.write_text(text, encoding="utf-8")
    key = lines[0].split(",")[0]
    for path, table in ((plain, "plain"), (excel, "excel")):
        result = cli("load", str(path), "-t", table, "--db", url, "--key", key, "-q")
        assert result.exit_code == 0, result.output
    assert rows(url, "excel") == rows(url, "plain") and rows(url, "plain")
    for run in range(2):
        result = cli("sync", str(excel), "-t", "excel", "--db", url, "--key", key, "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["changed"], report["deleted"], bool(report.get("up_to_date"))) == (
            0, 0, run == 1,
        ), report  # fmt: skip
    stray = tmp_path / "stray.csv"
    stray.write_text("id,name,,\n1,a,,\n2,b,,x\n3,c\n")
    result = cli("load", str(stray), "-t", "stray", "--db", url, "--json")
    report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (2, 1), report
    assert report["rejections"][0]["row"] == 2
    assert report["rejections"][0]["values"] == ["2", "b", None, "x"]
    assert select(url, "SELECT id, name FROM stray ORDER BY id") == [(1, "a"), (3, "c")]
    middle = tmp_path / "middle.csv"
    middle.write_text("id,,name\n1,x,a\n")
    result = cli("load", str(middle), "-t", "middle", "--db", url)
    assert result.exit_code != 0 and "blank column name at position 2" in result.output
