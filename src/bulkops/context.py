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
from typing import TypeVar

from .backends.base import Backend, Capabilities, SyncState
from .errors import UnsupportedError
from .events import logger
from .execute import run_transaction
from .recorder import Recorder
from .retry import DEFAULT_RETRY, RetryPolicy
from .schema import TableSpec

__all__ = ["Context"]

T = TypeVar("T")


class Context:
    """One database as the verbs see it. ``depth``: transaction scopes open now."""

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

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def in_scope(self) -> bool:
        """Whether an ``atomic()`` block or a claimed batch is open: then every verb
        works in its transaction, under savepoints."""
        return self.depth > 0

    def require(self, supported: bool, what: str) -> None:
        """Raise UnsupportedError naming ``what`` unless ``supported``."""
        if not supported:
            raise UnsupportedError(f"{self.capabilities.name} does not support {what}")

    def refuse_in_scope(self, what: str) -> None:
        """Refuse work that needs short transactions of its own inside a scope."""
        if self.in_scope():
            raise UnsupportedError(
                f"{what} writes in short transactions of its own: not inside atomic() "
                "or a claimed batch"
            )

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
