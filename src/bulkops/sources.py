"""Streaming readers for the input files bulkops loads: CSV, TSV, JSON Lines and Parquet.

Every reader is lazy: ``Source.rows`` is a generator and only a buffer's worth of the
file is held at a time, so multi-GB inputs run in flat memory. A ``.gz`` suffix (or the
gzip magic bytes) is decompressed on the fly.

CSV/TSV and Parquet rows are tuples in ``Source.columns`` order rather than dicts: building
a dict per row costs more than the rest of the parse, and the consumer maps columns once.
JSON Lines rows are dicts because each line may carry its own set of keys.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from decimal import Decimal
from itertools import chain, islice
from types import TracebackType
from typing import Any, BinaryIO, cast

from .schema import infer_type

__all__ = [
    "FORMATS",
    "Source",
    "SourceError",
    "file_digest",
    "infer_format",
    "infer_types",
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
_UTF8_BOM = b"\xef\xbb\xbf"
# Larger than io.DEFAULT_BUFFER_SIZE: fewer Python-level read calls through the counter.
_BUFFER_SIZE = 1 << 16
_PARQUET_BATCH_ROWS = 65536
# The stdlib default (128 KiB) rejects ordinary long text fields. Not sys.maxsize: the
# limit is a C long, which is 32 bits on Windows. A limit also bounds the memory a runaway
# quoted field can take before the reader gives up.
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1

# What a read can raise below the parser: I/O failures and corrupt gzip data
# (gzip.BadGzipFile is an OSError; a truncated stream raises EOFError).
_READ_ERRORS = (OSError, EOFError, zlib.error)


class SourceError(ValueError):
    """An input file cannot be opened or parsed. The message is meant for the end user."""


# Rows read to infer a new table's column types.
INFER_SAMPLE_ROWS = 1000


def infer_types(
    columns: Sequence[str] | None, rows: Iterator[Any], sample: int = INFER_SAMPLE_ROWS
) -> tuple[dict[str, str], Iterator[Any]]:
    """``{column: logical type}`` inferred from the first ``sample`` rows, and the rows
    again (none consumed). ``columns``: the names of sequence rows' values; None for
    mappings, whose columns are the union of the sample's keys, in order."""
    taken = list(islice(rows, sample))
    if columns is None:
        names: dict[str, None] = {}
        for row in taken:
            if isinstance(row, Mapping):
                names.update(dict.fromkeys(row))
        cols = list(names)
        values: dict[str, list[Any]] = {c: [r.get(c) for r in taken] for c in cols}
    else:
        cols = list(columns)
        values = {c: [r[i] for r in taken if len(r) > i] for i, c in enumerate(cols)}
    return {c: infer_type(values[c]) for c in cols}, chain(taken, rows)


