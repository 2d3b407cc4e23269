"""Differential sync: bring a table in line with a source by sending only the difference.

``Store.sync`` / ``diff`` are thin; ``Syncer`` runs one call, with one of two engines:

- On SQL databases (``capabilities.set_based_diff``, a ``SQLBackend``) the source is
  staged chunk by chunk and the database itself finds what was added, changed and is
  missing (``SQLBackend.staged_diff``); the difference is then read back a page at a
  time and written with the ordinary ``upsert`` / ``delete`` machinery (short
  transactions, retries, isolation of bad rows). Memory is bounded by the chunk size.
- On item stores (DynamoDB) each source chunk's items are read by key and compared
  through stable row hashes; keys missing from the source are found with a scan.

A digest of the whole source is kept per (table, scope) in the backend's
``SyncState`` with the table's *generation*: every write bulkops makes to a table
bumps it (see ``Store._touch``), so an unchanged source meeting an untouched table
is skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import Any, Literal, TypeVar

from ..backends.base import (
    HELD,
    SYNC_PART_BYTES,
    DiffOp,
    ItemBackend,
    SQLBackend,
    StagedDiff,
    SyncMark,
    SyncState,
    run_transaction,
)
from ..columnar import arrow_stream, batch_rows, frame_records, is_arrow
from ..context import Context
from ..errors import BulkError, ConversionError, DataError, SchemaError, TooManyRejectsError
from ..execute import numbered
from ..jsoncodec import to_json
from ..normalize import Key, encode_value
from ..plan import ChunkPlanner, ReadAhead, RefusedRow, chunk_rows, chunked, read_ahead
from ..reads import get_many
from ..report import Rejection, Report, SyncReport, write_rejects
from ..retry import RetryPolicy
from ..schema import ColumnSpec, TableSpec, coerce, is_nan
from ..writes import WriteSettings, one_rejects_sink, write
from . import hashing
from .changeset import Changeset, ChangesetWriter, difference_size, lines_size, rows_lines_size
from .digests import Delta, RowDigests, Stored, digests_available
from .hashing import (
    HashedRows,
    SourceDigest,
    array_column,
    canonical,
    decode_key,
    hash_columns,
    row_hash,
    scope_id,
    values_column,
)

__all__ = ["Mode", "Syncer"]

T = TypeVar("T")

Mode = Literal["sync", "diff"]


class Syncer:
    """One ``sync`` or ``diff`` call on one table."""

    def __init__(
        self,
        ctx: Context,
        table: str,
        settings: WriteSettings,
        *,
        key: Key,
        columns: Sequence[str] | None,
        delete_missing: bool,
        where: Mapping[str, Any] | None,
        dry_run: bool,
        list_keys: bool,
        mode: Mode = "sync",
        full: bool = False,
    ) -> None:
        self.ctx = ctx
        self.backend = ctx.backend
        self.spec = ctx.table(table)
        self.key = self.spec.resolve_key(key, mode)
        self.spec.require_unique(self.key, mode)
        self.columns = None if columns is None else self.spec.check_columns(columns)
        self.delete_missing = delete_missing
        self.where = dict(where or {})
        self.spec.check_columns(self.where)
        self.dry_run = dry_run or mode == "diff"
        self.list_keys = list_keys
        self.chunk_size = settings.chunk_size
        # The settings of the writes of the difference, and where their rejects go.
        self.settings, self.sink = one_rejects_sink(settings)
        self.max_rejects = settings.max_rejects
        self.on_error = self.settings.on_error
        self.mode = mode
        self.changeset: Changeset | None = None
        self.report = SyncReport(table=table, verb=mode, dry_run=dry_run and mode == "sync")
        self.scope = scope_id(self.key, self.columns, self.where, delete_missing)
        self.state: SyncState = ctx.sync_state()
        self.writer: ChangesetWriter | None = None
        self.full_bytes: int | None = 0 if mode == "diff" else None
        self.full = full
        self.stored: Stored | None = None  # the per-row digests as read, if they stood
        # Whether this sync keeps (and may use) the scope's per-row digests.
        # Not where the database's equality on a key column is looser than the values'
        # (citext, COLLATE NOCASE): matching "NS1.example.com" to "ns1.EXAMPLE.com" is
        # then the database's to do, in the set-based comparison. (By digests the two
        # were a new key and a missing one, and deleting the missing one deleted the
        # row just written.)
        self.keeps_rows = (
            mode == "sync"
            and ctx.capabilities.set_based_diff
            and isinstance(self.backend, SQLBackend)
            and digests_available()
            and all(self.spec.column(k).exact for k in self.key)
        )

    # ------------------------------------------------------------- entry point

    def run(self, rows: Iterable[Any], source_id: str | None = None) -> SyncReport:
        started = time.perf_counter()
        statements = self.backend.statements
        try:
            self._run(rows, source_id)
        finally:
            self.report.statements = self.backend.statements - statements
            self.report.elapsed = time.perf_counter() - started
            write_rejects(self.sink, self.report)
        return self.report

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
            raise TooManyRejectsError(
                f"{self.mode} of {self.spec.name!r} stopped: more than {self.max_rejects} "
                "rows rejected",
                report.rejections,
            )

    def _run(self, rows: Iterable[Any], source_id: str | None) -> None:
        report = self.report
        mark = None if self.mode == "diff" else self.state.begin(self.spec.name, self.scope)
        if source_id is not None:
            report.digest = f"source:{source_id}"
            if mark is not None and self._unchanged(mark, report.digest):
                report.up_to_date = True
                return
        arrow = ArrowRows.of(rows)
        if arrow is None and is_arrow(rows):
            rows = frame_records(rows)  # a DataFrame Arrow cannot take: the row path
        if arrow is None and self.spec.row_adapter is not None:
            # A table named by a model: its instances, and mappings by its names.
            rows = map(self.spec.row_adapter, rows)
        iterator = iter(rows if arrow is None else arrow)
        first = next(iterator, _END) if arrow is None else _ARROW
        given = self.columns
        if arrow is not None and given is None:
            given = self.spec.check_columns(arrow.schema.names)
        mappings = first is _END or first is _ARROW or isinstance(first, Mapping)
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
        if arrow is not None:
            lacking = [c for c in cols if c not in arrow.schema.names]
            if lacking:
                raise SchemaError(
                    f"{self.mode}(): the Arrow source has no column {', '.join(map(repr, lacking))}"
                )
        elif first is not _END:
            iterator = chain([first], iterator)
        if not mappings and cols != given:
            # Sequences hold their values in the order of columns=: put them in ours.
            iterator = _reordered(iterator, [given.index(c) for c in cols], len(given))
        self.cols = cols
        self.compared = tuple(c for c in cols if c not in self.key)
        if self.mode == "diff":
            self.writer = ChangesetWriter(
                {
                    "table": self.spec.name,
                    "key": list(self.key),
                    "columns": list(cols),
                    "types": {c: self.spec.column(c).type for c in cols},
                    "where": to_json(self.where),
                }
            )
        hashed: _Hashed | None = None
        try:
            backend = self.backend
            state = None
            if self.keeps_rows and mark is not None and self._may_have_digests(mark):
                # The source is hashed while the digests are read (by a thread where
                # the database works in a process of its own and the source can be
                # read from any thread); nothing is sent before they are known.
                hasher = _SourceHasher(self, mappings)
                threaded = self.ctx.capabilities.read_ahead and (
                    arrow is not None
                    or (isinstance(rows, list | tuple) and self.spec.row_adapter is None)
                )
                hashed = _Hashed(hasher, arrow, iterator, threaded)
                state = self._row_digests(mark)
                if state is None:
                    iterator = hashed.abandon()  # the rows as given, hashed or not
                    arrow, hashed = None, None
            if self.keeps_rows and mark is not None and state is None:
                # The per-row digests are missing or stale: compare in full, and
                # keep them afterwards (an unchanged source is not skipped then).
                mark = dataclasses.replace(mark, digest=None)
            if state is not None and mark is not None and hashed is not None:
                _DigestDiff(self, state).run(hashed.batches, mark, source_id)
            elif self.ctx.capabilities.set_based_diff and isinstance(backend, SQLBackend):
                _SetBasedDiff(self, backend, mappings).run(iterator, mark, source_id)
            else:
                _HashDiff(self, mappings).run(iterator, mark, source_id)
        except BaseException:
            if self.writer is not None:
                self.writer.discard()
            raise
        finally:
            if hashed is not None:
                hashed.close()

    def _unchanged(self, mark: SyncMark, digest: str) -> bool:
        if mark.digest is None or mark.digest != digest:
            return False
        if mark.target_rows is None:
            return True
        # A cheap look for writes made without bulkops (rows added or removed).
        return self.count_target() == mark.target_rows

    def _may_have_digests(self, mark: SyncMark) -> bool:
        """Whether the scope's per-row digests may stand (then they are read)."""
        return not (self.full or mark.digest is None or mark.target_rows is None)

    def _row_digests(self, mark: SyncMark) -> RowDigests | None:
        """The scope's per-row digests, if they stand: the table was not written through
        bulkops since, and holds as many rows in the scope as then (``full``: never)."""
        if not self._may_have_digests(mark):
            return None
        parts = self.state.read_rows(self.spec.name, self.scope, mark)
        if parts is None:
            return None
        stored = RowDigests.from_parts(parts, self.cols)
        if stored is None:
            return None
        state = stored.state
        if self.delete_missing and len(state) != mark.target_rows:
            return None  # (without delete_missing they may know fewer rows than there are)
        if self.count_target() != mark.target_rows:
            return None  # rows added or removed without bulkops
        self.stored = stored
        return state

    def count_target(self) -> int | None:
        """Rows in the scope (SQL); None where counting means reading everything."""
        backend = self.backend
        if not self.ctx.capabilities.set_based_diff or not isinstance(backend, SQLBackend):
            return None
        return backend.count_rows(self.spec, self.encoded_where())

    def encoded_where(self) -> dict[str, Any]:
        return {
            c: encode_value(v, self.backend.codec(self.spec.column(c)), c)
            for c, v in self.where.items()
        }

    def finished(
        self,
        mark: SyncMark | None,
        digest: str | None,
        wrote: bool,
        rows: RowDigests | None = None,
        target_rows: int | None = None,
        delta: Delta | None = None,
    ) -> None:
        """Keep the source's digest (and the scope's per-row digests) for the next sync
        of this scope. ``rows``: the per-row digests of the source rows the scope now
        holds (with ``delete_missing``, all its rows); or ``delta``: what changed in
        the digests read at the start (``self.stored``); ``target_rows``: the rows in
        the scope, if known (else counted)."""
        if self.dry_run or mark is None or digest is None:
            return
        if self.report.rejected or self.report.failed:
            return  # rows the target lacks: the next sync must compare again
        expected = dataclasses.replace(mark, generation=mark.generation + (1 if wrote else 0))
        count = self.count_target() if target_rows is None else target_rows
        stored = self.stored
        parts: list[bytes] | None = None
        append_to = None
        if delta is not None and stored is not None:
            small = stored.delta_entries + len(delta) <= len(stored.state) // 8 + 100
            data = delta.to_bytes(self.cols) if small and len(delta) else b""
            if small and stored.parts < 64 and len(data) <= SYNC_PART_BYTES:
                parts = [data] if len(delta) else []
                append_to = stored.parts
            else:  # the deltas grew: a new base
                rows = stored.state.updated(delta)
        if rows is not None:
            parts = rows.to_parts(self.cols)
        self.state.record(self.spec.name, self.scope, expected, digest, count, parts, append_to)

    def touch(self) -> None:
        """About to write the difference: the table's generation moves on, once."""
        self.state.invalidate(self.spec.name)

    # ----------------------------------------------------------------- writes

    def write_rows(self, rows: list[dict[str, Any]]) -> Report:
        """Upsert added and changed rows (mappings of ``self.cols``)."""
        columns = None if self.spec.open and self.columns is None else self.cols
        # The rows are the source's as the model's row adapter gave them: not again
        # (a naive datetime it made UTC would be read as local time once more).
        spec = dataclasses.replace(self.spec, row_adapter=None)
        return write(
            self.ctx, "upsert", spec, rows, self.settings, columns=columns, key=self.key,
            touch=False,
        )  # fmt: skip

    def delete_keys(self, keys: list[tuple[Any, ...]]) -> Report:
        return write(
            self.ctx, "delete", self.spec, keys, self.settings, columns=self.key, key=self.key,
            touch=False,
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

    def note(self, found: Sequence[tuple[Any, ...]]) -> None:
        """Rows of the difference, ``(op, key, ..., row or key values)`` (op first, key
        second, payload last): counted in bytes, kept in the keys lists and the
        changeset when asked for. Without a changeset the bytes are counted a column
        at a time, never by encoding the rows."""
        report = self.report
        if self.writer is not None:
            for record in found:
                report.bytes += self.writer.add(record[0], to_json(record[-1]))
        else:
            report.bytes += difference_size((record[0], record[-1]) for record in found)
        if self.list_keys:
            lists = {"add": report.added_keys, "change": report.changed_keys,
                     "delete": report.deleted_keys}  # fmt: skip
            for record in found:
                lists[record[0]].append(record[1])

    def key_of(self, row: Mapping[str, Any]) -> Any:
        return row[self.key[0]] if len(self.key) == 1 else tuple(row[k] for k in self.key)


class _End:
    pass


_END: Any = _End()
_ARROW: Any = _End()  # the first "row" of an Arrow source: its schema names the columns


class ArrowRows:
    """An Arrow source (anything exporting ``__arrow_c_stream__``: a pyarrow Table or
    RecordBatchReader, a pandas or polars DataFrame; or a pyarrow RecordBatch), read a
    record batch at a time. The digest sync hashes its batches a column at a time;
    the other engines take its rows as dicts, a batch at a time."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.schema = reader.schema

    @classmethod
    def of(cls, source: Any) -> ArrowRows | None:
        """The source as Arrow (the columnar path's one test of what is Arrow data), or
        None for rows of dicts and tuples."""
        stream = arrow_stream(source)
        return None if stream is None else cls(stream)

    def batches(self) -> Iterator[Any]:
        yield from self.reader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.reader:
            yield from batch_rows(batch)


def _raw_at(raws: Sequence[Any], start: int, position: int) -> Any:
    """The row as given at source ``position`` (1-based) of a chunk from ``start``."""
    return raws[position - start - 1]


class _SetBasedDiff:
    """The difference computed by a SQL database (``SQLBackend.staged_diff``): the
    source is staged a chunk at a time, the database classifies it against the table,
    and the difference is read back a page at a time and written."""

    def __init__(self, sync: Syncer, backend: SQLBackend, mappings: bool) -> None:
        self.sync = sync
        self.backend = backend
        self.mappings = mappings
        self.last_position = 0  # the highest row number staged
        self.staged = 0  # source rows staged to be compared (not the rejected ones' keys)
        self.diff: StagedDiff | None = None
        # The source's per-row digests, made while staging (sync keeps them): after the
        # sync the scope holds these rows, so the next sync compares with them.
        keep = sync.keeps_rows and not sync.dry_run
        self.hashed: list[HashedRows] | None = [] if keep else None

    def _retry(self) -> RetryPolicy:
        return self.sync.settings.retry or self.sync.ctx.retry

    def _in_transaction(self, work: Callable[[], T]) -> T:
        sync = self.sync
        return run_transaction(
            self.backend, work, self._retry(), what=f"{sync.mode} of {sync.spec.name!r}"
        )

    def run(self, rows: Iterator[Any], mark: SyncMark | None, source_id: str | None) -> None:
        sync, report = self.sync, self.sync.report
        self.diff = self.backend.staged_diff(
            sync.spec, sync.cols, sync.key, sync.encoded_where(), self._retry(),
            f"{sync.mode} of {sync.spec.name!r}",
        )  # fmt: skip
        try:
            digest = self._stage(rows)
            if source_id is None:
                report.digest = digest
            self._unique_keys()
            if mark is not None and report.digest and sync._unchanged(mark, report.digest):
                report.up_to_date = True
                report.unchanged += report.rows_in - report.rejected - report.duplicates
                return
            self._classify()
            wrote = self._apply()
            rows_state = None
            if self.hashed is not None:
                rows_state = RowDigests.build(self.hashed)
            sync.finished(mark, report.digest, wrote, rows=rows_state)
            if sync.writer is not None:
                sync.changeset = sync.writer.finish(sync.full_bytes, report)
        finally:
            self.diff.close()

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
        digest = SourceDigest(sync.scope)
        size = chunk_rows(sync.ctx.capabilities, len(cols) + 2, sync.chunk_size)
        for raws, start in numbered(chunked(rows, size)):
            if self.hashed is not None:
                columns, _ = value_columns(raws, cols, self.mappings)
                specs = [sync.spec.column(c) for c in cols]
                encoded = encoded_columns(columns, specs, sync.ctx.capabilities.float_nan)
                self.hashed.append(hash_columns(encoded, width))
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
                    staged.append((*key_values, *blanks, rejection.row, HELD))
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
                    staged.append((*row[:width], *blanks, start + i + 1, HELD))
                    continue
                staged.append((*row, start + i + 1, None))
                self.staged += 1
            digest.update_encoded(chunk.rows)
            if sync.full_bytes is not None:
                sync.full_bytes += rows_lines_size(cols, chunk.rows)
            if staged:
                self._load(staged, planner, partial(_raw_at, raws, start))
            self.last_position = start + len(raws)
        assert self.diff is not None
        self.diff.staged()
        return digest.hexdigest()

    def _load(
        self, staged: list[tuple[Any, ...]], planner: ChunkPlanner, raw_at: Callable[[int], Any]
    ) -> None:
        """Stage rows (their source positions next to last). A value the database
        refuses in the stage's typed columns (a bad inet, a text too long for its
        varchar(n)) fails the whole load: the rows are narrowed down by halves, each
        in a transaction of its own (the stage keeps what was committed), and the one
        refused is rejected, naming its row, key and column, as a write would; its key
        still stands for a row the source has (HELD), so it is not deleted."""
        diff = self.diff
        assert diff is not None
        try:
            self._in_transaction(lambda: diff.stage(staged))
            return
        except DataError as error:
            if len(staged) > 1:
                middle = len(staged) // 2
                self._load(staged[:middle], planner, raw_at)
                self._load(staged[middle:], planner, raw_at)
                return
            (row,) = staged
            if row[-1] == HELD:
                return  # a key the column cannot hold: no row of the table has it
            width = len(self.sync.key)
            position = row[-2]
            values = planner.values_of(raw_at(position))
            self.sync.reject(
                Rejection(
                    row=position, key=planner.key_from_values(values),
                    reason=error.message, values=values, column=error.column,
                    code=error.code,
                )
            )  # fmt: skip
            self.staged -= 1
            held = (*row[:width], *(None,) * (len(row) - width - 2), position, HELD)
            self._load([held], planner, raw_at)

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
        """Where a key came twice, the last row wins (the others count as duplicates)."""
        assert self.diff is not None
        removed = self.diff.unique_keys()
        self.sync.report.duplicates += removed
        self.staged -= removed

    def _classify(self) -> None:
        assert self.diff is not None
        self.diff.classify(self.sync.delete_missing, self.last_position)

    # ------------------------------------------------------------------ apply

    def _pages(
        self, ops: Sequence[DiffOp], columns: Sequence[str]
    ) -> Iterator[list[tuple[Any, ...]]]:
        assert self.diff is not None
        size = chunk_rows(self.sync.ctx.capabilities, len(self.sync.cols), self.sync.chunk_size)
        return self.diff.pages(ops, columns, size)

    def _apply(self) -> bool:
        sync, report = self.sync, self.sync.report
        spec, cols = sync.spec, sync.cols
        decoders = [self.backend.codec(spec.column(c)).decode for c in cols]
        width = len(sync.key)
        assert self.diff is not None
        counts = self.diff.counts()
        outside = counts.get("outside", 0)
        if outside:
            self._reject_outside()
        added, changed = counts.get("add", 0), counts.get("change", 0)
        report.unchanged += self.staged - added - changed - outside
        planned = added + changed + counts.get("delete", 0)
        if planned and not sync.dry_run:
            sync.touch()
        for page in self._pages(("add", "change"), cols):
            rows = []
            adds: set[Any] = set()
            found = []
            for raw in page:
                values = [v if d is None else d(v) for v, d in zip(raw[2:], decoders, strict=True)]
                row = dict(zip(cols, values, strict=True))
                k = values[0] if width == 1 else tuple(values[:width])
                op = raw[1]
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
            for page in self._pages(("delete",), sync.key):
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
        for page in self._pages(("outside",), sync.cols):
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


@dataclasses.dataclass
class _Batch:
    """A batch of the source, hashed: ``rows(indexes)`` gives rows of it as dicts."""

    size: int  # rows given (also the rejected ones)
    hashed: HashedRows | None
    positions: Any  # numpy: the 1-based source position of each hashed row
    outside: list[int]  # indexes of rows outside the sync's scope
    rows: Callable[[Sequence[int]], list[dict[str, Any]]]
    source: Any  # the rows as given: a list, or an Arrow record batch
    # Rows refused while hashing (a sequence of the wrong width), made Rejections when
    # the batch is compared (the hashing may run ahead, and be abandoned).
    refused: list[Rejection] = dataclasses.field(default_factory=list)


class _SourceHasher:
    """Hashes a sync's source a batch at a time (``hashing``): dict or tuple rows a
    column at a time, Arrow record batches vectorized. Touches no database, so that it
    may run in a thread while the digests are read."""

    # Rows hashed at once: big enough for the column-at-a-time encoding to pay off.
    BATCH = 50_000
    # Rows of an Arrow record batch hashed and compared at once (a slice of it): its
    # temporary arrays (2 MiB each) are reused from one slice to the next. A whole
    # million-row batch at once cost an unchanged re-sync 0.40 s instead of 0.23.
    ARROW_SLICE = 1 << 18

    def __init__(self, sync: Syncer, mappings: bool) -> None:
        self.sync = sync
        self.mappings = mappings
        self.abandoned = False  # the batches still read are not hashed (see _Hashed)

    def rows(self, rows: Iterator[Any]) -> Iterator[_Batch]:
        size = max(self.sync.chunk_size or 0, self.BATCH)
        for raws, start in numbered(chunked(rows, size)):
            if self.abandoned:
                yield _Batch(len(raws), None, None, [], lambda _: [], raws)
            else:
                yield self._hash_rows(raws, start)

    def arrow(self, source: ArrowRows) -> Iterator[_Batch]:
        """The same for an Arrow source, hashed a column at a time (vectorized), a
        slice of a record batch at a time: a million-row batch's temporary arrays
        would be fresh memory at every step (a page fault every 4 KiB), where a
        slice's are reused."""
        start = 0
        size = max(self.sync.chunk_size or 0, self.ARROW_SLICE)
        for whole in source.batches():
            for at in range(0, max(whole.num_rows, 1), size):
                batch = whole.slice(at, size)
                if self.abandoned:
                    yield _Batch(batch.num_rows, None, None, [], lambda _: [], batch)
                else:
                    yield self._hash_arrow(batch, start)
                start += batch.num_rows

    def _columns(
        self, raws: list[Any], start: int
    ) -> tuple[list[list[Any]], Sequence[int], list[Rejection]]:
        """The batch's values a column at a time (the key's first), and the indexes of
        its rows; a sequence of the wrong width is refused."""
        cols = self.sync.cols
        columns, good = value_columns(raws, cols, self.mappings)
        refused = []
        if len(good) != len(raws):
            for i in sorted(set(range(len(raws))) - set(good)):
                raw = raws[i]
                if isinstance(raw, RefusedRow):
                    parts = tuple(raw.given.get(k) for k in self.sync.key)
                    refused.append(
                        Rejection(
                            row=start + i + 1, key=parts[0] if len(parts) == 1 else parts,
                            values=dict(raw.given), reason=raw.reason, column=raw.column,
                        )
                    )  # fmt: skip
                    continue
                refused.append(
                    Rejection(
                        row=start + i + 1, key=None, values=raw,
                        reason=f"the row has {len(raw)} values, not {len(cols)} ({cols})",
                    )
                )  # fmt: skip
        return columns, good, refused

    def _hash_rows(self, raws: list[Any], start: int) -> _Batch:
        """A batch of dict or tuple rows, hashed."""
        import numpy as np

        columns, index, refused = self._columns(raws, start)
        if not index:
            return _Batch(len(raws), None, np.empty(0, np.int64), [], lambda _: [], raws, refused)
        specs = [self.sync.spec.column(c) for c in self.sync.cols]
        encoded = encoded_columns(columns, specs, self.sync.ctx.capabilities.float_nan)

        def rows(chosen: Sequence[int]) -> list[dict[str, Any]]:
            return [self._row(raws[index[i]]) for i in chosen]

        if len(index) == len(raws):  # (every row: no list of 50,000 ints to convert)
            positions = np.arange(start + 1, start + len(raws) + 1, dtype=np.int64)
        else:
            positions = np.asarray(index, dtype=np.int64) + start + 1
        return self._hashed(len(raws), encoded, positions, rows, raws, refused)

    def _hash_arrow(self, batch: Any, start: int) -> _Batch:
        """A pyarrow RecordBatch, hashed a column at a time (no Python per row)."""
        import numpy as np
        import pyarrow as pa

        names = batch.schema.names
        specs = [self.sync.spec.column(c) for c in self.sync.cols]
        float_nan = self.sync.ctx.capabilities.float_nan
        encoded = []
        for c, spec in zip(self.sync.cols, specs, strict=True):
            array = batch.column(names.index(c))
            if _is_text(array.type) and spec.type not in ("text", "any"):
                # Text from a file (CSV) in a typed column hashes as the value it stands
                # for, as in encoded_columns: "1952" is the 1952 the table holds.
                typed = _typed_text(array, spec)
                if typed is None:
                    encoded.extend(encoded_columns([array.to_pylist()], [spec], float_nan))
                    continue
                array = typed
            encoded.append(array_column(array))

        def rows(chosen: Sequence[int]) -> list[dict[str, Any]]:
            picked = batch_rows(batch.take(pa.array(list(chosen), pa.int64())))
            return [{c: row.get(c) for c in self.sync.cols} for row in picked]

        positions = np.arange(start + 1, start + batch.num_rows + 1, dtype=np.int64)
        return self._hashed(batch.num_rows, encoded, positions, rows, batch, [])

    def _hashed(
        self, size: int, encoded: list[Any], positions: Any,
        rows: Callable[[Sequence[int]], list[dict[str, Any]]], source: Any,
        refused: list[Rejection],
    ) -> _Batch:  # fmt: skip
        """A batch's digests, and which of its rows lie outside the sync's scope
        (compared by their encodings: as data, whatever the type)."""
        import numpy as np
        import pyarrow.compute as pc

        sync = self.sync
        outside = np.zeros(len(positions), dtype=bool)
        for column, value in sync.where.items():
            # As the column's values are hashed: text for a typed column ("2007" from
            # --where year=2007) as the value it stands for.
            spec = sync.spec.column(column)
            if value.__class__ is str and spec.type not in ("text", "any"):
                value = _coerced([value], spec)[0]
            wanted = hashing.encode_value(value)
            differs = pc.not_equal(encoded[sync.cols.index(column)].binary(), wanted)
            outside |= np.asarray(differs.to_numpy(zero_copy_only=False), dtype=bool)
        hashed = hash_columns(encoded, len(sync.key))
        return _Batch(size, hashed, positions, list(np.nonzero(outside)[0]), rows, source, refused)

    def _row(self, raw: Any) -> dict[str, Any]:
        return dict(raw) if self.mappings else dict(zip(self.sync.cols, raw, strict=True))


class _Hashed:
    """A source being hashed (``_SourceHasher``) while the per-row digests are read:
    by a thread when ``threaded``, else as it is read. The thread hashes only while
    the calling thread waits for the database: once the digests are read, ``batches``
    takes what it hashed and goes on with the rest itself (two threads hashing and
    comparing at once fight for the GIL: more CPU, no less time). If the digests do
    not stand, ``abandon`` gives the rows back as given, for the full comparison."""

    AHEAD = 8  # batches hashed at most while the digests are read

    def __init__(
        self, hasher: _SourceHasher, arrow: ArrowRows | None, rows: Iterator[Any], threaded: bool
    ) -> None:
        self.hasher = hasher
        self.arrow = arrow
        self.made = hasher.rows(rows) if arrow is None else hasher.arrow(arrow)
        self.handed_over = threading.Event()
        self.ahead: ReadAhead | None = None
        if threaded:
            self.ahead = read_ahead(self._until_handed_over(), self.AHEAD, "bulkops-sync-hash")

    def _until_handed_over(self) -> Iterator[_Batch]:
        """The thread's batches: it stops taking any once the calling thread takes over
        (the batch it is making is still handed over)."""
        while not self.handed_over.is_set():
            batch = next(self.made, None)
            if batch is None:
                return
            yield batch

    @property
    def batches(self) -> Iterator[_Batch]:
        """Every batch, in order: those the thread made, then the rest made here."""
        if self.ahead is None:
            return self.made
        self.handed_over.set()
        return chain(self.ahead, self.made)  # (the thread is done with made at its end)

    def abandon(self) -> Iterator[Any]:
        """The source's rows as given (dicts for an Arrow source), from its first."""
        self.hasher.abandoned = True
        for batch in self.batches:
            if self.arrow is None:
                yield from batch.source
            else:
                yield from batch_rows(batch.source)

    def close(self) -> None:
        """Stop the hashing (and its thread)."""
        if self.ahead is not None:
            self.ahead.close()


class _DigestDiff:
    """The difference found from the scope's per-row digests (``sync/digests.py``):
    the source, hashed on the client a batch at a time (``_SourceHasher``), is looked
    up in the digests read from the sync state (keys and hashes only); only the added
    and changed rows and the deleted keys are sent. The target's rows are not read."""

    def __init__(self, sync: Syncer, state: RowDigests) -> None:
        import numpy as np

        self.sync = sync
        self.state = state
        self.seen = np.zeros(len(state), dtype=bool)  # state keys the source has
        self.scratch: Any = None  # an int per state key (see _winners)
        self.added: set[int] = set()  # key hashes of the source's new keys so far
        # The source's rows the state lacks or holds another digest for: the delta.
        self.parts: list[HashedRows] = []
        self.wrote = False
        self.inserted = 0  # rows the writes added to the table
        self.pending: list[tuple[str, Any, int, dict[str, Any]]] = []
        self.repeats: list[tuple[int, dict[str, Any]]] = []

    def run(self, batches: Iterator[_Batch], mark: SyncMark, source_id: str | None) -> None:
        import numpy as np
        import xxhash

        sync, report = self.sync, self.sync.report
        whole = xxhash.xxh3_128(sync.scope.encode())
        size = max(sync.chunk_size or 0, _SourceHasher.BATCH)
        for batch in batches:
            report.rows_in += batch.size
            for rejection in batch.refused:
                sync.reject(rejection)
            if batch.hashed is not None:
                self._compare(batch)
                whole.update(np.ascontiguousarray(batch.hashed.digests).data)  # (no copy)
            if len(self.pending) >= size:
                self._flush()
        self._flush()
        if source_id is None:
            report.digest = f"rows:{report.rows_in}:xxh3:{whole.hexdigest()}"
        missing = np.nonzero(~self.seen)[0] if sync.delete_missing else np.empty(0, np.int64)
        self._delete(missing)
        if not self.wrote and not report.rejected and not report.failed:
            report.up_to_date = not sync.dry_run and not (report.added or report.changed)
        if not self.wrote and mark.digest == report.digest:
            return  # the stored state still stands as it is
        state = self.state
        gone = None
        if len(missing):
            gone = HashedRows(
                state.take_keys(missing), state.key_hashes[missing], state.digests[missing]
            )
        delta = Delta.of(self.parts, gone)
        assert mark.target_rows is not None
        rows_now = mark.target_rows + self.inserted - report.deleted
        sync.finished(mark, report.digest, self.wrote, target_rows=rows_now, delta=delta)

    def _compare(self, batch: _Batch) -> None:
        import numpy as np
        import pyarrow as pa

        sync, report, state = self.sync, self.sync.report, self.state
        hashed, positions = batch.hashed, batch.positions
        assert hashed is not None
        n = len(positions)
        valid = np.ones(n, dtype=bool)
        if batch.outside:
            valid[batch.outside] = False
            for i, row in zip(batch.outside, batch.rows(batch.outside), strict=True):
                sync.reject(
                    Rejection(
                        row=int(positions[i]), key=sync.key_of(row), values=row,
                        reason=f"outside the sync's scope (where={sync.where!r})",
                    )
                )  # fmt: skip
        kh = hashed.key_hashes
        found_index, found = state.lookup(kh)
        # A key given twice in the batch: the last row wins.
        winner = self._winners(kh, found_index, found, valid)
        keep = valid & (winner == np.arange(n))
        dropped = np.nonzero(valid & ~keep)[0]
        if len(dropped):
            self._same_keys(hashed.keys, dropped, winner[dropped])
            report.duplicates += len(dropped)
        # Keys rejected as outside the scope still stand for rows the source has.
        self.seen[found_index[found & ~valid]] = True
        if keep.all():  # (the usual batch: nothing to pick out of the arrays)
            rows = np.arange(n)
            idx, here, digests = found_index, found, hashed.digests
        else:
            rows = np.nonzero(keep)[0]
            idx, here, digests = found_index[rows], found[rows], hashed.digests[rows]
        # (where the scope held no rows, there is no index to read: all are new)
        none = np.zeros(len(rows), dtype=bool)
        repeat = here & self.seen[idx] if len(state) else none
        new = rows[~here]
        repeat_new = np.array([int(kh[i]) in self.added for i in new], dtype=bool)
        self.added.update(int(kh[i]) for i in new)
        self.seen[idx[here]] = True
        same = here & (state.digests[idx] == digests) if len(state) else none
        changed = here & ~same & ~repeat
        if changed.any():
            self._same_keys_as_state(hashed.keys, rows[changed], idx[changed])
        report.unchanged += int((same & ~repeat).sum())
        # Rows the state does not hold as they are (and keys given again, the later
        # winning) make the delta kept after the sync.
        differ = rows[~same | repeat]
        if len(differ):
            taken = pa.array(differ)
            self.parts.append(
                HashedRows(hashed.keys.take(taken), kh[differ], hashed.digests[differ])
            )
        adds = [int(i) for i in new[~repeat_new]]
        again = [int(i) for i in rows[repeat]] + [int(i) for i in new[repeat_new]]
        report.duplicates += len(again)
        adds = self._in_scope(adds, batch)
        # In the source's order (added and changed rows interleaved as given): a source
        # in key order reaches the write in key order, which then has nothing to sort.
        marked = sorted([(i, "add") for i in adds] + [(int(i), "change") for i in rows[changed]])
        chosen = [i for i, _ in marked]
        for (i, op), row in zip(marked, batch.rows(chosen), strict=True):
            self.pending.append((op, sync.key_of(row), int(positions[i]), row))
        for i, row in zip(again, batch.rows(again), strict=True):
            self.repeats.append((int(positions[i]), row))

    def _winners(self, kh: Any, found_index: Any, found: Any, valid: Any) -> Any:
        """For each row of a batch, the (valid) row that wins its key: the last one.
        Keys of the state are grouped by their index in it (no sort of the batch), the
        few new keys by sorting them."""
        import numpy as np

        winner = np.arange(len(kh))
        known = np.nonzero(found & valid)[0]
        if len(known):
            if self.scratch is None:
                self.scratch = np.zeros(len(self.state), dtype=np.int64)
            at = found_index[known]
            # Each row claims its key's slot; where every row finds its own claim, no
            # key came twice (the usual case: no ``maximum.at``, which is slow). What
            # earlier batches left in the slots is overwritten first: nothing to reset.
            self.scratch[at] = known
            if not (self.scratch[at] == known).all():
                np.maximum.at(self.scratch, at, known)
                winner[known] = self.scratch[at]
        new = np.nonzero(~found & valid)[0]
        if len(new) > 1:
            order = np.argsort(kh[new], kind="stable")
            ordered = kh[new][order]
            starts = np.append(True, ordered[1:] != ordered[:-1])
            if not starts.all():
                run = np.cumsum(starts) - 1
                last = np.append(np.nonzero(starts)[0][1:], len(ordered)) - 1
                winner[new[order]] = new[order][last[run]]
        return winner

    def _same_keys(self, keys: Any, a: Any, b: Any) -> None:
        for i, j in zip(a, b, strict=True):
            if keys[int(i)] != keys[int(j)]:
                _collision()

    def _same_keys_as_state(self, keys: Any, rows: Any, idx: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        mine = keys.take(pa.array(rows))
        theirs = self.state.take_keys(idx)
        if not pc.all(pc.equal(mine, theirs)).as_py():
            _collision()

    def _in_scope(self, adds: list[int], batch: _Batch) -> list[int]:
        """New keys of a sync with ``where``: those whose row in the table lies outside
        the scope are rejected (left alone), as the set-based diff does."""
        sync = self.sync
        positions = batch.positions
        if not sync.where or not adds:
            return adds
        rows = dict(zip(adds, batch.rows(adds), strict=True))
        keys = {i: sync.key_of(r) for i, r in rows.items()}
        found = get_many(
            sync.ctx, sync.spec.name, list(keys.values()), key=sync.key,
            columns=tuple(dict.fromkeys((*sync.key, *sync.where))),  # (where may name a key)
            chunk_size=None, consistent_read=False,
        )  # fmt: skip
        kept = []
        for i in adds:
            if keys[i] in found:
                sync.reject(
                    Rejection(
                        row=int(positions[i]), key=keys[i], values=rows[i],
                        reason="the key belongs to a row outside the sync's scope "
                        f"(where={sync.where!r}); it is left alone",
                    )
                )  # fmt: skip
            else:
                kept.append(i)
        return kept

    # ----------------------------------------------------------------- write

    def _start_writing(self) -> None:
        if not self.wrote:
            self.sync.touch()
            self.wrote = True

    def _flush(self) -> None:
        sync, report = self.sync, self.sync.report
        pending, repeats = self.pending, self.repeats
        self.pending, self.repeats = [], []
        if pending:
            sync.note(pending)
        if sync.dry_run:
            report.added += sum(p[0] == "add" for p in pending)
            report.changed += sum(p[0] == "change" for p in pending)
            return
        if pending:
            self._start_writing()
            written = sync.write_rows([row for _, _, _, row in pending])
            sync.absorb(written, [position for _, _, position, _ in pending])
            report.added += written.inserted
            report.changed += written.updated
            report.unchanged += written.unchanged
            report.duplicates += written.duplicates
            self.inserted += written.inserted
        if repeats:
            # A key an earlier batch wrote: this later row wins (it is written again)
            # and counts as the duplicate.
            self._start_writing()
            written = sync.write_rows([row for _, row in repeats])
            sync.absorb(written, [position for position, _ in repeats])

    def _delete(self, gone: Any) -> None:

        sync, report = self.sync, self.sync.report
        width = len(sync.key)
        size = max(sync.chunk_size or 0, 10_000)
        for at in range(0, len(gone), size):
            encoded = self.state.take_keys(gone[at : at + size]).to_pylist()
            try:
                keys = [decode_key(k, width) for k in encoded]
            except ValueError as error:
                raise BulkError(
                    f"sync of {sync.spec.name!r}: a deleted key cannot be read back from the "
                    f"sync state ({error}); sync(full=True) compares the table in full"
                ) from None
            sync.note([("delete", k[0] if width == 1 else k, list(k)) for k in keys])
            if sync.dry_run:
                report.deleted += len(keys)
                continue
            self._start_writing()
            written = sync.delete_keys(keys)
            sync.absorb(written)
            report.deleted += written.deleted


def _collision() -> None:
    raise BulkError(
        "two different keys share a 64-bit key hash in the sync state (so rare it "
        "should never happen); sync(full=True) compares the table in full"
    )


class _HashDiff:
    """The difference found by comparing row hashes a chunk at a time (item stores):
    each source chunk's items are read by key; keys the source lacks come from a scan."""

    def __init__(self, sync: Syncer, mappings: bool) -> None:
        self.sync = sync
        self.mappings = mappings
        self._repeats: set[int] = set()  # positions of keys an earlier chunk had
        self._wrote = False

    def run(self, rows: Iterator[Any], mark: SyncMark | None, source_id: str | None) -> None:
        sync, report = self.sync, self.sync.report
        spec, cols = sync.spec, sync.cols
        if not self.mappings:
            # (a row of the wrong width keeps its shape: _key_of rejects it)
            rows = (dict(zip(cols, r, strict=True)) if len(r) == len(cols) else r for r in rows)
        compared = None if sync.columns is None else sync.compared
        digest = SourceDigest(sync.scope)
        seen: set[Any] = set()
        pending: list[tuple[str, Any, int, dict[str, Any]]] = []
        size = sync.chunk_size or 100
        where = sync.where
        # A NaN the store keeps as NULL is compared as the NULL it becomes.
        nan_missing = not sync.ctx.capabilities.float_nan
        for raws, start in numbered(chunked(rows, size)):
            report.rows_in += len(raws)
            if sync.full_bytes is not None:
                sync.full_bytes += lines_size([{"op": "add", "row": raw} for raw in raws])
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
            found = get_many(
                sync.ctx, spec.name, list(latest), key=sync.key,
                columns=None if compared is None else (*sync.key, *compared, *where),
                chunk_size=None, consistent_read=False,
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
                elif row_hash(_compared(old, compared)) != row_hash(
                    _compared(raw, compared, nan_missing)
                ):
                    pending.append(("change", k, position, dict(raw)))
                elif position not in self._repeats:
                    report.unchanged += 1
            if len(pending) >= size:
                self._flush(pending)
                pending = []
        if source_id is None:
            report.digest = digest.hexdigest()
        if (
            mark is not None
            and report.digest
            and not pending
            and sync._unchanged(mark, report.digest)
        ):
            # Nothing to write: the digest matched (an item store cannot skip earlier,
            # having read the items to compare them).
            report.up_to_date = True
        self._flush(pending)
        if sync.delete_missing:
            backend = sync.backend
            if not isinstance(backend, ItemBackend):
                raise BulkError(f"the {backend.capabilities.name} backend cannot scan a table")
            gone: list[Any] = []
            for item in backend.scan(spec, tuple(where)):
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
        sync.note(pending)
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
                written = write(
                    sync.ctx, "update", sync.spec, rows, sync.settings, columns=sync.cols,
                    key=sync.key, touch=False,
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


def encoded_columns(
    columns: Sequence[list[Any]], specs: Sequence[ColumnSpec], float_nan: bool = True
) -> list[Any]:
    """Columns of values encoded for hashing (``hashing.encode_values``), as their
    columns' types hold them: text from a file ("0.1250", "2024-01-01", "true") in a
    typed column is coerced, so it hashes as the value it stands for (what the table
    stores); a value that does not convert stays as given (its write rejects it). A NaN
    is a missing value (NULL) where the column holds none: any column but a number one
    (or one of no type) of a backend that stores NaN (``float_nan``)."""
    encoded = []
    for values, spec in zip(columns, specs, strict=True):
        plain = hashing.plain_column(values, text=spec.type in ("text", "any"))
        if plain is not None:
            encoded.append(plain)
            continue
        kinds: set[type] | None = hashing.column_types(values)
        assert kinds is not None
        if (float in kinds or Decimal in kinds) and not (
            float_nan and spec.type in ("float", "decimal", "any")
        ):
            values = [None if is_nan(v) else v for v in values]
            kinds = hashing.column_types(values)
        if kinds is not None and str in kinds and spec.type not in ("text", "any"):
            values = _coerced(values, spec)
            kinds = None
        encoded.append(values_column(values, kinds))
    return encoded


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _typed_text(array: Any, spec: ColumnSpec) -> Any | None:
    """A text column as ``spec``'s type by Arrow's own parser, where it takes every
    value in its plain form (digits, ISO dates), which Python's coercion reads as the
    same values; else None (coerced a value at a time)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = {"integer": pa.int64(), "float": pa.float64(), "date": pa.date32()}.get(spec.type)
    if typ is None:
        return None
    try:
        values = array.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if spec.type == "float" and pc.any(pc.is_inf(values)).as_py():
        return None  # "inf" spelled out or an overflow: as Python reads it
    return values


def _coerced(values: list[Any], spec: ColumnSpec) -> list[Any]:
    out = []
    for v in values:
        if v.__class__ is str:
            with contextlib.suppress(ValueError, TypeError, ArithmeticError, BulkError):
                v = coerce(v, spec)
        out.append(v)
    return out


def value_columns(
    raws: Sequence[Any], cols: Sequence[str], mappings: bool
) -> tuple[list[list[Any]], Sequence[int]]:
    """Rows' values a column at a time (``cols``), and the indexes of the rows taken (a
    sequence of another width is left out)."""
    if mappings:
        try:
            return _mapping_columns(raws, cols)
        except ConversionError:  # a model's row whose value a field could not convert
            kept = [i for i, raw in enumerate(raws) if not isinstance(raw, RefusedRow)]
            columns, taken = _mapping_columns([raws[i] for i in kept], cols)
            return columns, [kept[j] for j in taken]
    good = [i for i, r in enumerate(raws) if len(r) == len(cols)]
    if len(good) != len(raws):
        raws = [raws[i] for i in good]
    return ([list(c) for c in zip(*raws, strict=True)] if raws else [[] for _ in cols]), good


def _mapping_columns(
    raws: Sequence[Any], cols: Sequence[str]
) -> tuple[list[list[Any]], Sequence[int]]:
    """Mappings' values a column at a time, and the indexes of all of them."""
    try:  # (itemgetter: the loop runs in C)
        if len(cols) <= 8:
            return [list(map(itemgetter(c), raws)) for c in cols], range(len(raws))
        # Wide rows: each dict visited once (a pass per column over a batch of big
        # dicts misses the cache: 1.6x slower at 20 columns).
        tuples = list(map(itemgetter(*cols), raws))
        columns = [list(map(itemgetter(i), tuples)) for i in range(len(cols))]
        return columns, range(len(raws))
    except KeyError:  # a row without some column: None, as a write takes it
        return [[r.get(c) for r in raws] for c in cols], range(len(raws))


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


def _compared(
    row: Mapping[str, Any], compared: Sequence[str] | None, nan_missing: bool = False
) -> tuple[Any, ...]:
    """The row's values compared (all of them, by name, where ``compared`` is None) in
    their canonical form; ``nan_missing``: a NaN as the None it is stored as."""
    if nan_missing and any(is_nan(v) for v in row.values()):
        row = {k: None if is_nan(v) else v for k, v in row.items()}
    if compared is None:
        return tuple(sorted((str(k), canonical(v)) for k, v in row.items()))
    return tuple(canonical(row.get(c)) for c in compared)
