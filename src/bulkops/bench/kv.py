"""The kv workload (DynamoDB): batch get, put and delete of N items.

An ``items`` table (key ``id``, a number) holds items 1..N, each with a name, a
quantity and a price. The job, at size N:

- read N items by key, ids N/10+1 .. N+N/10: nine in ten exist, the last N/10 do not;
- write N items: each item found comes back with its quantity one higher (changed),
  each key not found becomes a new item (new);
- delete the N/5 items whose id is a multiple of 5 (some of them just changed).

Naive: the usual boto3 code, one request per item: GetItem per key and PutItem right
after it (read, modify, write), then DeleteItem per key: 2.2 requests per item.
bulkops: one ``get_many`` (BatchGetItem, 100 keys a request), one ``upsert``
(BatchWriteItem, 25 items a request) and one ``delete`` (BatchWriteItem, 25 keys a
request), plus the DescribeTable that tells bulkops the table's key and, on the Store's
first write, one that asks whether the database keeps sync digests (its sync state table).

Both read with ``ConsistentRead``: the items were written just before.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..store import Store
from .workload import CENT, Workload

__all__ = ["WORKLOAD"]

ITEMS = "items"


def price(i: int) -> Decimal:
    """The price of item ``i``: cents, some of them round (``12.30``, ``7``)."""
    return (Decimal(i * 137 % 10_000) / 10).quantize(CENT)


def seed_item(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item {i:06d}", "qty": i % 50, "price": price(i)}


def read_keys(size: int) -> range:
    return range(size // 10 + 1, size + size // 10 + 1)


def deleted_keys(size: int) -> range:
    return range(5, size + 1, 5)


def setup(db: Store, client: Any, size: int) -> None:
    db.create_table(ITEMS, {"id": "integer"}, key="id")
    db.upsert(ITEMS, (seed_item(i) for i in range(1, size + 1)))


# ------------------------------------------------------------------- naive


def naive(client: Any, size: int) -> None:
    for i in read_keys(size):
        found = client.get_item(TableName=ITEMS, Key={"id": {"N": str(i)}}, ConsistentRead=True)
        item = found.get("Item")
        if item is None:
            new = seed_item(i)
            item = {
                "id": {"N": str(i)},
                "name": {"S": new["name"]},
                "qty": {"N": str(new["qty"])},
                "price": {"N": str(new["price"])},
            }
        else:
            item["qty"] = {"N": str(int(item["qty"]["N"]) + 1)}
        client.put_item(TableName=ITEMS, Item=item)
    for i in deleted_keys(size):
        client.delete_item(TableName=ITEMS, Key={"id": {"N": str(i)}})


# -------------------------------------------------------------------- bulk


def bulk(db: Store, size: int) -> None:
    keys = read_keys(size)
    found = db.get_many(ITEMS, keys, consistent_read=True)
    db.upsert(
        ITEMS,
        ({**found[i], "qty": found[i]["qty"] + 1} if i in found else seed_item(i) for i in keys),
    )
    db.delete(ITEMS, deleted_keys(size))


# ------------------------------------------------------------------- check


def check(client: Any) -> list[tuple[Any, ...]]:
    """Every item as ``(id, name, qty, price)``, sorted by id (numbers as Decimal, so
    ``12.3`` written one way and ``12.30`` another compare equal, as DynamoDB
    stores them)."""
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": ITEMS, "ConsistentRead": True}
    while True:
        page = client.scan(**request)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    rows = [
        tuple(_plain(item.get(name)) for name in ("id", "name", "qty", "price")) for item in items
    ]
    return sorted(rows, key=lambda row: row[0])


def _plain(attribute: dict[str, Any] | None) -> Any:
    """An AttributeValue of the kinds this workload writes, as a plain value (an
    attribute missing or of another kind shows as itself, and so as a difference)."""
    if attribute is None:
        return None
    if set(attribute) == {"N"}:
        return Decimal(attribute["N"])
    if set(attribute) == {"S"}:
        return attribute["S"]
    return attribute


WORKLOAD = Workload(
    name="kv",
    summary="batch get/put/delete of N items (DynamoDB only)",
    sizes=(100, 1000),
    backends=frozenset({"dynamodb"}),
    setup=setup,
    naive=naive,
    bulk=bulk,
    check=check,
)
