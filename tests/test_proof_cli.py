"""CLI options the README documents and no other test runs, through the installed
script; every test reads the table back with the stdlib sqlite3 driver."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from test_cli import run
from test_sync_cli import ROWS, setup, table, write_csv


def rows_of(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def make(tmp_path: Path, ddl: str) -> tuple[Path, str]:
    db = tmp_path / "cli.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(ddl)
    return db, f"sqlite:///{db}"


def test_load_mode_update_changes_only_existing_rows(tmp_path: Path) -> None:
    """--mode update: existing keys updated, unknown keys not found (not inserted)."""
    db, url = make(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                             "INSERT INTO t VALUES (1, 'a'), (2, 'b');")  # fmt: skip
    (tmp_path / "u.csv").write_text("id,v\n1,A\n3,C\n")
    done = run("load", "u.csv", "-t", "t", "--db", url, "--mode", "update", "--key", "id",
               "--json", "--no-run-log", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["updated"] == 1 and report["not_found"] == 1, report
    assert rows_of(db, "SELECT id, v FROM t ORDER BY id") == [(1, "A"), (2, "b")]


def test_load_atomic_with_a_bad_row_commits_nothing(tmp_path: Path) -> None:
    """--atomic --on-error raise: one bad row in the last chunk, no row stays, exit 1.
    Kills: --atomic not passed to the library (the first chunks would stay)."""
    db, url = make(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);")
    lines = "".join(f"{i},{'' if i == 30 else i}\n" for i in range(1, 31))
    (tmp_path / "a.csv").write_text("id,n\n" + lines)
    done = run("load", "a.csv", "-t", "t", "--db", url, "--atomic", "--on-error", "raise",
               "--chunk-size", "10", "--no-run-log", "--quiet", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert rows_of(db, "SELECT count(*) FROM t") == [(0,)]
    # Without --atomic the first two chunks commit: the flag is what made the difference.
    again = run("load", "a.csv", "-t", "t", "--db", url, "--on-error", "raise",
                "--chunk-size", "10", "--no-run-log", "--quiet", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 1
    assert rows_of(db, "SELECT count(*) FROM t") == [(20,)]


def test_load_on_error_raise_stops_at_the_bad_row(tmp_path: Path) -> None:
    """--on-error raise (not the CLI's default isolate): the run stops at the bad chunk,
    exit status 1, chunks before it committed, none after."""
    db, url = make(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);")
    lines = "".join(f"{i},{'' if i == 15 else i}\n" for i in range(1, 41))
    (tmp_path / "r.csv").write_text("id,n\n" + lines)
    done = run("load", "r.csv", "-t", "t", "--db", url, "--on-error", "raise",
               "--chunk-size", "10", "--no-run-log", "--quiet", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "15" in done.stderr + done.stdout  # names the row
    assert rows_of(db, "SELECT min(id), max(id), count(*) FROM t") == [(1, 10, 10)]
    isolate = run("load", "r.csv", "-t", "t", "--db", url, "--mode", "upsert", "--key", "id",
                  "--chunk-size", "10", "--no-run-log", "--quiet", cwd=tmp_path)  # fmt: skip
    assert isolate.returncode == 1  # rows rejected
    assert rows_of(db, "SELECT count(*) FROM t") == [(39,)]


def test_load_on_conflict_ignore(tmp_path: Path) -> None:
    """--on-conflict ignore: existing keys are ignored (counted), the row keeps its
    value, new keys are inserted, exit 0."""
    db, url = make(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                             "INSERT INTO t VALUES (1, 'old');")  # fmt: skip
    (tmp_path / "c.csv").write_text("id,v\n1,new\n2,two\n")
    done = run("load", "c.csv", "-t", "t", "--db", url, "--on-conflict", "ignore",
               "--json", "--no-run-log", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ignored"] == 1 and report["inserted"] == 1, report
    assert rows_of(db, "SELECT id, v FROM t ORDER BY id") == [(1, "old"), (2, "two")]
    plain = run("load", "c.csv", "-t", "t", "--db", url, "--json", "--no-run-log",
                cwd=tmp_path)  # fmt: skip
    assert plain.returncode == 1  # without the option the conflicts are rejected


def test_load_composite_key(tmp_path: Path) -> None:
    """--key a,b creates a composite primary key and upserts by it."""
    db = tmp_path / "k.db"
    url = f"sqlite:///{db}"
    (tmp_path / "k.csv").write_text("a,b,v\n1,x,1\n1,y,2\n2,x,3\n")
    first = run("load", "k.csv", "-t", "k", "--db", url, "--key", "a,b", "--quiet",
                "--no-run-log", cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    schema = rows_of(db, "SELECT sql FROM sqlite_schema WHERE name = 'k'")[0][0]
    assert "PRIMARY KEY (a, b)" in schema, schema
    (tmp_path / "k2.csv").write_text("a,b,v\n1,y,20\n3,x,4\n")
    second = run("load", "k2.csv", "-t", "k", "--db", url, "--key", "a,b", "--mode", "upsert",
                 "--json", "--no-run-log", cwd=tmp_path)  # fmt: skip
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["inserted"], report["updated"]) == (1, 1), report
    assert rows_of(db, "SELECT a, b, v FROM k ORDER BY a, b") == [
        (1, "x", 1), (1, "y", 20), (2, "x", 3), (3, "x", 4)
    ]  # fmt: skip


def test_sync_changes_out_with_dry_run_writes_the_file_not_the_table(tmp_path: Path) -> None:
    """sync --dry-run --changes-out: the changeset is written, the table is untouched;
    apply --table --rejects --json then brings another table level."""
    db, url = setup(tmp_path)
    before = table(db)
    edited = [r for r in ROWS if r[0] != 4]
    edited[0] = (1, "renamed", 10, "eu")
    edited.append((11, "new", 1, "eu"))
    source = write_csv(tmp_path / "edited.csv", edited)
    changes = tmp_path / "out.changes.gz"
    dry = run("sync", str(source), "--table", "stock", "--db", url, "--delete-missing",
              "--dry-run", "--changes-out", str(changes), "--json", cwd=tmp_path)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["added"], report["changed"], report["deleted"]) == (1, 1, 1)
    assert table(db) == before  # dry run: nothing written
    assert changes.exists() and changes.stat().st_size > 0

    # apply to a copy under another name (--table), with a rejects file and --json
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE copy (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, "
                     "region TEXT)")  # fmt: skip
        conn.execute("INSERT INTO copy SELECT * FROM stock")
    rejects = tmp_path / "rejects.jsonl"
    applied = run("apply", str(changes), "--db", url, "--table", "copy", "--rejects",
                  str(rejects), "--json", cwd=tmp_path)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert (report["added"], report["changed"], report["deleted"]) == (1, 1, 1), report
    assert table(db, "copy") == {i: (n, q, r) for i, n, q, r in edited}
    assert table(db) == before  # --table: the original was not touched
    assert not rejects.exists() or rejects.read_text() == ""


def test_apply_rejects_file_gets_the_bad_rows(tmp_path: Path) -> None:
    """apply --rejects: a changeset row the target refuses (NOT NULL) is written to the
    rejects file with its key, the rest is applied, exit status 1."""
    db, url = setup(tmp_path)
    edited = [(*r[:2], r[2] + 1, r[3]) for r in ROWS]
    source = write_csv(tmp_path / "edited.csv", edited)
    changes = tmp_path / "c.changes.gz"
    made = run("sync", str(source), "--table", "stock", "--db", url, "--dry-run",
               "--changes-out", str(changes), "--quiet", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE strict (id INTEGER PRIMARY KEY, name TEXT, "
                     "qty INTEGER CHECK (qty <> 31), region TEXT)")  # fmt: skip
        conn.execute("INSERT INTO strict SELECT * FROM stock")
    rejects = tmp_path / "bad.jsonl"
    applied = run("apply", str(changes), "--db", url, "--table", "strict", "--rejects",
                  str(rejects), "--json", cwd=tmp_path)  # fmt: skip
    assert applied.returncode == 1, (applied.stdout, applied.stderr)
    report = json.loads(applied.stdout)
    assert report["rejected"] == 1 and report["changed"] == 9, report
    bad = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [b["key"] for b in bad] == [3]
    got = {k: v[1] for k, v in table(db, "strict").items()}
    assert got == {i: (30 if i == 3 else q + 1) for i, _, q, _ in ROWS}
