"""Sync digests are invalidated by every bulkops write, not only upsert.

README: "an unchanged source is skipped by its digest ... and the table was not
written through bulkops since". After each write verb (insert, update, delete,
adjust, get_or_create, ensure, apply, claim(set=...)) a sync with the same source
must not be skipped and must bring the table back to the source. Run on SQLite and
PostgreSQL, with the digest of the rows and with a ``source_digest``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

import bulkops
from test_sync import COLUMNS, base_rows, contents, normal

_names = itertools.count(1)
EXTRA = {"id": 99, "name": "extra", "price": Decimal("1.50"), "qty": 1}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[bulkops.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/sync.db"
    else:
        url = str(request.getfixturevalue("pg_url"))
    with bulkops.connect(url) as db:
        yield db


def _claim(db: bulkops.Store, table: str) -> None:
    for batch in db.claim(table, where={"name": "item 5"}, set_values={"name": "claimed"}):
        with batch:
            pass


def _apply(db: bulkops.Store, table: str) -> None:
    changed = [dict(r) for r in base_rows()]
    changed[4]["name"] = "from a changeset"
    changeset = db.diff(table, changed, key="id")
    assert changeset.changed == 1
    db.apply(changeset)


WRITES: dict[str, Callable[[bulkops.Store, str], Any]] = {
    "insert": lambda db, t: db.insert(t, [EXTRA]),
    "upsert": lambda db, t: db.upsert(t, [{**base_rows()[4], "name": "upserted"}]),
    "update": lambda db, t: db.update(t, [{"id": 5, "name": "updated"}]),
    "delete": lambda db, t: db.delete(t, [5]),
    "adjust": lambda db, t: db.adjust(t, {5: 7}, column="qty"),
    "get_or_create": lambda db, t: db.get_or_create(t, {"id": 99}, defaults=EXTRA),
    "ensure": lambda db, t: db.ensure(t, [EXTRA], key="id"),
    "apply": _apply,
    "claim_set": _claim,
}


@pytest.mark.parametrize("digest", [None, "sha256:fixed"], ids=["row-digest", "source-digest"])
@pytest.mark.parametrize("write", list(WRITES))
def test_every_write_invalidates_the_sync_digest(
    sql_db: bulkops.Store, write: str, digest: str | None
) -> None:
    """Kills: a write verb that does not invalidate the table's sync digests (the
    re-sync is skipped and the table keeps the write's change)."""
    db = sql_db
    table = f"items_{next(_names)}"
    db.create_table(table, COLUMNS, key="id")
    source = base_rows()
    first = db.sync(table, source, key="id", delete_missing=True, source_id=digest)
    assert first.added == len(source)
    again = db.sync(table, source, key="id", delete_missing=True, source_id=digest)
    assert again.up_to_date  # the digest was recorded: nothing to do

    WRITES[write](db, table)
    assert contents(db, table, range(1, 100)) != normal(source)  # the write did change it

    third = db.sync(table, source, key="id", delete_missing=True, source_id=digest)
    assert not third.up_to_date, f"sync skipped after {write}: the digest was not invalidated"
    assert third.added + third.changed + third.deleted == 1, third
    assert contents(db, table, range(1, 100)) == normal(source)
    fourth = db.sync(table, source, key="id", delete_missing=True, source_id=digest)
    assert fourth.up_to_date  # and recorded again once level


def test_a_write_committed_by_an_atomic_block_invalidates_the_digest(
    sql_db: bulkops.Store,
) -> None:
    """A write inside ``db.atomic()`` that commits invalidates the digest as well."""
    db = sql_db
    table = f"items_{next(_names)}"
    db.create_table(table, COLUMNS, key="id")
    source = base_rows()
    db.sync(table, source, key="id", delete_missing=True)
    with db.atomic():
        db.update(table, [{"id": 5, "name": "in a block"}])
    third = db.sync(table, source, key="id", delete_missing=True, list_keys=True)
    assert not third.up_to_date
    assert third.changed_keys == [5]
    assert contents(db, table, range(1, 100)) == normal(source)
