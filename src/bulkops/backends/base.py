"""The seams between bulkops and its databases, as typed protocols.

- ``Backend``: the verbs' primitives, its ``Capabilities`` and its ``SyncState``;
  ``ItemBackend``: whole-item stores (DynamoDB);
- ``SQLBackend``: what SQL databases add for sync's set-based diff (``StagedDiff``)
  and for the run log (``RunLogStore``);
- the write operations they carry out, error translation, and ``run_transaction``.

Everything above ``backends/`` talks to a Backend through these protocols and reads its
Capabilities instead of asking which database it is. A backend module is the only
place that imports its driver, and it translates driver exceptions into
``bulkops.errors`` where they enter (``classify_error``). SQL shared by SQLite and
PostgreSQL lives in ``_sql.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from ..errors import BulkError, CommitUnknownError, ConnectionLostError, TransientError
from ..retry import RetryPolicy
from ..schema import ColumnCodec, ColumnSpec, TableSpec

__all__ = [
    "ADJUST_ROWS_PER_CHUNK",
    "CHECKPOINTS_TABLE",
    "HELD",
    "LOADS_TABLE",
    "NO_TIMEOUTS",
    "RUNS_TABLE",
    "SYNC_ROWS_TABLE",
    "SYNC_STATE_TABLE",
    "ArrowTarget",
    "Backend",
    "CallerConnection",
    "Capabilities",
    "ChunkCounts",
    "ColumnarBackend",
    "DiffOp",
    "ItemBackend",
    "RowFailures",
    "RunLogStore",
    "SQLBackend",
    "StagedDiff",
    "StatementTracer",
    "SyncMark",
    "SyncState",
    "Timeouts",
    "WriteKind",
    "WriteOp",
    "commit_resolving",
    "is_transaction_control",
    "run_transaction",
    "statement_filter",
    "translate_errors",
    "unwrap_error",
]

T = TypeVar("T")

# bulkops' own tables, in the databases it works on (their one spelling).
SYNC_STATE_TABLE = "bulkops_sync_state"  # sync's digests and each table's generation
SYNC_ROWS_TABLE = "bulkops_sync_rows"  # sync's per-row digests of each synced scope
SYNC_PART_BYTES = 8 * 1024 * 1024  # the most one stored part of those digests holds
RUNS_TABLE = "bulkops_runs"  # the run log: a row per verb call
CHECKPOINTS_TABLE = "bulkops_checkpoints"  # the committed chunks of resumable loads
# The ledger of partitioned loads (bulkops.dask): a row per committed partition, and a
# row for partition -1 once an atomic load is published.
LOADS_TABLE = "bulkops_load_partitions"


# Keys per adjust chunk on the SQL backends (Capabilities.adjust_rows_per_chunk): one
# statement binds no parameter per key there, so the chunk is a transaction's size.
ADJUST_ROWS_PER_CHUNK = 50_000


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do and its hard limits, as data. Each field decides a code
    path of the library (say which) or switches contract tests on or off (tests/)."""

    name: str  # in messages: "sqlite does not support ..."
    # Bound parameters per statement: chunk sizes (plan.chunk_rows) and read sizes.
    max_params: int | None = None
    # Rows one write request holds (DynamoDB BatchWriteItem: 25): the chunk size where
    # rows_per_chunk is not set.
    max_rows_per_request: int | None = None
    # Rows per chunk by default, where the backend splits a chunk into requests itself.
    rows_per_chunk: int | None = None
    max_read_keys: int | None = None  # keys per read request (DynamoDB BatchGetItem: 100)
    # Keys per adjust chunk (one transaction each) by default, where the backend's
    # adjust binds no parameter per key in one statement (arrays, executemany); None:
    # the rule of plan.chunk_rows.
    adjust_rows_per_chunk: int | None = None
    # Multi-request transactions: atomic=True, atomic() blocks, bisection of a bad
    # chunk under savepoints (False: rows are written request by request).
    transactions: bool = True
    parallel_writes: bool = False  # workers=N writes chunks over several connections
    # A write waits for a server with the GIL let go (a COPY's round trip): the next
    # Arrow chunk is prepared by a thread meanwhile (and a digest sync hashes its source
    # while the server counts rows and sends the digests). False where the database
    # works in this process (SQLite binds values in Python, its reads hold the CPU):
    # a second thread would fight it for the GIL.
    read_ahead: bool = False
    # One writer at a time for the whole database (SQLite's file lock): a call may hold
    # the write lock for all its chunks (ensure: insert first, then one read, one
    # transaction) without making any other writer wait longer than it would anyway.
    one_writer: bool = False
    statement_timeout: bool = False  # statement_timeout= is honoured (else refused)
    # Rows are whole items of any attributes (DynamoDB): only the key is declared, an
    # insert or upsert writes each mapping as it is, reads return whole items.
    items: bool = False
    row_locks: bool = True  # rows can be locked for a transaction: claim()
    # Columns are declared with types and NOT NULL, and values are coerced to them
    # (False: only the key is declared; the CLI does not create tables from files).
    declared_columns: bool = True
    run_log: bool = True  # can keep the run log (bulkops_runs, checkpoints)
    # sync() lets the database find the difference with set-based statements over a
    # staged source (False: rows are compared by hash, a chunk of keys at a time).
    set_based_diff: bool = True
    # Contract tests only (what the database's storage keeps):
    text_nul: bool = True  # text (and JSON) may hold the NUL character
    keeps_utc_offset: bool = True  # timestamps come back with the offset they were given
    # Significant digits a decimal column without a scale keeps exactly, and whether it
    # keeps a value's exponent ("1.50" vs "1.5"); None: any number of digits, exactly
    # as given (SQLite: 15, stored as INTEGER or REAL so that plain SQL sorts numbers).
    decimal_digits: int | None = None
    # A float NaN is a value (PostgreSQL); False: it is stored as NULL, a missing value.
    float_nan: bool = True
    # Every write says what it did to each row (DynamoDB's batch writes do not say).
    exact_counts: bool = True
    unique_constraints: bool = True  # unique constraints besides the primary key
    # Writes take Arrow record batches (``ColumnarBackend.write_arrow``): Arrow input
    # (DataFrames, pyarrow) takes the columnar path; else it becomes rows at the entry.
    columnar: bool = False


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class CallerConnection:
    """A connection the application holds, as a backend runs on it: bulkops sends its
    statements there and, while the application holds an open transaction on it,
    joins that transaction (it never commits or rolls back what it did not open).

    Made by ``resolve.py`` from a driver connection, a SQLAlchemy Connection or
    Session, or a framework's connection (``bulkops.integrations``).
    """

    vendor: str  # which backend module serves it: "sqlite" or "postgresql"
    driver: Callable[[], Any]  # the DB-API connection (connected on first use)
    in_transaction: Callable[[], bool]  # whether the application holds one open now
    # A DB-API cursor on the connection, for frameworks whose cursors see and count
    # statements (Django's ``connection.cursor()``); None: the driver's own.
    cursor: Callable[[], Any] | None = None
    # Called before bulkops sends a statement (a Session's pending changes flushed).
    sync: Callable[[], None] = _nothing
    describe: str = "the caller's connection"  # in messages


