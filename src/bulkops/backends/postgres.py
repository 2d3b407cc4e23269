"""PostgreSQL backend: psycopg 3, binary COPY into a staging table, set-based SQL.

Each chunk is copied (binary COPY, typed by the target columns' OIDs) into a
temporary staging table and applied with one statement: ``INSERT … SELECT … ON
CONFLICT`` (insert, upsert), ``UPDATE … FROM`` (update) or ``DELETE … USING``
(delete). The statements are generated with SQLAlchemy Core (PostgreSQL dialect) once
per shape; they carry no parameters, since the data is in the staging table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import ipaddress
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

import psycopg
import sqlalchemy as sa
from psycopg import errors as pg_errors
from psycopg import sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.schema import CreateTable

from ..errors import (
    AccessError,
    AdapterError,
    BulkError,
    ConnectionLostError,
    ConstraintError,
    ConversionError,
    DataError,
    DeadlockError,
    LockTimeoutError,
    ResourceError,
    SchemaError,
    SerializationError,
    StatementTimeoutError,
)
from ..retry import DEFAULT_RETRY, RetryPolicy
from ..schema import (
    ColumnCodec,
    ColumnSpec,
    TableSpec,
    adapted,
    coercer,
    column_type,
    datetime_from_text,
    decimal_checker,
    decimal_from_text,
    fraction_checker,
    int_from_text,
    json_dumps,
    missing_nan,
    plain_value,
)
from ._sql import (
    ALREADY_EXISTS,
    SharedSQL,
    count_staged,
    create_load_stage,
    select_where_statement,
    stage_type,
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
    statement_filter,
    translate_errors,
)

__all__ = ["PostgresBackend", "PostgresTracer", "psycopg_caller"]

NoneType = type(None)
UTC = dt.UTC

_CREATE_TYPES: dict[str, Callable[[], Any]] = {
    "integer": sa.BigInteger,
    "float": partial(sa.Double),
    "decimal": sa.Numeric,
    "text": sa.Text,
    "bytes": sa.LargeBinary,
    "boolean": sa.Boolean,
    "date": sa.Date,
    "datetime": partial(sa.DateTime, timezone=True),
    "json": sa.dialects.postgresql.JSONB,
    "any": sa.Text,
}


def _create_type(kind: str) -> Any:
    """The SQLAlchemy type bulkops creates for a column of ``kind``."""
    base, precision, scale = column_type(kind)
    return sa.Numeric(precision, scale) if base == "decimal" else _CREATE_TYPES[base]()


_LOGICAL = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "oid": "integer",
    "float4": "float",
    "float8": "float",
    "numeric": "decimal",
    "money": "decimal",
    "text": "text",
    "varchar": "text",
    "bpchar": "text",
    "name": "text",
    "citext": "text",
    "bytea": "bytes",
    "bool": "boolean",
    "date": "date",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "json": "json",
    "jsonb": "json",
}


# ------------------------------------------------------------------------ codecs


def _aware(value: dt.datetime) -> dt.datetime:
    # timestamptz stores an instant: a naive datetime is taken as UTC (binary COPY
    # cannot apply the session time zone the way text input would).
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _naive(value: dt.datetime) -> dt.datetime:
    # timestamp (without time zone) keeps wall-clock time: an aware value is
    # converted to UTC first, so equal instants store equal values.
    return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)


def _check_int(bits: int) -> Callable[[Any], Any]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"{value} is outside the {bits}-bit integer range")
        return value

    return check


def _to_uuid(value: Any) -> Any:
    if value is None or isinstance(value, uuid.UUID):
        return value
    if missing_nan(value):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return uuid.UUID(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a UUID")


class _Wire(NamedTuple):
    """How a column travels in COPY: its logical kind, the oid whose dumper sends it
    (None: the column's own type) and whether the server must parse it as text."""

    kind: str
    oid: int | None = None
    text: bool = False


_TEXT_OID = 25
_INT8_OID = 20
# Types whose binary input reads plain text (their values travel as text, binary COPY).
_TEXT_RECEIVE = frozenset({"bpchar", "citext", "xml"})
_BINARY_EXTRA = frozenset({"uuid"})  # psycopg dumps these binary from their Python class


def _wire(
    base: str, base_kind: str, base_category: str, elem: str | None, elem_kind: str | None
) -> _Wire:
    """The wire of a column of (domain-resolved) type ``base``. Types psycopg dumps in
    binary from a value the codec guarantees go binary; every other type (arrays,
    time, inet, macaddr, bit, tsvector, point, ranges, extension types ...) is sent as
    its text form and parsed by the server, so no missing adapter can refuse a row."""
    if base_category == "A":
        return _Wire("any", _TEXT_OID, True)
    if base_kind == "e" or base in _TEXT_RECEIVE:
        return _Wire("text", _TEXT_OID)
    if base == "money":
        return _Wire("decimal", _INT8_OID)  # binary money is an int8 of minor units
    if base in _LOGICAL:
        return _Wire(_LOGICAL[base])
    if base in _BINARY_EXTRA:
        return _Wire("any")
    return _Wire("any", _TEXT_OID, True)


def _read_cast(
    typname: str,
    base: str,
    base_category: str,
    elem: str | None,
    elem_kind: str | None,
    elem_formatted: str | None,
) -> str | None:
    """SQL type to cast a column to when reading it, so that psycopg decodes it to a
    sensible value: money as numeric (exact, not locale text), arrays of enums as
    text[], arrays of domains as arrays of the domain's base type."""
    if base == "money":
        return "numeric"
    if base_category != "A" or not elem:
        return None
    if elem == "money":
        return "numeric[]"
    if elem_kind == "e":
        return "text[]"
    if typname != f"_{elem}" and elem_formatted:
        return f"{elem_formatted}[]"
    return None


def _pg_text(value: Any) -> str | None:
    """The PostgreSQL text form of a Python value (the server parses it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dict):
        return json_dumps(value)
    if isinstance(value, list | tuple):
        return _array_literal(value, _pg_text)
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
                  | ipaddress.IPv4Network | ipaddress.IPv6Network
                  | ipaddress.IPv4Interface | ipaddress.IPv6Interface):  # fmt: skip
        return str(value)
    raise ValueError(f"a {type(value).__name__} has no PostgreSQL text form")


def _array_literal(values: Any, element: Callable[[Any], Any]) -> str:
    """A PostgreSQL array literal ({"a","b",NULL}) of a list (nested lists: more
    dimensions); each element is ``element(value)`` as text, quoted."""
    parts = []
    for value in values:
        if isinstance(value, list | tuple):
            parts.append(_array_literal(value, element))
            continue
        text = _pg_text(element(value))
        if text is None:
            parts.append("NULL")
        else:
            parts.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


def _text_codec(column: ColumnSpec) -> ColumnCodec:
    """Values of a column sent as text: Python values become their PostgreSQL text
    form; text is passed on as it is, for the server to parse."""
    declared = column.declared or column.extra_type

    def encode(value: Any) -> Any:
        if missing_nan(value):
            return None  # pandas' missing value: no type sent as text holds a float NaN
        try:
            return _pg_text(value)
        except ValueError:
            raise ValueError(
                f"a {type(value).__name__} cannot be written to a {declared} column"
            ) from None

    if column.extra_type.endswith("[]"):
        elem = column.extra_type[:-2]
        kind = _LOGICAL.get(elem)
        convert = _codec(ColumnSpec("", kind or "any", extra_type=elem)).encode if kind else _any
        if elem == "uuid":
            convert = _to_uuid

        def encode_array(value: Any) -> Any:
            if isinstance(value, list | tuple):
                return _array_literal(value, convert)
            return encode(value)

        return ColumnCodec(frozenset({str, NoneType}), encode_array)
    digits = _fraction_digits(column)
    if digits is not None:  # time(p): rounds a finer value, as timestamp(p) does
        fits = fraction_checker(digits, declared)

        def encode_fitting(value: Any) -> Any:
            checked = value
            if isinstance(value, str):
                with suppress(ValueError):
                    checked = dt.time.fromisoformat(value.strip())
            if isinstance(checked, dt.time | dt.datetime):
                fits(checked)
            return encode(value)

        return ColumnCodec(frozenset({NoneType}), encode_fitting)
    return ColumnCodec(frozenset({str, NoneType}), encode)


def _money_codec(scale: int) -> ColumnCodec:
    """money travels as an int8 of minor units (binary money): exact, and refused
    rather than rounded where a value has more decimal places than the currency."""
    low, high = -(2**63), 2**63 - 1

    def units(value: Decimal) -> int:
        scaled = value.scaleb(scale)
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {scale} decimal places (money)")
        number = int(scaled)
        if not low <= number <= high:
            raise ValueError(f"{value} is outside the range of money")
        return number

    return ColumnCodec(
        frozenset({NoneType}),
        coercer("decimal", units),
        fast={Decimal: units, str: adapted(decimal_from_text, units)},
    )


def _array(values: Sequence[Any]) -> Any:
    """An array parameter: ints as the text of an array literal (built in C, where
    psycopg would dump and quote-check each element), anything else as a list."""
    if {*map(type, values)} <= {int}:
        return "{" + ",".join(map(str, values)) + "}"
    return list(values)


def _codec(column: ColumnSpec) -> ColumnCodec:
    declared = column.extra_type
    kind = column.type
    if declared == "uuid":
        # The binary dumper for uuid takes uuid.UUID only; text (CSV) is parsed here.
        return ColumnCodec(frozenset({uuid.UUID, NoneType}), _to_uuid)
    if kind == "any":
        return _text_codec(column)
    if kind == "integer":
        bits = {"int2": 16, "int4": 32}.get(declared, 64)
        # Narrow columns check the range of every value: psycopg's binary int2/int4
        # dumpers silently wrap an out-of-range int around (2**31 is stored as -2**31).
        check = _check_int(bits)
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return ColumnCodec(
            frozenset({int, NoneType}),
            coercer("integer", check),
            fast={str: adapted(int_from_text, check)},
            bounds=None if bits == 64 else (low, high),
        )
    if kind == "float":
        return ColumnCodec(frozenset({float, NoneType}), coercer("float"))
    if kind == "decimal":
        size = _PRECISION.search(column.declared)
        if size is None:
            return ColumnCodec(
                frozenset({Decimal, NoneType}), coercer("decimal"), fast={str: decimal_from_text}
            )
        # numeric(p, s) rounds a value with more places than s without a word (and
        # binary COPY does too): checked here, as the columnar path does.
        fits = decimal_checker(int(size.group(2) or 0), int(size.group(1)), column.declared)
        return ColumnCodec(
            frozenset({NoneType}), coercer("decimal", fits),
            fast={Decimal: fits, str: adapted(decimal_from_text, fits)},
        )  # fmt: skip
    if kind == "text":
        return ColumnCodec(frozenset({str, NoneType}), coercer("text"))
    if kind == "bytes":
        return ColumnCodec(frozenset({bytes, NoneType}), coercer("bytes"))
    if kind == "boolean":
        return ColumnCodec(frozenset({bool, NoneType}), coercer("boolean"))
    if kind == "date":
        return ColumnCodec(frozenset({dt.date, NoneType}), coercer("date"))
    if kind == "datetime":
        adapt: Callable[[Any], Any] = _aware if declared == "timestamptz" else _naive
        digits = _fraction_digits(column)
        if digits is not None:
            # timestamp(p) rounds a finer value without a word (binary COPY too).
            adapt = adapted(adapt, fraction_checker(digits, column.declared))
        return ColumnCodec(
            frozenset({NoneType}),
            coercer("datetime", adapt),
            fast={dt.datetime: adapt, str: adapted(datetime_from_text, adapt)},
        )
    if kind == "json":
        # No passthrough for dict and list: the coercion checks that the document holds
        # no NaN or infinity (JSON has neither) and makes numpy scalars in it plain.
        return ColumnCodec(frozenset({NoneType}), coercer("json"))
    return _text_codec(column)


def _any(value: Any) -> Any:
    return plain_value(value)


_PRECISION = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
_FRACTION = re.compile(r"^(?:timestamp|time)\((\d)\)")


def _fraction_digits(column: ColumnSpec) -> int | None:
    """The digits of a second a ``timestamp(p)`` or ``time(p)`` column keeps, where
    fewer than six."""
    found = _FRACTION.match(column.declared)
    digits = None if found is None else int(found.group(1))
    return digits if digits is not None and digits < 6 else None


# Types whose binary COPY form the columnar path writes from Arrow (pgpq's encoders);
# the receive functions of varchar and bpchar read text's form.
_ARROW_BINARY = {
    "int2": ("integer", 16),
    "int4": ("integer", 32),
    "int8": ("integer", 64),
    "float4": ("float", 32),
    "float8": ("float", 64),
    "numeric": ("decimal", 64),
    "text": ("text", 64),
    "varchar": ("text", 64),
    "bpchar": ("text", 64),
    "bytea": ("bytes", 64),
    "bool": ("boolean", 64),
    "date": ("date", 64),
    "timestamp": ("datetime", 64),
    "timestamptz": ("datetime", 64),
}


def _arrow_target(column: ColumnSpec) -> ArrowTarget:
    found = _ARROW_BINARY.get(column.extra_type)
    if found is None or column.type == "any":
        # No binary encoding from Arrow (uuid, json, enums, inet, arrays, ...): the
        # column travels as text and the database casts it to its type.
        return ArrowTarget(column.type, binary=False)
    kind, bits = found
    size = _PRECISION.search(column.declared)
    if kind == "decimal":
        if size is None:
            return ArrowTarget(kind)
        return ArrowTarget(kind, precision=int(size.group(1)), scale=int(size.group(2) or 0))
    if kind == "text" and size is not None and column.extra_type in ("varchar", "bpchar"):
        return ArrowTarget(
            kind, max_length=int(size.group(1)), blank_padded=column.extra_type == "bpchar"
        )
    if kind == "datetime":
        return ArrowTarget(
            kind,
            timezone="utc" if column.extra_type == "timestamptz" else "naive",
            fraction_digits=_fraction_digits(column),
        )
    return ArrowTarget(kind, bits=bits)


class _Declared(sa.types.UserDefinedType[Any]):
    """A column's type as the catalog spells it (a cast from a text stage column)."""

    cache_ok = True

    def __init__(self, declared: str) -> None:
        self.declared = declared

    def get_col_spec(self, **kw: Any) -> str:
        return self.declared


def _sequence_name(name: str) -> str:
    """A PostgreSQL identifier for a free-text sequence name ("lot:42"): readable
    where it can be, unique through a digest of the exact name."""
    readable = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:30]
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"bulkops_seq_{readable}_{digest}"


