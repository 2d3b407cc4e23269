"""Real PostgreSQL schemas: every column type loads, upserts and reads back exactly.

Values are checked through bulkops (get_many) and also with plain psycopg (the text
the server itself prints), so that what bulkops stores is what plain SQL sees.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import bulkops
from conftest import pg_execute as execute

pytestmark = pytest.mark.postgres

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def has_citext(url: str) -> bool:
    try:
        execute(url, "CREATE EXTENSION IF NOT EXISTS citext")
    except psycopg.Error:
        return False
    return True


def require_citext(url: str) -> None:
    """Skip where the server lacks citext (a contrib extension), unless CI demands the
    PostgreSQL tests run: there its absence is a failure, not a skip nobody sees."""
    if has_citext(url):
        return
    if os.environ.get("BULKOPS_REQUIRE_POSTGRES") == "1":
        pytest.fail("BULKOPS_REQUIRE_POSTGRES=1 but the citext extension is not installed")
    pytest.skip("the citext extension is not installed")


# ------------------------------------------------------------- one of each type

COLUMNS = {
    "c": "char(5)",
    "vc": "varchar(8)",
    "si": "smallint",
    "r": "real",
    "m": "money",
    "t": "time",
    "tz": "timetz",
    "iv": "interval",
    "ip": "inet",
    "net": "cidr",
    "mac": "macaddr",
    "b": "bit(4)",
    "vb": "varbit",
    "raw": "bytea",
    "u": "uuid",
    "j": "json",
    "jb": "jsonb",
    "x": "xml",
    "mood": "mood",
    "pos": "posint",
    "tags": "text[]",
    "moods": "mood[]",
    "nums": "posint[]",
    "ips": "inet[]",
    "pt": "point",
    "ct": "citext",
    "ts": "tsvector",
}

U1 = uuid.UUID("12345678-1234-5678-1234-567812345678")
U2 = uuid.UUID("87654321-4321-8765-4321-876543218765")

# Python values, and what get_many gives back for them.
ROW_1 = {
    "id": 1,
    "c": "abcde",
    "vc": "hello",
    "si": -32768,
    "r": 1.5,
    "m": Decimal("12.34"),
    "t": dt.time(12, 30, 1, 500),
    "tz": dt.time(12, 30, tzinfo=PLUS2),
    "iv": dt.timedelta(days=1, seconds=5, microseconds=7),
    "ip": ipaddress.ip_interface("10.0.0.1/24"),
    "net": ipaddress.ip_network("10.0.0.0/8"),
    "mac": "08:00:2b:01:02:03",
    "b": "1010",
    "vb": "110",
    "raw": b"\x00\xff\\x",
    "u": U1,
    "j": {"b": 1, "a": [1, 2]},
    "jb": {"k": [1, {"n": None}]},
    "x": "<a>1</a>",
    "mood": "ok",
    "pos": 5,
    "tags": ["a", 'b "quoted"', "c\\d", None, "{}"],
    "moods": ["ok", "sad"],
    "nums": [1, 2],
    "ips": [ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1")],
    "pt": "(1,2)",
    "ct": "HeLLo",
    "ts": "'cat' 'fat'",
}

# The same kinds of values as text, as a CSV file brings them.
ROW_2_TEXT = {
    "id": "2",
    "c": "ab",
    "vc": "",
    "si": "7",
    "r": "-0.25",
    "m": "-0.5",
    "t": "23:59:59",
    "tz": "01:00:00+00",
    "iv": "2 hours",
    "ip": "::1",
    "net": "192.168.0.0/16",
    "mac": "08-00-2b-01-02-04",
    "b": "0001",
    "vb": "",
    "raw": "\\x0102",
    "u": str(U2),
    "j": '{"x": 1}',
    "jb": "[1, 2]",
    "x": "<b/>",
    "mood": "happy",
    "pos": "1",
    "tags": '{x,"y z"}',
    "moods": "{happy}",
    "nums": "{3}",
    "ips": "{127.0.0.1}",
    "pt": "(3.5,-4)",
    "ct": "World",
    "ts": "a fat cat",
}
ROW_2 = {
    "id": 2,
    "c": "ab   ",  # char(n) pads, as PostgreSQL does
    "vc": "",
    "si": 7,
    "r": -0.25,
    "m": Decimal("-0.50"),
    "t": dt.time(23, 59, 59),
    "tz": dt.time(1, 0, tzinfo=UTC),
    "iv": dt.timedelta(hours=2),
    "ip": ipaddress.ip_address("::1"),
    "net": ipaddress.ip_network("192.168.0.0/16"),
    "mac": "08:00:2b:01:02:04",
    "b": "0001",
    "vb": "",
    "raw": b"\x01\x02",
    "u": U2,
    "j": {"x": 1},
    "jb": [1, 2],
    "x": "<b/>",
    "mood": "happy",
    "pos": 1,
    "tags": ["x", "y z"],
    "moods": ["happy"],
    "nums": [3],
    "ips": [ipaddress.ip_address("127.0.0.1")],
    "pt": "(3.5,-4)",
    "ct": "World",
    "ts": "'a' 'cat' 'fat'",
}

# What the server itself prints for row 1 (money as numeric: its text is locale's).
ROW_1_SQL_TEXT = {
    "c": "abcde",
    "vc": "hello",
    "si": "-32768",
    "r": "1.5",
    "m": "12.34",
    "t": "12:30:01.0005",
    "tz": "12:30:00+02",
    "iv": "1 day 00:00:05.000007",
    "ip": "10.0.0.1/24",
    "net": "10.0.0.0/8",
    "mac": "08:00:2b:01:02:03",
    "b": "1010",
    "vb": "110",
    "raw": "\\x00ff5c78",
    "u": str(U1),
    "j": '{"b": 1, "a": [1, 2]}',
    "jb": '{"k": [1, {"n": null}]}',
    "x": "<a>1</a>",
    "mood": "ok",
    "pos": "5",
    "tags": '{a,"b \\"quoted\\"","c\\\\d",NULL,"{}"}',
    "moods": "{ok,sad}",
    "nums": "{1,2}",
    "ips": "{10.0.0.1,::1}",
    "pt": "(1,2)",
    "ct": "HeLLo",
    "ts": "'cat' 'fat'",
}

CHANGED_1 = {
    "id": 1,
    "c": "zz",
    "vc": "bye",
    "si": 32767,
    "r": -2.0,
    "m": Decimal("-1234567.89"),
    "t": dt.time(0, 0),
    "tz": dt.time(8, 15, tzinfo=UTC),
    "iv": dt.timedelta(days=-1, seconds=1),
    "ip": ipaddress.ip_address("2001:db8::1"),
    "net": ipaddress.ip_network("2001:db8::/32"),
    "mac": "ff:ff:ff:ff:ff:ff",
    "b": "1111",
    "vb": "0",
    "raw": b"",
    "u": U2,
    "j": {"a": [1, 2], "b": 1},  # same keys, other order: json keeps the text
    "jb": {"k": []},
    "x": "<a>2</a>",
    "mood": "sad",
    "pos": 2**31 - 1,
    "tags": [],
    "moods": ["happy", "happy"],
    "nums": [[1, 2], [3, 4]],
    "ips": [],
    "pt": "(0,0)",
    "ct": "hello",  # citext: equal to HeLLo, yet the text differs
    "ts": "'dog'",
}


def make_everything(url: str) -> dict[str, str]:
    columns = dict(COLUMNS)
    if not has_citext(url):
        del columns["ct"]
    execute(
        url,
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
        "CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
        "CREATE TABLE everything (id int PRIMARY KEY, "
        + ", ".join(f"{name} {typ}" for name, typ in columns.items())
        + ")",
    )
    return columns


def only(row: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k == "id" or k in columns}


def test_every_type_loads_upserts_and_reads_back(pg_url: str) -> None:
    columns = make_everything(pg_url)
    row_1, row_2_text, row_2 = (only(r, columns) for r in (ROW_1, ROW_2_TEXT, ROW_2))
    with bulkops.connect(pg_url) as db:
        report = db.insert("everything", [row_1, row_2_text])
        assert report.inserted == 2, report.rejections
        got = db.get_many("everything", [1, 2])
        assert got[1] == row_1
        assert got[2] == row_2

        # Upsert: row 1 changes in every column, row 2 is given again as it was (as
        # Python values now), row 3 is new.
        changed = only(CHANGED_1, columns)
        row_3 = {**row_1, "id": 3}
        report = db.upsert("everything", [changed, row_2, row_3])
        assert (report.inserted, report.updated, report.unchanged) == (1, 1, 1)
        got = db.get_many("everything", [1, 2, 3])
        expected_1 = {**changed, "c": "zz   "}
        assert got[1] == expected_1
        assert got[2] == row_2 and got[3] == row_3

        # The same rows again: nothing changes, also where the type has no equality
        # operator (json, xml, point) and is compared as jsonb or text.
        report = db.upsert("everything", [expected_1, row_2, row_3])
        assert (report.inserted, report.updated, report.unchanged) == (0, 0, 3)

    # Plain SQL sees the values as given.
    names = [c for c in columns]
    select = ", ".join(f"{c}::numeric::text" if c == "m" else f"{c}::text" for c in names)
    [raw] = execute(pg_url, f"SELECT {select} FROM everything WHERE id = 3")
    assert dict(zip(names, raw, strict=True)) == only(ROW_1_SQL_TEXT, columns)
    checks = execute(
        pg_url,
        """SELECT m = '-1234567.89'::numeric::money, mood = 'sad', moods[1] = 'happy',
                  nums[2][1] = 3, xpath('/a/text()', x)::text, j::text, pt ~= '(0,0)'::point,
                  iv = '-1 day 00:00:01'::interval, ip = '2001:db8::1'::inet
           FROM everything WHERE id = 1""",
    )
    assert checks == [(True, True, True, True, "{2}", '{"a": [1, 2], "b": 1}', True, True, True)]


def test_raw_psycopg_reads_what_bulkops_wrote(pg_url: str) -> None:
    columns = make_everything(pg_url)
    with bulkops.connect(pg_url) as db:
        db.insert("everything", [only(ROW_1, columns)])
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT c, si, r, t, tz, iv, ip, net, raw, u, j, jb, mood, pos, tags FROM everything"
        ).fetchone()
    assert row == (
        "abcde",
        -32768,
        1.5,
        dt.time(12, 30, 1, 500),
        dt.time(12, 30, tzinfo=PLUS2),
        dt.timedelta(days=1, seconds=5, microseconds=7),
        ipaddress.ip_interface("10.0.0.1/24"),
        ipaddress.ip_network("10.0.0.0/8"),
        b"\x00\xff\\x",
        U1,
        {"b": 1, "a": [1, 2]},
        {"k": [1, {"n": None}]},
        "ok",
        5,
        ["a", 'b "quoted"', "c\\d", None, "{}"],
    )


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("vc", "nine char", "too long"),
        ("c", "sixsix", "too long"),
        ("pos", 0, "posint"),
        ("nums", [1, -1], "posint"),
        ("mood", "angry", "mood"),
        ("m", Decimal("1.005"), "decimal places"),
        ("mac", "not a mac", "macaddr"),
        ("b", "10", "bit"),
        ("x", "<unclosed>", "XML"),
        ("ip", "10.0.0.300", "inet"),
        ("si", 40000, "16-bit"),
    ],
)
def test_bad_values_are_row_rejections_naming_the_column(
    pg_url: str, column: str, value: Any, words: str
) -> None:
    columns = make_everything(pg_url)
    good = only(ROW_1, columns)
    rows = [{**good, "id": i} for i in range(1, 6)]
    rows[2][column] = value
    with bulkops.connect(pg_url) as db:
        report = db.insert("everything", rows, on_error="isolate")
        assert report.inserted == 4 and report.rejected == 1
        [rejection] = report.rejections
        assert rejection.row == 3 and rejection.key == 3
        assert rejection.column == column, rejection
        assert words.lower() in rejection.reason.lower(), rejection.reason
        # An upsert rejects it the same way (through the staging table).
        rows = [{**row, "id": row["id"] + 10} for row in rows]
        report = db.upsert("everything", rows, on_error="isolate")
        assert report.inserted == 4 and report.rejected == 1
        assert report.rejections[0].column == column
    assert execute(pg_url, "SELECT count(*) FROM everything") == [(8,)]


def test_citext_compares_without_case(pg_url: str) -> None:
    require_citext(pg_url)
    execute(pg_url, "CREATE TABLE users (email citext PRIMARY KEY, name text)")
    with bulkops.connect(pg_url) as db:
        db.insert("users", [{"email": "Ann@Example.org", "name": "Ann"}])
        report = db.upsert("users", [{"email": "ann@example.org", "name": "Ann B"}])
        assert (report.inserted, report.updated) == (0, 1)
        got = db.get_many("users", ["ANN@EXAMPLE.ORG"])
    assert list(got.values()) == [{"email": "Ann@Example.org", "name": "Ann B"}]


def test_citext_key_sync_changes_the_row_in_place(pg_url: str) -> None:
    # A citext key spelled in another case by the next sync's source is the same row
    # (the database says so): changed in place. Compared by digests it was a new key
    # and a missing one, and deleting the missing one deleted the row just written.
    require_citext(pg_url)
    execute(pg_url, "CREATE TABLE users (email citext PRIMARY KEY, name text)")
    with bulkops.connect(pg_url) as db:
        db.sync("users", [{"email": "Ann@Example.org", "name": "Ann"}], delete_missing=True)
        report = db.sync(
            "users", [{"email": "ann@example.org", "name": "Ann B"}], delete_missing=True
        )
        assert (report.added, report.changed, report.deleted) == (0, 1, 0), report
    assert execute(pg_url, "SELECT email::text, name FROM users") == [("Ann@Example.org", "Ann B")]


def test_citext_keys_of_one_call_are_one_row(pg_url: str) -> None:
    # "Ann@Example.org" and "ann@example.org" are one key to citext: in one upsert they
    # collapse (the last wins), where INSERT … ON CONFLICT refused to touch a row twice.
    require_citext(pg_url)
    pd = pytest.importorskip("pandas")
    execute(pg_url, "CREATE TABLE users (email citext PRIMARY KEY, name text)")
    rows = [{"email": "Ann@Example.org", "name": "Ann"}, {"email": "ann@example.org", "name": "B"}]
    with bulkops.connect(pg_url) as db:
        report = db.upsert("users", rows)
        assert (report.inserted, report.duplicates) == (1, 1), report
        report = db.upsert("users", pd.DataFrame(rows).assign(name=["C", "D"]))
        assert (report.updated, report.duplicates) == (1, 1), report
    assert execute(pg_url, "SELECT email::text, name FROM users") == [("ann@example.org", "D")]


@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_not_null_domain_columns_are_not_null_columns(pg_url: str, verb: str, given: str) -> None:
    # A column of a NOT NULL domain is a NOT NULL column: a None is refused naming
    # it (by bulkops on the columnar path; by the database's "domain ... does not
    # allow null values", traced back to the column, on the row path), or takes the
    # column's default where it has one. It is staged as the domain's base type (the
    # domain is applied as the row is written): the domain's CHECK refusal names the
    # column that gives a value, by the domain's name where two columns could be.
    pa = pytest.importorskip("pyarrow")
    execute(
        pg_url,
        'CREATE DOMAIN "Flag" boolean NOT NULL',
        "CREATE DOMAIN positive integer NOT NULL CHECK (VALUE > 0)",
        'CREATE TABLE flags (id int PRIMARY KEY, a "Flag", b "Flag", n positive, '
        'd "Flag" DEFAULT true)',
    )
    rows = [
        {"id": 1, "a": True, "b": False, "n": 1, "d": None},
        {"id": 2, "a": None, "b": False, "n": 1, "d": False},
        {"id": 3, "a": True, "b": None, "n": 1, "d": False},
        {"id": 4, "a": True, "b": True, "n": 0, "d": False},
        {"id": 5, "a": True, "b": True, "n": None, "d": False},
    ]
    with bulkops.connect(pg_url, run_log=False) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("flags", source, on_error="isolate")
    assert report.inserted == 1, report
    named = sorted((r.key, r.column, r.code) for r in report.rejections)
    null = "23502" if given == "dicts" else None
    assert named == [(2, "a", null), (3, "b", null), (4, "n", "23514"), (5, "n", null)]
    assert execute(pg_url, "SELECT id, d FROM flags") == [(1, True)]


# ----------------------------------------------------------- a real schema's shapes

PAGILA = [
    "CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17')",
    "CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155)",
    """CREATE TABLE language (
        language_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name character(20) NOT NULL,
        last_update timestamptz DEFAULT now() NOT NULL)""",
    """CREATE TABLE film (
        film_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        title text NOT NULL,
        description text,
        release_year year,
        language_id integer NOT NULL REFERENCES language,
        rental_duration smallint DEFAULT 3 NOT NULL,
        rental_rate numeric(4,2) DEFAULT 4.99 NOT NULL,
        length smallint,
        replacement_cost numeric(5,2) DEFAULT 19.99 NOT NULL,
        rating mpaa_rating DEFAULT 'G'::mpaa_rating,
        last_update timestamptz DEFAULT now() NOT NULL,
        special_features text[],
        fulltext tsvector NOT NULL,
        title_length integer GENERATED ALWAYS AS (length(title)) STORED)""",
]


def test_pagila_shapes(pg_url: str) -> None:
    execute(pg_url, *PAGILA)
    with bulkops.connect(pg_url) as db:
        # Identity ALWAYS: omitted is normal; a value given is the row's rejection, and
        # so is a NULL given for it (a key given without a value is a missing key).
        assert db.insert("language", [{"name": "English"}, {"name": "Italian"}]).inserted == 2
        report = db.insert(
            "language",
            [{"language_id": None, "name": "Latin"}, {"language_id": 9, "name": "Klingon"}],
            on_error="isolate",
        )
        assert report.inserted == 0 and report.rejected == 2
        missing, given = report.rejections
        assert (missing.row, given.row) == (1, 2)
        assert given.column == "language_id" and "GENERATED ALWAYS" in given.reason
        assert db.insert("language", [{"name": "French"}]).inserted == 1
        languages = db.get_many("language", [1, 2, 3])
        assert [languages[i]["name"] for i in (1, 2, 3)] == [
            "English".ljust(20),
            "Italian".ljust(20),
            "French".ljust(20),
        ]
        assert all(isinstance(row["last_update"], dt.datetime) for row in languages.values())

        films = [
            {
                "film_id": 10,  # identity BY DEFAULT: sent because given
                "title": "ACADEMY DINOSAUR",
                "release_year": 2006,
                "language_id": 1,
                "rating": "PG",
                "special_features": ["Deleted Scenes", "Behind the Scenes"],
                "fulltext": "'academi':1 'dinosaur':2",
            },
            {
                "film_id": 11,
                "title": "TOO OLD",
                "release_year": 1800,  # the year domain's CHECK refuses it
                "language_id": 1,
                "rating": "G",
                "special_features": None,
                "fulltext": "",
            },
            {
                "film_id": 12,
                "title": "BAD RATING",
                "release_year": 2000,
                "language_id": 1,
                "rating": "X",  # no such label
                "special_features": None,
                "fulltext": "",
            },
        ]
        report = db.insert("film", films, on_error="isolate")
        assert report.inserted == 1 and report.rejected == 2
        by_row = {r.row: r for r in report.rejections}
        assert "year_check" in by_row[2].reason
        assert by_row[3].column == "rating"
        # film_id left out: the sequence assigns it.
        ace = {
            "title": "ACE GOLDFINGER",
            "release_year": "2006",
            "language_id": 2,
            "rating": None,
            "special_features": "{Trailers}",
            "fulltext": "ace goldfinger",
        }
        assert db.insert("film", [ace]).inserted == 1
        got = db.get_many("film", [10, 1])
        assert set(got) == {10, 1}
        academy = got[10]
        assert academy["release_year"] == 2006 and academy["rating"] == "PG"
        assert academy["special_features"] == ["Deleted Scenes", "Behind the Scenes"]
        assert academy["fulltext"] == "'academi':1 'dinosaur':2"
        assert academy["title_length"] == len("ACADEMY DINOSAUR")  # generated, readable
        # Omitted columns got their defaults, not NULL.
        assert academy["rental_duration"] == 3
        assert academy["rental_rate"] == Decimal("4.99")
        assert academy["replacement_cost"] == Decimal("19.99")
        # rating given as None for a nullable column: NULL, as given.
        assert got[1]["rating"] is None and got[1]["special_features"] == ["Trailers"]
        assert got[1]["fulltext"] == "'ace' 'goldfinger'"

        # Upsert: change the enum, the array and the tsvector; the generated column
        # follows; a value for the generated column is refused.
        report = db.upsert(
            "film",
            [
                {
                    **films[0],
                    "rating": "NC-17",
                    "special_features": ["Trailers"],
                    "title_length": None,  # None: left to the database
                },
                {**films[0], "film_id": 13, "title": "X", "title_length": 1},
            ],
            on_error="isolate",
        )
        assert report.updated == 1 and report.rejected == 1
        assert report.rejections[0].column == "title_length"
        assert "generated" in report.rejections[0].reason
        academy = db.get_many("film", [10])[10]
        assert academy["rating"] == "NC-17" and academy["special_features"] == ["Trailers"]
        assert db.get_many("film", [10], columns=["rental_rate"])[10] == {
            "rental_rate": Decimal("4.99")
        }

    # Plain SQL: the enum sorts by its declared order, the domain is an integer.
    assert execute(
        pg_url,
        "SELECT rating::text, release_year + 1 FROM film ORDER BY rating NULLS FIRST",
    ) == [(None, 2007), ("NC-17", 2007)]


def test_schema_qualified_mixed_case_and_partitioned(pg_url: str) -> None:
    execute(
        pg_url,
        "CREATE SCHEMA analytics",
        """CREATE TABLE analytics."Events" (
            "EventId" bigint, "Day" date, "Payload" jsonb, "Kind" text DEFAULT 'view',
            PRIMARY KEY ("EventId", "Day")) PARTITION BY RANGE ("Day")""",
        """CREATE TABLE analytics."Events_2024" PARTITION OF analytics."Events"
           FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')""",
        """CREATE TABLE analytics."Events_2025" PARTITION OF analytics."Events"
           FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')""",
        "CREATE TABLE analytics.events (id int PRIMARY KEY, n int)",
    )
    rows = [
        {"EventId": 1, "Day": dt.date(2024, 5, 1), "Payload": {"a": 1}},
        {"EventId": 2, "Day": dt.date(2025, 1, 1), "Payload": None},
    ]
    with bulkops.connect(pg_url) as db:
        assert db.insert("analytics.Events", rows).inserted == 2
        report = db.upsert(
            "analytics.Events",
            [
                {"EventId": 1, "Day": "2024-05-01", "Payload": {"a": 2}},
                {"EventId": 3, "Day": "2025-06-30", "Payload": []},
            ],
            key=("EventId", "Day"),
        )
        assert (report.inserted, report.updated) == (1, 1)
        got = db.get_many("analytics.Events", [(1, dt.date(2024, 5, 1)), (3, dt.date(2025, 6, 30))])
        assert got[(1, dt.date(2024, 5, 1))]["Payload"] == {"a": 2}
        assert got[(1, dt.date(2024, 5, 1))]["Kind"] == "view"  # omitted: its default
        assert got[(3, dt.date(2025, 6, 30))]["Payload"] == []

        report = db.insert("analytics.events", [{"id": 1, "n": 1}, {"id": 2, "n": 2}])
        assert report.inserted == 2
        assert db.upsert("analytics.events", [{"id": 1, "n": 5}]).updated == 1
        assert db.get_many("analytics.events", [1, 2]) == {
            1: {"id": 1, "n": 5},
            2: {"id": 2, "n": 2},
        }
    assert execute(
        pg_url,
        'SELECT tableoid::regclass::text, count(*) FROM analytics."Events" GROUP BY 1 ORDER BY 1',
    ) == [('analytics."Events_2024"', 1), ('analytics."Events_2025"', 2)]


