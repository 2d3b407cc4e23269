"""Real schemas that nobody on the team wrote, with tiny excerpts of their real data.

- Chinook (https://github.com/lerocha/chinook-database, MIT licence, Luis Rocha):
  ``Chinook_Sqlite.sql``'s ``Invoice`` table and three of its rows.
- Sakila for PostgreSQL (https://github.com/jOOQ/sakila, BSD 2-clause licence):
  ``postgres-sakila-schema.sql``'s ``payment`` table, partitioned the old way (child
  tables that INHERIT it and a rule per month that sends an INSERT to its child).
- Pagila (https://github.com/devrimgunduz/pagila, PostgreSQL licence): ``payment``
  partitioned by range of ``payment_date``, one partition a month.
- Chinook for PostgreSQL (the same project's ``Chinook_PostgreSql.sql`` before 1.4.5):
  its quoted, capitalised ``"Artist"`` table and two of its rows.
- Files under ``tests/data/`` (their sources and licences are in its README): the
  tables of django-taggit as Django's migrations make them on PostgreSQL,
  PowerDNS's PostgreSQL and SQLite backend schemas, FreeRADIUS's PostgreSQL schema,
  optuna's SQLAlchemy models, Pagila's film and language tables, AWL's (DAViCal's)
  usr and tmp_password tables, DAViCal's principal table, Kamailio's rtpproxy and
  subscriber tables, Tiny Tiny RSS's ttrss_entries table, and Zabbix's items table.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import random
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import bulkops
from bulkops.cli import main
from conftest import pg_execute

DATA = Path(__file__).parent / "data"

CHINOOK_INVOICE = """
CREATE TABLE [Invoice]
(
    [InvoiceId] INTEGER  NOT NULL,
    [CustomerId] INTEGER  NOT NULL,
    [InvoiceDate] DATETIME  NOT NULL,
    [BillingAddress] NVARCHAR(70),
    [BillingCity] NVARCHAR(40),
    [BillingState] NVARCHAR(40),
    [BillingCountry] NVARCHAR(40),
    [BillingPostalCode] NVARCHAR(10),
    [Total] NUMERIC(10,2)  NOT NULL,
    CONSTRAINT [PK_Invoice] PRIMARY KEY  ([InvoiceId])
)"""

CHINOOK_INVOICES = [
    (1, 2, "2021-01-01 00:00:00", "Theodor-Heuss-Straße 34", "Stuttgart", None, "Germany",
     "70174", 1.98),
    (2, 4, "2021-01-02 00:00:00", "Ullevålsveien 14", "Oslo", None, "Norway", "0171", 3.96),
    (98, 1, "2022-03-11 00:00:00", "Av. Brigadeiro Faria Lima, 2170", "São José dos Campos",
     "SP", "Brazil", "12227-000", 3.98),
]  # fmt: skip


@pytest.fixture
def chinook(tmp_path: Path) -> Path:
    """A SQLite file holding Chinook's Invoice table with three of its rows, as the
    Chinook script writes them (SQLite's own datetime text: a space, no "T")."""
    path = tmp_path / "chinook.db"
    with sqlite3.connect(path) as conn:
        conn.execute(CHINOOK_INVOICE)
        conn.executemany(f"INSERT INTO Invoice VALUES ({', '.join('?' * 9)})", CHINOOK_INVOICES)
    return path


def test_sqlite_datetimes_are_stored_as_sqlite_writes_them(chinook: Path, tmp_path: Path) -> None:
    # Rows bulkops adds sit among the rows already there: in SQLite's own form
    # ("YYYY-MM-DD HH:MM:SS", what datetime() gives and SQLAlchemy, Django and Chinook
    # store), so the table's plain SQL comparisons and ORDER BY still hold.
    pd = pytest.importorskip("pandas")
    address = ("Rua Dr. Falcão Filho, 155", "São Paulo", "SP", "Brazil", "01007-010")
    with bulkops.connect(f"sqlite:///{chinook}", run_log=False) as db:
        row = dict.fromkeys(("BillingAddress", "BillingCity", "BillingState"), None)
        new = [
            {**row, "InvoiceId": 3, "CustomerId": 8, "InvoiceDate": dt.datetime(2021, 1, 1, 12)},
            {**row, "InvoiceId": 4, "CustomerId": 14, "InvoiceDate": "2021-01-01T06:30:00"},
        ]
        for invoice in new:
            invoice.update(BillingCountry="Brazil", BillingPostalCode=None, Total=Decimal("1.98"))
        assert db.insert("Invoice", new).inserted == 2
        frame = pd.DataFrame(
            {
                "InvoiceId": [5],
                "CustomerId": [1],
                "InvoiceDate": [pd.Timestamp("2021-01-01 18:00:00")],
                "Total": [1.98],
            }
        )
        assert db.insert("Invoice", frame).inserted == 1
    csv = tmp_path / "more.csv"
    csv.write_text(
        "InvoiceId,CustomerId,InvoiceDate,BillingAddress,BillingCity,BillingState,"
        'BillingCountry,BillingPostalCode,Total\n6,10,2021-01-01T03:00:00,"'
        + '","'.join(address)
        + '",0.99\n'
    )
    result = CliRunner().invoke(
        main, ["load", str(csv), "-t", "Invoice", "--db", f"sqlite:///{chinook}", "-q"]
    )
    assert result.exit_code == 0, result.output

    with sqlite3.connect(chinook) as conn:
        stored = conn.execute(
            "SELECT InvoiceId, InvoiceDate, InvoiceDate = datetime(InvoiceDate) FROM Invoice"
        ).fetchall()
        assert all(same for _, _, same in stored), stored
        ordered = conn.execute(
            "SELECT InvoiceId FROM Invoice WHERE InvoiceDate < '2021-01-02' ORDER BY InvoiceDate"
        ).fetchall()
    assert [i for (i,) in ordered] == [1, 6, 4, 3, 5]

    # The rows Chinook wrote read back as datetimes, and an upsert of them changes nothing.
    with bulkops.connect(f"sqlite:///{chinook}", run_log=False) as db:
        got = db.get_many("Invoice", [1, 3])
        assert got[1]["InvoiceDate"] == dt.datetime(2021, 1, 1)
        assert got[3]["InvoiceDate"] == dt.datetime(2021, 1, 1, 12)
        columns = ("InvoiceId", "CustomerId", "InvoiceDate", "Total")
        again = [
            dict(zip(columns, (r[0], r[1], r[2], r[8]), strict=True)) for r in CHINOOK_INVOICES
        ]
        report = db.upsert("Invoice", again)
        assert report.unchanged == 3 and report.updated == 0


SAKILA_PAYMENT = [
    """CREATE TABLE payment (
        payment_id serial PRIMARY KEY,
        customer_id smallint NOT NULL,
        staff_id smallint NOT NULL,
        rental_id integer NOT NULL,
        amount numeric(5,2) NOT NULL,
        payment_date timestamp without time zone NOT NULL)""",
    """CREATE TABLE payment_p2007_01 (CONSTRAINT payment_p2007_01_payment_date_check CHECK
        (((payment_date >= '2007-01-01 00:00:00'::timestamp without time zone)
        AND (payment_date < '2007-02-01 00:00:00'::timestamp without time zone))))
        INHERITS (payment)""",
    """CREATE RULE payment_insert_p2007_01 AS ON INSERT TO payment WHERE
        ((new.payment_date >= '2007-01-01 00:00:00'::timestamp without time zone)
        AND (new.payment_date < '2007-02-01 00:00:00'::timestamp without time zone))
        DO INSTEAD INSERT INTO payment_p2007_01 (payment_id, customer_id, staff_id,
        rental_id, amount, payment_date) VALUES (DEFAULT, new.customer_id, new.staff_id,
        new.rental_id, new.amount, new.payment_date)""",
]


@pytest.mark.postgres
def test_sakila_rules_route_inserts_and_refuse_upserts(pg_url: str) -> None:
    pg_execute(pg_url, *SAKILA_PAYMENT)
    columns = ("customer_id", "staff_id", "rental_id", "amount", "payment_date")
    rows = [
        dict(zip(columns, (269, 2, 1476, Decimal("1.99"), "2007-01-24 21:40:19"), strict=True)),
        dict(zip(columns, (130, 1, 1, Decimal("2.99"), "2005-05-24 22:53:30"), strict=True)),
    ]
    pd = pytest.importorskip("pandas")
    with bulkops.connect(pg_url) as db:
        # COPY applies no rules, an INSERT does: the January 2007 payment lands in its
        # month's table, as the application's own INSERT would put it.
        assert db.insert("payment", rows).inserted == 2
        assert db.insert("payment", pd.DataFrame(rows)).inserted == 2
        where = "SELECT count(*) FROM ONLY {} GROUP BY payment_date ORDER BY payment_date"
        assert pg_execute(pg_url, where.format("payment_p2007_01")) == [(2,)]
        assert pg_execute(pg_url, where.format("payment")) == [(2,)]
        # INSERT … ON CONFLICT is refused on such a table: one clear error, nothing sent.
        again = [{"payment_id": 1, **rows[0]}]
        with pytest.raises(bulkops.errors.SchemaError) as upsert:
            db.upsert("payment", again)
        with pytest.raises(bulkops.errors.SchemaError) as ignore:
            db.insert("payment", again, on_conflict="ignore")
        for info in (upsert, ignore):
            assert "ON CONFLICT" in str(info.value)
            assert "rules (payment_insert_p2007_01)" in str(info.value)
        report = db.update("payment", [{"payment_id": 1, "amount": Decimal("0.99")}])
        assert report.updated == 1


@pytest.mark.postgres
def test_pagila_row_outside_every_partition_names_the_column(pg_url: str) -> None:
    pg_execute(
        pg_url,
        """CREATE TABLE payment (payment_id serial, customer_id integer NOT NULL,
            amount numeric(5,2) NOT NULL, payment_date timestamptz NOT NULL,
            PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date)""",
        """CREATE TABLE payment_p2022_01 PARTITION OF payment
            FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2022-02-01 00:00:00+00')""",
    )
    rows = [
        {"payment_id": 16050, "customer_id": 269, "amount": Decimal("1.99"),
         "payment_date": "2022-01-28 21:44:14.998+00"},
        {"payment_id": 16051, "customer_id": 269, "amount": Decimal("0.99"),
         "payment_date": "2005-06-17 06:06:10+00"},
    ]  # fmt: skip
    with bulkops.connect(pg_url) as db:
        report = db.upsert("payment", rows, on_error="isolate")
    assert (report.inserted, report.rejected) == (1, 1)
    (bad,) = report.rejections
    assert (bad.row, bad.column) == (2, "payment_date")
    assert "no partition" in bad.reason


def test_sqlite_datetime_keys_match_rows_written_elsewhere(tmp_path: Path) -> None:
    # A table keyed by a DATETIME that another program filled (SQLite's own text form):
    # reads, updates and upserts by datetime find its rows instead of adding new ones.
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (at DATETIME PRIMARY KEY, v REAL)")
        conn.execute("INSERT INTO readings VALUES (datetime('2021-01-01 00:00:00'), 1.0)")
    at = dt.datetime(2021, 1, 1)
    with bulkops.connect(f"sqlite:///{path}", run_log=False) as db:
        assert list(db.get_many("readings", [at])) == [at]
        assert db.update("readings", [{"at": at, "v": 2.0}]).updated == 1
        assert db.upsert("readings", [{"at": "2021-01-01T00:00:00", "v": 2.0}]).unchanged == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM readings").fetchall() == [("2021-01-01 00:00:00", 2.0)]


@pytest.mark.postgres
def test_chinook_quoted_table_name_in_lower_case_is_not_created_again(
    pg_url: str, tmp_path: Path
) -> None:
    pg_execute(
        pg_url,
        """CREATE TABLE "Artist" ("ArtistId" INT NOT NULL, "Name" VARCHAR(120),
            CONSTRAINT "PK_Artist" PRIMARY KEY ("ArtistId"))""",
        """INSERT INTO "Artist" ("ArtistId", "Name") VALUES (1, 'AC/DC'), (2, 'Accept')""",
    )
    csv = tmp_path / "artists.csv"
    csv.write_text("ArtistId,Name\n3,Aerosmith\n4,Alanis Morissette\n")
    # The library names the table the caller most likely meant.
    with (
        bulkops.connect(pg_url, run_log=False) as db,
        pytest.raises(bulkops.errors.SchemaError) as missing,
    ):
        db.insert("artist", [{"ArtistId": 3, "Name": "Aerosmith"}])
    assert missing.value.case_variants == ("Artist",)
    assert "did you mean 'Artist'?" in str(missing.value)
    assert str(missing.value).endswith("; tables here: Artist")  # not pg_catalog's
    # The CLI would otherwise create a second, lower-case table and load the rows there.
    refused = CliRunner().invoke(main, ["load", str(csv), "-t", "artist", "--db", pg_url, "-q"])
    assert refused.exit_code != 0
    assert "differs only in case" in refused.output and "'Artist'" in refused.output
    visible = "SELECT relname FROM pg_class WHERE lower(relname) = 'artist' ORDER BY 1"
    assert pg_execute(pg_url, visible) == [("Artist",)]
    loaded = CliRunner().invoke(main, ["load", str(csv), "-t", "Artist", "--db", pg_url, "-q"])
    assert loaded.exit_code == 0, loaded.output
    assert pg_execute(pg_url, 'SELECT count(*) FROM "Artist"') == [(4,)]


@pytest.mark.parametrize("columnar", [False, True], ids=["dicts", "arrow"])
def test_django_deferred_foreign_keys_reject_the_row_not_the_call(
    pg_url: str, columnar: bool
) -> None:
    # Django makes every foreign key DEFERRABLE INITIALLY DEFERRED, so the server checks
    # them at COMMIT. bulkops checks them before its COMMIT: a tag that does not exist
    # costs its one row (named by row, column and key), not the whole call.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "django_taggit.sql").read_text())
    pg_execute(pg_url, "INSERT INTO django_content_type (app_label, model) VALUES ('auth', 'user')")
    items = [
        {"object_id": 1, "content_type_id": 1, "tag_id": 1},
        {"object_id": 1, "content_type_id": 1, "tag_id": 999},
        {"object_id": 2, "content_type_id": 1, "tag_id": 2},
    ]

    def given(rows: list[dict[str, int]]) -> object:
        return pa.Table.from_pylist(rows) if columnar else rows

    with bulkops.connect(pg_url) as db:
        tags = [{"name": "Python", "slug": "python"}, {"name": "Django", "slug": "django"}]
        assert db.upsert("taggit_tag", given(tags), key="slug").inserted == 2
        key = ["content_type_id", "object_id", "tag_id"]
        report = db.upsert("taggit_taggeditem", given(items), key=key, on_error="isolate")
        assert (report.inserted, report.rejected) == (2, 1), report
        (bad,) = report.rejections
        assert (bad.row, bad.column, bad.key, bad.code) == (2, "tag_id", (1, 1, 999), "23503")
        assert "(tag_id)=(999) is not present" in bad.reason
        with pytest.raises(bulkops.errors.ConstraintError) as raised:
            db.insert("taggit_taggeditem", given(items[1:2]))
        assert "row 1" in str(raised.value) and "tag_id" in str(raised.value)
        # A tag still referenced cannot be deleted; the unreferenced one is.
        pg_execute(pg_url, "INSERT INTO taggit_tag (name, slug) VALUES ('unused', 'unused')")
        ids = [r[0] for r in pg_execute(pg_url, "SELECT id FROM taggit_tag ORDER BY slug")]
        report = db.delete("taggit_tag", given([{"id": i} for i in ids]), on_error="isolate")
        assert (report.deleted, report.rejected) == (1, 2), report
        assert {r.code for r in report.rejections} == {"23503"}
    tagged = pg_execute(pg_url, "SELECT tag_id FROM taggit_taggeditem ORDER BY tag_id")
    assert tagged == [(1,), (2,)]
    assert pg_execute(pg_url, "SELECT slug FROM taggit_tag ORDER BY slug") == [
        ("django",),
        ("python",),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_powerdns_bad_inet_names_its_column_from_dicts_and_dataframes(
    pg_url: str, verb: str
) -> None:
    # PowerDNS's supermasters: an inet and a varchar make the key. A DataFrame's inet
    # column is text to Arrow, cast by the server in the statement that reads the stage;
    # its refusal names the column as the row path's (COPY's) does.
    pd = pytest.importorskip("pandas")
    pg_execute(pg_url, (DATA / "powerdns_schema.pgsql.sql").read_text())
    rows = [
        {"ip": "192.0.2.1", "nameserver": "ns1.example.com", "account": "acme"},
        {"ip": "192.0.2.300", "nameserver": "ns2.example.com", "account": "acme"},
        {"ip": "2001:db8::53", "nameserver": "ns2.example.com", "account": "acme"},
    ]
    found = []
    with bulkops.connect(pg_url) as db:
        for given in (rows, pd.DataFrame(rows)):
            report = getattr(db, verb)("supermasters", given, on_error="isolate")
            assert report.rejected == 1 and report.written == 2, report
            (bad,) = report.rejections
            found.append((bad.row, bad.key, bad.column, bad.code, bad.reason))
            db.delete("supermasters", [("192.0.2.1", "ns1.example.com")])
            db.delete("supermasters", [("2001:db8::53", "ns2.example.com")])
    assert found[0] == found[1]
    assert found[0][:4] == (2, ("192.0.2.300", "ns2.example.com"), "ip", "22P02")
    assert 'inet: "192.0.2.300"' in found[0][4]


@pytest.mark.postgres
def test_django_deferred_foreign_keys_stay_deferred_in_the_callers_transaction(
    pg_url: str,
) -> None:
    # Inside the application's transaction the deferred keys are its own: bulkops does
    # not move their check (nor their mode), so the caller's COMMIT refuses the orphan,
    # as it would refuse one written by Django itself.
    psycopg = pytest.importorskip("psycopg")
    pg_execute(pg_url, (DATA / "django_taggit.sql").read_text())
    pg_execute(pg_url, "INSERT INTO django_content_type (app_label, model) VALUES ('auth', 'user')")
    with psycopg.connect(pg_url) as conn:
        conn.execute("SELECT 1")  # opens the caller's transaction
        db = bulkops.connect(conn)
        orphan = {"object_id": 1, "content_type_id": 1, "tag_id": 999}
        assert db.insert("taggit_taggeditem", [orphan], on_error="isolate").inserted == 1
        db.insert("taggit_tag", [{"id": 999, "name": "late", "slug": "late"}])
        conn.commit()  # the tag came before COMMIT: the key holds
        conn.execute("SELECT 1")
        db.insert("taggit_taggeditem", [{**orphan, "tag_id": 998}], on_error="isolate")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.commit()
    assert pg_execute(pg_url, "SELECT tag_id FROM taggit_taggeditem") == [(999,)]


@pytest.mark.postgres
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_powerdns_check_on_one_column_names_it(pg_url: str, verb: str) -> None:
    # PowerDNS keeps domain names in lower case with a CHECK constraint, which the
    # server's refusal names but not its column: the rejection names `name`.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "powerdns_schema.pgsql.sql").read_text())
    rows = [
        {"name": "example.com", "type": "NATIVE", "account": "acme"},
        {"name": "Example.ORG", "type": "MASTER", "account": "acme"},
    ]
    found = []
    with bulkops.connect(pg_url) as db:
        for given in (rows, pa.Table.from_pylist(rows)):
            key = {"key": "name"} if verb == "upsert" else {}
            report = getattr(db, verb)("domains", given, on_error="isolate", **key)
            assert report.rejected == 1, report
            (bad,) = report.rejections
            found.append((bad.row, bad.column, bad.code))
            assert 'check constraint "c_lowercase_name"' in bad.reason
            pg_execute(pg_url, "DELETE FROM domains")
    assert found == [(2, "name", "23514")] * 2


def _optuna_models() -> Any:
    """The vendored excerpt of optuna's models, imported once (SQLAlchemy reads its
    annotations through sys.modules)."""
    name = "optuna_rdb_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA / f"{name}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.mark.postgres
def test_optuna_enum_columns_store_what_sqlalchemy_stores(pg_url: str) -> None:
    # optuna's Enum columns hold Python enum members; SQLAlchemy stores a member's name
    # (PostgreSQL enum labels 'COMPLETE', 'NAN'). Written through the model, instances
    # and dicts holding members land as the ORM would write them.
    sa = pytest.importorskip("sqlalchemy")
    orm = pytest.importorskip("sqlalchemy.orm")
    m = _optuna_models()
    value_type = m.TrialIntermediateValueModel.TrialIntermediateValueType
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        m.BaseModel.metadata.create_all(engine)
        with orm.Session(engine) as session, session.begin():
            session.add(m.StudyModel(study_id=1, study_name="study"))
            session.add(m.TrialModel(trial_id=1, number=0, study_id=1, state=m.TrialState.RUNNING))
            session.flush()
            db = bulkops.connect(session)
            values = [
                m.TrialIntermediateValueModel(
                    trial_id=1,
                    step=0,
                    intermediate_value=0.5,
                    intermediate_value_type=value_type.FINITE,
                ),
                {
                    "trial_id": 1,
                    "step": 1,
                    "intermediate_value": None,
                    "intermediate_value_type": value_type.NAN,
                },
            ]
            key = ["trial_id", "step"]
            assert db.upsert(m.TrialIntermediateValueModel, values, key=key).inserted == 2
            state = {"trial_id": 1, "state": m.TrialState.COMPLETE}
            assert db.update(m.TrialModel, [state]).updated == 1
            session.expire_all()
            stored = session.scalars(sa.select(m.TrialIntermediateValueModel).order_by("step"))
            assert [v.intermediate_value_type for v in stored] == [
                value_type.FINITE,
                value_type.NAN,
            ]
            assert session.get(m.TrialModel, 1).state is m.TrialState.COMPLETE
        labels = "SELECT intermediate_value_type::text FROM trial_intermediate_values ORDER BY step"
        assert pg_execute(pg_url, labels) == [("FINITE",), ("NAN",)]
        assert pg_execute(pg_url, "SELECT state::text FROM trials") == [("COMPLETE",)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("columnar", [False, True], ids=["dicts", "arrow"])
def test_powerdns_sqlite_nocase_key_sync_keeps_the_row(tmp_path: Path, columnar: bool) -> None:
    # PowerDNS's SQLite schema compares name servers COLLATE NOCASE, and the key of
    # supermasters is a unique index on (ip, nameserver). A sync whose source spells a
    # name server in another case holds the same row: it is changed in place, not
    # added and then deleted (which deleted the row just written, leaving none).
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "pdns.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "powerdns_schema.sqlite3.sql").read_text())
    key = ["ip", "nameserver"]

    def source(nameserver: str, account: str) -> object:
        rows = [{"ip": "192.0.2.1", "nameserver": nameserver, "account": account}]
        return pa.Table.from_pylist(rows) if columnar else rows

    with bulkops.connect(f"sqlite:///{path}", run_log=False) as db:
        first = db.sync(
            "supermasters", source("NS1.example.com", "a"), key=key, delete_missing=True
        )
        assert first.added == 1
        again = db.sync(
            "supermasters", source("ns1.EXAMPLE.com", "b"), key=key, delete_missing=True
        )
        assert (again.added, again.changed, again.deleted) == (0, 1, 0), again
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT ip, nameserver, account FROM supermasters").fetchall()
    assert stored == [("192.0.2.1", "NS1.example.com", "b")]


@pytest.mark.parametrize("columnar", [False, True], ids=["dicts", "arrow"])
def test_powerdns_sqlite_nocase_keys_of_one_call_are_one_row(
    tmp_path: Path, columnar: bool
) -> None:
    # Two spellings of one name server in one call are one row to the NOCASE index: they
    # collapse like any repeated key (the last wins, one duplicate). Before, SQLite's
    # upsert counted two inserts for the one row written, and update failed its count.
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "pdns.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "powerdns_schema.sqlite3.sql").read_text())
    rows = [
        {"ip": "192.0.2.1", "nameserver": "NS1.example.com", "account": "a"},
        {"ip": "192.0.2.1", "nameserver": "ns1.EXAMPLE.com", "account": "b"},
        {"ip": "192.0.2.1", "nameserver": "ns2.example.com", "account": "c"},
    ]
    given = pa.Table.from_pylist(rows) if columnar else rows
    key = ["ip", "nameserver"]
    with bulkops.connect(f"sqlite:///{path}", run_log=False) as db:
        report = db.upsert("supermasters", given, key=key)
        assert (report.inserted, report.duplicates) == (2, 1), report
        report = db.update("supermasters", given, key=key)
        assert (report.unchanged, report.duplicates) == (2, 1), report
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT nameserver, account FROM supermasters ORDER BY 1")
            assert stored.fetchall() == [("ns1.EXAMPLE.com", "b"), ("ns2.example.com", "c")]
        gone = [("192.0.2.1", r["nameserver"]) for r in rows[:2]]
        report = db.delete("supermasters", gone, key=key)
        assert (report.deleted, report.duplicates) == (1, 1), report


@pytest.mark.postgres
def test_freeradius_ddl_spelling_of_columns_is_named_in_the_error(pg_url: str) -> None:
    # FreeRADIUS's DDL writes AcctSessionId unquoted, so PostgreSQL made acctsessionid.
    # Rows spelled as the DDL is are refused (bulkops matches names exactly) with the
    # table's own spelling of each.
    pd = pytest.importorskip("pandas")
    pg_execute(pg_url, (DATA / "freeradius_schema.postgresql.sql").read_text())
    row = {"AcctSessionId": "5f2a", "AcctUniqueId": "c0ffee", "NASIPAddress": "192.0.2.7"}
    with bulkops.connect(pg_url) as db:
        for given in ([row], pd.DataFrame([row])):
            with pytest.raises(bulkops.errors.SchemaError) as refused:
                db.insert("radacct", given)
            assert "'AcctSessionId' is 'acctsessionid'" in str(refused.value)
            assert "'NASIPAddress' is 'nasipaddress'" in str(refused.value)
        assert db.insert("radacct", [{k.lower(): v for k, v in row.items()}]).inserted == 1


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_pagila_column_filled_by_a_before_insert_trigger(
    pg_url: str, verb: str, given: str
) -> None:
    # Pagila's film.fulltext is a NOT NULL tsvector with no default: a BEFORE INSERT
    # trigger fills it from the title and description, so rows (and Pagila's own
    # inserts) leave it out. Such rows are the database's to take or refuse: before,
    # an insert of dicts was refused whole and an upsert rejected every row. Bad rows
    # are still named, with the database's reason (domain, enum, foreign key, NOT NULL).
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "pagila_film.sql").read_text())
    pg_execute(pg_url, "INSERT INTO language (language_id, name) VALUES (1, 'English')")

    def film(film_id: int, **values: Any) -> dict[str, Any]:
        row = {
            "film_id": film_id, "title": f"FILM {film_id}", "description": "A Epic Drama",
            "release_year": 2006, "language_id": 1, "rental_rate": Decimal("0.99"),
            "rating": "PG-13", "special_features": ["Trailers", "Deleted Scenes"],
        }  # fmt: skip
        return {**row, **values}

    rows = [
        film(1),
        film(2, release_year=1800),
        film(3, rating="X"),
        film(4, language_id=9),
        film(5, title=None),
        film(6, special_features=[]),
    ]
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("film", source, on_error="isolate")
    assert (report.inserted, report.rejected) == (2, 4), report
    found = {(r.row, r.key, r.column, r.code) for r in report.rejections}
    assert found == {
        (2, 2, "release_year", "23514"),
        (3, 3, "rating", "22P02"),
        (4, 4, "language_id", "23503"),
        (5, 5, "title", "23502"),
    }
    reasons = " ".join(r.reason for r in report.rejections)
    assert 'domain year violates check constraint "year_check"' in reasons
    assert 'invalid input value for enum mpaa_rating: "X"' in reasons
    stored = pg_execute(
        pg_url, "SELECT film_id, special_features, fulltext::text FROM film ORDER BY film_id"
    )
    assert stored == [
        (1, ["Trailers", "Deleted Scenes"], "'1':2 'drama':5 'epic':4 'film':1"),
        (6, [], "'6':2 'drama':5 'epic':4 'film':1"),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
def test_awl_null_in_a_unique_key_is_a_missing_key_on_both_paths(pg_url: str, given: str) -> None:
    # AWL's (DAViCal's) tmp_password is keyed by UNIQUE (user_no, valid_until), and
    # valid_until may be NULL. No row has a NULL key part, so a row giving none is a
    # missing key on both paths; before, a DataFrame's such rows were inserted again by
    # every upsert and not found by update or delete.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "awl_tables.sql").read_text())
    pg_execute(pg_url, "INSERT INTO usr (user_no, username) VALUES (1, 'admin'), (2, 'bob')")
    until = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = [
        {"user_no": 1, "password": "*salt*hash", "valid_until": until},
        {"user_no": 2, "password": "*salt*hash2", "valid_until": None},
    ]
    key = ["user_no", "valid_until"]

    def source(data: list[dict[str, Any]]) -> Any:
        return data if given == "dicts" else pa.Table.from_pylist(data)

    with bulkops.connect(pg_url) as db:
        assert db.insert("tmp_password", source(rows)).inserted == 2
        outcomes = []
        for verb in ("upsert", "upsert", "update"):
            report = getattr(db, verb)("tmp_password", source(rows), key=key, on_error="isolate")
            (bad,) = report.rejections
            outcomes.append((report.unchanged, bad.row, bad.key, bad.column, bad.reason))
        gone = source([{"user_no": 2, "valid_until": None}])
        report = db.delete("tmp_password", gone, key=key, on_error="isolate")
        assert (report.deleted, report.rejected) == (0, 1), report
    missing = "missing key: key column 'valid_until' has no value (None)"
    assert outcomes == [(1, 2, (2, None), "valid_until", missing)] * 3
    stored = "SELECT user_no, valid_until FROM tmp_password ORDER BY user_no"
    assert pg_execute(pg_url, stored) == [(1, until), (2, None)]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_awl_unique_index_on_lower_username_names_the_column(
    pg_url: str, verb: str, given: str
) -> None:
    # AWL keeps user names unique without case: a unique index on lower(username).
    # The server's refusal names the index and `Key (lower(username))=(alice)`, no
    # column: the rejection names username, the column the expression uses.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "awl_tables.sql").read_text())
    rows = [
        {"user_no": 1, "username": "Alice", "email": "alice@example.com"},
        {"user_no": 2, "username": "alice", "email": "alice@example.org"},
        {"user_no": 3, "username": "bob", "email": "bob@example.com"},
    ]
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("usr", source, on_error="isolate")
    assert (report.inserted, report.rejected) == (2, 1), report
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column, bad.code) == (2, 2, "username", "23505")
    assert bad.values["username"] == "alice"
    assert "Key (lower(username))=(alice) already exists" in bad.reason
    assert pg_execute(pg_url, "SELECT user_no FROM usr ORDER BY 1") == [(1,), (3,)]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert", "update"])
def test_davical_bit_privileges_of_another_length_are_refused(
    pg_url: str, verb: str, given: str
) -> None:
    # DAViCal keeps a principal's privileges as BIT(24). A DataFrame's bit column is
    # text cast by the server; a cast to bit(24) pads '0001' with zeros and cuts a
    # longer string short, so such values were stored changed. They are refused, as
    # COPY refuses them for dict rows, naming the column and the database's reason.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "awl_tables.sql").read_text())
    pg_execute(pg_url, (DATA / "davical_principal.sql").read_text())
    pg_execute(
        pg_url,
        "INSERT INTO usr (user_no, username) VALUES (1, 'admin'), (2, 'carol'), (3, 'dave')",
        "INSERT INTO principal_type VALUES (1, 'Person')",
    )
    read_write = "000000000000000000000011"
    rows = [
        {"principal_id": 1, "type_id": 1, "user_no": 1, "default_privileges": read_write},
        {"principal_id": 2, "type_id": 1, "user_no": 2, "default_privileges": "0011"},
        {"principal_id": 3, "type_id": 1, "user_no": 3, "default_privileges": "1" * 25},
    ]
    if verb == "update":
        three = "SELECT g, 1 FROM generate_series(1, 3) g"
        pg_execute(pg_url, f"INSERT INTO principal (principal_id, type_id) {three}")
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("principal", source, on_error="isolate")
    assert (report.inserted + report.updated, report.rejected) == (1, 2), report
    found = [(r.row, r.key, r.column, r.code, r.reason) for r in report.rejections]
    assert found == [
        (2, 2, "default_privileges", "22026", "bit string length 4 does not match type bit(24)"),
        (3, 3, "default_privileges", "22026", "bit string length 25 does not match type bit(24)"),
    ]
    stored = "SELECT principal_id, default_privileges FROM principal ORDER BY 1"
    assert pg_execute(pg_url, stored)[0] == (1, read_write)
    assert all(bits is None for _, bits in pg_execute(pg_url, stored)[1:])


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_kamailio_integer_default_of_a_varchar_column(pg_url: str, verb: str, given: str) -> None:
    # Kamailio's rtpproxy declares `setid VARCHAR(32) DEFAULT 00 NOT NULL`: the
    # database casts the integer 0 to text when it assigns the default. A row giving
    # setid (or None, meaning the default) went through COALESCE(setid, 0), which the
    # server cannot type, and the whole call failed.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "kamailio_standard-create.sql").read_text())
    pg_execute(pg_url, (DATA / "kamailio_rtpproxy-create.sql").read_text())
    rows = [
        {"id": 1, "setid": "1", "url": "udp:192.0.2.10:7722", "flags": 0, "weight": 1},
        {"id": 2, "setid": None, "url": "udp:192.0.2.11:7722", "flags": 0, "weight": 2},
        {"id": 3, "setid": "1", "url": "udp:192.0.2.12:7722", "flags": 2**31, "weight": 1},
    ]
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("rtpproxy", source, on_error="isolate")
    assert (report.inserted, report.rejected) == (2, 1), report
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column) == (3, 3, "flags")
    stored = "SELECT id, setid, url, description FROM rtpproxy ORDER BY id"
    assert pg_execute(pg_url, stored) == [
        (1, "1", "udp:192.0.2.10:7722", ""),
        (2, "0", "udp:192.0.2.11:7722", ""),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow", "cli"])
def test_kamailio_sync_rejects_a_value_the_stage_refuses(
    pg_url: str, tmp_path: Path, given: str
) -> None:
    # Kamailio's subscriber keeps passwords in VARCHAR(64). A sync stages the source in
    # columns typed as the table's, so a longer password failed the staging COPY and
    # with it the whole sync, even with on_error="isolate", naming no row or key. The
    # row is rejected (row, key, column, the database's reason), its key kept (the
    # subscriber is not deleted as missing) and the rest of the sync goes on.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "kamailio_standard-create.sql").read_text())
    pg_execute(pg_url, (DATA / "kamailio_auth_db-create.sql").read_text())
    pg_execute(
        pg_url,
        "INSERT INTO subscriber (id, username, domain, password) VALUES "
        "(1, 'alice', 'example.com', 'old'), (2, 'bob', 'example.com', 'old'), "
        "(9, 'mallory', 'example.com', 'old')",
    )
    rows = [
        {"id": 1, "username": "alice", "domain": "example.com", "password": "n3w"},
        {"id": 2, "username": "bob", "domain": "example.com", "password": "p" * 65},
        {"id": 3, "username": "carol", "domain": "example.com", "password": "s3cret"},
    ]
    if given == "cli":
        source = tmp_path / "subscribers.jsonl"
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
        result = CliRunner().invoke(
            main,
            ["sync", str(source), "-t", "subscriber", "--db", pg_url, "--key", "id",
             "--delete-missing", "--on-error", "isolate", "--json"],
        )  # fmt: skip
        out = json.loads(result.output)
        counts = tuple(out[k] for k in ("added", "changed", "deleted", "rejected"))
        (bad,) = [(r["row"], r["key"], r["column"], r["code"]) for r in out["rejections"]]
    else:
        with bulkops.connect(pg_url) as db:
            report = db.sync(
                "subscriber",
                rows if given == "dicts" else pa.Table.from_pylist(rows),
                key="id", delete_missing=True, on_error="isolate",
            )  # fmt: skip
        counts = (report.added, report.changed, report.deleted, report.rejected)
        (rejection,) = report.rejections
        bad = (rejection.row, rejection.key, rejection.column, rejection.code)
        assert "value too long for type character varying(64)" in rejection.reason
    assert counts == (1, 1, 1, 1)
    assert bad == (2, 2, "password", "22001")
    assert pg_execute(pg_url, "SELECT id, password FROM subscriber ORDER BY id") == [
        (1, "n3w"),
        (2, "old"),
        (3, "s3cret"),
    ]


@pytest.mark.postgres
def test_pagila_upsert_of_some_columns_with_an_insert_trigger(pg_url: str) -> None:
    # On a table with a BEFORE INSERT trigger, rows that leave out NOT NULL columns are
    # upserted (the trigger may fill them: a new film without fulltext is inserted),
    # and where the database still refuses a NULL (a new film without a title) they
    # update the films that exist, as on any table: film 1's new rate is written, and
    # only the new film without a title is rejected.
    pg_execute(pg_url, (DATA / "pagila_film.sql").read_text())
    pg_execute(
        pg_url,
        "INSERT INTO language (language_id, name) VALUES (1, 'English')",
        "INSERT INTO film (film_id, title, language_id) VALUES (1, 'ACADEMY DINOSAUR', 1)",
    )
    with bulkops.connect(pg_url) as db:
        rate = db.upsert(
            "film",
            [{"film_id": 1, "rental_rate": Decimal("0.99")}, {"film_id": 7, "rental_rate": 1}],
            on_error="isolate",
        )
        titled = db.upsert("film", [{"film_id": 2, "title": "ACE GOLDFINGER", "language_id": 1}])
    assert (rate.updated, rate.rejected) == (1, 1), rate
    (bad,) = rate.rejections
    assert (bad.row, bad.key, bad.column) == (2, 7, "title")
    assert "can only update a row that exists" in bad.reason
    assert titled.inserted == 1, titled
    stored = "SELECT film_id, rental_rate, fulltext::text FROM film ORDER BY film_id"
    assert pg_execute(pg_url, stored) == [
        (1, Decimal("0.99"), "'academi':1 'dinosaur':2"),
        (2, Decimal("4.99"), "'ace':1 'goldfing':2"),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert", "sync"])
def test_ttrss_bad_tsvector_rejects_its_row(pg_url: str, verb: str, given: str) -> None:
    # Tiny Tiny RSS keeps each article's search text as a tsvector. The server refuses
    # a malformed one under the SQLSTATE of a syntax error (42601), which stopped the
    # whole call as if bulkops' own statement were wrong; it is the row's rejection,
    # naming its column and the server's reason.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "ttrss_entries.pgsql.sql").read_text())
    when = dt.datetime(2021, 2, 4, 12, 0)

    def entry(entry_id: int, search: str) -> dict[str, Any]:
        return {
            "id": entry_id, "title": f"Post {entry_id}", "guid": f"SHA1:{entry_id}",
            "link": f"https://example.org/{entry_id}", "updated": when, "content": "<p>Hi</p>",
            "content_hash": f"SHA1:{entry_id:040d}", "date_entered": when, "date_updated": when,
            "tsvector_combined": search,
        }  # fmt: skip

    rows = [entry(1, "'post':1 'hi':2"), entry(2, "'post':1 'hi"), entry(3, "'post':1")]
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("ttrss_entries", source, on_error="isolate")
    written = report.added if verb == "sync" else report.inserted
    assert (written, report.rejected) == (2, 1), report
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column, bad.code) == (2, 2, "tsvector_combined", "42601")
    assert bad.reason == "syntax error in tsvector: \"'post':1 'hi\""
    stored = "SELECT id, tsvector_combined::text FROM ttrss_entries ORDER BY id"
    assert pg_execute(pg_url, stored) == [(1, "'hi':2 'post':1"), (3, "'post':1")]


@pytest.mark.postgres
@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert", "sync"])
def test_zabbix_item_key_too_big_for_its_index_rejects_its_row(
    pg_url: str, verb: str, given: str
) -> None:
    # Zabbix indexes items on (hostid, key_), key_ a VARCHAR(2048). A key of 1,000
    # CJK characters fits the column but not a btree entry (3,048 bytes, at most 2,704):
    # the server's refusal (SQLSTATE 54000, a limit) stopped the whole call as if it
    # were not about a row. It rejects the row, naming the index's columns.
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "zabbix_items.pgsql.sql").read_text())
    chance = random.Random(3)
    path = "".join(chr(chance.randint(0x4E00, 0x9FFF)) for _ in range(1000))
    rows = [
        {"itemid": 1, "hostid": 10084, "name": "CPU load", "key_": "system.cpu.load[all,avg1]"},
        {"itemid": 2, "hostid": 10084, "name": "Log", "key_": f"log[/var/log/{path}]"},
        {"itemid": 3, "hostid": 10084, "name": "Memory", "key_": "vm.memory.size[available]"},
    ]
    with bulkops.connect(pg_url) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        key = {"key": "itemid"} if verb == "sync" else {}
        report = getattr(db, verb)("items", source, on_error="isolate", **key)
    written = report.added if verb == "sync" else report.inserted
    assert (written, report.rejected) == (2, 1), report
    (bad,) = report.rejections
    assert (bad.row, bad.key, bad.column, bad.code) == (2, 2, "hostid, key_", "54000")
    assert "exceeds btree version 4 maximum 2704 for index" in bad.reason
    # (The items' AFTER INSERT trigger sets name_upper.)
    stored = "SELECT itemid, name_upper FROM items ORDER BY itemid"
    assert pg_execute(pg_url, stored) == [(1, "CPU LOAD"), (3, "MEMORY")]
