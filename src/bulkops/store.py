"""Store: the verbs. Each one normalizes its input, plans chunks, executes and reports."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from types import TracebackType
from typing import IO, Any, Literal

from typing_extensions import TypedDict, Unpack

from .backends.base import Backend, Capabilities, WriteKind, WriteOp
from .errors import BulkError, ConversionError, SchemaError
from .execute import Executor, OnError, numbered
from .plan import ChunkPlanner, chunk_rows, chunked
from .report import ProgressCallback, Rejection, RejectsFile, Report
from .retry import DEFAULT_RETRY, RetryPolicy
from .schema import ColumnCodec, TableSpec

__all__ = ["Store"]

Key = str | Sequence[str] | None
Rejects = str | os.PathLike[str] | IO[str] | list[Rejection] | None


class WriteOptions(TypedDict, total=False):
    """Options every write verb takes (see ``Store``)."""

    chunk_size: int | None
    atomic: bool
    on_error: OnError | None
    rejects: Rejects
    max_rejects: int | None
    retry: RetryPolicy | None
    progress: ProgressCallback | None
    workers: int | None
    lock_timeout: float | None
    statement_timeout: float | None


class Store:
    """A database, ready for bulk work. Make one with ``bulkops.connect(...)``.

    Every write verb takes the same options:

    - ``chunk_size``: rows per chunk (default: from the backend's limits);
    - ``atomic``: one transaction for the whole call, all or nothing (default: one
      short transaction per chunk);
    - ``on_error``: ``"raise"`` (stop at the first bad row, naming it) or ``"isolate"``
      (reject bad rows, write the rest); defaults to ``"isolate"`` when ``rejects`` or
      ``max_rejects`` is given, else ``"raise"``;
    - ``rejects``: a path, text file or list that receives the Rejections (JSON Lines);
    - ``max_rejects``: stop cleanly (``TooManyRejects``) once more rows than this fail;
    - ``retry``: a RetryPolicy for transient errors (deadlocks, busy, throttling);
    - ``progress``: called with the running Report after each chunk;
    - ``workers``: chunks written in parallel over this many connections, where the
      backend allows it (PostgreSQL); input still streams, a bounded number of chunks
      in flight;
    - ``lock_timeout`` / ``statement_timeout``: seconds a statement may wait for a lock
      (``LockTimeoutError``, retried) or run (``StatementTimeoutError``, not retried).
    """

    def __init__(self, backend: Backend, *, retry: RetryPolicy | None = None) -> None:
        self.backend = backend
        self.retry = retry or DEFAULT_RETRY

    # ------------------------------------------------------------- lifecycle

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def table(self, name: str) -> TableSpec:
        """The table as bulkops sees it (columns, logical types, keys)."""
        return self.backend.reflect(name)

    def create_table(
        self, name: str, columns: Mapping[str, str], key: str | Sequence[str] = ()
    ) -> TableSpec:
        """Create a table from ``{column: logical type}`` with ``key`` as primary key."""
        key_cols = (key,) if isinstance(key, str) else tuple(key)
        missing = [k for k in key_cols if k not in columns]
        if missing:
            raise SchemaError(f"key column(s) {', '.join(missing)} are not among the columns")
        return self.backend.create_table(name, columns, key_cols)

    # ------------------------------------------------------------------ writes

    def insert(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        columns: Sequence[str] | None = None,
        on_conflict: Literal["error", "ignore"] = "error",
        key: Key = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Insert rows. ``on_conflict="ignore"`` skips rows whose key (or any unique
        value) already exists and counts them as ignored; ``"error"`` makes them bad rows.
        """
        if on_conflict not in ("error", "ignore"):
            raise ValueError(f"on_conflict must be 'error' or 'ignore', not {on_conflict!r}")
        kind: WriteKind = "insert" if on_conflict == "error" else "insert_ignore"
        return self._write(kind, table, rows, columns=columns, key=key, options=options)

    def upsert(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Insert rows, or update the existing row with the same key. Rows whose values
        are already there are left untouched and counted as unchanged. ``key`` needs a
        primary key or unique constraint on exactly those columns. ``update_columns``:
        what to change in existing rows (default: every non-key column given)."""
        return self._write(
            "upsert", table, rows, columns=columns, key=key, options=options,
            update_columns=update_columns,
        )  # fmt: skip

    def update(
        self,
        table: str,
        rows: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Set ``columns`` of the rows matched by ``key``. Keys not in the table are
        counted as not_found; rows already equal as unchanged."""
        return self._write("update", table, rows, columns=columns, key=key, options=options)

    def delete(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        **options: Unpack[WriteOptions],
    ) -> Report:
        """Delete the rows with these keys: scalars for a one-column key, tuples for a
        composite key, or mappings holding the key columns."""
        spec = self.backend.reflect(table)
        key_cols = spec.resolve_key(key, "delete")
        return self._write(
            "delete", table, self._key_tuples(keys, key_cols), columns=key_cols, key=key_cols,
            options=options, spec=spec,
        )  # fmt: skip

    # ------------------------------------------------------------------- reads

    def get_many(
        self,
        table: str,
        keys: Iterable[Any],
        *,
        key: Key = None,
        columns: Sequence[str] | None = None,
        chunk_size: int | None = None,
    ) -> dict[Any, dict[str, Any]]:
        """``{key: row}`` for the keys that exist, read in large chunks (one statement
        per chunk, never one per key). Keys are scalars, tuples for composite keys, or
        mappings; the result's keys are in the column's type (``"7"`` finds ``7``)."""
        spec = self.backend.reflect(table)
        key_cols = spec.resolve_key(key, "get_many")
        wanted = spec.check_columns(columns) if columns is not None else tuple(spec.columns)
        fetch = key_cols + tuple(c for c in wanted if c not in key_cols)
        key_codecs = [self.backend.codec(spec.column(k)) for k in key_cols]
        decoders = [self.backend.codec(spec.column(c)).decode for c in fetch]
        width = len(key_cols)
        size = chunk_rows(self.capabilities, width, chunk_size)
        if self.capabilities.max_read_keys:
            size = min(size, self.capabilities.max_read_keys)
        # Reads are not row-locking, so bigger chunks only mean fewer statements.
        if chunk_size is None and self.capabilities.max_params:
            size = max(size, self.capabilities.max_params // width)
        result: dict[Any, dict[str, Any]] = {}
        if width == 1:
            # One-column keys travel as plain values: no tuple per key on the hot path.
            codec, name = key_codecs[0], key_cols[0]
            passthrough = codec.passthrough
            unique: dict[Any, None] = dict.fromkeys(
                k if k.__class__ in passthrough else _encode_key((k,), key_codecs, key_cols)[0]
                for k in (k[name] if isinstance(k, Mapping) else k for k in keys)
            )
        else:
            unique = dict.fromkeys(
                _encode_key(k, key_codecs, key_cols) for k in self._key_tuples(keys, key_cols)
            )
        decode = any(d is not None for d in decoders)
        project = wanted != fetch
        for part in chunked(unique, size):
            for raw in self.backend.read(spec, key_cols, fetch, part):
                values: Sequence[Any] = raw
                if decode:
                    values = [v if d is None else d(v) for v, d in zip(raw, decoders, strict=True)]
                row = dict(zip(fetch, values, strict=True))
                k = values[0] if width == 1 else tuple(values[:width])
                result[k] = {c: row[c] for c in wanted} if project else row
        return result

    # -------------------------------------------------------------- internals

    def _key_tuples(
        self, keys: Iterable[Any], key_cols: tuple[str, ...]
    ) -> Iterator[tuple[Any, ...]]:
        width = len(key_cols)
        for k in keys:
            if isinstance(k, Mapping):
                try:
                    yield tuple(k[c] for c in key_cols)
                except KeyError as error:
                    raise SchemaError(
                        f"key mapping {k!r} lacks key column {error.args[0]!r}"
                    ) from None
            elif width == 1:
                yield (k,)
            elif isinstance(k, Sequence) and not isinstance(k, str | bytes) and len(k) == width:
                yield tuple(k)
            else:
                raise SchemaError(
                    f"key {k!r} does not match the key columns ({', '.join(key_cols)})"
                )

    def _write(
        self,
        kind: WriteKind,
        table: str,
        rows: Iterable[Any],
        *,
        columns: Sequence[str] | None,
        key: Key,
        options: WriteOptions,
        spec: TableSpec | None = None,
        update_columns: Sequence[str] | None = None,
    ) -> Report:
        unknown = set(options) - set(WriteOptions.__annotations__)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        workers = options.get("workers") or 1
        if workers < 1:
            raise ValueError("workers must be at least 1")
        timeout = options.get("statement_timeout")
        if timeout is not None and not self.capabilities.statement_timeout:
            raise ValueError(f"{self.capabilities.name} does not support statement_timeout")
        spec = spec or self.backend.reflect(table)
        report = Report(verb=kind if kind != "insert_ignore" else "insert", table=table)
        iterator = iter(rows)
        first = next(iterator, _END)
        if first is _END:
            return report
        mappings = isinstance(first, Mapping)
        explicit = columns is not None
        if explicit:
            assert columns is not None
            cols = spec.check_columns(columns)
        elif mappings:
            cols = spec.check_columns(first.keys())
        else:
            raise TypeError(
                f"{report.verb}(): rows are {type(first).__name__}s, not mappings: "
                "pass columns= to name their values"
            )
        key_cols = self._write_key(kind, spec, key, cols)
        if kind in ("upsert", "update") and mappings:
            # The key is needed to match rows even if columns= names only what to set.
            cols = cols + tuple(k for k in key_cols if k not in cols)
        missing_key = [k for k in key_cols if k not in cols]
        if missing_key:
            raise SchemaError(
                f"{report.verb}() matches rows on ({', '.join(key_cols)}) but the rows do not "
                f"give {', '.join(map(repr, missing_key))}"
            )
        if kind == "update" and not [c for c in cols if c not in key_cols]:
            raise SchemaError("update() needs at least one column to set besides the key")
        if kind in ("insert", "insert_ignore", "upsert"):
            required = [
                c.name for c in spec.columns.values()
                if not c.nullable and not c.has_default and c.name not in cols
            ]  # fmt: skip
            if required:
                raise SchemaError(
                    f"table {table!r} requires column(s) {', '.join(map(repr, required))} "
                    "(NOT NULL, no default) but the rows do not give them"
                )
        codecs: list[ColumnCodec] = [self.backend.codec(spec.column(c)) for c in cols]
        planner = ChunkPlanner(
            cols, codecs, key_cols, mappings=mappings, strict_width=not (explicit and mappings)
        )
        updating = None
        if update_columns is not None:
            updating = spec.check_columns(update_columns)
            outside = [c for c in updating if c not in cols or c in key_cols]
            if outside:
                raise SchemaError(
                    f"update_columns {', '.join(map(repr, outside))} must be non-key columns "
                    "the rows give"
                )
        op = WriteOp(kind=kind, table=spec, columns=cols, key=key_cols, update_columns=updating)
        rejects = options.get("rejects")
        max_rejects = options.get("max_rejects")
        on_error = options.get("on_error")
        if on_error is None:
            on_error = "isolate" if (rejects is not None or max_rejects is not None) else "raise"
        sink = RejectsFile(rejects) if rejects is not None else None
        executor = Executor(
            self.backend, op, planner, report, retry=options.get("retry") or self.retry,
            on_error=on_error, atomic=options.get("atomic", False), rejects=sink,
            max_rejects=max_rejects, progress=options.get("progress"), workers=workers,
        )  # fmt: skip
        size = chunk_rows(self.capabilities, len(cols), options.get("chunk_size"))
        backend = self.backend
        saved = (backend.lock_timeout, backend.statement_timeout)
        backend.lock_timeout = options.get("lock_timeout", saved[0])
        backend.statement_timeout = options.get("statement_timeout", saved[1])
        try:
            return executor.run(numbered(chunked(chain([first], iterator), size)))
        finally:
            backend.lock_timeout, backend.statement_timeout = saved
            if sink is not None:
                sink.close()

    def _write_key(
        self, kind: WriteKind, spec: TableSpec, key: Key, cols: tuple[str, ...]
    ) -> tuple[str, ...]:
        if kind in ("insert", "insert_ignore"):
            if key is not None:
                return spec.resolve_key(key, "insert")
            # Duplicates collapse on the primary key when the rows give it; rows without
            # it (ids the database assigns) are written as they come.
            pk = spec.primary_key
            return pk if pk and all(c in cols for c in pk) else ()
        key_cols = spec.resolve_key(key, kind)
        if kind == "upsert":
            spec.require_unique(key_cols, "upsert")
        return key_cols


class _End:
    pass


_END: Any = _End()


def _encode_key(
    key: tuple[Any, ...], codecs: Sequence[ColumnCodec], names: Sequence[str]
) -> tuple[Any, ...]:
    out = []
    for value, codec, name in zip(key, codecs, names, strict=True):
        if value.__class__ in codec.passthrough:
            out.append(value)
            continue
        try:
            out.append(codec.encode(value))
        except BulkError:
            raise
        except (ValueError, TypeError, ArithmeticError) as error:
            raise ConversionError(f"key {key!r}: {error}", column=name) from error
    return tuple(out)
