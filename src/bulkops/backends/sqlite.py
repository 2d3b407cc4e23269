"""SQLite backend: the stdlib sqlite3 driver under a SQLAlchemy Engine.

Statements are generated with SQLAlchemy Core once per shape and then run with
``executemany`` on the raw sqlite3 connection; inserts and upserts as multi-row VALUES
statements (a group of rows per execution), the fastest way found to put many rows
into SQLite from Python. Transactions are explicit (``isolation_level=None``):
``BEGIN IMMEDIATE`` takes the write lock up front, so a chunk either gets the
database or fails fast with "database is locked" (retried), instead of failing
half-way through when a read lock cannot be upgraded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import re
import sqlite3
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Context, Decimal, InvalidOperation
from functools import partial
from itertools import chain, repeat
from operator import itemgetter
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.schema import CreateTable

from ..errors import (
    AccessError,
    BulkError,
    BusyError,
    ConstraintError,
    ConversionError,
    DataError,
    ResourceError,
    SchemaError,
)
from ..retry import DEFAULT_RETRY
from ..schema import (
    COERCERS,
    INT64_MAX,
    INT64_MIN,
    ColumnCodec,
    ColumnSpec,
    TableSpec,
    adapted,
    coercer,
    column_type,
    date_from_text,
    datetime_from_text,
    decimal_fits,
    decimal_from_text,
    float_from_text,
    float_keeps,
    int_from_text,
    json_dumps,
    missing_nan,
    plain_decimal,
    plain_value,
    reject_infinite,
    whole_microseconds,
)
from ._sql import (
    SharedSQL,
    count_staged,
    select_where_statement,
    staged_rows_statement,
    within_bounds,
)
from .base import (
    ADJUST_ROWS_PER_CHUNK,
    NO_TIMEOUTS,
    SYNC_STATE_TABLE,
    ArrowTarget,
    CallerConnection,
    Capabilities,
    ChunkCounts,
    Timeouts,
    WriteOp,
    is_transaction_control,
    statement_filter,
    translate_errors,
)

__all__ = ["SQLiteBackend", "SQLiteTracer", "sqlite3_caller"]

NoneType = type(None)

# Decimal columns that bulkops created before 0.x were declared DECIMAL_TEXT (TEXT
# affinity, the exact digits as text). Plain SQL compared those as text ('98.96' >
# '100.04'), so bulkops now creates NUMERIC(p, s) / NUMERIC columns, as the ORMs do,
# and still reads (and writes) DECIMAL_TEXT columns of older tables as they are.
DECIMAL_TEXT = "DECIMAL_TEXT"


def _create_type(kind: str) -> Any:
    """The SQLAlchemy type bulkops creates for a column of ``kind`` (``decimal(p, s)``
    included)."""
    base, precision, scale = column_type(kind)
    if base == "decimal":
        # NUMERIC affinity: SQLite stores INTEGER or REAL, so plain SQL compares,
        # sorts and takes min/max as numbers; the codec keeps the values exact.
        return sa.Numeric(precision, scale)
    return _CREATE_TYPES[base]()


_CREATE_TYPES: dict[str, Callable[[], Any]] = {
    # INTEGER (not BIGINT) so that an INTEGER PRIMARY KEY is the rowid itself.
    "integer": sa.Integer,
    "float": sa.Float,
    "text": sa.Text,
    "bytes": sa.LargeBinary,
    "boolean": partial(sa.Boolean, create_constraint=False),
    "date": sa.Date,
    "datetime": sa.DateTime,
    "json": sa.JSON,
    "any": sa.Text,
}


def logical_type(declared: str) -> str:
    """Our logical type for a declared SQLite column type (affinity rules, refined)."""
    name = declared.upper()
    if not name:
        return "any"
    if DECIMAL_TEXT in name:
        return "decimal"
    if "BOOL" in name:
        return "boolean"
    if "INT" in name:
        return "integer"
    if "DATETIME" in name or "TIMESTAMP" in name:
        return "datetime"
    if name.startswith("DATE"):
        return "date"
    if "JSON" in name:
        return "json"
    if any(t in name for t in ("CHAR", "CLOB", "TEXT", "STRING", "UUID")):
        return "text"
    if "BLOB" in name or "BINARY" in name or "BYTEA" in name:
        return "bytes"
    if any(t in name for t in ("REAL", "FLOA", "DOUB")):
        return "float"
    if any(t in name for t in ("NUMERIC", "DECIMAL", "MONEY", "NUMBER")):
        return "decimal"
    return "any"


# ------------------------------------------------------------------------ codecs


def _real(value: float) -> float | None:
    """A float for a REAL column. SQLite has no NaN (it would store NULL by itself):
    NaN is a missing value here, NULL; infinity is a REAL value and stays."""
    return None if value != value else value


def _encode_decimal_text(value: Any) -> Any:
    # Old DECIMAL_TEXT columns: the exact digits as text.
    if value.__class__ is Decimal:
        return _decimal_text_form(value)
    value = COERCERS["decimal"](value)
    return None if value is None else _decimal_text_form(value)


def _decimal_text_form(value: Decimal) -> str | None:
    if missing_nan(value):
        return None
    reject_infinite(value, "a SQLite decimal column")
    return str(value)


# Every decimal of at most 15 significant digits is exactly the shortest form of one
# 64-bit float (REAL); longer ones only where they happen to be (0.30000000000000004).
REAL_DIGITS = 15
_INT64 = (-(2**63), 2**63 - 1)


def numeric_storage(
    value: Decimal, scale: int | None = None, precision: int | None = None
) -> int | float | None:
    """How a Decimal is stored in a SQLite NUMERIC column, exactly or not at all.

    An integral value within 64 bits is an INTEGER; any other value a REAL where the
    REAL gives it back exactly (always for at most 15 significant digits; for up to 17
    when the value is a float's shortest form). NaN is a missing value (NULL).
    ValueError, saying why, for infinity, for more decimal places than the column's
    ``scale``, more digits than its ``precision``, or digits no REAL holds: bulkops
    never rounds a value to fit.
    """
    if not value.is_finite():
        if value.is_nan():
            return None
        raise ValueError(f"{value} is infinite; a SQLite decimal column holds no infinity")
    if scale is not None:
        decimal_fits(value, scale, precision, f"NUMERIC({precision}, {scale})")
    as_float = float(value)
    if as_float.is_integer():
        integral = int(value)
        if integral == value and _INT64[0] <= integral <= _INT64[1]:
            return integral
    if float_keeps(value):
        return as_float
    # Counted from the digits themselves: normalize() would round to 28 digits.
    significant = len("".join(map(str, value.as_tuple().digits)).strip("0")) or 1
    raise ValueError(
        f"{value} cannot be stored exactly in a SQLite decimal column: it has {significant} "
        f"significant digits and SQLite stores decimals as 64-bit floats (exact to "
        f"{REAL_DIGITS} digits); use a text column, or round it yourself"
    )


def _numeric_encoder(scale: int | None, precision: int | None) -> Callable[[Any], Any]:
    def encode(value: Any) -> Any:
        if value.__class__ is not Decimal:
            value = COERCERS["decimal"](value)
            if value is None:
                return None
        return numeric_storage(value, scale, precision)

    return encode


def _numeric_decimal_encoder(scale: int | None, precision: int | None) -> Callable[[Any], Any]:
    # A Decimal straight to its stored form: one call per value on the hot path of
    # dict rows (numeric_storage costs about three times as much).
    limit = None if precision is None or scale is None else 10.0 ** (precision - scale)

    def encode(value: Decimal) -> Any:
        # Written out plainly in at most 15 digits ("1.2340", "-0.5"; not "1E+2" or
        # "NaN"): the nearest REAL gives the same decimal back (DBL_DIG is 15), so it
        # is stored without Decimal arithmetic; anything else takes the long way.
        text = str(value)
        point = text.find(".")
        if (
            point >= 0
            and len(text) <= 16
            and "E" not in text
            and (scale is None or len(text) - point - 1 <= scale)
        ):
            as_float = float(text)
            if limit is None or -limit < as_float < limit:
                return as_float if not as_float.is_integer() else int(as_float)
        return numeric_storage(value, scale, precision)

    return encode


# A decimal literal with a point and at least one digit, ASCII digits only ("98.96",
# "-3.", ".5"); group 1 is the fractional part.
_PLAIN_DECIMAL = re.compile(r"[-+]?(?=\.?[0-9])[0-9]*\.([0-9]*)").fullmatch


def _numeric_text_encoder(scale: int | None, precision: int | None) -> Callable[[str], Any]:
    # CSV text straight to its stored form: one call per value on the hot path.
    limit = None if precision is None or scale is None else 10.0 ** (precision - scale)

    def encode(value: str) -> Any:
        # The common CSV shape ("98.96", "10.00", "-3.5"): at most 15 digits with a
        # point, so the nearest REAL gives the same decimal back exactly (DBL_DIG is
        # 15). Stored without Decimal arithmetic; anything else takes the long way.
        if len(value) <= 16 and (plain := _PLAIN_DECIMAL(value)) is not None:
            as_float = float(value)
            if scale is None or (
                len(plain.group(1)) <= scale and (limit is None or -limit < as_float < limit)
            ):
                return as_float if not as_float.is_integer() else int(as_float)
        number: Decimal | None
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = decimal_from_text(value)
        return None if number is None else numeric_storage(number, scale, precision)

    return encode


def _decimal_text(value: str) -> Any:
    # CSV text straight to its stored form (old DECIMAL_TEXT columns).
    try:
        number = Decimal(value)
    except InvalidOperation:
        return adapted(decimal_from_text, _decimal_text_form)(value)
    # '1e2' is stored as 100, not as the text '1E+2'.
    return _decimal_text_form(plain_decimal(number) if "e" in value or "E" in value else number)


def _ascii_lower(name: str) -> str:
    """``name`` as SQLite compares names: ASCII letters without case, others as they are."""
    return "".join(c.lower() if c.isascii() else c for c in name)


def _datetime_storage(value: dt.datetime) -> str:
    """A datetime as SQLite stores it: its own text form ("2024-01-01 10:00:00", what
    ``datetime()`` gives and SQLAlchemy, Django and sample databases like Chinook
    store), so rows bulkops writes compare and sort with the rows already there."""
    return value.isoformat(" ")


def _micro_storage(value: dt.datetime) -> str:
    """A datetime as SQLAlchemy's SQLite DATETIME stores it: six digits of
    microseconds, and the wall-clock time of an aware value (its offset dropped)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def _stored_text(store: Callable[[dt.datetime], str]) -> Callable[[str], Any]:
    """Timestamp text as ``store`` keeps it: read by ``fromisoformat`` where it can (a
    nonzero part of a microsecond refused, not cut), else by ``datetime_from_text``."""
    slow = adapted(datetime_from_text, store)

    def convert(value: str) -> Any:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return slow(value)
        # (26 characters or fewer hold no 7th fractional digit: one len, no call)
        return store(parsed if len(value) <= 26 else whole_microseconds(value, parsed))

    return convert


_micro_text = _stored_text(_micro_storage)
_datetime_text = _stored_text(_datetime_storage)


def _decode_decimal(value: Any) -> Any:
    if value is None or value.__class__ is Decimal:
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def _decode_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _decode_bool(value: Any) -> Any:
    return value if value is None else bool(value)


def _decode_date(value: Any) -> Any:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _decode_datetime(value: Any) -> Any:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _differs(kind: str, a: Any, b: Any) -> int:
    """``bulkops_differs(kind, a, b)``: 1 where two stored values differ as data."""
    if a is None or b is None:
        return int(a is not b)
    try:
        if kind == "decimal":
            return int(_decode_decimal(a) != _decode_decimal(b))
        if kind == "datetime":
            return int(_decode_datetime(a) != _decode_datetime(b))
    except (ValueError, TypeError, ArithmeticError):
        pass  # not comparable as data (e.g. naive against aware): they differ
    return int(a != b)


def _decimal_add(a: Any, b: Any, as_text: int) -> Any:
    """``bulkops_decimal_add(a, b, as_text)``: a + b in Decimal arithmetic, stored as
    a NUMERIC column stores it (or as text, for DECIMAL_TEXT columns)."""
    if a is None or b is None:
        return None
    total = _decode_decimal(a) + _decode_decimal(b)
    return str(total) if as_text else numeric_storage(total)


def _adapt_any(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return _decimal_text_form(value)
    if isinstance(value, dt.datetime):
        return _datetime_storage(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json_dumps(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, float):
        return _real(value)
    plain = plain_value(value)
    if plain is not value:
        return None if plain is None else _adapt_any(plain)
    raise ValueError(f"{type(value).__name__} value cannot be stored in SQLite")


def _uuid_hex(value: Any) -> str | None:
    """A UUID as Django's UUIDField and SQLAlchemy's Uuid store it in SQLite: its 32
    hex digits in a CHAR(32) column; anything else as any text column takes it."""
    if isinstance(value, uuid.UUID):
        return value.hex
    text: str | None = COERCERS["text"](value)
    return text


# The column ORMs make for a UUID in SQLite (no uuid type): CHAR(32), 32 hex digits.
_UUID_HEX = re.compile(r"\s*char\s*\(\s*32\s*\)\s*", re.IGNORECASE)
_UUID_HEX_CODEC = ColumnCodec(frozenset({str, NoneType}), _uuid_hex)


_CODECS: dict[str, ColumnCodec] = {
    "integer": ColumnCodec(
        frozenset({int, NoneType}), COERCERS["integer"], fast={str: int_from_text}
    ),
    # An int beyond 64 bits is no INTEGER for sqlite3 ("Python int too large"): it
    # takes the coercion, to the nearest float, as its text would.
    "float": ColumnCodec(
        frozenset({int, NoneType}),
        coercer("float", _real),
        fast={float: _real, str: adapted(float_from_text, _real)},
        bounds=(INT64_MIN, INT64_MAX),
    ),
    # Old tables' DECIMAL_TEXT columns (see DECIMAL_TEXT); NUMERIC ones: _numeric_codec.
    "decimal_text": ColumnCodec(
        frozenset({NoneType}),
        _encode_decimal_text,
        _decode_decimal,
        fast={Decimal: _decimal_text_form, str: _decimal_text},
    ),
    "text": ColumnCodec(frozenset({str, NoneType}), COERCERS["text"]),
    "bytes": ColumnCodec(frozenset({bytes, NoneType}), coercer("bytes", bytes)),
    "boolean": ColumnCodec(frozenset({bool, NoneType}), coercer("boolean", int), _decode_bool),
    "date": ColumnCodec(
        frozenset({NoneType}),
        coercer("date", dt.date.isoformat),
        _decode_date,
        fast={dt.date: dt.date.isoformat, str: adapted(date_from_text, dt.date.isoformat)},
    ),
    "datetime": ColumnCodec(
        frozenset({NoneType}),
        coercer("datetime", _datetime_storage),
        _decode_datetime,
        fast={
            dt.datetime: _datetime_storage,
            str: _datetime_text,
        },
    ),
    "json": ColumnCodec(frozenset({NoneType}), coercer("json", json_dumps), _decode_json),
    "any": ColumnCodec(frozenset({int, str, bytes, NoneType}), _adapt_any),
}

# ColumnSpec.fixed_micro: a SQLAlchemy model's DateTime column.
_MICRO_DATETIME_CODEC = ColumnCodec(
    frozenset({NoneType}),
    coercer("datetime", _micro_storage),
    _decode_datetime,
    fast={dt.datetime: _micro_storage, str: _micro_text},
)


def _codec_of(column: ColumnSpec) -> ColumnCodec:
    """The column's codec (``SQLiteBackend.codec``): by its logical type, and for text
    and decimals by what it was declared as."""
    if column.type == "text" and _UUID_HEX.fullmatch(column.declared):
        return _UUID_HEX_CODEC
    if column.type == "decimal":
        if DECIMAL_TEXT in column.declared.upper():
            return _CODECS["decimal_text"]
        return _numeric_codec(*_decimal_size(column))
    if column.type == "datetime" and column.fixed_micro:
        return _MICRO_DATETIME_CODEC
    return _CODECS[column.type]


def _arrow_bound(
    column: ColumnSpec, array: Any
) -> tuple[Any, Callable[[list[Any]], list[Any]] | None]:
    """One checked Arrow column (``columnar.py``) as what ``write`` binds (what the row
    path's codec makes of the same values), in two steps: an Arrow array, converted
    in C for the whole batch, and the step (if any) that still turns its Python
    values into the bound ones one at a time (``_arrow_rows`` takes a slice at a
    time)."""
    kind = column.type
    typ = array.type
    if kind == "decimal" and DECIMAL_TEXT not in column.declared.upper():
        scale, precision = _decimal_size(column)
        if precision is None or precision > REAL_DIGITS:
            # Text would be converted by NUMERIC affinity to a REAL of 15 digits,
            # rounding longer values: the row path's codec stores them exactly or
            # refuses them.
            encode = _numeric_codec(scale, precision).encode
            return array, lambda values: [None if v is None else encode(v) for v in values]
    if (kind == "date" or (kind == "decimal" and getattr(typ, "scale", 99) <= 6)) and str(
        typ
    ).startswith(("date32", "decimal")):
        # Arrow's text of a date32, or of a decimal of scale up to 6, is exactly
        # date.isoformat() / str(Decimal): cast in C.
        return array.cast("string"), None
    if kind == "datetime" and str(typ) in ("timestamp[us]", "timestamp[us, tz=UTC]"):
        # _datetime_storage in C: Arrow writes "2024-01-01 00:00:01.000000";
        # isoformat(" ") leaves out zero microseconds and spells UTC "+00:00".
        # (A UTC column is cast as naive: Arrow's cast through a zone is slow.)
        import pyarrow.compute as pc

        utc = typ.tz is not None
        naive = array.view("timestamp[us]") if utc else array
        if column.fixed_micro:
            return naive.cast("string"), None  # _micro_storage in C
        # (Arrow's microsecond() is the microseconds within the millisecond: 0.5 s
        # gives 0 there, so the whole fraction is what is asked.)
        if pc.all(pc.equal(pc.subsecond(naive), 0)).as_py() is not False:
            text = naive.cast("timestamp[s]").cast("string")  # no fractions to drop
        else:
            text = pc.replace_substring_regex(naive.cast("string"), r"\.000000$", "")
        if utc:
            text = pc.binary_join_element_wise(text, "+00:00", "")
        return text, None
    if kind in ("integer", "text", "bytes", "float", "boolean"):
        return array, None
    if kind == "decimal" and str(typ) == "string" and DECIMAL_TEXT in column.declared.upper():
        # Plain decimal text (a CSV's) that str(Decimal(text)) gives back unchanged (no
        # leading zero, no exponent) is what _decimal_text stores: kept, checked in C.
        import pyarrow.compute as pc

        plain = pc.match_substring_regex(array, r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")
        if pc.all(plain).as_py() is not False:
            return array, None
    codec = _codec_of(column)
    passthrough, encode = codec.passthrough, codec.encode
    return array, lambda values: [v if v.__class__ in passthrough else encode(v) for v in values]


# Inserts (and upserts) are sent as multi-row VALUES statements of this many values
# (at most _GROUP_ROWS rows; fewer where SQLite's bound-parameter limit is lower), one
# executemany of them per chunk: executemany pays per execution (a reset, a step with
# the GIL let go and taken back, the bindings cleared), so one execution per group of
# rows instead of per row binds the same values for about 40% less CPU (measured on
# 200,000 rows of 8 values: 0.34 s one row per execution, 0.21 s 256 rows; no faster
# past about 2,000 values). SQLite before 3.8.8 capped a VALUES list at 500 rows.
_GROUP_VALUES = 2048
_GROUP_ROWS = 500
_VALUES_KINDS = frozenset({"insert", "insert_ignore", "upsert"})

# Rows made from Arrow a slice at a time while executemany binds them: the values are
# still in the CPU's cache when bound, and each slice's objects are freed (and their
# memory reused) before the next is made.
_ARROW_SLICE_ROWS = 1024


_Bound = Sequence[tuple[Any, Callable[[list[Any]], list[Any]] | None]]


def _arrow_rows(bound: _Bound) -> Any:
    """The rows of ``_arrow_bound`` columns as tuples, made a slice at a time."""
    n = len(bound[0][0]) if bound else 0
    for start in range(0, n, _ARROW_SLICE_ROWS):
        columns = []
        for ready, finish in bound:
            values = ready.slice(start, _ARROW_SLICE_ROWS).to_pylist()
            columns.append(values if finish is None else finish(values))
        yield from zip(*columns, strict=True)


def _arrow_flat(bound: _Bound, start: int, count: int) -> list[Any]:
    """``count`` rows of ``_arrow_bound`` columns from ``start``, as one flat list of
    their values row after row (what a multi-row VALUES statement binds): each
    column's values are put in place by one slice assignment, with no tuple per row."""
    width = len(bound)
    flat: list[Any] = [None] * (count * width)
    for j, (ready, finish) in enumerate(bound):
        values = ready.slice(start, count).to_pylist()
        flat[j::width] = values if finish is None else finish(values)
    return flat


def _arrow_groups(bound: _Bound, rows: int, per: int) -> Iterator[list[Any]]:
    """The first ``rows`` rows (a multiple of ``per``) of ``_arrow_bound`` columns as
    the parameters of ``per``-row VALUES statements, made a slice at a time."""
    size = per * len(bound)
    step = per * max(1, _ARROW_SLICE_ROWS // per)
    for start in range(0, rows, step):
        flat = _arrow_flat(bound, start, min(step, rows - start))
        for i in range(0, len(flat), size):
            yield flat[i : i + size]


# ------------------------------------------------------------- tracing statements

_EXECUTES = frozenset({"execute", "executemany", "executescript"})


class SQLiteTracer:
    """SQLite's statement tracer (``StatementTracer``), for a ``sqlite3`` connection, a
    SQLAlchemy Connection on one, or a SQLAlchemy Engine of SQLite (every connection
    it hands out during the block, bulkops' own included).

    Counted per call the application makes: once per ``execute()``, once per
    ``executemany()`` however many rows it carries, once per statement of an
    ``executescript()``. How depends on whether the connection's class can still be
    chosen (a sqlite3 connection's cannot be changed once it is made):

    - connections an Engine opens during the block are made of subclasses that report
      each call (the SQL as given). One Python call per statement: cheap enough for
      ``bulkops bench`` to count inside its clock.
    - connections already open (a sqlite3 or SQLAlchemy Connection, a Backend's, an
      Engine's pooled ones) keep their class. SQLite's trace hook reports a statement
      each time it starts running, with its values filled in: once per row of an
      ``executemany()``, again for statements run by triggers, and the sqlite3
      module's implicit BEGIN. So a profile hook (``sys.setprofile``, the block's
      thread only) notes each call of an execute method on such a connection or its
      cursors, and only the first statement traced after the call is counted (all of
      an ``executescript()``). Statements sent from other threads are not seen; with
      ``include_transaction_control`` the implicit BEGIN is reported too.
    """

    def __init__(self, handle: object) -> None:
        if isinstance(handle, sa.Connection):
            handle = handle.connection.driver_connection
        if not isinstance(handle, sqlite3.Connection | sa.Engine):
            raise TypeError(f"not a sqlite3 connection or a SQLite Engine: {handle!r}")
        self.handle = handle

    @contextmanager
    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> Iterator[None]:
        hooks = _CallHooks(on_statement, include_transaction_control)
        if isinstance(self.handle, sa.Engine):
            with _engine_traced(self.handle, hooks):
                yield
            return
        hooks.add(self.handle)
        try:
            yield
        finally:
            hooks.close()


class _CallHooks:
    """Open connections traced with SQLite's trace hook and a profile hook, in the
    thread that made this (see ``SQLiteTracer``)."""

    def __init__(self, on_statement: Callable[[str], None], include: bool) -> None:
        self.on_statement = on_statement
        self.include = include
        self.owner = threading.get_ident()
        self.conns: dict[int, sqlite3.Connection] = {}
        self.pending: str | None = None  # the execute method called last, until traced

    def add(self, conn: sqlite3.Connection) -> None:
        if threading.get_ident() != self.owner or id(conn) in self.conns:
            return
        if not self.conns:
            if sys.getprofile() is not None:
                raise RuntimeError(
                    "counting statements on a sqlite3 connection needs sys.setprofile, and "
                    "a profiler is already active in this thread"
                )
            sys.setprofile(self.profile)
        self.conns[id(conn)] = conn
        conn.set_trace_callback(self.trace)

    def discard(self, conn: sqlite3.Connection) -> None:
        if self.conns.pop(id(conn), None) is None:
            return
        conn.set_trace_callback(None)
        if not self.conns and threading.get_ident() == self.owner:
            sys.setprofile(None)

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self.discard(conn)

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "c_call":
            return
        target = getattr(arg, "__self__", None)
        if isinstance(target, sqlite3.Cursor):
            target = target.connection
        if target is not None and self.conns.get(id(target)) is target:
            name = arg.__name__
            self.pending = name if name in _EXECUTES else None

    def trace(self, statement: str) -> None:
        if threading.get_ident() != self.owner or self.pending is None:
            return  # another thread, a row of an executemany, or a trigger's statement
        if is_transaction_control(statement):
            # e.g. the implicit BEGIN before the statement itself: that one stays pending
            if self.include:
                self.on_statement(statement)
            return
        if self.pending != "executescript":
            self.pending = None
        self.on_statement(statement)


@contextmanager
def _engine_traced(engine: sa.Engine, hooks: _CallHooks) -> Iterator[None]:
    """Every connection ``engine`` hands out in the block: new ones made traced, pooled
    ones hooked while checked out (see ``SQLiteTracer``)."""
    report = statement_filter(hooks.on_statement, include_transaction_control=hooks.include)
    sinks = [report]
    made: dict[type[sqlite3.Connection], type[sqlite3.Connection]] = {}

    def do_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        base = cparams.get("factory", sqlite3.Connection)
        if base not in made:
            made[base] = _traced_connection(base, sinks)
        cparams["factory"] = made[base]

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if type(dbapi_conn) in made.values():
            dbapi_conn.traced = True  # from here: not SQLAlchemy's first-connect queries
        else:
            hooks.add(dbapi_conn)

    def checkin(dbapi_conn: Any, record: Any) -> None:
        if type(dbapi_conn) in made.values():
            dbapi_conn.traced = False
        hooks.discard(dbapi_conn)

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("do_connect", do_connect),
        ("checkout", checkout),
        ("checkin", checkin),
    ]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        yield
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)
        sinks.clear()  # connections made traced stay in the pool: they go quiet
        hooks.close()


def _script_statements(script: str) -> Iterator[str]:
    """The statements of an ``executescript()`` script, as SQLite splits them."""
    start = 0
    for end, char in enumerate(script, 1):
        if char == ";" and sqlite3.complete_statement(script[start:end]):
            statement = script[start:end].strip()
            if statement != ";":
                yield statement
            start = end
    if script[start:].strip():
        yield script[start:].strip()


def _traced_connection(
    base: type[sqlite3.Connection], sinks: list[Callable[[str], None]]
) -> type[sqlite3.Connection]:
    """A subclass of ``base`` whose execute methods (its cursors' too) hand each
    statement to ``sinks`` while the connection is ``traced`` (checked out)."""

    def report(cursor: sqlite3.Cursor, sql: str) -> None:
        conn = cursor.connection
        if isinstance(conn, TracedConnection) and conn.traced:
            for sink in list(sinks):
                sink(sql)

    class TracedCursor(sqlite3.Cursor):
        def execute(self, sql: str, parameters: Any = (), /) -> Self:
            report(self, sql)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> Self:
            report(self, sql)
            return super().executemany(sql, parameters)

        def executescript(self, script: str, /) -> sqlite3.Cursor:
            for statement in _script_statements(script):
                report(self, statement)
            return super().executescript(script)

    class TracedConnection(base):  # type: ignore[valid-type, misc]
        traced = False

        # Connection.execute() and friends do not go through cursor() in C, so each
        # is routed through a traced cursor here.
        def cursor(self, factory: Any = TracedCursor) -> Any:
            return super().cursor(factory)

        def execute(self, sql: str, parameters: Any = (), /) -> Any:
            return self.cursor().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> Any:
            return self.cursor().executemany(sql, parameters)

        def executescript(self, script: str, /) -> Any:
            return self.cursor().executescript(script)

    return TracedConnection


# --------------------------------------------------------------------- the backend


_SIZE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def _decimal_size(column: ColumnSpec) -> tuple[int | None, int | None]:
    """(scale, precision) of a NUMERIC(p, s) column (INTEGER or REAL storage in
    SQLite); NUMERIC(p) has scale 0; a NUMERIC without them has neither."""
    found = _SIZE.search(column.declared)
    if found is None:
        return None, None
    return int(found.group(2) or 0), int(found.group(1))


def _numeric_codec(scale: int | None, precision: int | None) -> ColumnCodec:
    """A NUMERIC column's codec: values stored exactly as INTEGER or REAL
    (``numeric_storage``) and read back as Decimals at the column's scale, so 12.3
    comes back as Decimal("12.30") and float noise never reaches money."""
    key = (scale, precision)
    codec = _NUMERIC_CODECS.get(key)
    if codec is None:
        quantum = None if scale is None else Decimal(1).scaleb(-scale)

        def decode(value: Any) -> Any:
            number = _decode_decimal(value)
            if quantum is None or number is None or not number.is_finite():
                return number
            return number.quantize(quantum, context=_WIDE)

        encode = _numeric_encoder(scale, precision)
        codec = ColumnCodec(
            frozenset({NoneType}),
            encode,
            decode,
            fast={
                Decimal: _numeric_decimal_encoder(scale, precision),
                str: _numeric_text_encoder(scale, precision),
            },
        )
        _NUMERIC_CODECS[key] = codec
    return codec


# Quantizing a REAL's digits (at most 17 significant, any magnitude) to a scale needs
# more than the default 28 digits of precision for large values.
_WIDE = Context(prec=400)

_NUMERIC_CODECS: dict[tuple[int | None, int | None], ColumnCodec] = {}


class _NotAllApplied(Exception):
    """An adjust chunk in which some key was not applied: rolled back to its savepoint,
    then done again by the statements that say which keys were missing or refused."""


def _sa_table(table: TableSpec) -> sa.TableClause:
    return sa.table(table.name, *(sa.column(c) for c in table.columns))


def _binds(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"w{i}": v for i, v in enumerate(values.values())}


# What compiles statements on a caller's connection (no Engine): SQLite's own.
_DIALECT = SQLiteDialect_pysqlite(paramstyle="qmark")

_COLUMN_IN_MESSAGE = re.compile(r"constraint failed: (?P<cols>[^\s,]+(?:, [^\s,]+)*)")

# A CHECK's refusal says "CHECK constraint failed: " and then the column (a column's
# own unnamed CHECK), the constraint's name, or the expression as written (a table's
# unnamed CHECK: Synapse's "Lock='X'").
_CHECK_FAILED = "CHECK constraint failed: "
# The identifiers in an expression ("quoted", [bracketed], `backticked` or bare), once
# its string literals are taken out.
_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|\[([^\]]+)\]|`((?:[^`]|``)+)`|\b([A-Za-z_]\w*)\b')
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
# Parentheses, and the quoted text whose parentheses do not count.
_PARENTHESES = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\[[^\]]*\]|`(?:[^`]|``)*`|[()]")


def _check_expression(create_sql: str, name: str) -> str | None:
    """The expression of the CHECK named ``name`` in a CREATE TABLE statement."""
    quoted = r"[\"`\[]?" + re.escape(name) + r"[\"`\]]?"
    found = re.search(rf"CONSTRAINT\s+{quoted}\s+CHECK\s*\(", create_sql, re.IGNORECASE)
    if found is None:
        return None
    depth, start = 1, found.end()
    for token in _PARENTHESES.finditer(create_sql, start):
        depth += {"(": 1, ")": -1}.get(token.group(), 0)
        if not depth:
            return create_sql[start : token.start()]
    return None


def check_column(table: TableSpec, refused: str, create_sql: str) -> str | None:
    """The column a CHECK's refusal is about (``refused``: what follows "CHECK
    constraint failed: "), or None where its expression uses no column or several:
    SQLite names a column's own CHECK by the column, else the constraint's name (its
    expression read from ``create_sql``) or the expression itself."""
    names = {c.lower(): c for c in table.columns}
    if refused.lower() in names:
        return names[refused.lower()]
    expression = _check_expression(create_sql, refused) or refused
    used = {
        names[word.lower()]
        for match in _IDENTIFIER.finditer(_STRING_LITERAL.sub("", expression))
        for word in (next(g for g in match.groups() if g is not None),)
        if word.lower() in names
    }
    return used.pop() if len(used) == 1 else None


# Columns, then the columns of each full (not partial) unique index, of one table in
# one statement: every verb reflects its table, so this is on every call. The third
# part says whether the database keeps sync state (writes must then invalidate it);
# the last lists the tables whose foreign keys a write to this one can break (itself,
# if it has any, and the tables whose keys point at it), with their CREATE TABLE.
_REFLECT = """
SELECT 0, x.name, x.type, x."notnull", x.dflt_value, x.pk, x.hidden, x.cid, 0
  FROM pragma_table_xinfo(?) AS x
UNION ALL
SELECT 1, l.name, i.name, i.coll, NULL, NULL, NULL, l.seq, i.seqno
  FROM pragma_index_list(?) AS l JOIN pragma_index_xinfo(l.name) AS i
 WHERE l."unique" AND NOT l.partial AND i.key
UNION ALL
SELECT 2, name, NULL, NULL, NULL, NULL, NULL, 0, 0
  FROM sqlite_schema WHERE type = 'table' AND name = ?
UNION ALL
SELECT 3, m.name, m.sql, NULL, NULL, NULL, NULL, 0, 0
  FROM sqlite_schema AS m
 WHERE m.type = 'table' AND EXISTS (
       SELECT 1 FROM pragma_foreign_key_list(m.name) AS f
        WHERE m.name = ? COLLATE NOCASE OR f."table" = ? COLLATE NOCASE)
ORDER BY 1, 8, 9
"""

# A foreign key SQLite checks at COMMIT, not at the end of its statement (Django
# declares every one so). Read from the CREATE TABLE: pragma_foreign_key_list does not
# say it. A false match only costs a check.
_INITIALLY_DEFERRED = re.compile(r"\bINITIALLY\s+DEFERRED\b", re.IGNORECASE)


# SQLite's collations as ColumnSpec folds (RTRIM or an application-defined one is not
# mirrored: "collation").
_COLLATION_FOLDS = {"BINARY": "", "NOCASE": "ascii"}


def sqlite3_caller(conn: object) -> CallerConnection:
    """A caller's sqlite3 connection: bulkops joins the transaction open on it."""
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"not a sqlite3 connection: {conn!r}")
    return CallerConnection(
        vendor="sqlite",
        driver=lambda: conn,
        in_transaction=lambda: conn.in_transaction,
        describe="the sqlite3 connection",
    )


class _CallerCursors:
    """Statements sent through a caller's cursors (``CallerConnection.cursor``: a
    framework's, which see and count them), its pending changes synced first; the
    subset of ``sqlite3.Connection`` the backend uses."""

    def __init__(self, caller: CallerConnection, backend: SQLiteBackend) -> None:
        self._caller = caller
        self._backend = backend
        self._formats: dict[str, str] = {}

    def _cursor(self) -> Any:
        self._caller.sync()
        if self._caller.cursor:
            self._backend.conn  # noqa: B018 (a new driver connection gets our function)
            return self._caller.cursor()
        return self._backend.conn.cursor()

    def _format(self, sql: str) -> str:
        """A framework's cursors take "format" placeholders (Django's turn ``%s`` back
        into ``?`` for sqlite3, and log the statement with ``sql % params``)."""
        if not self._caller.cursor:
            return sql
        converted = self._formats.get(sql)
        if converted is None:
            converted = self._formats[sql] = sql.replace("%", "%%").replace("?", "%s")
        return converted

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        cursor = self._cursor()
        if parameters:
            cursor.execute(self._format(sql), parameters)
        else:  # sent as it is (a framework's cursor converts nothing without parameters)
            cursor.execute(sql)
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        cursor = self._cursor()
        rows = parameters if isinstance(parameters, list) else list(parameters)
        cursor.executemany(self._format(sql), rows)
        return cursor


class SQLiteBackend(SharedSQL):
    """A Backend over one sqlite3 connection: checked out of a SQLAlchemy Engine, or
    the caller's own (``caller``), whose transaction it joins while one is open."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        *,
        owns_engine: bool = False,
        caller: CallerConnection | None = None,
    ) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self.caller = caller
        self._pooled: Any = None
        if caller is not None:
            driver = caller.driver()
            if not isinstance(driver, sqlite3.Connection):
                raise TypeError(f"{caller.describe} is not a sqlite3 connection: {driver!r}")
            conn = driver
        else:
            assert engine is not None
            self._pooled = engine.raw_connection()
            conn = self._pooled.driver_connection
            assert isinstance(conn, sqlite3.Connection)
        self._conn: sqlite3.Connection = conn
        # Where statements go: the connection itself, or the caller's cursors.
        self.sql: sqlite3.Connection | _CallerCursors = conn
        self._saved_isolation = conn.isolation_level
        if caller is None:
            conn.isolation_level = None  # we issue BEGIN/COMMIT ourselves
        else:
            # Setting isolation_level would COMMIT the caller's open transaction: the
            # caller's setting stays. Explicit BEGIN/COMMIT work under either.
            self.sql = _CallerCursors(caller, self)
        conn.create_function("bulkops_differs", 3, _differs, deterministic=True)
        conn.create_function("bulkops_decimal_add", 3, _decimal_add, deterministic=True)
        self.dialect: sa.Dialect = engine.dialect if engine is not None else _DIALECT
        self.statements = 0
        self.retries = 0  # never re-sends on its own: chunks are retried whole
        self.retry = DEFAULT_RETRY
        self.lock_timeout: float | None = None  # the default of calls that set none
        self._applied_lock_timeout: float | None = None
        self._savepoint_depth = 0
        self._own_open = False  # a transaction bulkops began is open
        # Tables whose rows broke a deferred foreign key before the last write checked
        # (``_checked``): the next write reads what broke them first, not after.
        self._orphaned: set[str] = set()
        self._sql: dict[tuple[Any, ...], tuple[str, list[int] | None]] = {}
        self.capabilities = Capabilities(
            name="sqlite",
            max_params=conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER),
            adjust_rows_per_chunk=ADJUST_ROWS_PER_CHUNK,
            transactions=True,
            parallel_writes=False,  # one writer at a time: SQLite's database-wide lock
            one_writer=True,
            decimal_digits=REAL_DIGITS,
            float_nan=False,  # SQLite turns NaN into NULL: bulkops does so explicitly
            columnar=importlib.util.find_spec("pyarrow") is not None,
        )

    def caller_transaction(self) -> bool:
        return self.caller is not None and self.caller.in_transaction()

    @property
    def conn(self) -> sqlite3.Connection:
        """The driver connection: a caller's may be replaced between calls (a
        framework reconnects), so it is asked for each time."""
        if self.caller is None:
            return self._conn
        conn: sqlite3.Connection = self.caller.driver()
        if conn is not self._conn:
            conn.create_function("bulkops_differs", 3, _differs, deterministic=True)
            conn.create_function("bulkops_decimal_add", 3, _decimal_add, deterministic=True)
            self._conn = conn
            self._applied_lock_timeout = None
        return conn

    # ----------------------------------------------------------------- schema

    def reflect(self, table: str) -> TableSpec:
        with self._errors():
            found = self.sql.execute(
                _REFLECT, (table, table, SYNC_STATE_TABLE, table, table)
            ).fetchall()
            info = [r[1:7] for r in found if r[0] == 0]
            if not info:
                raise SchemaError(self._no_such_table(table))
            columns: dict[str, ColumnSpec] = {}
            pk: list[tuple[int, str]] = []
            for name, declared, notnull, default, pk_pos, hidden in info:
                if hidden:  # generated columns cannot be written
                    continue
                kind = logical_type(declared or "")
                rowid = pk_pos == 1 and (declared or "").upper() == "INTEGER"
                columns[name] = ColumnSpec(
                    name=name,
                    type=kind,
                    nullable=not notnull,
                    declared=declared or "",
                    has_default=default is not None or rowid,
                )
                if pk_pos:
                    pk.append((pk_pos, name))
            indexes: dict[str, list[Any]] = {}
            for _, index_name, column, collation in (r[:4] for r in found if r[0] == 1):
                indexes.setdefault(index_name, []).append(column)
                fold = _COLLATION_FOLDS.get((collation or "BINARY").upper(), "collation")
                if column in columns and fold:
                    # A key compared NOCASE: "A" and "a" are one key here.
                    columns[column] = dataclasses.replace(columns[column], fold=fold)
            # An index on an expression has a NULL column name: it is no key.
            unique = [tuple(cols) for cols in indexes.values() if None not in cols]
        return TableSpec(
            name=table,
            columns=columns,
            primary_key=tuple(name for _, name in sorted(pk)),
            unique=tuple(unique),
            extra={
                "sync_state": any(r[0] == 2 for r in found),
                # the tables with INITIALLY DEFERRED foreign keys a write here can break
                "deferred_foreign_keys": tuple(
                    r[1] for r in found if r[0] == 3 and _INITIALLY_DEFERRED.search(r[2] or "")
                ),
            },
        )

    def _no_such_table(self, table: str) -> str:
        names = [
            r[0]
            for r in self.sql.execute(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        known = f"; tables here: {', '.join(names)}" if names else "; the database has no tables"
        return f"no such table {table!r}{known}"

    def create_table(self, table: str, columns: Mapping[str, str], key: Sequence[str]) -> TableSpec:
        # SQLite's names ignore the case of ASCII letters: say which two clash rather
        # than "duplicate column name".
        folded: dict[str, str] = {}
        for name in columns:
            other = folded.setdefault(_ascii_lower(name), name)
            if other != name:
                raise SchemaError(
                    f"columns {other!r} and {name!r} differ only in case, which SQLite "
                    "does not tell apart in names; rename one of them"
                )
        sa_table = sa.Table(
            table,
            sa.MetaData(),
            *(sa.Column(name, _create_type(kind)) for name, kind in columns.items()),
            # The key's columns in the order given (not the columns' order).
            *([sa.PrimaryKeyConstraint(*key)] if key else []),
        )
        ddl = str(CreateTable(sa_table).compile(dialect=self.dialect))
        with self._errors():
            self.sql.execute(ddl)
        return self.reflect(table)

    def codec(self, column: ColumnSpec) -> ColumnCodec:
        return _codec_of(column)

    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> AbstractContextManager[None]:
        """Every statement this backend sends meanwhile (``SQLiteTracer``: its
        connection is open, so from this thread only)."""
        return SQLiteTracer(self.conn).trace_statements(
            on_statement, include_transaction_control=include_transaction_control
        )

    # ----------------------------------------------------------- transactions

    def fork(self) -> SQLiteBackend:
        raise NotImplementedError("SQLite has one writer at a time: no parallel writes")

    def prepare(self, op: WriteOp) -> None:
        return None

    def begin(self, timeouts: Timeouts = NO_TIMEOUTS) -> None:
        with self._errors():
            lock = timeouts.lock if timeouts.lock is not None else self.lock_timeout
            if lock != self._applied_lock_timeout:
                # SQLite's lock wait is its busy timeout.
                ms = int((lock if lock is not None else 5.0) * 1000)
                self.sql.execute(f"PRAGMA busy_timeout = {ms}")
                self._applied_lock_timeout = lock
            self.sql.execute("BEGIN IMMEDIATE")
        self._own_open = True

    def last_commit_succeeded(self) -> bool | None:
        return None  # an embedded database does not lose its connection mid-COMMIT

    def commit(self) -> None:
        with self._errors():
            self.sql.execute("COMMIT")
        self._own_open = False

    def rollback(self) -> None:
        self._own_open = False
        if self.conn.in_transaction:
            with self._errors():
                self.sql.execute("ROLLBACK")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if not self.conn.in_transaction and self.caller_transaction():
            # The caller's transaction is open above the driver, which has not sent
            # BEGIN yet (SQLAlchemy on sqlite3 begins at the first write): begin it
            # now, or an outermost SAVEPOINT's RELEASE would commit. It stays the
            # caller's to commit or roll back.
            with self._errors():
                self.sql.execute("BEGIN")
        self._savepoint_depth += 1
        name = f"bulkops_{self._savepoint_depth}"
        try:
            with self._errors():
                self.sql.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    with self._errors():
                        self.sql.execute(f"ROLLBACK TO {name}")
                        self.sql.execute(f"RELEASE {name}")
                raise
            with self._errors():
                self.sql.execute(f"RELEASE {name}")
        finally:
            self._savepoint_depth -= 1

    # ----------------------------------------------------------------- writes

    def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        return self._named(op, partial(self._checked, op, partial(self._write, op, rows)))

    def _named(self, op: WriteOp, send: Callable[[], ChunkCounts]) -> ChunkCounts:
        """``send()``, its CHECK refusal naming the column the CHECK is about (or
        none), never the constraint's name or its expression."""
        try:
            return send()
        except ConstraintError as error:
            if error.code != "SQLITE_CONSTRAINT_CHECK" or _CHECK_FAILED not in error.message:
                raise
            refused = error.message.split(_CHECK_FAILED, 1)[1]
            with self._errors():
                found = self.sql.execute(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?",
                    (op.table.name,),
                ).fetchone()
            error.column = check_column(op.table, refused, found[0] if found else "")
            raise

    def _write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        n = len(rows)
        if not n:
            return ChunkCounts()
        sql, order = self._statement(op)
        params: Sequence[tuple[Any, ...]] = rows
        if order is not None:
            pick = itemgetter(*order)
            params = [pick(r) for r in rows] if len(order) > 1 else [(pick(r),) for r in rows]
        existing = self._count_existing(op, rows) if op.kind in ("upsert", "update") else 0
        with self._errors():
            if op.kind in _VALUES_KINDS:
                changed = self._insert_grouped(sql, params)
            else:
                self.statements += 1
                changed = self.sql.executemany(sql, params).rowcount
        if op.kind == "insert":
            return ChunkCounts(inserted=n)
        if op.kind == "insert_ignore":
            return ChunkCounts(inserted=changed, ignored=n - changed)
        if op.kind == "upsert":
            inserted = n - existing
            if not op.set_columns:
                return ChunkCounts(inserted=changed, unchanged=n - changed)
            updated = changed - inserted
            return ChunkCounts(inserted=inserted, updated=updated, unchanged=existing - updated)
        if op.kind == "update":
            return ChunkCounts(
                updated=changed, unchanged=existing - changed, not_found=n - existing
            )
        if op.kind == "delete":
            return ChunkCounts(deleted=changed, not_found=n - changed)
        raise ValueError(f"unknown write kind {op.kind!r}")

    def arrow_target(self, column: ColumnSpec) -> ArrowTarget:
        # SQLite keeps what it is given: no widths, no lengths, times as given; NaN
        # cannot be stored (it would become NULL). A NUMERIC(p, s) column holds what the
        # row path's codec lets in: at most s places and p digits, and beyond 15
        # significant digits only what a REAL gives back exactly (``numeric_storage``).
        if column.type == "decimal" and DECIMAL_TEXT not in column.declared.upper():
            scale, precision = _decimal_size(column)
            digits = REAL_DIGITS if precision is None or precision > REAL_DIGITS else None
            return ArrowTarget(
                column.type, precision=precision, scale=scale, nan=False, digits=digits
            )
        if column.type == "datetime" and column.naive_utc:
            return ArrowTarget(column.type, timezone="naive", nan=False)
        return ArrowTarget(column.type, nan=False)

    def write_arrow(self, op: WriteOp, batch: Any) -> ChunkCounts:
        """The batch's rows as tuples built a column at a time, then ``write``
        (executemany): measured faster than ADBC's SQLite ingest, which would also need
        a connection (and a transaction) of its own."""
        bound = [
            _arrow_bound(op.table.columns[name], array)
            for name, array in zip(op.columns, batch.columns, strict=True)
        ]
        n = batch.num_rows
        return self._named(op, partial(self._checked, op, partial(self._write_bound, op, bound, n)))

    def _write_bound(self, op: WriteOp, bound: _Bound, n: int) -> ChunkCounts:
        if op.kind == "insert" and n:
            sql, order = self._statement(op)
            per = self._group_rows(len(op.columns))
            grouped = self._values_sql(sql, len(op.columns), per) if order is None else None
            if grouped is not None:
                # Nothing to count first: the values stream into executemany a group at
                # a time, made a slice at a time (no tuple per row, no list of them all).
                full = n - n % per
                with self._errors():
                    if full:
                        self.statements += 1
                        self.sql.executemany(grouped, _arrow_groups(bound, full, per))
                    if full < n:
                        rest = self._values_sql(sql, len(op.columns), n - full)
                        assert rest is not None
                        self.statements += 1
                        self.sql.execute(rest, _arrow_flat(bound, full, n - full))
                return ChunkCounts(inserted=n)
        return self._write(op, list(_arrow_rows(bound)))

    def _checked(self, op: WriteOp, send: Callable[[], ChunkCounts]) -> ChunkCounts:
        """``send()`` (the write of ``op``), then the deferred foreign keys it broke
        checked now, not at COMMIT: SQLite checks an INITIALLY DEFERRED key (every one
        Django makes) only when the transaction commits, after every statement of the
        chunk succeeded, so one orphan row failed the whole call. What the write broke
        is raised as a statement's error inside the chunk: the bad rows are isolated
        and named like any other.

        ``PRAGMA foreign_key_check`` after the write finds nothing almost always: one
        scan of each table with such keys the write can break. When it finds rows,
        they may be older than the write (written while enforcement was off): the
        write is undone to the savepoint taken before it, what broke the keys then is
        read, and the write is sent again; only what it added is the call's. (Later
        writes to such a table read that first, and are sent once.) In a
        caller's transaction the keys are checked at the caller's COMMIT, as for its
        own writes."""
        # PRAGMA defer_foreign_keys defers the other keys too, but only until the
        # transaction ends: it can be on only in a transaction of the caller's.
        tables: tuple[str, ...] = op.table.extra.get("deferred_foreign_keys", ())
        if not tables or self.caller_transaction():
            return send()
        with self._errors():
            (enforced,) = self.sql.execute("PRAGMA foreign_keys").fetchone()
        if not enforced:
            return send()
        with self.savepoint():
            if not self._orphaned.intersection(tables):
                counts = send()
                if not any(self._violations(name) for name in tables):
                    return counts
                with self._errors():  # undone; the savepoint stays open
                    self.sql.execute(f"ROLLBACK TO bulkops_{self._savepoint_depth}")
            before = {name: self._violations(name) for name in tables}
            # Where rows broke a key before, the next write reads them first instead.
            self._orphaned.difference_update(tables)
            self._orphaned.update(name for name in tables if before[name])
            rewrites = op.kind in ("upsert", "update")
            # A table WITHOUT ROWID gives no rowids: its rows are not told apart.
            orphans = {
                name: self._orphans(name)
                for name in tables
                if rewrites and before[name] and all(v[0] is not None for v in before[name])
            }
            counts = send()
            for name in tables:
                self._check_deferred(op, name, before[name], orphans.get(name, {}))
            return counts

    def _violations(self, table: str) -> Counter[tuple[Any, ...]]:
        """``PRAGMA foreign_key_check(table)``: (rowid, parent table, key id) of each
        row of ``table`` whose foreign key finds no parent (a table WITHOUT ROWID gives
        NULL rowids, hence counted)."""
        self.statements += 1
        with self._errors():
            found = self.sql.execute("SELECT * FROM pragma_foreign_key_check(?)", (table,))
            return Counter((rowid, parent, fkid) for _, rowid, parent, fkid in found)

    def _orphans(self, table: str) -> dict[Any, tuple[Any, ...]]:
        """The rows of ``table`` that break a foreign key, by rowid."""
        ident = self.dialect.identifier_preparer.quote(table)
        self.statements += 1
        with self._errors():
            found = self.sql.execute(
                f"SELECT rowid, * FROM {ident} "
                "WHERE rowid IN (SELECT rowid FROM pragma_foreign_key_check(?))",
                (table,),
            )
            return {row[0]: tuple(row[1:]) for row in found}

    def _foreign_key(self, table: str, fkid: int) -> list[tuple[str, str | None]]:
        """(column, referenced column) of foreign key ``fkid`` of ``table``."""
        with self._errors():
            return [
                (child, parent)
                for child, parent in self.sql.execute(
                    'SELECT "from", "to" FROM pragma_foreign_key_list(?) WHERE id = ? ORDER BY seq',
                    (table, fkid),
                )
            ]

    def _check_deferred(
        self,
        op: WriteOp,
        name: str,
        before: Counter[tuple[Any, ...]],
        orphans: dict[Any, tuple[Any, ...]],
    ) -> None:
        """Raise what ``op``'s write broke of table ``name``'s foreign keys, which broke
        ``before`` it in those ``orphans`` rows: new violations, and an orphan row the
        write rewrote with the key's columns (SQLite's COMMIT counts it too)."""
        found = self._violations(name)
        new = found - before
        own_table = _ascii_lower(name) == _ascii_lower(op.table.name)
        if not new and orphans and own_table and op.kind in ("upsert", "update"):
            now = self._orphans(name)
            rewritten = {rowid for rowid, values in now.items() if orphans.get(rowid) != values}
            written = set(op.set_columns)
            keys = {
                fkid
                for fkid in {v[2] for v in found}
                if any(c in written for c, _ in self._foreign_key(name, fkid))
            }
            new = Counter(v for v in found if v[0] in rewritten and v[2] in keys)
        if not new:
            return
        _, parent, fkid = next(iter(new))
        pairs = self._foreign_key(name, fkid)
        own = ", ".join(child for child, _ in pairs)
        # A key declared without columns references the parent's primary key.
        referenced = ", ".join(to for _, to in pairs if to)
        if not referenced and _ascii_lower(parent) == _ascii_lower(op.table.name):
            referenced = ", ".join(op.table.primary_key)
        # A write to the child names its column; a delete of the parent, the parent's.
        column = own if own_table else referenced or None
        raise ConstraintError(
            f"FOREIGN KEY constraint failed: {name}({own}) references "
            f"{parent}({referenced}), a key checked at COMMIT",
            code="SQLITE_CONSTRAINT_FOREIGNKEY",
            column=column,
        )

    def _group_rows(self, width: int) -> int:
        """Rows per multi-row VALUES statement for rows ``width`` values wide."""
        limit = self.capabilities.max_params or _GROUP_VALUES
        return max(1, min(_GROUP_ROWS, _GROUP_VALUES // width, limit // width))

    def _values_sql(self, sql: str, width: int, rows: int) -> str | None:
        """``sql``, an INSERT of one row of ``width`` values, as an INSERT of ``rows``
        rows (the same statement with its VALUES row repeated); None if ``sql`` does not
        have exactly one such VALUES row."""
        # Kept for the full groups' size only: a chunk's rest has a size of its own.
        cache_key = ("values", sql, rows)
        cached = self._sql.get(cache_key)
        if cached is not None:
            return cached[0]
        one = f"VALUES ({', '.join('?' * width)})"
        if sql.count(one) != 1 or sql.count("?") != width:
            return None
        grouped = sql.replace(one, "VALUES " + ", ".join([one[7:]] * rows))
        if rows == self._group_rows(width):
            self._sql[cache_key] = (grouped, None)
        return grouped

    def _insert_grouped(self, sql: str, params: Sequence[tuple[Any, ...]]) -> int:
        """Send INSERT ``sql`` (one row) for every row of ``params`` as multi-row VALUES
        statements: one executemany of full groups, one statement for the rest. The
        number of rows the statements changed (as executemany's rowcount would be)."""
        n = len(params)
        width = len(params[0])
        per = self._group_rows(width)
        grouped = self._values_sql(sql, width, per) if n > 1 and per > 1 else None
        if grouped is None:
            self.statements += 1
            changed: int = self.sql.executemany(sql, params).rowcount
            return changed
        flat = list(chain.from_iterable(params))
        size = per * width
        full = (n - n % per) * width
        changed = 0
        if full:
            self.statements += 1
            groups = [flat[i : i + size] for i in range(0, full, size)]
            changed += self.sql.executemany(grouped, groups).rowcount
        if full < len(flat):
            rest = self._values_sql(sql, width, (len(flat) - full) // width)
            assert rest is not None
            self.statements += 1
            changed += self.sql.execute(rest, flat[full:]).rowcount
        return changed

    def _statement(self, op: WriteOp) -> tuple[str, list[int] | None]:
        """SQL for ``op`` and, when its parameters are not in ``op.columns`` order, the
        positions to pick them from each row."""
        cache_key = (op.kind, op.table.name, op.columns, op.key, op.update_columns)
        cached = self._sql.get(cache_key)
        if cached is not None:
            return cached
        t = sa.table(op.table.name, *(sa.column(c) for c in op.table.columns))
        stmt: Any
        if op.kind in ("insert", "insert_ignore", "upsert"):
            stmt = sqlite_insert(t)
            if op.kind == "insert_ignore" or (op.kind == "upsert" and not op.set_columns):
                stmt = stmt.on_conflict_do_nothing()
            elif op.kind == "upsert":
                # The WHERE leaves rows whose values did not change untouched: no write,
                # no change counted, so they are reported as unchanged.
                stmt = stmt.on_conflict_do_update(
                    index_elements=list(op.key),
                    set_={c: stmt.excluded[c] for c in op.set_columns},
                    where=sa.or_(
                        *(t.c[c].is_distinct_from(stmt.excluded[c]) for c in op.set_columns)
                    ),
                )
            compiled = stmt.compile(dialect=self.dialect, column_keys=list(op.columns))
        elif op.kind == "update":
            if not op.set_columns:
                raise SchemaError("update() needs at least one column besides the key")
            values: dict[str, Any] = {
                c: sa.bindparam(f"v{op.columns.index(c)}") for c in op.set_columns
            }
            stmt = (
                sa.update(t)
                .where(*(t.c[k] == sa.bindparam(f"v{op.columns.index(k)}") for k in op.key))
                .where(sa.or_(*(t.c[c].is_distinct_from(values[c]) for c in op.set_columns)))
                .values(values)
            )
            compiled = stmt.compile(dialect=self.dialect)
        elif op.kind == "delete":
            stmt = sa.delete(t).where(
                *(t.c[k] == sa.bindparam(f"v{op.columns.index(k)}") for k in op.key)
            )
            compiled = stmt.compile(dialect=self.dialect)
        else:
            raise ValueError(f"unknown write kind {op.kind!r}")
        positions = compiled.positiontup or []
        if op.kind in ("insert", "insert_ignore", "upsert"):
            order = [op.columns.index(p) for p in positions]
        else:
            order = [int(p[1:]) for p in positions]
        result = (str(compiled), None if order == list(range(len(op.columns))) else order)
        self._sql[cache_key] = result
        return result

    def _count_existing(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> int:
        """How many of the rows' keys are already in the table (one SELECT per
        parameter-limit's worth of keys), so writes can report inserted vs updated."""
        positions = [op.columns.index(k) for k in op.key]
        pick = itemgetter(*positions)
        per = (
            max(1, self.capabilities.max_params // len(positions))
            if self.capabilities.max_params
            else len(rows)
        )
        total = 0
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            sql = self._in_query(op.table, op.key, None, len(part))
            if len(positions) == 1:
                params = [pick(r) for r in part]
            else:
                params = [v for r in part for v in pick(r)]
            self.statements += 1
            with self._errors():
                total += self.sql.execute(sql, params).fetchone()[0]
        return total

    def _in_query(
        self, table: TableSpec, key: tuple[str, ...], columns: tuple[str, ...] | None, n: int
    ) -> str:
        """SELECT count(*) (columns=None) or the columns, for rows whose key is one of
        n given keys."""
        cache_key = ("in", table.name, key, columns)
        cached = self._sql.get(cache_key)
        if cached is None:
            # Compiled once per shape with an expanding bind; only the placeholder list
            # depends on n. (Compiling n bind parameters costs ~0.07 s per 10,000.)
            t = sa.table(table.name, *(sa.column(c) for c in table.columns))
            target = t.c[key[0]] if len(key) == 1 else sa.tuple_(*(t.c[k] for k in key))
            what = [sa.func.count()] if columns is None else [t.c[c] for c in columns]
            stmt = (
                sa.select(*what)
                .select_from(t)
                .where(target.in_(sa.bindparam("keys", expanding=True)))
            )
            cached = (str(stmt.compile(dialect=self.dialect)), None)
            self._sql[cache_key] = cached
        one = "?" if len(key) == 1 else f"({', '.join('?' * len(key))})"
        return cached[0].replace("__[POSTCOMPILE_keys]", ", ".join([one] * n))

    # ------------------------------------------------------------------ reads

    def read(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        keys: Sequence[Any],
    ) -> Iterator[tuple[Any, ...]]:
        if not keys:
            return iter(())
        sql = self._in_query(table, key, columns, len(keys))
        params = list(keys) if len(key) == 1 else [v for k in keys for v in k]
        self.statements += 1
        with self._errors():
            rows: list[tuple[Any, ...]] = self.sql.execute(sql, params).fetchall()
        return iter(rows)

    # ------------------------------------------------------------- bookkeeping

    def execute_core(
        self,
        statement: sa.ClauseElement,
        values: Mapping[str, Any] | None = None,
        *,
        counted: bool = False,
        binary: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run a SQLAlchemy Core statement or DDL in whatever transaction is open and
        return its rows. Not counted in ``statements`` (which counts the work asked
        for) unless ``counted``: bulkops' own tables (the run log) are bookkeeping.
        ``binary``: results in binary format (PostgreSQL; SQLite has only one)."""
        compiled: Any = statement.compile(dialect=self.dialect)
        params: list[Any] = []
        if not isinstance(statement, sa.schema.ExecutableDDLElement):
            bound = compiled.construct_params(dict(values or {}))
            params = [bound[n] for n in compiled.positiontup or []]
        if counted:
            self.statements += 1
        with self._errors():
            cursor = self.sql.execute(str(compiled), params)
            return cursor.fetchall() if cursor.description else []

    def plain_blobs(self, table: str, column: str) -> None:
        """SQLite does not compress values."""

    def core_table(self, table: TableSpec) -> sa.TableClause:
        """The table for SQLAlchemy Core statements."""
        return _sa_table(table)

    def distinct(self, column: ColumnSpec, a: Any, b: Any) -> Any:
        """SQL that is true where two values of ``column`` differ as data: decimals
        stored as text compare as numbers ("2" and "2.0" agree), datetimes as instants
        (whatever their UTC offset); everything else with ``IS NOT``."""
        if column.type in ("decimal", "datetime"):
            return sa.and_(a.is_distinct_from(b), sa.func.bulkops_differs(column.type, a, b) == 1)
        return a.is_distinct_from(b)

    def load_stage(
        self,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        types: Mapping[str, str],
    ) -> None:
        """Insert driver-ready ``rows`` into the temporary table ``stage`` (sync)."""
        quote = self.dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(stage)} ({', '.join(map(quote, columns))}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        self.statements += 1
        with self._errors():
            self.sql.executemany(sql, rows)

    def finish_stage(self, stage: str) -> None:
        """A staged table is complete (SQLite's planner needs nothing more)."""

    def publish_stage(
        self, stage: str, op: WriteOp, order: Sequence[str]
    ) -> tuple[ChunkCounts, int]:
        """Read the stage's winning rows back (one statement) and write them with
        ``op`` a chunk at a time: SQLite has no statement that upserts from a table
        and still tells inserted, updated and unchanged rows apart."""
        key = op.key if op.kind == "upsert" else ()
        total = count_staged(self, stage)
        self.statements += 1
        rows = self.execute_core(staged_rows_statement(stage, op.columns, key, order))
        size = max(1, (self.capabilities.max_params or 999) // max(1, len(op.columns)))
        counts = ChunkCounts()
        for start in range(0, len(rows), size):
            counts += self.write(op, rows[start : start + size])
        return counts, total - len(rows)

    # ------------------------------------------------------------- primitives

    def _run(
        self,
        stmt: Any,
        values: Mapping[str, Any],
        *,
        prefix: tuple[str, list[Any]] = ("", []),
    ) -> sqlite3.Cursor:
        """Compile a SQLAlchemy statement and run it with ``values`` for its binds
        (after ``prefix``: SQL text such as a WITH clause, and its parameters)."""
        compiled = stmt.compile(dialect=self.dialect)
        params = compiled.construct_params(dict(values))
        self.statements += 1
        text, first = prefix
        with self._errors():
            return self.sql.execute(
                text + str(compiled), [*first, *(params[n] for n in compiled.positiontup or [])]
            )

    def select_where(
        self,
        table: TableSpec,
        columns: tuple[str, ...],
        where: Mapping[str, Any],
        *,
        order_by: tuple[str, ...] = (),
        limit: int | None = None,
        lock: bool = False,
    ) -> list[tuple[Any, ...]]:
        # lock: the caller's BEGIN IMMEDIATE already holds the database's write lock.
        stmt, binds = select_where_statement(_sa_table(table), columns, where, order_by, limit)
        return self._run(stmt, binds).fetchall()

    def insert_returning(
        self, table: TableSpec, values: Mapping[str, Any], conflict: tuple[str, ...]
    ) -> tuple[Any, ...] | None:
        t = _sa_table(table)
        names = list(values)
        stmt = (
            sqlite_insert(t)
            .values({c: sa.bindparam(f"w{i}") for i, c in enumerate(names)})
            .on_conflict_do_nothing(index_elements=list(conflict))
            .returning(*(t.c[c] for c in table.columns))
        )
        row: tuple[Any, ...] | None = self._run(stmt, _binds(values)).fetchone()
        return row

    def adjust(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        column: str,
        keys: Sequence[Any],
        deltas: Sequence[Any],
        min_value: Any,
        max_value: Any,
    ) -> tuple[list[Any], list[Any]]:
        # One prepared guarded UPDATE run for every key (executemany: sqlite3 loops in C,
        # in-process, no statement to parse per chunk). Its row count says whether every
        # key was applied; if not, the chunk is rolled back to a savepoint (cheap on
        # SQLite) and done again by the statements that tell which keys were missing
        # and which refused. The database's write lock is held throughout.
        quote = self.dialect.identifier_preparer.quote
        target = table.column(column)
        col = quote(column)
        result = f"{col} + ?"
        if target.type == "decimal":
            # Decimal arithmetic, not REAL (10.00 + 0.10 ten times is 11.00, not
            # 10.999999999999996), stored the way the column's codec stores values.
            as_text = int(DECIMAL_TEXT in target.declared.upper())
            result = f"bulkops_decimal_add({col}, ?, {as_text})"
        where = [f"{quote(k)} = ?" for k in key]
        # Plain ? placeholders (a framework's cursor turns them into %s): each guard
        # binds the delta again, then its bound.
        guards: list[Any] = []
        for bound, op in ((min_value, ">="), (max_value, "<=")):
            if bound is not None:
                where.append(f"{result} {op} ?")
                guards += [deltas, repeat(bound)]
        update = f"UPDATE {quote(table.name)} SET {col} = {result} WHERE {' AND '.join(where)}"
        width = len(key)
        columns = [keys] if width == 1 else list(zip(*keys, strict=True))
        params = zip(deltas, *columns, *guards, strict=False)
        try:
            with self.savepoint():
                self.statements += 1
                with self._errors():
                    changed = self.sql.executemany(update, params).rowcount
                if changed != len(keys):
                    raise _NotAllApplied
            return [], []
        except _NotAllApplied:
            pass
        rows = [(k, d) if width == 1 else (*k, d) for k, d in zip(keys, deltas, strict=True)]
        found: list[tuple[Any, ...]] = []
        applied: list[tuple[Any, ...]] = []
        step = max(1, (self.capabilities.max_params or 999) // (width + 1))
        for i in range(0, len(rows), step):
            some = self._adjust_rows(table, key, column, rows[i : i + step], min_value, max_value)
            found += some[0]
            applied += some[1]
        as_key = (lambda r: r[0]) if width == 1 else tuple
        found_keys = {as_key(r) for r in found}
        applied_keys = {as_key(r) for r in applied}
        missing = [k for k in keys if k not in found_keys]
        refused = [k for k in keys if k in found_keys and k not in applied_keys]
        return missing, refused

    def _adjust_rows(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        column: str,
        rows: Sequence[tuple[Any, ...]],
        min_value: Any,
        max_value: Any,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """``adjust`` in two statements that say which keys exist and which were
        applied: (keys found, keys applied). The deltas travel in the statements
        themselves (a VALUES list in a WITH clause): no table to fill first."""
        width = len(key)
        name = "bulkops_deltas"
        cols = [f"k{i}" for i in range(width)] + ["delta"]
        one = f"({', '.join('?' * len(cols))})"
        cte = f"WITH {name}({', '.join(cols)}) AS (VALUES {', '.join([one] * len(rows))}) "
        values = [v for row in rows for v in row]
        t = _sa_table(table)
        d = sa.table(name, *(sa.column(c) for c in cols))
        match = [t.c[k] == d.c[f"k{i}"] for i, k in enumerate(key)]
        found = self._run(
            sa.select(*(t.c[k] for k in key)).select_from(t.join(d, sa.and_(*match))),
            {},
            prefix=(cte, values),
        ).fetchall()
        result: Any = t.c[column] + d.c.delta
        target = table.column(column)
        if target.type == "decimal":  # Decimal arithmetic, as in adjust
            as_text = DECIMAL_TEXT in target.declared.upper()
            result = sa.func.bulkops_decimal_add(t.c[column], d.c.delta, int(as_text))
        guards = within_bounds(result, min_value, max_value)
        # The arithmetic happens in the database, under this transaction's write lock.
        stmt = (
            sa.update(t)
            .where(*match, *guards)
            .values({column: result})
            .returning(*(t.c[k] for k in key))
        )
        applied = self._run(stmt, {}, prefix=(cte, values)).fetchall()
        return found, applied

    def allocate(self, sequence: str, count: int, start: int) -> list[int]:
        with self._errors():
            self.sql.execute(
                "CREATE TABLE IF NOT EXISTS bulkops_sequences "
                "(name TEXT PRIMARY KEY, next_value INTEGER NOT NULL)"
            )
            self.statements += 1
            # One statement advances the counter by count: the block is ours alone.
            (end,) = self.sql.execute(
                "INSERT INTO bulkops_sequences (name, next_value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET next_value = next_value + ? "
                "RETURNING next_value",
                (sequence, start + count, count),
            ).fetchone()
        return list(range(end - count, end))

    # ----------------------------------------------------------------- errors

    def _errors(self) -> AbstractContextManager[None]:
        return translate_errors(self.classify_error)

    def classify_error(self, error: BaseException) -> BulkError | None:
        message = str(error)
        code = getattr(error, "sqlite_errorname", None)
        if isinstance(error, sqlite3.IntegrityError):
            match = _COLUMN_IN_MESSAGE.search(message)
            column = None
            if match:
                column = ", ".join(c.split(".")[-1] for c in match.group("cols").split(", "))
            return ConstraintError(message, code=code, column=column)
        if isinstance(error, sqlite3.OperationalError):
            lowered = message.lower()
            if (code and ("BUSY" in code or "LOCKED" in code)) or "database is locked" in lowered:
                return BusyError(message, code=code)
            if (
                lowered.startswith(("no such table", "no such column"))
                or "has no column" in lowered
            ):
                return SchemaError(message, code=code)
            if (code and "READONLY" in code) or "readonly database" in lowered:
                return AccessError(message, code=code)
            if (code and "FULL" in code) or "database or disk is full" in lowered:
                return ResourceError(message, code=code)
            return BulkError(message, code=code)
        if isinstance(error, OverflowError):
            return ConversionError(message)
        if isinstance(error, sqlite3.DataError):
            return DataError(message, code=code)
        if isinstance(error, sqlite3.ProgrammingError) and "binding" in message.lower():
            return ConversionError(message, code=code)
        if isinstance(error, sqlite3.Error):
            return BulkError(message, code=code)
        return None

    def close(self) -> None:
        if self.caller is not None:
            # The caller's connection and transaction stay the caller's. Only a
            # transaction bulkops left open by a failure is ended.
            if self._savepoint_depth == 0 and self._own_open:
                self.rollback()
            return
        try:
            self.rollback()
        finally:
            self._conn.isolation_level = self._saved_isolation
            self._pooled.close()
            if self._owns_engine and self.engine is not None:
                self.engine.dispose()
