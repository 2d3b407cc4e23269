"""The users workload: create N users in chunks, then bring a second store in line.

The second store is a replica table, ``users_replica``, seeded with yesterday's copy of
the same N users, of which 2% have since changed (another plan and credit). The job:
create the N users in ``users``, then make the replica equal to them.

Naive: one INSERT per user, each committed on its own; then, for every user, a SELECT
of the replica's row, a comparison in Python and an UPDATE where it differs (the
usual hand-written "sync" loop). bulkops: ``insert`` in chunks (over two connections
where the database allows parallel writes), then one ``sync`` of the replica, which
finds the 2% with set-based statements and writes only those.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..store import Store
from .workload import CENT, Workload, money

__all__ = ["WORKLOAD"]

CHANGED_EVERY = 50  # 2% of the users changed since the replica's copy

metadata = sa.MetaData()


def _users_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("credit", sa.Numeric(12, 2), nullable=False),
    )


users = _users_table("users")
replica = _users_table("users_replica")
COMPARED = ("email", "plan", "credit")


def people(size: int) -> list[dict[str, Any]]:
    """Today's users."""
    return [
        {
            "id": i,
            "email": f"user{i:07d}@example.com",
            "plan": "pro" if i % CHANGED_EVERY == 0 else "free",
            "credit": (Decimal(i % 97) + Decimal("0.25")).quantize(CENT),
        }
        for i in range(1, size + 1)
    ]


def yesterday(size: int) -> list[dict[str, Any]]:
    """The replica's copy: the same users, but 2% with their old plan and credit."""
    rows = people(size)
    for row in rows:
        if row["id"] % CHANGED_EVERY == 0:
            row["plan"], row["credit"] = "free", Decimal("0.00")
    return rows


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    metadata.create_all(engine)
    db.insert("users_replica", yesterday(size))


def naive(engine: sa.Engine, size: int) -> None:
    rows = people(size)
    with engine.connect() as conn:
        for row in rows:
            with conn.begin():
                conn.execute(users.insert().values(**row))
        for row in rows:
            with conn.begin():
                stored = conn.execute(
                    sa.select(*(replica.c[c] for c in COMPARED)).where(replica.c.id == row["id"])
                ).first()
                if stored is None:
                    conn.execute(replica.insert().values(**row))
                elif tuple(stored) != tuple(row[c] for c in COMPARED):
                    conn.execute(
                        replica.update()
                        .where(replica.c.id == row["id"])
                        .values({c: row[c] for c in COMPARED})
                    )


def bulk(db: Store, size: int) -> None:
    rows = people(size)
    workers = 2 if db.capabilities.parallel_writes else 1
    db.insert("users", rows, chunk_size=max(100, size // 8), workers=workers)
    db.sync("users_replica", rows, key="id")


def check(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return [
            [
                (r.id, r.email, r.plan, money(r.credit))
                for r in conn.execute(sa.select(t).order_by(t.c.id))
            ]
            for t in (users, replica)
        ]


WORKLOAD = Workload(
    name="users",
    summary="create N users in chunks, then sync the 2% that changed to a replica table",
    sizes=(100, 1000),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
