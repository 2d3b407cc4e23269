"""Partitioned loads on Dask: each partition written by the worker that holds it,
exactly once whatever the cluster does, and optionally published all at once.

``load(ddf, url, table)`` turns every partition of a Dask DataFrame into one task that
opens its own connection on its worker and writes the partition there (nothing large
passes through the client or the scheduler). Exactly once: in the same transaction as
its rows, a partition claims its row in the load's ledger (``LOADS_TABLE``: load id,
partition index, row count, digest of the partition, time). The claim comes first,
so a duplicate task running at the same moment waits for it and then finds it taken;
a task that runs again after its partition committed (a retry, a lost worker's task
run elsewhere, a speculative copy) finds the ledger row and writes nothing. A ledger
row with another digest than the partition now has is a ``LoadConflictError``.

``publish="atomic"``: partitions are written (exactly once, same ledger) into a stage
for the load, a real table named from the load id; once every partition is in, one
transaction on the client moves the stage into the target, marks the load published
(ledger partition -1) and drops the stage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, Literal

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import xxhash
from dask.base import compute, tokenize
from dask.delayed import delayed

from .api import connect
from .backends.base import LOADS_TABLE, ChunkCounts, SQLBackend, WriteKind, WriteOp
from .errors import (
    BulkError,
    LoadConflictError,
    SchemaError,
    TransientError,
    UnsupportedError,
)
from .report import Rejection, RejectsFile, Report
from .store import Store
from .transaction import Atomic
from .writes import Rejects

__all__ = [
    "LEDGER_KEY",
    "LEDGER_TYPES",
    "arrow_partition",
    "frame_digest",
    "load",
    "load_id_of",
    "stage_name",
]

Mode = Literal["insert", "upsert"]
Publish = Literal["partition", "atomic"]

# The stage's own columns: where each row came from, which decides the order of rows
# with the same key (the last by partition, then position, wins).
PARTITION_COLUMN = "bulkops_partition"
POSITION_COLUMN = "bulkops_position"
_ORDER = (PARTITION_COLUMN, POSITION_COLUMN)
# The ledger's partition number of the row that says an atomic load is published.
_PUBLISHED = -1

LEDGER_TYPES = {
    "load_id": "text",
    "partition_index": "integer",
    "rows": "integer",
    "rejected": "integer",
    "digest": "text",
    "committed_at": "datetime",
}
LEDGER_KEY = ("load_id", "partition_index")

PartitionCallback = Callable[[int, Report], None]


def load(
    ddf: Any,
    db: str,
    table: str,
    *,
    mode: Mode = "insert",
    key: str | Sequence[str] | None = None,
    load_id: str | None = None,
    publish: Publish = "partition",
    rejects: Rejects = None,
    retries: int = 3,
    on_partition: PartitionCallback | None = None,
    **options: Any,
) -> Report:
    """Write the Dask DataFrame ``ddf`` into ``table`` of the database at the URL
    ``db``, one task per partition, each on its own connection on its worker.

    ``mode``: ``"insert"`` or ``"upsert"`` (with ``key``). ``load_id``: the identity of
    this load in the ledger (default: ``load_id_of(ddf, ...)``, a digest of Dask's
    token for the collection and of the load's options): running the same load id
    again skips the partitions it already committed (counted in ``skipped``) and
    finishes the rest. ``publish="partition"`` (default): each partition is visible
    once it commits (with upsert, which of two partitions holding a key wins is not
    defined); ``"atomic"``: none of the load is visible until all of it is, and rows
    with the same key are upserted in partition order. ``rejects``: where the bad rows
    of every partition go (one file or list, written by the client; each Rejection's
    ``row`` is its 1-based position in the whole DataFrame, in partition order).
    ``retries``: how often Dask re-runs a failed task. ``on_partition``: called on the
    worker with ``(partition index, Report)`` once the partition committed (or was
    found committed). Other ``options`` go to each partition's ``insert``/``upsert``
    (``chunk_size``, ``on_error``, ``max_rejects`` (per partition), ``on_conflict``,
    ``update_columns``, ``progress``, ...).

    PostgreSQL and SQLite take every combination (SQLite serializes the writes of all
    workers on its one write lock). DynamoDB takes ``mode="upsert"`` with
    ``publish="partition"`` only: it has no transaction to hold a ledger row with the
    data, so a partition run twice is written twice, which an upsert by key makes
    harmless. Other combinations raise UnsupportedError.
    """
    if mode not in ("insert", "upsert"):
        raise ValueError(f"mode must be 'insert' or 'upsert', not {mode!r}")
    if publish not in ("partition", "atomic"):
        raise ValueError(f"publish must be 'partition' or 'atomic', not {publish!r}")
    if not isinstance(db, str):
        raise TypeError("db must be a URL: each worker opens its own connection from it")
    started = time.perf_counter()
    key_cols = (key,) if isinstance(key, str) else tuple(key) if key is not None else None
    columns = tuple(str(c) for c in ddf.columns)
    with connect(db) as store:
        caps = store.capabilities
        spec = store.table(table)
        for column in columns:
            spec.column(column)  # an unknown column fails here, before any task runs
        if not caps.transactions and (mode != "upsert" or publish != "partition"):
            raise UnsupportedError(
                f"{caps.name} takes Dask loads only as mode='upsert' with "
                "publish='partition': it has no transactions, so no ledger row can "
                "commit with a partition's rows, and only an upsert by key is harmless "
                "when a partition is written twice"
            )
        if load_id is None:
            load_id = load_id_of(ddf, table, mode=mode, key=key_cols, publish=publish)
        if isinstance(rejects, RejectsFile):
            raise TypeError("rejects must be a path, a text file or a list")
        part_options = dict(options)
        if key_cols is not None:
            part_options["key"] = key_cols
        if rejects is not None:
            part_options.setdefault("on_error", "isolate")
        plan = _Plan(url=db, target=table, table=table, verb=mode, load_id=load_id,
                     ledger=caps.transactions, staged=False, options=part_options,
                     on_partition=on_partition, run=uuid.uuid4().hex[:12],
                     client_pid=os.getpid())  # fmt: skip
        backend = store.backend
        if caps.transactions:
            _ensure_ledger(store)
        if publish == "atomic":
            if not isinstance(backend, SQLBackend):
                raise UnsupportedError(f"{caps.name} does not support publish='atomic'")
            done = store.get_many(LOADS_TABLE, [(load_id, _PUBLISHED)], key=LEDGER_KEY)
            if done:
                rows = int(next(iter(done.values()))["rows"])
                report = Report(verb=mode, table=table, rows_in=rows, skipped=rows)
                report.elapsed = time.perf_counter() - started
                return report
            stage = stage_name(load_id)
            groups = backend.create_load_stage(
                stage, spec, columns, _ORDER, store.retry, ddf.npartitions
            )
            stage_options = {k: v for k, v in part_options.items()
                             if k not in ("key", "on_conflict", "update_columns")}  # fmt: skip
            plan = replace(plan, table=stage, staged=True, options=stage_options)
            publisher = _Publisher(store, backend, plan, spec, columns, key_cols, options, groups)
        else:
            publisher = None
        try:
            reports = _run(ddf, plan, retries, publisher)
            report = Report(verb=mode, table=table)
            offset = 0
            for part in reports:
                report.merge(part, renumber=_shifted(offset))
                offset += part.rows_in
            if publisher is not None:
                publisher.finish(len(reports), report)
        except BaseException as error:
            if publisher is not None:
                publisher.abandon(error)  # nothing of the load reaches the target
            raise
    if rejects is not None:
        sink = RejectsFile(rejects)
        try:
            sink.write(report.rejections + report.failures)
        finally:
            sink.close()
    report.elapsed = time.perf_counter() - started
    return report


def load_id_of(
    ddf: Any,
    table: str,
    *,
    mode: str = "insert",
    key: Sequence[str] | None = None,
    publish: str = "partition",
) -> str:
    """The default load id: a digest of Dask's token for the collection (``tokenize``:
    its graph's name, which for ``read_parquet``/``read_csv`` is derived from the paths
    and the reading options; for data made in memory, from the data) and of the load's
    target and options. The same files read the same way give the same id, so a
    re-run resumes; pass ``load_id=`` yourself when the files may change in place."""
    token = tokenize(ddf)
    identity = [token, table, mode, list(key) if key else None, publish]
    return "dask-" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def stage_name(load_id: str) -> str:
    """The stage table of an atomic load (a real table: workers on other connections
    write it)."""
    return "bulkops_stage_" + hashlib.sha256(load_id.encode()).hexdigest()[:16]


def frame_digest(frame: Any) -> str:
    """A digest of a partition's column names, types and values in order: what the
    ledger compares when a partition comes again. ``frame``: a pandas DataFrame, or
    the ``pyarrow.Table`` a worker made of one (``arrow_partition``); both give the
    same digest. Hashed (xxh3, 128 bits) in Arrow's IPC form: buffers straight from
    memory, no per-row Python. A frame Arrow cannot take (an object column of mixed
    types) is hashed with pandas' per-row hashes instead."""
    table = frame if isinstance(frame, pa.Table) else arrow_partition(frame)
    if table is None:
        h = xxhash.xxh3_128()
        h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return "pandas:" + h.hexdigest()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return "arrow:" + xxhash.xxh3_128(memoryview(sink.getvalue())).hexdigest()


