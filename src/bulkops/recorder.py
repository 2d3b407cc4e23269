"""The call recorder: each verb call's events, log lines and run-log row, and the
checkpoints of resumable loads.

A call made inside a transaction scope (an ``atomic()`` block, a claimed batch) is
logged only once the outermost scope has ended, so that a call that rolled back with
its scope is recorded as rolled back, not as done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .backends.base import Backend
from .errors import BulkError, RerunError, ResumeError, UnsupportedError
from .events import EventCallback, EventSink, RunFinished, RunStarted, logger
from .execute import Checkpoint
from .plan import Chunk
from .report import Report
from .retry import RetryPolicy
from .runlog import Run, RunLog, run_status

__all__ = ["Call", "Recorder"]


class Call:
    """What one verb call hands its executor: events, and for resumable loads the
    checkpoint hook and the chunks to skip."""

    def __init__(
        self,
        events: EventSink,
        checkpoint: Checkpoint | None = None,
        skip: dict[int, int] | None = None,
    ) -> None:
        self.events = events if events.wants_chunks else None
        self.checkpoint = checkpoint
        self.skip = skip


class _PendingRun:
    """A call made inside a transaction scope, logged once the scope ends."""

    def __init__(self, verb: str, table: str, label: str | None, started_at: dt.datetime) -> None:
        self.verb, self.table, self.label, self.started_at = verb, table, label, started_at
        self.report: Report | None = None
        self.error: BaseException | None = None
        self.rolled_back = False


class Recorder:
    """Records the verb calls of one Store.

    ``run_log``: whether calls go to the database's run log; ``label``: the default
    label of its rows; ``in_scope``: whether a transaction scope is open now."""

    def __init__(
        self,
        backend: Backend,
        retry: RetryPolicy,
        *,
        run_log: bool,
        label: str | None,
        in_scope: Callable[[], bool],
    ) -> None:
        if run_log and not backend.capabilities.run_log:
            raise UnsupportedError(
                f"{backend.capabilities.name} cannot keep a run log (run_log=True)"
            )
        self.backend = backend
        self.retry = retry
        self.run_log = run_log
        self.label = label
        self.subscribers: list[EventCallback] = []
        self._in_scope = in_scope
        self._log: RunLog | None = None
        self._pending: list[_PendingRun] = []  # calls inside an open scope

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        self.subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self.subscribers:
                self.subscribers.remove(callback)

        return unsubscribe

    def log(self) -> RunLog:
        if self._log is None:
            self._log = RunLog(self.backend, self.retry)
        return self._log

    def runs(self, last: int | None) -> list[Run]:
        if not self.backend.capabilities.run_log:
            return []  # a database that cannot keep a run log has none
        return self.log().runs(last)

    def observed(
        self,
        verb: str,
        table: str,
        label: str | None,
        run: Callable[[Call], Report],
        *,
        source_id: str | None = None,
        resume: bool = False,
        shape: dict[str, Any] | None = None,
        doubles: bool = False,
    ) -> Report:
        """Run one verb call with its events, log lines and run-log row. ``doubles``:
        the call writes its rows again when given them again (an insert that no key or
        unique constraint stops), so a load of a ``source_id`` whose earlier load did
        not finish is refused (``refuse_rerun``)."""
        label = label if label is not None else self.label
        events = EventSink(verb, table, self.subscribers)
        run_id: int | None = None
        pending: _PendingRun | None = None
        call = Call(events)
        if source_id is not None and not resume and doubles:
            self.refuse_rerun(table, source_id)
        if source_id is not None or resume:
            run_id, call = self._resumable(verb, table, label, events, source_id, resume, shape)
        elif self.run_log and self._in_scope():
            pending = _PendingRun(verb, table, label, dt.datetime.now(dt.UTC))
            self._pending.append(pending)
        elif self.run_log:
            run_id = self.log().start(verb, table, label)
        if events.wants_runs:
            events.emit(RunStarted(verb, table, label))
        try:
            report = run(call)
        except BaseException as error:
            done: Report | None = error.report if isinstance(error, BulkError) else None
            self._finish(run_id, pending, done, error)
            events.emit(RunFinished(verb, table, done, error, label))  # logged as a warning
            raise
        self._finish(run_id, pending, report, None)
        if events.wants_runs:
            events.emit(RunFinished(verb, table, report, None, label))
        return report

    def refuse_rerun(self, table: str, source_id: str) -> None:
        """Raise RerunError if the latest load of ``source_id`` into ``table`` did not
        finish and committed rows (or is running now): loading the input again would
        write them twice."""
        if not self.run_log:
            return
        log = self.log()
        for run in log.runs(50):
            if run.table != table or run.source != source_id:
                continue
            # What it committed: its counts, or its checkpoints where it ended without
            # counts (an exception that carried no report).
            committed = run.counts.get("inserted") or log.checkpoints(
                run.load_id if run.load_id is not None else run.id
            )
            if run.status != "running" and not committed:
                return  # it ended without committing a row: nothing to write twice
            if run.status in ("running", "interrupted", "failed", "stopped"):
                raise RerunError(
                    f"run {run.id} loaded this input into {table!r} and did not finish "
                    f"({run.status}); rows it committed would be inserted twice. Continue "
                    "it with resume=True, or load the whole input again on purpose with "
                    "force=True"
                )
            return  # the latest load of this input finished

    def _resumable(
        self,
        verb: str,
        table: str,
        label: str | None,
        events: EventSink,
        source_id: str | None,
        resume: bool,
        shape: dict[str, Any] | None,
    ) -> tuple[int, Call]:
        """Start the run of a load that checkpoints its chunks (and skips those an
        earlier run committed, when resuming)."""
        if source_id is None:
            raise ResumeError("resume=True needs source_id= (what identifies the input)")
        if not self.run_log:
            raise ResumeError(
                "source_id= and resume= keep checkpoints in the run log: connect(..., run_log=True)"
            )
        if self._in_scope():
            raise ResumeError(
                "a resumable load checkpoints each chunk in its own transaction: "
                "not inside atomic() or a claimed batch"
            )
        log = self.log()
        shape = shape or {}
        load_id: int | None = None
        skip: dict[int, int] = {}
        if resume:
            previous = log.previous_load(table)
            if previous is not None:
                log.check_resumable(previous, table, source_id, shape)
                load_id = previous.load_id
                assert load_id is not None
                skip = log.checkpoints(load_id)
                logger.info(
                    "%s %s: resuming the load of run #%d: %d chunks already committed",
                    verb, table, previous.id, len(skip),
                )  # fmt: skip
        run_id = log.start(verb, table, label, source=source_id, options=shape, load_id=load_id)
        load = load_id if load_id is not None else run_id

        def checkpoint(backend: Backend, chunk: Chunk) -> None:
            log.checkpoint(backend, load, run_id, chunk.start, chunk.size)

        return run_id, Call(events, checkpoint, skip)

    def _finish(
        self,
        run_id: int | None,
        pending: _PendingRun | None,
        report: Report | None,
        error: BaseException | None,
    ) -> None:
        if pending is not None:
            pending.report, pending.error = report, error
            return
        if run_id is None:
            return
        try:
            self.log().finish(run_id, report, error, run_status(report, error))
        except Exception as failure:
            # The call's work has committed (or failed on its own): raising now would
            # invite a retry that applies it twice. The row stays 'running'.
            logger.warning("could not record run #%d in the run log: %s", run_id, failure)

    def scope_mark(self) -> int:
        """Where the calls of a scope that opens now begin among the pending runs."""
        return len(self._pending)

    def scope_ended(self, mark: int, committed: bool, error: BaseException | None = None) -> None:
        """A scope ended: its calls rolled back with it unless it committed; once the
        outermost one has ended, the pending calls are logged."""
        if not committed:
            for pending in self._pending[mark:]:
                if not pending.rolled_back and pending.error is None:
                    pending.error = error
                pending.rolled_back = True
        if self._in_scope() or not self._pending:
            return
        pending_runs, self._pending = self._pending, []
        for p in pending_runs:
            status = "rolled back" if p.rolled_back else run_status(p.report, p.error)
            try:
                self.log().record(p.verb, p.table, p.label, p.started_at, p.report, p.error, status)
            except Exception as failure:  # never fail a block that committed
                logger.warning("could not record a %s of %r in the run log: %s",
                               p.verb, p.table, failure)  # fmt: skip