def test_other_types_travel_as_text(pg_url: str) -> None:
    """Types bulkops knows nothing about still load: the server parses their text."""
    execute(
        pg_url,
        """CREATE TABLE misc (id int PRIMARY KEY, box box, range int4range, lsn pg_lsn,
           q tsquery, path path, boxes box[])""",
    )
    row = {
        "id": 1,
        "box": "(1,1),(0,0)",
        "range": "[1,5)",
        "lsn": "16/B374D848",
        "q": "fat & rat",
        "path": "[(0,0),(1,1)]",
        "boxes": ["(1,1),(0,0)"],
    }
    with bulkops.connect(pg_url) as db:
        assert db.insert("misc", [row]).inserted == 1
        assert db.upsert("misc", [row]).unchanged == 1  # box has no equality: as text
        changed = {**row, "box": "(2,2),(1,1)"}  # the same area: box = box says equal
        assert db.upsert("misc", [changed]).updated == 1
        got = db.get_many("misc", [1])[1]
    assert got["box"] == "(2,2),(1,1)" and got["q"] == "'fat' & 'rat'"
    assert got["lsn"] == "16/B374D848" and got["path"] == "[(0,0),(1,1)]"


def test_unconstrained_numeric_keeps_the_digits_as_given(pg_url: str, tmp_path: Any) -> None:
    # numeric without (p, s) keeps each value's own scale (1.50 stays 1.50, 2 stays 2),
    # whichever path writes it: a CSV read by Arrow, the same CSV through the row reader,
    # dicts and a DataFrame. (Arrow's decimal type has one scale per column, so an Arrow
    # batch would have padded every value to the longest: 2 -> 2.000.)
    from click.testing import CliRunner

    from bulkops.cli import main

    pd = pytest.importorskip("pandas")
    # Coordinates as in vega_datasets' la-riots, amounts as in sakila's payment.
    text = ["1.50", "2", "0.125", "34.0592814", "-118.27", "1e2", "007.5", ""]
    expected = ["1.50", "2", "0.125", "34.0592814", "-118.27", "100", "7.5", None]
    csv = tmp_path / "amounts.csv"
    csv.write_text("id,amount\n" + "".join(f"{i},{v}\n" for i, v in enumerate(text)))
    frame = pd.DataFrame({"id": [0, 1, 2], "amount": [1.5, 2.0, 0.125]})
    for table in ("by_arrow", "by_rows", "by_dicts", "by_frame"):
        execute(pg_url, f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric)")
    for table, path in (("by_arrow", str(csv)), ("by_rows", "-")):
        args = ["load", path, "-t", table, "--db", pg_url, "--json"]
        result = CliRunner().invoke(main, args, input=csv.read_text())
        assert result.exit_code == 0, result.output
    with bulkops.connect(pg_url) as db:
        db.insert("by_dicts", [{"id": 0, "amount": 1.5}, {"id": 1, "amount": Decimal("2.0")}])
        db.insert("by_frame", frame)
        assert db.upsert("by_frame", frame).unchanged == 3
    for table in ("by_arrow", "by_rows"):
        got = execute(pg_url, f"SELECT amount::text FROM {table} ORDER BY id")
        assert [v for (v,) in got] == expected, table
    assert execute(pg_url, "SELECT amount::text FROM by_dicts ORDER BY id") == [("1.5",), ("2.0",)]
    got = execute(pg_url, "SELECT amount::text FROM by_frame ORDER BY id")
    assert got == [("1.5",), ("2.0",), ("0.125",)]


