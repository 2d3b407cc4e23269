"""Pure unit tests: planner, coercion, inference, retry policy (no database)."""

from __future__ import annotations

import datetime as dt
import pkgutil
from decimal import Decimal
from typing import Any

import pytest

import bulkops
from bulkops.backends.base import Capabilities
from bulkops.errors import BusyError, ConstraintError, ConversionError, DeadlockError
from bulkops.plan import MAX_CHUNK_ROWS, ChunkPlanner, chunk_rows, chunked
from bulkops.retry import Redrive, RetryPolicy
from bulkops.schema import COERCERS, ColumnCodec, ColumnSpec, TableSpec, coerce, infer_type

NoneType = type(None)
INT = ColumnCodec(frozenset({int, NoneType}), COERCERS["integer"])
TEXT = ColumnCodec(frozenset({str, NoneType}), COERCERS["text"])


def test_public_api_all_is_complete() -> None:
    public = {n for n in dir(bulkops) if not n.startswith("_")}
    modules = {m.name for m in pkgutil.iter_modules(bulkops.__path__)}
    assert public - (modules - {"errors", "events"}) == set(bulkops.__all__) - {"__version__"}
    for name in bulkops.__all__:
        assert hasattr(bulkops, name), name


def test_errors_live_in_their_namespace_with_an_error_suffix() -> None:
    errors = [
        v for v in vars(bulkops.errors).values()
        if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == "bulkops.errors"
    ]  # fmt: skip
    assert len(errors) > 15
    for error in errors:
        assert error.__name__.endswith("Error"), error
        assert issubclass(error, bulkops.errors.BulkError), error
        assert not hasattr(bulkops, error.__name__), f"{error.__name__} exported at the top"


# ------------------------------------------------------------------------ chunking


def test_chunk_rows_follows_the_parameter_limit() -> None:
    caps = Capabilities(name="x", max_params=32766)
    assert chunk_rows(caps, 6) == 5461
    assert chunk_rows(caps, 1) == MAX_CHUNK_ROWS
    assert chunk_rows(Capabilities(name="x", max_params=999), 10) == 99
    assert chunk_rows(Capabilities(name="x", max_rows_per_request=25), 3) == 25
    assert chunk_rows(caps, 6, requested=7) == 7
    with pytest.raises(ValueError):
        chunk_rows(caps, 6, requested=0)


def test_chunked_is_lazy() -> None:
    pulled = []

    def source():
        for i in range(10):
            pulled.append(i)
            yield i

    chunks = chunked(source(), 4)
    assert next(chunks) == [0, 1, 2, 3]
    assert pulled == [0, 1, 2, 3]
    assert list(chunks) == [[4, 5, 6, 7], [8, 9]]


# ------------------------------------------------------------------------ planner


def planner(**kw: Any) -> ChunkPlanner:
    return ChunkPlanner(("id", "name"), (INT, TEXT), kw.pop("key", ("id",)), mappings=True, **kw)


def test_planner_collapses_duplicates_last_wins_and_sorts_by_key() -> None:
    raws = [{"id": 3, "name": "c"}, {"id": 1, "name": "a"}, {"id": 3, "name": "C"},
            {"id": 2, "name": "b"}]  # fmt: skip
    chunk = planner().prepare(raws, start=100)
    assert chunk.rows == [(1, "a"), (2, "b"), (3, "C")]
    assert chunk.index == [1, 3, 2]
    assert chunk.duplicates == 1
    assert chunk.size == 4


def test_planner_rejects_rows_whose_key_has_no_value() -> None:
    raws = [{"id": None, "name": "x"}, {"id": 2, "name": "b"}, {"id": "", "name": "y"}]
    chunk = planner().prepare(raws, 0)
    assert chunk.rows == [(2, "b")] and chunk.index == [1]
    assert [(r.row, r.column) for r in chunk.rejections] == [(1, "id"), (3, "id")]
    assert all(r.reason.startswith("missing key: key column 'id'") for r in chunk.rejections)
    assert chunk.duplicates == 0


def test_planner_mixed_key_types_still_get_a_fixed_order() -> None:
    chunk = ChunkPlanner(("id",), (TEXT,), ("id",), mappings=True).prepare(
        [{"id": "b"}, {"id": 1}, {"id": "a"}], 0
    )
    assert len(chunk.rows) == 3 and chunk.rows == sorted(
        chunk.rows, key=lambda r: (type(r[0]).__name__, repr(r[0]))
    )


