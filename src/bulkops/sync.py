"""Differential sync: bring a table in line with a source by sending only the difference.

``Store.sync`` / ``diff`` / ``apply`` are thin; the work is here.

- On SQL databases (``capabilities.set_based_diff``) the source is staged into a
  temporary table, chunk by chunk, and the database itself finds what was added,
  changed (``IS DISTINCT FROM`` on the compared columns) and is missing, with a few
  set-based statements; the difference is then read back a chunk at a time and written
  with the ordinary ``upsert`` / ``delete`` machinery (short transactions, retries,
  isolation of bad rows). Memory is bounded by the chunk size, not by the table.
- On item stores (DynamoDB) each source chunk's items are read by key and compared
  through stable row hashes; keys missing from the source are found with a scan.
- A digest of the whole source is kept per (table, scope) in ``bulkops_sync_state``
  with the table's *generation*: every write bulkops makes to a table bumps it (see
  ``Store._touch``), so an unchanged source meeting an untouched table is skipped.
- A difference can be kept as a ``Changeset`` (gzip JSON Lines) and applied to
  another store.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from itertools import chain
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import sqlalchemy as sa

from .backends.base import ALREADY_EXISTS, Backend
from .errors import (
    BulkError,
    ChangesetError,
    ConstraintError,
    ConversionError,
    SchemaError,
    TooManyRejects,
)
from .execute import numbered, resolve_on_error, run_transaction
from .plan import ChunkPlanner, chunk_rows, chunked
from .report import Rejection, RejectsFile, Report, SyncReport, jsonable
from .retry import RetryPolicy
from .schema import TableSpec, coerce

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "STATE_TABLE",
    "Changeset",
    "SQLSyncState",
    "SyncMark",
    "canonical",
    "row_hash",
    "scope_id",
]

STATE_TABLE = "bulkops_sync_state"
CHANGESET_FORMAT = "bulkops-changeset"
CHANGESET_VERSION = 1
# The row of the state table that holds a table's generation (not a scope's digest).
_GENERATION_ROW = "*"

# ----------------------------------------------------------------- row hashing

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
            "where": {k: jsonable(canonical(v)) for k, v in sorted(where.items())},
            "delete_missing": delete_missing,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Digest:
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


# ------------------------------------------------------------------ sync state


@dataclasses.dataclass(frozen=True)
class SyncMark:
    """A table's sync state as a sync found it when it started."""

    generation: int
    digest: str | None  # of the scope's last sync, if the table is unchanged since
    target_rows: int | None  # rows in the scope after that sync


_metadata = sa.MetaData()
state_table = sa.Table(
    STATE_TABLE,
    _metadata,
    sa.Column("table_name", sa.Text, primary_key=True),
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.Text),
    sa.Column("target_rows", sa.BigInteger),
    sa.Column("synced_at", sa.DateTime(timezone=True)),
)


