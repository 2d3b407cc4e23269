"""What every verb's implementation shares with the Store that runs it.

A ``Context`` holds one database's backend, its default retry policy, the open
transaction scopes (``atomic()`` blocks, claimed batches), the call recorder and
the sync state. The Store is a facade over it; the modules that carry out the verbs
(``writes``, ``reads``, ``primitives``, ``sync``, ``sequence``, ``transaction``) take
a Context, never the Store, so none of them imports the Store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from .backends.base import Backend, Capabilities, ColumnarBackend, SyncState
from .errors import UnsupportedError
from .events import logger
from .execute import run_transaction
from .integrations import model_table
from .recorder import Recorder
from .retry import DEFAULT_RETRY, RetryPolicy
from .schema import ColumnSpec, TableSpec

__all__ = ["Context", "TableRef"]

# A table as the verbs take it: its name, or a model that stands for it (a Django
# model class, a SQLAlchemy declarative class or Table: see Context.table).
TableRef = Any

T = TypeVar("T")


class Context:
    """One database as the verbs see it. ``depth``: transaction scopes open now.

    A transaction the caller holds on its own connection (``Backend.caller_transaction``)
    is an outer scope bulkops did not open: every verb works in it under savepoints,
    and what needs transactions of bulkops' own is refused.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        retry: RetryPolicy | None = None,
        run_log: bool = False,
        label: str | None = None,
    ) -> None:
        self.backend = backend
        self.retry = retry or DEFAULT_RETRY
        backend.retry = self.retry  # for retries inside the backend (reads, primitives)
        self.depth = 0
        self.recorder = Recorder(
            backend, self.retry, run_log=run_log, label=label, in_scope=self.in_scope
        )
        self._state: SyncState | None = None
        self._models: dict[int, tuple[object, TableSpec]] = {}

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def in_scope(self) -> bool:
        """Whether an ``atomic()`` block, a claimed batch or the caller's own
        transaction is open: then every verb works in it, under savepoints."""
        return self.depth > 0 or self.backend.caller_transaction()

    def in_caller_transaction(self) -> bool:
        """Whether the caller's own transaction is open on its connection (bulkops
        must neither commit nor roll it back)."""
        return self.backend.caller_transaction()

    def require(self, supported: bool, what: str) -> None:
        """Raise UnsupportedError naming ``what`` unless ``supported``."""
        if not supported:
            raise UnsupportedError(f"{self.capabilities.name} does not support {what}")

    def refuse_in_scope(self, what: str) -> None:
        """Refuse work that needs short transactions of its own inside a scope."""
        self.refuse_in_caller_transaction(what, "writes in short transactions of its own")
        if self.in_scope():
            raise UnsupportedError(
                f"{what} writes in short transactions of its own: not inside atomic() "
                "or a claimed batch"
            )

    def refuse_in_caller_transaction(self, what: str, why: str) -> None:
        """Refuse ``what`` (which ``why``) inside the caller's own transaction."""
        if self.in_caller_transaction():
            raise UnsupportedError(
                f"{what} {why}, and bulkops never commits a transaction it did not open: "
                "not inside the caller's transaction (call it where the connection is in "
                "autocommit, outside transaction.atomic() / session.begin())"
            )

    def refuse_run_log_in_caller_transaction(self) -> None:
        if self.recorder.run_log:
            self.refuse_in_caller_transaction(
                "the run log (run_log=True)", "records each call in a transaction of its own"
            )

    # ----------------------------------------------------------------- tables

    def _reflect(self, name: str) -> TableSpec:
        # The catalog read is retried like every statement (a locked database, a racing
        # DDL), except inside the caller's transaction, which the caller retries.
        if self.in_caller_transaction():
            return self.backend.reflect(name)
        return self.retry.call(lambda: self.backend.reflect(name))

    def table(self, target: Any) -> TableSpec:
        """The table a verb works on: a name (reflected), or a model (a Django model
        class, a SQLAlchemy declarative class or ``Table``: reflected once per Store,
        with the model's names for columns and its keys)."""
        if isinstance(target, TableSpec):
            return target
        if isinstance(target, str):
            return self._reflect(target)
        cached = self._models.get(id(target))
        if cached is not None and cached[0] is target:
            return cached[1]
        model = model_table(target)
        if model is None:
            raise TypeError(
                "a table is a name, a Django model, a SQLAlchemy declarative class or "
                f"Table, not {type(target).__module__}.{type(target).__name__}"
            )
        spec = self._reflect(model.name)
        known = set(spec.columns)
        unique = tuple(u for u in model.unique if set(u) <= known and u != model.primary_key)
        # How the model stores datetimes where the column keeps what it is given
        # (SQLite's text): naive UTC (converted by the row adapter, before sync hashes
        # them, and by the columnar path's checks), or with six digits of microseconds
        # (the backend's codec).
        columns = {
            c: replace(
                column,
                naive_utc=c in model.utc_datetimes,
                fixed_micro=c in model.micro_datetimes,
            )
            if column.type == "datetime"
            else column
            for c, column in spec.columns.items()
        }
        adapt = model.adapter(
            frozenset(c for c, column in columns.items() if column.type == "integer"),
            frozenset(
                c
                for c, column in spec.columns.items()
                if columns[c].naive_utc and self._keeps_offsets(column)
            ),
            self.backend.capabilities.name,
        )
        spec = replace(
            spec,
            columns=columns,
            primary_key=model.primary_key
            if model.primary_key and set(model.primary_key) <= known
            else spec.primary_key,
            unique=tuple(dict.fromkeys((*unique, *spec.unique))),
            aliases={k: v for k, v in model.aliases.items() if v in known and k not in known},
            row_adapter=adapt,
            insert_adapter=model.insert_adapter(adapt),
        )
        self._models[id(target)] = (target, spec)
        return spec

    def _keeps_offsets(self, column: ColumnSpec) -> bool:
        """Whether a datetime column stores a value's offset as given (SQLite's text)
        rather than an instant or a wall-clock time."""
        backend = self.backend
        if isinstance(backend, ColumnarBackend):
            return backend.arrow_target(column).timezone == "keep"
        return False

    # ----------------------------------------------------------- transactions

    def transaction(self, work: Callable[[], T], retry: RetryPolicy | None, what: str) -> T:
        """``work`` in a transaction of its own, or in the open scope's savepoint."""
        if self.in_scope():
            with self.backend.savepoint():
                return work()
        return run_transaction(self.backend, work, retry or self.retry, what=what)

    # ------------------------------------------------------------- sync state

    def sync_state(self) -> SyncState:
        if self._state is None:
            self._state = self.backend.sync_state()
        return self._state

    def touch(self, spec: TableSpec) -> None:
        """A write to ``spec``'s table: its sync digests no longer stand (only where
        the database keeps any; reflection tells, without a statement)."""
        state = self.sync_state()
        if state.kept(spec):
            state.invalidate(spec.name, in_transaction=self.in_scope())

    @contextmanager
    def touching(self, spec: TableSpec) -> Iterator[None]:
        """Around a call that writes ``spec``'s table: its sync digests are invalidated
        before (a crash midway leaves none standing) and again after (a sync that read
        the table's generation meanwhile must not record its digest as current)."""
        self.touch(spec)
        try:
            yield
        except BaseException:
            # Some of it may have committed; the call's own error is what to raise.
            try:
                self.touch(spec)
            except Exception as failure:
                logger.warning("could not invalidate the sync digests of %r: %s",
                               spec.name, failure)  # fmt: skip
            raise
        self.touch(spec)
