"""Django: a model's table, and Django's connection as bulkops runs on it.

Statements go through ``connection.cursor()``, so Django sees them
(``CaptureQueriesContext``, ``assertNumQueries``, ``connection.queries``); a
``transaction.atomic()`` block (or autocommit turned off) is the caller's transaction,
which bulkops joins with savepoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..backends.base import CallerConnection, statement_filter
from ..plan import RefusedRow
from .model import ModelTable

__all__ = ["DjangoTracer", "django_connection", "django_model_table"]


def django_model_table(model: Any) -> ModelTable | None:
    """The table of a Django model class (``Model._meta``)."""
    meta = getattr(model, "_meta", None)
    if meta is None or not isinstance(model, type):
        return None
    fields = [f for f in meta.concrete_fields]
    aliases: dict[str, str] = {}
    for f in fields:
        for name in (f.name, f.attname):
            if name != f.column:
                aliases[name] = f.column
    if meta.pk is not None and "pk" not in aliases and meta.pk.column != "pk":
        aliases["pk"] = meta.pk.column
    unique: list[tuple[str, ...]] = [(f.column,) for f in fields if f.unique and not f.primary_key]
    for together in meta.unique_together:
        unique.append(tuple(meta.get_field(n).column for n in together))
    for constraint in meta.total_unique_constraints:
        unique.append(tuple(meta.get_field(n).column for n in constraint.fields))
    pk = (meta.pk.column,) if meta.pk is not None else ()
    auto = meta.auto_field
    attnames = [(f.attname, f.column) for f in fields]
    # Values as Django's bulk_create writes them: a JSONField's document as its JSON
    # text (SQLite's column is text), an auto_now/auto_now_add field left None set now.
    documents = {f.column: f for f in fields if f.get_internal_type() == "JSONField"}
    stamped = [
        f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    # A field of a class outside Django that converts its values itself (django-
    # timezone-field's TimeZoneField, in django-celery-beat's CrontabSchedule, holds a
    # ZoneInfo and stores its name) writes what its get_prep_value gives, as Django's
    # own writes do. So do a DateTimeField under USE_TZ (a naive datetime is a time in
    # the project's TIME_ZONE, of which Django warns, not in UTC) and a
    # GenericIPAddressField (IPv6 in its compressed lower-case form, which Django's
    # lookups compare as text where the column is text).
    from django.conf import settings
    from django.db.models import DateTimeField, GenericIPAddressField

    zoned = bool(settings.USE_TZ)
    prepared = {f.column: f for f in fields if _converts_itself(f)}
    # (None and an aware datetime are values these keep as they are: not asked.)
    checked = {
        f.column: f
        for f in fields
        if (zoned and isinstance(f, DateTimeField)) or isinstance(f, GenericIPAddressField)
    }

    def convert(row: dict[str, Any], instance: bool) -> Any:
        """The row's values as the fields write them; a value a field cannot convert
        (an invalid time zone, a document JSON cannot encode) refuses the row."""
        column = ""
        try:
            for column, f in prepared.items():
                if column in row:
                    row[column] = f.get_prep_value(row[column])
            for column, f in checked.items():
                value = row.get(column)
                if value is not None and not (isinstance(value, datetime) and value.tzinfo):
                    row[column] = f.get_prep_value(value)
            # A str for a JSON column given in a mapping is JSON text (as from a
            # file); an instance's str is a document, as are dicts and lists.
            for column, f in documents.items():
                value = row.get(column)
                if value is not None if instance else isinstance(value, dict | list):
                    row[column] = json.dumps(value, cls=f.encoder)
        except Exception as error:  # whatever the field's own code raises
            return RefusedRow(row, column, _message(error))
        return row

    # A field with a db_default (Django 5) holds DatabaseDefault until saved: the
    # column is left out, for the database to fill, as bulk_create writes DEFAULT.
    from django.db.models import expressions

    database_default: Any = getattr(expressions, "DatabaseDefault", ())  # (Django < 5: none)
    db_defaulted = [f.column for f in fields if database_default and f.has_db_default()]

    def instance_row(instance: Any) -> Any:
        for f in stamped:
            if getattr(instance, f.attname) is None:
                f.pre_save(instance, add=True)
        row = {column: getattr(instance, attname) for attname, column in attnames}
        for column in db_defaulted:
            if isinstance(row[column], database_default):
                del row[column]
        return convert(row, True)

    def mapping_row(row: dict[str, Any]) -> Any:
        return convert(row, False)

    # What an insert's mapping leaves out takes the field's Python default, as a new
    # instance does (``Model(**row)``, then ``bulk_create``): a ``default=`` value or
    # callable (``timezone.now``, ``uuid.uuid4``, ``dict``), and an auto_now field the
    # time now. A None given stays NULL.
    defaulted = [
        f for f in fields if f.has_default() and f.column not in db_defaulted and f is not auto
    ]

    def mapping_defaults(row: dict[str, Any]) -> dict[str, Any]:
        for f in defaulted:
            if f.column not in row:
                row[f.column] = f.get_default()
        for f in stamped:  # auto_now / auto_now_add: the time now, as save() sets it
            if f.column not in row:
                row[f.column] = f.pre_save(_Stamped(), add=True)
        return row

    return ModelTable(
        name=meta.db_table,
        model=model,
        aliases=aliases,
        primary_key=pk,
        unique=tuple(dict.fromkeys(unique)),
        instance_row=instance_row,
        mapping_row=mapping_row if documents or prepared or checked else None,
        instance_type=model,
        assigned=frozenset({auto.column}) if auto is not None else frozenset(),
        durations=frozenset(f.column for f in fields if f.get_internal_type() == "DurationField"),
        utc_datetimes=frozenset(f.column for f in fields if zoned and isinstance(f, DateTimeField)),
        mapping_defaults=mapping_defaults if defaulted or stamped else None,
    )


class _Stamped:
    """What an auto_now field's ``pre_save`` sets its time on, for a mapping's row."""


def _message(error: Exception) -> str:
    """What a field's conversion error says (a ValidationError's messages)."""
    messages = getattr(error, "messages", None)
    if isinstance(messages, list) and messages:
        return "; ".join(map(str, messages))
    return str(error) or type(error).__name__


def _converts_itself(field: Any) -> bool:
    """Whether a field's get_prep_value is its own class's, not one of Django's
    (whose values bulkops converts for each backend itself)."""
    for kind in type(field).__mro__:
        if "get_prep_value" in vars(kind):
            return not kind.__module__.startswith("django.")
    return False


def django_connection(connection: Any) -> CallerConnection | None:
    """Django's ``connection`` (or ``connections[alias]``) as bulkops runs on it."""
    if not hasattr(connection, "in_atomic_block") or not hasattr(connection, "vendor"):
        return None

    def driver() -> Any:
        connection.ensure_connection()
        return connection.connection

    def in_transaction() -> bool:
        return bool(connection.in_atomic_block) or not connection.get_autocommit()

    return CallerConnection(
        vendor=connection.vendor,
        driver=driver,
        in_transaction=in_transaction,
        cursor=connection.cursor,
        describe=f"Django connection {connection.alias!r}",
    )


class DjangoTracer:
    """Django's count of a connection's queries (``StatementTracer``): what its cursors
    log, as ``CaptureQueriesContext`` and ``assertNumQueries`` count (BEGIN, SAVEPOINT
    and RELEASE included when asked). The statements are reported when the block
    ends."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    @contextmanager
    def trace_statements(
        self, on_statement: Callable[[str], None], *, include_transaction_control: bool = False
    ) -> Iterator[None]:
        from django.test.utils import CaptureQueriesContext

        report = statement_filter(
            on_statement, include_transaction_control=include_transaction_control
        )
        with CaptureQueriesContext(self.connection) as queries:
            yield
        for query in queries.captured_queries:
            report(str(query["sql"]))
