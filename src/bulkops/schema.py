"""Tables as bulkops sees them, and how values are coerced to their columns.

A backend reflects a table into a ``TableSpec`` whose columns carry a *logical* type
(one of ``TYPES``). Coercion turns whatever the caller gave (Python values, or the
strings of a CSV file) into the canonical Python value of that logical type, or
raises ``ConversionError`` naming the column. The backend then adapts canonical values
to what its driver wants; ``build_row_encoder`` fuses both steps into one generated
function per call, because this runs once per row on the hot path.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from .errors import ConversionError, SchemaError

__all__ = [
    "TYPES",
    "ColumnCodec",
    "ColumnInference",
    "ColumnSpec",
    "MissingHint",
    "TableSpec",
    "build_row_encoder",
    "coerce",
    "column_type",
    "infer_type",
    "is_infinite",
    "is_nan",
    "missing_nan",
    "plain_value",
    "reject_infinite",
]

TYPES = (
    "integer",
    "float",
    "decimal",
    "text",
    "bytes",
    "boolean",
    "date",
    "datetime",
    "json",
    "any",
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_TYPE_WITH_ARGUMENTS = re.compile(r"(\w+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?")


def column_type(kind: str) -> tuple[str, int | None, int | None]:
    """A column type as ``create_table`` takes it: one of ``TYPES``, or a decimal with
    its precision and scale: ``"decimal(10, 2)"`` -> ``("decimal", 10, 2)``,
    ``"text"`` -> ``("text", None, None)``."""
    found = _TYPE_WITH_ARGUMENTS.fullmatch(kind.strip().lower())
    base = found.group(1) if found else ""
    if base not in TYPES or (found and found.group(2) and base != "decimal"):
        raise SchemaError(
            f"unknown column type {kind!r}: the types are {', '.join(TYPES)}, "
            "and decimal(precision, scale)"
        )
    assert found is not None
    precision, scale = (None if a is None else int(a) for a in found.groups()[1:])
    if precision is not None and not 0 <= (scale or 0) <= precision:
        raise SchemaError(f"{kind!r}: the scale must be between 0 and the precision")
    return base, precision, scale


NoneType = type(None)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str = "any"
    nullable: bool = True
    declared: str = ""
    has_default: bool = False
    extra_type: str = ""  # the backend's own base type name (e.g. PostgreSQL "int4")
    # How the database's equality on the column folds text, where it is looser than
    # the values' own ("": it is not): a KEY_FOLDS name, or "collation" for one
    # bulkops cannot mirror (a PostgreSQL nondeterministic collation). Keys in such a
    # column are matched by the database, never by sync's digests; the rows of one
    # call are told apart by their folded keys, as the database tells them apart.
    fold: str = ""
    # A datetime column whose values are kept as naive UTC (an aware value converted)
    # where the backend would keep an offset as given: how a model says it stores
    # them (Django's DateTimeField under USE_TZ, in SQLite's text).
    naive_utc: bool = False
    # A datetime column kept as text with all six digits of microseconds and no offset
    # where the backend stores text ("2024-01-01 12:00:00.000000"): SQLAlchemy's
    # SQLite DATETIME, which a model's queries compare as text.
    fixed_micro: bool = False

    @property
    def exact(self) -> bool:
        """Whether the database compares the column's values as bulkops does."""
        return not self.fold


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# The text folds of ColumnSpec.fold: SQLite's NOCASE lowers ASCII letters only (so "É"
# and "é" stay two keys there); PostgreSQL's citext compares lower(); its char(n)
# compares without trailing spaces ("en" is "en    ", AdventureWorks' Culture key).
# (columnar.ARROW_KEY_FOLDS does the same to Arrow arrays.)
KEY_FOLDS: dict[str, Callable[[str], str]] = {
    "ascii": lambda text: text.translate(_ASCII_LOWER),
    "lower": str.lower,
    "rtrim": lambda text: text.rstrip(" "),
}