# Columns and unique indexes of one table, and whether the database keeps sync state
# (writes must then invalidate it). Per column: name, type name, type oid, NOT NULL,
# has a default, generated, type category, formatted type, default expression,
# identity ('a' always, 'd' by default, ''), then the base type (a domain resolved to
# the type under it): oid, name, typtype, category; for arrays the element's base
# type: oid, name, typtype, formatted; whether the (element) type has an equality
# (a default btree or hash operator class), and how equality on the column folds
# text (ColumnSpec.fold: citext's lower(), a nondeterministic collation's, char(n)'s
# trailing spaces, which its equality ignores).
# Then the unique indexes, whether sync state is kept, partitioned, the INSERT and
# UPDATE rules, the INITIALLY DEFERRED keys of the table and of the foreign keys that
# point at it (Django makes every foreign key so), and the column of each CHECK
# constraint on one column.
_REFLECT = """
WITH rel AS (SELECT to_regclass(%(ident)s)::oid AS oid)
SELECT rel.oid,
  (SELECT json_agg(json_build_array(
            a.attname, t.typname, a.atttypid::int, a.attnotnull,
            a.atthasdef OR a.attidentity <> '', a.attgenerated <> '',
            t.typcategory, format_type(a.atttypid, a.atttypmod),
            CASE WHEN a.attidentity <> ''
                 THEN format('nextval(%%L::regclass)', pg_get_serial_sequence(%(ident)s, a.attname))
                 ELSE pg_get_expr(d.adbin, d.adrelid) END,
            a.attidentity::text,
            b.oid::int, b.typname, b.typtype::text, b.typcategory::text,
            e.oid::int, e.typname, e.typtype::text, format_type(e.oid, NULL),
            COALESCE(e.typtype, b.typtype) IN ('e', 'r', 'm') OR EXISTS (
              SELECT 1 FROM pg_opclass o JOIN pg_am am ON am.oid = o.opcmethod
              WHERE o.opcdefault AND am.amname IN ('btree', 'hash')
                AND o.opcintype = COALESCE(e.oid, b.oid)),
            CASE WHEN b.typname = 'citext' THEN 'lower'
                 WHEN EXISTS (SELECT 1 FROM pg_collation co WHERE co.oid = a.attcollation
                              AND NOT co.collisdeterministic) THEN 'collation'
                 WHEN b.typname = 'bpchar' THEN 'rtrim'
                 ELSE '' END,
            CASE WHEN a.atttypmod >= 0
                 THEN format('%%s.%%I', t.typnamespace::regnamespace, t.typname) END,
            CASE WHEN base.required THEN format_type(b.oid, base.typmod) END
            ) ORDER BY a.attnum)
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     CROSS JOIN LATERAL (
       WITH RECURSIVE r(oid, typtype, base, typmod, required) AS (
         SELECT t.oid, t.typtype, t.typbasetype, a.atttypmod, t.typnotnull
         UNION ALL
         -- a domain's size (varchar(50)) is its own typtypmod
         SELECT x.oid, x.typtype, x.typbasetype, GREATEST(r.typmod, y.typtypmod),
                r.required OR x.typnotnull
         FROM r JOIN pg_type y ON y.oid = r.oid JOIN pg_type x ON x.oid = r.base
         WHERE r.typtype = 'd')
       SELECT oid, typmod, required FROM r WHERE typtype <> 'd') base
     JOIN pg_type b ON b.oid = base.oid
     LEFT JOIN LATERAL (
       WITH RECURSIVE r(oid, typtype, base) AS (
         SELECT x.oid, x.typtype, x.typbasetype FROM pg_type x
         WHERE x.oid = b.typelem AND b.typcategory = 'A'
         UNION ALL
         SELECT x.oid, x.typtype, x.typbasetype FROM r JOIN pg_type x ON x.oid = r.base
         WHERE r.typtype = 'd')
       SELECT oid FROM r WHERE typtype <> 'd') elem ON true
     LEFT JOIN pg_type e ON e.oid = elem.oid
     WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT json_agg(json_build_array(i.indisprimary,
            array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                  ORDER BY k.o)))
     FROM pg_index i
     WHERE i.indrelid = rel.oid AND i.indisunique AND i.indpred IS NULL
           AND i.indexprs IS NULL),
  to_regclass(%(state)s) IS NOT NULL,
  (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = rel.oid),
  (SELECT array_agg(r.rulename::text ORDER BY r.rulename) FROM pg_rewrite r
     WHERE r.ev_class = rel.oid AND r.ev_type IN ('2', '3') AND r.rulename <> '_RETURN'),
  EXISTS (SELECT FROM pg_rewrite r WHERE r.ev_class = rel.oid AND r.ev_type = '3'
          AND r.rulename <> '_RETURN'),
  (SELECT array_agg(DISTINCT format('%%I.%%I', n.nspname, c.conname))
     FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE (c.conrelid = rel.oid OR c.confrelid = rel.oid) AND c.condeferred
       AND c.contype IN ('f', 'p', 'u', 'x')),
  (SELECT json_object_agg(name, columns) FROM (
     SELECT c.conname AS name, a.attname::text AS columns
     FROM pg_constraint c
     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
     WHERE c.conrelid = rel.oid AND c.contype = 'c' AND cardinality(c.conkey) = 1
     UNION ALL
     SELECT x.relname, string_agg(a.attname, ', ' ORDER BY a.attnum)
     FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
     JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
       AND d.refclassid = 'pg_class'::regclass AND d.refobjid = rel.oid AND d.refobjsubid > 0
     JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum = d.refobjsubid
     WHERE i.indrelid = rel.oid AND (NOT i.indisunique OR i.indexprs IS NOT NULL)
     GROUP BY x.relname) named),
  EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = rel.oid AND NOT g.tgisinternal
          AND g.tgenabled <> 'D' AND g.tgtype::int & 7 = 7),
  EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = rel.oid AND NOT g.tgisinternal
          AND g.tgenabled <> 'D' AND g.tgtype::int & 1 = 1)
FROM rel
"""


# Arrow batches are written by pgpq's binary COPY encoder where it is installed.
_ARROW_AVAILABLE = all(importlib.util.find_spec(m) is not None for m in ("pyarrow", "pgpq"))

# The oids of the types a stage's own columns may have (see _sql.STAGE_TYPES).
_TYPE_OIDS = {"bigint": 20, "text": 25}