def test_arrays_from_dataframes(pg_url: str) -> None:
    # Sakila's film.special_features (text[]) read into pandas and polars and written
    # back: a list column is an array, as lists in dicts are (not Python's repr).
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    execute(
        pg_url,
        "CREATE TABLE film_features (film_id int PRIMARY KEY, special_features text[],"
        " ids int[], tags varchar(20)[])",
    )
    features = [["Deleted Scenes", "Behind the Scenes"], None, ['say "hi"', "back\\slash", None]]
    ids = [[1, 2], [], None]
    tags = [["a,b"], ["{x}"], []]
    rows = [
        {"film_id": i + 1, "special_features": f, "ids": n, "tags": t}
        for i, (f, n, t) in enumerate(zip(features, ids, tags, strict=True))
    ]
    with bulkops.connect(pg_url) as db:
        for frame in (pd.DataFrame(rows), pl.DataFrame(rows)):
            execute(pg_url, "TRUNCATE film_features")
            report = db.insert("film_features", frame)
            assert report.inserted == 3
            got = db.get_many("film_features", [1, 2, 3])
            assert [got[i]["special_features"] for i in (1, 2, 3)] == features
            assert [got[i]["ids"] for i in (1, 2, 3)] == ids
            assert [got[i]["tags"] for i in (1, 2, 3)] == tags
            assert db.upsert("film_features", frame).unchanged == 3