@dataclass(frozen=True)
class Timeouts:
    """Seconds a statement of one call may wait for a lock (``lock``) and may run
    (``statement``); None: the backend's default."""

    lock: float | None = None
    statement: float | None = None


NO_TIMEOUTS = Timeouts()


WriteKind = Literal["insert", "insert_ignore", "upsert", "update", "delete"]


@dataclass(frozen=True)
class WriteOp:
    """One kind of write, to one table, with one row shape.

    Each row is a tuple of values for ``columns``; ``key`` names the key columns (for
    upsert/update/delete: how rows are matched; for insert: how duplicates collapse);
    ``update_columns`` limits what an upsert changes in rows that already exist.
    """

    kind: WriteKind
    table: TableSpec
    columns: tuple[str, ...]
    key: tuple[str, ...]
    update_columns: tuple[str, ...] | None = None
    # The running call's policy, for the retries a backend makes itself (DynamoDB's
    # unprocessed items); None: the backend's own.
    retry: RetryPolicy | None = None

    @property
    def set_columns(self) -> tuple[str, ...]:
        """The columns an update, or an upsert meeting an existing row, writes: the
        non-key columns, or ``update_columns`` where given."""
        if self.update_columns is not None:
            return self.update_columns
        return tuple(c for c in self.columns if c not in self.key)


