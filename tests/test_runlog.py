"""The run log, events and log lines, on every backend."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.events import ChunkDone, Retried, RowsRejected, RunFinished, RunStarted
from bulkops.report import OUTCOMES
from conftest import assert_accounted, needs

SCRIPT = shutil.which("bulkops", path=str(Path(sys.executable).parent))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "bulkops"]


def run_log_store(url: str, **kwargs: Any) -> bulkops.Store:
    return bulkops.connect(url, run_log=True, **kwargs)


def other_connection_rows(db: bulkops.Store, sql: str) -> list[Any]:
    """Rows read on a connection of its own (what other sessions see)."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    fresh = sa.create_engine(engine.url)
    try:
        with fresh.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        fresh.dispose()


def assert_matches(run: bulkops.Run, report: bulkops.Report) -> None:
    """A run-log row says what the returned Report says."""
    assert run.verb == report.verb and run.table == report.table
    assert run.counts["rows_in"] == report.rows_in
    for name in OUTCOMES:
        assert run.counts[name] == getattr(report, name), name
    assert run.counts["chunks"] == report.chunks
    assert run.statements == report.statements
    assert run.retries == report.retries
    assert run.rejects == report.rejected
    assert run.elapsed == pytest.approx(report.elapsed)
    assert run.finished_at is not None and run.finished_at >= run.started_at


@pytest.fixture
def shop(db_url: str) -> Iterator[bulkops.Store]:
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    with run_log_store(db_url, label="nightly") as db:
        db.create_table("items", {"id": "integer", "name": "text", "stock": "integer"}, key="id")
        yield db


def test_run_log_rows_match_the_returned_reports(shop: bulkops.Store) -> None:
    db = shop
    reports = [
        db.insert("items", ({"id": i, "name": f"i{i}", "stock": 5} for i in range(1, 101)),
                  chunk_size=30),
        db.upsert("items", [{"id": 1, "name": "changed", "stock": 5},
                            {"id": 2, "name": "i2", "stock": 5},
                            {"id": 500, "name": "new", "stock": "lots"}],
                  on_error="isolate", label="fix-up"),
        db.adjust("items", {1: -3, 2: -10, 999: 1}, column="stock", min_value=0),
        db.delete("items", [3, 4, 999]),
    ]  # fmt: skip
    runs = db.runs()
    assert [r.verb for r in runs] == ["delete", "adjust", "upsert", "insert"]
    for run, report in zip(runs, reversed(reports), strict=True):
        assert_matches(run, report)
    assert [r.status for r in runs] == ["ok", "rejected", "rejected", "ok"]
    assert [r.label for r in runs] == ["nightly", "nightly", "fix-up", "nightly"]
    assert runs[3].counts["inserted"] == 100 and runs[3].counts["chunks"] == 4
    assert len({r.id for r in runs}) == 4 and runs[0].id > runs[3].id
    assert db.runs(last=1) == runs[:1]


def test_a_failing_call_is_recorded_with_its_error(shop: bulkops.Store) -> None:
    db = shop
    db.insert("items", [{"id": 1, "name": "a", "stock": 1}])
    with pytest.raises(bulkops.errors.ConstraintError) as failure:
        db.insert(
            "items", [{"id": 2, "name": "b", "stock": 1}, {"id": 1, "name": "dup", "stock": 1}]
        )
    run = db.runs(last=1)[0]
    assert run.status == "failed"
    assert run.error == str(failure.value)
    report = failure.value.report
    assert report is not None
    assert_matches(run, report)


