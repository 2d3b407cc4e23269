"""The columnar path: Arrow input (pyarrow, pandas, polars) checked a column at a time.

Anything that exports the Arrow C stream interface (``__arrow_c_stream__``: a pyarrow
Table, RecordBatch or RecordBatchReader, a polars DataFrame, pandas >= 2.2) and pandas
DataFrames (through ``pyarrow.Table.from_pandas``) are read as record batches; no pandas
or polars import is needed here. Each chunk's columns are coerced to what the backend
stores (``ArrowTarget``) with ``pyarrow.compute``: bad values are found with masks
(compare, ``is_null``, ``and_``), and only the rows holding them become Rejections with
their row number, key, column, original values and reason, the same rules as the row
path's coercion (``schema.COERCERS``; a source type without a vectorized rule goes
through those per value, for that column only). Duplicate keys collapse (last wins) and
the survivors are sorted by key, as ``plan.ChunkPlanner`` does for rows.

pandas input: NaN is a missing value (NULL) in every column, as ``DataFrame.to_sql``
takes it (``from_pandas`` maps NaN to null). polars and pyarrow keep NaN apart from
null: a NaN there is a float value (stored where the database can, rejected otherwise).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .backends.base import ArrowTarget, Backend, ChunkCounts, ColumnarBackend, WriteOp
from .plan import ChunkPlanner, write_leaving_out
from .report import Rejection
from .schema import (
    COERCERS,
    FALSE_TEXTS,
    TRUE_TEXTS,
    ColumnCodec,
    ColumnSpec,
    decimal_fits,
    json_dumps,
    too_fine,
)

__all__ = [
    "ROW_SHAPE_COLUMN",
    "ArrowChunk",
    "ArrowPlanner",
    "arrow_batches",
    "arrow_stream",
    "arrow_table",
    "arrow_type",
    "frame_records",
    "is_arrow",
    "rows_of",
]


# A column a file reader adds to its batches: null, or for a row of the wrong width (its
# other columns null) the row's values as a JSON list, so that the row is rejected with
# its number as the row path rejects it (``sources.open_arrow``).
ROW_SHAPE_COLUMN = "\x00bulkops row shape"


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as error:  # pragma: no cover - pyarrow is in the extras
        raise ImportError(
            "Arrow input (DataFrames, pyarrow) needs pyarrow: pip install 'bulkops[arrow]'"
        ) from error
    return pyarrow


def _is_pandas_frame(obj: object) -> bool:
    cls = type(obj)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".", 1)[0] == "pandas"


def is_arrow(rows: object) -> bool:
    """Whether ``rows`` are Arrow data the columnar path reads (no import needed)."""
    return _is_pandas_frame(rows) or hasattr(rows, "__arrow_c_stream__")


def arrow_stream(rows: object, keeps_nan: Callable[[str], bool] | None = None) -> Any | None:
    """A ``pyarrow.RecordBatchReader`` over ``rows`` if they are Arrow data (anything
    exporting ``__arrow_c_stream__``, or a pandas DataFrame); None for other rows.

    A DataFrame's NaN is a missing value (null), as ``DataFrame.to_sql`` takes it;
    ``keeps_nan`` (the switch ``nan_as_null=False``): the columns whose NaN stays a
    value (where the column's type holds one), given a column name."""
    if not is_arrow(rows):
        return None
    if _is_pandas_frame(rows):
        pa = _pyarrow()
        # Not through __arrow_c_stream__: that keeps a non-default index as a column.
        try:
            table = pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None  # object columns Arrow cannot type: frame_records, the row path
        if any(_holds_struct(field.type) for field in table.schema):
            # dicts in an object column (JSON documents): Arrow makes them structs of
            # every key any row has, a key a dict lacks becoming a null, so each stored
            # document would gain the others' keys. The row path keeps each as given.
            return None
        if keeps_nan is not None:
            frame: Any = rows
            for i, name in enumerate(table.schema.names):
                column = table.schema.field(i)
                if pa.types.is_floating(column.type) and keeps_nan(name):
                    values = frame.iloc[:, i].to_numpy()
                    if values.dtype.kind == "f":  # a numpy float column holds no other null
                        table = table.set_column(
                            i, column, pa.array(values, type=column.type, from_pandas=False)
                        )
        return _without_views(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()))
    pa = _pyarrow()
    stream = (
        rows if isinstance(rows, pa.RecordBatchReader) else pa.RecordBatchReader.from_stream(rows)
    )
    return _without_views(stream)


def _holds_struct(t: Any) -> bool:
    """Whether values of Arrow type ``t`` are or hold structs (in lists, maps)."""
    pa = _pyarrow()
    if pa.types.is_struct(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _holds_struct(t.value_type)
    if pa.types.is_map(t):
        return _holds_struct(t.key_type) or _holds_struct(t.item_type)
    return False


def _without_views(stream: Any) -> Any:
    """``stream`` with its view types (polars exports every string as ``string_view``,
    bytes as ``binary_view``, a Categorical as a dictionary of ``string_view``) cast to
    the plain ones, a batch at a time as it is read: Arrow has no ``take`` kernel for
    views (nor a dictionary decode of them), and what reads the batches (de-duplication,
    key order, the sync's changed rows, digests) takes rows out of them."""
    pa = _pyarrow()
    schema = stream.schema
    plain = pa.schema(
        [field.with_type(_plain_type(field.type)) for field in schema], metadata=schema.metadata
    )
    if plain.equals(schema):
        return stream
    return pa.RecordBatchReader.from_batches(plain, (batch.cast(plain) for batch in stream))


def _plain_type(t: Any) -> Any:
    """``t`` with ``string_view``/``binary_view`` (also inside lists, structs and
    dictionaries) as ``string``/``binary``."""
    pa = _pyarrow()
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return pa.dictionary(t.index_type, _plain_type(t.value_type), t.ordered)
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_plain_type(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type)), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([field.with_type(_plain_type(field.type)) for field in t])
    return t


# Rows of a DataFrame made into dicts at a time (frame_records).
_FRAME_SLICE_ROWS = 10_000


