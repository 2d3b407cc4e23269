"""The concurrency-safe primitives: ``adjust``, ``get_or_create``, ``ensure``, ``claim``.

Each one does in the database, in a few statements, what application code usually
does with a read-modify-write loop: counters change with ``col = col + delta`` under
guards, a get-or-create race leaves one row, claimed rows are locked for one batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from operator import itemgetter
from types import NoneType
from typing import Any, TypeVar

from .backends.base import ItemBackend
from .context import Context, TableRef
from .errors import BusyError, ConversionError, SchemaError
from .normalize import Key, encode_key, encode_value, key_tuple, row_decoder, sort_key
from .plan import chunk_rows, chunked
from .reads import get_many, read_rows
from .report import Report
from .retry import RetryPolicy
from .schema import INT64_MAX, INT64_MIN, ColumnCodec, ColumnSpec, TableSpec, coerce
from .transaction import Atomic, Batch, Scope
from .writes import WriteSettings, write

__all__ = ["adjust", "claim", "ensure", "get_or_create"]

S = TypeVar("S")

# What a backend's adjust of one chunk gives back: (keys not found, keys refused).
_Missed = tuple[list[Any], list[Any]]


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
    # Keys travel as plain values for a one-column key, as tuples for a composite one.
    single = len(key_cols) == 1
    summed = _plain_deltas(deltas, key_codecs[0], target) if single else None
    given: dict[Any, Any] = {}  # encoded key -> key as given, where they differ
    if summed is not None:
        report.rows_in = len(summed)  # a dict of plain keys: nothing to encode or sum
    else:
        summed = {}
        plain_keys = key_codecs[0].passthrough if single else frozenset()
        for raw_key, raw_delta in deltas.items() if isinstance(deltas, Mapping) else deltas:
            report.rows_in += 1
            if raw_key.__class__ in plain_keys:
                k: Any = raw_key
            else:
                k = encode_key(key_tuple(raw_key, key_cols), key_codecs, key_cols)
                if single:
                    k = k[0]
                given[k] = raw_key
            delta = coerce(raw_delta, target)  # "5" from a file is 5, not text to append
            if delta is None:
                raise ConversionError(
                    f"adjust(): delta for key {raw_key!r} is empty", column=column
                )
            if k in summed:
                report.duplicates += 1
                summed[k] = summed[k] + delta
            else:
                summed[k] = delta
    try:
        ordered = sorted(summed)  # the same lock order for every caller
    except TypeError:
        ordered = sorted(summed, key=sort_key if not single else lambda v: sort_key((v,)))
    # Bound values per chunk: each key's columns and delta, and the two bounds.
    size = chunk_rows(ctx.capabilities, len(key_cols) + 2, chunk_size)
    if chunk_size is None and ctx.capabilities.adjust_rows_per_chunk:
        size = ctx.capabilities.adjust_rows_per_chunk
    passthrough = value_codec.passthrough
    encode = value_codec.encode
    what = f"adjust of {table!r}"

    def apply(part: list[Any]) -> _Missed:
        values = list(map(summed.__getitem__, part))
        if not {*map(type, values)} <= passthrough:
            values = [d if d.__class__ in passthrough else encode(d) for d in values]
        return backend.adjust(spec, key_cols, column, part, values, low, high)

    def apply_all() -> list[tuple[list[Any], _Missed]]:
        results = [(part, apply(part)) for part in chunked(ordered, size)]
        if atomic and any(missing or refused for _, (missing, refused) in results):
            raise _Refused(results)
        return results

    results: list[tuple[list[Any], _Missed]]
    try:
        if atomic:
            results = ctx.transaction(apply_all, retry, what)
        elif ctx.in_scope():
            # Inside a transaction each chunk is applied whole or not at all (one
            # guarded statement, or a backend's own savepoint): no savepoint here.
            results = [(part, apply(part)) for part in chunked(ordered, size)]
        else:
            results = [
                (part, ctx.transaction(partial(apply, part), retry, what))
                for part in chunked(ordered, size)
            ]
    except _Refused as refused:
        # Rolled back: nothing applied; say which keys stood in the way.
        results = refused.results
        report.stopped = "atomic: nothing applied, some keys were refused or not found"
    for part, (missing, refused_keys) in results:
        applied = len(part) - len(missing) - len(refused_keys)
        if missing or refused_keys:
            # Few keys, in the chunk's (key) order, as the caller gave them.
            missed, said_no = set(missing), set(refused_keys)
            for k in part:
                if k in missed:
                    report.not_found += 1
                    report.not_found_keys.append(given.get(k, k))
                elif k in said_no:
                    report.refused += 1
                    report.refused_keys.append(given.get(k, k))
        if report.stopped:
            report.unchanged += applied  # would have applied, rolled back with the rest
        else:
            report.updated += applied
    report.chunks = len(results)
    report.statements = backend.statements - statements
    report.elapsed = time.perf_counter() - started
    return report


def _plain_deltas(
    deltas: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
    key_codec: ColumnCodec,
    target: ColumnSpec,
) -> Mapping[Any, Any] | None:
    """``deltas`` as they are when nothing in them needs encoding, coercing or summing: a
    mapping of keys the driver takes as they are to ints for an integer column (checked
    per class, not per value in Python). None: go the long way, value by value."""
    if not isinstance(deltas, Mapping) or target.type != "integer":
        return None
    if not {*map(type, deltas)} <= key_codec.passthrough - {NoneType}:
        return None
    if not {*map(type, deltas.values())} <= {int}:
        return None
    if deltas and (min(deltas.values()) < INT64_MIN or max(deltas.values()) > INT64_MAX):
        return None  # the long way says which delta is out of range
    return deltas


class _Refused(Exception):
    """An atomic adjust met a refused or missing key (rolls back)."""

    def __init__(self, results: list[tuple[list[Any], _Missed]]) -> None:
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
    backend = ctx.backend
    items = isinstance(backend, ItemBackend) and ctx.capabilities.items
    names = tuple(spec.columns)
    codecs = [backend.codec(c) for c in columns]
    # A one-column key whose values are already of the column's own class (str for
    # text, int for integer) is its own canonical and driver value: taken as it is.
    plain = _EXACT_KEY.get(columns[0].type) if len(columns) == 1 else None
    if plain not in codecs[0].passthrough:
        plain = None

    # One writer at a time (SQLite): insert every row first, ignoring the keys that
    # exist, then read every key back, the whole call in one transaction (re-run as a
    # whole on a busy database).
    one_writer = ctx.capabilities.one_writer and not items

    def read(keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        if items:
            return get_many(
                ctx, table, keys, key=key_cols, columns=None, chunk_size=None,
                consistent_read=False,
            )  # fmt: skip
        found: dict[Any, dict[str, Any]] = {}
        keys = list(keys)
        if plain is not None and {*map(type, keys)} <= {plain}:
            encoded = keys  # their own driver values
        else:
            encoded = [
                k if plain is not None and k.__class__ is plain else encoded_key(k) for k in keys
            ]
        for part in chunked(encoded, size):
            read_rows(backend, spec, key_cols, names, part, found)
        return found

    def encoded_key(k: Any) -> Any:
        if len(key_cols) == 1:
            return encode_key((k,), codecs, key_cols)[0]
        return encode_key(k, codecs, key_cols)

    first_key = itemgetter(key_cols[0])

    def keyed(part: list[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
        """The rows of ``part`` under their keys (as coerced; a later row wins)."""
        if plain is not None:
            try:
                given = list(map(first_key, part))
            except (KeyError, TypeError):  # a row without the key, or not a mapping
                given = []
            if given and {*map(type, given)} <= {plain}:
                return dict(zip(given, part, strict=True))
        wanted: dict[Any, Mapping[str, Any]] = {}
        for row in part:
            parts = tuple(coerce(row.get(c.name), c) for c in columns)
            wanted[parts[0] if len(parts) == 1 else parts] = row
        return wanted

    if one_writer:
        by_key: dict[Any, Mapping[str, Any]] = {}
        for part in chunked(rows, size):
            by_key.update(keyed(part))
        # In key order: the write finds each chunk ordered already (nothing to sort).
        try:
            order = sorted(by_key)
        except TypeError:
            order = sorted(by_key, key=sort_key if len(key_cols) > 1 else lambda v: sort_key((v,)))

        def insert_then_read() -> dict[Any, dict[str, Any]]:
            rows_in_order = list(map(by_key.__getitem__, order))
            write(ctx, "insert_ignore", spec, rows_in_order, settings, key=key_cols)
            return read(order)

        return Atomic(ctx, None, retry).run(insert_then_read) if order else {}

    for part in chunked(rows, size):
        wanted = keyed(part)
        found = read(wanted)
        missing = [row for k, row in wanted.items() if k not in found]
        if missing:
            write(ctx, "insert_ignore", spec, missing, settings, key=key_cols)
            found.update(read(k for k in wanted if k not in found))
        result.update(found)
    return result


# Key values that need no coercion for a column of this type (exactly this class).
_EXACT_KEY: dict[str, type] = {"text": str, "integer": int}


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
