"""connect(): a Store for a database URL, an Engine or a client."""

from __future__ import annotations

from typing import Any, Literal

from .backends.resolve import open_backend
from .events import EventCallback
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
    a SQLAlchemy ``Engine`` (``sqlite`` or ``postgresql+psycopg``), or a boto3 DynamoDB
    client or resource. ``retry`` is the default RetryPolicy of every call on this
    Store; ``run_log=True`` records every verb call in the database's ``bulkops_runs``
    table (``"auto"``: where the database can keep one; ``label``: the default label
    of those rows); ``on_event`` receives the calls' events (``Store.subscribe``).
    Other ``options`` go to ``sqlalchemy.create_engine`` (or, for DynamoDB URLs, to
    ``boto3``'s ``client()``).
    """
    backend = open_backend(target, **options)
    if run_log == "auto":
        run_log = backend.capabilities.run_log
    return Store(backend, retry=retry, run_log=run_log, label=label, on_event=on_event)
