"""Streaming readers for the input files bulkops loads: CSV, TSV, JSON Lines and Parquet.

Every reader is lazy: ``Source.rows`` is a generator and only a buffer's worth of the
file is held at a time, so multi-GB inputs run in flat memory. A ``.gz`` suffix (or the
gzip magic bytes) is decompressed on the fly, and so is a ``.zip`` archive of one file.

Missing values follow PostgreSQL's CSV rule: an unquoted empty field is None (NULL), a
quoted empty field (``""``) is the empty string. ``null=`` adds spellings (``NA``,
``\\N``) that mean None where they stand unquoted.

CSV/TSV and Parquet rows are tuples in ``Source.columns`` order rather than dicts: building
a dict per row costs more than the rest of the parse, and the consumer maps columns once.
JSON Lines rows are dicts because each line may carry its own set of keys.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain, islice
from types import TracebackType
from typing import Any, BinaryIO, cast

from .columnar import ROW_SHAPE_COLUMN, column_values
from .errors import BulkError
from .plan import ReadAhead
from .schema import TYPES, ColumnInference, MissingHint

__all__ = [
    "FORMATS",
    "INFER_SAMPLE_ROWS",
    "Inference",
    "Source",
    "SourceError",
    "TypeMismatch",
    "file_columns",
    "file_digest",
    "infer_file",
    "infer_format",
    "infer_types",
    "open_arrow",
    "open_source",
]

FORMATS = ("csv", "tsv", "jsonl", "parquet")

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_STDIN_NAME = "<stdin>"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_UTF8_BOM = b"\xef\xbb\xbf"
# Larger than io.DEFAULT_BUFFER_SIZE: fewer Python-level read calls through the counter.
_BUFFER_SIZE = 1 << 16
_PARQUET_BATCH_ROWS = 65536
# The stdlib default (128 KiB) rejects ordinary long text fields. Not sys.maxsize: the
# limit is a C long, which is 32 bits on Windows. A limit also bounds the memory a runaway
# quoted field can take before the reader gives up.
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1

# What a read can raise below the parser: I/O failures and corrupt gzip or zip data
# (gzip.BadGzipFile is an OSError; a truncated stream raises EOFError).
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class SourceError(BulkError, ValueError):
    """An input file cannot be opened or parsed. The message is meant for the end user.

    A BulkError, so that one raised part-way through a write carries the ``report`` of
    what committed before it (and the run log records those counts)."""


# Rows read to infer a new table's column types from an input that cannot be read twice
# (standard input); a file is read whole (``infer_file``).
INFER_SAMPLE_ROWS = 10_000
# Rows taken at a time while inferring: values are checked once per distinct text in a
# batch, so batches make repeated values (most columns of most files) nearly free.
_INFER_BATCH_ROWS = 8192


@dataclass
class Inference:
    """A table inferred from an input: its columns in order, their logical types, the
    columns that would have another type but for missing-value spellings, how many
    rows were read (``complete``: all of them, else the first ``rows``), and the
    decimal columns holding a number no 64-bit float gives back (``inexact``: column
    -> the least such text), which a database storing decimals as floats cannot hold
    as decimals."""

    columns: list[str]
    types: dict[str, str]
    missing: list[MissingHint] = field(default_factory=list)
    rows: int = 0
    complete: bool = True
    inexact: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": [{"name": c, "type": self.types[c]} for c in self.columns],
            "missing": [hint.as_dict() for hint in self.missing],
            "rows": self.rows,
            "complete": self.complete,
            "inexact": dict(self.inexact),
        }


class TypeMismatch(SourceError):
    """A row after the sample that types were inferred from does not fit them."""

    def __init__(self, row: int, column: str, value: Any, type: str, sample: int) -> None:
        self.row, self.column, self.value, self.type, self.sample = (
            row, column, value, type, sample,
        )  # fmt: skip
        super().__init__(
            f"row {row}: {_short(value)} in column {column!r} does not fit the type {type} "
            f"inferred from the first {sample:,} rows; declare the column's type"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_types(types: Mapping[str, str]) -> None:
    unknown = {c: t for c, t in types.items() if t not in TYPES}
    if unknown:
        column, kind = next(iter(unknown.items()))
        raise ValueError(
            f"unknown type {kind!r} for column {column!r}; expected one of {', '.join(TYPES)}"
        )


def _infer(
    columns: Sequence[str] | None,
    rows: Iterator[Any],
    limit: int | None,
    types: Mapping[str, str],
    typed: bool = False,
) -> tuple[Inference, list[Any]]:
    """Infer from up to ``limit`` rows (None: all); the rows read, kept when limited."""
    kept: list[Any] = []
    states: dict[str, ColumnInference] = {}
    names: dict[str, None] = dict.fromkeys(columns or ())
    for name in names:
        states[name] = ColumnInference(typed)
    count = 0
    while True:
        size = _INFER_BATCH_ROWS if limit is None else min(_INFER_BATCH_ROWS, limit - count)
        batch = list(islice(rows, size)) if size > 0 else []
        if not batch:
            break
        count += len(batch)
        if limit is not None:
            kept.extend(batch)
        if columns is None:
            for row in batch:
                if isinstance(row, Mapping):
                    for name in row:
                        if name not in names:
                            names[name] = None
                            states[name] = ColumnInference(typed)
            for name, state in states.items():
                if name not in types:
                    state.add([r.get(name) if isinstance(r, Mapping) else None for r in batch])
        else:
            width = len(names)
            # Rows of the wrong width are rejected when written; they say nothing of types.
            if set(map(len, batch)) != {width}:
                batch = [r for r in batch if len(r) == width]
            values = list(zip(*batch, strict=False))
            for (name, state), column in zip(states.items(), values, strict=False):
                if name not in types:
                    state.add(column)
    cols = list(names)
    inferred = {c: types.get(c) or states[c].result() for c in cols}
    missing = [
        hint for c in cols if c not in types and (hint := states[c].missing_hint(c)) is not None
    ]
    complete = limit is None or count < limit
    inexact = _inexact(inferred, states)
    return Inference(cols, inferred, missing, count, complete, inexact), kept


def _inexact(inferred: Mapping[str, str], states: Mapping[str, ColumnInference]) -> dict[str, str]:
    return {
        c: text
        for c, state in states.items()
        if inferred[c] == "decimal" and (text := state.inexact) is not None
    }


def infer_types(
    columns: Sequence[str] | None,
    rows: Iterator[Any],
    sample: int | None = INFER_SAMPLE_ROWS,
    *,
    types: Mapping[str, str] | None = None,
    typed: bool = False,
) -> tuple[Inference, Iterator[Any]]:
    """Infer a table from the first ``sample`` rows (None: every row), and give the rows
    again. ``columns``: the names of sequence rows' values; None for mappings, whose
    columns are the union of their keys, in the order first seen. ``types``: columns
    whose type is given, not inferred. ``typed``: the values carry their own types
    (JSON Lines), so a string is never taken for a number or a boolean.

    Rows after the sample are checked as they pass: one that does not fit the inferred
    types raises ``TypeMismatch`` naming its row and column (so a stream cannot quietly
    change a column's meaning). With ``sample=None`` the rows are all consumed and the
    iterator returned is empty: read the input again (``infer_file`` does so for a file).
    """
    given = dict(types or {})
    _check_types(given)
    inference, kept = _infer(columns, rows, sample, given, typed)
    if sample is None:
        return inference, iter(())
    if inference.complete:
        return inference, iter(kept)
    return inference, chain(kept, _checked(inference, columns is None, rows, given))


def _checked(
    inference: Inference, mappings: bool, rows: Iterator[Any], given: Mapping[str, str]
) -> Iterator[Any]:
    fits = ColumnInference.fits
    checks = [
        (i, name, inference.types[name])
        for i, name in enumerate(inference.columns)
        if name not in given and inference.types[name] not in ("text", "any")
    ]
    known = frozenset(inference.columns)
    width = len(inference.columns)
    for number, row in enumerate(rows, inference.rows + 1):
        if mappings:
            if isinstance(row, Mapping):
                extra = [k for k in row if k not in known]
                if extra:
                    name = extra[0]
                    raise TypeMismatch(number, name, row[name], "(no such column)", inference.rows)
                for _, name, kind in checks:
                    value = row.get(name)
                    if not fits(value, kind):
                        raise TypeMismatch(number, name, value, kind, inference.rows)
        elif len(row) == width:
            for i, name, kind in checks:
                if not fits(row[i], kind):
                    raise TypeMismatch(number, name, row[i], kind, inference.rows)
        yield row


def text_encoding(name: str) -> str:
    """Python's name of the text encoding ``name`` ("UTF8", "latin1" -> "utf-8",
    "iso8859-1"); a SourceError for an encoding it does not know."""
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise SourceError(f"unknown text encoding {name!r}") from None


def infer_file(
    path: str,
    format: str | None = None,
    *,
    null: Iterable[str] = (),
    types: Mapping[str, str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> Inference:
    """Infer a table from every row of the file at ``path`` (read once, then closed), so
    the same rows in any order give the same table. Read by pyarrow where it can
    (``open_arrow``): each batch's distinct texts are judged once, by the same rules."""
    arrow = open_arrow(path, format, null=null, encoding=encoding, delimiter=delimiter)
    if arrow is not None:
        with arrow:
            return _infer_batches(arrow, types)
    with open_source(path, format, null=null, encoding=encoding, delimiter=delimiter) as source:
        typed = source.format == "jsonl"
        inference, _ = infer_types(source.columns, source.rows, None, types=types, typed=typed)
    return inference


