"""The shop the views, scores and orders workloads share: users and products."""

from __future__ import annotations

import random
from decimal import Decimal

import sqlalchemy as sa

from ..store import Store

__all__ = ["metadata", "products", "seed", "users"]

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("stock", sa.Integer, nullable=False),
)


def user_count(size: int) -> int:
    return max(100, size // 4)


def product_count(size: int) -> int:
    return max(50, size // 10)


def email(user: int) -> str:
    return f"user{user}@example.com"


def sku(product: int) -> str:
    return f"SKU-{product:06d}"


def seed(db: Store, size: int, *, stock: tuple[int, int] = (0, 100)) -> None:
    """Users and products for a workload of ``size`` (tables from ``metadata``)."""
    rng = random.Random(f"shop {size}")
    db.insert(
        "users",
        ({"id": u, "email": email(u), "name": f"User {u}"} for u in range(1, user_count(size) + 1)),
    )
    db.insert(
        "products",
        (
            {
                "id": p,
                "sku": sku(p),
                "name": f"Product {p}",
                "price": Decimal(rng.randrange(100, 20_000)) / 100,
                "stock": rng.randint(*stock),
            }
            for p in range(1, product_count(size) + 1)
        ),
    )
