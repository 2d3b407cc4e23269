"""Execution: run prepared chunks on a backend under a RetryPolicy.

One short transaction per chunk (or one for the whole call with ``atomic=True``);
a transient error rolls the chunk back and runs it again, so a retried chunk never
applies twice; a data error narrows the chunk down by bisection (under savepoints)
to the rows that fail, which become Rejections (``on_error="isolate"``) or the
raised error (``on_error="raise"``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from .backends.base import Backend, ChunkCounts, WriteOp
from .errors import BulkError, ConversionError, DataError, TooManyRejects, TransientError
from .plan import ChunkPlanner, PreparedChunk
from .report import ProgressCallback, Rejection, RejectsFile, Report
from .retry import RetryPolicy

__all__ = ["Executor", "OnError"]

OnError = Literal["raise", "isolate"]


@dataclass
class _ChunkResult:
    counts: ChunkCounts
    rejections: list[Rejection]


class Executor:
    """Writes the chunks of one call and keeps its Report."""

    def __init__(
        self,
        backend: Backend,
        op: WriteOp,
        planner: ChunkPlanner,
        report: Report,
        *,
        retry: RetryPolicy,
        on_error: OnError = "raise",
        atomic: bool = False,
        rejects: RejectsFile | None = None,
        max_rejects: int | None = None,
        progress: ProgressCallback | None = None,
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

    # ----------------------------------------------------------------- the run

    def run(self, chunks: Iterable[tuple[list[Any], int]]) -> Report:
        """Write every ``(raw_rows, start)`` chunk; return the Report of what committed."""
        started = time.perf_counter()
        statements_before = self.backend.statements
        try:
            if self.atomic:
                self._run_atomic(chunks)
            else:
                for raws, start in chunks:
                    chunk = self.planner.prepare(raws, start)
                    result = self.retry.call(
                        partial(self._chunk_transaction, chunk), on_retry=self._count_retry
                    )
                    self._account(chunk, result)
                    self._check_rejects()
        except BulkError as error:
            self._finish(started, statements_before)
            error.report = self.report
            raise
        self._finish(started, statements_before)
        return self.report

    def _finish(self, started: float, statements_before: int) -> None:
        self.report.elapsed = time.perf_counter() - started
        self.report.statements = self.backend.statements - statements_before

    def _run_atomic(self, chunks: Iterable[tuple[list[Any], int]]) -> None:
        # Rows cannot be re-read from a stream, so only BEGIN is retried here; a
        # transient error later rolls everything back and is raised.
        self.retry.call(self.backend.begin, on_retry=self._count_retry)
        pending = Report(self.report.verb, self.report.table)
        committed = self.report
        self.report = pending
        try:
            for raws, start in chunks:
                chunk = self.planner.prepare(raws, start)
                with self.backend.savepoint():
                    result = self._write_chunk(chunk, in_savepoint=True)
                self._account(chunk, result)
                self._check_rejects()
            self.backend.commit()
        except BaseException:
            self.backend.rollback()
            # Nothing committed: the raised error carries only what was rejected.
            committed.rejections = pending.rejections
            committed.rejected = pending.rejected
            committed.rows_in = pending.rejected
            committed.retries = pending.retries
            committed.chunks = 0
            committed.stopped = pending.stopped
            self.report = committed
            raise
        self.report = pending
        pending.retries += committed.retries

    def _chunk_transaction(self, chunk: PreparedChunk) -> _ChunkResult:
        self.backend.begin()
        try:
            result = self._write_chunk(chunk, in_savepoint=False)
            self.backend.commit()
        except BaseException:
            self.backend.rollback()
            raise
        return result

    # --------------------------------------------------------------- one chunk

    def _write_chunk(self, chunk: PreparedChunk, *, in_savepoint: bool) -> _ChunkResult:
        rejections = list(chunk.rejections)
        if rejections and not self.isolate:
            raise self._as_error(rejections[0])
        everything = range(len(chunk.rows))
        if in_savepoint:
            counts, failures = self._narrow(chunk, everything)
        else:
            try:
                # Most chunks are clean: try them whole, without a savepoint.
                counts, failures = self.backend.write(self.op, chunk.rows), []
            except DataError as error:
                # Undo the part of the chunk that ran, then narrow it down.
                self.backend.rollback()
                self.backend.begin()
                counts, failures = self._split(chunk, everything, error)
        return _ChunkResult(counts, rejections + failures)

    def _narrow(
        self, chunk: PreparedChunk, positions: Sequence[int]
    ) -> tuple[ChunkCounts, list[Rejection]]:
        """Write ``positions`` of the chunk under a savepoint; if that fails, split."""
        try:
            with self.backend.savepoint():
                return self.backend.write(self.op, chunk.select(positions)), []
        except DataError as error:
            return self._split(chunk, positions, error)

    def _split(
        self, chunk: PreparedChunk, positions: Sequence[int], error: DataError
    ) -> tuple[ChunkCounts, list[Rejection]]:
        """Bisect failing ``positions`` until the failing rows stand alone (each half
        under its own savepoint). In raise mode the first one found is raised."""
        if len(positions) == 1:
            rejection = self._rejection(chunk, positions[0], error)
            if not self.isolate:
                raise self._as_error(rejection, error) from error
            return ChunkCounts(), [rejection]
        middle = len(positions) // 2
        left_counts, left = self._narrow(chunk, positions[:middle])
        right_counts, right = self._narrow(chunk, positions[middle:])
        return left_counts + right_counts, left + right

    # ---------------------------------------------------------------- accounting

    def _rejection(self, chunk: PreparedChunk, position: int, error: DataError) -> Rejection:
        raw = chunk.raws[chunk.index[position]]
        values = self.planner.values_of(raw)
        reason, column = error.message, error.column
        if column is None:
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

    def _account(self, chunk: PreparedChunk, result: _ChunkResult) -> None:
        report = self.report
        report.rows_in += chunk.size
        report.chunks += 1
        report.duplicates += chunk.duplicates
        report.add(**result.counts.as_dict())
        report.rejected += len(result.rejections)
        report.rejections.extend(result.rejections)
        if self.rejects is not None and result.rejections:
            self.rejects.write(result.rejections)
        if self.progress is not None:
            self.progress(report)

    def _check_rejects(self) -> None:
        if self.max_rejects is not None and self.report.rejected > self.max_rejects:
            self.report.stopped = (
                f"stopped: {self.report.rejected} rows rejected, more than "
                f"max_rejects={self.max_rejects}"
            )
            raise TooManyRejects(self.report.stopped, self.report.rejections)

    def _count_retry(self, error: TransientError, attempt: int, wait: float) -> None:
        self.report.retries += 1
