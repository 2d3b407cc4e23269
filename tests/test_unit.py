"""Pure unit tests: planner, coercion, inference, retry policy (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

import bulkops
from bulkops.backends.base import Capabilities
from bulkops.errors import BusyError, ConstraintError, ConversionError, DeadlockError
from bulkops.plan import MAX_CHUNK_ROWS, ChunkPlanner, chunk_rows, chunked
from bulkops.retry import RetryPolicy
from bulkops.schema import COERCERS, ColumnCodec, ColumnSpec, TableSpec, coerce, infer_type

NoneType = type(None)
INT = ColumnCodec(frozenset({int, NoneType}), COERCERS["integer"])
TEXT = ColumnCodec(frozenset({str, NoneType}), COERCERS["text"])


def test_public_api_all_is_complete() -> None:
    public = {n for n in dir(bulkops) if not n.startswith("_")}
    modules = {"api", "backends", "errors", "execute", "plan", "report", "retry", "schema",
               "sources", "store", "cli", "sequence", "transaction", "bench", "events", "runlog",
               "sync", "testing"}  # fmt: skip
    assert public - modules - set(bulkops.__all__) == set()
    for name in bulkops.__all__:
        assert hasattr(bulkops, name), name


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


def test_planner_keeps_keyless_rows_in_input_order() -> None:
    raws = [{"id": None, "name": "x"}, {"id": 2, "name": "b"}, {"id": None, "name": "y"}]
    chunk = planner().prepare(raws, 0)
    assert chunk.rows == [(2, "b"), (None, "x"), (None, "y")]
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
    with pytest.raises(bulkops.SchemaError, match="did you mean 'email'"):
        spec.check_columns(["emial"])
    with pytest.raises(bulkops.SchemaError, match="more than once"):
        spec.check_columns(["id", "id"])
    bare = TableSpec("u", {"a": ColumnSpec("a")})
    with pytest.raises(bulkops.SchemaError, match="no primary key: pass key="):
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
        raise bulkops.ConnectionLostError("server closed the connection")

    def rollback(self) -> None:
        self.rolled_back = True

    def last_commit_succeeded(self) -> bool | None:
        self.asked += 1
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "raised"),
    [(True, None), (False, bulkops.ConnectionLostError), (None, bulkops.CommitUnknownError)],
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
        assert isinstance(caught.value, bulkops.TransientError) == (outcome is False)
    # COMMIT was sent once and the database was asked once, whatever the outcome.
    assert (backend.commits, backend.asked) == (1, 1)