# Staging table names, unique in the process: a pooled connection may still hold the
# temporary tables of an earlier backend that used it.
_STAGE_NUMBERS = itertools.count(1)


# At most this many tables hold an atomic load's stage on PostgreSQL, each a range of
# consecutive partitions, published as soon as all of its partitions are staged.
_STAGE_GROUPS = 32

# The writes that are INSERT … ON CONFLICT.
_ON_CONFLICT = frozenset({"upsert", "insert_ignore"})


def _refused_text_column(
    message: str, text: Sequence[str], batch: Any, table: TableSpec
) -> str | None:
    """The column staged as text whose cast the server refused, for a one-row batch.
    The cast runs in the INSERT … SELECT from the stage, whose error (unlike COPY's
    context) names no column; PostgreSQL's input functions quote the value they refuse
    (``invalid input syntax for type inet: "x"``, ``invalid input value for enum mood:
    "x"``), and a size refused names the sized type (``bit string length 4 does not
    match type bit(24)``). The one staged value so quoted, else the one staged column
    of the type so named, or None when that singles out no column."""
    if batch.num_rows != 1:
        return None  # the rows are narrowed down to one before a rejection is made
    values = {c: batch.column(c)[0].as_py() for c in text}
    given = [c for c, v in values.items() if v is not None]
    quoted = [c for c in given if f'"{values[c]}"' in message]
    if not quoted:
        # (An array's elements are refused by the element's type: bit(2) of bit(2)[].)
        quoted = [
            c
            for c in given
            if re.search(
                rf"type {re.escape(table.columns[c].declared.rstrip('[]'))}(?![\w(\[])", message
            )
        ]
    return quoted[0] if len(quoted) == 1 else None


def _direct(op: WriteOp) -> bool:
    """A plain insert COPYs straight into the table, unless a column needs a default
    in place of NULL or must not be written (generated, identity ALWAYS), or the table
    has INSERT rules: COPY does not apply rules (an INSERT does), and rules are how
    older schemas route rows to their partitions (Sakila's payment)."""
    extra = op.table.extra
    return (
        op.kind == "insert"
        and not extra.get("insert_rules")
        and not set(op.columns) & (set(extra["defaults"]) | set(extra.get("fixed", ())))
    )


def _money_as_text(
    rows: Iterable[tuple[Any, ...]], positions: Sequence[int], scale: int, point: str
) -> Iterator[tuple[Any, ...]]:
    """Rows with their money values (minor units) as money text, for a text COPY."""
    for row in rows:
        values = list(row)
        for i in positions:
            units = values[i]
            if units is not None:
                sign, digits = ("-", str(-units)) if units < 0 else ("", str(units))
                digits = digits.rjust(scale + 1, "0")
                whole, frac = digits[: len(digits) - scale], digits[len(digits) - scale :]
                values[i] = f"{sign}{whole}{point}{frac}" if scale else f"{sign}{whole}"
        yield tuple(values)


# ------------------------------------------------------------- counting statements


# ------------------------------------------------------------- tracing statements


# Rows of an Arrow chunk encoded and sent at a time (``_copy_arrow``): small enough
# that the server parses one while the next is encoded (measured on 1,000,000 rows:
# the COPY's wait fell by the whole encoding time), large enough that a call costs
# nothing beside its rows.
_COPY_SLICE_ROWS = 8192


def _statement_text(query: Any, context: Any) -> str:
    if isinstance(query, sql.Composable):
        return query.as_string(context)
    if isinstance(query, bytes | bytearray | memoryview):
        return bytes(query).decode("utf-8", "replace")
    return str(query)


