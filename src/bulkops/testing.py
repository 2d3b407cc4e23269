"""Helpers for your own tests: count the statements your code sends to the database.

Pin N+1 regressions the way Django's ``assertNumQueries`` does, for bulkops Stores,
SQLAlchemy Engines, Connections and ORM Sessions, Django's connections, and plain
``sqlite3`` and psycopg 3 connections::

    from bulkops.testing import assert_max_queries, count_queries

    def test_checkout_does_not_query_per_item(db):
        with assert_max_queries(db, 5):
            checkout(db, cart)

What is counted, the same on every kind of target: each statement the application
sends, once per ``execute()`` and once per ``executemany()`` however many rows it
carries (a ``COPY`` is one statement too). Transaction control (BEGIN, COMMIT,
ROLLBACK, SAVEPOINT, RELEASE) is not counted, since some drivers send it on their own
and others only on request; except on a framework's connection, which is counted as
the framework counts: Django's connection as ``assertNumQueries`` does (what its
cursors send: BEGIN, SAVEPOINT and RELEASE included), a SQLAlchemy Connection or
Session with SAVEPOINT and RELEASE, as its cursor events see them. For a Store
everything bulkops sends is counted, its catalog reads included, so the count can be
higher than ``Report.statements`` (data statements only).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .backends.resolve import counts_transaction_control, statement_tracer
from .integrations import framework_tracer, is_framework_connection
from .store import Store

__all__ = ["QueryCount", "assert_max_queries", "count_queries"]

# How much of each statement an AssertionError shows.
SHOWN_STATEMENTS = 50
SHOWN_CHARACTERS = 300


@dataclass
class QueryCount:
    """The statements sent so far in a ``count_queries`` block, in order."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def __len__(self) -> int:
        return len(self.statements)


@contextmanager
def count_queries(
    target: object, *, include_transaction_control: bool | None = None
) -> Iterator[QueryCount]:
    """Count the statements sent to ``target`` inside the block.

    ``target``: a bulkops Store, a SQLAlchemy Engine, Connection or ORM Session,
    Django's ``connection`` (``connections[alias]``), a ``sqlite3`` connection, a
    psycopg 3 connection or a boto3 DynamoDB client (its requests count as
    statements). ``include_transaction_control``: count BEGIN, SAVEPOINT, RELEASE
    and the like too (default: as the target's framework counts, see above). Yields a
    ``QueryCount`` whose ``count`` and ``statements`` grow as statements are sent
    (Django's: when the block ends) and stay readable after the block.

    Each kind is observed by its backend's statement tracer
    (``bulkops.backends.base.StatementTracer``), in the driver: a Store through its
    backend (workers and reconnects included); a SQLAlchemy Engine on every
    connection it hands out during the block, a SQLAlchemy Connection on its driver
    connection (raw DBAPI use included); psycopg through the connection's cursor
    factory (cursors made before the block are not seen); an open sqlite3 connection
    through its trace hook, with a profile hook to tell one ``executemany()`` from
    many ``execute()`` calls (statements from other threads are not seen).
    """
    counted = QueryCount()
    lock = threading.Lock()  # a Store's workers send from several threads

    def on_statement(statement: str) -> None:
        with lock:
            counted.statements.append(statement.strip())

    handle = target.backend if isinstance(target, Store) else target
    if include_transaction_control is None:
        include_transaction_control = counts_transaction_control(handle) or is_framework_connection(
            handle
        )
    tracer = framework_tracer(handle) or statement_tracer(handle)
    with tracer.trace_statements(
        on_statement, include_transaction_control=include_transaction_control
    ):
        yield counted


@contextmanager
def assert_max_queries(
    target: object, maximum: int, *, include_transaction_control: bool | None = None
) -> Iterator[QueryCount]:
    """Fail (AssertionError, listing every statement seen) if the block sends more
    than ``maximum`` statements to ``target``. Counted as in ``count_queries``."""
    if maximum < 0:
        raise ValueError("maximum must not be negative")
    with count_queries(target, include_transaction_control=include_transaction_control) as counted:
        yield counted
    if counted.count > maximum:
        raise AssertionError(_too_many(counted, maximum))


def _too_many(counted: QueryCount, maximum: int) -> str:
    lines = [f"{counted.count} statements were sent, more than the maximum of {maximum}:"]
    for number, statement in enumerate(counted.statements[:SHOWN_STATEMENTS], 1):
        text = " ".join(statement.split())
        if len(text) > SHOWN_CHARACTERS:
            text = text[:SHOWN_CHARACTERS] + " …"
        lines.append(f"  {number}. {text}")
    if counted.count > SHOWN_STATEMENTS:
        lines.append(f"  … and {counted.count - SHOWN_STATEMENTS} more")
    return "\n".join(lines)
