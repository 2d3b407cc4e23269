"""Resumable loads: a load killed part way (SIGKILL, Ctrl-C) and started again with the
same file, table and options ends with exactly the file's rows, even for a plain
insert into a table without any key (where a chunk written twice would show)."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.errors import RerunError, ResumeError
from conftest import assert_accounted, needs

SCRIPT = shutil.which("bulkops", path=str(Path(sys.executable).parent))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "bulkops"]


def write_csv(path: Path, n: int) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "v"])
        out.writerows((i, f"row {i}") for i in range(1, n + 1))
    return path


def facts(db: bulkops.Store, table: str = "t") -> tuple[int, int, int, int]:
    """count, distinct ids, min id, max id."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {table}")
        ).one()
    return row[0], row[1], row[2] or 0, row[3] or 0


def keyless_table(db: bulkops.Store) -> None:
    """No primary key, no unique constraint: nothing would stop a chunk written twice."""
    engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
    sa.Table("t", sa.MetaData(), sa.Column("id", sa.BigInteger), sa.Column("v", sa.Text)).create(
        engine
    )


def interrupted(rows: Iterator[dict[str, Any]], after: int) -> Iterator[dict[str, Any]]:
    """The rows, then Ctrl-C after ``after`` of them."""
    for i, row in enumerate(rows):
        if i == after:
            raise KeyboardInterrupt
        yield row


def numbers(n: int) -> Iterator[dict[str, Any]]:
    return ({"id": i, "v": f"row {i}"} for i in range(1, n + 1))


# ---------------------------------------------------------------- the library


def test_interrupted_insert_resumes_exactly(db_url: str) -> None:
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    n, chunk = 1000, 64
    with bulkops.connect(db_url, run_log=True) as db:
        keyless_table(db)
        with pytest.raises(KeyboardInterrupt):
            db.insert("t", interrupted(numbers(n), 500), source_id="input-1", chunk_size=chunk)
        committed = facts(db)[0]
        assert committed == 448  # 7 whole chunks; the 8th was cut short by Ctrl-C
        first = db.runs(last=1)[0]
        assert first.status == "interrupted"

        report = db.insert("t", numbers(n), source_id="input-1", chunk_size=chunk, resume=True)
        assert_accounted(report, n)
        assert (report.skipped, report.inserted) == (448, n - 448)
        assert facts(db) == (n, n, 1, n)
        second = db.runs(last=1)[0]
        assert second.load_id == first.id and second.status == "ok"
        assert second.counts["skipped"] == 448

        # Resuming a load that completed writes nothing again.
        again = db.insert("t", numbers(n), source_id="input-1", chunk_size=chunk, resume=True)
        assert (again.skipped, again.inserted) == (n, 0)
        assert facts(db) == (n, n, 1, n)


def test_resume_refuses_another_input_or_other_options(db_url: str) -> None:
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    with bulkops.connect(db_url, run_log=True) as db:
        keyless_table(db)
        with pytest.raises(KeyboardInterrupt):
            db.insert("t", interrupted(numbers(100), 50), source_id="sha256:aaa", chunk_size=10)
        with pytest.raises(bulkops.errors.ResumeError, match=r"the input changed since run #\d+ "
                           r"\(sha256:aaa; now sha256:bbb\)"):  # fmt: skip
            db.insert("t", numbers(100), source_id="sha256:bbb", chunk_size=10, resume=True)
        with pytest.raises(bulkops.errors.ResumeError, match="chunk_size: 10 then, 20 now"):
            db.insert("t", numbers(100), source_id="sha256:aaa", chunk_size=20, resume=True)
        assert facts(db)[0] == 50  # nothing more was written
        report = db.insert("t", numbers(100), source_id="sha256:aaa", chunk_size=10, resume=True)
        assert (report.skipped, report.inserted) == (50, 50)
        assert facts(db) == (100, 100, 1, 100)


def test_resume_needs_the_run_log_and_its_own_transactions(db: bulkops.Store) -> None:
    needs(db, "run_log", "no run log: checkpoints need transactions")
    keyless_table(db)
    with pytest.raises(ResumeError, match="run_log=True"):
        db.insert("t", numbers(3), source_id="x")
    logged = bulkops.Store(db.backend, run_log=True)
    with pytest.raises(ResumeError, match="not inside atomic"), logged.atomic():
        logged.insert("t", numbers(3), source_id="x")


def test_a_fresh_load_of_the_same_input_starts_a_new_load(db_url: str) -> None:
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    with bulkops.connect(db_url, run_log=True) as db:
        keyless_table(db)
        db.insert("t", numbers(30), source_id="same", chunk_size=10)
        with pytest.raises(KeyboardInterrupt):
            db.insert("t", interrupted(numbers(30), 15), source_id="same", chunk_size=10)
        # The resume continues the second load (10 rows committed), not the first.
        report = db.insert("t", numbers(30), source_id="same", chunk_size=10, resume=True)
        assert (report.skipped, report.inserted) == (10, 20)
        assert facts(db) == (60, 30, 1, 30)


