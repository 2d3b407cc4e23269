"""PostgreSQL-specific behaviour (the shared contract runs in test_contract.py)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

import bulkops
from bulkops.errors import ConversionError, SchemaError
from conftest import assert_accounted
from conftest import pg_execute as execute

pytestmark = pytest.mark.postgres


def test_postgres_types_round_trip(pg_url: str) -> None:
    execute(
        pg_url,
        """CREATE TABLE typed (
            id int PRIMARY KEY, u uuid, small int2, tags text[], doc jsonb, amount numeric(12,4),
            raw bytea, local timestamp, at timestamptz, day date, ok boolean, ratio real)""",
    )
    u = uuid.uuid4()
    row = {
        "id": 1,
        "u": u,
        "small": 32767,
        "tags": ["a", "b"],
        "doc": {"k": [1, 2]},
        "amount": Decimal("12345678.1234"),
        "raw": b"\x00\x01",
        "local": dt.datetime(2024, 5, 1, 12, 0),
        "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "day": dt.date(2024, 5, 1),
        "ok": True,
        "ratio": 0.5,
    }
    text_row = {k: (str(v) if k in ("u", "amount", "day") else v) for k, v in row.items()}
    text_row.update(id=2, local="2024-05-01T12:00:00", at="2024-05-01T10:00:00Z", ok="yes")
    with bulkops.connect(pg_url) as db:
        report = db.insert("typed", [row, text_row])
        assert report.inserted == 2
        got = db.get_many("typed", [1, 2])
    assert got[1] == row
    assert got[2] == {**row, "id": 2}  # text coerced by the catalog's column types
    assert got[1]["amount"].as_tuple() == Decimal("12345678.1234").as_tuple()


def test_narrow_integer_and_bad_uuid_are_row_errors(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE t (id int PRIMARY KEY, u uuid, small int2)")
    with bulkops.connect(pg_url) as db:
        report = db.insert(
            "t",
            [
                {"id": 1, "u": None, "small": 1},
                {"id": 2, "u": "not-a-uuid", "small": 1},
                {"id": 3, "u": None, "small": 40000},
                {"id": 2**31, "u": None, "small": 1},
            ],
            on_error="isolate",
        )
        assert_accounted(report, 4)
        assert {r.row: r.column for r in report.rejections} == {2: "u", 3: "small", 4: "id"}
        assert "16-bit" in report.rejections[1].reason
        with pytest.raises(ConversionError) as caught:
            db.insert("t", [{"id": 5, "u": "x", "small": 1}])
        assert (caught.value.row, caught.value.column) == (1, "u")


def test_schema_qualified_table_and_engine(pg_url: str) -> None:
    execute(
        pg_url, "CREATE SCHEMA shop", "CREATE TABLE shop.items (id bigint PRIMARY KEY, name text)"
    )
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with bulkops.connect(engine) as db:
            assert db.upsert("shop.items", [{"id": 1, "name": "a"}]).inserted == 1
            assert db.get_many("shop.items", [1]) == {1: {"id": 1, "name": "a"}}
            with pytest.raises(SchemaError, match=r"no such table 'shop\.nope'"):
                db.insert("shop.nope", [{"id": 1}])
        with engine.connect() as conn:  # the engine is still the caller's, and usable
            assert conn.execute(sa.text("SELECT count(*) FROM shop.items")).scalar() == 1
    finally:
        engine.dispose()


def test_upsert_on_postgres_counts_and_skips_unchanged_rows(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE s (id bigint PRIMARY KEY, v text, n int)")
    with bulkops.connect(pg_url) as db:
        db.insert("s", [{"id": i, "v": "x", "n": i} for i in range(100)])
        before = execute(pg_url, "SELECT sum(xmin::text::bigint) FROM s")[0][0]
        rows = [{"id": i, "v": "x", "n": i} for i in range(100)]  # all unchanged
        report = db.upsert("s", rows)
        assert (report.unchanged, report.updated) == (100, 0)
        # Unchanged rows were not rewritten: their row versions (xmin) are the same.
        assert execute(pg_url, "SELECT sum(xmin::text::bigint) FROM s")[0][0] == before


def test_cli_load_into_postgres(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        "id,name,price,at\n1,a,1.50,2024-01-01T00:00:00Z\n2,b,oops,2024-01-01T00:00:00Z\n"
        "3,c,2.25,2024-01-02T00:00:00+02:00\n"
    )
    execute(
        pg_url, "CREATE TABLE p (id bigint PRIMARY KEY, name text, price numeric, at timestamptz)"
    )
    command = [sys.executable, "-m", "bulkops", "load", "in.csv", "--table", "p", "--db", pg_url]
    result = subprocess.run(
        [*command, "--rejects", "bad.jsonl", "--json", "--workers", "2", "--chunk-size", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (2, 1)
    bad = json.loads((tmp_path / "bad.jsonl").read_text())
    assert (bad["row"], bad["column"], bad["values"]["price"]) == (2, "price", "oops")
    assert execute(pg_url, "SELECT id, price FROM p ORDER BY id") == [
        (1, Decimal("1.50")),
        (3, Decimal("2.25")),
    ]
    # Created by the CLI on PostgreSQL too:
    fresh = [*command[:-4], "--table", "fresh", "--db", pg_url, "--key", "id", "--json"]
    result = subprocess.run(fresh, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout)["inserted"] == 3  # price inferred as text: 'oops' fits
    cols = execute(
        pg_url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'fresh' ORDER BY ordinal_position",
    )
    assert cols == [
        ("id", "bigint"),
        ("name", "text"),
        ("price", "text"),
        ("at", "timestamp with time zone"),
    ]


def test_a_table_made_since_it_was_looked_for_is_no_case_variant_of_itself(pg_url: str) -> None:
    # Two `bulkops load`s creating one table at once: the second looked for it before the
    # first made it, and then its "no such table" listed the new table as a spelling
    # differing only in case ("did you mean 'race'?"), so the load refused to create
    # it (seen as an intermittent failure of test_concurrent_create_both_succeed).
    execute(pg_url, "CREATE TABLE race (id int)", 'CREATE TABLE "Race" (id int)')
    with bulkops.connect(pg_url, run_log=False) as db:
        error = db.backend._no_such_table("race")  # type: ignore[attr-defined]
    assert error.case_variants == ("Race",)
    assert "did you mean 'Race'?" in str(error)