def test_planner_rejects_bad_rows_with_position_key_and_column() -> None:
    raws = [
        {"id": "x1", "name": "a"},
        {"id": 2, "name": "b", "extra": 1},
        ("not", "a mapping"),
        {"id": 4},  # missing column -> None
        {"id": "5", "name": 5},  # coerced
    ]
    chunk = planner().prepare(raws, start=10)
    assert chunk.rows == [(4, None), (5, "5")]
    rejected = {r.row: r for r in chunk.rejections}
    assert set(rejected) == {11, 12, 13}
    assert rejected[11].column == "id" and rejected[11].key == "x1"
    assert "not an integer" in rejected[11].reason
    assert rejected[12].column == "extra" and "unexpected column" in rejected[12].reason
    assert rejected[12].values == {"id": 2, "name": "b", "extra": 1}
    assert "not a mapping" in rejected[13].reason


def test_planner_with_explicit_columns_ignores_other_keys() -> None:
    chunk = planner(strict_width=False).prepare([{"id": 1, "name": "a", "other": 9}], 0)
    assert chunk.rows == [(1, "a")] and not chunk.rejections


def test_planner_tuples_of_the_wrong_width_are_rejected() -> None:
    p = ChunkPlanner(("id", "name"), (INT, TEXT), ("id",), mappings=False)
    chunk = p.prepare([(1, "a"), (2,), (3, "c", "x")], 0)
    assert chunk.rows == [(1, "a")]
    assert [r.reason for r in chunk.rejections] == [
        "row has 1 values for 2 columns (id, name)",
        "row has 3 values for 2 columns (id, name)",
    ]


# ----------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("integer", "42", 42),
        ("integer", " -7 ", -7),
        ("integer", "1e3", 1000),
        ("integer", 3.0, 3),
        ("integer", "", None),
        ("integer", True, 1),
        ("float", "2.5", 2.5),
        ("decimal", "1.10", Decimal("1.10")),
        ("decimal", 0.1, Decimal("0.1")),
        ("decimal", 5, Decimal(5)),
        ("boolean", "Yes", True),
        ("boolean", "f", False),
        ("boolean", 0, False),
        ("date", "2024-02-29", dt.date(2024, 2, 29)),
        ("datetime", "2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)),
        ("datetime", dt.date(2024, 1, 2), dt.datetime(2024, 1, 2)),
        ("json", '{"a": 1}', {"a": 1}),
        ("json", [1, 2], [1, 2]),
        ("bytes", "\\x00ff", b"\x00\xff"),
        ("text", 12, "12"),
        ("text", "", ""),
    ],
)
def test_coercion(kind: str, given: Any, expected: Any) -> None:
    assert coerce(given, ColumnSpec("c", kind)) == expected


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        ("integer", "1.5", "not an integer"),
        ("integer", 2**64, "64-bit"),
        ("integer", "abc", "not an integer"),
        ("float", "abc", "not a number"),
        ("decimal", "1,5", "not a decimal"),
        ("boolean", "maybe", "not a boolean"),
        ("date", "01/02/2024", "ISO date"),
        ("date", dt.datetime(2024, 1, 1, 10), "time of day"),
        ("datetime", "yesterday", "ISO 8601"),
        ("json", "{bad", "not valid JSON"),
        ("bytes", "plain text", "not bytes"),
        ("text", {"a": 1}, "not text"),
    ],
)
def test_coercion_errors_name_the_column(kind: str, given: Any, message: str) -> None:
    with pytest.raises(ConversionError, match=message) as caught:
        coerce(given, ColumnSpec("price", kind))
    assert caught.value.column == "price"


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "2", ""], "integer"),
        (["1", "2.5"], "decimal"),
        (["1e3", "2"], "decimal"),
        (["true", "false"], "boolean"),
        (["2024-01-01", "2024-01-02"], "date"),
        (["2024-01-01T10:00:00", "2024-01-02"], "datetime"),
        (["1", "x"], "text"),
        ([1, 2], "integer"),
        ([1, 2.5], "float"),
        ([Decimal("1.5"), 2], "decimal"),
        ([{"a": 1}], "json"),
        ([None, ""], "text"),
    ],
)
def test_infer_type(values: list[Any], kind: str) -> None:
    assert infer_type(values) == kind


def test_table_spec_keys_and_errors() -> None:
    spec = TableSpec(
        "t",
        {"id": ColumnSpec("id", "integer"), "email": ColumnSpec("email", "text")},
        primary_key=("id",),
        unique=(("email",),),
    )
    assert spec.resolve_key(None, "upsert") == ("id",)
    assert spec.resolve_key("email", "upsert") == ("email",)
    assert spec.is_unique(["email"]) and not spec.is_unique(["id", "email"])
    with pytest.raises(bulkops.errors.SchemaError, match="did you mean 'email'"):
        spec.check_columns(["emial"])
    with pytest.raises(bulkops.errors.SchemaError, match="more than once"):
        spec.check_columns(["id", "id"])
    bare = TableSpec("u", {"a": ColumnSpec("a")})
    with pytest.raises(bulkops.errors.SchemaError, match="no primary key: pass key="):
        bare.resolve_key(None, "delete")


# ------------------------------------------------------------------------- retry