def _infer_batches(source: Source, types: Mapping[str, str] | None) -> Inference:
    pa = _arrow()
    import pyarrow.compute as pc

    given = dict(types or {})
    _check_types(given)
    columns = list(source.columns or ())
    states = {c: ColumnInference() for c in columns if c not in given}
    assert source.batches is not None
    rows = 0
    for batch in source.batches:
        rows += batch.num_rows
        for name, state in states.items():
            column = batch.column(name)
            if not pa.types.is_string(column.type):
                if getattr(column.type, "unit", None) == "ns":
                    # Their kind, not their nanoseconds (no datetime holds them, and
                    # pyarrow raises where pandas is not loaded): the write refuses
                    # a value that has them, row by row.
                    unit = (
                        pa.timestamp("us", column.type.tz)
                        if pa.types.is_timestamp(column.type)
                        else pa.time64("us")
                        if pa.types.is_time(column.type)
                        else None
                    )
                    if unit is not None:
                        column = column.cast(unit, safe=False)
                state.add(column.to_pylist())
                continue
            texts = pc.unique(column).drop_null().to_pylist()

            def count(token: str, column: Any = column) -> int:
                return int(pc.sum(pc.equal(column, token)).as_py() or 0)

            state.add_distinct(texts, count)
    inferred = {c: given.get(c) or states[c].result() for c in columns}
    missing = [
        hint for c in columns if c in states and (hint := states[c].missing_hint(c)) is not None
    ]
    return Inference(columns, inferred, missing, rows, True, _inexact(inferred, states))


def file_columns(
    path: str, format: str | None = None, *, encoding: str = "utf-8", delimiter: str | None = None
) -> list[str]:
    """The columns of the file at ``path``: its header, or for JSON Lines, whose objects
    may each have their own keys, the union of the keys in the order first seen (the
    file is read once for them, then closed)."""
    with open_source(path, format, encoding=encoding, delimiter=delimiter) as source:
        if source.columns is not None:
            return list(source.columns)
        names: dict[str, None] = {}
        for row in source.rows:
            if isinstance(row, Mapping):
                names.update(dict.fromkeys(row))
        return list(names)


