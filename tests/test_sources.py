from __future__ import annotations

import gzip
import io
from decimal import Decimal
from pathlib import Path

import pytest

from bulkops.sources import FORMATS, Source, SourceError, infer_format, open_source


def write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def read_all(path: str, format: str | None = None) -> tuple[list[str] | None, list[object]]:
    with open_source(path, format) as source:
        return source.columns, list(source.rows)


# -- infer_format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("data.csv", "csv"),
        ("data.tsv", "tsv"),
        ("data.tab", "tsv"),
        ("data.jsonl", "jsonl"),
        ("data.ndjson", "jsonl"),
        ("data.parquet", "parquet"),
        ("data.pq", "parquet"),
        ("data.csv.gz", "csv"),
        ("data.csv.zip", "csv"),
        ("data.tsv.gz", "tsv"),
        ("data.tab.gz", "tsv"),
        ("data.jsonl.gz", "jsonl"),
        ("data.ndjson.gz", "jsonl"),
        ("data.parquet.gz", "parquet"),
        ("data.pq.gz", "parquet"),
        ("DIR.v2/Data.CSV", "csv"),
        ("/abs/path/x.y.NDJSON.GZ", "jsonl"),
    ],
)
def test_infer_format(name: str, expected: str) -> None:
    assert infer_format(name) == expected
    assert expected in FORMATS


@pytest.mark.parametrize(
    "name", ["data.json", "data.txt", "data", "data.gz", "csv", "data.txt.zip"]
)
def test_infer_format_unknown(name: str) -> None:
    with pytest.raises(SourceError, match="--format") as info:
        infer_format(name)
    assert name in str(info.value)


def test_unknown_explicit_format(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "a.csv", b"a\n1\n")
    with pytest.raises(SourceError, match="xml"):
        open_source(path, "xml")


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "data.txt", b"a\tb\n1\t2\n")
    assert read_all(path, "tsv") == (["a", "b"], [("1", "2")])
    assert read_all(path, "TSV") == (["a", "b"], [("1", "2")])


# -- CSV / TSV ---------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    data = (
        "id,name,note,amount\n"
        '1,"Smith, John","line one\nline two",12.50\n'
        '2,plain,"she said ""hi""",\n'
        "3,,,0\n"
    )
    path = write_bytes(tmp_path / "people.csv", data.encode())
    with open_source(path) as source:
        assert isinstance(source, Source)
        assert source.format == "csv"
        assert source.columns == ["id", "name", "note", "amount"]
        assert source.total_bytes == len(data.encode())
        rows = list(source.rows)
    assert rows == [
        ("1", "Smith, John", "line one\nline two", "12.50"),
        ("2", "plain", 'she said "hi"', None),
        ("3", None, None, "0"),
    ]
    assert all(type(row) is tuple for row in rows)


def test_csv_crlf_and_unicode(tmp_path: Path) -> None:
    data = 'k,v\r\n1,"Zoë ☃"\r\n2,"a\r\nb"\r\n'.encode()
    path = write_bytes(tmp_path / "a.csv", data)
    assert read_all(path) == (["k", "v"], [("1", "Zoë ☃"), ("2", "a\r\nb")])


def test_csv_bom_stripped(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "bom.csv", b"\xef\xbb\xbfid,name\n1,a\n")
    columns, rows = read_all(path)
    assert columns == ["id", "name"]
    assert rows == [("1", "a")]


def test_csv_empty_lines_skipped(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "gaps.csv", b"\n\nid,name\n\n1,a\n\n\n2,b\n\n")
    assert read_all(path) == (["id", "name"], [("1", "a"), ("2", "b")])


def test_csv_ragged_rows_passed_through(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "ragged.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10\n")
    assert read_all(path) == (
        ["a", "b", "c"],
        [("1", "2", "3"), ("4", "5"), ("6", "7", "8", "9"), ("10",)],
    )


def test_csv_header_only(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "h.csv", b"a,b\n")
    assert read_all(path) == (["a", "b"], [])


