"""The backend contract: the semantics every backend honours, run on each one."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.errors import (
    ConstraintError,
    ConversionError,
    DataError,
    SchemaError,
    TooManyRejectsError,
)
from conftest import assert_accounted, create, needs, rows_of

UTC = dt.UTC


def people(db: bulkops.Store, name: str = "people") -> None:
    create(
        db,
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("age", sa.Integer),
        sa.Column("score", sa.Float),
    )


def person(i: int, **over: Any) -> dict[str, Any]:
    return {"id": i, "email": f"p{i}@x.org", "age": 20 + i % 50, "score": i / 4, **over}


# ----------------------------------------------------------------------- insert


def test_insert_streams_in_chunks_and_reports(db: bulkops.Store) -> None:
    people(db)
    consumed = []

    def source():
        for i in range(1, 1001):
            consumed.append(i)
            yield person(i)

    seen_at_first_progress = []

    def progress(report: bulkops.Report) -> None:
        if not seen_at_first_progress:
            seen_at_first_progress.append(len(consumed))

    started = time.perf_counter()
    report = db.insert("people", source(), chunk_size=100, progress=progress)
    wall = time.perf_counter() - started
    assert_accounted(report, 1000)
    assert report.inserted == 1000
    assert report.chunks == 10
    assert report.statements >= 10
    # The call's own time (not a constant, not the time since connect) and its rate.
    assert 0 < report.elapsed <= wall
    assert report.rows_per_second == pytest.approx(report.rows_in / report.elapsed, rel=1e-6)
    # Streaming: after the first chunk only about one chunk had been read.
    assert seen_at_first_progress[0] <= 101
    assert [r["id"] for r in rows_of(db, "people")] == list(range(1, 1001))


def test_insert_tuples_with_columns(db: bulkops.Store) -> None:
    people(db)
    report = db.insert("people", [(1, "a@x", 30), (2, "b@x", 40)], columns=["id", "email", "age"])
    assert report.inserted == 2
    assert rows_of(db, "people")[1] == {"id": 2, "email": "b@x", "age": 40, "score": None}


def test_insert_tuples_without_columns_is_a_clear_error(db: bulkops.Store) -> None:
    people(db)
    with pytest.raises(TypeError, match="columns="):
        db.insert("people", [(1, "a@x", 30)])


def test_duplicate_keys_in_a_call_collapse_last_wins(db: bulkops.Store) -> None:
    people(db)
    rows = [person(1, age=1), person(2), person(1, age=3, email="last@x")]
    report = db.insert("people", rows)
    assert_accounted(report, 3)
    assert report.inserted == 2 and report.duplicates == 1
    assert rows_of(db, "people")[0]["age"] == 3
    assert rows_of(db, "people")[0]["email"] == "last@x"


def test_insert_ignore_counts_conflicts(db: bulkops.Store) -> None:
    people(db)
    db.insert("people", [person(i) for i in range(1, 6)])
    report = db.insert("people", [person(i, age=99) for i in range(4, 9)], on_conflict="ignore")
    assert_accounted(report, 5)
    assert (report.inserted, report.ignored) == (3, 2)
    assert rows_of(db, "people")[3]["age"] != 99  # the existing row was not touched


def test_insert_conflict_error_raises_naming_row_key_and_column(db: bulkops.Store) -> None:
    people(db)
    db.insert("people", [person(i) for i in range(1, 4)])
    rows = [person(10), person(11), person(2), person(12)]
    with pytest.raises(ConstraintError) as caught:
        db.insert("people", rows, chunk_size=2)
    error = caught.value
    assert error.row == 3
    assert error.key == 2
    assert error.column == "id"
    assert error.values == person(2)
    assert "UNIQUE" in error.message.upper() or "duplicate" in error.message
    assert str(error).startswith("row 3, key 2, column 'id'")
    # The first chunk (rows 1-2) committed; the Report travels with the error.
    assert error.report is not None
    if db.capabilities.transactions:
        assert error.report.inserted == 2 and error.report.rows_in == 2
        assert [r["id"] for r in rows_of(db, "people")] == [1, 2, 3, 10, 11]
    else:  # the good row of the failing chunk was written, and the Report says so
        assert error.report.inserted == 3 and error.report.rows_in == 4
        assert [r["id"] for r in rows_of(db, "people")] == [1, 2, 3, 10, 11, 12]


def test_a_key_given_without_a_value_is_a_missing_key(db: bulkops.Store) -> None:
    # A NULL (or blank) id given in the rows is refused: SQLite would assign an
    # INTEGER PRIMARY KEY a new id, so every re-run of the same upsert added a copy.
    # Rows that leave the id out entirely still get ids from the database.
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    create(
        db,
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text),
    )
    given = [{"id": None, "kind": "a"}, {"id": "", "kind": "b"}, {"id": 7, "kind": "c"}]
    for _ in range(2):
        for verb in (db.insert, db.upsert):
            kwargs: dict[str, Any] = {"on_conflict": "ignore"} if verb == db.insert else {}
            report = verb("events", given, on_error="isolate", **kwargs)
            assert_accounted(report, 3)
            assert report.rejected == 2
            assert {r.row: r.column for r in report.rejections} == {1: "id", 2: "id"}
            assert all("missing key" in r.reason for r in report.rejections)
    assert [r["kind"] for r in rows_of(db, "events")] == ["c"]
    with pytest.raises(ConversionError, match="missing key"):
        db.upsert("events", [{"id": None, "kind": "a"}])
    report = db.insert("events", [{"kind": "d"}, {"kind": "e"}])  # ids assigned
    assert report.inserted == 2
    assert sorted(r["kind"] for r in rows_of(db, "events")) == ["c", "d", "e"]


# ------------------------------------------------------------- isolate + accounting


def test_isolate_rejects_exactly_the_bad_rows(db: bulkops.Store, tmp_path: Any) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    db.insert("people", [person(1)])
    rows = [person(i) for i in range(2, 201)]
    rows[9] = person(11, age="eleven")  # wrong type
    rows[49] = person(51, email=None)  # NULL into NOT NULL
    rows[99] = person(101, email="p1@x.org")  # unique violation on email (existing row)
    rows[149] = person(1)  # primary key violation (existing row)
    rows[179] = person(181, email="p180@x.org")  # unique violation within the call
    rows.insert(150, person(150, age=7))  # same chunk as id 150: collapses, last wins
    rejects_path = tmp_path / "rejects.jsonl"
    report = db.insert("people", rows, chunk_size=32, rejects=rejects_path)
    assert_accounted(report, 200)
    assert report.rejected == 5
    assert report.duplicates == 1
    assert report.inserted == 200 - 5 - 1
    by_row = {r.row: r for r in report.rejections}
    assert set(by_row) == {10, 50, 100, 150, 181}
    assert by_row[10].column == "age" and by_row[10].values == person(11, age="eleven")
    assert by_row[50].column == "email" and by_row[50].values["email"] is None
    assert by_row[100].key == 101
    assert by_row[150].key == 1 and by_row[150].column == "id"
    assert by_row[181].key == 181 and by_row[181].column == "email"
    for rejection in report.rejections:
        assert rejection.reason
    written = {r["id"]: r for r in rows_of(db, "people")}
    assert set(written) == {1} | set(range(2, 201)) - {11, 51, 101, 151, 181}
    assert written[150]["age"] == 7  # the later duplicate won
    lines = [json.loads(line) for line in rejects_path.read_text().splitlines()]
    assert sorted(line["row"] for line in lines) == [10, 50, 100, 150, 181]
    assert {line["row"]: line["values"]["age"] for line in lines}[10] == "eleven"


def test_duplicates_in_different_chunks_meet_the_database(db: bulkops.Store) -> None:
    needs(db, "exact_counts", "batch writes do not say inserted from updated")
    # Collapsing is per chunk (memory stays bounded by the chunk); across chunks the
    # database's own conflict handling applies, and every row is still accounted.
    people(db)
    rows = [person(1), person(2), person(1, age=5)]
    report = db.insert("people", rows, chunk_size=2, on_conflict="ignore")
    assert_accounted(report, 3)
    assert (report.inserted, report.ignored) == (2, 1)
    report = db.upsert("people", rows, chunk_size=2)
    assert_accounted(report, 3)
    assert (report.unchanged, report.updated) == (2, 1)
    assert rows_of(db, "people")[0]["age"] == 5


def test_isolate_with_rejects_list(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    sink: list[bulkops.Rejection] = []
    report = db.insert("people", [person(1), person(2, age="x")], rejects=sink)
    assert report.rejected == 1 and sink == report.rejections
    assert sink[0].row == 2


def test_max_rejects_stops_cleanly(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    rows = [person(i, age="bad" if i % 10 == 0 else 1) for i in range(1, 101)]
    with pytest.raises(TooManyRejectsError) as caught:
        db.insert("people", rows, chunk_size=20, max_rejects=3)
    report = caught.value.report
    assert report is not None and report.stopped
    # Chunk 1 (rows 1-20) has 2 bad rows, chunk 2 brings 4 > 3: stopped after it.
    assert report.rows_in == 40 and report.rejected == 4
    assert_accounted(report, 40)
    assert len(rows_of(db, "people")) == 36


def test_atomic_all_or_nothing(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    people(db)
    rows = [person(i) for i in range(1, 51)] + [person(51, email=None)]
    with pytest.raises(ConstraintError) as caught:
        db.insert("people", rows, chunk_size=10, atomic=True)
    assert caught.value.row == 51
    assert caught.value.report is not None and caught.value.report.inserted == 0
    assert rows_of(db, "people") == []
    report = db.insert("people", rows[:50], chunk_size=10, atomic=True)
    assert report.inserted == 50 and len(rows_of(db, "people")) == 50


def test_atomic_with_isolate_commits_good_rows_together(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transactions across requests")
    people(db)
    rows = [person(i) for i in range(1, 31)]
    rows[4] = person(5, age="x")
    rows[20] = person(21, email=None)
    report = db.insert("people", rows, chunk_size=8, atomic=True, on_error="isolate")
    assert_accounted(report, 30)
    assert report.rejected == 2 and report.inserted == 28
    assert len(rows_of(db, "people")) == 28


# ------------------------------------------------------------------------- upsert


def test_upsert_reports_inserted_updated_unchanged_and_does_not_rewrite(
    db: bulkops.Store,
) -> None:
    needs(db, "exact_counts", "batch writes do not say inserted from updated")
    people(db)
    db.insert("people", [person(i) for i in range(1, 11)])
    rows = [person(i) for i in range(1, 6)]  # unchanged
    rows += [person(i, age=99) for i in range(6, 11)]  # changed
    rows += [person(i) for i in range(11, 16)]  # new
    report = db.upsert("people", rows, chunk_size=4)
    assert_accounted(report, 15)
    assert (report.inserted, report.updated, report.unchanged) == (5, 5, 5)
    again = db.upsert("people", rows)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 15)
    assert rows_of(db, "people")[7]["age"] == 99


def test_upsert_update_columns_inserts_whole_rows_updates_only_those(db: bulkops.Store) -> None:
    needs(db, "exact_counts", "batch writes do not say inserted from updated")
    people(db)
    db.insert("people", [person(1, score=1.5)])
    rows = [person(1, age=70, score=9.9, email="new@x"), person(2)]
    report = db.upsert("people", rows, update_columns=["age"])
    assert_accounted(report, 2)
    assert (report.inserted, report.updated) == (1, 1)
    assert rows_of(db, "people") == [person(1, score=1.5, age=70), person(2)]
    # Only the update columns decide what is unchanged.
    again = db.upsert("people", rows, update_columns=["age"])
    assert again.unchanged == 2


def test_upsert_of_a_column_subset_must_still_satisfy_not_null(db: bulkops.Store) -> None:
    """Rows that leave out a NOT NULL column without a default can only update the
    rows that exist; a row whose key is not there is rejected, naming the column."""
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    db.insert("people", [person(1)])
    with pytest.raises(ConversionError, match="'email'"):
        db.upsert("people", [{"id": 2, "age": 70}])
    report = db.upsert("people", [{"id": 1, "age": 70}, {"id": 2, "age": 71}], on_error="isolate")
    assert_accounted(report, 2)
    assert (report.updated, report.rejected) == (1, 1)
    assert report.rejections[0].row == 2 and report.rejections[0].column == "email"
    assert rows_of(db, "people") == [{**person(1), "age": 70}]


def test_upsert_composite_key(db: bulkops.Store) -> None:
    needs(db, "exact_counts", "batch writes do not say inserted from updated")
    create(
        db,
        "scores",
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("algorithm", sa.Text, primary_key=True),
        sa.Column("score", sa.Float),
    )
    key = ("user_id", "product_id", "algorithm")
    rows = [
        {"user_id": u, "product_id": p, "algorithm": a, "score": u * p / 10}
        for u in range(5)
        for p in range(5)
        for a in ("als", "knn")
    ]
    assert db.upsert("scores", rows, key=key).inserted == 50
    rows[0]["score"] = 42.0
    report = db.upsert("scores", rows, key=key)
    assert (report.updated, report.unchanged) == (1, 49)
    got = db.get_many("scores", [(0, 0, "als"), (4, 4, "knn"), (9, 9, "x")], key=key)
    assert set(got) == {(0, 0, "als"), (4, 4, "knn")}
    assert got[(0, 0, "als")]["score"] == 42.0


def test_upsert_needs_unique_key(db: bulkops.Store) -> None:
    people(db)
    with pytest.raises(SchemaError, match="unique"):
        db.upsert("people", [person(1)], key="age")


# ---------------------------------------------------------------- update / delete


def test_update_counts_updated_unchanged_not_found(db: bulkops.Store) -> None:
    people(db)
    db.insert("people", [person(i) for i in range(1, 6)])
    rows = [{"id": 1, "age": 99}, {"id": 2, "age": person(2)["age"]}, {"id": 77, "age": 1}]
    report = db.update("people", rows, columns=["age"])
    assert_accounted(report, 3)
    assert (report.updated, report.unchanged, report.not_found) == (1, 1, 1)
    assert rows_of(db, "people")[0]["age"] == 99
    assert rows_of(db, "people")[0]["email"] == "p1@x.org"


def test_update_by_another_unique_key(db: bulkops.Store) -> None:
    needs(db, "unique_constraints", "no unique constraints besides the key")
    people(db)
    db.insert("people", [person(i) for i in range(1, 4)])
    report = db.update("people", [{"email": "p2@x.org", "age": 5}], key="email")
    assert report.updated == 1
    assert rows_of(db, "people")[1]["age"] == 5


def test_update_without_set_columns_is_an_error(db: bulkops.Store) -> None:
    people(db)
    with pytest.raises(SchemaError, match="besides the key"):
        db.update("people", [{"id": 1}])


def test_delete_scalars_tuples_and_mappings(db: bulkops.Store) -> None:
    needs(db, "exact_counts", "batch writes do not say inserted from updated")
    people(db)
    db.insert("people", [person(i) for i in range(1, 11)])
    report = db.delete("people", [1, 2, 2, 99])
    assert_accounted(report, 4)
    assert (report.deleted, report.duplicates, report.not_found) == (2, 1, 1)
    report = db.delete("people", [{"id": 3}, {"id": 4, "email": "ignored"}])
    assert report.deleted == 2
    report = db.delete("people", ["5"])  # coerced to the key column's type
    assert report.deleted == 1
    assert [r["id"] for r in rows_of(db, "people")] == [6, 7, 8, 9, 10]


# -------------------------------------------------------------------------- reads


def test_get_many_reads_in_chunks_and_keys_by_column_type(db: bulkops.Store) -> None:
    people(db)
    db.insert("people", [person(i) for i in range(1, 2001)])
    before = db.backend.statements
    got = db.get_many("people", ["7", 8, *range(1000, 3000)], columns=["email"], chunk_size=500)
    assert len(got) == 2 + 1001
    assert got[7] == {"email": "p7@x.org"}
    per_request = min(500, db.capabilities.max_read_keys or 500)
    assert db.backend.statements - before == -(-2002 // per_request)  # distinct keys only
    assert db.get_many("people", []) == {}


def test_get_many_returns_plain_dicts_with_requested_columns(db: bulkops.Store) -> None:
    people(db)
    db.insert("people", [person(1)])
    row = db.get_many("people", [1])[1]
    assert type(row) is dict
    assert row == person(1)


# ---------------------------------------------------------------- schema errors


def test_missing_table_and_column_are_schema_errors_before_writing(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    with pytest.raises(SchemaError, match="no such table 'peeple'"):
        db.insert("peeple", [person(1)])
    with pytest.raises(SchemaError, match="did you mean 'email'"):
        db.insert("people", [{"id": 1, "emial": "x"}])
    with pytest.raises(SchemaError, match="requires column"):
        db.insert("people", [{"id": 1, "age": 3}])
    assert rows_of(db, "people") == []


def test_a_row_with_an_unexpected_column_is_rejected_not_truncated(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    report = db.insert(
        "people", [person(1), {**person(2), "score": 1.0, "extra": 1}], on_error="isolate"
    )
    assert report.rejected == 1
    assert "unexpected column" in report.rejections[0].reason


def test_identifiers_are_quoted(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "table names are letters, digits, _ - . only")
    create(
        db,
        'odd "table"; drop',
        sa.Column("select", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("from space", sa.Text),
    )
    name = 'odd "table"; drop'
    report = db.upsert(name, [{"select": 1, "from space": "x'); --"}])
    assert report.written == 1
    assert db.get_many(name, [1]) == {1: {"select": 1, "from space": "x'); --"}}


# ---------------------------------------------------------------------- values


def test_value_types_round_trip(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    db.create_table(
        "vals",
        {
            "id": "integer",
            "i": "integer",
            "f": "float",
            "d": "decimal(20, 4)",
            "s": "text",
            "b": "bytes",
            "flag": "boolean",
            "day": "date",
            "at": "datetime",
            "doc": "json",
        },
        key="id",
    )
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    row = {
        "id": 1,
        "i": -(2**63),
        "f": 0.1,
        "d": Decimal("1234567890.1230"),
        "s": "héllo\n'\"",
        "b": b"\x00\xff",
        "flag": True,
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2024, 1, 1, 12, 30, 5, 123456, tzinfo=tz),
        "doc": {"a": [1, 2, {"b": None}]},
    }
    empty = {"id": 2, **{k: None for k in row if k != "id"}}
    db.insert("vals", [row, empty])
    got = db.get_many("vals", [1, 2])
    assert got[1] == row
    if db.capabilities.keeps_utc_offset:
        assert got[1]["at"].utcoffset() == dt.timedelta(hours=5, minutes=30)
    else:  # the same instant, in the session's time zone
        assert got[1]["at"].utcoffset() is not None
    assert got[1]["d"].as_tuple() == row["d"].as_tuple()  # exact digits, not just equal
    assert got[2] == empty


def test_text_values_are_coerced_to_column_types(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    db.create_table(
        "typed",
        {"id": "integer", "d": "decimal", "flag": "boolean", "day": "date", "at": "datetime"},
        key="id",
    )
    report = db.insert(
        "typed",
        [
            ("1", "3.10", "true", "2024-03-01", "2024-03-01T10:00:00Z"),
            ("2", "", "no", "", ""),
            ("3", "x", "true", "2024-03-01", "2024-03-01"),
            ("4", "1", "maybe", "2024-03-01", "2024-03-01"),
            ("5", "1", "true", "03/01/2024", "2024-03-01"),
        ],
        columns=["id", "d", "flag", "day", "at"],
        on_error="isolate",
    )
    assert_accounted(report, 5)
    assert report.inserted == 2
    assert {r.row: r.column for r in report.rejections} == {3: "d", 4: "flag", 5: "day"}
    got = db.get_many("typed", [1, 2])
    assert got[1] == {
        "id": 1,
        "d": Decimal("3.10"),
        "flag": True,
        "day": dt.date(2024, 3, 1),
        "at": dt.datetime(2024, 3, 1, 10, tzinfo=UTC),
    }
    assert got[2] == {"id": 2, "d": None, "flag": False, "day": None, "at": None}


def test_conversion_error_in_raise_mode_names_the_column(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    with pytest.raises(ConversionError) as caught:
        db.insert("people", [person(1), person(2, age="2x")])
    assert (caught.value.row, caught.value.key, caught.value.column) == (2, 2, "age")
    assert isinstance(caught.value, DataError)
    assert rows_of(db, "people") == []  # the chunk with the bad row did not commit


def test_integer_out_of_range_is_a_row_error(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "no declared column types, NOT NULL or column names")
    people(db)
    report = db.insert("people", [person(1, age=2**63), person(2)], on_error="isolate")
    assert report.rejected == 1 and report.rejections[0].column == "age"
    assert "64-bit" in report.rejections[0].reason or "too large" in report.rejections[0].reason


def test_parallel_writes_call_after_call(db: bulkops.Store) -> None:
    """Workers' connections go back to the pool between calls; the next call's workers
    (and their staging tables) must not trip over what the last ones left there."""
    needs(db, "parallel_writes", "writes one chunk at a time")
    db.create_table("par", {"id": "integer", "v": "text"}, key="id")
    for round_ in range(3):
        report = db.upsert(
            "par", [{"id": i, "v": f"r{round_}"} for i in range(200)], workers=3, chunk_size=10
        )
        assert_accounted(report, 200)
        assert report.chunks == 20
    assert {r["v"] for r in db.get_many("par", range(200)).values()} == {"r2"}
