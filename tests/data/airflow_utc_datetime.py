"""An excerpt of Apache Airflow 3.3.2's airflow/utils/sqlalchemy.py (the PyPI package
apache-airflow-core 3.3.2; https://github.com/apache/airflow, Apache-2.0, Copyright The
Apache Software Foundation): the UtcDateTime column type its models' timestamps use
(TaskInstance.start_date, DagRun.logical_date, Log.dttm, ...). As published, but for
the imports: Airflow's ``utc`` and ``make_naive`` are the standard library's UTC and
a naive UTC value here."""

# ruff: noqa: E501, SIM108  (the published text)

import datetime

from sqlalchemy import TIMESTAMP
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

utc = datetime.UTC


def make_naive(value, timezone):
    return value.astimezone(timezone).replace(tzinfo=None)


class UtcDateTime(TypeDecorator):
    """
    Similar to :class:`~sqlalchemy.types.TIMESTAMP` with ``timezone=True`` option, with some differences.

    - Never silently take naive :class:`~datetime.datetime`, instead it
      always raise :exc:`ValueError` unless time zone aware value.
    - :class:`~datetime.datetime` value's :attr:`~datetime.datetime.tzinfo`
      is always converted to UTC.
    - Unlike SQLAlchemy's built-in :class:`~sqlalchemy.types.TIMESTAMP`,
      it never return naive :class:`~datetime.datetime`, but time zone
      aware value, even with SQLite or MySQL.
    - Always returns TIMESTAMP in UTC.
    """

    impl = TIMESTAMP(timezone=True)

    cache_ok = True

    def process_bind_param(self, value, dialect):
        if not isinstance(value, datetime.datetime):
            if value is None:
                return None
            raise TypeError(f"expected datetime.datetime, not {value!r}")
        if value.tzinfo is None:
            raise ValueError("naive datetime is disallowed")
        if dialect.name == "mysql":
            # For mysql versions prior 8.0.19 we should send timestamps as naive values in UTC
            # see: https://dev.mysql.com/doc/refman/8.0/en/date-and-time-literals.html
            return make_naive(value, timezone=utc)
        return value.astimezone(utc)

    def process_result_value(self, value, dialect):
        """
        Process DateTimes from the DB making sure to always return UTC.

        Not using timezone.convert_to_utc as that converts to configured TIMEZONE
        while the DB might be running with some other setting. We assume UTC
        datetimes in the database.
        """
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=utc)
            else:
                value = value.astimezone(utc)

        return value

    def load_dialect_impl(self, dialect):
        if dialect.name == "mysql":
            return mysql.TIMESTAMP(fsp=6)
        return super().load_dialect_impl(dialect)
