"""``bulkops sync`` and ``bulkops apply`` through the installed script."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

from test_cli import run

HEADER = "id,name,qty,region\n"


def write_csv(path: Path, rows: list[tuple[int, str, int, str]]) -> Path:
    path.write_text(HEADER + "".join(f"{i},{n},{q},{r}\n" for i, n, q, r in rows))
    return path


def table(db: Path, name: str = "stock") -> dict[int, tuple[str, int, str]]:
    with sqlite3.connect(db) as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(f"SELECT * FROM {name}")}


ROWS = [(i, f"item{i}", i * 10, "eu" if i % 2 else "us") for i in range(1, 11)]


def setup(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "shop.db"
    url = f"sqlite:///{db}"
    source = write_csv(tmp_path / "stock.csv", ROWS)
    loaded = run("load", str(source), "--table", "stock", "--key", "id", "--db", url,
                 "--quiet", cwd=tmp_path)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    return db, url


def edited_rows() -> list[tuple[int, str, int, str]]:
    rows = [r for r in ROWS if r[0] != 4]
    rows[0] = (1, "renamed", 10, "eu")
    return [*rows, (11, "new", 1, "eu")]


def test_sync_writes_the_difference_and_skips_an_unchanged_file(tmp_path: Path) -> None:
    db, url = setup(tmp_path)
    source = write_csv(tmp_path / "new.csv", edited_rows())
    done = run("sync", str(source), "--table", "stock", "--db", url, "--delete-missing",
               "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["changed"], report["deleted"]) == (1, 1, 1)
    assert report["unchanged"] == 8 and not report["up_to_date"]
    assert table(db) == {i: (n, q, r) for i, n, q, r in edited_rows()}
    again = run("sync", str(source), "--table", "stock", "--db", url, "--delete-missing",
                "--json", cwd=tmp_path)  # fmt: skip
    assert json.loads(again.stdout)["up_to_date"] is True
    summary = run("sync", str(source), "--table", "stock", "--db", url, "--delete-missing",
                  cwd=tmp_path)  # fmt: skip
    assert summary.returncode == 0
    assert "unchanged since the last sync" in summary.stdout


def test_dry_run_and_where_scope(tmp_path: Path) -> None:
    db, url = setup(tmp_path)
    before = table(db)
    eu_only = write_csv(tmp_path / "eu.csv", [r for r in ROWS if r[3] == "eu" and r[0] != 1])
    dry = run("sync", str(eu_only), "--table", "stock", "--db", url, "--delete-missing",
              "--where", "region=eu", "--dry-run", cwd=tmp_path)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "deleted" in dry.stdout
    assert table(db) == before
    real = run("sync", str(eu_only), "--table", "stock", "--db", url, "--delete-missing",
               "--where", "region=eu", "--json", cwd=tmp_path)  # fmt: skip
    assert json.loads(real.stdout)["deleted"] == 1
    after = table(db)
    assert 1 not in after and all(after[i] == before[i] for i in before if before[i][2] == "us")
    bad = run("sync", str(eu_only), "--table", "stock", "--db", url, "--where", "region",
              cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "COLUMN=VALUE" in bad.stderr


def test_changes_out_then_apply_to_another_database(tmp_path: Path) -> None:
    db, url = setup(tmp_path)
    replica = tmp_path / "replica.db"
    load = run("load", str(tmp_path / "stock.csv"), "--table", "stock", "--key", "id",
               "--db", f"sqlite:///{replica}", "--quiet", cwd=tmp_path)  # fmt: skip
    assert load.returncode == 0
    source = write_csv(tmp_path / "new.csv", edited_rows())
    changes = tmp_path / "changes.jsonl.gz"
    done = run("sync", str(source), "--table", "stock", "--db", url, "--delete-missing",
               "--changes-out", str(changes), "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1
    lines = gzip.decompress(changes.read_bytes()).decode().splitlines()
    assert len(lines) == 1 + 3 + 1  # header, added + changed + deleted, trailer
    applied = run("apply", str(changes), "--db", f"sqlite:///{replica}", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "added" in applied.stdout
    assert table(replica) == table(db)
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress("\n".join(lines[:-1]).encode()))
    refused = run("apply", str(broken), "--db", f"sqlite:///{replica}", cwd=tmp_path)
    assert refused.returncode == 2 and "truncated" in refused.stderr


def test_bad_rows_exit_nonzero_and_are_not_deleted(tmp_path: Path) -> None:
    db, url = setup(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "".join(f"{i},{n},{'x' if i == 3 else q},{r}\n" for i, n, q, r in ROWS)
    )
    rejects = tmp_path / "rejects.jsonl"
    done = run("sync", str(path), "--table", "stock", "--db", url, "--delete-missing",
               "--rejects", str(rejects), "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["rejected"] == 1 and report["deleted"] == 0
    assert json.loads(rejects.read_text().splitlines()[0])["row"] == 3
    assert 3 in table(db)


def test_sync_and_load_share_their_on_error_default_and_say_so(tmp_path: Path) -> None:
    """A file's bad rows are set aside by default, in sync as in load; the help of
    both says that the library raises instead."""
    db, url = setup(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,item1,ten,eu\n2,item2,20,us\n12,item12,120,eu\n")
    done = run("sync", str(bad), "--table", "stock", "--db", url, "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # rows rejected, the rest written
    report = json.loads(done.stdout)
    assert (report["rejected"], report["added"]) == (1, 1)
    assert table(db)[12] == ("item12", 120, "eu") and table(db)[1] == ("item1", 10, "eu")
    for command in ("load", "sync", "apply"):
        shown = " ".join(run(command, "--help", cwd=tmp_path).stdout.split())
        assert "[default: isolate]" in shown and "library's default is raise" in shown, command
