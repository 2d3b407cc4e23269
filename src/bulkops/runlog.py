"""The run log: a ``bulkops_runs`` row per verb call, and the checkpoints of resumable loads.

Both tables live in the target database and are created on first use (SQLAlchemy
Core DDL, the same on SQLite and PostgreSQL). Every write to them is bookkeeping done
on the Store's own connection:

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
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .backends.base import ALREADY_EXISTS, Backend
from .errors import BulkError, ResumeError, SchemaError, TooManyRejectsError
from .execute import run_transaction
from .report import OUTCOMES, Report
from .retry import RetryPolicy
from .schema import ColumnCodec

__all__ = ["CHECKPOINTS", "RUNS", "Run", "RunLog", "run_status"]

RUNS = "bulkops_runs"
CHECKPOINTS = "bulkops_checkpoints"

_metadata = sa.MetaData()
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself

runs_table = sa.Table(
    RUNS,
    _metadata,
    sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("verb", sa.Text, nullable=False),
    # "table" is a reserved word in SQL: every query would have to quote it.
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("counts", sa.Text),  # JSON: rows_in, the outcome counts, chunks
    sa.Column("statements", sa.BigInteger),
    sa.Column("retries", sa.BigInteger),
    sa.Column("rejects", sa.BigInteger),
    sa.Column("elapsed", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("label", sa.Text),
    # Resumable loads: what was read ("sha256:…"), the options that decide the chunks
    # (JSON), and the first run of the load, under which its checkpoints are kept.
    sa.Column("source", sa.Text),
    sa.Column("options", sa.Text),
    sa.Column("load_id", sa.BigInteger),
)

checkpoints_table = sa.Table(
    CHECKPOINTS,
    _metadata,
    sa.Column("load_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("first_row", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("run_id", sa.BigInteger, nullable=False),
)

_RUN_COLUMNS = [c.name for c in runs_table.columns]


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
    return json.dumps(counts)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunLog:
    """Reads and writes the run log of one Store's database."""

    def __init__(self, backend: Backend, retry: RetryPolicy) -> None:
        execute = getattr(backend, "execute_core", None)
        if execute is None:
            raise BulkError(f"the {backend.capabilities.name} backend cannot keep a run log")
        self.backend = backend
        self.retry = retry
        self._codecs: dict[str, ColumnCodec] | None = None

    # --------------------------------------------------------------- plumbing

    def _execute(
        self, statement: sa.ClauseElement, values: Mapping[str, Any] | None = None,
        backend: Backend | None = None,
    ) -> list[tuple[Any, ...]]:  # fmt: skip
        return (backend or self.backend).execute_core(statement, values)  # type: ignore[attr-defined, no-any-return]

    def _transaction(self, work: Any) -> Any:
        return run_transaction(self.backend, work, self.retry, what="a run log write")

    def ensure(self) -> None:
        """Create the tables if they are missing; learn how to encode their values."""
        if self._codecs is not None:
            return
        self._create()
        self._learn()

    def exists(self) -> bool:
        """Whether the run log tables are there (reading never creates them)."""
        if self._codecs is not None:
            return True
        try:
            self.backend.reflect(CHECKPOINTS)
            self._learn()
        except SchemaError:
            return False
        return True

    def _create(self) -> None:
        def create() -> None:
            for table in (runs_table, checkpoints_table):
                self._execute(sa.schema.CreateTable(table, if_not_exists=True))

        try:
            self._transaction(create)
        except BulkError as error:
            if error.code not in ALREADY_EXISTS:
                raise

    def _learn(self) -> None:
        spec = self.backend.reflect(RUNS)
        # Values go through the backend's codecs for the reflected columns, as every
        # other value bulkops writes (e.g. timestamps: text on SQLite, timestamptz on
        # PostgreSQL).
        self._codecs = {name: self.backend.codec(spec.column(name)) for name in _RUN_COLUMNS}

    def _encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        assert self._codecs is not None
        return {
            name: None if value is None else self._codecs[name].encode(value)
            for name, value in values.items()
        }

    def _decode(self, row: tuple[Any, ...]) -> Run:
        assert self._codecs is not None
        data = {}
        for name, value in zip(_RUN_COLUMNS, row, strict=True):
            decode = self._codecs[name].decode
            data[name] = value if value is None or decode is None else decode(value)
        counts = json.loads(data.pop("counts") or "{}")
        options = data.pop("options")
        data["table"] = data.pop("table_name")
        for name in ("id", "statements", "retries", "rejects", "load_id"):
            if data[name] is not None:
                data[name] = int(data[name])
        if data["elapsed"] is not None:
            data["elapsed"] = float(data["elapsed"])
        return Run(counts=counts, options=json.loads(options) if options else None, **data)

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
                "options": json.dumps(options, sort_keys=True) if options is not None else None,
                "load_id": load_id,
            }
        )
        t = runs_table

        def insert() -> int:
            rows = self._execute(sa.insert(t).values(values).returning(t.c.id))
            run_id = int(rows[0][0])
            if source is not None and load_id is None:  # the first run of a load
                self._execute(sa.update(t).where(t.c.id == run_id).values(load_id=run_id))
            return run_id

        result: int = self._transaction(insert)
        return result

    def finish(
        self, run_id: int, report: Report | None, error: BaseException | None, status: str
    ) -> None:
        """Update the run's row with how it ended (its own transaction)."""
        values = self._encode(self._outcome(report, error, status))
        t = runs_table
        self._transaction(
            lambda: self._execute(sa.update(t).where(t.c.id == run_id).values(values))
        )

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
        self._transaction(lambda: self._execute(sa.insert(runs_table).values(values)))

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
        t = runs_table
        stmt = sa.select(*t.columns).order_by(t.c.id.desc())
        if last is not None:
            stmt = stmt.limit(last)
        return [self._decode(row) for row in self._execute(stmt)]

    # ---------------------------------------------------------- resumable loads

    def previous_load(self, table: str) -> Run | None:
        """The latest run on ``table`` that read an identified input (a load)."""
        if not self.exists():
            return None
        t = runs_table
        stmt = (
            sa.select(*t.columns)
            .where(t.c.table_name == sa.bindparam("table"), t.c.source.is_not(None))
            .order_by(t.c.id.desc())
            .limit(1)
        )
        rows = self._execute(stmt, {"table": table})
        return self._decode(rows[0]) if rows else None

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
        t = checkpoints_table
        stmt = sa.select(t.c.first_row, t.c.rows).where(t.c.load_id == sa.bindparam("load"))
        return {int(f): int(n) for f, n in self._execute(stmt, {"load": load_id})}

    def checkpoint(
        self, backend: Backend, load_id: int, run_id: int, first_row: int, rows: int
    ) -> None:
        """Record a chunk in the transaction that writes it, on ``backend``."""
        self._execute(
            sa.insert(checkpoints_table).values(
                load_id=load_id, first_row=first_row, rows=rows, run_id=run_id
            ),
            backend=backend,
        )
