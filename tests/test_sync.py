"""Differential sync, diff and apply on every backend (the ``db`` fixture), against the
real databases: the target ends equal to the source, the SyncReport accounts for every
source row, an unchanged source is skipped by its digest, ``where`` and ``dry_run``
never touch what they must not, and changesets travel between stores."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bulkops
from bulkops.jsoncodec import to_json
from bulkops.sync import Changeset, canonical, row_hash
from conftest import create

_names = itertools.count(1)
COLUMNS = {"id": "integer", "name": "text", "price": "decimal", "qty": "integer"}


def make_table(db: bulkops.Store, rows: list[dict[str, Any]]) -> str:
    name = f"items_{next(_names)}"
    db.create_table(name, COLUMNS, key="id")
    if rows:
        db.insert(name, rows)
    return name


def contents(db: bulkops.Store, table: str, ids: Any) -> dict[int, dict[str, Any]]:
    """The rows of ``ids`` that exist, values normalised for comparison across backends
    (DynamoDB gives numbers back as int/float/Decimal, SQL as the column's type)."""
    found = db.get_many(table, list(ids))
    return {
        int(k): {
            "id": int(row["id"]),
            "name": row.get("name"),
            "price": None if row.get("price") is None else Decimal(str(row["price"])),
            "qty": None if row.get("qty") is None else int(row["qty"]),
        }
        for k, row in found.items()
    }


def normal(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        r["id"]: {
            "id": r["id"], "name": r["name"],
            "price": None if r["price"] is None else Decimal(str(r["price"])), "qty": r["qty"],
        }
        for r in rows
    }  # fmt: skip


def base_rows(n: int = 20) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"item {i}", "price": Decimal(f"{i}.25"), "qty": i * 2}
        for i in range(1, n + 1)
    ]