def file_digest(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of the file's bytes: what identifies an input for a
    resumable load or a sync (``source_id=``), whatever its format or compression."""
    try:
        with open(path, "rb") as f:
            return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as error:
        raise _read_error(os.fspath(path), error) from error


def infer_format(path: str) -> str:
    """The format of ``path`` from its extension, ignoring a trailing ``.gz``.

    Raises SourceError naming the file when the extension is not one bulkops knows.
    """
    name = os.path.basename(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
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

    def __init__(
        self,
        *,
        format: str,
        columns: list[str] | None,
        rows: Iterator[Any],
        total_bytes: int | None,
        progress: Callable[[], int],
        resources: ExitStack,
    ) -> None:
        self.format = format
        self.columns = columns
        self.rows = rows
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


def open_source(path: str, format: str | None = None, *, stdin: BinaryIO | None = None) -> Source:
    """Open ``path`` for streaming.

    ``path`` ``'-'`` reads stdin (``sys.stdin.buffer`` unless ``stdin`` is given) and the
    format then defaults to csv; otherwise the format is inferred from the extension.
    A ``.gz`` suffix, or gzip magic bytes at the start of the data, is decompressed
    transparently.
    """
    from_stdin = path == "-"
    if format is not None:
        fmt = format.lower()
        if fmt not in FORMATS:
            raise SourceError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    elif from_stdin:
        fmt = "csv"
    else:
        fmt = infer_format(path)

    if fmt == "parquet":
        if from_stdin:
            raise SourceError(
                "reading Parquet from stdin is not supported (it needs random access); "
                "pass a file path"
            )
        return _open_parquet(path)

    name = _STDIN_NAME if from_stdin else path
    with ExitStack() as stack:
        total_bytes: int | None
        if from_stdin:
            counter = _CountingReader(stdin if stdin is not None else sys.stdin.buffer)
            total_bytes = None
        else:
            file = _open_file(path)
            stack.callback(file.close)
            total_bytes = os.fstat(file.fileno()).st_size
            counter = _CountingReader(file)
        buffered = io.BufferedReader(counter, buffer_size=_BUFFER_SIZE)
        stack.callback(buffered.close)
        try:
            stream: BinaryIO = buffered
            if path.lower().endswith(".gz") or buffered.peek(2)[:2] == _GZIP_MAGIC:
                stream = cast(BinaryIO, gzip.GzipFile(fileobj=buffered, mode="rb"))
                stack.callback(stream.close)

            columns: list[str] | None
            rows: Iterator[Any]
            if fmt == "jsonl":
                columns = None
                rows = _jsonl_rows(stream, name)
            else:
                columns, rows = _open_csv(stream, name, "\t" if fmt == "tsv" else ",", stack)
        except _READ_ERRORS as exc:
            raise _read_error(name, exc) from exc

        source = Source(
            format=fmt,
            columns=columns,
            rows=rows,
            total_bytes=total_bytes,
            progress=lambda: counter.count,
            resources=stack.pop_all(),
        )
    return source


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
    stream: BinaryIO, name: str, delimiter: str, stack: ExitStack
) -> tuple[list[str], Iterator[tuple[str, ...]]]:
    _raise_field_size_limit()
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    stack.callback(text.close)
    # strict: text after a closing quote or a quote left open at end of file is an error
    # instead of being silently glued into the field (possibly swallowing the rest of the file).
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = next(filter(None, reader), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _csv_error(name, reader, exc) from exc
    if header is None:
        raise SourceError(f"{name}: the file is empty; expected a header row")
    _check_columns(name, header, "header")
    return header, _csv_rows(reader, name)


def _csv_rows(reader: Any, name: str) -> Iterator[tuple[str, ...]]:
    # Empty lines come back as [] and are dropped by filter(None, ...); ragged rows are
    # passed through for the consumer to reject one by one.
    try:
        yield from map(tuple, filter(None, reader))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _csv_error(name, reader, exc) from exc
    except _READ_ERRORS as exc:
        raise _read_error(name, exc, f"after line {reader.line_num}") from exc


def _csv_error(name: str, reader: Any, exc: Exception) -> SourceError:
    line = reader.line_num
    if isinstance(exc, UnicodeDecodeError):
        # Text is decoded a chunk at a time, so only "somewhere after the last good line"
        # is known.
        return SourceError(
            f"{name}: not valid UTF-8 somewhere after line {line} ({exc.reason}); "
            "re-encode the file as UTF-8"
        )
    hint = ""
    if "unexpected end of data" in str(exc):
        hint = " (a quoted field may be missing its closing quote)"
    return SourceError(f"{name}, line {line}: malformed CSV: {exc}{hint}")


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


def _jsonl_rows(stream: BinaryIO, name: str) -> Iterator[dict[str, Any]]:
    decode = _JSON_DECODER.decode
    lineno = 0
    try:
        # Lines are split as bytes and decoded one at a time so a UTF-8 error is pinned to
        # its exact line.
        for lineno, raw_line in enumerate(stream, 1):
            try:
                line = raw_line.decode("utf-8")
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
                    f"{name}, line {lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ) from exc
            except RecursionError as exc:
                raise SourceError(f"{name}, line {lineno}: JSON nested too deeply") from exc
            if type(obj) is not dict:
                raise SourceError(
                    f"{name}, line {lineno}: expected a JSON object, got {_json_kind(obj)}"
                )
            yield obj
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


def _open_parquet(path: str) -> Source:
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
        rows = _parquet_rows(parquet, path, progress, pa.ArrowException)
        source = Source(
            format="parquet",
            columns=columns,
            rows=rows,
            total_bytes=total_bytes,
            progress=progress.bytes_read,
            resources=stack.pop_all(),
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
            yield from zip(*[column.to_pylist() for column in batch.columns], strict=True)
    except (arrow_error, OSError) as exc:
        raise SourceError(f"{name}: cannot read Parquet data ({exc})") from exc
    progress.done = True