def test_loading_an_unfinished_input_again_is_refused_unless_resumed_or_forced(
    db_url: str,
) -> None:
    """A keyless insert of an input whose earlier load into the table did not finish
    would write the rows that load committed twice: refused before anything is
    written (RerunError, naming how to resume or force); resume or force proceed."""
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    with bulkops.connect(db_url, run_log=True) as db:
        keyless_table(db)
        with pytest.raises(KeyboardInterrupt):  # interrupted: no counts, checkpoints only
            db.insert("t", interrupted(numbers(100), 50), source_id="in-1", chunk_size=10)
        assert facts(db)[0] == 50
        runs = len(db.runs())
        with pytest.raises(RerunError, match=r"run \d+ loaded this input into 't' and did "
                           r"not finish \(interrupted\).*resume=True.*force=True"):  # fmt: skip
            db.insert("t", numbers(100), source_id="in-1", chunk_size=10)
        assert isinstance(RerunError("x"), ResumeError)
        assert facts(db)[0] == 50 and len(db.runs()) == runs  # nothing written or logged
        # Another input, or another verb that cannot double rows, is not refused.
        db.insert("t", numbers(3), source_id="in-2")
        assert facts(db)[0] == 53
        # Forced: loaded again on purpose, the committed rows are there twice.
        report = db.insert("t", numbers(100), source_id="in-1", chunk_size=10, force=True)
        assert report.inserted == 100 and facts(db)[0] == 153
        # That load finished: a further load of the input is not refused.
        db.insert("t", numbers(1), source_id="in-1")


def test_a_keyed_insert_of_an_unfinished_input_is_not_refused(db_url: str) -> None:
    """Where a key or unique constraint among the rows' columns stops a second copy,
    the rows that committed are conflicts, not copies: no refusal."""
    needs(db_url, "run_log", "no run log: checkpoints need transactions")
    with bulkops.connect(db_url, run_log=True) as db:
        engine: sa.Engine = db.backend.engine  # type: ignore[attr-defined]
        sa.Table(
            "k", sa.MetaData(), sa.Column("id", sa.BigInteger, unique=True), sa.Column("v", sa.Text)
        ).create(engine)
        with pytest.raises(KeyboardInterrupt):
            db.insert("k", interrupted(numbers(30), 15), source_id="in-1", chunk_size=10)
        report = db.insert("k", numbers(30), source_id="in-1", on_conflict="ignore")
        assert (report.inserted, report.ignored) == (20, 10)


# ------------------------------------------------------- a loader killed with SIGKILL


