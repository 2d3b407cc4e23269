"""bulkops.dask.load on a real Dask cluster (worker processes) and the real PostgreSQL:
exactly once through lost workers and retried tasks, resumable load ids, atomic
publish."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

import bulkops  # noqa: E402
from bulkops.backends.base import LOADS_TABLE  # noqa: E402
from bulkops.dask import arrow_partition, frame_digest, load, stage_name  # noqa: E402
from bulkops.errors import DataError, LoadConflictError, UnsupportedError  # noqa: E402
from bulkops.report import Report  # noqa: E402
from conftest import pg_execute  # noqa: E402

# The worker processes cannot import this test module: its helpers travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = 2_000
CONFLICT = r"partition \d of load 'fixed' was committed .* with other data"
PARTS = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes of one thread each, shared by the module's tests."""
    # Workers inherit the environment they start with: DynamoDB Local's credentials
    # (any letters do; conftest sets the same) must be there before they start.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bulkopstests")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bulkopstests")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def frame(n: int = ROWS, offset: int = 0) -> Any:
    ids = range(offset, offset + n)
    return pd.DataFrame(
        {
            "id": list(ids),
            "qty": [i % 7 for i in ids],
            "price": [Decimal(i) / 100 for i in ids],
            "name": [f"item-{i:06d}" if i % 11 else None for i in ids],
            "at": pd.to_datetime([1_700_000_000 + i for i in ids], unit="s", utc=True),
        }
    )


def make_table(db: bulkops.Store, name: str = "items") -> None:
    db.create_table(
        name,
        {"id": "integer", "qty": "integer", "price": "decimal", "name": "text", "at": "datetime"},
        key="id",
    )


def contents(db: bulkops.Store, table: str = "items") -> dict[Any, dict[str, Any]]:
    return db.get_many(table, range(-10_000, 10_000))


def expected(pdf: Any) -> dict[Any, dict[str, Any]]:
    rows = pdf.astype(object).where(pdf.notna(), None).to_dict("records")
    return {r["id"]: {**r, "at": r["at"].to_pydatetime()} for r in rows}


def ledger(db: bulkops.Store) -> list[dict[str, Any]]:
    """Every row of the ledger (each test has a database of its own)."""
    spec = db.table(LOADS_TABLE)
    columns = tuple(spec.columns)
    found = db.backend.select_where(spec, columns, {})
    return [dict(zip(columns, row, strict=True)) for row in found]


def kill_once(marker: str, report: Report) -> None:
    """progress= callback: SIGKILL the worker's own process, mid-partition, the first
    time any task gets here."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def fail_once(marker: str, index: int, report: Report) -> None:
    """on_partition callback: raise once, after the partition committed."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    raise RuntimeError(f"lost the reply of partition {index}")


pytestmark = pytest.mark.postgres


