"""DynamoDB batch benchmark: bulkops against boto3's batch_writer and a per-item loop,
on DynamoDB Local (started here, as the tests start it, unless --endpoint is given).

Writes N items and reads them back, counting the requests each contender sends
(the DynamoDB backend's statement tracer on its client) and its items/s:

- bulkops: ``db.upsert(table, items)`` (BatchWriteItem, 25 per request) and
  ``db.get_many(table, keys)`` (BatchGetItem, 100 per request), also with ``workers``;
- boto3 ``Table.batch_writer()`` for the writes;
- a per-item loop: ``put_item`` / ``get_item`` once per item (timed on a sample of
  ``--loop-sample`` items, its rate applied to N: the loop is linear).

Then, with each item of every BatchWriteItem held back with probability 0.4 and
returned as UnprocessedItems (sustained partial throttling: tests/ddb_local.py's
HoldBackWrites with per_item=True, through botocore's event hooks on the real
client), bulkops and batch_writer again: requests made, items lost (counted by a scan
afterwards), items bulkops reports failed, time. Each contender writes to a fresh table.

Targets (issue 5): requests == ceil(N/25) for writes and ceil(N/100) for reads without
faults; zero items lost in every case; >= 10x items/s over the per-item loop. The exit
status is 1 when an invariant breaks (a request count is not the one above, an item is
lost, or bulkops reports items failed); every broken invariant and missed target is
listed on stderr at the end.

Reading the fault figures: bulkops backs off (exponential, full jitter) before every
re-drive, as AWS asks, and re-sends a chunk's leftovers on their own; batch_writer
re-sends them at once inside its next batch. The injected fault holds back 40% however
slowly requests come, so here backing off only costs time; against real throttling
the wait is what lets the table's capacity recover. Workers overlap the waits.

    python benchmarks/dynamodb_batch.py                 # 20,000 items
    python benchmarks/dynamodb_batch.py --items 2000    # quick
    python benchmarks/dynamodb_batch.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from _common import conclude, mark, report_console, results_table, status_of

import bulkops
from bulkops.backends.resolve import statement_tracer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ddb_local import DynamoDBLocal, HoldBackWrites

REGION = "us-east-1"


def item(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"user {i}", "status": "active", "score": i % 1000 / 10, "n": i}


def boto3_item(i: int) -> dict[str, Any]:
    """The same item for boto3's resource layer, which refuses floats."""
    return {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in item(i).items()}


class Counter:
    """Counts the requests a client (a Store's, a resource's) sends, by operation, for
    as long as ``counting`` lasts."""

    def __init__(self, handle: object, counting: ExitStack) -> None:
        self.calls: dict[str, int] = {}
        if isinstance(handle, bulkops.Store):
            handle = handle.backend
        counting.enter_context(statement_tracer(handle).trace_statements(self.count))

    def count(self, request: str) -> None:
        operation = request.split(" ", 1)[0]  # "Operation table"
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def take(self, operation: str) -> int:
        return self.calls.pop(operation, 0)


