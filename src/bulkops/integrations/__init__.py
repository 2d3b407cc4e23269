"""Framework adapters: the application's models and connections, as bulkops sees them.

``model_table`` says what table a model stands for (a Django model class, a SQLAlchemy
declarative class or ``Table``); ``caller_connection`` describes a framework's
connection (Django's, a SQLAlchemy ORM Session) for a backend to run on. Each
framework's module is imported only when one of its objects is given, so bulkops never
imports Django or SQLAlchemy's ORM on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import CallerConnection, StatementTracer

__all__ = [
    "ModelTable",
    "caller_connection",
    "framework_tracer",
    "is_framework_connection",
    "model_table",
]


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
    instance_row: Callable[[Any], dict[str, Any]] | None = None
    instance_type: type | None = None
    # Columns left out of an instance's row while their value is None: the
    # database assigns them (an auto-incremented primary key).
    assigned: frozenset[str] = field(default_factory=frozenset)

    def column(self, name: str) -> str:
        return self.aliases.get(name, name)

    def row(self, row: Any) -> Any:
        """A row of this table as a mapping of column names: an instance of the model,
        or a mapping that may use the model's names for columns (other rows pass)."""
        if self.instance_type is not None and isinstance(row, self.instance_type):
            assert self.instance_row is not None
            values = self.instance_row(row)
            for name in self.assigned:
                if values.get(name, 0) is None:
                    del values[name]
            return values
        if isinstance(row, Mapping) and any(k in self.aliases for k in row):
            return {self.aliases.get(k, k): v for k, v in row.items()}
        return row


def _framework(target: object) -> str | None:
    """Which framework ``target`` (a model class, a Table, a connection) belongs to."""
    kinds = target.__mro__ if isinstance(target, type) else type(target).__mro__
    for kind in kinds:
        module = kind.__module__
        if module.startswith("django."):
            return "django"
        if module.startswith("sqlalchemy."):
            return "sqlalchemy"
    return None


def model_table(target: object) -> ModelTable | None:
    """The table of a model class or SQLAlchemy ``Table``; None for anything else."""
    if isinstance(target, str):
        return None
    framework = _framework(target)
    if framework == "django":
        from .django import django_model_table

        return django_model_table(target)
    if framework == "sqlalchemy" or (
        isinstance(target, type) and _framework(type(target)) == "sqlalchemy"
    ):
        from .sqlalchemy_orm import sqlalchemy_model_table

        return sqlalchemy_model_table(target)
    return None


def caller_connection(target: object) -> CallerConnection | None:
    """A framework's connection as a backend runs on it (Django's connection, a
    SQLAlchemy ORM Session); None when ``target`` is neither."""
    framework = _framework(target)
    if framework == "django":
        from .django import django_connection

        return django_connection(target)
    if framework == "sqlalchemy":
        from .sqlalchemy_orm import session_connection

        return session_connection(target)
    return None


def is_framework_connection(target: object) -> bool:
    """Whether ``target`` is Django's connection or a SQLAlchemy ORM Session."""
    return _framework(target) in ("django", "sqlalchemy") and caller_connection(target) is not None


def framework_tracer(target: object) -> StatementTracer | None:
    """The statement tracer for a framework's connection: Django's counts what its
    own cursors log (as ``CaptureQueriesContext`` does); a Session's is its
    Connection's. None for anything else."""
    framework = _framework(target)
    if framework == "django":
        from .django import DjangoTracer, django_connection

        return DjangoTracer(target) if django_connection(target) is not None else None
    if framework == "sqlalchemy":
        from .sqlalchemy_orm import session_tracer

        return session_tracer(target)
    return None