def test_a_worker_killed_mid_partition_loads_every_row_once(
    cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        pdf = frame()
        ddf = dd.from_pandas(pdf, npartitions=PARTS)
        marker = str(tmp_path / "killed")
        report = load(ddf, pg_url, "items", chunk_size=100,
                      progress=functools.partial(kill_once, marker))  # fmt: skip
        assert Path(marker).exists()  # a worker did die while writing
        assert contents(db) == expected(pdf)
        assert report.rows_in == ROWS and report.inserted == ROWS and report.accounted == ROWS
        rows = ledger(db)
        assert sorted(r["partition_index"] for r in rows) == list(range(PARTS))
        assert sum(r["rows"] for r in rows) == ROWS


def test_a_task_retried_after_its_partition_committed_writes_nothing_again(
    cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        pdf = frame()
        ddf = dd.from_pandas(pdf, npartitions=PARTS)
        marker = str(tmp_path / "failed")
        report = load(ddf, pg_url, "items", retries=2,
                      on_partition=functools.partial(fail_once, marker))  # fmt: skip
        assert Path(marker).exists()
        assert contents(db) == expected(pdf)
        # The retry found its partition committed: counted as skipped, not again.
        assert report.skipped == ROWS // PARTS
        assert report.inserted + report.skipped == ROWS == report.accounted
        assert sorted(r["partition_index"] for r in ledger(db)) == list(range(PARTS))


def test_the_same_load_id_twice_writes_nothing_the_second_time(cluster: Any, pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        pdf = frame()
        ddf = dd.from_pandas(pdf, npartitions=PARTS)
        first = load(ddf, pg_url, "items")
        second = load(ddf, pg_url, "items")  # the default load id: same input, same id
        assert first.inserted == ROWS
        assert second.skipped == ROWS and second.written == 0 and second.statements == 0
        assert contents(db) == expected(pdf)
        # Other data under the same load id is an error, never a silent skip.
        changed = pdf.assign(qty=pdf.qty + 1)
        same = {"mode": "upsert", "key": "id", "load_id": "fixed"}
        assert load(dd.from_pandas(pdf, npartitions=PARTS), pg_url, "items", **same).unchanged
        with pytest.raises(
            LoadConflictError,
            match=CONFLICT,
        ):
            load(dd.from_pandas(changed, npartitions=PARTS), pg_url, "items", retries=0, **same)
        assert contents(db) == expected(pdf)


def test_atomic_publish_leaves_the_target_untouched_until_the_load_finishes(
    cluster: Any, pg_url: str
) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        before = frame(50, offset=-50)
        db.insert("items", before.astype(object).where(before.notna(), None).to_dict("records"))
        pdf = frame()
        bad = pdf.astype({"qty": object})
        bad.loc[1_700, "qty"] = "seven"  # partition 3 fails for good (no rejects)
        with pytest.raises(DataError):
            load(dd.from_pandas(bad, npartitions=PARTS), pg_url, "items", publish="atomic",
                 load_id="nightly", retries=1)  # fmt: skip
        assert contents(db) == expected(before)  # nothing of the load is visible
        staged = ledger(db)
        assert sorted(r["partition_index"] for r in staged) == [0, 1, 2]
        fixed = bad.copy()
        fixed.loc[1_700, "qty"] = pdf.qty[1_700]  # the same dtypes: partitions 0-2 unchanged
        report = load(dd.from_pandas(fixed, npartitions=PARTS), pg_url, "items",
                      publish="atomic", load_id="nightly")  # fmt: skip
        assert contents(db) == {**expected(before), **expected(pdf)}
        assert report.inserted == ROWS == report.rows_in == report.accounted
        assert sorted(r["partition_index"] for r in ledger(db)) == [-1, 0, 1, 2, 3]
        with pytest.raises(bulkops.errors.SchemaError):
            db.table(stage_name("nightly"))  # the stage is gone
        again = load(dd.from_pandas(fixed, npartitions=PARTS), pg_url, "items",
                     publish="atomic", load_id="nightly")  # fmt: skip
        assert again.skipped == ROWS and again.written == 0


def test_atomic_upsert_equals_one_process_upserting_the_partitions_in_order(
    cluster: Any, pg_url: str
) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db, "items")
        make_table(db, "single")
        # Keys 0..599 in every partition with other values; some already in the table.
        parts = [frame(600).assign(qty=p, name=f"part-{p}") for p in range(PARTS)]
        parts[3] = parts[3].iloc[::2]  # the last partition has only every other key
        pdf = pd.concat(parts, ignore_index=True)
        existing = frame(300).assign(qty=0, name="part-0")
        for table in ("items", "single"):
            db.upsert(table, existing.astype(object).where(existing.notna(), None)
                      .to_dict("records"))  # fmt: skip
        for part in parts:  # one process, partition after partition
            db.upsert("single", part.astype(object).to_dict("records"), key="id")
        ddf = dd.concat([dd.from_pandas(p, npartitions=1) for p in parts])
        assert ddf.npartitions == PARTS
        report = load(ddf, pg_url, "items", mode="upsert", key="id", publish="atomic")
        assert contents(db, "items") == contents(db, "single")
        assert {r["name"] for r in contents(db).values()} == {"part-2", "part-3"}
        assert report.rows_in == len(pdf) == report.accounted
        assert report.duplicates == len(pdf) - 600
        assert report.unchanged == 0 and report.inserted == 300 and report.updated == 300


def test_rejects_of_every_partition_reach_one_file(
    cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        pdf = frame().astype({"qty": object})
        pdf.loc[[10, 1_510], "qty"] = "many"
        path = tmp_path / "rejects.jsonl"
        report = load(dd.from_pandas(pdf, npartitions=PARTS), pg_url, "items", rejects=path)
        assert report.rejected == 2 and report.inserted == ROWS - 2
        assert sorted(r.row for r in report.rejections) == [11, 1_511]  # in the whole input
        assert len(path.read_text().splitlines()) == 2
        assert {r["rejected"] for r in ledger(db)} == {0, 1}


def test_sqlite_loads_with_its_writes_serialized(cluster: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/load.db"
    with bulkops.connect(url) as db:
        make_table(db)
        pdf = frame()
        ddf = dd.from_pandas(pdf, npartitions=PARTS)
        report = load(ddf, url, "items", mode="upsert", key="id", publish="atomic")
        assert report.inserted == ROWS
        assert contents(db) == expected(pdf)
        assert load(ddf, url, "items", mode="upsert", key="id", publish="atomic").skipped == ROWS
        more = frame(400, offset=ROWS)
        assert load(dd.from_pandas(more, npartitions=PARTS), url, "items").inserted == 400
        assert contents(db) == {**expected(pdf), **expected(more)}


@pytest.mark.dynamodb
def test_dynamodb_takes_upserts_by_partition_only(cluster: Any, dynamodb_local: Any) -> None:
    url = dynamodb_local.url
    with bulkops.connect(url) as db:
        db.create_table("dask_items", {"id": "integer"}, key="id")
        pdf = frame(200)[["id", "qty", "name"]]
        ddf = dd.from_pandas(pdf, npartitions=PARTS)
        report = load(ddf, url, "dask_items", mode="upsert", key="id")
        assert report.rows_in == 200
        assert load(ddf, url, "dask_items", mode="upsert", key="id").rows_in == 200  # again
        assert len(db.get_many("dask_items", range(200))) == 200
        for wrong in ({"mode": "insert"}, {"mode": "upsert", "key": "id", "publish": "atomic"}):
            with pytest.raises(UnsupportedError, match="no transactions"):
                load(ddf, url, "dask_items", **wrong)


def test_the_digest_is_of_the_values_in_order() -> None:
    pdf = frame(10)
    assert frame_digest(pdf) == frame_digest(frame(10))
    assert frame_digest(pdf) != frame_digest(pdf.iloc[::-1])
    assert frame_digest(pdf) != frame_digest(pdf.assign(qty=pdf.qty + 1))
    assert frame_digest(pdf.iloc[2:5]) == frame_digest(pdf.iloc[2:5].reset_index(drop=True))
    # What a worker digests: the partition as the Arrow table it writes.
    assert frame_digest(arrow_partition(pdf)) == frame_digest(pdf)
    mixed = pdf.astype({"qty": object})
    mixed.loc[3, "qty"] = "three"  # Arrow refuses the column: pandas' hashes instead
    assert frame_digest(mixed) == frame_digest(mixed.copy()) != frame_digest(pdf)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_atomic_insert_meeting_existing_keys_fails_whole_unless_ignored(
    cluster: Any, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # PostgreSQL moves the stage with one INSERT ... SELECT straight from it.
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgres"
        else (f"sqlite:///{tmp_path}/load.db")
    )
    with bulkops.connect(url) as db:
        make_table(db)
        old = frame(10)
        db.insert("items", old.astype(object).where(old.notna(), None).to_dict("records"))
        ddf = dd.from_pandas(frame(100), npartitions=PARTS)
        with pytest.raises(bulkops.errors.ConstraintError):
            load(ddf, url, "items", publish="atomic", load_id="once")
        assert contents(db) == expected(old)  # the move failed as a whole
        report = load(ddf, url, "items", publish="atomic", load_id="twice", on_conflict="ignore")
        assert (report.inserted, report.ignored) == (90, 10)
        assert contents(db) == expected(frame(100))


def test_atomic_insert_moves_staged_partitions_while_later_ones_are_staging(
    cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    # The stage is laid out by partition: the client's publish transaction starts
    # moving the first partitions into the target while the last one is still being
    # staged, and readers of the target see none of it until everything is in.
    with bulkops.connect(pg_url) as db:
        make_table(db)
    seen = tmp_path / "seen"
    report = load(dd.from_pandas(frame(), npartitions=8), pg_url, "items", publish="atomic",
                  on_partition=functools.partial(watch_target, pg_url, str(seen), 7))  # fmt: skip
    assert report.inserted == ROWS == report.rows_in == report.accounted
    assert seen.read_text() == "moving: True, visible: 0"
    with bulkops.connect(pg_url) as db:
        assert contents(db) == expected(frame())
        with pytest.raises(bulkops.errors.SchemaError):
            db.table(stage_name(report_load_id(db)))  # the stage (and its parts) are gone
    tables = pg_execute(pg_url, "SELECT count(*) FROM pg_class WHERE relname LIKE 'bulkops_stage%'")
    assert tables == [(0,)]


def test_an_atomic_insert_moved_in_parts_moves_whole_after_a_transient_error(
    cluster: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deadlock while moving the second range: the moves so far are rolled back and
    # the whole stage moves at the end, in a transaction of its own (retried).
    from bulkops.backends.postgres import PostgresBackend
    from bulkops.errors import DeadlockError

    real = PostgresBackend.publish_stage
    moves: list[str] = []

    def deadlocked_once(self: Any, stage: str, op: Any, order: Any) -> Any:
        moves.append(stage)
        if len(moves) == 2:
            raise DeadlockError("deadlock detected (made by the test)")
        return real(self, stage, op, order)

    monkeypatch.setattr(PostgresBackend, "publish_stage", deadlocked_once)
    with bulkops.connect(pg_url) as db:
        make_table(db)
    report = load(dd.from_pandas(frame(), npartitions=8), pg_url, "items", publish="atomic")
    assert report.inserted == ROWS == report.rows_in == report.accounted
    with bulkops.connect(pg_url) as db:
        assert contents(db) == expected(frame())
        stage = stage_name(report_load_id(db))
    assert moves == [f"{stage}_0", f"{stage}_1", stage]


def report_load_id(db: bulkops.Store) -> str:
    (published,) = [r for r in ledger(db) if r["partition_index"] == -1]
    assert published["rows"] == ROWS
    return str(published["load_id"])


def watch_target(url: str, path: str, last: int, index: int, report: Report) -> None:
    """on_partition callback: once partition ``last`` is staged (its task not yet done),
    note whether another session holds a write lock on the target (the publish moving
    the partitions before it) and how many of its rows a reader sees."""
    if index != last:
        return
    import psycopg

    locked = (
        "SELECT count(*) FROM pg_locks WHERE relation = 'items'::regclass "
        "AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        moving = False
        for _ in range(200):
            row = conn.execute(locked).fetchone()
            if row is not None and row[0]:
                moving = True
                break
            time.sleep(0.05)
        visible = conn.execute("SELECT count(*) FROM items").fetchone()
    assert visible is not None
    with open(path, "w") as f:
        f.write(f"moving: {moving}, visible: {visible[0]}")


def test_atomic_insert_counts_the_rows_a_table_with_insert_rules_routes_elsewhere(
    cluster: Any, pg_url: str
) -> None:
    # Without INSERT rules the publish counts its rows by the INSERT's row count; a
    # rule that sends rows elsewhere makes that count the rule's, so the stage is
    # counted instead.
    with bulkops.connect(pg_url) as db:
        make_table(db)
    pg_execute(
        pg_url,
        "CREATE TABLE items_odd () INHERITS (items)",
        "CREATE RULE items_odd_rows AS ON INSERT TO items WHERE new.id % 2 = 1 "
        "DO INSTEAD INSERT INTO items_odd VALUES (new.*)",
    )
    pdf = frame()
    report = load(dd.from_pandas(pdf, npartitions=PARTS), pg_url, "items", publish="atomic")
    assert report.inserted == ROWS == report.rows_in == report.accounted
    with bulkops.connect(pg_url) as db:
        assert contents(db) == expected(pdf)  # the parent's rows and its child's
    assert pg_execute(pg_url, "SELECT count(*) FROM ONLY items_odd") == [(ROWS // 2,)]


def test_partitions_are_written_by_the_workers(cluster: Any, pg_url: str, tmp_path: Path) -> None:
    with bulkops.connect(pg_url) as db:
        make_table(db)
        log = tmp_path / "pids"
        load(dd.from_pandas(frame(), npartitions=PARTS), pg_url, "items",
             on_partition=functools.partial(record_pid, str(log)))  # fmt: skip
        pids = set(log.read_text().split())
        assert pids and str(os.getpid()) not in pids  # on the workers, not here


def record_pid(path: str, index: int, report: Report) -> None:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")


def test_a_worker_thread_writes_its_partitions_on_one_connection_closed_at_the_end(
    cluster: Any, pg_url: str
) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # Each row records the server process (the connection) that wrote it.
        conn.execute(
            "CREATE TABLE items (id integer PRIMARY KEY, qty integer, price numeric, "
            "name text, at timestamptz, writer integer NOT NULL DEFAULT pg_backend_pid())"
        )
        report = load(dd.from_pandas(frame(), npartitions=8), pg_url, "items")
        assert report.inserted == ROWS
        writers = [row[0] for row in conn.execute("SELECT DISTINCT writer FROM items")]
        # Two one-thread workers: eight partitions on at most two connections.
        assert 1 <= len(writers) <= 2
        open_ = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)"
        for _ in range(100):  # a backend exits just after its client disconnected
            found = conn.execute(open_, (writers,)).fetchone()
            if found is not None and found[0] == 0:
                break
            time.sleep(0.05)
        assert found is not None and found[0] == 0  # closed once the load was done


def test_a_local_process_pool_closes_its_connections_and_a_set_scheduler_is_honoured(
    cluster: Any, pg_url: str, tmp_path: Path
) -> None:
    from concurrent.futures import ProcessPoolExecutor

    import dask

    psycopg = pytest.importorskip("psycopg")
    with bulkops.connect(pg_url) as db:
        make_table(db)
    log = tmp_path / "pids"
    # A pool that outlives the load: Dask's "processes" scheduler, not the cluster.
    with ProcessPoolExecutor(2) as pool, dask.config.set(scheduler="processes", pool=pool):
        report = load(dd.from_pandas(frame(), npartitions=PARTS), pg_url, "items",
                      on_partition=functools.partial(record_pid, str(log)))  # fmt: skip
        assert report.inserted == ROWS
        ran = {int(p) for p in log.read_text().split()}
        assert ran <= {p.pid for p in pool._processes.values()}  # not on the cluster
        with psycopg.connect(pg_url, autocommit=True) as conn:
            others = (
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for _ in range(100):
                found = conn.execute(others).fetchone()
                if found is not None and found[0] == 0:
                    break
                time.sleep(0.05)
            assert found is not None and found[0] == 0  # none left open in the pool


def test_partitions_are_written_in_their_order(pg_url: str) -> None:
    # Dask's own order runs independent partitions from the last one down, which costs
    # a primary key's index on the server about a third more per row (measured); the
    # load gives the scheduler the partitions' order. One worker of one thread: the
    # ledger's times are the order the partitions were written in.
    with bulkops.connect(pg_url) as db:
        make_table(db)
        with (
            distributed.LocalCluster(
                n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0"
            ) as local,
            distributed.Client(local),
        ):
            report = load(dd.from_pandas(frame(), npartitions=8), pg_url, "items")
        assert report.inserted == ROWS
        rows = sorted(ledger(db), key=lambda r: r["committed_at"])
        assert [r["partition_index"] for r in rows] == list(range(8))


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_local_scheduler_writes_the_partitions_in_their_order(
    pg_url: str, tmp_path: Path, scheduler: str
) -> None:
    # Dask's local schedulers take no priorities; without the load's task names they
    # ran the partitions from the last one down (12 partitions: 9, 8, ..., 2, 11, 10,
    # 1, 0, by the names' text).
    import dask

    with bulkops.connect(pg_url) as db:
        make_table(db)
    log = tmp_path / "order"
    with dask.config.set(scheduler=scheduler, num_workers=1):
        report = load(dd.from_pandas(frame(), npartitions=12), pg_url, "items",
                      on_partition=functools.partial(record_index, str(log)))  # fmt: skip
    assert report.inserted == ROWS
    assert [int(i) for i in log.read_text().split()] == list(range(12))


def record_index(path: str, index: int, report: Report) -> None:
    with open(path, "a") as f:
        f.write(f"{index}\n")
