"""bulkops: fast, safe bulk database work.

import bulkops
db = bulkops.connect("sqlite:///shop.db")
report = db.upsert("scores", rows, key=("user_id", "product_id"))

Errors live in ``bulkops.errors`` (every one a ``BulkError``), events in
``bulkops.events``.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
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

# Where each public name lives. Imported when first used (PEP 562), so that a part of
# the package (the command line, ``bulkops.sources``) does not load the whole library
# and its drivers' toolkit (SQLAlchemy) before it needs them.
_WHERE = {
    "Atomic": ".transaction",
    "Batch": ".transaction",
    "Capabilities": ".backends.base",
    "Changeset": ".sync",
    "ColumnSpec": ".schema",
    "NumberSequence": ".sequence",
    "Rejection": ".report",
    "Report": ".report",
    "RetryPolicy": ".retry",
    "Run": ".runlog",
    "Store": ".store",
    "SyncReport": ".report",
    "TableSpec": ".schema",
    "connect": ".api",
    "file_digest": ".sources",
}


def __getattr__(name: str) -> _typing.Any:
    if name in ("errors", "events"):
        return _importlib.import_module(f".{name}", __name__)
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(where, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
