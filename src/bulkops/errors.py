"""The bulkops error tree.

Every backend translates its driver's exceptions into these categories in one place
(``Backend.classify_error``); nothing above the backends looks at driver exceptions.
The original exception is kept as ``__cause__`` and its code (SQLSTATE, SQLite error
name, AWS error code) as ``.code``.

    BulkError
      TransientError          worth retrying: the same work may succeed a moment later
        DeadlockError
        SerializationError
        BusyError             SQLite "database is locked/busy"
          LockTimeoutError    PostgreSQL lock_timeout (55P03)
        ThrottledError
          UnreadKeysError     DynamoDB: keys still unprocessed when the retries ran out
        ConnectionLostError
      CommitUnknownError      connection lost in COMMIT, outcome unknown (not retried)
      DataError               this row (or these rows) cannot be written as given
        ConstraintError       NOT NULL, UNIQUE, CHECK, FOREIGN KEY ...
        ConversionError       a value cannot be coerced to its column's type
        TooManyRejectsError   max_rejects exceeded; the run stopped cleanly
      StatementTimeoutError   statement_timeout exceeded (not retried)
      SchemaError             missing table or column, no key to work with, ...
      ResumeError             a load cannot resume: the input or the options changed
        RerunError            an input loaded again would write an unfinished load's rows twice
      RejectsWriteError       rejected rows could not be written to the rejects file
      LoadConflictError       a partitioned load's partition was committed with other data
      ChangesetError          a changeset file is truncated, corrupt or not for this table
      LimitError              a value or request is beyond a hard limit of the backend
      UnsupportedError        the database cannot do what was asked (see its Capabilities)
      AccessError             no privilege, or a read-only database or transaction
      ResourceError           the server is out of a resource (disk full, out of memory)
      AdapterError            the driver has no way to send a value of some type
      AccountingError         a bug: a call's rows were not each counted exactly once

AccessError, ResourceError and AdapterError, like SchemaError, are not about a row: a
bulk call stops at once with the error instead of narrowing its chunk down to reject
every row one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import Rejection, Report


class BulkError(Exception):
    """Base class of every error bulkops raises.

    ``report`` is the Report of the work that had already committed when the error
    was raised (``None`` where no bulk call was running).
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.report: Report | None = None

    def __str__(self) -> str:
        return self.message


class TransientError(BulkError):
    """Worth retrying: a deadlock, a busy database, throttling, a dropped connection.

    ``attempts`` is set once the retry policy gave up.
    """

    attempts: int | None = None


class DeadlockError(TransientError):
    pass


class SerializationError(TransientError):
    pass


class BusyError(TransientError):
    pass


class LockTimeoutError(BusyError):
    """A lock was not granted within ``lock_timeout`` (PostgreSQL 55P03)."""


class ThrottledError(TransientError):
    pass


class UnreadKeysError(ThrottledError):
    """``get_many`` could not read every key: the database kept returning some of them
    unprocessed until the retry policy's attempts ran out. ``keys`` are the unread
    keys; ``found`` holds what was read (the result ``get_many`` would have returned
    for the other keys). Never a silent gap in the result."""

    def __init__(self, message: str, keys: Sequence[Any], found: dict[Any, Any]) -> None:
        super().__init__(message, code="UnprocessedKeys")
        self.keys = list(keys)
        self.found = found


class ConnectionLostError(TransientError):
    pass


class CommitUnknownError(BulkError):
    """The connection was lost during COMMIT and the database could not tell whether
    the chunk committed. Not retried, so it can never be applied twice."""


class DataError(BulkError):
    """A row that cannot be written as given.

    Carries where it happened: ``row`` (1-based position in the input), ``key``,
    ``column`` (when the database or the coercion names one) and ``values`` (the row
    as it was given).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        column: str | None = None,
        row: int | None = None,
        key: Any = None,
        values: Any = None,
    ) -> None:
        super().__init__(message, code=code)
        self.column = column
        self.row = row
        self.key = key
        self.values = values

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        code = f" [{self.code}]" if self.code else ""
        return f"{prefix}: {self.message}{code}" if prefix else f"{self.message}{code}"


class ConstraintError(DataError):
    pass


class ConversionError(DataError):
    pass


class TooManyRejectsError(DataError):
    """``max_rejects`` was exceeded: the run stopped after the last whole chunk."""

    def __init__(self, message: str, rejections: Sequence[Rejection] = ()) -> None:
        super().__init__(message)
        self.rejections = list(rejections)


class StatementTimeoutError(BulkError):
    """A statement ran longer than ``statement_timeout`` and was cancelled (57014).
    Not retried: the same statement would most likely time out again."""


class SchemaError(BulkError):
    """The table or a column does not exist, or the call needs a key the table lacks.

    ``case_variants`` names the tables whose names differ from a missing table's only
    in letter case (``"Artist"`` for ``artist`` on PostgreSQL, where a quoted name keeps
    its case): the table the caller most likely meant.
    """

    def __init__(
        self, message: str, *, code: str | None = None, case_variants: Sequence[str] = ()
    ) -> None:
        super().__init__(message, code=code)
        self.case_variants = tuple(case_variants)


class LimitError(BulkError):
    """A value or a request is beyond a hard limit of the backend."""


class RejectsWriteError(BulkError):
    """Rejected rows could not be written to the rejects file; the call stopped."""


class ResumeError(BulkError):
    """A load cannot resume where an earlier run stopped: the input (its digest) or
    the options that decide the chunks differ from that run's."""


class RerunError(ResumeError):
    """A load of an input (``source_id``) into a table, neither resumed nor forced, is
    refused before anything is written: an earlier load of the same input into the
    same table did not finish and committed rows, and this one (an insert without a
    key or unique constraint among its columns) would write them twice. Continue it
    with ``resume=True``, or load it again on purpose with ``force=True``."""


class LoadConflictError(BulkError):
    """A partition of a partitioned load (``bulkops.dask.load``) is in the load's
    ledger as committed with other data (another digest) than the partition now holds:
    the input changed under the same ``load_id``. Never skipped silently; nothing of
    the partition was written."""


class ChangesetError(BulkError):
    """A changeset file cannot be applied: it is truncated, corrupt, not a bulkops
    changeset, or for another table. Nothing of it was applied."""


class UnsupportedError(BulkError):
    """The database cannot do what was asked: a capability it lacks (``Capabilities``),
    such as transactions on DynamoDB or ``statement_timeout`` on SQLite."""


class AccessError(BulkError):
    """The database refuses the work whatever the rows hold: the role lacks a
    privilege (PostgreSQL 42501), or the database or transaction is read-only
    (25006, SQLite ``readonly``). Not about a row: the call stops."""


class ResourceError(BulkError):
    """The server ran out of a resource (PostgreSQL class 53: disk full, out of
    memory). Not about a row, and not retried: the call stops."""


class AdapterError(BulkError):
    """The driver cannot send a value of some type (no adapter for it). Not about a
    row: every row would fail alike, so the call stops."""


class AccountingError(BulkError):
    """A bug in bulkops or a backend: the rows of a call were not each counted exactly
    once (the counts do not add up to the rows given). The message has the numbers;
    please report it."""
