"""The escrow release workload (money).

Release every LOCKED escrow of a project: commission and fees computed in ``Decimal``
and rounded ROUND_HALF_UP to cents, escrows marked RELEASED with a timestamp, one
wallet transaction per escrow, the payees' wallets credited, and the platform wallet
credited once per batch. Batches are claimed (rows locked only while their batch is
processed), so two releasers at once never pay an escrow twice.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from ..store import Store
from .workload import Workload, money

__all__ = [
    "COMMISSION",
    "FEE",
    "WORKLOAD",
    "create_tables",
    "release",
    "release_naive",
    "seed",
    "split",
]

COMMISSION = Decimal("0.10")
FEE = Decimal("0.029")
CENT = Decimal("0.01")
PLATFORM_USER = 0


def split(amount: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(commission, fee, net) of an escrowed amount, each to the cent; they add up to
    the amount exactly because net takes the remainder."""
    commission = (amount * COMMISSION).quantize(CENT, rounding=ROUND_HALF_UP)
    fee = (amount * FEE).quantize(CENT, rounding=ROUND_HALF_UP)
    return commission, fee, amount - commission - fee


def create_tables(engine: sa.Engine) -> None:
    """escrows, wallets (one per user) and wallet_transactions (one per escrow paid)."""
    metadata = sa.MetaData()
    sa.Table(
        "escrows",
        metadata,
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("project_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("payee_id", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True)),
    )
    sa.Table(
        "wallets",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.BigInteger, nullable=False, unique=True),
        sa.Column("balance", sa.Numeric(16, 2), nullable=False),
    )
    sa.Table(
        "wallet_transactions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("wallet_id", sa.Integer, nullable=False),
        sa.Column("escrow_id", sa.BigInteger),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.UniqueConstraint("escrow_id", "kind"),
    )
    metadata.create_all(engine)


def seed(db: Store, project_id: int, count: int, *, seed: int = 1) -> Decimal:
    """``count`` LOCKED escrows for a project; returns their total."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = [
        {
            "id": project_id * 10_000_000 + i,
            "project_id": project_id,
            "payee_id": 1 + rng.randrange(200),
            "amount": Decimal(rng.randrange(100, 500_000)) / 100,
            "status": "LOCKED",
            "released_at": None,
        }
        for i in range(count)
    ]
    db.insert("escrows", rows)
    total = Decimal(0)
    for row in rows:
        total += row["amount"]
    return total


def release(db: Store, project_id: int, *, batch_size: int = 100) -> int:
    """Release the project's LOCKED escrows with bulk verbs; returns how many."""
    platform, _ = db.get_or_create("wallets", {"user_id": PLATFORM_USER}, defaults={"balance": 0})
    released = 0
    where = {"project_id": project_id, "status": "LOCKED"}
    for batch in db.claim("escrows", where=where, chunk_size=batch_size):
        with batch:
            now = dt.datetime.now(dt.UTC)
            wallets = db.ensure(
                "wallets",
                [{"user_id": r["payee_id"], "balance": 0} for r in batch.rows],
                key="user_id",
            )
            credits: dict[Any, Decimal] = defaultdict(Decimal)
            transactions = []
            platform_total = Decimal(0)
            for row in batch.rows:
                commission, fee, net = split(row["amount"])
                wallet_id = wallets[row["payee_id"]]["id"]
                credits[wallet_id] += net
                platform_total += commission + fee
                transactions.append(
                    {
                        "wallet_id": wallet_id,
                        "escrow_id": row["id"],
                        "amount": net,
                        "kind": "release",
                    }
                )
            transactions.append(
                {"wallet_id": platform["id"], "escrow_id": None, "amount": platform_total,
                 "kind": "commission+fees"}
            )  # fmt: skip
            db.update(
                "escrows",
                [{"id": r["id"], "status": "RELEASED", "released_at": now} for r in batch.rows],
                columns=["status", "released_at"],
            )
            db.insert("wallet_transactions", transactions)
            credits[platform["id"]] += platform_total
            db.adjust("wallets", credits, column="balance")
            released += len(batch.rows)
    return released