def test_csv_long_field(tmp_path: Path) -> None:
    # Well past the stdlib's default 128 KiB field size limit.
    long_text = "x" * 500_000
    path = write_bytes(tmp_path / "long.csv", f'id,body\n1,"{long_text}"\n'.encode())
    assert read_all(path) == (["id", "body"], [("1", long_text)])


def test_tsv_round_trip(tmp_path: Path) -> None:
    data = b'id\tname\tnote\n1\tSmith, John\t"tab\there"\n2\t\tx\n'
    path = write_bytes(tmp_path / "people.tsv", data)
    with open_source(path) as source:
        assert source.format == "tsv"
        assert source.columns == ["id", "name", "note"]
        assert list(source.rows) == [("1", "Smith, John", "tab\there"), ("2", None, "x")]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"id,name,id\n", "duplicate column names: 'id'"),
        (b"id,,name\n", "blank column name at position 2"),
        (b"id,  ,name\n", "blank column name at position 2"),
    ],
)
def test_csv_bad_header(tmp_path: Path, header: bytes, match: str) -> None:
    path = write_bytes(tmp_path / "bad.csv", header + b"1,2,3\n")
    with pytest.raises(SourceError, match=match) as info:
        open_source(path)
    assert "bad.csv" in str(info.value)


def test_csv_empty_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "empty.csv", b"\n\n")
    with pytest.raises(SourceError, match="empty"):
        open_source(path)


def test_csv_malformed_quoting_reports_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "q.csv", b'a,b\n1,2\n3,"x"y\n5,6\n')
    with open_source(path) as source:
        assert next(source.rows) == ("1", "2")
        with pytest.raises(SourceError, match=r"q\.csv, line 3: malformed CSV"):
            next(source.rows)


def test_csv_unterminated_quote(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "q.csv", b'a,b\n1,"open\n2,3\n')
    with open_source(path) as source, pytest.raises(SourceError, match="closing quote"):
        list(source.rows)


def test_csv_invalid_utf8(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "latin1.csv", "a\ncafé\n".encode("latin-1"))
    with pytest.raises(SourceError, match="UTF-8"):
        read_all(path)


# -- gzip --------------------------------------------------------------------------------


def test_csv_gz_transparent(tmp_path: Path) -> None:
    data = b'id,name\n1,a\n2,"b,c"\n'
    path = write_bytes(tmp_path / "a.csv.gz", gzip.compress(data))
    assert read_all(path) == (["id", "name"], [("1", "a"), ("2", "b,c")])


def test_jsonl_gz_transparent(tmp_path: Path) -> None:
    data = b'{"id": 1, "price": 9.99}\n{"id": 2, "price": null}\n'
    path = write_bytes(tmp_path / "a.jsonl.gz", gzip.compress(data))
    assert read_all(path) == (
        None,
        [{"id": 1, "price": Decimal("9.99")}, {"id": 2, "price": None}],
    )


def test_gzip_detected_by_magic_bytes(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "sneaky.csv", gzip.compress(b"a\n1\n"))
    assert read_all(path) == (["a"], [("1",)])


def test_gz_suffix_on_plain_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "plain.csv.gz", b"a\n1\n")
    with pytest.raises(SourceError, match="gzip"):
        read_all(path)