class SQLSyncState:
    """The ``bulkops_sync_state`` table of a SQL database (SQLAlchemy Core, the same on
    SQLite and PostgreSQL). Each table has a generation row (scope ``*``) and a row per
    synced scope; ``invalidate`` bumps the generation and forgets every digest."""

    def __init__(self, backend: Backend, retry: RetryPolicy) -> None:
        self.backend = backend
        self.retry = retry

    def _execute(
        self, statement: sa.ClauseElement, values: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return self.backend.execute_core(statement, values)  # type: ignore[attr-defined, no-any-return]

    def _transaction(self, work: Callable[[], Any]) -> Any:
        return run_transaction(self.backend, work, self.retry, what="a sync state write")

    def kept(self, spec: TableSpec) -> bool:
        """Whether the database keeps sync state (reflection says so, for free)."""
        return bool(spec.extra.get("sync_state"))

    def begin(self, table: str, scope: str) -> SyncMark:
        try:
            self._transaction(
                lambda: self._execute(sa.schema.CreateTable(state_table, if_not_exists=True))
            )
        except BulkError as error:
            if error.code not in ALREADY_EXISTS:
                raise
        t = state_table.c

        def read() -> SyncMark:
            rows = self._execute(
                sa.select(t.scope, t.generation, t.digest, t.target_rows).where(
                    t.table_name == table, sa.or_(t.scope == _GENERATION_ROW, t.scope == scope)
                )
            )
            found = {r[0]: r for r in rows}
            if _GENERATION_ROW not in found:
                self._execute(
                    sa.insert(state_table).values(
                        table_name=table, scope=_GENERATION_ROW, generation=0
                    )
                )
                return SyncMark(0, None, None)
            generation = found[_GENERATION_ROW][1]
            mine = found.get(scope)
            if mine is None or mine[1] != generation:
                return SyncMark(generation, None, None)
            return SyncMark(generation, mine[2], mine[3])

        try:
            return self._transaction(read)  # type: ignore[no-any-return]
        except ConstraintError:
            # Another sync of this table made its generation row first: read that one.
            return self._transaction(read)  # type: ignore[no-any-return]

    def invalidate(self, table: str, in_transaction: bool = False) -> None:
        t = state_table.c
        statement = (
            sa.update(state_table)
            .where(t.table_name == table)
            .values(generation=t.generation + 1, digest=None)
        )
        if in_transaction:
            self._execute(statement)
        else:
            self._transaction(lambda: self._execute(statement))

    def record(
        self, table: str, scope: str, mark: SyncMark, digest: str, target_rows: int | None
    ) -> bool:
        """Keep ``digest`` for the scope unless the table was written by someone else
        since the sync started (then the next sync compares in full)."""
        t = state_table.c

        def write() -> bool:
            rows = self._execute(
                sa.select(t.generation).where(t.table_name == table, t.scope == _GENERATION_ROW)
            )
            if not rows or rows[0][0] != mark.generation:
                return False
            self._execute(sa.delete(state_table).where(t.table_name == table, t.scope == scope))
            self._execute(
                sa.insert(state_table).values(
                    table_name=table, scope=scope, generation=mark.generation,
                    digest=digest, target_rows=target_rows,
                    synced_at=dt.datetime.now(dt.UTC),
                )
            )  # fmt: skip
            return True

        return self._transaction(write)  # type: ignore[no-any-return]


# -------------------------------------------------------------------- changesets


class Changeset:
    """A difference between a source and a table, kept as a gzip-compressed JSON Lines
    file: a header (table, key, columns, their types, where), one line per added or
    changed row (in full) and per deleted key, and a trailer with the counts and a
    SHA-256 of the lines, so that a truncated or corrupt file is refused whole.

    ``db.diff(...)`` makes one (in a temporary file until ``write(path)``);
    ``Changeset.read(path)`` opens a stored one; ``db.apply(changeset)`` applies it.
    ``bytes``: the compressed size; ``full_bytes``: the whole source as uncompressed
    JSON Lines, when the changeset was computed here (None when read from a file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: Mapping[str, Any],
        trailer: Mapping[str, Any],
        *,
        temporary: bool = False,
        full_bytes: int | None = None,
        report: SyncReport | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.header = dict(header)
        self.trailer = dict(trailer)
        self.full_bytes = full_bytes
        self.report = report
        self._temporary = temporary

    table = property(lambda self: self.header["table"])
    key = property(lambda self: tuple(self.header["key"]))
    columns = property(lambda self: tuple(self.header["columns"]))
    where = property(lambda self: self.header["where"])
    added = property(lambda self: self.trailer["added"])
    changed = property(lambda self: self.trailer["changed"])
    deleted = property(lambda self: self.trailer["deleted"])

    @property
    def bytes(self) -> int:
        return os.path.getsize(self.path)

    @property
    def ratio(self) -> float | None:
        """The changeset's size against the full data's (None if unknown)."""
        return self.bytes / self.full_bytes if self.full_bytes else None

    def __repr__(self) -> str:
        return (
            f"Changeset({self.table!r}: added {self.added}, changed {self.changed}, "
            f"deleted {self.deleted}; {self.bytes} bytes)"
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Store the changeset at ``path`` (written to a temporary name, then renamed)."""
        target = os.fspath(path)
        if os.path.abspath(target) == os.path.abspath(self.path):
            return
        partial = f"{target}.partial"
        shutil.copyfile(self.path, partial)
        os.replace(partial, target)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Changeset:
        """Open a stored changeset, checking all of it first (ChangesetError if it is
        truncated, corrupt or not a bulkops changeset)."""
        header, trailer = _validate(os.fspath(path))
        return cls(path, header, trailer)

    def records(self) -> Iterator[dict[str, Any]]:
        """The added / changed / deleted records, in file order (checked as they come)."""
        with _open_lines(self.path) as lines:
            next(lines)
            for line in lines:
                record = json.loads(line)
                if "end" in record:
                    return
                yield record

    def close(self) -> None:
        """Remove the temporary file of a changeset that was not stored elsewhere."""
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._temporary = False

    def __enter__(self) -> Changeset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


@contextlib.contextmanager
def _open_lines(path: str) -> Iterator[Iterator[str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield iter(f)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise ChangesetError(f"changeset {path}: not a readable gzip file ({error})") from error


def _validate(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the whole file: header, records, trailer; the counts and SHA-256 agree."""
    counts = {"add": 0, "change": 0, "delete": 0}
    digest = hashlib.sha256()
    trailer: dict[str, Any] | None = None
    with _open_lines(path) as lines:
        try:
            header = json.loads(next(lines))
        except StopIteration:
            raise ChangesetError(f"changeset {path} is empty") from None
        except json.JSONDecodeError as error:
            raise ChangesetError(f"changeset {path}: the header is not JSON ({error})") from None
        if not isinstance(header, dict) or header.get("format") != CHANGESET_FORMAT:
            raise ChangesetError(f"{path} is not a bulkops changeset")
        if header.get("version") != CHANGESET_VERSION:
            raise ChangesetError(
                f"changeset {path} has version {header.get('version')!r}; this bulkops "
                f"reads version {CHANGESET_VERSION}"
            )
        for number, line in enumerate(lines, start=2):
            if trailer is not None:
                raise ChangesetError(f"changeset {path}: line {number} follows the trailer")
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ChangesetError(
                    f"changeset {path}: line {number} is corrupt ({error})"
                ) from None
            if not isinstance(record, dict):
                raise ChangesetError(f"changeset {path}: line {number} is not an object")
            if "end" in record:
                trailer = record
                continue
            op = record.get("op")
            if op not in counts:
                raise ChangesetError(f"changeset {path}: line {number} has no valid op")
            counts[op] += 1
            digest.update(line.encode("utf-8", "surrogatepass"))
    if trailer is None:
        raise ChangesetError(
            f"changeset {path} is truncated: it ends without its trailer "
            f"({sum(counts.values())} records read); nothing was applied"
        )
    expected = {"add": trailer.get("added"), "change": trailer.get("changed"),
                "delete": trailer.get("deleted")}  # fmt: skip
    if expected != counts or trailer.get("sha256") != digest.hexdigest():
        raise ChangesetError(
            f"changeset {path} is corrupt: its records do not match its trailer "
            f"(counted {counts}, trailer says {expected}); nothing was applied"
        )
    return header, trailer


class _ChangesetWriter:
    """Writes a changeset's lines as the difference is found."""

    def __init__(self, header: dict[str, Any]) -> None:
        fd, self.path = tempfile.mkstemp(prefix="bulkops-changes-", suffix=".jsonl.gz")
        os.close(fd)
        # Closed by finish() or discard(): it lives across the whole diff.
        self._file: IO[str] = gzip.open(  # noqa: SIM115
            self.path, "wt", encoding="utf-8", compresslevel=6
        )
        self.header = {"format": CHANGESET_FORMAT, "version": CHANGESET_VERSION, **header}
        self._file.write(json.dumps(self.header) + "\n")
        self._digest = hashlib.sha256()
        self.counts = {"add": 0, "change": 0, "delete": 0}

    def add(self, op: str, payload: Any) -> int:
        field = "key" if op == "delete" else "row"
        line = json.dumps({"op": op, field: payload}, ensure_ascii=False) + "\n"
        self._file.write(line)
        data = line.encode("utf-8", "surrogatepass")
        self._digest.update(data)
        self.counts[op] += 1
        return len(data)

    def finish(self, full_bytes: int | None, report: SyncReport) -> Changeset:
        trailer = {
            "end": True, "added": self.counts["add"], "changed": self.counts["change"],
            "deleted": self.counts["delete"], "sha256": self._digest.hexdigest(),
        }  # fmt: skip
        self._file.write(json.dumps(trailer) + "\n")
        self._file.close()
        return Changeset(
            self.path, self.header, trailer, temporary=True, full_bytes=full_bytes, report=report
        )

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _rows_lines_size(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """``_lines_size`` of ``{"op": "add", "row": {column: value}}`` records for ``rows``
    (tuples of ``columns``' values), at the cost of encoding the values once as lists:
    every record adds the same text for the op and the column names."""
    if not rows:
        return 0
    text = json.dumps(rows, ensure_ascii=False, default=_to_json)
    values = len(text.encode("utf-8", "surrogatepass")) - 2 - 2 * (len(rows) - 1)
    names = sum(len(json.dumps(c, ensure_ascii=False).encode()) + 2 for c in columns)
    wrapper = len('{"op": "add", "row": {}}') - 2 + names + 1  # "[...]" becomes this, + "\n"
    return values + wrapper * len(rows)


def _to_json(value: Any) -> Any:
    """A changeset value: like ``jsonable``, but bytes, sets and decimals tagged so they
    come back as what they were (a column of type ``any``, or a DynamoDB attribute, has
    no declared type to coerce text back with)."""
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, set | frozenset):
        return {"$set": [_to_json(v) for v in sorted(value, key=repr)]}
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value
    return jsonable(value)


def _from_json(value: Any, kind: str) -> Any:
    """The value a changeset line holds, back in Python form for a column of ``kind``
    (text forms of decimals and datetimes are coerced by the target's own codecs)."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$set"}:
            return {_from_json(v, "any") for v in value["$set"]}
        if set(value) == {"$decimal"}:
            return Decimal(value["$decimal"])
        return {k: _from_json(v, "any") for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v, "any") for v in value]
    if kind in ("any", "json") and isinstance(value, float | int):
        return value
    if isinstance(value, float) and kind == "decimal":
        return Decimal(repr(value))
    return value


def _lines_size(records: list[Any]) -> int:
    """The bytes ``records`` take as JSON Lines (as a changeset writes them), from one
    ``json.dumps`` of the whole list (its C encoder) instead of one call per record."""
    if not records:
        return 0
    text = json.dumps(records, ensure_ascii=False, default=_to_json)
    # "[a, b]" -> "a\nb\n": the brackets go, each ", " between records becomes "\n".
    size = len(text.encode("utf-8", "surrogatepass"))
    return size - 2 - 2 * (len(records) - 1) + len(records)


# -------------------------------------------------------------------- the sync


Mode = Literal["sync", "diff"]


class Syncer:
    """One ``sync`` or ``diff`` call on one table."""

    def __init__(
        self,
        store: Store,
        table: str,
        *,
        key: str | Sequence[str] | None,
        columns: Sequence[str] | None,
        delete_missing: bool,
        where: Mapping[str, Any] | None,
        dry_run: bool,
        keys: bool,
        chunk_size: int | None,
        options: dict[str, Any],
        mode: Mode = "sync",
    ) -> None:
        self.store = store
        self.backend = store.backend
        self.spec = self.backend.reflect(table)
        self.key = self.spec.resolve_key(key, mode)
        self.spec.require_unique(self.key, mode)
        self.columns = None if columns is None else self.spec.check_columns(columns)
        self.delete_missing = delete_missing
        self.where = dict(where or {})
        self.spec.check_columns(self.where)
        self.dry_run = dry_run or mode == "diff"
        self.keys = keys
        self.chunk_size = chunk_size
        self.options, self.sink = _one_rejects_sink(options)  # for the writes of the difference
        self.max_rejects = self.options.get("max_rejects")
        self.on_error = self.options["on_error"]
        self.mode = mode
        self.changeset: Changeset | None = None
        self.report = SyncReport(table=table, verb=mode, dry_run=dry_run and mode == "sync")
        self.scope = scope_id(self.key, self.columns, self.where, delete_missing)
        self.state = store._sync_state()
        self.writer: _ChangesetWriter | None = None
        self.full_bytes: int | None = 0 if mode == "diff" else None

    # ------------------------------------------------------------- entry point

    def run(self, rows: Iterable[Any], source_digest: str | None = None) -> SyncReport:
        started = time.perf_counter()
        statements = self.backend.statements
        try:
            self._run(rows, source_digest)
        finally:
            self.report.statements = self.backend.statements - statements
            self.report.elapsed = time.perf_counter() - started
            _write_rejects(self.sink, self.report)
        return self.report

    def write_options(self) -> Any:
        """The options for one write of the difference (a fresh copy)."""
        return dict(self.options)

    def reject(self, rejection: Rejection) -> None:
        """A source row that is not written (before anything of it was sent)."""
        report = self.report
        report.rejected += 1
        report.rejections.append(rejection)
        if self.on_error == "raise":
            raise ConversionError(
                f"{self.mode} of {self.spec.name!r}: row {rejection.row} "
                f"(key {rejection.key!r}): {rejection.reason}",
                column=rejection.column,
            )
        if self.max_rejects is not None and report.rejected > self.max_rejects:
            raise TooManyRejects(
                f"{self.mode} of {self.spec.name!r} stopped: more than {self.max_rejects} "
                "rows rejected",
                report.rejections,
            )

    def _run(self, rows: Iterable[Any], source_digest: str | None) -> None:
        report = self.report
        mark = None if self.mode == "diff" else self.state.begin(self.spec.name, self.scope)
        if source_digest is not None:
            report.digest = f"source:{source_digest}"
            if mark is not None and self._unchanged(mark, report.digest):
                report.skipped = True
                return
        iterator = iter(rows)
        first = next(iterator, _END)
        given = self.columns
        mappings = first is _END or isinstance(first, Mapping)
        if given is None and not mappings:
            raise TypeError(f"{self.mode}(): rows are not mappings: pass columns= (and key)")
        if given is None:
            given = () if first is _END else self.spec.check_columns(first.keys())
        missing = [k for k in self.key if k not in given]
        # Mappings are looked up by name (the key is added to columns= here, as a write
        # does); sequences must give it, and an empty source gives nothing to miss.
        if missing and first is not _END and not (mappings and self.columns is not None):
            raise SchemaError(
                f"{self.mode}() matches rows on ({', '.join(self.key)}) but the rows do "
                f"not give {', '.join(map(repr, missing))}"
            )
        # The key first: the stage, the pages and the keys read back rely on it.
        cols = self.key + tuple(c for c in given if c not in self.key)
        if first is not _END:
            iterator = chain([first], iterator)
        if not mappings and cols != given:
            # Sequences hold their values in the order of columns=: put them in ours.
            iterator = _reordered(iterator, [given.index(c) for c in cols], len(given))
        self.cols = cols
        self.compared = tuple(c for c in cols if c not in self.key)
        if self.mode == "diff":
            self.writer = _ChangesetWriter(
                {
                    "table": self.spec.name,
                    "key": list(self.key),
                    "columns": list(cols),
                    "types": {c: self.spec.column(c).type for c in cols},
                    "where": jsonable(self.where),
                }
            )
        try:
            if self.store.capabilities.set_based_diff:
                _SetBasedDiff(self, mappings).run(iterator, mark, source_digest)
            else:
                _HashDiff(self, mappings).run(iterator, mark, source_digest)
        except BaseException:
            if self.writer is not None:
                self.writer.discard()
            raise

    def _unchanged(self, mark: SyncMark, digest: str) -> bool:
        if mark.digest is None or mark.digest != digest:
            return False
        if mark.target_rows is None:
            return True
        # A cheap look for writes made without bulkops (rows added or removed).
        return self.count_target() == mark.target_rows

    def count_target(self) -> int | None:
        """Rows in the scope (SQL); None where counting means reading everything."""
        if not self.store.capabilities.set_based_diff:
            return None
        t = self.backend.core_table(self.spec)  # type: ignore[attr-defined]
        where = [
            t.c[c].is_(None) if v is None else t.c[c] == sa.literal(v)
            for c, v in self.encoded_where().items()
        ]
        statement = sa.select(sa.func.count()).select_from(t).where(*where)
        rows = self.backend.execute_core(statement, counted=True)  # type: ignore[attr-defined]
        return int(rows[0][0])

    def encoded_where(self) -> dict[str, Any]:
        from .store import _encode_value

        return {
            c: _encode_value(v, self.backend.codec(self.spec.column(c)), c)
            for c, v in self.where.items()
        }

    def finished(self, mark: SyncMark | None, digest: str | None, wrote: bool) -> None:
        """Keep the source's digest for the next sync of this scope."""
        if self.dry_run or mark is None or digest is None:
            return
        if self.report.rejected or self.report.failed:
            return  # rows the target lacks: the next sync must compare again
        expected = dataclasses.replace(mark, generation=mark.generation + (1 if wrote else 0))
        self.state.record(self.spec.name, self.scope, expected, digest, self.count_target())

    def touch(self) -> None:
        """About to write the difference: the table's generation moves on, once."""
        self.state.invalidate(self.spec.name)

    # ----------------------------------------------------------------- writes

    def write_rows(self, rows: list[dict[str, Any]]) -> Report:
        """Upsert added and changed rows (mappings of ``self.cols``)."""
        columns = None if self.spec.open and self.columns is None else self.cols
        return self.store._write(
            "upsert", self.spec.name, rows, columns=columns, key=self.key,
            options=self.write_options(), spec=self.spec, touch=False,
        )  # fmt: skip

    def delete_keys(self, keys: list[tuple[Any, ...]]) -> Report:
        return self.store._write(
            "delete", self.spec.name, keys, columns=self.key, key=self.key,
            options=self.write_options(), spec=self.spec, touch=False,
        )  # fmt: skip

    def absorb(self, written: Report, positions: Sequence[int] | None = None) -> None:
        """Take the rejections and failures of a write; ``positions[i]`` is the source
        row number of the write's row ``i + 1`` (so a rejection names the source row)."""

        if positions is None:
            self.report.take_rejects(written)
            return
        where = positions
        self.report.take_rejects(
            written, lambda r: dataclasses.replace(r, row=int(where[r.row - 1]))
        )

    def note(self, found: list[tuple[str, Any, Any]]) -> None:
        """Rows of the difference, ``(op, key, row or key values)``: counted in bytes,
        kept in the keys lists and the changeset when asked for."""
        report = self.report
        if self.writer is not None:
            for op, _, payload in found:
                report.bytes += self.writer.add(op, _to_json(payload))
        else:
            report.bytes += _lines_size(
                [{"op": op, "key" if op == "delete" else "row": p} for op, _, p in found]
            )
        if self.keys:
            lists = {"add": report.added_keys, "change": report.changed_keys,
                     "delete": report.deleted_keys}  # fmt: skip
            for op, key, _ in found:
                lists[op].append(key)

    def key_of(self, row: Mapping[str, Any]) -> Any:
        return row[self.key[0]] if len(self.key) == 1 else tuple(row[k] for k in self.key)


class _End:
    pass


_END: Any = _End()


class _SetBasedDiff:
    """The difference computed by a SQL database: stage, classify, read back, write."""

    def __init__(self, sync: Syncer, mappings: bool) -> None:
        self.sync = sync
        backend: Any = sync.backend  # a SQL backend: dialect, execute_core, load_stage
        self.backend = backend
        self.mappings = mappings
        self.name = f"bulkops_sync_{uuid.uuid4().hex[:12]}"
        self.dialect = backend.dialect
        self.last_position = 0  # the highest row number staged
        self.staged = 0  # source rows staged to be compared (not the rejected ones' keys)
        self.delta = f"{self.name}_delta"

    def _q(self, name: str) -> str:
        return str(self.dialect.identifier_preparer.quote(name))

    def _create_temporary(self, name: str) -> None:
        """A temporary table of the compared columns, typed as the target declares them
        (so values compare as the target's do), plus the source row number ``_n`` and
        the mark ``_op``."""
        spec = self.sync.spec
        columns = ", ".join(f"{self._q(c)} {spec.column(c).declared or ''}" for c in self.sync.cols)
        self._exec(
            f"CREATE TEMPORARY TABLE {self._q(name)} "
            f"({columns}, {self._q('_n')} BIGINT NOT NULL, {self._q('_op')} TEXT)"
        )

    def _exec(self, statement: Any, values: Mapping[str, Any] | None = None) -> list[Any]:
        if isinstance(statement, str):
            statement = sa.text(statement)
        return self.backend.execute_core(statement, values, counted=True)  # type: ignore[no-any-return]

    def _in_transaction(self, work: Callable[[], Any]) -> Any:
        sync = self.sync
        retry = sync.options.get("retry") or sync.store.retry
        return run_transaction(self.backend, work, retry, what=f"{sync.mode} of {sync.spec.name!r}")

    def run(self, rows: Iterator[Any], mark: SyncMark | None, source_digest: str | None) -> None:
        sync, report = self.sync, self.sync.report
        self._create_temporary(self.name)
        try:
            digest = self._stage(rows)
            if source_digest is None:
                report.digest = digest
            self._unique_keys()
            if mark is not None and report.digest and sync._unchanged(mark, report.digest):
                report.skipped = True
                report.unchanged += report.rows_in - report.rejected - report.duplicates
                return
            self._classify()
            wrote = self._apply()
            sync.finished(mark, report.digest, wrote)
            if sync.writer is not None:
                sync.changeset = sync.writer.finish(sync.full_bytes, report)
        finally:
            for table in (self.delta, self.name):
                with contextlib.suppress(BulkError):
                    self._exec(f"DROP TABLE IF EXISTS {self._q(table)}")

    # ------------------------------------------------------------------ stage

    def _stage(self, rows: Iterator[Any]) -> str:
        sync, report = self.sync, self.sync.report
        spec, cols = sync.spec, sync.cols
        codecs = [self.backend.codec(spec.column(c)) for c in cols]
        explicit = sync.columns is not None
        planner = ChunkPlanner(
            cols, codecs, sync.key, mappings=self.mappings,
            strict_width=not (explicit and self.mappings),
        )  # fmt: skip
        width = len(sync.key)
        key_codecs = codecs[:width]
        where = [(cols.index(c), v) for c, v in sync.encoded_where().items() if c in cols]
        outside = [c for c in sync.where if c not in cols]
        if outside and sync.where:
            raise SchemaError(
                f"{sync.mode}(): where= names {', '.join(map(repr, outside))}, which the "
                "rows do not give"
            )
        digest = _Digest(sync.scope)
        size = chunk_rows(sync.store.capabilities, len(cols) + 2, sync.chunk_size)
        names = (*cols, "_n", "_op")
        for raws, start in numbered(chunked(rows, size)):
            chunk = planner.prepare(raws, start)
            report.rows_in += chunk.size
            report.duplicates += chunk.duplicates
            staged: list[tuple[Any, ...]] = []
            blanks = (None,) * (len(cols) - width)
            for rejection in chunk.rejections:
                sync.reject(rejection)
                # A rejected row's key still stands for a row the source has: it must
                # not be taken for missing and deleted.
                key_values = self._encoded_key(rejection, key_codecs)
                if key_values is not None:
                    staged.append((*key_values, *blanks, rejection.row, "r"))
            for row, i in zip(chunk.rows, chunk.index, strict=True):
                if where and any(row[p] != v for p, v in where):
                    values = planner.values_of(raws[i])
                    sync.reject(
                        Rejection(
                            row=start + i + 1, key=planner.key_from_values(values),
                            reason=f"outside the sync's scope (where={sync.where!r})",
                            values=values,
                        )
                    )  # fmt: skip
                    staged.append((*row[:width], *blanks, start + i + 1, "r"))
                    continue
                staged.append((*row, start + i + 1, None))
                self.staged += 1
            digest.update_encoded(chunk.rows)
            if sync.full_bytes is not None:
                sync.full_bytes += _rows_lines_size(cols, chunk.rows)
            if staged:
                self._load(names, staged)
            self.last_position = start + len(raws)
        self.backend.finish_stage(self.name)
        return digest.hexdigest()

    def _load(self, names: Sequence[str], staged: list[tuple[Any, ...]]) -> None:
        self._in_transaction(
            lambda: self.backend.load_stage(self.name, self.sync.spec, names, staged)
        )

    def _encoded_key(self, rejection: Rejection, codecs: Sequence[Any]) -> tuple[Any, ...] | None:
        key = rejection.key
        if key is None:
            return None
        parts = key if isinstance(key, tuple) else (key,)
        try:
            out = tuple(
                v if v.__class__ in c.passthrough else c.encode(v)
                for v, c in zip(parts, codecs, strict=True)
            )
        except Exception:
            return None
        return None if any(v is None for v in out) else out

    def _unique_keys(self) -> None:
        """Index the stage on the key; where a key came twice, the last row wins."""
        sync = self.sync
        keys = ", ".join(self._q(k) for k in sync.key)
        index = self._q(f"{self.name}_key")
        create = f"CREATE UNIQUE INDEX {index} ON {self._q(self.name)} ({keys})"
        try:
            self._exec(create)
            return
        except ConstraintError:
            pass
        s, later = self._stage_table(), self._stage_table("later")
        overtaken = sa.exists().where(
            *(later.c[k] == s.c[k] for k in sync.key), later.c["_n"] > s.c["_n"]
        )
        # Rejected rows stand in the stage only to keep their keys from being deleted:
        # they are counted as rejected already, not again as duplicates.
        counted = sa.select(sa.func.count()).select_from(s).where(overtaken, s.c["_op"].is_(None))

        def collapse() -> int:
            duplicates = int(self._exec(counted)[0][0])
            self._exec(sa.delete(s).where(overtaken))
            return duplicates

        removed = self._in_transaction(collapse)
        sync.report.duplicates += removed
        self.staged -= removed
        self._exec(create)

    def _stage_table(self, alias: str | None = None) -> Any:
        t = sa.table(self.name, *(sa.column(c) for c in (*self.sync.cols, "_n", "_op")))
        return t.alias(alias) if alias else t

    # --------------------------------------------------------------- classify

    def _delta_table(self) -> Any:
        return sa.table(self.delta, *(sa.column(c) for c in ("_n", "_op", *self.sync.cols)))

    def _classify(self) -> None:
        """One pass over the stage joined to the target puts the added (``a``), changed
        (``c``) and out-of-scope (``x``) rows into a small delta table; one anti-join
        adds the target's keys the source lacks (``d``). Unchanged rows are written
        nowhere."""
        sync = self.sync
        s, t, d = self._stage_table(), self.backend.core_table(sync.spec), self._delta_table()
        cols = sync.cols
        self._create_temporary(self.delta)
        match = sa.and_(*(t.c[k] == s.c[k] for k in sync.key))
        # In a left join a matched row's key is not NULL (it equalled the source's).
        missing = t.c[sync.key[0]].is_(None)
        if sync.where:
            in_scope = sa.and_(
                *(
                    t.c[c].is_not_distinct_from(sa.literal(v))
                    for c, v in sync.encoded_where().items()
                )
            )
        else:
            in_scope = sa.true()
        differs = sa.or_(
            *(self.backend.distinct(sync.spec.column(c), t.c[c], s.c[c]) for c in sync.compared)
        ) if sync.compared else sa.false()  # fmt: skip
        op = sa.case((missing, "a"), (~in_scope, "x"), else_="c")
        joined = s.outerjoin(t, match)
        statements: list[Any] = [
            sa.insert(d).from_select(
                ["_n", "_op", *cols],
                sa.select(s.c["_n"], op, *(s.c[c] for c in cols))
                .select_from(joined)
                .where(s.c["_op"].is_(None), sa.or_(missing, ~in_scope, differs)),
            )
        ]
        if sync.delete_missing:
            present = sa.exists().where(*(s.c[k] == t.c[k] for k in sync.key))
            statements.append(
                sa.insert(d).from_select(
                    ["_n", "_op", *sync.key],
                    sa.select(
                        # row numbers for the deletions follow the source's
                        sa.literal(self.last_position) + sa.func.row_number().over(),
                        sa.literal("d"),
                        *(t.c[k] for k in sync.key),
                    ).where(in_scope, ~present),
                )
            )

        def classify() -> None:
            for statement in statements:
                self._exec(statement)

        self._in_transaction(classify)
        self._exec(
            f"CREATE INDEX {self._q(self.delta + '_op')} ON {self._q(self.delta)} "
            f"({self._q('_op')}, {self._q('_n')})"
        )

    # ------------------------------------------------------------------ apply

    def _pages(self, ops: Sequence[str], columns: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        s = self._delta_table()
        size = chunk_rows(self.sync.store.capabilities, len(self.sync.cols), self.sync.chunk_size)
        after = -1
        query = (
            sa.select(s.c["_n"], s.c["_op"], *(s.c[c] for c in columns))
            .where(sa.or_(*(s.c["_op"] == op for op in ops)), s.c["_n"] > sa.bindparam("after"))
            .order_by(s.c["_n"])
            .limit(size)
        )
        while True:
            page = self._exec(query, {"after": after})
            if not page:
                return
            after = page[-1][0]
            yield page

    def _apply(self) -> bool:
        sync, report = self.sync, self.sync.report
        spec, cols = sync.spec, sync.cols
        decoders = [self.backend.codec(spec.column(c)).decode for c in cols]
        width = len(sync.key)
        d = self._delta_table()
        counts = dict(self._exec(sa.select(d.c["_op"], sa.func.count()).group_by(d.c["_op"])))
        outside = counts.get("x", 0)
        if outside:
            self._reject_outside()
        report.unchanged += self.staged - counts.get("a", 0) - counts.get("c", 0) - outside
        planned = counts.get("a", 0) + counts.get("c", 0) + counts.get("d", 0)
        if planned and not sync.dry_run:
            sync.touch()
        for page in self._pages(("a", "c"), cols):
            rows = []
            adds: set[Any] = set()
            found = []
            for raw in page:
                values = [v if d is None else d(v) for v, d in zip(raw[2:], decoders, strict=True)]
                row = dict(zip(cols, values, strict=True))
                k = values[0] if width == 1 else tuple(values[:width])
                op = "add" if raw[1] == "a" else "change"
                if op == "add":
                    adds.add(k)
                found.append((op, k, row))
                rows.append(row)
            sync.note(found)
            if sync.dry_run:
                report.added += len(adds)
                report.changed += len(rows) - len(adds)
                continue
            written = sync.write_rows(rows)
            sync.absorb(written, [raw[0] for raw in page])
            report.added += written.inserted
            report.changed += written.updated
            report.unchanged += written.unchanged
            report.duplicates += written.duplicates
        if sync.delete_missing:
            key_decoders = decoders[:width]
            for page in self._pages(("d",), sync.key):
                keys = [
                    tuple(
                        v if d is None else d(v) for v, d in zip(raw[2:], key_decoders, strict=True)
                    )
                    for raw in page
                ]
                sync.note([("delete", k[0] if width == 1 else k, list(k)) for k in keys])
                if sync.dry_run:
                    report.deleted += len(keys)
                    continue
                written = sync.delete_keys(keys)
                sync.absorb(written)
                report.deleted += written.deleted
        return bool(planned) and not sync.dry_run

    def _reject_outside(self) -> None:
        sync = self.sync
        for page in self._pages(("x",), sync.cols):
            for raw in page:
                row = dict(zip(sync.cols, raw[2:], strict=True))
                sync.reject(
                    Rejection(
                        row=int(raw[0]), key=sync.key_of(row),
                        reason=(
                            "the key belongs to a row outside the sync's scope "
                            f"(where={sync.where!r}); it is left alone"
                        ),
                        values=row,
                    )
                )  # fmt: skip


class _HashDiff:
    """The difference found by comparing row hashes a chunk at a time (item stores):
    each source chunk's items are read by key; keys the source lacks come from a scan."""

    def __init__(self, sync: Syncer, mappings: bool) -> None:
        self.sync = sync
        self.mappings = mappings
        self._repeats: set[int] = set()  # positions of keys an earlier chunk had
        self._wrote = False

    def run(self, rows: Iterator[Any], mark: SyncMark | None, source_digest: str | None) -> None:
        sync, report = self.sync, self.sync.report
        store, spec, cols = sync.store, sync.spec, sync.cols
        if not self.mappings:
            # (a row of the wrong width keeps its shape: _key_of rejects it)
            rows = (dict(zip(cols, r, strict=True)) if len(r) == len(cols) else r for r in rows)
        compared = None if sync.columns is None else sync.compared
        digest = _Digest(sync.scope)
        seen: set[Any] = set()
        pending: list[tuple[str, Any, int, dict[str, Any]]] = []
        size = sync.chunk_size or 100
        where = sync.where
        for raws, start in numbered(chunked(rows, size)):
            report.rows_in += len(raws)
            if sync.full_bytes is not None:
                sync.full_bytes += _lines_size([{"op": "add", "row": raw} for raw in raws])
            latest: dict[Any, tuple[int, dict[str, Any]]] = {}
            for i, raw in enumerate(raws):
                try:
                    k = _key_of(raw, sync.key, spec)
                except (KeyError, BulkError, ValueError, TypeError) as error:
                    self._reject(start + i + 1, None, f"bad key: {error}", raw)
                    continue
                if any(canonical(raw.get(c)) != canonical(v) for c, v in where.items()):
                    self._reject(
                        start + i + 1, k, f"outside the sync's scope (where={where!r})", raw
                    )
                    seen.add(k)
                    continue
                if k in latest:
                    report.duplicates += 1  # the earlier row of this chunk is dropped
                elif k in seen:
                    # An earlier chunk wrote this key: this row still wins (it is
                    # written), and counts as the duplicate, as the SQL stage counts it.
                    report.duplicates += 1
                    self._repeats.add(start + i + 1)
                latest[k] = (start + i + 1, raw)
            seen.update(latest)
            digest.update((k, *(_compared(raw, compared))) for k, (_, raw) in latest.items())
            found = store.get_many(
                spec.name, list(latest), key=sync.key,
                columns=None if compared is None else (*sync.key, *compared, *where),
            )  # fmt: skip
            for k, (position, raw) in latest.items():
                old = found.get(k)
                if old is not None and any(
                    canonical(old.get(c)) != canonical(v) for c, v in where.items()
                ):
                    self._reject(
                        position, k,
                        "the key belongs to a row outside the sync's scope "
                        f"(where={where!r}); it is left alone", raw,
                    )  # fmt: skip
                    continue
                if old is None:
                    pending.append(("add", k, position, dict(raw)))
                elif row_hash(_compared(old, compared)) != row_hash(_compared(raw, compared)):
                    pending.append(("change", k, position, dict(raw)))
                elif position not in self._repeats:
                    report.unchanged += 1
            if len(pending) >= size:
                self._flush(pending)
                pending = []
        if source_digest is None:
            report.digest = digest.hexdigest()
        if (
            mark is not None
            and report.digest
            and not pending
            and sync._unchanged(mark, report.digest)
        ):
            # Nothing to write: the digest matched (an item store cannot skip earlier,
            # having read the items to compare them).
            report.skipped = True
        self._flush(pending)
        if sync.delete_missing:
            gone: list[Any] = []
            for item in sync.backend.scan(spec, tuple(where)):  # type: ignore[attr-defined]
                if any(canonical(item.get(c)) != canonical(v) for c, v in where.items()):
                    continue
                k = _key_of(item, sync.key, spec)
                if k not in seen:
                    gone.append(k)
                    if len(gone) >= 1000:
                        self._delete(gone)
                        gone = []
            self._delete(gone)
        sync.finished(mark, report.digest, self._wrote)
        if sync.writer is not None:
            sync.changeset = sync.writer.finish(sync.full_bytes, report)

    def _reject(self, position: int, key: Any, reason: str, values: Any) -> None:
        self.sync.reject(Rejection(row=position, key=key, reason=reason, values=values))

    def _flush(self, pending: list[tuple[str, Any, int, dict[str, Any]]]) -> None:
        sync, report = self.sync, self.sync.report
        if not pending:
            return
        sync.note([(op, k, row) for op, k, _, row in pending])
        if sync.dry_run:
            report.added += sum(p[0] == "add" for p in pending)
            report.changed += sum(p[0] == "change" for p in pending)
            return
        if not self._wrote:
            sync.touch()
            self._wrote = True
        positions = [position for _, _, position, _ in pending]
        if sync.columns is None:
            # Whole items are put; an item store does not say insert from update, but
            # the comparison did.
            written = sync.write_rows([row for _, _, _, row in pending])
            sync.absorb(written, positions)
            self._count(pending, written, positions)
            return
        # Some attributes only: new items are put whole, existing ones get SET.
        for op in ("add", "change"):
            part = [p for p in pending if p[0] == op]
            if not part:
                continue
            where = [position for _, _, position, _ in part]
            rows = [row for _, _, _, row in part]
            if op == "add":
                written = sync.write_rows(rows)
            else:
                written = sync.store._write(
                    "update", sync.spec.name, rows, columns=sync.cols, key=sync.key,
                    options=sync.write_options(), spec=sync.spec, touch=False,
                )  # fmt: skip
            sync.absorb(written, where)
            self._count(part, written, where)

    def _count(
        self, pending: list[tuple[str, Any, int, dict[str, Any]]], written: Report,
        positions: list[int],
    ) -> None:  # fmt: skip
        """Count the rows a write took: every one not rejected or failed."""
        report = self.sync.report
        lost = {r.row for r in (*written.rejections, *written.failures)}
        for (op, _, _, _), position in zip(pending, positions, strict=True):
            if position in lost or position in self._repeats:
                continue
            if op == "add":
                report.added += 1
            else:
                report.changed += 1

    def _delete(self, keys: list[Any]) -> None:
        sync, report = self.sync, self.sync.report
        if not keys:
            return
        sync.note([("delete", k, list(k) if isinstance(k, tuple) else [k]) for k in keys])
        if sync.dry_run:
            report.deleted += len(keys)
            return
        if not self._wrote:
            sync.touch()
            self._wrote = True
        written = sync.delete_keys([k if isinstance(k, tuple) else (k,) for k in keys])
        sync.absorb(written)
        report.deleted += written.deleted + written.upserted


def _reordered(rows: Iterator[Any], order: Sequence[int], width: int) -> Iterator[Any]:
    """Sequences with their values picked in ``order``; a row of another width stays as
    it is, to be rejected for it."""
    for row in rows:
        yield tuple(row[i] for i in order) if len(row) == width else row


def _key_of(row: Mapping[str, Any], key: Sequence[str], spec: TableSpec) -> Any:
    parts = tuple(coerce(row[k], spec.column(k)) for k in key)
    if any(p is None for p in parts):
        raise ValueError("a key value is None")
    return parts[0] if len(parts) == 1 else parts


def _compared(row: Mapping[str, Any], compared: Sequence[str] | None) -> tuple[Any, ...]:
    if compared is None:
        return tuple(sorted((str(k), canonical(v)) for k, v in row.items()))
    return tuple(canonical(row.get(c)) for c in compared)


# ------------------------------------------------------------------- applying


def apply_changeset(
    store: Store, changeset: Changeset, table: str | None, options: dict[str, Any]
) -> SyncReport:
    """Write a changeset's rows and deletions into ``table`` (default: the changeset's)."""
    started = time.perf_counter()
    statements = store.backend.statements
    header, trailer = _validate(changeset.path)  # the whole file is checked first
    name = table or header["table"]
    spec = store.backend.reflect(name)
    key = tuple(header["key"])
    cols = tuple(header["columns"])
    spec.check_columns(cols)
    types = header.get("types", {})
    report = SyncReport(table=name, verb="apply")
    report.rows_in = trailer["added"] + trailer["changed"]
    options, sink = _one_rejects_sink(options)

    def rows() -> Iterator[dict[str, Any]]:
        for record in changeset.records():
            if record["op"] == "delete":
                continue
            row = record["row"]
            yield {c: _from_json(row.get(c), types.get(c, "any")) for c in row}

    def keys() -> Iterator[tuple[Any, ...]]:
        for record in changeset.records():
            if record["op"] == "delete":
                yield tuple(
                    _from_json(v, types.get(k, "any"))
                    for k, v in zip(key, record["key"], strict=True)
                )

    store._touch(spec)
    if report.rows_in:
        written = store._write(
            "upsert", name, rows(), columns=None if spec.open else cols, key=key,
            options=cast(Any, dict(options)), spec=spec, touch=False,
        )  # fmt: skip
        report.added += written.inserted + written.upserted
        report.changed += written.updated
        report.unchanged += written.unchanged
        report.duplicates += written.duplicates
        report.take_rejects(written)
    if trailer["deleted"]:
        gone = store._write(
            "delete", name, keys(), columns=key, key=key, options=cast(Any, dict(options)),
            spec=spec, touch=False,
        )  # fmt: skip
        report.deleted += gone.deleted + gone.upserted
        report.take_rejects(gone)
    report.bytes = changeset.bytes
    report.statements = store.backend.statements - statements
    report.elapsed = time.perf_counter() - started
    _write_rejects(sink, report)
    return report


def _one_rejects_sink(options: Mapping[str, Any]) -> tuple[Any, Any]:
    """The write options for the several writes of one call, and the call's ``rejects``
    taken out of them: each write reports its rejections, and the call writes them all
    to that one sink at the end (a path given to each write would be overwritten)."""
    options = dict(options)
    sink = options.pop("rejects", None)
    options["on_error"] = resolve_on_error(
        options.get("on_error"), sink, options.get("max_rejects")
    )
    return options, sink


def _write_rejects(sink: Any, report: SyncReport) -> None:
    if sink is None or not (report.rejections or report.failures):
        return
    rejects = RejectsFile(sink)
    try:
        rejects.write(report.rejections + report.failures)
    finally:
        rejects.close()
