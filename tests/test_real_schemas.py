"""Real schemas that nobody on the team wrote, with tiny excerpts of their real data.

- Chinook (https://github.com/lerocha/chinook-database, MIT licence, Luis Rocha):
  ``Chinook_Sqlite.sql``'s ``Invoice`` table and three of its rows.
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