def bulkops_load(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, "load", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def sqlite_count(path: Path, sql: str) -> int:
    conn = sqlite3.connect(path, timeout=0)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # table not there yet, or locked
        return -1
    finally:
        conn.close()


def write_locked(path: Path) -> bool:
    """Whether another connection holds the database's write lock right now."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error)
        return True
    finally:
        conn.close()


@pytest.mark.timeout(120)
def test_sigkilled_sqlite_loader_resumes_exactly(tmp_path: Path) -> None:
    n, chunk, gate_chunk = 20_000, 500, 6
    write_csv(tmp_path / "rows.csv", n)
    path = tmp_path / "load.db"
    url = f"sqlite:///{path}"
    with bulkops.connect(url) as db:
        keyless_table(db)
    setup = sqlite3.connect(path)
    # One row of chunk 7 takes a long time inside its transaction (a busy trigger):
    # the loader is killed there, its chunk written in part and not committed.
    gate_id = gate_chunk * chunk + chunk // 2
    setup.execute(
        f"CREATE TRIGGER gate BEFORE INSERT ON t WHEN NEW.id = {gate_id} BEGIN "
        "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
        "FROM c WHERE x < 300000000) SELECT x FROM c); END"
    )
    setup.commit()
    args = ["rows.csv", "--table", "t", "--db", url, "--no-create", "--chunk-size", str(chunk),
            "--quiet"]  # fmt: skip
    with bulkops_load(*args, cwd=tmp_path) as proc:
        try:
            wait_until(
                lambda: (
                    sqlite_count(path, "SELECT count(*) FROM bulkops_checkpoints") == gate_chunk
                ),
                "the chunks before the gate to commit",
            )
            # The loader now holds the write lock, inside the gate chunk's transaction.
            wait_until(lambda: write_locked(path), "the loader to hold the write lock")
            assert proc.poll() is None
            proc.kill()  # SIGKILL
            proc.wait(10)
            assert proc.returncode == -9
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    setup.execute("DROP TRIGGER gate")
    setup.commit()
    setup.close()

    with bulkops.connect(url) as db:
        assert facts(db) == (gate_chunk * chunk, gate_chunk * chunk, 1, gate_chunk * chunk)
        assert db.runs()[0].status == "running"  # the crash is visible

    done = subprocess.run(
        [*COMMAND, "load", *args, "--resume", "--json"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with bulkops.connect(url) as db:
        assert facts(db) == (n, n, 1, n)
        runs = db.runs()
        assert [r.status for r in runs] == ["ok", "running"]
        assert runs[0].counts["skipped"] == gate_chunk * chunk
        assert runs[0].counts["inserted"] == n - gate_chunk * chunk
        assert runs[0].load_id == runs[1].id


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_sigkilled_postgres_loader_with_workers_resumes_exactly(
    pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    n, chunk, gate_chunk, gate_lock = 20_000, 500, 3, 4343
    write_csv(tmp_path / "rows.csv", n)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint, v text)")  # no key at all
        conn.execute(
            f"""CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared({gate_lock}); RETURN NEW; END $$"""
        )
        gate_id = gate_chunk * chunk + chunk // 2
        conn.execute(
            f"CREATE TRIGGER gate BEFORE INSERT ON t FOR EACH ROW WHEN (NEW.id = {gate_id}) "
            "EXECUTE FUNCTION gate()"
        )
    url = f"{pg_url}?application_name=resumed_loader"
    args = ["rows.csv", "--table", "t", "--db", url, "--no-create", "--chunk-size", str(chunk),
            "--workers", "2", "--quiet"]  # fmt: skip
    with (
        psycopg.connect(pg_url, autocommit=True) as ctl,
        psycopg.connect(pg_url, autocommit=True) as gate,
    ):
        gate.execute("SELECT pg_advisory_lock(%s)", (gate_lock,))

        def checkpoints() -> set[int]:
            try:
                rows = ctl.execute("SELECT first_row FROM bulkops_checkpoints").fetchall()
            except psycopg.errors.UndefinedTable:
                return set()
            return {r[0] for r in rows}

        with bulkops_load(*args, cwd=tmp_path) as proc:
            try:
                # Chunk 4 waits at the gate while the other worker commits chunks after it.
                wait_until(lambda: len(checkpoints()) >= gate_chunk + 4, "later chunks to commit")
                waiting = wait_until(
                    lambda: ctl.execute(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = "
                        "'resumed_loader' AND wait_event = 'advisory'"
                    ).fetchall(),
                    "the gate chunk to be in flight",
                )
                proc.kill()  # SIGKILL
                proc.wait(10)
                assert proc.returncode == -9
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        gate.execute("SELECT pg_advisory_unlock(%s)", (gate_lock,))
        pid = waiting[0][0]
        wait_until(
            lambda: (
                not ctl.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchall()
            ),
            "the orphaned backend to roll back and exit",
        )
        committed = checkpoints()
        # Committed out of order: a set of chunks with a hole, not a high-water mark.
        assert gate_chunk * chunk not in committed and max(committed) > gate_chunk * chunk
        count = ctl.execute("SELECT count(*) FROM t").fetchone()
        assert count is not None and count[0] == len(committed) * chunk

    done = subprocess.run(
        [*COMMAND, "load", *args, "--resume", "--json"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with bulkops.connect(pg_url) as db:
        assert facts(db) == (n, n, 1, n)
        runs = db.runs()
        assert [r.status for r in runs] == ["ok", "running"]
        assert runs[0].counts["skipped"] == len(committed) * chunk


def test_cli_resume_refuses_a_changed_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "rows.csv", 100)
    url = f"sqlite:///{tmp_path / 'load.db'}"
    with bulkops.connect(url, run_log=True) as db:
        keyless_table(db)
        # An interrupted load of the file as it was.
        source = bulkops.file_digest(tmp_path / "rows.csv")
        with pytest.raises(KeyboardInterrupt):
            db.insert("t", interrupted(numbers(100), 40), source_id=source, chunk_size=10,
                      columns=None)  # fmt: skip
    write_csv(tmp_path / "rows.csv", 101)  # the file changed since
    args = ["load", "rows.csv", "--table", "t", "--db", url, "--chunk-size", "10", "--resume"]
    done = subprocess.run([*COMMAND, *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert "cannot resume the load of 't': the input changed since run #1" in done.stderr
    with bulkops.connect(url) as db:
        assert facts(db)[0] == 40

    # --resume on stdin, or without the run log, is a usage error.
    stdin = [*COMMAND, "load", "-", "--table", "t", "--db", url, "--resume"]
    done = subprocess.run(stdin, cwd=tmp_path, capture_output=True, text=True, input="id\n1\n")
    assert done.returncode == 2 and "standard input" in done.stderr
    done = subprocess.run([*COMMAND, *args, "--no-run-log"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2 and "--no-run-log" in done.stderr
