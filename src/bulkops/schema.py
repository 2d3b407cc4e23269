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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from .errors import ConversionError, SchemaError

__all__ = [
    "TYPES",
    "ColumnCodec",
    "ColumnSpec",
    "TableSpec",
    "build_row_encoder",
    "coerce",
    "infer_type",
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
NoneType = type(None)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str = "any"
    nullable: bool = True
    declared: str = ""
    has_default: bool = False
    extra_type: str = ""  # the backend's own base type name (e.g. PostgreSQL "int4")


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
    # A model's other names for columns (Django's ``user`` for ``user_id``), and what
    # turns one of its rows (an instance, a mapping by those names) into a mapping of
    # columns: set when the table was named by a model (``bulkops.integrations``).
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)
    row_adapter: Callable[[Any], Any] | None = field(default=None, compare=False)

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
        if len(names) == 1:
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

    def require_unique(self, cols: Sequence[str], verb: str) -> None:
        if not self.is_unique(cols):
            raise SchemaError(
                f"{verb}() on {self.name!r} needs a primary key or unique constraint on "
                f"({', '.join(cols)}); the table has "
                + (
                    ", ".join(
                        "(" + ", ".join(u) + ")" for u in (self.primary_key, *self.unique) if u
                    )
                    or "none"
                )
            )


# --------------------------------------------------------------------------- coercion

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off"})


def _blank(value: Any) -> bool:
    # Text sources have no NULL: an empty field in a non-text column means "no value".
    return isinstance(value, str) and not value.strip()


def _to_integer(value: Any) -> int | None:
    if value is None or _blank(value):
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


def _to_float(value: Any) -> float | None:
    if value is None or _blank(value):
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
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
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a decimal number")


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    raise ValueError(f"{type(value).__name__} value is not text")


def _to_bytes(value: Any) -> bytes | None:
    if value is None:
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
    if value is None or _blank(value):
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
    if value is None or _blank(value):
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
    if value is None or _blank(value):
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    raise ValueError(f"{type(value).__name__} {value!r} is not a timestamp")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A JSON number where a float holds it exactly; otherwise its exact digits as a
        # string, because json cannot write arbitrary-precision numbers.
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        # Text sources carry JSON as its text; a str for a JSON column is JSON text.
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError(f"not valid JSON: {error}") from None
    if isinstance(value, dict | list | int | float | bool | Decimal):
        json.dumps(value, default=_json_default)  # fail here, naming the column
        return value
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
        return Decimal(value)
    except InvalidOperation:
        return _to_decimal(value)


def float_from_text(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return _to_float(value)


def datetime_from_text(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return _to_datetime(value)


def date_from_text(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return _to_date(value)


COERCERS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "float": _to_float,
    "decimal": _to_decimal,
    "text": _to_text,
    "bytes": _to_bytes,
    "boolean": _to_boolean,
    "date": _to_date,
    "datetime": _to_datetime,
    "json": _to_json,
    "any": _to_any,
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
        if codec.fast:
            slow = f"(f(v{i}) if (f := q{i}.get(v{i}.__class__)) is not None else e{i}(v{i}))"
        if codec.bounds is not None:
            namespace[f"lo{i}"], namespace[f"hi{i}"] = codec.bounds
            test = f"(v{i}.__class__ is int and lo{i} <= v{i} <= hi{i}) or v{i} is None"
            exprs.append(f"v{i} if {test} else {slow}")
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


def _looks(kind: str, text: str) -> bool:
    text = text.strip()
    try:
        if kind == "integer":
            return _to_integer(text) is not None and "." not in text and "e" not in text.lower()
        if kind == "float":
            float(text)
            return True
        if kind == "boolean":
            return text.lower() in {"true", "false"}
        if kind == "date":
            dt.date.fromisoformat(text)
            return len(text) == 10
        if kind == "datetime":
            dt.datetime.fromisoformat(text)
            return True
    except (ValueError, TypeError):
        return False
    return False


def infer_type(values: Iterable[Any]) -> str:
    """The narrowest logical type that fits every sample value (for creating a table).

    Strings (as from CSV) are inspected for integers, numbers, booleans, dates and
    timestamps; native values map by their Python type. Empty strings and None fit
    anything. Numbers with a fractional part from text become ``decimal`` so that money
    read from a file stays exact.
    """
    kinds: set[str] = set()
    candidates = list(_INFER_ORDER)
    saw_text = False
    for value in values:
        if value is None or _blank(value):
            continue
        if isinstance(value, str):
            saw_text = True
            candidates = [k for k in candidates if _looks(k, value)]
            continue
        if isinstance(value, bool):
            kinds.add("boolean")
        elif isinstance(value, int):
            kinds.add("integer")
        elif isinstance(value, float):
            kinds.add("float")
        elif isinstance(value, Decimal):
            kinds.add("decimal")
        elif isinstance(value, dt.datetime):
            kinds.add("datetime")
        elif isinstance(value, dt.date):
            kinds.add("date")
        elif isinstance(value, bytes | bytearray | memoryview):
            kinds.add("bytes")
        elif isinstance(value, dict | list):
            kinds.add("json")
        else:
            kinds.add("text")
    if saw_text:
        if not candidates:
            kinds.add("text")
        elif candidates[0] == "float":
            kinds.add("decimal")
        else:
            kinds.add(candidates[0])
    if not kinds:
        return "text"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"integer", "float"}:
        return "float"
    if kinds <= {"integer", "decimal", "float"}:
        return "decimal"
    if kinds <= {"date", "datetime"}:
        return "datetime"
    return "text"