@dataclass
class ChunkCounts:
    """What one write did to its rows (each row lands in exactly one count)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored: int = 0
    deleted: int = 0
    not_found: int = 0
    upserted: int = 0  # written by an upsert that cannot tell insert from update

    def __add__(self, other: ChunkCounts) -> ChunkCounts:
        return ChunkCounts(
            *(getattr(self, f) + getattr(other, f) for f in self.__dataclass_fields__)
        )

    def as_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


class RowFailures(Exception):
    """Raised by ``Backend.write`` when some rows of a request could not be written
    while the others were (a backend without transactions cannot undo them).

    ``counts``: what the written rows did. ``failures``: ``(position, error)`` for each
    row that was not written (positions index the rows given to ``write``): a
    DataError for a row the database refused, a TransientError for one it kept
    throttling until the retry policy's attempts ran out. Nothing is retried above.
    """

    def __init__(self, counts: ChunkCounts, failures: list[tuple[int, BulkError]]) -> None:
        super().__init__(f"{len(failures)} row(s) not written")
        self.counts = counts
        self.failures = failures


@runtime_checkable
class StatementTracer(Protocol):
    """Reports the statements sent to a database, one callback per statement.

    Each backend module implements this once, for the handles of its driver (a
    Backend, a driver connection, a SQLAlchemy Engine or Connection, a boto3 client);
    ``bulkops.backends.resolve.statement_tracer`` finds the one for a handle.
    """

    def trace_statements(
        self,
        on_statement: Callable[[str], None],
        *,
        include_transaction_control: bool = False,
    ) -> AbstractContextManager[None]:
        """Call ``on_statement(text)`` for each statement sent while the block runs:
        once per ``execute()``, once per ``executemany()`` however many rows it
        carries, once per ``COPY`` (DynamoDB: once per request, ``"Operation table"``).
        Transaction control (``is_transaction_control``) is left out unless
        ``include_transaction_control``. ``on_statement`` may be called from the
        threads of parallel workers."""
        ...


@runtime_checkable
class Backend(StatementTracer, Protocol):
    """A database bulkops can work on.

    Write methods raise ``bulkops.errors`` only: TransientError for what a retry may
    fix, DataError for rows that cannot be written, SchemaError for missing tables or
    columns.
    """

    capabilities: Capabilities
    statements: int  # data statements sent so far (transaction control not counted)
    retries: int  # requests the backend re-sent itself (e.g. DynamoDB unprocessed items)
    retry: RetryPolicy  # the Store's policy, for retries inside the backend (reads)

    def reflect(self, table: str) -> TableSpec: ...

    def create_table(
        self, table: str, columns: Mapping[str, str], key: Sequence[str]
    ) -> TableSpec: ...

    def codec(self, column: ColumnSpec) -> ColumnCodec: ...

    def fork(self) -> Backend:
        """Another backend of the same database on its own connection (for workers;
        only called when ``capabilities.parallel_writes``)."""
        ...

    def prepare(self, op: WriteOp) -> None:
        """Get ready for ``op`` before its first transaction (e.g. staging tables)."""
        ...

    def begin(self, timeouts: Timeouts = NO_TIMEOUTS) -> None:
        """Open a transaction; ``timeouts`` hold for its statements."""
        ...

    def commit(self) -> None: ...

    def last_commit_succeeded(self) -> bool | None:
        """After a ConnectionLostError during COMMIT: whether that transaction
        committed after all (None: cannot tell, treated as not committed)."""
        ...

    def rollback(self) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]: ...

    def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts: ...

    def read(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        keys: Sequence[Any],
    ) -> Iterator[tuple[Any, ...]]:
        """Rows (``columns``) whose ``key`` is among ``keys``: plain values for a
        one-column key, tuples for a composite key."""
        ...

    def select_where(
        self,
        table: TableSpec,
        columns: tuple[str, ...],
        where: Mapping[str, Any],
        *,
        order_by: tuple[str, ...] = (),
        limit: int | None = None,
        lock: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Rows whose columns equal ``where`` (driver values; None matches NULL).
        ``lock``: lock them for this transaction, skipping rows others hold locked."""
        ...

    def insert_returning(
        self, table: TableSpec, values: Mapping[str, Any], conflict: tuple[str, ...]
    ) -> tuple[Any, ...] | None:
        """Insert one row unless ``conflict`` columns match an existing row; the new
        row (every column, in table order) or None."""
        ...

    def adjust(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        column: str,
        keys: Sequence[Any],
        deltas: Sequence[Any],
        min_value: Any,
        max_value: Any,
    ) -> tuple[list[Any], list[Any]]:
        """``column = column + delta`` in the database for each of ``keys`` (plain
        values for a one-column key, tuples for a composite key; distinct, in key order)
        and its ``deltas[i]``, where the result stays within the bounds, locking the rows
        in key order. Returns
        (keys not found, keys found but refused by a bound): both empty when every key
        was applied."""
        ...

    def allocate(self, sequence: str, count: int, start: int) -> list[int]:
        """``count`` numbers of the named sequence, unique across processes, in one
        round trip."""
        ...

    def classify_error(self, error: BaseException) -> BulkError | None: ...

    def sync_state(self) -> SyncState:
        """Where sync keeps its digests and each table's generation, in this database."""
        ...

    def caller_transaction(self) -> bool:
        """Whether the backend runs inside a transaction its caller holds open (on a
        caller's connection, ``CallerConnection``): then every call works under
        savepoints of that transaction and nothing is committed or rolled back."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ArrowTarget:
    """What a columnar backend stores for one column, as the columnar path's checks
    need it (``columnar.py`` turns a source column into this, with bad-row masks).

    ``kind``: the logical type (``schema.TYPES``). ``bits``: integer and float width
    (int2/int4/int8, float4/float8). ``max_length``: characters a varchar(n)/char(n)
    holds; ``blank_padded``: char(n), where trailing spaces do not count.
    ``precision``/``scale``: a numeric(p, s) column. ``timezone``: ``"utc"`` stores an
    instant (a naive value is taken as UTC), ``"naive"`` wall-clock time (an aware value
    is converted to UTC first), ``"keep"`` what was given. ``nan``: float NaN can be
    stored. ``binary``: the backend writes the column in the Arrow type the checks give
    (else it is sent as text and cast by the database). ``digits``: a decimal column
    that keeps every value of at most this many significant digits, and a longer one
    only where the row path's codec takes it (SQLite's NUMERIC, stored as REAL): the
    columnar path runs that codec on the longer values, so a value it refuses is one
    rejected row, not a failed write. ``fraction_digits``: a datetime column that keeps
    fewer than six digits of a second (PostgreSQL's ``timestamp(0)``), which would
    round a finer value: such a value is refused.
    """

    kind: str
    bits: int = 64
    max_length: int | None = None
    blank_padded: bool = False
    precision: int | None = None
    scale: int | None = None
    timezone: Literal["utc", "naive", "keep"] = "keep"
    nan: bool = True
    binary: bool = True
    digits: int | None = None
    fraction_digits: int | None = None


@runtime_checkable
class ColumnarBackend(Backend, Protocol):
    """A backend that writes Arrow record batches (``capabilities.columnar``): the
    columnar path hands it batches checked and ordered like the row path's tuples."""

    def arrow_target(self, column: ColumnSpec) -> ArrowTarget:
        """What the backend stores for ``column`` (the columnar path's checks)."""
        ...

    def write_arrow(self, op: WriteOp, batch: Any) -> ChunkCounts:
        """``Backend.write`` of a ``pyarrow.RecordBatch`` whose columns are
        ``op.columns`` in the types ``arrow_target`` asks for (a text column where
        ``binary`` is False), rows in write order."""
        ...


@runtime_checkable
class ItemBackend(Backend, Protocol):
    """A backend whose rows are whole items (``capabilities.items``): only the key is
    declared, writes carry each mapping as it is, reads return whole items."""

    def item_encoder(
        self, table: TableSpec, key: tuple[str, ...]
    ) -> Callable[[Any], tuple[Any, ...]]:
        """``row -> (*key values, item)`` for a write; raises ConversionError naming
        the attribute for a row the database could not store (checked before sending)."""
        ...

    def get_items(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        keys: Sequence[tuple[Any, ...]],
        columns: tuple[str, ...] | None,
        consistent_read: bool,
    ) -> Iterator[dict[str, Any]]:
        """The items (all attributes, or ``columns`` plus the key) of ``keys`` that
        exist; raises UnreadKeysError for keys still unread when the retries ran out."""
        ...

    def put_if_absent(
        self, table: TableSpec, item: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Write ``item`` unless one with its key exists: ``(the stored item, created)``."""
        ...

    def scan(
        self, table: TableSpec, columns: tuple[str, ...] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of the table (or ``columns`` plus the key), page by page."""
        ...


# ------------------------------------------------------------------ sync state


@dataclass(frozen=True)
class SyncMark:
    """A table's sync state as a sync found it when it started."""

    generation: int
    digest: str | None  # of the scope's last sync, if the table is unchanged since
    target_rows: int | None  # rows in the scope after that sync
    recorded: bool = False  # the scope was recorded before (it may have per-row digests)


class SyncState(Protocol):
    """Where sync keeps, per table, a *generation* (bumped by every write bulkops makes
    to the table) and per (table, scope) the digest of the last synced source."""

    def kept(self, spec: TableSpec) -> bool:
        """Whether the database keeps sync state at all (writes must then invalidate it)."""
        ...

    def begin(self, table: str, scope: str) -> SyncMark:
        """The table's generation, and the scope's digest if the table is unchanged
        since that sync (the state is created on first use)."""
        ...

    def invalidate(self, table: str, in_transaction: bool = False) -> None:
        """The table is (about to be) written: bump its generation, forget its digests.
        ``in_transaction``: inside the caller's open transaction, not one of its own."""
        ...

    def record(
        self,
        table: str,
        scope: str,
        mark: SyncMark,
        digest: str,
        target_rows: int | None,
        rows: Sequence[bytes] | None = None,
        append_to: int | None = None,
    ) -> bool:
        """Keep ``digest`` (and ``rows``: the scope's per-row digests, opaque parts) for
        the scope unless the table's generation moved on from ``mark``'s (someone else
        wrote it meanwhile); whether it was kept. ``append_to``: the parts are added
        after the scope's kept ones, which must still number ``append_to`` (the parts
        the sync read; else nothing is kept); otherwise they replace them (None: the
        scope keeps none). Where the backend keeps no per-row digests, ``rows`` is
        dropped."""
        ...

    def read_rows(self, table: str, scope: str, mark: SyncMark) -> list[bytes] | None:
        """The parts of the per-row digests ``record`` kept for the scope, in order, if
        the scope's digest stands (``mark`` from ``begin``); None where none do."""
        ...


# --------------------------------------------------------- SQL-only extensions

# What the set-based diff found for a staged (or missing) row.
DiffOp = Literal["add", "change", "outside", "delete"]
# The mark of a staged row that is not compared (a rejected row whose key stands for
# a row the source has, so that it is not taken for missing).
HELD = "held"


class StagedDiff(Protocol):
    """The difference between a source and a table, found by the database itself: the
    source is staged (in a temporary table) a chunk at a time, then set-based
    statements classify it against the table. ``close`` drops what it made."""

    def stage(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Stage driver-ready rows (in the caller's transaction): each one is the values
        of the diff's columns (the key first), its 1-based source position, then None,
        or ``HELD`` for a row that only keeps its key from being taken for missing (its
        other values None)."""
        ...

    def staged(self) -> None:
        """Every row is staged (e.g. gather the stage's statistics)."""
        ...

    def unique_keys(self) -> int:
        """Index the stage on the key; where a key came twice the last row wins. The
        number of compared (not ``HELD``) rows dropped that way."""
        ...

    def classify(self, delete_missing: bool, after: int) -> None:
        """Find the added, changed and out-of-scope rows, and (``delete_missing``) the
        table's keys in scope the source lacks, numbered from ``after + 1``."""
        ...

    def counts(self) -> dict[DiffOp, int]:
        """How many rows of each kind the classification found."""
        ...

    def pages(
        self, ops: Sequence[DiffOp], columns: Sequence[str], size: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The classified rows of ``ops``, ``size`` at a time in position order:
        ``(position, op, *values of columns)`` with driver values."""
        ...

    def close(self) -> None: ...


class RunLogStore(Protocol):
    """The run log's storage in a SQL database: the runs table (a row per verb call)
    and the checkpoints of resumable loads. Values are driver-ready; everything but
    ``create`` runs in the caller's transaction."""

    def create(self, retry: RetryPolicy) -> None:
        """Create the tables where missing, in a transaction of their own (another
        session making them at the same time is fine)."""
        ...

    def insert_run(self, values: Mapping[str, Any], first_of_load: bool) -> int:
        """Add a run's row; its id. ``first_of_load``: the run's ``load_id`` is its id."""
        ...

    def update_run(self, run_id: int, values: Mapping[str, Any]) -> None: ...

    def runs(self, last: int | None = None) -> list[dict[str, Any]]:
        """The latest ``last`` runs (all if None), newest first, every column."""
        ...

    def previous_load(self, table: str) -> dict[str, Any] | None:
        """The latest run on ``table`` that read an identified input (a load)."""
        ...

    def checkpoints(self, load_id: int) -> list[tuple[int, int]]:
        """``(first row, rows)`` of each chunk the load committed."""
        ...

    def add_checkpoint(self, load_id: int, run_id: int, first_row: int, rows: int) -> None: ...


@runtime_checkable
class SQLBackend(Backend, Protocol):
    """A SQL database (``capabilities.set_based_diff`` and ``run_log``): what sync's
    set-based diff and the run log need beyond the Backend protocol."""

    def staged_diff(
        self,
        table: TableSpec,
        columns: tuple[str, ...],
        key: tuple[str, ...],
        where: Mapping[str, Any],
        retry: RetryPolicy,
        what: str,
    ) -> StagedDiff:
        """A set-based diff of ``columns`` (the key first) against ``table``, whose rows
        in scope are those equal to ``where`` (driver values); its transactions are
        retried under ``retry``; ``what`` names the work in errors."""
        ...

    def count_rows(self, table: TableSpec, where: Mapping[str, Any]) -> int:
        """Rows of ``table`` equal to ``where`` (driver values), counted as work."""
        ...

    def run_log_store(self) -> RunLogStore: ...

    def create_load_stage(
        self,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        order: Sequence[str],
        retry: RetryPolicy,
        partitions: int,
    ) -> Sequence[tuple[range, str]]:
        """Create (where missing) the real table ``stage`` of an atomic load of
        ``partitions`` partitions: ``columns`` typed (and NOT NULL) as ``table``
        declares them, plus the bigint ``order`` columns (partition, position), in a
        transaction of its own; another session creating it at the same moment is
        fine. Returns the tables that hold the stage's rows by ranges of partitions,
        where this call made the stage so (each can be published on its own once its
        partitions are staged, while others are still being written); empty: the
        stage is published whole."""
        ...

    def publish_stage(
        self, stage: str, op: WriteOp, order: Sequence[str]
    ) -> tuple[ChunkCounts, int]:
        """In the open transaction, write the rows of ``stage`` (its ``op.columns``) into
        ``op.table`` as ``op`` says, in one set-based step where the database can.
        For an upsert, where a key comes more than once the row last by ``order`` wins
        (the result of upserting the rows one by one in that order). Returns what the
        write did and how many rows lost to a later row with their key."""
        ...

    def drop_table(self, table: str) -> None:
        """DROP TABLE IF EXISTS, in whatever transaction is open."""
        ...


# ------------------------------------------------------------------ transactions


def run_transaction(
    backend: Backend,
    work: Callable[[], T],
    retry: RetryPolicy,
    *,
    what: str = "the transaction",
    on_retry: Callable[[TransientError, int, float], None] | None = None,
    timeouts: Timeouts = NO_TIMEOUTS,
) -> T:
    """Run ``work`` in one transaction, retried as a whole on transient errors
    (``timeouts``: for its statements).

    If the connection dies during COMMIT the work may or may not have committed: the
    database is asked, so a retry never applies it twice, and when it cannot tell,
    ``CommitUnknownError`` is raised instead of retrying.
    """

    def attempt() -> T:
        backend.begin(timeouts)
        try:
            result = work()
        except BaseException:
            backend.rollback()
            raise
        commit_resolving(backend, what)
        return result

    return retry.call(attempt, on_retry=on_retry)


def commit_resolving(backend: Backend, what: str) -> None:
    """COMMIT; if the connection dies during it, find out whether it committed.

    Returns when it did; raises ConnectionLostError (transient: retry) when it did
    not, and CommitUnknownError (not retried) when the database cannot tell. Any
    other failure rolls back and propagates.
    """
    try:
        backend.commit()
    except ConnectionLostError as error:
        outcome = backend.last_commit_succeeded()
        if outcome is True:
            return
        if outcome is None:
            raise CommitUnknownError(
                f"the connection was lost during COMMIT of {what} and the database cannot "
                "tell whether it committed; not retried, so it is never applied twice"
            ) from error
        raise
    except BaseException:
        backend.rollback()
        raise


@contextmanager
def translate_errors(classify: Callable[[BaseException], BulkError | None]) -> Iterator[None]:
    """Where driver calls enter the library: driver exceptions become bulkops errors
    (the original kept as ``__cause__``); those ``classify`` does not know pass as
    they are."""
    try:
        yield
    except BulkError:
        raise
    except Exception as exc:
        error = classify(exc)
        if error is None:
            # A framework's cursor re-raises the driver's error as its own class,
            # the driver's as __cause__ (Django's DatabaseErrorWrapper).
            error = classify(unwrap_error(exc))
        if error is None:
            raise
        raise error from exc


def unwrap_error(error: BaseException) -> BaseException:
    """The driver's exception under a framework's re-raised one (its ``__cause__``)."""
    cause = error.__cause__
    return cause if cause is not None and type(cause) is not type(error) else error


_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|END|ABORT|START\s+TRANSACTION)\b", re.I
)


def is_transaction_control(statement: str) -> bool:
    """Whether ``statement`` only opens or ends a transaction or savepoint. Counting
    hooks leave these out: some drivers send them on their own (sqlite3's implicit
    BEGIN, psycopg's commit()), others only when the application asks, so counting
    them would make the same code count differently on different connections."""
    return _TRANSACTION_CONTROL.match(statement) is not None


def statement_filter(
    on_statement: Callable[[str], None], *, include_transaction_control: bool = False
) -> Callable[[str], None]:
    """``on_statement``, called for transaction control only when
    ``include_transaction_control``: what every tracer hands each statement to."""
    if include_transaction_control:
        return on_statement

    def data_statements(statement: str) -> None:
        if not is_transaction_control(statement):
            on_statement(statement)

    return data_statements