def test_nan_is_missing_in_columns_sent_as_text(pg_url: str) -> None:
    # pandas writes a missing value in an object column as NaN (df.to_dict("records")):
    # NULL in uuid, inet, tsvector and enum columns too, never the text 'NaN' nor a
    # rejected row. (A float array keeps its NaN elements.)
    execute(
        pg_url,
        "CREATE TYPE film_rating AS ENUM ('G', 'PG')",
        "CREATE TABLE nan_text (id int PRIMARY KEY, u uuid, ip inet, doc tsvector,"
        " rating film_rating, tags text[], xs float8[])",
    )
    nan = float("nan")
    rows = [
        {"id": 1, "u": nan, "ip": nan, "doc": nan, "rating": nan, "tags": nan, "xs": [nan, 1.5]},
        {"id": 2, "u": str(uuid.UUID(int=2)), "ip": "10.0.0.1", "doc": "a fat cat",
         "rating": "PG", "tags": ["x"], "xs": None},
    ]  # fmt: skip
    with bulkops.connect(pg_url) as db:
        report = db.insert("nan_text", rows)
        assert (report.inserted, report.rejected) == (2, 0)
        assert db.upsert("nan_text", rows).unchanged == 2
    got = execute(pg_url, "SELECT u, ip, doc, rating, tags, xs::text FROM nan_text ORDER BY id")
    assert got[0] == (None, None, None, None, None, "{NaN,1.5}")


