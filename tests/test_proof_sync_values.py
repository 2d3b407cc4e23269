"""Sync with values changing to and from NULL, ``columns=`` subsets, json and bytes
columns on PostgreSQL, and ``max_rejects`` (README: the difference is found by
hashing/set-based comparison; ``columns``: what is compared and written).

Each test reads the table back with the database's own driver where it can.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import bulkops
from bulkops.errors import TooManyRejectsError

_names = itertools.count(1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/values.db"
    else:
        yield str(request.getfixturevalue("pg_url"))


def raw(url: str, query: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [tuple(r) for r in conn.execute(query)]
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(query)]


def table_with(db: bulkops.Store, rows: list[dict[str, Any]]) -> str:
    name = f"v_{next(_names)}"
    db.create_table(name, {"id": "integer", "a": "text", "b": "integer"}, key="id")
    db.insert(name, rows)
    return name


def test_values_changing_to_and_from_null_are_changes(sql_url: str) -> None:
    """NULL -> value, value -> NULL and NULL -> NULL: two changes, one unchanged.
    Kills: a comparison with = / <> instead of IS DISTINCT FROM (NULLs never differ),
    or a hash that maps NULL and a value alike."""
    with bulkops.connect(sql_url) as db:
        target = [{"id": 1, "a": None, "b": 1}, {"id": 2, "a": "x", "b": 2},
                  {"id": 3, "a": None, "b": 3}, {"id": 4, "a": "", "b": None}]  # fmt: skip
        t = table_with(db, target)
        source = [{"id": 1, "a": "now set", "b": 1}, {"id": 2, "a": None, "b": 2},
                  {"id": 3, "a": None, "b": 3}, {"id": 4, "a": "", "b": 0}]  # fmt: skip
        report = db.sync(t, source, key="id", list_keys=True)
        assert sorted(report.changed_keys) == [1, 2, 4], report
        assert report.unchanged == 1
        again = db.sync(t, source, key="id")
        assert again.changed == 0 and again.unchanged == 4
    assert raw(sql_url, f"SELECT id, a, b FROM {t} ORDER BY id") == [
        (1, "now set", 1), (2, None, 2), (3, None, 3), (4, "", 0)
    ]  # fmt: skip


def test_empty_text_and_null_are_different(sql_url: str) -> None:
    """'' vs NULL in a text column is a change in both directions."""
    with bulkops.connect(sql_url) as db:
        t = table_with(db, [{"id": 1, "a": "", "b": 1}, {"id": 2, "a": None, "b": 2}])
        report = db.sync(t, [{"id": 1, "a": None, "b": 1}, {"id": 2, "a": "", "b": 2}],
                         key="id", list_keys=True)  # fmt: skip
        assert sorted(report.changed_keys) == [1, 2]
    assert raw(sql_url, f"SELECT id, a FROM {t} ORDER BY id") == [(1, None), (2, "")]


def test_columns_subset_compares_and_writes_only_those(sql_url: str) -> None:
    """columns=["id", "a"]: a difference in b is neither seen nor written, and b keeps
    its value where a is changed. Kills: columns= ignored (b would be compared and
    overwritten or set to NULL)."""
    with bulkops.connect(sql_url) as db:
        t = table_with(db, [{"id": i, "a": f"a{i}", "b": i} for i in range(1, 6)])
        source = [{"id": i, "a": "changed" if i == 2 else f"a{i}", "b": 100 + i}
                  for i in range(1, 6)]  # fmt: skip
        report = db.sync(t, source, key="id", columns=["id", "a"], list_keys=True)
        assert report.changed_keys == [2], report
        assert report.unchanged == 4
    assert raw(sql_url, f"SELECT id, a, b FROM {t} ORDER BY id") == [
        (1, "a1", 1), (2, "changed", 2), (3, "a3", 3), (4, "a4", 4), (5, "a5", 5)
    ]  # fmt: skip


def test_sync_max_rejects_stops(sql_url: str) -> None:
    """max_rejects=2 with five rows that cannot be coerced: TooManyRejectsError; the rows
    of the source that were good are not all written past the stop."""
    with bulkops.connect(sql_url) as db:
        t = table_with(db, [])
        source = [{"id": i, "a": "ok", "b": "not a number" if i % 10 == 0 else i}
                  for i in range(1, 51)]  # fmt: skip
        with pytest.raises(TooManyRejectsError) as caught:
            db.sync(t, source, key="id", on_error="isolate", max_rejects=2)
        error = caught.value
        assert len(error.rejections) >= 3
        assert all(r.column == "b" for r in error.rejections)
        # isolate without a cap: the five are set aside and the rest is written
        report = db.sync(t, source, key="id", on_error="isolate")
        assert report.rejected == 5 and report.added + report.unchanged == 45
    assert raw(sql_url, f"SELECT count(*) FROM {t}") == [(45,)]


@pytest.mark.postgres
def test_json_and_bytes_columns_on_postgres(pg_url: str) -> None:
    """jsonb and bytea columns: a change inside the JSON (also a key order that is not
    a change) and a change of one byte are found; equal values are unchanged. Kills: a
    hash of the JSON text rather than its value, or bytes compared by their repr."""
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE j (id int PRIMARY KEY, doc jsonb, blob bytea)")
        conn.execute(
            "INSERT INTO j VALUES (1, %s, %s), (2, %s, %s), (3, %s, %s), (4, NULL, NULL)",
            (Jsonb({"a": 1, "b": [1, 2]}), b"\x00\x01", Jsonb({"x": "y"}), b"\xff",
             Jsonb([1, {"k": None}]), b""),
        )  # fmt: skip
    source = [
        {"id": 1, "doc": {"b": [1, 2], "a": 1}, "blob": b"\x00\x01"},  # same, other key order
        {"id": 2, "doc": {"x": "z"}, "blob": b"\xff"},  # JSON changed
        {"id": 3, "doc": [1, {"k": None}], "blob": b"\x00"},  # one byte changed
        {"id": 4, "doc": {"new": True}, "blob": b"\x01"},  # from NULL
    ]
    with bulkops.connect(pg_url) as db:
        report = db.sync("j", source, key="id", list_keys=True)
        assert sorted(report.changed_keys) == [2, 3, 4], report
        assert report.unchanged == 1
        assert db.sync("j", source, key="id").changed == 0
    with psycopg.connect(pg_url) as conn:
        got = {r[0]: (r[1], bytes(r[2])) for r in conn.execute("SELECT id, doc, blob FROM j")}
    assert got == {r["id"]: (r["doc"], r["blob"]) for r in source}


@pytest.mark.postgres
def test_money_and_enum_array_columns_on_postgres(pg_url: str) -> None:
    """money (AdventureWorks' and pagila's payment amounts) and an array of an enum
    (pagila's film.special_features shape): the difference is written with the values
    the source gave, not the text the staging table prints ('$12.34', '{a,b}')."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TYPE feature AS ENUM ('Trailers', 'Commentaries')")
        conn.execute("CREATE TABLE pay (id int PRIMARY KEY, amount money, f feature[])")
    source = [
        {"id": 1, "amount": Decimal("12.34"), "f": ["Trailers", "Commentaries"]},
        {"id": 2, "amount": None, "f": None},
        {"id": 3, "amount": Decimal("0.99"), "f": []},
    ]
    with bulkops.connect(pg_url) as db:
        assert db.sync("pay", source, key="id").added == 3
        assert db.sync("pay", source, key="id", list_keys=True).changed == 0
        edited = [dict(source[0], amount=Decimal("13.00")), *source[1:]]
        report = db.sync("pay", edited, key="id", list_keys=True)
        assert (report.changed_keys, report.unchanged) == ([1], 2)
        assert db.get_many("pay", [1, 2, 3]) == {r["id"]: r for r in edited}
