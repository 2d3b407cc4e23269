"""RetryPolicy: which errors are retried, how long to wait, how often to try.

The loop itself is tenacity's; this module only decides the strategy (transient
errors only, exponential backoff with full jitter, bounded attempts) and keeps
``sleep`` and ``random`` injectable so tests never wait for real.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .errors import TransientError

if TYPE_CHECKING:
    import tenacity

__all__ = ["Redrive", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient errors with exponential backoff and full jitter.

    The n-th wait is uniform in ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``
    ("full jitter", which spreads competing retriers apart better than a fixed or
    equal-jitter backoff). ``attempts`` counts the first try: ``attempts=1`` never
    retries.

    Batch APIs that hand back what they did not take (DynamoDB's UnprocessedItems and
    UnprocessedKeys) are re-driven in rounds, each sending everything still pending.
    There the limit is not a number of tries: rounds go on as long as they make
    progress (the server took at least one item), and the call gives up only after
    ``max_stalled_rounds`` consecutive rounds in which nothing was taken (``None``:
    the same number as ``attempts``). The wait before the next round uses the same
    full-jitter formula with a step that climbs by one after a round without progress
    and falls back by one (never below the first step) after a round with progress:
    a table that keeps taking items is re-driven at the base pace, one that has
    stopped taking them is backed off exponentially, and a recovering one is not
    hit at full speed at once. See :class:`Redrive`.
    """

    attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    max_stalled_rounds: int | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")
        if self.max_stalled_rounds is not None and self.max_stalled_rounds < 1:
            raise ValueError("RetryPolicy.max_stalled_rounds must be at least 1")

    @property
    def stalled_rounds(self) -> int:
        """Consecutive rounds without progress after which a re-drive gives up."""
        if self.max_stalled_rounds is None:
            return self.attempts
        return self.max_stalled_rounds

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling * self.random()

    def call(
        self,
        fn: Callable[[], T],
        *,
        on_retry: Callable[[TransientError, int, float], None] | None = None,
    ) -> T:
        """Run ``fn``; on a TransientError wait and run it again, up to ``attempts`` times.

        ``on_retry(error, attempt, wait)`` is called before each wait. When the attempts
        run out the last TransientError is raised with ``.attempts`` set and a message
        that says so. Any other exception propagates at once.
        """
        # Imported at the first call, not with bulkops: the ``bulkops`` program keeps
        # out what tenacity would import for tornado's coroutines (see cli._skip_unused).
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is None or state.outcome is None or state.next_action is None:
                return
            error = state.outcome.exception()
            assert isinstance(error, TransientError)
            on_retry(error, state.attempt_number, state.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=lambda state: self.delay(state.attempt_number),
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except TransientError as error:
            if self.attempts > 1 and error.attempts is None:
                error.attempts = self.attempts
                error.message = f"{error.message} (gave up after {self.attempts} attempts)"
            raise


class Redrive:
    """The bookkeeping of one re-drive loop under a RetryPolicy.

    After each round call :meth:`settle` with how many items were sent and how many
    came back: it answers whether to go on (having waited) or give up. ``rounds`` counts
    the rounds sent, ``stalled`` the latest run of rounds without progress, ``waits``
    the waits taken.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.rounds = 0
        self.stalled = 0
        self.waits = 0
        self._step = 0

    def settle(self, sent: int, left: int) -> bool:
        """True: the wait before the next round has been slept, send what is left.
        False: ``max_stalled_rounds`` rounds in a row took nothing, give up."""
        self.rounds += 1
        if left < sent:  # progress: the next wait steps down
            self.stalled = 0
            self._step = max(0, self._step - 1)
        else:  # nothing taken: the next wait steps up
            self.stalled += 1
            self._step += 1
            if self.stalled >= self.policy.stalled_rounds:
                return False
        self.waits += 1
        self.policy.sleep(self.policy.delay(max(1, self._step)))
        return True

    def gave_up(self) -> str:
        """Why the loop stopped, for the error message."""
        return (
            f"gave up after {self.stalled} round(s) in a row with no progress, "
            f"{self.rounds} round(s) in all"
        )


DEFAULT_RETRY = RetryPolicy()