def test_dataframe_read_from_postgresql_writes_back(pg_url: str) -> None:
    # What pandas.read_sql gives for jsonb, inet and uuid columns: object columns of
    # dicts and lists, ipaddress and UUID objects, which Arrow cannot type. Such a
    # frame takes the row path (as df.to_dict("records") would), NaN still missing.
    pd = pytest.importorskip("pandas")
    execute(
        pg_url,
        "CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, ip inet, u uuid, score float8)",
        "CREATE TABLE docs_copy (LIKE docs INCLUDING ALL)",
    )
    rows = [
        {"id": 1, "doc": {"tags": ["a"]}, "ip": "10.0.0.1", "u": str(uuid.UUID(int=1)),
         "score": 1.5},
        {"id": 2, "doc": [1, 2], "ip": "::1", "u": None, "score": None},
        {"id": 3, "doc": None, "ip": None, "u": str(uuid.UUID(int=3)), "score": 2.0},
    ]  # fmt: skip
    with bulkops.connect(pg_url) as db:
        db.insert("docs", rows)
        with psycopg.connect(pg_url) as conn:
            cursor = conn.execute("SELECT * FROM docs ORDER BY id")
            frame = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])
        assert frame["score"].isna().sum() == 1
        report = db.insert("docs_copy", frame)
        assert report.inserted == 3
        assert db.upsert("docs_copy", frame).unchanged == 3
        sync = db.sync("docs", frame.assign(score=[1.5, 3.0, 2.0]), key="id")
        assert (sync.changed, sync.unchanged) == (1, 2)
        db.update("docs", [{"id": 2, "score": None}])
    assert execute(pg_url, "SELECT * FROM docs_copy ORDER BY id") == execute(
        pg_url, "SELECT * FROM docs ORDER BY id"
    )