def file_digest(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of the file's bytes: what identifies an input for a
    resumable load or a sync (``source_id=``), whatever its format or compression."""
    try:
        with open(path, "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as error:
        raise _read_error(os.fspath(path), error) from error


def _format_of(path: str) -> str | None:
    name = os.path.basename(path).lower()
    for suffix in (".gz", ".zip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def infer_format(path: str) -> str:
    """The format of ``path`` from its extension, ignoring a trailing ``.gz`` or ``.zip``.

    Raises SourceError naming the file when the extension is not one bulkops knows.
    """
    fmt = _format_of(path)
    if fmt is None:
        raise SourceError(
            f"cannot tell the format of {path!r} from its extension; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return fmt


class Source:
    """An open input: its format, its columns (when known up front) and a lazy row iterator.

    Use it as a context manager, or call ``close()``, to release the file.
    """

    format: str
    columns: list[str] | None
    rows: Iterator[Any]
    total_bytes: int | None
    # ``open_arrow``: the input as a ``pyarrow.RecordBatchReader`` (``rows`` is empty).
    batches: Any | None
    # Whether pyarrow's reader may read the file as the row reader does (a header
    # ending in blank names, as Excel writes, is the row reader's: _unnamed_tail).
    arrow_readable: bool

    def __init__(
        self,
        *,
        format: str,
        columns: list[str] | None,
        rows: Iterator[Any],
        total_bytes: int | None,
        progress: Callable[[], int],
        resources: ExitStack,
        batches: Any | None = None,
        arrow_readable: bool = True,
    ) -> None:
        self.format = format
        self.columns = columns
        self.rows = rows
        self.batches = batches
        self.arrow_readable = arrow_readable
        self.total_bytes = total_bytes
        self._progress = progress
        self._resources = resources
        self._closed = False

    def bytes_read(self) -> int:
        """Bytes consumed so far from the file on disk (compressed bytes for ``.gz``).

        Meant for a progress bar against ``total_bytes``; it runs slightly ahead of the rows
        handed out because reads are buffered, and is an estimate for Parquet.
        """
        return self._progress()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close_rows = getattr(self.rows, "close", None)
            if close_rows is not None:
                close_rows()
        finally:
            self._resources.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Source {self.format} columns={self.columns!r} {state}>"


class _CountingReader(io.RawIOBase):
    """A raw reader that counts the bytes passing through it, for ``Source.bytes_read``.

    Sitting at the bottom of the stack (under gzip and the text decoder) makes the count
    match the on-disk size, compressed or not. It never closes the stream it wraps: the
    file is closed by its owner, and stdin is not ours to close.
    """

    def __init__(self, raw: BinaryIO | io.RawIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.count = 0
        # readinto1 returns what a pipe has now instead of blocking to fill the buffer.
        self._readinto = getattr(raw, "readinto1", None) or getattr(raw, "readinto", None)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._readinto is not None:
            n = self._readinto(buffer)
        else:
            data = self._raw.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        if n:
            self.count += n
        return n or 0


def open_source(
    path: str,
    format: str | None = None,
    *,
    stdin: BinaryIO | None = None,
    null: Iterable[str] = (),
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> Source:
    """Open ``path`` for streaming.

    ``path`` ``'-'`` reads stdin (``sys.stdin.buffer`` unless ``stdin`` is given) and the
    format then defaults to csv; otherwise the format is inferred from the extension.
    A ``.gz`` suffix, or gzip magic bytes at the start of the data, is decompressed
    transparently; so is a ``.zip`` archive holding one file (whose own name gives the
    format if the archive's does not). ``null``: CSV/TSV spellings of a missing value
    (besides the unquoted empty field), read as None where they stand unquoted.
    ``encoding``: the text's (CSV, TSV, JSON Lines; a byte order mark is skipped).
    ``delimiter``: CSV/TSV's field separator (default: a comma, a tab for TSV); where it
    is not given, a header that is one name holding a semicolon, a tab or a bar is
    refused (``_one_name_header``), not loaded as a single column.
    """
    encoding = text_encoding(encoding)
    from_stdin = path == "-"
    is_zip = not from_stdin and path.lower().endswith(".zip")
    fmt: str | None
    if format is not None:
        fmt = format.lower()
        if fmt not in FORMATS:
            raise SourceError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    elif from_stdin:
        fmt = "csv"
    else:
        fmt = _format_of(path)
        if fmt is None and not is_zip:
            infer_format(path)  # raises, naming the file

    if fmt == "parquet":
        if from_stdin:
            raise SourceError(
                "reading Parquet from stdin is not supported (it needs random access); "
                "pass a file path"
            )
        if is_zip:
            raise SourceError(f"{path}: Parquet inside a zip archive is not supported; unzip it")
        return _open_parquet(path)

    name = _STDIN_NAME if from_stdin else path
    with ExitStack() as stack:
        stream, name, fmt, total_bytes, progress = _open_stream(
            path, fmt, stack, stdin=stdin if from_stdin else None
        )
        assert fmt is not None
        arrow_readable = True
        try:
            columns: list[str] | None
            rows: Iterator[Any]
            if fmt == "jsonl":
                columns = None
                rows = _jsonl_rows(stream, name, encoding)
            else:
                separator = delimiter or ("\t" if fmt == "tsv" else ",")
                columns, rows, arrow_readable = _open_csv(
                    stream, name, separator, stack, frozenset(null), encoding
                )
                _check_columns(name, columns, "header")
                if delimiter is None:
                    _one_name_header(name, columns, separator)
        except _READ_ERRORS as exc:
            raise _read_error(name, exc) from exc

        source = Source(
            format=fmt,
            columns=columns,
            rows=rows,
            total_bytes=total_bytes,
            progress=progress,
            resources=stack.pop_all(),
            arrow_readable=arrow_readable,
        )
    return source


def _open_stream(
    path: str, fmt: str | None, stack: ExitStack, *, stdin: BinaryIO | None = None
) -> tuple[BinaryIO, str, str, int | None, Callable[[], int]]:
    """The bytes of the input at ``path`` (``'-'``: ``stdin`` or standard input),
    decompressed (gzip) or taken from a one-file zip archive, with its name for
    messages, its format, its size on disk and a counter of the bytes read so far."""
    from_stdin = path == "-"
    is_zip = not from_stdin and path.lower().endswith(".zip")
    name = _STDIN_NAME if from_stdin else path
    total_bytes: int | None
    progress: Callable[[], int]
    stream: BinaryIO
    zipped = False
    if from_stdin:
        counter = _CountingReader(stdin if stdin is not None else sys.stdin.buffer)
        total_bytes = None
        progress = lambda: counter.count  # noqa: E731
    else:
        file = _open_file(path)
        stack.callback(file.close)
        total_bytes = os.fstat(file.fileno()).st_size
        if is_zip or _starts_with(file, _ZIP_MAGIC):
            stream, member = _open_zip_member(file, path, stack)
            fmt = fmt or _format_of(member)
            if fmt is None:
                raise SourceError(
                    f"cannot tell the format of {member!r} in {path!r} from its "
                    f"extension; pass --format ({', '.join(FORMATS)})"
                )
            if fmt == "parquet":
                raise SourceError(f"{path}: Parquet inside a zip archive is not supported")
            # zipfile reads the archive itself: where it stands is how far it got.
            progress = file.tell
            name = f"{path} ({member})"
            zipped = True
        else:
            counter = _CountingReader(file)
            progress = lambda: counter.count  # noqa: E731
    if not zipped:
        buffered = io.BufferedReader(counter, buffer_size=_BUFFER_SIZE)
        stack.callback(buffered.close)
        stream = buffered
        if path.lower().endswith(".gz") or buffered.peek(2)[:2] == _GZIP_MAGIC:
            stream = cast(BinaryIO, gzip.GzipFile(fileobj=buffered, mode="rb"))
            stack.callback(stream.close)
    assert fmt is not None
    return stream, name, fmt, total_bytes, progress


# -- Arrow readers -----------------------------------------------------------------------

# Bytes of CSV parsed per block (and rows per batch, about): enough for parsing to run on
# every core; measured on a 5,000,000-row file, 4 MiB blocks held 283 MB of RSS while
# reading, 1 MiB blocks 133 MB, at the same speed.
ARROW_BLOCK_BYTES = 1 << 20
# Rows a batch holds while the rest of a file with a row of the wrong width is read
# through the row reader.
_RAGGED_BATCH_ROWS = 65536


def open_arrow(
    path: str,
    format: str | None = None,
    *,
    null: Iterable[str] = (),
    ragged: bool = True,
    encoding: str = "utf-8",
    delimiter: str | None = None,
) -> Source | None:
    """Open the file at ``path`` for the columnar path: a Source whose ``batches`` is a
    ``pyarrow.RecordBatchReader`` read a block at a time (multi-threaded parsing,
    bounded memory). None where pyarrow's readers do not apply: standard input (read
    once, its types from a sample) and JSON Lines (each object may carry its own keys;
    the row reader keeps them apart).

    CSV/TSV columns are all read as text, with the row reader's rules: an unquoted empty
    field and the ``null`` spellings (unquoted) are null, a quoted ``""`` is the empty
    string; the columnar path then casts the text to each column's type, as the row
    path would. ``.gz`` and one-file ``.zip`` inputs are decompressed as they are read
    (by pyarrow itself: ``_native_input``; a deflated zip member is held compressed in
    memory).

    A row of the wrong width (CSV): pyarrow cannot pass it on, so from the batch that
    holds it on, the file is read by the row reader. With ``ragged`` such a row is kept
    as a row of nulls marked in ``columnar.ROW_SHAPE_COLUMN`` (its values as JSON), for
    the columnar path to reject it with its row number as the row path does; without
    ``ragged`` it is a SourceError naming the row.

    A file in another ``encoding`` than UTF-8 is left to the row reader too (None):
    pyarrow would decode it by calling Python's codecs from its reading threads.
    """
    if path == "-" or text_encoding(encoding) not in ("utf-8", "utf-8-sig"):
        return None
    # The row reader checks the file, its format and its header (and their errors).
    with open_source(path, format, null=null, delimiter=delimiter) as first:
        fmt, columns = first.format, first.columns
    if fmt == "jsonl" or columns is None or not first.arrow_readable:
        return None
    if fmt == "parquet":
        return _open_parquet(path, arrow=True)
    pa = _arrow()
    import pyarrow.csv as pacsv

    with ExitStack() as stack:
        name, total_bytes, stream, progress = _native_input(pa, path)
        reader: Any = None
        if stream is not None:
            try:
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(
                        use_threads=True, block_size=ARROW_BLOCK_BYTES, encoding="utf8"
                    ),
                    # No invalid-row handler: it is Python, called on pyarrow's parsing
                    # threads. A row of the wrong width fails its block instead, and
                    # the row reader takes the file from there (``_csv_batches``).
                    parse_options=pacsv.ParseOptions(
                        delimiter=delimiter or ("\t" if fmt == "tsv" else ","),
                        newlines_in_values=True,
                        ignore_empty_lines=True,
                    ),
                    convert_options=pacsv.ConvertOptions(
                        # "": the row names' column (ROW_NAMES_COLUMN) as the file names it.
                        column_types={c: pa.string() for c in (*columns, "")},
                        null_values=["", *null],
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,
                    ),
                )
            except (pa.ArrowException, *_READ_ERRORS):
                pass  # the row reader reads the file instead, and says what is wrong where
        names = [*columns, ROW_SHAPE_COLUMN] if ragged else list(columns)
        schema = pa.schema([(c, pa.string()) for c in names])
        # Parsing starts now, not at the first batch asked for: the command still has
        # its database driver to load (about 0.3 s of CPU, on one core), a connection to
        # open and the table to look up before it asks, and the blocks read ahead by
        # then are parsed on another core meanwhile. Stopped (and waited for) before
        # pyarrow's reader is closed.
        early = ReadAhead(
            _clean_batches(pa, reader, schema, ragged),
            _PREFETCH_BATCHES,
            "bulkops-csv-reader",
        ).start()
        stack.callback(early.stop)
        batches = _csv_batches(
            early, reader is not None, path, fmt, null, schema, progress, name, ragged, delimiter
        )
        source = Source(
            format=fmt,
            columns=list(columns),
            rows=iter(()),
            total_bytes=total_bytes,
            progress=progress.bytes_read,
            resources=stack.pop_all(),
            batches=pa.RecordBatchReader.from_batches(schema, batches),
        )
    return source


# A gzip member's fixed header (RFC 1952: deflate, no flags, no time, unknown OS): put
# before a zip member's raw deflate data, it makes a stream pyarrow's gzip codec reads.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# A zip local file header: signature, 5 shorts, 3 longs, name and extra lengths.
_ZIP_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def _native_input(pa: Any, path: str) -> tuple[str, int, Any | None, _ArrowProgress]:
    """The file at ``path`` as a stream pyarrow reads natively (decompressed from gzip, or
    a zip archive's one file), its name for messages, its size on disk and the progress
    of the batches handed out. The stream is None where pyarrow cannot read it natively
    (a zip member compressed by other than deflate): the row reader then reads it.

    Never a Python file object: pyarrow reads its input ahead on threads of its own, and
    a Python object read there calls into the interpreter from those threads, which
    aborts or hangs the process at exit when a source is left before its end."""
    try:
        raw = pa.OSFile(path)
        total_bytes = raw.size()
        head = raw.read(4)
        raw.seek(0)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot open {path}: {exc}") from exc
    if head == _ZIP_MAGIC or path.lower().endswith(".zip"):
        with open(path, "rb") as file:
            try:
                with zipfile.ZipFile(file) as archive:
                    info = _zip_member(archive, path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise SourceError(f"{path}: not a readable zip archive ({exc})") from exc
        name = f"{path} ({info.filename})"
        stream = _zip_member_stream(pa, raw, info)
        # The batches' share of the member, of the archive's size.
        zip_scale = total_bytes / info.file_size if info.file_size else 1.0
        return name, total_bytes, stream, _ArrowProgress(total_bytes, lambda n: n * zip_scale)
    if path.lower().endswith(".gz") or head[:2] == _GZIP_MAGIC:
        # A gzip stream ends with its text's size (mod 2**32, of the last member only):
        # the batches' share of it, never past what pyarrow has read of the file.
        try:
            text_size = int.from_bytes(raw.read_at(4, max(total_bytes - 4, 0)), "little")
            raw.seek(0)  # pyarrow refuses a plain read after a positioned one until then
        except (pa.ArrowException, OSError):
            text_size = 0
        gz_scale = total_bytes / text_size if text_size else 0.0

        def gz_read(text: int) -> float:
            read: int = raw.tell()  # a system call: pyarrow's thread moves it as it reads
            return min(read, text * gz_scale) if gz_scale else read

        stream = pa.CompressedInputStream(raw, "gzip")
        return path, total_bytes, stream, _ArrowProgress(total_bytes, gz_read)
    return path, total_bytes, raw, _ArrowProgress(total_bytes, float)


def _zip_member_stream(pa: Any, raw: Any, info: zipfile.ZipInfo) -> Any | None:
    """A zip member's bytes as a native stream: stored, a slice of the file; deflated,
    its deflate data between a gzip header and trailer (CRC-32 and size from the zip's
    directory, checked by zlib at the end), held in native memory. None for the rest
    (bzip2, lzma)."""
    raw.seek(info.header_offset)
    fields = _ZIP_LOCAL_HEADER.unpack(raw.read(_ZIP_LOCAL_HEADER.size))
    if fields[0] != _ZIP_MAGIC:
        return None
    start = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[9] + fields[10]
    size = info.compress_size
    if info.compress_type == zipfile.ZIP_STORED:
        return raw.get_stream(start, size)
    if info.compress_type != zipfile.ZIP_DEFLATED:
        return None
    # pyarrow has no raw-deflate codec and no way to join streams, so the member is
    # copied once, compressed, into one buffer that pyarrow owns (no Python object
    # under it, so nothing calls back into the interpreter when it is freed).
    trailer = struct.pack("<LL", info.CRC, info.file_size & 0xFFFFFFFF)
    buffer = pa.allocate_buffer(len(_GZIP_HEADER) + size + len(trailer))
    view = memoryview(buffer).cast("B")
    view[: len(_GZIP_HEADER)] = _GZIP_HEADER
    raw.seek(start)
    body = view[len(_GZIP_HEADER) : len(_GZIP_HEADER) + size]
    if raw.readinto(body) != size:
        return None  # truncated: the row reader says so
    view[len(_GZIP_HEADER) + size :] = trailer
    view.release()
    return pa.CompressedInputStream(pa.BufferReader(buffer), "gzip")


class _ArrowProgress:
    """Bytes of the file behind the batches handed out so far (``Source.bytes_read``).

    pyarrow reads far ahead of the batches (up to 32 blocks), so what it has read says
    little; each batch is one block of text (``ARROW_BLOCK_BYTES``), and ``on_disk``
    gives the file's bytes for so much text. Once the row reader takes over, its count."""

    def __init__(self, total_bytes: int, on_disk: Callable[[int], float]) -> None:
        self.total_bytes = total_bytes
        self.on_disk = on_disk
        self.batches = 0
        self.done = False
        self.rows: Source | None = None

    def bytes_read(self) -> int:
        if self.done:
            return self.total_bytes
        if self.rows is not None:
            return self.rows.bytes_read()
        try:
            estimate = int(self.on_disk(self.batches * ARROW_BLOCK_BYTES))
        except (ValueError, OSError):  # the file is closed (pyarrow's errors are both)
            estimate = 0
        return min(self.total_bytes, estimate)


def _arrow() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is in the extras
        raise SourceError("reading files for the columnar path needs pyarrow") from None
    return pyarrow


def _csv_batches(
    early: ReadAhead,
    opened: bool,
    path: str,
    fmt: str,
    null: Iterable[str],
    schema: Any,
    progress: _ArrowProgress,
    name: str,
    ragged: bool,
    delimiter: str | None = None,
) -> Iterator[Any]:
    """The reader's batches (``early``: ``_clean_batches``, with a null
    ``ROW_SHAPE_COLUMN`` when ``ragged``); from the first batch that pyarrow cannot give
    (a row of the wrong width fails its block, bytes that are not UTF-8, a truncated
    stream), the row reader's rows instead (which it reads as the row path does).
    ``opened``: whether pyarrow could open the file at all."""
    pa = _arrow()
    width = len(schema) - (1 if ragged else 0)
    done = 0
    try:
        for batch in early:
            done += batch.num_rows
            progress.batches += 1
            yield batch
        if opened:
            progress.done = True
            return
    except (pa.ArrowException, *_READ_ERRORS):
        # A row of the wrong width, bytes that are not UTF-8, a quote left open, a
        # truncated gzip stream: the row reader takes the rest of the file from the
        # first row not handed out, writes the good rows before the fault and names
        # the line where it is (and rejects a row of the wrong width with its number).
        pass
    with open_source(path, fmt, null=null, delimiter=delimiter) as source:
        progress.rows = source
        rows = islice(source.rows, done, None)
        number = done
        while True:
            chunk: list[Any] = []
            failure: SourceError | None = None
            try:
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= _RAGGED_BATCH_ROWS:
                        break
            except SourceError as error:
                failure = error  # the rows before it are written first
            if chunk:
                yield _rows_batch(pa, schema, chunk, width, number, name, ragged)
                number += len(chunk)
            if failure is not None:
                raise failure
            if len(chunk) < _RAGGED_BATCH_ROWS:
                progress.done = True
                return


def _clean_batches(pa: Any, reader: Any, schema: Any, ragged: bool) -> Any:
    """The reader's batches in ``schema`` (a null ``ROW_SHAPE_COLUMN`` when ``ragged``)."""
    for batch in reader or ():
        if ragged:
            batch = pa.RecordBatch.from_arrays(
                [*batch.columns, pa.nulls(batch.num_rows, pa.string())], schema=schema
            )
        elif batch.schema.names != schema.names:  # the row names' column named
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
        yield batch


# Batches parsed ahead of the one being written (1 MiB of CSV each): the file is parsed
# while the database works on the chunk before. Measured on a 5,000,000-row load into
# PostgreSQL: peak RSS 248 MB with 2 ahead, 267-400 MB with 8, 238 MB with none.
_PREFETCH_BATCHES = 2


def _rows_batch(
    pa: Any, schema: Any, chunk: list[Any], width: int, number: int, name: str, ragged: bool
) -> Any:
    """The row reader's rows as a batch of text columns (``_csv_batches``)."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    shapes: list[str | None] = []
    for row in chunk:
        number += 1
        if len(row) == width:
            for values, value in zip(columns, row, strict=True):
                values.append(value)
            shapes.append(None)
            continue
        if not ragged:
            raise SourceError(
                f"{name}, row {number:,}: row has {len(row)} values for {width} columns"
            )
        for values in columns:
            values.append(None)
        shapes.append(json.dumps(list(row)))
    arrays = [pa.array(values, pa.string()) for values in columns]
    if ragged:
        arrays.append(pa.array(shapes, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _starts_with(file: io.FileIO, magic: bytes) -> bool:
    try:
        head = file.read(len(magic))
    finally:
        file.seek(0)
    return head == magic


def _zip_member(archive: zipfile.ZipFile, path: str) -> zipfile.ZipInfo:
    """The one file of a zip archive (macOS's ``__MACOSX/`` entries aside)."""
    members = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not info.filename.startswith("__MACOSX/")
    ]
    if len(members) != 1:
        names = ", ".join(info.filename for info in members[:5]) or "none"
        raise SourceError(
            f"{path}: a zip archive must hold exactly one file to load; it holds "
            f"{len(members)} ({names})"
        )
    return members[0]


def _open_zip_member(file: io.FileIO, path: str, stack: ExitStack) -> tuple[BinaryIO, str]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SourceError(f"{path}: not a readable zip archive ({exc})") from exc
    stack.callback(archive.close)
    info = _zip_member(archive, path)
    try:
        member = archive.open(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise SourceError(f"{path}: cannot read {info.filename!r} ({exc})") from exc
    stack.callback(member.close)
    return cast(BinaryIO, member), info.filename


def _open_file(path: str) -> io.FileIO:
    # Unbuffered, so every byte read from disk goes through the counter exactly once.
    try:
        return io.FileIO(path, "rb")
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory, not a file") from None
    except PermissionError:
        raise SourceError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc


def _read_error(name: str, exc: BaseException, where: str = "") -> SourceError:
    place = f"{name}, {where}" if where else name
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        return SourceError(f"{place}: corrupt or truncated gzip data ({exc})")
    return SourceError(f"{place}: read error: {exc}")


# -- CSV / TSV ---------------------------------------------------------------------------


def _raise_field_size_limit() -> None:
    if csv.field_size_limit() >= _CSV_FIELD_SIZE_LIMIT:
        return
    limit = _CSV_FIELD_SIZE_LIMIT
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _open_csv(
    stream: BinaryIO,
    name: str,
    delimiter: str,
    stack: ExitStack,
    null: frozenset[str],
    encoding: str = "utf-8",
) -> tuple[list[str], Iterator[tuple[str | None, ...]], bool]:
    """The header (``ROW_NAMES_COLUMN`` for an empty first name), the rows, and whether
    pyarrow's reader may read the file as these rows read it."""
    _raise_field_size_limit()
    # (utf-8-sig: a byte order mark, as spreadsheets write it, is not the first name's)
    text = io.TextIOWrapper(
        stream, encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline=""
    )
    stack.callback(text.close)
    # The csv module cannot tell an unquoted empty field (NULL) from a quoted one (''),
    # so the reader is fed through a generator that keeps the current record's raw
    # lines: a record holding an empty field (or a null spelling) is looked at again
    # only if its text has a quote in it. That costs far less than a Python tokenizer
    # and keeps the csv module's line numbers for errors.
    raw: list[str] = []

    def lines() -> Iterator[str]:
        append = raw.append
        rest = iter(text)
        for line in rest:
            # A byte order mark the codec keeps (utf-16-le and -be, gb18030 ...; utf-8
            # and utf-16 take theirs off) is not part of the first name.
            line = line.removeprefix("\ufeff")
            append(line)
            yield line
            break
        for line in rest:
            append(line)
            yield line

    # strict: text after a closing quote or a quote left open at end of file is an error
    # instead of being silently glued into the field (possibly swallowing the rest of the file).
    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    try:
        header = next(filter(None, reader), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _csv_error(name, reader, exc, encoding) from exc
    raw.clear()
    if header is None:
        raise SourceError(f"{name}: the file is empty; expected a header row")
    # A header ending in blank names: those columns are left out where empty (the
    # row reader's alone: the file is not pyarrow's to read, the bool returned).
    named = _unnamed_tail(header)
    rows = _csv_rows(reader, raw, name, delimiter, null | {""}, encoding)
    if named == len(header):
        return _named_row_names(header), rows, True
    return _named_row_names(header[:named]), _without_unnamed_tail(rows, named), False


def _csv_rows(
    reader: Any,
    raw: list[str],
    name: str,
    delimiter: str,
    nulls: frozenset[str],
    encoding: str = "utf-8",
) -> Iterator[tuple[str | None, ...]]:
    # Empty lines come back as [] and are dropped; ragged rows are passed through for
    # the consumer to reject one by one.
    # Without tokens, `"" in row` (an equality test per field) is cheaper than a set
    # test (a hash per field).
    only_empty = nulls == _EMPTY_ONLY
    disjoint = nulls.isdisjoint
    clear = raw.clear
    try:
        for row in reader:
            if ("" in row) if only_empty else not disjoint(row):
                yield _with_nulls(row, "".join(raw), nulls, delimiter)
            elif row:
                yield tuple(row)
            clear()
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _csv_error(name, reader, exc, encoding) from exc
    except _READ_ERRORS as exc:
        raise _read_error(name, exc, f"after line {reader.line_num}") from exc


_EMPTY_ONLY = frozenset({""})


def _with_nulls(
    row: list[str], record: str, nulls: frozenset[str], delimiter: str
) -> tuple[str | None, ...]:
    """``row`` with its unquoted null spellings (and empty fields) as None."""
    if '"' not in record:
        return tuple([None if v in nulls else v for v in row])
    quoted = _quoted_fields(record, delimiter)
    quoted += [False] * (len(row) - len(quoted))
    return tuple(None if v in nulls and not q else v for v, q in zip(row, quoted, strict=False))


def _quoted_fields(record: str, delimiter: str) -> list[bool]:
    """For each field of one CSV record (as the csv module reads it, strict, with
    doubled quotes), whether it was quoted. Used only for records holding a quote."""
    end = len(record.rstrip("\r\n"))
    flags: list[bool] = []
    i = 0
    while True:
        if i < end and record[i] == '"':
            flags.append(True)
            j = i + 1
            while True:
                k = record.find('"', j)
                if k < 0 or k >= end:
                    return flags  # unterminated: the reader has already refused it
                if record.startswith('""', k) and k + 1 < end:
                    j = k + 2
                    continue
                break
            i = k + 1
        else:
            flags.append(False)
        d = record.find(delimiter, i)
        if d < 0 or d >= end:
            return flags
        i = d + 1


def _csv_error(name: str, reader: Any, exc: Exception, encoding: str = "utf-8") -> SourceError:
    line = reader.line_num
    if isinstance(exc, UnicodeDecodeError):
        return _decode_error(name, line, exc, encoding)
    hint = ""
    if "unexpected end of data" in str(exc):
        hint = " (a quoted field may be missing its closing quote)"
    return SourceError(f"{name}, line {line}: malformed CSV: {exc}{hint}")


# What to do about text that is not UTF-8 (the command's option; see open_source).
_ENCODING_HINT = (
    "; re-encode the file as UTF-8, or pass --encoding with its encoding (a spreadsheet's "
    "export is often cp1252)"
)


def _decode_error(
    name: str, lines_read: int, exc: UnicodeDecodeError, encoding: str = "utf-8"
) -> SourceError:
    """Bytes that are not UTF-8, named by their line and shown as Latin-1 reads them
    (the usual other encoding). Text is decoded a chunk at a time: ``exc.object`` is
    the chunk after the ``lines_read`` lines the reader has taken (and the start of
    the line it was reading), so the lines before the bad byte are counted in it. Bytes
    that another ``encoding`` cannot decode are named with theirs."""
    data, start = exc.object, exc.start
    bad = data[start : exc.end]
    if encoding.startswith(("utf-16", "utf-32")):  # (no byte-wise lines to count)
        return SourceError(f"{name}, after line {lines_read}: not valid {encoding} ({bad!r})")
    line = lines_read + 1 + data.count(b"\n", 0, start)
    if encoding not in ("utf-8", "utf-8-sig"):
        return SourceError(f"{name}, line {line}: not valid {encoding} ({bad!r})")
    begin = max(data.rfind(b"\n", 0, start) + 1, start - 20)
    end = data.find(b"\n", start)
    end = min(len(data) if end < 0 else end, exc.end + 20)
    around = data[begin:end].decode("latin-1").strip()
    return SourceError(
        f"{name}, line {line}: not valid UTF-8 ({exc.reason}: {bad!r}, "
        f"{around!r} if read as Latin-1){_ENCODING_HINT}"
    )


# R's write.csv and pandas' to_csv (by default) write the row names, the index, as a
# first column under an empty name. It is loaded under the name RSQLite's dbWriteTable
# gives row names.
ROW_NAMES_COLUMN = "row_names"


def _named_row_names(header: list[str]) -> list[str]:
    """``header`` with an empty first name (and others after it) named ROW_NAMES_COLUMN."""
    if len(header) > 1 and header[0] == "":
        return [ROW_NAMES_COLUMN, *header[1:]]
    return header


def _unnamed_tail(header: list[str]) -> int:
    """How many of ``header``'s names stand before the blank ones it ends with (a
    spreadsheet's CSV export writes ``a,b,c,,`` for columns it once saw used): those
    columns are left out where their fields are empty (``_without_unnamed_tail``)."""
    named = len(header)
    while named > 1 and not header[named - 1].strip():
        named -= 1
    # (a header of blank names only is refused as it is)
    return named if any(name.strip() for name in header[:named]) else len(header)


def _without_unnamed_tail(
    rows: Iterator[tuple[str | None, ...]], named: int
) -> Iterator[tuple[str | None, ...]]:
    """Rows without their fields under a header's unnamed last columns where those are
    all empty (or a null spelling); a row with a value there keeps it, and is then
    rejected for its width: the value is not dropped."""
    for row in rows:
        if len(row) > named and all(v is None for v in row[named:]):
            row = row[:named]
        yield row


def _check_columns(name: str, columns: list[str], what: str) -> None:
    blank = [i + 1 for i, column in enumerate(columns) if not column.strip()]
    if blank:
        positions = ", ".join(str(i) for i in blank)
        raise SourceError(f"{name}: {what} has a blank column name at position {positions}")
    seen: set[str] = set()
    duplicates: list[str] = []
    for column in columns:
        if column in seen and column not in duplicates:
            duplicates.append(column)
        seen.add(column)
    if duplicates:
        names = ", ".join(repr(column) for column in duplicates)
        raise SourceError(f"{name}: {what} has duplicate column names: {names}")


# -- JSON Lines --------------------------------------------------------------------------

# One decoder for the whole file: json.loads(..., parse_float=...) builds a new decoder
# (and scanner) on every call. Decimal keeps money exact; parse_constant makes NaN and
# Infinity Decimals too, so no float slips through.
_JSON_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal)


# Field separators that CSV files are written with: besides the comma, a European
# spreadsheet's CSV uses semicolons (its decimal point being a comma).
_SEPARATORS = (",", ";", "\t", "|")


def _one_name_header(name: str, columns: list[str], separator: str) -> None:
    """A header of one name holding another separator than ``separator`` (a comma file
    read as TSV, a semicolon one as CSV) is a file read with the wrong one: refused,
    naming the separator to pass, instead of a table of one column whose rows are then
    all rejected."""
    if len(columns) != 1:
        return
    for other in _SEPARATORS:
        if other != separator and other in columns[0]:
            shown, used = (_shown_separator(s) for s in (other, separator))
            raise SourceError(
                f"{name}: the header {columns[0]!r} is one column name holding '{shown}'; "
                f"if the fields are separated by '{shown}', pass --delimiter '{shown}'"
                + {"\t": " (or --format tsv)", ",": " (or --format csv)"}.get(other, "")
                + f"; --delimiter '{used}' reads it as one column"
            )


def _shown_separator(separator: str) -> str:
    return "\\t" if separator == "\t" else separator


def _jsonl_rows(stream: BinaryIO, name: str, encoding: str = "utf-8") -> Iterator[dict[str, Any]]:
    decode = _JSON_DECODER.decode
    lineno = 0
    utf8 = encoding == "utf-8"
    # UTF-8 lines are split as bytes and decoded one at a time so a UTF-8 error is pinned
    # to its exact line; another encoding (UTF-16 has no byte-wise lines) is decoded as
    # the lines are read.
    lines: Iterable[Any] = stream if utf8 else io.TextIOWrapper(stream, encoding=encoding)
    try:
        for lineno, raw_line in enumerate(lines, 1):
            try:
                line = raw_line.decode("utf-8") if utf8 else raw_line
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                obj = decode(line)
            except json.JSONDecodeError as exc:
                # Blank lines fail to parse too; testing for them only here keeps the
                # common path free of an extra strip().
                if not raw_line.strip():
                    continue
                raise SourceError(
                    f"{name}, line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
                ) from exc
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{name}, line {lineno}: not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start}){_ENCODING_HINT}"
                ) from exc
            except RecursionError as exc:
                raise SourceError(f"{name}, line {lineno}: JSON nested too deeply") from exc
            if type(obj) is not dict:
                raise SourceError(
                    f"{name}, line {lineno}: expected a JSON object, got {_json_kind(obj)}"
                )
            yield obj
    except UnicodeDecodeError as exc:  # (another encoding: read ahead of the line)
        raise SourceError(
            f"{name}, after line {lineno}: not valid {encoding} ({exc.reason})"
        ) from exc
    except _READ_ERRORS as exc:
        raise _read_error(name, exc, f"after line {lineno}") from exc


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


