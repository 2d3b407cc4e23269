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
    ConnectionLostError,
    ConstraintError,
    ConversionError,
    DataError,
    DeadlockError,
    LimitError,
    SchemaError,
    SerializationError,
    ThrottledError,
    TooManyRejects,
    TransientError,
)
from .report import Rejection, Report
from .retry import RetryPolicy
from .schema import ColumnSpec, TableSpec
from .store import Store

__version__ = "0.1.0"

__all__ = [
    "BulkError",
    "BusyError",
    "Capabilities",
    "ColumnSpec",
    "ConnectionLostError",
    "ConstraintError",
    "ConversionError",
    "DataError",
    "DeadlockError",
    "LimitError",
    "Rejection",
    "Report",
    "RetryPolicy",
    "SchemaError",
    "SerializationError",
    "Store",
    "TableSpec",
    "ThrottledError",
    "TooManyRejects",
    "TransientError",
    "__version__",
    "connect",
]