def edited(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows 1 and 2 changed, 3 deleted, 21 and 22 added, the rest as they were."""
    out = [dict(r) for r in rows if r["id"] != 3]
    out[0]["name"] = "renamed"
    out[1]["qty"] = 999
    out += [
        {"id": 21, "name": "new 21", "price": Decimal("5.00"), "qty": 1},
        {"id": 22, "name": "new 22", "price": None, "qty": 2},
    ]
    return out


def test_sync_sends_only_the_difference(db: bulkops.Store) -> None:
    rows = base_rows()
    table = make_table(db, rows)
    source = edited(rows)
    report = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert (report.added, report.changed, report.deleted, report.unchanged) == (2, 2, 1, 17)
    assert report.rows_in == len(source) == report.accounted
    assert sorted(report.added_keys) == [21, 22]
    assert sorted(report.changed_keys) == [1, 2]
    assert report.deleted_keys == [3]
    assert not report.up_to_date and report.ok
    assert report.bytes > 0 and report.statements > 0
    assert contents(db, table, range(1, 30)) == normal(source)
    # Again, from the per-row digests that sync kept (SQL): its bytes are counted a
    # column at a time, and are those of the difference's JSON Lines all the same.
    again = [dict(r, name=f"é {r['name']}") if r["id"] % 4 == 0 else r for r in source[1:]]
    added = {"id": 40, "name": "new\t40", "price": Decimal("-0.50"), "qty": None}
    report = db.sync(table, [*again, added], key="id", delete_missing=True)
    records = [{"op": "change", "row": r} for r in again if r["id"] % 4 == 0]
    records += [{"op": "add", "row": added}, {"op": "delete", "key": [1]}]
    lines = "".join(json.dumps(to_json(r), ensure_ascii=False) + "\n" for r in records)
    assert (report.added, report.changed, report.deleted) == (1, 5, 1)
    if not db.capabilities.items:  # (DynamoDB gives the deleted key back as a Decimal)
        assert report.bytes == len(lines.encode())


def test_nan_for_a_missing_value_is_the_null_it_is_stored_as(db: bulkops.Store) -> None:
    """Rows from ``DataFrame.to_dict("records")`` (palmerpenguins: 11 of 344 rows have
    NaN for a missing sex or measurement) give float NaN where a value is missing, in
    text and integer columns too; it is stored as NULL. A sync of those rows over the
    same table, then of rows with None, sends nothing: each NaN was compared as a value
    (every sync rewrote those rows, listing them as changed)."""
    nan = float("nan")
    rows = base_rows(12)
    for r in rows[::3]:
        r.update(name=None, price=None, qty=None)
    table = make_table(db, rows)
    # PostgreSQL keeps a NaN in a number column as a value (numeric and float hold it).
    numbers = () if db.capabilities.float_nan else ("price",)
    with_nan = [
        {k: nan if v is None and (k in numbers or k != "price") else v for k, v in r.items()}
        for r in rows
    ]
    for source in (with_nan, rows, with_nan):
        report = db.sync(table, source, key="id", list_keys=True)
        assert (report.changed_keys, report.added_keys) == ([], []), report
        assert report.unchanged + (report.rows_in if report.up_to_date else 0) >= 12, report
    assert contents(db, table, range(1, 13)) == normal(rows)


def test_second_sync_is_skipped_by_digest_until_bulkops_writes_the_table(
    db: bulkops.Store,
) -> None:
    rows = base_rows()
    table = make_table(db, rows)
    source = edited(rows)
    db.sync(table, source, key="id", delete_missing=True)
    again = db.sync(table, source, key="id", delete_missing=True)
    assert again.up_to_date
    assert (again.added, again.changed, again.deleted) == (0, 0, 0)
    assert again.unchanged == again.rows_in == len(source)
    # A write through bulkops invalidates the digest: the next sync compares again
    # and puts the row back.
    db.upsert(table, [{"id": 5, "name": "edited elsewhere", "price": 1, "qty": 1}])
    third = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert not third.up_to_date
    assert third.changed_keys == [5]
    assert contents(db, table, range(1, 30)) == normal(source)


def test_a_matching_source_digest_skips_without_reading_the_rows(db: bulkops.Store) -> None:
    rows = base_rows()
    table = make_table(db, [])
    first = db.sync(table, rows, key="id", source_id="sha256:abc")
    assert first.added == len(rows)

    def never() -> Iterator[dict[str, Any]]:
        raise AssertionError("the rows were read")
        yield {}

    second = db.sync(table, never(), key="id", source_id="sha256:abc")
    assert second.up_to_date and second.rows_in == 0
    # Another digest (the file changed): compared in full.
    third = db.sync(table, edited(rows), key="id", source_id="sha256:def")
    assert not third.up_to_date and third.changed == 2


def test_dry_run_writes_nothing(db: bulkops.Store) -> None:
    rows = base_rows()
    table = make_table(db, rows)
    before = contents(db, table, range(1, 30))
    report = db.sync(
        table, edited(rows), key="id", delete_missing=True, dry_run=True, list_keys=True
    )
    assert report.dry_run
    assert (report.added, report.changed, report.deleted) == (2, 2, 1)
    assert sorted(report.changed_keys) == [1, 2]
    assert contents(db, table, range(1, 30)) == before
    # and it recorded no digest: the real sync still has work to do
    real = db.sync(table, edited(rows), key="id", delete_missing=True)
    assert not real.up_to_date and real.changes == 5


def test_where_never_touches_rows_outside_the_scope(db: bulkops.Store) -> None:
    rows = [dict(r, name="eu" if r["id"] % 2 else "us") for r in base_rows()]
    table = make_table(db, rows)
    outside = {r["id"]: r for r in rows if r["name"] == "us"}
    # The source stands for the "eu" rows only: one of them gone, one changed, one new,
    # and one row claims a key that belongs to a "us" row.
    source = [dict(r) for r in rows if r["name"] == "eu" and r["id"] != 1]
    source[0]["qty"] = 500
    source.append({"id": 41, "name": "eu", "price": Decimal("1.00"), "qty": 1})
    source.append({"id": 2, "name": "eu", "price": Decimal("1.00"), "qty": 1})
    report = db.sync(table, source, key="id", delete_missing=True, where={"name": "eu"}, rejects=[])
    assert (report.added, report.changed, report.deleted) == (1, 1, 1)
    assert report.rejected == 1 and report.rejections[0].key == 2
    assert "outside" in report.rejections[0].reason
    assert report.accounted == report.rows_in
    after = contents(db, table, range(1, 50))
    assert {k: v for k, v in after.items() if k in outside} == normal(list(outside.values()))
    assert 1 not in after and after[41]["qty"] == 1
    # A source row outside the scope is refused, not written.
    bad = db.sync(table, [{"id": 60, "name": "us", "price": 1, "qty": 1}], key="id",
                  where={"name": "eu"}, rejects=[])  # fmt: skip
    assert bad.rejected == 1 and 60 not in contents(db, table, [60])


def test_rejected_rows_are_not_deleted_as_missing(db: bulkops.Store) -> None:
    needs_declared(db)
    rows = base_rows(5)
    table = make_table(db, rows)
    source = [dict(r) for r in rows]
    source[2]["qty"] = "not a number"
    report = db.sync(table, source, key="id", delete_missing=True, rejects=[])
    assert report.rejected == 1 and report.rejections[0].row == 3
    assert report.rejections[0].column == "qty"
    assert report.deleted == 0
    assert contents(db, table, range(1, 6)) == normal(rows)


def test_bad_row_raises_by_default_naming_it(db: bulkops.Store) -> None:
    needs_declared(db)
    table = make_table(db, base_rows(3))
    source = [dict(r) for r in base_rows(3)]
    source[1]["price"] = "twelve"
    with pytest.raises(bulkops.errors.ConversionError, match=r"row 2 \(key 2\)") as caught:
        db.sync(table, source, key="id")
    assert caught.value.column == "price"


def test_duplicate_keys_last_wins_across_chunks(db: bulkops.Store) -> None:
    table = make_table(db, [])
    source = [{"id": i % 3, "name": f"v{i}", "price": None, "qty": i} for i in range(7)]
    report = db.sync(table, source, key="id", chunk_size=2)
    assert report.added == 3 and report.duplicates == 4
    assert report.accounted == report.rows_in == 7
    got = contents(db, table, range(3))
    assert {k: v["qty"] for k, v in got.items()} == {0: 6, 1: 4, 2: 5}


def test_representation_only_changes_are_unchanged(db: bulkops.Store) -> None:
    name = f"typed_{next(_names)}"
    # DynamoDB stores no datetimes (bulkops refuses them rather than guess a format).
    datetimes = db.capabilities.declared_columns
    db.create_table(
        name, {"id": "integer", "amount": "decimal", "n": "integer", "at": "datetime"}, key="id"
    )
    at = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    plus_two = dt.timezone(dt.timedelta(hours=2))

    def rows(*given: dict[str, Any]) -> list[dict[str, Any]]:
        return [r if datetimes else {k: v for k, v in r.items() if k != "at"} for r in given]

    db.insert(name, rows({"id": 1, "amount": Decimal("1.00"), "n": 1, "at": at},
                         {"id": 2, "amount": Decimal("2.5"), "n": 2, "at": at}))  # fmt: skip
    same = rows(
        {"id": 1, "amount": 1, "n": 1.0, "at": at.astimezone(plus_two)},
        {"id": 2, "amount": 2.5, "n": Decimal("2"), "at": at},
    )
    report = db.sync(name, same, key="id")
    assert (report.added, report.changed, report.unchanged) == (0, 0, 2)
    moved = db.sync(name, rows({"id": 1, "amount": Decimal("1.01"), "n": 1, "at": at}), key="id")
    assert moved.changed == 1
    if datetimes:
        later = db.sync(name, rows({"id": 2, "amount": 2.5, "n": 2,
                                    "at": at + dt.timedelta(seconds=1)}), key="id")  # fmt: skip
        assert later.changed == 1


def test_changeset_applied_to_another_store_gives_the_same_table(
    db: bulkops.Store, tmp_path: Path
) -> None:
    rows = base_rows()
    table = make_table(db, rows)
    other = bulkops.connect(f"sqlite:///{tmp_path}/replica.db")
    other.create_table(table, COLUMNS, key="id")
    other.insert(table, rows)
    source = edited(rows)
    changes = db.diff(table, source, key="id", delete_missing=True)
    assert (changes.added, changes.changed, changes.deleted) == (2, 2, 1)
    assert changes.full_bytes and changes.bytes < changes.full_bytes
    path = tmp_path / "changes.jsonl.gz"
    changes.write(path)
    # diff wrote nothing here
    assert contents(db, table, range(1, 30)) == normal(rows)
    report = other.apply(path)
    assert (report.added, report.changed, report.deleted) == (2, 2, 1)
    assert contents(other, table, range(1, 30)) == normal(source)
    # and the same changeset brings the first store level too
    db.apply(Changeset.read(path))
    assert contents(db, table, range(1, 30)) == normal(source)
    price = db.get_many(table, [21])[21]["price"]  # a number, not the text of one
    assert isinstance(price, Decimal | int | float) and Decimal(str(price)) == Decimal("5")
    other.close()


def test_truncated_or_corrupt_changeset_is_refused_and_nothing_applied(
    db: bulkops.Store, tmp_path: Path
) -> None:
    rows = base_rows()
    table = make_table(db, rows)
    changes = db.diff(table, edited(rows), key="id", delete_missing=True)
    good = tmp_path / "good.jsonl.gz"
    changes.write(good)
    lines = gzip.decompress(good.read_bytes()).decode().splitlines(keepends=True)
    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(gzip.compress("".join(lines[:-2]).encode()))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(good.read_bytes()[:-20])
    tampered = tmp_path / "tampered.jsonl.gz"
    tampered.write_bytes(gzip.compress("".join(lines).replace("renamed", "RENAMED").encode()))
    garbage = tmp_path / "garbage.jsonl.gz"
    garbage.write_bytes(os.urandom(300))
    for path, message in [
        (truncated, "truncated"), (cut, "readable|truncated"), (tampered, "corrupt"),
        (garbage, "readable"),
    ]:  # fmt: skip
        with pytest.raises(bulkops.errors.ChangesetError, match=message):
            db.apply(path)
    assert contents(db, table, range(1, 30)) == normal(rows)


def test_empty_source_with_delete_missing_empties_the_scope(db: bulkops.Store) -> None:
    table = make_table(db, base_rows(4))
    report = db.sync(table, [], key="id", delete_missing=True)
    assert report.deleted == 4 and report.rows_in == 0
    assert contents(db, table, range(1, 5)) == {}


def test_row_hash_is_type_normalised() -> None:
    utc = dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)
    assert row_hash([1, "a"]) == row_hash([1.0, "a"]) == row_hash([Decimal("1.00"), "a"])
    assert row_hash([Decimal("0.10")]) == row_hash([0.1])
    assert row_hash([utc]) == row_hash([utc.astimezone(dt.timezone(dt.timedelta(hours=-5)))])
    assert row_hash([utc.replace(tzinfo=None)]) == row_hash([utc])
    assert row_hash([1]) != row_hash(["1"])
    assert row_hash(["1"]) != row_hash([True])
    assert row_hash([1]) != row_hash([True])  # a bool is not the number 1
    assert row_hash([0]) != row_hash([False])
    assert row_hash([{"a": 1, "b": [1, 2]}]) == row_hash([{"b": [1.0, 2], "a": Decimal(1)}])
    assert canonical(None) is None and row_hash([None]) != row_hash([0])


def needs_declared(db: bulkops.Store) -> None:
    if not db.capabilities.declared_columns:
        pytest.skip(f"{db.capabilities.name}: values are not coerced to declared columns")


# ------------------------------------------------------------- property test

edits = st.lists(
    st.tuples(
        st.sampled_from(["keep", "change", "retype", "delete"]),
        st.integers(min_value=-1000, max_value=1000),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    target=st.lists(st.integers(min_value=0, max_value=999), max_size=12, unique=True),
    script=edits,
    new=st.lists(st.integers(min_value=1000, max_value=1999), max_size=6, unique=True),
)
def test_sync_property(
    sql_db: bulkops.Store, target: list[int], script: list[tuple[str, int]], new: list[int]
) -> None:
    """A random target and a random edit script: after sync(delete_missing=True) the
    target equals the source, the counts are the script's, and a second sync is
    skipped by its digest."""
    db = sql_db
    rows = [{"id": i, "name": f"n{i}", "price": Decimal(i) / 4, "qty": i} for i in target]
    table = make_table(db, rows)
    source: list[dict[str, Any]] = []
    expect = {"added": len(new), "changed": 0, "deleted": 0, "unchanged": 0}
    for row, (op, value) in zip(rows, script + [("keep", 0)] * len(rows), strict=False):
        if op == "delete":
            expect["deleted"] += 1
            continue
        edited_row = dict(row)
        if op == "change":
            edited_row["qty"] = row["qty"] + value + 1 if value >= 0 else row["qty"] - 1
            edited_row["name"] = f"{row['name']}!"
            expect["changed"] += 1
        elif op == "retype":  # the same value in another type: no change
            edited_row["price"] = float(row["price"])
            edited_row["qty"] = Decimal(row["qty"])
            expect["unchanged"] += 1
        else:
            expect["unchanged"] += 1
        source.append(edited_row)
    source += [{"id": i, "name": f"new{i}", "price": Decimal("0.5"), "qty": 1} for i in new]
    report = db.sync(table, source, key="id", delete_missing=True)
    got = {k: getattr(report, k) for k in expect}
    assert got == expect
    assert report.accounted == report.rows_in == len(source)
    ids = set(target) | set(new)
    assert contents(db, table, ids) == normal(source)
    again = db.sync(table, source, key="id", delete_missing=True)
    assert again.up_to_date and again.changes == 0


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], scope="module"
)
def sql_db(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[bulkops.Store]:
    """One store per SQL backend for the property test (each example makes a table)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sync')}/property.db"
    else:
        url = request.getfixturevalue("pg_cluster").create_database("sync_property")
    store = bulkops.connect(url)
    try:
        yield store
    finally:
        store.close()


def test_a_write_during_the_sync_keeps_the_digest_from_being_recorded(
    db: bulkops.Store, db_url: str
) -> None:
    """Another writer changes a row while the sync writes its difference: the sync
    must not record its digest as current, or the next sync would be skipped and the
    other writer's change would stay."""
    rows = base_rows()
    table = make_table(db, rows)
    source = edited(rows)
    other = bulkops.connect(db_url)
    meddled: list[int] = []

    def meddle(report: bulkops.Report) -> None:
        if not meddled:
            other.upsert(table, [{"id": 15, "name": "meddled", "price": 1, "qty": 1}])
            meddled.append(15)

    first = db.sync(table, source, key="id", delete_missing=True, progress=meddle)
    assert meddled and first.changes == 5
    assert contents(db, table, [15])[15]["name"] == "meddled"
    second = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert not second.up_to_date and second.changed_keys == [15]
    assert contents(db, table, range(1, 30)) == normal(source)
    assert db.sync(table, source, key="id", delete_missing=True).up_to_date
    other.close()


def test_another_scope_or_delete_missing_is_not_skipped(db: bulkops.Store) -> None:
    rows = base_rows(6)
    table = make_table(db, rows)
    extra = [{"id": 50, "name": "extra", "price": None, "qty": 0}]
    db.insert(table, extra)
    assert db.sync(table, rows, key="id").unchanged == 6
    assert db.sync(table, rows, key="id").up_to_date
    # Same rows, but now what the source lacks goes: a different job, not skipped.
    gone = db.sync(table, rows, key="id", delete_missing=True)
    assert not gone.up_to_date and gone.deleted == 1
    assert contents(db, table, [50]) == {}


def test_rejected_row_then_valid_row_with_the_same_key(db: bulkops.Store) -> None:
    needs_declared(db)
    table = make_table(db, base_rows(3))
    source = [
        {"id": 2, "name": "bad", "price": "not money", "qty": 1},
        {"id": 2, "name": "good", "price": Decimal("9.99"), "qty": 1},
        {"id": 1, "name": "item 1", "price": Decimal("1.25"), "qty": 2},
        {"id": 3, "name": "item 3", "price": Decimal("3.25"), "qty": 6},
    ]
    report = db.sync(table, source, key="id", delete_missing=True, rejects=[], chunk_size=1)
    assert report.rejected == 1 and report.changed == 1 and report.unchanged == 2
    assert report.accounted == report.rows_in == 4
    assert contents(db, table, [2])[2]["name"] == "good"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_concurrent_syncs_of_separate_scopes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes' worth of syncs (threads, each with its own Store) keep two scopes of
    one table in line at the same time: each ends exactly as its source, neither touches
    the other's rows, and every row is accounted for."""
    import threading

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/concurrent.db"
    else:
        url = request.getfixturevalue("pg_url")
    setup = bulkops.connect(url)
    rows = [dict(r, name="eu" if r["id"] % 2 else "us") for r in base_rows(400)]
    table = make_table(setup, rows)
    sources = {
        region: [
            dict(r, qty=r["qty"] + 1) if r["id"] % 10 < 3 else r
            for r in rows if r["name"] == region and r["id"] % 7
        ] + [{"id": 1000 + i * 2 + (region == "eu"), "name": region, "price": None, "qty": i}
             for i in range(25)]
        for region in ("eu", "us")
    }  # fmt: skip
    reports: dict[str, Any] = {}
    errors: list[BaseException] = []

    def work(region: str) -> None:
        try:
            with bulkops.connect(url) as db:
                for _ in range(3):
                    reports[region] = db.sync(table, sources[region], key="id",
                                              delete_missing=True, where={"name": region},
                                              chunk_size=50)  # fmt: skip
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(r,)) for r in ("eu", "us")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    everything = sources["eu"] + sources["us"]
    assert contents(setup, table, range(0, 2000)) == normal(everything)
    for region, report in reports.items():
        assert report.accounted == report.rows_in == len(sources[region])
    setup.close()