def key_fold(column: ColumnSpec) -> Callable[[Any], Any] | None:
    """What makes a key value of ``column`` equal where the database finds it equal
    (text folded, other values as they are), or None where nothing needs folding."""
    fold = KEY_FOLDS.get(column.fold)
    if fold is None:
        return None
    return lambda value: fold(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class TableSpec:
    """A reflected table: columns in order, primary key and unique constraints.

    ``open``: the table declares only its key and takes any other column (DynamoDB);
    an undeclared column is of type ``any``.
    """

    name: str
    columns: Mapping[str, ColumnSpec]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    open: bool = False
    # A BEFORE INSERT row trigger may fill the NOT NULL columns a row leaves out
    # (Pagila's film.fulltext, kept by tsvector_update_trigger): which ones it fills,
    # only the database knows, so it takes or refuses such rows.
    insert_trigger: bool = False
    # A model's other names for columns (Django's ``user`` for ``user_id``), and what
    # turns one of its rows (an instance, a mapping by those names) into a mapping of
    # columns: set when the table was named by a model (``bulkops.integrations``).
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)
    row_adapter: Callable[[Any], Any] | None = field(default=None, compare=False)
    # The same for an insert, where the model also fills what a mapping leaves out
    # (SQLAlchemy's Column(default=...), as Core's insert() does); None: row_adapter.
    insert_adapter: Callable[[Any], Any] | None = field(default=None, compare=False)

    def canonical(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` keyed by column names (a model's names translated)."""
        aliases = self.aliases
        return {aliases.get(k, k): v for k, v in values.items()}

    def column(self, name: str) -> ColumnSpec:
        name = self.aliases.get(name, name)
        try:
            return self.columns[name]
        except KeyError:
            if self.open and isinstance(name, str) and name:
                return ColumnSpec(name, "any")
            raise SchemaError(self._unknown(name)) from None

    def check_columns(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` as column names (a model's names translated), each one checked."""
        aliases = self.aliases
        names = tuple(aliases.get(n, n) for n in names) if aliases else tuple(names)
        unknown = [
            n for n in names
            if n not in self.columns and not (self.open and isinstance(n, str) and n)
        ]  # fmt: skip
        if unknown:
            raise SchemaError(self._unknown(*unknown))
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise SchemaError(f"column(s) {', '.join(map(repr, dupes))} given more than once")
        return names

    def _unknown(self, *names: str) -> str:
        which = ", ".join(repr(n) for n in names)
        hint = ""
        by_case = {c.lower(): c for c in self.columns}
        if all(isinstance(n, str) and n.lower() in by_case for n in names):
            # FreeRADIUS's DDL says AcctSessionId; PostgreSQL folded the unquoted
            # name, so the table has acctsessionid.
            same = ", ".join(f"{n!r} is {by_case[n.lower()]!r}" for n in names)
            hint = (
                f" ({same} here: the names differ only in case, as when a database "
                "folded unquoted names in the table's DDL)"
            )
        elif len(names) == 1:
            close = difflib.get_close_matches(names[0], list(self.columns), n=1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        return (
            f"table {self.name!r} has no column {which}{hint}; "
            f"its columns are {', '.join(self.columns)}"
        )

    def resolve_key(self, key: str | Sequence[str] | None, verb: str) -> tuple[str, ...]:
        """The key columns for ``verb``: ``key`` if given, else the primary key."""
        if key is None:
            if not self.primary_key:
                raise SchemaError(f"table {self.name!r} has no primary key: pass key= to {verb}()")
            return self.primary_key
        cols = (key,) if isinstance(key, str) else tuple(key)
        if not cols:
            raise SchemaError(f"{verb}(): key= names no column")
        return self.check_columns(cols)

    def is_unique(self, cols: Sequence[str]) -> bool:
        """True when a primary key or unique constraint covers exactly ``cols``."""
        wanted = set(cols)
        return any(set(u) == wanted for u in (self.primary_key, *self.unique) if u)

    def covers_unique(self, cols: Sequence[str]) -> bool:
        """True when ``cols`` include every column of a primary key or unique
        constraint: a key value then names at most one row."""
        given = set(cols)
        return any(set(u) <= given for u in (self.primary_key, *self.unique) if u)

    def require_unique(self, cols: Sequence[str], verb: str, *, exact: bool = True) -> None:
        """SchemaError unless a primary key or unique constraint is on exactly ``cols``
        (``exact``, what upsert's ON CONFLICT needs) or among them."""
        if self.is_unique(cols) if exact else self.covers_unique(cols):
            return
        what = "on" if exact else "within"
        have = ", ".join("(" + ", ".join(u) + ")" for u in (self.primary_key, *self.unique) if u)
        raise SchemaError(
            f"{verb}() on {self.name!r} matches rows on ({', '.join(cols)}), but no primary "
            f"key or unique constraint is {what} those columns, so one key could touch "
            f"many rows; the table has {have or 'none'}. Pass key= naming the columns of "
            f"one, or add a unique constraint on ({', '.join(cols)})"
        )


# --------------------------------------------------------------------------- coercion

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})
# The text a boolean column reads as true or false (lower-cased, stripped): public for
# the columnar path, which applies the same rule with vectorized masks.
TRUE_TEXTS = _TRUE
FALSE_TEXTS = _FALSE


def _blank(value: Any) -> bool:
    # Text sources have no NULL: an empty field in a non-text column means "no value".
    return isinstance(value, str) and not value.strip()


# ------------------------------------------------ values of data libraries, NaN, infinity
#
# The rules for values that come from numpy, pandas and Arrow, and for NaN and infinity,
# live here once: every coercer (and so every backend's codec) applies them, and a
# columnar (Arrow) path can call the same small functions.

_LIBRARIES = frozenset({"numpy", "pandas", "pyarrow"})


def plain_value(value: Any) -> Any:
    """``value`` as the plain Python value it stands for, when it is a scalar of numpy,
    pandas or pyarrow; anything else is returned as it is.

    numpy scalars become their ``.item()`` (``np.int64(3)`` -> 3, ``np.bool_`` -> bool,
    ``np.str_`` -> str, ``np.datetime64`` -> datetime or date); the missing-value
    markers ``pd.NA``, ``pd.NaT``, numpy's ``datetime64('NaT')`` and Arrow nulls become
    None; an Arrow scalar becomes its ``.as_py()``. A timestamp with nanoseconds, which
    no Python datetime holds, raises ValueError rather than losing them. The classes
    are recognised by their module, so none of these libraries is imported here.
    """
    cls = value.__class__
    library = cls.__module__.partition(".")[0]
    if library not in _LIBRARIES:
        return value
    name = cls.__name__
    if library == "pyarrow":
        return value.as_py() if hasattr(value, "as_py") else value
    if library == "pandas":
        if name in ("NAType", "NaTType"):
            return None
        if name == "Timestamp":
            if value.nanosecond:
                raise ValueError(f"{value} has nanoseconds, which a Python datetime cannot hold")
            return value.to_pydatetime()
        if name == "Timedelta":
            return value.to_pytimedelta()
        return value
    if name in ("datetime64", "timedelta64"):
        if value != value:  # NaT is the only datetime64 unequal to itself
            return None
        unit = "datetime64[us]" if name == "datetime64" else "timedelta64[us]"
        micro = value.astype(unit)
        if micro != value:
            raise ValueError(f"{value} has nanoseconds, which a Python datetime cannot hold")
        item = (value if str(value.dtype).endswith("[D]") else micro).item()
        if isinstance(item, int):
            raise ValueError(f"{value} is outside the range of a Python datetime")
        return item
    return value.item() if hasattr(value, "item") else value


def is_nan(value: Any) -> bool:
    """True for a float NaN or a Decimal NaN (the only values unequal to themselves
    among numbers)."""
    return isinstance(value, float | Decimal) and value != value


def is_infinite(value: Any) -> bool:
    """True for a float or Decimal infinity."""
    return isinstance(value, float | Decimal) and value == value and value in _INFINITIES


_INFINITIES = (math.inf, -math.inf)


def missing_nan(value: Any) -> bool:
    """A NaN where the column's type holds no NaN: it stands for a missing value
    (pandas' convention) and is stored as NULL, never as the text 'nan'."""
    return is_nan(value)


def reject_infinite(value: Any, what: str) -> None:
    """Infinity goes only where the column's type holds it: elsewhere a rejection."""
    if is_infinite(value):
        raise ValueError(f"{value!r} is infinite; {what} holds no infinity")


def _plain(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert`` applied to ``plain_value(value)``: every coercer takes numpy,
    pandas and Arrow scalars as their Python equivalents."""

    def coerce_plain(value: Any) -> Any:
        if value.__class__.__module__.partition(".")[0] in _LIBRARIES:
            value = plain_value(value)
        return convert(value)

    coerce_plain.__name__ = convert.__name__
    coerce_plain.__doc__ = convert.__doc__
    return coerce_plain


def _to_integer(value: Any) -> int | None:
    if value is None or _blank(value) or missing_nan(value):
        return None
    if isinstance(value, bool):
        result = int(value)
    elif isinstance(value, int):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = int(text)
        except ValueError:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise ValueError(f"{value!r} is not an integer") from None
            if not number.is_finite() or number != number.to_integral_value():
                raise ValueError(f"{value!r} is not an integer") from None
            result = int(number)
    elif isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        result = int(value)
    else:
        raise ValueError(f"{type(value).__name__} {value!r} is not an integer")
    if not INT64_MIN <= result <= INT64_MAX:
        raise ValueError(f"{result} is outside the 64-bit integer range")
    return result


_INFINITY_TEXT = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})


def _finite_or_said(result: float, given: Any) -> float:
    """A float overflow (``'1e400'``, a huge Decimal) is an error, not infinity;
    infinity itself stays where it was asked for."""
    said = is_infinite(given) or (
        isinstance(given, str) and given.strip().lower() in _INFINITY_TEXT
    )
    if result in _INFINITIES and not said:
        raise ValueError(f"{given!r} is out of the range of a 64-bit float")
    return result


def _to_float(value: Any) -> float | None:
    """A float; NaN and infinity stay (the backend's codec decides where they go)."""
    if value is None or _blank(value):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int | Decimal):
        return _finite_or_said(float(value), value)
    if isinstance(value, str):
        try:
            return _finite_or_said(float(value.strip()), value)
        except ValueError as error:
            if "range" in str(error):
                raise
            raise ValueError(f"{value!r} is not a number") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a number")


def _to_decimal(value: Any) -> Decimal | None:
    if value is None or _blank(value):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() is the shortest string that round-trips, so 0.1 stays 0.1 instead of
        # becoming 0.1000000000000000055511151231257827...
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return plain_decimal(Decimal(value.strip()))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a decimal number")


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if missing_nan(value):
        return None
    reject_infinite(value, "a text column")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):  # its canonical text, as PostgreSQL's uuid prints it
        return str(value)
    raise ValueError(f"{type(value).__name__} value is not text")


def _to_bytes(value: Any) -> bytes | None:
    if value is None or missing_nan(value):
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        if not value:
            return None
        # PostgreSQL's text form of bytea, which is also what psql and COPY emit.
        if value.startswith("\\x"):
            try:
                return bytes.fromhex(value[2:])
            except ValueError:
                raise ValueError(f"{value[:40]!r} is not valid \\x hex") from None
        raise ValueError("text is not bytes: give bytes, or hex as '\\x...'")
    raise ValueError(f"{type(value).__name__} value is not bytes")


def _to_boolean(value: Any) -> bool | None:
    if value is None or _blank(value) or missing_nan(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{value!r} is not a boolean")


def _to_date(value: Any) -> dt.date | None:
    if value is None or _blank(value) or missing_nan(value):
        return None
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date()
        raise ValueError(f"{value.isoformat()!r} has a time of day; the column is a date")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date (YYYY-MM-DD)") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a date")


def _to_datetime(value: Any) -> dt.datetime | None:
    if value is None or _blank(value) or missing_nan(value):
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
        return whole_microseconds(value, parsed)
    raise ValueError(f"{type(value).__name__} {value!r} is not a timestamp")


# Python reads any number of fractional digits and drops those past microseconds
# (.NET and SQL Server's datetime2 write 7, pandas 9 where a time has nanoseconds).
_SUB_MICROSECONDS = re.compile(r"[.,][0-9]{6}([0-9]+)", re.ASCII)


def whole_microseconds(text: str, parsed: dt.datetime) -> dt.datetime:
    """``parsed``, the timestamp ``text`` gave, unless ``text`` holds a part of a
    microsecond that is not zero, which would be cut: refused, as a pandas or Arrow
    timestamp with nanoseconds is. (A text of 26 characters or fewer has no 7th
    fractional digit: the common case costs one ``len``.)"""
    if len(text) > 26 and (extra := _SUB_MICROSECONDS.search(text)) and extra[1].strip("0"):
        raise ValueError(f"{text.strip()} has nanoseconds; the database keeps microseconds")
    return parsed


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not JSON (JSON has no NaN or infinity)")
        # A JSON number where a float holds it exactly; otherwise its exact digits as a
        # string, because json cannot write arbitrary-precision numbers.
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or infinity)")


