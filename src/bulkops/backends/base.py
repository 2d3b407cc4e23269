"""The Backend protocol, its Capabilities, and the write operations it carries out.

Everything above ``backends/`` talks to a Backend through this protocol and reads its
Capabilities instead of asking which database it is. A backend module is the only
place that imports its driver, and it translates driver exceptions into
``bulkops.errors`` where they enter (``classify_error``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import sqlalchemy as sa

from ..errors import BulkError
from ..retry import RetryPolicy
from ..schema import ColumnCodec, ColumnSpec, TableSpec

__all__ = [
    "ALREADY_EXISTS",
    "Backend",
    "Capabilities",
    "ChunkCounts",
    "ItemBackend",
    "RowFailures",
    "StatementTracer",
    "WriteKind",
    "WriteOp",
    "is_transaction_control",
    "select_where_statement",
    "statement_filter",
    "translate_errors",
    "within_bounds",
]


# Error codes of creating a table that another session was creating at the same time:
# PostgreSQL trips on its catalog (a unique index of pg_class or pg_type: 23505,
# "relation already exists" 42P07, "type already exists" 42710).
ALREADY_EXISTS = ("23505", "42P07", "42710")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do and its hard limits, as data."""

    name: str
    max_params: int | None = None  # bound parameters per statement
    max_rows_per_request: int | None = None  # e.g. DynamoDB BatchWriteItem: 25
    # Rows per chunk by default, where the backend splits a chunk into requests itself
    # (None: one chunk is one request's worth, max_rows_per_request).
    rows_per_chunk: int | None = None
    max_read_keys: int | None = None  # e.g. DynamoDB BatchGetItem: 100
    max_request_bytes: int | None = None
    transactions: bool = True
    savepoints: bool = True
    parallel_writes: bool = False  # chunks may be written over several connections
    returning: bool = False
    skip_locked: bool = False
    copy: bool = False
    stores_nan: bool = True  # False: a float NaN would silently become NULL
    statement_timeout: bool = False  # honours statement_timeout
    text_nul: bool = True  # text (and JSON) may hold the NUL character
    keeps_utc_offset: bool = True  # timestamps come back with the offset they were given
    # Rows are whole items of any attributes (DynamoDB): only the key is declared, an
    # insert or upsert writes each mapping as it is, reads return whole items.
    items: bool = False
    row_locks: bool = True  # rows can be locked for a transaction (claim)
    # Every write says what it did to each row: inserted or updated by an upsert,
    # deleted or not found by a delete (DynamoDB's batch writes do not say).
    exact_counts: bool = True
    # Columns are declared with types and NOT NULL, and values are coerced to them;
    # unknown columns are errors (False: only the key is declared).
    declared_columns: bool = True
    unique_constraints: bool = True  # unique constraints besides the primary key
    run_log: bool = True  # can keep the run log (bulkops_runs, checkpoints) in the database
    # sync() stages the source in a temporary table and lets the database find the
    # difference with set-based statements (False: rows are compared by hash, a chunk
    # of keys at a time).
    set_based_diff: bool = True


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
    ``bulkops.api.statement_tracer`` finds the one for a handle.
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
    retry: RetryPolicy  # the policy of the running call, for retries inside the backend
    lock_timeout: float | None  # seconds a statement may wait for a lock (None: default)
    statement_timeout: float | None  # seconds a statement may run (None: no limit)

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

    def begin(self) -> None: ...

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
        rows: Sequence[tuple[Any, ...]],
        min_value: Any,
        max_value: Any,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """``column = column + delta`` in the database for rows ``(*key, delta)`` whose
        result stays within the bounds. Returns (keys found, keys applied)."""
        ...

    def allocate(self, sequence: str, count: int, start: int) -> list[int]:
        """``count`` numbers of the named sequence, unique across processes, in one
        round trip."""
        ...

    def classify_error(self, error: BaseException) -> BulkError | None: ...

    def close(self) -> None: ...


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
            raise
        raise error from exc


def select_where_statement(
    t: sa.TableClause,
    columns: Sequence[str],
    where: Mapping[str, Any],
    order_by: Sequence[str] = (),
    limit: int | None = None,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """SELECT ``columns`` of rows whose columns equal ``where`` (None matches NULL),
    and the values for its binds."""
    stmt = sa.select(*(t.c[c] for c in columns)).where(
        *(
            t.c[c].is_(None) if v is None else t.c[c] == sa.bindparam(f"w{i}")
            for i, (c, v) in enumerate(where.items())
        )
    )
    if order_by:
        stmt = stmt.order_by(*(t.c[c] for c in order_by))
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt, {f"w{i}": v for i, v in enumerate(where.values())}


def within_bounds(result: Any, min_value: Any, max_value: Any) -> list[Any]:
    """Conditions keeping ``result`` inside ``[min_value, max_value]`` (None: no bound),
    with the bounds as bound parameters."""
    guards = []
    if min_value is not None:
        guards.append(result >= sa.bindparam("low", min_value))
    if max_value is not None:
        guards.append(result <= sa.bindparam("high", max_value))
    return guards


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