def test_bytes_of_the_difference_are_its_json_lines() -> None:
    from bulkops.jsoncodec import to_json as _to_json
    from bulkops.sync.changeset import difference_size, lines_size, rows_lines_size

    records = [
        {"op": "add", "row": {"id": 1, "name": "é ü 漢", "price": Decimal("1.50"),
                              "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "b": b"\x00\x01",
                              "tags": {"x"}, "n": None, "f": 2.0}},
        {"op": "delete", "key": [7]},
        {"op": "change", "row": {"id": (1, 2), "nested": {"k": [1, Decimal("2")]}}},
    ]  # fmt: skip
    lines = "".join(json.dumps(_to_json(r), ensure_ascii=False) + "\n" for r in records)
    assert lines_size(records) == len(lines.encode())
    assert lines_size([]) == 0
    columns = ("id", "näme", "price")
    rows = [(1, "ä", Decimal("1.5")), (2, None, dt.date(2024, 1, 2)), (3, "x\ny", b"\x01")]
    as_records = [{"op": "add", "row": dict(zip(columns, r, strict=True))} for r in rows]
    assert rows_lines_size(columns, rows) == lines_size(as_records)
    assert rows_lines_size(columns, []) == 0
    # Counted a column at a time (the sync's bytes of changes), the same as written.
    found = [(r["op"], r.get("row", r.get("key"))) for r in records]
    zones = [None, dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30, seconds=-7))]
    found += [
        ("change", {"id": i, "name": f"ü{i}\n", "price": Decimal(i) / 8, "qty": i * 2,
                    "at": dt.datetime(2024, 1, 2, 3, 4, 5, i % 3, tzinfo=zones[2]),
                    "naive": dt.datetime(1, 2, 3, 4, 5, 6, 1000 * (i % 2)),
                    "mixed": dt.datetime(2024, 1, 2, 3, 4, 5, i % 2, tzinfo=zones[i % 3]),
                    "day": dt.date(2024, 1, 1 + i), "ok": i % 2 == 0, "x": [i, None]})
        for i in range(6)
    ]  # fmt: skip
    found += [("delete", [i, "k"]) for i in range(3)] + [("add", {1: "x"}), ("add", {})]
    lines = "".join(
        json.dumps(_to_json({"op": op, "key" if op == "delete" else "row": p}),
                   ensure_ascii=False) + "\n" for op, p in found
    )  # fmt: skip
    assert difference_size(found) == len(lines.encode())
    assert difference_size([]) == 0


