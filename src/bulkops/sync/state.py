"""Sync state: where a sync finds, per table, its generation and the digest of the
last synced source of a scope (``SyncMark``). Each backend keeps it in its own way
(``Backend.sync_state()``: a table of the SQL database, a DynamoDB table); sync and
the Store use it only through the ``SyncState`` protocol."""

from __future__ import annotations

from ..backends.base import SyncMark, SyncState

__all__ = ["SyncMark", "SyncState"]
