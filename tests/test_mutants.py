"""Pure unit tests of the planner, the executor, the retry policy and the reports.

Written to kill the mutants that mutation testing (README, "Tests") left alive in
plan.py, execute.py, retry.py and report.py: each pins an exact count, order, message
or wait. The executor runs against ``FakeBackend``, an in-memory stand-in for the
Backend protocol (transactions, savepoints, refused rows, injected transient errors),
so no server is needed; the real backends are tested against real servers elsewhere.

Mutants left alive (``mutmut results``), all equivalent:

- plan ``prepare`` 2-6 (the fast ``map(self._encode, raws)`` broken): the TypeError
  sends the chunk down the row-by-row path, which uses the same encoder per row and
  gives the same chunk, only slower.
- plan ``_collapse_and_order`` 3 and 9-20 (the "already sorted" shortcut broken so it
  raises TypeError or answers False): the full path sorts an already strictly
  increasing chunk into the same order with no duplicates. (21, which could answer True
  for an unsorted chunk, is killed.)
- plan ``_collapse_and_order`` 27/30/31, ``_encode_slowly`` 43/47/48, ``values_of``
  8/11/12 (``zip(strict=True)`` relaxed): the sequences are equal in length by
  construction (index/rows of one chunk; a width checked just before).
- plan ``diagnose`` 8 (position 0 -> 1): callers use only the reason and column of
  the diagnosis, never its row number.
- execute ``_chunk_with_retry`` 20 (``in_savepoint=None``): falsy like False.
- execute ``_count_retry`` 1/2 (the default ``what="BEGIN"`` changed): every caller
  passes ``what``.
- retry ``call`` 1 (``or`` -> ``and`` in the before-sleep guard): tenacity always sets
  the outcome and the next action before it calls ``before_sleep``.
- report ``RejectsFile.__init__`` 3 (``_owns = None``): falsy like False.
- report ``RejectsFile._stream`` 12 (``"UTF-8"`` for ``"utf-8"``): the same codec.

``_run_parallel`` 11 (the chunk of a finished future lost) ends in a time-out, which
counts as detected; so may retry ``call`` 20 (no stop condition) on a busy machine.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bulkops.backends.base import (
    NO_TIMEOUTS,
    Capabilities,
    ChunkCounts,
    RowFailures,
    Timeouts,
    WriteOp,
)
from bulkops.errors import (
    BulkError,
    CommitUnknownError,
    ConnectionLostError,
    ConstraintError,
    ConversionError,
    DataError,
    DeadlockError,
    ResumeError,
    SerializationError,
    ThrottledError,
    TooManyRejectsError,
)
from bulkops.events import ChunkDone, EventSink, Retried, RowsRejected
from bulkops.execute import Executor, numbered, resolve_on_error
from bulkops.plan import MAX_CHUNK_ROWS, ChunkPlanner, PreparedChunk, chunk_rows
from bulkops.report import Rejection, RejectsFile, Report, SyncReport, jsonable
from bulkops.retry import Redrive, RetryPolicy
from bulkops.schema import COERCERS, ColumnCodec, ColumnSpec, TableSpec

NoneType = type(None)
INT = ColumnCodec(frozenset({int, NoneType}), COERCERS["integer"])
TEXT = ColumnCodec(frozenset({str, NoneType}), COERCERS["text"])

TX = Capabilities(name="fake")
PARALLEL = Capabilities(name="fake", parallel_writes=True)
NO_TX = Capabilities(name="fake", transactions=False)
TABLE = TableSpec("t", {"id": ColumnSpec("id"), "name": ColumnSpec("name")}, ("id",))
OP = WriteOp("insert", TABLE, ("id", "name"), ("id",))


def no_wait(**kw: Any) -> RetryPolicy:
    waits: list[float] = kw.pop("waits", [])
    return RetryPolicy(sleep=waits.append, random=lambda: 1.0, **kw)


# ---------------------------------------------------------------- the fake backend


class FakeBackend:
    """An in-memory Backend: a committed table, an open transaction's rows, savepoints.

    ``bad``: ids refused with a ConstraintError whenever a write includes them (a
    key beyond 63 bits is refused with a DataError that names no column, as a driver
    would). ``fail``: {write number (1-based): error} raised by that write instead.
    ``log``: what was sent, in order.
    """

    def __init__(
        self,
        capabilities: Capabilities = TX,
        *,
        bad: Sequence[Any] = (),
        fail: dict[int, BaseException] | None = None,
        delay: float = 0.0,
        shared: FakeBackend | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.statements = 0
        self.retries = 0
        self.retry = no_wait()
        self.bad = set(bad)
        self.fail = fail if fail is not None else {}
        self.delay = delay
        self.log: list[Any] = [] if shared is None else shared.log
        self.table: dict[Any, tuple[Any, ...]] = {} if shared is None else shared.table
        self.lock = threading.Lock() if shared is None else shared.lock
        self.pending: list[tuple[Any, ...]] | None = None
        self.forks: list[FakeBackend] = []
        self.prepared: list[str] = []
        self.timeouts: Timeouts | None = None
        self.closed = False
        self.writes = 0
        self.extra_retries_per_write = 0 if shared is None else shared.extra_retries_per_write
        self.named: dict[Any, str] = {}  # id -> the column the database names when refusing it
        self.lost_commits = 0  # COMMITs that lose the connection (outcome unknown)
        self.threads: list[str] = [] if shared is None else shared.threads

    def fork(self) -> FakeBackend:
        fork = type(self)(self.capabilities, bad=self.bad, delay=self.delay, shared=self)
        self.forks.append(fork)
        return fork

    def prepare(self, op: WriteOp) -> None:
        self.prepared.append(op.kind)

    def begin(self, timeouts: Timeouts = NO_TIMEOUTS) -> None:
        self.log.append("begin")
        self.timeouts = timeouts
        self.pending = []

    def commit(self) -> None:
        self.log.append("commit")
        if self.lost_commits:
            self.lost_commits -= 1
            raise ConnectionLostError("server closed the connection")
        assert self.pending is not None
        with self.lock:
            for row in self.pending:
                self.table[row[0]] = row
        self.pending = None

    def rollback(self) -> None:
        self.log.append("rollback")
        self.pending = None

    def last_commit_succeeded(self) -> bool | None:
        return None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        assert self.pending is not None
        mark = len(self.pending)
        self.log.append("savepoint")
        try:
            yield
        except BaseException:
            del self.pending[mark:]
            self.log.append("rollback to savepoint")
            raise
        self.log.append("release")

    def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        assert op is OP, "the call's WriteOp reaches the backend"
        self.statements += 1
        self.retries += self.extra_retries_per_write
        self.writes += 1
        with self.lock:
            self.log.append([row[0] for row in rows])
            self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        error = self.fail.pop(self.writes, None)
        if error is not None:
            raise error
        for row in rows:
            if row[0] in self.bad:
                raise ConstraintError(f"duplicate key value {row[0]}", code="23505")
            if row[0] in self.named:
                raise DataError("value too long", code="22001", column=self.named[row[0]])
            if isinstance(row[0], int) and row[0] >= 2**63:
                raise DataError("value out of range", code="22003")
        if self.capabilities.transactions:
            assert self.pending is not None, "write outside a transaction"
            self.pending.extend(rows)
        else:
            with self.lock:
                for row in rows:
                    self.table[row[0]] = row
        return ChunkCounts(inserted=len(rows))

    def close(self) -> None:
        self.closed = True


def planner(**kw: Any) -> ChunkPlanner:
    return ChunkPlanner(("id", "name"), (INT, TEXT), kw.pop("key", ("id",)), mappings=True, **kw)


def rows(*ids: Any) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}"} for i in ids]


def chunks_of(data: list[Any], size: int) -> list[tuple[list[Any], int]]:
    return [(data[i : i + size], i) for i in range(0, len(data), size)]


def executor(backend: FakeBackend, **kw: Any) -> Executor:
    return Executor(
        backend,  # type: ignore[arg-type]
        kw.pop("op", OP),
        kw.pop("planner", planner()),
        kw.pop("report", Report("insert", "t")),
        retry=kw.pop("retry", no_wait()),
        **kw,
    )


def writes(backend: FakeBackend) -> list[list[Any]]:
    return [entry for entry in backend.log if isinstance(entry, list)]


def controls(backend: FakeBackend) -> list[str]:
    return [entry for entry in backend.log if isinstance(entry, str)]


# ---------------------------------------------------------------- plan: chunk sizes


def test_chunk_rows_boundaries_and_message() -> None:
    caps = Capabilities(name="x", max_params=100)
    assert chunk_rows(caps, 5, requested=1) == 1
    with pytest.raises(ValueError, match=r"^chunk_size must be at least 1$"):
        chunk_rows(caps, 5, requested=0)
    assert chunk_rows(caps, 0) == 100  # a zero-width row counts as one parameter
    assert chunk_rows(Capabilities(name="x", max_params=10), 20) == 1  # never below one
    assert chunk_rows(Capabilities(name="x"), 3) == MAX_CHUNK_ROWS
    assert chunk_rows(Capabilities(name="x", rows_per_chunk=500, max_rows_per_request=25), 3) == 500


# ---------------------------------------------------------------- plan: the planner


def test_clean_chunk_keeps_its_start_rows_and_identity_index() -> None:
    raws = rows(1, 2, 3)
    chunk = planner().prepare(raws, start=40)
    assert (chunk.start, chunk.raws, chunk.index) == (40, raws, [0, 1, 2])
    assert chunk.rows == [(1, "n1"), (2, "n2"), (3, "n3")]
    assert chunk.select([2, 0]) == [(3, "n3"), (1, "n1")]


def test_a_wide_int_passes_the_fast_path_and_only_the_diagnosis_refuses_it() -> None:
    # The fast encoder lets an int beyond 64 bits through (the driver refuses it);
    # only the slow path checks ranges, so a clean chunk must not take it.
    big = 2**70
    p = planner()
    chunk = p.prepare(rows(big), 0)
    assert chunk.rows == [(big, f"n{big}")] and chunk.rejections == []
    # In a chunk that takes the row-by-row path, the good rows still use the fast encoder.
    chunk = p.prepare([*rows(big), {"id": "x", "name": "a"}], 7)
    assert chunk.rows == [(big, f"n{big}")]
    assert (chunk.start, chunk.raws[1], chunk.index) == (7, {"id": "x", "name": "a"}, [0])
    assert [r.row for r in chunk.rejections] == [9]
    found = p.diagnose({"id": big, "name": "a"})
    assert found is not None and found.column == "id" and "64-bit" in found.reason
    assert p.diagnose({"id": 1, "name": "a"}) is None


def test_row_by_row_index_points_into_raws() -> None:
    chunk = planner(key=()).prepare([{"id": "x"}, *rows(5, 4)], 0)
    assert chunk.rows == [(5, "n5"), (4, "n4")]  # no key: input order
    assert chunk.index == [1, 2]


def test_a_chunk_sorted_except_for_one_pair_is_sorted() -> None:
    chunk = planner().prepare(rows(1, 3, 2, 4), 0)
    assert [r[0] for r in chunk.rows] == [1, 2, 3, 4]
    assert chunk.index == [0, 2, 1, 3]


def test_keys_sort_by_value_not_by_text() -> None:
    chunk = planner().prepare(rows(10, 9, 2, 2), 0)
    assert [r[0] for r in chunk.rows] == [2, 9, 10]
    assert chunk.duplicates == 1


def test_mixed_key_types_sort_by_type_name_then_repr() -> None:
    p = ChunkPlanner(
        ("id",), (ColumnCodec(frozenset({int, str}), lambda v: v),), ("id",), mappings=True
    )
    chunk = p.prepare([{"id": "a"}, {"id": 2}, {"id": 10}], 0)
    assert chunk.rows == [(10,), (2,), ("a",)]
    assert chunk.index == [2, 1, 0]


def test_composite_keys_with_a_none_part_are_missing_keys_never_collapsed() -> None:
    p = ChunkPlanner(("a", "b", "v"), (INT, INT, TEXT), ("a", "b"), mappings=True)
    raws = [
        {"a": 2, "b": None, "v": "x"},
        {"a": 2, "b": 1, "v": "y"},
        {"a": 2, "b": None, "v": "z"},
        {"a": 1, "b": 5, "v": "w"},
        {"a": 2, "b": 1, "v": "Y"},
    ]
    chunk = p.prepare(raws, 0)
    # A key given without a value is a missing key: those rows are rejected, each one,
    # and never collapse with each other.
    assert chunk.rows == [(1, 5, "w"), (2, 1, "Y")]
    assert chunk.index == [3, 4]
    assert chunk.duplicates == 1
    assert [r.row for r in chunk.rejections] == [1, 3]
    assert all("missing key" in r.reason for r in chunk.rejections)
    assert p.key_from_values(raws[1]) == (2, 1)


def test_a_planner_without_a_key_keeps_every_row_in_order() -> None:
    chunk = planner(key=()).prepare(rows(3, 1, 3), 0)
    assert chunk.rows == [(3, "n3"), (1, "n1"), (3, "n3")] and chunk.duplicates == 0
    assert planner(key=()).key_from_values({"id": 1}) is None


def test_custom_encoder_rejections_keep_its_message_and_code() -> None:
    def encode(row: Any) -> tuple[Any, ...]:
        if row["id"] == 2:
            raise ValueError(f"bad item {row['id']}")
        if row["id"] == 3:
            raise ConversionError("refused by the encoder", code="E1", column="name")
        return (row["id"], row)

    p = ChunkPlanner(("id", "name"), (INT, TEXT), ("id",), mappings=True, encode=encode)
    chunk = p.prepare(rows(1, 2, 3), 0)
    assert chunk.rows == [(1, {"id": 1, "name": "n1"})]
    two, three = chunk.rejections
    assert (two.row, two.key, two.reason, two.column, two.code) == (2, 2, "bad item 2", None, None)
    assert (three.reason, three.column, three.code) == ("refused by the encoder", "name", "E1")


def test_a_codec_conversion_error_is_named_after_its_column_and_keeps_its_code() -> None:
    def refuse(value: Any) -> Any:
        if value == "bad":
            raise ConversionError("not allowed here", code="C9")
        return value

    strict = ColumnCodec(frozenset({NoneType}), refuse)
    named = ColumnCodec(frozenset({NoneType}), lambda v: (_ for _ in ()).throw(
        ConversionError("mine", column="own")))  # fmt: skip
    p = ChunkPlanner(("id", "name"), (INT, strict), ("id",), mappings=True)
    (rejection,) = p.prepare([{"id": 1, "name": "bad"}], 0).rejections
    assert (rejection.column, rejection.code, rejection.reason) == (
        "name",
        "C9",
        "not allowed here",
    )
    p = ChunkPlanner(("id", "name"), (INT, named), ("id",), mappings=True)
    (rejection,) = p.prepare([{"id": 1, "name": "x"}], 0).rejections
    assert rejection.column == "own"  # a column the codec named is kept


def test_slow_path_messages() -> None:
    p = planner()
    chunk = p.prepare([7, {"id": 1, "name": "a", "x": 1, "y": 2}], 0)
    assert [r.reason for r in chunk.rejections] == [
        "row is a int, not a mapping",
        "unexpected column(s) 'x', 'y'; this call writes id, name (the first row's "
        "columns, or columns=)",
    ]
    assert chunk.rejections[0].values == 7 and chunk.rejections[0].key is None
    tuples = ChunkPlanner(("id", "name"), (INT, TEXT), ("id",), mappings=False)
    chunk = tuples.prepare([7, "ab", ("x", "a"), (1, "a")], 0)
    assert chunk.rows == [(1, "a")]
    assert [(r.row, r.reason, r.column) for r in chunk.rejections] == [
        (1, "row is a int, not a sequence", None),
        (2, "row is a str, not a sequence", None),
        (3, "'x' is not an integer", "id"),
    ]
    assert chunk.rejections[2].values == {"id": "x", "name": "a"}
    assert chunk.rejections[2].key == "x"


def test_without_strict_width_extra_columns_are_not_the_reason() -> None:
    p = planner(strict_width=False)
    (rejection,) = p.prepare([{"id": "x", "name": "a", "other": 1}], 0).rejections
    assert rejection.column == "id" and rejection.reason == "'x' is not an integer"


def test_values_of() -> None:
    p = planner()
    assert p.values_of(5) == 5
    assert p.values_of("ab") == "ab"
    assert p.values_of((1, "a")) == {"id": 1, "name": "a"}
    assert p.values_of((1,)) == [1]
    assert p.values_of({"id": 1}) == {"id": 1}


# ---------------------------------------------------------------- retry


def test_retry_policy_bounds_and_messages() -> None:
    RetryPolicy(attempts=1, base_delay=0, max_delay=0, max_stalled_rounds=1)
    with pytest.raises(ValueError, match=r"^RetryPolicy\.attempts must be at least 1$"):
        RetryPolicy(attempts=0)
    for bad in ({"base_delay": -1}, {"max_delay": -1}, {"base_delay": -1, "max_delay": 1}):
        with pytest.raises(ValueError, match=r"^RetryPolicy delays must not be negative$"):
            RetryPolicy(**bad)
    with pytest.raises(ValueError, match=r"^RetryPolicy\.max_stalled_rounds must be at least 1$"):
        RetryPolicy(max_stalled_rounds=0)
    assert RetryPolicy(attempts=4, max_stalled_rounds=2).stalled_rounds == 2


def test_on_retry_gets_the_error_the_attempt_and_the_wait() -> None:
    errors = [DeadlockError("d1"), SerializationError("s2")]
    seen: list[tuple[Any, int, float]] = []

    def flaky() -> int:
        if errors:
            raise errors.pop(0)
        return 7

    first, second = errors
    policy = RetryPolicy(attempts=3, base_delay=0.5, sleep=lambda s: None, random=lambda: 0.5)
    assert policy.call(flaky, on_retry=lambda e, n, w: seen.append((e, n, w))) == 7
    assert seen == [(first, 1, 0.25), (second, 2, 0.5)]


def test_give_up_message_depends_on_attempts() -> None:
    def busy() -> None:
        raise ThrottledError("slow down")

    with pytest.raises(ThrottledError) as caught:
        RetryPolicy(attempts=1).call(busy)
    assert caught.value.message == "slow down" and caught.value.attempts is None
    with pytest.raises(ThrottledError) as caught:
        no_wait(attempts=2).call(busy)
    assert caught.value.message == "slow down (gave up after 2 attempts)"
    assert caught.value.attempts == 2

    def inner_gave_up() -> None:
        error = ThrottledError("inner (gave up after 5 attempts)")
        error.attempts = 5
        raise error

    with pytest.raises(ThrottledError) as caught:
        no_wait(attempts=2).call(inner_gave_up)
    assert caught.value.message == "inner (gave up after 5 attempts)"
    assert caught.value.attempts == 5


def test_redrive_counts_from_zero() -> None:
    waits: list[float] = []
    redrive = Redrive(no_wait(attempts=9, max_stalled_rounds=2, base_delay=1.0, waits=waits))
    assert (redrive.rounds, redrive.stalled, redrive.waits) == (0, 0, 0)
    assert redrive.settle(10, 10)  # no progress: step 1
    assert (redrive.rounds, redrive.stalled, redrive.waits) == (1, 1, 1)
    assert redrive.settle(10, 9)  # progress: back to step 0, waits as step 1
    assert (redrive.rounds, redrive.stalled, redrive.waits) == (2, 0, 2)
    assert redrive.settle(9, 9)  # step 1 again
    assert waits == [1.0, 1.0, 1.0]
    assert not redrive.settle(9, 9)
    assert (redrive.rounds, redrive.stalled, redrive.waits) == (4, 2, 3)
    assert redrive.gave_up() == (
        "gave up after 2 round(s) in a row with no progress, 4 round(s) in all"
    )


def test_redrive_first_progress_round_waits_the_base_step() -> None:
    waits: list[float] = []
    redrive = Redrive(no_wait(base_delay=1.0, max_delay=100, waits=waits))
    assert redrive.settle(5, 4) and redrive.settle(4, 4) and redrive.settle(4, 4)
    assert waits == [1.0, 1.0, 2.0]


# ---------------------------------------------------------------- execute: helpers


def test_resolve_on_error_and_numbered() -> None:
    assert resolve_on_error("raise", [], 5) == "raise"
    assert resolve_on_error(None, None, None) == "raise"
    assert resolve_on_error(None, [], None) == "isolate"
    assert resolve_on_error(None, None, 0) == "isolate"
    assert list(numbered([[1, 2], [3], [4, 5, 6]])) == [([1, 2], 0), ([3], 2), ([4, 5, 6], 3)]


def test_executor_validates_its_options() -> None:
    with pytest.raises(ValueError, match=r"^on_error must be 'raise' or 'isolate', not 'skip'$"):
        executor(FakeBackend(), on_error="skip")
    with pytest.raises(ValueError, match=r"^max_rejects must not be negative$"):
        executor(FakeBackend(), max_rejects=-1)
    assert executor(FakeBackend(), max_rejects=0).max_rejects == 0


def test_workers_only_where_parallel_writes_are_allowed() -> None:
    assert executor(FakeBackend(PARALLEL), workers=3).workers == 3
    assert executor(FakeBackend(PARALLEL), workers=0).workers == 1
    assert executor(FakeBackend(PARALLEL)).workers == 1  # one unless asked
    assert executor(FakeBackend(TX), workers=3).workers == 1
    assert executor(FakeBackend(PARALLEL), workers=3, atomic=True).workers == 1
    assert executor(FakeBackend(PARALLEL), workers=3, nested=True).workers == 1


# ---------------------------------------------------------------- execute: one chunk per tx


def test_each_chunk_is_one_transaction_and_the_report_counts_it() -> None:
    backend = FakeBackend()
    backend.statements, backend.retries = 100, 10
    backend.extra_retries_per_write = 2  # e.g. re-driven requests inside the backend
    progress: list[tuple[int, int]] = []
    events: list[Any] = []
    checkpoints: list[tuple[Any, int]] = []
    timeouts = Timeouts(lock=1.5)

    def checkpoint(b: Any, chunk: PreparedChunk) -> None:
        checkpoints.append((b, chunk.start))
        assert backend.log[-1] != "commit"  # inside the chunk's transaction

    ex = executor(
        backend,
        progress=lambda r: progress.append((r.rows_in, r.chunks)),
        events=EventSink("insert", "t", [events.append]),
        checkpoint=checkpoint,
        timeouts=timeouts,
    )
    report = ex.run(chunks_of(rows(2, 1, 2, 3, 4), 3))
    assert report is ex.report
    assert backend.log == ["begin", [1, 2], "commit", "begin", [3, 4], "commit"]
    assert backend.prepared == ["insert"] and backend.timeouts == timeouts
    assert (report.rows_in, report.inserted, report.duplicates, report.chunks) == (5, 4, 1, 2)
    assert (report.statements, report.retries) == (2, 4)
    assert 0 <= report.elapsed < 30
    assert progress == [(3, 1), (5, 2)]
    assert checkpoints == [(backend, 0), (backend, 3)]
    done = [e for e in events if isinstance(e, ChunkDone)]
    assert [(e.first_row, e.rows, e.counts["inserted"], e.rejected) for e in done] == [
        (1, 3, 2, 0),
        (4, 2, 2, 0),
    ]
    assert all(e.report is report for e in done)
    assert report.ok and report.accounted == 5


def test_a_transient_error_reruns_the_chunk_and_is_counted() -> None:
    backend = FakeBackend(fail={2: DeadlockError("deadlock detected", code="40P01")})
    backend.retries = 0
    events: list[Any] = []
    waits: list[float] = []
    ex = executor(
        backend,
        events=EventSink("insert", "t", [events.append]),
        retry=no_wait(base_delay=0.5, waits=waits),
    )
    report = ex.run(chunks_of(rows(1, 2, 3, 4), 2))
    assert backend.log == [
        "begin", [1, 2], "commit", "begin", [3, 4], "rollback", "begin", [3, 4], "commit",
    ]  # fmt: skip
    assert sorted(backend.table) == [1, 2, 3, 4]
    assert (report.retries, report.inserted, report.statements) == (1, 4, 3)
    (retried,) = [e for e in events if isinstance(e, Retried)]
    assert (retried.what, retried.attempt, retried.wait) == ("rows 3-4", 1, 0.5)
    assert isinstance(retried.error, DeadlockError)
    assert waits == [0.5]


def test_a_bad_row_is_found_by_bisection_under_savepoints() -> None:
    backend = FakeBackend(bad=[3, 6])
    rejects: list[Any] = []
    events: list[Any] = []
    ex = executor(
        backend,
        on_error="isolate",
        rejects=RejectsFile(rejects),
        events=EventSink("insert", "t", [events.append]),
        timeouts=Timeouts(statement=9.0),
    )
    report = ex.run([(rows(*range(1, 9)), 10)])
    assert writes(backend) == [
        [1, 2, 3, 4, 5, 6, 7, 8],
        [1, 2, 3, 4], [1, 2], [3, 4], [3], [4],
        [5, 6, 7, 8], [5, 6], [5], [6], [7, 8],
    ]  # fmt: skip
    assert controls(backend)[:3] == ["begin", "rollback", "begin"]
    assert backend.timeouts == Timeouts(statement=9.0)
    assert sorted(backend.table) == [1, 2, 4, 5, 7, 8]
    assert (report.inserted, report.rejected, report.rows_in) == (6, 2, 8)
    assert [(r.row, r.key, r.code, r.column) for r in report.rejections] == [
        (13, 3, "23505", None),
        (16, 6, "23505", None),
    ]
    assert report.rejections[0].reason == "duplicate key value 3"
    assert report.rejections[0].values == {"id": 3, "name": "n3"}
    assert rejects == report.rejections
    (rejected,) = [e for e in events if isinstance(e, RowsRejected)]
    assert rejected.rejections == tuple(report.rejections)
    (done,) = [e for e in events if isinstance(e, ChunkDone)]
    assert (done.first_row, done.rows, done.rejected) == (11, 8, 2)
    assert not report.ok


def test_raise_mode_names_the_failing_row_and_keeps_the_error_class() -> None:
    backend = FakeBackend(bad=[5])
    backend.statements = 50
    ex = executor(backend)
    with pytest.raises(ConstraintError) as caught:
        ex.run(chunks_of(rows(1, 2, 3, 4, 5, 6), 3))
    error = caught.value
    assert (error.row, error.key, error.code, error.column) == (5, 5, "23505", None)
    assert error.values == {"id": 5, "name": "n5"}
    assert error.message == "duplicate key value 5"
    assert error.__cause__ is not None
    assert error.report is ex.report
    assert (ex.report.inserted, ex.report.chunks, ex.report.rows_in) == (3, 1, 3)
    assert ex.report.statements == 1 + 1 + 3  # chunk 1; chunk 2 whole, then [4], [5, 6], [5]
    assert sorted(backend.table) == [1, 2, 3]
    assert controls(backend)[-1] == "rollback"


def test_the_driver_refusing_a_row_without_a_column_gets_the_coercion_rules_reason() -> None:
    backend = FakeBackend()
    big = 2**70
    report = executor(backend, on_error="isolate").run([(rows(1, big), 0)])
    (rejection,) = report.rejections
    assert rejection.column == "id" and rejection.code == "22003"
    assert rejection.reason == f"{big} is outside the 64-bit integer range (value out of range)"


def test_planner_rejections_in_raise_mode_raise_a_conversion_error() -> None:
    backend = FakeBackend()
    with pytest.raises(ConversionError) as caught:
        executor(backend).run([([{"id": 1, "name": "a"}, {"id": "x", "name": "b"}], 4)])
    error = caught.value
    assert (error.row, error.key, error.column) == (6, "x", "id")
    assert error.message == "'x' is not an integer"
    assert writes(backend) == []


def test_max_rejects_stops_after_the_chunk_that_passes_it() -> None:
    backend = FakeBackend(bad=[2, 5, 6])
    ex = executor(backend, on_error="isolate", max_rejects=1)
    with pytest.raises(TooManyRejectsError) as caught:
        ex.run(chunks_of(rows(1, 2, 3, 4, 5, 6, 7), 3))
    assert ex.report.stopped == "stopped: 3 rows rejected, more than max_rejects=1"
    assert caught.value.message == ex.report.stopped
    assert [r.key for r in caught.value.rejections] == [2, 5, 6]
    assert (ex.report.chunks, ex.report.rejected, ex.report.inserted) == (2, 3, 3)
    assert caught.value.report is ex.report
    # exactly at the limit: no stop
    report = executor(FakeBackend(bad=[2]), on_error="isolate", max_rejects=1).run(
        chunks_of(rows(1, 2, 3), 2)
    )
    assert report.stopped is None and report.rejected == 1 and report.inserted == 2


# ---------------------------------------------------------------- execute: resume


def test_resume_skips_committed_chunks_and_checks_their_size() -> None:
    backend = FakeBackend()
    report = executor(backend, skip={0: 2}).run(chunks_of(rows(1, 2, 3, 4), 2))
    assert writes(backend) == [[3, 4]]
    assert (report.rows_in, report.skipped, report.inserted, report.chunks) == (4, 2, 2, 1)
    backend = FakeBackend()
    report = executor(backend, skip={0: 2, 2: 2}).run(chunks_of(rows(1, 2, 3, 4, 5), 2))
    assert writes(backend) == [[5]]
    assert (report.rows_in, report.skipped, report.inserted) == (5, 4, 1)
    with pytest.raises(ResumeError) as caught:
        executor(FakeBackend(), skip={2: 3}).run(chunks_of(rows(1, 2, 3, 4), 2))
    assert caught.value.message == (
        "cannot resume: the chunk at row 3 had 3 rows when it was committed and has 2 "
        "now; the input is not the same"
    )


# ---------------------------------------------------------------- execute: atomic


def test_atomic_is_one_transaction_with_a_savepoint_per_chunk() -> None:
    backend = FakeBackend()
    report = executor(backend, atomic=True, timeouts=Timeouts(lock=2.0)).run(
        iter(chunks_of(rows(1, 2, 3), 2))
    )
    assert backend.log == [
        "begin", "savepoint", [1, 2], "release", "savepoint", [3], "release", "commit",
    ]  # fmt: skip
    assert backend.timeouts == Timeouts(lock=2.0)
    assert (report.inserted, report.chunks, report.rows_in) == (3, 2, 3)
    assert (report.verb, report.table) == ("insert", "t")


def test_atomic_reruns_everything_on_a_transient_error_and_writes_rejects_once() -> None:
    failure = SerializationError("could not serialize")
    backend = FakeBackend(bad=[2], fail={4: failure})
    rejects: list[Any] = []
    events: list[Any] = []

    def source() -> Iterator[tuple[list[Any], int]]:
        yield from chunks_of(rows(1, 2, 3, 4), 2)  # streams once

    ex = executor(
        backend,
        atomic=True,
        on_error="isolate",
        rejects=RejectsFile(rejects),
        events=EventSink("insert", "t", [events.append]),
        retry=no_wait(base_delay=0.25),
    )
    ex.report.retries = 3  # counted before
    report = ex.run(source())
    # writes 1-3 narrow chunk 1 down ([1, 2], [1], [2]); write 4 ([3, 4]) fails: all again
    assert writes(backend) == [[1, 2], [1], [2], [3, 4], [1, 2], [1], [2], [3, 4]]
    assert controls(backend).count("begin") == 2 and controls(backend).count("commit") == 1
    assert sorted(backend.table) == [1, 3, 4]
    assert (report.inserted, report.rejected, report.rows_in, report.retries) == (3, 1, 4, 4)
    assert [r.key for r in rejects] == [2] and ex.rejects is not None
    (retried,) = [e for e in events if isinstance(e, Retried)]
    assert (retried.what, retried.attempt, retried.wait) == ("the atomic call", 1, 0.25)
    assert retried.error is failure
    assert (report.verb, report.table) == ("insert", "t")
    # isolate mode with nowhere to write rejects: they are only reported
    backend = FakeBackend(bad=[2])
    report = executor(backend, atomic=True, on_error="isolate").run(chunks_of(rows(1, 2), 2))
    assert (report.inserted, report.rejected) == (1, 1)


def test_a_commit_with_an_unknown_outcome_is_not_retried_and_names_what_was_committed() -> None:
    backend = FakeBackend()
    backend.lost_commits = 1
    with pytest.raises(CommitUnknownError) as caught:
        executor(backend, atomic=True).run(chunks_of(rows(1, 2, 3), 2))
    assert "during COMMIT of the atomic call and" in caught.value.message
    assert controls(backend).count("begin") == 1
    backend = FakeBackend()
    backend.lost_commits = 1
    with pytest.raises(CommitUnknownError) as caught:
        executor(backend).run(chunks_of(rows(1, 2, 3), 2))
    assert "during COMMIT of rows 1-2 and" in caught.value.message


def test_atomic_failure_commits_nothing_and_reports_only_the_rejects() -> None:
    backend = FakeBackend(bad=[2, 3])
    rejects: list[Any] = []
    ex = executor(
        backend, atomic=True, on_error="isolate", max_rejects=1, rejects=RejectsFile(rejects)
    )
    ex.report.retries = 2
    with pytest.raises(TooManyRejectsError) as caught:
        ex.run(chunks_of(rows(1, 2, 3, 4), 2))
    report = caught.value.report
    assert report is ex.report
    assert backend.table == {} and controls(backend)[-1] == "rollback"
    assert (report.rows_in, report.rejected, report.inserted, report.retries) == (2, 2, 0, 2)
    assert [r.key for r in report.rejections] == [2, 3]
    assert report.stopped == "stopped: 2 rows rejected, more than max_rejects=1"
    assert [r.key for r in rejects] == [2, 3]


def test_atomic_without_rejects_writes_no_file() -> None:
    target = io.StringIO()
    sink = RejectsFile(target)
    executor(FakeBackend(), atomic=True, rejects=sink).run(chunks_of(rows(1), 1))
    assert target.getvalue() == "" and sink.count == 0


# ---------------------------------------------------------------- execute: nested


def test_nested_writes_only_savepoints_and_no_transaction_control() -> None:
    backend = FakeBackend(bad=[2])
    backend.begin()
    backend.log.clear()
    report = executor(backend, nested=True, on_error="isolate").run(chunks_of(rows(1, 2, 3), 2))
    assert backend.log == [
        "savepoint", [1, 2], "rollback to savepoint",
        "savepoint", [1], "release", "savepoint", [2], "rollback to savepoint",
        "savepoint", [3], "release",
    ]  # fmt: skip
    assert (report.inserted, report.rejected) == (2, 1)


def test_nested_atomic_is_one_savepoint_and_a_failure_leaves_only_rejects() -> None:
    backend = FakeBackend(bad=[4])
    backend.begin()
    backend.log.clear()
    ex = executor(backend, nested=True, atomic=True)
    with pytest.raises(ConstraintError):
        ex.run(chunks_of(rows(1, 2, 3, 4), 2))
    assert backend.log[0] == "savepoint" and backend.log[-1] == "rollback to savepoint"
    assert backend.pending == []
    assert (ex.report.inserted, ex.report.rows_in, ex.report.chunks) == (0, 0, 0)
    ok = FakeBackend()
    ok.begin()
    report = executor(ok, nested=True, atomic=True).run(chunks_of(rows(1, 2, 3), 2))
    assert (report.inserted, report.chunks) == (3, 2)
    assert (report.verb, report.table) == ("insert", "t")
    assert ok.log.count("savepoint") == 3 and "commit" not in ok.log


# ---------------------------------------------------------------- execute: no transactions


def test_untransacted_row_failures_are_counted_and_listed() -> None:
    class Partial(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            assert op is OP
            self.statements += 1
            self.log.append([r[0] for r in rows])
            failures: list[tuple[int, BulkError]] = [
                (0, ThrottledError("throttled", code="T")),
                (2, ConstraintError("bad value", code="V")),
            ]
            raise RowFailures(ChunkCounts(upserted=len(rows) - 2), failures)

    backend = Partial(NO_TX)
    report = executor(backend, on_error="isolate").run([(rows(1, 2, 3, 4), 0)])
    assert (report.upserted, report.failed, report.rejected, report.rows_in) == (2, 1, 1, 4)
    assert [(r.row, r.reason, r.code) for r in report.failures] == [(1, "throttled", "T")]
    assert [(r.row, r.reason, r.code) for r in report.rejections] == [(3, "bad value", "V")]
    assert report.accounted == 4
    # raise mode: the data error wins, raised once the chunk is counted
    ex = executor(Partial(NO_TX))
    with pytest.raises(ConstraintError) as caught:
        ex.run([(rows(1, 2, 3, 4), 0)])
    assert (caught.value.row, caught.value.key) == (3, 3)
    assert (ex.report.upserted, ex.report.failed, ex.report.rejected) == (2, 1, 1)


def test_untransacted_failures_only_raise_the_first_transient_with_a_summary() -> None:
    class Throttled(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            assert op is OP
            self.statements += 1
            failures: list[tuple[int, BulkError]] = [
                (1, ThrottledError("still throttled")),
                (2, ThrottledError("again")),
            ]
            raise RowFailures(ChunkCounts(upserted=1), failures)

    ex = executor(Throttled(NO_TX))
    with pytest.raises(ThrottledError) as caught:
        ex.run([(rows(1, 2, 3), 5)])
    assert caught.value.message == (
        "2 row(s) of rows 6-8 not written: still throttled (report.failures lists them)"
    )
    assert (ex.report.upserted, ex.report.failed) == (1, 2)
    assert [r.row for r in ex.report.failures] == [7, 8]


def test_a_refused_request_is_resent_row_by_row() -> None:
    class Refuses(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            assert op is OP
            self.statements += 1
            self.log.append([r[0] for r in rows])
            if len(rows) > 1:
                raise DataError("request refused", code="ValidationException")
            if rows[0][0] == 2:
                raise ConstraintError("item too large", code="Big")
            if rows[0][0] == 3:
                raise RowFailures(ChunkCounts(), [(0, ThrottledError("throttled"))])
            return ChunkCounts(upserted=1)

    backend = Refuses(NO_TX)
    report = executor(backend, on_error="isolate").run([(rows(1, 2, 3, 4), 0)])
    assert writes(backend) == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert (report.upserted, report.rejected, report.failed) == (2, 1, 1)
    assert [(r.row, r.reason) for r in report.rejections] == [(2, "item too large")]
    assert [(r.row, r.reason) for r in report.failures] == [(3, "throttled")]

    class RefusesTogether(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            assert op is OP
            self.statements += 1
            if len(rows) > 1:
                raise DataError("request too large", code="Size")
            return ChunkCounts(upserted=1)

    with pytest.raises(DataError) as caught:
        executor(RefusesTogether(NO_TX), on_error="isolate").run([(rows(1, 2), 0)])
    assert caught.value.message == "request too large"


def test_untransacted_clean_chunk_and_planner_rejects() -> None:
    backend = FakeBackend(NO_TX)
    report = executor(backend, on_error="isolate").run(
        [([{"id": 1, "name": "a"}, {"id": "x", "name": "b"}], 0)]
    )
    assert backend.table == {1: (1, "a")}
    assert (report.inserted, report.rejected) == (1, 1)
    assert report.rejections[0].column == "id"


# ---------------------------------------------------------------- execute: workers


def test_parallel_workers_write_every_chunk_on_forks_and_sum_their_statements() -> None:
    backend = FakeBackend(PARALLEL, delay=0.02)
    backend.statements, backend.retries = 1000, 100
    backend.extra_retries_per_write = 1  # forks inherit it: every write re-sends once
    pulls: list[int] = []
    ex = executor(backend, workers=3)

    def source() -> Iterator[tuple[list[Any], int]]:
        for raws, start in chunks_of(rows(*range(40)), 2):
            pulls.append(len(pulls) - ex.report.chunks)  # chunks pulled, not yet counted
            yield raws, start

    report = ex.run(source())
    assert sorted(backend.table) == list(range(40))
    assert (report.inserted, report.chunks, report.rows_in, report.statements) == (40, 20, 40, 20)
    assert report.retries == 20 and report.verb == "insert"
    assert len(set(backend.threads)) <= 3  # one thread per connection
    assert all(name.startswith("bulkops") for name in backend.threads)
    # Chunks are collected as each finishes (not in waves): after the first six, the
    # number in flight when the next is read stays near the bound.
    assert sum(pulls[6:]) / len(pulls[6:]) >= 4.5
    assert len(backend.forks) == 2 and all(f.closed for f in backend.forks)
    assert all(f.prepared == ["insert"] for f in backend.forks) and backend.prepared == ["insert"]
    assert not backend.closed
    assert max(pulls) == 6  # two chunks in flight per connection, no more


def test_parallel_failure_stops_reading_and_raises_the_first_error() -> None:
    backend = FakeBackend(PARALLEL, bad=[1], delay=0.02)
    pulled: list[int] = []
    ex = executor(backend, workers=2)

    def source() -> Iterator[tuple[list[Any], int]]:
        for raws, start in chunks_of(rows(*range(100)), 2):
            pulled.append(start)
            yield raws, start

    with pytest.raises(ConstraintError) as caught:
        ex.run(source())
    assert caught.value.key == 1 and caught.value.report is ex.report
    assert len(pulled) < 20
    assert all(f.closed for f in backend.forks)
    assert 1 not in backend.table


# ---------------------------------------------------------------- report


def rejection(**kw: Any) -> Rejection:
    base: dict[str, Any] = {"row": 3, "key": (1, "a"), "reason": "bad", "values": {"b": b"\x00"}}
    return Rejection(**{**base, **kw})


def test_rejection_as_dict() -> None:
    r = rejection(column="c", code="X")
    assert r.as_dict() == {
        "row": 3,
        "key": [1, "a"],
        "column": "c",
        "code": "X",
        "reason": "bad",
        "values": jsonable({"b": b"\x00"}),
    }
    assert jsonable({"b": b"\x00"}) != {"b": b"\x00"}  # bytes are tagged


def test_report_counts_str_and_dict() -> None:
    report = Report("upsert", "t", rows_in=10, inserted=2, updated=3, upserted=1, deleted=1)
    report.add(unchanged=1, ignored=1)
    report.add(duplicates=1)
    assert (report.unchanged, report.ignored, report.duplicates) == (1, 1, 1)
    assert report.written == 7 and report.accounted == 10
    assert report.rows_per_second == 0.0
    report.elapsed = 2.0
    assert report.rows_per_second == 5.0
    report.chunks, report.statements, report.retries = 2, 3, 1
    assert str(report) == (
        "upsert t: 10 rows in -> inserted 2, updated 3, upserted 1, unchanged 1, ignored 1, "
        "duplicates 1, deleted 1; 2 chunks, 3 statements, 1 retries, 2.000s"
    )
    assert str(Report("delete", "u")) == (
        "delete u: 0 rows in -> nothing to do; 0 chunks, 0 statements, 0 retries, 0.000s"
    )
    report.rejections.append(rejection())
    report.failures.append(rejection(row=4))
    report.refused_keys.append(b"k")
    report.not_found_keys.append(b"n")
    report.elapsed = 1.23456789
    data = report.as_dict()
    assert data["rejections"] == [rejection().as_dict()]
    assert data["failures"] == [rejection(row=4).as_dict()]
    assert data["refused_keys"] == jsonable([b"k"])
    assert data["not_found_keys"] == jsonable([b"n"]) != [b"n"]
    assert data["rows_per_second"] == 8.1 and data["elapsed"] == 1.234568
    report.elapsed = 3.0
    assert report.as_dict()["rows_per_second"] == 3.3
    assert data["inserted"] == 2 and data["verb"] == "upsert" and data["stopped"] is None
    json.dumps(data)


@pytest.mark.parametrize("field", ["rejected", "refused", "failed"])
def test_report_ok(field: str) -> None:
    assert Report("insert", "t").ok
    assert not Report("insert", "t", **{field: 1}).ok
    assert not Report("insert", "t", stopped="stopped").ok


def test_sync_report() -> None:
    report = SyncReport("t", added=1, changed=2, deleted=3, unchanged=4, duplicates=1)
    report.rows_in, report.statements, report.bytes, report.elapsed = 8, 5, 99, 0.5
    assert report.changes == 6 and report.accounted == 8 and report.ok
    assert str(report) == (
        "sync t: 8 rows in -> added 1, changed 2, deleted 3, unchanged 4, duplicates 1; "
        "5 statements, 99 bytes of changes, 0.500s"
    )
    report.dry_run = True
    assert " (dry run: nothing written);" in str(report)
    assert str(SyncReport("u", verb="apply", up_to_date=True)) == (
        "apply u: 0 rows in -> skipped: unchanged since the last sync (same digest); "
        "0 statements, 0 bytes of changes, 0.000s"
    )
    assert not SyncReport("t", rejected=1).ok and not SyncReport("t", failed=1).ok
    other = Report("upsert", "t", rejected=1, failed=1)
    other.rejections.append(rejection(row=1))
    other.failures.append(rejection(row=2))
    report.take_rejects(other, renumber=lambda r: rejection(row=r.row + 100))
    report.take_rejects(other)
    assert (report.rejected, report.failed) == (2, 2)
    assert [r.row for r in report.rejections] == [101, 1]
    assert [r.row for r in report.failures] == [102, 2]
    report.added_keys.append(b"a")
    report.elapsed = 0.1234567
    data = report.as_dict()
    assert data["added_keys"] == jsonable([b"a"]) and data["changed_keys"] == []
    assert data["rejections"] == [rejection(row=101).as_dict(), rejection(row=1).as_dict()]
    assert data["failures"][0] == rejection(row=102).as_dict()
    assert data["elapsed"] == 0.123457 and data["table"] == "t" and data["digest"] is None
    json.dumps(data)


def test_rejects_file_targets(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    sink = RejectsFile(path)
    sink.write([])
    assert not path.exists() and sink.count == 0  # opened lazily
    sink.write([rejection(row=1), rejection(row=2)])
    sink.write([rejection(row=3)])
    lines = path.read_text(encoding="utf-8").splitlines()  # flushed before close
    assert [json.loads(line)["row"] for line in lines] == [1, 2, 3] and sink.count == 3
    sink.close()
    sink.close()
    assert sink._file is None
    named = RejectsFile(str(tmp_path / "named.jsonl"))
    named.write([rejection(row=9)])
    named.close()
    assert json.loads((tmp_path / "named.jsonl").read_text())["row"] == 9
    stream = io.StringIO()
    sink = RejectsFile(stream)
    sink.write([rejection(row=5)])
    sink.close()
    assert not stream.closed  # not ours to close
    assert json.loads(stream.getvalue()) == rejection(row=5).as_dict()
    target: list[Any] = []
    sink = RejectsFile(target)
    sink.write([rejection(row=6)])
    assert target == [rejection(row=6)] and sink.count == 1


# ---------------------------------------------------------------- the mutation-testing setup


def test_mutation_testing_runs_only_server_free_tests_over_the_pure_modules() -> None:
    """README, Tests: ``mutmut run`` mutates plan, execute, retry and report and sync's
    hashing and digests, and runs only tests that start no server (no fixture that
    starts PostgreSQL or DynamoDB)."""
    import ast
    import tomllib

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert sorted(config["only_mutate"]) == [
        f"src/bulkops/{name}.py"
        for name in ("execute", "plan", "report", "retry", "sync/digests", "sync/hashing")
    ]
    assert "tests/test_mutants_sync.py" in config["pytest_add_cli_args_test_selection"]
    assert (
        "-p" in config["pytest_add_cli_args"]
        and "no:cacheprovider" in (config["pytest_add_cli_args"])
    )
    servers = {"db", "db_url", "pg_cluster", "pg_url", "dynamodb_local", "ddb"}
    selected = config["pytest_add_cli_args_test_selection"]
    assert selected and all(path.endswith(".py") for path in selected)
    for path in selected:
        tree = ast.parse((root / path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                wanted = {a.arg for a in node.args.args}
                assert not wanted & servers, f"{path}::{node.name} needs a server"
        marks = {
            n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr != "mark"
        }
        assert not {"postgres", "dynamodb"} & marks, f"{path} has server-marked tests"


def test_retries_add_up_over_chunks() -> None:
    backend = FakeBackend(fail={1: DeadlockError("d"), 3: DeadlockError("d")})
    report = executor(backend).run(chunks_of(rows(1, 2), 1))
    assert report.retries == 2 and sorted(backend.table) == [1, 2]


def test_a_single_bad_row_chunk_and_a_column_the_database_names() -> None:
    backend = FakeBackend(bad=[1])
    backend.named = {2**70: "name"}
    report = executor(backend, on_error="isolate").run([(rows(1), 0), (rows(2**70), 1)])
    one, big = report.rejections
    assert (one.row, one.key, one.reason) == (1, 1, "duplicate key value 1")
    # the database named the column: its reason stands, the coercion rules are not asked
    assert (big.row, big.column, big.reason, big.code) == (2, "name", "value too long", "22001")


def test_failures_add_up_over_chunks_and_are_not_diagnosed() -> None:
    class Throttles(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            assert op is OP
            self.statements += 1
            raise RowFailures(ChunkCounts(upserted=len(rows) - 1), [(0, ThrottledError("slow"))])

    big = 2**70
    report = executor(Throttles(NO_TX), on_error="isolate").run([(rows(big), 0), (rows(2, 3), 1)])
    assert (report.failed, report.upserted, report.rejected) == (2, 1, 0)
    # not a DataError: the coercion rules are not asked why (the wide int stays unblamed)
    assert [(r.row, r.reason, r.column) for r in report.failures] == [
        (1, "slow", None),
        (2, "slow", None),
    ]


def test_without_strict_width_a_row_with_extra_columns_stays_on_the_fast_path() -> None:
    # The fast encoder ignores the extra column too; were it strict, the row would take
    # the slow path, whose range check refuses the wide int the driver is left to judge.
    chunk = planner(strict_width=False).prepare([{"id": 2**70, "name": "a", "other": 1}], 0)
    assert chunk.rows == [(2**70, "a")] and chunk.rejections == []


def test_parallel_chunks_are_counted_as_each_finishes_while_a_slow_one_runs() -> None:
    released = threading.Event()
    seen: list[bool] = []

    class OneSlow(FakeBackend):
        def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
            if rows[0][0] == 0:  # the first chunk waits until the others were counted
                seen.append(released.wait(timeout=5))
            return super().write(op, rows)

    def progress(report: Report) -> None:
        if report.chunks == 2:
            released.set()

    backend = OneSlow(PARALLEL)
    report = executor(backend, workers=2, progress=progress).run(chunks_of(rows(0, 1, 2), 1))
    assert seen == [True]  # released by the progress of the other two, not by the timeout
    assert (report.chunks, report.inserted) == (3, 3)


def test_a_rejects_file_is_written_as_utf8_whatever_the_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import codecs

    import bulkops.report

    opened: list[str | None] = []

    def spy(file: Any, mode: str = "r", encoding: str | None = None, **kw: Any) -> Any:
        opened.append(encoding)
        return builtins.open(file, mode, encoding=encoding, **kw)

    monkeypatch.setattr(bulkops.report, "open", spy, raising=False)
    sink = RejectsFile(tmp_path / "r.jsonl")
    sink.write([rejection(reason="café ✓")])
    sink.close()
    assert len(opened) == 1 and opened[0] is not None
    assert codecs.lookup(opened[0]).name == "utf-8"
    assert json.loads((tmp_path / "r.jsonl").read_bytes().decode("utf-8"))["reason"] == "café ✓"
