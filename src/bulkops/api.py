"""connect(): a Store for a database URL, an Engine or a client."""

from __future__ import annotations

from typing import Any, Literal

from .backends.resolve import caller_connection, open_backend
from .events import EventCallback
from .integrations import caller_connection as framework_connection
from .retry import RetryPolicy
from .store import Store

__all__ = ["connect"]


def connect(
    target: Any,
    *,
    retry: RetryPolicy | None = None,
    run_log: bool | Literal["auto"] = False,
    label: str | None = None,
    on_event: EventCallback | None = None,
    **options: Any,
) -> Store:
    """Open a Store.

    ``target`` is a URL (``sqlite:///shop.db``, ``sqlite://`` for memory,
    ``postgresql://user@host:5432/db``,
    ``dynamodb://?region=eu-west-1[&endpoint_url=http://localhost:8000][&profile=p]``),
    a SQLAlchemy ``Engine`` (``sqlite`` or ``postgresql+psycopg``), a boto3 DynamoDB
    client or resource, or a connection the application holds: a SQLAlchemy
    ``Connection`` or ORM ``Session``, a ``sqlite3`` or psycopg 3 connection, or Django's
    ``connection`` (``connections[alias]``). On such a connection bulkops joins the
    transaction open there (its chunks become savepoints; it never commits or rolls
    back what it did not open) and, where none is open, works in short transactions
    of its own as on an Engine. ``retry`` is the default RetryPolicy of every call on this
    Store; ``run_log=True`` records every verb call in the database's ``bulkops_runs``
    table (``"auto"``: where the database can keep one; ``label``: the default label
    of those rows); ``on_event`` receives the calls' events (``Store.subscribe``).
    Other ``options`` go to ``sqlalchemy.create_engine`` (or, for DynamoDB URLs, to
    ``boto3``'s ``client()``).
    """
    caller = framework_connection(target) or caller_connection(target)
    backend = open_backend(caller or target, **options)
    if run_log == "auto":
        # Not on a caller's connection: the run log commits rows of its own.
        run_log = backend.capabilities.run_log and caller is None
    return Store(backend, retry=retry, run_log=run_log, label=label, on_event=on_event)