def test_truncated_gz(tmp_path: Path) -> None:
    compressed = gzip.compress(b"a\n" + b"12345\n" * 10_000)
    path = write_bytes(tmp_path / "cut.csv.gz", compressed[: len(compressed) // 2])
    with pytest.raises(SourceError, match="truncated gzip"):
        read_all(path)


# -- JSON Lines --------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path) -> None:
    data = (
        b'{"id": 1, "name": "a", "tags": ["x"], "meta": {"k": true}}\n'
        b"\n"
        b"   \n"
        b'{"id": 2, "extra": "only here"}\r\n'
    )
    path = write_bytes(tmp_path / "a.jsonl", data)
    with open_source(path) as source:
        assert source.format == "jsonl"
        assert source.columns is None
        assert list(source.rows) == [
            {"id": 1, "name": "a", "tags": ["x"], "meta": {"k": True}},
            {"id": 2, "extra": "only here"},
        ]


def test_jsonl_floats_are_exact_decimals(tmp_path: Path) -> None:
    data = b'{"a": 0.1, "b": 1e-7, "c": 12345678901234567890.123456789, "n": 3}\n'
    path = write_bytes(tmp_path / "m.ndjson", data)
    _, rows = read_all(path)
    (row,) = rows
    assert isinstance(row, dict)
    assert row["a"] == Decimal("0.1")
    assert isinstance(row["a"], Decimal)
    assert str(row["a"]) == "0.1"
    assert row["a"] + Decimal("0.2") == Decimal("0.3")
    assert row["b"] == Decimal("1e-7")
    assert row["c"] == Decimal("12345678901234567890.123456789")
    assert row["n"] == 3
    assert type(row["n"]) is int


def test_jsonl_bom(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "b.jsonl", b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    assert read_all(path) == (None, [{"a": 1}, {"a": 2}])


def test_jsonl_bad_line_reports_line_number(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "bad.jsonl", b'{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n')
    with open_source(path) as source:
        assert next(source.rows) == {"a": 1}
        with pytest.raises(SourceError) as info:
            next(source.rows)
    message = str(info.value)
    assert "bad.jsonl" in message
    assert "line 3" in message
    assert "invalid JSON" in message
    assert "Expecting property name" in message


@pytest.mark.parametrize(
    ("line", "kind"),
    [(b"[1, 2]", "an array"), (b'"text"', "a string"), (b"42", "a number"), (b"null", "null")],
)
def test_jsonl_non_object_line(tmp_path: Path, line: bytes, kind: str) -> None:
    path = write_bytes(tmp_path / "x.jsonl", b'{"a": 1}\n' + line + b"\n")
    with pytest.raises(SourceError, match=f"line 2: expected a JSON object, got {kind}"):
        read_all(path)


def test_jsonl_two_objects_on_one_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "x.jsonl", b'{"a": 1} {"a": 2}\n')
    with pytest.raises(SourceError, match="line 1: invalid JSON: Extra data"):
        read_all(path)


def test_jsonl_invalid_utf8(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "x.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(SourceError, match="line 2: not valid UTF-8"):
        read_all(path)


# -- Parquet -----------------------------------------------------------------------------


def test_parquet_round_trip(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "name": pa.array(["a", None, "c"]),
            "price": pa.array([Decimal("1.10"), Decimal("2.00"), None], pa.decimal128(10, 2)),
            "ok": pa.array([True, False, None]),
        }
    )
    path = str(tmp_path / "t.parquet")
    pq.write_table(table, path)
    with open_source(path) as source:
        assert source.format == "parquet"
        assert source.columns == ["id", "name", "price", "ok"]
        assert source.bytes_read() == 0
        rows = list(source.rows)
        assert source.bytes_read() == source.total_bytes
    assert rows == [
        (1, "a", Decimal("1.10"), True),
        (2, None, Decimal("2.00"), False),
        (3, "c", None, None),
    ]


def test_parquet_many_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 150_000
    path = str(tmp_path / "many.pq")
    pq.write_table(pa.table({"i": pa.array(range(n)), "s": pa.array(["x"] * n)}), path)
    with open_source(path) as source:
        first = next(source.rows)
        assert first == (0, "x")
        assert 0 < source.bytes_read() < source.total_bytes
        rest = list(source.rows)
        assert source.bytes_read() == source.total_bytes
    assert len(rest) == n - 1
    assert rest[-1] == (n - 1, "x")


def test_parquet_from_stdin_rejected() -> None:
    with pytest.raises(SourceError, match="stdin"):
        open_source("-", "parquet", stdin=io.BytesIO(b"PAR1"))


def test_parquet_not_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = write_bytes(tmp_path / "fake.parquet", b"id,name\n1,a\n")
    with pytest.raises(SourceError, match=r"fake\.parquet"):
        open_source(path)


def test_parquet_missing_file(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.parquet"))


# -- stdin -------------------------------------------------------------------------------


def test_stdin_defaults_to_csv() -> None:
    stdin = io.BytesIO(b"id,name\n1,a\n2,b\n")
    with open_source("-", stdin=stdin) as source:
        assert source.format == "csv"
        assert source.total_bytes is None
        assert source.columns == ["id", "name"]
        assert list(source.rows) == [("1", "a"), ("2", "b")]
        assert source.bytes_read() == len(stdin.getvalue())
    # stdin belongs to the caller: closing the source must leave it open.
    assert not stdin.closed


def test_stdin_jsonl() -> None:
    stdin = io.BytesIO(b'{"x": 1.5}\n')
    with open_source("-", "jsonl", stdin=stdin) as source:
        assert list(source.rows) == [{"x": Decimal("1.5")}]


def test_stdin_gzip() -> None:
    stdin = io.BytesIO(gzip.compress(b"a\tb\n1\t2\n"))
    with open_source("-", "tsv", stdin=stdin) as source:
        assert source.columns == ["a", "b"]
        assert list(source.rows) == [("1", "2")]


def test_stdin_errors_name_stdin() -> None:
    with pytest.raises(SourceError, match="<stdin>, line 1"):
        read_stdin_jsonl(b"nope\n")


def read_stdin_jsonl(data: bytes) -> list[object]:
    with open_source("-", "jsonl", stdin=io.BytesIO(data)) as source:
        return list(source.rows)


# -- files, progress, lifecycle ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="no such file") as info:
        open_source(missing)
    assert missing in str(info.value)


def test_directory(tmp_path: Path) -> None:
    directory = tmp_path / "dir.csv"
    directory.mkdir()
    with pytest.raises(SourceError, match="directory"):
        open_source(str(directory))


@pytest.mark.parametrize("compress", [False, True])
def test_bytes_read_reaches_total(tmp_path: Path, compress: bool) -> None:
    data = b"id,value\n" + b"".join(b"%d,value number %d\n" % (i, i) for i in range(20_000))
    name = "p.csv.gz" if compress else "p.csv"
    path = write_bytes(tmp_path / name, gzip.compress(data) if compress else data)
    with open_source(path) as source:
        assert source.total_bytes == Path(path).stat().st_size
        assert source.bytes_read() < source.total_bytes
        count = sum(1 for _ in source.rows)
        assert source.bytes_read() == source.total_bytes
    assert count == 20_000


def test_jsonl_gz_bytes_read_reaches_total(tmp_path: Path) -> None:
    data = b"".join(b'{"i": %d}\n' % i for i in range(5_000))
    path = write_bytes(tmp_path / "p.jsonl.gz", gzip.compress(data))
    with open_source(path) as source:
        assert sum(1 for _ in source.rows) == 5_000
        assert source.bytes_read() == source.total_bytes == Path(path).stat().st_size


def test_streaming_is_lazy(tmp_path: Path) -> None:
    rows = 200_000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("id,name,amount\n")
        f.writelines(f"{i},name {i},{i}.25\n" for i in range(rows))
    with open_source(str(path)) as source:
        assert source.total_bytes is not None
        assert source.total_bytes > 4_000_000
        assert next(source.rows) == ("0", "name 0", "0.25")
        # Only a read buffer's worth has been pulled in, not the file.
        after_first = source.bytes_read()
        assert 0 < after_first <= 256 * 1024
        for _ in range(rows // 2 - 1):
            next(source.rows)
        halfway = source.bytes_read()
        assert after_first < halfway < source.total_bytes
        assert abs(halfway - source.total_bytes / 2) < source.total_bytes * 0.05
        assert sum(1 for _ in source.rows) == rows // 2
        assert source.bytes_read() == source.total_bytes


def test_close_is_idempotent_and_stops_rows(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "a.csv", b"a\n1\n2\n")
    source = open_source(path)
    assert next(source.rows) == ("1",)
    source.close()
    source.close()
    assert list(source.rows) == []


def test_context_manager_returns_self(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "a.csv", b"a\n1\n")
    source = open_source(path)
    with source as entered:
        assert entered is source
    assert list(source.rows) == []
