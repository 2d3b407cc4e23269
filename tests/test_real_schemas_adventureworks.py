"""AdventureWorks for PostgreSQL (https://github.com/lorint/AdventureWorks-for-Postgres,
MIT licence): its tables live in schemas of their own (person, production), its
columns are of domains ("Flag" is ``boolean NOT NULL``, "Name" is ``varchar(50)``) and
its codes are ``char(n)`` keys. ``tests/data/adventureworks_excerpt.sql`` holds the
statements used (source and licence in ``tests/data/README.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import bulkops
from conftest import assert_accounted, pg_execute

pytestmark = pytest.mark.postgres

DATA = Path(__file__).parent / "data"


def _adventureworks(pg_url: str) -> None:
    pg_execute(pg_url, (DATA / "adventureworks_excerpt.sql").read_text())


def _state(state_id: int, code: str, flag: bool | None) -> dict[str, Any]:
    return {
        "stateprovinceid": state_id,
        "stateprovincecode": code,
        "countryregioncode": "US",
        "isonlystateprovinceflag": flag,
        "name": f"State {code}",
        "territoryid": 1,
    }


@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert"])
def test_not_null_domain_column_given_none_takes_its_default(
    pg_url: str, verb: str, given: str
) -> None:
    # StateProvince.IsOnlyStateProvinceFlag is of the domain "Flag" (boolean NOT NULL)
    # with DEFAULT (true): a None there means "the default", as for a plain boolean
    # NOT NULL column. Before, the staging table was of the domain too and refused
    # the NULL: every such row was rejected.
    pa = pytest.importorskip("pyarrow")
    _adventureworks(pg_url)
    rows = [_state(1, "AB", None), _state(2, "AK", False), _state(3, "CA", None)]
    with bulkops.connect(pg_url, run_log=False) as db:
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("person.stateprovince", source)
        assert report.inserted == 3, report
    stored = pg_execute(
        pg_url,
        "SELECT stateprovinceid, isonlystateprovinceflag FROM person.stateprovince ORDER BY 1",
    )
    assert stored == [(1, True), (2, False), (3, True)]


@pytest.mark.parametrize("verb", ["diff", "sync"])
def test_missing_rows_of_a_table_with_a_not_null_domain_are_deleted(pg_url: str, verb: str) -> None:
    # A deleted key stands in the difference with NULLs in its other columns, the
    # "Flag" column among them: the difference was kept in a table of the domain,
    # which refused them, and the whole diff or sync stopped (ConstraintError).
    _adventureworks(pg_url)
    rows = [_state(i, code, i % 2 == 0) for i, code in enumerate(("AB", "AK", "CA"), 1)]
    with bulkops.connect(pg_url, run_log=False) as db:
        db.insert("person.stateprovince", rows)
        if verb == "diff":
            report = db.diff("person.stateprovince", rows[:2], delete_missing=True).report
        else:
            report = db.sync("person.stateprovince", rows[:2], delete_missing=True)
        assert (report.added, report.changed, report.deleted, report.unchanged) == (0, 0, 1, 2)
    left = 2 if verb == "sync" else 3
    assert pg_execute(pg_url, "SELECT count(*) FROM person.stateprovince") == [(left,)]


def test_char_keys_that_differ_in_trailing_spaces_are_one_key(pg_url: str) -> None:
    # Culture.CultureID is char(6): PostgreSQL pads "en" to "en    " and compares the
    # two as equal. get_many reads the key back padded; a sync whose source spells
    # it so (or unpadded, after a padded one) is the same row. Compared by digests
    # "en    " was a new key and "en" a missing one, and deleting "en" deleted the
    # row. In one call the two are one key (the last wins), where an Arrow upsert
    # stopped at "ON CONFLICT DO UPDATE command cannot affect row a second time".
    pa = pytest.importorskip("pyarrow")
    _adventureworks(pg_url)
    cultures = [{"cultureid": "en", "name": "English"}, {"cultureid": "fr", "name": "French"}]
    with bulkops.connect(pg_url, run_log=False) as db:
        db.sync("production.culture", cultures, delete_missing=True)
        cultures[1]["name"] = "Français"
        db.sync("production.culture", cultures, delete_missing=True)
        found = db.get_many("production.culture", ["en", "fr"], columns=["cultureid", "name"])
        padded = list(found.values())
        assert [c["cultureid"] for c in padded] == ["en    ", "fr    "]
        report = db.sync("production.culture", padded, delete_missing=True)
        assert (report.added, report.changed, report.deleted, report.unchanged) == (0, 0, 0, 2)
        assert pg_execute(pg_url, "SELECT count(*) FROM production.culture") == [(2,)]
        twice = [{"cultureid": "ar", "name": "Arabic"}, {"cultureid": "ar    ", "name": "Ar"}]
        for source in (twice, pa.Table.from_pylist(twice)):
            report = db.upsert("production.culture", source)
            assert_accounted(report, 2)
            assert report.duplicates == 1, report
        report = db.insert("production.culture", twice, on_conflict="ignore")
        assert (report.ignored, report.duplicates) == (1, 1), report
    stored = pg_execute(pg_url, "SELECT cultureid, name FROM production.culture ORDER BY 1")
    assert stored == [("ar    ", "Ar"), ("en    ", "English"), ("fr    ", "Français")]