def arrow_partition(pdf: pd.DataFrame) -> pa.Table | None:
    """A partition as the ``pyarrow.Table`` its worker digests and writes (made once:
    columns that pandas holds in Arrow, as ``read_parquet`` gives them, are taken as
    they are; NaN becomes null, as ``DataFrame.to_sql`` takes it); None for a frame
    Arrow cannot take (an object column of mixed types), which is written as it is."""
    try:
        table = pa.Table.from_pandas(pdf, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table.replace_schema_metadata(None)


# ------------------------------------------------------------------ the tasks


@dataclass(frozen=True)
class _Plan:
    """What every partition's task needs (small: sent with each task)."""

    url: str
    target: str  # the table the load is for
    table: str  # where partitions write: the target, or the load's stage
    verb: Mode
    load_id: str
    ledger: bool  # False: no transactions (DynamoDB), idempotent upserts instead
    staged: bool
    options: Mapping[str, Any]
    on_partition: PartitionCallback | None
    run: str  # this call of load(): its tasks share a connection per worker thread
    client_pid: int  # the process that called load()


def _run(ddf: Any, plan: _Plan, retries: int, publisher: _Publisher | None) -> list[Report]:
    """One task per partition, on the partition's worker; their Reports. The
    connections the tasks opened are closed when the last one is done. On a
    distributed cluster, ``publisher`` hears of each partition as soon as its task is
    done."""
    write = delayed(_load_partition, pure=True)
    parts = ddf.to_delayed()
    tasks = [
        write(part, index, plan, dask_key_name=_task_name(plan.run, index, len(parts)))
        for index, part in enumerate(parts)
    ]
    client = _distributed_client()
    try:
        if client is None:
            run_here: Any = compute  # untyped: Dask's local scheduler
            return list(run_here(*tasks))
        futures = client.compute(tasks, retries=retries, priority=_in_order(parts, tasks))
        if publisher is None:
            return list(client.gather(futures))
        from distributed import as_completed

        completed: Any = as_completed  # untyped
        position = {future.key: index for index, future in enumerate(futures)}
        reports: list[Any] = [None] * len(futures)
        for future in completed(futures):
            index = position[future.key]
            reports[index] = future.result()  # a task that failed for good raises here
            publisher.staged(index)
        return reports
    finally:
        _close_connections(plan.run)  # the local scheduler's threads
        if client is not None:
            with suppress(Exception):  # a worker that is gone took its connection along
                client.run(_close_connections, plan.run)


def _task_name(run: str, index: int, partitions: int) -> str:
    """The key of partition ``index``'s task. Dask's local schedulers (``sync``,
    ``threads``, ``processes``) take no priorities: they run independent tasks in
    ``dask.order``'s order, which breaks ties by key name, the greatest first. Named by
    the partitions left after this one, zero-padded, the partitions run in their order
    there too (see ``_in_order`` for why that matters); the distributed scheduler is
    given priorities as well."""
    return f"bulkops-load-{run}-{partitions - 1 - index:010d}"


def _in_order(parts: Sequence[Any], tasks: Sequence[Any]) -> Callable[[Any], int]:
    """The scheduler's priority of each task of the load (higher runs first): the
    partitions in their order, each partition's own task and its write alike.

    Dask's own order runs independent partitions from the last one down, so each
    partition's keys would land below the ones already written: measured on PostgreSQL,
    a primary key's index then costs the server about a third more per row than when
    the keys arrive in ascending order, as most inputs are sorted. Given to the
    scheduler as a dict's lookup (a builtin: the scheduler needs nothing of bulkops to
    unpickle it); other tasks get the default priority, 0."""
    n = len(tasks)
    priorities: defaultdict[Any, int] = defaultdict(int)
    for index, (part, task) in enumerate(zip(parts, tasks, strict=True)):
        priorities[part.key] = priorities[task.key] = n - index
    return priorities.__getitem__


def _distributed_client() -> Any:
    """The distributed Client that runs the tasks: the default one, unless Dask is set
    to a local scheduler (``dask.config.set(scheduler="sync")``, ``"threads"``,
    ``"processes"``), which then runs them as it runs any ``compute``."""
    if dask.config.get("scheduler", None) not in (None, "dask.distributed", "distributed"):
        return None
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is in the dask extra
        return None
    find: Any = default_client  # untyped
    try:
        return find()
    except ValueError:  # no Client: Dask's local scheduler runs the tasks
        return None


# Each worker thread's open Store, per load() call: the tasks of one call that run on
# the same thread use one connection (no connect, no catalog warm-up per partition).
_CONNECTIONS: dict[tuple[str, int], Store] = {}  # (run, thread id) -> Store
_BUSY: set[tuple[str, int]] = set()  # the Stores a task is using now
# Calls that have ended (the latest few): a task of theirs still running closes its own.
_DONE: dict[str, None] = {}
_DONE_KEPT = 256
_CONNECTIONS_LOCK = threading.Lock()


@contextmanager
def _connection(plan: _Plan) -> Iterator[Store]:
    """This thread's Store for ``plan``'s call of load(), opened by its first task and
    closed by ``_close_connections`` when the call is done (or by the first task of a
    later call, should that never have reached this process; two loads running at
    once in one process may close each other's idle ones, which the next task opens
    again). A task that fails closes it: the next one starts on a new connection."""
    key = (plan.run, threading.get_ident())
    with _CONNECTIONS_LOCK:
        old = [_CONNECTIONS.pop(k) for k in list(_CONNECTIONS)
               if k[0] != plan.run and k not in _BUSY]  # fmt: skip
        db = _CONNECTIONS.get(key)
        _BUSY.add(key)
    _close(old)
    ok = False
    try:
        if db is None:
            db = connect(plan.url)
            with _CONNECTIONS_LOCK:
                _CONNECTIONS[key] = db
        yield db
        ok = True
    finally:
        with _CONNECTIONS_LOCK:
            _BUSY.discard(key)
            keep = ok and plan.run not in _DONE and _closed_at_the_end(plan)
            if not keep:
                _CONNECTIONS.pop(key, None)
        if not keep and db is not None:
            _close([db])


def _closed_at_the_end(plan: _Plan) -> bool:
    """Whether ``_close_connections`` reaches this process when the load is done: the
    client's own (Dask's local threads) and distributed workers; not a process pool of
    Dask's local scheduler, whose tasks close their connection as they end."""
    if os.getpid() == plan.client_pid:
        return True
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - distributed is in the dask extra
        return False
    on_worker: Any = get_worker  # untyped
    try:
        on_worker()
    except ValueError:
        return False
    return True


def _close_connections(run: str) -> int:
    """Close the Stores this process opened for the call ``run`` (one in use by a task
    still running is closed by that task when it ends); how many were closed."""
    with _CONNECTIONS_LOCK:
        _DONE[run] = None
        while len(_DONE) > _DONE_KEPT:
            del _DONE[next(iter(_DONE))]
        idle = [_CONNECTIONS.pop(k) for k in list(_CONNECTIONS)
                if k[0] == run and k not in _BUSY]  # fmt: skip
    _close(idle)
    return len(idle)


def _close(stores: list[Store]) -> None:
    for store in stores:
        with suppress(Exception):  # a connection already broken: nothing left to close
            store.close()


def _load_partition(pdf: pd.DataFrame, index: int, plan: _Plan) -> Report:
    """The task of one partition, on its worker, on its thread's connection. The
    partition becomes Arrow once (``arrow_partition``): that table is digested and
    written (the columnar path takes it without another conversion)."""
    data: Any = arrow_partition(pdf)
    if data is None:
        data = pdf
    with _connection(plan) as db:
        if plan.ledger:
            digest = frame_digest(data)
            report = db.atomic().run(_commit_partition, db, data, index, digest, plan)
        else:
            report = _write_frame(db, plan.verb, plan.table, data, **plan.options)
    if plan.on_partition is not None:
        plan.on_partition(index, report)
    return report


def _commit_partition(db: Store, data: Any, index: int, digest: str, plan: _Plan) -> Report:
    """In one transaction: claim the partition's ledger row, then write its rows
    (``data``: the partition as a ``pyarrow.Table``, or a pandas DataFrame)."""
    n = len(data)
    ledger_row = {
        "load_id": plan.load_id, "partition_index": index, "rows": n, "rejected": 0,
        "digest": digest, "committed_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    claim = db.insert(LOADS_TABLE, [ledger_row], on_conflict="ignore")
    if not claim.inserted:
        found = db.get_many(LOADS_TABLE, [(plan.load_id, index)], key=LEDGER_KEY)
        committed = found[(plan.load_id, index)]
        if committed["digest"] != digest:
            raise LoadConflictError(
                f"partition {index} of load {plan.load_id!r} was committed "
                f"{committed['committed_at']} with other data ({committed['rows']} rows, "
                f"digest {committed['digest'][:12]}; now {n} rows, digest {digest[:12]}): "
                "the input changed under the same load_id; use a new load_id"
            )
        return Report(verb=plan.verb, table=plan.target, rows_in=n, skipped=n)
    if plan.staged:
        wrote = _write_frame(db, "insert", plan.table, _with_origin(data, index), **plan.options)
        # Nothing is in the target yet: the publish step counts what the rows do there.
        report = Report(verb=plan.verb, table=plan.target, rows_in=wrote.rows_in,
                        rejected=wrote.rejected, chunks=wrote.chunks,
                        statements=wrote.statements, retries=wrote.retries)  # fmt: skip
        report.rejections = wrote.rejections
    else:
        report = _write_frame(db, plan.verb, plan.table, data, **plan.options)
    if report.rejected:
        db.update(LOADS_TABLE, [{"load_id": plan.load_id, "partition_index": index,
                                 "rejected": report.rejected}], key=LEDGER_KEY)  # fmt: skip
    return report


def _with_origin(data: Any, index: int) -> Any:
    """The partition with the stage's own columns: its index, and each row's position."""
    n = len(data)
    if isinstance(data, pa.Table):
        partition = pa.array(np.full(n, index, dtype=np.int64))
        return data.append_column(PARTITION_COLUMN, partition).append_column(
            POSITION_COLUMN, pa.array(np.arange(n, dtype=np.int64))
        )
    return data.assign(**{PARTITION_COLUMN: index, POSITION_COLUMN: range(n)})


def _write_frame(db: Store, verb: Mode, table: str, data: Any, **options: Any) -> Report:
    """Write one partition: the one place a partition becomes a write call.

    The partition (a ``pyarrow.Table``, or a pandas DataFrame Arrow cannot take) goes
    to the columnar (Arrow) path as it is: checked a column at a time, NaN as missing
    (as ``DataFrame.to_sql`` does), COPYed without per-row Python where the backend
    writes Arrow.
    """
    if verb == "upsert":
        return db.upsert(table, data, **options)
    return db.insert(table, data, **options)


def _shifted(offset: int) -> Callable[[Rejection], Rejection]:
    def shift(rejection: Rejection) -> Rejection:
        return replace(rejection, row=rejection.row + offset)

    return shift


# ------------------------------------------------------------ client-side steps


def _ensure_ledger(store: Store) -> None:
    """Create the ledger where missing (another client creating it meanwhile is fine)."""
    try:
        store.table(LOADS_TABLE)
        return
    except SchemaError:
        pass
    try:
        store.create_table(LOADS_TABLE, LEDGER_TYPES, key=LEDGER_KEY)
    except BulkError as error:
        try:
            store.table(LOADS_TABLE)
        except SchemaError:
            raise error from None


class _Publisher:
    """The atomic publish, on the client's connection: one transaction moves the stage
    into the target, marks the load published (ledger partition -1) and drops the
    stage; ``finish`` fills the Report with what the rows did in the target.

    Where the backend laid the stage out in tables of consecutive partitions
    (``SQLBackend.create_load_stage``) and the load is a plain insert (so the order in
    which rows reach the target does not matter), each table is moved as soon as its
    partitions are staged, while later partitions are still being written: the
    transaction opens with the first move and stays open until the last, so readers
    of the target still see nothing of the load before it commits, and the server's
    single-threaded move runs beside the staging instead of after it. Otherwise (an
    upsert, ``on_conflict="ignore"``, Dask's local schedulers, a stage made by an
    earlier run), or after a transient error on the way, the whole stage moves at the
    end, in a transaction re-run on transient errors."""

    def __init__(
        self,
        store: Store,
        backend: SQLBackend,
        plan: _Plan,
        spec: Any,
        columns: tuple[str, ...],
        key: tuple[str, ...] | None,
        options: Mapping[str, Any],
        groups: Sequence[tuple[range, str]],
    ) -> None:
        self.store, self.backend, self.plan, self.spec = store, backend, plan, spec
        kind: WriteKind = plan.verb
        if plan.verb == "upsert":
            key = spec.resolve_key(key, "upsert")
        elif options.get("on_conflict") == "ignore":
            kind = "insert_ignore"
        update = options.get("update_columns")
        self.op = WriteOp(kind, spec, columns, tuple(key or spec.primary_key),
                          tuple(update) if update is not None else None)  # fmt: skip
        # With a key given twice, which row wins (upsert) or is ignored depends on the
        # order of the whole stage: only a plain insert moves in parts.
        self.groups = list(groups) if kind == "insert" else []
        self.staged_parts: set[int] = set()
        self.moved = 0  # groups moved in the open transaction
        self.counts = ChunkCounts()
        self.open: Atomic[Store] | None = None
        self.elsewhere = False  # another client published the load meanwhile
        self.statements = backend.statements

    def staged(self, index: int) -> None:
        """Partition ``index`` is staged: move the groups whose partitions all are, in
        order."""
        if not self.groups or self.elsewhere:
            return
        self.staged_parts.add(index)
        try:
            while self.moved < len(self.groups) and self.staged_parts.issuperset(
                self.groups[self.moved][0]
            ):
                if self.open is None and not self._begin():
                    return
                self.counts += self.backend.publish_stage(self.groups[self.moved][1], self.op,
                                                          _ORDER)[0]  # fmt: skip
                self.moved += 1
        except TransientError as error:
            self._give_up(error)

    def _begin(self) -> bool:
        """Open the transaction and claim the published mark (its figures are set when
        the load is done); False where another client published the load."""
        self.open = self.store.atomic()
        self.open.__enter__()
        placeholder = self._marker(0, 0, "")
        if not self._claim(placeholder):
            self.elsewhere = True
            self._end(None)
            return False
        return True

    def _claim(self, marker: dict[str, Any]) -> bool:
        """In the open transaction: insert the published mark (waiting for another
        client's, if it is publishing the same load) and forget the target's sync
        digests; False where the load was published already."""
        if not self.store.insert(LOADS_TABLE, [marker], on_conflict="ignore").inserted:
            return False
        state = self.backend.sync_state()
        if state.kept(self.spec):
            state.invalidate(self.spec.name, in_transaction=True)
        return True

    def _marker(self, rows: int, rejected: int, digest: str) -> dict[str, Any]:
        return {
            "load_id": self.plan.load_id, "partition_index": _PUBLISHED, "rows": rows,
            "rejected": rejected, "digest": digest, "committed_at": dt.datetime.now(dt.UTC),
        }  # fmt: skip

    def _end(self, error: BaseException | None) -> None:
        """Commit the open transaction (``error`` None) or roll it back."""
        scope, self.open = self.open, None
        if scope is not None:
            scope.__exit__(type(error) if error else None, error,
                           error.__traceback__ if error else None)  # fmt: skip

    def _give_up(self, error: TransientError) -> None:
        """A transient error while moving in parts: roll back; the whole stage moves at
        the end instead (on a new connection if this one broke)."""
        with suppress(Exception):  # a broken connection: nothing left to roll back
            self._end(error)
        self.groups, self.moved, self.counts = [], 0, ChunkCounts()

    def abandon(self, error: BaseException) -> None:
        """The load failed: roll back whatever was moved."""
        with suppress(Exception):  # the connection may be gone with the error
            self._end(error)

    def finish(self, partitions: int, report: Report) -> None:
        """Every partition is staged: the rest of the move, then commit."""
        store, plan = self.store, self.plan
        ids = [(plan.load_id, i) for i in range(partitions)]
        ledger = store.get_many(LOADS_TABLE, ids, key=LEDGER_KEY)
        missing = [i for load, i in ids if (load, i) not in ledger]
        if missing:
            raise BulkError(f"partitions {missing} of load {plan.load_id!r} are not staged")
        rows = sum(int(r["rows"]) for r in ledger.values())
        # The whole load, also partitions staged by an earlier run of the same load id.
        report.rows_in = rows
        report.rejected = sum(int(r["rejected"]) for r in ledger.values())
        report.skipped = 0
        marker = self._marker(rows, report.rejected, _digest_of(ledger.values()))
        moved: tuple[ChunkCounts, int] | None = None
        if self.open is not None:
            try:
                for _, table in self.groups[self.moved :]:
                    self.counts += self.backend.publish_stage(table, self.op, _ORDER)[0]
                store.update(LOADS_TABLE, [marker], key=LEDGER_KEY)
                self.backend.drop_table(plan.table)
                self._end(None)
                moved = self.counts, 0
            except TransientError as error:
                self._give_up(error)
        if moved is None and not self.elsewhere:
            moved = store.atomic().run(self._move_whole, marker)
        report.statements += self.backend.statements - self.statements
        if moved is None:
            report.skipped = rows - report.rejected
            return
        counts, duplicates = moved
        report.add(duplicates=duplicates, inserted=counts.inserted, updated=counts.updated,
                   unchanged=counts.unchanged, ignored=counts.ignored,
                   upserted=counts.upserted)  # fmt: skip

    def _move_whole(self, marker: dict[str, Any]) -> tuple[ChunkCounts, int] | None:
        if not self._claim(marker):
            return None  # another client published it meanwhile
        counts, duplicates = self.backend.publish_stage(self.plan.table, self.op, _ORDER)
        self.backend.drop_table(self.plan.table)
        return counts, duplicates


def _digest_of(ledger_rows: Any) -> str:
    h = hashlib.sha256()
    for row in sorted(ledger_rows, key=lambda r: int(r["partition_index"])):
        h.update(str(row["digest"]).encode())
    return h.hexdigest()
