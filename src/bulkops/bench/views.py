"""The views workload: record N product views for known users and products.

Events arrive with the user's e-mail, the product's SKU and an event id; some were
delivered before (already recorded) or twice in the batch, and must be recorded once.
Naive: per event, one transaction looking up the user, the product and the event, then
inserting the view (4 statements per view). bulkops: two ``get_many`` lookups and one
``insert(on_conflict="ignore")``.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import sqlalchemy as sa

from ..store import Store
from . import shop
from .workload import Workload

__all__ = ["WORKLOAD"]

metadata = sa.MetaData()
product_views = sa.Table(
    "product_views",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("viewed_at", sa.DateTime, nullable=False),
)

START = dt.datetime(2024, 3, 1, 9, 0, 0)


def events(size: int) -> list[dict[str, Any]]:
    """``size`` view events: about 5% delivered before (see ``setup``), 2% twice."""
    rng = random.Random(f"views {size}")
    users, products = shop.user_count(size), shop.product_count(size)
    out: list[dict[str, Any]] = []
    for i in range(size):
        if out and rng.random() < 0.02:
            out.append(dict(rng.choice(out)))  # redelivered within the batch
            continue
        out.append(
            {
                "event_id": f"ev-{size}-{i:08d}",
                "email": shop.email(rng.randint(1, users)),
                "sku": shop.sku(rng.randint(1, products)),
                "viewed_at": START + dt.timedelta(seconds=i),
            }
        )
    return out


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    shop.metadata.create_all(engine)
    metadata.create_all(engine)
    shop.seed(db, size)
    rng = random.Random(f"views seen {size}")
    seen = [e for e in events(size) if rng.random() < 0.05]
    users = db.get_many("users", {e["email"] for e in seen}, key="email")
    products = db.get_many("products", {e["sku"] for e in seen}, key="sku")
    db.insert("product_views", [_view(e, users, products) for e in seen], on_conflict="ignore")


def _view(event: dict[str, Any], users: dict[Any, Any], products: dict[Any, Any]) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "user_id": users[event["email"]]["id"],
        "product_id": products[event["sku"]]["id"],
        "viewed_at": event["viewed_at"],
    }


def naive(engine: sa.Engine, size: int) -> None:
    users, products = shop.users, shop.products
    with engine.connect() as conn:
        for event in events(size):
            with conn.begin():
                user_id = conn.execute(
                    sa.select(users.c.id).where(users.c.email == event["email"])
                ).scalar_one()
                product_id = conn.execute(
                    sa.select(products.c.id).where(products.c.sku == event["sku"])
                ).scalar_one()
                seen = conn.execute(
                    sa.select(product_views.c.event_id).where(
                        product_views.c.event_id == event["event_id"]
                    )
                ).first()
                if seen is None:
                    conn.execute(
                        product_views.insert().values(
                            event_id=event["event_id"],
                            user_id=user_id,
                            product_id=product_id,
                            viewed_at=event["viewed_at"],
                        )
                    )


def bulk(db: Store, size: int) -> None:
    batch = events(size)
    users = db.get_many("users", {e["email"] for e in batch}, key="email", columns=["id"])
    products = db.get_many("products", {e["sku"] for e in batch}, key="sku", columns=["id"])
    db.insert("product_views", [_view(e, users, products) for e in batch], on_conflict="ignore")


def check(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(sa.select(product_views).order_by(product_views.c.event_id))
        ]


WORKLOAD = Workload(
    name="views",
    summary="record N product views for known users and products (lookups, then insert)",
    sizes=(100, 1000),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
