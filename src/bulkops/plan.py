"""Planning: cut the input into chunks and prepare each one for writing. Pure, no I/O.

A chunk is sized from the backend's Capabilities; each row is encoded for the driver
(bad rows become Rejections here, before anything is sent); rows with the same key
collapse to the last one; the survivors are sorted by key so that concurrent writers
take row locks in the same order and cannot deadlock on each other's chunks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, compress, islice, repeat
from operator import is_not, itemgetter, lt
from typing import Any, Protocol

from .backends.base import Backend, Capabilities, ChunkCounts, RowFailures, WriteOp
from .errors import BulkError, ConversionError, DataError
from .report import Rejection
from .schema import ColumnCodec, RowShapeError, build_row_encoder

__all__ = [
    "MISSING",
    "Chunk",
    "ChunkPlanner",
    "Planner",
    "PreparedChunk",
    "ReadAhead",
    "RefusedRow",
    "chunk_rows",
    "chunked",
    "write_by_shape",
]


class _Missing:
    """The value of a column a row leaves out (a key its mapping lacks): not written,
    so an insert gives the column its default and an upsert or update leaves it as it
    is. Never sent to a database; unlike None (NULL)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class RefusedRow(Mapping[str, Any]):
    """A row whose value for ``column`` could not be made (a model field's own
    conversion failed on it): read as a mapping, that column raises, so the row is
    rejected with ``reason``, its row number, key and column, like any bad value."""

    def __init__(self, given: dict[str, Any], column: str, reason: str) -> None:
        self.given, self.column, self.reason = given, column, reason

    def __getitem__(self, name: str) -> Any:
        if name == self.column:
            raise ConversionError(self.reason, column=self.column)
        return self.given[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.given)

    def __len__(self) -> int:
        return len(self.given)


# Encoders kept for rows that give different sets of columns, at most (per call).
_MAX_SHAPES = 256

# Past this many rows a chunk stops getting faster and only holds locks longer.
MAX_CHUNK_ROWS = 10_000
# Arrow batches are checked and encoded a column at a time: the cost per chunk (BEGIN,
# a COPY, COMMIT) is paid for more rows before it stops mattering.
MAX_ARROW_CHUNK_ROWS = 50_000


