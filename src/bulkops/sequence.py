"""Sequences: many unique formatted numbers (lot, serial, invoice numbers) per call.

``allocate(n)`` draws n numbers in one round trip (PostgreSQL: a real sequence,
``nextval`` over ``generate_series``; SQLite: a counter row advanced by n in one
statement under the write lock), so numbers never repeat, even across processes.
Gaps are allowed (numbers drawn by a transaction that rolls back are not reused).
"""

from __future__ import annotations

import datetime as dt
import string

from .context import Context

__all__ = ["NumberSequence"]

DATE_FIELDS = frozenset({"year", "month", "day"})


class NumberSequence:
    """``prefix + zero-padded number + suffix``; prefix and suffix may hold
    ``{year}``, ``{month}`` and ``{day}``, filled at allocation time. A number wider
    than ``padding`` is written in full: still unique, just longer."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        *,
        prefix: str = "",
        padding: int = 0,
        suffix: str = "",
        start: int = 1,
    ) -> None:
        if not name:
            raise ValueError("a sequence needs a name")
        if padding < 0:
            raise ValueError("padding must not be negative")
        for text in (prefix, suffix):
            fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            unknown = fields - DATE_FIELDS
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join(sorted(unknown))} in {text!r}: "
                    "only {year}, {month} and {day} are filled in"
                )
        self._ctx = ctx
        self.name = name
        self.prefix = prefix
        self.padding = padding
        self.suffix = suffix
        self.start = start

    def allocate_numbers(self, count: int) -> list[int]:
        """``count`` new numbers, unique within this sequence, in one round trip."""
        if count < 1:
            raise ValueError("count must be at least 1")
        backend = self._ctx.backend
        return self._ctx.transaction(
            lambda: backend.allocate(self.name, count, self.start),
            None,
            f"allocation from sequence {self.name!r}",
        )

    def allocate(self, count: int, *, today: dt.date | None = None) -> list[str]:
        """``count`` new formatted values."""
        numbers = self.allocate_numbers(count)
        day = today or dt.date.today()
        fields = {"year": f"{day.year:04d}", "month": f"{day.month:02d}", "day": f"{day.day:02d}"}
        prefix = self.prefix.format(**fields)
        suffix = self.suffix.format(**fields)
        width = self.padding
        return [prefix + str(n).zfill(width) + suffix for n in numbers]
