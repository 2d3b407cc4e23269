"""Hypothesis: every value type survives a write and a get_many, on every backend."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import bulkops
from conftest import needs

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
).filter(lambda v: not isinstance(v, str))  # a top-level str is JSON *text* by design
COLUMNS: dict[str, tuple[str, Any]] = {
    "i": ("integer", INT64),
    "f": ("float", st.floats(allow_nan=False, allow_infinity=False)),
    "d": ("decimal", st.decimals(allow_nan=False, allow_infinity=False, places=None)),
    "cents": (
        "decimal(14, 2)",
        st.decimals(min_value=-(10**12) + 1, max_value=10**12 - 1, places=2),
    ),
    "s": ("text", st.text()),  # NUL is filtered below where the backend refuses it
    "b": ("bytes", st.binary(max_size=64)),
    "flag": ("boolean", st.booleans()),
    "day": ("date", st.dates()),
    "naive": ("datetime", st.datetimes()),
    "aware": ("datetime", st.datetimes(timezones=offsets)),
    "doc": ("json", json_values),
}
rows = st.lists(
    st.fixed_dictionaries({name: st.none() | strategy for name, (_, strategy) in COLUMNS.items()}),
    min_size=1,
    max_size=30,
)
_ids = itertools.count(1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows)
@example(  # always: rows with NUL in text and in JSON beside a row without
    batch=[
        {**dict.fromkeys(COLUMNS), "s": "a\x00b"},
        {**dict.fromkeys(COLUMNS), "s": "fine", "doc": {"k": "nul \x00 inside"}},
        {**dict.fromkeys(COLUMNS), "s": "no nul", "i": 1},
    ]
)
def test_values_round_trip(db: bulkops.Store, batch: list[dict[str, Any]]) -> None:
    # DynamoDB's values have their own round trip in test_dynamodb.py.
    needs(db, "declared_columns", "no declared column types to round-trip through")
    if "roundtrip" not in _created.setdefault(id(db), set()):
        db.create_table(
            "roundtrip", {"id": "integer", **{n: t for n, (t, _) in COLUMNS.items()}}, key="id"
        )
        _created[id(db)].add("roundtrip")
    digits = db.capabilities.decimal_digits
    if digits is not None:
        # Decimals beyond the digits a decimal column keeps exactly are refused
        # (test_decimal_storage.py); the rest come back equal, not digit for digit.
        for row in batch:
            if row["d"] is not None and _significant(row["d"]) > digits:
                row["d"] = None
    written = [{"id": next(_ids), **row} for row in batch]
    # PostgreSQL refuses NUL in text and JSON: a row error (rejected, naming the row),
    # not a round trip; every other row of the batch still round-trips.
    refused = {r["id"] for r in written if not db.capabilities.text_nul and _has_nul(r)}
    report = db.upsert("roundtrip", written, on_error="isolate")
    assert report.inserted == len(written) - len(refused), report
    assert {r.key for r in report.rejections} == refused
    got = db.get_many("roundtrip", [r["id"] for r in written])
    assert set(got) == {r["id"] for r in written} - refused
    for row in written:
        if row["id"] in refused:
            continue
        back = got[row["id"]]
        if not db.capabilities.keeps_utc_offset:
            # timestamptz keeps the instant; naive datetimes are taken as UTC.
            row = {k: _as_utc(v) for k, v in row.items()}
        assert back == row
        for name, value in row.items():
            if isinstance(value, Decimal) and (digits is None or name == "cents"):
                assert back[name].as_tuple() == value.as_tuple() or value.is_zero(), name
            if isinstance(value, dt.datetime) and db.capabilities.keeps_utc_offset:
                assert back[name].utcoffset() == value.utcoffset()
            if value is not None:
                assert type(back[name]) is type(value), name


_created: dict[int, set[str]] = {}


def _as_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _significant(value: Decimal) -> int:
    return len("".join(map(str, value.as_tuple().digits)).strip("0")) or 1


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False
