"""Pure unit tests of sync's row encoding, hashing and per-row state (``sync.hashing``,
``sync.digests``): no server, no database.

Written to kill the mutants that mutation testing (README, "Tests") left alive in
those two modules: each pins a byte of the encoding, a digest (against a pure-Python
reference of the construction hashing.py describes), a key read back, an entry of a
merged state, a part read back or refused, or that a column is encoded without Python
per value. Test ids are plain and the same in every run (mutmut runs tests by id).

Mutants left alive (``mutmut results``: 238 of 2,481), by why; a range of numbers
means those of it left alive. They were judged a group at a time from their diffs,
not each re-run by hand.

Equivalent: a spelling that changes nothing.

- A type or flag that is what is inferred or already there: ``pa.binary()``,
  ``pa.int64()``, ``pa.duration("us")`` and ``pa.scalar(.., pa.binary())`` dropped
  (pyarrow infers the same from bytes, numpy int64 and timedeltas), ``dtype=bool`` on
  arrays that are bool, ``astype(.., copy=..)``, ``zero_copy_only=None`` (falsy),
  ``size=`` of ``pa.array``, ``np.errstate`` (numpy does not warn on array overflow),
  ``astype(None)`` where the value is assigned into a typed field, ``safe=`` of a
  cast to microseconds from seconds or milliseconds (nothing to lose): Delta.of
  50-60; RowDigests.from_parts 43-96, take_keys 6/8, updated 75/77; _Nullable._nulled
  10/12; _with_nulls 5/7/8/24/26; array_column 11/13/19/68/120/122/184/186/193/253/255;
  values_column 7/9/32/34; _datetimes 16/17/19/20; _decimal_array 34/36/37;
  _decimal_texts 80/82/83; hash_keys 75/77/78; _scaled 15/17; _mix 5/7; _hash_fixed
  26; _hash_varying 63; combine_hashes 6; _keys 20.
- Names read the same: ``"UTF-8"``, numpy's sort kind ``"STABLE"`` (read by its first
  letter), ``float("INF")``, the ``"F"`` format of a Decimal, ``lstrip("XX-XX")`` of
  digits: encode_value 14/36/98, decode_key_value 77/91, row_hash 10,
  SourceDigest.update_encoded 16, RowDigests.build 34, updated 8, _number 7/10/31,
  _encode_number 6/9/49, array_column 105/108/111. ``surrogatepass`` on text made by
  ``repr`` (which escapes lone surrogates, so the handler never acts): encode_value
  94/99/100, row_hash 5/11/12, SourceDigest.update_encoded 14/17/18.
- Fast paths by exact class: encode_value 1 and canonical 8 (without them the
  ``isinstance`` checks that follow give the same), encode_value 22/23 (a branch for
  subclasses of bool, which cannot exist).
- What a null row's payload holds: it is replaced by the null encoding (and its hash)
  afterwards: array_column 21/44/58/85/167/204/211/247, _decimal_array 33/50,
  Sized.binary 6, _with_nulls 12/14 (the same nulls set twice: or, and and replace
  agree).
- A fast path declined or taken where the other gives the same bytes (only slower):
  the value-by-value fallback after a vectorized rule refuses (_decimal128 2/3/16/18/
  19/22/24, _decimals 1/4, values_column 25/27/28, plain_column 20/22/23 and
  encode_values 2/4: an int64 or string array always has a rule, ``kinds`` is
  recomputed), _decimal_array 23/26/42 (numpy's ``>> 64`` of an int64 is its sign, as
  ``>> 63``; the buffer slice only grows past what ``reshape`` keeps), _decimal_texts
  29/45/46 (a text the pattern would refuse fails the int64 cast; ``str`` of a Decimal
  never starts with "."), _scaled 12 (``10**15`` itself is a power of ten, exact as a
  float), array_column 35/188/190 (a max not used; a cast to UTC instants without
  the zone keeps the instants), Sized.binary 18/19 (large or plain binary under
  2 GiB), hash_keys 68 (an index clipped for rows whose size rules them out anyway),
  hash_encoded 3/16 (a null hashed as the empty value either way; the one-width path
  or the general one: the same hashes), RowDigests.build 38/50 (no entries either way).
- Block and buffer sizes, which change only how the work is cut: hash_encoded
  36/46/52, _hash_blocks 13-37, hash_columns 18 (blocks that start at every row: each
  recomputed, the same digests), _hash_fixed 10/55/56 (more position keys than used;
  a value of exactly 8 bytes has no rest), _hash_varying 20/21/62/107 (more padding
  and keys; fewer passes over all rows, the rest done by the pass over the rows still
  long enough), _masks 13 (a mask never indexed), _offsets_and_data 19/25-29 (a data
  buffer is absent only where every value is empty: nothing is read from it),
  combine_hashes 22/25/26 (the keys are made for as many columns as given),
  join_encoded 5-8 (never called with no columns), _keys 1/2/5/11-19 (the position
  keys' cache bypassed or sized otherwise: it still holds at least what is asked).
- The per-row state's look-up layout: RowDigests._buckets 7-37 (the bucket count and
  the starts' width change speed and memory, not the index each key steps to; int32
  starts differ from int64 only past 2**31 entries), lookup 4-10 (the dtypes of an
  empty state's answer), 26/28 (the first step's bound: the loop after it corrects).
- Storage details: RowDigests.to_parts 9/10/22/23/37 (the entry-size estimate moves
  parts' sizes by a byte an entry, still under the limit; an empty state is one part
  either way), updated 33/35/36/71 (the kept mask as floats; a chunked array taken as
  one chunk: pyarrow flattens it), from_parts 11-17 (a missing or garbled marker is a
  TypeError or a ValueError: refused either way).
- Constructors given no nulls everywhere: Sized.__init__ 3, Fixed.__init__ 2.

Not equivalent, left: _sized_array 1-4 and 7-15, the refusal of a single value over
4 GiB (and its message): a test would need such a value in memory.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bulkops.sync import hashing
from bulkops.sync.hashing import ENCODING_VERSION, encode_value

UTC = dt.UTC


def _int(value: int) -> bytes:
    return b"\x02" + struct.pack("<q", value)


def _ids(cases: list[tuple[Any, Any]]) -> list[str]:
    """Test ids that are the same in every run and plain (mutmut runs tests by id)."""
    return [f"{i}-{type(value).__name__}" for i, (value, _) in enumerate(cases)]


def _sized(tag: int, data: bytes) -> bytes:
    return bytes([tag]) + struct.pack("<I", len(data)) + data


# -------------------------------------------------------------- the encoding


ENCODINGS: list[tuple[Any, bytes]] = [
    (None, b"\x00"),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    (0, _int(0)),
    (1, _int(1)),
    (-1, _int(-1)),
    (2**63 - 1, _int(2**63 - 1)),
    (-(2**63), _int(-(2**63))),
    (2**63, _sized(3, b"9223372036854775808")),
    (-(2**63) - 1, _sized(3, b"-9223372036854775809")),
    (1.0, _int(1)),
    (-0.0, _int(0)),
    (2.0**63, _sized(3, b"9223372036854775808")),
    (1.5, b"\x04" + struct.pack("<d", 1.5)),
    (float("nan"), _sized(5, b"float:nan")),
    (float("inf"), _sized(5, b"float:inf")),
    (float("-inf"), _sized(5, b"float:-inf")),
    (Decimal("1.00"), _int(1)),
    (Decimal("-7E+2"), _int(-700)),
    (Decimal("0.10"), b"\x04" + struct.pack("<d", 0.1)),
    (Decimal("0.10000000000000000001"), _sized(3, b"0.10000000000000000001")),
    (Decimal("-1.2500000000000000000001"), _sized(3, b"-1.2500000000000000000001")),
    (
        Decimal("1.00000000000000000001E-20"),
        _sized(3, b"0.0000000000000000000100000000000000000001"),
    ),
    (Decimal("NaN"), _sized(5, b"NaN")),
    (Decimal("-Infinity"), _sized(5, b"-Infinity")),
    ("", _sized(6, b"")),
    ("é", _sized(6, "é".encode())),
    ("\ud800", _sized(6, b"\xed\xa0\x80")),  # a lone surrogate (surrogatepass)
    (b"", _sized(7, b"")),
    (bytearray(b"\x00ab"), _sized(7, b"\x00ab")),
    (memoryview(b"xy"), _sized(7, b"xy")),
    (dt.datetime(1970, 1, 1, 0, 0, 0, 1), b"\x08" + struct.pack("<q", 1)),
    (dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), b"\x08" + struct.pack("<q", -1)),
    (dt.date(1969, 12, 31), b"\x09" + struct.pack("<i", -1)),
    (dt.date(2000, 1, 1), b"\x09" + struct.pack("<i", 10957)),
    (dt.time(1, 2, 3, 4), b"\x0a" + struct.pack("<q", 3723_000_004)),
    (uuid.UUID(int=1), _sized(6, b"00000000-0000-0000-0000-000000000001")),
    ({"b": 1, "a": [1.0]}, _sized(11, b"('map', (('a', ('list', (1,))), ('b', 1)))")),
    (dt.time(1, tzinfo=UTC), _sized(11, b"('time', '01:00:00+00:00')")),
]


@pytest.mark.parametrize(("value", "expected"), ENCODINGS, ids=_ids(ENCODINGS))
def test_each_kind_of_value_has_its_documented_encoding(value: Any, expected: bytes) -> None:
    """The bytes of the table in hashing.py, kind by kind: a change to them changes
    every stored digest, so it must come with a new ENCODING_VERSION."""
    assert ENCODING_VERSION == 5
    assert encode_value(value) == expected


def test_subclasses_encode_as_their_base_type() -> None:
    import enum

    class Code(enum.IntEnum):
        ONE = 1

    class Name(str):
        pass

    assert encode_value(Code.ONE) == _int(1)
    assert encode_value(Name("ab")) == _sized(6, b"ab")
    assert encode_value(Name("\ud800")) == _sized(6, b"\xed\xa0\x80")
    assert encode_value(np.float64(2.5)) == encode_value(2.5)
    assert encode_value(np.float64(3.0)) == _int(3)


def test_canonical_forms() -> None:
    """``canonical`` (the rule of the old row hashes and of ``where`` comparisons)."""
    canonical = hashing.canonical
    assert canonical(1) == canonical(1.0) == canonical(Decimal("1.00")) == 1
    assert canonical(True) is True and canonical("1") == "1" and canonical(None) is None
    assert canonical(0.5) == canonical(Decimal("0.50")) == ("decimal", "0.5")
    assert canonical(float("nan")) == ("float", "nan")
    assert canonical(float("-inf")) == ("float", "-inf")
    assert canonical(Decimal("-Infinity")) == ("decimal", "-Infinity")
    naive = dt.datetime(1970, 1, 1, 0, 0, 1)
    assert canonical(naive) == canonical(naive.replace(tzinfo=UTC)) == ("datetime", 1_000_000)
    assert type(canonical(naive)[1]) is int  # (its repr is what the row hash reads)
    tiny = Decimal("1.00000000000000000001E-20")
    assert canonical(tiny) == ("decimal", "0.0000000000000000000100000000000000000001")
    assert canonical(dt.date(2024, 1, 2)) == ("date", "2024-01-02")
    assert canonical(dt.time(1, 2)) == ("time", "01:02:00")
    assert canonical(bytearray(b"ab")) == ("bytes", b"ab")
    assert canonical({"b": 1.0, "a": 2}) == ("map", (("a", 2), ("b", 1)))
    assert canonical({2, 1}) == canonical(frozenset({1.0, 2})) == ("set", ("1", "2"))
    assert canonical([1.0, "x"]) == canonical((1, "x")) == ("list", (1, "x"))
    assert canonical(uuid.UUID(int=2)) == "00000000-0000-0000-0000-000000000002"
    assert canonical(dt.timedelta(1)) == ("repr", "datetime.timedelta(days=1)")


def test_row_hash_is_stable_and_tells_null_from_empty() -> None:
    row_hash = hashing.row_hash
    assert (
        row_hash([1, "a"]).hex() == hashing.hashlib.blake2b(b"(1, 'a')", digest_size=16).hexdigest()
    )
    assert row_hash([1, "a"]) == row_hash([1.0, "a"]) == row_hash([Decimal(1), "a"])
    assert len({row_hash([None]), row_hash([""]), row_hash([]), row_hash([0])}) == 4
    assert row_hash(["\ud800"]) != row_hash(["\ud801"])


def test_scope_ids_tell_every_part_of_a_scope_apart() -> None:
    scope_id = hashing.scope_id
    base = scope_id(["id"], ["a", "b"], {"k": 1}, True)
    assert len(base) == 32 and int(base, 16) >= 0
    assert base == scope_id(("id",), ("b", "a"), {"k": Decimal("1.0")}, True)
    others = {
        scope_id(["id", "a"], ["a", "b"], {"k": 1}, True),
        scope_id(["id"], ["a"], {"k": 1}, True),
        scope_id(["id"], None, {"k": 1}, True),
        scope_id(["id"], [], {"k": 1}, True),
        scope_id(["id"], ["a", "b"], {"k": 2}, True),
        scope_id(["id"], ["a", "b"], {"j": 1}, True),
        scope_id(["id"], ["a", "b"], {}, True),
        scope_id(["id"], ["a", "b"], {"k": 1}, False),
    }
    assert base not in others and len(others) == 8
    import hashlib
    import json

    text = json.dumps(
        {"key": ["id"], "columns": None, "where": {}, "delete_missing": False}, sort_keys=True
    )
    assert scope_id(["id"], None, {}, False) == hashlib.sha256(text.encode()).hexdigest()[:32]


def test_source_digest_counts_and_orders_rows() -> None:
    import hashlib

    def digest(scope: str, rows: list[tuple[Any, ...]], encoded: bool = False) -> str:
        made = hashing.SourceDigest(scope)
        if encoded:
            made.update_encoded(rows)
        else:
            made.update(iter(rows))
        return made.hexdigest()

    rows = [(1, "a"), (2, None)]
    one = digest("s", rows)
    expected = hashlib.sha256(b"s")
    for row in rows:
        expected.update(hashing.row_hash(row))
    assert one == f"rows:2:sha256:{expected.hexdigest()}"
    assert digest("s", [(1.0, "a"), (Decimal(2), None)]) == one
    assert digest("t", rows) != one and digest("s", rows[::-1]) != one
    encoded = digest("s", rows, encoded=True)
    text = hashlib.sha256(b"s" + b"(1, 'a')\n(2, None)\n").hexdigest()
    assert encoded == f"rows:2:sha256:{text}"
    both = hashing.SourceDigest("s")
    both.update(rows)
    both.update_encoded(rows)
    both.update_encoded([])
    assert both.rows == 4 and both.hexdigest().startswith("rows:4:")


# ------------------------------------------------------------ keys read back

KEYS: list[tuple[Any, Any]] = [  # a key value, and what reading its encoding gives
    (None, None),
    (True, True),
    (False, False),
    (0, 0),
    (-(2**63), -(2**63)),
    (2**63 - 1, 2**63 - 1),
    (2**63, 2**63),
    (-(2**70), -(2**70)),
    (7.0, 7),
    (Decimal("2.00"), 2),
    (1.5, 1.5),
    (-0.25, -0.25),
    (Decimal("0.10000000000000000001"), Decimal("0.10000000000000000001")),
    (Decimal("-12345678901234567.5"), Decimal("-12345678901234567.5")),
    ("", ""),
    ("é\ud800", "é\ud800"),
    (b"", b""),
    (b"\x00\xff", b"\x00\xff"),
    (
        dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC),
        dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC),
    ),
    (dt.datetime(1969, 12, 31, 23, 59, 59), dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    (dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
    (dt.date(1900, 1, 1), dt.date(1900, 1, 1)),
    (dt.time(23, 59, 59, 999999), dt.time(23, 59, 59, 999999)),
    (dt.time(0, 0, 1), dt.time(0, 0, 1)),
]


@pytest.mark.parametrize(("value", "expected"), KEYS, ids=_ids(KEYS))
def test_a_key_value_is_read_back(value: Any, expected: Any) -> None:
    data = encode_value(value)
    got, end = hashing.decode_key_value(b"\x00" + data + b"\x01\x01", 1)
    assert end == 1 + len(data)
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, dt.datetime):
        assert got.tzinfo is not None and got.utcoffset() == dt.timedelta(0)


def test_a_key_of_many_values_is_read_back() -> None:
    """Every value starts where the one before it ended, whatever its kind."""
    values = [value for value, _ in KEYS]
    data = b"".join(map(encode_value, values))
    assert hashing.decode_key(data, len(values)) == tuple(expected for _, expected in KEYS)
    assert hashing.decode_key(data, 2) == (None, True)
    assert hashing.decode_key(b"", 0) == ()
    assert hashing.decode_key_value(encode_value(5)) == (5, 9)  # from the start


@pytest.mark.parametrize(
    "value", [float("nan"), Decimal("Infinity"), {"a": 1}, dt.time(1, tzinfo=UTC)]
)
def test_a_key_only_repr_stands_for_cannot_be_read_back(value: Any) -> None:
    body = encode_value(value)[5:]
    with pytest.raises(ValueError, match="a key value of this kind cannot be read back") as error:
        hashing.decode_key(encode_value(value), 1)
    assert repr(body) in str(error.value)


# ------------------------------------------------------ decimals by their text


def _decimal_column(*tail: Any) -> list[Any]:
    """Integral Decimals first (pyarrow takes their scale, 0), then ``tail``: values of
    a longer scale, which pyarrow refuses at that scale, so they go by their text."""
    return [Decimal(i - 30) for i in range(64)] + list(tail)


DECIMAL_TAILS = [
    (Decimal("-0.5"), Decimal("1.50"), None, Decimal("-7.000"), Decimal("0.001")),
    (Decimal("123456789.012345"), Decimal("-99999999999999.9"), Decimal("0.1")),
    (Decimal("1.000000000000000000"), Decimal("-2.5")),  # a scale of 18
    (None, Decimal("-0.0"), Decimal("99999999999999.9"), None),
]


@pytest.mark.parametrize("tail", DECIMAL_TAILS)
def test_decimals_of_a_later_scale_go_by_their_text(
    tail: tuple[Any, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Decimal column whose first values do not give the scale of all is encoded from
    the values' texts (no Python per value), to each value's own bytes."""
    column = _decimal_column(*tail)
    expected = [encode_value(v) for v in column]
    made = hashing._decimal_texts(column)
    assert made is not None
    assert made.binary().to_pylist() == expected
    monkeypatch.setattr(hashing, "encode_value", lambda v: pytest.fail("value by value"))
    assert hashing.encode_values(column).to_pylist() == expected
    assert (hashing.values_column(column).hashes(0, len(column))
            == hashing.hash_encoded(pa.array(expected, pa.binary()))).all()  # fmt: skip


