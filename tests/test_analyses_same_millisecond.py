"""Events of one person in the same millisecond are taken in message_id order by every
analysis that walks a person's or a session's events — pages, paths, flows, retention —
whether the table numbers each event's place in its day (day_event_seq) or was built
before that column existed. The rows are loaded in the opposite order, so an answer that
followed arrival order, or ignored the tie, would differ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from funnelhouse.analyses import run_analysis
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse
from tests.support.sample import blank_row, load_rows
from tests.warehouse_backends import WarehouseMaker

SAME = "2024-03-02 10:00:00.000"
AS_OF = "2024-03-10T00:00:00Z"
DAY = {"date_from": "2024-03-02", "date_to": "2024-03-02", "as_of": AS_OF}


def _view(anon: str, mid: str, page: str, at: str) -> dict:
    row = blank_row()
    row.update(message_id=mid, type="page", event="page_view", anonymous_id=anon,
               timestamp=at, original_timestamp=at, sent_at=at, received_at=at, source="web",
               channel="web", device_type="desktop", properties=orjson.dumps({}).decode(),
               traits="{}", context="{}", page_path=page, session_id="s-" + anon)
    return row


# Person a views /b (a-2) and /a (a-1) in the same millisecond, then /c: by message_id
# the session is /a → /b → /c, though /b arrives first.
ROWS = [_view("a", "a-2", "/b", SAME), _view("a", "a-1", "/a", SAME),
        _view("a", "a-3", "/c", "2024-03-02 10:01:00.000")]


@pytest.fixture(scope="module", params=["current", "before_day_event_seq"])
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              make_warehouse: WarehouseMaker) -> Iterator[Warehouse]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ties"), reporting_tz="UTC")
    wh = make_warehouse(Path(settings.warehouse_dir))
    try:
        load_rows(wh, settings, ROWS)
        if request.param == "before_day_event_seq":
            wh.execute("ALTER TABLE behavior_events DROP COLUMN day_event_seq")
        yield wh
    finally:
        wh.close()


def test_pages_enter_on_the_lower_message_id(warehouse: Warehouse) -> None:
    result = run_analysis("pages", {"top": 10, **DAY}, warehouse)
    pages = {p["page"]: p for p in result.data["pages"]}
    assert (pages["/a"]["entrances"], pages["/b"]["entrances"]) == (1, 0)
    assert (pages["/c"]["exits"], pages["/a"]["exits"], pages["/b"]["exits"]) == (1, 0, 0)


def test_paths_see_the_page_between_its_tied_neighbours(warehouse: Warehouse) -> None:
    result = run_analysis("paths", {"page": "/b", **DAY}, warehouse)
    came = {r["page"] for r in result.data["came_from"]}
    went = {r["page"] for r in result.data["went_to"]}
    assert (came, went) == ({"/a"}, {"/c"})


def test_flows_walk_the_tied_views_in_message_id_order(warehouse: Warehouse) -> None:
    result = run_analysis("flows", {"start": "/a", "steps": 3, **DAY}, warehouse)
    nodes = [(n["step"], n["node"]) for n in result.data["nodes"]]
    assert nodes == [(1, "/a"), (2, "/b"), (3, "/c")]


def test_a_retention_cohort_takes_the_first_event_by_message_id(warehouse: Warehouse) -> None:
    result = run_analysis("retention", {"cohort": "first_seen", "period": "day", "periods": 1,
                                        "breakdown": "page_path", **DAY}, warehouse)
    values = {g["breakdown"] for g in result.data["cohorts"] if g.get("breakdown")}
    assert values == {"/a"}
