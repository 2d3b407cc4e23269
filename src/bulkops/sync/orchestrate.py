"""The entry points of a sync call: ``sync_table`` (``Store.sync``), ``diff_table``
(``Store.diff``), and a sync through a stored changeset (``changes_out=``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..context import Context
from ..normalize import Key
from ..report import SyncReport, write_rejects
from ..writes import WriteSettings, one_rejects_sink
from .apply import apply_changeset
from .changeset import Changeset
from .engine import Syncer

__all__ = ["diff_table", "sync_table"]


def sync_table(
    ctx: Context,
    table: str,
    rows: Iterable[Any],
    settings: WriteSettings,
    *,
    key: Key,
    columns: Sequence[str] | None,
    delete_missing: bool,
    where: Mapping[str, Any] | None,
    dry_run: bool,
    list_keys: bool,
    source_id: str | None,
    changes_out: str | os.PathLike[str] | None,
    full: bool = False,
) -> SyncReport:
    """See ``Store.sync``."""
    if changes_out is not None:
        return _sync_through_changeset(
            ctx, table, rows, settings, changes_out, key=key, columns=columns,
            delete_missing=delete_missing, where=where, dry_run=dry_run,
        )  # fmt: skip
    syncer = Syncer(
        ctx, table, settings, key=key, columns=columns, delete_missing=delete_missing,
        where=where, dry_run=dry_run, list_keys=list_keys, full=full,
    )  # fmt: skip
    return syncer.run(rows, source_id)


def diff_table(
    ctx: Context,
    table: str,
    rows: Iterable[Any],
    settings: WriteSettings,
    *,
    key: Key,
    columns: Sequence[str] | None,
    delete_missing: bool,
    where: Mapping[str, Any] | None,
) -> Changeset:
    """See ``Store.diff``."""
    syncer = Syncer(
        ctx, table, settings, key=key, columns=columns, delete_missing=delete_missing,
        where=where, dry_run=True, list_keys=False, mode="diff",
    )  # fmt: skip
    syncer.run(rows)
    assert syncer.changeset is not None
    return syncer.changeset


def _sync_through_changeset(
    ctx: Context,
    table: str,
    rows: Iterable[Any],
    settings: WriteSettings,
    path: str | os.PathLike[str],
    *,
    key: Key,
    columns: Sequence[str] | None,
    delete_missing: bool,
    where: Mapping[str, Any] | None,
    dry_run: bool,
) -> SyncReport:
    """The difference found once, stored at ``path``, then applied from the file."""
    # Both steps' rejects go to the call's one sink at the end.
    settings, sink = one_rejects_sink(settings)
    changes = diff_table(
        ctx, table, rows, settings, key=key, columns=columns, delete_missing=delete_missing,
        where=where,
    )  # fmt: skip
    try:
        changes.write(path)
        report = changes.report
        assert report is not None
        report.verb, report.dry_run = "sync", dry_run
        if not dry_run:
            applied = apply_changeset(ctx, changes, table, settings)
            for name in ("added", "changed", "deleted"):
                setattr(report, name, getattr(applied, name))
            report.unchanged += applied.unchanged
            report.take_rejects(applied)
            report.statements += applied.statements
            report.elapsed += applied.elapsed
        write_rejects(sink, report)
        return report
    finally:
        changes.close()