# -- Parquet -----------------------------------------------------------------------------


def _open_parquet(path: str, *, arrow: bool = False) -> Source:
    if path.lower().endswith(".gz"):
        raise SourceError(
            f"{path}: gzip-compressed Parquet is not supported (Parquet needs random access "
            "and compresses its data itself); decompress it first"
        )
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError("reading Parquet needs pyarrow: pip install 'bulkops[parquet]'") from None

    try:
        total_bytes = os.stat(path).st_size
    except FileNotFoundError:
        raise SourceError(f"no such file: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from exc
    if os.path.isdir(path):
        raise SourceError(f"{path} is a directory, not a file")

    with ExitStack() as stack:
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
        stack.callback(parquet.close)
        columns = list(parquet.schema_arrow.names)
        _check_columns(path, columns, "schema")
        total_rows = parquet.metadata.num_rows
        progress = _ParquetProgress(total_bytes, total_rows)
        batches = None
        if arrow:
            rows: Iterator[Any] = iter(())
            batches = pa.RecordBatchReader.from_batches(
                parquet.schema_arrow,
                _parquet_batches(parquet, path, progress, pa.ArrowException),
            )
        else:
            rows = _parquet_rows(parquet, path, progress, pa.ArrowException)
        source = Source(
            format="parquet",
            columns=columns,
            rows=rows,
            total_bytes=total_bytes,
            progress=progress.bytes_read,
            resources=stack.pop_all(),
            batches=batches,
        )
    return source


class _ParquetProgress:
    """pyarrow reads the file itself, so bytes are estimated from the share of rows read."""

    def __init__(self, total_bytes: int, total_rows: int) -> None:
        self.total_bytes = total_bytes
        self.total_rows = total_rows
        self.rows_read = 0
        self.done = False

    def bytes_read(self) -> int:
        if self.done or self.total_rows <= 0:
            return self.total_bytes if self.done else 0
        return min(self.total_bytes, self.total_bytes * self.rows_read // self.total_rows)


def _parquet_batches(
    parquet: Any,
    name: str,
    progress: _ParquetProgress,
    arrow_error: type[Exception],
) -> Iterator[Any]:
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            progress.rows_read += batch.num_rows
            yield batch
    except (arrow_error, OSError) as exc:
        raise SourceError(f"{name}: cannot read Parquet data ({exc})") from exc
    progress.done = True


def _parquet_rows(
    parquet: Any,
    name: str,
    progress: _ParquetProgress,
    arrow_error: type[Exception],
) -> Iterator[tuple[Any, ...]]:
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            progress.rows_read += batch.num_rows
            # Column-wise to_pylist plus zip is several times faster than
            # batch.to_pylist(), which builds a dict per row.
            yield from zip(*[column_values(column) for column in batch.columns], strict=True)
    except (arrow_error, OSError) as exc:
        raise SourceError(f"{name}: cannot read Parquet data ({exc})") from exc
    progress.done = True
