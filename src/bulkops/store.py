"""Store: the verbs. Each one normalizes its input, plans chunks, executes and reports."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from itertools import chain
from types import TracebackType
from typing import IO, Any, Literal, TypeVar

from typing_extensions import TypedDict, Unpack

from .backends.base import Backend, Capabilities, ItemBackend, WriteKind, WriteOp
from .errors import (
    BulkError,
    BusyError,
    ConversionError,
    LimitError,
    SchemaError,
    UnreadKeysError,
)
from .events import EventCallback, EventSink, RunFinished, RunStarted, logger
from .execute import Checkpoint, Executor, OnError, numbered, resolve_on_error, run_transaction
from .plan import ChunkPlanner, PreparedChunk, chunk_rows, chunked
from .report import ProgressCallback, Rejection, RejectsFile, Report, SyncReport
from .retry import DEFAULT_RETRY, RetryPolicy
from .runlog import Run, RunLog, run_status
from .schema import ColumnCodec, TableSpec, coerce
from .sequence import Sequence as Sequence_
from .sync import Changeset, Mode, Syncer, apply_changeset
from .transaction import Atomic, Batch, Scope

__all__ = ["Store"]

T = TypeVar("T")
Key = str | Sequence[str] | None
Rejects = str | os.PathLike[str] | IO[str] | list[Rejection] | None


class WriteOptions(TypedDict, total=False):
    """Options every write verb takes (see ``Store``)."""

    chunk_size: int | None
    atomic: bool
    on_error: OnError | None
    rejects: Rejects
    max_rejects: int | None
    retry: RetryPolicy | None
    progress: ProgressCallback | None
    workers: int | None
    lock_timeout: float | None
    statement_timeout: float | None
    label: str | None
    source: str | None
    resume: bool


class _Call:
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


class Store:
    """A database, ready for bulk work. Make one with ``bulkops.connect(...)``.

    Every write verb takes the same options:

    - ``chunk_size``: rows per chunk (default: from the backend's limits);
    - ``atomic``: one transaction for the whole call, all or nothing (default: one
      short transaction per chunk);
    - ``on_error``: ``"raise"`` (stop at the first bad row, naming it) or ``"isolate"``
      (reject bad rows, write the rest); defaults to ``"isolate"`` when ``rejects`` or
      ``max_rejects`` is given, else ``"raise"``;
    - ``rejects``: a path, text file or list that receives the Rejections (JSON Lines);
    - ``max_rejects``: stop cleanly (``TooManyRejects``) once more rows than this fail;
    - ``retry``: a RetryPolicy for transient errors (deadlocks, busy, throttling);
    - ``progress``: called with the running Report after each chunk;
    - ``workers``: chunks written in parallel over this many connections, where the
      backend allows it (PostgreSQL); input still streams, a bounded number of chunks
      in flight;
    - ``lock_timeout`` / ``statement_timeout``: seconds a statement may wait for a lock
      (``LockTimeoutError``, retried) or run (``StatementTimeoutError``, not retried);
    - ``label``: recorded with the call in the run log (default: the Store's label);
    - ``source``: an identity of the input (e.g. ``"sha256:…"`` of the file read);
      with the run log on, each committed chunk is then checkpointed in its own
      transaction, so that a later call can ``resume``;
    - ``resume``: skip the chunks that the latest load of this table committed, when
      it read the same ``source`` with the same options (else ``ResumeError``).

    ``run_log=True`` records every verb call in the ``bulkops_runs`` table of the
    database (see ``runs()``); ``on_event`` is subscribed to the calls' events
    (see ``subscribe()``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        retry: RetryPolicy | None = None,
        run_log: bool = False,
        label: str | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry or DEFAULT_RETRY
        backend.retry = self.retry  # for retries inside the backend (reads, primitives)
        if run_log and not backend.capabilities.run_log:
            raise LimitError(f"{backend.capabilities.name} cannot keep a run log (run_log=True)")
        self.run_log = run_log
        self.label = label
        self._depth = 0  # open transaction scopes (atomic blocks, claimed batches)
        self._subscribers: list[EventCallback] = [on_event] if on_event is not None else []
        self._run_log: RunLog | None = None
        self._pending_runs: list[_PendingRun] = []  # calls inside an open scope
        self._state: Any = None  # where sync keeps its digests (see _sync_state)

    # ------------------------------------------------------------- lifecycle

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------- events, run log

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` with the events of every later verb call:
        ``RunStarted``, ``ChunkDone``, ``Retried``, ``RowsRejected``, ``RunFinished``
        (``bulkops.events``). Returns a function that unsubscribes it. Callbacks run
        in the thread that sent the event (workers retry in theirs); an exception
        from one propagates out of the call, as from ``progress=``."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def runs(self, last: int | None = 20) -> list[Run]:
        """The latest ``last`` rows of the run log (all if None), newest first."""
        if not self.capabilities.run_log:
            return []  # a database that cannot keep a run log has none
        return self._runs().runs(last)

    def _runs(self) -> RunLog:
        if self._run_log is None:
            self._run_log = RunLog(self.backend, self.retry)
        return self._run_log

    def _observed(
        self,
        verb: str,
        table: str,
        label: str | None,
        run: Callable[[_Call], Report],
        *,
        source: str | None = None,
        resume: bool = False,
        options: dict[str, Any] | None = None,
    ) -> Report:
        """Run one verb call with its events, log lines and run-log row."""
        label = label if label is not None else self.label
        events = EventSink(verb, table, self._subscribers)
        run_id: int | None = None
        pending: _PendingRun | None = None
        call = _Call(events)
        if source is not None or resume:
            run_id, call = self._resumable(verb, table, label, events, source, resume, options)
        elif self.run_log and self._depth > 0:
            pending = _PendingRun(verb, table, label, dt.datetime.now(dt.UTC))
            self._pending_runs.append(pending)
        elif self.run_log:
            run_id = self._runs().start(verb, table, label)
        if events.wants_runs:
            events.emit(RunStarted(verb, table, label))
        try:
            report = run(call)
        except BaseException as error:
            done: Report | None = getattr(error, "report", None)
            self._finish_run(run_id, pending, done, error)
            events.emit(RunFinished(verb, table, done, error, label))  # logged as a warning
            raise
        self._finish_run(run_id, pending, report, None)
        if events.wants_runs:
            events.emit(RunFinished(verb, table, report, None, label))
        return report

    def _resumable(
        self,
        verb: str,
        table: str,
        label: str | None,
        events: EventSink,
        source: str | None,
        resume: bool,
        options: dict[str, Any] | None,
    ) -> tuple[int, _Call]:
        """Start the run of a load that checkpoints its chunks (and skips those an
        earlier run committed, when resuming)."""
        if source is None:
            raise ValueError("resume=True needs source= (what identifies the input)")
        if not self.run_log:
            raise ValueError(
                "source= and resume= keep checkpoints in the run log: connect(..., run_log=True)"
            )
        if self._depth > 0:
            raise ValueError(
                "a resumable load checkpoints each chunk in its own transaction: "
                "not inside atomic() or a claimed batch"
            )
        log = self._runs()
        options = options or {}
        load_id: int | None = None
        skip: dict[int, int] = {}
        if resume:
            previous = log.previous_load(table)
            if previous is not None:
                log.check_resumable(previous, table, source, options)
                load_id = previous.load_id
                assert load_id is not None
                skip = log.checkpoints(load_id)
                logger.info(
                    "%s %s: resuming the load of run #%d: %d chunks already committed",
                    verb, table, previous.id, len(skip),
                )  # fmt: skip
        run_id = log.start(verb, table, label, source=source, options=options, load_id=load_id)
        load = load_id if load_id is not None else run_id

        def checkpoint(backend: Backend, chunk: PreparedChunk) -> None:
            log.checkpoint(backend, load, run_id, chunk.start, chunk.size)

        return run_id, _Call(events, checkpoint, skip)

    def _finish_run(
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
            self._runs().finish(run_id, report, error, run_status(report, error))
        except Exception as failure:
            # The call's work has committed (or failed on its own): raising now would
            # invite a retry that applies it twice. The row stays 'running'.
            logger.warning("could not record run #%d in the run log: %s", run_id, failure)

    def _scope_mark(self) -> int:
        """Where the calls of a scope that opens now begin among the pending runs."""
        return len(self._pending_runs)

    def _scope_ended(self, mark: int, committed: bool, error: BaseException | None = None) -> None:
        """A scope ended: its calls rolled back with it unless it committed; once the
        outermost one has ended, the pending calls are logged."""
        if not committed:
            for pending in self._pending_runs[mark:]:
                if not pending.rolled_back and pending.error is None:
                    pending.error = error
                pending.rolled_back = True
        if self._depth > 0 or not self._pending_runs:
            return
        pending_runs, self._pending_runs = self._pending_runs, []
        for p in pending_runs:
            status = "rolled back" if p.rolled_back else run_status(p.report, p.error)
            try:
                self._runs().record(
                    p.verb, p.table, p.label, p.started_at, p.report, p.error, status
                )
            except Exception as failure:  # never fail a block that committed
                logger.warning("could not record a %s of %r in the run log: %s",
                               p.verb, p.table, failure)  # fmt: skip

    def table(self, name: str) -> TableSpec:
        """The table as bulkops sees it (columns, logical types, keys)."""
        return self.backend.reflect(name)

    def create_table(
        self, name: str, columns: Mapping[str, str], key: str | Sequence[str] = ()
    ) -> TableSpec:
        """Create a table from ``{column: logical type}`` with ``key`` as primary key."""
        key_cols = (key,) if isinstance(key, str) else tuple(key)
        missing = [k for k in key_cols if k not in columns]
        if missing:
            raise SchemaError(f"key column(s) {', '.join(missing)} are not among the columns")
        return self.backend.create_table(name, columns, key_cols)

    # ------------------------------------------------------------------ writes

    def insert(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        columns: Sequence[str] | None = None,
        on_conflict: Literal["error", "ignore"] = "error",
        key: Key = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Insert rows. ``on_conflict="ignore"`` skips rows whose key (or any unique
        value) already exists and counts them as ignored; ``"error"`` makes them bad rows.
        """
        if on_conflict not in ("error", "ignore"):
            raise ValueError(f"on_conflict must be 'error' or 'ignore', not {on_conflict!r}")
        kind: WriteKind = "insert" if on_conflict == "error" else "insert_ignore"
        return self._write(kind, table, rows, columns=columns, key=key, options=options)

    def upsert(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Insert rows, or update the existing row with the same key. Rows whose values
        are already there are left untouched and counted as unchanged. ``key`` needs a
        primary key or unique constraint on exactly those columns. ``update_columns``:
        what to change in existing rows (default: every non-key column given)."""
        return self._write(
            "upsert", table, rows, columns=columns, key=key, options=options,
            update_columns=update_columns,
        )  # fmt: skip

    def update(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Set ``columns`` of the rows matched by ``key``. Keys not in the table are
        counted as not_found; rows already equal as unchanged."""
        return self._write("update", table, rows, columns=columns, key=key, options=options)

    def delete(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Delete the rows with these keys: scalars for a one-column key, tuples for a
        composite key, or mappings holding the key columns."""
        spec = self.backend.reflect(table)
        key_cols = spec.resolve_key(key, "delete")
        return self._write(
            "delete", table, self._key_tuples(keys, key_cols), columns=key_cols, key=key_cols,
            options=options, spec=spec,
        )  # fmt: skip

    # ------------------------------------------------------------------- reads

    def get_many(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        consistent_read: bool = False,
    ) -> dict[Any, dict[str, Any]]:
        """``{key: row}`` for the keys that exist, read in large chunks (one statement
        per chunk, never one per key). Keys are scalars, tuples for composite keys, or
        mappings; the result's keys are in the column's type (``"7"`` finds ``7``).

        DynamoDB: rows are whole items (or ``columns`` plus the key), requests hold at
        most 100 keys, unprocessed keys are re-driven with backoff, and keys still
        unread then raise ``UnreadKeysError`` (never a silent gap);
        ``consistent_read=True`` asks for strongly consistent reads (SQL databases
        always read committed data)."""
        spec = self.backend.reflect(table)
        key_cols = spec.resolve_key(key, "get_many")
        if self.capabilities.items:
            return self._get_items(spec, key_cols, keys, columns, chunk_size, consistent_read)
        wanted = spec.check_columns(columns) if columns is not None else tuple(spec.columns)
        fetch = key_cols + tuple(c for c in wanted if c not in key_cols)
        key_codecs = [self.backend.codec(spec.column(k)) for k in key_cols]
        decoders = [self.backend.codec(spec.column(c)).decode for c in fetch]
        width = len(key_cols)
        size = chunk_rows(self.capabilities, width, chunk_size)
        if self.capabilities.max_read_keys:
            size = min(size, self.capabilities.max_read_keys)
        # Reads are not row-locking, so bigger chunks only mean fewer statements.
        if chunk_size is None and self.capabilities.max_params:
            size = max(size, self.capabilities.max_params // width)
        result: dict[Any, dict[str, Any]] = {}
        if width == 1:
            # One-column keys travel as plain values: no tuple per key on the hot path.
            codec, name = key_codecs[0], key_cols[0]
            passthrough = codec.passthrough
            unique: dict[Any, None] = dict.fromkeys(
                k if k.__class__ in passthrough else _encode_key((k,), key_codecs, key_cols)[0]
                for k in (k[name] if isinstance(k, Mapping) else k for k in keys)
            )
        else:
            unique = dict.fromkeys(
                _encode_key(k, key_codecs, key_cols) for k in self._key_tuples(keys, key_cols)
            )
        decode = any(d is not None for d in decoders)
        project = wanted != fetch
        for part in chunked(unique, size):
            for raw in self.backend.read(spec, key_cols, fetch, part):
                values: Sequence[Any] = raw
                if decode:
                    values = [v if d is None else d(v) for v, d in zip(raw, decoders, strict=True)]
                row = dict(zip(fetch, values, strict=True))
                k = values[0] if width == 1 else tuple(values[:width])
                result[k] = {c: row[c] for c in wanted} if project else row
        return result

    def _get_items(
        self,
        spec: TableSpec,
        key_cols: tuple[str, ...],
        keys: Iterable[Any],
        columns: Sequence[str] | None,
        chunk_size: int | None,
        consistent_read: bool,
    ) -> dict[Any, dict[str, Any]]:
        backend = self._items_backend()
        wanted = spec.check_columns(columns) if columns is not None else None
        key_codecs = [backend.codec(spec.column(k)) for k in key_cols]
        unique = dict.fromkeys(
            _encode_key(k, key_codecs, key_cols) for k in self._key_tuples(keys, key_cols)
        )
        size = min(chunk_size or MAX_READ_KEYS, self.capabilities.max_read_keys or MAX_READ_KEYS)
        result: dict[Any, dict[str, Any]] = {}
        unread: list[Any] = []
        width = len(key_cols)
        for part in chunked(unique, size):
            items: list[dict[str, Any]] = []
            try:
                # A plain loop, not list(): items read before the error are kept.
                for item in backend.get_items(spec, key_cols, part, wanted, consistent_read):
                    items.append(item)
            except UnreadKeysError as error:
                unread += error.keys
            for item in items:
                k = item[key_cols[0]] if width == 1 else tuple(item[c] for c in key_cols)
                result[k] = item if wanted is None else {c: item[c] for c in wanted if c in item}
        if unread:
            raise UnreadKeysError(
                f"get_many on {spec.name!r}: {len(unread)} key(s) still unprocessed after the "
                "retry policy's attempts (error.keys names them, error.found has the rest)",
                unread,
                result,
            )
        return result

    def _items_backend(self) -> ItemBackend:
        backend = self.backend
        assert isinstance(backend, ItemBackend)
        return backend

    def _require(self, capability: str, what: str) -> None:
        if not getattr(self.capabilities, capability):
            raise LimitError(f"{self.capabilities.name} does not support {what}")

    # ------------------------------------------------------ transactions, primitives

    def atomic(self, retry: RetryPolicy | None = None) -> Atomic:
        """One transaction around a block, re-run on deadlocks and serialization
        failures: ``@db.atomic()`` or ``for attempt in db.atomic(): with attempt:``
        (a plain ``with db.atomic():`` is one transaction without re-runs)."""
        self._require("transactions", "atomic blocks (it has no multi-request transactions)")
        return Atomic(self, retry)

    def _transaction(self, work: Callable[[], T], retry: RetryPolicy | None, what: str) -> T:
        """``work`` in a transaction of its own, or in the open scope's savepoint."""
        if self._depth > 0:
            with self.backend.savepoint():
                return work()
        return run_transaction(self.backend, work, retry or self.retry, what=what)

    def adjust(
        self,
        table: str,
        deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        column: str,
        key: Key = None,
        min_value: Any = None,
        max_value: Any = None,
        atomic: bool = False,
        chunk_size: int | None = None,
        retry: RetryPolicy | None = None,
        label: str | None = None,
    ) -> Report:
        """Add ``{key: delta}`` to ``column`` in the database (``col = col + delta``, one
        statement per chunk, never read-modify-write in Python).

        Keys whose result would fall outside ``[min_value, max_value]`` are refused
        (``report.refused_keys``); keys not in the table are reported
        (``report.not_found_keys``). With ``atomic=True`` nothing is applied unless
        every key is found and within bounds: the "all items in stock or none" checkout.
        Pairs given more than once for one key are summed. ``label``: for the run log.
        """
        if atomic:
            self._require("transactions", "adjust(atomic=True): it has no transactions")
        return self._observed(
            "adjust", table, label,
            lambda call: self._adjust(
                table, deltas, column=column, key=key, min_value=min_value,
                max_value=max_value, atomic=atomic, chunk_size=chunk_size, retry=retry,
            ),
        )  # fmt: skip

    def _adjust(
        self,
        table: str,
        deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        column: str,
        key: Key,
        min_value: Any,
        max_value: Any,
        atomic: bool,
        chunk_size: int | None,
        retry: RetryPolicy | None,
    ) -> Report:
        spec = self.backend.reflect(table)
        with self._touching(spec):
            return self._adjust_table(
                spec, deltas, column=column, key=key, min_value=min_value,
                max_value=max_value, atomic=atomic, chunk_size=chunk_size, retry=retry,
            )  # fmt: skip

    def _adjust_table(
        self,
        spec: TableSpec,
        deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        column: str,
        key: Key,
        min_value: Any,
        max_value: Any,
        atomic: bool,
        chunk_size: int | None,
        retry: RetryPolicy | None,
    ) -> Report:
        table = spec.name
        key_cols = spec.resolve_key(key, "adjust")
        target = spec.column(column)
        key_codecs = [self.backend.codec(spec.column(k)) for k in key_cols]
        value_codec = self.backend.codec(target)
        bounds = [
            None if v is None else _encode_value(v, value_codec, column)
            for v in (min_value, max_value)
        ]
        report = Report(verb="adjust", table=table)
        started = time.perf_counter()
        statements = self.backend.statements
        given: dict[tuple[Any, ...], Any] = {}  # encoded key -> key as given
        summed: dict[tuple[Any, ...], Any] = {}  # encoded key -> canonical delta
        plain_keys = key_codecs[0].passthrough if len(key_cols) == 1 else frozenset()
        for raw_key, raw_delta in deltas.items() if isinstance(deltas, Mapping) else deltas:
            report.rows_in += 1
            if raw_key.__class__ in plain_keys:
                k: tuple[Any, ...] = (raw_key,)
            else:
                k = _encode_key(_as_key_tuple(raw_key, key_cols), key_codecs, key_cols)
            delta = coerce(raw_delta, target)  # "5" from a file is 5, not text to append
            if delta is None:
                raise ConversionError(
                    f"adjust(): delta for key {raw_key!r} is empty", column=column
                )
            if k in summed:
                report.duplicates += 1
                summed[k] = summed[k] + delta
            else:
                given[k], summed[k] = raw_key, delta
        try:
            ordered = sorted(summed)  # the same lock order for every caller
        except TypeError:
            ordered = sorted(summed, key=_sort_key)
        size = chunk_rows(self.capabilities, len(key_cols) + 1, chunk_size)
        passthrough = value_codec.passthrough

        def apply(part: list[tuple[Any, ...]]) -> tuple[set[Any], set[Any]]:
            rows = [
                (*k, d if (d := summed[k]).__class__ in passthrough else value_codec.encode(d))
                for k in part
            ]
            found, applied = self.backend.adjust(spec, key_cols, column, rows, *bounds)
            return {tuple(r) for r in found}, {tuple(r) for r in applied}

        def apply_all() -> list[tuple[list[tuple[Any, ...]], set[Any], set[Any]]]:
            results = [(part, *apply(part)) for part in chunked(ordered, size)]
            if atomic and any(len(applied) < len(part) for part, _, applied in results):
                raise _Refused(results)
            return results

        results: list[tuple[list[tuple[Any, ...]], set[Any], set[Any]]]
        try:
            if atomic:
                results = self._transaction(apply_all, retry, f"adjust of {table!r}")
            else:
                results = [
                    (part, *self._transaction(partial(apply, part), retry, f"adjust of {table!r}"))
                    for part in chunked(ordered, size)
                ]
        except _Refused as refused:
            # Rolled back: nothing applied; say which keys stood in the way.
            results = refused.results
            report.stopped = "atomic: nothing applied, some keys were refused or not found"
        for part, found, applied in results:
            for k in part:
                if k not in found:
                    report.not_found += 1
                    report.not_found_keys.append(given[k])
                elif k not in applied:
                    report.refused += 1
                    report.refused_keys.append(given[k])
                elif report.stopped:
                    report.unchanged += 1  # would have applied, rolled back with the rest
                else:
                    report.updated += 1
        report.chunks = len(results)
        report.statements = self.backend.statements - statements
        report.elapsed = time.perf_counter() - started
        return report

    def get_or_create(
        self,
        table: str,
        lookup: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The row matching ``lookup``, created (with ``defaults``) if there is none:
        ``(row, created)``. Race-free: many callers at once get the same one row, and
        exactly one of them ``created=True``. ``lookup`` must be covered by a primary
        key or unique constraint."""
        spec = self.backend.reflect(table)
        cols = spec.check_columns(lookup)
        if not cols:
            raise SchemaError("get_or_create() needs a lookup")
        spec.require_unique(cols, "get_or_create")
        if any(v is None for v in lookup.values()):
            raise SchemaError("get_or_create(): a lookup value is None, and NULLs never match")
        everything = {**(defaults or {}), **lookup}
        spec.check_columns(everything)
        if self.capabilities.items:
            if set(cols) != set(spec.primary_key):
                raise SchemaError(
                    f"get_or_create() on {table!r} looks items up by their key "
                    f"({', '.join(spec.primary_key)}), not by {', '.join(cols)}"
                )
            item, created = self._items_backend().put_if_absent(spec, everything)
            if created:
                self._touch(spec)
            return item, created
        codecs = {c: self.backend.codec(spec.column(c)) for c in everything}
        where = {c: _encode_value(lookup[c], codecs[c], c) for c in cols}
        values = {c: _encode_value(v, codecs[c], c) for c, v in everything.items()}
        names = tuple(spec.columns)
        decode = self._row_decoder(spec, names)

        def attempt() -> tuple[dict[str, Any], bool]:
            # Separate statements (select; insert … on conflict do nothing; select
            # again) rather than one CTE: under READ COMMITTED a single statement
            # returns nothing to a caller that lost the race.
            for _ in range(3):
                found = self.backend.select_where(spec, names, where, limit=1)
                if found:
                    return decode(found[0]), False
                created = self.backend.insert_returning(spec, values, cols)
                if created is not None:
                    return decode(created), True
                # The conflicting row committed meanwhile: the next SELECT sees it.
            raise BusyError(f"get_or_create on {table!r}: the row kept vanishing; retrying")

        row, created = self._transaction(attempt, retry, f"get_or_create on {table!r}")
        if created:
            self._touch(spec)
        return row, created

    def ensure(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        key: Key = None,
        chunk_size: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[Any, dict[str, Any]]:
        """Batched get-or-create: ``{key: row}`` for every row given, creating the
        missing ones, in O(chunks) statements (read the existing keys, insert the
        missing rows ignoring conflicts, read those back) instead of one lookup per
        row. ``key`` must be a primary key or unique constraint."""
        spec = self.backend.reflect(table)
        key_cols = spec.resolve_key(key, "ensure")
        spec.require_unique(key_cols, "ensure")
        columns = [spec.column(k) for k in key_cols]
        result: dict[Any, dict[str, Any]] = {}
        size = chunk_size or chunk_rows(self.capabilities, len(spec.columns))
        for part in chunked(rows, size):
            wanted: dict[Any, Mapping[str, Any]] = {}
            for row in part:
                parts = tuple(coerce(row.get(c.name), c) for c in columns)
                wanted[parts[0] if len(parts) == 1 else parts] = row
            found = self.get_many(table, list(wanted), key=key_cols)
            missing = [row for k, row in wanted.items() if k not in found]
            if missing:
                self.insert(table, missing, key=key_cols, on_conflict="ignore", retry=retry)
                found.update(
                    self.get_many(table, [k for k in wanted if k not in found], key=key_cols)
                )
            result.update(found)
        return result

    def claim(
        self,
        table: str,
        *,
        where: Mapping[str, Any],
        batch_size: int = 100,
        order_by: str | Sequence[str] | None = None,
        set: Mapping[str, Any] | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Iterator[Batch]:
        """Claim rows matching ``where`` in batches, each locked only while it is
        processed in its own transaction::

            for batch in db.claim("escrows", where={"status": "LOCKED"}, batch_size=100):
                with batch:
                    ...  # batch.rows; batch.update(...) runs in the batch's transaction

        PostgreSQL locks the batch's rows with ``FOR UPDATE SKIP LOCKED``, so concurrent
        claimers never get the same row; SQLite holds its write lock per batch.
        ``set``: values written to the claimed rows right away (e.g. a status).
        Leaving ``with batch`` commits, an exception rolls back and releases the rows.
        A batch left without ``with`` commits when the next one is fetched, and is
        rolled back if the loop is abandoned. The work must change the rows so they no
        longer match ``where`` (or use ``set=``), or later batches claim them again.
        """
        self._require("row_locks", "claim() (it cannot lock rows for a transaction)")
        spec = self.backend.reflect(table)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        order = spec.resolve_key(order_by, "claim")
        filters = {
            c: _encode_value(v, self.backend.codec(spec.column(c)), c) for c, v in where.items()
        }
        spec.check_columns(filters)
        names = tuple(spec.columns)
        decode = self._row_decoder(spec, names)
        pk = spec.resolve_key(None, "claim") if set else ()
        taken = 0
        while limit is None or taken < limit:
            count = batch_size if limit is None else min(batch_size, limit - taken)
            scope = Scope(self)
            scope.begin(retry or self.retry)
            batch: Batch | None = None
            try:
                found = self.backend.select_where(
                    spec, names, filters, order_by=order, limit=count, lock=True
                )
                if not found:
                    scope.end(None)
                    return
                batch = Batch(self, [decode(r) for r in found], scope)
                if set:
                    self.update(
                        table, [{**{k: r[k] for k in pk}, **set} for r in batch.rows], key=pk
                    )
                yield batch
            except BaseException as error:
                scope.end(error)  # abandoned or failed: roll back, release the rows
                raise
            if scope.open:
                scope.end(None)
            taken += len(batch.rows)

    # -------------------------------------------------------------------- sync

    def sync(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        delete_missing: bool = False,
        where: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        keys: bool = False,
        source_digest: str | None = None,
        **options: Unpack[WriteOptions],
    ) -> SyncReport:
        """Make ``table`` hold what ``rows`` hold, sending only the difference: rows
        whose key is new are added, rows whose compared columns differ are changed,
        and with ``delete_missing`` rows the source lacks are deleted.

        ``columns``: what is compared and written (default: the first row's columns);
        ``where``: ``{column: value}`` naming the part of the table the source stands
        for (rows outside it are never deleted or changed; source rows outside it are
        rejected); ``dry_run``: find and count the difference, write nothing;
        ``keys``: list the added, changed and deleted keys in the SyncReport;
        ``source_digest``: an identity of the source (e.g. ``file_digest(path)``): if
        it matches the last sync of this table and scope and the table was not written
        through bulkops since, nothing is read at all (``skipped``). Without it the
        digest of the rows serves, known only once they have been read (and, on SQL
        databases, staged): an unchanged source then saves the comparison and the
        writes, not the reading.

        SQL databases stage the source in a temporary table and find the difference
        with set-based statements; DynamoDB compares row hashes a chunk of keys at a
        time (and scans the table for ``delete_missing``). The difference is written
        with ``upsert`` and ``delete`` in short transactions; the write options
        (``on_error``, ``rejects``, ``max_rejects``, ``retry``, ``workers`` ...) apply.
        """
        opts: dict[str, Any] = dict(options)
        chunk_size = opts.pop("chunk_size", None)
        return self._sync("sync", table, rows, key, columns, delete_missing, where, dry_run,
                          keys, source_digest, chunk_size, opts).report  # fmt: skip

    def diff(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        delete_missing: bool = False,
        where: Mapping[str, Any] | None = None,
        **options: Unpack[WriteOptions],
    ) -> Changeset:
        """The difference ``sync`` would write, as a ``Changeset`` (nothing is written):
        ``changeset.write(path)`` stores it (gzip JSON Lines), ``db.apply(changeset)``
        applies it, here or to another store. ``changeset.report`` has the counts.
        Bad rows are handled as by ``sync`` (``on_error``, ``rejects``, ``max_rejects``)."""
        opts: dict[str, Any] = dict(options)
        chunk_size = opts.pop("chunk_size", None)
        syncer = self._sync("diff", table, rows, key, columns, delete_missing, where, True,
                            False, None, chunk_size, opts)  # fmt: skip
        assert syncer.changeset is not None
        return syncer.changeset

    def apply(
        self,
        changeset: Changeset | str | os.PathLike[str],
        *,
        table: str | None = None,
        **options: Unpack[WriteOptions],
    ) -> SyncReport:
        """Apply a changeset (or the path of a stored one) to ``table`` (default: the
        table it was computed for). The whole file is checked first: a truncated or
        corrupt changeset raises ``ChangesetError`` and nothing is applied."""
        if not isinstance(changeset, Changeset):
            changeset = Changeset.read(changeset)
        self._sync_allowed("apply")
        return apply_changeset(self, changeset, table, dict(options))

    def _sync(
        self, mode: Mode, table: str, rows: Iterable[Any], key: Key,
        columns: Sequence[str] | None, delete_missing: bool,
        where: Mapping[str, Any] | None, dry_run: bool, keys: bool,
        source_digest: str | None, chunk_size: int | None, options: dict[str, Any],
    ) -> Syncer:  # fmt: skip
        unknown = set(options) - set(WriteOptions.__annotations__)
        unknown |= {o for o in ("source", "resume", "atomic") if options.get(o)}
        if unknown:
            raise TypeError(f"{mode}(): unexpected option(s): {', '.join(sorted(unknown))}")
        self._sync_allowed(mode)
        syncer = Syncer(
            self, table, key=key, columns=columns, delete_missing=delete_missing, where=where,
            dry_run=dry_run, keys=keys, chunk_size=chunk_size, options=options, mode=mode,
        )  # fmt: skip
        syncer.run(rows, source_digest)
        logger.info("%s", syncer.report)
        return syncer

    def _sync_allowed(self, what: str) -> None:
        if self._depth > 0:
            raise ValueError(
                f"{what}() writes in short transactions of its own: not inside atomic() "
                "or a claimed batch"
            )

    def _sync_state(self) -> Any:
        if self._state is None:
            self._state = self.backend.sync_state()  # type: ignore[attr-defined]
        return self._state

    def _touch(self, spec: TableSpec) -> None:
        """A write to ``spec``'s table: its sync digests no longer stand (only where
        the database keeps any; reflection tells, without a statement)."""
        state = self._sync_state()
        if state.kept(spec):
            state.invalidate(spec.name, in_transaction=self._depth > 0)

    @contextmanager
    def _touching(self, spec: TableSpec) -> Iterator[None]:
        """Around a call that writes ``spec``'s table: its sync digests are invalidated
        before (a crash midway leaves none standing) and again after (a sync that read
        the table's generation meanwhile must not record its digest as current)."""
        self._touch(spec)
        try:
            yield
        except BaseException:
            # Some of it may have committed; the call's own error is what to raise.
            try:
                self._touch(spec)
            except Exception as failure:
                logger.warning("could not invalidate the sync digests of %r: %s",
                               spec.name, failure)  # fmt: skip
            raise
        self._touch(spec)

    def sequence(
        self, name: str, *, prefix: str = "", padding: int = 0, suffix: str = "", start: int = 1
    ) -> Sequence_:
        """A named sequence of formatted numbers, e.g. ``db.sequence("lot:42",
        prefix="LOT-{year}-", padding=7).allocate(500_000)``."""
        return Sequence_(self, name, prefix=prefix, padding=padding, suffix=suffix, start=start)

    def _row_decoder(
        self, spec: TableSpec, names: tuple[str, ...]
    ) -> Callable[[Sequence[Any]], dict[str, Any]]:
        decoders = [self.backend.codec(spec.column(c)).decode for c in names]

        def decode(raw: Sequence[Any]) -> dict[str, Any]:
            return {
                n: v if d is None else d(v) for n, v, d in zip(names, raw, decoders, strict=True)
            }

        return decode

    # -------------------------------------------------------------- internals

    def _key_tuples(
        self, keys: Iterable[Any], key_cols: tuple[str, ...]
    ) -> Iterator[tuple[Any, ...]]:
        width = len(key_cols)
        for k in keys:
            if isinstance(k, Mapping):
                try:
                    yield tuple(k[c] for c in key_cols)
                except KeyError as error:
                    raise SchemaError(
                        f"key mapping {k!r} lacks key column {error.args[0]!r}"
                    ) from None
            elif width == 1:
                yield (k,)
            elif isinstance(k, Sequence) and not isinstance(k, str | bytes) and len(k) == width:
                yield tuple(k)
            else:
                raise SchemaError(
                    f"key {k!r} does not match the key columns ({', '.join(key_cols)})"
                )

    def _write(
        self,
        kind: WriteKind,
        table: str,
        rows: Iterable[Any],
        *,
        columns: Sequence[str] | None,
        key: Key,
        options: WriteOptions,
        spec: TableSpec | None = None,
        update_columns: Sequence[str] | None = None,
        touch: bool = True,
    ) -> Report:
        """``touch``: the write invalidates the table's sync digests (off for the
        writes of a sync itself, which keeps its own account)."""
        unknown = set(options) - set(WriteOptions.__annotations__)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        workers = options.get("workers") or 1
        if workers < 1:
            raise ValueError("workers must be at least 1")
        timeout = options.get("statement_timeout")
        if timeout is not None and not self.capabilities.statement_timeout:
            raise ValueError(f"{self.capabilities.name} does not support statement_timeout")
        if options.get("atomic") and not self.capabilities.transactions:
            self._require("transactions", "atomic=True: it has no multi-request transactions")
        spec = spec or self.backend.reflect(table)
        report = Report(verb=kind if kind != "insert_ignore" else "insert", table=table)
        label, source = options.get("label"), options.get("source")
        resume = options.get("resume", False)
        iterator = iter(rows)
        first = next(iterator, _END)
        if first is _END:
            return self._observed(report.verb, table, label, lambda call: report)
        mappings = isinstance(first, Mapping)
        explicit = columns is not None
        if explicit:
            assert columns is not None
            cols = spec.check_columns(columns)
        elif mappings:
            cols = spec.check_columns(first.keys())
        else:
            raise TypeError(
                f"{report.verb}(): rows are {type(first).__name__}s, not mappings: "
                "pass columns= to name their values"
            )
        item_encoder = None
        if self.capabilities.items and kind in ("insert", "insert_ignore", "upsert"):
            # Whole items: each mapping is written as it is, whatever its attributes.
            if not mappings:
                if not explicit:
                    raise TypeError(
                        f"{report.verb}(): items are mappings; pass columns= to name the "
                        "values of sequences"
                    )
                names = cols

                def as_item(row: Any) -> Any:  # a row of the wrong width stays, to be rejected
                    if len(row) != len(names):
                        return row
                    return dict(zip(names, row, strict=True))

                iterator, first, mappings = map(as_item, iterator), as_item(first), True
            if update_columns is not None:
                raise SchemaError(
                    f"{self.capabilities.name}: upsert() replaces whole items; use "
                    "update() to set some attributes"
                )
            key_cols = spec.resolve_key(key, report.verb)
            if key_cols != spec.primary_key:
                raise SchemaError(
                    f"{report.verb}() on {table!r} writes items by their key "
                    f"({', '.join(spec.primary_key)}), not by {', '.join(key_cols)}: "
                    f"{self.capabilities.name} has no other unique constraints"
                )
            item_encoder = self._items_backend().item_encoder(spec, key_cols)
            cols = (*key_cols, ITEM)
        else:
            key_cols = self._write_key(kind, spec, key, cols)
        if kind in ("upsert", "update") and mappings and item_encoder is None:
            # The key is needed to match rows even if columns= names only what to set.
            cols = cols + tuple(k for k in key_cols if k not in cols)
        missing_key = [k for k in key_cols if k not in cols]
        if missing_key:
            raise SchemaError(
                f"{report.verb}() matches rows on ({', '.join(key_cols)}) but the rows do not "
                f"give {', '.join(map(repr, missing_key))}"
            )
        if kind == "update" and not [c for c in cols if c not in key_cols]:
            raise SchemaError("update() needs at least one column to set besides the key")
        if kind in ("insert", "insert_ignore", "upsert") and item_encoder is None:
            required = [
                c.name for c in spec.columns.values()
                if not c.nullable and not c.has_default and c.name not in cols
            ]  # fmt: skip
            if required:
                raise SchemaError(
                    f"table {table!r} requires column(s) {', '.join(map(repr, required))} "
                    "(NOT NULL, no default) but the rows do not give them"
                )
        if item_encoder is None:
            codecs: list[ColumnCodec] = [self.backend.codec(spec.column(c)) for c in cols]
        else:
            codecs = []
        planner = ChunkPlanner(
            cols, codecs, key_cols, mappings=mappings, strict_width=not (explicit and mappings),
            encode=item_encoder,
        )  # fmt: skip
        updating = None
        if update_columns is not None:
            updating = spec.check_columns(update_columns)
            outside = [c for c in updating if c not in cols or c in key_cols]
            if outside:
                raise SchemaError(
                    f"update_columns {', '.join(map(repr, outside))} must be non-key columns "
                    "the rows give"
                )
        op = WriteOp(kind=kind, table=spec, columns=cols, key=key_cols, update_columns=updating)
        rejects = options.get("rejects")
        max_rejects = options.get("max_rejects")
        on_error = resolve_on_error(options.get("on_error"), rejects, max_rejects)
        sink = RejectsFile(rejects) if rejects is not None else None
        size = chunk_rows(self.capabilities, len(cols), options.get("chunk_size"))
        atomic = options.get("atomic", False)

        def run(call: _Call) -> Report:
            executor = Executor(
                self.backend, op, planner, report, retry=options.get("retry") or self.retry,
                on_error=on_error, atomic=atomic, rejects=sink, max_rejects=max_rejects,
                progress=options.get("progress"), workers=workers, nested=self._depth > 0,
                events=call.events, checkpoint=call.checkpoint, skip=call.skip,
            )  # fmt: skip
            backend = self.backend
            saved = (backend.lock_timeout, backend.statement_timeout, backend.retry)
            backend.lock_timeout = options.get("lock_timeout", saved[0])
            backend.statement_timeout = options.get("statement_timeout", saved[1])
            backend.retry = executor.retry  # for the re-drives inside the backend
            try:
                return executor.run(numbered(chunked(chain([first], iterator), size)))
            finally:
                backend.lock_timeout, backend.statement_timeout, backend.retry = saved

        # What decides the chunks and what is done with them: a load resumes only
        # with the same (then the same rows fall in the same chunks).
        shape = {
            "verb": kind, "columns": list(cols), "key": list(key_cols), "chunk_size": size,
            "update_columns": list(updating) if updating is not None else None,
            "atomic": atomic,
        }  # fmt: skip
        try:
            with self._touching(spec) if touch else nullcontext():
                return self._observed(
                    report.verb, table, label, run, source=source, resume=resume, options=shape
                )
        finally:
            if sink is not None:
                sink.close()

    def _write_key(
        self, kind: WriteKind, spec: TableSpec, key: Key, cols: tuple[str, ...]
    ) -> tuple[str, ...]:
        if kind in ("insert", "insert_ignore"):
            if key is not None:
                return spec.resolve_key(key, "insert")
            # Duplicates collapse on the primary key when the rows give it; rows without
            # it (ids the database assigns) are written as they come.
            pk = spec.primary_key
            return pk if pk and all(c in cols for c in pk) else ()
        key_cols = spec.resolve_key(key, kind)
        if kind == "upsert":
            spec.require_unique(key_cols, "upsert")
        return key_cols


class _End:
    pass


class _Refused(Exception):
    """Internal: an atomic adjust met a refused or missing key (rolls back)."""

    def __init__(self, results: list[tuple[list[tuple[Any, ...]], set[Any], set[Any]]]) -> None:
        super().__init__("refused")
        self.results = results


def _sort_key(key: tuple[Any, ...]) -> Any:
    return tuple((type(v).__name__, v) for v in key)


def _as_key_tuple(key: Any, names: Sequence[str]) -> tuple[Any, ...]:
    if isinstance(key, Mapping):
        return tuple(key[n] for n in names)
    if len(names) == 1:
        return (key,)
    if isinstance(key, Sequence) and not isinstance(key, str | bytes) and len(key) == len(names):
        return tuple(key)
    raise SchemaError(f"key {key!r} does not match the key columns ({', '.join(names)})")


def _encode_value(value: Any, codec: ColumnCodec, name: str) -> Any:
    return _encode_key((value,), [codec], [name])[0]


_END: Any = _End()

# The name of the whole-item value in an items backend's WriteOp columns.
ITEM = "*item*"
MAX_READ_KEYS = 100


def _encode_key(
    key: tuple[Any, ...], codecs: Sequence[ColumnCodec], names: Sequence[str]
) -> tuple[Any, ...]:
    out = []
    for value, codec, name in zip(key, codecs, names, strict=True):
        if value.__class__ in codec.passthrough:
            out.append(value)
            continue
        try:
            out.append(codec.encode(value))
        except BulkError:
            raise
        except (ValueError, TypeError, ArithmeticError) as error:
            raise ConversionError(f"key {key!r}: {error}", column=name) from error
    return tuple(out)