def test_a_new_store_reads_the_run_log_tables_columns_once(
    shop: bulkops.Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every load starts by reading the run log (the re-run guard, ``bulkops load``'s
    check): each of its tables is reflected once, not the runs table twice."""
    shop.insert("items", [{"id": 1, "name": "a", "stock": 1}])
    with run_log_store(db_url) as db:
        reflected: list[str] = []
        reflect = db.backend.reflect

        def counted(table: str) -> Any:
            reflected.append(table)
            return reflect(table)

        monkeypatch.setattr(db.backend, "reflect", counted)
        assert [r.verb for r in db.runs(1)] == ["insert"]
        db.insert("items", [{"id": 2, "name": "b", "stock": 1}], source_id="file-1")
    assert sorted(reflected) == ["bulkops_checkpoints", "bulkops_runs", "items"]


def test_no_run_log_unless_asked(db: bulkops.Store) -> None:
    db.create_table("items", {"id": "integer"}, key="id")
    db.insert("items", [{"id": 1}])
    with pytest.raises(bulkops.errors.SchemaError):
        db.table("bulkops_runs")
    assert db.runs() == []  # reading the run log never creates it


def test_calls_inside_a_block_are_logged_when_it_ends_never_inside_it(
    shop: bulkops.Store,
) -> None:
    db = shop
    db.insert("items", [{"id": 1, "name": "a", "stock": 10}])
    logged = len(db.runs(last=None))
    with pytest.raises(RuntimeError, match="changed my mind"), db.atomic():
        report = db.adjust("items", {1: -4}, column="stock")
        db.insert("items", [{"id": 2, "name": "b", "stock": 1}])
        # Nothing is written to the run log while the block's transaction is open:
        # it would join that transaction (and vanish with its rollback).
        assert len(db.runs(last=None)) == logged
        raise RuntimeError("changed my mind")
    runs = db.runs(last=2)
    assert [r.verb for r in runs] == ["insert", "adjust"]
    assert [r.status for r in runs] == ["rolled back", "rolled back"]
    assert runs[1].error == "changed my mind"
    assert_matches(runs[1], report)
    assert db.get_many("items", [1, 2]) == {1: {"id": 1, "name": "a", "stock": 10}}

    for attempt in db.atomic():
        with attempt:
            db.adjust("items", {1: -1}, column="stock", label="checkout")
            with pytest.raises(ValueError), db.atomic():  # a savepoint that rolls back
                db.adjust("items", {1: -1}, column="stock")
                raise ValueError("inner")
    runs = db.runs(last=2)
    assert [(r.status, r.label) for r in runs] == [("rolled back", "nightly"), ("ok", "checkout")]
    assert db.get_many("items", [1])[1]["stock"] == 9
    # Seen from another session too: the rows were committed on their own.
    assert len(other_connection_rows(db, "SELECT id FROM bulkops_runs")) == logged + 4


def test_events_follow_the_chunks_and_add_up_to_the_report(db_url: str) -> None:
    needs(db_url, "declared_columns", "no column types: the bad rows would be written")
    events: list[Any] = []
    with bulkops.connect(db_url, on_event=events.append) as db:
        db.create_table("items", {"id": "integer", "stock": "integer"}, key="id")
        rows = [{"id": i, "stock": "x" if i in (7, 23) else i} for i in range(1, 51)]
        report = db.insert("items", rows, chunk_size=20, on_error="isolate")
        unsubscribe = db.subscribe(lambda event: events.append(("second", event)))
        db.delete("items", [1])
        unsubscribe()
        db.delete("items", [2])
    assert_accounted(report, 50)
    first = [e for e in events if not isinstance(e, tuple)][: 2 + 3 + 2]
    assert isinstance(first[0], RunStarted) and first[0].table == "items"
    chunks = [e for e in first if isinstance(e, ChunkDone)]
    assert [(c.first_row, c.rows) for c in chunks] == [(1, 20), (21, 20), (41, 10)]
    assert sum(c.counts["inserted"] for c in chunks) == report.inserted == 48
    assert sum(c.rejected for c in chunks) == 2
    rejected = [e for e in first if isinstance(e, RowsRejected)]
    assert [r.row for e in rejected for r in e.rejections] == [7, 23]
    finished = first[-1]
    assert isinstance(finished, RunFinished) and finished.report is report
    assert finished.error is None
    assert len([e for e in events if isinstance(e, tuple)]) == 3  # one call's worth


def test_retries_are_events_and_debug_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "busy.db"
    blocker = sqlite3.connect(path, isolation_level=None)
    events: list[Any] = []

    def release(seconds: float) -> None:
        blocker.execute("ROLLBACK")  # the retry finds the database free

    retry = bulkops.RetryPolicy(attempts=3, sleep=release)
    with bulkops.connect(f"sqlite:///{path}", on_event=events.append) as db:
        db.create_table("items", {"id": "integer"}, key="id")
        blocker.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.DEBUG, logger="bulkops"):
            report = db.insert("items", [{"id": 1}], retry=retry, lock_timeout=0.01)
    blocker.close()
    assert report.inserted == 1 and report.retries == 1
    with sqlite3.connect(path) as check:  # the row is there once, read without bulkops
        assert check.execute("SELECT id FROM items").fetchall() == [(1,)]
    retried = [e for e in events if isinstance(e, Retried)]
    assert len(retried) == 1
    assert retried[0].what == "rows 1-1" and retried[0].attempt == 1
    assert isinstance(retried[0].error, bulkops.errors.BusyError)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bulkops"]
    assert ("DEBUG", "insert items: rows 1-1 done: inserted 1") in messages
    assert any(level == "DEBUG" and "retry 1 in" in m for level, m in messages)
    assert messages[-1] == ("INFO", str(report))


def test_info_line_per_call_and_warning_on_failure(
    db: bulkops.Store, caplog: pytest.LogCaptureFixture
) -> None:
    db.create_table("items", {"id": "integer"}, key="id")
    with caplog.at_level(logging.INFO, logger="bulkops"):
        report = db.insert("items", [{"id": 1}, {"id": 2}])
        with pytest.raises(bulkops.errors.ConstraintError):
            db.insert("items", [{"id": 1}])
    records = [r for r in caplog.records if r.name == "bulkops"]
    assert (records[0].levelname, records[0].getMessage()) == ("INFO", str(report))
    assert records[1].levelname == "WARNING"
    assert records[1].getMessage().startswith("insert items failed: ")
    assert len(records) == 2  # nothing per chunk below DEBUG
    caplog.clear()
    with (  # stopped before any chunk
        caplog.at_level(logging.INFO, logger="bulkops"),
        pytest.raises(bulkops.errors.ConversionError),
    ):
        db.insert("items", [{"id": "x"}], on_error="raise")
    (failed,) = [r.getMessage() for r in caplog.records if r.name == "bulkops"]
    # not "(insert items: 0 rows in -> nothing to do; ...)", as if no row was given
    assert failed.startswith("insert items failed: row 1, key 'x', column 'id': ")
    assert failed.endswith(" (nothing written)")


# ------------------------------------------------------------------- the CLI


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_records_loads_and_lists_them(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,n\n1,10\n2,x\n3,30\n")
    conn = sqlite3.connect(tmp_path / "bulkops.db")
    conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, n INTEGER)")
    conn.close()
    loaded = cli("load", "a.csv", "--table", "a", "--label", "import", cwd=tmp_path)
    assert loaded.returncode == 1  # row 2 is rejected
    assert cli("load", "a.csv", "--table", "a", "--mode", "upsert", cwd=tmp_path).returncode == 1
    assert cli("load", "a.csv", "--table", "b", "--no-run-log", cwd=tmp_path).returncode == 0

    listed = cli("runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["verb"], r["table"], r["status"], r["label"]) for r in runs] == [
        ("upsert", "a", "rejected", None),
        ("insert", "a", "rejected", "import"),
    ]
    assert runs[1]["counts"]["inserted"] == 2 and runs[1]["rejects"] == 1
    assert runs[1]["source"].startswith("sha256:")
    assert runs[0]["counts"]["unchanged"] == 2

    text = cli("runs", "--last", "1", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "upsert" in text.stdout and "rejected" in text.stdout
    assert "import" not in text.stdout  # --last 1: the newest only


def test_cli_runs_on_a_database_without_a_run_log(tmp_path: Path) -> None:
    empty = cli("runs", "--db", f"sqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    assert empty.returncode == 0 and "no runs recorded" in empty.stderr
    conn = sqlite3.connect(tmp_path / "none.db")
    try:  # listing did not create the tables
        assert conn.execute("SELECT count(*) FROM sqlite_schema").fetchone() == (0,)
    finally:
        conn.close()
