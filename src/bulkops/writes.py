"""One write call from start to end: normalize, plan, execute, record.

``write`` is what ``insert``, ``upsert``, ``update`` and ``delete`` run, and what
sync and ``apply`` run for the difference they write.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import IO

from .backends.base import ColumnarBackend, Timeouts, WriteKind
from .columnar import (
    ArrowPlanner,
    arrow_batches,
    arrow_stream,
    frame_records,
    is_arrow,
    rows_of,
)
from .context import Context, TableRef
from .errors import SchemaError
from .execute import Executor, OnError, numbered, resolve_on_error
from .normalize import Key, normalize_write
from .plan import Planner, chunk_rows, chunked
from .recorder import Call
from .report import ProgressCallback, Rejection, RejectsFile, Report
from .retry import RetryPolicy
from .schema import TableSpec

__all__ = ["Rejects", "WriteSettings", "one_rejects_sink", "write"]

Rejects = str | os.PathLike[str] | IO[str] | list[Rejection] | None


@dataclass(frozen=True)
class WriteSettings:
    """The options every write verb takes (their meaning: ``Store``)."""

    chunk_size: int | None = None
    atomic: bool = False
    on_error: OnError | None = None
    rejects: Rejects = None
    max_rejects: int | None = None
    retry: RetryPolicy | None = None
    progress: ProgressCallback | None = None
    workers: int | None = None
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    label: str | None = None
    source_id: str | None = None
    resume: bool = False
    force: bool = False
    nan_as_null: bool = True


_END = object()


def write(
    ctx: Context,
    kind: WriteKind,
    table: TableRef,
    rows: Iterable[object],
    settings: WriteSettings,
    *,
    columns: Sequence[str] | None = None,
    key: Key = None,
    update_columns: Sequence[str] | None = None,
    touch: bool = True,
) -> Report:
    """Write ``rows`` to ``table``. ``touch``: the write invalidates the table's sync
    digests (off for the writes of a sync itself, which keeps its own account)."""
    capabilities = ctx.capabilities
    workers = settings.workers or 1
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if settings.statement_timeout is not None:
        ctx.require(capabilities.statement_timeout, "statement_timeout")
    if settings.atomic:
        ctx.require(capabilities.transactions, "atomic=True (it has no multi-request transactions)")
        ctx.refuse_in_caller_transaction(
            "atomic=True", "makes the call one transaction of its own (the caller's "
            "transaction already holds it: roll that back to undo it)"
        )  # fmt: skip
    if workers > 1:
        ctx.refuse_in_caller_transaction(f"workers={workers}", "writes over connections of its own")
    ctx.refuse_run_log_in_caller_transaction()
    if settings.source_id is not None or settings.resume:
        ctx.refuse_in_caller_transaction(
            "a resumable load (source_id=, resume=)", "commits each chunk's checkpoint"
        )
    spec = ctx.table(table)
    verb = kind if kind != "insert_ignore" else "insert"
    report = Report(verb=verb, table=spec.name)
    recorder = ctx.recorder
    backend = ctx.backend
    keeps_nan = None
    if not settings.nan_as_null and isinstance(backend, ColumnarBackend):
        columnar_backend = backend

        def keeps_nan(name: str) -> bool:
            if name not in spec.columns:
                return False
            # (Arrow decimals hold no NaN: into a numeric column NaN stays missing.)
            target = columnar_backend.arrow_target(spec.columns[name])
            return target.nan and target.kind == "float"

    stream = arrow_stream(rows, keeps_nan)
    if stream is None and is_arrow(rows):
        rows = frame_records(rows, keeps_nan)  # a DataFrame Arrow cannot take
    if stream is not None and not (capabilities.columnar and isinstance(backend, ColumnarBackend)):
        # No columnar write here (DynamoDB): the batches' rows take the row path.
        rows, stream = rows_of(stream), None
    if stream is not None:
        assert isinstance(backend, ColumnarBackend)
        # The columnar path: the stream's schema says the columns, as a first row would.
        names = stream.schema.names if columns is None else columns
        plan = normalize_write(
            backend, kind, spec, dict.fromkeys(names), iter(()), columns=columns, key=key,
            update_columns=update_columns,
        )  # fmt: skip
        missing = [c for c in plan.op.columns if c not in stream.schema.names]
        if missing:
            raise SchemaError(
                f"{verb}(): the data has no column {', '.join(map(repr, missing))}; its "
                f"columns are {', '.join(stream.schema.names)}"
            )
    else:
        iterator = iter(rows)
        first = next(iterator, _END)
        if first is _END:
            return recorder.observed(verb, spec.name, settings.label, lambda call: report)
        plan = normalize_write(
            backend, kind, spec, first, iterator, columns=columns, key=key,
            update_columns=update_columns,
        )  # fmt: skip
    retry = settings.retry or ctx.retry
    op = replace(plan.op, retry=retry)
    timeouts = Timeouts(settings.lock_timeout, settings.statement_timeout)
    on_error = resolve_on_error(settings.on_error, settings.rejects, settings.max_rejects)
    size = chunk_rows(capabilities, len(op.columns), settings.chunk_size, arrow=stream is not None)
    planner: Planner = plan.planner
    chunks: Iterable[object]
    if stream is not None:
        assert isinstance(backend, ColumnarBackend)
        planner = ArrowPlanner(op, backend, plan.planner)
        chunks = arrow_batches(stream, op.columns, size)
    else:
        chunks = chunked(plan.rows, size)
    sink = RejectsFile(settings.rejects) if settings.rejects is not None else None

    def run(call: Call) -> Report:
        executor = Executor(
            backend, op, planner, report, retry=retry,
            on_error=on_error, atomic=settings.atomic, rejects=sink,
            max_rejects=settings.max_rejects, progress=settings.progress, workers=workers,
            nested=ctx.in_scope(), events=call.events, checkpoint=call.checkpoint,
            skip=call.skip, timeouts=timeouts,
            read_ahead=stream is not None and capabilities.read_ahead,
        )  # fmt: skip
        return executor.run(numbered(chunks))

    # What decides the chunks and what is done with them: a load resumes only
    # with the same (then the same rows fall in the same chunks).
    shape = {
        "verb": kind, "columns": list(op.columns), "key": list(op.key), "chunk_size": size,
        "update_columns": list(op.update_columns) if op.update_columns is not None else None,
        "atomic": settings.atomic,
    }  # fmt: skip
    try:
        with ctx.touching(spec) if touch else nullcontext():
            return recorder.observed(
                verb, spec.name, settings.label, run, source_id=settings.source_id,
                resume=settings.resume, shape=shape,
                doubles=not settings.force and _writes_again(kind, spec, op.columns),
            )  # fmt: skip
    finally:
        if sink is not None:
            sink.close()


def _writes_again(kind: WriteKind, spec: TableSpec, columns: Sequence[str]) -> bool:
    """Whether rows given again are written again: an insert whose rows give no key or
    unique constraint's columns (nothing makes the second copy a conflict)."""
    if kind not in ("insert", "insert_ignore"):
        return False
    constraints = [spec.primary_key, *spec.unique]
    return not any(c and all(name in columns for name in c) for c in constraints)


def one_rejects_sink(settings: WriteSettings) -> tuple[WriteSettings, Rejects]:
    """The settings for the several writes of one call (a sync, an apply), and the
    call's ``rejects`` taken out of them: each write reports its rejections, and the
    call writes them all to that one sink at the end (a path given to each write would
    be overwritten)."""
    sink = settings.rejects
    on_error = resolve_on_error(settings.on_error, sink, settings.max_rejects)
    return replace(settings, rejects=None, on_error=on_error), sink
