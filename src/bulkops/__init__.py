"""bulkops: fast, safe bulk database work.

import bulkops
db = bulkops.connect("sqlite:///shop.db")
report = db.upsert("scores", rows, key=("user_id", "product_id"))
"""

from .api import connect
from .backends.base import Capabilities
from .errors import (
    BulkError,
    BusyError,
    ChangesetError,
    CommitUnknownError,
    ConnectionLostError,
    ConstraintError,
    ConversionError,
    DataError,
    DeadlockError,
    LimitError,
    LockTimeoutError,
    ResumeError,
    SchemaError,
    SerializationError,
    StatementTimeoutError,
    ThrottledError,
    TooManyRejects,
    TransientError,
    UnreadKeysError,
)
from .events import ChunkDone, Retried, RowsRejected, RunFinished, RunStarted
from .report import Rejection, Report, SyncReport
from .retry import RetryPolicy
from .runlog import Run
from .schema import ColumnSpec, TableSpec
from .sequence import Sequence
from .sources import file_digest
from .store import Store
from .sync import Changeset
from .transaction import Atomic, Batch

__version__ = "0.1.0"

__all__ = [
    "Atomic",
    "Batch",
    "BulkError",
    "BusyError",
    "Capabilities",
    "Changeset",
    "ChangesetError",
    "ChunkDone",
    "ColumnSpec",
    "CommitUnknownError",
    "ConnectionLostError",
    "ConstraintError",
    "ConversionError",
    "DataError",
    "DeadlockError",
    "LimitError",
    "LockTimeoutError",
    "Rejection",
    "Report",
    "ResumeError",
    "Retried",
    "RetryPolicy",
    "RowsRejected",
    "Run",
    "RunFinished",
    "RunStarted",
    "SchemaError",
    "Sequence",
    "SerializationError",
    "StatementTimeoutError",
    "Store",
    "SyncReport",
    "TableSpec",
    "ThrottledError",
    "TooManyRejects",
    "TransientError",
    "UnreadKeysError",
    "__version__",
    "connect",
    "file_digest",
]