@pytest.mark.parametrize(
    "odd",
    [
        Decimal("1E+3"),  # an exponent
        Decimal("NaN"),
        Decimal("0.1234567890123456789"),  # a scale of 19
        Decimal("0.0000010000000000000"),  # a scale of 19, 10**19 beyond int64
        Decimal("12345678901234567890.5"),  # beyond int64
        Decimal("1234567890.1234567"),  # 17 digits, not integral: not a float's
    ],
)
def test_decimals_the_text_cannot_take_go_value_by_value(odd: Decimal) -> None:
    column = _decimal_column(odd, Decimal("0.5"))
    assert hashing._decimal_texts(column) is None
    assert hashing.encode_values(column).to_pylist() == [encode_value(v) for v in column]


# ------------------------------------------------------------ the per-row state


def _hashed(entries: list[tuple[bytes, int, int]]) -> Any:
    """HashedRows of (key encoding, key hash, digest) entries."""
    keys, hashes, digests = zip(*entries, strict=True) if entries else ((), (), ())
    return hashing.HashedRows(
        pa.array(list(keys), pa.binary()),
        np.array(hashes, np.uint64),
        np.array(digests, np.uint64),
    )


def _entries(state: Any) -> list[tuple[bytes, int, int]]:
    assert list(state.key_hashes) == sorted(state.key_hashes)
    assert len(state) == len(state.keys) == len(state.digests)
    return list(
        zip(
            state.keys.to_pylist(), map(int, state.key_hashes), map(int, state.digests), strict=True
        )
    )