def _tracing_cursor(base: type[Any], sinks: list[Callable[[str], None]]) -> type[Any]:
    """A subclass of the cursor class ``base`` that hands each statement it sends to
    ``sinks`` (quiet once they are cleared): the one way statements are traced here."""

    def report(cursor: Any, query: Any) -> None:
        if sinks:
            text = _statement_text(query, cursor)
            for sink in list(sinks):
                sink(text)

    class TracingCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            report(self, query)
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            report(self, query)  # one statement, however many parameter sets
            return super().executemany(query, *args, **kwargs)

        def copy(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
            report(self, statement)
            return super().copy(statement, *args, **kwargs)

        def stream(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            report(self, query)
            return super().stream(query, *args, **kwargs)

    return TracingCursor


_Factories = tuple[Any, Any]  # a connection's cursor_factory and server_cursor_factory


def _install(conn: psycopg.Connection[Any], sinks: list[Callable[[str], None]]) -> _Factories:
    """Make ``conn``'s cursors report to ``sinks``; returns the factories it had."""
    saved = conn.cursor_factory, conn.server_cursor_factory
    conn.cursor_factory = _tracing_cursor(saved[0], sinks)
    conn.server_cursor_factory = _tracing_cursor(saved[1], sinks)
    return saved


class PostgresTracer:
    """PostgreSQL's statement tracer (``StatementTracer``), for a psycopg 3
    connection, a SQLAlchemy Connection on one, or a SQLAlchemy Engine of PostgreSQL
    (every connection it hands out during the block, bulkops' own included).

    Counted once per ``execute()``, ``executemany()`` (however many parameter sets),
    ``copy()`` and ``stream()`` of a cursor (``conn.execute()`` included); the SQL is
    the query as given, without its parameters. psycopg 3 has no statement hook on a
    connection, so its ``cursor_factory`` and ``server_cursor_factory`` are replaced
    meanwhile by subclasses of themselves that report what they send (cursors created
    before the block are not seen). Transactions psycopg opens and closes itself (the
    implicit BEGIN, ``Connection.commit()``, ``Connection.transaction()``'s
    savepoints) do not pass through a cursor and are not seen.
    """

    def __init__(self, handle: object) -> None:
        if isinstance(handle, sa.Connection):
            handle = handle.connection.driver_connection
        if not isinstance(handle, psycopg.Connection | sa.Engine):
            raise TypeError(f"not a psycopg connection or a PostgreSQL Engine: {handle!r}")
        self.handle: psycopg.Connection[Any] | sa.Engine = handle

    @contextmanager
    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> Iterator[None]:
        sinks = [
            statement_filter(on_statement, include_transaction_control=include_transaction_control)
        ]
        if isinstance(self.handle, sa.Engine):
            with _engine_traced(self.handle, sinks):
                yield
            return
        conn = self.handle
        saved = _install(conn, sinks)
        try:
            yield
        finally:
            sinks.clear()
            conn.cursor_factory, conn.server_cursor_factory = saved


@contextmanager
def _engine_traced(engine: sa.Engine, sinks: list[Callable[[str], None]]) -> Iterator[None]:
    """Each connection ``engine`` hands out in the block, traced while checked out."""
    out: dict[int, tuple[psycopg.Connection[Any], _Factories]] = {}

    def checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if isinstance(dbapi_conn, psycopg.Connection) and id(dbapi_conn) not in out:
            out[id(dbapi_conn)] = dbapi_conn, _install(dbapi_conn, sinks)

    def checkin(dbapi_conn: Any, record: Any) -> None:
        conn, saved = out.pop(id(dbapi_conn), (None, None))
        if conn is not None and saved is not None:
            conn.cursor_factory, conn.server_cursor_factory = saved

    sa.event.listen(engine, "checkout", checkout)
    sa.event.listen(engine, "checkin", checkin)
    try:
        yield
    finally:
        sa.event.remove(engine, "checkout", checkout)
        sa.event.remove(engine, "checkin", checkin)
        sinks.clear()
        for conn, saved in out.values():
            conn.cursor_factory, conn.server_cursor_factory = saved


# --------------------------------------------------------------------- the backend

# "Key (id)=(1) already exists.", "Partition key of the failing row contains
# (payment_date) = (2005-06-17 …)."
_KEY_DETAIL = re.compile(r"(?:Key \(|key of the failing row contains \()(?P<cols>[^)]*)\) ?=")
_COPY_CONTEXT = re.compile(r"COPY \S+, line (?P<line>\d+)(?:, column (?P<col>[^:\s]+))?")


def psycopg_caller(conn: object) -> CallerConnection:
    """A caller's psycopg 3 connection: bulkops joins the transaction open on it.

    Not in autocommit, the connection is always in the caller's transaction: psycopg
    opens one at the first statement (bulkops' too) and the application commits it.
    """
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(f"not a psycopg 3 connection: {conn!r}")
    connection: psycopg.Connection[Any] = conn

    def in_transaction() -> bool:
        idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return not idle or not connection.autocommit

    return CallerConnection(
        vendor="postgresql",
        driver=lambda: connection,
        in_transaction=in_transaction,
        describe="the psycopg connection",
    )


class _CallerCursors:
    """Statements sent through a caller's cursors (``CallerConnection.cursor``: a
    framework's, which see and count them), its pending changes synced first; the
    subset of ``psycopg.Connection`` the backend sends statements with."""

    def __init__(self, caller: CallerConnection) -> None:
        self._caller = caller

    def cursor(self) -> Any:
        self._caller.sync()
        return self._caller.cursor() if self._caller.cursor else self._caller.driver().cursor()

    def execute(self, query: Any, params: Any = None) -> Any:
        cursor = self.cursor()
        if isinstance(query, sql.Composable):
            # As text: a framework logs the statement it was given.
            query = query.as_string(self._caller.driver())
        cursor.execute(query, params)
        return cursor


# What compiles statements on a caller's connection (no Engine).
_DIALECT: sa.Dialect = PGDialect_psycopg()  # type: ignore[no-untyped-call]


class PostgresBackend(SharedSQL):
    """A Backend over one psycopg connection: checked out of a SQLAlchemy Engine, or
    the caller's own (``caller``), whose transaction it joins while one is open."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        *,
        owns_engine: bool = False,
        lock_timeout: float | None = None,
        statement_timeout: float | None = None,
        caller: CallerConnection | None = None,
    ) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self.caller = caller
        self.dialect: sa.Dialect = engine.dialect if engine is not None else _DIALECT
        self.statements = 0
        self.retries = 0  # never re-sends on its own: chunks are retried whole
        self.retry = DEFAULT_RETRY
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self._savepoint_depth = 0
        self._sql: dict[tuple[Any, ...], bytes] = {}
        self._stages: dict[tuple[Any, ...], str] = {}  # (table, columns) -> staging table
        self._shapes: dict[tuple[Any, ...], tuple[TableSpec, tuple[str, ...], tuple[str, ...]]] = {}
        # Staging tables created in the open transaction, with the savepoint depth they
        # were created at: a rollback to that depth (or a full rollback) removes them.
        self._new_stages: dict[tuple[Any, ...], int] = {}
        # Staging tables created inside a caller's transaction (dropped at its end,
        # which bulkops does not see: made again by the next call).
        self._joined_stages: set[tuple[Any, ...]] = set()
        self._pid: int | None = None
        self._sequences: set[str] = set()
        self._dirty: set[str] = set()  # staging tables written in this transaction
        self._xid: int | None = None
        self._restore_autocommit: bool | None = None  # a caller's, during our transaction
        self._conn: psycopg.Connection[Any]
        self.sql: psycopg.Connection[Any] | _CallerCursors
        # Statement counters (bulkops.testing) stay attached across reconnects and forks.
        self._traces: list[Callable[[str], None]] = []
        # Type names (ColumnSpec.extra_type) without an equality operator: compared as
        # text (json as jsonb) in change detection.
        self._no_equality: set[str] = set()
        self._money: tuple[int, str] | None = None
        self._connect()
        self.capabilities = Capabilities(
            name="postgresql",
            max_params=65535,
            adjust_rows_per_chunk=ADJUST_ROWS_PER_CHUNK,
            transactions=True,
            # A caller's connection is one connection: no workers beside it.
            parallel_writes=caller is None,
            statement_timeout=True,
            read_ahead=True,
            text_nul=False,  # PostgreSQL text and jsonb refuse \x00
            keeps_utc_offset=False,  # timestamptz stores the instant; read back in the session zone
            columnar=_ARROW_AVAILABLE,
        )

    def caller_transaction(self) -> bool:
        return self.caller is not None and self.caller.in_transaction()

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The driver connection: a caller's may be replaced between calls (a
        framework reconnects), so it is asked for each time."""
        if self.caller is None:
            return self._conn
        conn: psycopg.Connection[Any] = self.caller.driver()
        if conn is not self._conn:
            self._conn = conn
            self._cursor_factories = conn.cursor_factory, conn.server_cursor_factory
            self._apply_traces()
            self._stages.clear()
            self._new_stages.clear()
            self._joined_stages.clear()
            self._sequences.clear()
        return conn

    # ------------------------------------------------------------- connection

    def _connect(self) -> None:
        self._pooled: Any = None
        if self.caller is not None:
            conn = self.caller.driver()
            if not isinstance(conn, psycopg.Connection):
                raise TypeError(f"{self.caller.describe} is not a psycopg 3 connection: {conn!r}")
            self._conn = conn
            self.sql = _CallerCursors(self.caller)
            self._saved_autocommit = conn.autocommit
        else:
            assert self.engine is not None
            self._pooled = self.engine.raw_connection()
            conn = self._pooled.driver_connection
            assert isinstance(conn, psycopg.Connection)
            self._conn = conn
            self.sql = conn
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            self._saved_autocommit = conn.autocommit
            conn.autocommit = True  # we issue BEGIN/COMMIT ourselves
        self._cursor_factories = conn.cursor_factory, conn.server_cursor_factory
        self._apply_traces()
        self._stages.clear()
        self._new_stages.clear()
        self._dirty.clear()
        self._money = None

    def _reconnect(self) -> None:
        if self.caller is not None:
            raise ConnectionLostError(f"{self.caller.describe} is closed or broken")
        with suppress(Exception):
            self._pooled.invalidate()
        self._connect()

    def fork(self) -> PostgresBackend:
        """Another backend on its own connection (for parallel workers)."""
        if self.engine is None:
            raise NotImplementedError("a caller's connection is one connection: no workers")
        fork = PostgresBackend(
            self.engine,
            lock_timeout=self.lock_timeout,
            statement_timeout=self.statement_timeout,
        )
        if self._traces:
            fork._traces = self._traces  # shared: a block that ends detaches both
            fork._apply_traces()
        return fork

    @contextmanager
    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> Iterator[None]:
        """Every statement this backend, the workers it starts and the connections it
        reconnects with send meanwhile (``PostgresTracer`` on each connection)."""
        sink = statement_filter(
            on_statement, include_transaction_control=include_transaction_control
        )
        self._traces.append(sink)
        self._apply_traces()
        try:
            yield
        finally:
            self._traces.remove(sink)
            self._apply_traces()

    def _apply_traces(self) -> None:
        factories = self._cursor_factories
        self.conn.cursor_factory, self.conn.server_cursor_factory = factories
        if self._traces:
            _install(self.conn, self._traces)

    # ----------------------------------------------------------------- schema

    def _regclass(self, table: str) -> sql.Composable:
        parts = table.split(".", 1) if "." in table and not self._exists(table) else [table]
        return sql.Identifier(*parts)

    def _exists(self, table: str) -> bool:
        row = self.sql.execute(
            "SELECT to_regclass(%s)", (sql.Identifier(table).as_string(self.conn),)
        ).fetchone()
        return row is not None and row[0] is not None

    def reflect(self, table: str) -> TableSpec:
        with self._errors():
            ident = self._regclass(table).as_string(self.conn)
            # One round trip: every verb reflects its table, so this is on every call.
            row = self.sql.execute(_REFLECT, {"ident": ident, "state": SYNC_STATE_TABLE}).fetchone()
            if row is None or row[0] is None:
                raise self._no_such_table(table)
            info, indexes, sync_state = row[1] or [], row[2] or [], row[3]
            partitioned = bool(row[4])
            rules, insert_rules = tuple(row[5] or ()), bool(row[6])
            deferred = tuple(sorted(row[7] or ()))
            checks = dict(row[8] or {})
            insert_trigger = bool(row[9])  # (TableSpec.insert_trigger)
            row_triggers = bool(row[10])
        columns: dict[str, ColumnSpec] = {}
        oids: dict[str, int] = {}
        defaults: dict[str, str] = {}
        fixed: dict[str, str] = {}  # never written: generated, or identity ALWAYS
        as_text: set[str] = set()  # sent as PostgreSQL text: the COPY is in text format
        # A column staged as text is cast to its type without the size (bit(24) ->
        # pg_catalog.bit, not BIT, which is bit(1)): the size is then applied as the
        # INSERT or UPDATE assigns the value, which refuses a value of another length,
        # as COPY does. A cast to bit(24) would pad '0001' with zeros and cut a longer
        # value short.
        casts: dict[str, str] = {}
        reads: dict[str, str] = {}  # a cast for reading (money -> numeric, ...)
        # A column of a NOT NULL domain (AdventureWorks' "Flag") is staged as the
        # domain's base type, with its size: the domain would refuse the NULL that means
        # "use the column's default" and the NULLs a sync's delta holds beside a deleted
        # key. The table applies the domain as the row is written. (Other domains are
        # staged as they are: COPY then names the column whose value they refuse.)
        stage_types: dict[str, str] = {}
        money: set[str] = set()
        for row in info:
            name, typname, _, notnull, has_default, generated, _, formatted = row[:8]
            default, identity = row[8], row[9]
            base_oid, base, base_kind, base_category = row[10:14]
            _, elem, elem_kind, elem_formatted, has_equality, fold = row[14:20]
            unsized, not_null_domain_base = row[20], row[21]
            if not_null_domain_base:
                stage_types[name] = not_null_domain_base
                notnull = True  # the domain's NOT NULL is the column's
            if generated:
                fixed[name] = (
                    f"{name} is a generated column: the database computes it; "
                    "leave it out (or give None)"
                )
            elif identity == "a":
                fixed[name] = (
                    f"{name} is GENERATED ALWAYS AS IDENTITY: the database assigns it; "
                    "leave it out (or give None)"
                )
            elif notnull and default:
                # A NULL for a NOT NULL column with a default means "use the default"
                # (as SQLite does for its rowid): the expression comes from the catalog,
                # cast to the column's type as the database casts a default it assigns
                # (Kamailio's `setid VARCHAR(32) DEFAULT 00`: COALESCE with a bare 0
                # cannot be typed).
                defaults[name] = f"CAST(({default}) AS {formatted})"
            wire = _wire(base, base_kind, base_category, elem, elem_kind)
            if wire.kind == "any":
                as_text.add(name)
                if unsized:
                    casts[name] = unsized
            if base == "money":
                money.add(name)
            read = _read_cast(typname, base, base_category, elem, elem_kind, elem_formatted)
            if read:
                reads[name] = read
            extra_type = f"{elem}[]" if base_category == "A" and elem else base
            if base_kind == "e":
                extra_type = "enum"
            columns[name] = ColumnSpec(
                name=name,
                type=wire.kind,
                nullable=not notnull,
                declared=formatted,
                has_default=bool(has_default),
                extra_type=extra_type,
                fold=fold,
            )
            if not has_equality:
                self._no_equality.add(extra_type)
            oids[name] = wire.oid if wire.oid is not None else base_oid
        if money:
            self._money_format()
        primary = next((tuple(cols) for is_pk, cols in indexes if is_pk), ())
        unique = tuple(tuple(cols) for is_pk, cols in indexes if not is_pk)
        spec = TableSpec(
            name=table,
            columns=columns,
            primary_key=primary,
            unique=unique,
            insert_trigger=insert_trigger,
            extra={
                "oids": oids,
                "defaults": defaults,
                "fixed": fixed,
                "as_text": frozenset(as_text),
                "casts": casts,
                "reads": reads,
                "stage_types": stage_types,
                "money": frozenset(money),
                "sync_state": bool(sync_state),
                "partitioned": partitioned,
                "rules": rules,  # INSERT and UPDATE rules (CREATE RULE)
                "insert_rules": insert_rules,
                "deferred": deferred,  # qualified names of INITIALLY DEFERRED keys
                # What a refusal that names no column is about: a CHECK constraint on
                # one column -> that column; a unique index on expressions (AWL's
                # lower(username)) -> the columns they use; an index that cannot hold
                # a value (too big for a btree entry) -> its columns.
                "checks": checks,
                # Whether a trigger runs FOR EACH ROW: its RAISE EXCEPTION is the row's.
                "row_triggers": row_triggers,
            },
        )
        return spec

    def _no_such_table(self, table: str) -> SchemaError:
        visible = (
            "FROM pg_class c WHERE c.relkind IN ('r', 'p', 'v') AND pg_table_is_visible(c.oid) "
            "AND c.relnamespace NOT IN (pg_my_temp_schema(), 'pg_catalog'::regnamespace, "
            "'information_schema'::regnamespace)"
        )
        names = [r[0] for r in self.sql.execute(f"SELECT c.relname {visible} ORDER BY 1 LIMIT 50")]
        # A quoted name keeps its case here ("Artist" from a MySQL or SQLite port): name
        # the table that differs only in case, the one the caller most likely meant. Not
        # the table itself: another session may have made it since it was looked for
        # (two loads creating it at once), and it is no other spelling of itself.
        name = table.rsplit(".", 1)[-1]
        variants = [
            r[0]
            for r in self.sql.execute(
                f"SELECT c.relname {visible} AND lower(c.relname) = lower(%s) "
                "AND c.relname <> %s ORDER BY 1",
                (name, name),
            )
        ]
        hint = (
            f" (names are case-sensitive here: did you mean {' or '.join(map(repr, variants))}?)"
            if variants
            else ""
        )
        known = f"; tables here: {', '.join(names)}" if names else "; the database has no tables"
        return SchemaError(f"no such table {table!r}{hint}{known}", case_variants=variants)

    def create_table(self, table: str, columns: Mapping[str, str], key: Sequence[str]) -> TableSpec:
        self._refuse_long_names(table, columns)
        sa_table = sa.Table(
            table,
            sa.MetaData(),
            *(
                sa.Column(name, _create_type(kind), autoincrement=False)
                for name, kind in columns.items()
            ),
            # The key's columns in the order given (not the columns' order).
            *([sa.PrimaryKeyConstraint(*key)] if key else []),
        )
        ddl = str(CreateTable(sa_table).compile(dialect=self.dialect))
        with self._errors():
            self.sql.execute(ddl.encode())
        return self.reflect(table)

    def _refuse_long_names(self, table: str, columns: Iterable[str]) -> None:
        """PostgreSQL keeps only the first ``max_identifier_length`` (63) bytes of a name
        and cuts the rest with a mere NOTICE: a table made from a file with a longer
        header would not have the file's column names, and every row written after would
        fail. Refused before anything is created, naming the column."""
        with self._errors():
            row = self.sql.execute("SHOW max_identifier_length").fetchone()
        limit = int(row[0]) if row is not None else 63
        for what, name in [("table", table), *(("column", c) for c in columns)]:
            size = len(name.encode())
            if size > limit:
                cut = name.encode()[:limit].decode(errors="ignore")
                raise SchemaError(
                    f"cannot create {table[:limit]!r}: {what} name {name!r} is {size} bytes, "
                    f"and PostgreSQL keeps only the first {limit} of a name (it would "
                    f"become {cut!r}); give it a shorter name"
                )

    def codec(self, column: ColumnSpec) -> ColumnCodec:
        if column.extra_type == "money":
            return _money_codec(self._money_format()[0])
        return _codec(column)

    def _money_format(self) -> tuple[int, str]:
        """The decimal places of money (from lc_monetary) and its decimal point, asked
        once per connection: binary money is a count of minor units."""
        if self._money is None:
            with self._errors():
                row = self.sql.execute(
                    "SELECT scale('1'::money::numeric), '1.5'::numeric::money = '1.5'::money"
                ).fetchone()
            assert row is not None
            self._money = (int(row[0]), "." if row[1] else ",")
        return self._money

    # ----------------------------------------------------------- transactions

    def _in_transaction(self) -> bool:
        """Whether a transaction is open: bulkops' own, or the caller's (which the
        driver may not have begun yet)."""
        idle = self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return not idle or self.caller_transaction()

    def begin(self, timeouts: Timeouts = NO_TIMEOUTS) -> None:
        if self.caller is not None and not self.conn.autocommit:
            # A caller's connection outside any transaction, not in autocommit: our
            # explicit BEGIN/COMMIT need autocommit meanwhile (psycopg would otherwise
            # open a transaction of its own first). Restored when ours ends.
            self.conn.autocommit = True
            self._restore_autocommit = False
        if self.conn.closed or self.conn.broken:
            self._reconnect()
            # Temporary tables died with the old session: make them again now, outside
            # the transaction, so the chunks that follow reuse them.
            for table, columns, text in list(self._shapes.values()):
                self._stage(table, columns, text)
        with self._errors():
            self.sql.execute("BEGIN")
            settings = []
            lock = timeouts.lock if timeouts.lock is not None else self.lock_timeout
            statement = timeouts.statement
            if statement is None:
                statement = self.statement_timeout
            if lock is not None:
                settings.append(("lock_timeout", f"{int(lock * 1000)}ms"))
            if statement is not None:
                settings.append(("statement_timeout", f"{int(statement * 1000)}ms"))
            for name, value in settings:
                self.sql.execute("SELECT set_config(%s, %s, true)", (name, value))
            row = self.sql.execute("SELECT txid_current(), pg_backend_pid()").fetchone()
            self._xid, self._pid = row if row else (None, None)

    def commit(self) -> None:
        try:
            with self._errors():
                self.sql.execute("COMMIT")
            self._new_stages.clear()
        finally:
            self._dirty.clear()
            self._restore_caller_autocommit()

    def rollback(self) -> None:
        self._dirty.clear()
        self._forget_stages(0)
        try:
            if self.conn.closed or self.conn.broken:
                return
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with self._errors():
                    self.sql.execute("ROLLBACK")
        finally:
            self._restore_caller_autocommit()

    def _restore_caller_autocommit(self) -> None:
        if self._restore_autocommit is not None:
            if not (self.conn.closed or self.conn.broken):
                self.conn.autocommit = self._restore_autocommit
            self._restore_autocommit = None

    def last_commit_succeeded(self, wait: float = 30.0) -> bool | None:
        """After a connection was lost during COMMIT: did that transaction commit?

        Asks ``txid_status`` on a new connection. "in progress" means the old session
        is still finishing its COMMIT (waiting for a synchronous standby, running
        deferred triggers): it is ended with ``pg_terminate_backend`` and asked again,
        until the answer is committed or aborted. None: the outcome cannot be told.
        """
        if self._xid is None:
            return None
        deadline = time.monotonic() + wait
        terminated = False
        while True:
            try:
                if self.conn.closed or self.conn.broken:
                    self._reconnect()
                row = self.sql.execute("SELECT txid_status(%s)", (self._xid,)).fetchone()
                status = row[0] if row else None
                if status == "in progress" and not terminated and self._pid is not None:
                    self.sql.execute("SELECT pg_terminate_backend(%s)", (self._pid,))
                    terminated = True
            except psycopg.Error:
                return None
            if status in ("committed", "aborted"):
                return bool(status == "committed")
            if status is None or time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._savepoint_depth += 1
        name = sql.Identifier(f"bulkops_{self._savepoint_depth}")
        try:
            with self._errors():
                self.sql.execute(sql.SQL("SAVEPOINT {}").format(name))
            try:
                yield
            except BaseException:
                if not (self.conn.closed or self.conn.broken):
                    with self._errors():
                        self.sql.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
                        self.sql.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
                    self._forget_stages(self._savepoint_depth)
                raise
            with self._errors():
                self.sql.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
        finally:
            self._savepoint_depth -= 1

    # ----------------------------------------------------------------- writes

    def _fresh_stages(self) -> None:
        """At the start of a call inside a caller's transaction: staging tables made
        in an earlier one may be gone with it (committed: dropped; rolled back:
        never made), and bulkops cannot tell which, so they are made again."""
        if self._joined_stages and self.caller_transaction():
            for shape in self._joined_stages:
                self._stages.pop(shape, None)
                self._new_stages.pop(shape, None)
            self._joined_stages.clear()

    def prepare(self, op: WriteOp) -> None:
        """Create the op's staging table now, outside any transaction, so that a
        rolled-back chunk or savepoint cannot take it away."""
        self._fresh_stages()
        if not _direct(op):
            self._stage(op.table, op.columns)

    def _forget_stages(self, depth: int) -> None:
        """Staging tables created at savepoint ``depth`` or deeper were rolled back."""
        for shape, created_at in list(self._new_stages.items()):
            if created_at >= depth:
                self._stages.pop(shape, None)
                del self._new_stages[shape]

    def _stage(self, table: TableSpec, columns: tuple[str, ...], text: tuple[str, ...] = ()) -> str:
        """The staging table for rows of ``columns`` (``text``: those staged as text,
        to be cast by the set-based statement)."""
        shape = (table.name, columns, text)
        name = self._stages.get(shape)
        if name is not None:
            return name
        name = f"bulkops_stage_{next(_STAGE_NUMBERS)}"
        # Typed from the reflected columns rather than "AS SELECT … FROM target", which
        # would lock the target outside any transaction (ignoring lock_timeout) and
        # hang behind a migration. ON COMMIT DELETE ROWS: each transaction starts empty.
        # Inside a caller's transaction: ON COMMIT DROP, since the caller ends it.
        joined = self.caller_transaction()
        statement = sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT {}").format(
            sql.Identifier(name),
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(
                    sql.Identifier(c), sql.SQL("text" if c in text else stage_type(table, c))
                )
                for c in columns
            ),
            sql.SQL("DROP" if joined else "DELETE ROWS"),
        )
        with self._errors():
            self.sql.execute(statement)
        self._shapes[shape] = (table, columns, text)
        self._stages[shape] = name
        if joined:
            self._joined_stages.add(shape)
        if self._in_transaction():
            self._new_stages[shape] = self._savepoint_depth
        return name

    def _copy(
        self,
        stage: str | None,
        table: TableSpec,
        columns: tuple[str, ...],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """Binary COPY of ``rows`` into the staging table ``stage`` (emptied first if
        this transaction used it), or straight into ``table`` when ``stage`` is None."""
        self._copy_table(self._copy_target(stage, table), table, columns, rows)

    def _copy_target(self, stage: str | None, table: TableSpec) -> sql.Composable:
        """Where a COPY goes: the table, or the staging table (emptied first if this
        transaction used it)."""
        if stage is None:
            return self._regclass(table.name)
        if stage in self._dirty:
            self.statements += 1
            with self._errors():
                self.sql.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))
        self._dirty.add(stage)
        return sql.Identifier(stage)

    def _copy_table(
        self,
        target: sql.Composable,
        table: TableSpec,
        columns: Sequence[str],
        rows: Iterable[tuple[Any, ...]],
        own: Mapping[str, int] | None = None,
    ) -> None:
        """COPY ``rows`` of ``table``'s ``columns`` (and of columns of ``target``'s own,
        typed by ``own``: oids) into ``target``: binary, unless a column travels as text
        for the server to parse (then the whole COPY is text, with money turned back
        from minor units into its text form)."""
        oids = {**(own or {}), **table.extra["oids"]}
        types = [oids[c] for c in columns]
        if not table.extra.get("as_text", frozenset()).intersection(columns):
            self._copy_rows(target, columns, types, rows)
            return
        money = table.extra.get("money", frozenset())
        positions = [i for i, c in enumerate(columns) if c in money]
        if positions:
            scale, point = self._money_format()
            for i in positions:
                types[i] = _TEXT_OID
            rows = _money_as_text(rows, positions, scale, point)
        self._copy_rows(target, columns, types, rows, binary=False)

    def _copy_arrow(
        self, stage: str | None, table: TableSpec, columns: tuple[str, ...], batch: Any
    ) -> None:
        """One binary COPY of an Arrow record batch, encoded by pgpq a column at a time
        (no Python per row or value) and sent through psycopg's COPY."""
        from pgpq import ArrowToPostgresBinaryEncoder

        target = self._copy_target(stage, table)
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            target, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        encoder = ArrowToPostgresBinaryEncoder(batch.schema)
        self.statements += 1
        with self._errors(), self.sql.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(encoder.write_header())
            # A slice at a time: the server works on one while the next is encoded.
            for start in range(0, batch.num_rows, _COPY_SLICE_ROWS):
                copy.write(encoder.write_batch(batch.slice(start, _COPY_SLICE_ROWS)))
            copy.write(encoder.finish())

    def arrow_target(self, column: ColumnSpec) -> ArrowTarget:
        return _arrow_target(column)

    def write_arrow(self, op: WriteOp, batch: Any) -> ChunkCounts:
        def one_row() -> Mapping[str, Any] | None:
            return batch.slice(0, 1).to_pylist()[0] if batch.num_rows == 1 else None

        with self._checked(op.table, one_row):
            return self._write_arrow(op, batch)

    def _write_arrow(self, op: WriteOp, batch: Any) -> ChunkCounts:
        n = batch.num_rows
        if not n:
            return ChunkCounts()
        if op.kind in _ON_CONFLICT:
            self._refuse_rules(op.table, op.kind)
        columns = op.table.columns
        types = batch.schema
        text = tuple(
            c
            for c in op.columns
            if not _arrow_target(columns[c]).binary
            # The columnar path hands a typed column over as text where Arrow's type
            # would change its values (a numeric without scale: each value's digits).
            or (columns[c].type != "text" and str(types.field(c).type) == "string")
        )
        if not text and _direct(op):
            self._copy_arrow(None, op.table, op.columns, batch)
            counts = ChunkCounts(inserted=n)
        else:
            stage = self._stage(op.table, op.columns, text)
            self._copy_arrow(stage, op.table, op.columns, batch)
            try:
                counts = self._apply(op, stage, n, text)
            except DataError as error:
                if error.column is None:
                    error.column = _refused_text_column(error.message, text, batch, op.table)
                raise
        self._check_deferred(op.table)
        return counts

    def _copy_rows(
        self,
        target: sql.Composable,
        columns: Sequence[str],
        oids: Sequence[int],
        rows: Iterable[tuple[Any, ...]],
        *,
        binary: bool = True,
    ) -> None:
        """One COPY of ``rows`` (values typed by ``oids``) into ``target``."""
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            target,
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL("BINARY" if binary else "TEXT"),
        )
        self.statements += 1
        with self._errors(), self.sql.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(oids)
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    @contextmanager
    def _checked(
        self, table: TableSpec, one_row: Callable[[], Mapping[str, Any] | None]
    ) -> Iterator[None]:
        """A CHECK constraint's refusal names no column (the server's message names the
        constraint): where the constraint is on one column, the error names that one,
        as for every other refusal (Django's PositiveIntegerField, PowerDNS's
        lowercase names). So does a unique index on expressions (its detail says
        ``Key (lower(username))=…``): the error names the columns they use. A NOT NULL
        domain's refusal (``domain "Flag" does not allow null values``, or its CHECK's)
        names the column staged as the domain's base type that ``one_row`` (the
        chunk's row, when it holds one) leaves NULL (or, for a CHECK, gives a value)."""
        try:
            yield
        except DataError as error:
            diag = getattr(error.__cause__, "diag", None)
            constraint = getattr(diag, "constraint_name", None)
            if error.column is None and constraint is not None:
                error.column = table.extra.get("checks", {}).get(constraint)
            domain: str | None = getattr(diag, "datatype_name", None)
            if error.column is None and domain:
                # The domain's NOT NULL refuses a NULL, its CHECKs a value.
                null = error.code == "23502"
                staged = table.extra.get("stage_types", {})
                refused = [
                    c for c, v in (one_row() or {}).items() if c in staged and (v is None) == null
                ]
                if len(refused) > 1:  # the domain's own columns, by its name
                    name = sql.Identifier(domain).as_string(self.conn)
                    refused = [
                        c
                        for c in refused
                        if table.columns[c].declared in (name, domain)
                        or table.columns[c].declared.endswith(f".{name}")
                    ]
                if len(refused) == 1:
                    error.column = refused[0]
            raise
        except BulkError as error:
            # A trigger's RAISE EXCEPTION (SQLSTATE P0001) is how applications check a
            # row beyond what constraints say (MusicBrainz's "This attribute type can
            # not contain free text"). On a table with a trigger FOR EACH ROW it is
            # taken as the row's refusal, rejected like a CHECK's, naming the function
            # that raised. (On a table without one it stops the call, as a failure
            # not about a row does.)
            if error.code != "P0001" or not table.extra.get("row_triggers"):
                raise
            context = getattr(getattr(error.__cause__, "diag", None), "context", None)
            where = f" ({context.splitlines()[0]})" if context else ""
            raise ConstraintError(f"{error.message}{where}", code=error.code) from error.__cause__

    def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        def one_row() -> Mapping[str, Any] | None:
            return dict(zip(op.columns, rows[0], strict=True)) if len(rows) == 1 else None

        with self._checked(op.table, one_row):
            return self._write(op, rows)

    def _write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        n = len(rows)
        if not n:
            return ChunkCounts()
        if op.kind in _ON_CONFLICT:
            self._refuse_rules(op.table, op.kind)
        self._refuse_fixed(op, rows)
        if _direct(op):
            # A plain insert needs no set-based step: COPY straight into the table,
            # writing each row once instead of twice. (A conflict fails the COPY, and
            # the chunk is narrowed down like any other.)
            self._copy(None, op.table, op.columns, rows)
            counts = ChunkCounts(inserted=n)
        else:
            stage = self._stage(op.table, op.columns)
            self._copy(stage, op.table, op.columns, rows)
            counts = self._apply(op, stage, n)
        self._check_deferred(op.table)
        return counts

    def _check_deferred(self, table: TableSpec) -> None:
        """Check the table's INITIALLY DEFERRED keys now, not at COMMIT: a foreign key
        (every one Django makes) or unique key a row breaks is then a statement's error
        inside the chunk, so the bad rows are isolated and named like any other, instead
        of the COMMIT failing the whole call. SET CONSTRAINTS … IMMEDIATE checks what is
        pending; DEFERRED puts the keys back, so the rest of the transaction (an atomic=True
        call's later chunks) keeps deferring. In a caller's transaction the keys stay the
        caller's business: they are checked at the caller's COMMIT, as for its own writes."""
        deferred = table.extra.get("deferred")
        if not deferred or self.caller_transaction():
            return
        names = sql.SQL(", ").join(sql.SQL(name) for name in deferred)
        check = "SET CONSTRAINTS {names} IMMEDIATE; SET CONSTRAINTS {names} DEFERRED"
        self.statements += 1
        with self._errors():
            self.sql.execute(sql.SQL(check).format(names=names))

    def _apply(
        self, op: WriteOp, stage: str, n: int | None, text: tuple[str, ...] = ()
    ) -> ChunkCounts:
        """The set-based statement of ``op`` over its ``n`` staged rows (None: a plain
        insert on a table without INSERT rules, counted by the statement's row count)."""
        statement = self._statement(op, stage, text)
        self.statements += 1
        with self._errors():
            cursor = self.sql.execute(statement)
            if op.kind == "insert":
                return ChunkCounts(inserted=cursor.rowcount if n is None else n)
            assert n is not None  # only a plain insert is counted by its row count
            if op.kind == "insert_ignore":
                return ChunkCounts(inserted=cursor.rowcount, ignored=n - cursor.rowcount)
            if op.kind == "delete":
                return ChunkCounts(deleted=cursor.rowcount, not_found=n - cursor.rowcount)
            row = cursor.fetchone()
        assert row is not None
        if op.kind == "upsert":
            inserted, updated = row
            return ChunkCounts(inserted=inserted, updated=updated, unchanged=n - inserted - updated)
        updated, existing = row
        return ChunkCounts(updated=updated, unchanged=existing - updated, not_found=n - existing)

    def _refuse_fixed(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> None:
        """A value for a column the database computes (generated, identity ALWAYS) is
        the row's fault: raised as a data error, so the rows that carry one are
        isolated and rejected with the reason, and the others are written."""
        if op.kind == "delete":
            return
        fixed = op.table.extra.get("fixed", {})
        for i, column in enumerate(op.columns):
            if column in fixed and not (op.kind == "update" and column in op.key):
                for row in rows:
                    if row[i] is not None:
                        raise ConversionError(fixed[column], column=column)

    def _refuse_rules(self, table: TableSpec, what: str) -> None:
        """PostgreSQL refuses INSERT … ON CONFLICT on a table with INSERT or UPDATE
        rules: one clear error before anything is sent, instead of the server's
        "cannot perform INSERT RETURNING" once a chunk is staged."""
        rules = table.extra.get("rules")
        if rules:
            raise SchemaError(
                f"{what} into {table.name} needs INSERT … ON CONFLICT, which PostgreSQL "
                f"refuses on a table with INSERT or UPDATE rules ({', '.join(rules)}); "
                "a plain insert works (and applies them)"
            )

    def _statement(self, op: WriteOp, stage: str, text: tuple[str, ...] = ()) -> bytes:
        cache_key = (op.kind, op.table.name, op.columns, op.key, op.update_columns, stage, text)
        cached = self._sql.get(cache_key)
        if cached is not None:
            return cached
        schema, _, name = (
            op.table.name.rpartition(".") if "." in op.table.name else ("", "", op.table.name)
        )
        t = sa.table(name, *(sa.column(c) for c in op.table.columns), schema=schema or None)
        if schema and self._exists(op.table.name):
            t = sa.table(op.table.name, *(sa.column(c) for c in op.table.columns))
        staged = sa.table(stage, *(sa.column(c) for c in op.columns))
        # A column staged as text is cast to the table's type wherever it is read (its
        # size applied by the assignment: see "casts" in reflect).
        casts = op.table.extra.get("casts", {})
        s_c = {
            c: sa.cast(staged.c[c], _Declared(casts.get(c, op.table.columns[c].declared)))
            if c in text
            else staged.c[c]
            for c in op.columns
        }
        s = staged
        fixed = op.table.extra.get("fixed", {})
        # Columns the database computes are never written (their values are NULL here).
        cols = [c for c in op.columns if c not in fixed]
        set_columns = [c for c in op.set_columns if c not in fixed]
        columns = op.table.columns

        def distinct(a: Any, b: Any, c: str) -> Any:
            return self.distinct(columns[c], a, b)

        stmt: Any
        if op.kind in ("insert", "insert_ignore", "upsert"):
            defaults = op.table.extra.get("defaults", {})
            values = [
                sa.func.coalesce(s_c[c], sa.literal_column(defaults[c]))
                if c in defaults
                else s_c[c]
                for c in cols
            ]
            stmt = pg_insert(t).from_select(cols, sa.select(*values))
            if op.kind == "insert_ignore":
                stmt = stmt.on_conflict_do_nothing()
            elif op.kind == "upsert":
                if set_columns:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=list(op.key),
                        set_={c: stmt.excluded[c] for c in set_columns},
                        where=sa.or_(*(distinct(t.c[c], stmt.excluded[c], c) for c in set_columns)),
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=list(op.key))
                if op.table.extra.get("partitioned"):
                    # A partitioned table has no xmax to return: the keys found before
                    # (the statement's snapshot) tell inserted from updated instead.
                    written = stmt.returning(sa.literal_column("1")).cte("written")
                    given = sa.select(sa.func.count()).select_from(s).scalar_subquery()
                    found = (
                        sa.select(sa.func.count())
                        .select_from(t.join(s, sa.and_(*(t.c[k] == s.c[k] for k in op.key))))
                        .scalar_subquery()
                    )
                    wrote = sa.select(sa.func.count()).select_from(written).scalar_subquery()
                    stmt = sa.select(given - found, wrote - (given - found))
                else:
                    # xmax = 0 only for a freshly inserted row version: inserted vs updated.
                    written = stmt.returning(sa.literal_column("xmax = 0").label("fresh")).cte(
                        "written"
                    )
                    stmt = sa.select(
                        sa.func.count().filter(written.c.fresh),
                        sa.func.count().filter(sa.not_(written.c.fresh)),
                    )
        elif op.kind == "update":
            match = sa.and_(*(t.c[k] == s_c[k] for k in op.key))
            changed = (
                sa.update(t)
                .where(match)
                .where(sa.or_(*(distinct(t.c[c], s_c[c], c) for c in set_columns)))
                .values({c: s_c[c] for c in set_columns})
                .returning(sa.literal_column("1"))
                .cte("changed")
            )
            existing = (
                sa.select(sa.func.count()).select_from(t.join(staged, match)).scalar_subquery()
            )
            stmt = sa.select(
                sa.select(sa.func.count()).select_from(changed).scalar_subquery(), existing
            )
        elif op.kind == "delete":
            stmt = sa.delete(t).where(*(t.c[k] == s_c[k] for k in op.key))
        else:
            raise ValueError(f"unknown write kind {op.kind!r}")
        compiled = str(stmt.compile(dialect=self.dialect)).encode()
        self._sql[cache_key] = compiled
        return compiled

    # ------------------------------------------------------------------ reads

    def read(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        keys: Sequence[Any],
    ) -> Iterator[tuple[Any, ...]]:
        if not keys:
            return
        target = self._regclass(table.name)
        reads = table.extra.get("reads", {})
        select = sql.SQL(", ").join(
            sql.SQL("t.{}::{}").format(sql.Identifier(c), sql.SQL(reads[c]))
            if c in reads
            else sql.SQL("t.{}").format(sql.Identifier(c))
            for c in columns
        )
        if len(key) == 1:
            column = table.column(key[0])
            statement = sql.SQL(
                "SELECT {cols} FROM {t} AS t WHERE t.{k} = ANY(%s::{typ}[])"
            ).format(
                cols=select,
                t=target,
                k=sql.Identifier(key[0]),
                typ=sql.SQL(column.declared),
            )
            self.statements += 1
            with self._errors():
                yield from self.sql.execute(statement, (list(keys),))
            return
        # Composite keys: stage them and join, in a transaction of our own because the
        # stage empties at every commit.
        self._fresh_stages()
        own = not self._in_transaction()
        stage = self._stage(table, key)
        if own:
            self.begin()
        try:
            self._copy(stage, table, key, keys)
            statement = sql.SQL("SELECT {cols} FROM {t} AS t JOIN {s} AS s USING ({k})").format(
                cols=select,
                t=target,
                s=sql.Identifier(stage),
                k=sql.SQL(", ").join(map(sql.Identifier, key)),
            )
            self.statements += 1
            with self._errors():
                rows = self.sql.execute(statement).fetchall()
        finally:
            if own:
                self.rollback()
        yield from rows

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
        compiled = statement.compile(dialect=self.dialect)
        params = None
        if not isinstance(statement, sa.schema.ExecutableDDLElement):
            params = compiled.construct_params(dict(values or {}))
        if counted:
            self.statements += 1
        with self._errors():
            if binary and isinstance(self.sql, psycopg.Connection):
                cursor = self.sql.execute(str(compiled).encode(), params, binary=True)
            else:
                cursor = self.sql.execute(str(compiled).encode(), params)
            return cursor.fetchall() if cursor.description else []

    def plain_blobs(self, table: str, column: str) -> None:
        found = self.sql.execute(
            "SELECT a.attstorage FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attname = %s",
            (table, column),
        ).fetchall()
        if found and found[0][0] not in ("e", b"e"):
            with self._errors():
                self.sql.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE EXTERNAL").format(
                        sql.Identifier(table), sql.Identifier(column)
                    )
                )

    # ------------------------------------------------------------- primitives

    def core_table(self, table: TableSpec) -> sa.TableClause:
        """The table for SQLAlchemy Core statements."""
        return self._target(table)

    def distinct(self, column: ColumnSpec, a: Any, b: Any) -> Any:
        """SQL that is true where two values of ``column`` differ as data (numeric and
        timestamptz compare by value already; json has no equality: as jsonb)."""
        if column.extra_type == "json":
            return sa.cast(a, JSONB).is_distinct_from(sa.cast(b, JSONB))
        if column.extra_type in self._no_equality:
            # No equality operator (xml, point, json[] ...): compared as text.
            return sa.cast(a, sa.Text).is_distinct_from(sa.cast(b, sa.Text))
        return a.is_distinct_from(b)

    def load_stage(
        self,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        types: Mapping[str, str],
    ) -> None:
        """Binary COPY of driver-ready ``rows`` into the temporary table ``stage`` (sync),
        typed as ``table``'s columns, or by ``types`` for the stage's own columns."""
        own = {c: _TYPE_OIDS[t] for c, t in types.items()}
        self._copy_table(sql.Identifier(stage), table, columns, rows, own)

    def finish_stage(self, stage: str) -> None:
        """Statistics for the staged table, so that the planner joins it sensibly
        (temporary tables are never analyzed by autovacuum)."""
        self.statements += 1
        with self._errors():
            self.sql.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(stage)))

    def create_load_stage(
        self,
        stage: str,
        table: TableSpec,
        columns: Sequence[str],
        order: Sequence[str],
        retry: RetryPolicy,
        partitions: int,
    ) -> Sequence[tuple[range, str]]:
        """The stage, partitioned by range of the load's partition number (``order[0]``)
        into at most ``_STAGE_GROUPS`` tables of consecutive partitions (and a default
        one for numbers outside them): a plain insert publishes each group while later
        partitions are still being staged, reading only that group's table."""
        bounds = [partitions * g // _STAGE_GROUPS for g in range(_STAGE_GROUPS + 1)]
        spans = [range(a, b) for a, b in itertools.pairwise(sorted(set(bounds)))]
        groups = [(span, f"{stage}_{g}") for g, span in enumerate(spans)]

        def layout(quote: Callable[[str], str]) -> tuple[str, list[str]]:
            after = [
                f"CREATE TABLE {quote(name)} PARTITION OF {quote(stage)} "
                f"FOR VALUES FROM ({span.start}) TO ({span.stop})"
                for span, name in groups
            ]
            after.append(
                f"CREATE TABLE {quote(stage + '_rest')} PARTITION OF {quote(stage)} DEFAULT"
            )
            return f" PARTITION BY RANGE ({quote(order[0])})", after

        created = create_load_stage(self, stage, table, columns, order, retry, layout)
        # A stage made before (an earlier run of the load) may be laid out otherwise:
        # then it is published whole.
        return groups if created else ()

    def publish_stage(
        self, stage: str, op: WriteOp, order: Sequence[str]
    ) -> tuple[ChunkCounts, int]:
        """One set-based move: the stage's winning rows (``DISTINCT ON`` the key, last
        by ``order``) go into a temporary table, then the same statement a chunk's
        upsert runs writes them to the target and counts what it did. A plain insert
        reads the stage itself."""
        if op.kind == "insert":
            # Every staged row goes in (a key given twice fails the statement), so the
            # order does not matter: read straight from the stage, neither sorted nor
            # copied first (2,000,000 rows: 2.2 instead of 3.0 server CPU µs/row). The
            # statement's row count is the rows it wrote, without counting the stage
            # first, except where INSERT rules rewrite it: then the count is that of
            # the rules' last INSERT (0 where every row went elsewhere).
            if op.table.extra.get("insert_rules"):
                return self._apply(op, stage, count_staged(self, stage)), 0
            return self._apply(op, stage, None), 0
        total = count_staged(self, stage)
        name = f"bulkops_publish_{next(_STAGE_NUMBERS)}"
        columns = sql.SQL(", ").join(map(sql.Identifier, op.columns))
        ordering = [sql.SQL("{} DESC").format(sql.Identifier(c)) for c in order]
        if op.kind == "upsert" and op.key:
            keys = [sql.Identifier(k) for k in op.key]
            select = sql.SQL("SELECT DISTINCT ON ({}) {} FROM {} ORDER BY {}").format(
                sql.SQL(", ").join(keys), columns, sql.Identifier(stage),
                sql.SQL(", ").join([*keys, *ordering]),
            )  # fmt: skip
        else:
            select = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                columns, sql.Identifier(stage), sql.SQL(", ").join(map(sql.Identifier, order))
            )
        statement = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS {}").format(
            sql.Identifier(name), select
        )
        self.statements += 1
        with self._errors():
            n = self.conn.execute(statement).rowcount
        return self._apply(op, name, n), total - n

    def _target(self, table: TableSpec) -> sa.TableClause:
        schema, _, name = table.name.rpartition(".")
        if schema and not self._exists(table.name):
            return sa.table(name, *(sa.column(c) for c in table.columns), schema=schema)
        return sa.table(table.name, *(sa.column(c) for c in table.columns))

    def _run(self, stmt: Any, values: Mapping[str, Any]) -> psycopg.Cursor[Any]:
        """Compile a SQLAlchemy statement and run it with ``values`` for its binds."""
        compiled = stmt.compile(dialect=self.dialect)
        params = compiled.construct_params(dict(values))
        self.statements += 1
        with self._errors():
            return self.sql.execute(str(compiled).encode(), params)

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
        stmt, binds = select_where_statement(self._target(table), columns, where, order_by, limit)
        if lock:
            # Rows another claimer holds are skipped, not waited for.
            stmt = stmt.with_for_update(skip_locked=True)
        return self._run(stmt, binds).fetchall()

    def insert_returning(
        self, table: TableSpec, values: Mapping[str, Any], conflict: tuple[str, ...]
    ) -> tuple[Any, ...] | None:
        self._refuse_rules(table, "get_or_create")
        t = self._target(table)
        stmt = (
            pg_insert(t)
            .values({c: sa.bindparam(f"w{i}") for i, c in enumerate(values)})
            .on_conflict_do_nothing(index_elements=list(conflict))
            .returning(*(t.c[c] for c in table.columns))
        )
        binds = {f"w{i}": v for i, v in enumerate(values.values())}
        row: tuple[Any, ...] | None = self._run(stmt, binds).fetchone()
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
        # Two statements per chunk, the arrays typed as the table's columns (unnest: no
        # staging table, no COPY; ints travel as array text). First the target rows are
        # locked in key order, which says which keys exist: the UPDATE's join visits
        # rows in whatever order its plan likes, and two adjusts locking in different
        # orders deadlock. Then one guarded UPDATE adds the deltas (col = col + delta,
        # in the database) and returns the keys it applied. (One statement doing both,
        # the lock in a CTE, was measured slower on the server.)
        width = len(key)
        columns = (*key, column)
        names = [sql.Identifier(c) for c in columns]
        k = names[:width]
        d, t = sql.Identifier("bulkops_deltas"), sql.Identifier("bulkops_target")
        target = sql.Identifier(column)

        def unnest(n: int) -> sql.Composable:
            arrays = sql.SQL(", ").join(
                sql.SQL("{}::{}[]").format(
                    sql.Placeholder(f"a{i}"), sql.SQL(table.columns[c].declared)
                )
                for i, c in enumerate(columns[:n])
            )
            return sql.SQL("unnest({}) AS {}({})").format(arrays, d, sql.SQL(", ").join(names[:n]))

        tk = sql.SQL(", ").join(sql.SQL("{}.{}").format(t, c) for c in k)
        match = sql.SQL(" AND ").join(sql.SQL("{}.{} = {}.{}").format(t, c, d, c) for c in k)
        table_name = self._regclass(table.name)
        lock = sql.SQL(
            "SELECT {tk} FROM {table} AS {t} JOIN {keys} ON {match} ORDER BY {tk} FOR UPDATE OF {t}"
        ).format(tk=tk, table=table_name, t=t, keys=unnest(width), match=match)
        result = sql.SQL("{}.{} + {}.{}").format(t, target, d, target)
        guards = [
            sql.SQL("{} {} {}").format(result, sql.SQL(op), sql.Placeholder(name))
            for bound, op, name in ((min_value, ">=", "low"), (max_value, "<=", "high"))
            if bound is not None
        ]
        update = sql.SQL(
            "UPDATE {table} AS {t} SET {target} = {result} FROM {deltas} WHERE {where} "
            "RETURNING {tk}"
        ).format(
            table=table_name, t=t, target=target, result=result, deltas=unnest(width + 1),
            where=sql.SQL(" AND ").join([match, *guards]), tk=tk,
        )  # fmt: skip
        key_columns = [keys] if width == 1 else list(zip(*keys, strict=True))
        arrays = {f"a{i}": _array(v) for i, v in enumerate([*key_columns, deltas])}
        self.statements += 2
        with self._errors():
            found = self.sql.execute(lock, arrays).fetchall()
            applied = self.sql.execute(
                update, {**arrays, "low": min_value, "high": max_value}
            ).fetchall()
        if len(found) == len(applied) == len(keys):
            return [], []
        as_key = (lambda r: r[0]) if width == 1 else tuple
        found_keys = set(map(as_key, found))
        applied_keys = set(map(as_key, applied))
        missing = [k for k in keys if k not in found_keys]
        refused = [k for k in keys if k in found_keys and k not in applied_keys]
        return missing, refused

    def allocate(self, sequence: str, count: int, start: int) -> list[int]:
        name = _sequence_name(sequence)
        if name not in self._sequences:
            self._create_sequence(name, sequence, start)
            if not self._in_transaction():
                self._sequences.add(name)  # else the creation may still be rolled back
        self.statements += 1
        with self._errors():
            # One round trip for any count: the server draws the numbers and sends them
            # back as one array (one row, not one row per number).
            row = self.sql.execute(
                "SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)",
                (sql.Identifier(name).as_string(self.conn), count),
            ).fetchone()
        return list(row[0]) if row else []

    def _create_sequence(self, name: str, sequence: str, start: int) -> None:
        in_transaction = self._in_transaction()
        statements = [
            sql.SQL("CREATE SEQUENCE IF NOT EXISTS {} START WITH {}").format(
                sql.Identifier(name), sql.Literal(start)
            ),
            sql.SQL("COMMENT ON SEQUENCE {} IS {}").format(
                sql.Identifier(name), sql.Literal(f"bulkops sequence {sequence!r}")
            ),
        ]
        try:
            with self.savepoint() if in_transaction else nullcontext(), self._errors():
                for statement in statements:
                    self.sql.execute(statement)
        except BulkError as error:
            # Two processes creating the same sequence at once: one of them gets a
            # unique violation on the catalog. The sequence exists either way.
            if error.code not in ALREADY_EXISTS:  # made meanwhile by another session
                raise

    # ----------------------------------------------------------------- errors

    def _errors(self) -> AbstractContextManager[None]:
        return translate_errors(self.classify_error)

    def classify_error(self, error: BaseException) -> BulkError | None:
        if isinstance(error, OverflowError):
            return ConversionError(str(error))
        if not isinstance(error, psycopg.Error):
            return None
        code = error.sqlstate
        diag = error.diag
        message = diag.message_primary or str(error).strip()
        if diag.message_detail:
            message = f"{message} ({diag.message_detail})"
        column = diag.column_name
        if column is None and diag.message_detail:
            found = _KEY_DETAIL.search(diag.message_detail)
            if found:
                column = found.group("cols")
        if column is None and diag.context:
            found = _COPY_CONTEXT.search(diag.context)
            if found and found.group("col"):
                column = found.group("col")
        if isinstance(error, pg_errors.DeadlockDetected):
            return DeadlockError(message, code=code)
        if isinstance(error, pg_errors.SerializationFailure):
            return SerializationError(message, code=code)
        if isinstance(error, pg_errors.LockNotAvailable):
            return LockTimeoutError(message, code=code)
        if isinstance(error, pg_errors.QueryCanceled):
            return StatementTimeoutError(message, code=code)
        if (
            isinstance(error, pg_errors.AdminShutdown | pg_errors.CrashShutdown)
            or (code or "").startswith("08")
            or (
                isinstance(error, psycopg.OperationalError)
                and (self.conn.closed or self.conn.broken)
            )
        ):
            return ConnectionLostError(message, code=code)
        # Failures that are not about a row: the call stops with them (no bisection).
        if isinstance(error, pg_errors.InsufficientPrivilege):
            return AccessError(
                f"{message} (the role {self.conn.info.user!r} lacks a privilege this work "
                "needs: GRANT it, or connect as a role that has it)",
                code=code,
            )
        if isinstance(error, pg_errors.ReadOnlySqlTransaction):
            return AccessError(f"{message} (the database or transaction is read-only)", code=code)
        if (code or "").startswith("53"):
            return ResourceError(f"the database server is out of resources: {message}", code=code)
        if isinstance(error, psycopg.IntegrityError):
            return ConstraintError(message, code=code, column=column)
        if isinstance(error, psycopg.DataError) or (code or "").startswith("22"):
            return ConversionError(message, code=code, column=column)
        if code == "54000" and ("index row" in message or message.startswith("row is too big")):
            # A value too big for an index entry (Zabbix's items.key_ in items_1) or for
            # a row: the row's, not the statement's.
            return ConversionError(message, code=code, column=column)
        if code == "42601" and not message.startswith("syntax error at"):
            # A value its type's input refuses, though under the SQLSTATE of a syntax
            # error ('syntax error in tsvector: "x"', tt-rss's and Pagila's full-text
            # columns): the row's, not the statement's (the parser says "at or near").
            return ConversionError(message, code=code, column=column)
        if isinstance(error, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
            return SchemaError(message, code=code)
        if isinstance(error, psycopg.ProgrammingError) and code is None:
            if "dump" in message or "adapt" in message:
                return AdapterError(f"no adapter: {message}")
            return ConversionError(message)
        return BulkError(message, code=code)

    def close(self) -> None:
        if self.caller is not None:
            # The caller's connection and transaction stay the caller's (a transaction
            # bulkops began and a failure left open is ended).
            if self._restore_autocommit is not None or (
                self.conn.autocommit and not self.caller_transaction()
            ):
                self.rollback()
            if not self.conn.closed:
                self.conn.cursor_factory, self.conn.server_cursor_factory = self._cursor_factories
            return
        try:
            if not (self.conn.closed or self.conn.broken):
                self.rollback()
                # The connection goes back to the engine's pool: its next user (a later
                # worker, another Store) must not find our temporary tables there. Sent
                # on libpq directly, like the pool's own reset: housekeeping of the
                # connection, not a statement of the work (statement counters skip it).
                with suppress(psycopg.Error):
                    self.conn.pgconn.exec_(b"DISCARD TEMP")
                self.conn.autocommit = self._saved_autocommit
                self.conn.cursor_factory, self.conn.server_cursor_factory = self._cursor_factories
        finally:
            if self._pooled is not None:
                self._pooled.close()
            if self._owns_engine and self.engine is not None:
                self.engine.dispose()
