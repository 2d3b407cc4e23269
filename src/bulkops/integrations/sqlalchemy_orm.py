"""SQLAlchemy: a declarative class's or ``Table``'s table, and an ORM Session as
bulkops runs on it.

A Session owns its connection and transaction: bulkops works on
``session.connection()`` inside the Session's transaction (savepoints for its
chunks), flushes the Session's pending changes before it sends anything, and never
commits or rolls back: ``session.commit()`` / ``session.rollback()`` do. Instances
the Session has loaded are not refreshed by bulkops' writes (``session.expire_all()``
or ``populate_existing`` reloads them).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm.attributes import instance_state

from ..backends.base import CallerConnection, StatementTracer
from ..plan import RefusedRow
from .model import ModelTable

__all__ = ["session_connection", "session_tracer", "sqlalchemy_model_table"]


def sqlalchemy_model_table(model: Any) -> ModelTable | None:
    """The table of a SQLAlchemy ``Table`` or a mapped (declarative) class."""
    if isinstance(model, sa.Table):
        table, mapper = model, None
    else:
        mapper = sa.inspect(model, raiseerr=False)
        if not isinstance(mapper, orm.Mapper) or not isinstance(mapper.local_table, sa.Table):
            return None
        table = mapper.local_table
    aliases: dict[str, str] = {}
    attributes: list[tuple[str, str]] = []
    if mapper is not None:
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if isinstance(column, sa.Column) and column.table is table:
                attributes.append((prop.key, column.name))
                if prop.key != column.name:
                    aliases[prop.key] = column.name
    unique: list[tuple[str, ...]] = [
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    ]
    unique += [(c.name,) for c in table.columns if c.unique]
    unique += [tuple(c.name for c in index.columns) for index in table.indexes if index.unique]
    pk = tuple(c.name for c in table.primary_key.columns)
    auto = table.autoincrement_column
    name = table.name if table.schema is None else f"{table.schema}.{table.name}"

    # An Enum column stores a member as SQLAlchemy writes it: its name, or what the
    # type's values_callable gives (the labels of optuna's trialstate, say), never
    # the member's str() ("TrialState.COMPLETE").
    stored = {
        c.name: dict(zip(c.type.enum_class.__members__.values(), c.type.enums, strict=True))
        for c in table.columns
        if isinstance(c.type, sa.Enum) and c.type.enum_class is not None
    }

    def mapping_row(row: dict[str, Any]) -> dict[str, Any]:
        for column, labels in stored.items():
            value = row.get(column)
            if isinstance(value, enum.Enum) and value in labels:
                row[column] = labels[value]
        return row

    # What the ORM's flush does with a new instance's None (mlflow's SqlMetric(key=...,
    # value=...) leaves timestamp, step and is_nan None): the column's Python default
    # fills it; one with only a server default is left out for the database to fill.
    # Types that store None as a value of their own (JSON's null) keep it, and so do
    # instances loaded from the database (the ORM applies defaults only on INSERT).
    defaults = {
        c.name: c.default
        for c in table.columns
        if isinstance(c.default, sa.ColumnDefault)
        and (c.default.is_scalar or c.default.is_callable)
        and not c.type.should_evaluate_none
    }
    served = frozenset(
        c.name
        for c in table.columns
        if c.server_default is not None
        and c.name not in defaults
        and not c.type.should_evaluate_none
    )

    defaulted = (*defaults, *served)

    def mapping_defaults(row: dict[str, Any]) -> dict[str, Any]:
        # An insert's mapping: what it leaves out takes the Python default, as Core's
        # insert() gives it (a value given, None included, is kept).
        for column, default in defaults.items():
            if column not in row:
                row[column] = _default_value(default, row)
        return row

    def instance_row(instance: Any) -> dict[str, Any]:
        row = {column: getattr(instance, key) for key, column in attributes}
        # (Only a new instance, one the ORM would INSERT, and only where one is None.)
        if (
            defaulted
            and None in map(row.__getitem__, defaulted)
            and not instance_state(instance).has_identity
        ):
            for column, default in defaults.items():
                if row[column] is None:
                    row[column] = _default_value(default, row)
            for column in served:
                if row[column] is None:
                    del row[column]
        return mapping_row(row)

    # A TypeDecorator's own bind processing, as the ORM and Core apply it (Airflow's
    # UtcDateTime refuses a naive datetime and gives UTC; a PickleType pickles; an
    # Interval is a datetime past the epoch where the database has no interval type).
    decorated = [(c.name, c.type) for c in table.columns if isinstance(c.type, sa.TypeDecorator)]

    def bind_values(vendor: str) -> Callable[[dict[str, Any]], Any] | None:
        if not decorated:
            return None
        dialect = sa.dialects.registry.load(vendor)()
        steps = [(c, step) for c, t in decorated if (step := _bind_step(t, dialect)) is not None]
        if not steps:
            return None

        def bind(row: dict[str, Any]) -> Any:
            column = ""
            try:
                for column, step in steps:
                    value = row.get(column)
                    if value is not None:
                        row[column] = step(value)
            except Exception as error:  # whatever the type's own code raises
                return RefusedRow(row, column, str(error) or type(error).__name__)
            return row

        return bind

    return ModelTable(
        name=name,
        model=model,
        aliases=aliases,
        primary_key=pk,
        unique=tuple(dict.fromkeys(u for u in unique if u)),
        instance_row=instance_row if mapper is not None else None,
        mapping_row=mapping_row if stored else None,
        instance_type=mapper.class_ if mapper is not None else None,
        assigned=frozenset({auto.name}) if auto is not None else frozenset(),
        # SQLAlchemy's SQLite DATETIME keeps "2024-01-01 12:00:00.000000", which the
        # model's queries compare as text (Airflow's UtcDateTime is one too).
        micro_datetimes=frozenset(
            c.name
            for c in table.columns
            if isinstance(c.type, sa.DateTime)
            or (
                isinstance(c.type, sa.TypeDecorator)
                and isinstance(c.type.impl_instance, sa.DateTime)
            )
        ),
        bind_values=bind_values,
        mapping_defaults=mapping_defaults if defaults else None,
    )


def _bind_step(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """What a TypeDecorator's own layer makes of a value for ``dialect`` (not its
    impl's, whose values bulkops' codecs take), or None where it leaves values be."""
    impl = type_.dialect_impl(dialect)
    if not isinstance(impl, sa.TypeDecorator):
        return None  # the dialect's own type (PostgreSQL's INTERVAL)
    if type(type_).process_bind_param is not sa.TypeDecorator.process_bind_param:
        return lambda value: impl.process_bind_param(value, dialect)
    if isinstance(type_, sa.PickleType):
        return lambda value: type_.pickler.dumps(value, type_.protocol)
    if isinstance(type_, sa.Interval):
        epoch = type_.epoch
        return lambda value: epoch + value if isinstance(value, dt.timedelta) else value
    return None


class _DefaultContext:
    """What a column default that takes SQLAlchemy's execution context reads: the
    row's values (``context.get_current_parameters()``), by column name."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.current_parameters = row

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


def _default_value(default: Any, row: dict[str, Any]) -> Any:
    """A Column's Python default for one row: its value, or what its function gives
    (SQLAlchemy wraps a function of no arguments in one that takes the context)."""
    if default.is_scalar:
        return default.arg
    return default.arg(_DefaultContext(row))


def session_connection(session: Any) -> CallerConnection | None:
    """An ORM ``Session`` as bulkops runs on it (inside its transaction)."""
    if not isinstance(session, orm.Session):
        return None
    bind = session.get_bind()

    def driver() -> Any:
        # session.connection() begins the Session's transaction where none is open.
        return session.connection().connection.driver_connection

    def sync() -> None:
        if session.new or session.deleted or session.dirty:
            session.flush()

    return CallerConnection(
        vendor=bind.dialect.name,
        driver=driver,
        # A Session works in a transaction of its own, always (begun at first use);
        # its commit() and rollback() end it.
        in_transaction=lambda: True,
        sync=sync,
        describe="the SQLAlchemy Session",
    )


def session_tracer(session: Any) -> StatementTracer | None:
    """A Session's statements: those on its Connection (``session.connection()``)."""
    if not isinstance(session, orm.Session):
        return None
    from ..backends.resolve import statement_tracer

    return statement_tracer(session.connection())
