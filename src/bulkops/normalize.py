"""Normalization: what a verb call's input means for its table. Pure, no I/O.

Keys given as scalars, tuples or mappings become key tuples in the key's column
order, encoded for the driver (one key normalizer for every verb); the first row of
a write decides its columns and row shape, and the write is checked against the
table (key columns present, NOT NULL columns given, update columns sensible) before
anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

from .backends.base import Backend, ItemBackend, WriteKind, WriteOp
from .errors import BulkError, ConversionError, SchemaError
from .plan import ChunkPlanner
from .schema import ColumnCodec, TableSpec, key_fold

__all__ = [
    "ITEM",
    "NormalizedWrite",
    "encode_key",
    "encode_value",
    "key_tuple",
    "key_tuples",
    "normalize_write",
    "row_decoder",
    "sort_key",
]

# The name of the whole-item value in an items backend's WriteOp columns.
ITEM = "*item*"

Key = str | Sequence[str] | None


def key_tuple(key: Any, names: Sequence[str]) -> tuple[Any, ...]:
    """One key as a tuple in the order of the key columns ``names``: a scalar for a
    one-column key, a tuple (or list) for a composite key, or a mapping holding the
    key columns."""
    if isinstance(key, Mapping):
        try:
            return tuple(key[n] for n in names)
        except KeyError as error:
            raise SchemaError(f"key mapping {key!r} lacks key column {error.args[0]!r}") from None
    if len(names) == 1:
        return (key,)
    if isinstance(key, Sequence) and not isinstance(key, str | bytes) and len(key) == len(names):
        return tuple(key)
    raise SchemaError(f"key {key!r} does not match the key columns ({', '.join(names)})")


def key_tuples(keys: Iterable[Any], names: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """``key_tuple`` of each key, lazily."""
    for k in keys:
        yield key_tuple(k, names)


def encode_key(
    key: tuple[Any, ...], codecs: Sequence[ColumnCodec], names: Sequence[str]
) -> tuple[Any, ...]:
    """A key tuple's values encoded for the driver; a value that does not fit its
    column raises ConversionError naming the key and the column."""
    out = []
    for value, codec, name in zip(key, codecs, names, strict=True):
        if value.__class__ in codec.passthrough:
            out.append(value)
            continue
        try:
            out.append(codec.encode(value))
        except BulkError:
            raise
        except (ValueError, TypeError, ArithmeticError) as error:
            raise ConversionError(f"key {key!r}: {error}", column=name) from error
    return tuple(out)


def encode_value(value: Any, codec: ColumnCodec, name: str) -> Any:
    """One value encoded for the driver (a filter, a bound)."""
    return encode_key((value,), [codec], [name])[0]


def sort_key(key: tuple[Any, ...]) -> Any:
    """An order for keys whose values do not compare with each other (mixed types)."""
    return tuple((type(v).__name__, v) for v in key)


def row_decoder(
    backend: Backend, spec: TableSpec, names: tuple[str, ...]
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """Driver values of ``names`` -> a plain dict of Python values."""
    decoders = [backend.codec(spec.column(c)).decode for c in names]

    def decode(raw: Sequence[Any]) -> dict[str, Any]:
        return {n: v if d is None else d(v) for n, v, d in zip(names, raw, decoders, strict=True)}

    return decode


@dataclass
class NormalizedWrite:
    """A write call made concrete: the operation, the planner that encodes its rows,
    and the rows (the first one already read, to learn the shape)."""

    op: WriteOp
    planner: ChunkPlanner
    rows: Iterator[Any]


def normalize_write(
    backend: Backend,
    kind: WriteKind,
    spec: TableSpec,
    first: Any,
    rest: Iterator[Any],
    *,
    columns: Sequence[str] | None,
    key: Key,
    update_columns: Sequence[str] | None,
) -> NormalizedWrite:
    """Check a write of rows (``first``, then ``rest``) to ``spec`` and plan it."""
    verb = kind if kind != "insert_ignore" else "insert"
    capabilities = backend.capabilities
    table = spec.name
    adapter = spec.row_adapter
    if kind in ("insert", "insert_ignore") and spec.insert_adapter is not None:
        adapter = spec.insert_adapter
    if adapter is not None:
        # A table named by a model: its instances, and mappings by its names.
        first, rest = adapter(first), map(adapter, rest)
    mappings = isinstance(first, Mapping)
    explicit = columns is not None
    if columns is not None:
        cols = spec.check_columns(columns)
    elif mappings:
        cols = spec.check_columns(first.keys())
    else:
        raise TypeError(
            f"{verb}(): rows are {type(first).__name__}s, not mappings: "
            "pass columns= to name their values"
        )
    rows: Iterator[Any] = chain((first,), rest)  # (in C: no generator frame per row)
    item_encoder = None
    if capabilities.items and kind in ("insert", "insert_ignore", "upsert"):
        # Whole items: each mapping is written as it is, whatever its attributes.
        assert isinstance(backend, ItemBackend)
        if not mappings:
            if not explicit:
                raise TypeError(
                    f"{verb}(): items are mappings; pass columns= to name the values of sequences"
                )
            names = cols

            def as_item(row: Any) -> Any:  # a row of the wrong width stays, to be rejected
                if len(row) != len(names):
                    return row
                return dict(zip(names, row, strict=True))

            rows, mappings = map(as_item, rows), True
        if update_columns is not None:
            raise SchemaError(
                f"{capabilities.name}: upsert() replaces whole items; use update() to set "
                "some attributes"
            )
        key_cols = spec.resolve_key(key, verb)
        if key_cols != spec.primary_key:
            raise SchemaError(
                f"{verb}() on {table!r} writes items by their key "
                f"({', '.join(spec.primary_key)}), not by {', '.join(key_cols)}: "
                f"{capabilities.name} has no other unique constraints"
            )
        item_encoder = backend.item_encoder(spec, key_cols)
        cols = (*key_cols, ITEM)
    else:
        key_cols = write_key(kind, spec, key, cols)
    if kind in ("upsert", "update") and mappings and item_encoder is None:
        # The key is needed to match rows even if columns= names only what to set.
        cols = cols + tuple(k for k in key_cols if k not in cols)
    missing_key = [k for k in key_cols if k not in cols]
    if missing_key:
        raise SchemaError(
            f"{verb}() matches rows on ({', '.join(key_cols)}) but the rows do not give "
            f"{', '.join(map(repr, missing_key))}"
        )
    if kind == "update" and not [c for c in cols if c not in key_cols]:
        raise SchemaError("update() needs at least one column to set besides the key")
    # (An upsert's rows that leave such a column out may update the rows that exist:
    # see plan.required_left_out.)
    if kind in ("insert", "insert_ignore") and item_encoder is None and not spec.insert_trigger:
        required = [
            c.name for c in spec.columns.values()
            if not c.nullable and not c.has_default and c.name not in cols
        ]  # fmt: skip
        if required:
            raise SchemaError(
                f"table {table!r} requires column(s) {', '.join(map(repr, required))} "
                "(NOT NULL, no default) but the rows do not give them"
            )
    codecs = [backend.codec(spec.column(c)) for c in cols] if item_encoder is None else []
    # Mappings may give different sets of columns (the union is written, each row's
    # own set where it goes): without columns=, any of the table's columns.
    partial = mappings and item_encoder is None and kind != "delete"
    optional = tuple(c for c in spec.columns if c not in cols) if partial and not explicit else ()
    planner = ChunkPlanner(
        cols, codecs, key_cols, mappings=mappings, strict_width=not (explicit and mappings),
        encode=item_encoder, partial=partial, optional=optional,
        optional_codecs=[backend.codec(spec.column(c)) for c in optional],
        # An insert's rows that leave out the primary key get one from the database.
        key_required=not (kind in ("insert", "insert_ignore") and key is None),
        needs_set=kind == "update",
        open_codec=(lambda name: backend.codec(spec.column(name))) if spec.open else None,
        key_folds=[key_fold(spec.column(k)) for k in key_cols],
    )  # fmt: skip
    updating = None
    if update_columns is not None:
        updating = spec.check_columns(update_columns)
        outside = [c for c in updating if c not in cols or c in key_cols]
        if outside:
            raise SchemaError(
                f"update_columns {', '.join(map(repr, outside))} must be non-key columns "
                "the rows give"
            )
    op = WriteOp(kind=kind, table=spec, columns=cols, key=key_cols, update_columns=updating)
    return NormalizedWrite(op, planner, rows)


def write_key(kind: WriteKind, spec: TableSpec, key: Key, cols: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a write matches (or, for an insert, de-duplicates) rows on."""
    if kind in ("insert", "insert_ignore"):
        if key is not None:
            return spec.resolve_key(key, "insert")
        # Duplicates collapse on the primary key when the rows give it; rows without
        # it (ids the database assigns) are written as they come.
        pk = spec.primary_key
        return pk if pk and all(c in cols for c in pk) else ()
    key_cols = spec.resolve_key(key, kind)
    if kind == "upsert":
        spec.require_unique(key_cols, "upsert")
    else:  # update, delete: each key must name at most one row, or the counts lie
        spec.require_unique(key_cols, kind, exact=False)
    return key_cols