@contextmanager
def endpoint(given: str | None) -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bulkopsbench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bulkopsbench")
    if given:
        yield given
        return
    server = DynamoDBLocal().start()
    try:
        yield server.endpoint
    finally:
        server.stop()


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000, help="items written and read")
    parser.add_argument("--loop-sample", type=int, default=2_000, help="items for the loop")
    parser.add_argument("--workers", type=int, default=4, help="bulkops workers (0: skip)")
    parser.add_argument("--endpoint", help="an existing DynamoDB (Local) endpoint URL")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    n = args.items
    log = report_console(120)
    with endpoint(args.endpoint) as url, ExitStack() as counting:
        resource = boto3.resource("dynamodb", endpoint_url=url, region_name=REGION)
        bulk_url = f"dynamodb://?region={REGION}&endpoint_url={url}"
        store = bulkops.connect(bulk_url)
        bulk_counter = Counter(store, counting)
        resource_counter = Counter(resource, counting)

        def fresh() -> str:
            name = f"bench_{uuid.uuid4().hex[:8]}"
            store.create_table(name, {"id": "integer"}, key="id")
            return name

        def stored(name: str) -> int:
            return sum(1 for _ in store.backend.scan(store.table(name)))  # type: ignore[attr-defined]

        # Warm the emulator's JIT so the first contender does not pay for it (it is
        # markedly slower for its first ~10,000 items).
        warm = fresh()
        store.upsert(warm, (item(i) for i in range(10_000)))
        store.get_many(warm, range(10_000))
        for i in range(500):
            store.backend.client.get_item(TableName=warm, Key={"id": {"N": str(i)}})  # type: ignore[attr-defined]
        bulk_counter.take("GetItem")
        bulk_counter.take("BatchWriteItem")
        bulk_counter.take("BatchGetItem")

        results: dict[str, dict[str, Any]] = {}

        def record(name: str, seconds: float, requests: int, items: int, lost: int | None) -> None:
            results[name] = {
                "seconds": round(seconds, 4),
                "requests": requests,
                "items": items,
                "items_per_second": round(items / seconds, 1),
                "lost": lost,
            }
            log.print(
                f"  {name}: {items / seconds:,.0f} items/s, {requests:,} requests", highlight=False
            )

        log.print(f"[bold]{n:,} items[/]", highlight=False)
        table = fresh()
        seconds, report = timed(lambda: store.upsert(table, (item(i) for i in range(n))))
        record("bulkops upsert", seconds, bulk_counter.take("BatchWriteItem"), n, n - stored(table))
        seconds, found = timed(lambda: store.get_many(table, range(n)))
        assert len(found) == n
        record("bulkops get_many", seconds, bulk_counter.take("BatchGetItem"), n, n - len(found))
        if args.workers > 1:
            table = fresh()
            seconds, _ = timed(
                lambda: store.upsert(table, (item(i) for i in range(n)), workers=args.workers)
            )
            record(
                f"bulkops upsert workers={args.workers}", seconds,
                bulk_counter.take("BatchWriteItem"), n, n - stored(table),
            )  # fmt: skip

        table = fresh()

        def batch_writer() -> None:
            with resource.Table(table).batch_writer() as writer:
                for i in range(n):
                    writer.put_item(Item=boto3_item(i))

        seconds, _ = timed(batch_writer)
        record(
            "boto3 batch_writer",
            seconds,
            resource_counter.take("BatchWriteItem"),
            n,
            n - stored(table),
        )

        table = fresh()
        sample = min(args.loop_sample, n)
        plain = store.backend.client  # type: ignore[attr-defined]
        from bulkops.backends.dynamodb import to_attribute

        def put_loop() -> None:
            for i in range(sample):
                plain.put_item(
                    TableName=table, Item={k: to_attribute(v) for k, v in item(i).items()}
                )

        def get_loop() -> None:
            for i in range(sample):
                plain.get_item(TableName=table, Key={"id": {"N": str(i)}})

        seconds, _ = timed(put_loop)
        record("put_item loop (sample)", seconds, bulk_counter.take("PutItem"), sample, None)
        seconds, _ = timed(get_loop)
        record("get_item loop (sample)", seconds, bulk_counter.take("GetItem"), sample, None)

        log.print(
            "[bold]each item of every BatchWriteItem held back with p=0.4 (UnprocessedItems)[/]",
            highlight=False,
        )
        faulty = bulkops.connect(boto3.client("dynamodb", endpoint_url=url, region_name=REGION))
        faulty_counter = Counter(faulty, counting)
        HoldBackWrites(faulty.backend.client, share=0.4, per_item=True)  # type: ignore[attr-defined]
        table = fresh()
        seconds, report = timed(
            lambda: faulty.upsert(table, (item(i) for i in range(n)), on_error="isolate")
        )
        record(
            "bulkops upsert, 40% unprocessed", seconds, faulty_counter.take("BatchWriteItem"),
            n, n - stored(table),
        )  # fmt: skip
        results["bulkops upsert, 40% unprocessed"]["failed"] = report.failed
        if args.workers > 1:
            table = fresh()
            seconds, report = timed(
                lambda: faulty.upsert(
                    table, (item(i) for i in range(n)), workers=2 * args.workers, on_error="isolate"
                )
            )
            name = f"bulkops upsert workers={2 * args.workers}, 40% unprocessed"
            record(name, seconds, faulty_counter.take("BatchWriteItem"), n, n - stored(table))
            results[name]["failed"] = report.failed
        faulty_resource = boto3.resource("dynamodb", endpoint_url=url, region_name=REGION)
        faulty_resource_counter = Counter(faulty_resource, counting)
        HoldBackWrites(faulty_resource.meta.client, share=0.4, per_item=True)
        table = fresh()

        def faulty_batch_writer() -> None:
            with faulty_resource.Table(table).batch_writer() as writer:
                for i in range(n):
                    writer.put_item(Item=boto3_item(i))

        seconds, _ = timed(faulty_batch_writer)
        record(
            "boto3 batch_writer, 40% unprocessed", seconds,
            faulty_resource_counter.take("BatchWriteItem"), n, n - stored(table),
        )  # fmt: skip

    def rate(name: str) -> float:
        return float(results[name]["items_per_second"])

    checks = [
        ("write requests == ceil(N/25)", results["bulkops upsert"]["requests"], math.ceil(n / 25)),
        (
            "read requests == ceil(N/100)",
            results["bulkops get_many"]["requests"],
            math.ceil(n / 100),
        ),
    ]
    ratios = {
        "upsert / put_item loop": rate("bulkops upsert") / rate("put_item loop (sample)"),
        "get_many / get_item loop": rate("bulkops get_many") / rate("get_item loop (sample)"),
        "upsert / batch_writer": rate("bulkops upsert") / rate("boto3 batch_writer"),
    }
    if args.workers > 1:
        name = f"bulkops upsert workers={args.workers}"
        ratios[f"upsert workers={args.workers} / put_item loop"] = rate(name) / rate(
            "put_item loop (sample)"
        )
    lost = {name: r["lost"] for name, r in results.items() if r["lost"] is not None}
    broken = [f"{label}: {value:,} (must be {target:,})" for label, value, target in checks
              if value != target]  # fmt: skip
    broken += [f"items lost: {name}: {value:,}" for name, value in lost.items() if value]
    broken += [
        f"items reported failed: {name}: {r['failed']:,}"
        for name, r in results.items()
        if r.get("failed")
    ]
    missed = [
        f"{label}: {value:.1f}x (target >= 10x)"
        for label, value in ratios.items()
        if "loop" in label and value < 10.0
    ]
    if args.json:
        print(json.dumps({"items": n, "results": results, "ratios": ratios}, indent=2))
        return conclude(broken, missed)
    table_out = results_table(
        [("contender", "left"), ("items", "right"), ("requests", "right"), ("seconds", "right"),
         ("items/s", "right"), ("lost", "right")]
    )  # fmt: skip
    for name, r in results.items():
        table_out.add_row(
            name, f"{r['items']:,}", f"{r['requests']:,}", f"{r['seconds']:.3f}",
            f"{r['items_per_second']:,.0f}", "-" if r["lost"] is None else str(r["lost"]),
        )  # fmt: skip
    log.print(table_out)
    targets = results_table(
        [("check", "left"), ("value", "right"), ("target", "right"), ("", "left")]
    )
    for label, value, target in checks:
        targets.add_row(
            label, f"{value:,}", f"{target:,}", mark("PASS" if value == target else "FAIL")
        )
    for label, value in ratios.items():
        target = 10.0 if "loop" in label else None
        targets.add_row(
            label,
            f"{value:.1f}x",
            f">= {target:.0f}x" if target else "-",
            mark(status_of(value, target)),
        )
    for label, value in lost.items():
        targets.add_row(
            f"items lost: {label}", str(value), "0", mark("PASS" if value == 0 else "FAIL")
        )
    log.print(targets)
    return conclude(broken, missed)


if __name__ == "__main__":
    sys.exit(main())
