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
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import bulkops
from bulkops.cli import main
from conftest import pg_execute

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
