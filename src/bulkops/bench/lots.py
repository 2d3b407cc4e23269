"""The lots workload: allocate N formatted lot numbers for a product, create the lots.

Lot numbers are ``LOT-<product>-`` and a 7-digit number, counted per product from 1.
Naive: one transaction per lot; read the product's counter, write it back plus one,
insert the lot (3 statements per lot). bulkops: one ``sequence().allocate(N)`` and one
``insert``. The end state compared is the lots themselves: the naive code keeps its
counter in a table of its own, bulkops in its sequence.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..store import Store
from .workload import Workload

__all__ = ["WORKLOAD"]

PRODUCT = 42
PREFIX = f"LOT-{PRODUCT}-"
PADDING = 7

metadata = sa.MetaData()
lots = sa.Table(
    "lots",
    metadata,
    sa.Column("lot_number", sa.Text, primary_key=True),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
)
lot_counters = sa.Table(
    "lot_counters",
    metadata,
    sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_value", sa.Integer, nullable=False),
)


def quantity(i: int) -> int:
    """The quantity of the i-th lot made (0-based)."""
    return 100 + i % 7 * 25


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    metadata.create_all(engine)
    db.insert("lot_counters", [{"product_id": PRODUCT, "next_value": 1}])


def naive(engine: sa.Engine, size: int) -> None:
    counter = lot_counters.c.product_id == PRODUCT
    with engine.connect() as conn:
        for i in range(size):
            with conn.begin():
                number = conn.execute(
                    sa.select(lot_counters.c.next_value).where(counter)
                ).scalar_one()
                conn.execute(lot_counters.update().where(counter).values(next_value=number + 1))
                conn.execute(
                    lots.insert().values(
                        lot_number=PREFIX + str(number).zfill(PADDING),
                        product_id=PRODUCT,
                        quantity=quantity(i),
                    )
                )


def bulk(db: Store, size: int) -> None:
    numbers = db.sequence(f"lot:{PRODUCT}", prefix=PREFIX, padding=PADDING).allocate(size)
    db.insert(
        "lots",
        (
            {"lot_number": number, "product_id": PRODUCT, "quantity": quantity(i)}
            for i, number in enumerate(numbers)
        ),
    )


def check(engine: sa.Engine) -> Any:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(lots).order_by(lots.c.lot_number))]


WORKLOAD = Workload(
    name="lots",
    summary="allocate N formatted lot numbers for a product and create the lot rows",
    sizes=(100, 1000),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