def _finite_json_float(text: str) -> float:
    number = float(text)
    if number in _INFINITIES:
        raise ValueError(f"{text} is out of the range of a 64-bit float")
    return number


def _json_plain(value: Any) -> Any:
    """A JSON document with what ``json.dumps`` cannot write inside it made plain:
    numpy/pandas scalars, and Decimals and dates (``_json_default``)."""
    if isinstance(value, dict):
        return {k: _json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_plain(v) for v in value]
    plain = plain_value(value)
    return _json_default(plain) if isinstance(plain, Decimal | dt.date) else plain


def _to_json(value: Any) -> Any:
    """A JSON document. A top-level NaN is a missing value (NULL); NaN or infinity
    inside a document is refused, because JSON has neither and the document would be
    unreadable by the database's JSON functions."""
    if value is None or missing_nan(value):
        return None
    if isinstance(value, str):
        # Text sources carry JSON as its text; a str for a JSON column is JSON text.
        try:
            return json.loads(value, parse_constant=_no_constant, parse_float=_finite_json_float)
        except ValueError as error:
            raise ValueError(f"not valid JSON: {error}") from None
    if isinstance(value, dict | list | tuple | int | float | bool | Decimal):
        foreign: list[Any] = []

        def default(item: Any) -> Any:
            # Called only for what json.dumps cannot write, so a driver that serialises
            # the document with plain json.dumps (psycopg's Jsonb) could not either:
            # JSON Lines numbers are read as Decimals, pandas gives numpy scalars.
            foreign.append(item)
            plain = plain_value(item)
            return _json_default(item) if plain is item else plain

        try:
            # fail here, naming the column
            json.dumps(value, default=default, allow_nan=False)
        except ValueError as error:
            if "JSON compliant" not in str(error):
                raise
            raise ValueError(
                "the document holds NaN or infinity, which JSON cannot represent"
            ) from None
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{value} is not JSON (JSON has no NaN or infinity)")
        # numpy/pandas scalars or Decimals inside: a plain copy, which any driver can
        # serialise
        plain_copy = foreign or isinstance(value, tuple | Decimal)
        return _json_plain(value) if plain_copy else value
    raise ValueError(f"{type(value).__name__} value is not JSON")


