"""The DynamoDB backend against DynamoDB Local (started by the suite).

Faults are injected through botocore's event hooks on the real client, so every
request still goes through botocore and the emulator: items held back from a
BatchWriteItem really are not written, and come back as UnprocessedItems the way
DynamoDB hands back what it could not take.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import (
    ConstraintError,
    SchemaError,
    ThrottledError,
    UnreadKeysError,
    UnsupportedError,
)
from conftest import assert_accounted
from ddb_local import DynamoDBLocal, HoldBackWrites, ThrottleReads, ThrottleWrites

pytestmark = pytest.mark.dynamodb


def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def users(ddb: bulkops.Store) -> Iterator[str]:
    name = table_name()
    ddb.create_table(name, {"id": "integer"}, key="id")
    yield name
    ddb.backend.client.delete_table(TableName=name)  # type: ignore[attr-defined]


def quick_retry(
    waits: list[float] | None = None, attempts: int = 8, stalled: int | None = None
) -> RetryPolicy:
    """No real sleeping; the ceiling of each wait (random() == 1) is recorded."""
    return RetryPolicy(
        attempts=attempts,
        max_stalled_rounds=stalled,
        base_delay=0.01,
        sleep=(waits.append if waits is not None else lambda _: None),
        random=lambda: 1.0,
    )


def scan_all(db: bulkops.Store, table: str) -> dict[Any, dict[str, Any]]:
    spec = db.table(table)
    return {item["id"]: item for item in db.backend.scan(spec)}  # type: ignore[attr-defined]


def raw_items(dynamodb_local: DynamoDBLocal, table: str) -> dict[Any, dict[str, Any]]:
    """Every item of ``table`` read with a plain boto3 client (not through bulkops)."""
    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint, region_name="us-east-1")
    decode = TypeDeserializer().deserialize
    items = {}
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        for raw in page["Items"]:
            item = {name: decode(value) for name, value in raw.items()}
            items[item["id"]] = item
    return items


# ----------------------------------------------------------------------- verbs


def test_upsert_and_get_many_batch_by_the_limits(ddb: bulkops.Store, users: str) -> None:
    rows = [{"id": i, "name": f"u{i}", "status": "new"} for i in range(260)]
    report = ddb.upsert(users, rows)
    assert_accounted(report, 260)
    assert report.upserted == 260 and report.ok
    assert report.statements == math.ceil(260 / 25)
    before = ddb.backend.statements
    keys = [*range(260), *range(100), 999_999]  # duplicates and a missing key
    found = ddb.get_many(users, keys)
    assert ddb.backend.statements - before == math.ceil(260 / 100)  # keys de-duplicated
    assert sorted(found) == list(range(260))
    assert found[7] == {"id": 7, "name": "u7", "status": "new"}


def test_values_round_trip_with_plain_numbers(ddb: bulkops.Store, users: str) -> None:
    item = {
        "id": 1,
        "count": 3,
        "ratio": 0.1,
        "price": Decimal("12.50"),
        "exact": Decimal("0.10000000000000000001"),
        "big": 10**37,
        "tags": {"a", "b"},
        "scores": {1, 2.5},
        "blobs": {b"\x00", b"\x01"},
        "data": b"\x00\xff",
        "nothing": None,
        "flag": True,
        "nested": {"list": [1, "two", None, {"x": 1.5}], "empty": {}},
        "text": "",
    }
    assert ddb.upsert(users, [item]).upserted == 1
    back = ddb.get_many(users, [1], consistent_read=True)[1]
    assert back == item
    assert type(back["count"]) is int and type(back["ratio"]) is float
    assert back["ratio"] == 0.1  # sent as "0.1", not 0.1000000000000000055511151231257827
    assert type(back["price"]) is float  # 12.5 is exact in binary
    assert type(back["exact"]) is Decimal  # a float would lose digits: stays Decimal
    assert type(back["big"]) is int


def test_projection_aliases_reserved_words(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": 1, "name": "ann", "status": "ok", "size": 3, "other": 1}])
    found = ddb.get_many(users, [1], columns=["name", "status", "size"])
    assert found == {1: {"name": "ann", "status": "ok", "size": 3}}


def test_items_may_differ_in_their_attributes(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": 1, "a": 1}, {"id": 2, "b": "x", "c": [1]}])
    assert scan_all(ddb, users) == {1: {"id": 1, "a": 1}, 2: {"id": 2, "b": "x", "c": [1]}}


def test_bad_items_are_rejected_before_sending(ddb: bulkops.Store, users: str) -> None:
    before = ddb.backend.statements
    rows: list[Any] = [
        {"id": 1, "ok": True},
        {"name": "no key"},
        {"id": 3, "when": object()},
        {"id": 4, "huge": "x" * 410_000},
        {"id": 5, "n": [float("nan")]},  # a top-level NaN is a missing value: NULL
        {"id": 6, "n": 10**40 + 1},
        {"id": 7, "s": set()},
        {"id": "eight"},
    ]
    report = ddb.upsert(users, rows, on_error="isolate")
    assert_accounted(report, len(rows))
    assert report.upserted == 1 and report.rejected == 7
    assert ddb.backend.statements - before == 1  # only the good item was sent
    why = {r.row: (r.column, r.reason) for r in report.rejections}
    assert why[2][0] == "id" and "key attribute" in why[2][1]
    assert why[3][0] == "when" and "cannot be stored" in why[3][1]
    assert "400 KB" in why[4][1]
    assert "finite" in why[5][1]
    assert "38 significant digits" in why[6][1]
    assert "empty set" in why[7][1]
    assert why[8][0] == "id"
    assert list(scan_all(ddb, users)) == [1]


def test_duplicate_keys_in_a_request_collapse_last_wins(ddb: bulkops.Store, users: str) -> None:
    report = ddb.upsert(users, [{"id": 1, "v": 1}, {"id": 2, "v": 1}, {"id": 1, "v": 2}])
    assert_accounted(report, 3)
    assert report.duplicates == 1 and report.upserted == 2
    assert scan_all(ddb, users)[1]["v"] == 2


def test_insert_is_a_conditional_put(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": 1, "v": "old"}])
    report = ddb.insert(users, [{"id": 1, "v": "new"}, {"id": 2, "v": "new"}], on_conflict="ignore")
    assert_accounted(report, 2)
    assert (report.inserted, report.ignored) == (1, 1)
    assert scan_all(ddb, users)[1]["v"] == "old"
    with pytest.raises(ConstraintError) as caught:
        ddb.insert(users, [{"id": 3}, {"id": 2}])
    assert caught.value.row == 2 and caught.value.key == 2 and caught.value.column == "id"
    assert caught.value.report is not None and caught.value.report.inserted == 1


def test_update_sets_attributes_of_existing_items(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": 1, "status": "new", "keep": 1}, {"id": 2, "status": "done"}])
    rows = [{"id": 1, "status": "done"}, {"id": 2, "status": "done"}, {"id": 3, "status": "x"}]
    report = ddb.update(users, rows)
    assert_accounted(report, 3)
    assert (report.updated, report.unchanged, report.not_found) == (1, 1, 1)
    assert scan_all(ddb, users) == {
        1: {"id": 1, "status": "done", "keep": 1},
        2: {"id": 2, "status": "done"},
    }


def test_delete_in_batches(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": i} for i in range(60)])
    report = ddb.delete(users, [*range(0, 60, 2), {"id": 1}])
    assert_accounted(report, 31)
    assert report.deleted == 31 and report.statements == 2
    assert sorted(scan_all(ddb, users)) == list(range(3, 60, 2))


def test_composite_keys(ddb: bulkops.Store) -> None:
    name = table_name()
    ddb.create_table(name, {"user": "text", "at": "integer"}, key=("user", "at"))
    ddb.upsert(name, [{"user": "a", "at": t, "v": t} for t in range(30)])
    found = ddb.get_many(name, [("a", 3), ("a", 99), {"user": "a", "at": 4}])
    assert sorted(found) == [("a", 3), ("a", 4)]
    assert ddb.delete(name, [("a", 3)]).deleted == 1


def test_workers_write_in_parallel(ddb: bulkops.Store, users: str) -> None:
    report = ddb.upsert(users, ({"id": i, "v": i} for i in range(1000)), workers=4)
    assert_accounted(report, 1000)
    assert report.statements == 40
    assert len(scan_all(ddb, users)) == 1000


def test_what_dynamodb_cannot_do_is_a_clear_error(ddb: bulkops.Store, users: str) -> None:
    with pytest.raises(UnsupportedError, match="atomic"):
        ddb.upsert(users, [{"id": 1}], atomic=True)
    with pytest.raises(UnsupportedError, match="atomic"):
        ddb.atomic()
    with pytest.raises(UnsupportedError, match="claim"):
        next(iter(ddb.claim(users, where={"status": "x"})))
    with pytest.raises(SchemaError, match="does not exist"):
        ddb.upsert("no_such_table", [{"id": 1}])
    with pytest.raises(SchemaError, match="replaces whole items"):
        ddb.upsert(users, [{"id": 1, "a": 1}], update_columns=["a"])


def test_connect_takes_a_boto3_client_or_resource(dynamodb_local: DynamoDBLocal) -> None:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint, region_name="eu-west-1")
    resource = boto3.resource(
        "dynamodb", endpoint_url=dynamodb_local.endpoint, region_name="eu-west-1"
    )
    for handle in (client, resource):
        db = bulkops.connect(handle)
        name = table_name()
        db.create_table(name, {"id": "text"}, key="id")
        assert db.upsert(name, [{"id": "a"}]).upserted == 1
        assert db.get_many(name, ["a"]) == {"a": {"id": "a"}}
    with pytest.raises(SchemaError, match="endpoint_url"):
        bulkops.connect("dynamodb://localhost:8000")


# ---------------------------------------------------------------- primitives


def test_adjust_is_guarded_and_reports_refused_and_missing(ddb: bulkops.Store) -> None:
    name = table_name()
    ddb.create_table(name, {"id": "text"}, key="id")
    ddb.upsert(name, [{"id": "a", "stock": 5}, {"id": "b", "stock": 1}, {"id": "c"}])
    report = ddb.adjust(name, {"a": -3, "b": -2, "c": 4, "zz": 1}, column="stock", min_value=0)
    assert_accounted(report, 4)
    assert (report.updated, report.refused, report.not_found) == (2, 1, 1)
    assert report.refused_keys == ["b"] and report.not_found_keys == ["zz"]
    stock = {k: v.get("stock") for k, v in ddb.get_many(name, ["a", "b", "c"]).items()}
    assert stock == {"a": 2, "b": 1, "c": 4}
    capped = ddb.adjust(name, {"a": 10, "c": Decimal("0.5")}, column="stock", max_value=8)
    assert (capped.updated, capped.refused) == (1, 1)
    assert ddb.get_many(name, ["c"])["c"]["stock"] == 4.5


def test_concurrent_transfers_conserve_the_total(dynamodb_local: DynamoDBLocal) -> None:
    db = bulkops.connect(dynamodb_local.url)
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    db.upsert(name, [{"id": i, "balance": 100} for i in range(8)])
    errors: list[BaseException] = []

    def transfers(seed: int) -> None:
        mine = bulkops.connect(dynamodb_local.url)
        rng = random.Random(seed)
        try:
            for _ in range(40):
                src, dst = rng.sample(range(8), 2)
                amount = rng.randint(1, 60)
                debit = mine.adjust(name, {src: -amount}, column="balance", min_value=0)
                if debit.updated:
                    mine.adjust(name, {dst: amount}, column="balance")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=transfers, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    balances = [
        row["balance"] for row in db.get_many(name, range(8), consistent_read=True).values()
    ]
    assert sum(balances) == 800 and min(balances) >= 0


def test_get_or_create_creates_exactly_once(dynamodb_local: DynamoDBLocal) -> None:
    db = bulkops.connect(dynamodb_local.url)
    name = table_name()
    db.create_table(name, {"user_id": "integer"}, key="user_id")
    results: list[tuple[dict[str, Any], bool]] = []

    def grab(i: int) -> None:
        store = bulkops.connect(dynamodb_local.url)
        results.append(store.get_or_create(name, {"user_id": 7}, defaults={"by": i}))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 16  # a thread that raised would be missing here
    assert sum(created for _, created in results) == 1
    winner = next(row for row, created in results if created)
    assert all(row == winner for row, _ in results)
    with pytest.raises(SchemaError, match="primary key"):
        db.get_or_create(name, {"by": 1})


def test_sequences_hand_out_unique_blocks(dynamodb_local: DynamoDBLocal) -> None:
    seen: list[int] = []
    lock = threading.Lock()
    name = f"lot:{uuid.uuid4().hex[:6]}"

    def allocate() -> None:
        store = bulkops.connect(dynamodb_local.url)
        for _ in range(5):
            numbers = store.sequence(name).allocate_numbers(100)
            with lock:
                seen.extend(numbers)

    threads = [threading.Thread(target=allocate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 2001))
    db = bulkops.connect(dynamodb_local.url)
    assert db.sequence(name, prefix="L-", padding=6).allocate(2) == ["L-002001", "L-002002"]


def test_ensure_creates_missing_items(ddb: bulkops.Store, users: str) -> None:
    ddb.upsert(users, [{"id": 1, "email": "a@x"}])
    found = ddb.ensure(users, [{"id": 1, "email": "changed"}, {"id": 2, "email": "b@x"}])
    assert found == {1: {"id": 1, "email": "a@x"}, 2: {"id": 2, "email": "b@x"}}


# ---------------------------------------------------------------- faults


def test_held_back_items_are_redriven_with_growing_backoff(dynamodb_local: DynamoDBLocal) -> None:
    waits: list[float] = []
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(waits))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    hook = HoldBackWrites(db.backend.client, share=0.4)
    report = db.upsert(name, ({"id": i} for i in range(500)))
    assert_accounted(report, 500)
    assert report.upserted == 500 and report.failed == 0
    assert len(scan_all(db, name)) == 500  # every item really written
    # One chunk of 500 (Capabilities.rows_per_chunk): each round sends what is pending
    # in requests of 25, of which the hook holds back int(40%); one wait between rounds.
    pending, requests, rounds = 500, 0, 0
    while pending:
        parts = [min(25, pending - start) for start in range(0, pending, 25)]
        requests += len(parts)
        rounds += 1
        pending = sum(int(part * 0.4) for part in parts)
    assert (requests, rounds) == (37, 7)  # 500 -> 200 -> 80 -> 32 -> 12 -> 4 -> 1 -> 0
    assert hook.calls == report.statements == requests
    assert report.retries == len(waits) == rounds - 1
    # every round took items (progress): the wait stays at the first step
    assert waits == [0.01] * 6


def test_sustained_partial_throttling_writes_every_item(dynamodb_local: DynamoDBLocal) -> None:
    # Each item of every request is held back with probability 0.4, however few are
    # sent: a lone item can come back unprocessed many rounds in a row. As long as each
    # round takes some items the load goes on; every item ends up written.
    waits: list[float] = []
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(waits, attempts=3, stalled=3))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    hook = HoldBackWrites(db.backend.client, share=0.4, per_item=True, seed=11)
    rows = [{"id": i, "v": f"value {i}", "n": i * 3} for i in range(5000)]
    report = db.upsert(name, rows)
    assert_accounted(report, 5000)
    assert report.upserted == 5000 and report.failed == 0 and report.ok
    assert raw_items(dynamodb_local, name) == {r["id"]: r for r in rows}  # every value
    assert hook.calls == report.statements > 5000 / 25
    # 10 chunks of 500: some took more rounds than `attempts` (which bounds single
    # requests, not a re-drive that makes progress)
    assert report.retries == len(waits) > 10 * (3 - 1)


def test_backoff_climbs_without_progress_and_steps_down_after_it(
    dynamodb_local: DynamoDBLocal,
) -> None:
    waits: list[float] = []
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(waits, attempts=2, stalled=4))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    # one request per round (25 items); the share held back by each request in turn
    hook = HoldBackWrites(db.backend.client, share=1.0, schedule=[1, 1, 1, 0.4, 1, 1, 0.5, 0])
    report = db.upsert(name, [{"id": i} for i in range(25)])
    assert report.upserted == 25 and report.ok
    assert hook.calls == 8
    # stalled x3: the step climbs 1, 2, 3; progress: down to 2; stalled x2: 3, 4
    # (4 stalled rounds in a row would give up; attempts=2 plays no part here);
    # progress: down to 3.
    assert waits == [0.01, 0.02, 0.04, 0.02, 0.04, 0.08, 0.04]
    assert len(raw_items(dynamodb_local, name)) == 25


def test_items_never_written_are_reported_exactly(
    dynamodb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(attempts=8, stalled=4))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    db.upsert(name, [{"id": 1000, "v": "before"}])
    hook = HoldBackWrites(db.backend.client, share=1.0)
    rows = [{"id": i, "v": i} for i in range(60)]
    report = db.upsert(name, rows, rejects=tmp_path / "rejects.jsonl")
    assert_accounted(report, 60)
    assert report.failed == 60 and report.upserted == 0 and not report.ok
    assert sorted(f.key for f in report.failures) == list(range(60))
    assert {f.values["id"]: f.values for f in report.failures} == {r["id"]: r for r in rows}
    assert all(
        f.code == "UnprocessedItems" and "4 round(s) in a row with no progress" in f.reason
        for f in report.failures
    )
    assert hook.calls == report.statements == 3 * 4  # bounded: 3 requests x 4 stalled rounds
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 60
    assert raw_items(dynamodb_local, name) == {1000: {"id": 1000, "v": "before"}}
    with pytest.raises(ThrottledError, match="not written") as caught:
        db.upsert(name, rows, chunk_size=25)
    assert caught.value.report is not None and caught.value.report.failed == 25


def test_total_hold_back_after_progress_reports_exactly_the_items_left(
    dynamodb_local: DynamoDBLocal,
) -> None:
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(stalled=3))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    # the first round takes 60% of each request, then nothing more is ever taken
    hook = HoldBackWrites(db.backend.client, share=1.0, seed=3, schedule=[0.4, 0.4, 1.0])
    rows = [{"id": i, "v": i} for i in range(50)]
    report = db.upsert(name, rows, on_error="isolate")
    assert_accounted(report, 50)
    stored = raw_items(dynamodb_local, name)
    assert report.upserted == len(stored) == 30 and report.failed == 20
    assert sorted(f.key for f in report.failures) == sorted(set(range(50)) - set(stored))
    assert all(stored[k] == rows[int(k)] for k in stored)
    assert hook.calls == 2 + 3  # round 1: two requests; then 3 rounds of one, no progress


def test_throttled_write_requests_are_redriven(dynamodb_local: DynamoDBLocal) -> None:
    waits: list[float] = []
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(waits, stalled=3))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    # requests 2 and 3 of round 1 refused whole (progress: 1 and 4 pass); round 2's
    # first request refused too (progress: its second passes); round 3 sends the rest
    hook = ThrottleWrites(db.backend.client, refused={2, 3, 5})
    rows = [{"id": i, "v": str(i)} for i in range(100)]
    report = db.upsert(name, rows)
    assert report.upserted == 100 and report.ok
    assert hook.throttled == 3 and hook.calls == report.statements == 4 + 2 + 1
    assert report.retries == len(waits) == 2 and waits == [0.01, 0.01]
    assert raw_items(dynamodb_local, name) == {r["id"]: r for r in rows}
    # a request refused round after round gives up after max_stalled_rounds
    ThrottleWrites(db.backend.client, refused=set(range(1, 100)))
    report = db.upsert(name, [{"id": 500 + i} for i in range(10)], on_error="isolate")
    assert report.failed == 10 and report.upserted == 0
    assert {f.code for f in report.failures} == {"ProvisionedThroughputExceededException"}


def test_a_request_refused_as_a_whole_is_resent_item_by_item(
    dynamodb_local: DynamoDBLocal,
) -> None:
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry())
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    rows: list[dict[str, Any]] = [{"id": i, "v": i} for i in range(60)]
    # 0.1 and Decimal("0.1") differ in Python but are one number to DynamoDB: the server
    # refuses the set as holding duplicates, and with it the whole request of 25
    rows[33] = {"id": 33, "ns": {0.1, Decimal("0.1")}}
    before = db.backend.statements
    report = db.upsert(name, rows, on_error="isolate")
    assert_accounted(report, 60)
    assert report.upserted == 59 and report.rejected == 1
    (rejection,) = report.rejections
    assert rejection.key == 33 and "duplicates" in rejection.reason
    # 3 requests of 25, then the refused one's 25 items alone (not the whole chunk's 60)
    assert db.backend.statements - before == 3 + 25
    assert raw_items(dynamodb_local, name) == {r["id"]: r for r in rows if r["id"] != 33}
    with pytest.raises(bulkops.errors.DataError, match="duplicates"):
        db.upsert(name, rows)


def test_throttled_reads_return_every_key(dynamodb_local: DynamoDBLocal) -> None:
    waits: list[float] = []
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(waits))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    db.upsert(name, [{"id": i} for i in range(450)])
    hook = ThrottleReads(db.backend.client, every=2)
    found = db.get_many(name, range(500))
    assert sorted(found) == list(range(450))
    # requests 2-5 are each refused once and sent again
    assert hook.throttled == len(waits) == 4


def test_keys_never_read_raise_with_what_was_read(dynamodb_local: DynamoDBLocal) -> None:
    db = bulkops.connect(dynamodb_local.url, retry=quick_retry(attempts=3))
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    db.upsert(name, [{"id": i} for i in range(150)])
    hook = ThrottleReads(db.backend.client, every=1, spare=1)  # the first request passes, then none
    with pytest.raises(UnreadKeysError) as caught:
        db.get_many(name, range(150))
    assert sorted(caught.value.found) == list(range(100))
    assert sorted(caught.value.keys) == list(range(100, 150))
    assert hook.throttled == 3


def test_replies_over_16_mb_are_redriven(ddb: bulkops.Store, users: str) -> None:
    filler = "x" * 390_000
    ddb.upsert(users, ({"id": i, "pad": filler} for i in range(100)))
    before = ddb.backend.statements
    found = ddb.get_many(users, range(100))
    assert sorted(found) == list(range(100))
    assert all(len(item["pad"]) == 390_000 for item in found.values())
    # 100 items of 390 KB cannot come back in one 16 MB reply
    assert ddb.backend.statements - before >= 3


# ----------------------------------------------------------------------- CLI


def test_cli_loads_into_dynamodb(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    import subprocess

    db = bulkops.connect(dynamodb_local.url)
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    source = tmp_path / "users.csv"
    source.write_text("id,name\n1,ann\n2,bob\n2,bo\n")
    done = subprocess.run(
        ["bulkops", "load", str(source), "--table", name, "--db", dynamodb_local.url,
         "--mode", "upsert", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert db.get_many(name, [1, 2]) == {1: {"id": 1, "name": "ann"}, 2: {"id": 2, "name": "bo"}}
    missing = subprocess.run(
        ["bulkops", "load", str(source), "--table", "nope_nope", "--db", dynamodb_local.url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_cli_loads_parquet_times_and_uuids_into_dynamodb_as_text(
    dynamodb_local: DynamoDBLocal, tmp_path: Path
) -> None:
    # Parquet as pandas and DuckDB write it: timestamps (one in nanoseconds, with a
    # value that has some), dates and UUIDs, none of which DynamoDB has a type for.
    # Every row was rejected ("a datetime cannot be stored in DynamoDB ... convert it
    # first, e.g. with .isoformat()", which a command-line user cannot do), and the
    # nanosecond value crashed the reader. They are now their ISO 8601 text, as a CSV
    # file's times are; a sync of the same file finds every row unchanged.
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    db = bulkops.connect(dynamodb_local.url)
    name = table_name()
    db.create_table(name, {"id": "integer"}, key="id")
    start = 1_704_103_200_000_000_000  # 2024-01-01 10:00:00 UTC, in nanoseconds
    ns = pa.array([start, start + 500, None], pa.int64()).cast(pa.timestamp("ns"))
    ids = [uuid.UUID(int=1), uuid.UUID(int=2), None]
    table = pa.table(
        {
            "id": [1, 2, 3],
            "at": pa.array([start // 1000] * 3, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "ns": ns,
            "day": pa.array([dt.date(2024, 2, 29)] * 3, pa.date32()),
            "ref": pa.array([u and u.bytes for u in ids], pa.uuid()),
        }
    )
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    client = db.backend.client  # type: ignore[attr-defined]
    had_state = "bulkops_sync_state" in client.list_tables()["TableNames"]
    try:
        for verb in ("load", "sync"):
            done = subprocess.run(
                [sys.executable, "-m", "bulkops", verb, str(path), "--table", name,
                 "--db", dynamodb_local.url, "--json", "--quiet"],
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["rejected"] == 0
    finally:
        if not had_state:  # the server is shared: other tests count the writes it adds
            with suppress(client.exceptions.ResourceNotFoundException):
                client.delete_table(TableName="bulkops_sync_state")
    assert (report["unchanged"], report["changed"]) == (3, 0)
    got = db.get_many(name, [1, 2, 3])
    assert got[2] == {
        "id": 2, "at": "2024-01-01T10:00:00+00:00", "ns": "2024-01-01T10:00:00.000000500",
        "day": "2024-02-29", "ref": "00000000-0000-0000-0000-000000000002",
    }  # fmt: skip
    assert got[1]["ns"] == "2024-01-01T10:00:00" and got[3]["ref"] is None


# ------------------------------------------------------------ value round trip

_numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e120, max_value=1e120).filter(
        lambda f: f == 0 or abs(f) > 1e-120
    ),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20
    ),
)
_scalars = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20), st.binary(max_size=20), _numbers
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4),
    ),
    max_leaves=10,
)
_attributes = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda n: n != "id"), _values, max_size=6
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(attributes=_attributes, sets=st.sets(st.text(max_size=5), min_size=1, max_size=4))
def test_any_storable_value_round_trips(
    ddb: bulkops.Store, attributes: dict[str, Any], sets: set[str]
) -> None:
    name = "roundtrip"
    try:
        ddb.table(name)
    except SchemaError:
        ddb.create_table(name, {"id": "integer"}, key="id")
    item = {"id": 1, **attributes, "a set": sets}
    assert ddb.upsert(name, [item]).upserted == 1
    back = ddb.get_many(name, [1], consistent_read=True)[1]
    assert exact(back) == exact(item)


_WIDE = Context(prec=60)  # normalize() without rounding 38-digit numbers


def exact(value: Any) -> Any:
    """Numbers as the decimal DynamoDB stores: a float is sent as its shortest repr, so
    7.205759403792271e16 comes back as the int 72057594037922710."""
    if isinstance(value, float):
        return Decimal(repr(value)).normalize(_WIDE)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return Decimal(value).normalize(_WIDE)
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    return value


def test_count_queries_sees_dynamodb_requests(ddb: bulkops.Store, users: str) -> None:
    from bulkops.testing import assert_max_queries, count_queries

    ddb.get_or_create(users, {"id": -1})  # the Store's first write looks for sync state once
    with count_queries(ddb) as counted:
        ddb.upsert(users, [{"id": i} for i in range(60)])
    assert counted.count == 3 and counted.statements[0] == f"BatchWriteItem {users}"
    with pytest.raises(AssertionError, match="BatchGetItem"), assert_max_queries(ddb, 2):
        for i in range(5):  # one read per key: the N+1 the helper exists to catch
            ddb.get_many(users, [i])


def test_missing_credentials_are_an_access_error_that_says_where_boto3_looks(
    dynamodb_local: DynamoDBLocal, users: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with (
        bulkops.connect(dynamodb_local.url, run_log=False) as db,
        pytest.raises(bulkops.errors.AccessError) as refused,
    ):
        db.upsert(users, [{"id": 1, "name": "Ada"}])
    assert "Unable to locate credentials" in str(refused.value)
    assert "AWS_ACCESS_KEY_ID" in str(refused.value)
    monkeypatch.undo()
    assert raw_items(dynamodb_local, users) == {}


def test_a_refused_access_key_is_an_access_error_not_retried(
    dynamodb_local: DynamoDBLocal, users: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DynamoDB Local refuses an access key that is not letters and digits, as AWS
    # refuses an unknown one: UnrecognizedClientException.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key!")
    waits: list[float] = []
    with (
        bulkops.connect(dynamodb_local.url, run_log=False, retry=quick_retry(waits)) as db,
        pytest.raises(bulkops.errors.AccessError) as refused,
    ):
        db.upsert(users, [{"id": 1, "name": "Ada"}])
    assert refused.value.code == "UnrecognizedClientException"
    assert waits == []


def test_a_table_name_dynamodb_refuses_is_a_schema_error(ddb: bulkops.Store) -> None:
    # DynamoDB's names are 3 to 255 letters, digits, "_", "-" or ".": its
    # ValidationException is about the table asked for, not a value to reject.
    with pytest.raises(bulkops.errors.SchemaError) as refused:
        ddb.create_table("my table", {"id": "integer"}, key="id")
    assert "cannot create DynamoDB table 'my table'" in str(refused.value)
    assert refused.value.code == "ValidationException"
    assert not isinstance(refused.value, bulkops.errors.DataError)
