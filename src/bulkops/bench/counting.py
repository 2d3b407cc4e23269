"""Counting the statements each implementation sends, the same way for both.

Naive code goes through SQLAlchemy connections; bulkops' backends use the driver
connection underneath (SQLite: ``sqlite3``; PostgreSQL: psycopg), which SQLAlchemy's
``before_cursor_execute`` event never sees. So the count is taken one level lower, in
the driver, where both pass: each backend module's ``trace_engine_statements`` reports every
``execute``, ``executemany`` (one statement, many parameter sets), ``COPY`` and
script. Everything counts (bulkops' table reflection, temporary tables, the
PostgreSQL backend's ``txid_current()`` per transaction) except transaction control
(BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE): drivers send the naive side's
BEGIN and COMMIT without a cursor, so they are invisible there and left out on both
sides. This is also how ``Report.statements`` counts, although the Report leaves out
reflection and setup statements that this count includes.

On DynamoDB there are no statements but requests, and nothing to leave out: naive
code and bulkops share one boto3 client, and the DynamoDB backend's
``trace_client_requests`` reports each API call made on it, bulkops' DescribeTable
included (bulkops' clients do not retry inside botocore, so a call is one request).
"""

from __future__ import annotations

import re
import threading

import sqlalchemy as sa

__all__ = ["StatementCounter"]

_TRANSACTION_CONTROL = re.compile(
    r"\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE
)


class StatementCounter:
    """Counts the statements sent on an Engine's connections (opened after ``attach``)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transaction_control = 0
        self.log: list[str] | None = None  # statements seen, when kept (``keep_log``)
        # Parallel workers (``workers=``) send statements from several threads.
        self._lock = threading.Lock()

    def attach(self, engine: sa.Engine) -> None:
        name = engine.dialect.name
        if name == "sqlite":
            from ..backends.sqlite import trace_engine_statements as trace
        elif name == "postgresql":
            from ..backends.postgres import trace_engine_statements as trace
        else:
            raise ValueError(f"cannot count statements on {name!r} databases")
        trace(engine, self.record)

    def record(self, statement: str) -> None:
        """One statement (or request) sent."""
        control = _TRANSACTION_CONTROL.match(statement) is not None
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
