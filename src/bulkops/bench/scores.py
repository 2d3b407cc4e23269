"""The scores workload: upsert N recommendation scores keyed by (user, product, algorithm).

Scores arrive with the user's e-mail and the product's SKU; about half of them replace
a score already stored (some with the same value), the rest are new.
Naive: one transaction for everything; per score, look up the user, the product and
the stored score, then insert or update (4 statements per score). bulkops: two
``get_many`` lookups and one ``upsert``.
"""

from __future__ import annotations

import random
from typing import Any

import sqlalchemy as sa

from ..store import Store
from . import shop
from .workload import Workload

__all__ = ["WORKLOAD"]

ALGORITHMS = ("als", "popular", "similar")

metadata = sa.MetaData()
scores = sa.Table(
    "scores",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("algorithm", sa.Text, primary_key=True),
    sa.Column("score", sa.Double, nullable=False),
)


def incoming(size: int) -> list[dict[str, Any]]:
    """``size`` scores; a triple may come twice (the later score wins)."""
    rng = random.Random(f"scores {size}")
    users, products = shop.user_count(size), shop.product_count(size)
    return [
        {
            "email": shop.email(rng.randint(1, users)),
            "sku": shop.sku(rng.randint(1, products)),
            "algorithm": rng.choice(ALGORITHMS),
            "score": rng.randrange(1000) / 1000,
        }
        for _ in range(size)
    ]


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    shop.metadata.create_all(engine)
    metadata.create_all(engine)
    shop.seed(db, size)
    rng = random.Random(f"scores stored {size}")
    stored = []
    for score in incoming(size):
        if rng.random() < 0.5:
            same = rng.random() < 0.3  # already up to date: left unchanged
            stored.append({**score, "score": score["score"] if same else rng.random()})
    _upsert(db, stored)


def _upsert(db: Store, batch: list[dict[str, Any]]) -> None:
    users = db.get_many("users", {s["email"] for s in batch}, key="email", columns=["id"])
    products = db.get_many("products", {s["sku"] for s in batch}, key="sku", columns=["id"])
    db.upsert(
        "scores",
        (
            {
                "user_id": users[s["email"]]["id"],
                "product_id": products[s["sku"]]["id"],
                "algorithm": s["algorithm"],
                "score": s["score"],
            }
            for s in batch
        ),
    )


def naive(engine: sa.Engine, size: int) -> None:
    users, products = shop.users, shop.products
    with engine.begin() as conn:
        for s in incoming(size):
            user_id = conn.execute(
                sa.select(users.c.id).where(users.c.email == s["email"])
            ).scalar_one()
            product_id = conn.execute(
                sa.select(products.c.id).where(products.c.sku == s["sku"])
            ).scalar_one()
            match = (
                (scores.c.user_id == user_id)
                & (scores.c.product_id == product_id)
                & (scores.c.algorithm == s["algorithm"])
            )
            stored = conn.execute(sa.select(scores.c.score).where(match)).first()
            if stored is None:
                conn.execute(
                    scores.insert().values(
                        user_id=user_id,
                        product_id=product_id,
                        algorithm=s["algorithm"],
                        score=s["score"],
                    )
                )
            elif stored.score != s["score"]:
                conn.execute(scores.update().where(match).values(score=s["score"]))


def bulk(db: Store, size: int) -> None:
    _upsert(db, incoming(size))


def check(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(scores).order_by(*scores.c))]


WORKLOAD = Workload(
    name="scores",
    summary="upsert N recommendation scores keyed by (user, product, algorithm)",
    sizes=(50, 500),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
