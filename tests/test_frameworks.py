"""bulkops on the application's own connection and in its transaction: a SQLAlchemy
ORM Session, a SQLAlchemy Connection, a psycopg 3 connection and a sqlite3
connection (Django: tests/test_django.py)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import orm

import bulkops
from bulkops.errors import DeadlockError, UnsupportedError
from bulkops.testing import assert_max_queries, count_queries
from conftest import vendored_module

# ------------------------------------------------------------ SQLAlchemy ORM


class Base(orm.DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=False)
    email: orm.Mapped[str] = orm.mapped_column(sa.String(100), unique=True)
    plan: orm.Mapped[str] = orm.mapped_column("plan_name", sa.String(20))
    credit: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(12, 2))


BAD = {137: {"credit": "n/a"}, 450: {"email": None}, 451: {"credit": "12,50"}, 800: {"credit": "-"}}


def people(size: int) -> list[dict[str, Any]]:
    """Users to import, as mappings by attribute name; a few are bad (BAD)."""
    rows = [
        {
            "id": i,
            "email": f"user{i:05d}@example.com",
            "plan": "pro" if i % 50 == 0 else "free",
            "credit": Decimal(i % 97) + Decimal("0.25"),
        }
        for i in range(1, size + 1)
    ]
    for i, change in BAD.items():
        if i <= size:
            rows[i - 1].update(change)
    return rows


def naive_import(session: orm.Session, rows: list[dict[str, Any]]) -> list[int]:
    """The usual pattern: bulk_save_objects in chunks of 100, and where a chunk fails,
    its rows one by one (each in a savepoint) to find the bad ones."""
    bad = []
    for start in range(0, len(rows), 100):
        chunk = rows[start : start + 100]
        try:
            with session.begin_nested():
                session.bulk_save_objects([User(**r) for r in chunk])
        except sa.exc.SQLAlchemyError:
            for row in chunk:
                try:
                    with session.begin_nested():
                        session.add(User(**row))
                except sa.exc.SQLAlchemyError:
                    bad.append(row["id"])
    return bad


def stored(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with orm.Session(engine) as session:
        return [
            (u.id, u.email, u.plan, u.credit)
            for u in session.scalars(sa.select(User).order_by(User.id))
        ]


@pytest.fixture
def orm_engines(tmp_path: Path) -> Any:
    engines = [sa.create_engine(f"sqlite:///{tmp_path}/{name}.db") for name in ("naive", "bulk")]
    for engine in engines:
        Base.metadata.create_all(engine)
    yield engines
    for engine in engines:
        engine.dispose()


def test_session_import_same_rows_a_tenth_of_the_statements(orm_engines: Any) -> None:
    naive_engine, bulk_engine = orm_engines
    rows = people(1000)
    with orm.Session(naive_engine) as session, session.begin(), count_queries(session) as naive:
        naive_bad = naive_import(session, rows)
    with orm.Session(bulk_engine) as session, session.begin():
        db = bulkops.connect(session)
        with count_queries(session) as bulk:
            report = db.insert(User, rows, on_error="isolate")
    print(f"\nuser import of 1000 (4 bad): naive {naive.count} statements, bulkops {bulk.count}")
    assert sorted(naive_bad) == sorted(BAD)
    assert sorted(r.row for r in report.rejections) == sorted(BAD)
    assert report.inserted == 1000 - len(BAD)
    assert stored(bulk_engine) == stored(naive_engine)
    assert len(stored(bulk_engine)) == 1000 - len(BAD)
    assert bulk.count * 10 <= naive.count


def test_bad_rows_found_by_the_database_are_isolated_under_savepoints(orm_engines: Any) -> None:
    _, engine = orm_engines
    rows = people(300)
    rows[99]["email"] = rows[0]["email"]  # a unique violation only the database sees
    with orm.Session(engine) as session, session.begin():
        db = bulkops.connect(session)
        report = db.insert(User, rows, on_error="isolate", chunk_size=100)
        assert sorted(r.row for r in report.rejections) == [100, 137]
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 298
    assert len(stored(engine)) == 298


def test_session_rollback_undoes_everything(orm_engines: Any) -> None:
    _, engine = orm_engines
    with orm.Session(engine) as session:
        session.begin()
        pending = User(id=5000, email="pending@example.com", plan="free", credit=Decimal(1))
        session.add(pending)
        db = bulkops.connect(session)
        # Pending ORM changes are flushed before bulkops sends anything.
        found = db.get_many(User, [5000], columns=["email"])
        assert found == {5000: {"email": "pending@example.com"}}
        db.insert(User, [r for r in people(200) if r["id"] not in BAD])
        db.upsert(User, [User(id=5000, email="pending@example.com", plan="pro", credit=2)])
        assert pending.plan == "free"  # loaded instances are not refreshed by bulkops
        session.refresh(pending)
        assert pending.plan == "pro"
        session.rollback()
    assert stored(engine) == []


def test_model_keys_and_unique_constraints(orm_engines: Any) -> None:
    _, engine = orm_engines
    with orm.Session(engine) as session, session.begin():
        db = bulkops.connect(session)
        spec = db.table(User)
        assert spec.name == "users" and "plan_name" in spec.columns
        assert spec.primary_key == ("id",) and ("email",) in spec.unique
        db.insert(User.__table__, [{"id": 1, "email": "a@x", "plan_name": "free", "credit": 1}])
        db.upsert(User, [{"email": "a@x", "plan": "pro", "id": 1, "credit": 3}], key="email")
        row, created = db.get_or_create(
            User, {"email": "a@x"}, defaults={"id": 9, "plan": "x", "credit": 0}
        )
        assert not created and row["plan_name"] == "pro" and row["credit"] == Decimal("3.00")


def test_sqlalchemy_connection_joins_its_transaction(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/c.db")
    Base.metadata.create_all(engine)
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            db = bulkops.connect(conn)
            db.insert(User, [r for r in people(50) if r["id"] not in BAD])
            # SAVEPOINT, SELECT (which keys exist), INSERT … ON CONFLICT, RELEASE
            with assert_max_queries(conn, 4) as counted:
                db.upsert(User, [{"id": 1, "email": "new@x", "plan": "p", "credit": 1}])
            words = [s.split()[0] for s in counted.statements]
            assert words == ["SAVEPOINT", "SELECT", "INSERT", "RELEASE"]
            raise RuntimeError("rolled back")
        assert stored(engine) == []
        with engine.begin() as conn:
            bulkops.connect(conn).insert(User, [r for r in people(50) if r["id"] not in BAD])
        assert len(stored(engine)) == 50
    finally:
        engine.dispose()


# ------------------------------------------------------------------ sqlite3


def test_sqlite3_connection_in_a_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "lots.db")
    conn.execute("CREATE TABLE lots (lot TEXT PRIMARY KEY, product INTEGER NOT NULL, qty INTEGER)")
    conn.commit()
    db = bulkops.connect(conn)

    def allocate_and_upsert() -> list[str]:
        conn.execute("INSERT INTO lots VALUES ('manual', 1, 0)")  # the caller's transaction
        assert conn.in_transaction
        lots = db.sequence("lot:42", prefix="LOT-", padding=6).allocate(100)
        db.upsert("lots", [{"lot": lot, "product": 42, "qty": 1} for lot in lots])
        db.adjust("lots", {lots[0]: 5}, column="qty")
        assert conn.in_transaction  # never committed by bulkops
        return lots

    allocate_and_upsert()
    conn.rollback()
    other = sqlite3.connect(tmp_path / "lots.db")
    assert other.execute("SELECT count(*) FROM lots").fetchone() == (0,)
    tables = {r[0] for r in other.execute("SELECT name FROM sqlite_schema")}
    assert "bulkops_sequences" not in tables  # made in the caller's transaction: undone

    # db.atomic() inside the caller's transaction is a savepoint of it.
    conn.execute("INSERT INTO lots VALUES ('outer', 1, 0)")
    with pytest.raises(RuntimeError), db.atomic():
        db.insert("lots", [{"lot": "inner", "product": 1, "qty": 1}])
        raise RuntimeError("undo the block only")
    assert conn.in_transaction
    assert conn.execute("SELECT lot FROM lots").fetchall() == [("outer",)]
    conn.rollback()

    lots = allocate_and_upsert()
    conn.commit()
    assert other.execute("SELECT count(*) FROM lots").fetchone() == (101,)
    assert other.execute("SELECT qty FROM lots WHERE lot = ?", (lots[0],)).fetchone() == (6,)
    assert lots[0] == "LOT-000001"
    # Outside a transaction bulkops works in short transactions of its own, as on a URL.
    assert not conn.in_transaction
    db.insert("lots", [{"lot": "auto", "product": 1, "qty": 1}])
    assert not conn.in_transaction
    assert other.execute("SELECT count(*) FROM lots").fetchone() == (102,)
    other.close()
    conn.close()


def test_refused_inside_the_callers_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.commit()
    db = bulkops.connect(conn)
    logged = bulkops.connect(conn, run_log=True)
    conn.execute("INSERT INTO t VALUES (0, 'x')")
    rows = [{"id": 1, "v": "a"}]
    refused = [
        lambda: db.insert("t", rows, workers=2),
        lambda: db.insert("t", rows, atomic=True),
        lambda: db.insert("t", rows, source_id="input-1"),
        lambda: db.insert("t", rows, source_id="input-1", resume=True),
        lambda: db.adjust("t", {1: 1}, column="id", atomic=True),
        lambda: logged.insert("t", rows),
        lambda: db.sync("t", rows),
        lambda: db.apply(db.diff("t", rows), "t"),
    ]
    for call in refused:
        with pytest.raises(UnsupportedError, match="caller's transaction"):
            call()
    assert conn.in_transaction
    conn.rollback()
    # The same calls are fine where bulkops owns the transaction.
    assert db.insert("t", rows, atomic=True).inserted == 1
    assert logged.insert("t", [{"id": 2, "v": "b"}]).inserted == 1
    conn.close()


# ------------------------------------------------------------------ psycopg


@pytest.mark.postgres
def test_psycopg_connection_in_a_transaction(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE lots (lot text PRIMARY KEY, product int NOT NULL, qty int)")
    with psycopg.connect(pg_url) as conn, psycopg.connect(pg_url, autocommit=True) as other:
        db = bulkops.connect(conn)

        def allocate_and_upsert() -> list[str]:
            conn.execute("INSERT INTO lots VALUES ('manual', 1, 0)")  # opens the transaction
            lots = db.sequence("lot:42", prefix="LOT-", padding=6).allocate(100)
            db.upsert("lots", [{"lot": lot, "product": 42, "qty": 1} for lot in lots])
            db.adjust("lots", {lots[0]: 5}, column="qty")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            return lots

        allocate_and_upsert()
        conn.rollback()
        assert other.execute("SELECT count(*) FROM lots").fetchone() == (0,)
        assert other.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'bulkops_seq%'"
        ).fetchone() == (0,)

        lots = allocate_and_upsert()
        conn.commit()
        assert other.execute("SELECT count(*) FROM lots").fetchone() == (101,)
        assert other.execute("SELECT qty FROM lots WHERE lot = %s", (lots[0],)).fetchone() == (6,)
        # A second transaction: the staging tables of the first are gone with it.
        conn.execute("SELECT 1")
        db.upsert("lots", [{"lot": "second", "product": 1, "qty": 1}])
        db.upsert("lots", [{"lot": "second", "product": 1, "qty": 2}])
        conn.commit()
        # Not in autocommit, the connection is always in the caller's transaction
        # (psycopg opens one at the first statement): the application commits.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pytest.raises(UnsupportedError, match="caller's transaction"):
            db.insert("lots", [{"lot": "own", "product": 1}], atomic=True)
        assert db.insert("lots", [{"lot": "own", "product": 1}]).inserted == 1
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert other.execute("SELECT count(*) FROM lots").fetchone() == (102,)
        conn.commit()
        assert other.execute("SELECT count(*) FROM lots").fetchone() == (103,)
        # In autocommit too.
        conn.autocommit = True
        assert db.insert("lots", [{"lot": "auto", "product": 1}], atomic=True).inserted == 1
        assert other.execute("SELECT count(*) FROM lots").fetchone() == (104,)


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_deadlock_in_the_callers_transaction_is_raised_not_retried(pg_url: str) -> None:
    """The caller's transaction holds row 1 and bulkops waits for row 2, held by
    another session that then asks for row 1: a deadlock whose victim is the caller's
    transaction (shorter deadlock_timeout). bulkops cannot re-run the caller's earlier
    work, so it raises DeadlockError; the caller re-runs its whole transaction."""
    with psycopg.connect(pg_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL)")
        setup.execute("INSERT INTO t VALUES (1, 'old'), (2, 'old')")
    with (
        psycopg.connect(pg_url, options="-c deadlock_timeout=300ms") as conn,
        psycopg.connect(pg_url, options="-c deadlock_timeout=60s") as other,
        psycopg.connect(pg_url, autocommit=True) as watch,
    ):
        db = bulkops.connect(conn)
        conn.execute("UPDATE t SET v = 'caller' WHERE id = 1")
        other.execute("SELECT 1 FROM t WHERE id = 2 FOR UPDATE")
        outcome: dict[str, Any] = {}

        def write() -> None:
            try:
                db.upsert("t", [{"id": 2, "v": "bulk"}])
            except BaseException as error:
                outcome["error"] = error

        job = threading.Thread(target=write)
        job.start()
        pid = conn.info.backend_pid
        for _ in range(1000):
            waiting = watch.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if waiting and waiting[0] == "Lock":
                break
            threading.Event().wait(0.01)
        # The other session asks for row 1 (held by the caller): the cycle closes.
        closing = threading.Thread(
            target=lambda: other.execute("UPDATE t SET v = 'other' WHERE id = 1")
        )
        closing.start()
        job.join(timeout=30)
        error = outcome.get("error")
        assert isinstance(error, DeadlockError), error
        assert error.report is None or error.report.retries == 0
        conn.rollback()  # the caller ends its transaction (releasing row 1)...
        closing.join(timeout=30)
        other.commit()
        for _attempt in range(3):  # ...and re-runs all of it
            try:
                conn.execute("UPDATE t SET v = 'caller' WHERE id = 1")
                db.upsert("t", [{"id": 2, "v": "bulk"}])
                conn.commit()
                break
            except DeadlockError:
                conn.rollback()
        rows = dict(watch.execute("SELECT id, v FROM t").fetchall())
        assert rows == {1: "caller", 2: "bulk"}


@pytest.mark.postgres
def test_session_on_postgresql(pg_url: str) -> None:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    Base.metadata.create_all(engine)
    rows = [r for r in people(300) if r["id"] not in BAD]
    try:
        with orm.Session(engine) as session:
            db = bulkops.connect(session)
            db.insert(User, rows[:100])
            db.upsert(User, rows, key="email")
            assert session.scalar(sa.select(sa.func.count()).select_from(User)) == len(rows)
            session.rollback()
            assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
            db.upsert(User, rows)
            session.commit()
        assert len(stored(engine)) == len(rows)
        # A Connection in AUTOCOMMIT: bulkops' own transactions.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            db = bulkops.connect(conn)
            assert db.delete(User, [rows[0]["id"]], atomic=True).deleted == 1
        assert len(stored(engine)) == len(rows) - 1
    finally:
        engine.dispose()


def test_importing_bulkops_imports_no_framework() -> None:
    code = (
        "import sys, bulkops; "
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith("
        "('django.', 'sqlalchemy.orm', 'bulkops.integrations.django', "
        "'bulkops.integrations.sqlalchemy_orm'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ------------------------------------------------------------ real applications' models


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        made = sa.create_engine(f"sqlite:///{tmp_path}/app.db")
    else:
        url = request.getfixturevalue("pg_url")
        made = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield made
    made.dispose()


def test_new_instances_take_the_columns_python_and_server_defaults(engine: Any) -> None:
    # MLflow's tracking models leave much to Column(default=...): SqlMetric(key, value,
    # run_uuid) gets its timestamp, step and is_nan (three of its six primary key
    # columns) from them; SqlExperiment's workspace has a Python and a server default.
    # The ORM's flush fills a new instance's None from them; bulkops wrote NULL, so on
    # SQLite every SqlExperiment was refused (NOT NULL workspace) and every SqlMetric
    # everywhere ("missing key: 'timestamp'").
    m = vendored_module("mlflow_tracking_models")
    m.Base.metadata.create_all(engine)
    before = m.get_current_time_millis()
    with orm.Session(engine) as session, session.begin():
        db = bulkops.connect(session)
        report = db.insert(
            m.SqlExperiment,
            [m.SqlExperiment(name="a"), m.SqlExperiment(name="b", lifecycle_stage="deleted")],
        )
        assert (report.inserted, report.rejected) == (2, 0)
        session.add(m.SqlExperiment(name="by the ORM"))  # flushed before the next write
        run = m.SqlRun(run_uuid="0" * 32, experiment_id=1)
        assert db.insert(m.SqlRun, [run]).inserted == 1
        metrics = [
            m.SqlMetric(key="loss", value=0.25, run_uuid=run.run_uuid),
            m.SqlMetric(key="loss", value=None, step=1, run_uuid=run.run_uuid),  # bad
            m.SqlMetric(key="acc", value=0.5, step=3, run_uuid=run.run_uuid),
        ]
        report = db.insert(m.SqlMetric, metrics, on_error="isolate")
        assert (report.inserted, report.rejected, report.rows_in) == (2, 1, 3)
        bad = report.rejections[0]
        assert (bad.row, bad.column) == (2, "value") and "value" in bad.reason
        # An insert's dict takes the defaults for what it leaves out, as Core's insert()
        # gives them (so does a metric's whose key they complete); a None given stays.
        rows = [{"name": "c"}, {"name": "d", "lifecycle_stage": None}]
        assert db.insert(m.SqlExperiment, rows).inserted == 2
        assert rows[0] == {"name": "c"}  # the caller's dict as it was
        flat = {"key": "f1", "value": 0.75, "run_uuid": run.run_uuid}
        assert db.insert(m.SqlMetric, [flat]).inserted == 1
        # An upsert's dict leaves what it leaves out as it is.
        assert db.upsert(m.SqlExperiment, [{"experiment_id": 2, "artifact_location": "x"}]).updated
        # An instance loaded from the database keeps its NULL (no defaults on UPDATE).
        loaded = session.scalars(sa.select(m.SqlExperiment).filter_by(name="d")).one()
        loaded.artifact_location = "s3://d"
        session.expunge(loaded)
        assert db.upsert(m.SqlExperiment, [loaded]).updated == 1
    with orm.Session(engine) as session:
        experiments = {
            e.name: (e.workspace, e.lifecycle_stage, e.creation_time is not None)
            for e in session.scalars(sa.select(m.SqlExperiment))
        }
        assert experiments == {
            "a": ("default", "active", True),
            "b": ("default", "deleted", True),
            "by the ORM": ("default", "active", True),
            "c": ("default", "active", True),
            "d": ("default", None, True),
        }
        run = session.get(m.SqlRun, "0" * 32)
        status = (run.status, run.source_type, run.lifecycle_stage)
        assert status == ("SCHEDULED", "LOCAL", "active")
        assert run.start_time >= before
        stored = session.execute(
            sa.select(
                m.SqlMetric.key, m.SqlMetric.step, m.SqlMetric.is_nan, m.SqlMetric.timestamp
            ).order_by(m.SqlMetric.key)
        ).all()
        assert [row[:3] for row in stored] == [
            ("acc", 3, False), ("f1", 0, False), ("loss", 0, False),
        ]  # fmt: skip
        assert all(row[3] >= before for row in stored)


def test_a_column_default_may_read_the_rows_other_values(engine: Any) -> None:
    # SQLAlchemy hands a default that takes an argument the execution context, whose
    # get_current_parameters() are the row's values.
    class Slugged(orm.DeclarativeBase):
        pass

    class Page(Slugged):
        __tablename__ = "pages"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        title: orm.Mapped[str] = orm.mapped_column(sa.String(50))
        slug: orm.Mapped[str] = orm.mapped_column(
            sa.String(50),
            default=lambda context: context.get_current_parameters()["title"].lower(),
        )

    Slugged.metadata.create_all(engine)
    with orm.Session(engine) as session, session.begin():
        db = bulkops.connect(session)
        db.insert(Page, [Page(title="Home"), Page(title="About", slug="about-us")])
        session.add(Page(title="Contact"))
    with orm.Session(engine) as session:
        assert session.execute(sa.select(Page.title, Page.slug).order_by(Page.id)).all() == [
            ("Home", "home"),
            ("About", "about-us"),
            ("Contact", "contact"),
        ]


def test_datetimes_are_stored_as_sqlalchemy_stores_them(engine: Any) -> None:
    # optuna's trials keep datetime_start in a DateTime column. On SQLite SQLAlchemy
    # stores "2024-01-01 12:00:00.000000" and its queries compare that text: bulkops
    # stored "2024-01-01 12:00:00", so TrialModel.datetime_start == t missed its rows.
    import pandas as pd

    m = vendored_module("optuna_rdb_models")
    m.BaseModel.metadata.create_all(engine)
    start = dt.datetime(2024, 1, 1, 12, 0)
    later = dt.datetime(2024, 1, 1, 12, 0, 0, 250)
    complete = m.TrialState.COMPLETE
    with orm.Session(engine) as session, session.begin():
        session.add(m.StudyModel(study_id=1, study_name="s"))
        session.add(m.TrialModel(trial_id=1, study_id=1, state=complete, _datetime_start_utc=start))
        db = bulkops.connect(session)
        trials = [
            m.TrialModel(trial_id=2, study_id=1, state=complete, _datetime_start_utc=start),
            m.TrialModel(trial_id=3, study_id=1, state=complete, _datetime_start_utc=later),
        ]
        assert db.insert(m.TrialModel, trials).inserted == 2
        frame = pd.DataFrame(
            {
                "trial_id": [4, 5],
                "study_id": [1, 1],
                "state": ["COMPLETE", "COMPLETE"],
                "datetime_start": pd.to_datetime([start, later]),
            }
        )
        assert db.insert(m.TrialModel, frame).inserted == 2
        text = {
            "trial_id": 6,
            "study_id": 1,
            "state": "RUNNING",
            "datetime_start": "2024-01-01T12:00",
        }
        assert db.upsert(m.TrialModel, [text]).inserted == 1
    with orm.Session(engine) as session:
        started = m.TrialModel._datetime_start_utc
        found = session.scalars(sa.select(m.TrialModel.trial_id).where(started == start))
        assert sorted(found) == [1, 2, 4, 6]
        found = session.scalars(sa.select(m.TrialModel.trial_id).where(started > start))
        assert sorted(found) == [3, 5]
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT trial_id, datetime_start FROM trials")).all())
    assert stored[2] == stored[1] == stored[4] == stored[6]
    assert stored[3] == stored[5]


def test_type_decorators_bind_values_as_sqlalchemy_does(engine: Any) -> None:
    # Airflow's timestamps are its UtcDateTime TypeDecorator, which refuses a naive
    # datetime and stores UTC; a PickleType pickles; an Interval is a datetime past
    # the epoch on SQLite. bulkops sent the raw values: a naive time was taken as UTC,
    # a dict for a PickleType was refused ("dict value is not bytes"), a timedelta for
    # an Interval on SQLite too ("... is not a timestamp").
    airflow = vendored_module("airflow_utc_datetime")

    class Airflowish(orm.DeclarativeBase):
        pass

    class Run(Airflowish):
        __tablename__ = "runs"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        start_date: orm.Mapped[dt.datetime] = orm.mapped_column(airflow.UtcDateTime)
        conf: orm.Mapped[Any] = orm.mapped_column(sa.PickleType, nullable=True)
        took: orm.Mapped[dt.timedelta] = orm.mapped_column(sa.Interval, nullable=True)

    Airflowish.metadata.create_all(engine)
    cest = dt.timezone(dt.timedelta(hours=2))
    start = dt.datetime(2024, 6, 1, 14, 0, tzinfo=cest)
    values = {"conf": {"retries": 3}, "took": dt.timedelta(minutes=90)}
    with orm.Session(engine) as session, session.begin():
        session.add(Run(id=1, start_date=start, **values))
        db = bulkops.connect(session)
        rows = [
            Run(id=2, start_date=start, **values),
            Run(id=3, start_date=dt.datetime(2024, 6, 1, 12, 0), **values),  # naive: bad
            {"id": 4, "start_date": start.astimezone(dt.UTC), **values},
        ]
        report = db.insert(Run, rows, on_error="isolate")
        assert (report.inserted, report.rejected) == (2, 1)
        bad = report.rejections[0]
        assert (bad.row, bad.key, bad.column) == (2, 3, "start_date")
        assert bad.reason == "naive datetime is disallowed"
        assert rows[2] == {"id": 4, "start_date": start, **values}  # the caller's dict as it was
    with orm.Session(engine) as session:
        query = sa.select(Run.id).where(Run.start_date == start, Run.took == values["took"])
        assert sorted(session.scalars(query)) == [1, 2, 4]
        assert {run.id: run.conf for run in session.scalars(sa.select(Run))} == {
            1: {"retries": 3}, 2: {"retries": 3}, 4: {"retries": 3},
        }  # fmt: skip
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT start_date, conf, took FROM runs ORDER BY id")).all()
    assert stored[0] == stored[1] == stored[2]
