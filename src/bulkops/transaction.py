"""Transaction scopes: ``Store.atomic()`` blocks and the batches of ``Store.claim()``.

Inside a scope every verb of the Store works in the scope's one transaction (its
chunks under savepoints), and the scope, not each chunk, decides about COMMIT and
retries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

from .context import Context
from .errors import TransientError
from .execute import commit_resolving
from .retry import RetryPolicy

__all__ = ["Atomic", "Attempt", "Batch", "Scope"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")  # what a block or batch hands its code: the Store


class Scope:
    """Opens and closes one transaction (or, nested, one savepoint) on a Context."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._savepoint: AbstractContextManager[None] | None = None
        self.open = False
        self._runs = 0  # where this scope's calls begin among the Store's pending runs

    def begin(self, retry: RetryPolicy) -> None:
        ctx = self.ctx
        self._runs = ctx.recorder.scope_mark()
        if not ctx.in_scope():  # else: a savepoint of the open transaction (maybe the caller's)
            retry.call(ctx.backend.begin)
        else:
            self._savepoint = ctx.backend.savepoint()
            self._savepoint.__enter__()
        ctx.depth += 1
        self.open = True

    def end(self, error: BaseException | None) -> None:
        """COMMIT (or release the savepoint) if ``error`` is None, else roll back."""
        if not self.open:
            return
        self.open = False
        ctx = self.ctx
        ctx.depth -= 1
        recorder = ctx.recorder
        if self._savepoint is not None:
            savepoint, self._savepoint = self._savepoint, None
            if error is None:
                savepoint.__exit__(None, None, None)
            else:
                try:
                    savepoint.__exit__(type(error), error, error.__traceback__)
                finally:
                    recorder.scope_ended(self._runs, committed=False, error=error)
            return
        if error is not None:
            try:
                ctx.backend.rollback()
            finally:
                recorder.scope_ended(self._runs, committed=False, error=error)
            return
        # A block re-run after a lost COMMIT that did commit would apply twice.
        try:
            commit_resolving(ctx.backend, "the atomic block")
        except BaseException as failure:
            recorder.scope_ended(self._runs, committed=False, error=failure)
            raise
        recorder.scope_ended(self._runs, committed=True)


class Atomic(Generic[S]):
    """One transaction around a block of work, re-run as a whole on transient errors.

    Three ways to use it:

    - decorator, ``@db.atomic()``: the function runs in one transaction and is called
      again (commit included) after a deadlock, serialization failure or busy
      database, with backoff, up to the policy's attempts;
    - ``for attempt in db.atomic(): with attempt: ...``: the same for an inline block;
    - ``with db.atomic(): ...``: one transaction, no re-run (a ``with`` block cannot
      run twice): transient errors roll back and propagate.

    Other errors roll back and propagate unchanged. Nested inside another scope, a
    block is a savepoint of the outer transaction, and the outer scope retries.
    """

    def __init__(self, ctx: Context, store: S, retry: RetryPolicy | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.retry = retry or ctx.retry
        self._scopes: list[Scope] = []

    def __enter__(self) -> S:
        scope = Scope(self.ctx)
        scope.begin(self.retry)
        self._scopes.append(scope)
        return self.store

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._scopes.pop().end(exc)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.run(fn, *args, **kwargs)

        return wrapper

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` in one transaction, re-running it on transient errors."""
        if self.ctx.in_scope():  # nested: the outermost scope owns the retries
            with self:
                return fn(*args, **kwargs)

        def once() -> T:
            with self:
                return fn(*args, **kwargs)

        return self.retry.call(once)

    def __iter__(self) -> Iterator[Attempt[S]]:
        """Attempts for ``for attempt in db.atomic(): with attempt: ...``."""
        nested = self.ctx.in_scope()
        for number in range(1, self.retry.attempts + 1):
            attempt = Attempt(self, last=nested or number == self.retry.attempts)
            yield attempt
            if attempt.error is None:
                return
            self.retry.sleep(self.retry.delay(number))


class Attempt(Generic[S]):
    """One try of an ``Atomic`` loop: a transient error ends the try quietly (the loop
    tries again) unless it was the last one."""

    def __init__(self, atomic: Atomic[S], *, last: bool) -> None:
        self.atomic = atomic
        self.last = last
        self.error: TransientError | None = None

    def __enter__(self) -> S:
        return self.atomic.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        error = exc
        try:
            self.atomic.__exit__(exc_type, exc, tb)
        except TransientError as commit_error:  # e.g. a serialization failure at COMMIT
            if self.last:
                raise
            error = commit_error
        if isinstance(error, TransientError) and not self.last:
            self.error = error
            return True  # swallowed: the loop runs the block again
        return False


class Batch(Generic[S]):
    """Rows claimed by ``Store.claim()``, locked in their own transaction.

    ``rows`` are plain dicts. Inside ``with batch:`` the Store's verbs (also offered
    here: ``batch.update(...)`` and so on) run in the batch's transaction; leaving the
    block commits, an exception rolls back and releases the rows to other claimers.
    """

    VERBS = ("insert", "upsert", "update", "delete", "get_many", "adjust", "get_or_create",
             "ensure")  # fmt: skip

    def __init__(self, store: S, rows: Sequence[dict[str, Any]], scope: Scope) -> None:
        self.store = store
        self.rows = list(rows)
        self._scope = scope

    @property
    def open(self) -> bool:
        return self._scope.open

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __enter__(self) -> Batch[S]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._scope.end(exc)

    def commit(self) -> None:
        self._scope.end(None)

    def release(self) -> None:
        """Roll back: the rows go back to other claimers unchanged."""
        self._scope.end(RuntimeError("released"))

    def __getattr__(self, name: str) -> Any:
        if name in self.VERBS:
            return getattr(self.store, name)
        raise AttributeError(name)
