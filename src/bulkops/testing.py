"""Helpers for your own tests: count the statements your code sends to the database.

Pin N+1 regressions the way Django's ``assertNumQueries`` does, for bulkops Stores,
SQLAlchemy Engines and Connections, and plain ``sqlite3`` and psycopg 3 connections::

    from bulkops.testing import assert_max_queries, count_queries

    def test_checkout_does_not_query_per_item(db):
        with assert_max_queries(db, 5):
            checkout(db, cart)

What is counted, the same on every kind of target: each statement the application
sends, once per ``execute()`` and once per ``executemany()`` however many rows it
carries (a ``COPY`` is one statement too). Transaction control (BEGIN, COMMIT,
ROLLBACK, SAVEPOINT, RELEASE) is not counted, since some drivers send it on their own
and others only on request. For a Store everything bulkops sends is counted, its
catalog reads included, so the count can be higher than ``Report.statements`` (data
statements only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .backends.base import is_transaction_control
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
def count_queries(target: Any) -> Iterator[QueryCount]:
    """Count the statements sent to ``target`` inside the block.

    ``target``: a bulkops Store, a SQLAlchemy Engine or Connection, a ``sqlite3``
    connection or a psycopg 3 connection. Yields a ``QueryCount`` whose ``count`` and
    ``statements`` grow as statements are sent (and stay readable after the block).

    How each kind is observed: a Store through its backend (workers and reconnects
    included); SQLAlchemy through its ``before_cursor_execute`` event (statements run
    through the Engine or Connection; raw DBAPI use is not seen); psycopg through the
    connection's cursor factory (cursors made before the block are not seen); sqlite3
    through its trace hook, with a profile hook to tell one ``executemany()`` from many
    ``execute()`` calls (statements from other threads are not seen).
    """
    counted = QueryCount()
    lock = threading.Lock()  # a Store's workers send from several threads

    def on_statement(statement: str) -> None:
        with lock:
            counted.statements.append(statement.strip())

    with _trace(target, on_statement):
        yield counted


@contextmanager
def assert_max_queries(target: Any, maximum: int) -> Iterator[QueryCount]:
    """Fail (AssertionError, listing every statement seen) if the block sends more
    than ``maximum`` statements to ``target``. Counted as in ``count_queries``."""
    if maximum < 0:
        raise ValueError("maximum must not be negative")
    with count_queries(target) as counted:
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


def _trace(target: Any, on_statement: Callable[[str], None]) -> AbstractContextManager[None]:
    """The hook that reports ``target``'s statements. Driver-specific hooks live in the
    backend modules (only they import their driver) and are imported here only when
    such a connection is given."""
    if isinstance(target, Store):
        trace = getattr(target.backend, "trace_statements", None)
        if trace is None:
            raise TypeError(f"the {target.capabilities.name} backend cannot count its statements")
        result: AbstractContextManager[None] = trace(on_statement)
        return result
    if isinstance(target, sa.Engine | sa.Connection):
        return _sqlalchemy_trace(target, on_statement)
    module = type(target).__module__
    if module == "sqlite3":
        from .backends.sqlite import trace_connection as trace_sqlite

        return trace_sqlite(target, on_statement)
    if module == "psycopg" or module.startswith("psycopg."):
        from .backends.postgres import trace_connection as trace_psycopg

        return trace_psycopg(target, on_statement)
    raise TypeError(
        "count_queries() takes a bulkops Store, a SQLAlchemy Engine or Connection, or a "
        f"sqlite3 or psycopg connection, not {type(target).__module__}.{type(target).__name__}"
    )


@contextmanager
def _sqlalchemy_trace(
    target: sa.Engine | sa.Connection, on_statement: Callable[[str], None]
) -> Iterator[None]:
    def before_cursor_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        # Fired once per execute() and once per executemany() (``many``).
        if not is_transaction_control(statement):
            on_statement(statement)

    sa.event.listen(target, "before_cursor_execute", before_cursor_execute)
    try:
        yield
    finally:
        sa.event.remove(target, "before_cursor_execute", before_cursor_execute)
