"""SQLite with foreign keys enforced (``PRAGMA foreign_keys=ON``, as Django and many
SQLAlchemy apps turn it on): a row that breaks a key is rejected with its row, key and
column, also when the key is checked at COMMIT (``DEFERRABLE INITIALLY DEFERRED``, how
Django declares every foreign key)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.errors import ConstraintError

DEFERRED = "DEFERRABLE INITIALLY DEFERRED"
FK_CODE = "SQLITE_CONSTRAINT_FOREIGNKEY"


def _engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def enforce(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    return engine


def _schema(path: Path, child_key: str = DEFERRED, on_delete: str = "NO ACTION") -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(
            f"""
            CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE child (
                id INTEGER PRIMARY KEY,
                parent_id INTEGER REFERENCES parent (id) ON DELETE {on_delete} {child_key},
                note TEXT
            );
            INSERT INTO parent VALUES (1, 'one'), (2, 'two'), (3, 'three');
            """
        )


def _rows(path: Path, table: str = "child", order: str = "id") -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[bulkops.Store]:
    _schema(tmp_path / "fk.db")
    engine = _engine(tmp_path / "fk.db")
    store = bulkops.connect(engine, run_log=False)
    yield store
    store.close()
    engine.dispose()


def _given(rows: list[dict[str, Any]], columnar: bool) -> Any:
    if not columnar:
        return rows
    pa = pytest.importorskip("pyarrow")
    return pa.Table.from_pylist(rows)


CHILDREN = [
    {"id": 1, "parent_id": 1, "note": "a"},
    {"id": 2, "parent_id": 99, "note": "b"},
    {"id": 3, "parent_id": 2, "note": "c"},
]

PATHS = pytest.mark.parametrize("columnar", [False, True], ids=["dicts", "arrow"])


def _the_orphan(
    report: bulkops.Report, row: int = 2, key: Any = 2, column: str = "parent_id"
) -> Any:
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column, bad.code) == (row, key, column, FK_CODE)
    assert bad.reason.startswith("FOREIGN KEY constraint failed")
    return bad


@PATHS
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_deferred_key_rejects_the_row_not_the_call(
    db: bulkops.Store, tmp_path: Path, columnar: bool, verb: str
) -> None:
    write = getattr(db, verb)
    report = write("child", _given(CHILDREN, columnar), on_error="isolate")
    assert (report.inserted, report.rejected) == (2, 1), report
    bad = _the_orphan(report)
    assert "child(parent_id) references parent(id)" in bad.reason
    assert _rows(tmp_path / "fk.db") == [(1, 1, "a"), (3, 2, "c")]
    # on_error="raise": the error names the row and the column; nothing of it is written.
    with pytest.raises(ConstraintError) as raised:
        write("child", _given([{"id": 4, "parent_id": 1, "note": "d"}, CHILDREN[1]], columnar))
    assert "row 2" in str(raised.value) and "parent_id" in str(raised.value)
    assert _rows(tmp_path / "fk.db") == [(1, 1, "a"), (3, 2, "c")]


@PATHS
def test_update_to_a_missing_parent_rejects_the_row(
    db: bulkops.Store, tmp_path: Path, columnar: bool
) -> None:
    db.insert("child", CHILDREN[:1] + CHILDREN[2:])
    changes = [{"id": 1, "parent_id": 3}, {"id": 3, "parent_id": 42}]
    report = db.update("child", _given(changes, columnar), on_error="isolate")
    assert (report.updated, report.rejected) == (1, 1), report
    _the_orphan(report, row=2, key=3)
    assert _rows(tmp_path / "fk.db") == [(1, 3, "a"), (3, 2, "c")]


@PATHS
@pytest.mark.parametrize("on_delete", ["NO ACTION", "RESTRICT"])
def test_delete_of_a_referenced_parent_is_rejected(
    tmp_path: Path, columnar: bool, on_delete: str
) -> None:
    # NO ACTION waits for COMMIT on a deferred key; RESTRICT refuses at once (SQLite
    # never defers it), which the narrowing handled before.
    path = tmp_path / "fk.db"
    _schema(path, on_delete=on_delete)
    engine = _engine(path)
    with bulkops.connect(engine, run_log=False) as db:
        db.insert("child", [{"id": 1, "parent_id": 2, "note": "a"}])
        gone = [{"id": 1}, {"id": 2}, {"id": 3}]
        report = db.delete("parent", _given(gone, columnar), on_error="isolate")
        assert (report.deleted, report.rejected) == (2, 1), report
        (bad,) = report.rejections
        assert (bad.row, bad.key) == (2, 2)
        assert bad.reason.startswith("FOREIGN KEY constraint failed")
        if on_delete == "NO ACTION":
            assert (bad.column, bad.code) == ("id", FK_CODE)
        else:  # SQLite's own code for RESTRICT
            assert bad.code == "SQLITE_CONSTRAINT_TRIGGER"
    engine.dispose()
    assert _rows(path, "parent") == [(2, "two")]


@PATHS
def test_immediate_key_rejects_the_row(tmp_path: Path, columnar: bool) -> None:
    # A key not deferred fails its statement, and the chunk is narrowed to the row.
    path = tmp_path / "fk.db"
    _schema(path, child_key="")
    engine = _engine(path)
    with bulkops.connect(engine, run_log=False) as db:
        report = db.insert("child", _given(CHILDREN, columnar), on_error="isolate")
    engine.dispose()
    assert (report.inserted, report.rejected) == (2, 1), report
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.code) == (2, 2, FK_CODE)
    assert _rows(path) == [(1, 1, "a"), (3, 2, "c")]


@PATHS
def test_orphans_from_before_are_not_the_calls(
    db: bulkops.Store, tmp_path: Path, columnar: bool
) -> None:
    # Rows written while enforcement was off already break the key: they are not
    # blamed on the call. A row it rewrites with a missing parent is its own (SQLite's
    # COMMIT counts it); one it leaves as it was or gives a parent is not.
    with sqlite3.connect(tmp_path / "fk.db") as conn:
        conn.executemany("INSERT INTO child VALUES (?, ?, 'old')", [(10, 77), (13, 66), (14, 55)])
    fresh = [
        {"id": 10, "parent_id": 77, "note": "old"},  # as it was: unchanged
        {"id": 11, "parent_id": 1, "note": "fine"},
        {"id": 12, "parent_id": 88, "note": "new orphan"},
        {"id": 13, "parent_id": 66, "note": "rewritten orphan"},
        {"id": 14, "parent_id": 2, "note": "adopted"},
    ]
    report = db.upsert("child", _given(fresh, columnar), on_error="isolate")
    counts = (report.inserted, report.updated, report.unchanged, report.rejected)
    assert counts == (1, 1, 1, 2), report
    assert [(r.row, r.key, r.column) for r in report.rejections] == [
        (3, 12, "parent_id"),
        (4, 13, "parent_id"),
    ]
    assert _rows(tmp_path / "fk.db") == [
        (10, 77, "old"),
        (11, 1, "fine"),
        (13, 66, "old"),
        (14, 2, "adopted"),
    ]
    # A call that touches none of them is not held up by them.
    assert db.insert("child", _given([{"id": 20, "parent_id": 3, "note": ""}], columnar)).inserted


def test_a_child_without_rowid(tmp_path: Path) -> None:
    # foreign_key_check gives no rowids for a table WITHOUT ROWID: its violations are
    # counted, so an old orphan is still not the call's and a new one is.
    path = tmp_path / "fk.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            f"""
            CREATE TABLE parent (id INTEGER PRIMARY KEY);
            CREATE TABLE child (
                code TEXT PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) {DEFERRED}
            ) WITHOUT ROWID;
            INSERT INTO parent VALUES (1);
            INSERT INTO child VALUES ('old', 77);
            """
        )
    engine = _engine(path)
    with bulkops.connect(engine, run_log=False) as db:
        rows = [{"code": "a", "parent_id": 1}, {"code": "b", "parent_id": 5}]
        report = db.insert("child", rows, on_error="isolate")
    engine.dispose()
    assert (report.inserted, report.rejected) == (1, 1), report
    _the_orphan(report, row=2, key="b")
    assert _rows(path, order="code") == [("a", 1), ("old", 77)]


def test_many_chunks_and_atomic(db: bulkops.Store, tmp_path: Path) -> None:
    rows = [
        {"id": i, "parent_id": 99 if i in (7, 23) else 1 + i % 3, "note": ""} for i in range(30)
    ]
    report = db.insert("child", rows, chunk_size=8, on_error="isolate")
    assert (report.inserted, report.rejected) == (28, 2), report
    assert [r.row for r in report.rejections] == [8, 24]
    # atomic=True: one transaction, a chunk's check does not blame an earlier chunk.
    more = [{**r, "id": r["id"] + 100} for r in rows]
    report = db.insert("child", more, chunk_size=8, atomic=True, on_error="isolate")
    assert (report.inserted, report.rejected) == (28, 2), report
    assert len(_rows(tmp_path / "fk.db")) == 56


def test_inside_db_atomic_the_row_is_rejected(db: bulkops.Store, tmp_path: Path) -> None:
    # db.atomic() is a transaction of bulkops' own: its calls check as they go, as on
    # PostgreSQL.
    with db.atomic():
        report = db.insert("child", CHILDREN, on_error="isolate")
        assert (report.inserted, report.rejected) == (2, 1), report
        db.insert("parent", [{"id": 9, "name": "nine"}])
    assert _rows(tmp_path / "fk.db") == [(1, 1, "a"), (3, 2, "c")]


def test_in_the_callers_transaction_the_check_is_the_callers_commit(tmp_path: Path) -> None:
    # Inside the application's transaction the deferred keys are its own, as for its own
    # writes: the orphan is written, a parent added before COMMIT makes it hold, and
    # otherwise the caller's COMMIT refuses it.
    path = tmp_path / "fk.db"
    _schema(path)
    engine = _engine(path)
    with engine.connect() as conn:
        with conn.begin():
            db = bulkops.connect(conn)
            assert db.insert("child", CHILDREN, on_error="isolate").inserted == 3
            db.insert("parent", [{"id": 99, "name": "late"}])
        with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"), conn.begin():
            db.insert("child", [{"id": 4, "parent_id": 98, "note": "d"}], on_error="isolate")
    engine.dispose()
    assert [r[0] for r in _rows(path)] == [1, 2, 3]


def test_without_enforcement_nothing_is_checked(tmp_path: Path) -> None:
    # foreign_keys off (SQLite's default): the orphan is written as before, with no
    # statement more.
    path = tmp_path / "fk.db"
    _schema(path)
    with bulkops.connect(f"sqlite:///{path}", run_log=False) as db:
        report = db.insert("child", CHILDREN)
        assert report.inserted == 3
        assert report.statements == 1
