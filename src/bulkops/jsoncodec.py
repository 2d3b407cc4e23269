"""The one JSON form of bulkops' values: changesets, rejects files, ``--json`` output
and the run log all write values this way.

JSON holds strings, numbers, booleans, null, lists and objects. Everything else is
written so that it reads back as what it was:

- ``Decimal`` -> ``{"$decimal": "1.50"}`` (exact digits; a JSON number would be a float)
- ``bytes`` -> ``{"$bytes": "<base64>"}``
- ``set`` -> ``{"$set": [...]}`` (sorted, so the same set always writes the same text)
- datetimes, dates and times -> ISO 8601 text; UUIDs -> text; tuples -> lists
- anything else -> its ``repr`` (text)

``from_json`` undoes the tags; ISO text stays text, for the target column's own
coercion to read (a column of type ``any`` has no declared type to say it was a date).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import operator
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["dumps", "dumps_size", "from_json", "loads", "to_json"]


def to_json(value: Any) -> Any:
    """``value`` as JSON data (tagged where JSON alone would lose what it was)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return {"$set": [to_json(v) for v in sorted(value, key=repr)]}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return repr(value)


def from_json(value: Any, kind: str = "any") -> Any:
    """The value ``to_json`` wrote, back in Python form for a column of ``kind``
    (text forms of datetimes are coerced by the target's own codecs)."""
    if isinstance(value, dict):
        if len(value) == 1:
            if "$bytes" in value:
                return base64.b64decode(value["$bytes"])
            if "$set" in value:
                return {from_json(v) for v in value["$set"]}
            if "$decimal" in value:
                return Decimal(value["$decimal"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, float) and kind == "decimal":
        return Decimal(repr(value))
    return value


def _decimal(value: Decimal) -> dict[str, str]:
    return {"$decimal": str(value)}


# ``to_json`` of the common values json cannot write, by their exact class: json calls
# its ``default`` once per such value, and ``to_json`` tries several kinds (a Mapping
# check among them) before a datetime's.
_BY_CLASS: dict[type, Callable[[Any], Any]] = {
    Decimal: _decimal,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
    uuid.UUID: str,
}


def _default(value: Any) -> Any:
    write = _BY_CLASS.get(value.__class__)
    return to_json(value) if write is None else write(value)


# The bytes of ``dumps`` of values of these exact classes, summed over a list of them,
# without writing their tagged forms: ``{"$decimal": "<str>"}`` is 16 bytes around the
# text; ISO 8601 and UUID texts are ASCII, written in quotes.
_SIZE_BY_CLASS: dict[type, Callable[[list[Any]], int]] = {
    Decimal: lambda values: sum(map(len, map(str, values))) + 16 * len(values),
    dt.datetime: lambda values: _datetimes_size(values),
    dt.date: lambda values: sum(map(len, map(dt.date.isoformat, values))) + 2 * len(values),
    dt.time: lambda values: sum(map(len, map(dt.time.isoformat, values))) + 2 * len(values),
    uuid.UUID: lambda values: 38 * len(values),
}


def _datetimes_size(values: list[dt.datetime]) -> int:
    """``_SIZE_BY_CLASS`` of datetimes: with one fixed zone (or none), from which of
    them show microseconds ("2024-01-02T03:04:05[.ffffff]" + the zone's offset text),
    without writing each one."""
    zones = set(map(_TZINFO, values))
    zone = zones.pop() if len(zones) == 1 else False
    if zone is None or isinstance(zone, dt.timezone):
        micro = len(values) - list(map(_MICROSECOND, values)).count(0)
        first = values[0]
        offset = len(first.isoformat()) - len(first.replace(tzinfo=None).isoformat())
        return (19 + offset + 2) * len(values) + 7 * micro
    return sum(map(len, map(dt.datetime.isoformat, values))) + 2 * len(values)


_TZINFO = operator.attrgetter("tzinfo")
_MICROSECOND = operator.attrgetter("microsecond")


def dumps_size(values: list[Any]) -> int:
    """The UTF-8 bytes of ``dumps(value)`` summed over ``values``, at C speed: one
    ``dumps`` of the list for plain values, and the tagged classes' sizes counted
    without building their tags (a changeset's size without writing it)."""
    if not values:
        return 0
    classes = set(map(type, values))
    total = 0
    rest = values
    if not classes.isdisjoint(_SIZE_BY_CLASS):
        for cls in classes.intersection(_SIZE_BY_CLASS):
            total += _SIZE_BY_CLASS[cls]([v for v in values if v.__class__ is cls])
        rest = [v for v in values if v.__class__ not in _SIZE_BY_CLASS]
        if not rest:
            return total
    # "[a, b]": the brackets and each ", " between values are not the values'.
    text = dumps(rest).encode("utf-8", "surrogatepass")
    return total + len(text) - 2 - 2 * (len(rest) - 1)


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """One line of JSON Lines (without its newline), non-ASCII text kept as it is."""
    return json.dumps(value, ensure_ascii=False, default=_default, sort_keys=sort_keys)


def loads(text: str) -> Any:
    """What ``dumps`` wrote, tags undone."""
    return from_json(json.loads(text))