def frame_records(
    frame: Any, keeps_nan: Callable[[str], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of a pandas DataFrame that Arrow cannot take (object columns of values
    it cannot type: dicts mixed with lists, ``ipaddress`` objects, Decimals mixed with
    floats, as ``read_sql`` gives them) as dicts for the row path, a slice at a time;
    a float NaN is a missing value as on the columnar path (unless ``keeps_nan``)."""
    for start in range(0, len(frame), _FRAME_SLICE_ROWS):
        for record in frame.iloc[start : start + _FRAME_SLICE_ROWS].to_dict("records"):
            for name, value in record.items():
                nan = value.__class__ is float and value != value
                if nan and (keeps_nan is None or not keeps_nan(name)):
                    record[name] = None
            yield record


def rows_of(stream: Any) -> Iterator[dict[str, Any]]:
    """The rows of an Arrow stream as dicts, a batch at a time (for backends without
    a columnar write: the row path takes them from there)."""
    for batch in stream:
        yield from batch.to_pylist()


def arrow_batches(stream: Any, columns: Sequence[str], size: int) -> Iterator[Any]:
    """Record batches of ``columns`` holding ``size`` rows each (the last fewer), read
    from ``stream`` as it goes: memory stays bounded by a chunk."""
    pa = _pyarrow()
    pending: list[Any] = []
    held = 0
    for batch in stream:
        if batch.num_rows == 0:
            continue
        shaped = ROW_SHAPE_COLUMN in batch.schema.names
        batch = batch.select([*columns, ROW_SHAPE_COLUMN] if shaped else list(columns))
        pending.append(batch)
        held += batch.num_rows
        while held >= size:
            whole = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
            yield whole.slice(0, size)
            rest = whole.slice(size)
            pending = [rest] if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.concat_batches(pending) if len(pending) > 1 else pending[0]


def _decimal_reason(value: Any, target: ArrowTarget, declared: str) -> str:
    """Why a numeric(p, s) column does not take ``value``: in the row path's words."""
    try:
        number = COERCERS["decimal"](value)
        decimal_fits(number, target.scale or 0, target.precision or 38, declared)
    except (ValueError, ArithmeticError) as error:
        return str(error)
    return f"{value!r} does not fit {declared}"


def arrow_type(target: ArrowTarget) -> Any:
    """The Arrow type a backend takes for a column (its ``ArrowTarget``)."""
    pa = _pyarrow()
    kind = target.kind
    if not target.binary:
        return pa.string()
    if kind == "integer":
        return {16: pa.int16(), 32: pa.int32()}.get(target.bits, pa.int64())
    if kind == "float":
        return pa.float32() if target.bits == 32 else pa.float64()
    if kind == "decimal":
        if target.precision is not None:
            return pa.decimal128(target.precision, target.scale or 0)
        return None  # the source's own decimal type (any precision the database takes)
    if kind == "text":
        return pa.string()
    if kind == "bytes":
        return pa.binary()
    if kind == "boolean":
        return pa.bool_()
    if kind == "date":
        return pa.date32()
    if kind == "datetime":
        if target.timezone == "utc":
            return pa.timestamp("us", tz="UTC")
        if target.timezone == "naive":
            return pa.timestamp("us")
        return None  # the source's own time zone (or none), in microseconds
    return None  # json and any: per value


def arrow_table(
    rows: Sequence[Mapping[str, Any]], names: Sequence[str], types: Sequence[Any]
) -> Any:
    """A ``pyarrow.Table`` of ``rows`` (plain dicts, as reads return them) with the
    columns ``names`` typed by ``types`` (None: as the values say; ``JSON_TEXT``: the
    JSON text of each value, a string column)."""
    pa = _pyarrow()
    arrays = []
    for name, typ in zip(names, types, strict=True):
        values = [row.get(name) for row in rows]
        if typ is JSON_TEXT:
            # Documents of any shape in one column: as JSON text (inferred as structs
            # they would gain other rows' keys, and differing shapes would not fit).
            texts = [None if v is None else json_dumps(v) for v in values]
            arrays.append(pa.array(texts, pa.string()))
        else:
            arrays.append(_array(pa, values, typ))
    return pa.Table.from_arrays(arrays, names=list(names))


JSON_TEXT = "json text"  # an ``arrow_table`` type: the column's values as JSON text


def _array(pa: Any, values: list[Any], typ: Any) -> Any:
    # Arrow's time type has no zone: times with one are given as their ISO text.
    zoned = any(isinstance(v, dt.time) and v.tzinfo is not None for v in values)
    attempts = () if zoned else (typ, None) if typ is not None else (None,)
    for attempt in attempts:
        try:
            return pa.array(values, attempt)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            continue
    # Values Arrow has no type for (e.g. UUIDs): their text (JSON's for lists and dicts).
    return pa.array([_value_text(v) for v in values], pa.string())


def _value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.time | dt.date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json_dumps(value)
    return str(value)


# ------------------------------------------------------------------ the chunks


class _BatchRows(Sequence[dict[str, Any]]):
    """The rows of a record batch as dicts, made only when asked for (Rejections)."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {name: scalar_value(column[i]) for name, column in zip(
            self.batch.schema.names, self.batch.columns, strict=True
        ) if name != ROW_SHAPE_COLUMN}  # fmt: skip


def batch_rows(batch: Any) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, a timestamp or time with nanoseconds as its text (see
    ``scalar_value``), which the write refuses with its reason, row by row."""
    try:
        return batch.to_pylist()  # type: ignore[no-any-return]
    except ValueError:
        names = batch.schema.names
        columns = [column_values(column) for column in batch.columns]
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def column_values(column: Any) -> list[Any]:
    """``column.to_pylist()``, a timestamp or time with nanoseconds as its text (see
    ``scalar_value``)."""
    try:
        return column.to_pylist()  # type: ignore[no-any-return]
    except ValueError:
        return [scalar_value(scalar) for scalar in column]


def scalar_value(scalar: Any) -> Any:
    """An Arrow scalar's Python value; a timestamp or time with nanoseconds, which no
    Python datetime holds, as its ISO 8601 text (pyarrow raises for it where pandas is
    not loaded, as in the ``bulkops`` program), so a rejected row shows what it held."""
    try:
        return scalar.as_py()
    except ValueError:
        if getattr(scalar.type, "unit", None) != "ns":
            raise
        text: str = scalar.cast(_pyarrow().string()).as_py()
        return text.replace(" ", "T", 1)  # Arrow writes a space between date and time


class _Positions(Sequence[int]):
    """Positions held in an Arrow integer array, as ints when asked for."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.array[i].to_pylist()
        return int(self.array[i].as_py())


def _arange(n: int) -> Any:
    """0, 1, ..., n - 1 as an Arrow int64 array (made in C where pyarrow can)."""
    pa = _pyarrow()
    if hasattr(pa, "arange"):  # not in every pyarrow the extras allow
        return pa.arange(0, n)
    return pa.array(range(n), pa.int64())


@dataclass
class ArrowChunk:
    """One chunk of Arrow input, checked and ordered (``plan.Chunk``).

    ``batch``: the rows to write, in write order, in the backend's types; ``index[j]``:
    the position of ``batch``'s row ``j`` within ``source`` (the batch as given).
    """

    start: int
    source: Any
    batch: Any
    index: Any  # Sequence[int]; an Arrow array of positions while it is prepared
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0

    @property
    def raws(self) -> Sequence[Any]:
        return _BatchRows(self.source)

    @property
    def size(self) -> int:
        return int(self.source.num_rows)

    @property
    def count(self) -> int:
        return int(self.batch.num_rows)

    def write(
        self, backend: Backend, op: WriteOp, positions: Sequence[int] | None = None
    ) -> ChunkCounts:
        assert isinstance(backend, ColumnarBackend)
        batch = self.batch
        if positions is not None and not _all_of(positions, batch.num_rows):
            batch = batch.take(list(positions))
        return write_leaving_out(backend, op, lambda chunk_op: backend.write_arrow(chunk_op, batch))


def _all_of(positions: Sequence[int], n: int) -> bool:
    """Whether ``positions`` are 0..n-1 in order (a whole chunk: nothing to take)."""
    return isinstance(positions, range) and positions == range(n)


# ------------------------------------------------------------- column coercion


@dataclass
class _Column:
    """A source column coerced: the values (bad ones null), and the bad rows' reasons."""

    values: Any
    bad: Any = None  # a boolean mask, or None when every value is good
    reasons: Callable[[int], str] | None = None


_NOT_AN_INTEGER = "{!r} is not an integer"


# schema.KEY_FOLDS for Arrow arrays: the same folds, a column at a time.
ARROW_KEY_FOLDS = {
    "ascii": lambda array: _compute().ascii_lower(array),
    "lower": lambda array: _compute().utf8_lower(array),
    "rtrim": lambda array: _compute().utf8_rtrim(array, characters=" "),
}


def _arrow_key_fold(array: Any, column: ColumnSpec) -> Any:
    """A key column's values as the database compares them (text folded where its
    equality ignores case), so that rows it takes for one key collapse here too."""
    fold = ARROW_KEY_FOLDS.get(column.fold)
    if fold is None or not _pyarrow().types.is_string(array.type):
        return array
    return fold(array)


class ArrowPlanner:
    """Checks, de-duplicates and orders the Arrow chunks of one call (``plan.Planner``).

    ``rows``: the row path's planner for the same call, which says how a row as given
    reads in a Rejection (``values_of``, ``key_from_values``) and why the database
    refused one (``diagnose``).
    """

    def __init__(
        self,
        op: WriteOp,
        backend: ColumnarBackend,
        rows: ChunkPlanner,
    ) -> None:
        self.op = op
        self.columns = op.columns
        self.key = op.key
        self.rows = rows
        self.specs = [op.table.column(c) for c in op.columns]
        self.targets = [backend.arrow_target(s) for s in self.specs]
        # The row path's codec of each column: a column the backend takes as text gets
        # the text the row path would send (a list as an array literal, not its repr).
        self.codecs = dict(zip(rows.columns, rows.codecs, strict=True))
        self.types = [arrow_type(t) for t in self.targets]
        # The key columns that match rows in the table, so must have a value.
        self.matched_by = frozenset(op.key if op.kind in ("upsert", "update", "delete") else ())
        # NOT NULL is checked here for the columns a missing value cannot pass (no
        # default to take its place) where every row is written: an update of a row
        # that does not exist writes nothing, so there the database says it.
        self.required = [
            not s.nullable
            and not s.has_default
            and not op.table.insert_trigger
            and op.kind in ("insert", "insert_ignore", "upsert")
            for s in self.specs
        ]

    # ------------------------------------------------------------ plan.Planner

    def values_of(self, raw: Any) -> Any:
        return self.rows.values_of(raw)

    def key_from_values(self, values: Any) -> Any:
        return self.rows.key_from_values(values)

    def diagnose(self, raw: Any) -> Rejection | None:
        return self.rows.diagnose(raw)

    def prepare(self, raws: Any, start: int) -> ArrowChunk:
        pa = _pyarrow()
        pc = _compute()
        source = raws
        n = source.num_rows
        arrays = []
        bad_any = None
        found: list[tuple[Any, str, Callable[[int], str]]] = []  # (mask, column, reason)
        for name, spec, target, typ, required in zip(
            self.columns, self.specs, self.targets, self.types, self.required, strict=True
        ):
            column = self._coerce(source.column(name), spec, target, typ)
            if target.digits is not None:
                column = self._within_digits(column, spec, target.digits)
            if target.fraction_digits is not None:
                column = _within_fraction(column, spec, target.fraction_digits)
            masks = []
            if column.bad is not None:
                masks.append(column.bad)
                found.append((column.bad, name, column.reasons or _generic))
            if required and column.values.null_count:
                missing = column.values.is_null()
                if column.bad is not None:
                    missing = pc.and_(missing, pc.invert(column.bad))
                if pc.any(missing).as_py():
                    masks.append(missing)
                    found.append((missing, name, _not_null(name)))
            if name in self.matched_by and column.values.null_count:
                # No row has a NULL key: such a row would be inserted again by every
                # re-run of an upsert, and never found by an update or a delete (the
                # row path's "missing key"). An insert's NULL key is the database's to
                # assign.
                missing = column.values.is_null()
                if column.bad is not None:
                    missing = pc.and_(missing, pc.invert(column.bad))
                if pc.any(missing).as_py():
                    masks.append(missing)
                    found.append((missing, name, _missing_key(name, source.column(name))))
            for mask in masks:
                bad_any = mask if bad_any is None else pc.or_(bad_any, mask)
            arrays.append(column.values)
        batch = pa.RecordBatch.from_arrays(arrays, names=list(self.columns))
        rejections: list[Rejection] = []
        shapes = _row_shapes(source)
        if shapes is not None:
            bad_any = shapes if bad_any is None else pc.or_(bad_any, shapes)
        index = None  # None: every row, in the order given
        if bad_any is not None and pc.any(bad_any).as_py():
            rejections = self._rejections(source, start, found, shapes)
            keep = pc.invert(bad_any)
            index = pc.indices_nonzero(keep)
            batch = batch.filter(keep)
        chunk = ArrowChunk(start, source, batch, index, rejections)
        if self.key:
            self._collapse_and_order(chunk)
        # Positions are looked up only for a row the database refuses: they stay in
        # Arrow (a list of them would cost a Python int per row of every chunk).
        chunk.index = range(n) if chunk.index is None else _Positions(chunk.index)
        return chunk

    def _rejections(
        self,
        source: Any,
        start: int,
        found: list[tuple[Any, str, Callable[[int], str]]],
        shapes: Any = None,
    ) -> list[Rejection]:
        """A Rejection per bad row (the first bad column it has), in row order."""
        pc = _compute()
        first: dict[int, tuple[str, str]] = {}
        out = []
        if shapes is not None:
            marks = source.column(ROW_SHAPE_COLUMN)
            for i in pc.indices_nonzero(shapes).to_pylist():
                raw = json.loads(marks[i].as_py())
                first[i] = ("", "")
                out.append(
                    Rejection(
                        row=start + i + 1,
                        key=None,
                        reason=f"row has {len(raw)} values for {len(self.columns)} columns "
                        f"({', '.join(self.columns)})",
                        values=raw,
                        column=None,
                    )
                )
        for mask, name, reason_of in found:
            for i in pc.indices_nonzero(mask).to_pylist():
                if i not in first:
                    first[i] = (name, reason_of(i))
        rows = _BatchRows(source)
        for i in sorted(first):
            column, reason = first[i]
            if not column:
                continue  # a row of the wrong width, above
            values = self.rows.values_of(rows[i])
            out.append(
                Rejection(
                    row=start + i + 1,
                    key=self.rows.key_from_values(values),
                    reason=reason,
                    values=values,
                    column=column,
                )
            )
        out.sort(key=lambda r: r.row)
        return out

    def _collapse_and_order(self, chunk: ArrowChunk) -> None:
        """Duplicate keys collapse to the last row; the rest are sorted by key (rows
        without a key value, which the database assigns, go last as they came)."""
        pa = _pyarrow()
        pc = _compute()
        batch = chunk.batch
        if batch.num_rows < 2:
            return
        keys = [_arrow_key_fold(batch.column(k), self.op.table.column(k)) for k in self.key]
        if len(keys) == 1 and not keys[0].null_count:
            # Input sorted by key already: nothing to collapse or move.
            k = keys[0]
            try:
                if pc.all(pc.less(k.slice(0, len(k) - 1), k.slice(1))).as_py():
                    return
            except pa.ArrowNotImplementedError:
                pass
        positions = _arange(batch.num_rows)
        keyless = None
        for k in keys:
            if k.null_count:
                nulls = k.is_null()
                keyless = nulls if keyless is None else pc.or_(keyless, nulls)
        table = pa.table([*keys, positions], names=[*self.key, "__position"])
        rest = None
        if keyless is not None:
            rest = pc.indices_nonzero(keyless)
            table = table.filter(pc.invert(keyless))
        latest = table.group_by(list(self.key), use_threads=False).aggregate(
            [("__position", "max")]
        )
        chunk.duplicates = table.num_rows - latest.num_rows
        order = pc.sort_indices(latest, sort_keys=[(k, "ascending") for k in self.key])
        take = latest.column("__position_max").take(order).combine_chunks()
        if rest is not None:
            take = pa.concat_arrays([take, rest.cast(pa.int64())])
        chunk.batch = batch.take(take)
        chunk.index = pc.take(chunk.index, take) if chunk.index is not None else take

    # ------------------------------------------------------------- per column

    def _coerce(self, array: Any, spec: ColumnSpec, target: ArrowTarget, typ: Any) -> _Column:
        pa = _pyarrow()
        pc = _compute()
        t = array.type
        if pa.types.is_dictionary(t):  # (views are plain already: arrow_stream)
            values = array.dictionary
            if pa.types.is_large_string(values.type):
                array = pa.DictionaryArray.from_arrays(array.indices, values.cast(pa.string()))
            array = array.dictionary_decode()
            t = array.type
        if pa.types.is_large_string(t):
            array = array.cast(pa.string())
            t = array.type
        kind = target.kind
        if pa.types.is_null(t):
            return _Column(pa.nulls(len(array), typ or pa.string()))
        if not target.binary:
            return self._text_fallback(array, spec, target)
        if typ is not None and t == typ and kind not in ("float", "text"):
            return _Column(array)
        if kind == "integer" and (pa.types.is_integer(t) or pa.types.is_boolean(t)):
            return self._integers(
                array.cast(pa.int64()) if pa.types.is_boolean(t) else array, target, typ
            )
        if kind == "integer" and pa.types.is_floating(t):
            return self._integers_from_floats(array, target, typ)
        if kind == "float" and (pa.types.is_floating(t) or pa.types.is_integer(t)):
            values = array.cast(typ, safe=False)
            if not target.nan and pa.types.is_floating(t):
                nan = pc.fill_null(pc.is_nan(values), False)
                if pc.any(nan).as_py():
                    return _Column(
                        pc.if_else(nan, pa.scalar(None, typ), values), nan,
                        lambda i: "NaN cannot be stored in SQLite (it would silently become NULL)",
                    )  # fmt: skip
            return _Column(values)
        if kind == "decimal" and (pa.types.is_decimal(t) or pa.types.is_integer(t)):
            return self._decimals(array, spec, target, typ)
        if kind == "decimal" and pa.types.is_floating(t) and typ is not None:
            return self._decimals_from_floats(array, spec, target, typ)
        if kind == "text" and pa.types.is_string(t):
            return self._text(array, spec, target)
        if kind == "bytes" and (
            pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
        ):  # fmt: skip
            return _Column(array.cast(pa.binary()))
        if kind == "boolean" and pa.types.is_integer(t):
            bad = pc.fill_null(pc.invert(pc.is_in(array, pa.array([0, 1], t))), False)
            values = pc.if_else(bad, pa.scalar(None, t), array).cast(pa.bool_())
            return _Column(
                values, _none_if_clean(bad), lambda i: f"{array[i].as_py()!r} is not a boolean"
            )
        if kind == "date" and pa.types.is_date(t):
            return _Column(array.cast(pa.date32()))
        if kind == "datetime" and (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            return self._timestamps(array, target, typ)
        if kind == "decimal" and typ is None and pa.types.is_string(t):
            return self._unscaled_decimals(array, spec, target)
        if pa.types.is_string(t) and _text_parser(target) is not None:
            return self._from_text(array, spec, target, typ)
        if pa.types.is_string(t) and kind == "datetime" and typ is None:
            return self._times_kept_from_text(array, spec, target)
        return self._per_value(array, spec, target, typ)

    def _within_digits(self, column: _Column, spec: ColumnSpec, digits: int) -> _Column:
        """A decimal column that keeps every value of up to ``digits`` significant digits
        (``ArrowTarget.digits``): the values that may have more (an over-estimate made a
        column at a time) go through the row path's codec, which takes each or says
        why not, so such a value is refused as the row path refuses it."""
        pa = _pyarrow()
        pc = _compute()
        codec = self.codecs.get(spec.name)
        values = column.values
        t = values.type
        if codec is None or values.null_count == len(values):
            return column
        if pa.types.is_string(t):
            short = pc.and_(
                pc.match_substring_regex(values, r"^-?[0-9]*\.?[0-9]+$"),
                pc.less_equal(pc.count_substring_regex(values, "[0-9]"), digits),
            )
            maybe = pc.invert(short)
        elif pa.types.is_decimal(t):
            limit = pa.scalar(Decimal(10) ** (digits - t.scale))
            maybe = pc.greater_equal(pc.abs(values), limit)
        else:
            maybe = values.is_valid()
        maybe = pc.fill_null(maybe, False)
        if not pc.any(maybe).as_py():
            return column
        reasons: dict[int, str] = {}
        positions = pc.indices_nonzero(maybe)
        taken = values.take(positions).to_pylist()
        for i, value in zip(positions.to_pylist(), taken, strict=True):
            try:
                _encoded(codec, value)
            except (ValueError, TypeError, ArithmeticError) as error:
                reasons[i] = str(error)
        if not reasons:
            return column
        refused = pa.array([i in reasons for i in range(len(values))], pa.bool_())
        values = pc.if_else(refused, pa.scalar(None, t), values)
        if column.bad is None:
            return _Column(values, refused, reasons.__getitem__)
        earlier = column.reasons or _generic
        return _Column(
            values,
            pc.or_(column.bad, refused),
            lambda i: reasons[i] if i in reasons else earlier(i),
        )

    def _integers(self, array: Any, target: ArrowTarget, typ: Any) -> _Column:
        pa = _pyarrow()
        pc = _compute()
        bits = target.bits
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        t = array.type
        checks = []
        if pa.types.is_unsigned_integer(t):
            if t.bit_width >= bits:
                checks.append(pc.greater(array, pa.scalar(high, t)))
        elif t.bit_width > bits:
            checks.append(pc.less(array, pa.scalar(low, t)))
            checks.append(pc.greater(array, pa.scalar(high, t)))
        bad = None
        for check in checks:
            bad = check if bad is None else pc.or_(bad, check)
        if bad is not None:
            bad = _none_if_clean(pc.fill_null(bad, False))
        if bad is None:
            return _Column(array.cast(typ))
        values = pc.if_else(bad, pa.scalar(None, t), array).cast(typ)
        return _Column(
            values, bad, lambda i: f"{array[i].as_py()} is outside the {bits}-bit integer range"
        )

    def _integers_from_floats(self, array: Any, target: ArrowTarget, typ: Any) -> _Column:
        # pandas holds an integer column with a missing value as float64: whole floats
        # are the integers they stand for; 1.5 or inf is refused, as on the row path.
        pa = _pyarrow()
        pc = _compute()
        as_float = array.cast(pa.float64())
        finite = pc.is_finite(as_float)
        whole = pc.and_(finite, pc.equal(pc.floor(as_float), as_float))
        in_range = pc.and_(pc.greater_equal(as_float, -(2.0**63)), pc.less(as_float, 2.0**63))
        not_integer = pc.fill_null(pc.invert(pc.and_(whole, in_range)), False)
        clean = pc.if_else(not_integer, pa.scalar(None, pa.float64()), as_float)
        ints = self._integers(clean.cast(pa.int64(), safe=False), target, typ)
        if not pc.any(not_integer).as_py():
            return ints
        range_reason = ints.reasons
        range_bad = ints.bad

        def reason(i: int) -> str:
            value = array[i].as_py()
            if range_bad is not None and range_bad[i].as_py() and range_reason is not None:
                return range_reason(i)
            if isinstance(value, float) and value.is_integer():
                return f"{int(value)} is outside the 64-bit integer range"
            return _NOT_AN_INTEGER.format(value)

        bad = not_integer if ints.bad is None else pc.or_(not_integer, ints.bad)
        return _Column(ints.values, bad, reason)

    def _decimals(self, array: Any, spec: ColumnSpec, target: ArrowTarget, typ: Any) -> _Column:
        pa = _pyarrow()
        pc = _compute()
        t = array.type
        if pa.types.is_integer(t):
            array = array.cast(pa.decimal128(20, 0))
            t = array.type
        if typ is None:  # numeric without precision: any decimal goes as it is
            return _Column(array)
        precision, scale = target.precision or 38, target.scale or 0
        bad_scale = None
        if t.scale > scale:
            bad_scale = pc.fill_null(pc.not_equal(pc.round(array, scale), array), False)
        limit = pa.scalar(Decimal(10) ** (precision - scale))
        too_big = pc.fill_null(pc.greater_equal(pc.abs(array), limit), False)
        bad = too_big if bad_scale is None else pc.or_(too_big, bad_scale)
        bad = _none_if_clean(bad)
        declared = spec.declared or f"numeric({precision},{scale})"

        def reason(i: int) -> str:
            return _decimal_reason(array[i].as_py(), target, declared)

        if bad is None:
            return _Column(array.cast(typ, safe=False) if t != typ else array)
        values = pc.if_else(bad, pa.scalar(None, t), array).cast(typ, safe=False)
        return _Column(values, bad, reason)

    def _decimals_from_floats(
        self, array: Any, spec: ColumnSpec, target: ArrowTarget, typ: Any
    ) -> _Column:
        # A float is stored only if the column's places hold it: 0.1 is 0.10 in a
        # numeric(12,2), 1.005 is refused rather than rounded.
        pa = _pyarrow()
        pc = _compute()
        as_float = array.cast(pa.float64())
        finite = pc.fill_null(pc.is_finite(as_float), True)
        limit = 10.0 ** ((target.precision or 38) - (target.scale or 0))
        fits = pc.and_(finite, pc.fill_null(pc.less(pc.abs(as_float), limit), True))
        safe = pc.if_else(fits, as_float, pa.scalar(None, pa.float64()))
        values = safe.cast(typ, safe=False)
        # Compared in floats rounded to the scale (a decimal's way back to a float is
        # not exact: 17.4 would come back as 17.400000000000002).
        exact = pc.fill_null(pc.equal(pc.round(safe, target.scale or 0), safe), True)
        bad = _none_if_clean(pc.invert(pc.and_(fits, exact)))
        if bad is None:
            return _Column(values)
        declared = spec.declared or str(typ)

        def reason(i: int) -> str:
            return _decimal_reason(array[i].as_py(), target, declared)

        return _Column(pc.if_else(bad, pa.scalar(None, typ), values), bad, reason)

    def _text(self, array: Any, spec: ColumnSpec, target: ArrowTarget) -> _Column:
        pa = _pyarrow()
        pc = _compute()
        if target.max_length is None:
            return _Column(array)
        measured = pc.utf8_rtrim(array, characters=" ") if target.blank_padded else array
        bad = _none_if_clean(
            pc.fill_null(pc.greater(pc.utf8_length(measured), target.max_length), False)
        )
        if bad is None:
            return _Column(array)
        values = pc.if_else(bad, pa.scalar(None, pa.string()), array)
        return _Column(values, bad, lambda i: f"value too long for type {spec.declared}")

    def _timestamps(self, array: Any, target: ArrowTarget, typ: Any) -> _Column:
        pa = _pyarrow()
        pc = _compute()
        t = array.type
        if pa.types.is_date(t):
            array = array.cast(pa.timestamp("us"))
            t = array.type
        if typ is None:  # keep the zone as given, in microseconds
            typ = pa.timestamp("us", tz=t.tz)
        bad = None
        if t.unit == "ns":
            # Microseconds are what the databases keep: a value with nanoseconds would
            # be changed to fit, so it is refused.
            bad = _none_if_clean(
                pc.fill_null(
                    pc.not_equal(
                        pc.cast(pc.cast(array, pa.timestamp("us", tz=t.tz), safe=False), t), array
                    ),
                    False,
                )
            )
        # Naive as UTC for an instant column, an instant as UTC wall-clock time for a
        # naive one: Arrow holds the UTC value either way, so only the type changes.
        unit = pc.cast(array, pa.timestamp("us", tz=t.tz), safe=False)
        values = unit.view(typ) if unit.type.tz != typ.tz else unit
        if bad is None:
            return _Column(values)
        values = pc.if_else(bad, pa.scalar(None, typ), values)
        return _Column(
            values,
            bad,
            lambda i: f"{scalar_value(array[i])} has nanoseconds; the database keeps microseconds",
        )

    def _text_fallback(self, array: Any, spec: ColumnSpec, target: ArrowTarget) -> _Column:
        """A column the backend takes as text (no binary form): each value as the row
        path's codec sends it where that is text, else coerced by the row path's rules,
        then its text."""
        pa = _pyarrow()
        coerce = COERCERS[target.kind]
        text = _TEXT_OF.get(target.kind, str)
        codec = self.codecs.get(spec.name)
        out: list[Any] = []
        bad: list[bool] = []
        reasons: dict[int, str] = {}
        for i, value in enumerate(array.to_pylist()):
            try:
                sent = None if codec is None or value is None else _encoded(codec, value)
                if sent is None or not isinstance(sent, str):
                    value = coerce(value)
                    sent = None if value is None else text(value)
            except (ValueError, TypeError, ArithmeticError) as error:
                out.append(None)
                bad.append(True)
                reasons[i] = str(error)
                continue
            out.append(sent)
            bad.append(False)
        values = pa.array(out, pa.string())
        if not reasons:
            return _Column(values)
        return _Column(values, pa.array(bad, pa.bool_()), reasons.__getitem__)

    def _unscaled_decimals(self, array: Any, spec: ColumnSpec, target: ArrowTarget) -> _Column:
        """Text for a decimal column without a scale (PostgreSQL's ``numeric``), which
        keeps each value's own digits as the row path does (1.50 and 2): handed over as
        text for the database to cast, since an Arrow decimal has one scale for the whole
        column (2 would become 2.000). Plain spellings go as they are; any other text
        (``1e2``, ``NaN``) by the row path's coercion, value by value."""
        pa = _pyarrow()
        pc = _compute()
        match, empty = _matching(array, _DECIMAL_TEXT)
        if pc.any(pc.and_(pc.is_valid(array), pc.invert(pc.or_(match, empty)))).as_py():
            return self._per_value(array, spec, target, None)
        return _Column(pc.if_else(empty, pa.scalar(None, pa.string()), array))

    def _per_value(self, array: Any, spec: ColumnSpec, target: ArrowTarget, typ: Any) -> _Column:
        """A source type without a vectorized rule for this column: the row path's
        coercion, value by value (this column only)."""
        pa = _pyarrow()
        coerce = COERCERS[target.kind]
        out: list[Any] = []
        bad: list[bool] = []
        reasons: dict[int, str] = {}
        for i, value in enumerate(array.to_pylist()):
            try:
                out.append(coerce(value))
                bad.append(False)
            except (ValueError, TypeError, ArithmeticError) as error:
                out.append(None)
                bad.append(True)
                reasons[i] = str(error)
        if target.kind == "json":
            out = [None if v is None else json_dumps(v) for v in out]
            typ = pa.string()
        elif target.kind == "any":
            typ = None
        checked: _Column | None = None
        if target.kind in ("integer", "decimal") and typ is not None:
            # Coerced values still meet the column's width, precision and scale: the
            # vectorized rules run on them as on any integer or decimal source.
            try:
                wide = pa.array(out, pa.int64()) if target.kind == "integer" else pa.array(out)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                wide = None
            if wide is not None and pa.types.is_null(wide.type):
                checked = _Column(pa.nulls(len(out), typ))
            elif wide is not None and target.kind == "integer":
                checked = self._integers(wide, target, typ)
            elif wide is not None and pa.types.is_decimal(wide.type):
                checked = self._decimals(wide, spec, target, typ)
        if checked is not None:
            values = checked.values
            if checked.bad is not None:
                assert checked.reasons is not None
                more = checked.reasons
                for i in _compute().indices_nonzero(checked.bad).to_pylist():
                    bad[i] = True
                    reasons[i] = more(i)
        elif target.kind == "decimal" and typ is None:
            # Each value's own digits, as text (see _unscaled_decimals).
            values = pa.array([None if v is None else str(v) for v in out], pa.string())
        else:
            try:
                values = pa.array(out, typ) if typ is not None else pa.array(out)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                # Values of mixed kinds (e.g. naive and aware times for a column that
                # keeps what was given): their text, as the row path would store it.
                text = _TEXT_OF.get(target.kind, str)
                values = pa.array([None if v is None else text(v) for v in out], pa.string())
        if not reasons:
            return _Column(values)
        return _Column(values, pa.array(bad, pa.bool_()), reasons.__getitem__)

    # ------------------------------------------ text (from files) to the column's type

    def _from_text(self, array: Any, spec: ColumnSpec, target: ArrowTarget, typ: Any) -> _Column:
        """Text (a CSV column read as strings) for a typed column: values written the
        plain way are parsed with vectorized casts; any other text goes through the row
        path's coercion (``schema.COERCERS``) value by value, for those rows only, so
        both paths take and refuse the same text with the same reasons. The parsed
        column then meets the column's checks (range, precision, time zone) as any
        typed source does."""
        whole = _cast_text(array, target)
        if whole is not None:
            return self._coerce(whole, spec, target, typ)
        parser = _text_parser(target)
        assert parser is not None
        parsed, plain = parser(array, target)
        pc = _compute()
        rest = pc.and_(pc.is_valid(array), pc.invert(plain))
        reasons: dict[int, str] = {}
        if pc.any(rest).as_py():
            parsed, reasons = _coerce_text_rows(array, rest, parsed, target)
        checked = self._coerce(parsed, spec, target, typ)
        if not reasons and checked.bad is None:
            return checked
        pa = _pyarrow()
        failed = pa.array([i in reasons for i in range(len(array))], pa.bool_())
        bad = failed if checked.bad is None else pc.or_(failed, checked.bad)
        more = checked.reasons or _generic
        codec = self.codecs.get(spec.name)

        def reason(i: int) -> str:
            if i in reasons:
                return reasons[i]
            # A parsed value refused by the column's checks: in the row path's words,
            # about the text as written (the parsed one may read otherwise: "1.10"
            # parsed at a scale of 3 is 1.100).
            if codec is not None:
                try:
                    _encoded(codec, array[i].as_py())
                except (ValueError, TypeError, ArithmeticError) as error:
                    return str(error)
            return more(i)

        return _Column(checked.values, bad, reason)

    def _times_kept_from_text(self, array: Any, spec: ColumnSpec, target: ArrowTarget) -> _Column:
        """Text for a column that keeps times as given (SQLite): coerced per value by
        the row path's rules; a column holding any time with a zone is stored as the
        text of each value, as the row path stores it (Arrow would bring every value to
        one zone)."""
        pa = _pyarrow()
        pc = _compute()
        # Arrow's naive cast refuses any value with a zone and its zoned cast any value
        # without, so where the first value gives a zone only the zoned cast can take
        # the column. Trying the naive one anyway read the whole column before failing:
        # 0.55 s per million rows of UTC times ("...Z", as Arrow and pandas write them).
        if not _zoned_first(array):
            naive = _cast_or_none(array, pa.timestamp("us"))  # every value naive
            if naive is not None:
                return _Column(naive)
        utc = _cast_or_none(array, pa.timestamp("us", tz="UTC"))  # every value zoned
        if utc is not None and pc.all(pc.match_substring_regex(array, r"(Z|\+00:?00)$")).as_py():
            return _Column(utc)  # every zone UTC: kept as given
        coerced = self._per_value(array, spec, target, None)
        coerce = COERCERS["datetime"]
        times = []
        for value in array.to_pylist():
            try:
                times.append(coerce(value))
            except (ValueError, TypeError, ArithmeticError):
                times.append(None)  # refused in ``coerced``, with its reason
        if all(t is None or t.tzinfo is None for t in times):
            return coerced
        text = [None if t is None else t.isoformat() for t in times]
        return _Column(pa.array(text, pa.string()), coerced.bad, coerced.reasons)


_ZONE_AT_END = re.compile(r"(Z|[-+][0-9]{2}:?[0-9]{2})$")


def _zoned_first(array: Any) -> bool:
    """Whether the first value of the text column ``array`` gives a zone (``Z`` or an
    offset at its end)."""
    pc = _compute()
    first = pc.drop_null(array.slice(0, 1024))
    return len(first) > 0 and _ZONE_AT_END.search(first[0].as_py()) is not None


def _cast_or_none(array: Any, typ: Any) -> Any | None:
    """``array`` cast to ``typ`` when Arrow takes every value, else None."""
    pa = _pyarrow()
    try:
        return array.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


# ---------------------------------------------- text to typed values, vectorized
#
# Each parser takes a string array and gives (parsed, plain): ``parsed`` holds the typed
# value of every row written the plain way (``plain`` true) and of every empty text
# (NULL, as the row path's coercions read a blank field); other rows are null in
# ``parsed`` and left to the row path's coercion (``_coerce_text_rows``).

# Plain spellings only: anything else (blanks around, '+', '_', non-ASCII digits,
# exponents beyond two digits, fractions of an integer) takes the row path's rules.
_INTEGER_TEXT = r"^-?[0-9]{1,18}$"
_FLOAT_TEXT = r"^-?[0-9]{1,17}(\.[0-9]{1,17})?([eE][-+]?[0-9]{1,2})?$"
_DECIMAL_TEXT = r"^-?[0-9]{1,18}(\.[0-9]{1,18})?$"
_DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_NAIVE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"
_AWARE_TEXT = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[-+][0-9]{2}:[0-9]{2})$"
)


def _cast_text(array: Any, target: ArrowTarget) -> Any | None:
    """The whole column cast by Arrow's own parser, when it takes every value (else
    None). Arrow reads only plain forms (digits with a sign, ISO dates and times), which
    Python reads as the same values, so the row path would agree; a float that Arrow
    reads as infinity without it being spelled out is left to the patterns."""
    pa = _pyarrow()
    pc = _compute()
    kind = target.kind
    if _text_parser(target) is None:
        return None
    if kind == "integer":
        typ = pa.int64()
    elif kind == "float":
        typ = pa.float64()
    elif kind == "decimal" and target.precision is not None:
        typ = pa.decimal128(38, target.scale or 0)
    elif kind == "date":
        typ = pa.date32()
    elif kind == "datetime":
        typ = pa.timestamp("us", tz="UTC" if target.timezone == "utc" else None)
    else:
        return None
    try:
        values = array.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if kind == "float" and pc.any(pc.is_inf(values)).as_py():
        return None
    return values


def _text_parser(target: ArrowTarget) -> Callable[[Any, ArrowTarget], tuple[Any, Any]] | None:
    """The vectorized parser of text for ``target``'s column, or None (the row path's
    coercion, per value)."""
    if not target.binary:
        return None
    if target.kind == "datetime" and target.timezone not in ("utc", "naive"):
        return None  # kept as given: per value, as the row path stores it
    return _TEXT_PARSERS.get(target.kind)


def _matching(array: Any, pattern: str) -> tuple[Any, Any]:
    """Where ``array`` matches ``pattern`` (false for nulls), and where it is empty."""
    pc = _compute()
    match = pc.fill_null(pc.match_substring_regex(array, pattern), False)
    empty = pc.fill_null(pc.equal(pc.binary_length(array), 0), False)
    return match, empty


def _cast_where(array: Any, mask: Any, typ: Any) -> Any:
    pa = _pyarrow()
    pc = _compute()
    return pc.if_else(mask, array, pa.scalar(None, pa.string())).cast(typ)


def _integers_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    match, empty = _matching(array, _INTEGER_TEXT)
    return _cast_where(array, match, pa.int64()), _compute().or_(match, empty)


def _floats_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    match, empty = _matching(array, _FLOAT_TEXT)
    return _cast_where(array, match, pa.float64()), _compute().or_(match, empty)


def _decimals_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    pc = _compute()
    match, empty = _matching(array, _DECIMAL_TEXT)
    # As many places as the most precise value has, so the column's scale check sees
    # every digit written (1.005 for a numeric(12,2) is refused, not rounded).
    point = pc.find_substring(array, ".")
    places = pc.if_else(
        pc.and_(match, pc.greater_equal(point, 0)),
        pc.subtract(pc.subtract(pc.binary_length(array), point), 1),
        0,
    )
    scale = pc.max(places).as_py() or 0
    return _cast_where(array, match, pa.decimal128(38, scale)), pc.or_(match, empty)


def _booleans_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    pc = _compute()
    lower = pc.utf8_lower(array)
    true = pc.fill_null(pc.is_in(lower, pa.array(sorted(TRUE_TEXTS))), False)
    false = pc.fill_null(pc.is_in(lower, pa.array(sorted(FALSE_TEXTS))), False)
    plain = pc.or_(true, false)
    parsed = pc.if_else(plain, true, pa.scalar(None, pa.bool_()))
    empty = pc.fill_null(pc.equal(pc.binary_length(array), 0), False)
    return parsed, pc.or_(plain, empty)


def _dates_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    pc = _compute()
    match, empty = _matching(array, _DATE_TEXT)
    kept = pc.if_else(match, array, pa.scalar(None, pa.string()))
    stamps = pc.strptime(kept, format="%Y-%m-%d", unit="s", error_is_null=True)
    # A date the calendar lacks (2021-02-30) is null here: the row path says why.
    plain = pc.or_(pc.and_(match, pc.is_valid(stamps)), empty)
    return stamps.cast(pa.date32()), plain


def _timestamps_from_text(array: Any, target: ArrowTarget) -> tuple[Any, Any]:
    pa = _pyarrow()
    pc = _compute()
    naive, empty = _matching(array, _NAIVE_TEXT)
    aware, _ = _matching(array, _AWARE_TEXT)
    # Both are held as the UTC instant (naive taken as UTC), which is what the column
    # keeps either way (``ArrowPlanner._timestamps``).
    utc = pa.timestamp("us", tz="UTC")
    try:
        parsed = _cast_where(array, naive, pa.timestamp("us")).cast(pa.int64())
        if pc.any(aware).as_py():
            zoned = _cast_where(array, aware, utc).cast(pa.int64())
            parsed = pc.if_else(aware, zoned, parsed)
            result = parsed.cast(utc)
        else:
            result = parsed.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # A value the pattern lets through but the calendar or the clock does not
        # (month 13): the whole column per value.
        return pa.nulls(len(array), utc), empty
    return result, pc.or_(pc.or_(naive, aware), empty)


_TEXT_PARSERS: Mapping[str, Callable[[Any, ArrowTarget], tuple[Any, Any]]] = {
    "integer": _integers_from_text,
    "float": _floats_from_text,
    "decimal": _decimals_from_text,
    "boolean": _booleans_from_text,
    "date": _dates_from_text,
    "datetime": _timestamps_from_text,
}


def _coerce_text_rows(
    array: Any, rows: Any, parsed: Any, target: ArrowTarget
) -> tuple[Any, dict[int, str]]:
    """``parsed`` with the rows at ``rows`` coerced by the row path's rules (value by
    value), and why each refused row was refused (by position)."""
    pa = _pyarrow()
    pc = _compute()
    coerce = COERCERS[target.kind]
    positions = pc.indices_nonzero(rows).to_pylist()
    out: list[Any] = []
    reasons: dict[int, str] = {}
    for i, value in zip(positions, array.take(positions).to_pylist(), strict=True):
        try:
            out.append(coerce(value))
        except (ValueError, TypeError, ArithmeticError) as error:
            out.append(None)
            reasons[i] = str(error)
    typ = parsed.type
    try:
        values = pa.array(out, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        values = None
    if values is None or (pa.types.is_decimal(typ) and _lossy(values, out)):
        # Values the parsed type cannot hold as they are (more decimal places or digits,
        # a time zone where there was none): the whole column as the row path gives it.
        everything = [coerce(v) if i not in reasons else None
                      for i, v in enumerate(array.to_pylist())]  # fmt: skip
        return _array(pa, everything, None), reasons
    return pc.replace_with_mask(parsed, rows, values), reasons


def _lossy(values: Any, out: list[Any]) -> bool:
    return bool(values.to_pylist() != out)


def _row_shapes(source: Any) -> Any:
    """Where a file reader marked a row of the wrong width (``ROW_SHAPE_COLUMN``), or
    None."""
    if ROW_SHAPE_COLUMN not in source.schema.names:
        return None
    marks = source.column(ROW_SHAPE_COLUMN)
    if marks.null_count == len(marks):
        return None
    return marks.is_valid()


def _encoded(codec: ColumnCodec, value: Any) -> Any:
    """``value`` as the row path's codec hands it to the driver (``build_row_encoder``)."""
    if value.__class__ in codec.passthrough:
        return value
    fast = codec.fast.get(value.__class__)
    return fast(value) if fast is not None else codec.encode(value)


def _isoformat(value: Any) -> str:
    return str(value.isoformat())


_TEXT_OF: Mapping[str, Callable[[Any], str]] = {
    "date": _isoformat,
    "datetime": _isoformat,
    "boolean": lambda v: "true" if v else "false",
    "json": json_dumps,
}


def _compute() -> Any:
    import pyarrow.compute

    return pyarrow.compute


def _within_fraction(column: _Column, spec: ColumnSpec, digits: int) -> _Column:
    """A datetime column that keeps ``digits`` digits of a second
    (``ArrowTarget.fraction_digits``): a value with a finer part is refused (the
    database would round it), as the row path's codec refuses it."""
    pa = _pyarrow()
    pc = _compute()
    values = column.values
    if not pa.types.is_timestamp(values.type) or values.null_count == len(values):
        return column
    micros = values.cast(pa.int64()).fill_null(0)
    unit = pa.scalar(10 ** (6 - digits), pa.int64())
    # (integer division truncates: a remainder is nonzero before 1970 too)
    finer = pc.not_equal(pc.subtract(micros, pc.multiply(pc.divide(micros, unit), unit)), 0)
    if column.bad is not None:
        finer = pc.and_(finer, pc.invert(column.bad))
    if not pc.any(finer).as_py():
        return column
    declared = spec.declared or f"timestamp({digits})"
    values = pc.if_else(finer, pa.scalar(None, values.type), values)
    earlier = column.reasons or _generic
    bad = finer if column.bad is None else pc.or_(column.bad, finer)
    return _Column(
        values,
        bad,
        lambda i: too_fine(column.values[i].as_py(), declared) if finer[i].as_py() else earlier(i),
    )


def _none_if_clean(mask: Any) -> Any:
    return mask if _compute().any(mask).as_py() else None


def _generic(i: int) -> str:
    return "value does not fit the column"


def _missing_key(name: str, given: Any) -> Callable[[int], str]:
    return lambda i: f"missing key: key column {name!r} has no value ({given[i].as_py()!r})"


def _not_null(name: str) -> Callable[[int], str]:
    return lambda i: f"null value in column {name!r} violates its NOT NULL constraint"