def chunk_rows(
    capabilities: Capabilities, width: int, requested: int | None = None, *, arrow: bool = False
) -> int:
    """Rows per chunk: ``requested`` if given, else what one statement's bound
    parameters allow for rows ``width`` values wide (SQLite: 32766 // width), capped.
    ``arrow``: the columnar path, whose backends send no bound parameter per value."""
    if requested is not None:
        if requested < 1:
            raise ValueError("chunk_size must be at least 1")
        return requested
    if arrow:
        return MAX_ARROW_CHUNK_ROWS
    limit = capabilities.rows_per_chunk or capabilities.max_rows_per_request or MAX_CHUNK_ROWS
    if capabilities.max_params:
        limit = min(limit, capabilities.max_params // max(width, 1))
    return max(1, min(limit, MAX_CHUNK_ROWS))


def chunked(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items, reading ``rows`` lazily."""
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


_END = object()


@dataclass
class _Failed:
    error: BaseException


class ReadAhead(Iterator[Any]):
    """``items`` read by a thread of their own (``name``), up to ``ahead`` of the one
    being used, so that work which lets go of the GIL (pyarrow's parsing and compute,
    a server's reply) overlaps other work. An error is raised where it happened in the
    order; when the reader stops early (``close``, ``stop``, or the iterator is dropped),
    the thread stops too.

    The thread starts at ``start()`` (``read_ahead`` starts it at once), else at the
    first item asked for: a file opened by the command is parsed while the rest of the
    command loads and connects; sync hashes its source while its digests are read."""

    def __init__(self, items: Iterable[Any], ahead: int, name: str) -> None:
        self._out: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._halt = threading.Event()
        self._done = False
        self._started = False
        out, halt = self._out, self._halt

        # The thread holds the queue and the event, never this object: an iterator
        # dropped unread is collected, and its __del__ stops the thread.
        def put(item: Any) -> bool:
            while not halt.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False  # the reader stopped reading

        def produce() -> None:
            try:
                for item in items:
                    if not put(item):
                        return
                put(_END)
            except BaseException as error:  # handed to the reading thread, raised there
                put(_Failed(error))

        self._thread = threading.Thread(target=produce, name=name, daemon=True)

    def start(self) -> ReadAhead:
        """Start reading now (once)."""
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread (it ends once its current item is made)."""
        self._done = True
        self._halt.set()

    def stop(self) -> None:
        """``close``, and wait for the thread to let go of ``items`` (a file closed
        after this is not closed under a read in progress)."""
        self.close()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join()

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        self.start()
        item = self._out.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        return item

    def __del__(self) -> None:
        self._halt.set()


def read_ahead(items: Iterable[Any], ahead: int, name: str) -> ReadAhead:
    """``items`` read ahead by a thread of their own, started at once (see
    ``ReadAhead``)."""
    return ReadAhead(items, ahead, name).start()


@dataclass
class PreparedChunk:
    """One chunk, ready for a backend.

    ``rows`` are the driver-ready tuples in write order; ``index[j]`` is the position
    of ``rows[j]`` within ``raws`` (the rows as given). ``start`` is the 0-based
    position of ``raws[0]`` in the whole input.
    """

    start: int
    raws: list[Any]
    rows: list[tuple[Any, ...]]
    index: list[int]
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: int = 0
    # Set when some rows leave columns out: the names of the values of such a row (the
    # call's columns, then the table's others), where each left-out one is MISSING. A
    # row as wide as the call's columns gives them all.
    layout: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.raws)

    def select(self, positions: Sequence[int]) -> list[tuple[Any, ...]]:
        return [self.rows[p] for p in positions]

    @property
    def count(self) -> int:
        """Rows to write (after rejections and collapsed duplicates)."""
        return len(self.rows)

    def write(
        self, backend: Backend, op: WriteOp, positions: Sequence[int] | None = None
    ) -> ChunkCounts:
        """Write the chunk's rows (or those at ``positions``) on ``backend``."""
        rows = self.rows if positions is None else self.select(positions)
        if self.layout is None and not required_left_out(op):
            return backend.write(op, rows)
        return write_by_shape(backend, op, self.layout or op.columns, rows)


def required_left_out(op: WriteOp) -> list[str]:
    """The NOT NULL columns without a default that an upsert's rows leave out: such
    rows can only update rows that exist (an INSERT would fail on the NOT NULL
    before it met the conflict), so they are written as an update."""
    if op.kind != "upsert":
        return []
    return [
        c.name for c in op.table.columns.values()
        if not c.nullable and not c.has_default and c.name not in op.columns
    ]  # fmt: skip


_MISSING_ONLY = (MISSING,)


def _gaps(row: tuple[Any, ...]) -> bool:
    """Whether the row leaves a column out."""
    return MISSING in row  # (values compare unequal to MISSING: it is only itself)


def _shape_of(row: tuple[Any, ...]) -> tuple[int, ...]:
    """The positions of the values a laid-out row gives."""
    return tuple(compress(range(len(row)), map(is_not, row, repeat(MISSING))))


def _update_existing(
    write: Callable[[WriteOp], ChunkCounts], op: WriteOp, required: list[str]
) -> ChunkCounts:
    """An upsert of rows that leave out ``required`` columns: an update of the rows
    that exist (``write`` sends the rows as the op says); a row whose key is not there
    cannot be inserted and is refused as a data error (narrowed down to the row by the
    executor)."""
    why = (
        f"the row leaves out {', '.join(map(repr, required))} (NOT NULL, no default), "
        "so it can only update a row that exists, and no row has its key"
    )
    if not op.set_columns:
        raise ConversionError(why, column=required[0])
    counts = write(replace(op, kind="update"))
    if counts.not_found:
        raise ConversionError(why, column=required[0])
    return counts


def _upsert_or_update(
    backend: Backend, write: Callable[[WriteOp], ChunkCounts], op: WriteOp, required: list[str]
) -> ChunkCounts:
    """An upsert of rows that leave out ``required`` columns of a table whose BEFORE
    INSERT trigger may fill them (Pagila's film.fulltext): an upsert, under a
    savepoint; where the database refuses one of those columns as NULL (the trigger
    fills others), an update of the rows that exist (``_update_existing``)."""
    try:
        with backend.savepoint():
            return write(op)
    except DataError as error:
        if error.column not in required:
            raise
    return _update_existing(write, op, required)


def write_leaving_out(
    backend: Backend, op: WriteOp, write: Callable[[WriteOp], ChunkCounts]
) -> ChunkCounts:
    """``write(op)``, where an upsert's rows leave out NOT NULL columns without a default
    (``required_left_out``): then written as an update of the rows that exist, as on
    both paths (dict rows, and a DataFrame of some of the table's columns)."""
    required = required_left_out(op)
    if required and op.table.insert_trigger:
        return _upsert_or_update(backend, write, op, required)
    if required:
        return _update_existing(write, op, required)
    return write(op)


def _rows_writer(
    backend: Backend, rows: Sequence[tuple[Any, ...]]
) -> Callable[[WriteOp], ChunkCounts]:
    return lambda op: backend.write(op, rows)


def write_by_shape(
    backend: Backend, op: WriteOp, layout: tuple[str, ...], rows: Sequence[tuple[Any, ...]]
) -> ChunkCounts:
    """Write rows that give different sets of columns: one write per set, in the order
    the sets first appear, each naming only the columns its rows give (a row as wide
    as ``op.columns`` gives them all; a wider one is laid out as ``layout``, MISSING
    where a column is left out). The rows of each write keep their order (by key).

    ``RowFailures`` of the writes are gathered and raised once, their positions those
    of ``rows``; on a backend without transactions, a write refused whole after others
    were made is sent a row at a time (those made cannot be undone and re-sent)."""
    width = len(op.columns)
    groups: dict[tuple[int, ...] | None, list[int]] = {}
    for position, row in enumerate(rows):
        shape = None if len(row) == width and not _gaps(row) else _shape_of(row)
        groups.setdefault(shape, []).append(position)
    counts = ChunkCounts()
    failures: list[tuple[int, BulkError]] = []
    wrote = False
    for shape, positions in groups.items():
        if shape is None:
            sub, values = op, [rows[p] for p in positions]
        else:
            columns = tuple(layout[i] for i in shape)
            update = op.update_columns
            if update is not None:
                update = tuple(c for c in update if c in columns)
            sub = replace(op, columns=columns, update_columns=update)
            pick = itemgetter(*shape)
            values = (
                [pick(rows[p]) for p in positions]
                if len(shape) > 1
                else [(pick(rows[p]),) for p in positions]
            )
        try:
            counts += write_leaving_out(backend, sub, _rows_writer(backend, values))
        except RowFailures as partial:
            counts += partial.counts
            failures += [(positions[j], error) for j, error in partial.failures]
        except DataError:
            if not wrote or backend.capabilities.transactions:
                raise  # nothing written yet, or undone with the transaction
            for j, one in enumerate(values):
                try:
                    counts += backend.write(sub, [one])
                except RowFailures as partial:
                    counts += partial.counts
                    failures += [(positions[j], error) for _, error in partial.failures]
                except DataError as error:
                    failures.append((positions[j], error))
        wrote = True
    if failures:
        raise RowFailures(counts, sorted(failures, key=lambda f: f[0]))
    return counts


class Chunk(Protocol):
    """What the executor needs of a prepared chunk, whichever path made it (the row
    path's ``PreparedChunk``, the columnar path's ``columnar.ArrowChunk``).

    ``raws[index[j]]`` is the input row written at position ``j``; ``start`` the 0-based
    position of ``raws[0]`` in the whole input.
    """

    @property
    def start(self) -> int: ...

    @property
    def index(self) -> Sequence[int]: ...

    @property
    def rejections(self) -> list[Rejection]: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def raws(self) -> Sequence[Any]: ...

    @property
    def size(self) -> int: ...

    @property
    def count(self) -> int: ...

    def write(
        self, backend: Backend, op: WriteOp, positions: Sequence[int] | None = None
    ) -> ChunkCounts: ...


class Planner(Protocol):
    """Prepares the chunks of one call (``ChunkPlanner``, ``columnar.ArrowPlanner``)."""

    def prepare(self, raws: Any, start: int) -> Chunk: ...

    def diagnose(self, raw: Any) -> Rejection | None: ...

    def values_of(self, raw: Any) -> Any: ...

    def key_from_values(self, values: Any) -> Any: ...


def _folded(
    key_of: Callable[[tuple[Any, ...]], Any], folds: Sequence[Callable[[Any], Any] | None]
) -> Callable[[tuple[Any, ...]], Any]:
    """``key_of`` with each key value folded as its column's fold says."""
    if len(folds) == 1:
        (fold,) = folds
        assert fold is not None
        return lambda row: fold(key_of(row))
    return lambda row: tuple(
        v if f is None else f(v) for v, f in zip(key_of(row), folds, strict=True)
    )


class ChunkPlanner:
    """Encodes, de-duplicates and orders the rows of one call, a chunk at a time.

    ``columns``: the names of the values in each encoded tuple. ``key``: the key
    columns (a subset of ``columns``) used to de-duplicate and order rows; empty for
    calls without a key (e.g. an insert that lets the database assign ids).
    ``mappings``: rows are mappings (else sequences in ``columns`` order).
    ``strict_width``: a mapping with a column outside ``columns`` is rejected (off when
    the caller chose ``columns`` explicitly, to write only those).
    ``encode``: the backend's own row encoder, replacing the per-column one (DynamoDB
    items: ``row -> (*key values, item)``); it raises ConversionError for a bad row.

    ``key_folds``: per key column, what makes a value equal where the database finds
    it equal (``schema.key_fold``), or None.

    ``partial``: mappings may give different sets of columns (JSON Lines objects, dict
    rows): a column a row leaves out is MISSING, not None, and is not written (an
    insert gives it its default, an upsert or update leaves it as it is). Such a row is
    encoded as wide as ``columns`` + ``optional`` (the table's other columns, which a
    row may give too). ``key_required``: a row that leaves out a key column is a
    "missing key" rejection (else, for an insert that lets the database assign ids,
    it is written without it). ``needs_set``: a row must give a column besides the key
    (update). Rows with the same key merge, later values winning; see
    ``_collapse_and_order``.
    """

    def __init__(
        self,
        columns: Sequence[str],
        codecs: Sequence[ColumnCodec],
        key: Sequence[str],
        *,
        mappings: bool,
        strict_width: bool = True,
        encode: Callable[[Any], tuple[Any, ...]] | None = None,
        partial: bool = False,
        optional: Sequence[str] = (),
        optional_codecs: Sequence[ColumnCodec] = (),
        key_required: bool = True,
        needs_set: bool = False,
        open_codec: Callable[[str], ColumnCodec] | None = None,
        key_folds: Sequence[Callable[[Any], Any] | None] = (),
    ) -> None:
        self.columns = tuple(columns)
        self.partial = partial and mappings and encode is None
        self.optional = tuple(optional) if self.partial else ()
        self._layout = self.columns + self.optional
        self._layout_codecs = tuple(codecs) + tuple(optional_codecs)[: len(self.optional)]
        self.key_required = key_required
        self.needs_set = needs_set
        # A table that takes any column (DynamoDB): a column first seen in a later row
        # joins the layout (at its end, so rows laid out before keep their places).
        self._open_codec = open_codec if self.partial else None
        self._shapes: dict[tuple[Any, ...], Any] = {}
        self._mixed = False  # some chunk's rows gave different columns
        self.strict_width = strict_width
        self.codecs = tuple(codecs)
        self.key = tuple(key)
        self.mappings = mappings
        self._custom = encode is not None
        self._encode = encode or build_row_encoder(
            self.columns, self.codecs, mappings=mappings, strict_width=strict_width
        )
        positions = [self.columns.index(k) for k in self.key]
        self._key_of: Callable[[tuple[Any, ...]], Any] | None = (
            itemgetter(*positions) if positions else None
        )
        folds = list(key_folds)
        if self._key_of is not None and any(folds):
            # Keys the database compares without case: rows are one key as they are
            # one row there ("A.org" and "a.org" under NOCASE).
            self._key_of = _folded(self._key_of, folds)
        self._composite = len(positions) > 1
        self._column_set = frozenset(self._layout)

    # ------------------------------------------------------------------ per chunk

    def prepare(self, raws: list[Any], start: int) -> PreparedChunk:
        try:
            if self._mixed:
                raise RowShapeError  # rows gave different columns before: expect it again
            # Most chunks are clean: encode them in one C-level pass.
            clean = list(map(self._encode, raws))
        except Exception:
            chunk = self._prepare_row_by_row(raws, start)
            self._mixed = chunk.layout is not None
        else:
            chunk = PreparedChunk(start, raws, clean, list(range(len(raws))))
        if self._key_of is not None:
            self._reject_missing_keys(chunk)
            self._collapse_and_order(chunk)
        return chunk

    def _reject_missing_keys(self, chunk: PreparedChunk) -> None:
        """Rows whose key is NULL once encoded (None, blank text, NaN, pd.NA) become
        "missing key" rejections: no key names such a row, and SQLite would give an
        INTEGER PRIMARY KEY a new id, so each re-run of an upsert added a copy. One
        C-level scan per chunk; rows that leave the key column out are not affected
        (their chunk has no key to check)."""
        key_of = self._key_of
        assert key_of is not None
        keys = list(map(key_of, chunk.rows))
        if self._composite:
            if None not in chain.from_iterable(keys):
                return
        elif None not in keys:
            return
        rows, index = [], []
        for row, i, k in zip(chunk.rows, chunk.index, keys, strict=True):
            parts = k if self._composite else (k,)
            if None not in parts:  # (a left-out key column is MISSING: see _encode_slowly)
                rows.append(row)
                index.append(i)
                continue
            column = self.key[parts.index(None)]
            values = self.values_of(chunk.raws[i])
            given = values.get(column) if isinstance(values, Mapping) else None
            chunk.rejections.append(
                Rejection(
                    row=chunk.start + i + 1,
                    key=self.key_from_values(values),
                    reason=f"missing key: key column {column!r} has no value ({given!r})",
                    values=values,
                    column=column,
                )
            )
        chunk.rows, chunk.index = rows, index
        chunk.rejections.sort(key=lambda r: r.row)

    def _prepare_row_by_row(self, raws: list[Any], start: int) -> PreparedChunk:
        # Rows that give different columns: each set of keys gets an encoder of its own.
        encode = self._encode_shaped if self.partial else self._encode
        encoded: list[tuple[Any, ...]] = []
        index: list[int] = []
        rejections: list[Rejection] = []
        for i, raw in enumerate(raws):
            try:
                row = encode(raw)
            except Exception:
                slow = self._encode_slowly(raw, start + i, rejections)
                if slow is None:
                    continue
                row = slow
            encoded.append(row)
            index.append(i)
        chunk = PreparedChunk(start, raws, encoded, index, rejections)
        if self.partial:
            width = len(self.columns)
            if any(len(row) != width or _gaps(row) for row in encoded):
                chunk.layout = self._layout
        return chunk

    def _collapse_and_order(self, chunk: PreparedChunk) -> None:
        key_of = self._key_of
        assert key_of is not None
        keys = list(map(key_of, chunk.rows))
        try:
            # Bulk input often arrives sorted by key already: nothing to collapse or move.
            if all(map(lt, keys, islice(keys, 1, None))):
                return
        except TypeError:  # None or mixed types among the keys: take the long way
            pass
        latest: dict[Any, tuple[int, tuple[Any, ...]]] = {}
        keyless: list[tuple[int, tuple[Any, ...]]] = []
        composite = self._composite
        partial = chunk.layout is not None
        for i, row in zip(chunk.index, chunk.rows, strict=True):
            k = key_of(row)
            # A NULL key was rejected before (missing key); kept apart here all the same,
            # as is a key an insert's row leaves out (the database assigns it).
            if k is None or k is MISSING or (composite and (None in k or MISSING in k)):
                keyless.append((i, row))
                continue
            if partial and k in latest:
                # Rows that give different columns merge: the later row's values win
                # and the columns it leaves out keep the earlier row's (as writing
                # them one after the other would leave them).
                row = self._merge(latest[k][1], row)
            latest[k] = (i, row)
        chunk.duplicates = len(chunk.rows) - len(latest) - len(keyless)
        try:
            ordered = sorted(latest.items())
        except TypeError:
            # Mixed key types cannot be compared; any fixed order still gives every
            # writer the same lock order.
            ordered = sorted(latest.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        chunk.rows = [row for _, (_, row) in ordered] + [row for _, row in keyless]
        chunk.index = [i for _, (i, _) in ordered] + [i for i, _ in keyless]

    def _encode_shaped(self, raw: Any) -> tuple[Any, ...]:
        """``_encode_partial`` at the speed of the generated encoders: one per set of
        keys (in the order a row gives them), kept for the call. Raises for anything
        else (a row that is not a mapping, an unknown column, a left-out key, a value
        that does not coerce), for the slow path to say why."""
        keys = tuple(raw)
        entry = self._shapes.get(keys)
        if entry is None:
            entry = self._shape(keys)
            if len(self._shapes) < _MAX_SHAPES:
                self._shapes[keys] = entry
        encode, lay_out = entry
        values = encode(raw)
        return values if lay_out is None else lay_out(values + _MISSING_ONLY)

    def _shape(
        self, keys: tuple[Any, ...]
    ) -> tuple[Callable[[Any], tuple[Any, ...]], Callable[[tuple[Any, ...]], Any] | None]:
        """The encoder of rows that give ``keys`` (the values of the layout's columns
        among them), and what lays its values out (given them followed by MISSING;
        None: the row gives exactly the call's columns)."""
        given = set(keys)
        if self.strict_width and not given <= self._column_set:
            raise RowShapeError  # an unknown column (or, on an open table, a new one)
        if self.key_required and not all(k in given for k in self.key):
            raise RowShapeError  # a left-out key: a rejection, from the slow path
        if self.needs_set and not any(c in given for c in self._layout if c not in self.key):
            raise RowShapeError
        positions = tuple(i for i, c in enumerate(self._layout) if c in given)
        names = [self._layout[i] for i in positions]
        codecs = [self._layout_codecs[i] for i in positions]
        encode = build_row_encoder(names, codecs, mappings=True, strict_width=self.strict_width)
        if tuple(names) == self.columns:
            return encode, None
        missing = len(positions)  # where MISSING stands, after the values
        source = {position: j for j, position in enumerate(positions)}
        picks = [source.get(i, missing) for i in range(len(self._layout))]
        return encode, itemgetter(*picks) if len(picks) > 1 else lambda v: (v[picks[0]],)

    def _widen(self, names: list[str]) -> None:
        assert self._open_codec is not None
        codecs = [self._open_codec(name) for name in names]
        self.optional += tuple(names)
        self._layout += tuple(names)
        self._layout_codecs += tuple(codecs)
        self._column_set = frozenset(self._layout)

    def _merge(self, earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
        """``later`` over ``earlier``: its values, and ``earlier``'s where it has none."""
        width = len(self.columns)
        if len(later) == width and not self.optional:
            return later
        full = len(self._layout)
        a = earlier + (MISSING,) * (full - len(earlier))
        b = later + (MISSING,) * (full - len(later))
        return self._settle(tuple(x if y is MISSING else y for x, y in zip(a, b, strict=True)))

    def _settle(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A laid-out row that gives exactly the call's columns, as wide as they are."""
        width = len(self.columns)
        if _gaps(row[:width]) or any(value is not MISSING for value in row[width:]):
            return row
        return row[:width]

    # ------------------------------------------------------------ slow path, per row

    def _encode_slowly(
        self, raw: Any, position: int, rejections: list[Rejection]
    ) -> tuple[Any, ...] | None:
        """Encode one row that failed the fast path, or record why it cannot be."""
        values = self.values_of(raw)
        try:
            if self._custom:
                try:
                    return self._encode(raw)
                except ConversionError:
                    raise
                except (ValueError, TypeError, ArithmeticError) as error:
                    raise ConversionError(str(error)) from error
            if self.partial and isinstance(raw, Mapping):
                return self._encode_partial(raw)
            if self.mappings:
                if not isinstance(raw, Mapping):
                    raise ConversionError(f"row is a {type(raw).__name__}, not a mapping")
                extra = [c for c in raw if c not in self._column_set] if self.strict_width else []
                if extra:
                    raise ConversionError(
                        f"unexpected column(s) {', '.join(map(repr, extra))}; this call writes "
                        f"{', '.join(self.columns)} (the first row's columns, or columns=)",
                        column=str(extra[0]),
                    )
                cells = [raw.get(c) for c in self.columns]
            else:
                if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
                    raise ConversionError(f"row is a {type(raw).__name__}, not a sequence")
                if len(raw) != len(self.columns):
                    raise ConversionError(
                        f"row has {len(raw)} values for {len(self.columns)} columns "
                        f"({', '.join(self.columns)})"
                    )
                cells = list(raw)
            out = []
            for name, codec, value in zip(self.columns, self.codecs, cells, strict=True):
                # No passthrough shortcut here: the full coercion also checks ranges.
                try:
                    out.append(codec.encode(value))
                except ConversionError as error:
                    error.column = error.column or name
                    raise
                except (ValueError, TypeError, ArithmeticError) as error:
                    raise ConversionError(str(error), column=name) from error
            return tuple(out)
        except ConversionError as error:
            rejections.append(
                Rejection(
                    row=position + 1,
                    key=self.key_from_values(values),
                    reason=error.message,
                    values=values,
                    column=error.column,
                    code=error.code,
                )
            )
            return None

    def _encode_partial(self, raw: Mapping[str, Any]) -> tuple[Any, ...]:
        """A mapping that may give any of the columns: as wide as ``columns`` when it
        gives exactly them, else laid out as ``columns`` + ``optional`` with MISSING
        for each column it leaves out."""
        if self.strict_width:
            extra = [c for c in raw if c not in self._column_set]
            if extra and self._open_codec is not None and all(isinstance(c, str) for c in extra):
                self._widen(extra)
                extra = []
            if extra:
                raise ConversionError(
                    f"unexpected column(s) {', '.join(map(repr, extra))}: the table has "
                    f"no such column (its columns: {', '.join(self._layout)})",
                    column=str(extra[0]),
                )
        absent = [k for k in self.key if k not in raw]
        if absent and self.key_required:
            raise ConversionError(
                f"missing key: the row does not give key column {absent[0]!r}",
                column=absent[0],
            )
        if self.needs_set and not any(c in raw for c in self._layout if c not in self.key):
            raise ConversionError(
                f"the row gives no column to set besides the key ({', '.join(self.key)})"
            )
        out = []
        for name, codec in zip(self._layout, self._layout_codecs, strict=True):
            if name not in raw:
                out.append(MISSING)
                continue
            try:
                out.append(codec.encode(raw[name]))
            except ConversionError as error:
                error.column = error.column or name
                raise
            except (ValueError, TypeError, ArithmeticError) as error:
                raise ConversionError(str(error), column=name) from error
        return self._settle(tuple(out))

    def diagnose(self, raw: Any) -> Rejection | None:
        """Why the slow path would refuse ``raw`` (e.g. an int beyond 64 bits, which
        passes the fast path and only fails in the driver), or None."""
        found: list[Rejection] = []
        self._encode_slowly(raw, 0, found)
        return found[0] if found else None

    def values_of(self, raw: Any) -> Any:
        """The row as given, as a dict where the columns are known (for Rejections)."""
        if isinstance(raw, RefusedRow):
            return dict(raw.given)
        if isinstance(raw, Mapping):
            return dict(raw)
        if isinstance(raw, Sequence) and not isinstance(raw, str | bytes):
            if len(raw) == len(self.columns):
                return dict(zip(self.columns, raw, strict=True))
            return list(raw)
        return raw

    def key_from_values(self, values: Any) -> Any:
        if not self.key or not isinstance(values, Mapping):
            return None
        parts = tuple(values.get(k) for k in self.key)
        return parts[0] if len(parts) == 1 else parts
