"""Reads: ``get_many``, many rows by key in a few large statements (or requests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import Any

from .backends.base import Backend, ColumnarBackend, ItemBackend
from .columnar import JSON_TEXT, arrow_table, arrow_type
from .context import Context, TableRef
from .errors import UnreadKeysError
from .normalize import Key, encode_key, key_tuple, key_tuples
from .plan import chunk_rows, chunked
from .schema import TableSpec

__all__ = ["get_many", "get_many_arrow", "read_rows"]


def get_many_arrow(
    ctx: Context,
    table: str,
    keys: Iterable[Any],
    *,
    key: Key,
    columns: Sequence[str] | None,
    chunk_size: int | None,
    consistent_read: bool,
) -> Any:
    """``get_many`` as a ``pyarrow.Table``: a row per key found, in the order the keys
    were given (keys of another type than the column's, found all the same, follow),
    the columns typed as the columnar path writes them."""
    keys = list(keys)
    found = get_many(
        ctx, table, keys, key=key, columns=columns, chunk_size=chunk_size,
        consistent_read=consistent_read,
    )  # fmt: skip
    backend = ctx.backend
    spec = backend.reflect(table)
    key_cols = spec.resolve_key(key, "get_many")
    rows = []
    taken: set[Any] = set()
    for k in keys:
        parts = key_tuple(k, key_cols)
        wanted = parts[0] if len(parts) == 1 else parts
        if wanted in found and wanted not in taken:
            taken.add(wanted)
            rows.append(found[wanted])
    rows += [row for k, row in found.items() if k not in taken]
    if columns is not None:
        names: list[str] = list(spec.check_columns(columns))
    elif spec.open:  # whole items: every attribute any of them has
        names = list(dict.fromkeys(c for row in rows for c in row)) or list(key_cols)
    else:
        names = list(spec.columns)
    types: list[Any] = [None] * len(names)
    if isinstance(backend, ColumnarBackend) and ctx.capabilities.columnar:
        types = [
            arrow_type(t) if t.binary else None
            for t in (backend.arrow_target(spec.column(c)) for c in names)
        ]
    # JSON documents as their text, whatever their shapes (polars: str.json_decode).
    types = [
        JSON_TEXT if c in spec.columns and spec.column(c).type == "json" else typ
        for c, typ in zip(names, types, strict=True)
    ]
    return arrow_table(rows, names, types)


def get_many(
    ctx: Context,
    table: TableRef,
    keys: Iterable[Any],
    *,
    key: Key,
    columns: Sequence[str] | None,
    chunk_size: int | None,
    consistent_read: bool,
) -> dict[Any, dict[str, Any]]:
    """See ``Store.get_many``."""
    backend = ctx.backend
    capabilities = ctx.capabilities
    spec = ctx.table(table)
    key_cols = spec.resolve_key(key, "get_many")
    if isinstance(backend, ItemBackend) and capabilities.items:
        return _get_items(backend, spec, key_cols, keys, columns, chunk_size, consistent_read)
    wanted = spec.check_columns(columns) if columns is not None else tuple(spec.columns)
    key_codecs = [backend.codec(spec.column(k)) for k in key_cols]
    width = len(key_cols)
    size = chunk_rows(capabilities, width, chunk_size)
    if capabilities.max_read_keys:
        size = min(size, capabilities.max_read_keys)
    # Reads are not row-locking, so bigger chunks only mean fewer statements.
    if chunk_size is None and capabilities.max_params:
        size = max(size, capabilities.max_params // width)
    result: dict[Any, dict[str, Any]] = {}
    if width == 1:
        # One-column keys travel as plain values: no tuple per key on the hot path.
        codec, name = key_codecs[0], key_cols[0]
        passthrough = codec.passthrough
        unique: dict[Any, None] = dict.fromkeys(
            k if k.__class__ in passthrough else encode_key((k,), key_codecs, key_cols)[0]
            for k in (k[name] if isinstance(k, Mapping) else k for k in keys)
        )
    else:
        unique = dict.fromkeys(
            encode_key(k, key_codecs, key_cols) for k in key_tuples(keys, key_cols)
        )
    for part in chunked(unique, size):
        read_rows(backend, spec, key_cols, wanted, part, result)
    return result


def read_rows(
    backend: Backend,
    spec: TableSpec,
    key_cols: tuple[str, ...],
    wanted: tuple[str, ...],
    keys: Sequence[Any],
    into: dict[Any, dict[str, Any]],
) -> None:
    """The rows (columns ``wanted``) of ``keys`` (encoded, distinct: plain values for a
    one-column key, tuples for a composite key) in one read, added to ``into`` under
    their keys as decoded."""
    # The key columns where ``wanted`` has them, else first.
    fetch = wanted if set(key_cols) <= set(wanted) else key_cols + wanted
    at = [fetch.index(k) for k in key_cols]
    decoders = [backend.codec(spec.column(c)).decode for c in fetch]
    rows = backend.read(spec, key_cols, fetch, keys)
    if len(at) == 1 and fetch == wanted and not any(decoders):
        # Nothing to decode or leave out: the dicts are built without a Python loop.
        got = list(rows)
        dicts = map(dict, map(partial(zip, fetch), got))
        into.update(zip(map(itemgetter(at[0]), got), dicts, strict=True))
        return
    decode = any(d is not None for d in decoders)
    project = wanted != fetch
    for raw in rows:
        values: Sequence[Any] = raw
        if decode:
            values = [v if d is None else d(v) for v, d in zip(raw, decoders, strict=True)]
        row = dict(zip(fetch, values, strict=True))
        k = values[at[0]] if len(at) == 1 else tuple(values[i] for i in at)
        into[k] = {c: row[c] for c in wanted} if project else row


def _get_items(
    backend: ItemBackend,
    spec: TableSpec,
    key_cols: tuple[str, ...],
    keys: Iterable[Any],
    columns: Sequence[str] | None,
    chunk_size: int | None,
    consistent_read: bool,
) -> dict[Any, dict[str, Any]]:
    wanted = spec.check_columns(columns) if columns is not None else None
    key_codecs = [backend.codec(spec.column(k)) for k in key_cols]
    unique = dict.fromkeys(encode_key(k, key_codecs, key_cols) for k in key_tuples(keys, key_cols))
    limit = backend.capabilities.max_read_keys
    size = min(chunk_size or limit, limit) if limit else chunk_size or len(unique) or 1
    result: dict[Any, dict[str, Any]] = {}
    unread: list[Any] = []
    width = len(key_cols)
    for part in chunked(unique, size):
        items: list[dict[str, Any]] = []
        try:
            # A plain loop, not list(): items read before the error are kept.
            for item in backend.get_items(spec, key_cols, part, wanted, consistent_read):
                items.append(item)
        except UnreadKeysError as error:
            unread += error.keys
        for item in items:
            k = item[key_cols[0]] if width == 1 else tuple(item[c] for c in key_cols)
            result[k] = item if wanted is None else {c: item[c] for c in wanted if c in item}
    if unread:
        raise UnreadKeysError(
            f"get_many on {spec.name!r}: {len(unread)} key(s) still unprocessed when the "
            "retry policy gave up (max_stalled_rounds rounds in a row without progress; "
            "error.keys names them, error.found has the rest)",
            unread,
            result,
        )
    return result
