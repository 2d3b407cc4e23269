"""bulkops: fast, safe bulk database work.

import bulkops
db = bulkops.connect("sqlite:///shop.db")
report = db.upsert("scores", rows, key=("user_id", "product_id"))

Errors live in ``bulkops.errors`` (every one a ``BulkError``), events in
``bulkops.events``.
"""

from . import errors, events
from .api import connect
from .backends.base import Capabilities
from .report import Rejection, Report, SyncReport
from .retry import RetryPolicy
from .runlog import Run
from .schema import ColumnSpec, TableSpec
from .sequence import NumberSequence
from .sources import file_digest
from .store import Store
from .sync import Changeset
from .transaction import Atomic, Batch

__version__ = "0.1.0"

__all__ = [
    "Atomic",
    "Batch",
    "Capabilities",
    "Changeset",
    "ColumnSpec",
    "NumberSequence",
    "Rejection",
    "Report",
    "RetryPolicy",
    "Run",
    "Store",
    "SyncReport",
    "TableSpec",
    "__version__",
    "connect",
    "errors",
    "events",
    "file_digest",
]
