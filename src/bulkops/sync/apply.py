"""Applying a changeset: its rows are upserted and its deleted keys deleted, with the
ordinary write machinery, after the whole file was checked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..context import Context
from ..jsoncodec import from_json
from ..report import SyncReport, write_rejects
from ..writes import WriteSettings, one_rejects_sink, write
from .changeset import Changeset, validate

__all__ = ["apply_changeset"]


def apply_changeset(
    ctx: Context, changeset: Changeset, table: str | None, settings: WriteSettings
) -> SyncReport:
    """Write a changeset's rows and deletions into ``table`` (default: the changeset's)."""
    started = time.perf_counter()
    statements = ctx.backend.statements
    header, trailer = validate(changeset.path)  # the whole file is checked first
    name = table or header["table"]
    spec = ctx.table(name)
    key = tuple(header["key"])
    cols = tuple(header["columns"])
    spec.check_columns(cols)
    types = header.get("types", {})
    report = SyncReport(table=name, verb="apply")
    report.rows_in = trailer["added"] + trailer["changed"]
    settings, sink = one_rejects_sink(settings)

    def rows() -> Iterator[dict[str, Any]]:
        for record in changeset.records():
            if record["op"] == "delete":
                continue
            row = record["row"]
            yield {c: from_json(row.get(c), types.get(c, "any")) for c in row}

    def keys() -> Iterator[tuple[Any, ...]]:
        for record in changeset.records():
            if record["op"] == "delete":
                yield tuple(
                    from_json(v, types.get(k, "any"))
                    for k, v in zip(key, record["key"], strict=True)
                )

    ctx.touch(spec)
    if report.rows_in:
        written = write(
            ctx, "upsert", spec, rows(), settings, columns=None if spec.open else cols,
            key=key, touch=False,
        )  # fmt: skip
        report.added += written.inserted + written.upserted
        report.changed += written.updated
        report.unchanged += written.unchanged
        report.duplicates += written.duplicates
        report.take_rejects(written)
    if trailer["deleted"]:
        gone = write(ctx, "delete", spec, keys(), settings, columns=key, key=key, touch=False)
        report.deleted += gone.deleted + gone.upserted
        report.take_rejects(gone)
    report.bytes = changeset.bytes
    report.statements = ctx.backend.statements - statements
    report.elapsed = time.perf_counter() - started
    write_rejects(sink, report)
    return report
