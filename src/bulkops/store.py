"""Store: the facade. Each verb checks its arguments and delegates to the module that
carries it out (``writes``, ``reads``, ``primitives``, ``sync``, ``sequence``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

from .backends.base import Backend, Capabilities, WriteKind
from .columnar import is_arrow
from .context import Context, TableRef
from .errors import SchemaError
from .events import EventCallback, logger
from .execute import OnError
from .normalize import Key, key_tuples
from .primitives import adjust, claim, ensure, get_or_create
from .reads import get_many, get_many_arrow
from .report import ProgressCallback, Report, SyncReport
from .retry import RetryPolicy
from .runlog import Run
from .schema import TableSpec
from .sequence import NumberSequence
from .sync import Changeset, apply_changeset, diff_table, sync_table
from .transaction import Atomic, Batch
from .writes import Rejects, WriteSettings, write

__all__ = ["Store"]


class Store:
    """A database, ready for bulk work. Make one with ``bulkops.connect(...)``.

    Every write verb (``insert``, ``upsert``, ``update``, ``delete``; ``sync`` and
    ``apply`` for the difference they write) takes the same keyword options:

    - ``chunk_size``: rows per chunk (default: from the backend's limits);
    - ``atomic``: one transaction for the whole call, all or nothing (default: one
      short transaction per chunk);
    - ``on_error``: ``"raise"`` (stop at the first bad row, naming it) or ``"isolate"``
      (reject bad rows, write the rest); defaults to ``"isolate"`` when ``rejects`` or
      ``max_rejects`` is given, else ``"raise"``;
    - ``rejects``: a path, text file or list that receives the Rejections (JSON Lines);
    - ``max_rejects``: stop cleanly (``TooManyRejectsError``) once more rows than this
      fail;
    - ``retry``: a RetryPolicy for transient errors (deadlocks, busy, throttling);
    - ``progress``: called with the running Report after each chunk;
    - ``workers``: chunks written in parallel over this many connections, where the
      backend allows it (PostgreSQL); input still streams, a bounded number of chunks
      in flight;
    - ``lock_timeout`` / ``statement_timeout``: seconds a statement may wait for a lock
      (``LockTimeoutError``, retried) or run (``StatementTimeoutError``, not retried);
    - ``label``: recorded with the call in the run log (default: the Store's label);
    - ``source_id``: an identity of the input (e.g. ``file_digest(path)``); with the run
      log on, each committed chunk is then checkpointed in its own transaction, so
      that a later call can ``resume``;
    - ``resume``: skip the chunks that the latest load of this table committed, when
      it read the same ``source_id`` with the same options (else ``ResumeError``);
    - ``force``: load a ``source_id`` again although an earlier load of it into the
      same table did not finish and committed rows, where an insert without a key
      would write those rows twice (else ``RerunError``: ``resume=True`` continues it);
    - ``nan_as_null``: a pandas DataFrame's NaN is a missing value (NULL) in every
      column, as ``DataFrame.to_sql`` takes it (the default); ``False``: NaN is a value
      where the column's type holds one (PostgreSQL double precision and real) and
      missing elsewhere (numeric too: the columnar path's decimals hold no NaN).

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
        self._ctx = Context(backend, retry=retry, run_log=run_log, label=label)
        if on_event is not None:
            self._ctx.recorder.subscribe(on_event)

    # ------------------------------------------------------------- lifecycle

    @property
    def backend(self) -> Backend:
        """The database this Store works on (``bulkops.backends.base.Backend``)."""
        return self._ctx.backend

    @property
    def capabilities(self) -> Capabilities:
        return self._ctx.capabilities

    @property
    def retry(self) -> RetryPolicy:
        """The default RetryPolicy of this Store's calls."""
        return self._ctx.retry

    @property
    def run_log(self) -> bool:
        """Whether calls are recorded in the database's run log."""
        return self._ctx.recorder.run_log

    def close(self) -> None:
        self._ctx.backend.close()

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
        return self._ctx.recorder.subscribe(callback)

    def runs(self, last: int | None = 20) -> list[Run]:
        """The latest ``last`` rows of the run log (all if None), newest first."""
        return self._ctx.recorder.runs(last)

    # ---------------------------------------------------------------- tables

    def table(self, name: TableRef) -> TableSpec:
        """The table as bulkops sees it (columns, logical types, keys); ``name`` may
        be a model (a Django model class, a SQLAlchemy declarative class or Table)."""
        return self._ctx.table(name)

    def create_table(
        self, name: str, types: Mapping[str, str], key: str | Sequence[str] = ()
    ) -> TableSpec:
        """Create a table from ``{column: logical type}`` with ``key`` as primary key
        (its columns in the order given)."""
        key_cols = (key,) if isinstance(key, str) else tuple(key)
        missing = [k for k in key_cols if k not in types]
        if missing:
            raise SchemaError(f"key column(s) {', '.join(missing)} are not among the columns")
        return self._ctx.retry.call(lambda: self._ctx.backend.create_table(name, types, key_cols))

    # ------------------------------------------------------------------ writes

    def insert(
        self,
        table: TableRef,
        rows: Iterable[Any],
        *,
        columns: Sequence[str] | None = None,
        key: Key = None,
        on_conflict: Literal["error", "ignore"] = "error",
        chunk_size: int | None = None,
        atomic: bool = False,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
        source_id: str | None = None,
        resume: bool = False,
        force: bool = False,
        nan_as_null: bool = True,
    ) -> Report:
        """Insert rows. ``on_conflict="ignore"`` skips rows whose key (or any unique
        value) already exists and counts them as ignored; ``"error"`` makes them bad
        rows. Rows are mappings, or sequences with ``columns`` naming their values."""
        if on_conflict not in ("error", "ignore"):
            raise ValueError(f"on_conflict must be 'error' or 'ignore', not {on_conflict!r}")
        kind: WriteKind = "insert" if on_conflict == "error" else "insert_ignore"
        settings = WriteSettings(
            chunk_size=chunk_size, atomic=atomic, on_error=on_error, rejects=rejects,
            max_rejects=max_rejects, retry=retry, progress=progress, workers=workers,
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, label=label,
            source_id=source_id, resume=resume, force=force, nan_as_null=nan_as_null,
        )  # fmt: skip
        return write(self._ctx, kind, table, rows, settings, columns=columns, key=key)

    def upsert(
        self,
        table: TableRef,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        atomic: bool = False,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
        source_id: str | None = None,
        resume: bool = False,
        force: bool = False,
        nan_as_null: bool = True,
    ) -> Report:
        """Insert rows, or update the existing row with the same key. Rows whose values
        are already there are left untouched and counted as unchanged. ``key`` needs a
        primary key or unique constraint on exactly those columns. ``update_columns``:
        what to change in existing rows (default: every non-key column given)."""
        settings = WriteSettings(
            chunk_size=chunk_size, atomic=atomic, on_error=on_error, rejects=rejects,
            max_rejects=max_rejects, retry=retry, progress=progress, workers=workers,
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, label=label,
            source_id=source_id, resume=resume, force=force, nan_as_null=nan_as_null,
        )  # fmt: skip
        return write(
            self._ctx, "upsert", table, rows, settings, columns=columns, key=key,
            update_columns=update_columns,
        )  # fmt: skip

    def update(
        self,
        table: TableRef,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        atomic: bool = False,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
        source_id: str | None = None,
        resume: bool = False,
        force: bool = False,
        nan_as_null: bool = True,
    ) -> Report:
        """Set ``columns`` of the rows matched by ``key``. Keys not in the table are
        counted as not_found; rows already equal as unchanged."""
        settings = WriteSettings(
            chunk_size=chunk_size, atomic=atomic, on_error=on_error, rejects=rejects,
            max_rejects=max_rejects, retry=retry, progress=progress, workers=workers,
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, label=label,
            source_id=source_id, resume=resume, force=force, nan_as_null=nan_as_null,
        )  # fmt: skip
        return write(self._ctx, "update", table, rows, settings, columns=columns, key=key)

    def delete(
        self,
        table: TableRef,
        keys: Iterable[Any],
        *,
        key: Key = None,
        chunk_size: int | None = None,
        atomic: bool = False,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
        source_id: str | None = None,
        resume: bool = False,
        force: bool = False,
        nan_as_null: bool = True,
    ) -> Report:
        """Delete the rows with these keys: scalars for a one-column key, tuples for a
        composite key, or mappings holding the key columns."""
        spec = self._ctx.table(table)
        key_cols = spec.resolve_key(key, "delete")
        settings = WriteSettings(
            chunk_size=chunk_size, atomic=atomic, on_error=on_error, rejects=rejects,
            max_rejects=max_rejects, retry=retry, progress=progress, workers=workers,
            lock_timeout=lock_timeout, statement_timeout=statement_timeout, label=label,
            source_id=source_id, resume=resume, force=force, nan_as_null=nan_as_null,
        )  # fmt: skip
        # Arrow keys (a DataFrame of key columns) stay columnar.
        rows = keys if is_arrow(keys) else key_tuples(keys, key_cols)
        return write(
            self._ctx, "delete", spec, rows, settings, columns=key_cols, key=key_cols
        )  # fmt: skip

    # ------------------------------------------------------------------- reads

    @overload
    def get_many(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        consistent_read: bool = False,
        as_arrow: Literal[False] = False,
    ) -> dict[Any, dict[str, Any]]: ...

    @overload
    def get_many(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        consistent_read: bool = False,
        as_arrow: Literal[True],
    ) -> Any: ...

    def get_many(
        self,
        table: TableRef,
        keys: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
        consistent_read: bool = False,
        as_arrow: bool = False,
    ) -> Any:
        """``{key: row}`` for the keys that exist, read in large chunks (one statement
        per chunk, never one per key). Keys are scalars, tuples for composite keys (in
        the order of the key's columns), or mappings; the result's keys are in the
        column's type (``"7"`` finds ``7``).

        DynamoDB: rows are whole items (or ``columns`` plus the key), requests hold at
        most 100 keys, unprocessed keys are re-driven with backoff, and keys still
        unread then raise ``UnreadKeysError`` (never a silent gap);
        ``consistent_read=True`` asks for strongly consistent reads (SQL databases
        always read committed data).

        ``as_arrow=True``: a ``pyarrow.Table`` instead (for pandas: ``.to_pandas()``,
        polars: ``polars.from_arrow``), a row per key found in the order the keys were
        given, the columns in the types the columnar path writes."""
        if as_arrow:
            return get_many_arrow(
                self._ctx, table, keys, key=key, columns=columns, chunk_size=chunk_size,
                consistent_read=consistent_read,
            )  # fmt: skip
        return get_many(
            self._ctx, table, keys, key=key, columns=columns, chunk_size=chunk_size,
            consistent_read=consistent_read,
        )  # fmt: skip

    # ------------------------------------------------------ transactions, primitives

    def atomic(self, retry: RetryPolicy | None = None) -> Atomic[Store]:
        """One transaction around a block, re-run on deadlocks and serialization
        failures: ``@db.atomic()`` or ``for attempt in db.atomic(): with attempt:``
        (a plain ``with db.atomic():`` is one transaction without re-runs)."""
        self._ctx.require(
            self.capabilities.transactions, "atomic blocks (it has no multi-request transactions)"
        )
        return Atomic(self._ctx, self, retry)

    def adjust(
        self,
        table: TableRef,
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
        ctx = self._ctx
        if atomic:
            ctx.require(self.capabilities.transactions, "adjust(atomic=True)")
        if atomic:
            ctx.refuse_in_caller_transaction(
                "adjust(atomic=True)", "makes the call one transaction of its own (the "
                "caller's transaction already holds it: roll that back to undo it)"
            )  # fmt: skip
        ctx.refuse_run_log_in_caller_transaction()
        name = table if isinstance(table, str) else ctx.table(table).name
        return ctx.recorder.observed(
            "adjust", name, label,
            lambda call: adjust(
                ctx, table, deltas, column=column, key=key, min_value=min_value,
                max_value=max_value, atomic=atomic, chunk_size=chunk_size, retry=retry,
            ),
        )  # fmt: skip

    def get_or_create(
        self,
        table: TableRef,
        lookup: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The row matching ``lookup``, created (with ``defaults``) if there is none:
        ``(row, created)``. Race-free: many callers at once get the same one row, and
        exactly one of them ``created=True``. ``lookup`` must be covered by a primary
        key or unique constraint."""
        return get_or_create(self._ctx, table, lookup, defaults, retry)

    def ensure(
        self,
        table: TableRef,
        rows: Iterable[Mapping[str, Any]],
        *,
        key: Key = None,
        chunk_size: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[Any, dict[str, Any]]:
        """Batched get-or-create: ``{key: row}`` for every row given, creating the
        missing ones, in O(chunks) statements (read the existing keys, insert the
        missing rows ignoring conflicts, read those back) instead of one lookup per
        row. ``key`` must be a primary key or unique constraint. Where the database has
        one writer at a time (SQLite, ``Capabilities.one_writer``) every row is inserted
        first, ignoring the keys that exist, then every key is read back, all in one
        transaction (re-run as a whole when the database is busy)."""
        return ensure(self._ctx, table, rows, key=key, chunk_size=chunk_size, retry=retry)

    def claim(
        self,
        table: TableRef,
        *,
        where: Mapping[str, Any],
        chunk_size: int = 100,
        order_by: str | Sequence[str] | None = None,
        set_values: Mapping[str, Any] | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Iterator[Batch[Store]]:
        """Claim rows matching ``where`` in batches of ``chunk_size``, each locked only
        while it is processed in its own transaction::

            for batch in db.claim("escrows", where={"status": "LOCKED"}, chunk_size=100):
                with batch:
                    ...  # batch.rows; batch.update(...) runs in the batch's transaction

        PostgreSQL locks the batch's rows with ``FOR UPDATE SKIP LOCKED``, so concurrent
        claimers never get the same row; SQLite holds its write lock per batch.
        ``set_values``: values written to the claimed rows right away (e.g. a status).
        Leaving ``with batch`` commits, an exception rolls back and releases the rows.
        A batch left without ``with`` commits when the next one is fetched, and is
        rolled back if the loop is abandoned. The work must change the rows so they no
        longer match ``where`` (or use ``set_values=``), or later batches claim them
        again.
        """
        return claim(
            self._ctx, self, table, where=where, chunk_size=chunk_size, order_by=order_by,
            set_values=set_values, limit=limit, retry=retry,
        )  # fmt: skip

    def sequence(
        self, name: str, *, prefix: str = "", padding: int = 0, suffix: str = "", start: int = 1
    ) -> NumberSequence:
        """A named sequence of formatted numbers, e.g. ``db.sequence("lot:42",
        prefix="LOT-{year}-", padding=7).allocate(500_000)``."""
        return NumberSequence(
            self._ctx, name, prefix=prefix, padding=padding, suffix=suffix, start=start
        )

    # -------------------------------------------------------------------- sync

    def sync(
        self,
        table: TableRef,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        delete_missing: bool = False,
        where: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        list_keys: bool = False,
        source_id: str | None = None,
        changes_out: str | os.PathLike[str] | None = None,
        full: bool = False,
        chunk_size: int | None = None,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
    ) -> SyncReport:
        """Make ``table`` hold what ``rows`` hold, sending only the difference: rows
        whose key is new are added, rows whose compared columns differ are changed,
        and with ``delete_missing`` rows the source lacks are deleted.

        ``columns``: what is compared and written (default: the first row's columns);
        ``where``: ``{column: value}`` naming the part of the table the source stands
        for (rows outside it are never deleted or changed; source rows outside it are
        rejected); ``dry_run``: find and count the difference, write nothing;
        ``list_keys``: list the added, changed and deleted keys in the SyncReport;
        ``source_id``: an identity of the source (e.g. ``file_digest(path)``): if it
        matches the last sync of this table and scope and the table was not written
        through bulkops since, nothing is read at all (``up_to_date``).

        On SQL databases sync keeps a digest of each row of the scope (in the
        ``bulkops_sync_rows`` table): the source is hashed on the client and compared
        with them, so only the added and changed rows and the deleted keys travel and
        the table's rows are not read. A scope's first sync, or one after any bulkops
        write to the table or a change of its row count, compares in full (the
        database compares the staged source with the table) and keeps the digests;
        writes made without bulkops that keep the row count are not seen:
        ``full=True`` compares the table's rows in full and makes them again.
        ``changes_out``: also store the difference as a changeset (see ``diff``) at
        this path; it is written first, then applied from the file.

        The difference is written with ``upsert`` and ``delete`` in short transactions
        of their own (so not inside ``atomic()``); the write options apply to them.
        """
        self._ctx.refuse_in_scope("sync()")
        settings = WriteSettings(
            chunk_size=chunk_size, on_error=on_error, rejects=rejects, max_rejects=max_rejects,
            retry=retry, progress=progress, workers=workers, lock_timeout=lock_timeout,
            statement_timeout=statement_timeout, label=label,
        )  # fmt: skip
        report = sync_table(
            self._ctx, table, rows, settings, key=key, columns=columns,
            delete_missing=delete_missing, where=where, dry_run=dry_run, list_keys=list_keys,
            source_id=source_id, changes_out=changes_out, full=full,
        )  # fmt: skip
        logger.info("%s", report)
        return report

    def diff(
        self,
        table: TableRef,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        delete_missing: bool = False,
        where: Mapping[str, Any] | None = None,
        chunk_size: int | None = None,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Changeset:
        """The difference ``sync`` would write, as a ``Changeset`` (nothing is written):
        ``changeset.write(path)`` stores it (gzip JSON Lines), ``db.apply(changeset)``
        applies it, here or to another store. ``changeset.report`` has the counts.
        Bad rows are handled as by ``sync`` (``on_error``, ``rejects``, ``max_rejects``)."""
        self._ctx.refuse_in_scope("diff()")
        settings = WriteSettings(
            chunk_size=chunk_size, on_error=on_error, rejects=rejects, max_rejects=max_rejects,
            retry=retry,
        )  # fmt: skip
        return diff_table(
            self._ctx, table, rows, settings, key=key, columns=columns,
            delete_missing=delete_missing, where=where,
        )  # fmt: skip

    def apply(
        self,
        changeset: Changeset | str | os.PathLike[str],
        *,
        table: str | None = None,
        chunk_size: int | None = None,
        on_error: OnError | None = None,
        rejects: Rejects = None,
        max_rejects: int | None = None,
        retry: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        label: str | None = None,
    ) -> SyncReport:
        """Apply a changeset (or the path of a stored one) to ``table`` (default: the
        table it was computed for). The whole file is checked first: a truncated or
        corrupt changeset raises ``ChangesetError`` and nothing is applied."""
        if not isinstance(changeset, Changeset):
            changeset = Changeset.read(changeset)
        self._ctx.refuse_in_scope("apply()")
        settings = WriteSettings(
            chunk_size=chunk_size, on_error=on_error, rejects=rejects, max_rejects=max_rejects,
            retry=retry, progress=progress, workers=workers, lock_timeout=lock_timeout,
            statement_timeout=statement_timeout, label=label,
        )  # fmt: skip
        return apply_changeset(self._ctx, changeset, table, settings)
