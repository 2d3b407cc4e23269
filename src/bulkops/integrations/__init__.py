"""Framework adapters: the application's models and connections, as bulkops sees them.

``model_table`` says what table a model stands for (a Django model class, a SQLAlchemy
declarative class or ``Table``); ``caller_connection`` describes a framework's
connection (Django's, a SQLAlchemy ORM Session) for a backend to run on. Each
framework's module is imported only when one of its objects is given, so bulkops never
imports Django or SQLAlchemy's ORM on its own.
"""

from __future__ import annotations

from ..backends.base import CallerConnection, StatementTracer
from .model import ModelTable

__all__ = [
    "ModelTable",
    "caller_connection",
    "framework_tracer",
    "is_framework_connection",
    "model_table",
]


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
