"""SQLite inserts and upserts go as multi-row VALUES statements (one executemany of
full groups per chunk, one statement for the rest): the same rows, counts, rejections
and errors as one row per execution, at group boundaries, from rows and from Arrow."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pyarrow as pa
import pytest

import bulkops
from bulkops.errors import ConstraintError
from bulkops.testing import count_queries

CREATE = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER CHECK (n >= 0))"


@pytest.fixture
def path(tmp_path: Any) -> str:
    file = str(tmp_path / "values.db")
    with sqlite3.connect(file) as conn:
        conn.execute(CREATE)
    return file


def stored(path: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, v, n FROM t ORDER BY id").fetchall()


def rows(ids: range, v: str = "x") -> list[dict[str, Any]]:
    return [{"id": i, "v": f"{v}{i}", "n": i % 7} for i in ids]


def as_input(data: list[dict[str, Any]], arrow: bool) -> Any:
    return pa.Table.from_pylist(data) if arrow else data


def groups_in(statement: str) -> int:
    """How many rows one INSERT statement carries (as traced: with its values)."""
    return len(re.findall(r"\(\d+, ?'x\d+', ?\d+\)", statement))


def test_an_insert_is_one_executemany_of_groups_and_one_statement_for_the_rest(
    path: str,
) -> None:
    with bulkops.connect(f"sqlite:///{path}") as db:
        with count_queries(db, include_transaction_control=False) as counted:
            report = db.insert("t", rows(range(1, 1235)))
        assert report.inserted == 1234 and report.chunks == 1
        inserts = [s for s in counted.statements if s.startswith("INSERT")]
        # 3 values a row: groups of 500 rows (two of them), then the 234 left.
        assert [groups_in(s) for s in inserts] == [500, 234], inserts
        assert report.statements == 2
    assert stored(path) == [(i, f"x{i}", i % 7) for i in range(1, 1235)]


@pytest.mark.parametrize("arrow", [False, True], ids=["rows", "arrow"])
@pytest.mark.parametrize("n", [1, 2, 499, 500, 501, 1001])
def test_counts_and_rows_at_group_boundaries(path: str, arrow: bool, n: int) -> None:
    with bulkops.connect(f"sqlite:///{path}") as db:
        first = db.insert("t", as_input(rows(range(1, n + 1, 2)), arrow))
        assert first.inserted == len(range(1, n + 1, 2))
        # Odd ids exist: a third of them are given changed, the rest as they are.
        data = [
            {**r, "v": f"new{r['id']}"} if r["id"] % 3 == 0 and r["id"] % 2 else r
            for r in rows(range(1, n + 1))
        ]
        changed = sum(1 for i in range(1, n + 1) if i % 6 == 3)
        existing = len(range(1, n + 1, 2))
        ignored = db.insert("t", as_input(data, arrow), on_conflict="ignore", chunk_size=n)
        assert (ignored.inserted, ignored.ignored) == (n - existing, existing)
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM t WHERE id % 2 = 0")
        report = db.upsert("t", as_input(data, arrow))
        assert (report.inserted, report.updated, report.unchanged) == (
            n - existing,
            changed,
            existing - changed,
        )
        assert report.rows_in == report.accounted == n
    assert stored(path) == [(r["id"], r["v"], r["n"]) for r in data]


@pytest.mark.parametrize("arrow", [False, True], ids=["rows", "arrow"])
def test_a_bad_row_inside_a_group_costs_that_row_only(path: str, arrow: bool) -> None:
    data = rows(range(1, 1201))
    data[776]["n"] = -1  # row 777, in the middle of the second group
    with bulkops.connect(f"sqlite:///{path}") as db:
        report = db.insert("t", as_input(data, arrow), on_error="isolate")
        assert report.inserted == 1199
        (rejection,) = report.rejections
        assert (rejection.row, rejection.key) == (777, 777)
        assert "CHECK constraint failed" in rejection.reason
        with pytest.raises(ConstraintError) as caught:
            db.insert("t", as_input([*rows(range(2000, 2600)), data[776]], arrow))
        assert (caught.value.row, caught.value.key) == (601, 777)
        assert caught.value.report.inserted == 0  # its one chunk rolled back whole
    assert len(stored(path)) == 1199


def test_a_low_parameter_limit_makes_smaller_groups(tmp_path: Any) -> None:
    conn = sqlite3.connect(str(tmp_path / "low.db"), isolation_level=None)
    conn.execute(CREATE)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
    try:
        db = bulkops.connect(conn)
        data = rows(range(1, 51))
        with count_queries(conn, include_transaction_control=False) as counted:
            report = db.insert("t", pa.Table.from_pylist(data))
        assert report.inserted == 50
        inserts = [s for s in counted.statements if s.startswith("INSERT")]
        assert [groups_in(s) for s in inserts] == [6, 2]  # 20 // 3 rows a statement
        assert conn.execute("SELECT count(*), sum(n) FROM t").fetchone() == (
            50,
            sum(r["n"] for r in data),
        )
    finally:
        conn.close()
