"""Execution: run prepared chunks on a backend under a RetryPolicy.

One short transaction per chunk (or one for the whole call with ``atomic=True``);
a transient error rolls the chunk back and runs it again, so a retried chunk never
applies twice; a data error narrows the chunk down by bisection (under savepoints)
to the rows that fail, which become Rejections (``on_error="isolate"``) or the
raised error (``on_error="raise"``). With ``workers > 1`` (where the backend allows
parallel writes) chunks run on several connections, with a bounded number in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from queue import SimpleQueue
from typing import Any, Literal, TypeVar

from .backends.base import (
    NO_TIMEOUTS,
    Backend,
    ChunkCounts,
    RowFailures,
    Timeouts,
    WriteOp,
    commit_resolving,
    run_transaction,
)
from .errors import (
    AccountingError,
    BulkError,
    ConversionError,
    DataError,
    ResumeError,
    TooManyRejectsError,
    TransientError,
)
from .events import EventSink
from .plan import Chunk, Planner, read_ahead
from .report import OUTCOMES, ProgressCallback, Rejection, RejectsFile, Report
from .retry import RetryPolicy

__all__ = [
    "Checkpoint",
    "Executor",
    "OnError",
    "commit_resolving",
    "numbered",
    "run_transaction",
]

OnError = Literal["raise", "isolate"]


def resolve_on_error(on_error: OnError | None, rejects: object, max_rejects: int | None) -> OnError:
    """``on_error`` as given, else ``"isolate"`` when the caller gave somewhere for bad
    rows to go (``rejects``) or a number of them to tolerate (``max_rejects``)."""
    if on_error is not None:
        return on_error
    return "isolate" if (rejects is not None or max_rejects is not None) else "raise"


T = TypeVar("T")
# Called inside a chunk's transaction once its rows are written, on the connection
# that wrote them (so a record of the chunk commits or rolls back with it).
Checkpoint = Callable[[Backend, Chunk], None]

# Chunks in flight per worker: enough to keep every connection busy while the main
# thread prepares the next chunk, few enough that memory stays bounded by chunks.
IN_FLIGHT_PER_WORKER = 2


@dataclass
class _ChunkResult:
    counts: ChunkCounts
    rejections: list[Rejection]
    failures: list[Rejection] = field(default_factory=list)
    # raise mode on a backend without transactions: raised once the rows that were
    # written are counted (they cannot be undone)
    error: BulkError | None = None


class Executor:
    """Writes the chunks of one call and keeps its Report."""

    def __init__(
        self,
        backend: Backend,
        op: WriteOp,
        planner: Planner,
        report: Report,
        *,
        retry: RetryPolicy,
        on_error: OnError = "raise",
        atomic: bool = False,
        rejects: RejectsFile | None = None,
        max_rejects: int | None = None,
        progress: ProgressCallback | None = None,
        workers: int = 1,
        nested: bool = False,
        events: EventSink | None = None,
        checkpoint: Checkpoint | None = None,
        skip: Mapping[int, int] | None = None,
        timeouts: Timeouts = NO_TIMEOUTS,
        read_ahead: bool = False,
    ) -> None:
        if on_error not in ("raise", "isolate"):
            raise ValueError(f"on_error must be 'raise' or 'isolate', not {on_error!r}")
        if max_rejects is not None and max_rejects < 0:
            raise ValueError("max_rejects must not be negative")
        self.backend = backend
        self.op = op
        self.planner = planner
        self.report = report
        self.retry = retry
        self.isolate = on_error == "isolate"
        self.atomic = atomic
        self.rejects = rejects
        self.max_rejects = max_rejects
        self.progress = progress
        self.nested = nested
        self.events = events  # None when nobody listens: no event is even built
        self.checkpoint = checkpoint
        self.skip = skip  # {first row (0-based): rows} of chunks committed before
        self.timeouts = timeouts
        # Chunks prepared by a thread of their own, one ahead of the one being written
        # (the columnar path: Arrow's compute lets go of the GIL while the database
        # works on the chunk before). Only where the input may be read by another thread.
        self.read_ahead = read_ahead
        self._lock = threading.Lock()
        parallel = backend.capabilities.parallel_writes and not atomic and not nested
        self.workers = max(1, workers) if parallel else 1

    # ----------------------------------------------------------------- the run

    def run(self, chunks: Iterable[tuple[list[Any], int]]) -> Report:
        """Write every ``(raw_rows, start)`` chunk; return the Report of what committed."""
        started = time.perf_counter()
        backends = [self.backend]
        statements_before = self.backend.statements
        retries_before = self.backend.retries
        ahead = self.read_ahead and self.workers == 1 and not self.nested and not self.atomic
        if self.skip and not ahead:
            chunks = self._skipping(chunks, self.skip)
        try:
            self.backend.prepare(self.op)
            if self.nested:
                self._run_in_block(chunks)
            elif self.atomic:
                self._run_atomic(chunks)
            elif ahead:
                for chunk in self._prepared_ahead(chunks):
                    self._accept(chunk, self._chunk_with_retry(self.backend, chunk))
            elif self.workers == 1:
                for raws, start in chunks:
                    chunk = self.planner.prepare(raws, start)
                    self._accept(chunk, self._chunk_with_retry(self.backend, chunk))
            else:
                forks = [self.backend.fork() for _ in range(self.workers - 1)]
                backends += forks
                for fork in forks:
                    fork.prepare(self.op)
                self._run_parallel(chunks, backends)
        except BulkError as error:
            self._finish(started, statements_before, retries_before, backends)
            error.report = self.report
            raise
        finally:
            for fork in backends[1:]:
                fork.close()
        self._finish(started, statements_before, retries_before, backends)
        report = self.report
        if report.accounted != report.rows_in:
            raise AccountingError(
                f"{report.verb} {report.table}: {report.rows_in} rows in but "
                f"{report.accounted} counted ({_outcomes(report.__dict__)})"
            )
        return report

    def _skipping(
        self, chunks: Iterable[tuple[list[Any], int]], skip: Mapping[int, int]
    ) -> Iterator[tuple[list[Any], int]]:
        """The chunks not committed before (resume); the others are read and counted
        as skipped, not written again."""
        for raws, start in chunks:
            if not self._skipped(raws, start):
                yield raws, start

    def _skipped(self, raws: Any, start: int) -> bool:
        """Whether the chunk at ``start`` was committed before (resume): then it is
        counted as skipped."""
        done = (self.skip or {}).get(start)
        if done is None:
            return False
        if done != len(raws):
            raise ResumeError(
                f"cannot resume: the chunk at row {start + 1} had {done} rows when it "
                f"was committed and has {len(raws)} now; the input is not the same"
            )
        self.report.rows_in += done
        self.report.skipped += done
        return True

    def _prepared_ahead(self, chunks: Iterable[tuple[Any, int]]) -> Iterator[Chunk]:
        """The chunks prepared by a thread one ahead of the one being written; the
        skipped ones (resume) are counted here, by the thread that keeps the Report."""
        skip = self.skip or {}
        prepare = self.planner.prepare

        def prepared() -> Iterator[tuple[Any, int, Chunk | None]]:
            for raws, start in chunks:
                yield raws, start, None if start in skip else prepare(raws, start)

        for raws, start, chunk in read_ahead(prepared(), 1, "bulkops-prepare"):
            if chunk is None:
                self._skipped(raws, start)
            else:
                yield chunk

    def _finish(
        self, started: float, statements: int, retries: int, backends: Sequence[Backend]
    ) -> None:
        self.report.elapsed = time.perf_counter() - started
        # Forks start from zero, so their whole count belongs to this call.
        self.report.statements = (
            self.backend.statements - statements + sum(b.statements for b in backends[1:])
        )
        self.report.retries += self.backend.retries - retries + sum(b.retries for b in backends[1:])

    def _run_parallel(
        self, chunks: Iterable[tuple[list[Any], int]], backends: Sequence[Backend]
    ) -> None:
        free: SimpleQueue[Backend] = SimpleQueue()
        for backend in backends:
            free.put(backend)

        def on_a_free_backend(chunk: Chunk) -> _ChunkResult:
            backend = free.get()
            try:
                return self._chunk_with_retry(backend, chunk)
            finally:
                free.put(backend)

        pending: dict[Future[_ChunkResult], Chunk] = {}
        failure: BaseException | None = None

        def collect(done: Iterable[Future[_ChunkResult]]) -> None:
            nonlocal failure
            for future in done:
                chunk = pending.pop(future)
                try:
                    self._accept(chunk, future.result())
                except BaseException as error:  # first failure wins; the rest drain
                    failure = failure or error

        with ThreadPoolExecutor(len(backends), thread_name_prefix="bulkops") as pool:
            for raws, start in chunks:
                chunk = self.planner.prepare(raws, start)
                while len(pending) >= IN_FLIGHT_PER_WORKER * len(backends):
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(done)
                if failure is not None:
                    break
                pending[pool.submit(on_a_free_backend, chunk)] = chunk
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
        if failure is not None:
            raise failure

    def _write_in_savepoints(self, chunks: Iterable[tuple[list[Any], int]]) -> None:
        for raws, start in chunks:
            chunk = self.planner.prepare(raws, start)
            self._accept(chunk, self._write_chunk(self.backend, chunk, in_savepoint=True))

    def _run_in_block(self, chunks: Iterable[tuple[list[Any], int]]) -> None:
        # Inside the caller's transaction (db.atomic() or a claimed batch): savepoints
        # only. The block owns COMMIT and its retries, so nothing is retried here.
        if not self.atomic:
            self._write_in_savepoints(chunks)
            return
        committed = self.report
        self.report = Report(committed.verb, committed.table)
        try:
            with self.backend.savepoint():
                self._write_in_savepoints(chunks)
        except BaseException:
            self._nothing_committed(committed)
            raise

    def _run_atomic(self, chunks: Iterable[tuple[list[Any], int]]) -> None:
        """The whole call in one transaction, re-run as a whole on a transient error
        (deadlock, serialization failure, busy) anywhere in it, COMMIT included.

        The input streams once, so the chunks read so far are kept to be written again
        by the next attempt: an atomic call holds its rows in memory (its transaction
        holds them in the database anyway)."""
        backend = self.backend
        committed = self.report
        source = iter(chunks)
        seen: list[tuple[list[Any], int]] = []

        def replayed() -> Iterator[tuple[list[Any], int]]:
            yield from seen
            for chunk in source:
                seen.append(chunk)
                yield chunk

        def attempt() -> None:
            self.report = Report(committed.verb, committed.table, retries=committed.retries)
            backend.begin(self.timeouts)
            try:
                self._write_in_savepoints(replayed())
            except BaseException:
                backend.rollback()
                raise
            commit_resolving(backend, "the atomic call")

        def count(error: TransientError, number: int, wait: float) -> None:
            committed.retries += 1
            if self.events is not None:
                self.events.retried("the atomic call", error, number, wait)

        # An attempt that is run again must not leave its rejects in the file: they
        # are written once, from the attempt that ended the call.
        sink, self.rejects = self.rejects, None
        try:
            self.retry.call(attempt, on_retry=count)
        except BaseException:
            self._nothing_committed(committed)
            raise
        finally:
            self.rejects = sink
            final = self.report
            if sink is not None and (final.rejections or final.failures):
                sink.write(final.rejections + final.failures)

    def _nothing_committed(self, committed: Report) -> None:
        """After a rollback of the whole call: the error carries only what was
        rejected (nothing was written)."""
        pending = self.report
        committed.rejections = pending.rejections
        committed.rejected = committed.rows_in = pending.rejected
        committed.retries = pending.retries
        committed.stopped = pending.stopped
        self.report = committed

    def _chunk_with_retry(self, backend: Backend, chunk: Chunk) -> _ChunkResult:
        what = f"rows {chunk.start + 1}-{chunk.start + chunk.size}"
        return run_transaction(
            backend,
            partial(self._write_chunk, backend, chunk, in_savepoint=False),
            self.retry,
            what=what,
            on_retry=partial(self._count_retry, what=what),
            timeouts=self.timeouts,
        )

    # --------------------------------------------------------------- one chunk

    def _write_chunk(self, backend: Backend, chunk: Chunk, *, in_savepoint: bool) -> _ChunkResult:
        rejections = list(chunk.rejections)
        if rejections and not self.isolate:
            raise self._as_error(rejections[0])
        everything = range(chunk.count)
        if not backend.capabilities.transactions:
            return self._write_untransacted(backend, chunk, rejections)
        if in_savepoint:
            counts, failures = self._narrow(backend, chunk, everything)
        else:
            try:
                # Most chunks are clean: try them whole, without a savepoint.
                counts, failures = chunk.write(backend, self.op), []
            except DataError as error:
                # Undo the part of the chunk that ran, then narrow it down.
                backend.rollback()
                backend.begin(self.timeouts)
                counts, failures = self._split(backend, chunk, everything, error)
        if self.checkpoint is not None:
            self.checkpoint(backend, chunk)
        return _ChunkResult(counts, rejections + failures)

    def _write_untransacted(
        self, backend: Backend, chunk: Chunk, rejections: list[Rejection]
    ) -> _ChunkResult:
        """A chunk on a backend without transactions (DynamoDB): rows that were
        written stay written, so the backend reports each row that was not, and
        nothing is retried here (the backend re-drives its own requests).
        """
        try:
            return _ChunkResult(chunk.write(backend, self.op), rejections)
        except RowFailures as partial:
            counts, failed = partial.counts, partial.failures
        except DataError as refused:
            # The whole request was refused before anything was written (e.g. a
            # validation error): send the rows one by one to find the bad ones.
            counts, failed = ChunkCounts(), []
            for position in range(chunk.count):
                try:
                    counts += chunk.write(backend, self.op, [position])
                except RowFailures as partial:
                    counts += partial.counts
                    failed.append((position, partial.failures[0][1]))
                except DataError as bad:
                    failed.append((position, bad))
            if not failed:  # the rows pass alone: the request as a whole was refused
                raise refused
        failures: list[Rejection] = []
        first: BulkError | None = None  # raised in raise mode, once the chunk is counted
        for position, cause in failed:
            rejection = self._rejection(chunk, position, cause)
            if isinstance(cause, DataError):
                rejections.append(rejection)
                if not self.isolate and first is None:
                    first = self._as_error(rejection, cause)
            else:
                failures.append(rejection)
        if failures and not self.isolate and first is None:
            first = next(cause for _, cause in failed if not isinstance(cause, DataError))
            first.message = (
                f"{len(failures)} row(s) of rows {chunk.start + 1}-{chunk.start + chunk.size} "
                f"not written: {first.message} (report.failures lists them)"
            )
        return _ChunkResult(counts, rejections, failures, first)

    def _narrow(
        self, backend: Backend, chunk: Chunk, positions: Sequence[int]
    ) -> tuple[ChunkCounts, list[Rejection]]:
        """Write ``positions`` of the chunk under a savepoint; if that fails, split."""
        try:
            with backend.savepoint():
                return chunk.write(backend, self.op, positions), []
        except DataError as error:
            return self._split(backend, chunk, positions, error)

    def _split(
        self,
        backend: Backend,
        chunk: Chunk,
        positions: Sequence[int],
        error: DataError,
    ) -> tuple[ChunkCounts, list[Rejection]]:
        """Bisect failing ``positions`` until the failing rows stand alone (each half
        under its own savepoint). In raise mode the first one found is raised."""
        if len(positions) == 1:
            rejection = self._rejection(chunk, positions[0], error)
            if not self.isolate:
                raise self._as_error(rejection, error) from error
            return ChunkCounts(), [rejection]
        middle = len(positions) // 2
        left_counts, left = self._narrow(backend, chunk, positions[:middle])
        right_counts, right = self._narrow(backend, chunk, positions[middle:])
        return left_counts + right_counts, left + right

    # ---------------------------------------------------------------- accounting

    def _rejection(self, chunk: Chunk, position: int, error: BulkError) -> Rejection:
        raw = chunk.raws[chunk.index[position]]
        values = self.planner.values_of(raw)
        reason, column = error.message, getattr(error, "column", None)
        if column is None and isinstance(error, DataError):
            # The driver did not say which column; the coercion rules may.
            found = self.planner.diagnose(raw)
            if found is not None:
                reason, column = f"{found.reason} ({error.message})", found.column
        return Rejection(
            row=chunk.start + chunk.index[position] + 1,
            key=self.planner.key_from_values(values),
            reason=reason,
            values=values,
            column=column,
            code=error.code,
        )

    def _as_error(self, rejection: Rejection, cause: DataError | None = None) -> DataError:
        """The error to raise for a rejected row, naming its position, key and column."""
        cls = type(cause) if cause is not None else ConversionError
        return cls(
            rejection.reason,
            code=rejection.code,
            column=rejection.column,
            row=rejection.row,
            key=rejection.key,
            values=rejection.values,
        )

    def _accept(self, chunk: Chunk, result: _ChunkResult) -> None:
        """Count a finished chunk, write its rejects, report progress, check limits."""
        counted = (
            result.counts.total + len(result.rejections) + len(result.failures)
            + chunk.duplicates
        )  # fmt: skip
        if counted != chunk.size or min(result.counts.as_dict().values()) < 0:
            # Every row of a chunk lands in exactly one count (the invariant of Report).
            raise AccountingError(
                f"{self.op.kind} {self.op.table.name}, rows {chunk.start + 1}-"
                f"{chunk.start + chunk.size}: {chunk.size} rows but {counted} counted "
                f"({_outcomes(result.counts.as_dict())}, rejected={len(result.rejections)}, "
                f"failed={len(result.failures)}, duplicates={chunk.duplicates})"
            )
        report = self.report
        report.rows_in += chunk.size
        report.chunks += 1
        report.duplicates += chunk.duplicates
        report.add(**result.counts.as_dict())
        report.rejected += len(result.rejections)
        report.rejections.extend(result.rejections)
        report.failed += len(result.failures)
        report.failures.extend(result.failures)
        if self.rejects is not None and (result.rejections or result.failures):
            self.rejects.write(result.rejections + result.failures)
        if self.events is not None:
            if result.rejections:
                self.events.rejected(result.rejections)
            self.events.chunk_done(
                chunk.start + 1, chunk.size, result.counts.as_dict(), len(result.rejections),
                report,
            )  # fmt: skip
        if self.progress is not None:
            self.progress(report)
        if result.error is not None:
            raise result.error
        if self.max_rejects is not None and report.rejected > self.max_rejects:
            report.stopped = (
                f"stopped: {report.rejected} rows rejected, more than "
                f"max_rejects={self.max_rejects}"
            )
            raise TooManyRejectsError(report.stopped, report.rejections)

    def _count_retry(
        self, error: TransientError, attempt: int, wait: float, what: str = "BEGIN"
    ) -> None:
        with self._lock:  # worker threads retry too
            self.report.retries += 1
        if self.events is not None:
            self.events.retried(what, error, attempt, wait)


def _outcomes(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={counts[name]}" for name in OUTCOMES if counts.get(name))


def numbered(chunks: Iterable[Any]) -> Iterator[tuple[Any, int]]:
    """Pair each chunk with the 0-based input position of its first row."""
    start = 0
    for chunk in chunks:
        yield chunk, start
        start += len(chunk)