def test_a_state_is_built_sorted_by_key_hash_and_the_last_entry_wins() -> None:
    from bulkops.sync.digests import RowDigests

    state = RowDigests.build(
        [
            _hashed([(b"c", 30, 3), (b"a", 10, 1)]),
            _hashed([]),
            _hashed([(b"b", 20, 2), (b"c", 30, 33)]),
        ]
    )
    assert _entries(state) == [(b"a", 10, 1), (b"b", 20, 2), (b"c", 30, 33)]
    assert state.keys.type == pa.binary()
    assert state.take_keys(np.array([2, 0])).to_pylist() == [b"c", b"a"]
    empty = RowDigests.build([])
    assert _entries(empty) == [] and empty.keys.type == pa.binary()
    assert empty.key_hashes.dtype == np.uint64 and empty.digests.dtype == np.uint64
    index, found = empty.lookup(np.array([5], np.uint64))
    assert list(index) == [0] and list(found) == [False]
    kept = state.without(np.array([False, True, False]))
    assert _entries(RowDigests.build([kept])) == [(b"a", 10, 1), (b"c", 30, 33)]


def test_a_delta_merge_keeps_its_last_word_for_each_key() -> None:
    """Entries changed, added before, between and after the state's hashes, a key given
    twice (the later wins), a key gone, a key gone and given again; then a second delta
    on the merged state (whose keys are picked, not copied)."""
    from bulkops.sync.digests import Delta, RowDigests

    state = RowDigests.build(
        [_hashed([(b"a", 10, 1), (b"b", 20, 2), (b"c", 30, 3), (b"d", 50, 5)])]
    )
    delta = Delta.of(
        [
            _hashed([(b"x", 5, 55), (b"b", 20, 22), (b"e", 25, 7), (b"e", 25, 77)]),
            _hashed([(b"f", 60, 6), (b"c", 30, 99)]),
        ],
        _hashed([(b"c", 30, 0), (b"d", 50, 0)]),
    )
    assert list(delta.gone) == [False] * 6 + [True, True] and len(delta) == 8
    merged = state.updated(delta)
    model = [(b"x", 5, 55), (b"a", 10, 1), (b"b", 20, 22), (b"e", 25, 77), (b"f", 60, 6)]
    assert _entries(merged) == model
    again = merged.updated(Delta.of([_hashed([(b"c", 30, 3), (b"z", 70, 7), (b"a", 10, 11)])],
                                    _hashed([(b"x", 5, 0)])))  # fmt: skip
    model = [
        (b"a", 10, 11),
        (b"b", 20, 22),
        (b"e", 25, 77),
        (b"c", 30, 3),
        (b"f", 60, 6),
        (b"z", 70, 7),
    ]
    taken = again.take_keys(np.array([3, 5, 0]))  # picked through the merged key index
    assert isinstance(taken, pa.Array) and taken.to_pylist() == [b"c", b"z", b"a"]
    assert _entries(again) == model
    assert again.take_keys(np.array([3, 5])).to_pylist() == [b"c", b"z"]
    assert state.updated(Delta.of([])) is state


def test_a_delta_after_one_that_took_every_key() -> None:
    """A scope emptied by one delta and filled by the next (as the state is read back
    from a base and its deltas) gives the next delta's entries."""
    from bulkops.sync.digests import Delta, RowDigests

    state = RowDigests.build([_hashed([(b"a", 10, 1), (b"b", 20, 2)])])
    emptied = state.updated(Delta.of([], _hashed([(b"a", 10, 0), (b"b", 20, 0)])))
    assert _entries(emptied) == []
    emptied = state.updated(Delta.of([], _hashed([(b"a", 10, 0), (b"b", 20, 0)])))
    filled = emptied.updated(Delta.of([_hashed([(b"c", 30, 3), (b"a", 10, 4)])]))
    assert _entries(filled) == [(b"a", 10, 4), (b"c", 30, 3)]
    columns = ["id", "v"]
    parts = [
        *state.to_parts(columns),
        Delta.of([], _hashed([(b"a", 10, 0), (b"b", 20, 0)])).to_bytes(columns),
        Delta.of([_hashed([(b"c", 30, 3)])]).to_bytes(columns),
    ]
    stored = RowDigests.from_parts(parts, columns)
    assert stored is not None and _entries(stored.state) == [(b"c", 30, 3)]


