"""Segments saved from analyses hold exactly the people the result counted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.analyses import SpecError, run_analysis
from funnelhouse.analyses.cohorts import funnel_people_sql, save_as_segment
from funnelhouse.api import analyses as analyses_api
from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.people import segments
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.sql_guard import release_limited
from tests.conftest import every_handle_closed
from tests.support.sample import load_rows
from tests.warehouse_backends import WarehouseMaker

TOKEN = "seg-token"
FUNNEL = {"steps": ["page_view", "product_view", "add_to_cart", "purchase"], "window": "2d",
          "date_from": "2024-03-01", "date_to": "2024-03-07", "as_of": "2024-03-08T12:00:00Z"}
PATHS = {"page": "/category/apparel", "date_from": "2024-03-01", "date_to": "2024-03-07",
         "as_of": "2024-04-01T00:00:00Z"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
          ) -> Iterator[tuple[Settings, Warehouse, Warehouse]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cohorts"), admin_token=TOKEN)
    # Every handle opened here is closed at the end, the limited read-only ones that
    # segment SQL runs on included: chdb serves one folder per process.
    with every_handle_closed():
        writer = make_warehouse(settings.warehouse_dir)
        reader = writer.readonly()
        try:
            load_rows(writer, settings, generate(seed=5, people=150, days=7,
                                                 start_date=date(2024, 3, 1)).rows)
            yield settings, writer, reader
        finally:
            release_limited(reader)
            reader.close()
            writer.close()


def members(writer: Warehouse, settings: Settings, segment_id: str) -> int:
    store = segments.Segments(writer, settings)
    try:
        return len(store.members(segment_id))
    finally:
        store.close()   # chdb opens one folder per process: leave no handle behind


def funnel_step(settings: Settings, reader: Warehouse, step: int) -> dict:
    result = run_analysis("funnel", FUNNEL, reader, settings.reporting_tz)
    return result.data["groups"][0]["steps"][step - 1]


@pytest.mark.parametrize("who, figure", [("converted", ("people", 4)),
                                         ("reached:2", ("people", 2)),
                                         ("dropped:3", ("dropped", 3)),
                                         ("in_window:4", ("in_window", 4))])
def test_funnel_people_saved_as_segment_match_the_funnel_counts(setup, who, figure) -> None:
    settings, writer, reader = setup
    column, step = figure
    expected = funnel_step(settings, reader, step)[column]
    saved = save_as_segment("funnel", FUNNEL, who, f"funnel {who}", reader=reader,
                            writer=writer, settings=settings)
    assert saved["members"] == expected
    assert members(writer, settings, saved["segment_id"]) == expected


def test_people_who_left_from_a_page_are_saved(setup) -> None:
    settings, writer, reader = setup
    result = run_analysis("paths", PATHS, reader, settings.reporting_tz)
    assert result.summary["views"] > 0, "the generated shop has category views"
    saved = save_as_segment("paths", PATHS, "exited", "left from apparel", reader=reader,
                            writer=writer, settings=settings)
    viewed = save_as_segment("paths", PATHS, "viewed", "saw apparel", reader=reader,
                             writer=writer, settings=settings)
    assert 0 < saved["members"] <= viewed["members"]
    assert viewed["members"] == result.summary["people"]


def test_unknown_who_is_refused(setup) -> None:
    settings, writer, reader = setup
    with pytest.raises(SpecError):
        save_as_segment("funnel", FUNNEL, "everyone", "x", reader=reader, writer=writer,
                        settings=settings)
    with pytest.raises(SpecError):
        save_as_segment("funnel", FUNNEL, "dropped:9", "x", reader=reader, writer=writer,
                        settings=settings)


def test_save_segment_over_http(setup) -> None:
    settings, writer, reader = setup
    app = Starlette(routes=analyses_api.routes(settings, reader, writer=writer))
    with TestClient(app) as client:
        response = client.post("/v1/analyses/funnel/segment",
                               headers={"Authorization": f"Bearer {TOKEN}"},
                               json={"spec": FUNNEL, "who": "converted", "name": "buyers"})
        assert response.status_code == 200, response.text
        assert response.json()["members"] == funnel_step(settings, reader, 4)["people"]
        live = client.post("/v1/analyses/funnel/segment",
                           headers={"Authorization": f"Bearer {TOKEN}"},
                           json={"spec": FUNNEL, "who": "converted", "name": "buyers live",
                                 "live": True, "last_days": 7})
        assert live.status_code == 200 and live.json()["live"] is True
        refused = client.post("/v1/analyses/funnel/segment", json={"spec": FUNNEL},
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 400


def test_funnel_breaks_down_by_segment_membership(setup) -> None:
    settings, writer, reader = setup
    buyers = save_as_segment("funnel", FUNNEL, "converted", "buyers for breakdown",
                             reader=reader, writer=writer, settings=settings)
    result = run_analysis("funnel", {**FUNNEL, "breakdown": f"segment:{buyers['segment_id']}"},
                          reader, settings.reporting_tz)
    groups = {g["breakdown"]: g["steps"] for g in result.data["groups"]}
    inside, outside = groups[f"in {buyers['segment_id']}"], groups[f"not in {buyers['segment_id']}"]
    converted = result.summary["converted"]
    assert converted == buyers["members"] > 0
    # Everyone in the segment entered and converted; nobody outside converted.
    assert inside[0]["people"] == inside[-1]["people"] == converted
    assert outside[-1]["people"] == 0
    assert inside[0]["people"] + outside[0]["people"] == result.summary["entered"]


def people_of(writer: Warehouse, settings: Settings, segment_id: str) -> set[str]:
    store = segments.Segments(writer, settings)
    try:
        return {m["person_id"] for m in store.members(segment_id)}
    finally:
        store.close()


def dropped_people(reader: Warehouse, spec: dict, step: int) -> set[str]:
    sql, params = funnel_people_sql(reader, spec, f"dropped:{step}")
    return {r[0] for r in reader.query(sql, params).rows}


def test_a_live_segment_is_re_evaluated_from_its_definition(setup) -> None:
    """A "dropped at step 3 in the last 3 days" audience follows the calendar; the same
    result saved frozen keeps the people it had."""
    settings, writer, reader = setup
    rolling = {k: v for k, v in FUNNEL.items() if k not in ("date_from", "date_to", "as_of")}
    live = save_as_segment("funnel", rolling, "dropped:3", "dropped at cart, rolling",
                           reader=reader, writer=writer, settings=settings, live=True,
                           last_days=3)
    assert live["live"] is True
    store = segments.Segments(writer, settings, reader)
    seen = []
    for day in ("2024-03-04", "2024-03-07"):
        as_of = datetime.fromisoformat(f"{day}T23:00:00+00:00")
        store.materialise(live["segment_id"], as_of=as_of)
        start = (as_of.date() - timedelta(days=2)).isoformat()
        expected = dropped_people(reader, {**rolling, "date_from": start, "date_to": day,
                                           "as_of": as_of.isoformat()}, 3)
        assert people_of(writer, settings, live["segment_id"]) == expected
        seen.append(expected)
    assert seen[0] != seen[1] and seen[0] and seen[1]
    # The definition is what is stored, not the people.
    definition = store.get(live["segment_id"]).definition
    assert definition["kind"] == "analysis" and definition["analysis"]["who"] == "dropped:3"
    frozen = save_as_segment("funnel", FUNNEL, "dropped:3", "dropped at cart, frozen",
                             reader=reader, writer=writer, settings=settings)
    before = people_of(writer, settings, frozen["segment_id"])
    store.materialise(frozen["segment_id"])
    assert people_of(writer, settings, frozen["segment_id"]) == before


@pytest.mark.parametrize("analysis", [
    {"name": "retention", "spec": {}, "who": "x"},
    {"name": "funnel", "spec": FUNNEL, "who": "dropped:9"},
    {"name": "funnel", "spec": FUNNEL, "who": "converted", "last_days": 0},
    {"name": "funnel", "spec": {"steps": ["a"]}, "who": "converted"},
])
def test_bad_live_definitions_are_refused(setup, analysis) -> None:
    settings, writer, reader = setup
    with pytest.raises(segments.SegmentError):
        segments.Segments(writer, settings, reader).create({"name": "x", "analysis": analysis})


RETENTION = {"cohort": "first_seen", "period": "day", "periods": 3, "date_from": "2024-03-01",
             "date_to": "2024-03-07", "as_of": "2024-03-06T12:00:00Z"}


def test_retention_people_saved_as_segments_match_the_table(setup) -> None:
    settings, writer, reader = setup
    result = run_analysis("retention", RETENTION, reader, settings.reporting_tz)
    cohorts = [c for c in result.data["cohorts"] if c["breakdown"] is None]
    decided = [c for c in cohorts if c["counts"][1] is not None]
    retained = sum(c["counts"][1] for c in decided)
    sizes = {
        who: save_as_segment("retention", RETENTION, who, f"retention {who}", reader=reader,
                             writer=writer, settings=settings)["members"]
        for who in ("cohort", "retained:1", "not_retained:1")}
    assert sizes["cohort"] == result.summary["people"] > 0
    assert sizes["retained:1"] == retained > 0
    assert sizes["not_retained:1"] == sum(c["size"] for c in decided) - retained > 0


def test_flow_people_saved_as_segments(setup) -> None:
    settings, writer, reader = setup
    spec = {"start": "/", "steps": 3, "date_from": "2024-03-01", "date_to": "2024-03-07",
            "as_of": "2024-04-01T00:00:00Z"}
    viewers = {r[0] for r in reader.query(
        "SELECT DISTINCT person_id FROM behavior_events WHERE type = 'page' "
        "AND page_path = '/' AND session_id != '' "
        "AND event_date BETWEEN '2024-03-01' AND '2024-03-07'").rows}
    at = save_as_segment("flows", spec, "at:1:/", "home viewers", reader=reader,
                         writer=writer, settings=settings)
    assert at["members"] == len(viewers) > 0
    result = run_analysis("flows", spec, reader, settings.reporting_tz)
    second = max((n for n in result.data["nodes"] if n["step"] == 2 and n["exits"]
                  and n["node"] != "(other)"),
                 key=lambda n: n["exits"])
    exited = save_as_segment("flows", spec, f"exited:2:{second['node']}", "left second",
                             reader=reader, writer=writer, settings=settings)
    assert 0 < exited["members"] <= second["exits"]
    with pytest.raises(SpecError):
        save_as_segment("flows", spec, "at:9:/", "x", reader=reader, writer=writer,
                        settings=settings)
