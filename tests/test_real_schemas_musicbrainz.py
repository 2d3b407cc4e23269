"""MusicBrainz Server (https://github.com/metabrainz/musicbrainz-server, GPL-2.0-or-later):
its triggers check rows beyond what its constraints say and refuse a bad one with
RAISE EXCEPTION. ``tests/data/musicbrainz_area_attribute.sql`` holds the statements
used (source and licence in ``tests/data/README.md``)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import bulkops
from conftest import assert_accounted, pg_execute

pytestmark = pytest.mark.postgres

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("given", ["dicts", "arrow"])
@pytest.mark.parametrize("verb", ["insert", "upsert", "update"])
def test_row_refused_by_a_trigger_is_rejected_not_the_call(
    pg_url: str, verb: str, given: str
) -> None:
    # area_attribute's BEFORE INSERT OR UPDATE trigger raises "This attribute type
    # can not contain free text" for text under a type without free_text. That is
    # the row's refusal: rejected with the trigger's message and the function that
    # raised it, the other rows written. Before, the whole call stopped, nothing
    # written, even with on_error="isolate".
    pa = pytest.importorskip("pyarrow")
    pg_execute(pg_url, (DATA / "musicbrainz_area_attribute.sql").read_text())
    with bulkops.connect(pg_url, run_log=False) as db:
        db.insert(
            "area_attribute_type",
            [
                {"id": 1, "name": "ISO 3166-1", "free_text": True, "gid": uuid.uuid4()},
                {"id": 2, "name": "Kind", "free_text": False, "gid": uuid.uuid4()},
            ],
        )
        rows: list[dict[str, Any]] = [
            {"id": i, "area": 7, "area_attribute_type": 1, "area_attribute_text": text}
            for i, text in enumerate(("DE", "FR", "IT"), 1)
        ]
        if verb == "update":
            db.insert("area_attribute", rows)
        rows[1]["area_attribute_type"] = 2
        source = rows if given == "dicts" else pa.Table.from_pylist(rows)
        report = getattr(db, verb)("area_attribute", source, on_error="isolate")
    assert_accounted(report, 3)
    # (An update of rows 1 and 3 finds them as given: unchanged.)
    assert (report.unchanged if verb == "update" else report.inserted) == 2, report
    [rejection] = report.rejections
    assert (rejection.row, rejection.key, rejection.code) == (2, 2, "P0001")
    assert rejection.reason == (
        "This attribute type can not contain free text "
        "(PL/pgSQL function ensure_area_attribute_type_allows_text() line 11 at RAISE)"
    )
    stored = pg_execute(pg_url, "SELECT id, area_attribute_type FROM area_attribute ORDER BY 1")
    assert stored == ([(1, 1), (3, 1)] if verb != "update" else [(1, 1), (2, 1), (3, 1)])