def test_timestamp_precision_refuses_a_finer_value(pg_url: str, tmp_path: Any) -> None:
    # timestamp(0) / timestamptz(3) round a finer value without a word (binary COPY
    # too), as numeric(p, s) does: bulkops refuses the row instead, on every path (dicts,
    # a CSV through the CLI, Arrow, pandas, upsert), naming the column. Values that fit
    # (and NULL) are stored exactly; before 1970 too.
    from click.testing import CliRunner

    from bulkops.cli import main

    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    execute(pg_url, "CREATE TABLE shifts (id int PRIMARY KEY, at timestamp(0), atz timestamptz(3))")
    fine, finer = dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 1, 12, 0, 0, 500000)
    milli = dt.datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)
    rows = [
        {"id": 1, "at": fine, "atz": milli},
        {"id": 2, "at": finer, "atz": None},
        {"id": 3, "at": None, "atz": milli + dt.timedelta(microseconds=400)},
        {"id": 4, "at": "1960-01-01 00:00:00.25", "atz": None},
        {"id": 5, "at": "1960-01-01 00:00:01", "atz": None},
    ]
    frame = pd.DataFrame(
        {"id": [11, 12], "at": pd.to_datetime(["2024-01-01 00:00:00.5", "2024-01-01 00:00:00.0"])}
    )
    arrow = pa.table(
        {
            "id": [21, 22],
            "atz": pa.array(
                [milli, milli + dt.timedelta(microseconds=1)], pa.timestamp("us", "UTC")
            ),
        }
    )
    csv = tmp_path / "shifts.csv"
    csv.write_text("id,at\n31,2024-01-01 00:00:00\n32,1969-12-31 23:59:59.9\n")
    with bulkops.connect(pg_url) as db:
        got = {}
        for name, source in (("dicts", rows), ("frame", frame), ("arrow", arrow)):
            report = db.insert("shifts", source, on_error="isolate")
            got[name] = sorted((r.key, r.column) for r in report.rejections)
            assert all("would be rounded" in r.reason for r in report.rejections)
        assert got == {
            "dicts": [(2, "at"), (3, "atz"), (4, "at")],
            "frame": [(11, "at")],
            "arrow": [(22, "atz")],
        }
        report = db.upsert("shifts", [{"id": 1, "at": finer}], on_error="isolate")
        assert (report.rejected, report.rejections[0].column) == (1, "at")
        result = CliRunner().invoke(
            main,
            ["load", str(csv), "-t", "shifts", "--db", pg_url, "--json", "--on-error", "isolate"],
        )
        assert '"rejected": 1' in result.output, result.output
    stored = execute(pg_url, "SELECT id, at::text, atz::text FROM shifts ORDER BY id")
    assert stored == [
        (1, "2024-01-01 12:00:00", "2024-01-01 12:00:00.123+00"),
        (5, "1960-01-01 00:00:01", None),
        (12, "2024-01-01 00:00:00", None),
        (21, None, "2024-01-01 12:00:00.123+00"),
        (31, "2024-01-01 00:00:00", None),
    ]


