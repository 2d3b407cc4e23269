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
from typing import TypeVar

import tenacity

from .errors import TransientError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient errors with exponential backoff and full jitter.

    The n-th wait is uniform in ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``
    ("full jitter", which spreads competing retriers apart better than a fixed or
    equal-jitter backoff). ``attempts`` counts the first try: ``attempts=1`` never
    retries.
    """

    attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed try (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
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


DEFAULT_RETRY = RetryPolicy()
