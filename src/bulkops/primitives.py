"""The concurrency-safe primitives: ``adjust``, ``get_or_create``, ``ensure``, ``claim``.

Each one does in the database, in a few statements, what application code usually
does with a read-modify-write loop: counters change with ``col = col + delta`` under
guards, a get-or-create race leaves one row, claimed rows are locked for one batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from .backends.base import ItemBackend
from .context import Context, TableRef
from .errors import BusyError, ConversionError, SchemaError
from .normalize import Key, encode_key, encode_value, key_tuple, row_decoder, sort_key
from .plan import chunk_rows, chunked
from .reads import get_many
from .report import Report
from .retry import RetryPolicy
from .schema import TableSpec, coerce
from .transaction import Batch, Scope
from .writes import WriteSettings, write

__all__ = ["adjust", "claim", "ensure", "get_or_create"]

S = TypeVar("S")

# (keys of one chunk, keys found, keys applied)
_Applied = tuple[list[tuple[Any, ...]], set[Any], set[Any]]


def adjust(
    ctx: Context,
    table: TableRef,
    deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
    *,
    column: str,
    key: Key,
    min_value: Any,
    max_value: Any,
    atomic: bool,
    chunk_size: int | None,
    retry: RetryPolicy | None,
) -> Report:
    """See ``Store.adjust``."""
    spec = ctx.table(table)
    with ctx.touching(spec):
        return _adjust_table(
            ctx, spec, deltas, column=column, key=key, min_value=min_value,
            max_value=max_value, atomic=atomic, chunk_size=chunk_size, retry=retry,
        )  # fmt: skip


def _adjust_table(
    ctx: Context,
    spec: TableSpec,
    deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
    *,
    column: str,
    key: Key,
    min_value: Any,
    max_value: Any,
    atomic: bool,
    chunk_size: int | None,
    retry: RetryPolicy | None,
) -> Report:
    backend = ctx.backend
    table = spec.name
    key_cols = spec.resolve_key(key, "adjust")
    target = spec.column(column)
    column = target.name
    key_codecs = [backend.codec(spec.column(k)) for k in key_cols]
    value_codec = backend.codec(target)
    low, high = (
        None if v is None else encode_value(v, value_codec, column) for v in (min_value, max_value)
    )
    report = Report(verb="adjust", table=table)
    started = time.perf_counter()
    statements = backend.statements
    given: dict[tuple[Any, ...], Any] = {}  # encoded key -> key as given
    summed: dict[tuple[Any, ...], Any] = {}  # encoded key -> canonical delta
    plain_keys = key_codecs[0].passthrough if len(key_cols) == 1 else frozenset()
    for raw_key, raw_delta in deltas.items() if isinstance(deltas, Mapping) else deltas:
        report.rows_in += 1
        if raw_key.__class__ in plain_keys:
            k: tuple[Any, ...] = (raw_key,)
        else:
            k = encode_key(key_tuple(raw_key, key_cols), key_codecs, key_cols)
        delta = coerce(raw_delta, target)  # "5" from a file is 5, not text to append
        if delta is None:
            raise ConversionError(f"adjust(): delta for key {raw_key!r} is empty", column=column)
        if k in summed:
            report.duplicates += 1
            summed[k] = summed[k] + delta
        else:
            given[k], summed[k] = raw_key, delta
    try:
        ordered = sorted(summed)  # the same lock order for every caller
    except TypeError:
        ordered = sorted(summed, key=sort_key)
    # Bound values per chunk: each key's columns and delta, and the two bounds.
    size = chunk_rows(ctx.capabilities, len(key_cols) + 2, chunk_size)
    passthrough = value_codec.passthrough
    what = f"adjust of {table!r}"

    def apply(part: list[tuple[Any, ...]]) -> tuple[set[Any], set[Any]]:
        rows = [
            (*k, d if (d := summed[k]).__class__ in passthrough else value_codec.encode(d))
            for k in part
        ]
        found, applied = backend.adjust(spec, key_cols, column, rows, low, high)
        return {tuple(r) for r in found}, {tuple(r) for r in applied}

    def apply_all() -> list[_Applied]:
        results = [(part, *apply(part)) for part in chunked(ordered, size)]
        if atomic and any(len(applied) < len(part) for part, _, applied in results):
            raise _Refused(results)
        return results

    results: list[_Applied]
    try:
        if atomic:
            results = ctx.transaction(apply_all, retry, what)
        elif ctx.in_scope():
            # Inside a transaction each chunk is one guarded UPDATE, applied whole or
            # not at all: no savepoint needed around it.
            results = [(part, *apply(part)) for part in chunked(ordered, size)]
        else:
            results = [
                (part, *ctx.transaction(partial(apply, part), retry, what))
                for part in chunked(ordered, size)
            ]
    except _Refused as refused:
        # Rolled back: nothing applied; say which keys stood in the way.
        results = refused.results
        report.stopped = "atomic: nothing applied, some keys were refused or not found"
    for part, found, applied in results:
        for k in part:
            if k not in found:
                report.not_found += 1
                report.not_found_keys.append(given[k])
            elif k not in applied:
                report.refused += 1
                report.refused_keys.append(given[k])
            elif report.stopped:
                report.unchanged += 1  # would have applied, rolled back with the rest
            else:
                report.updated += 1
    report.chunks = len(results)
    report.statements = backend.statements - statements
    report.elapsed = time.perf_counter() - started
    return report


class _Refused(Exception):
    """An atomic adjust met a refused or missing key (rolls back)."""

    def __init__(self, results: list[_Applied]) -> None:
        super().__init__("refused")
        self.results = results


def get_or_create(
    ctx: Context,
    table: TableRef,
    lookup: Mapping[str, Any],
    defaults: Mapping[str, Any] | None,
    retry: RetryPolicy | None,
) -> tuple[dict[str, Any], bool]:
    """See ``Store.get_or_create``."""
    backend = ctx.backend
    spec = ctx.table(table)
    lookup = spec.canonical(lookup)
    cols = spec.check_columns(lookup)
    if not cols:
        raise SchemaError("get_or_create() needs a lookup")
    # The unique constraint the lookup covers decides the race (its conflict target).
    conflict = next(
        (u for u in (spec.primary_key, *spec.unique) if u and set(u) <= set(cols)), None
    )
    if conflict is None:
        spec.require_unique(cols, "get_or_create")
        conflict = cols
    if any(v is None for v in lookup.values()):
        raise SchemaError("get_or_create(): a lookup value is None, and NULLs never match")
    everything = {**spec.canonical(defaults or {}), **lookup}
    spec.check_columns(everything)
    if isinstance(backend, ItemBackend) and ctx.capabilities.items:
        if set(cols) != set(spec.primary_key):
            raise SchemaError(
                f"get_or_create() on {table!r} looks items up by their key "
                f"({', '.join(spec.primary_key)}), not by {', '.join(cols)}"
            )
        item, created = backend.put_if_absent(spec, everything)
        if created:
            ctx.touch(spec)
        return item, created
    codecs = {c: backend.codec(spec.column(c)) for c in everything}
    where = {c: encode_value(lookup[c], codecs[c], c) for c in cols}
    values = {c: encode_value(v, codecs[c], c) for c, v in everything.items()}
    names = tuple(spec.columns)
    decode = row_decoder(backend, spec, names)

    def attempt() -> tuple[dict[str, Any], bool]:
        # Separate statements (select; insert … on conflict do nothing; select
        # again) rather than one CTE: under READ COMMITTED a single statement
        # returns nothing to a caller that lost the race.
        for _ in range(3):
            found = backend.select_where(spec, names, where, limit=1)
            if found:
                return decode(found[0]), False
            created = backend.insert_returning(spec, values, conflict)
            if created is not None:
                return decode(created), True
            # The conflicting row committed meanwhile: the next SELECT sees it.
        raise BusyError(f"get_or_create on {table!r}: the row kept vanishing; retrying")

    row, created = ctx.transaction(attempt, retry, f"get_or_create on {table!r}")
    if created:
        ctx.touch(spec)
    return row, created


def ensure(
    ctx: Context,
    table: TableRef,
    rows: Iterable[Mapping[str, Any]],
    *,
    key: Key,
    chunk_size: int | None,
    retry: RetryPolicy | None,
) -> dict[Any, dict[str, Any]]:
    """See ``Store.ensure``."""
    spec = ctx.table(table)
    key_cols = spec.resolve_key(key, "ensure")
    spec.require_unique(key_cols, "ensure")
    columns = [spec.column(k) for k in key_cols]
    result: dict[Any, dict[str, Any]] = {}
    size = chunk_size or chunk_rows(ctx.capabilities, len(spec.columns))
    settings = WriteSettings(retry=retry)

    def read(keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        return get_many(
            ctx, table, keys, key=key_cols, columns=None, chunk_size=None, consistent_read=False
        )

    for part in chunked(rows, size):
        wanted: dict[Any, Mapping[str, Any]] = {}
        for row in part:
            parts = tuple(coerce(row.get(c.name), c) for c in columns)
            wanted[parts[0] if len(parts) == 1 else parts] = row
        found = read(wanted)
        missing = [row for k, row in wanted.items() if k not in found]
        if missing:
            write(ctx, "insert_ignore", spec, missing, settings, key=key_cols)
            found.update(read(k for k in wanted if k not in found))
        result.update(found)
    return result


def claim(
    ctx: Context,
    verbs: S,
    table: TableRef,
    *,
    where: Mapping[str, Any],
    chunk_size: int,
    order_by: str | Sequence[str] | None,
    set_values: Mapping[str, Any] | None,
    limit: int | None,
    retry: RetryPolicy | None,
) -> Iterator[Batch[S]]:
    """See ``Store.claim``; ``verbs``: what a batch offers as its verbs (the Store)."""
    ctx.require(ctx.capabilities.row_locks, "claim() (it cannot lock rows for a transaction)")
    backend = ctx.backend
    spec = ctx.table(table)
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    order = spec.resolve_key(order_by, "claim")
    where = spec.canonical(where)
    set_values = spec.canonical(set_values) if set_values else set_values
    filters = {c: encode_value(v, backend.codec(spec.column(c)), c) for c, v in where.items()}
    spec.check_columns(filters)
    names = tuple(spec.columns)
    decode = row_decoder(backend, spec, names)
    pk = spec.resolve_key(None, "claim") if set_values else ()
    taken = 0
    while limit is None or taken < limit:
        count = chunk_size if limit is None else min(chunk_size, limit - taken)
        scope = Scope(ctx)
        scope.begin(retry or ctx.retry)
        batch: Batch[S] | None = None
        try:
            found = backend.select_where(
                spec, names, filters, order_by=order, limit=count, lock=True
            )
            if not found:
                scope.end(None)
                return
            batch = Batch(verbs, [decode(r) for r in found], scope)
            if set_values:
                claimed = [{**{k: r[k] for k in pk}, **set_values} for r in batch.rows]
                write(ctx, "update", spec, claimed, WriteSettings(), key=pk)
            yield batch
        except BaseException as error:
            scope.end(error)  # abandoned or failed: roll back, release the rows
            raise
        if scope.open:
            scope.end(None)
        taken += len(batch.rows)
