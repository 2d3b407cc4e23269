"""bulkops.testing: count_queries / assert_max_queries on every kind of target."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import bulkops
from bulkops.backends.base import is_transaction_control
from bulkops.testing import assert_max_queries, count_queries
from conftest import needs


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "count.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE audit (n INTEGER);"
        "CREATE TRIGGER users_audit AFTER INSERT ON users BEGIN INSERT INTO audit VALUES (1); END;"
    )
    conn.close()
    return path


# --------------------------------------------------------------- plain sqlite3


def test_sqlite3_counts_calls_not_rows_triggers_or_begin(sqlite_path: Path) -> None:
    conn = sqlite3.connect(sqlite_path)  # legacy mode: the module sends BEGIN itself
    try:
        with count_queries(conn) as counted:
            conn.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(1, "a"), (2, "b")])
            conn.commit()
            for i in (1, 2):  # an N+1 loop: one statement per id
                conn.execute("SELECT name FROM users WHERE id = ?", (i,)).fetchone()
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM audit")
            (audited,) = cur.fetchone()
            conn.executescript("UPDATE users SET name = 'x'; DELETE FROM audit;")
        after = conn.execute("SELECT 1")  # outside the block: not counted
        after.close()
    finally:
        conn.close()
    assert audited == 2  # the trigger ran once per row, and none of that was counted
    assert counted.statements == [
        "INSERT INTO users (id, name) VALUES (1, 'a')",  # values filled in by SQLite
        "SELECT name FROM users WHERE id = 1",
        "SELECT name FROM users WHERE id = 2",
        "SELECT count(*) FROM audit",
        "UPDATE users SET name = 'x';",
        "DELETE FROM audit;",
    ]
    assert counted.count == 6


def test_sqlite3_other_threads_are_not_counted(sqlite_path: Path) -> None:
    import threading

    conn = sqlite3.connect(sqlite_path, check_same_thread=False)
    try:
        with count_queries(conn) as counted:
            thread = threading.Thread(target=lambda: conn.execute("SELECT 1").fetchall())
            thread.start()
            thread.join()
            conn.execute("SELECT 2").fetchall()
    finally:
        conn.close()
    assert counted.statements == ["SELECT 2"]


# ------------------------------------------------------------------ SQLAlchemy


def test_sqlalchemy_engine_counts_executemany_once(sqlite_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_path}")
    try:
        with count_queries(engine) as counted, engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO users (id, name) VALUES (:id, :name)"),
                [{"id": i, "name": str(i)} for i in range(10)],
            )
            with conn.begin_nested():  # SAVEPOINT / RELEASE: not counted
                conn.execute(sa.text("SELECT count(*) FROM users")).scalar()
        with count_queries(engine) as none:
            pass
    finally:
        engine.dispose()
    assert counted.count == 2
    assert counted.statements[0].startswith("INSERT INTO users")
    assert none.count == 0


def test_sqlalchemy_connection_target(sqlite_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_path}")
    try:
        with engine.connect() as conn, count_queries(conn) as counted:
            conn.execute(sa.text("SELECT 1"))
            conn.execute(sa.text("SELECT 2"))
    finally:
        engine.dispose()
    assert counted.statements == ["SELECT 1", "SELECT 2"]


def test_sqlalchemy_engine_counts_pooled_and_new_connections(sqlite_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_path}")
    try:
        with engine.connect() as conn:  # back in the pool when the block starts
            conn.execute(sa.text("SELECT 0"))
        with (
            count_queries(engine) as counted,
            engine.connect() as pooled,
            engine.connect() as new,
        ):
            pooled.execute(sa.text("SELECT 1"))
            new.execute(sa.text("SELECT 2"))
            pooled.exec_driver_sql("SELECT 3")
        with engine.connect() as conn:  # after the block: not counted
            conn.execute(sa.text("SELECT 4"))
    finally:
        engine.dispose()
    assert counted.statements == ["SELECT 1", "SELECT 2", "SELECT 3"]


# -------------------------------------------------------------------- psycopg


@pytest.mark.postgres
def test_psycopg_connection_counts_execute_executemany_copy(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
        conn.commit()
        before = conn.cursor()  # made before the block: its statements are not seen
        with count_queries(conn) as counted:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users VALUES (%s, %s)", [(i, str(i)) for i in range(50)]
                )
                with cur.copy("COPY users (id, name) FROM STDIN") as copy:
                    copy.write_row((100, "copied"))
            conn.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier("users"))
            ).fetchone()
            with conn.transaction():  # SAVEPOINT etc. are sent without a cursor
                conn.execute("SELECT 1")
            before.execute("SELECT 2")
            conn.commit()
        factory = conn.cursor_factory
    assert counted.statements == [
        "INSERT INTO users VALUES (%s, %s)",
        "COPY users (id, name) FROM STDIN",
        'SELECT count(*) FROM "users"',
        "SELECT 1",
    ]
    assert factory is psycopg.Cursor  # restored


# -------------------------------------------------------- a bulkops Store, both backends


def test_store_bulk_calls_cost_few_statements_and_n_plus_one_fails(db: bulkops.Store) -> None:
    needs(db, "declared_columns", "insert() is a conditional put per item")
    db.create_table("users", {"id": "integer", "name": "text"}, key="id")
    rows = [{"id": i, "name": f"user {i}"} for i in range(1, 1001)]
    with assert_max_queries(db, 5) as counted:
        report = db.insert("users", rows, chunk_size=500)
    assert report.inserted == 1000
    assert 2 <= counted.count <= 5, counted.statements
    assert counted.count >= report.statements  # catalog reads are counted too

    with pytest.raises(AssertionError) as failure, assert_max_queries(db, 3):
        for i in range(1, 11):  # the N+1 pattern the helper exists to catch
            db.get_many("users", [i])
    message = str(failure.value)
    assert "statements were sent, more than the maximum of 3:" in message
    assert message.count("\n") >= 11  # every statement seen is listed
    assert "users" in message


@pytest.mark.postgres
def test_store_with_workers_counts_every_connection(pg_url: str) -> None:
    with bulkops.connect(pg_url) as db:
        db.create_table("users", {"id": "integer", "name": "text"}, key="id")
        rows = ({"id": i, "name": "x"} for i in range(1, 2001))
        with count_queries(db) as counted:
            report = db.upsert("users", rows, chunk_size=250, workers=3)
    copies = [s for s in counted.statements if s.startswith("COPY")]
    assert report.chunks == 8
    assert len(copies) == 8  # every chunk's COPY, whichever connection sent it


def test_transaction_control_is_reported_on_request(db: bulkops.Store) -> None:
    needs(db, "transactions", "no transaction control to report")
    db.create_table("users", {"id": "integer", "name": "text"}, key="id")
    everything: list[str] = []
    with db.backend.trace_statements(everything.append, include_transaction_control=True):
        db.insert("users", [{"id": i, "name": "x"} for i in range(10)])
    control = [s.split()[0].upper() for s in everything if is_transaction_control(s)]
    assert control == ["BEGIN", "COMMIT"], everything
    assert any(s.lstrip().upper().startswith(("INSERT", "COPY")) for s in everything)


def test_unknown_target_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="takes a bulkops Store"), count_queries(object()):
        pass


def test_assert_max_queries_passes_at_the_limit_and_does_not_mask_errors(
    sqlite_path: Path,
) -> None:
    conn = sqlite3.connect(sqlite_path)
    try:
        with assert_max_queries(conn, 1) as counted:
            conn.execute("SELECT 1")
        assert counted.count == 1
        with pytest.raises(ZeroDivisionError), assert_max_queries(conn, 0):
            conn.execute("SELECT 1")
            1 / 0  # noqa: B018
    finally:
        conn.close()