def test_time_precision_refuses_a_finer_value(pg_url: str) -> None:
    # time(0) rounds 12:00:00.5 up to 12:00:01 without a word, as timestamp(0) does; a
    # time column travels as text, so the check reads times given as text too.
    pa = pytest.importorskip("pyarrow")
    execute(pg_url, "CREATE TABLE slots (id int PRIMARY KEY, t time(0), tz time(2) with time zone)")
    rows = [
        {"id": 1, "t": dt.time(12, 0, 0, 500000), "tz": None},
        {"id": 2, "t": "12:00:00.5", "tz": None},
        {"id": 3, "t": "12:00:01", "tz": "12:00:00.25+02"},
        {"id": 4, "t": None, "tz": dt.time(12, 0, 0, 125000, tzinfo=PLUS2)},
    ]
    arrow = pa.table(
        {"id": [11, 12], "t": pa.array([dt.time(1), dt.time(1, 0, 0, 1)], pa.time64("us"))}
    )
    with bulkops.connect(pg_url) as db:
        report = db.insert("slots", rows, on_error="isolate")
        assert sorted((r.key, r.column) for r in report.rejections) == [
            (1, "t"),
            (2, "t"),
            (4, "tz"),
        ]
        assert all("would be rounded" in r.reason for r in report.rejections)
        report = db.insert("slots", arrow, on_error="isolate")
        assert [(r.key, r.column) for r in report.rejections] == [(12, "t")]
    stored = execute(pg_url, "SELECT id, t::text, tz::text FROM slots ORDER BY id")
    assert stored == [(3, "12:00:01", "12:00:00.25+02"), (11, "01:00:00", None)]