def test_apply_rejects_bad_rows_into_one_file(db: bulkops.Store, tmp_path: Path) -> None:
    """A changeset applied to a stricter table: the row it refuses is rejected (one
    rejects file for the whole call), the rest is applied."""
    needs_declared(db)
    rows = base_rows(4)
    table = make_table(db, rows)
    source = [dict(r) for r in rows]
    source[0]["name"] = "changed"
    source.append({"id": 9, "name": None, "price": None, "qty": 3})
    path = tmp_path / "c.jsonl.gz"
    db.diff(table, source, key="id").write(path)
    strict = f"strict_{next(_names)}"
    create(db, strict, sa.Column("id", sa.Integer, primary_key=True),
           sa.Column("name", sa.Text, nullable=False), sa.Column("price", sa.Numeric(12, 2)),
           sa.Column("qty", sa.Integer))  # fmt: skip
    db.insert(strict, rows)
    rejects = tmp_path / "rejects.jsonl"
    report = db.apply(path, table=strict, rejects=rejects)
    assert (report.added, report.changed, report.rejected) == (0, 1, 1)
    assert report.accounted == report.rows_in == 2
    (line,) = rejects.read_text().splitlines()
    assert json.loads(line)["key"] == 9
    assert contents(db, strict, [1, 9]) == {1: normal(source)[1]}


