"""DynamoDB backend on boto3's low-level client.

Requests keep to DynamoDB's hard limits: BatchWriteItem takes at most 25 items,
BatchGetItem at most 100 keys (and answers at most 16 MB), an item holds at most
400 KB. Items are checked before they are sent (size, key attributes, storable
types), so a bad item is rejected alone instead of failing its whole batch.

Whatever a batch leaves unprocessed (UnprocessedItems / UnprocessedKeys) and every
throttled request is sent again with exponential backoff and full jitter, under the
call's RetryPolicy: batches are re-driven while their rounds make progress, and given
up after ``max_stalled_rounds`` rounds in a row that took nothing (see
``retry.Redrive``). Items still unwritten then are reported one
by one (``RowFailures`` -> ``Report.failures``), never dropped and never counted as
written. botocore's own retries are switched off, so that the policy (and its
injectable ``sleep``) is the only one and every request is counted.

DynamoDB has no multi-request transactions: a chunk is a request, rows written stay
written, and ``atomic=True``, ``db.atomic()`` and ``claim()`` are refused clearly.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..errors import (
    AccessError,
    BulkError,
    CommitUnknownError,
    ConnectionLostError,
    ConstraintError,
    ConversionError,
    DataError,
    LimitError,
    SchemaError,
    ThrottledError,
    TransientError,
    UnreadKeysError,
)
from ..retry import DEFAULT_RETRY, Redrive
from ..schema import ColumnCodec, ColumnSpec, TableSpec, coercer, missing_nan, plain_value
from .base import (
    NO_TIMEOUTS,
    SYNC_STATE_TABLE,
    Capabilities,
    ChunkCounts,
    RowFailures,
    SyncMark,
    Timeouts,
    WriteOp,
    translate_errors,
)

__all__ = [
    "DynamoDBBackend",
    "DynamoDBTracer",
    "client_from_url",
    "from_attribute",
    "plain_client",
    "to_attribute",
]

CAPABILITIES = Capabilities(
    name="dynamodb",
    max_rows_per_request=25,  # BatchWriteItem
    # A chunk is sent as requests of 25 and its unprocessed items re-driven together,
    # so a larger chunk fills its re-sends and sleeps once per round for 20 requests
    # (not once per request): under throttling that is most of the time spent.
    rows_per_chunk=500,
    max_read_keys=100,  # BatchGetItem
    transactions=False,
    parallel_writes=True,  # boto3 clients are thread-safe; requests run in parallel
    items=True,
    row_locks=False,
    exact_counts=False,  # BatchWriteItem says neither "replaced" nor "was not there"
    declared_columns=False,
    unique_constraints=False,
    run_log=False,  # checkpoints must commit with their chunk: no transactions here
    set_based_diff=False,  # sync compares row hashes, a chunk of keys at a time
    keeps_utc_offset=False,
    float_nan=False,  # DynamoDB numbers are finite: a NaN attribute is stored as NULL
)

MAX_ITEM_BYTES = 400 * 1024
# Errors that say "not now": the same request may succeed after a pause.
THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
# Refusals about who is asking, not about the request: stop, never retry.
ACCESS_REFUSED = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
        "IncompleteSignature",
    }
)
SEQUENCES_TABLE = "bulkops_sequences"
_KEY_TYPES = {"text": "S", "integer": "N", "decimal": "N", "float": "N", "bytes": "B"}
_LOGICAL = {"S": "text", "N": "decimal", "B": "bytes"}
# DynamoDB numbers: 38 significant digits, magnitude 1E-130 to 9.9...9E+125.
_MAX_DIGITS, _MAX_EXP, _MIN_EXP = 38, 125, -130
_INT_LIMIT = 10**38


# ------------------------------------------------------------------ values


def _number_text(value: int | float | Decimal) -> str:
    """DynamoDB's text for a number; ConversionError if it cannot hold it.

    Floats are sent as their shortest repr ("0.1"), not their binary expansion
    (Decimal(0.1) is 0.1000000000000000055511151231257827...).
    """
    if value.__class__ is int and -_INT_LIMIT < value < _INT_LIMIT:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError(f"{value!r} cannot be stored: DynamoDB numbers are finite")
        text = repr(value)
        number = Decimal(text)
    else:
        number = Decimal(value)
        if not number.is_finite():
            raise ConversionError(f"{value!r} cannot be stored: DynamoDB numbers are finite")
        text = str(number)
    if number:
        # Counted from the digits themselves: normalize() would round to 28 digits.
        digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
        exponent = number.adjusted()
        if digits > _MAX_DIGITS or not _MIN_EXP <= exponent <= _MAX_EXP:
            raise ConversionError(
                f"{value!r} does not fit a DynamoDB number (38 significant digits, "
                "magnitude 1E-130 to 1E+126)"
            )
    return text


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB AttributeValue; ConversionError if it has none."""
    cls = value.__class__
    if cls is str:
        return {"S": value}
    if cls is bool:
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if cls.__module__ != "builtins":
        plain = plain_value(value)  # numpy, pandas and Arrow scalars; their nulls
        if plain is not value:
            return to_attribute(plain)
    if cls is int or cls is float or isinstance(value, Decimal | int | float):
        return {"N": _number_text(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConversionError(f"map keys must be strings, not {type(bad[0]).__name__}")
        return {"M": {k: to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    if isinstance(value, set | frozenset):
        if not value:
            raise ConversionError("an empty set cannot be stored in DynamoDB (use None)")
        if all(isinstance(v, str) for v in value):
            return {"SS": sorted(value)}
        if all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in value):
            return {"NS": [_number_text(v) for v in value]}
        if all(isinstance(v, bytes | bytearray) for v in value):
            return {"BS": [bytes(v) for v in value]}
        raise ConversionError("a set must hold only strings, only numbers or only bytes")
    raise ConversionError(
        f"a {cls.__name__} cannot be stored in DynamoDB (it stores str, numbers, bytes, "
        "bool, None, lists, maps and sets); convert it first, e.g. with .isoformat()"
    )


def _number(text: str) -> int | float | Decimal:
    """A DynamoDB number as int where integral, float where that is lossless, else
    Decimal (so money never picks up binary-float noise)."""
    if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
        return int(text)
    number = Decimal(text)
    if number == number.to_integral_value():
        return int(number)
    as_float = float(number)
    return as_float if Decimal(repr(as_float)) == number else number


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """A DynamoDB AttributeValue as a plain Python value."""
    ((kind, value),) = attribute.items()
    if kind == "S" or kind == "BOOL":
        return value
    if kind == "N":
        return _number(value)
    if kind == "NULL":
        return None
    if kind == "B":
        return bytes(value)
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    if kind == "SS":
        return set(value)
    if kind == "NS":
        return {_number(v) for v in value}
    if kind == "BS":
        return {bytes(v) for v in value}
    raise ConversionError(f"unknown DynamoDB attribute type {kind!r}")


def _size(attribute: Mapping[str, Any]) -> int:
    """The bytes an AttributeValue counts towards DynamoDB's 400 KB item limit (as
    documented: UTF-8 text, about one byte per two digits of a number, ...)."""
    ((kind, value),) = attribute.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        return (len(value) + 1) // 2 + 1
    if kind == "B":
        return len(value)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(_size(v) + 1 for v in value)
    if kind == "SS":
        return sum(len(v.encode()) for v in value)
    if kind == "NS":
        return sum((len(v) + 1) // 2 + 1 for v in value)
    if kind == "BS":
        return sum(len(v) for v in value)
    return 1  # BOOL, NULL


def _storable(value: Any) -> Any:
    """Check that DynamoDB can store ``value`` (before anything is sent); keep it, as
    its plain Python value (a NaN is a missing value: None)."""
    value = None if missing_nan(value) else plain_value(value)
    to_attribute(value)
    return value


def _key_number(value: Any) -> int | Decimal:
    number = coercer("decimal")(value)
    if number is None:
        raise ConversionError("a key attribute cannot be empty")
    _number_text(number)
    return int(number) if number == number.to_integral_value() else number


def _key_text(value: Any) -> str:
    text = coercer("text")(value)
    if not text:
        raise ConversionError("a key attribute cannot be empty")
    return str(text)


def _key_bytes(value: Any) -> bytes:
    data = coercer("bytes")(value)
    if not data:
        raise ConversionError("a key attribute cannot be empty")
    return bytes(data)


_CODECS = {
    "text": ColumnCodec(frozenset({str}), _key_text),
    "decimal": ColumnCodec(frozenset(), _key_number, bounds=(1 - _INT_LIMIT, _INT_LIMIT - 1)),
    "bytes": ColumnCodec(frozenset({bytes}), _key_bytes),
    # Attributes outside the key: any value DynamoDB can store, checked when planned.
    "any": ColumnCodec(frozenset({str, bool, type(None)}), _storable),
}


# ---------------------------------------------------------------- the backend


def client_from_url(url: str, **options: Any) -> Any:
    """A DynamoDB client for ``dynamodb://?region=...&endpoint_url=...&profile=...``.

    Credentials come from boto3's usual chain (environment, profile, instance role).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.netloc or parts.path not in ("", "/"):
        raise SchemaError(
            f"unsupported DynamoDB URL {url!r}: give the endpoint as a parameter, e.g. "
            "dynamodb://?region=us-east-1&endpoint_url=http://localhost:8000"
        )
    params = dict(urllib.parse.parse_qsl(parts.query))
    unknown = set(params) - {"region", "endpoint_url", "profile"}
    if unknown:
        raise SchemaError(
            f"unknown DynamoDB URL parameter(s) {', '.join(sorted(unknown))}: "
            "bulkops knows region, endpoint_url and profile"
        )
    session = boto3.Session(profile_name=params.get("profile"), region_name=params.get("region"))
    if session.region_name is None:
        raise SchemaError(
            "no AWS region for DynamoDB: add ?region=... to the URL or set AWS_REGION"
        )
    config = Config(
        retries={"total_max_attempts": 1},  # the RetryPolicy retries, and counts
        max_pool_connections=options.pop("max_pool_connections", 50),
        # Items are checked before they are sent (types, sizes, keys); botocore's own
        # walk over every value of every request costs more than the request itself.
        parameter_validation=False,
    )
    return session.client(
        "dynamodb", endpoint_url=params.get("endpoint_url"), config=config, **options
    )


def plain_client(handle: Any) -> Any:
    """The low-level client to work through, for a boto3 DynamoDB client or resource.

    A resource's own client cannot be used: the resource hooks its events to turn
    plain Python values into AttributeValues, and would wrap ours a second time. So a
    new client is made with the resource's credentials object (refreshing ones go on
    refreshing), region, endpoint and configuration.
    """
    client = getattr(getattr(handle, "meta", None), "client", None)
    if client is None:
        client = handle
    model = getattr(getattr(client, "meta", None), "service_model", None)
    if model is None or model.service_name != "dynamodb":
        raise TypeError("connect() takes a boto3 client or resource for DynamoDB only")
    if client is handle:
        return client
    session = boto3.Session(region_name=client.meta.region_name)
    # botocore has no public way to hand a session an existing credentials object.
    session._session._credentials = client._request_signer._credentials
    return session.client(
        "dynamodb", endpoint_url=client.meta.endpoint_url, config=client.meta.config
    )


class DynamoDBTracer:
    """DynamoDB's statement tracer (``StatementTracer``): its statements are requests.

    Reports every request a boto3 client (or a resource's client) sends meanwhile,
    from any thread and whoever calls it (bulkops or code using the client directly),
    as the operation and its table(s), e.g. ``"BatchGetItem items"``. Counted once per
    API call: bulkops' clients leave retrying to the RetryPolicy, so a call is a
    request. DynamoDB has no transaction control to leave out.
    """

    def __init__(self, handle: Any) -> None:
        # A boto3 resource sends its requests through its own client.
        self.client = getattr(getattr(handle, "meta", None), "client", None) or handle

    @contextmanager
    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> Iterator[None]:
        def seen(model: Any, params: Mapping[str, Any], **_: Any) -> None:
            tables = params.get("TableName") or ", ".join(params.get("RequestItems", {}))
            on_statement(f"{model.name} {tables}".strip())

        events = self.client.meta.events
        events.register("provide-client-params.dynamodb", seen)
        try:
            yield
        finally:
            events.unregister("provide-client-params.dynamodb", seen)


class DynamoDBBackend:
    """A DynamoDB account (one region), through one boto3 client."""

    capabilities = CAPABILITIES

    def __init__(self, client: Any, *, specs: dict[str, TableSpec] | None = None) -> None:
        self.client = client
        self.statements = 0
        self.retries = 0
        self.retry = DEFAULT_RETRY
        self._specs = specs if specs is not None else {}

    # ---------------------------------------------------------------- schema

    def reflect(self, table: str) -> TableSpec:
        spec = self._specs.get(table)
        if spec is not None:
            return spec
        try:
            described = self._call("describe_table", TableName=table)["Table"]
        except (SchemaError, ConversionError) as error:
            raise SchemaError(
                f"DynamoDB table {table!r} does not exist ({error.message}); bulkops does "
                "not create DynamoDB tables when loading: create it first "
                "(db.create_table or your infrastructure code)",
                code=error.code,
            ) from error
        types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
        key = tuple(
            k["AttributeName"]
            for k in sorted(described["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        )
        columns = {
            k: ColumnSpec(k, _LOGICAL[types[k]], nullable=False, declared=types[k]) for k in key
        }
        spec = TableSpec(table, columns, primary_key=key, open=True)
        self._specs[table] = spec
        return spec

    def create_table(self, table: str, columns: Mapping[str, str], key: Sequence[str]) -> TableSpec:
        """Create a table keyed on ``key`` (partition key, then an optional sort key),
        on-demand capacity; other columns need no declaration in DynamoDB."""
        if not 1 <= len(key) <= 2:
            raise SchemaError("a DynamoDB table has a partition key and at most one sort key")
        definitions = []
        for name in key:
            kind = _KEY_TYPES.get(columns[name])
            if kind is None:
                raise SchemaError(
                    f"key column {name!r} is {columns[name]}: DynamoDB keys are text, "
                    "numbers or bytes"
                )
            definitions.append({"AttributeName": name, "AttributeType": kind})
        try:
            self._call(
                "create_table",
                TableName=table,
                KeySchema=[
                    {"AttributeName": n, "KeyType": "HASH" if i == 0 else "RANGE"}
                    for i, n in enumerate(key)
                ],
                AttributeDefinitions=definitions,
                BillingMode="PAY_PER_REQUEST",
            )
        except ConversionError as error:
            # A ValidationException here is about the table asked for (its name, its
            # key), not about a value: no row to reject.
            raise SchemaError(f"cannot create DynamoDB table {table!r}: {error}",
                              code=error.code) from error  # fmt: skip
        with self._errors():
            self.client.get_waiter("table_exists").wait(
                TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        self._specs.pop(table, None)
        return self.reflect(table)

    def codec(self, column: ColumnSpec) -> ColumnCodec:
        return _CODECS.get(column.type, _CODECS["any"])

    def item_encoder(
        self, table: TableSpec, key: tuple[str, ...]
    ) -> Callable[[Any], tuple[Any, ...]]:
        codecs = [(name, self.codec(table.column(name))) for name in key]

        def encode(row: Any) -> tuple[Any, ...]:
            if not isinstance(row, Mapping):
                raise ConversionError(f"an item is a mapping, not a {type(row).__name__}")
            values = []
            item: dict[str, Any] = {}
            for name, codec in codecs:
                value = row.get(name)
                if value is None:
                    raise ConversionError(
                        f"the item has no value for key attribute {name!r}", column=name
                    )
                try:
                    value = codec.encode(value)
                except ConversionError as error:
                    error.column = name
                    raise
                except (ValueError, TypeError, ArithmeticError) as error:
                    raise ConversionError(str(error), column=name) from error
                values.append(value)
                item[name] = to_attribute(value)
            size = 0
            for name, value in row.items():
                if name not in item:
                    if not isinstance(name, str) or not name:
                        raise ConversionError(f"attribute name {name!r} is not a non-empty str")
                    if missing_nan(value):
                        value = None  # a missing value; DynamoDB numbers have no NaN
                    try:
                        item[name] = to_attribute(value)
                    except ConversionError as error:
                        error.column = name
                        raise
                size += len(name.encode()) + _size(item[name])
            if size > MAX_ITEM_BYTES:
                raise ConversionError(
                    f"the item is {size:,} bytes; a DynamoDB item holds at most "
                    f"{MAX_ITEM_BYTES:,} bytes (400 KB)",
                    code="ItemTooLarge",
                )
            return (*values, item)

        return encode

    # ---------------------------------------------------------- transactions

    def fork(self) -> DynamoDBBackend:
        fork = DynamoDBBackend(self.client, specs=self._specs)
        fork.retry = self.retry
        return fork

    def prepare(self, op: WriteOp) -> None:
        return None

    def begin(self, timeouts: Timeouts = NO_TIMEOUTS) -> None:
        return None

    def commit(self) -> None:
        return None

    def last_commit_succeeded(self) -> bool | None:
        return True

    def rollback(self) -> None:
        return None

    def savepoint(self) -> AbstractContextManager[None]:
        return nullcontext()

    # ---------------------------------------------------------------- writes

    def write(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        if op.kind == "upsert":
            puts = [{"PutRequest": {"Item": row[-1]}} for row in rows]
            return self._batch_write(op, puts, "upserted")
        if op.kind == "delete":
            deletes = [{"DeleteRequest": {"Key": self._key(op, row)}} for row in rows]
            return self._batch_write(op, deletes, "deleted")
        if op.kind == "update":
            return self._updates(op, rows)
        return self._conditional_puts(op, rows)

    def _batch_write(
        self, op: WriteOp, requests: list[dict[str, Any]], outcome: str
    ) -> ChunkCounts:
        """BatchWriteItem in requests of 25, re-driving what comes back unprocessed
        with backoff: each round sends everything still pending (leftovers travel
        together, so a chunk larger than 25 fills its requests). Rounds go on while
        they make progress; after the policy's ``max_stalled_rounds`` rounds in a row
        that took nothing, the items still pending are reported one by one.

        A request the server refuses as a whole (a ValidationException: one bad item
        poisons its 25) is sent again one item at a time, so only the bad item is
        reported (as a DataError) and the others are written.
        """
        position = {self._request_key(op, r): i for i, r in enumerate(requests)}
        pending = list(range(len(requests)))
        refused: list[tuple[int, BulkError]] = []
        redrive = Redrive(op.retry or self.retry)
        size = self.capabilities.max_rows_per_request or 25
        while True:
            left: list[int] = []
            cause: TransientError = ThrottledError(
                "DynamoDB returned the item unprocessed", code="UnprocessedItems"
            )
            for start in range(0, len(pending), size):
                part = pending[start : start + size]
                try:
                    left += self._send_writes(op, position, requests, part)
                except TransientError as error:  # throttled or lost: resend all of it
                    left += part
                    cause = error
                except DataError as error:
                    if len(part) == 1:
                        refused.append((part[0], error))
                        continue
                    for i in part:  # find the bad item(s): each alone
                        try:
                            left += self._send_writes(op, position, requests, [i])
                        except TransientError as alone:
                            left.append(i)
                            cause = alone
                        except DataError as bad:
                            refused.append((i, bad))
            if not left:
                break
            if not redrive.settle(len(pending), len(left)):
                cause.attempts = redrive.rounds
                cause.message = f"{cause.message} ({redrive.gave_up()})"
                refused += [(i, cause) for i in left]
                break
            self.retries += 1
            pending = left
        if refused:
            written = ChunkCounts(**{outcome: len(requests) - len(refused)})
            raise RowFailures(written, sorted(refused, key=lambda failure: failure[0]))
        return ChunkCounts(**{outcome: len(requests)})

    def _send_writes(
        self,
        op: WriteOp,
        positions: Mapping[tuple[Any, ...], int],
        requests: Sequence[dict[str, Any]],
        part: Sequence[int],
    ) -> list[int]:
        """One BatchWriteItem of ``requests[part]``; the positions it left unprocessed."""
        table = op.table.name
        reply = self._call("batch_write_item", RequestItems={table: [requests[i] for i in part]})
        unprocessed = reply.get("UnprocessedItems", {}).get(table, [])
        return [self._position(positions, op, r) for r in unprocessed]

    def _conditional_puts(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        """One conditional PutItem per item: only a condition tells an insert from an
        overwrite, and BatchWriteItem takes none."""
        counts = ChunkCounts()
        failures: list[tuple[int, BulkError]] = []
        for position, row in enumerate(rows):
            try:
                self._each(
                    partial(
                        self._call,
                        "put_item",
                        TableName=op.table.name,
                        Item=row[-1],
                        ConditionExpression="attribute_not_exists(#k)",
                        ExpressionAttributeNames={"#k": op.key[0]},
                    )
                )
            except ConstraintError as error:
                if op.kind == "insert_ignore":
                    counts.ignored += 1
                else:
                    error.message = "duplicate key: an item with this key already exists"
                    error.column = op.key[0]
                    failures.append((position, error))
            except (DataError, TransientError) as error:
                failures.append((position, error))
            else:
                counts.inserted += 1
        if failures:
            raise RowFailures(counts, failures)
        return counts

    def _updates(self, op: WriteOp, rows: Sequence[tuple[Any, ...]]) -> ChunkCounts:
        """UpdateItem SET of the given attributes, only where the item exists."""
        sets = op.set_columns
        where = [op.columns.index(c) for c in sets]
        names = {f"#c{i}": c for i, c in enumerate(sets)} | {"#k": op.key[0]}
        expression = "SET " + ", ".join(f"#c{i} = :v{i}" for i in range(len(sets)))
        counts = ChunkCounts()
        failures: list[tuple[int, BulkError]] = []
        for position, row in enumerate(rows):
            try:
                new = [to_attribute(row[p]) for p in where]
                reply = self._each(
                    partial(
                        self._call,
                        "update_item",
                        TableName=op.table.name,
                        Key=self._key(op, row),
                        UpdateExpression=expression,
                        ConditionExpression="attribute_exists(#k)",
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(new)},
                        ReturnValues="UPDATED_OLD",
                    )
                )
            except ConstraintError:
                counts.not_found += 1
            except (DataError, TransientError) as error:
                failures.append((position, error))
            else:
                old = reply.get("Attributes", {})
                same = all(
                    c in old and from_attribute(old[c]) == from_attribute(v)
                    for c, v in zip(sets, new, strict=True)
                )
                if same:
                    counts.unchanged += 1
                else:
                    counts.updated += 1
        if failures:
            raise RowFailures(counts, failures)
        return counts

    # ----------------------------------------------------------------- reads

    def read(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        keys: Sequence[Any],
    ) -> Iterator[tuple[Any, ...]]:
        wanted = tuple(c for c in columns if c not in key)
        parts = [k if isinstance(k, tuple) else (k,) for k in keys]
        for item in self.get_items(table, key, parts, wanted, False):
            yield tuple(item.get(c) for c in columns)

    def get_items(
        self,
        table: TableSpec,
        key: tuple[str, ...],
        keys: Sequence[tuple[Any, ...]],
        columns: tuple[str, ...] | None,
        consistent_read: bool,
    ) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"ConsistentRead": consistent_read}
        if columns is not None:
            request.update(_projection((*key, *columns)))
        pending = [{n: to_attribute(v) for n, v in zip(key, k, strict=True)} for k in keys]
        redrive = Redrive(self.retry)  # on while rounds make progress, like writes
        while pending:
            try:
                reply = self._call(
                    "batch_get_item", RequestItems={table.name: {**request, "Keys": pending}}
                )
            except TransientError:
                left = pending
            else:
                for item in reply["Responses"].get(table.name, []):
                    yield {n: from_attribute(v) for n, v in item.items()}
                left = reply.get("UnprocessedKeys", {}).get(table.name, {}).get("Keys", [])
            if not left:
                return
            if not redrive.settle(len(pending), len(left)):
                unread = [tuple(from_attribute(k[n]) for n in key) for k in left]
                raise UnreadKeysError(
                    f"{len(left)} key(s) unprocessed ({redrive.gave_up()})",
                    [k[0] if len(key) == 1 else k for k in unread],
                    {},
                )
            self.retries += 1
            pending = left

    def scan(
        self, table: TableSpec, columns: tuple[str, ...] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of the table (or ``columns`` plus the key), page by page."""
        request: dict[str, Any] = {"TableName": table.name}
        if columns is not None:
            request.update(_projection((*table.primary_key, *columns)))
        while True:
            reply = self._each(partial(self._call, "scan", **request))
            for item in reply.get("Items", []):
                yield {n: from_attribute(v) for n, v in item.items()}
            last = reply.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

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
        raise LimitError("DynamoDB reads items by key (get_many), not by arbitrary columns")

    def insert_returning(
        self, table: TableSpec, values: Mapping[str, Any], conflict: tuple[str, ...]
    ) -> tuple[Any, ...] | None:
        raise LimitError("DynamoDB: use get_or_create(), which writes with a conditional put")

    def put_if_absent(
        self, table: TableSpec, item: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        *key, attributes = self.item_encoder(table, table.primary_key)(item)
        for _ in range(3):
            try:
                self._each(
                    partial(
                        self._call,
                        "put_item",
                        TableName=table.name,
                        Item=attributes,
                        ConditionExpression="attribute_not_exists(#k)",
                        ExpressionAttributeNames={"#k": table.primary_key[0]},
                    ),
                    idempotent=False,
                )
            except ConstraintError:
                found = list(self.get_items(table, table.primary_key, [tuple(key)], None, True))
                if found:
                    return found[0], False
                continue  # deleted in between: try to create it again
            return {n: from_attribute(v) for n, v in attributes.items()}, True
        raise ThrottledError(f"get_or_create on {table.name!r}: the item kept vanishing")

    # ------------------------------------------------------------ primitives

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
        """UpdateItem ADD per key, guarded by a condition: DynamoDB conditions cannot
        compute ``column + delta``, so ``column + delta >= low`` is sent as
        ``column >= low - delta`` (a missing attribute counts as 0, as ADD does)."""
        missing: list[Any] = []
        refused: list[Any] = []
        applied = 0
        low = None if min_value is None else _exact(min_value, "min_value")
        high = None if max_value is None else _exact(max_value, "max_value")
        single = len(key) == 1
        for given, raw_delta in zip(keys, deltas, strict=True):
            k = (given,) if single else tuple(given)
            delta = _exact(raw_delta, f"delta for key {k!r}")
            names = {"#k": key[0], "#c": column}
            values: dict[str, Any] = {":d": {"N": _number_text(delta)}}
            guards = ["attribute_exists(#k)"]
            for bound, op, name in ((low, ">=", ":lo"), (high, "<=", ":hi")):
                if bound is None:
                    continue
                values[name] = {"N": _number_text(bound - delta)}
                zero_ok = (delta >= bound) if op == ">=" else (delta <= bound)
                absent = " OR attribute_not_exists(#c)" if zero_ok else ""
                guards.append(f"(#c {op} {name}{absent})")
            try:
                self._each(
                    partial(
                        self._call,
                        "update_item",
                        TableName=table.name,
                        Key={n: to_attribute(v) for n, v in zip(key, k, strict=True)},
                        UpdateExpression="ADD #c :d",
                        ConditionExpression=" AND ".join(guards),
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values,
                    ),
                    idempotent=False,
                )
            except ConstraintError:
                # Refused by a bound, or no such item: a consistent read tells which.
                if list(self.get_items(table, key, [k], key, True)):
                    refused.append(given)
                else:
                    missing.append(given)
            except TransientError as error:
                # Not retried above this point: the keys before this one are applied.
                raise BulkError(
                    f"adjust of {table.name!r} stopped at key {k!r}: {error.message}; "
                    f"{applied} key(s) of this chunk were applied",
                    code=error.code,
                ) from error
            else:
                applied += 1
        return missing, refused

    def allocate(self, sequence: str, count: int, start: int) -> list[int]:
        """Advance the sequence's counter item by ``count`` with one atomic UpdateItem."""
        request = partial(
            self._call,
            "update_item",
            TableName=SEQUENCES_TABLE,
            Key={"name": {"S": sequence}},
            UpdateExpression="SET #v = if_not_exists(#v, :start) + :n",
            ExpressionAttributeNames={"#v": "next_value"},
            ExpressionAttributeValues={":start": {"N": str(start)}, ":n": {"N": str(count)}},
            ReturnValues="UPDATED_NEW",
        )
        try:
            # A retried request may skip a block (a gap), never hand one out twice.
            reply = self._each(request)
        except SchemaError:
            self.create_own_table(SEQUENCES_TABLE, "name")
            reply = self._each(request)
        end = int(reply["Attributes"]["next_value"]["N"])
        return list(range(end - count, end))

    def create_own_table(self, table: str, key: str) -> None:
        """Create one of bulkops' own tables (keyed on the text attribute ``key``), or
        wait for it if another process is making it at the same time."""
        try:
            self.create_table(table, {key: "text"}, (key,))
        except BulkError as error:
            if error.code != "ResourceInUseException":  # another process made it first
                raise
            with self._errors():
                self.client.get_waiter("table_exists").wait(TableName=table)

    # ------------------------------------------------------------ sync state

    def sync_state(self) -> DynamoDBSyncState:
        """Where sync keeps its digests: the sync state table."""
        return DynamoDBSyncState(self)

    # -------------------------------------------------------------- plumbing

    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> AbstractContextManager[None]:
        """Every request sent meanwhile (by this backend and the workers it starts,
        which share its client): the operation and its table (``DynamoDBTracer``)."""
        return DynamoDBTracer(self.client).trace_statements(
            on_statement, include_transaction_control=include_transaction_control
        )

    def _call(self, method: str, **request: Any) -> Any:
        self.statements += 1
        with self._errors():
            return getattr(self.client, method)(**request)

    def _each(self, send: Callable[[], Any], *, idempotent: bool = True) -> Any:
        """One request, re-sent on throttling under the call's RetryPolicy. A request
        that is not idempotent is not re-sent after a lost connection (it may have
        been applied): CommitUnknownError says so."""

        def attempt() -> Any:
            try:
                return send()
            except ConnectionLostError as error:
                if idempotent:
                    raise
                raise CommitUnknownError(
                    f"the connection was lost during a request that may have been applied "
                    f"({error.message}); not re-sent, so it is never applied twice"
                ) from error

        return self.retry.call(attempt, on_retry=self._count_retry)

    def _count_retry(self, error: TransientError, attempt: int, wait: float) -> None:
        self.retries += 1

    def _key(self, op: WriteOp, row: Sequence[Any]) -> dict[str, Any]:
        return {k: to_attribute(row[op.columns.index(k)]) for k in op.key}

    def _position(
        self, positions: Mapping[tuple[Any, ...], int], op: WriteOp, request: Mapping[str, Any]
    ) -> int:
        key = self._request_key(op, request)
        if key not in positions:
            raise BulkError(f"DynamoDB returned an unprocessed item that was not sent: {key!r}")
        return positions[key]

    def _request_key(self, op: WriteOp, request: Mapping[str, Any]) -> tuple[Any, ...]:
        body = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
        return tuple(from_attribute(body[k]) for k in op.key)

    def _errors(self) -> AbstractContextManager[None]:
        return translate_errors(self.classify_error)

    def caller_transaction(self) -> bool:
        return False  # DynamoDB has no transactions of a caller to join

    def classify_error(self, error: BaseException) -> BulkError | None:
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            code = details.get("Code", "")
            message = f"{code}: {details.get('Message') or error}"
            if code in THROTTLING:
                return ThrottledError(message, code=code)
            if code == "ConditionalCheckFailedException":
                return ConstraintError(message, code=code)
            if code == "ResourceNotFoundException":
                return SchemaError(message, code=code)
            if code == "ValidationException":
                return ConversionError(message, code=code)
            if code == "ItemCollectionSizeLimitExceededException":
                return LimitError(message, code=code)
            if code in ACCESS_REFUSED:
                return AccessError(message, code=code)
            return BulkError(message, code=code)
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return AccessError(
                f"DynamoDB: {error} (boto3 looks in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or ?profile= in the URL, ~/.aws/credentials, then the instance's "
                "role; DynamoDB Local takes any key but still needs one)"
            )
        if isinstance(error, BotoConnectionError | HTTPClientError):
            return ConnectionLostError(f"connection to DynamoDB lost: {error}")
        return None

    def close(self) -> None:
        return None


class DynamoDBSyncState:
    """Sync digests in the sync state table (created on first use): one item
    per synced table holding its ``generation`` and a map of scope -> digest. Writes
    through bulkops bump the generation and drop the map (one UpdateItem each), and a
    sync records its digest only if the generation is still the one it expected."""

    # A table made after this backend last looked is noticed within this many seconds.
    RECHECK = 30.0

    def __init__(self, backend: DynamoDBBackend) -> None:
        self.backend = backend
        self._kept: bool | None = None
        self._checked = 0.0

    def _request(self, method: str, **request: Any) -> Any:
        # Bookkeeping: sent (and seen by statement tracing), not counted as work;
        # throttling is retried under the policy like any other request.
        def send() -> Any:
            with self.backend._errors():
                return getattr(self.backend.client, method)(**request)

        return self.backend.retry.call(send)

    def kept(self, spec: TableSpec) -> bool:
        now = time.monotonic()
        if self._kept is None or (not self._kept and now - self._checked > self.RECHECK):
            self._checked = now
            try:
                self._request("describe_table", TableName=SYNC_STATE_TABLE)
                self._kept = True
            except SchemaError:
                self._kept = False
        return self._kept

    def begin(self, table: str, scope: str) -> SyncMark:
        key = {"table_name": {"S": table}}
        try:
            reply = self._request(
                "get_item", TableName=SYNC_STATE_TABLE, Key=key, ConsistentRead=True
            )
        except SchemaError:
            self.backend.create_own_table(SYNC_STATE_TABLE, "table_name")
            reply = {}
        self._kept = True
        item = reply.get("Item")
        if item is None:
            try:
                self._request(
                    "put_item",
                    TableName=SYNC_STATE_TABLE,
                    Item={**key, "generation": {"N": "0"}},
                    ConditionExpression="attribute_not_exists(#t)",
                    ExpressionAttributeNames={"#t": "table_name"},
                )
            except ConstraintError:
                return self.begin(table, scope)  # another sync made it first
            return SyncMark(0, None, None)
        generation = int(item["generation"]["N"])
        mine = item.get("scopes", {}).get("M", {}).get(scope)
        digest = mine["M"]["digest"]["S"] if mine else None
        return SyncMark(generation, digest, None)

    def invalidate(self, table: str, in_transaction: bool = False) -> None:
        with suppress(ConstraintError):  # never synced: nothing to invalidate
            self._request(
                "update_item",
                TableName=SYNC_STATE_TABLE,
                Key={"table_name": {"S": table}},
                UpdateExpression="ADD #g :one REMOVE #m",
                ConditionExpression="attribute_exists(#t)",
                ExpressionAttributeNames={"#g": "generation", "#m": "scopes", "#t": "table_name"},
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    def read_rows(self, table: str, scope: str, mark: SyncMark) -> list[bytes] | None:
        """Per-row digests are not kept in DynamoDB yet: a sync reads the items by key."""
        return None

    def record(
        self,
        table: str,
        scope: str,
        mark: SyncMark,
        digest: str,
        target_rows: int | None,
        rows: Sequence[bytes] | None = None,
        append_to: int | None = None,
    ) -> bool:
        value = {"M": {"digest": {"S": digest}}}
        attempts = (
            ("SET #m.#s = :v", "attribute_exists(#m)", value),
            ("SET #m = :m", "attribute_not_exists(#m)", {"M": {scope: value}}),
        )
        for update, condition, payload in attempts:
            placeholder = ":v" if ":v" in update else ":m"
            request: dict[str, Any] = {
                "TableName": SYNC_STATE_TABLE,
                "Key": {"table_name": {"S": table}},
                "UpdateExpression": update,
                "ConditionExpression": f"#g = :g AND {condition}",
                "ExpressionAttributeNames": {"#g": "generation", "#m": "scopes"},
                "ExpressionAttributeValues": {
                    ":g": {"N": str(mark.generation)},
                    placeholder: payload,
                },
            }
            if "#s" in update:
                request["ExpressionAttributeNames"]["#s"] = scope
            try:
                self._request("update_item", **request)
                return True
            except ConstraintError:
                continue  # the other shape of the item, or written meanwhile
        return False


def _projection(names: Sequence[str]) -> dict[str, Any]:
    """A ProjectionExpression of ``names``, each aliased through ExpressionAttributeNames
    so that reserved words (``name``, ``status``) just work."""
    wanted = list(dict.fromkeys(names))
    return {
        "ProjectionExpression": ", ".join(f"#p{i}" for i in range(len(wanted))),
        "ExpressionAttributeNames": {f"#p{i}": n for i, n in enumerate(wanted)},
    }


def _exact(value: Any, what: str) -> Decimal:
    """A number as an exact Decimal (floats by their shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            raise ConversionError(f"{what} must be a number, not {value!r}") from None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