def test_a_key_given_many_times_in_one_delta_keeps_its_last_entry() -> None:
    """The delta's entries are ordered by key hash with a stable sort: of a thousand
    keys each given twice, the second entry of every one is kept."""
    from bulkops.sync.digests import Delta, RowDigests

    rng = np.random.default_rng(5)
    hashes = rng.permutation(np.arange(1, 1001, dtype=np.uint64) * np.uint64(7919))
    first = [(b"k%d" % h, int(h), 1) for h in hashes]
    second = [(b"k%d" % h, int(h), 2) for h in rng.permutation(hashes)]
    merged = RowDigests.build([_hashed([(b"s", 3, 3)])]).updated(
        Delta.of([_hashed(first), _hashed(second)])
    )
    assert len(merged) == 1001 and set(map(int, merged.digests[1:])) == {2}


def test_deltas_merged_one_after_another_make_the_state_a_rebuild_makes() -> None:
    """Random deltas (changed, added and gone keys, some given twice, some gone that
    were never there) merged into a state one after another: the entries and the
    keys they pick are those of the state built from scratch; the keys of some
    entries, taken before all are, are theirs too; and so after four merges whose
    keys were not read in between."""
    from bulkops.sync.digests import Delta, RowDigests

    rng = np.random.default_rng(16)
    model = {int(h): int(h) % 1000 for h in rng.choice(2**40, 3000, replace=False)}
    state = RowDigests.build([_hashed([(b"k%d" % h, h, d) for h, d in model.items()])])
    unread = state
    for round_ in range(4):
        known = list(model)
        entries = [(h, round_ + 1) for h in rng.choice(known, 200, replace=False)]
        entries += [(int(h), 7) for h in rng.integers(2**40, 2**41, 100)]  # new keys
        entries += entries[:20]  # given twice: the later wins (the same here)
        gone = [int(h) for h in rng.choice(known, 50, replace=False)] + [2**42 + round_]
        delta = Delta.of(
            [_hashed([(b"k%d" % h, h, d) for h, d in entries])],
            _hashed([(b"k%d" % h, h, 0) for h in gone]),
        )
        for h, d in entries:
            model[int(h)] = d
        for h in gone:
            model.pop(h, None)
        state, unread = state.updated(delta), unread.updated(delta)
        expected = [(b"k%d" % h, h, model[h]) for h in sorted(model)]
        some = [0, len(model) // 2, len(model) - 1]
        assert state.take_keys(np.array(some)).to_pylist() == [expected[i][0] for i in some]
        assert _entries(state) == expected
    assert unread.take_keys(np.array(some)).to_pylist() == [expected[i][0] for i in some]
    assert _entries(unread) == expected


# --------------------------------------------------------- the digests, by hand

M64 = 2**64 - 1


def _mix_int(x: int) -> int:
    """splitmix64's finalizer, on a Python int (the reference for ``hashing._mix``)."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _key_int(seed: int, j: int) -> int:
    return _mix_int((seed + j) & M64) | 1


def _h(value: bytes) -> int:
    """``h`` of one encoded value, word by word as hashing.py's comment describes it."""
    words = max(1, -(-len(value) // 8))
    padded = value.ljust(8 * words, b"\0")
    total = len(value) * hashing._LENGTH_KEY
    for j in range(words):
        word = int.from_bytes(padded[8 * j : 8 * j + 8], "little")
        total += _mix_int(word ^ _key_int(hashing._SEED, j))
    return _mix_int(total & M64)


def _digest(encodings: list[bytes]) -> int:
    total = len(encodings) * hashing._LENGTH_KEY
    for c, value in enumerate(encodings):
        total += _h(value) * _key_int(hashing._SEED_COLUMNS, c)
    return _mix_int(total & M64)


def _key_hash(encoding: bytes) -> int:
    if len(encoding) == 9 and encoding[0] == 2:
        return _mix_int(int.from_bytes(encoding[1:], "little"))
    return _h(encoding)


def test_the_constants_of_the_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seeds and the finalizer, pinned: stored digests were made with them. The
    position keys are made afresh (not taken from the cache other tests filled), and
    the cache grows to cover what is asked of it."""
    monkeypatch.setattr(hashing, "_position_keys", {})
    assert (hashing._SEED, hashing._SEED_COLUMNS, hashing._LENGTH_KEY) == (
        0x5BD1E9955BD1E995, 0x27D4EB2F165667C5, 0x9E3779B97F4A7C15
    )  # fmt: skip
    values = np.array([0, 1, 2**63, M64, 0x0123456789ABCDEF], np.uint64)
    assert [int(x) for x in hashing._mix(values)] == [_mix_int(int(v)) for v in values]
    assert _mix_int(1) == 0x5692161D100B05E5
    assert hashing._mix(values).dtype == np.uint64 and int(values[1]) == 1  # not in place
    keys = hashing._keys(0x1234, 70)
    assert [int(k) for k in keys] == [_key_int(0x1234, j) for j in range(70)]
    assert [int(k) for k in hashing._keys(0x1234, 3)] == [_key_int(0x1234, j) for j in range(3)]
    assert len(hashing._keys(0x99, 0)) == 0
    for count in (1, 64, 65, 200, 130, 1000):
        got = hashing._keys(_SEED_FOR_GROWTH, count)
        assert [int(k) for k in got] == [_key_int(_SEED_FOR_GROWTH, j) for j in range(count)]
    assert len(hashing._position_keys[_SEED_FOR_GROWTH]) < 4000
    hashed = hashing.hash_value_rows([(1, "a" * 30, 2.5)], 1)
    assert int(hashed.digests[0]) == _digest([encode_value(v) for v in (1, "a" * 30, 2.5)])


_SEED_FOR_GROWTH = 0x5EED


# Fixed-width encodings (a tag and a number): their words are made from the numbers,
# not read from laid-out bytes. Edge numbers: signs, int64's and int32's ends, a tag
# per row and payloads of every width in use (8: integers, floats, datetimes, scaled
# decimals; 4: dates, a text's length; 1: bools).
_I64_EDGES = [0, 1, -1, 2**63 - 1, -(2**63), 0x0123456789ABCDEF, -256, 255, 2**56, -(2**56)]
FIXED = [
    (2, np.array(_I64_EDGES, np.int64)),
    (np.array([2, 4, 8, 10, 2, 4, 8, 10, 2, 4], np.uint8), np.array(_I64_EDGES, np.int64)),
    (8, np.array(_I64_EDGES, np.int64).view(np.uint64)),
    (9, np.array([0, -1, 2**31 - 1, -(2**31), 19000, -719162], np.int32)),
    (6, np.array([0, 5, 2**32 - 1, 2**31, 255], np.uint32)),
    (1, np.array([0, 1, 1, 0], np.uint8)),
]


@pytest.mark.parametrize(("tags", "payload"), FIXED, ids=[str(i) for i in range(len(FIXED))])
def test_fixed_width_encodings_hash_from_their_numbers(tags: Any, payload: Any) -> None:
    """Each row's ``h`` is that of its bytes (the tag, then the little-endian number),
    by hand and by the path that reads laid-out bytes; also for a slice of the rows
    and with nulls (the null encoding's ``h``)."""
    n = len(payload)
    fixed = hashing._fixed(tags, payload, payload.dtype.itemsize)
    row_tags = [tags] * n if isinstance(tags, int) else [int(t) for t in tags]
    encodings = [bytes([t]) + v.astype(v.dtype.newbyteorder("<")).tobytes()
                 for t, v in zip(row_tags, payload, strict=True)]  # fmt: skip
    assert fixed.binary().to_pylist() == encodings
    assert [int(h) for h in fixed.hashes(0, n)] == [_h(e) for e in encodings]
    laid_out = np.frombuffer(b"".join(encodings), np.uint8)
    assert (fixed.hashes(0, n) == hashing._hash_fixed(laid_out, n, len(encodings[0]))).all()
    assert [int(h) for h in fixed.hashes(1, n - 2)] == [_h(e) for e in encodings[1:-1]]
    fixed.nulls = np.arange(n) % 3 == 1
    assert [int(h) for h in fixed.hashes(0, n)] == [
        _h(b"\x00") if i % 3 == 1 else _h(e) for i, e in enumerate(encodings)
    ]


@pytest.mark.parametrize(
    "values",
    [_I64_EDGES, [*_I64_EDGES, None], [1.0, -2.0, 2.5], [dt.datetime(2024, 1, 1, tzinfo=UTC)]],
    ids=["int64", "int64-null", "float", "datetime"],
)
def test_a_key_column_hashes_as_its_encodings(values: list[Any]) -> None:
    """A key of one int64 column is hashed from its numbers, as its encodings would
    be (``hash_keys``); other keys from their encodings."""
    rows = hashing.hash_columns([hashing.array_column(pa.array(values))], 1)
    expected = [_key_hash(encode_value(v)) for v in values]
    assert [int(h) for h in rows.key_hashes] == expected
    assert rows.keys.to_pylist() == [encode_value(v) for v in values]
    assert (rows.key_hashes == hashing.hash_keys(rows.keys)).all()


# Unscaled decimals (scale, numbers): the float test of integral quotients holds
# below 2**53; at and beyond it, the division decides.
SCALED = [
    (2, [0, 1, -1, 100, -100, 12345, -12345, 10**15 - 1, -(10**15 - 1), 9 * 10**15, -9 * 10**15]),
    (0, [2**53 - 1, -(2**53 - 1), 5, -5, 0]),
    (0, [2**53, -(2**53), 2**63 - 1, -(2**63), 7]),
    (1, [2**53 + 10, 2**62, -(2**62), 15, -15, 10**15 - 1]),
    (18, [1, -1, 10**15 - 1, -(10**15 - 1), 0]),
    (3, [2**53 - 8, -(2**53 - 8), 2**53 - 7]),
    (1, [10**15 + 1, 10]),  # 16 digits, not integral: not a float's
    (1, [2**53 + 1, 10]),  # the same beyond 2**53
]


@pytest.mark.parametrize(("scale", "numbers"), SCALED, ids=[str(i) for i in range(len(SCALED))])
def test_scaled_decimals_are_encoded_as_their_values(scale: int, numbers: list[int]) -> None:
    """decimal128 columns, each value encoded as ``encode_value`` encodes its Decimal
    (or, where one needs more than 15 digits and is not integral, no vectorized rule),
    whichever way the quotients were tested."""
    decimals = [Decimal(v).scaleb(-scale) for v in numbers]
    array = pa.array(decimals, pa.decimal128(38, scale))
    pairs = zip(decimals, numbers, strict=True)
    fits = all(d == d.to_integral_value() or abs(v) < 10**15 for d, v in pairs)
    made = hashing._decimal_array(array)
    if not fits:
        assert made is None
        return
    assert made is not None
    assert made.binary().to_pylist() == [encode_value(d) for d in decimals]
    with_null = hashing._decimal_array(pa.array([*decimals, None], pa.decimal128(38, scale)))
    assert with_null is not None
    assert with_null.binary().to_pylist()[:-1] == [encode_value(d) for d in decimals]


def test_scaled_decimals_agree_whichever_way_they_are_tested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random numbers and scales: the float test of integral quotients and the
    division (forced by moving the bound) give the same tags and payloads."""
    rng = np.random.default_rng(16)
    for scale in range(19):
        power = np.int64(10**scale)
        bound = 2**53 // 10**scale  # integral quotients whose numbers a float holds
        numbers = np.concatenate([
            rng.integers(-(10**15) + 1, 10**15, 3000),  # fifteen digits at most
            rng.integers(-bound, bound + 1, 1000) * power,  # integral, up to 2**53
            np.array([0, 1, -1, 10**15 - 1, -(10**15) + 1, bound * 10**scale]),
        ]).astype(np.int64)  # fmt: skip
        fast = hashing._scaled(numbers, power)
        monkeypatch.setattr(hashing, "_FLOAT_EXACT", 0)
        slow = hashing._scaled(numbers, power)
        monkeypatch.undo()
        assert fast is not None and slow is not None
        assert (fast.tags == 2).any() and (scale == 0 or (fast.tags == 4).any())
        assert (fast.tags == slow.tags).all() and (fast.payload == slow.payload).all()


def test_known_digests() -> None:
    """Digests of fixed rows, pinned: a change here without a new ENCODING_VERSION would
    leave stored states that no longer match their own rows."""
    rows = [(1, "a", Decimal("1.50")), (2, None, None)]
    hashed = hashing.hash_value_rows(rows, 1)
    assert [hex(int(d)) for d in hashed.digests] == ["0xd102bcab8835f162", "0x1645d137ef26de56"]
    assert [hex(int(k)) for k in hashed.key_hashes] == ["0x5692161d100b05e5", "0xdbd238973a2b148a"]
    assert [int(d) for d in hashed.digests] == [
        _digest([encode_value(v) for v in row]) for row in rows
    ]


FALLBACK: list[Any] = []


def _arrow_columns() -> list[pa.Array]:
    """A column of every Arrow type sync meets, with nulls and edge values (those with
    no vectorized rule, encoded value by value, in FALLBACK)."""

    def by_value(array: Any) -> Any:
        FALLBACK.append(array)
        return array

    ints = [0, 1, -1, None, 2**31, -(2**40), 7]
    tss = [0, -1, None, 1_700_000_000_123_456, 86_400_000_000]
    return [
        pa.array([True, None, False, True]),
        pa.array(ints, pa.int64()),
        pa.array([0, -128, 127, None], pa.int8()),
        by_value(pa.array([0, 2**64 - 1, None], pa.uint64())),  # beyond int64: value by value
        pa.array([0, 2**63 - 1, None], pa.uint64()),
        pa.array([0, 255, None], pa.uint8()),
        pa.array([1.0, 1.5, -0.0, None, float("nan"), float("inf"), float("-inf"), 2.0**62]),
        by_value(pa.array([1.5, 2.0**63, -(2.0**64), None])),  # integral beyond int64
        by_value(pa.array([2.0**63, 1.5])),  # the first float beyond int64
        by_value(pa.array([2**63, 1], pa.uint64())),  # the first uint64 beyond int64
        pa.array([0.25, 3.0, None], pa.float32()),
        pa.array(["", "a", None, "é€𝄞", "x" * 20], pa.string()),
        pa.array(["", "b", None, "long" * 9], pa.large_string()),
        pa.array([b"", b"\x00", None, b"\xff" * 17], pa.binary()),
        pa.array([b"", b"\x01", None], pa.large_binary()),
        pa.array([b"abc", None, b"\x00\x00\x00"], pa.binary(3)),
        pa.array(tss, pa.timestamp("us", "UTC")),
        pa.array(tss, pa.timestamp("us")),
        pa.array([t if t is None else t * 1000 for t in tss], pa.timestamp("ns", "Asia/Tokyo")),
        pa.array([t if t is None else t // 1000 for t in tss], pa.timestamp("ms")),
        pa.array([0, -1, None, 19_000], pa.date32()),
        pa.array([0, -86_400_000, None], pa.date64()),
        pa.array([Decimal("1.50"), Decimal("-2"), None, Decimal("0.01")], pa.decimal128(10, 2)),
        # more than 15 digits; a negative scale
        by_value(pa.array([Decimal("12345678901234567.89"), None], pa.decimal128(38, 2))),
        by_value(pa.array([Decimal("1E+3"), Decimal("-2E+3")], pa.decimal128(5, -3))),
        by_value(pa.array([Decimal("0.5"), None, Decimal("-7")], pa.decimal256(20, 1))),
        by_value(pa.array([Decimal(2**70), Decimal(-(2**66)), Decimal(1)], pa.decimal128(38, 0))),
        pa.array([0, 3_600_000_000, None], pa.time64("us")),
        pa.array([0, 3_600_000_000_000, None], pa.time64("ns")),
        pa.array([0, 59, None], pa.time32("s")),
        pa.array([1500, None, 86_399_999_999_999], pa.time64("ns")),  # below a microsecond
        pa.array(["a", "b", None, "a"]).dictionary_encode(),
        pa.array([None, None], pa.null()),
        by_value(pa.array([[1, 2], None, []])),
        pa.chunked_array([pa.array([1, None]), pa.array([3])]),
    ]


ARROW_COLUMNS = _arrow_columns()


@pytest.mark.parametrize("array", ARROW_COLUMNS, ids=[f"{i}" for i in range(len(ARROW_COLUMNS))])
def test_arrow_columns_encode_and_hash_as_their_values(array: Any) -> None:
    """Every Arrow type: the column's encodings are its values' (``encode_value``), its
    hashes the reference's, from its parts and from its bytes, in any block of rows,
    and as part of a row."""
    values = array.to_pylist()
    expected = [encode_value(v) for v in values]
    encoded = hashing.array_column(array)
    assert encoded is not None and len(encoded) == len(values)
    made = encoded.binary()
    assert made.type == pa.binary() and made.null_count == 0
    assert made.to_pylist() == expected
    assert hashing.encode_array(array).to_pylist() == expected
    reference = [_h(e) for e in expected]
    assert [int(h) for h in encoded.hashes(0, len(values))] == reference
    assert [int(h) for h in encoded.hashes(1, 2)] == reference[1:3]
    assert [int(h) for h in hashing.hash_encoded(made)] == reference
    key = pa.array(list(range(len(values))))
    hashed = hashing.hash_columns([hashing.array_column(key), encoded], 1)
    assert [int(d) for d in hashed.digests] == [
        _digest([encode_value(i), e]) for i, e in enumerate(expected)
    ]
    typed = hashing.array_column(array, fallback=False)
    vectorized = typed is not None
    assert vectorized == all(array is not odd for odd in FALLBACK)
    if not vectorized:
        assert hashing.encode_array(array, fallback=False) is None


@pytest.mark.parametrize("rows_per_block", [1, 3, 7, 1 << 14])
@pytest.mark.parametrize("bytes_per_block", [1, 20, 1 << 22])
def test_blocks_of_rows_hash_as_the_whole(
    rows_per_block: int, bytes_per_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values of every length up to 40 bytes (one width and mixed), texts with their tag
    and length, fixed-width columns with nulls, and whole rows: the same hashes in
    blocks of any size as the reference's one value at a time."""
    monkeypatch.setattr(hashing, "_BLOCK_ROWS", rows_per_block)
    monkeypatch.setattr(hashing, "_BLOCK_BYTES", bytes_per_block)
    rng = np.random.default_rng(41)
    mixed = [rng.bytes(n) for n in [*range(41), *range(40, -1, -3)]]
    assert [int(h) for h in hashing.hash_encoded(pa.array(mixed, pa.binary()))] == list(
        map(_h, mixed)
    )
    for size in (0, 1, 7, 8, 9, 15, 16, 17, 24, 33):
        same = [rng.bytes(size) for _ in range(11)]
        got = hashing.hash_encoded(pa.array(same, pa.binary()).slice(2))
        assert [int(h) for h in got] == [_h(v) for v in same[2:]]
        long = [rng.bytes(size + int(k)) for k in rng.integers(0, 20, 9)]
        got = hashing.hash_encoded(pa.chunked_array([pa.array(long[:4]), pa.array(long[4:])]))
        assert [int(h) for h in got] == [_h(v) for v in long]
    texts = pa.array([None if n == 5 else "é" * int(n) for n in rng.integers(0, 30, 25)]).slice(1)
    expected = [encode_value(t) for t in texts.to_pylist()]
    column = hashing.array_column(texts)
    assert [int(h) for h in column.hashes(0, len(texts))] == [_h(e) for e in expected]
    with_nulls = pa.array([None if i % 4 == 1 else i * 2**40 for i in range(30)], pa.int64())
    expected = [encode_value(v) for v in with_nulls.to_pylist()]
    column = hashing.array_column(with_nulls)
    assert [int(h) for h in column.hashes(3, 20)] == [_h(e) for e in expected[3:23]]
    rows = [(i, f"name {i}" * (i % 3), None if i % 5 else 1.5, Decimal(i) / 4) for i in range(40)]
    hashed = hashing.hash_value_rows(rows, 2)
    assert [int(d) for d in hashed.digests] == [_digest([encode_value(v) for v in r]) for r in rows]
    keys = [encode_value(r[0]) + encode_value(r[1]) for r in rows]
    assert hashed.keys.to_pylist() == keys
    assert [int(k) for k in hashed.key_hashes] == [_key_hash(k) for k in keys]


def test_key_hashes() -> None:
    """A key that is one integer hashes as the integer mixed (a bijection: no two integer
    keys share a hash); any other key, nulls among them, as its encoding."""
    ints = [encode_value(v) for v in (0, 1, -1, 2**63 - 1, -(2**63))]
    others = [encode_value(v) for v in ("a", None, 2**63, 1.5, b"x" * 8)]
    others.append(b"\x03" + bytes(8))  # nine bytes, not an integer's tag
    for keys in (ints, others, [*others, *ints], [*ints, *others]):
        got = hashing.hash_keys(pa.array(keys, pa.binary()))
        assert [int(h) for h in got] == [_key_hash(k) for k in keys]
        got = hashing.hash_keys(pa.array(keys, pa.large_binary()).slice(1))
        assert [int(h) for h in got] == [_key_hash(k) for k in keys[1:]]
    with_null = pa.array([ints[1], None, ints[2]], pa.binary())
    assert [int(h) for h in hashing.hash_keys(with_null)] == [
        _key_hash(ints[1]), _h(b""), _key_hash(ints[2])
    ]  # fmt: skip
    assert len(hashing.hash_keys(pa.array([], pa.binary()))) == 0
    one_byte = pa.array([encode_value(None), None], pa.binary())  # data of one byte
    assert [int(h) for h in hashing.hash_keys(one_byte)] == [_h(b"\x00"), _h(b"")]
    assert hashing.hash_keys(pa.array([], pa.binary())).dtype == np.uint64


def test_rows_of_values_and_their_columns() -> None:
    """Rows as tuples: no rows, ragged rows, and columns of every kind Python gives
    (each encoded as its values are, vectorized where pyarrow takes them)."""
    empty = hashing.hash_value_rows([], 1)
    assert empty.keys.type == pa.binary() and len(empty.keys) == 0
    assert empty.key_hashes.dtype == np.uint64 and len(empty.key_hashes) == 0
    assert empty.digests.dtype == np.uint64 and len(empty.digests) == 0
    with pytest.raises(ValueError):
        hashing.hash_value_rows([(1, "a"), (2,)], 1)
    moment = dt.datetime(2024, 1, 1, tzinfo=UTC)
    columns: list[list[Any]] = [
        [None, None],
        [1, 2**63],  # beyond int64: pyarrow refuses, value by value
        [1, None, 3],
        [1.5, None, 2.0],
        ["a", None],
        [b"a", None],
        [True, None, False],
        [moment, None, moment.replace(tzinfo=None)],
        [moment, moment + dt.timedelta(microseconds=1)],
        [moment],  # one row
        [dt.date(2024, 1, 1), None],
        [1, 1.5, Decimal("2.5"), "x"],
        [Decimal("1.5"), None, Decimal("NaN")],
        [Decimal(2**70), None, Decimal(1)],  # beyond int64, with a null
        [dt.time(1), None],
    ]
    for column in columns:
        expected = [encode_value(v) for v in column]
        assert hashing.encode_values(column).to_pylist() == expected
        kinds = hashing.column_types(column)
        assert type(None) not in kinds
        made = hashing.values_column(column, kinds)
        assert made.binary().type == pa.binary()
        assert made.binary().to_pylist() == expected
        assert [int(h) for h in made.hashes(0, len(column))] == [_h(e) for e in expected]
    assert hashing.column_types([None, 1, True, None]) == {int, bool}


def test_plain_columns() -> None:
    assert hashing.plain_column([1, None, 2], text=False).binary().to_pylist() == [
        _int(1), b"\x00", _int(2)
    ]  # fmt: skip
    assert hashing.plain_column(["a", None], text=True).binary().to_pylist() == [
        _sized(6, b"a"), b"\x00"
    ]  # fmt: skip
    assert hashing.plain_column(["a"], text=False) is None
    assert hashing.plain_column([None, 1.5], text=True) is None
    assert hashing.plain_column([1, True], text=False) is None
    assert hashing.plain_column([1, "a"], text=True) is None
    assert hashing.plain_column([1, 2**64], text=False) is None
    assert hashing.plain_column([None, None], text=True) is None
    assert hashing.plain_column(["a", 1], text=True) is None
    made = hashing.plain_column([Decimal("1.5"), None, 2], text=False)
    assert made.binary().to_pylist() == [encode_value(1.5), b"\x00", _int(2)]
    assert hashing.plain_column([Decimal("1.5"), 2.5], text=False) is None


# ------------------------------------------------------------ stored as parts


def test_a_state_is_stored_as_parts_and_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from bulkops.sync import digests as module
    from bulkops.sync.digests import Delta, RowDigests

    columns = ["id", "v"]
    entries = [(b"k%03d" % i, 10 * i + 5, i) for i in range(25)]
    state = RowDigests.build([_hashed(entries)])
    parts = state.to_parts(columns)
    assert len(parts) == 1
    stored = RowDigests.from_parts(parts, columns)
    assert stored is not None and (stored.parts, stored.delta_entries) == (1, 0)
    assert _entries(stored.state) == entries
    assert stored.state.key_hashes.dtype == np.uint64 and stored.state.digests.dtype == np.uint64
    # parts of PART_ROWS entries, and fewer where the keys are wide
    monkeypatch.setattr(RowDigests, "PART_ROWS", 10)
    parts = state.to_parts(columns)
    assert len(parts) == 3
    assert _entries(RowDigests.from_parts(parts, columns).state) == entries
    monkeypatch.setattr(RowDigests, "PART_ROWS", 200_000)
    # an entry: a key of 4 bytes and its offset (and one more offset for all), its hash
    # and digest, about 24.2 bytes; a part takes half the limit: 144 bytes, 5 entries
    monkeypatch.setattr(module, "SYNC_PART_BYTES", 288)
    parts = state.to_parts(columns)
    assert len(parts) == 5
    assert _entries(RowDigests.from_parts(parts, columns).state) == entries
    monkeypatch.setattr(module, "SYNC_PART_BYTES", 1)
    assert len(state.to_parts(columns)) == 25  # at least one entry a part
    monkeypatch.undo()
    # an empty state: one empty part
    empty = RowDigests.build([]).to_parts(columns)
    assert len(empty) == 1 and _entries(RowDigests.from_parts(empty, columns).state) == []
    # deltas after the base, counted
    first = Delta.of([_hashed([(b"new", 1, 7)])], _hashed([(b"k000", 5, 0)]))
    second = Delta.of([_hashed([(b"k001", 15, 99)])])
    both = [*state.to_parts(columns), first.to_bytes(columns), second.to_bytes(columns)]
    stored = RowDigests.from_parts(both, columns)
    assert stored is not None and (stored.parts, stored.delta_entries) == (3, 3)
    assert _entries(stored.state) == [(b"new", 1, 7), (b"k001", 15, 99), *entries[2:]]


def test_parts_of_another_kind_are_not_read() -> None:
    """A state made by another version of the encoding, for other columns, unreadable,
    unmarked, or with a base after a delta, is made again (None)."""
    from bulkops.sync import digests as module
    from bulkops.sync.digests import Delta, RowDigests

    columns = ["id", "v"]
    state = RowDigests.build([_hashed([(b"a", 10, 1)])])
    base = state.to_parts(columns)
    delta = Delta.of([_hashed([(b"b", 20, 2)])]).to_bytes(columns)
    assert RowDigests.from_parts([*base, delta], columns) is not None
    assert RowDigests.from_parts(base, ["id"]) is None
    assert RowDigests.from_parts(base, ["v", "id"]) is None
    assert RowDigests.from_parts([], columns) is None
    assert RowDigests.from_parts([delta], columns) is None  # no base
    assert RowDigests.from_parts([*base, delta, *base], columns) is None
    assert RowDigests.from_parts([b"not arrow"], columns) is None
    assert RowDigests.from_parts([*base, b""], columns) is None
    batch = pa.record_batch([pa.array([1])], names=["key"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    assert RowDigests.from_parts([bytes(sink.getvalue())], columns) is None  # unmarked
    odd = module._ipc([pa.array([b"a"])], ["key"], "other", columns)
    assert RowDigests.from_parts([*base, odd], columns) is None
    bad = batch.replace_schema_metadata({"bulkops_digests": "{not json"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bad.schema) as writer:
        writer.write_batch(bad)
    assert RowDigests.from_parts([bytes(sink.getvalue())], columns) is None
    meta = pa.ipc.open_stream(pa.py_buffer(base[0])).read_all().schema.metadata
    assert meta == {b"bulkops_digests": f'[{ENCODING_VERSION}, ["id", "v"], "base"]'.encode()}
    old = module._ipc([pa.array([b"a"]), pa.array([10], pa.uint64()), pa.array([1], pa.uint64())],
                      ["key", "key_hash", "digest"], "base", columns)  # fmt: skip
    assert RowDigests.from_parts([old], columns) is not None
    module_version = module.ENCODING_VERSION
    try:
        module.ENCODING_VERSION = module_version - 1
        older = state.to_parts(columns)
    finally:
        module.ENCODING_VERSION = module_version
    assert RowDigests.from_parts(older, columns) is None


def test_a_delta_of_entries_and_keys_gone() -> None:
    from bulkops.sync.digests import Delta

    empty = Delta.of([])
    assert len(empty) == 0 and empty.keys.type == pa.binary()
    assert empty.key_hashes.dtype == np.uint64 and empty.gone.dtype == bool
    assert empty.digests.dtype == np.uint64 and len(empty.gone) == len(empty.digests) == 0
    only_gone = Delta.of([], _hashed([(b"a", 1, 0)]))
    assert list(only_gone.gone) == [True] and only_gone.keys.to_pylist() == [b"a"]
    delta = Delta.of([_hashed([(b"b", 2, 9)]), _hashed([(b"c", 3, 8)])])
    assert list(delta.gone) == [False, False] and list(delta.digests) == [9, 8]
    assert delta.key_hashes.dtype == np.uint64 and delta.digests.dtype == np.uint64
    table = pa.ipc.open_stream(pa.py_buffer(only_gone.to_bytes(["id"]))).read_all()
    assert table.column_names == ["key", "key_hash", "digest", "gone"]
    assert table.column("gone").to_pylist() == [True]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 1000, 5000])
def test_a_lookup_finds_each_key_at_its_index(size: int) -> None:
    """Key hashes spread evenly, crowded into one bucket, and at both ends of the range:
    each held one is found at its index, no other is found."""
    from bulkops.sync.digests import RowDigests

    rng = np.random.default_rng(size)
    spread = rng.choice(2**62, size=size, replace=False).astype(np.uint64) * np.uint64(4)
    crowded = np.arange(1, 2 * size + 1, 2, dtype=np.uint64)  # all in the lowest bucket
    top = np.uint64(2**64 - 1) - crowded  # all in the highest
    for held in (spread, crowded, top, np.concatenate([crowded[: size // 2], spread[size // 2 :]])):
        held = np.unique(held)
        state = RowDigests(pa.array([b"k"] * len(held)), held, np.zeros(len(held), np.uint64))
        absent = np.concatenate([held + np.uint64(1), held - np.uint64(1)])
        absent = absent[~np.isin(absent, held)]
        wanted = np.concatenate([held, absent, np.array([0, 2**63, 2**64 - 1], np.uint64)])
        wanted = wanted[rng.permutation(len(wanted))]
        for _ in range(2):  # the buckets are made once, then reused
            index, found = state.lookup(wanted)
            assert list(found) == list(np.isin(wanted, held))
            assert list(index[found]) == list(np.searchsorted(held, wanted[found]))
            assert ((index >= 0) & (index < len(held))).all()


def test_record_batches_and_tables_hash_as_their_rows() -> None:
    """The batch's columns are taken by name, in the sync's order (the key's first)."""
    rows = [(3, "c", 1.5), (1, None, 2.0), (2, "b", None)]
    batch = pa.RecordBatch.from_pylist([{"v": r[2], "name": r[1], "id": r[0]} for r in rows])
    expected = hashing.hash_value_rows(rows, 1)
    for source in (batch, pa.Table.from_batches([batch, batch.slice(0, 0)])):
        got = hashing.hash_record_batch(source, ["id", "name", "v"], 1)
        assert got.keys.to_pylist() == expected.keys.to_pylist()
        assert list(got.digests) == list(expected.digests)
        assert list(got.key_hashes) == list(expected.key_hashes)
    wide = hashing.hash_record_batch(batch, ["id", "name", "v"], 2)
    assert wide.keys.to_pylist() == [encode_value(r[0]) + encode_value(r[1]) for r in rows]


def test_digests_need_numpy_pyarrow_and_xxhash(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bulkops.sync.digests import digests_available

    assert digests_available()
    for module in ("numpy", "pyarrow", "xxhash"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # import raises ImportError
            assert not digests_available()


def test_datetime_and_decimal_columns_are_encoded_without_python_per_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Datetimes (aware, in any zone, or naive) and decimal128 arrays of scale 0 to 18,
    sliced or not, negative or not: vectorized, to each value's own bytes; a scale of
    19 (10**19 is beyond int64) or numbers beyond int64 go value by value."""
    import zoneinfo

    moment = dt.datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
    datetimes = [
        [moment, moment + dt.timedelta(microseconds=1), moment - dt.timedelta(days=20000)],
        [m.astimezone(zoneinfo.ZoneInfo("Europe/Oslo")) for m in (moment, moment.replace(hour=3))],
        [moment.replace(tzinfo=None), dt.datetime(1900, 1, 1)],
    ]
    scale_18 = [Decimal("1.000000000000000000"), Decimal("-0.000000000000000001")]
    cents = [Decimal("-1.25"), None, Decimal("2.50"), Decimal("-0.01")]
    decimals = [
        pa.array([Decimal(7), Decimal(-3), None], pa.decimal128(10, 0)),
        pa.array(scale_18, pa.decimal128(38, 18)),
        pa.array(cents, pa.decimal128(9, 2)).slice(1),
    ]
    expected = [[encode_value(v) for v in c] for c in datetimes]
    expected += [[encode_value(v) for v in a.to_pylist()] for a in decimals]
    with monkeypatch.context() as patch:
        patch.setattr(hashing, "encode_value", lambda v: pytest.fail("value by value"))
        got = [hashing.values_column(c).binary().to_pylist() for c in datetimes]
        got += [hashing.array_column(a, fallback=False).binary().to_pylist() for a in decimals]
    assert got == expected
    for odd in (
        pa.array([Decimal("0.5")], pa.decimal128(38, 19)),
        pa.array([Decimal(2**64), Decimal(1)], pa.decimal128(38, 0)),
        pa.array([Decimal(-(2**63) - 1)], pa.decimal128(38, 0)),
    ):
        assert hashing.array_column(odd, fallback=False) is None
        assert hashing.encode_array(odd).to_pylist() == [encode_value(v) for v in odd.to_pylist()]


def test_nanoseconds_before_1970_are_floored_as_a_datetimes_are() -> None:
    """A timestamp with a part below a microsecond before 1970 is the microsecond
    before it, from Arrow as from the value (a pandas Timestamp in dict rows): a cast
    truncates toward zero, and dict and Arrow digests of the row then differed."""
    pd = pytest.importorskip("pandas")
    nanos = [-1500, 1500, -1000, None, -(10**18) - 1]
    array = pa.array(nanos, pa.timestamp("ns", "UTC"))
    expected = [
        b"\x00" if n is None else encode_value(pd.Timestamp(n, unit="ns", tz="UTC")) for n in nanos
    ]
    assert expected[0] == b"\x08" + struct.pack("<q", -2)
    assert hashing.encode_array(array).to_pylist() == expected
    naive = pa.array(nanos, pa.timestamp("ns"))
    assert hashing.encode_array(naive).to_pylist() == expected


def test_an_empty_block_of_rows_has_no_hashes() -> None:
    for array in (pa.array(["a", None]), pa.array([1, None]), pa.array([[1], None])):
        column = hashing.array_column(array)
        for start in (0, 2):
            empty = column.hashes(start, 0)
            assert len(empty) == 0 and empty.dtype == np.uint64


def test_a_state_built_from_keys_given_many_times_keeps_their_last_entries() -> None:
    """Of a thousand keys each given twice (in parts, in any order), the second entry
    is kept: the sort by key hash is stable."""
    from bulkops.sync.digests import RowDigests

    rng = np.random.default_rng(9)
    hashes = rng.permutation(np.arange(1, 1001, dtype=np.uint64) * np.uint64(104729))
    first = [(b"k%d" % h, int(h), 1) for h in hashes]
    second = [(b"k%d" % h, int(h), 2) for h in rng.permutation(hashes)]
    state = RowDigests.build([_hashed(first), _hashed(second)])
    assert len(state) == 1000 and set(map(int, state.digests)) == {2}
    assert _entries(RowDigests.build([_hashed([])])) == []


def test_integer_keys_and_plain_columns_are_hashed_without_python_per_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Integer keys are mixed a column at a time (not hashed per key), also in a slice
    and beside other keys; columns of one Python type pyarrow takes (and datetimes with
    None among them) are encoded by pyarrow, not value by value."""
    ints = [encode_value(v) for v in (5, -5, 2**62, 0)]
    mixed = [*ints, encode_value("a"), None]  # (a null key last: its start is the end)
    expected = [_key_hash(k) for k in ints] + [_key_hash(encode_value("a")), _h(b"")]
    assert [int(h) for h in hashing.hash_keys(pa.array(mixed, pa.binary()))] == expected
    middle = pa.array(mixed, pa.binary()).slice(1, 4)
    assert [int(h) for h in hashing.hash_keys(middle)] == expected[1:5]
    moment = dt.datetime(2024, 1, 1, tzinfo=UTC)
    columns: list[list[Any]] = [
        [1, None, -(2**63)], [1.5, None, 2.0], ["a", None, ""], [b"a", None, b""],
        [True, None, False], [moment, None], [dt.date(2024, 1, 1), None], [moment, moment],
    ]  # fmt: skip
    expected_columns = [[encode_value(v) for v in c] for c in columns]
    with monkeypatch.context() as patch:
        patch.setattr(hashing, "hash_encoded", lambda _: pytest.fail("hashed per key"))
        got = hashing.hash_keys(pa.array(ints, pa.binary()).slice(1, 2))
        assert [int(h) for h in got] == expected[1:3]
        patch.setattr(hashing, "encode_value", lambda v: pytest.fail("value by value"))
        made = [hashing.values_column(c).binary().to_pylist() for c in columns]
    assert made == expected_columns


def test_rows_hash_alike_from_encoded_columns_and_their_bytes() -> None:
    rows = [(1, "a", 2.5), (2, None, None)]
    columns = [list(c) for c in zip(*rows, strict=True)]
    parts = [hashing.values_column(c) for c in columns]
    raw = [hashing.encode_values(c) for c in columns]
    assert isinstance(raw[0], pa.Array)
    for given in (parts, raw, [parts[0], raw[1], parts[2]]):
        hashed = hashing.hash_columns(given, 1)
        assert [int(d) for d in hashed.digests] == [
            _digest([encode_value(v) for v in r]) for r in rows
        ]