def test_composite_keys(db: bulkops.Store) -> None:
    name = f"scores_{next(_names)}"
    db.create_table(name, {"user_id": "integer", "algo": "text", "score": "decimal"},
                    key=("user_id", "algo"))  # fmt: skip
    rows = [
        {"user_id": u, "algo": a, "score": Decimal(u) + Decimal("0.5")}
        for u in range(1, 6) for a in ("als", "knn")
    ]  # fmt: skip
    db.insert(name, rows)
    source = [dict(r) for r in rows if (r["user_id"], r["algo"]) != (2, "knn")]
    source[0]["score"] = Decimal("9.75")
    source.append({"user_id": 7, "algo": "als", "score": Decimal("1")})
    report = db.sync(name, source, key=("user_id", "algo"), delete_missing=True, list_keys=True)
    assert (report.added, report.changed, report.deleted) == (1, 1, 1)
    assert report.added_keys == [(7, "als")] and report.deleted_keys == [(2, "knn")]
    assert report.changed_keys == [(1, "als")]
    every = [(u, a) for u in range(1, 8) for a in ("als", "knn")]
    got = db.get_many(name, every, key=("user_id", "algo"))
    assert {k: Decimal(str(v["score"])) for k, v in got.items()} == {
        (r["user_id"], r["algo"]): r["score"] for r in source
    }
    assert db.sync(name, source, key=("user_id", "algo"), delete_missing=True).up_to_date


