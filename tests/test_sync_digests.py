"""Sync's per-row digests: the binary canonical encoding (the same digest for the same
row from dicts, tuples and Arrow; 1, 1.0 and Decimal("1.00") agree), and digest syncs
on SQLite and PostgreSQL: only keys and hashes are read, only the difference is sent,
writes made without bulkops that keep the row count are not seen until
``full=True``, and stale or missing digests are made again from the table."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

import bulkops
from bulkops.backends._sql import SQLSyncState
from bulkops.errors import ConversionError
from bulkops.sync import engine
from bulkops.sync.digests import Delta, RowDigests
from bulkops.sync.hashing import (
    decode_key,
    encode_array,
    encode_value,
    hash_record_batch,
    hash_value_rows,
)
from bulkops.testing import count_queries
from test_sync import base_rows, contents, edited, normal

_names = itertools.count(1)
COLUMNS = {"id": "integer", "name": "text", "price": "decimal", "qty": "integer"}
UTC = dt.UTC

# ------------------------------------------------------------------ encoding


def test_numbers_agree_whatever_their_type() -> None:
    assert encode_value(1) == encode_value(1.0) == encode_value(Decimal("1.00"))
    assert encode_value(0.1) == encode_value(Decimal("0.10"))
    assert encode_value(2**70) == encode_value(Decimal(2**70)) == encode_value(float(2**70))
    assert encode_value(Decimal("0.10000000000000000001")) != encode_value(0.1)
    assert encode_value(1) != encode_value(True) and encode_value(0) != encode_value(False)
    assert encode_value(1) != encode_value("1") and encode_value(None) != encode_value(0)
    moment = dt.datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert encode_value(moment) == encode_value(moment.replace(tzinfo=None))
    assert encode_value(moment) == encode_value(
        moment.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    )
    assert encode_value({"a": 1}) == encode_value({"a": Decimal(1)})


def test_rows_hash_the_same_from_tuples_and_arrow() -> None:
    rows = [
        (1, "a", Decimal("1.50"), 2.5, dt.datetime(2024, 1, 1, tzinfo=UTC), dt.date(2024, 1, 1)),
        (2, None, None, None, None, None),
        (3, "é", Decimal("-7"), -0.0, dt.datetime(1969, 12, 31, 23, 59), dt.date(1900, 3, 1)),
    ]
    names = ["id", "name", "price", "ratio", "at", "day"]
    from_rows = hash_value_rows(rows, 1)
    batch = pa.RecordBatch.from_pylist([dict(zip(names, r, strict=True)) for r in rows])
    from_arrow = hash_record_batch(batch, names, 1)
    assert list(from_rows.digests) == list(from_arrow.digests)
    assert from_rows.keys.to_pylist() == from_arrow.keys.to_pylist()
    # the same data in other types: an integral float, an int for a Decimal
    retyped = [(1.0, "a", 1.5, Decimal("2.5"), rows[0][4], rows[0][5]), *rows[1:]]
    assert list(hash_value_rows(retyped, 1).digests) == list(from_rows.digests)
    assert decode_key(from_rows.keys[2].as_py(), 1) == (3,)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, max_value=10**20),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.datetimes(timezones=st.sampled_from([None, UTC, dt.timezone(dt.timedelta(hours=3))])),
    st.dates(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=20), st.sampled_from(["same", "mixed"]))
def test_column_encoding_is_the_value_encoding(column: list[Any], kind: str) -> None:
    """A column encoded at once (Arrow, vectorized) gives each value's own bytes."""
    if kind == "same":
        first = next((v for v in column if v is not None), None)
        column = [v if v is None or type(v) is type(first) else None for v in column]
    expected = [encode_value(v) for v in column]
    assert hash_value_rows([(v,) for v in column], 1).keys.to_pylist() == expected
    if kind == "mixed":
        return  # pyarrow itself coerces some mixed lists (0 among datetimes)
    try:
        array = pa.array(column)
    except (pa.ArrowException, OverflowError):
        return  # not one Arrow type
    if pa.types.is_timestamp(array.type) or pa.types.is_decimal(array.type):
        assert encode_array(array).to_pylist() == expected


