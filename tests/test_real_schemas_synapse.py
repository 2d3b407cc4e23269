"""Matrix Synapse (https://github.com/element-hq/synapse, AGPL-3.0-only): its SQLite
schema keeps one-row tables with a table CHECK, ``CHECK (Lock='X')``, whose refusal
SQLite words with the expression. ``tests/data/synapse_appservice_stream_position.sqlite.sql``
holds the statement used (source and licence in ``tests/data/README.md``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import bulkops
from bulkops.backends.sqlite import check_column
from bulkops.schema import ColumnSpec, TableSpec
from conftest import assert_accounted

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_table_check_refusal_names_its_column(tmp_path: Path, verb: str, given: str) -> None:
    # "CHECK constraint failed: Lock='X'": the rejection's column is Lock. Before, it
    # was the expression's first word, "Lock='X'", which is no column.
    pa = pytest.importorskip("pyarrow")
    path = tmp_path / "synapse.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((DATA / "synapse_appservice_stream_position.sqlite.sql").read_text())
    rows = [{"Lock": "Y", "stream_ordering": 5}, {"Lock": "X", "stream_ordering": 7}]
    with bulkops.connect(f"sqlite:///{path}", run_log=False) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)(
            "appservice_stream_position", source, key="Lock", on_error="isolate"
        )
    assert_accounted(report, 2)
    assert report.inserted == 1, report
    [rejection] = report.rejections
    assert (rejection.row, rejection.key, rejection.column) == (1, "Y", "Lock")
    assert rejection.reason == "CHECK constraint failed: Lock='X'"


def test_check_column_of_a_name_an_expression_or_a_column() -> None:
    # What SQLite says after "CHECK constraint failed: ": a column's own CHECK by the
    # column, a named CHECK by its name (its expression is read from the CREATE
    # TABLE), a table's unnamed CHECK by its expression. A CHECK on no column or on
    # several names none; string literals are no columns.
    table = TableSpec(
        name="t", columns={c: ColumnSpec(name=c) for c in ("id", "price", "a", "b", "Odd Name")}
    )
    create = (
        "CREATE TABLE t (id INTEGER PRIMARY KEY, price REAL CONSTRAINT positive CHECK "
        '(price > (0)), a INT, b INT, [Odd Name] TEXT, CONSTRAINT "odd" CHECK '
        "([Odd Name] <> 'a (b'), CONSTRAINT both CHECK (a < b), CHECK ('a' = 'a'))"
    )
    assert check_column(table, "price", create) == "price"
    assert check_column(table, "PRICE", create) == "price"
    assert check_column(table, "positive", create) == "price"
    assert check_column(table, "odd", create) == "Odd Name"
    assert check_column(table, "both", create) is None
    assert check_column(table, "a < b", create) is None
    assert check_column(table, "b >= 0", create) == "b"
    assert check_column(table, "'a' = 'a'", create) is None
    assert check_column(table, '"price" <> 1', "") == "price"
