"""The run log: a ``bulkops_runs`` row per verb call, and the checkpoints of resumable loads.

Both tables live in the target database and are created on first use; the backend
keeps them (``SQLBackend.run_log_store()``), this module only says what goes in. Every
write to them is bookkeeping done on the Store's own connection:

- a run's row is written in a short transaction of its own when the call starts
  (status ``running``, so a crashed run stays visible) and updated when it ends;
- inside an open transaction scope (``atomic()`` blocks, claimed batches) nothing is
  written until the scope ends, so the row can neither join the caller's transaction
  nor be lost with its rollback: it is written afterwards with the outcome of the
  scope (``rolled back`` when it rolled back);
- a checkpoint (``bulkops_checkpoints``) is written in the very transaction of the
  chunk it records, on the connection that wrote the chunk: the chunk and its
  checkpoint commit together or not at all, and the primary key refuses a chunk
  recorded twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .backends.base import (
    CHECKPOINTS_TABLE,
    RUNS_TABLE,
    Backend,
    RunLogStore,
    SQLBackend,
    run_transaction,
)
from .errors import BulkError, ResumeError, SchemaError, TooManyRejectsError
from .jsoncodec import dumps, loads
from .report import OUTCOMES, Report
from .retry import RetryPolicy
from .schema import ColumnCodec, TableSpec

__all__ = ["CHECKPOINTS", "RUNS", "Run", "RunLog", "run_status"]

RUNS = RUNS_TABLE
CHECKPOINTS = CHECKPOINTS_TABLE

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    """One row of the run log."""

    id: int
    verb: str
    table: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    statements: int | None = None
    retries: int | None = None
    rejects: int | None = None
    elapsed: float | None = None
    error: str | None = None
    label: str | None = None
    source: str | None = None
    options: dict[str, Any] | None = None
    load_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verb": self.verb,
            "table": self.table,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "status": self.status,
            "counts": self.counts,
            "statements": self.statements,
            "retries": self.retries,
            "rejects": self.rejects,
            "elapsed": self.elapsed,
            "error": self.error,
            "label": self.label,
            "source": self.source,
        }


def run_status(report: Report | None, error: BaseException | None) -> str:
    """``ok``, ``rejected`` (rows rejected or refused), ``stopped`` (max_rejects, a
    refused atomic adjust), ``interrupted`` (Ctrl-C) or ``failed``."""
    if error is not None:
        if isinstance(error, TooManyRejectsError):
            return "stopped"
        if isinstance(error, KeyboardInterrupt):
            return "interrupted"
        return "failed"
    assert report is not None
    if report.stopped:
        return "stopped"
    if report.rejected or report.refused:
        return "rejected"
    return "ok"


def _counts(report: Report) -> str:
    counts = {"rows_in": report.rows_in}
    counts.update((name, getattr(report, name)) for name in OUTCOMES)
    counts["chunks"] = report.chunks
    return dumps(counts)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _store_of(backend: Backend) -> RunLogStore:
    if not (backend.capabilities.run_log and isinstance(backend, SQLBackend)):
        raise BulkError(f"the {backend.capabilities.name} backend cannot keep a run log")
    return backend.run_log_store()


# The columns every run log row is written with (a table of the run log's name that
# lacks them belongs to someone else).
_RUN_COLUMNS = frozenset(
    {"id", "verb", "table_name", "started_at", "status", "counts", "source", "options", "load_id"}
)


def _check_ours(columns: Mapping[str, Any]) -> None:
    missing = sorted(_RUN_COLUMNS - set(columns))
    if missing:
        raise SchemaError(
            f"the database has a table named {RUNS!r} that is not bulkops's run log (it has "
            f"no column {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); "
            "rename that table, or work without the run log (run_log=False; "
            "bulkops load --no-run-log)"
        )


class RunLog:
    """Reads and writes the run log of one Store's database."""

    def __init__(self, backend: Backend, retry: RetryPolicy) -> None:
        self.store = _store_of(backend)
        self.backend = backend
        self.retry = retry
        self._codecs: dict[str, ColumnCodec] | None = None

    # --------------------------------------------------------------- plumbing

    def _transaction(self, work: Callable[[], T]) -> T:
        return run_transaction(self.backend, work, self.retry, what="a run log write")

    def ensure(self) -> None:
        """Create the tables if they are missing; learn how to encode their values."""
        if self._codecs is not None:
            return
        self.store.create(self.retry)
        self._learn()

    def exists(self) -> bool:
        """Whether the run log tables are there (reading never creates them). A table
        of that name that is not a run log is a SchemaError saying so."""
        if self._codecs is not None:
            return True
        try:
            spec = self.backend.reflect(RUNS)
        except SchemaError:
            return False
        _check_ours(spec.columns)
        try:
            self.backend.reflect(CHECKPOINTS)
        except SchemaError:
            return False
        self._learn(spec)
        return True

    def _learn(self, spec: TableSpec | None = None) -> None:
        """Learn the codecs from ``spec`` (the runs table as just reflected) or from a
        reflection of it now."""
        if spec is None:
            spec = self.backend.reflect(RUNS)
            _check_ours(spec.columns)
        # Values go through the backend's codecs for the reflected columns, as every
        # other value bulkops writes (e.g. timestamps: text on SQLite, timestamptz on
        # PostgreSQL).
        self._codecs = {name: self.backend.codec(spec.column(name)) for name in spec.columns}

    def _encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        assert self._codecs is not None
        return {
            name: None if value is None else self._codecs[name].encode(value)
            for name, value in values.items()
        }

    def _decode(self, row: Mapping[str, Any]) -> Run:
        assert self._codecs is not None
        data = {}
        for name, value in row.items():
            decode = self._codecs[name].decode
            data[name] = value if value is None or decode is None else decode(value)
        counts = loads(data.pop("counts") or "{}")
        options = data.pop("options")
        data["table"] = data.pop("table_name")
        for name in ("id", "statements", "retries", "rejects", "load_id"):
            if data[name] is not None:
                data[name] = int(data[name])
        if data["elapsed"] is not None:
            data["elapsed"] = float(data["elapsed"])
        return Run(counts=counts, options=loads(options) if options else None, **data)

    # ------------------------------------------------------------------ runs

    def start(
        self,
        verb: str,
        table: str,
        label: str | None,
        *,
        source: str | None = None,
        options: Mapping[str, Any] | None = None,
        load_id: int | None = None,
    ) -> int:
        """Write a ``running`` row (its own transaction); its id."""
        self.ensure()
        values = self._encode(
            {
                "verb": verb,
                "table_name": table,
                "started_at": _now(),
                "status": "running",
                "label": label,
                "source": source,
                "options": dumps(options, sort_keys=True) if options is not None else None,
                "load_id": load_id,
            }
        )
        first_of_load = source is not None and load_id is None
        return self._transaction(lambda: self.store.insert_run(values, first_of_load))

    def finish(
        self, run_id: int, report: Report | None, error: BaseException | None, status: str
    ) -> None:
        """Update the run's row with how it ended (its own transaction)."""
        values = self._encode(self._outcome(report, error, status))
        self._transaction(lambda: self.store.update_run(run_id, values))

    def record(
        self,
        verb: str,
        table: str,
        label: str | None,
        started_at: dt.datetime,
        report: Report | None,
        error: BaseException | None,
        status: str,
    ) -> None:
        """Write a whole row at once (a call that ran inside a transaction scope)."""
        self.ensure()
        values = self._encode(
            {
                "verb": verb,
                "table_name": table,
                "started_at": started_at,
                "label": label,
                **self._outcome(report, error, status),
            }
        )
        self._transaction(lambda: self.store.insert_run(values, False))

    @staticmethod
    def _outcome(report: Report | None, error: BaseException | None, status: str) -> dict[str, Any]:
        values: dict[str, Any] = {"finished_at": _now(), "status": status}
        if error is not None:
            values["error"] = str(error) or type(error).__name__
        if report is not None:
            values.update(
                counts=_counts(report),
                statements=report.statements,
                retries=report.retries,
                rejects=report.rejected,
                elapsed=report.elapsed,
            )
        return values

    def runs(self, last: int | None = None) -> list[Run]:
        """The latest ``last`` runs (all if None), newest first."""
        if not self.exists():
            return []
        return [self._decode(row) for row in self.store.runs(last)]

    # ---------------------------------------------------------- resumable loads

    def previous_load(self, table: str) -> Run | None:
        """The latest run on ``table`` that read an identified input (a load)."""
        if not self.exists():
            return None
        row = self.store.previous_load(table)
        return self._decode(row) if row is not None else None

    def check_resumable(
        self, previous: Run, table: str, source: str, options: Mapping[str, Any]
    ) -> None:
        """Refuse (ResumeError) to continue ``previous`` with another input or other
        options: its checkpoints would name the wrong rows."""
        if previous.source != source:
            raise ResumeError(
                f"cannot resume the load of {table!r}: the input changed since run "
                f"#{previous.id} ({previous.source}; now {source}). Load it without "
                "resuming, or resume with the file that run read"
            )
        before = previous.options or {}
        differ = sorted(k for k in set(before) | set(options) if before.get(k) != options.get(k))
        if differ:
            detail = "; ".join(
                f"{k}: {before.get(k)!r} then, {options.get(k)!r} now" for k in differ
            )
            raise ResumeError(
                f"cannot resume the load of {table!r}: the options differ from run "
                f"#{previous.id} ({detail}), so the chunks would not be the same"
            )

    def checkpoints(self, load_id: int) -> dict[int, int]:
        """``{first row (0-based): rows}`` of every chunk the load committed."""
        return dict(self.store.checkpoints(load_id))

    def checkpoint(
        self, backend: Backend, load_id: int, run_id: int, first_row: int, rows: int
    ) -> None:
        """Record a chunk in the transaction that writes it, on ``backend``."""
        store = self.store if backend is self.backend else _store_of(backend)
        store.add_checkpoint(load_id, run_id, first_row, rows)
