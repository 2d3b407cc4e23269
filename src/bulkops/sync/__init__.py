"""Differential sync: bring a table in line with a source by sending only the difference.

- ``hashing``: canonical values, row hashes, scope ids and the source digest;
- ``state``: the sync state a backend keeps (``SyncMark``, the ``SyncState`` protocol);
- ``changeset``: the changeset file (gzip JSON Lines), its reader and writer;
- ``engine``: ``Syncer`` (one ``sync`` / ``diff`` call) and its two diff engines;
- ``orchestrate``: the entry points (``sync_table``, ``diff_table``, ``changes_out``);
- ``apply``: applying a changeset to a table.
"""

from __future__ import annotations

from .apply import apply_changeset
from .changeset import Changeset
from .engine import Mode, Syncer
from .hashing import canonical, row_hash, scope_id
from .orchestrate import diff_table, sync_table
from .state import SyncMark, SyncState

__all__ = [
    "Changeset",
    "Mode",
    "SyncMark",
    "SyncState",
    "Syncer",
    "apply_changeset",
    "canonical",
    "diff_table",
    "row_hash",
    "scope_id",
    "sync_table",
]
