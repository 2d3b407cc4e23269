"""What a built-in workload of ``bulkops bench`` is: the same job written twice.

``naive`` is the code such a job usually gets (one query per row and per lookup, through
plain SQLAlchemy Core connections); ``bulk`` is the same job on bulkops' verbs. The
runner gives each a fresh copy of the same seeded data and compares their end states
with ``check``, so a speed-up never comes from doing less work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..store import Store

__all__ = ["CENT", "Workload", "money"]

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Workload:
    """One built-in workload.

    ``plain`` below is the database through its plain client, which naive code and
    ``check`` use: a SQLAlchemy ``Engine`` on SQL backends (a DynamoDB workload would
    get the boto3 client). ``backends`` lists the ``Capabilities.name`` values the
    workload runs on.
    """

    name: str
    summary: str
    sizes: tuple[int, ...]  # default sizes for ``bulkops bench``
    backends: frozenset[str]
    setup: Callable[[Store, Any, int], None]  # (db, plain, size): tables and seed data
    naive: Callable[[Any, int], object]  # (plain, size): the usual one-query-per-row code
    bulk: Callable[[Store, int], object]  # (db, size): the same job with bulkops' verbs
    check: Callable[[Any], Any]  # (plain) -> the end state, comparable with ==


def money(value: Any) -> Decimal:
    """A money value read back from any backend as Decimal to the cent (SQLite stores
    NUMERIC columns as REAL)."""
    return Decimal(str(value)).quantize(CENT)