def _to_any(value: Any) -> Any:
    return value


# Fast paths for text (CSV) input: try the plain conversion first and fall back to the
# full coercion (blank -> NULL, stripping, clear errors) only when it fails.


def int_from_text(value: str) -> int | None:
    try:
        result = int(value)
    except ValueError:
        return _to_integer(value)
    if INT64_MIN <= result <= INT64_MAX:
        return result
    return _to_integer(value)  # raises the range error


def decimal_from_text(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return _to_decimal(value)
    # Only text with an exponent can have a positive one: test the text, not the number.
    return plain_decimal(number) if "e" in value or "E" in value else number


def float_keeps(number: Decimal) -> bool:
    """Whether the nearest 64-bit float gives ``number`` back exactly: any decimal of at
    most 15 significant digits, and a longer one only where it is that float's shortest
    form (``0.30000000000000004``, not ``40300.619960000004``, whose float is
    ``40300.61996``)."""
    as_float = float(number)
    if not math.isfinite(as_float):
        return False
    text = repr(as_float)
    # The same digits (the common case, a string compare), or the same value written
    # otherwise ("1.50", "1E+2").
    return text == str(number) or Decimal(text) == number


def plain_decimal(number: Decimal) -> Decimal:
    """``1E+2`` as ``100``: a value written with an exponent is stored as its digits
    (not the text '1E+2'), where that fits the decimal context's precision."""
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        try:
            return number.quantize(_ONE)
        except InvalidOperation:
            return number
    return number


_ONE = Decimal(1)


def float_from_text(value: str) -> float | None:
    try:
        result = float(value)
    except ValueError:
        return _to_float(value)
    # '1e400' overflows to inf: only an infinity spelled out is one
    return result if result not in _INFINITIES else _to_float(value)


def datetime_from_text(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return _to_datetime(value)
    return whole_microseconds(value, parsed)


def date_from_text(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return _to_date(value)


COERCERS: dict[str, Callable[[Any], Any]] = {
    "integer": _plain(_to_integer),
    "float": _plain(_to_float),
    "decimal": _plain(_to_decimal),
    "text": _plain(_to_text),
    "bytes": _plain(_to_bytes),
    "boolean": _plain(_to_boolean),
    "date": _plain(_to_date),
    "datetime": _plain(_to_datetime),
    "json": _plain(_to_json),
    "any": _plain(_to_any),
}


def adapted(first: Callable[[Any], Any], adapt: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``first`` (a coercion), then ``adapt`` (to the driver's form) unless it gave NULL."""

    def convert(value: Any) -> Any:
        value = first(value)
        return None if value is None else adapt(value)

    return convert


def coercer(kind: str, adapt: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """The coercion for logical type ``kind``, followed by ``adapt`` if given."""
    coerce = COERCERS[kind]
    return coerce if adapt is None else adapted(coerce, adapt)


def json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def coerce(value: Any, column: ColumnSpec) -> Any:
    """The canonical Python value of ``value`` for ``column``; ConversionError if none."""
    try:
        return COERCERS[column.type](value)
    except (ValueError, TypeError, ArithmeticError) as error:
        raise ConversionError(str(error), column=column.name) from error


def decimal_fits(value: Decimal, scale: int, precision: int | None, declared: str) -> Decimal:
    """``value`` if a ``numeric(precision, scale)`` column (``declared``) holds it as it
    is; ValueError, saying why, if the database would round it (more decimal places
    than the scale: PostgreSQL rounds silently) or refuse it (more digits before the
    point than ``precision - scale``). bulkops never rounds a value to fit."""
    _, digits, exponent = value.as_tuple()
    # nonzero digits past the scale
    if isinstance(exponent, int) and exponent < -scale and any(digits[scale + exponent :]):
        raise ValueError(
            f"{value} has more than {scale} decimal places; the column is {declared} "
            "(the value would be rounded)"
        )
    limit = None if precision is None else precision - scale  # digits before the point
    if limit is not None and value and value.is_finite() and value.adjusted() + 1 > limit:
        raise ValueError(
            f"{value} has more than {limit} digits before the decimal point; the column "
            f"is {declared}"
        )
    return value


def decimal_checker(
    scale: int, precision: int | None, declared: str
) -> Callable[[Decimal], Decimal]:
    """``decimal_fits`` for one column, as the row path calls it on every value: the
    common case read off the value's text (a few string operations; ``as_tuple()``
    costs seven times as much)."""
    limit = None if precision is None else precision - scale

    def check(value: Decimal) -> Decimal:
        text = str(value)
        if "E" not in text:
            dot = text.find(".")
            places = 0 if dot < 0 else len(text) - dot - 1
            before = (len(text) if dot < 0 else dot) - (text[0] == "-")
            if places <= scale and (limit is None or before <= limit):
                return value
        return decimal_fits(value, scale, precision, declared)

    return check


def too_fine(value: Any, declared: str) -> str:
    """Why a datetime with a finer fraction of a second than its column keeps is refused."""
    return (
        f"{value} has a finer fraction of a second than the column keeps; the column is "
        f"{declared} (the value would be rounded)"
    )


def fraction_checker(digits: int, declared: str) -> Callable[[Any], Any]:
    """For a datetime or time column that keeps ``digits`` (fewer than six) digits of a
    second (``declared``: PostgreSQL's ``timestamp(0)`` or ``time(0)``, which round a
    finer value without a word): the value as it is, or ValueError saying why. bulkops
    never rounds a value to fit."""
    unit = 10 ** (6 - digits)

    def check(value: Any) -> Any:
        if value.microsecond % unit:
            raise ValueError(too_fine(value, declared))
        return value

    return check


# ------------------------------------------------------------------ fast row encoding


@dataclass(frozen=True)
class ColumnCodec:
    """How one column's values travel to and from the driver.

    ``passthrough``: value classes the driver takes as they are (checked with one set
    lookup per value). ``fast``: converters for exact classes that are common on the
    hot path (e.g. ``Decimal -> str``, CSV text -> int), tried next; they must give the
    same result as ``encode``. Any other value goes through ``encode`` (coerce + adapt).
    ``bounds``: an ``int`` passes through only within these bounds (checked inline),
    for narrow integer columns whose driver would otherwise wrap it around.
    ``decode`` turns what the driver returns back into the canonical Python value
    (``None`` when nothing is needed).
    """

    passthrough: frozenset[type]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any] | None = None
    fast: Mapping[type, Callable[[Any], Any]] = field(default_factory=dict)
    bounds: tuple[int, int] | None = None


# Up to this many classes are tested one by one (``is``) in a generated row encoder;
# more take one set or dict lookup.
_CLASS_TESTS = 3


class RowShapeError(Exception):
    """A row whose columns differ from the call's columns (handled per row, slow path)."""


def build_row_encoder(
    columns: Sequence[str],
    codecs: Sequence[ColumnCodec],
    *,
    mappings: bool,
    strict_width: bool = True,
) -> Callable[[Any], tuple[Any, ...]]:
    """One function that turns a row (mapping or tuple) into the driver's value tuple.

    It is generated as source code so that the common case costs one call and one set
    lookup per value; any failure (a missing or extra column, a value that does not
    coerce) raises, and the caller re-examines that single row slowly to say why.
    Column names never enter the generated code: values are unpacked by position.
    ``strict_width``: a row with more or fewer values than ``columns`` fails (so a
    mapping with an unexpected column is not silently cut down).
    """
    n = len(columns)
    names = [f"v{i}" for i in range(n)]
    namespace: dict[str, Any] = {"RowShapeError": RowShapeError}
    exprs = []
    for i, codec in enumerate(codecs):
        namespace[f"p{i}"] = codec.passthrough
        namespace[f"e{i}"] = codec.encode
        namespace[f"q{i}"] = codec.fast
        slow = f"e{i}(v{i})"
        if 0 < len(codec.fast) <= _CLASS_TESTS:
            # A class compared by identity costs less than a dict lookup and a call.
            for j, (cls, convert) in reversed(list(enumerate(codec.fast.items()))):
                namespace[f"c{i}_{j}"], namespace[f"f{i}_{j}"] = cls, convert
                slow = f"f{i}_{j}(v{i}) if v{i}.__class__ is c{i}_{j} else {slow}"
            slow = f"({slow})"
        elif codec.fast:
            slow = f"(f(v{i}) if (f := q{i}.get(v{i}.__class__)) is not None else e{i}(v{i}))"
        if codec.bounds is not None:
            namespace[f"lo{i}"], namespace[f"hi{i}"] = codec.bounds
            test = f"(v{i}.__class__ is int and lo{i} <= v{i} <= hi{i})"
            if NoneType in codec.passthrough:
                test += f" or v{i} is None"
            exprs.append(f"v{i} if {test} else {slow}")
        elif 0 < len(codec.passthrough) <= _CLASS_TESTS:
            # Likewise the classes taken as they are; None (the same object always)
            # last, as the rarer value.
            tests = [f"v{i}.__class__ is k{i}_{j}" for j in range(len(codec.passthrough))]
            kinds = sorted(codec.passthrough, key=lambda k: k is NoneType)
            for j, kind in enumerate(kinds):
                namespace[f"k{i}_{j}"] = kind
                if kind is NoneType:
                    tests[j] = f"v{i} is None"
            exprs.append(f"v{i} if {' or '.join(tests)} else {slow}")
        else:
            exprs.append(
                f"v{i} if v{i}.__class__ in p{i} else {slow}" if codec.passthrough else slow
            )
    if mappings:
        namespace["get"] = itemgetter(*columns)
        unpack = f"    {', '.join(names)}{',' if n == 1 else ''} = get(row)\n"
    else:
        unpack = f"    {', '.join(names)}{',' if n == 1 else ''} = row\n"
    check = f"    if len(row) != {n}:\n        raise RowShapeError\n" if strict_width else ""
    source = (
        f"def encode(row):\n{check}{unpack}    return ({', '.join(exprs)}{',' if n == 1 else ''})\n"
    )
    exec(compile(source, "<bulkops row encoder>", "exec"), namespace)
    encode: Callable[[Any], tuple[Any, ...]] = namespace["encode"]
    return encode


# ------------------------------------------------------------------- type inference

_INFER_ORDER = ("integer", "float", "boolean", "date", "datetime")
# What a string can be where values carry their own types (JSON has no dates).
_TYPED_TEXT_ORDER = ("date", "datetime")
# A value that fits a kind also fits these wider ones; kinds not listed are disjoint.
_WIDER = {"integer": ("float",), "date": ("datetime",)}

# Text that only becomes a number, a boolean or a date if its text is kept as written:
# no leading zeros ("02134" is a zip code), no "+", no "_", ASCII digits only, no "-0".
# Surrounding blanks are allowed (the coercions strip them). A fraction may leave out
# its 0 (".5", "-.5"), as Stata and SAS write numbers: the same number, as "1e2" is.
_INT_RE = re.compile(r"[ \t]*(?:0|-?[1-9][0-9]*)[ \t]*", re.ASCII)
_NUMBER_RE = re.compile(
    r"[ \t]*-?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[ \t]*",
    re.ASCII,
)
_BOOL_RE = re.compile(r"[ \t]*(?:true|false)[ \t]*", re.ASCII | re.IGNORECASE)
_DATE_RE = re.compile(r"[ \t]*[0-9]{4}-[0-9]{2}-[0-9]{2}[ \t]*", re.ASCII)
_DATETIME_RE = re.compile(
    r"[ \t]*[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?[ \t]*",
    re.ASCII,
)

# How missing values are often spelled (R writes NA, databases NULL, pandas NaN, ...).
# Inference does not let them decide a column's type; it reports them instead, so the
# caller can say which of them mean NULL.
MISSING_SPELLINGS = frozenset({"NA", "N/A", "NULL", "null", "None", "NaN", "nan", "-", "?"})
# Distinct texts remembered per column so that repeated values are checked once.
_SEEN_LIMIT = 65536


def _fits_text(kind: str, text: str) -> bool:
    """Whether CSV-style ``text`` is a value of ``kind`` whose text survives the
    conversion (see the patterns above)."""
    try:
        if kind == "integer":
            if not _INT_RE.fullmatch(text):
                return False
            return INT64_MIN <= int(text) <= INT64_MAX
        if kind == "float":
            if not _NUMBER_RE.fullmatch(text):
                return False
            text = text.strip()
            return not (text.startswith("-") and Decimal(text).is_zero())
        if kind == "boolean":
            return _BOOL_RE.fullmatch(text) is not None
        if kind == "date":
            if not _DATE_RE.fullmatch(text):
                return False
            dt.date.fromisoformat(text.strip())
            return True
        if kind == "datetime":
            if not _DATETIME_RE.fullmatch(text):
                return False
            dt.datetime.fromisoformat(text.strip())
            return True
    except (ValueError, ArithmeticError):
        return False
    return False


def _native_kind(cls: type) -> str:
    if issubclass(cls, bool):
        return "boolean"
    if issubclass(cls, int):
        return "integer"
    if issubclass(cls, float):
        return "float"
    if issubclass(cls, Decimal):
        return "decimal"
    if issubclass(cls, dt.datetime):
        return "datetime"
    if issubclass(cls, dt.date):
        return "date"
    if issubclass(cls, bytes | bytearray | memoryview):
        return "bytes"
    if issubclass(cls, dict | list):
        return "json"
    return "text"


@dataclass
class MissingHint:
    """A column that would have ``type`` but for values spelled like a missing value
    (``tokens``: each spelling and how often it occurs). Made ``text`` as it stands."""

    column: str
    type: str
    tokens: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "type": self.type, "tokens": dict(self.tokens)}


class ColumnInference:
    """One column's type, narrowed batch by batch over as many values as it is shown.

    Strings (as from CSV) are checked against integers, numbers, booleans, dates and
    timestamps, each written the way it would be read back (``_fits_text``); native
    values map by their Python type. None and blank strings fit anything. Text numbers
    with a fractional part or an exponent become ``decimal`` so that money read from a
    file stays exact. Missing-value spellings (``MISSING_SPELLINGS``) are counted aside.
    ``typed``: the values carry their own types (JSON), so a string is text, a date or
    a time, never a number or a boolean (a version ``"13.0"`` stays as written).
    """

    def __init__(self, typed: bool = False) -> None:
        self.candidates: list[str] = list(_TYPED_TEXT_ORDER if typed else _INFER_ORDER)
        self.kinds: set[str] = set()
        self.saw_text = False
        self.missing: dict[str, int] = {}
        # A number's text that no 64-bit float gives back (``float_keeps``; the least
        # one): where decimals are stored as floats (SQLite), the column cannot be a
        # decimal.
        self.inexact: str | None = None
        self._seen: set[str] = set()

    def add(self, values: Sequence[Any]) -> None:
        if self.saw_text and not self.candidates:
            return  # text already, whatever comes (and no hint: it is text without them)
        try:
            distinct = set(values)
        except TypeError:  # dicts or lists (JSON): look at each value
            distinct = None
        if distinct is not None:
            distinct.discard(None)
            if not distinct:
                return
            # The types of distinct values are enough when all are text (CSV); other
            # values are looked at one by one, because a set holds only one of 1, 1.0
            # and True.
            if set(map(type, distinct)) == {str}:
                self._add_texts(distinct, values)
                return
        classes = set(map(type, values))
        classes.discard(NoneType)
        if str in classes:
            self._add_texts({v for v in values if v.__class__ is str}, values)
            classes.discard(str)
        for cls in classes:
            kind = _native_kind(cls)
            if kind == "text" and issubclass(cls, str):
                self._add_texts({v for v in values if isinstance(v, cls)}, values)
            elif kind in ("integer", "decimal"):
                self.kinds.add(self._add_numbers([v for v in values if isinstance(v, cls)], kind))
            else:
                self.kinds.add(kind)

    def _add_numbers(self, numbers: list[Any], kind: str) -> str:
        """The kind of native integers or decimals (JSON's numbers): an integer outside
        64 bits makes the column decimal, as its text would; a number no float gives
        back is noted (``inexact``), as for text."""
        if kind == "integer" and not INT64_MIN <= min(numbers) <= max(numbers) <= INT64_MAX:
            kind = "decimal"
        if kind == "decimal":
            for number in numbers:
                text = str(number)
                if (
                    len(text) > 16
                    and (self.inexact is None or text < self.inexact)
                    and not float_keeps(Decimal(number))
                ):
                    self.inexact = text
        return kind

    def add_distinct(self, texts: Iterable[str], count: Callable[[str], int]) -> None:
        """Add the distinct texts of a batch (no None; a column read as text, e.g. by
        pyarrow) without the batch itself: ``count(token)`` says how often a
        missing-value spelling among them occurs. Same result as ``add`` of the batch."""
        if self.saw_text and not self.candidates:
            return
        self._add_texts(set(texts), count)

    def _add_texts(self, texts: set[str], values: Sequence[Any] | Callable[[str], int]) -> None:
        spelled = texts & MISSING_SPELLINGS
        count = values if callable(values) else values.count
        for token in spelled:
            self.missing[token] = self.missing.get(token, 0) + count(token)
        fresh = texts - self._seen
        fresh -= spelled
        if len(self._seen) < _SEEN_LIMIT:
            self._seen |= fresh
        for text in fresh:
            if not text or text.isspace():
                continue
            self.saw_text = True
            if self.candidates:
                self._narrow(text)

    def _narrow(self, text: str) -> None:
        candidates = self.candidates
        for i, kind in enumerate(candidates):
            if _fits_text(kind, text):
                # The least such text: the same whatever the order of the values.
                if (
                    kind == "float"
                    and len(text) > 16
                    and (self.inexact is None or text < self.inexact)
                    and not float_keeps(Decimal(text))
                ):
                    self.inexact = text
                wider = _WIDER.get(kind, ())
                self.candidates = [kind, *(k for k in candidates[i + 1 :] if k in wider)]
                return
        self.candidates = []

    @staticmethod
    def fits(value: Any, kind: str) -> bool:
        """Whether ``value`` fits ``kind`` the way inference would have judged it."""
        if value is None or (isinstance(value, str) and (not value or value.isspace())):
            return True
        if isinstance(value, str):
            if kind in ("text", "any"):
                return True
            if kind == "decimal":
                kind = "float"
            return kind in _INFER_ORDER and _fits_text(kind, value)
        have = _native_kind(type(value))
        return have == kind or kind in ("text", "any") or _merge({have, kind}) == kind

    def result(self) -> str:
        """The column's type. Missing-value spellings fit no type but text, so a column
        holding them is text (``missing_hint`` says what it would be without them)."""
        kind = self._kind_without_missing()
        return "text" if self.missing else kind

    def _kind_without_missing(self) -> str:
        kinds = set(self.kinds)
        if self.saw_text:
            if not self.candidates:
                kinds.add("text")
            elif self.candidates[0] == "float":
                kinds.add("decimal")
            else:
                kinds.add(self.candidates[0])
        return _merge(kinds)

    def missing_hint(self, column: str) -> MissingHint | None:
        """What the column would be without its missing-value spellings, if that is not
        text; None when it has none, or would be text anyway."""
        if not self.missing:
            return None
        kind = self._kind_without_missing()
        if kind == "text":
            return None
        return MissingHint(column, kind, dict(sorted(self.missing.items())))


def _merge(kinds: set[str]) -> str:
    if not kinds:
        return "text"
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"integer", "float"}:
        return "float"
    if kinds <= {"integer", "decimal", "float"}:
        return "decimal"
    if kinds <= {"date", "datetime"}:
        return "datetime"
    return "text"


def infer_type(values: Iterable[Any]) -> str:
    """The narrowest logical type that fits every value (for creating a table); see
    ``ColumnInference``."""
    inference = ColumnInference()
    inference.add(values if isinstance(values, list) else list(values))
    return inference.result()