def test_float_columns_with_nan_are_encoded_a_column_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pandas data is full of NaN: a float column holding some is still encoded with
    Arrow kernels (not a Python call per value), to the same bytes."""
    from bulkops.sync import hashing

    column: list[Any] = [float(i) / 4 for i in range(1000)]
    column[3::7] = [float("nan")] * len(column[3::7])
    column[5], column[6], column[8] = float("inf"), float("-inf"), None
    expected = [encode_value(v) for v in column]
    calls = []
    original = hashing.encode_value
    monkeypatch.setattr(hashing, "encode_value", lambda v: calls.append(v) or original(v))
    assert hashing.encode_values(column).to_pylist() == expected
    assert len(calls) <= 3


def _arrays() -> Iterator[pa.Array]:
    rng = np.random.default_rng(7)
    texts: list[Any] = ["".join("aé€𝄞"[int(c)] for c in rng.integers(0, 4, n)) for n in
                        rng.integers(0, 30, 3000)]  # fmt: skip
    texts[::13] = [None] * len(texts[::13])
    yield pa.array(texts, pa.string())
    yield pa.array(texts, pa.large_string()).slice(5, 2000)
    yield pa.array([None if t is None else t.encode() for t in texts], pa.binary())
    ints: list[Any] = [int(i) for i in rng.integers(-(2**62), 2**62, 3000)]
    ints[::7] = [None] * len(ints[::7])
    yield pa.array(ints, pa.int64()).slice(3)
    yield pa.array([None if i is None else i / 8 for i in ints], pa.float64())
    yield pa.array([None if i is None else Decimal(i % 10**9) / 100 for i in ints],
                   pa.decimal128(20, 2))  # fmt: skip
    yield pa.array([None if i is None else i // 10**9 for i in ints], pa.timestamp("us", "UTC"))
    yield pa.array([None if i is None else bool(i % 2) for i in ints])


@pytest.mark.parametrize("array", list(_arrays()), ids=lambda a: str(a.type))
def test_encoded_columns_hash_as_their_bytes(array: pa.Array) -> None:
    """A column hashed from its parts (a text's bytes, a number's payload: no
    encodings made) hashes as its encodings do, in any block of rows."""
    from bulkops.sync import hashing

    encoded = hashing.array_column(array)
    assert encoded is not None and not isinstance(encoded, hashing.Binary)
    made = encoded.binary()
    assert made.to_pylist() == [encode_value(v) for v in array.to_pylist()]
    whole = hashing.hash_encoded(made)
    for start, rows in ((0, len(array)), (1, 1000), (len(array) - 7, 7), (100, 0)):
        assert list(encoded.hashes(start, rows)) == list(whole[start : start + rows])


def test_decimals_and_datetimes_are_encoded_without_python_per_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decimal and datetime columns from dicts are converted by pyarrow (Decimals by
    their scale, datetimes as their distance from the epoch), to each value's own
    bytes; a column the first values do not describe (a longer scale later, mixed
    naive and aware datetimes) is still encoded right."""
    import zoneinfo

    from bulkops.sync import hashing

    oslo = zoneinfo.ZoneInfo("Europe/Oslo")
    decimals: list[Any] = [Decimal(i) / 8 for i in range(-500, 500)]
    decimals[::9] = [None] * len(decimals[::9])
    decimals[3] = Decimal("1E+3")
    instants = [dt.datetime(2024, 3, 31, 0, tzinfo=UTC) + dt.timedelta(minutes=7 * i)
                for i in range(1000)]  # fmt: skip
    columns: list[list[Any]] = [
        decimals,
        instants,
        [d.astimezone(oslo) for d in instants],  # across a change of summer time
        [d.astimezone(dt.timezone(dt.timedelta(hours=-5))) for d in instants],
        [d.replace(tzinfo=None) for d in instants],
    ]
    expected = [[encode_value(v) for v in column] for column in columns]
    calls: list[Any] = []
    original = hashing.encode_value
    monkeypatch.setattr(hashing, "encode_value", lambda v: calls.append(v) or original(v))
    monkeypatch.setattr(hashing, "_decimal_texts", lambda v: pytest.fail("by text"))
    for column, bytes_ in zip(columns, expected, strict=True):
        assert hashing.encode_values(column).to_pylist() == bytes_
    plain = hashing.plain_column([*decimals, 7], text=False)  # (an int among Decimals)
    assert plain is not None
    assert plain.binary().to_pylist() == [*expected[0], encode_value(7)]
    assert not calls
    for odd in (1.5, True, "1.5"):  # other kinds: typed value by value
        assert hashing.plain_column([*decimals, odd], text=True) is None
    monkeypatch.undo()
    later = [*decimals, Decimal("0.0001")]  # a scale the first values do not have
    assert hashing.encode_values(later).to_pylist() == [encode_value(v) for v in later]
    mixed = [*instants[:5], instants[5].replace(tzinfo=None)]
    assert hashing.encode_values(mixed).to_pylist() == [encode_value(v) for v in mixed]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000, 70_000])
def test_state_lookup_finds_every_key(size: int) -> None:
    """The look-up of key hashes in the state (buckets of the hashes' top bits, no
    sort) finds the keys it holds, at their index, and no other."""
    from bulkops.sync import hashing

    rng = np.random.default_rng(size)
    held = hashing._mix(np.arange(size, dtype=np.uint64) * np.uint64(3))
    state = RowDigests(pa.array([b"k"] * size), np.sort(held), np.zeros(size, np.uint64))
    others = hashing._mix(np.arange(size + 50, dtype=np.uint64) * np.uint64(3) + np.uint64(1))
    wanted = np.concatenate([held, others, np.array([0, 2**64 - 1], np.uint64)])
    rng.shuffle(wanted)
    index, found = state.lookup(wanted)
    assert list(found) == list(np.isin(wanted, held))
    assert (state.key_hashes[index[found]] == wanted[found]).all()


def test_integer_keys_hash_a_column_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """One integer key: its hash is computed with numpy (no call per key), and the
    same key hashes the same in a batch of integers as among other keys."""
    from bulkops.sync import hashing

    ints = [encode_value(k) for k in (1, -5, 2**62, 7)]
    mixed = pa.array([*ints, encode_value("a"), encode_value(None)], pa.binary())
    expected = list(hashing.hash_keys(mixed))
    assert len(set(expected)) == 6
    monkeypatch.setattr(hashing, "hash_encoded", lambda _: pytest.fail("hashed per key"))
    assert list(hashing.hash_keys(pa.array(ints, pa.binary()))) == expected[:4]
    assert list(hashing.hash_keys(pa.array(ints, pa.binary()).slice(1, 2))) == expected[1:3]


