"""The orders workload: process N orders of several lines each.

Each order takes its lines' quantities from stock, all lines or none, and stock never
goes below zero: an order that does not fit is recorded as rejected (no lines, stock
untouched). Orders are taken in the order they came, so an early order can use up
the stock a later one wanted.
Naive: one transaction per order; per line, read the product and write its new stock,
then insert the order and each line (about 10 statements per order of 3 lines).
bulkops: in one transaction, read every product involved with ``get_many``, decide
which orders fit, take the stock with one guarded ``adjust(min_value=0, atomic=True)``
(refused if someone else took stock meanwhile: then decide again), and ``insert``
the orders and lines.
"""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..store import Store
from . import shop
from .workload import Workload

__all__ = ["WORKLOAD"]

ATTEMPTS = 5

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("order_no", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
)
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("order_no", sa.Text, primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
)


def incoming(size: int) -> list[dict[str, Any]]:
    """``size`` orders of 3 or 4 lines (distinct products within an order)."""
    rng = random.Random(f"orders {size}")
    users, products = shop.user_count(size), shop.product_count(size)
    return [
        {
            "order_no": f"ORD-{i:08d}",
            "user_id": rng.randint(1, users),
            "lines": [
                (product, rng.randint(1, 5))
                for product in rng.sample(range(1, products + 1), rng.randint(3, 4))
            ],
        }
        for i in range(1, size + 1)
    ]


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    shop.metadata.create_all(engine)
    metadata.create_all(engine)
    # Stock low enough that some orders do not fit once others took theirs.
    shop.seed(db, size, stock=(5, 40))


def naive(engine: sa.Engine, size: int) -> None:
    products = shop.products
    with engine.connect() as conn:
        for order in incoming(size):
            with conn.begin() as transaction:
                total = Decimal(0)
                lines = []
                for line_no, (product_id, quantity) in enumerate(order["lines"], 1):
                    product = conn.execute(
                        sa.select(products.c.price, products.c.stock).where(
                            products.c.id == product_id
                        )
                    ).one()
                    if product.stock < quantity:
                        transaction.rollback()
                        break
                    conn.execute(
                        products.update()
                        .where(products.c.id == product_id)
                        .values(stock=product.stock - quantity)
                    )
                    price = Decimal(product.price)
                    total += price * quantity
                    lines.append((line_no, product_id, quantity, price))
                else:
                    conn.execute(
                        orders.insert().values(
                            order_no=order["order_no"],
                            user_id=order["user_id"],
                            status="accepted",
                            total=total,
                        )
                    )
                    for line_no, product_id, quantity, price in lines:
                        conn.execute(
                            order_lines.insert().values(
                                order_no=order["order_no"],
                                line_no=line_no,
                                product_id=product_id,
                                quantity=quantity,
                                price=price,
                            )
                        )
                    continue
            with conn.begin():
                conn.execute(
                    orders.insert().values(
                        order_no=order["order_no"],
                        user_id=order["user_id"],
                        status="rejected",
                        total=0,
                    )
                )


class _StockMoved(Exception):
    """Stock changed between reading it and taking it: decide again."""


def bulk(db: Store, size: int) -> None:
    batch = incoming(size)
    wanted = {product for order in batch for product, _ in order["lines"]}
    for _ in range(ATTEMPTS):
        try:
            with db.atomic():
                _process(db, batch, wanted)
            return
        except _StockMoved:
            continue
    raise RuntimeError(f"stock kept changing during {ATTEMPTS} attempts")


def _process(db: Store, batch: list[dict[str, Any]], wanted: set[int]) -> None:
    products = db.get_many("products", wanted, columns=["price", "stock"])
    stock = {pid: row["stock"] for pid, row in products.items()}
    taken: dict[int, int] = defaultdict(int)
    order_rows, line_rows = [], []
    for order in batch:
        fits = all(stock[p] >= q for p, q in order["lines"])
        total = Decimal(0)
        if fits:
            for line_no, (product_id, quantity) in enumerate(order["lines"], 1):
                price = products[product_id]["price"]
                stock[product_id] -= quantity
                taken[product_id] -= quantity
                total += price * quantity
                line_rows.append(
                    {"order_no": order["order_no"], "line_no": line_no,
                     "product_id": product_id, "quantity": quantity, "price": price}
                )  # fmt: skip
        order_rows.append(
            {"order_no": order["order_no"], "user_id": order["user_id"],
             "status": "accepted" if fits else "rejected", "total": total}
        )  # fmt: skip
    if taken:
        report = db.adjust("products", taken, column="stock", min_value=0, atomic=True)
        if not report.ok or report.not_found:
            raise _StockMoved(report.refused_keys)
    db.insert("orders", order_rows)
    db.insert("order_lines", line_rows)


def check(engine: sa.Engine) -> Any:
    products = shop.products
    with engine.connect() as conn:
        return {
            "stock": conn.execute(
                sa.select(products.c.id, products.c.stock).order_by(products.c.id)
            ).all(),
            "orders": conn.execute(sa.select(orders).order_by(orders.c.order_no)).all(),
            "lines": conn.execute(sa.select(order_lines).order_by(*order_lines.primary_key)).all(),
        }


WORKLOAD = Workload(
    name="orders",
    summary="process N orders of several lines: stock taken atomically, never below zero",
    sizes=(10, 100, 1000),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