def test_retry_policy_retries_transient_errors_with_full_jitter_backoff() -> None:
    waits: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise DeadlockError("deadlock detected", code="40P01")
        return "done"

    policy = RetryPolicy(
        attempts=5, base_delay=0.1, max_delay=0.3, sleep=waits.append, random=lambda: 1.0
    )
    retried = []
    assert policy.call(flaky, on_retry=lambda e, n, w: retried.append((n, w))) == "done"
    assert len(calls) == 4
    assert waits == [0.1, 0.2, 0.3]  # exponential, capped at max_delay
    assert [n for n, _ in retried] == [1, 2, 3]


def test_retry_jitter_is_full_range() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=100, random=lambda: 0.25)
    assert policy.delay(1) == 0.25 and policy.delay(4) == 2.0


def test_retry_gives_up_with_a_clear_error() -> None:
    waits: list[float] = []

    def busy() -> None:
        raise BusyError("database is locked")

    with pytest.raises(BusyError) as caught:
        RetryPolicy(attempts=3, sleep=waits.append).call(busy)
    assert caught.value.attempts == 3
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(waits) == 2


def test_redrive_goes_on_while_rounds_make_progress() -> None:
    waits: list[float] = []
    policy = RetryPolicy(
        attempts=2, max_stalled_rounds=3, base_delay=1.0, max_delay=100,
        sleep=waits.append, random=lambda: 1.0,
    )  # fmt: skip
    redrive = Redrive(policy)
    pending = 1000
    for _ in range(20):  # far more rounds than attempts, each taking one item
        assert redrive.settle(pending, pending - 1)
        pending -= 1
    assert waits == [1.0] * 20
    # no progress: the step climbs; progress steps it down by one; 3 stalls give up
    steps = [(5, 5), (5, 5), (5, 4), (4, 4), (4, 4)]
    assert [redrive.settle(sent, left) for sent, left in steps] == [True] * 5
    assert waits[20:] == [1.0, 2.0, 1.0, 2.0, 4.0]
    assert not redrive.settle(4, 4) and redrive.stalled == 3
    assert len(waits) == 25 and "3 round(s) in a row with no progress" in redrive.gave_up()
    assert RetryPolicy(attempts=5).stalled_rounds == 5  # default: as many as attempts
    with pytest.raises(ValueError, match="max_stalled_rounds"):
        RetryPolicy(max_stalled_rounds=0)


def test_retry_does_not_retry_data_errors() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise ConstraintError("UNIQUE constraint failed")

    with pytest.raises(ConstraintError):
        RetryPolicy(sleep=lambda s: None).call(bad)
    assert len(calls) == 1


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


class _LosesCommit:
    """A backend stub whose COMMIT loses the connection (for the pure commit logic)."""

    def __init__(self, outcome: bool | None) -> None:
        self.outcome = outcome
        self.rolled_back = False
        self.commits = 0
        self.asked = 0

    def commit(self) -> None:
        self.commits += 1
        raise bulkops.errors.ConnectionLostError("server closed the connection")

    def rollback(self) -> None:
        self.rolled_back = True

    def last_commit_succeeded(self) -> bool | None:
        self.asked += 1
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "raised"),
    [
        (True, None),
        (False, bulkops.errors.ConnectionLostError),
        (None, bulkops.errors.CommitUnknownError),
    ],
)
def test_a_lost_commit_is_resolved_before_any_retry(
    outcome: bool | None, raised: type[Exception] | None
) -> None:
    from bulkops.execute import commit_resolving

    backend: Any = _LosesCommit(outcome)
    if raised is None:
        # It committed after all: done, no error, no retry, nothing rolled back.
        assert commit_resolving(backend, "chunk 1") is None
        assert not backend.rolled_back
    else:
        with pytest.raises(raised) as caught:
            commit_resolving(backend, "chunk 1")
        # Only "it did not commit" may be retried (a TransientError).
        assert isinstance(caught.value, bulkops.errors.TransientError) == (outcome is False)
    # COMMIT was sent once and the database was asked once, whatever the outcome.
    assert (backend.commits, backend.asked) == (1, 1)


# ------------------------------------------------------------------------ JSON codec


def test_json_codec_round_trips_what_json_alone_would_lose() -> None:
    from bulkops.jsoncodec import dumps, from_json, loads, to_json

    value = {"price": Decimal("1.50"), "raw": b"\x00\xff", "tags": {"b", "a"}, "n": [1, (2, 3)]}
    assert to_json(value) == {
        "price": {"$decimal": "1.50"},
        "raw": {"$bytes": "AP8="},
        "tags": {"$set": ["a", "b"]},
        "n": [1, [2, 3]],
    }
    assert loads(dumps(value)) == {**value, "n": [1, [2, 3]]}
    assert from_json(2.5, "decimal") == Decimal("2.5")
    assert dumps({"t": "é"}) == '{"t": "é"}'