def _hash_one(value: bytes) -> int:
    """The reference for ``hash_encoded``: a value's words, zero-padded, one at a time."""
    from bulkops.sync import hashing

    words = max(1, -(-len(value) // 8))
    padded = np.frombuffer(value.ljust(8 * words, b"\0"), dtype="<u8")
    with np.errstate(over="ignore"):
        keys = hashing._keys(hashing._SEED, words)
        total = hashing._mix(padded ^ keys).sum(dtype=np.uint64)
        total += np.uint64(len(value) * hashing._LENGTH_KEY % 2**64)
    return int(hashing._mix(np.array([total]))[0])


def test_value_hashes_are_computed_from_the_buffers() -> None:
    """Values of any length and alignment in the data buffer (sliced arrays, fixed-width
    columns, blocks of rows) hash as their bytes one at a time do."""
    from bulkops.sync import hashing

    rng = np.random.default_rng(16)
    values = [rng.bytes(int(n)) for n in rng.integers(0, 40, 3000)]
    array = pa.array(values, pa.binary())
    hashes = hashing.hash_encoded(array)
    assert [int(h) for h in hashes[:300]] == [_hash_one(v) for v in values[:300]]
    assert (hashing.hash_encoded(array.slice(7, 100)) == hashes[7:107]).all()
    assert (hashing.hash_encoded(array.cast(pa.large_binary())) == hashes).all()
    for size in (0, 1, 5, 8, 9, 13, 16, 17, 30):  # one width: the strided path
        same = [rng.bytes(size) for _ in range(20)]
        got = hashing.hash_encoded(pa.array(same, pa.binary()).slice(3))
        assert [int(h) for h in got] == [_hash_one(v) for v in same[3:]]
    # all values long (the words every value has are hashed over all rows at once)
    long = [rng.bytes(int(n)) for n in rng.integers(17, 45, 500)]
    got = hashing.hash_encoded(pa.array(long, pa.binary()).slice(2))
    assert [int(h) for h in got] == [_hash_one(v) for v in long[2:]]
    texts = pa.array([v.hex() for v in long]).slice(1)  # texts: tag and length added
    got = hashing.array_column(texts).hashes(0, len(texts))
    assert [int(h) for h in got] == [_hash_one(encode_value(v.hex())) for v in long[1:]]


def test_value_hashes_in_bounded_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from bulkops.sync import hashing

    rng = np.random.default_rng(17)
    array = pa.array([rng.bytes(int(n)) for n in rng.integers(0, 300, 2000)], pa.binary())
    whole = hashing.hash_encoded(array)
    monkeypatch.setattr(hashing, "_BLOCK_BYTES", 100)
    assert (hashing.hash_encoded(array) == whole).all()


def test_digests_make_no_python_object_per_row() -> None:
    """Hashing works on the encoded columns' buffers a block of rows at a time: its
    memory stays far below one Python bytes object a row (what xxh3 per row took)."""
    import tracemalloc

    from bulkops.sync import hashing

    n = 200_000
    columns = [
        encode_array(pa.array(np.arange(n))),
        encode_array(pa.array([f"name {i}" for i in range(n)])),
    ]
    tracemalloc.start()
    try:
        hashing.hash_columns(columns, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the digests, the keys' hashes and their temporaries (about 32 bytes a row); a
    # bytes object and a list slot a row took about 80
    assert peak < 48 * n


def test_rows_one_byte_apart_get_distinct_digests() -> None:
    """Rows that differ in one byte at any position, in a value's length or in the
    order of their columns never share a digest; nor do ~1M random rows."""
    from bulkops.sync import hashing

    def digests(rows: list[tuple[bytes, ...]]) -> list[int]:
        columns = [pa.array(list(c), pa.binary()) for c in zip(*rows, strict=True)]
        return [int(d) for d in hashing.hash_columns(columns, 1).digests]

    base = bytes(range(1, 41))
    rows = [(b"\x02" + bytes(8), base)]
    for at in range(len(base)):  # one byte changed, at every position, every bit
        for bit in range(8):
            changed = bytearray(base)
            changed[at] ^= 1 << bit
            rows.append((b"\x02" + bytes(8), bytes(changed)))
    rows += [(b"\x02" + bytes(8), base[:n]) for n in range(len(base))]  # lengths
    rows += [(b"\x02" + bytes(8), base + bytes(n)) for n in range(1, 17)]  # zero-padded
    rows += [(base, b"\x02" + bytes(8))]  # the same columns, the other order
    found = digests(rows)
    assert len(set(found)) == len(rows)

    rng = np.random.default_rng(18)
    n = 1_000_000
    ids = encode_array(pa.array(np.arange(n)))
    texts = encode_array(pa.array([rng.bytes(int(k)).hex() for k in rng.integers(0, 12, n)]))
    numbers = encode_array(pa.array(rng.integers(0, 1000, n)))
    many = hashing.hash_columns([ids, texts, numbers], 1).digests
    assert len(np.unique(many)) == n


# --------------------------------------------------------------- digest syncs


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[bulkops.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/digests.db"
    else:
        url = str(request.getfixturevalue("pg_url"))
    with bulkops.connect(url) as db:
        yield db


def synced_table(db: bulkops.Store, rows: list[dict[str, Any]]) -> str:
    name = f"digests_{next(_names)}"
    db.create_table(name, COLUMNS, key="id")
    db.insert(name, rows)
    first = db.sync(name, rows, key="id", delete_missing=True)  # makes the digests
    assert first.unchanged == len(rows) and not first.changes
    return name


def reads_of_rows(statements: list[str], table: str) -> list[str]:
    """Statements that read the table's rows (its columns), not only count them."""
    return [
        s
        for s in statements
        if re.search(rf"\bFROM\s+\"?{table}\"?", s, re.I)
        and s.lstrip().upper().startswith("SELECT")
        and "count(" not in s.lower()
    ]


def test_digest_sync_reads_no_rows_and_sends_the_difference(sql_db: bulkops.Store) -> None:
    db = sql_db
    table = synced_table(db, base_rows())
    source = edited(base_rows())
    with count_queries(db) as seen:
        report = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert (report.added, report.changed, report.deleted, report.unchanged) == (2, 2, 1, 17)
    assert sorted(report.added_keys) == [21, 22] and sorted(report.changed_keys) == [1, 2]
    assert report.deleted_keys == [3]
    assert reads_of_rows(seen.statements, table) == []
    assert not any("bulkops_sync_" in s and "CREATE TEMPORARY" in s for s in seen.statements)
    assert contents(db, table, range(1, 23)) == normal(source)
    # unchanged: hashed and compared, nothing sent, no rows read
    with count_queries(db) as seen:
        again = db.sync(table, source, key="id", delete_missing=True)
    assert again.up_to_date and again.changes == 0 and again.unchanged == len(source)
    assert reads_of_rows(seen.statements, table) == []


def test_same_data_in_other_types_is_unchanged(sql_db: bulkops.Store) -> None:
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    retyped = [{**r, "price": float(r["price"]), "qty": Decimal(r["qty"])} for r in rows]
    report = db.sync(table, retyped, key="id", delete_missing=True)
    assert report.up_to_date and report.unchanged == len(rows)


def test_syncs_after_one_that_left_the_scope_empty(sql_db: bulkops.Store) -> None:
    """An empty source (its columns given) leaves digests of no rows: the next syncs
    compare against them (every row is new), and the deltas written after a delta that
    took every key are read back in order. Both raised IndexError."""
    db = sql_db
    rows = base_rows(6)
    cols = ["name", "price", "qty"]
    for first in ([], rows):
        name = f"digests_{next(_names)}"
        db.create_table(name, COLUMNS, key="id")
        steps = [first, [], rows[:3], rows[:4], rows[1:2]]
        expected = [(len(first), 0, 0), (0, 0, len(first)), (3, 0, 0), (1, 0, 0), (0, 0, 3)]
        for source, counts in zip(steps, expected, strict=True):
            report = db.sync(name, source, key="id", columns=cols, delete_missing=True)
            assert (report.added, report.changed, report.deleted) == counts
            assert contents(db, name, range(1, 7)) == normal(source)


def test_tuples_and_dicts_share_the_digests(sql_db: bulkops.Store) -> None:
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    order = ["qty", "id", "name", "price"]
    # columns= names another scope: its digests are made by its first sync
    assert not db.sync(table, rows, key="id", columns=order, delete_missing=True).changes
    tuples = [(r["qty"], r["id"], r["name"], r["price"]) for r in rows]
    report = db.sync(table, tuples, key="id", columns=["qty", "id", "name", "price"],
                     delete_missing=True)  # fmt: skip
    assert report.up_to_date and report.unchanged == len(rows)


def _query(url: str, statement: str, **params: Any) -> list[Any]:
    """``statement`` run from a connection of its own (outside bulkops), committed;
    the rows it returns."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def outside_url(db: bulkops.Store, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if db.capabilities.name == "sqlite":
        return f"sqlite:///{tmp_path}/digests.db"
    return str(request.getfixturevalue("pg_url"))


def test_writes_without_bulkops_keeping_the_count_need_full(
    sql_db: bulkops.Store, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """README: such a write is not seen by a digest sync; full=True compares the
    table's rows and makes the digests again."""
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    url = outside_url(db, request, tmp_path)
    _query(url, f"UPDATE {table} SET name = 'edited elsewhere' WHERE id = 5")
    report = db.sync(table, rows, key="id", delete_missing=True)
    assert report.up_to_date and report.changes == 0  # not seen
    assert contents(db, table, [5])[5]["name"] == "edited elsewhere"
    full = db.sync(table, rows, key="id", delete_missing=True, full=True)
    assert (full.changed, full.unchanged) == (1, len(rows) - 1)
    assert contents(db, table, range(1, 21)) == normal(rows)
    # the digests were made again: the next sync reads no rows
    with count_queries(db) as seen:
        assert db.sync(table, rows, key="id", delete_missing=True).up_to_date
    assert reads_of_rows(seen.statements, table) == []


def test_a_changed_row_count_forces_a_full_compare(
    sql_db: bulkops.Store, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    url = outside_url(db, request, tmp_path)
    _query(url, f"DELETE FROM {table} WHERE id = 7")
    report = db.sync(table, rows, key="id", delete_missing=True)
    assert (report.added, report.unchanged) == (1, len(rows) - 1)
    assert contents(db, table, range(1, 21)) == normal(rows)


def test_a_bulkops_write_makes_the_digests_again(sql_db: bulkops.Store) -> None:
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    db.update(table, [{"id": 4, "name": "updated"}])  # keeps the count
    with count_queries(db) as seen:
        report = db.sync(table, rows, key="id", delete_missing=True)
    assert (report.changed, report.unchanged) == (1, len(rows) - 1)
    assert any("CREATE TEMPORARY" in s for s in seen.statements)  # compared in full
    with count_queries(db) as seen:
        assert db.sync(table, rows, key="id", delete_missing=True).up_to_date
    assert reads_of_rows(seen.statements, table) == []


def test_missing_or_old_digests_are_made_again(sql_db: bulkops.Store, request: Any,
                                              tmp_path: Any) -> None:  # fmt: skip
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    url = outside_url(db, request, tmp_path)
    _query(url, "UPDATE bulkops_sync_rows SET data = 'not arrow'")
    source = edited(rows)
    report = db.sync(table, source, key="id", delete_missing=True)
    assert (report.added, report.changed, report.deleted) == (2, 2, 1)
    _query(url, "DELETE FROM bulkops_sync_rows")
    report = db.sync(table, source, key="id", delete_missing=True)
    assert report.unchanged == len(source) and report.changes == 0
    assert contents(db, table, range(1, 23)) == normal(source)


def test_a_sync_with_rejects_keeps_no_digests(sql_db: bulkops.Store) -> None:
    """A row the table could not take: the next sync must not take the table for
    what the source holds."""
    db = sql_db
    if not db.capabilities.declared_columns:
        pytest.skip("values are not coerced")
    rows = base_rows()
    table = synced_table(db, rows)
    bad = [dict(r) for r in rows]
    bad[3]["qty"] = "not a number"
    bad[4]["name"] = "changed"
    report = db.sync(table, bad, key="id", delete_missing=True, on_error="isolate")
    assert (report.rejected, report.changed) == (1, 1)
    assert contents(db, table, [4])[4] == normal(rows)[4]  # kept, not deleted
    fixed = [dict(r) for r in bad]
    fixed[3]["qty"] = 1
    again = db.sync(table, fixed, key="id", delete_missing=True)
    assert (again.changed, again.up_to_date) == (1, False)
    with pytest.raises(ConversionError):
        db.sync(table, bad, key="id", delete_missing=True, on_error="raise")


def test_scoped_digest_syncs(sql_db: bulkops.Store) -> None:
    db = sql_db
    db.create_table(table := f"digests_{next(_names)}", {**COLUMNS, "shop": "text"}, key="id")
    rows = [{**r, "shop": "a" if r["id"] <= 10 else "b"} for r in base_rows()]
    db.insert(table, rows)
    a = [r for r in rows if r["shop"] == "a"]
    assert db.sync(table, a, key="id", where={"shop": "a"}, delete_missing=True).unchanged == 10
    edit = [dict(r) for r in a[1:]]
    edit[0]["name"] = "changed"
    edit.append({"id": 15, "name": "steals b", "price": 1, "qty": 1, "shop": "a"})
    edit.append({"id": 30, "name": "new", "price": 1, "qty": 1, "shop": "a"})
    edit.append({"id": 31, "name": "wrong shop", "price": 1, "qty": 1, "shop": "b"})
    report = db.sync(table, edit, key="id", where={"shop": "a"}, delete_missing=True,
                     on_error="isolate")  # fmt: skip
    assert (report.added, report.changed, report.deleted, report.rejected) == (1, 1, 1, 2)
    assert {r.key for r in report.rejections} == {15, 31}
    assert db.get_many(table, [15])[15]["name"] == "item 15"  # left alone
    assert 1 not in db.get_many(table, [1]) and 12 in db.get_many(table, [12])


def test_digests_take_little_room(sql_db: bulkops.Store, request: Any, tmp_path: Any) -> None:
    """README: about 30 bytes a row for an integer key."""
    db = sql_db
    rows = [{"id": i, "name": f"n{i}", "price": Decimal(i), "qty": i} for i in range(5000)]
    table = synced_table(db, rows)
    ((size,),) = _query(
        outside_url(db, request, tmp_path),
        "SELECT sum(length(data)) FROM bulkops_sync_rows WHERE table_name = :t",
        t=table,
    )
    assert 20 * len(rows) < size < 32 * len(rows)


def _parts(url: str, table: str) -> list[tuple[int, int]]:
    found = _query(
        url,
        "SELECT part, length(data) FROM bulkops_sync_rows WHERE table_name = :t ORDER BY part",
        t=table,
    )
    return [(int(p), int(n)) for p, n in found]


def _kept_digests(url: str, table: str) -> dict[bytes, int]:
    data = _query(
        url, "SELECT data FROM bulkops_sync_rows WHERE table_name = :t ORDER BY part", t=table
    )
    stored = RowDigests.from_parts([bytes(d) for (d,) in data], list(COLUMNS))
    assert stored is not None
    state = stored.state
    assert list(state.key_hashes) == sorted(state.key_hashes)
    return dict(zip(state.keys.to_pylist(), map(int, state.digests), strict=True))


def test_a_sync_appends_only_what_it_changed(
    sql_db: bulkops.Store, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """A sync keeps the digests of the rows it changed, added and deleted (a delta
    part), not the whole table's again; after many syncs the deltas are folded into a
    new base, and what is kept is always the digests of the rows the table holds."""
    db = sql_db
    url = outside_url(db, request, tmp_path)
    rows = [{"id": i, "name": f"n{i}", "price": Decimal(i), "qty": i} for i in range(4000)]
    table = synced_table(db, rows)
    base = _parts(url, table)
    source = [dict(r) for r in rows]
    seen_parts = set()
    for round_ in range(8):
        for r in source[round_ * 300 : round_ * 300 + 300]:  # 300 changed
            r["name"] = f"round {round_}"
        gone = source.pop(3900 - round_)  # 1 deleted
        source.append({"id": 10_000 + round_, "name": "new", "price": 1, "qty": 1})
        report = db.sync(table, source, key="id", delete_missing=True)
        assert (report.added, report.changed, report.deleted) == (1, 300, 1)
        assert gone["id"] not in db.get_many(table, [gone["id"]])
        parts = _parts(url, table)
        seen_parts.add(len(parts))
        if round_ == 0:  # one small part more: the delta
            assert parts[: len(base)] == base and len(parts) == len(base) + 1
            assert parts[-1][1] < sum(n for _, n in base) / 5
        expected = hash_value_rows([tuple(r[c] for c in COLUMNS) for r in source], 1)
        assert _kept_digests(url, table) == dict(
            zip(expected.keys.to_pylist(), map(int, expected.digests), strict=True)
        )
    assert len(seen_parts) > 1 and max(seen_parts) <= len(base) + 3  # folded into a base
    with count_queries(db) as seen:
        assert db.sync(table, source, key="id", delete_missing=True).up_to_date
    assert reads_of_rows(seen.statements, table) == []
    assert db.sync(table, source, key="id", delete_missing=True, full=True).changes == 0


def test_a_delta_is_kept_only_on_the_parts_it_was_made_from(sql_db: bulkops.Store) -> None:
    """Two syncs of one scope at once: the one that appends after the other changed
    the parts keeps nothing (the next sync compares in full) rather than a delta made
    from digests that are no longer there."""
    db = sql_db
    table = synced_table(db, base_rows())
    state = db.backend.sync_state()
    mark = state.begin(table, "another scope")
    assert state.record(table, "another scope", mark, "d1", 3, [b"base"])
    assert not state.record(table, "another scope", mark, "d2", 3, [b"delta"], append_to=2)
    assert state.read_rows(table, "another scope", state.begin(table, "another scope")) == [b"base"]
    assert state.record(table, "another scope", mark, "d3", 3, [b"delta"], append_to=1)
    parts = state.read_rows(table, "another scope", state.begin(table, "another scope"))
    assert parts == [b"base", b"delta"]


def test_a_delta_is_merged_into_the_digests() -> None:
    state = RowDigests.build([hash_value_rows([(i, f"v{i}") for i in range(50)], 1)])
    changed = hash_value_rows([(i, "new") for i in (3, 60, 61, 3)], 1)
    dropped = hash_value_rows([(7, None), (8, None)], 1).key_hashes
    gone = state.without(~np.isin(state.key_hashes, dropped))
    merged = state.updated(Delta.of([changed], gone))
    final = [(i, f"v{i}") for i in range(50) if i not in (3, 7, 8)]
    rebuilt = RowDigests.build([hash_value_rows([*final, (3, "new"), (60, "new"), (61, "new")], 1)])
    assert list(merged.key_hashes) == list(rebuilt.key_hashes)
    assert list(merged.digests) == list(rebuilt.digests)
    assert merged.keys.to_pylist() == rebuilt.keys.to_pylist()


@pytest.mark.postgres
def test_postgres_keeps_the_digests_uncompressed(pg_url: str) -> None:
    """TOAST would try to compress the digests (which do not compress) on every write,
    several times the cost of writing them."""
    with bulkops.connect(pg_url) as db:  # (over 1 MiB of digests: 40,000 rows)
        synced_table(db, [{"id": i, "name": "n", "price": 1, "qty": 1} for i in range(40_000)])
    ((storage,),) = _query(
        pg_url,
        "SELECT attstorage FROM pg_attribute WHERE attname = 'data' "
        "AND attrelid = 'bulkops_sync_rows'::regclass",
    )
    assert storage == "e"


def test_sqlite_state_is_plain_tables(tmp_path: Any) -> None:
    path = tmp_path / "plain.db"
    with bulkops.connect(f"sqlite:///{path}") as db:
        synced_table(db, base_rows())
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"bulkops_sync_state", "bulkops_sync_rows"} <= names


# ------------------------------------------------------------------ Arrow sources


def test_an_arrow_source_shares_the_digests_of_dict_rows(sql_db: bulkops.Store) -> None:
    """A table synced from dicts meets the same rows as an Arrow table: nothing
    changed; an edited Arrow source sends only its difference, hashed a batch at a time."""
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    arrow = pa.Table.from_pylist(rows).to_batches(max_chunksize=7)
    source = pa.Table.from_batches(arrow)
    with count_queries(db) as seen:
        report = db.sync(table, source, key="id", delete_missing=True)
    assert report.up_to_date and report.unchanged == len(rows)
    assert reads_of_rows(seen.statements, table) == []
    changed = edited(rows)
    report = db.sync(
        table, pa.Table.from_pylist(changed), key="id", delete_missing=True, list_keys=True
    )
    assert (report.added, report.changed, report.deleted) == (2, 2, 1)
    assert sorted(report.changed_keys) == [1, 2] and report.deleted_keys == [3]
    assert contents(db, table, range(1, 23)) == normal(changed)
    # a record batch, and a first sync (no digests): its rows are compared in full
    db.update(table, [{"id": 1, "name": "elsewhere"}])
    report = db.sync(table, pa.RecordBatch.from_pylist(changed), key="id", delete_missing=True)
    assert (report.changed, report.unchanged) == (1, len(changed) - 1)


def test_rows_of_later_batches_keep_their_positions(
    sql_db: bulkops.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dict rows hashed a batch at a time: a row rejected in a later batch is named by
    its position in the whole source."""
    db = sql_db
    monkeypatch.setattr(engine._SourceHasher, "BATCH", 3)
    db.create_table(table := f"digests_{next(_names)}", {**COLUMNS, "shop": "text"}, key="id")
    rows = [{**r, "shop": "a" if r["id"] <= 10 else "b"} for r in base_rows()]
    db.insert(table, rows)
    a = [r for r in rows if r["shop"] == "a"]
    assert db.sync(table, a, key="id", where={"shop": "a"}).unchanged == 10
    edit = [*a[:7], {"id": 40, "name": "x", "price": Decimal(1), "qty": 1, "shop": "b"}, *a[7:]]
    report = db.sync(table, edit, key="id", where={"shop": "a"}, on_error="isolate")
    assert (report.rejected, report.unchanged) == (1, 10)
    assert report.rejections[0].key == 40 and report.rejections[0].row == 8


def test_an_arrow_batch_is_compared_a_slice_at_a_time(
    sql_db: bulkops.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record batch hashed and compared three rows at a time: a row outside where=
    in a later slice is named by its place in the batch; a key given again in a later
    slice wins and is written (counted as across batches of dict rows: the earlier row
    unchanged, the later one a repeat); then the same rows change nothing."""
    db = sql_db
    monkeypatch.setattr(engine._SourceHasher, "ARROW_SLICE", 3)
    db.create_table(table := f"digests_{next(_names)}", {**COLUMNS, "shop": "text"}, key="id")
    rows = [{**r, "shop": "a" if r["id"] <= 10 else "b"} for r in base_rows()]
    db.insert(table, rows)
    a = [r for r in rows if r["shop"] == "a"]
    assert db.sync(table, pa.Table.from_pylist(a), key="id", where={"shop": "a"}).unchanged == 10
    outside = {"id": 40, "name": "x", "price": Decimal(1), "qty": 1, "shop": "b"}
    edit = [*a[:7], outside, *a[7:], {**a[1], "name": "again"}]
    report = db.sync(
        table, pa.Table.from_pylist(edit), key="id", where={"shop": "a"}, on_error="isolate"
    )
    assert (report.rejected, report.changed, report.duplicates, report.unchanged) == (1, 0, 1, 10)
    assert report.accounted == report.rows_in == 12
    assert report.rejections[0].key == 40 and report.rejections[0].row == 8
    assert contents(db, table, [2])[2]["name"] == "again"
    final = [{**r, "name": "again"} if r["id"] == 2 else r for r in a]
    again = db.sync(table, pa.Table.from_pylist(final), key="id", where={"shop": "a"})
    assert (again.unchanged, again.changes) == (10, 0)


def test_an_arrow_source_with_where(sql_db: bulkops.Store) -> None:
    db = sql_db
    db.create_table(table := f"digests_{next(_names)}", {**COLUMNS, "shop": "text"}, key="id")
    rows = [{**r, "shop": "a" if r["id"] <= 10 else "b"} for r in base_rows()]
    db.insert(table, rows)
    a = [r for r in rows if r["shop"] == "a"]
    assert db.sync(table, pa.Table.from_pylist(a), key="id", where={"shop": "a"}).unchanged == 10
    edit = [*a, {"id": 40, "name": "x", "price": Decimal(1), "qty": 1, "shop": "b"}]
    report = db.sync(
        table, pa.Table.from_pylist(edit), key="id", where={"shop": "a"}, on_error="isolate"
    )
    assert (report.rejected, report.unchanged) == (1, 10)
    assert report.rejections[0].key == 40 and report.rejections[0].row == 11


def test_an_arrow_source_must_give_the_columns(sql_db: bulkops.Store) -> None:
    db = sql_db
    table = synced_table(db, base_rows())
    source = pa.table({"id": [1], "name": ["x"]})
    with pytest.raises(bulkops.errors.SchemaError, match="no column 'qty'"):
        db.sync(table, source, key="id", columns=["id", "name", "qty"])


def test_dicts_and_arrow_of_every_kind_share_the_digests(sql_db: bulkops.Store) -> None:
    """Rows with decimal, datetime, text, bool, float and null values synced from dicts
    meet the same rows as an Arrow table: nothing changed, nothing written."""
    db = sql_db
    table = f"digests_{next(_names)}"
    kinds = {"id": "integer", "price": "decimal", "at": "datetime", "name": "text",
             "ok": "boolean", "ratio": "float"}  # fmt: skip
    db.create_table(table, kinds, key="id")
    moment = dt.datetime(2024, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    rows = [
        {"id": i, "price": Decimal(f"{i}.{i % 100:02d}"), "at": moment + dt.timedelta(hours=i),
         "name": f"é {i}", "ok": i % 3 == 0, "ratio": i / 8}
        for i in range(1, 40)
    ]  # fmt: skip
    rows[4] = {"id": 5, "price": None, "at": None, "name": None, "ok": None, "ratio": None}
    db.insert(table, rows)
    assert db.sync(table, rows, key="id", delete_missing=True).unchanged == len(rows)
    with count_queries(db) as seen:
        report = db.sync(table, pa.Table.from_pylist(rows), key="id", delete_missing=True)
    assert report.up_to_date and report.unchanged == len(rows)
    assert reads_of_rows(seen.statements, table) == []
    # and one real change among them is found from either side
    changed = [dict(r) for r in rows]
    changed[7]["ok"] = not changed[7]["ok"]
    report = db.sync(table, changed, key="id", list_keys=True)
    assert report.changed_keys == [8] and report.unchanged == len(rows) - 1
    report = db.sync(table, pa.Table.from_pylist(changed), key="id")
    assert report.up_to_date


def test_an_awkward_column_is_hashed_value_by_value() -> None:
    """A column Arrow cannot hold as one type (text and numbers, nested values, a
    subclass) is encoded a value at a time, with the bytes each value has alone."""
    from bulkops.schema import ColumnSpec

    class Tag(str):
        pass

    awkward = [1, "1", Decimal("2.50"), [1, {"a": None}], None, Tag("x"), True, 2.5]
    specs = [ColumnSpec("v", "any")]
    (column,) = engine.encoded_columns([awkward], specs)
    assert column.binary().to_pylist() == [encode_value(v) for v in awkward]
    rows = [(i, v) for i, v in enumerate(awkward)]
    by_value = hash_value_rows(rows, 1)
    again = hash_value_rows([(i, encode_value(v)) for i, v in rows], 1)
    assert list(by_value.digests) != list(again.digests)  # bytes hash as bytes, not as v


def _hashing_threads(monkeypatch: pytest.MonkeyPatch, wait: float) -> tuple[list[str], list[bool]]:
    """Record the thread that hashes each batch, and whether a batch was hashed before
    the per-row digests were read (the read waits up to ``wait`` s for the first one)."""
    threads: list[str] = []
    overlapped: list[bool] = []
    first = threading.Event()

    def recorded(original: Any) -> Any:
        def hashed(self: Any, *args: Any) -> Any:
            threads.append(threading.current_thread().name)
            try:
                return original(self, *args)
            finally:
                first.set()

        return hashed

    for name in ("_hash_rows", "_hash_arrow"):
        monkeypatch.setattr(
            engine._SourceHasher, name, recorded(getattr(engine._SourceHasher, name))
        )
    read_rows = SQLSyncState.read_rows

    def read(self: Any, *args: Any) -> Any:
        overlapped.append(first.wait(timeout=wait))
        return read_rows(self, *args)

    monkeypatch.setattr(SQLSyncState, "read_rows", read)
    return threads, overlapped


def test_the_source_is_hashed_while_the_digests_are_read(
    sql_db: bulkops.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the database works in a process of its own (``read_ahead``), a list or an
    Arrow source is hashed by a thread while the digests are read; a generator (which
    might read through the same connection) and an in-process database are hashed on
    the calling thread, after the read."""
    db = sql_db
    rows = base_rows()
    table = synced_table(db, rows)
    monkeypatch.setattr(engine._SourceHasher, "BATCH", 4)
    threaded = db.capabilities.read_ahead
    here = threading.current_thread().name
    for source in (rows, pa.Table.from_pylist(rows)):
        threads, overlapped = _hashing_threads(monkeypatch, 5 if threaded else 0.2)
        report = db.sync(table, source, key="id", delete_missing=True)
        assert report.up_to_date and report.unchanged == len(rows)
        assert overlapped == [threaded]
        # (the thread hashes while the digests are read; the calling thread the rest)
        assert threads[0] == ("bulkops-sync-hash" if threaded else here)
        assert set(threads) <= {"bulkops-sync-hash", here}
        assert len(threads) == (5 if isinstance(source, list) else 1)  # 20 rows, 4 a batch
    threads, overlapped = _hashing_threads(monkeypatch, 0.2)
    report = db.sync(table, (r for r in rows), key="id", delete_missing=True)
    assert report.up_to_date and overlapped == [False] and set(threads) == {here}


def test_rows_hashed_ahead_go_to_the_full_compare_when_the_digests_fall(
    sql_db: bulkops.Store, request: pytest.FixtureRequest, tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The digests do not stand (a row deleted without bulkops): the batches hashed
    meanwhile are given, as they were, to the full comparison; a row of the wrong
    width is rejected once, by the engine that compares."""
    db = sql_db
    monkeypatch.setattr(engine._SourceHasher, "BATCH", 3)
    rows = base_rows()
    cols = ["id", "name", "price", "qty"]
    tuples: list[tuple[Any, ...]] = [tuple(r[c] for c in cols) for r in rows]
    table = f"digests_{next(_names)}"
    db.create_table(table, COLUMNS, key="id")
    db.insert(table, rows)
    assert db.sync(table, tuples, key="id", columns=cols, delete_missing=True).unchanged == 20
    tuples[5] = tuples[5][:2]  # id 6: two values of four
    report = db.sync(table, tuples, key="id", columns=cols, on_error="isolate")
    assert (report.rejected, report.unchanged, report.rows_in) == (1, 19, 20)
    assert report.rejections[0].row == 6
    _query(outside_url(db, request, tmp_path), f"DELETE FROM {table} WHERE id = 7")
    with count_queries(db) as seen:
        report = db.sync(table, tuples, key="id", columns=cols, on_error="isolate")
    assert any("CREATE TEMPORARY" in s for s in seen.statements)  # compared in full
    assert (report.rejected, report.added, report.unchanged, report.rows_in) == (1, 1, 18, 20)
    assert report.rejections[0].row == 6
    assert contents(db, table, range(1, 21)) == normal(rows)


@pytest.mark.parametrize("batch", [4, 50])
def test_a_key_given_twice_against_the_digests_last_wins(
    sql_db: bulkops.Store, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Keys the digests hold, given twice in one batch (50) or in two (4): the later
    row wins and the earlier counts as a duplicate; a key given once is untouched."""
    db = sql_db
    monkeypatch.setattr(engine._SourceHasher, "BATCH", batch)
    rows = base_rows()
    table = synced_table(db, rows)
    source = [dict(r) for r in rows]
    source.insert(2, {**rows[5], "name": "first"})  # id 6, then id 6 as it is
    source.append({**rows[0], "name": "last"})  # id 1 as it is, then renamed
    report = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert (report.duplicates, report.changed, report.added, report.deleted) == (2, 1, 0, 0)
    assert report.accounted == report.rows_in == 22
    if batch == 50:  # (across batches the earlier row was written, and counts as changed)
        assert report.changed_keys == [1]
    assert contents(db, table, range(1, 21)) == normal([*rows[1:], source[-1]])
