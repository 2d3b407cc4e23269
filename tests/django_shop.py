"""The shop of ``bulkops bench`` (views, scores, orders) as a Django app: models, and
each request written with bulkops inside ``transaction.atomic()``.

Imported once Django's settings are configured (``tests/test_django.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import models

import bulkops
from bulkops.bench import orders as bench_orders
from bulkops.bench import scores as bench_scores
from bulkops.bench import shop
from bulkops.bench import views as bench_views


class User(models.Model):
    email = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "shop"


class Product(models.Model):
    sku = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    stock = models.IntegerField()

    class Meta:
        app_label = "shop"


class ProductView(models.Model):
    event_id = models.CharField(max_length=40, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE, db_column="product_ref")
    viewed_at = models.DateTimeField()

    class Meta:
        app_label = "shop"


class Score(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    algorithm = models.CharField(max_length=20)
    score = models.FloatField()

    class Meta:
        app_label = "shop"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "product", "algorithm"], name="score_per_algorithm"
            )
        ]


class Order(models.Model):
    order_no = models.CharField(max_length=20, primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE)
    status = models.CharField(max_length=20)
    total = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        app_label = "shop"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE)
    line_no = models.IntegerField()
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        app_label = "shop"
        unique_together = [("order", "line_no")]


class Review(models.Model):
    """A model as apps write them: a UUID key (CHAR(32) in SQLite), a foreign key, a
    decimal, a JSON document and auto_now timestamps."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    rating = models.DecimalField(max_digits=3, decimal_places=1)
    details = models.JSONField(null=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "shop"


MODELS = (User, Product, ProductView, Score, Order, OrderLine, Review)
UTC = dt.UTC


def seed(db: bulkops.Store, size: int, *, stock: tuple[int, int] = (0, 100)) -> None:
    """Users and products, as the bench seeds them (model instances as rows)."""
    import random

    rng = random.Random(f"shop {size}")
    db.insert(
        User,
        (User(id=u, email=shop.email(u), name=f"User {u}")
         for u in range(1, shop.user_count(size) + 1)),
    )  # fmt: skip
    db.insert(
        Product,
        (
            Product(
                id=p,
                sku=shop.sku(p),
                name=f"Product {p}",
                price=Decimal(rng.randrange(100, 20_000)) / 100,
                stock=rng.randint(*stock),
            )
            for p in range(1, shop.product_count(size) + 1)
        ),
    )


# ------------------------------------------------------------------ the requests


def record_views(db: bulkops.Store, events: list[dict[str, Any]]) -> bulkops.Report:
    """Product views for known users and products: the users and products fetched
    once, the views inserted once each (redelivered events ignored)."""
    users = db.get_many(User, {e["email"] for e in events}, key="email", columns=["id"])
    products = db.get_many(Product, {e["sku"] for e in events}, key="sku", columns=["id"])
    return db.insert(
        ProductView,
        [
            ProductView(
                event_id=e["event_id"],
                user_id=users[e["email"]]["id"],
                product_id=products[e["sku"]]["id"],
                viewed_at=e["viewed_at"].replace(tzinfo=UTC),
            )
            for e in events
        ],
        on_conflict="ignore",
    )


def upsert_scores(db: bulkops.Store, incoming: list[dict[str, Any]]) -> bulkops.Report:
    """Recommendation scores upserted on (user, product, algorithm)."""
    users = db.get_many(User, {s["email"] for s in incoming}, key="email", columns=["id"])
    products = db.get_many(Product, {s["sku"] for s in incoming}, key="sku", columns=["id"])
    return db.upsert(
        Score,
        (
            {
                "user": users[s["email"]]["id"],
                "product": products[s["sku"]]["id"],
                "algorithm": s["algorithm"],
                "score": s["score"],
            }
            for s in incoming
        ),
        key=("user", "product", "algorithm"),
    )


class StockMoved(Exception):
    """Stock changed between reading it and taking it: the request runs again."""


def process_orders(db: bulkops.Store, batch: list[dict[str, Any]]) -> None:
    """Orders in the order they came: each takes all its lines' stock or none; stock
    never goes below zero (the guarded adjust refuses, and the request is re-run)."""
    wanted = {product for order in batch for product, _ in order["lines"]}
    products = db.get_many(Product, wanted, columns=["price", "stock"])
    stock = {pid: row["stock"] for pid, row in products.items()}
    taken: dict[int, int] = defaultdict(int)
    orders, lines = [], []
    for order in batch:
        fits = all(stock[p] >= q for p, q in order["lines"])
        total = Decimal(0)
        if fits:
            for line_no, (product_id, quantity) in enumerate(order["lines"], 1):
                price = products[product_id]["price"]
                stock[product_id] -= quantity
                taken[product_id] -= quantity
                total += price * quantity
                lines.append(
                    OrderLine(order_id=order["order_no"], line_no=line_no,
                              product_id=product_id, quantity=quantity, price=price)
                )  # fmt: skip
        orders.append(
            Order(order_no=order["order_no"], user_id=order["user_id"],
                  status="accepted" if fits else "rejected", total=total)
        )  # fmt: skip
    if taken:
        report = db.adjust(Product, taken, column="stock", min_value=0)
        if report.refused or report.not_found:
            raise StockMoved(report.refused_keys)  # rolls back the whole atomic()
    db.insert(Order, orders)
    db.insert(OrderLine, lines)


views_events = bench_views.events
scores_incoming = bench_scores.incoming
orders_incoming = bench_orders.incoming
