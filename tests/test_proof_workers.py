"""Parallel workers (``workers=N``) when something fails, on a real PostgreSQL server.

README: every input row ends in exactly one outcome and the counts add up to the rows
given; with ``on_error="raise"`` the Report of what already committed travels with
the exception; ``max_rejects`` stops cleanly; transient errors are retried per chunk.
Each test reads the table back and holds the Report to it.
"""

from __future__ import annotations

from typing import Any

import pytest

import bulkops
from bulkops import RetryPolicy
from bulkops.errors import ConstraintError, TooManyRejectsError
from conftest import assert_accounted
from test_postgres_faults import connect, execute

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

N, CHUNK, WORKERS = 4000, 100, 3


def make_table(url: str, existing: int = 0) -> None:
    execute(
        url,
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL CHECK (v >= 0), note text)",
    )
    if existing:
        execute(url, f"INSERT INTO t SELECT g, g, 'old' FROM generate_series(1, {existing}) g")


def rows_with_bad(bad: set[int]) -> list[dict[str, Any]]:
    return [{"id": i, "v": -1 if i in bad else i, "note": f"new {i}"} for i in range(1, N + 1)]


def table_ids(url: str) -> set[int]:
    return {r[0] for r in execute(url, "SELECT id FROM t")}


def test_workers_on_error_raise_report_matches_what_committed(pg_url: str) -> None:
    """A bad row in chunk 8 with three workers and on_error="raise": a ConstraintError
    whose Report counts exactly the rows now in the table (chunks in flight on other
    workers may have committed too), the bad chunk is not there, and no chunk is
    counted that did not commit. Kills: a Report that misses chunks committed by other
    workers, or counts the failed chunk."""
    make_table(pg_url)
    bad = 750
    with connect(pg_url, "raiser") as db, pytest.raises(ConstraintError) as caught:
        db.insert("t", rows_with_bad({bad}), chunk_size=CHUNK, workers=WORKERS,
                  on_error="raise")  # fmt: skip
    report = caught.value.report
    assert report is not None
    ids = table_ids(pg_url)
    assert report.inserted == len(ids), (report, len(ids))
    assert report.chunks * CHUNK == len(ids)
    assert not set(range(701, 801)) & ids  # the failed chunk rolled back whole
    # Only whole chunks are there, and they are chunks of the input.
    starts = {(i - 1) // CHUNK for i in ids}
    assert ids == {i for s in starts for i in range(s * CHUNK + 1, s * CHUNK + CHUNK + 1)}
    assert len(ids) < N


def test_workers_isolate_accounts_for_every_row(pg_url: str) -> None:
    """Upsert with three workers over a table holding half the keys, some rows bad and
    some unchanged: inserted + updated + unchanged + rejected == rows given, and the
    table holds exactly the good rows. Kills: lost counts when workers report
    concurrently (a counter updated without the lock), or rejections dropped."""
    make_table(pg_url, existing=N // 2)
    bad = set(range(37, N + 1, 97))
    rows = rows_with_bad(bad)
    for row in rows[: N // 4]:
        if row["id"] not in bad:
            row["note"] = "old"  # ids 1..N/4 are given as they are: unchanged
    with connect(pg_url, "isolator") as db:
        report = db.upsert("t", rows, chunk_size=CHUNK, workers=WORKERS, on_error="isolate")
    assert_accounted(report, N)
    assert report.rejected == len(bad)
    assert report.inserted + report.updated + report.unchanged + report.rejected == N
    assert report.unchanged == N // 4 - len([b for b in bad if b <= N // 4])
    assert report.inserted == N // 2 - len([b for b in bad if b > N // 2])
    assert sorted(r.key for r in report.rejections) == sorted(bad)
    loaded = {r[0]: (r[1], r[2]) for r in execute(pg_url, "SELECT id, v, note FROM t")}
    for i in range(1, N + 1):
        if i in bad:
            assert loaded.get(i) == ((i, "old") if i <= N // 2 else None), i
        else:
            assert loaded[i][0] == i


def test_workers_max_rejects_stops_with_the_report_of_what_committed(pg_url: str) -> None:
    """max_rejects=5 with 40 bad rows spread over the input and three workers:
    TooManyRejectsError, and its Report is true to the table: written rows == rows in the
    table, rejected rows are not there. Kills: max_rejects ignored with workers (the
    call finishes), or a Report out of step with what committed."""
    make_table(pg_url)
    bad = set(range(50, N + 1, 100))
    with connect(pg_url, "capped") as db, pytest.raises(TooManyRejectsError) as caught:
        db.insert("t", rows_with_bad(bad), chunk_size=CHUNK, workers=WORKERS,
                  on_error="isolate", max_rejects=5)  # fmt: skip
    report = caught.value.report
    assert report is not None
    assert report.stopped, report
    ids = table_ids(pg_url)
    assert report.inserted == len(ids), (report, len(ids))
    assert not ids & bad
    assert report.rejected == len(report.rejections) > 5
    assert report.inserted + report.rejected == report.rows_in
    assert len(ids) < N - len(bad)  # it stopped before the end


def test_transient_error_in_one_worker_is_retried_once(pg_url: str) -> None:
    """A trigger raises 40001 once (in whichever worker meets it): that chunk is
    retried, every row lands exactly once, and the retry is counted in the Report
    (forks' retries included). Kills: a worker's retry not counted, or the chunk
    lost/doubled."""
    make_table(pg_url)
    execute(
        pg_url,
        "CREATE SEQUENCE calls",
        """CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.id = 2222 AND nextval('calls') = 1 THEN
               RAISE EXCEPTION 'forced' USING ERRCODE = '40001';
             END IF;
             RETURN NEW;
           END $$""",
        "CREATE TRIGGER fail_once BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION fail_once()",
    )
    with connect(pg_url, "transient") as db:
        report = db.insert("t", rows_with_bad(set()), chunk_size=CHUNK, workers=WORKERS,
                           retry=RetryPolicy(attempts=3, sleep=lambda s: None))  # fmt: skip
    assert_accounted(report, N)
    assert report.inserted == N
    assert report.retries == 1, report
    assert report.chunks == N // CHUNK
    assert execute(pg_url, "SELECT count(*), count(DISTINCT id), sum(v) FROM t") == [
        (N, N, N * (N + 1) // 2)
    ]


def test_transient_error_exhausting_retries_in_a_worker_raises(pg_url: str) -> None:
    """The same trigger failing every time: the error surfaces (retries exhausted), its
    Report counts exactly what the other workers committed, and the failing chunk is
    absent."""
    make_table(pg_url)
    execute(
        pg_url,
        """CREATE FUNCTION always() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.id = 2222 THEN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END IF;
             RETURN NEW;
           END $$""",
        "CREATE TRIGGER always BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION always()",
    )
    with connect(pg_url, "exhausted") as db, pytest.raises(bulkops.errors.TransientError) as caught:
        db.insert("t", rows_with_bad(set()), chunk_size=CHUNK, workers=WORKERS,
                  retry=RetryPolicy(attempts=3, sleep=lambda s: None))  # fmt: skip
    report = caught.value.report
    assert report is not None
    ids = table_ids(pg_url)
    assert report.inserted == len(ids)
    assert not set(range(2201, 2301)) & ids
    assert report.retries >= 2
