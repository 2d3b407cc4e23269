"""Row hashing for sync: a canonical form of values (equal data hashes the same,
whatever its Python type), a row's stable hash, the id of a sync's scope, the
digest of a whole source, and the per-row digests of sync's state: a binary
canonical encoding of each value, hashed to 64 bits a column at a time from the
encoding's Arrow buffers with numpy (no Python object per row). The digests detect
changes: they are not cryptographic, and ``full=True`` (which compares the target's
rows) remains the safety net. The construction is described at "row digests"
below."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from itertools import repeat
from typing import Any

from ..jsoncodec import to_json

__all__ = [
    "Encoded",
    "HashedRows",
    "SourceDigest",
    "array_column",
    "canonical",
    "column_types",
    "encode_array",
    "encode_value",
    "hash_keys",
    "hash_record_batch",
    "hash_value_rows",
    "plain_column",
    "row_hash",
    "scope_id",
    "values_column",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _number(value: int | float | Decimal) -> Any:
    """One form for a number however it was written: 1, 1.0 and Decimal("1.00") agree."""
    if value.__class__ is int:
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return ("float", repr(value))
        if value.is_integer():
            return int(value)
        value = Decimal(repr(value))
    assert isinstance(value, Decimal)
    if not value.is_finite():
        return ("decimal", str(value))
    if value == value.to_integral_value():
        return int(value)
    return ("decimal", format(value.normalize(), "f"))


def canonical(value: Any) -> Any:
    """A normal form of ``value`` that compares and hashes the same for equal data:
    numbers by value whatever their type, datetimes as UTC instants (naive ones are
    taken as UTC), mappings whatever their key order, sets whatever their order."""
    cls = value.__class__
    if value is None or cls is str or cls is bool:
        return value
    if cls is int or cls is float or isinstance(value, Decimal | int | float):
        return _number(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return ("datetime", (value - _EPOCH) // dt.timedelta(microseconds=1))
    if isinstance(value, dt.date | dt.time):
        return (cls.__name__, value.isoformat())
    if isinstance(value, bytes | bytearray | memoryview):
        return ("bytes", bytes(value))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted(repr(canonical(v)) for v in value)))
    if isinstance(value, list | tuple):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, uuid.UUID):
        return str(value)
    return ("repr", repr(value))


def row_hash(values: Iterable[Any]) -> bytes:
    """A stable 16-byte hash of a row's values in their canonical form."""
    text = repr(tuple(canonical(v) for v in values)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


def scope_id(
    key: Sequence[str],
    columns: Sequence[str] | None,
    where: Mapping[str, Any],
    delete_missing: bool,
) -> str:
    """What a sync's digest stands for: its key, compared columns, ``where`` and
    whether rows missing from the source were deleted."""
    text = json.dumps(
        {
            "key": list(key),
            "columns": None if columns is None else sorted(columns),
            "where": {k: to_json(canonical(v)) for k, v in sorted(where.items())},
            "delete_missing": delete_missing,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class SourceDigest:
    """The digest of a whole source, fed a chunk of rows at a time (in input order)."""

    def __init__(self, scope: str) -> None:
        self._hash = hashlib.sha256(scope.encode())
        self.rows = 0

    def update(self, rows: Iterable[Iterable[Any]]) -> None:
        """Rows as given: each one's canonical hash (1, 1.0 and Decimal("1") agree)."""
        for row in rows:
            self._hash.update(row_hash(row))
            self.rows += 1

    def update_encoded(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows already encoded for one table's columns: the same values always encode
        the same way, so their text serves, at C speed (about 1 s less per million rows
        than hashing each row). The same data given in another form (1.0 for 1) only
        costs a full comparison, which then finds nothing to change."""
        text = "\n".join(map(repr, rows)) + "\n"
        self._hash.update(text.encode("utf-8", "surrogatepass"))
        self.rows += len(rows)

    def hexdigest(self) -> str:
        return f"rows:{self.rows}:sha256:{self._hash.hexdigest()}"


# ------------------------------------------------------- binary canonical encoding
#
# Row digests (sync's per-row state) hash a compact binary encoding of each value:
# a tag byte, then a fixed-width payload or a 4-byte length and the bytes. The same
# rule as ``canonical`` (1, 1.0 and Decimal("1.00") agree; datetimes are UTC
# instants, naive ones taken as UTC), written so that it can be computed a column at
# a time from Arrow arrays (``encode_array``), with ``encode_value`` for the values a
# column of Arrow cannot hold. Both give the same bytes for the same data: that is
# what makes the digests of dict rows, tuples and Arrow batches agree.
#
#   null      00
#   bool      01 b
#   integer   02 int64 (an integral number: int, 1.0, Decimal("1.00")) within int64
#   number    03 len text  (an integer beyond int64, or a decimal a float cannot hold)
#   float     04 float64   (a number that is not integral; a Decimal equal to a float's
#                           shortest repr, as canonical() takes it, encodes as that float)
#   special   05 len text  (NaN and infinities)
#   text      06 len utf-8 (also UUIDs, as canonical() takes them)
#   bytes     07 len bytes
#   datetime  08 int64     microseconds since 1970-01-01 UTC
#   date      09 int32     days since 1970-01-01
#   time      0a int64     microseconds since midnight (a naive time)
#   other     0b len text  repr of canonical() (mappings, lists, sets, aware times...)
#
# Integers are little-endian, lengths are uint32.

ENCODING_VERSION = 5

_INT64 = 2**63
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_LEN = struct.Struct("<I")
_DAY = dt.timedelta(days=1)
_DATE_EPOCH = dt.date(1970, 1, 1)
_TRUE, _FALSE, _NULL = b"\x01\x01", b"\x01\x00", b"\x00"


def _sized(tag: bytes, data: bytes) -> bytes:
    return tag + _LEN.pack(len(data)) + data


def _integer(value: int) -> bytes:
    if -_INT64 <= value < _INT64:
        return b"\x02" + _I64.pack(value)
    return _sized(b"\x03", str(value).encode())


def _encode_number(value: int | float | Decimal) -> bytes:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return _sized(b"\x05", f"float:{value!r}".encode())
        if value.is_integer():
            return _integer(int(value))
        return b"\x04" + _F64.pack(value)
    if isinstance(value, int):
        return _integer(value)
    if not value.is_finite():
        return _sized(b"\x05", str(value).encode())
    if value == value.to_integral_value():
        return _integer(int(value))
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return b"\x04" + _F64.pack(as_float)
    return _sized(b"\x03", format(value.normalize(), "f").encode())


def encode_value(value: Any) -> bytes:
    """The binary canonical encoding of one value (see above)."""
    cls = value.__class__
    if value is None:
        return _NULL
    if cls is str:
        return _sized(b"\x06", value.encode("utf-8", "surrogatepass"))
    if cls is bool:
        return _TRUE if value else _FALSE
    if cls is int:
        return _integer(value)
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, float | int | Decimal):
        return _encode_number(value)
    if isinstance(value, str):
        return _sized(b"\x06", str(value).encode("utf-8", "surrogatepass"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return b"\x08" + _I64.pack((value - _EPOCH) // dt.timedelta(microseconds=1))
    if isinstance(value, dt.date):
        return b"\x09" + struct.pack("<i", (value - _DATE_EPOCH) // _DAY)
    if isinstance(value, dt.time) and value.tzinfo is None:
        micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000
        return b"\x0a" + _I64.pack(micros + value.microsecond)
    if isinstance(value, bytes | bytearray | memoryview):
        return _sized(b"\x07", bytes(value))
    if isinstance(value, uuid.UUID):
        return _sized(b"\x06", str(value).encode())
    return _sized(b"\x0b", repr(canonical(value)).encode("utf-8", "surrogatepass"))


def decode_key_value(data: bytes, at: int = 0) -> tuple[Any, int]:
    """One value of an encoding (a key's, read back from the sync state) and where the
    next one starts. Numbers come back in their canonical form (an int for 1.0),
    datetimes as aware UTC datetimes; values only ``repr`` stands for cannot come back
    (ValueError)."""
    tag = data[at]
    at += 1
    if tag == 0:
        return None, at
    if tag == 1:
        return data[at] == 1, at + 1
    if tag in (2, 8, 10):
        (number,) = _I64.unpack_from(data, at)
        at += 8
        if tag == 2:
            return number, at
        if tag == 8:
            return _EPOCH + dt.timedelta(microseconds=number), at
        return (dt.datetime.min + dt.timedelta(microseconds=number)).time(), at
    if tag == 4:
        return _F64.unpack_from(data, at)[0], at + 8
    if tag == 9:
        (days,) = struct.unpack_from("<i", data, at)
        return _DATE_EPOCH + dt.timedelta(days=days), at + 4
    (size,) = _LEN.unpack_from(data, at)
    at += 4
    body = data[at : at + size]
    at += size
    if tag == 6:
        return body.decode("utf-8", "surrogatepass"), at
    if tag == 7:
        return bytes(body), at
    if tag == 3:
        text = body.decode()
        return (int(text) if text.lstrip("-").isdigit() else Decimal(text)), at
    raise ValueError(f"a key value of this kind cannot be read back: {body!r}")


def decode_key(data: bytes, width: int) -> tuple[Any, ...]:
    """The ``width`` values of an encoded key."""
    values = []
    at = 0
    for _ in range(width):
        value, at = decode_key_value(data, at)
        values.append(value)
    return tuple(values)


# Python types a list of values may hold to be turned into one Arrow array with the
# same encoding as ``encode_value`` (pyarrow's own conversion, at C speed). Anything
# else (Decimal, mixed kinds, subclasses) is encoded a value at a time.
_ARROW_SAFE = [
    {int}, {float}, {str}, {bytes}, {bool}, {dt.datetime}, {dt.date},
]  # fmt: skip


def column_types(values: Sequence[Any]) -> set[type]:
    """The types of a column's values, None's aside."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    return kinds


def encode_values(values: Sequence[Any], kinds: set[type] | None = None) -> Any:
    """A column of Python values, encoded: an Arrow binary array (one element a row).
    ``kinds``: ``column_types(values)``, if known."""
    return values_column(values, kinds).binary()


def values_column(values: Sequence[Any], kinds: set[type] | None = None) -> Encoded:
    """A column of Python values, encoded (``encode_values``), as an ``Encoded``."""
    import pyarrow as pa

    if kinds is None:
        kinds = column_types(values)
    if not kinds:
        return Binary(pa.array([_NULL] * len(values), pa.binary()))
    encoded: Encoded | None = None
    if kinds == {Decimal}:
        encoded = _decimals(values)
    elif kinds == {dt.datetime} and None not in values:
        encoded = _datetimes(values)
    elif kinds in _ARROW_SAFE:
        try:
            array = pa.array(values)
        except (pa.ArrowException, OverflowError):
            pass
        else:
            encoded = array_column(array, fallback=False)
    if encoded is not None:
        return encoded
    return Binary(pa.array(list(map(encode_value, values)), pa.binary()))


def plain_column(values: Sequence[Any], *, text: bool) -> Encoded | None:
    """A column of integers (or, with ``text``, of strings), encoded without looking
    at each value's type first: pyarrow infers int64 only where every value is an
    integer (Python's or numpy's; a bool among them is refused) and string only where
    every value is a str. None for other columns (``values_column`` then)."""
    import pyarrow as pa

    kind = next((v for v in values if v is not None), None).__class__
    if kind is Decimal:
        # decimal128 takes Decimals and integers (which encode alike) and refuses
        # floats, bools and text
        return _decimal128(values)
    if kind is not int and not (text and kind is str):
        return None
    try:
        array = pa.array(values)
    except (pa.ArrowException, OverflowError):
        return None
    if array.type != (pa.int64() if kind is int else pa.string()):
        return None
    return array_column(array, fallback=False)


class Encoded:
    """An encoded column (one binary encoding per row), kept as the parts it is made
    of until its bytes are needed: hashing reads the parts (a fixed-width value's tag
    and payload, a text's bytes) without making the encodings, which costs as much as
    hashing them. Only keys (kept in the state) and ``where`` columns need the bytes."""

    def __len__(self) -> int:
        raise NotImplementedError

    def binary(self) -> Any:
        """The encodings, an Arrow binary array."""
        raise NotImplementedError

    def hashes(self, start: int, rows: int) -> Any:
        """``h`` (see "row digests") of the encodings of rows ``start`` .. + ``rows``
        (numpy uint64): what ``hash_encoded(self.binary())`` gives them."""
        raise NotImplementedError


class Binary(Encoded):
    """Encodings already made (an Arrow binary array)."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def binary(self) -> Any:
        return self.array

    def hashes(self, start: int, rows: int) -> Any:
        return hash_encoded(self.array.slice(start, rows))


class _Nullable(Encoded):
    """Encodings of which some rows are null (``nulls``: numpy bool, or None)."""

    nulls: Any

    def _nulled(self, encoded: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.nulls is None:
            return encoded
        return pc.if_else(pa.array(self.nulls), pa.scalar(_NULL, pa.binary()), encoded)

    def _null_hashes(self, hashes: Any, start: int, rows: int) -> Any:
        if self.nulls is not None:
            hashes[self.nulls[start : start + rows]] = _null_hash()
        return hashes


class Fixed(_Nullable):
    """Encodings of one width: a tag byte and a fixed-width payload per row, kept
    apart (``tags``: one int for every row, or a numpy uint8 array; ``payload``: a
    numpy array of little-endian numbers): hashing reads each encoding's words from
    them, and the bytes (the tag, then the payload) are laid out only when needed."""

    def __init__(self, tags: Any, payload: Any, nulls: Any = None) -> None:
        self.tags = tags
        self.payload = payload
        self.nulls = nulls

    def __len__(self) -> int:
        return len(self.payload)

    @property
    def packed(self) -> Any:
        """The encodings one after another (a numpy structured array)."""
        import numpy as np

        dtype = np.dtype([("t", "u1"), ("v", self.payload.dtype)])
        out = np.empty(len(self.payload), dtype=dtype)
        out["t"] = self.tags
        out["v"] = self.payload
        return out

    def binary(self) -> Any:
        import pyarrow as pa

        packed = self.packed
        width = packed.dtype.itemsize
        buffer = pa.py_buffer(packed)
        fixed = pa.Array.from_buffers(pa.binary(width), len(packed), [None, buffer])
        return self._nulled(fixed.cast(pa.binary()))

    def hashes(self, start: int, rows: int) -> Any:
        import numpy as np

        payload = self.payload[start : start + rows]
        if not len(payload):
            return np.empty(0, dtype=np.uint64)
        tags = self.tags if isinstance(self.tags, int) else self.tags[start : start + rows]
        return self._null_hashes(_hash_tagged(tags, payload), start, rows)


class Sized(_Nullable):
    """Encodings of texts or bytes: a tag byte, the length (uint32) and the bytes of
    each element of an Arrow string or binary array."""

    def __init__(self, tag: int, array: Any, nulls: Any = None) -> None:
        self.tag = tag
        self.array = array
        self.nulls = nulls

    def __len__(self) -> int:
        return len(self.array)

    def binary(self) -> Any:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        array = self.array
        lengths = pc.binary_length(array).cast(pa.int64()).fill_null(0).to_numpy()
        prefix = _fixed(self.tag, lengths.astype(np.uint32), 4).binary()
        body = array.cast(pa.large_binary() if _wide(array) else pa.binary())
        return self._nulled(pc.binary_join_element_wise(prefix, body.cast(pa.binary()), b""))

    def hashes(self, start: int, rows: int) -> Any:
        hashes = _hash_offsets(self.array.slice(start, rows), self.tag)
        return self._null_hashes(hashes, start, rows)


def _wide(array: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type))


@functools.cache
def _null_hash() -> Any:
    """``h`` of the null encoding (one zero byte)."""
    import numpy as np

    return _hash_varying(np.zeros(1, np.uint8), np.array([0, 1], np.int64))[0]


def _fixed(tags: Any, payload: Any, width: int) -> Fixed:
    """``tag + payload`` per element (numpy arrays, or an int for every tag)."""
    assert payload.dtype.itemsize == width
    return Fixed(tags, payload)


def _with_nulls(array: Any, encoded: Encoded) -> Encoded:
    """``encoded`` with the null elements of ``array`` encoded as null."""
    import numpy as np

    if array.null_count == 0:
        return encoded
    nulls = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if isinstance(encoded, _Nullable):
        encoded.nulls = nulls if encoded.nulls is None else encoded.nulls | nulls
        return encoded
    import pyarrow as pa
    import pyarrow.compute as pc

    return Binary(pc.if_else(pa.array(nulls), pa.scalar(_NULL, pa.binary()), encoded.binary()))


def encode_array(array: Any, *, fallback: bool = True) -> Any:
    """An Arrow array, encoded a column at a time (numpy and Arrow kernels, no Python
    per value) into an Arrow binary array with the bytes ``encode_value`` gives each
    value. Types without a vectorized rule (decimals, nested, durations...) are
    encoded a value at a time; with ``fallback=False`` they give None instead."""
    encoded = array_column(array, fallback=fallback)
    return None if encoded is None else encoded.binary()


def array_column(array: Any, *, fallback: bool = True) -> Encoded | None:
    """An Arrow array, encoded (``encode_array``), as an ``Encoded``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    n = len(array)
    if pa.types.is_null(kind):
        return Binary(pa.array([_NULL] * n, pa.binary()))
    encoded: Encoded | None = None
    if pa.types.is_boolean(kind):
        values = array.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
        encoded = _fixed(1, values, 1)
    elif pa.types.is_integer(kind):
        largest = pc.max(array).as_py() if kind == pa.uint64() else None
        if largest is None or largest < _INT64:
            values = array.cast(pa.int64()).fill_null(0).to_numpy()
            encoded = _fixed(2, values, 8)
    elif pa.types.is_floating(kind):
        values = array.cast(pa.float64()).fill_null(0.0).to_numpy()
        finite = np.isfinite(values)
        integral = finite & (np.floor(values) == values)
        if (np.abs(values[integral]) < _INT64).all():
            tags = np.where(integral, 2, 4).astype(np.uint8)
            payload = np.where(integral, values, 0).astype(np.int64)
            payload = np.where(integral, payload, values.view(np.int64))
            encoded = _fixed(tags, payload, 8)
            if not finite.all():  # NaN and infinities: their own (few) encodings
                for special in (float("nan"), float("inf"), float("-inf")):
                    where = np.isnan(values) if special != special else values == special
                    if where.any():
                        value = pa.scalar(encode_value(special), pa.binary())
                        made = pc.if_else(pa.array(where), value, encoded.binary())
                        encoded = Binary(made)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = _sized_array(6, array)
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        encoded = _sized_array(7, array)
    elif pa.types.is_fixed_size_binary(kind):
        encoded = _sized_array(7, array.cast(pa.binary()))
    elif pa.types.is_timestamp(kind):
        if kind.unit == "ns":  # floored to microseconds, as a datetime is (a cast truncates)
            nanos = array.cast(pa.int64()).fill_null(0).to_numpy()
            encoded = _fixed(8, np.floor_divide(nanos, 1000), 8)
        else:
            micros = array.cast(pa.timestamp("us", kind.tz), safe=False)
            encoded = _fixed(8, micros.cast(pa.int64()).fill_null(0).to_numpy(), 8)
    elif pa.types.is_date(kind):
        days = array.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy()
        encoded = _fixed(9, days, 4)
    elif pa.types.is_decimal(kind) and kind.bit_width == 128:
        encoded = _decimal_array(array)
    elif pa.types.is_time(kind):
        micros = array.cast(pa.time64("us"), safe=False).cast(pa.int64())
        encoded = _fixed(10, micros.fill_null(0).to_numpy(), 8)
    if encoded is None:
        if not fallback:
            return None
        return Binary(pa.array(list(map(encode_value, array.to_pylist())), pa.binary()))
    return _with_nulls(array, encoded)


# A decimal of at most 15 significant digits is the float nearest to it, and that
# float's shortest repr is that decimal again (doubles hold 15 digits): so the float
# rule of encode_value can be decided without Python per value.
_FLOAT_DIGITS = 10**15
# Integers whose float is exact (numpy int64 compares with it exactly).
_FLOAT_EXACT = 2**53


def _decimal_array(array: Any) -> Fixed | None:
    """decimal128 values whose unscaled integer fits int64 and has at most 15 digits
    (else None: a value at a time); nulls aside."""
    import numpy as np

    scale = array.type.scale
    if not 0 <= scale <= 18:
        return None
    words = np.frombuffer(array.buffers()[1], dtype="<i8")
    words = words[2 * array.offset : 2 * (array.offset + len(array))].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    if not array.null_count:
        if not (high == (low >> 63)).all():
            return None  # beyond int64
        return _scaled(low, np.int64(10**scale))
    valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if not (high[valid] == (low[valid] >> 63)).all():
        return None  # beyond int64
    unscaled = np.where(valid, low, 0)
    return _scaled(unscaled, np.int64(10**scale))


def _decimals(values: Sequence[Any]) -> Encoded | None:
    """Decimals (or None), encoded; None where some value needs more. pyarrow converts
    Decimals to decimal128 at C speed when it is told the scale (it then refuses a value
    that would lose digits, NaN and infinities), so the scale is taken from the first
    values; where it does not hold for all, they go by their text."""
    encoded = _decimal128(values)
    return _decimal_texts(values) if encoded is None else encoded


def _decimal128(values: Sequence[Any]) -> Encoded | None:
    """``_decimals`` through decimal128 with the scale of the first values; None where
    pyarrow refuses a value (or the numbers need more than an int64)."""
    import pyarrow as pa

    scale = 0
    for value in values[:64]:
        if value.__class__ is Decimal and value.is_finite():
            scale = max(scale, -min(0, int(value.as_tuple().exponent)))
    if scale > 18:
        return None
    try:
        array = pa.array(values, pa.decimal128(38, scale))
    except (pa.ArrowException, OverflowError):
        return None
    encoded = _decimal_array(array)
    return None if encoded is None else _with_nulls(array, encoded)


def _datetimes(values: Sequence[Any]) -> Encoded | None:
    """Datetimes (no None), encoded: each one's distance from the epoch, taken with
    Python's own subtraction (as ``encode_value`` does; where a value's tzinfo is the
    epoch's, no ``utcoffset`` call), then read by pyarrow as durations at C speed
    (3x faster than pyarrow's own conversion of aware datetimes, which calls
    ``utcoffset`` per value). None if naive and aware values are mixed."""
    import pyarrow as pa

    epoch = _EPOCH if values[0].tzinfo is not None else _EPOCH.replace(tzinfo=None)
    try:
        deltas = map(operator.sub, values, repeat(epoch))
        micros = pa.array(deltas, pa.duration("us"), size=len(values))
    except TypeError:
        return None
    return _fixed(8, micros.cast(pa.int64()).to_numpy(), 8)


def _decimal_texts(values: Sequence[Any]) -> Encoded | None:
    """Decimals (or None) by their text (``str`` of a Decimal is C code, where pyarrow
    converts Decimal objects slowly): the digits without the point are the unscaled
    integer, the digits after it the scale. None where some value needs more."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pa.array(list(map(str, values)))
    nulls = pc.equal(texts, "None")
    texts = pc.if_else(nulls, "0", texts)
    if pc.any(pc.match_substring_regex(texts, "[^0-9.-]")).as_py():
        return None  # exponents, NaN, Infinity
    dot = pc.find_substring(texts, ".").to_numpy()
    length = pc.utf8_length(texts).to_numpy()
    scale = np.where(dot >= 0, length - dot - 1, 0)
    if len(scale) and scale.max() > 18:
        return None
    try:
        unscaled = pc.replace_substring(texts, ".", "").cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        return None  # beyond int64
    encoded = _scaled(unscaled, np.power(np.int64(10), scale.astype(np.int64)))
    if encoded is None:
        return None
    if pc.any(nulls).as_py():
        encoded.nulls = np.asarray(nulls.to_numpy(zero_copy_only=False), dtype=bool)
    return encoded


def _scaled(unscaled: Any, power: Any) -> Fixed | None:
    """Numbers ``unscaled / power`` (numpy int64 arrays), encoded; None if one of them
    has more than 15 digits and is not integral."""
    import numpy as np

    nearest = unscaled / power.astype(np.float64)
    low, high = (unscaled.min(), unscaled.max()) if len(unscaled) else (0, 0)
    if low > -_FLOAT_EXACT and high < _FLOAT_EXACT:
        # Every number is a float exactly, so ``nearest`` is the quotient correctly
        # rounded: integral exactly where the quotient is (else within 2**-53 of it,
        # nearer than any integer), and truncated it is the quotient there. The test
        # is exact integer arithmetic, without a division (5x cheaper than divmod).
        whole = nearest.astype(np.int64)
        integral = whole * power == unscaled
    else:
        whole, part = np.divmod(unscaled, power)
        integral = part == 0
    if (
        not (low > -_FLOAT_DIGITS and high < _FLOAT_DIGITS)
        and not (integral | (np.abs(unscaled) < _FLOAT_DIGITS)).all()
    ):
        return None
    tags = np.where(integral, np.uint8(2), np.uint8(4))
    payload = np.where(integral, whole, nearest.view(np.int64))
    return _fixed(tags, payload, 8)


def _sized_array(tag: int, array: Any) -> Encoded:
    import pyarrow.compute as pc

    longest = pc.max(pc.binary_length(array)).as_py() if len(array) else None
    if longest is not None and longest >= 2**32:
        raise ValueError("a value longer than 4 GiB cannot be hashed")
    return _with_nulls(array, Sized(tag, array))


def join_encoded(columns: Sequence[Any]) -> Any:
    """Encoded columns joined element-wise: one binary element a row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(columns) == 1:
        return columns[0]
    if not columns:
        return pa.array([], pa.binary())
    return pc.binary_join_element_wise(*columns, b"")


# ------------------------------------------------------------------ row digests
#
# A digest is a 64-bit hash of a row's encoding, computed from the Arrow buffers of
# the encoded columns with numpy, a block of rows at a time: no Python object and no
# call per row. It detects changes; it is not cryptographic (anyone who can choose
# the rows can make two share a digest), and ``full=True`` (which compares the
# target's rows themselves) remains the safety net.
#
# One encoded value (a column's element: its bytes b, n = len(b)) is read as
# little-endian 8-byte words w_0 .. w_m, m = max(0, ceil(n / 8) - 1), the last one
# zero-padded (an empty value is one zero word); each word is mixed with its position's key
# k_j = splitmix64(SEED + j) | 1 by splitmix64's finalizer, and the sum is mixed again
# with the length:
#
#     h(b) = mix(Σ_j mix(w_j ^ k_j) + n·K_LEN)          (arithmetic mod 2^64)
#
# ``mix`` is a bijection, so two values of one length that differ in one word never
# share a hash; other differences collide with a chance of about 2^-64 per pair
# (heuristically: splitmix64 is a good mixer, not a proven universal hash; a
# plain multilinear sum Σ w_j·k_j would not do: differences in a word's top bits
# only reach the top bits of the sum). A row's digest combines its columns' hashes
# with per-column odd keys (so it depends on every column's encoding and on the
# columns' order):
#
#     digest(row) = mix(Σ_c h(column c)·c_c + C·K_LEN)      c_c = splitmix64(SEED2 + c) | 1
#
# Columns whose elements all have one width (integers, floats, dates, timestamps,
# scaled decimals: the encodings of fixed-width values without nulls) are hashed
# from strided views of their data (word j of every value is one view, no copy);
# others gather their words with index arithmetic from the offsets. Both work a
# block of rows at a time (``_BLOCK_ROWS``, ``_BLOCK_BYTES``): bounded memory, and
# numpy's passes over the temporary arrays stay in the CPU's cache.

_SEED = 0x5BD1E9955BD1E995
_SEED_COLUMNS = 0x27D4EB2F165667C5
_LENGTH_KEY = 0x9E3779B97F4A7C15
# Rows hashed at a time: small enough for the temporary arrays of a block to stay
# in the CPU's cache (numpy makes a pass over them per operation), and a bound on
# the data bytes of a block.
_BLOCK_ROWS = 1 << 14
_BLOCK_BYTES = 1 << 22
_position_keys: dict[int, Any] = {}


def _keys(seed: int, count: int) -> Any:
    """splitmix64(seed + j) | 1 for j < count (numpy uint64), cached per seed."""
    import numpy as np

    keys = _position_keys.get(seed)
    if keys is None or len(keys) < count:
        size = max(count, 64, 0 if keys is None else 2 * len(keys))
        with np.errstate(over="ignore"):
            base = np.arange(size, dtype=np.uint64) + np.uint64(seed)
        keys = _mix(base) | np.uint64(1)
        _position_keys[seed] = keys
    return keys[:count]


def _masks() -> Any:
    import numpy as np

    return np.array([(1 << (8 * i)) - 1 for i in range(8)] + [2**64 - 1], dtype=np.uint64)


def hash_encoded(encoded: Any) -> Any:
    """The hash ``h`` (above) of each element of an Arrow binary array, as a numpy
    uint64 array: computed from the array's offsets and data with numpy, a block of
    rows at a time (nulls hash as empty values)."""
    import numpy as np
    import pyarrow as pa

    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    if encoded.null_count:
        encoded = encoded.fill_null(b"")
    n = len(encoded)
    if not n:
        return np.empty(0, dtype=np.uint64)
    offsets, data = _offsets_and_data(encoded)
    sizes = np.diff(offsets)
    if (sizes == sizes[0]).all():
        out = np.empty(n, dtype=np.uint64)
        size = int(sizes[0])
        data = np.ascontiguousarray(data[offsets[0] : offsets[-1]])
        step = max(1, min(_BLOCK_ROWS, _BLOCK_BYTES // max(size, 1)))
        for start in range(0, n, step):
            rows = min(step, n - start)
            block = data[start * size : (start + rows) * size]
            out[start : start + rows] = _hash_fixed(block, rows, size)
        return out
    return _hash_blocks(data, offsets, None)


def _offsets_and_data(array: Any) -> tuple[Any, Any]:
    """An Arrow binary or string array's offsets (sliced to it) and data (numpy)."""
    import numpy as np

    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if _wide(array) else np.int32)
    offsets = offsets[array.offset : array.offset + n + 1]
    buffer = array.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    return offsets, data


def _hash_offsets(array: Any, tag: int) -> Any:
    """``h`` of ``tag``, the length (uint32) and the bytes of each element of an Arrow
    string or binary array (its nulls: as empty), without making those encodings."""
    import numpy as np

    if not len(array):
        return np.empty(0, dtype=np.uint64)
    offsets, data = _offsets_and_data(array)
    return _hash_blocks(data, offsets, tag)


def _hash_blocks(data: Any, offsets: Any, tag: int | None) -> Any:
    """``_hash_varying`` a block of rows at a time."""
    import numpy as np

    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    start = 0
    while start < n:
        end = int(np.searchsorted(offsets, offsets[start] + _BLOCK_BYTES, side="right")) - 1
        end = min(max(end, start + 1), n, start + _BLOCK_ROWS)
        out[start:end] = _hash_varying(data, offsets[start : end + 1].astype(np.int64), tag)
        start = end
    return out


def _hash_fixed(data: Any, n: int, size: int) -> Any:
    """``h`` of ``n`` values of ``size`` bytes each, laid out one after another: word
    j of every value is one strided (unaligned) view of the data, no copy."""
    import numpy as np

    keys = _keys(_SEED, max(1, -(-size // 8)))
    total = np.full(n, np.uint64((size * _LENGTH_KEY) % 2**64))
    with np.errstate(over="ignore"):
        for j in range(size // 8):
            word = np.ndarray((n,), dtype="<u8", buffer=data, offset=8 * j, strides=(size,))
            total += _mix_in_place(word ^ keys[j])
        rest = size % 8
        if rest and size >= 8:  # the last bytes: the 8 that end each value, shifted
            word = np.ndarray((n,), dtype="<u8", buffer=data, offset=size - 8, strides=(size,))
            total += _mix_in_place((word >> np.uint64(8 * (8 - rest))) ^ keys[size // 8])
        elif rest or not size:  # values shorter than a word
            word = np.zeros(n, dtype=np.uint64)
            for i in range(rest):
                byte = np.ndarray((n,), dtype=np.uint8, buffer=data, offset=i, strides=(size,))
                word |= byte.astype(np.uint64) << np.uint64(8 * i)
            total += _mix_in_place(word ^ keys[0])
    return _mix_in_place(total)


def _hash_tagged(tags: Any, payload: Any) -> Any:
    """``h`` of encodings made of a tag byte (an int, or numpy uint8 per value) and a
    payload (a numpy array of little-endian numbers), each ``1 + itemsize`` bytes: the
    words ``_hash_fixed`` reads from the laid-out bytes, made from the numbers (no
    unaligned reads). An 8-byte payload ``v``: word 0 is ``tag | v << 8``, and the
    8 bytes that end the encoding, shifted, are ``v >> 56``; a shorter one is the
    single word ``tag | v << 8`` (``v`` unsigned)."""
    import numpy as np

    width = payload.dtype.itemsize
    size = width + 1
    if width == 8:
        value = payload.view(np.uint64)
        keys = _keys(_SEED, 2)
        with np.errstate(over="ignore"):
            word = value << np.uint64(8)
            word |= tags if isinstance(tags, np.ndarray) else np.uint64(tags)
            word ^= keys[0]
            total = _mix_in_place(word)
            last = value >> np.uint64(56)
            last ^= keys[1]
            total += _mix_in_place(last)
            total += np.uint64(size * _LENGTH_KEY % 2**64)
        return _mix_in_place(total)
    assert width < 8, width  # (payloads are 8, 4 or 1 bytes)
    value = payload.view(f"u{width}").astype(np.uint64)
    with np.errstate(over="ignore"):
        value <<= np.uint64(8)
        value |= tags if isinstance(tags, np.ndarray) else np.uint64(tags)
        value ^= _keys(_SEED, 1)[0]
        total = _mix_in_place(value)
        total += np.uint64(size * _LENGTH_KEY % 2**64)
    return _mix_in_place(total)


def _hash_varying(data: Any, offsets: Any, tag: int | None = None) -> Any:
    """``h`` of the values between consecutive ``offsets`` (int64) of ``data``: word j
    of every value long enough to have one, a pass per j (the values still long
    enough shrink with j, so the passes cost the words, not rows times the longest).
    With a ``tag``, of each value's encoding as a text or bytes: the tag, the length
    (uint32, little-endian) and the value, read from the value's bytes alone (the
    first word's low 5 bytes are the tag and the length)."""
    import numpy as np

    lead = 0 if tag is None else 5
    base, stop = int(offsets[0]), int(offsets[-1])
    padded = np.zeros(stop - base + 8 + lead, dtype=np.uint8)
    padded[lead : lead + stop - base] = data[base:stop]
    # every 8-byte window of the block, unaligned: word j of a value is one read (an
    # encoding's byte k is padded[start + k]: its value's bytes begin after the lead)
    windows = np.ndarray((stop - base + 1 + lead,), dtype="<u8", buffer=padded, strides=(1,))
    starts = offsets[:-1] - base
    lengths = offsets[1:] - offsets[:-1]
    sizes = lengths + lead
    masks = _masks()
    keys = _keys(_SEED, int(sizes.max()) // 8 + 1)
    with np.errstate(over="ignore"):
        total = sizes.astype(np.uint64) * np.uint64(_LENGTH_KEY)
        words = windows[starts]
        if tag is not None:
            words &= np.uint64(2**64 - 2**40)
            words |= (lengths.astype(np.uint64) << np.uint64(8)) | np.uint64(tag)
        # (a word that no value ends within needs no mask)
        shortest = int(sizes.min())
        if shortest < 8:
            words &= masks[np.minimum(sizes, 8)]
        words ^= keys[0]
        total += _mix_in_place(words)
        # The words every value has: a pass over all rows, without picking the rows
        # still long enough (which costs more than the word when most of them are)
        j = 1
        while 8 * j < shortest:
            words = windows[starts + 8 * j]
            if 8 * j + 8 > shortest:
                words &= masks[np.minimum(sizes - 8 * j, 8)]
            words ^= keys[j]
            total += _mix_in_place(words)
            j += 1
        active = np.nonzero(sizes > 8 * j)[0]
        while len(active):
            left = sizes[active] - 8 * j
            words = windows[starts[active] + 8 * j]
            words &= masks[np.minimum(left, 8)]
            words ^= keys[j]
            total[active] += _mix_in_place(words)
            active = active[left > 8]
            j += 1
    return _mix_in_place(total)


def combine_hashes(hashes: Sequence[Any]) -> Any:
    """A row's digest from its columns' hashes (numpy uint64 arrays, in column order):
    each weighted by its position's key, summed with the column count, mixed."""
    import numpy as np

    keys = _keys(_SEED_COLUMNS, len(hashes))
    with np.errstate(over="ignore"):
        total = np.full(len(hashes[0]), np.uint64((len(hashes) * _LENGTH_KEY) % 2**64))
        for column, key in zip(hashes, keys, strict=True):
            total += column * key
    return _mix_in_place(total)


class HashedRows:
    """A batch of rows hashed for sync: per row, its encoded key, the key's hash and
    the row's digest (``combine_hashes`` of its columns' ``hash_encoded``: the key's
    and then the compared values')."""

    def __init__(self, keys: Any, key_hashes: Any, digests: Any) -> None:
        # An Arrow binary array, or a function that makes it, called when the keys are
        # first asked for (a sync asks only for those of rows it changes or adds).
        self._keys = keys
        self.key_hashes = key_hashes  # numpy uint64
        self.digests = digests  # numpy uint64

    @property
    def keys(self) -> Any:
        """Each row's encoded key, an Arrow binary array."""
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys


def hash_keys(keys: Any) -> Any:
    """Each encoded key's hash (numpy uint64): a key that is one integer (``02`` and
    an int64, the usual key) is mixed by splitmix64's finalizer, a bijection computed
    a column at a time with numpy (so two integer keys never share a hash); any other
    key by ``hash_encoded`` of its encoding."""
    import numpy as np
    import pyarrow as pa

    n = len(keys)
    if not n:
        return hash_encoded(keys)
    if keys.type != pa.binary():
        keys = keys.cast(pa.binary())
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset + n + 1]
    whole = np.frombuffer(keys.buffers()[2], dtype=np.uint8)
    if keys.null_count == 0 and (np.diff(offsets) == 9).all():
        packed = whole[offsets[0] : offsets[-1]].view(np.dtype([("t", "u1"), ("v", "<u8")]))
        if (packed["t"] == 2).all():
            return _mix_in_place(packed["v"].copy())
    hashes = hash_encoded(keys)
    starts, sizes = offsets[:-1], np.diff(offsets)
    integer = (sizes == 9) & (whole[np.minimum(starts, max(len(whole) - 1, 0))] == 2)
    if keys.null_count:
        integer &= np.asarray(keys.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if integer.any():
        at = starts[integer]
        payload = np.zeros(len(at), dtype=np.uint64)
        for i in range(8):  # little-endian bytes 1..8 of each key
            payload |= whole[at + 1 + i].astype(np.uint64) << np.uint64(8 * i)
        hashes[integer] = _mix_in_place(payload)
    return hashes


def _mix(values: Any) -> Any:
    """splitmix64's finalizer over a numpy uint64 array (wrapping arithmetic)."""
    import numpy as np

    return _mix_in_place(values.astype(np.uint64, copy=True))


def _mix_in_place(x: Any) -> Any:
    """``_mix`` of a numpy uint64 array the caller owns, made in it (no copy)."""
    import numpy as np

    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def hash_columns(columns: Sequence[Any], key_width: int) -> HashedRows:
    """Hash rows given as encoded columns (``Encoded``, or Arrow binary arrays of
    ``encode_values`` / ``encode_array``), the key's first."""
    import numpy as np

    encoded = [c if isinstance(c, Encoded) else Binary(c) for c in columns]
    n = len(encoded[0])
    digests = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _BLOCK_ROWS):  # a block of rows at a time: in cache
        rows = min(_BLOCK_ROWS, n - start)
        hashes = [column.hashes(start, rows) for column in encoded]
        digests[start : start + rows] = combine_hashes(hashes)
    key_columns = encoded[:key_width]
    key_hashes = _integer_key_hashes(key_columns)
    if key_hashes is None:  # (hashed from their encodings)
        keys = join_encoded([c.binary() for c in key_columns])
        return HashedRows(keys, hash_keys(keys), digests)
    return HashedRows(lambda: join_encoded([c.binary() for c in key_columns]), key_hashes, digests)


def _integer_key_hashes(columns: Sequence[Encoded]) -> Any | None:
    """What ``hash_keys`` gives a key that is one column of integers (no nulls), made
    from the numbers (splitmix64's finalizer of each int64) without their encodings;
    None for other keys."""
    import numpy as np

    if len(columns) == 1:
        column = columns[0]
        if (
            isinstance(column, Fixed) and column.nulls is None
            and isinstance(column.tags, int) and column.tags == 2
            and column.payload.dtype.itemsize == 8
        ):  # fmt: skip
            return _mix(column.payload.view(np.uint64))
    return None


def hash_record_batch(batch: Any, columns: Sequence[str], key_width: int) -> HashedRows:
    """Hash a pyarrow RecordBatch (or Table) of a sync's ``columns`` (the key's first),
    vectorized: the same digests as the same rows given as dicts or tuples."""
    return hash_columns(
        [array_column(batch.column(batch.schema.get_field_index(c))) for c in columns],
        key_width,
    )


def hash_value_rows(rows: Sequence[Sequence[Any]], key_width: int) -> HashedRows:
    """Hash rows given as tuples of values (the key's first)."""
    if not rows:
        return _empty_hashed()
    return hash_columns([values_column(column) for column in zip(*rows, strict=True)], key_width)


def _empty_hashed() -> HashedRows:
    import numpy as np
    import pyarrow as pa

    empty = np.empty(0, dtype=np.uint64)
    return HashedRows(pa.array([], pa.binary()), empty, empty)
