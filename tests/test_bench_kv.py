"""bulkops bench on DynamoDB: the kv workload, the DynamoDB sandbox, the CLI."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from bulkops.bench import WORKLOADS
from bulkops.bench.runner import run_bench
from bulkops.bench.sandbox import DynamoDBSandbox, open_sandbox
from bulkops.errors import SchemaError
from ddb_local import DynamoDBLocal
from test_bench import README, bench_tables
from test_cli import run

pytestmark = pytest.mark.dynamodb

KV = WORKLOADS["kv"]


def operations(log: list[str] | None) -> Counter[str]:
    """Requests seen, by operation (the log holds "BatchGetItem items" and such)."""
    return Counter(entry.split()[0] for entry in log or [])


@pytest.fixture
def sandbox(dynamodb_local: DynamoDBLocal) -> Iterator[DynamoDBSandbox]:
    opened = open_sandbox(dynamodb_local.url)
    assert isinstance(opened, DynamoDBSandbox)
    try:
        yield opened
    finally:
        opened.close()


def test_kv_leaves_the_same_end_state_with_far_fewer_requests(
    dynamodb_local: DynamoDBLocal,
) -> None:
    size = 150
    (result,) = run_bench(dynamodb_local.url, workloads=["kv"], sizes=[size])
    assert (result.workload, result.backend, result.size) == ("kv", "dynamodb", size)
    assert result.same_end_state, result.difference
    # Naive: a GetItem and a PutItem per key, a DeleteItem per fifth item.
    assert result.naive.statements == size + size + size // 5 == 330
    # bulkops: DescribeTable of the table and (first write) of the sync state table,
    # then ceil(150/100) gets, ceil(150/25) + ceil(30/25) writes.
    assert result.bulkops.statements == 2 + 2 + 6 + 2
    assert result.reduction == 27.5
    assert bench_tables(dynamodb_local.url) == []


@pytest.mark.parametrize("size", [100, 101, 200])
def test_kv_bulk_requests_are_ceil_of_the_batch_limits(sandbox: DynamoDBSandbox, size: int) -> None:
    deleted = size // 5
    with sandbox.target() as target:
        with target.connect() as db:
            KV.setup(db, target.plain, size)
        with target.connect() as db:
            target.counter.reset(keep_log=True)
            KV.bulk(db, size)
        assert operations(target.counter.log) == {
            # bulkops learns the table's key, and (first write) whether sync state is kept
            "DescribeTable": 2,
            "BatchGetItem": math.ceil(size / 100),
            "BatchWriteItem": math.ceil(size / 25) + math.ceil(deleted / 25),
        }, target.counter.log
        bulk_requests = target.counter.statements
        bulk_state = KV.check(target.plain)

    with sandbox.target() as target:
        with target.connect() as db:
            KV.setup(db, target.plain, size)
        target.counter.reset(keep_log=True)
        KV.naive(target.plain, size)
        assert operations(target.counter.log) == {
            "GetItem": size,
            "PutItem": size,
            "DeleteItem": deleted,
        }
        naive_requests = target.counter.statements
        naive_state = KV.check(target.plain)

    assert naive_state == bulk_state
    if size == 100:  # the README quotes these counts
        quoted = f"100 kv items {naive_requests} → {bulk_requests} requests"
        assert quoted in README.replace("\n", " ")
    # The state itself: items 1..N plus N/10 new ones, less every fifth of 1..N; the
    # items read (from N/10+1) one more in stock, the ones before untouched.
    by_id = {row[0]: row for row in bulk_state}
    assert sorted(by_id) == [
        i for i in range(1, size + size // 10 + 1) if not (i <= size and i % 5 == 0)
    ]
    assert by_id[1] == (1, "item 000001", 1, Decimal("13.7"))
    assert by_id[size // 10 + 1][2] == (size // 10 + 1) % 50 + 1
    new = size + size // 10
    assert by_id[new] == (new, f"item {new:06d}", new % 50, Decimal(new * 137 % 10_000) / 10)


def test_each_run_has_tables_of_its_own_deleted_afterwards(sandbox: DynamoDBSandbox) -> None:
    with sandbox.target() as first, sandbox.target() as second:
        with first.connect() as db:
            db.create_table("items", {"id": "integer"}, key="id")
            db.upsert("items", [{"id": 1, "name": "one"}])
        # The run sees its table by the plain name; the endpoint holds it prefixed.
        item = first.plain.get_item(TableName="items", Key={"id": {"N": "1"}})["Item"]
        assert item == {"id": {"N": "1"}, "name": {"S": "one"}}
        (stored,) = sandbox.tables()
        assert stored.startswith("bulkops_bench_") and stored.endswith("_items")
        assert first.plain.describe_table(TableName="items")["Table"]["TableName"] == "items"
        # Another run does not see it.
        with pytest.raises(ClientError, match="ResourceNotFoundException"):
            second.plain.describe_table(TableName="items")
        # Operations that name tables where the prefix cannot reach are refused.
        with pytest.raises(SchemaError, match="ListTables is not available in a bench sandbox"):
            first.plain.list_tables()
    assert sandbox.tables() == []


def test_the_counter_sees_both_sides(sandbox: DynamoDBSandbox) -> None:
    with sandbox.target() as target:
        with target.connect() as db:
            db.create_table("items", {"id": "integer"}, key="id")
        target.counter.reset(keep_log=True)
        target.plain.put_item(TableName="items", Item={"id": {"N": "1"}})
        with target.connect() as db:
            db.upsert("items", ({"id": i} for i in range(2, 52)))  # 50 items: 2 requests
            assert len(db.get_many("items", range(1, 52))) == 51
        assert target.counter.log == [
            "PutItem items",
            "DescribeTable items",
            "DescribeTable bulkops_sync_state",
            "BatchWriteItem items",
            "BatchWriteItem items",
            "BatchGetItem items",
        ]
        assert target.counter.statements == 6


def test_an_unreachable_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "bulkopstests")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bulkopstests")
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    with pytest.raises(SchemaError, match="cannot reach DynamoDB at"):
        open_sandbox("dynamodb://?region=us-east-1&endpoint_url=http://127.0.0.1:9")


# --------------------------------------------------------------------------- CLI


def test_cli_bench_kv_json(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    url = dynamodb_local.url
    result = run("bench", "--db", url, "--workload", "kv", "--size", "50", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["workload"], row["backend"], row["size"]) == ("kv", "dynamodb", 50)
    assert row["same_end_state"] is True and row["difference"] is None
    assert row["naive"]["statements"] == 50 + 50 + 10
    assert row["bulkops"]["statements"] == 2 + 1 + 2 + 1
    assert bench_tables(url) == []


def test_cli_bench_on_dynamodb_runs_only_kv(dynamodb_local: DynamoDBLocal, tmp_path: Path) -> None:
    result = run("bench", "--db", dynamodb_local.url, "--size", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bulkops bench on dynamodb" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()]
    names = {row[0] for row in rows if row and row[0] in WORKLOADS}
    assert names == {"kv"}
    (kv,) = [row for row in rows if row[:1] == ["kv"]]
    assert kv[1:4] == ["20", "44", "5"] and kv[-1] == "✓"
