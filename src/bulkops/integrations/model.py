"""What a model (a Django model class, a SQLAlchemy declarative class or Table) says
about its table: the part every framework adapter shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["ModelTable"]


@dataclass(frozen=True)
class ModelTable:
    """The table a model stands for, as the model declares it.

    ``aliases`` map the model's other names for a column (Django's field name ``user``
    and attname ``user_id``, a SQLAlchemy attribute key) to the column's name;
    ``primary_key`` and ``unique`` are column names; ``instance_row`` turns an instance
    of the model into ``{column: value}``.
    """

    name: str
    model: object
    aliases: Mapping[str, str]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...]
    instance_row: Callable[[Any], Any] | None = None
    # A mapping's values as the model's fields write them (after renaming): None, or
    # a function of a new dict. It, and instance_row, may give a plan.RefusedRow for
    # a row whose value a field cannot convert.
    mapping_row: Callable[[dict[str, Any]], Any] | None = None
    instance_type: type | None = None
    # Columns left out of an instance's row while their value is None: the
    # database assigns them (an auto-incremented primary key).
    assigned: frozenset[str] = field(default_factory=frozenset)
    # Columns whose durations (timedelta) the model stores as a count of microseconds
    # where the table's column is an integer (Django's DurationField on SQLite, which
    # has no interval type).
    durations: frozenset[str] = field(default_factory=frozenset)
    # Columns whose aware datetimes the model stores as naive UTC where the table's
    # column keeps whatever it is given (Django's DateTimeField under USE_TZ on
    # SQLite: text its queries compare as text).
    utc_datetimes: frozenset[str] = field(default_factory=frozenset)
    # Columns whose datetimes the model stores as text with six digits of microseconds
    # where the column is text (SQLAlchemy's DateTime on SQLite).
    micro_datetimes: frozenset[str] = field(default_factory=frozenset)
    # Conversions that depend on the database, given its name (a SQLAlchemy type's
    # own bind processing for that dialect): a function of a row's dict that gives
    # the dict or a plan.RefusedRow; None where the model has none.
    bind_values: Callable[[str], Callable[[dict[str, Any]], Any] | None] | None = None
    # What an insert's mapping leaves out, filled with the model's Python defaults (a
    # function of the mapping's dict, after renaming), or None.
    mapping_defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def adapter(
        self, integer_columns: frozenset[str], kept_datetimes: frozenset[str], vendor: str
    ) -> Callable[[Any], Any]:
        """``row`` for the table as it is: ``integer_columns`` are its integer columns,
        ``kept_datetimes`` its datetime columns that store a value's offset as given,
        ``vendor`` the database (``Capabilities.name``)."""
        counted = tuple(c for c in self.durations if c in integer_columns)
        utc = tuple(c for c in self.utc_datetimes if c in kept_datetimes)
        bound = self.bind_values(vendor) if self.bind_values is not None else None
        if not counted and not utc and bound is None:
            return self.row

        def row(raw: Any) -> Any:
            values = self.row(raw)
            if not isinstance(values, dict):
                return values  # a RefusedRow, or not a mapping: refused as it is
            if values is raw:
                values = dict(values)  # the caller's own dict stays as it was
            for name in counted:
                value = values.get(name)
                if isinstance(value, timedelta):
                    values[name] = value // timedelta(microseconds=1)
            for name in utc:
                value = values.get(name)
                if isinstance(value, datetime) and value.tzinfo is not None:
                    if value.tzinfo is not UTC:
                        value = value.astimezone(UTC)
                    values[name] = value.replace(tzinfo=None)
            return values if bound is None else bound(values)

        return row

    def insert_adapter(self, adapt: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
        """``adapt`` (the table's ``adapter``) for an insert: mappings' left-out columns
        take the model's defaults first; None where the model has none."""
        fill = self.mapping_defaults
        if fill is None:
            return None
        instance_type = self.instance_type

        def row(raw: Any) -> Any:
            if isinstance(raw, Mapping) and not (
                instance_type is not None and isinstance(raw, instance_type)
            ):
                raw = fill({self.aliases.get(k, k): v for k, v in raw.items()})
            return adapt(raw)

        return row

    def column(self, name: str) -> str:
        return self.aliases.get(name, name)

    def row(self, row: Any) -> Any:
        """A row of this table as a mapping of column names: an instance of the model,
        or a mapping that may use the model's names for columns (other rows pass)."""
        if self.instance_type is not None and isinstance(row, self.instance_type):
            assert self.instance_row is not None
            values = self.instance_row(row)
            for name in self.assigned if isinstance(values, dict) else ():
                if values.get(name, 0) is None:
                    del values[name]
            return values
        if isinstance(row, Mapping) and self.mapping_row is not None:
            return self.mapping_row({self.aliases.get(k, k): v for k, v in row.items()})
        if isinstance(row, Mapping) and any(k in self.aliases for k in row):
            return {self.aliases.get(k, k): v for k, v in row.items()}
        return row
