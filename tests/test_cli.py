"""The CLI, through its real entry point (the installed ``bulkops`` script)."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest

from bulkops.cli import main

SCRIPT = shutil.which("bulkops", path=str(Path(sys.executable).parent))
COMMAND = [SCRIPT] if SCRIPT else [sys.executable, "-m", "bulkops"]


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


CSV = (
    "id,name,price,added\n"
    "1,apple,1.20,2024-01-02\n2,pear,0.50,2024-01-03\n3,fig,12.345,2024-01-04\n"
)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_load_csv_creates_the_table_and_reports(tmp_path: Path) -> None:
    (tmp_path / "fruit.csv").write_text(CSV)
    result = run("load", "fruit.csv", "--table", "fruit", "--key", "id", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "inserted" in result.stdout and "3" in result.stdout
    db = tmp_path / "bulkops.db"  # the default --db
    schema = query(db, "SELECT sql FROM sqlite_schema WHERE name = 'fruit'")[0][0]
    assert "NUMERIC" in schema and "PRIMARY KEY (id)" in schema
    # Decimals are numbers to plain SQL (NUMERIC affinity), not text.
    assert query(db, "SELECT id, price, added FROM fruit ORDER BY id") == [
        (1, 1.2, "2024-01-02"),
        (2, 0.5, "2024-01-03"),
        (3, 12.345, "2024-01-04"),
    ]


def test_load_json_report_and_upsert_mode(tmp_path: Path) -> None:
    (tmp_path / "fruit.csv").write_text(CSV)
    db = f"sqlite:///{tmp_path / 'shop.db'}"
    first = run(
        "load", "fruit.csv", "-t", "fruit", "--key", "id", "--db", db, "--json", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["inserted"] == 3 and report["rows_in"] == 3
    (tmp_path / "fruit2.csv").write_text(CSV.replace("0.50", "0.55") + "4,kiwi,2,2024-01-05\n")
    second = run(
        "load", "fruit2.csv", "-t", "fruit", "--mode", "upsert", "--db", db, "--json", cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["inserted"], report["updated"], report["unchanged"]) == (1, 1, 2)
    from bulkops import connect

    with connect(db) as store:
        assert store.get_many("fruit", [2])[2]["price"] == Decimal("0.55")


def test_bad_rows_go_to_the_rejects_file_and_exit_nonzero(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)")
    conn.commit()
    conn.close()
    (tmp_path / "in.csv").write_text("id,qty,note\n1,5,a\n2,five,b\n3,,c\n4,7\n5,8,e\n")
    result = run(
        "load",
        "in.csv",
        "-t",
        "t",
        "--db",
        f"sqlite:///{db}",
        "--rejects",
        "bad.jsonl",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    lines = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert {x["row"]: x["column"] for x in lines} == {2: "qty", 3: "qty", 4: None}
    assert lines[0]["values"] == {"id": "2", "qty": "five", "note": "b"}
    assert next(x["reason"] for x in lines if x["row"] == 4) == (
        "row has 2 values for 3 columns (id, qty, note)"
    )
    assert query(db, "SELECT id FROM t ORDER BY id") == [(1,), (5,)]


def test_max_rejects_stops_the_run(tmp_path: Path) -> None:
    body = "id,qty\n" + "".join(f"{i},{'x' if i % 2 else i}\n" for i in range(1, 101))
    (tmp_path / "in.csv").write_text(body)
    db = f"sqlite:///{tmp_path / 't.db'}"
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER)")
    conn.commit()
    conn.close()
    result = run(
        "load", "in.csv", "-t", "t", "--db", db, "--max-rejects", "5", "--chunk-size", "10",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["stopped"] and "--max-rejects 5" in report["error"]
    assert report["rows_in"] == 20 and report["rejected"] == 10 and report["inserted"] == 10


def test_missing_table_without_create_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "fruit.csv").write_text(CSV)
    result = run("load", "fruit.csv", "-t", "nope", "--no-create", cwd=tmp_path)
    assert result.returncode == 2
    assert "no such table 'nope'" in result.stderr


def test_gzip_jsonl_and_stdin(tmp_path: Path) -> None:
    lines = [{"id": i, "amount": 0.1 * i, "tags": ["a", i]} for i in range(1, 6)]
    payload = "".join(json.dumps(x) + "\n" for x in lines).encode()
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(payload))
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = run("load", "in.jsonl.gz", "-t", "j", "--key", "id", "--db", db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run(
        "load", "-", "-t", "j", "--format", "jsonl", "--mode", "upsert", "--db", db, "--json",
        cwd=tmp_path, stdin=payload,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["unchanged"] == 5
    from bulkops import connect

    with connect(db) as store:
        row = store.get_many("j", [3])[3]
    assert row["tags"] == ["a", 3]
    assert row["amount"] == Decimal("0.30000000000000004")  # exact digits of the file


def test_delete_mode(tmp_path: Path) -> None:
    (tmp_path / "fruit.csv").write_text(CSV)
    db = f"sqlite:///{tmp_path / 't.db'}"
    assert (
        run("load", "fruit.csv", "-t", "fruit", "--key", "id", "--db", db, cwd=tmp_path).returncode
        == 0
    )
    (tmp_path / "gone.csv").write_text("id\n1\n3\n9\n")
    result = run(
        "load", "gone.csv", "-t", "fruit", "--mode", "delete", "--db", db, "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["deleted"], report["not_found"]) == (2, 1)


def test_unknown_format_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "data.xyz").write_text("x")
    result = run("load", "data.xyz", "-t", "t", cwd=tmp_path)
    assert result.returncode == 2 and "--format" in result.stderr


def test_every_command_and_option_has_help() -> None:
    def walk(command: click.Command, path: str) -> None:
        assert command.help and command.help.strip(), f"{path} has no help"
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                assert param.help, f"{path} {param.opts} has no help"
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}")

    walk(main, "bulkops")


@pytest.mark.parametrize("args", [["--help"], ["load", "--help"], ["--version"]])
def test_help_runs(args: list[str], tmp_path: Path) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip()


@pytest.mark.parametrize(
    "code",
    [
        "import bulkops",
        "import bulkops.cli",
        "from bulkops.cli import main\n"
        "try:\n    main(['load', '--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_the_command_line_loads_no_database_toolkit_until_it_connects(code: str) -> None:
    """The package's top level is lazy (PEP 562): the command line, ``--help`` and
    ``import bulkops`` load neither SQLAlchemy nor a driver nor pyarrow; they load
    when a command opens a database or a file."""
    check = "import sys\nheavy = ('sqlalchemy', 'psycopg', 'pyarrow', 'boto3')\n"
    check += "print(sorted(m for m in heavy if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{check}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_lazy_top_level_still_gives_every_public_name() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import bulkops; print(bulkops.connect.__module__, "
         "bulkops.Store.__module__, bulkops.errors.BulkError.__name__)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.split() == ["bulkops.api", "bulkops.store", "BulkError"], done.stderr


def test_load_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [1, 2, 3],
            "price": pa.array([Decimal("1.10"), Decimal("2.20"), None], pa.decimal128(10, 2)),
            "seen": pa.array([True, False, True]),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    db = f"sqlite:///{tmp_path / 't.db'}"
    result = run(
        "load", "in.parquet", "-t", "pq", "--key", "id", "--db", db, "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 3
    from bulkops import connect

    with connect(db) as store:
        rows = store.get_many("pq", [1, 3])
    assert rows[1] == {"id": 1, "price": Decimal("1.10"), "seen": True}
    assert rows[3]["price"] is None


def test_seq_allocate(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    first = run("seq", "allocate", "lot:42", "3", "--db", db, "--prefix", "LOT-", "--padding", "5",
                cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["LOT-00001", "LOT-00002", "LOT-00003"]
    second = run("seq", "allocate", "lot:42", "2", "--db", db, "--out", "more.txt", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "more.txt").read_text().split() == ["4", "5"]
    bad = run("seq", "allocate", "x", "1", "--db", db, "--prefix", "{week}", cwd=tmp_path)
    assert bad.returncode == 2 and "only {year}" in bad.stderr


def test_the_program_ends_without_taking_its_modules_apart(tmp_path: Path) -> None:
    """``python -m bulkops`` (and the console script) ends once the command is done:
    the exit handlers run and the output is flushed, but Python's shutdown does not
    take the loaded modules apart one object at a time (0.2 s of CPU after SQLAlchemy,
    psycopg and pyarrow). Exit status and output are the command's."""
    (tmp_path / "in.csv").write_text("id,n\n1,2\n")
    code = (
        "import atexit, sys\n"
        "class Teardown:\n"
        "    def __del__(self):\n"
        "        sys.stderr.write('modules taken apart\\n')\n"
        "sys.modules['__main__'].witness = Teardown()\n"
        "atexit.register(lambda: sys.stderr.write('exit handler ran\\n'))\n"
        "sys.argv = ['bulkops'] + sys.argv[1:]\n"
        "from bulkops.cli import run\n"
        "run()\n"
    )
    db = f"sqlite:///{tmp_path / 't.db'}"
    for args, status in [(["load", "in.csv", "-t", "t", "--db", db, "--json"], 0),
                         (["load", "missing.csv", "-t", "t", "--db", db], 2),
                         (["--version"], 0)]:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == status, done.stderr
        assert "exit handler ran" in done.stderr
        assert "modules taken apart" not in done.stderr
    assert (
        json.loads(run("load", "in.csv", "-t", "u", "--db", db, "--json", cwd=tmp_path).stdout)[
            "inserted"
        ]
        == 1
    )
