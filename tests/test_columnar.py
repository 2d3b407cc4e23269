"""The columnar path (Arrow input: pyarrow, pandas, polars) against the row path.

The contract: every verb given the same rows as dicts and as an Arrow table, on every
backend, leaves the same table, the same Report counts and the same rejects (row
number, key, column). Then real pandas, polars and pyarrow inputs: pd.NA, NaN, numpy
integers, a Parquet decimal column, timestamps naive and aware.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bulkops
from conftest import assert_accounted, create, needs, pg_execute, rows_of

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
np = pytest.importorskip("numpy")
pq = pytest.importorskip("pyarrow.parquet")

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 12, 30, tzinfo=UTC)

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("qty", pa.int64()),
        ("name", pa.string()),
        ("code", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("day", pa.date32()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("ok", pa.bool_()),
    ]
)


@pytest.fixture(autouse=True)
def _sql_backends_only(request: pytest.FixtureRequest) -> None:
    """The ``db`` tests compare typed columns: SQL backends. (DynamoDB takes Arrow
    input as items through its row path: test_dynamodb_takes_arrow_...)"""
    if "db" in request.fixturenames:
        needs(request.getfixturevalue("db"), "declared_columns", "only the key is declared")


def _table(db: bulkops.Store, name: str) -> None:
    create(
        db,
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("qty", sa.Integer),  # int4 on PostgreSQL
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("code", sa.String(5)),  # varchar(5) on PostgreSQL
        sa.Column("price", sa.Numeric(6, 2)),
        sa.Column("day", sa.Date),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("ok", sa.Boolean),
    )


def _row(i: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "qty": i * 10,
        "name": f"n{i}",
        "code": f"c{i}",
        "price": Decimal(f"{i}.25"),
        "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
        "at": T0 + dt.timedelta(minutes=i),
        "ok": i % 2 == 0,
    }
    row.update(changes)
    return row


def _bad_rows() -> list[dict[str, Any]]:
    """Rows 1..12, unsorted, with a duplicate key and values bad on some backends."""
    return [
        _row(5),
        _row(2),
        _row(9, qty=3_000_000_000),  # beyond int4 (PostgreSQL)
        _row(1),
        _row(7, name=None),  # NOT NULL
        _row(2, name="n2 again"),  # duplicate key: last wins
        _row(4, code="toolong"),  # beyond varchar(5) (PostgreSQL)
        _row(3, price=Decimal("123456.00")),  # beyond numeric(6,2) (PostgreSQL)
        _row(8, at=None, ok=None, day=None, price=None, qty=None, code=None),
        _row(6),
    ]


def _outcome(db: bulkops.Store, table: str, report: bulkops.Report) -> dict[str, Any]:
    counts = {
        k: v
        for k, v in report.as_dict().items()
        if k in ("rows_in", "inserted", "updated", "unchanged", "ignored", "deleted",
                 "not_found", "upserted", "rejected", "duplicates", "failed")
    }  # fmt: skip
    rejects = sorted((r.row, r.key, r.column) for r in report.rejections)
    return {"rows": rows_of(db, table), "counts": counts, "rejects": rejects}


def _both(
    db: bulkops.Store, verb: str, rows: list[dict[str, Any]], setup: list[dict[str, Any]] | None,
    **options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """``verb`` with ``rows`` as dicts on one table and as Arrow on another."""
    out = []
    for path in ("rows", "arrow"):
        table = f"{verb}_{path}"
        _table(db, table)
        if setup:
            db.insert(table, setup)
        data: Any = rows
        if path == "arrow":
            schema = pa.schema([SCHEMA.field(c) for c in rows[0]])
            data = pa.Table.from_pylist(rows, schema=schema)
        report = getattr(db, verb)(table, data, on_error="isolate", **options)
        assert_accounted(report, len(rows))
        out.append(_outcome(db, table, report))
    return out[0], out[1]


VERBS = ["insert", "upsert", "update", "delete"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_gives_the_same_table_counts_and_rejects_on_both_paths(
    db: bulkops.Store, verb: str
) -> None:
    setup = [_row(i, name=f"old{i}") for i in (1, 2, 3, 20)] if verb != "insert" else None
    rows = _bad_rows()
    if verb == "delete":
        rows = [{"id": r["id"]} for r in rows] + [{"id": 99}]
    by_rows, by_arrow = _both(db, verb, rows, setup)
    assert by_arrow == by_rows
    if db.capabilities.declared_columns and db.capabilities.name == "postgresql":
        # The checks fired on the columnar path too (not only in the database).
        assert by_arrow["rejects"] or verb == "delete"


def test_the_columnar_path_sorts_collapses_and_counts_every_row(db: bulkops.Store) -> None:
    _table(db, "t")
    rows = [_row(i, name=f"{i}:{j}") for j, i in enumerate((3, 1, 2, 3, 1))]
    report = db.insert("t", pa.Table.from_pylist(rows, schema=SCHEMA))
    assert_accounted(report, 5)
    assert (report.inserted, report.duplicates) == (3, 2)
    assert [r["name"] for r in rows_of(db, "t")] == ["1:4", "2:2", "3:3"]  # last wins
    # Chunks of 2: (3, 1), (2, 3), (1): a key of an earlier chunk is an update.
    report = db.upsert("t", pa.Table.from_pylist(rows, schema=SCHEMA), chunk_size=2)
    assert_accounted(report, 5)
    assert report.chunks == 3
    assert report.duplicates == 0


def test_atomic_arrow_insert_commits_nothing_on_a_bad_row(db: bulkops.Store) -> None:
    _table(db, "t")
    rows = [_row(1), _row(2, name=None), _row(3)]
    with pytest.raises(bulkops.errors.DataError) as raised:
        db.insert("t", pa.Table.from_pylist(rows, schema=SCHEMA), atomic=True)
    assert raised.value.row == 2
    assert raised.value.key == 2
    assert raised.value.column == "name"
    assert rows_of(db, "t") == []


def test_arrow_input_reports_bad_row_with_row_key_column_value_reason(db: bulkops.Store) -> None:
    _table(db, "t")
    rows = [_row(1), _row(2, name=None)]
    report = db.insert("t", pa.Table.from_pylist(rows, schema=SCHEMA), on_error="isolate")
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column) == (2, 2, "name")
    assert bad.values["name"] is None and bad.values["id"] == 2
    assert "NOT NULL" in bad.reason or "not-null" in bad.reason or "NOT NULL" in bad.reason.upper()


# --------------------------------------------------------------- real DataFrames


def _frames_table(db: bulkops.Store, name: str = "f") -> None:
    create(
        db,
        name,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer),
        sa.Column("x", sa.Float),
        sa.Column("label", sa.Text),
        sa.Column("at", sa.DateTime(timezone=True)),
    )


def test_pandas_dataframe_insert_nan_pd_na_and_numpy_ints(db: bulkops.Store) -> None:
    _frames_table(db)
    df = pd.DataFrame(
        {
            "id": np.array([3, 1, 2], dtype=np.int64),
            "n": pd.array([10, pd.NA, 30], dtype="Int32"),
            "x": [1.5, np.nan, 2.5],
            "label": ["a", None, np.nan],
            "at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", None]),
        }
    )
    report = db.insert("f", df)
    assert report.inserted == 3
    got = rows_of(db, "f")
    assert [r["id"] for r in got] == [1, 2, 3]
    assert got[0]["n"] is None and got[0]["x"] is None and got[0]["label"] is None
    assert got[1]["label"] is None  # NaN in an object column is missing too
    assert got[1]["at"] is None  # NaT
    assert got[2]["n"] == 10 and got[2]["x"] == 1.5
    if db.capabilities.declared_columns and not db.capabilities.keeps_utc_offset:
        # Naive times are taken as UTC for a timestamptz column.
        assert got[2]["at"] == dt.datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_pandas_integer_column_with_nan_is_float_and_whole_values_pass(db: bulkops.Store) -> None:
    _frames_table(db)
    df = pd.DataFrame({"id": [1.0, 2.0, 3.0], "n": [1.0, np.nan, 2.5]})
    report = db.insert("f", df, on_error="isolate")
    assert report.inserted == 2
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column) == (3, 3, "n")
    assert "2.5 is not an integer" in bad.reason


def test_polars_upsert_and_read_back_as_arrow_and_pandas(db: bulkops.Store) -> None:
    _frames_table(db)
    db.insert("f", [{"id": 1, "n": 1, "label": "old"}, {"id": 2, "n": 2, "label": "same"}])
    frame = pl.DataFrame({"id": [1, 2, 3], "n": [10, 2, 30], "label": ["new", "same", "three"]})
    report = db.upsert("f", frame)
    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 1)
    table = db.get_many("f", [3, 1, 404], as_arrow=True)
    assert isinstance(table, pa.Table)
    assert table.column("id").to_pylist() == [3, 1]
    assert table.column("label").to_pylist() == ["three", "new"]
    back = table.to_pandas()
    assert list(back["n"]) == [30, 10]


def test_polars_categorical_and_enum_columns(db: bulkops.Store) -> None:
    # polars hands Categorical and Enum columns over as dictionaries of string_view
    # values (vega_datasets' barley: variety and site as categories).
    _frames_table(db)
    sites = ["University Farm", "Waseca", "Morris"]
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "label": pl.Series(["Waseca", None, "Morris", "Waseca"], dtype=pl.Enum(sites)),
            "n": pl.Series(["1", "2", "x", None], dtype=pl.Categorical),
        }
    )
    report = db.insert("f", frame, on_error="isolate")
    assert (report.inserted, report.rejected) == (3, 1)
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column) == (3, 3, "n")
    got = {r["id"]: (r["label"], r["n"]) for r in rows_of(db, "f")}
    assert got == {1: ("Waseca", 1), 2: (None, 2), 4: ("Waseca", None)}
    assert db.upsert("f", frame.filter(pl.col("id") != 3)).unchanged == 3


def test_polars_nan_is_a_value_not_a_missing_one(db: bulkops.Store) -> None:
    _frames_table(db)
    frame = pl.DataFrame({"id": [1, 2], "x": [float("nan"), None]})
    report = db.insert("f", frame, on_error="isolate")
    got = {r["id"]: r["x"] for r in rows_of(db, "f")}
    assert got[2] is None
    if report.rejected:  # SQLite cannot store NaN: refused, not turned into NULL
        assert report.rejections[0].key == 1
        assert "NaN" in report.rejections[0].reason
    else:
        assert got[1] != got[1]


def test_aware_timestamps_in_another_zone_keep_the_instant(db: bulkops.Store) -> None:
    _frames_table(db)
    at = pd.Timestamp("2024-05-01 12:00", tz="Europe/Paris")
    db.insert("f", pd.DataFrame({"id": [1], "at": [at]}))
    (got,) = rows_of(db, "f")
    assert got["at"] == at.to_pydatetime()


@pytest.mark.parametrize("zone", [None, "UTC"])
def test_times_with_whole_milliseconds_keep_their_fraction(
    db: bulkops.Store, zone: str | None
) -> None:
    """A fraction of a second in whole milliseconds (0.5 s) is a fraction all the same:
    SQLite's text of it was cut to whole seconds by a check that read only the
    microseconds within the millisecond, and Arrow refused the cut."""
    _frames_table(db)
    times = [dt.datetime(2024, 1, 1, 10, 0, 0, 500_000), dt.datetime(2024, 1, 1, 10)]
    at = pa.array(times, pa.timestamp("us", tz=zone))
    db.insert("f", pa.table({"id": [1, 2], "at": at}))
    got = [r["at"].replace(tzinfo=None) for r in sorted(rows_of(db, "f"), key=lambda r: r["id"])]
    assert got == times


def test_nanoseconds_are_refused_not_truncated(db: bulkops.Store) -> None:
    _frames_table(db)
    ts = pd.to_datetime(
        ["2024-01-01 00:00:00.000000001", "2024-01-01 00:00:01.000000000"], utc=True
    )
    report = db.insert("f", pd.DataFrame({"id": [1, 2], "at": ts}), on_error="isolate")
    assert report.inserted == 1
    assert report.rejections[0].row == 1
    assert "nanoseconds" in report.rejections[0].reason


def test_parquet_decimal_column(db: bulkops.Store, tmp_path: Any) -> None:
    create(
        db,
        "money",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("amount", sa.Numeric(12, 2)),
    )
    path = tmp_path / "money.parquet"
    amounts = [Decimal("10.50"), Decimal("0.01"), None, Decimal("-99999.99")]
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4], "amount": pa.array(amounts, pa.decimal128(12, 2))}), path
    )
    report = db.insert("money", pq.ParquetFile(path).iter_batches(batch_size=3).__next__())
    assert report.inserted == 3
    report = db.insert("money", pq.read_table(path).slice(3))
    assert report.inserted == 1
    got = {r["id"]: r["amount"] for r in rows_of(db, "money")}
    assert got == dict(zip([1, 2, 3, 4], amounts, strict=True))


def test_decimal_with_more_places_than_the_column_is_refused(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        create(
            db,
            "money",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("amount", sa.Numeric(12, 2)),
        )
        data = pa.table(
            {
                "id": [1, 2],
                "amount": pa.array([Decimal("1.005"), Decimal("2.500")], pa.decimal128(10, 3)),
            }
        )
        report = db.insert("money", data, on_error="isolate")
        assert report.inserted == 1
        (bad,) = report.rejections
        assert (bad.row, bad.column) == (1, "amount")
        assert "more than 2 decimal places" in bad.reason


def test_postgres_column_without_binary_form_goes_as_text(pg_url: str) -> None:
    pg_execute(
        pg_url,
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE TABLE u (id uuid PRIMARY KEY, mood mood, doc jsonb, tag char(3))",
    )
    with bulkops.connect(pg_url) as db:
        ids = ["6f1c1a3e-8a53-4c55-9e1b-2b8b8f7c0d01", "6f1c1a3e-8a53-4c55-9e1b-2b8b8f7c0d02"]
        data = pa.table({"id": ids, "mood": ["ok", "happy"], "doc": ['{"a": 1}', None],
                         "tag": ["ab", "xyz"]})  # fmt: skip
        assert db.insert("u", data).inserted == 2
        report = db.upsert("u", pa.table({"id": ids[:1], "mood": ["sad"]}))
        assert report.updated == 1
        got = db.get_many("u", ids)
        assert str(got[next(iter(got))]["id"]) in ids
        moods = sorted(r["mood"] for r in got.values())
        assert moods == ["happy", "sad"]


def test_postgres_arrays_and_uuids_from_arrow_round_trip(pg_url: str) -> None:
    # The shape of pagila's film.special_features (text[]) and of a uuid key read back
    # by get_many(as_arrow=True) and written again: a list is an array literal.
    pg_execute(pg_url, *(
        f"CREATE TABLE {name} (id int PRIMARY KEY, u uuid, tags text[], n int[])"
        for name in ("src", "dst")
    ))  # fmt: skip
    with bulkops.connect(pg_url) as db:
        rows = [
            {"id": 1, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
             "tags": ["Trailers", 'say "hi"', None], "n": [1, 2, None]},
            {"id": 2, "u": None, "tags": [], "n": None},
        ]  # fmt: skip
        assert db.insert("src", rows).inserted == 2
        table = db.get_many("src", [1, 2], as_arrow=True)
        assert db.insert("dst", table).inserted == 2
        assert db.get_many("dst", [1, 2]) == db.get_many("src", [1, 2])
        assert db.upsert("dst", table).unchanged == 2
        frame = pl.DataFrame({"id": [2], "tags": [["Deleted Scenes"]], "n": [[7]]})
        assert db.upsert("dst", frame).updated == 1
        assert db.get_many("dst", [2], columns=["tags", "n"])[2] == {
            "tags": ["Deleted Scenes"],
            "n": [7],
        }


def test_get_many_as_arrow_gives_json_documents_as_their_text(db: bulkops.Store) -> None:
    # Documents of differing shapes, as in any real JSON column (vega_datasets' and
    # chinook's nested records): inferred as structs, {"a": 1} would read back with
    # other rows' keys as nulls, and a list among objects would be Python's repr.
    db.create_table("docs", {"id": "integer", "doc": "json"}, key="id")
    docs = {1: {"a": 1}, 2: {"b": "x", "c": [1, 2.5]}, 3: [1, {"k": None}], 4: 7, 5: None}
    db.insert("docs", [{"id": k, "doc": v} for k, v in docs.items()])
    table = db.get_many("docs", list(docs), as_arrow=True)
    assert table.schema.field("doc").type == pa.string()
    texts = table.column("doc").to_pylist()
    assert [None if t is None else json.loads(t) for t in texts] == list(docs.values())
    # The text is JSON text, which the column takes back as the same documents.
    assert db.upsert("docs", table).unchanged == len(docs)
    assert pl.from_arrow(table)["doc"].dtype == pl.String


def test_postgres_times_with_a_zone_keep_it_as_arrow(pg_url: str) -> None:
    # Arrow's time type has no zone: timetz values come as ISO text, not as the wall
    # time without its offset (13:45+02 would read back as 13:45 UTC).
    with bulkops.connect(pg_url) as db:
        engine = db.backend.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE tt (id int PRIMARY KEY, at timetz, t time)"))
            conn.execute(
                sa.text("INSERT INTO tt VALUES (1, '13:45:00+02', '13:45'), (2, NULL, NULL)")
            )
        table = db.get_many("tt", [1, 2], as_arrow=True)
        assert table.column("at").to_pylist() == ["13:45:00+02:00", None]
        assert table.column("t").to_pylist() == [dt.time(13, 45), None]
        assert db.upsert("tt", table).unchanged == 2


def test_dynamodb_takes_arrow_through_its_item_path(ddb: bulkops.Store) -> None:
    ddb.create_table("items", {"id": "integer"}, key="id")
    frame = pl.DataFrame({"id": [2, 1, 2], "name": ["b", "a", "b2"]})
    report = ddb.insert("items", frame)
    assert report.rows_in == 3
    got = ddb.get_many("items", [1, 2])
    assert got[2]["name"] == "b2"


def test_get_many_as_arrow_of_no_rows_has_the_columns(db: bulkops.Store) -> None:
    _frames_table(db)
    table = db.get_many("f", [1], as_arrow=True)
    assert table.num_rows == 0
    assert {"id", "n", "x", "label", "at"} <= set(table.column_names)


def test_pandas_index_is_not_written_and_strings_are_coerced_per_value(
    db: bulkops.Store,
) -> None:
    create(
        db,
        "d",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("day", sa.Date),
    )
    df = pd.DataFrame({"id": [1, 2], "day": ["2024-02-03", "not a day"]}, index=[10, 20])
    report = db.insert("d", df, on_error="isolate")
    assert report.inserted == 1
    assert report.rejections[0].row == 2 and report.rejections[0].column == "day"
    assert rows_of(db, "d") == [{"id": 1, "day": dt.date(2024, 2, 3)}]


def test_arrow_chunks_hold_up_to_50000_rows(db: bulkops.Store) -> None:
    create(db, "n", sa.Column("id", sa.Integer, primary_key=True, autoincrement=False))
    report = db.insert("n", pa.table({"id": pa.array(range(50_001), pa.int64())}))
    assert (report.inserted, report.chunks) == (50_001, 2)


def test_postgres_numeric_refuses_floats_it_would_round(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        create(
            db,
            "money",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("amount", sa.Numeric(12, 2)),
        )
        report = db.insert("money", pd.DataFrame({"id": [1, 2], "amount": [0.1, 1.005]}),
                           on_error="isolate")  # fmt: skip
        assert report.inserted == 1
        assert report.rejections[0].row == 2
        assert "more than 2 decimal places" in report.rejections[0].reason
        assert rows_of(db, "money") == [{"id": 1, "amount": Decimal("0.10")}]


def test_postgres_timestamp_without_zone_takes_aware_values_as_utc(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        create(
            db,
            "ts",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("at", sa.DateTime(timezone=False)),
        )
        at = pd.Timestamp("2024-05-01 12:00", tz="Europe/Paris")
        db.insert("ts", pd.DataFrame({"id": [1], "at": [at]}))
        assert rows_of(db, "ts")[0]["at"] == dt.datetime(2024, 5, 1, 10, 0)


def test_sync_and_diff_take_a_dataframe(db: bulkops.Store) -> None:
    _frames_table(db)
    db.insert("f", [{"id": 1, "n": 1}, {"id": 2, "n": 2}, {"id": 3, "n": 3}])
    frame = pl.DataFrame({"id": [1, 2, 4], "n": [1, 20, 4]})
    changes = db.diff("f", frame, columns=["id", "n"], delete_missing=True)
    assert (changes.report.added, changes.report.changed, changes.report.deleted) == (1, 1, 1)
    report = db.sync("f", frame.to_pandas(), columns=["id", "n"], delete_missing=True)
    assert (report.added, report.changed, report.deleted) == (1, 1, 1)
    assert {r["id"]: r["n"] for r in rows_of(db, "f")} == {1: 1, 2: 20, 4: 4}


def test_interrupted_arrow_insert_resumes_exactly(db_url: str) -> None:
    needs(db_url, "columnar", "no columnar writes")
    schema = pa.schema([("id", pa.int64()), ("n", pa.int32())])

    def batches(stop: int | None) -> Any:
        for b in range(10):
            if b == stop:
                raise KeyboardInterrupt
            ids = pa.array(range(b * 100 + 1, b * 100 + 101), pa.int64())
            yield pa.record_batch([ids, pa.array([1] * 100, pa.int32())], schema=schema)

    with bulkops.connect(db_url, run_log=True) as db:
        _frames_table(db)
        reader = pa.RecordBatchReader.from_batches(schema, batches(5))
        with pytest.raises(KeyboardInterrupt):
            db.insert("f", reader, source_id="arrow-1", chunk_size=150)
        done = len(rows_of(db, "f"))
        assert done == 450  # 3 whole chunks of 150
        reader = pa.RecordBatchReader.from_batches(schema, batches(None))
        report = db.insert("f", reader, source_id="arrow-1", chunk_size=150, resume=True)
        assert_accounted(report, 1000)
        assert (report.skipped, report.inserted) == (450, 550)
        assert [r["id"] for r in rows_of(db, "f")] == list(range(1, 1001))


def test_floats_with_the_columns_places_are_taken_exactly(pg_url: str) -> None:
    # Found on the Palmer penguins data: 17.4 in a numeric(4,1) was refused.
    with bulkops.connect(pg_url) as db:
        create(
            db,
            "m",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("v", sa.Numeric(4, 1)),
        )
        values = [17.4, 40.3, 0.1, -0.5, 999.9]
        report = db.insert("m", pd.DataFrame({"id": range(5), "v": values}))
        assert report.inserted == 5
        assert [r["v"] for r in rows_of(db, "m")] == [Decimal(repr(v)) for v in values]


def test_arrow_upsert_with_workers(db: bulkops.Store) -> None:
    _frames_table(db)
    n = 3_000
    data = pa.table({"id": pa.array(range(n), pa.int64()), "n": pa.array([1] * n, pa.int32())})
    report = db.upsert("f", data, chunk_size=500, workers=2)
    assert_accounted(report, n)
    assert report.inserted == n
    assert len(rows_of(db, "f")) == n


def test_rows_are_written_in_key_order_and_keyless_rows_last(db: bulkops.Store) -> None:
    create(
        db,
        "k",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("v", sa.Text),
    )
    data = pa.table({"id": pa.array([None, 30, None, 10, 20], pa.int64()),
                     "v": ["a", "b", "c", "d", "e"]})  # fmt: skip
    report = db.insert("k", data)
    assert_accounted(report, 5)
    assert report.inserted == 5
    got = rows_of(db, "k")
    assert {r["v"] for r in got} == set("abcde")


def test_rows_are_written_in_key_order(db: bulkops.Store) -> None:
    create(db, "o", sa.Column("code", sa.Text, primary_key=True), sa.Column("v", sa.Integer))
    data = pa.table({"code": ["m", "c", "x", "a", "c"], "v": [1, 2, 3, 4, 5]})
    report = db.insert("o", data)
    assert (report.inserted, report.duplicates) == (4, 1)
    # A fresh table's physical order is the order rows were written in.
    physical = "rowid" if db.capabilities.name == "sqlite" else "ctid"
    engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        order = [
            tuple(r) for r in conn.execute(sa.text(f"SELECT code, v FROM o ORDER BY {physical}"))
        ]
    assert order == [("a", 4), ("c", 5), ("m", 1), ("x", 3)]


def test_text_for_numbers_is_coerced_then_checked_like_numbers(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        create(
            db,
            "m",
            sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
            sa.Column("v", sa.Numeric(6, 2)),
        )
        data = pa.table({"id": ["1", "2", "70000", "4"], "v": ["1.50", "2.345", "3", "x"]})
        report = db.insert("m", data, on_error="isolate")
        assert report.inserted == 1
        got = {(r.row, r.column): r.reason for r in report.rejections}
        assert "more than 2 decimal places" in got[(2, "v")]
        assert "16-bit" in got[(3, "id")]
        assert "not a decimal number" in got[(4, "v")]
        assert rows_of(db, "m") == [{"id": 1, "v": Decimal("1.50")}]


_VALUE_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.integers(0, 30),
            "n": st.none() | st.integers(-(2**63), 2**63 - 1),
            "x": st.none() | st.floats(allow_nan=False),
            "label": st.none() | st.text(max_size=5),
            "at": st.none()
            | st.datetimes(
                min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
        }
    ),
    min_size=1,
    max_size=25,
)  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_VALUE_ROWS)
def test_both_paths_store_the_same_values(
    tmp_path_factory: Any, rows: list[dict[str, Any]]
) -> None:
    path = tmp_path_factory.mktemp("both") / "t.db"
    with bulkops.connect(f"sqlite:///{path}") as db:
        for name in ("by_rows", "by_arrow"):
            create(
                db,
                name,
                sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                sa.Column("n", sa.BigInteger),
                sa.Column("x", sa.Float),
                sa.Column("label", sa.Text),
                sa.Column("at", sa.DateTime(timezone=True)),
            )
        types = [pa.int64(), pa.int64(), pa.float64(), pa.string(), pa.timestamp("us", tz="UTC")]
        schema = pa.schema(list(zip(["id", "n", "x", "label", "at"], types, strict=True)))
        a = db.upsert("by_rows", rows)
        b = db.upsert("by_arrow", pa.Table.from_pylist(rows, schema=schema))
        assert (a.inserted, a.duplicates, a.rows_in) == (b.inserted, b.duplicates, b.rows_in)
        engine = db.backend.engine  # type: ignore[attr-defined]
        with engine.connect() as conn:
            raw = [
                conn.execute(sa.text(f"SELECT * FROM {name} ORDER BY id")).all()
                for name in ("by_rows", "by_arrow")
            ]
        assert raw[0] == raw[1]  # the very text SQLite keeps, not only equal values


@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_sqlite_binds_arrow_rows_a_slice_at_a_time_as_the_row_path_would(
    tmp_path: Any, verb: str
) -> None:
    # SQLite makes the bound values of an Arrow batch 1,024 rows at a time: 2,500 rows
    # cross two slice edges, with columns converted in C (date, time, text) and one
    # coerced value by value (a NUMERIC wider than 15 digits). Both paths store the
    # very same text and numbers.
    n = 2_500
    rows = [
        {
            "id": i,
            "amount": Decimal(i) / 8 + Decimal("12345678901234.5"),
            "day": dt.date(2024, 1, 1) + dt.timedelta(days=i % 400),
            "at": T0 + dt.timedelta(seconds=i, microseconds=i % 3),
            "label": None if i % 7 == 0 else f"row {i}",
        }
        for i in range(n)
    ]
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("id", pa.int64()),
                ("amount", pa.decimal128(20, 4)),
                ("day", pa.date32()),
                ("at", pa.timestamp("us", tz="UTC")),
                ("label", pa.string()),
            ]
        ),
    )
    path = tmp_path / "slices.db"
    with bulkops.connect(f"sqlite:///{path}") as db:
        types = {"id": "integer", "amount": "decimal(20,4)", "day": "date", "at": "datetime",
                 "label": "text"}  # fmt: skip
        db.create_table("by_rows", types, key="id")
        db.create_table("by_arrow", types, key="id")
        a = getattr(db, verb)("by_rows", rows)
        b = getattr(db, verb)("by_arrow", table)
        assert (a.inserted, a.rows_in) == (b.inserted, b.rows_in) == (n, n)
    conn = sqlite3.connect(path)
    raw = [
        conn.execute(f"SELECT *, typeof(amount) FROM {name} ORDER BY id").fetchall()
        for name in ("by_rows", "by_arrow")
    ]
    conn.close()
    assert len(raw[1]) == n and raw[0] == raw[1]


@pytest.mark.parametrize("kind", ["dicts", "arrow", "pandas"])
def test_upsert_of_some_columns_updates_the_rows_that_exist(db: bulkops.Store, kind: str) -> None:
    # A DataFrame of id and price for products whose name is NOT NULL (no default): an
    # upsert can only update the rows that exist (an INSERT fails on the NOT NULL before
    # it meets the conflict). Dict rows did; a DataFrame had every row rejected with
    # "null value in column name", the existing products unchanged.
    import pandas as pd
    import pyarrow as pa

    create(
        db, "priced",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("price", sa.Integer),
    )  # fmt: skip
    db.insert("priced", [{"id": 1, "name": "a", "price": 10}, {"id": 3, "name": "c", "price": 30}])
    given = [{"id": 1, "price": 11}, {"id": 2, "price": 20}, {"id": 3, "price": 30}]
    rows: Any = {
        "dicts": given,
        "arrow": pa.Table.from_pylist(given),
        "pandas": pd.DataFrame(given),
    }[kind]
    report = db.upsert("priced", rows, key="id", on_error="isolate")
    assert_accounted(report, 3)
    assert (report.updated, report.unchanged, report.inserted) == (1, 1, 0), report
    assert [(r.row, r.key, r.column) for r in report.rejections] == [(2, 2, "name")]
    assert "leaves out 'name' (NOT NULL, no default)" in report.rejections[0].reason
    assert rows_of(db, "priced") == [
        {"id": 1, "name": "a", "price": 11},
        {"id": 3, "name": "c", "price": 30},
    ]
