"""Events of a bulk call, for your own logging and metrics, and the ``bulkops`` logger.

Subscribe with ``db.subscribe(callback)`` (or ``connect(..., on_event=callback)``);
the callback gets one of the event objects below. Events are built only when someone
listens (a subscriber, or the ``bulkops`` logger enabled at DEBUG), so a call nobody
watches pays nothing for them.

The standard ``logging`` module gets, on the ``"bulkops"`` logger: one INFO line per
verb call (its Report), a WARNING when a call fails, and DEBUG lines per chunk,
retry and batch of rejected rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import TransientError
from .report import OUTCOMES, Rejection, Report

__all__ = [
    "ChunkDone",
    "Event",
    "EventCallback",
    "Retried",
    "RowsRejected",
    "RunFinished",
    "RunStarted",
    "logger",
]

logger = logging.getLogger("bulkops")


@dataclass(frozen=True)
class RunStarted:
    """A verb call started (``label``: the caller's label, if any)."""

    verb: str
    table: str
    label: str | None = None


@dataclass(frozen=True)
class ChunkDone:
    """A chunk committed (or, inside ``atomic=True`` / an atomic block, was written).

    ``first_row`` is the 1-based input position of its first row; ``counts`` what it
    did (inserted, updated, ...); ``report`` the call's running Report.
    """

    verb: str
    table: str
    first_row: int
    rows: int
    counts: dict[str, int]
    rejected: int
    report: Report


@dataclass(frozen=True)
class Retried:
    """A transient error rolled back a transaction, which runs again after ``wait``
    seconds (``attempt``: the try that failed, 1-based)."""

    verb: str
    table: str
    what: str
    attempt: int
    wait: float
    error: TransientError


@dataclass(frozen=True)
class RowsRejected:
    """Rows of one chunk set aside (``on_error="isolate"``), with their reasons."""

    verb: str
    table: str
    rejections: tuple[Rejection, ...]


@dataclass(frozen=True)
class RunFinished:
    """A verb call ended: ``error`` is None when it returned ``report``. On an error
    ``report`` is what had committed (None where nothing ran)."""

    verb: str
    table: str
    report: Report | None
    error: BaseException | None = None
    label: str | None = None


Event = RunStarted | ChunkDone | Retried | RowsRejected | RunFinished
EventCallback = Callable[[Any], None]


class EventSink:
    """Delivers a call's events to the Store's subscribers and the logger."""

    def __init__(self, verb: str, table: str, subscribers: list[EventCallback]) -> None:
        self.verb = verb
        self.table = table
        self.subscribers = list(subscribers)
        self.debug = logger.isEnabledFor(logging.DEBUG)
        # Whether anyone listens to a call's start and successful end, and to its
        # chunks: else those events are not even built.
        self.wants_runs = bool(self.subscribers) or logger.isEnabledFor(logging.INFO)
        self.wants_chunks = self.debug or bool(self.subscribers)

    def emit(self, event: Any) -> None:
        if self.debug or isinstance(event, RunFinished):
            log_event(event)
        for callback in self.subscribers:
            callback(event)

    # Builders used by the executor, so it needs no knowledge of the event classes.

    def chunk_done(self, first_row: int, rows: int, counts: dict[str, int], rejected: int,
                   report: Report) -> None:  # fmt: skip
        self.emit(ChunkDone(self.verb, self.table, first_row, rows, counts, rejected, report))

    def retried(self, what: str, error: TransientError, attempt: int, wait: float) -> None:
        self.emit(Retried(self.verb, self.table, what, attempt, wait, error))

    def rejected(self, rejections: list[Rejection]) -> None:
        self.emit(RowsRejected(self.verb, self.table, tuple(rejections)))


def log_event(event: Any) -> None:
    """The concise log line of an event (DEBUG for chunks, retries and rejections)."""
    if isinstance(event, ChunkDone):
        done = ", ".join(f"{k} {v}" for k, v in event.counts.items() if v)
        if event.rejected:
            done = f"{done}, rejected {event.rejected}" if done else f"rejected {event.rejected}"
        last = event.first_row + event.rows - 1
        logger.debug(
            "%s %s: rows %d-%d done: %s", event.verb, event.table, event.first_row, last,
            done or "nothing to do",
        )  # fmt: skip
    elif isinstance(event, Retried):
        logger.debug(
            "%s %s: %s: %s; retry %d in %.3fs", event.verb, event.table, event.what,
            event.error, event.attempt, event.wait,
        )  # fmt: skip
    elif isinstance(event, RowsRejected):
        for r in event.rejections:
            where = f" column {r.column!r}:" if r.column else ""
            logger.debug(
                "%s %s: row %d (key %r) rejected:%s %s", event.verb, event.table, r.row, r.key,
                where, r.reason,
            )  # fmt: skip
    elif isinstance(event, RunFinished):
        label = f" [{event.label}]" if event.label else ""
        if event.error is None:
            logger.info("%s%s", event.report, label)
        else:
            report = event.report
            wrote = report is not None and any(getattr(report, n) for n in OUTCOMES)
            # A call that failed before any row was counted wrote nothing: its Report's
            # "0 rows in -> nothing to do" would read as if no rows were given.
            done = f" ({report})" if wrote else " (nothing written)"
            logger.warning(
                "%s %s failed%s: %s%s", event.verb, event.table, label, event.error, done
            )
    elif isinstance(event, RunStarted):
        label = f" [{event.label}]" if event.label else ""
        logger.debug("%s %s started%s", event.verb, event.table, label)