def release_naive(engine: sa.Engine, project_id: int) -> int:
    """The same work as it is usually written: one query per escrow and per lookup,
    one transaction per escrow. For comparison only (not safe against a concurrent
    releaser: nothing locks the escrow between reading and marking it)."""
    released = 0
    with engine.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT id FROM escrows WHERE project_id = :p AND status = 'LOCKED'"),
                {"p": project_id},
            )
        ]
        conn.rollback()
        for escrow_id in ids:
            with conn.begin():
                row = conn.execute(
                    sa.text("SELECT payee_id, amount FROM escrows WHERE id = :id"),
                    {"id": escrow_id},
                ).one()
                commission, fee, net = split(Decimal(str(row.amount)))
                wallet = _wallet_naive(conn, row.payee_id)
                platform = _wallet_naive(conn, PLATFORM_USER)
                conn.execute(
                    sa.text(
                        "UPDATE escrows SET status = 'RELEASED', released_at = :now WHERE id = :id"
                    ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
                    {"now": dt.datetime.now(dt.UTC), "id": escrow_id},
                )
                for wallet_id, amount, kind, eid in (
                    (wallet, net, "release", escrow_id),
                    (platform, commission + fee, "commission+fees", None),
                ):
                    conn.execute(
                        sa.text(
                            "INSERT INTO wallet_transactions (wallet_id, escrow_id, amount, kind) "
                            "VALUES (:w, :e, :a, :k)"
                        ),
                        {"w": wallet_id, "e": eid, "a": str(amount), "k": kind},
                    )
                    conn.execute(
                        sa.text("UPDATE wallets SET balance = balance + :a WHERE id = :w"),
                        {"a": str(amount), "w": wallet_id},
                    )
            released += 1
    return released


def _wallet_naive(conn: sa.Connection, user_id: int) -> int:
    found = conn.execute(
        sa.text("SELECT id FROM wallets WHERE user_id = :u"), {"u": user_id}
    ).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            sa.text("INSERT INTO wallets (user_id, balance) VALUES (:u, 0) RETURNING id"),
            {"u": user_id},
        ).scalar_one()
    )


# ----------------------------------------------------------- the bench workload

PROJECT = 7
OTHER_PROJECT = 8  # its escrows stay LOCKED: releasing one project leaves others alone


def setup(db: Store, engine: sa.Engine, size: int) -> None:
    """``size`` LOCKED escrows of PROJECT, a few of another project, and wallets for
    half of the payees already."""
    create_tables(engine)
    seed(db, PROJECT, size)
    seed(db, OTHER_PROJECT, 10, seed=2)
    db.insert("wallets", [{"user_id": u, "balance": Decimal("10.00")} for u in range(1, 201, 2)])


def check(engine: sa.Engine) -> Any:
    """Escrow statuses, every wallet's balance, each escrow's payment and what the
    platform got in total (the naive code writes the platform's share per escrow,
    ``release`` per batch: the same money, in fewer rows)."""
    with engine.connect() as conn:
        escrows = [
            (r.id, r.status, r.released_at is not None)
            for r in conn.execute(
                sa.text("SELECT id, status, released_at FROM escrows ORDER BY id")
            )
        ]
        wallets = [
            (r.user_id, money(r.balance))
            for r in conn.execute(sa.text("SELECT user_id, balance FROM wallets ORDER BY user_id"))
        ]
        payments = [
            (r.escrow_id, r.user_id, money(r.amount))
            for r in conn.execute(
                sa.text(
                    "SELECT t.escrow_id, w.user_id, t.amount FROM wallet_transactions t "
                    "JOIN wallets w ON w.id = t.wallet_id WHERE t.kind = 'release' "
                    "ORDER BY t.escrow_id"
                )
            )
        ]
        platform = conn.execute(
            sa.text(
                "SELECT w.user_id, sum(t.amount) FROM wallet_transactions t "
                "JOIN wallets w ON w.id = t.wallet_id WHERE t.kind = 'commission+fees' "
                "GROUP BY w.user_id"
            )
        ).all()
    return {
        "escrows": escrows,
        "wallets": wallets,
        "payments": payments,
        "platform": [(user, money(total)) for user, total in platform],
    }


WORKLOAD = Workload(
    name="escrow",
    summary="release N escrows of a project: Decimal commission and fees, wallets credited",
    sizes=(100, 1000),
    backends=frozenset({"sqlite", "postgresql"}),
    setup=setup,
    naive=lambda engine, size: release_naive(engine, PROJECT),
    bulk=lambda db, size: release(db, PROJECT),
    check=check,
)
