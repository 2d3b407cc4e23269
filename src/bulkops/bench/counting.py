"""Counting the statements each implementation sends, the same way for both.

Naive code goes through SQLAlchemy connections; bulkops' backends use the driver
connection underneath (SQLite: ``sqlite3``; PostgreSQL: psycopg), which SQLAlchemy's
``before_cursor_execute`` event never sees. So the count is taken one level lower, in
the driver, where both pass: the backend's statement tracer
(``bulkops.backends.resolve.statement_tracer``) on the run's Engine reports every ``execute``,
``executemany`` (one statement, many parameter sets), ``COPY`` and script statement
on every connection the Engine hands out. Everything counts (bulkops' table
reflection, temporary tables, the PostgreSQL backend's ``txid_current()`` per
transaction) except transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE):
drivers send the naive side's BEGIN and COMMIT without a cursor, so they are
invisible there and left out on both sides. This is also how ``Report.statements``
counts, although the Report leaves out reflection and setup statements that this
count includes.

On DynamoDB there are no statements but requests, and nothing to leave out: naive
code and bulkops share one boto3 client, and the DynamoDB tracer on it reports each
API call made on it, bulkops' DescribeTable included (bulkops' clients do not retry
inside botocore, so a call is one request).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

from ..backends.base import is_transaction_control
from ..backends.resolve import statement_tracer

__all__ = ["StatementCounter"]


class StatementCounter:
    """Counts the statements sent on a database handle (an Engine, a boto3 client)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transaction_control = 0
        self.log: list[str] | None = None  # statements seen, when kept (``keep_log``)
        # Parallel workers (``workers=``) send statements from several threads.
        self._lock = threading.Lock()

    def attach(self, handle: object) -> AbstractContextManager[None]:
        """Count what is sent on ``handle`` while the returned block runs (the Engine's
        connections: those it opens meanwhile and the pooled ones it hands out)."""
        tracer = statement_tracer(handle)
        return tracer.trace_statements(self.record, include_transaction_control=True)

    def record(self, statement: str) -> None:
        """One statement (or request) sent."""
        control = is_transaction_control(statement)
        with self._lock:
            if control:
                self.transaction_control += 1
                return
            self.statements += 1
            if self.log is not None:
                self.log.append(statement)

    def reset(self, *, keep_log: bool = False) -> None:
        self.statements = 0
        self.transaction_control = 0
        self.log = [] if keep_log else None