def test_parallel_writes_of_the_difference(db: bulkops.Store) -> None:
    from conftest import needs

    needs(db, "parallel_writes", "writes one chunk at a time")
    rows = base_rows(120)
    table = make_table(db, rows)
    source = [dict(r, qty=r["qty"] + 1) if r["id"] % 3 == 0 else r for r in rows]
    source += [{"id": 500 + i, "name": "new", "price": None, "qty": i} for i in range(40)]
    report = db.sync(table, source, key="id", delete_missing=True, workers=3, chunk_size=10)
    assert (report.added, report.changed, report.unchanged) == (40, 40, 80)
    assert report.accounted == report.rows_in == 160
    assert contents(db, table, [*range(1, 121), *range(500, 540)]) == normal(source)


def test_a_sync_that_fails_midway_is_finished_by_the_next(db: bulkops.Store) -> None:
    """An error after part of the difference was written (here: raised from progress=
    after the first chunk) leaves no digest behind: the next sync compares in full and
    finishes the job."""
    rows = base_rows(60)
    table = make_table(db, rows)
    db.sync(table, rows, key="id")  # a digest on record for this scope
    source = [dict(r, qty=r["qty"] + 100) for r in rows]

    def crash(report: bulkops.Report) -> None:
        raise RuntimeError("the process dies here")

    with pytest.raises(RuntimeError, match="dies"):
        db.sync(table, source, key="id", chunk_size=10, progress=crash)
    half = contents(db, table, range(1, 61))
    assert 0 < sum(half[i]["qty"] == rows[i - 1]["qty"] + 100 for i in half) < 60
    again = db.sync(table, source, key="id", chunk_size=10)
    assert not again.up_to_date and again.changed + again.unchanged == 60
    assert contents(db, table, range(1, 61)) == normal(source)


def test_sequences_in_the_order_of_columns(db: bulkops.Store) -> None:
    """Rows given as sequences keep the order columns= names (the key need not come
    first), and an empty source with columns= naming the key works too."""
    rows = base_rows(3)
    table = make_table(db, rows)
    order = ["name", "qty", "id", "price"]
    source = [(r["name"], r["qty"] + (r["id"] == 2), r["id"], r["price"]) for r in rows]
    report = db.sync(table, source, columns=order, key="id", list_keys=True)
    assert report.changed_keys == [2] and report.unchanged == 2
    assert contents(db, table, [2])[2]["qty"] == 5
    gone = db.sync(table, [], columns=["id", "name"], key="id", delete_missing=True)
    assert gone.deleted == 3 and contents(db, table, [1, 2, 3]) == {}
