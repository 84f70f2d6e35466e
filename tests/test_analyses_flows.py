"""User flows and the page report agree with the plain-Python reference (sessions on local
days in a non-UTC zone, reloads, app screens, several devices)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from funnelhouse.analyses import SpecError
from funnelhouse.analyses.common import EventSpec, table_columns
from funnelhouse.analyses.flows import FlowsSpec, build_query, run_flows
from funnelhouse.analyses.funnel import Query
from funnelhouse.analyses.pages import PagesSpec, run_pages
from tests.support import analyses_reference as ref
from tests.support.sample import Loaded, loaded_reference
from tests.warehouse_backends import WarehouseMaker

TZ = "Europe/Berlin"
FROM, TO = date(2024, 3, 4), date(2024, 3, 17)
AS_OF = datetime(2024, 9, 1, tzinfo=UTC)


Data = Loaded


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Data]:
    with loaded_reference(tmp_path_factory.mktemp("flows"), make_warehouse, TZ,
                          seed=7, people=220, days=14, start_date=FROM) as loaded:
        yield loaded


def raw_cells(data: Data, spec: FlowsSpec) -> dict[tuple[int, str, str], tuple[int, int]]:
    """The query's own rows (before the top-N grouping), as the reference's cells."""
    query: Query = build_query(spec, table_columns(data.warehouse), AS_OF, FROM, TO)
    rows = data.warehouse.query(query.sql(), query.params.for_query()).dicts()
    return {(int(r["step"]), r["node"], r["next"]): (int(r["sessions"]), int(r["converted"]))
            for r in rows}


@pytest.mark.parametrize("doc", [
    {"start": "/", "steps": 5},
    {"start": "/", "steps": 4, "collapse": False},
    {"end": "/sale", "steps": 4, "conversion": "purchase"},
    {"start": "Home", "steps": 3},                     # app screens
    {"start": "page_view", "nodes": "events", "steps": 6, "conversion": "add_to_cart"},
    {"end": "purchase", "nodes": "events", "steps": 3},
])
def test_flow_cells_match_reference(data: Data, doc: dict) -> None:
    spec = FlowsSpec.from_json(doc)
    expected = ref.flows(data.events, spec, FROM, TO, AS_OF)
    assert expected, "the data do not exercise the flow"
    assert raw_cells(data, spec) == expected


def test_top_nodes_other_exits_and_edges_add_up(data: Data) -> None:
    spec = FlowsSpec(start="/", steps=4, top=3, date_from=FROM, date_to=TO, as_of=AS_OF)
    doc = run_flows(data.warehouse, spec, TZ).to_dict()
    expected = ref.flows(data.events, spec, FROM, TO, AS_OF)
    for step in range(1, 5):
        at_step = [n for n in doc["data"]["nodes"] if n["step"] == step]
        assert len([n for n in at_step if n["node"] != "(other)"]) <= 3
        assert sum(n["sessions"] for n in at_step) == sum(
            v[0] for (s, _, _), v in expected.items() if s == step)
        assert sum(n["exits"] for n in at_step) == sum(
            v[0] for (s, _, nxt), v in expected.items() if s == step and nxt == "(exit)")
        # Sessions leaving a step are those at the next step.
        if step < 4:
            assert sum(e["sessions"] for e in doc["data"]["edges"] if e["step"] == step) == \
                sum(n["sessions"] for n in doc["data"]["nodes"] if n["step"] == step + 1)
    assert doc["summary"]["sessions"] == sum(v[0] for (s, _, _), v in expected.items()
                                             if s == 1)


@pytest.mark.parametrize("doc", [{}, {"start": "/", "end": "/x"}, {"start": "/", "steps": 1},
                                 {"start": "/", "nodes": "pages"}, {"start": "/", "top": 0}])
def test_bad_flow_specs_are_refused(doc: dict) -> None:
    with pytest.raises(SpecError):
        FlowsSpec.from_json(doc)


def test_conversion_is_an_event_spec() -> None:
    spec = FlowsSpec.from_json({"start": "/", "conversion": "purchase:revenue>100"})
    assert spec.conversion == EventSpec.parse("purchase:revenue>100")


def test_page_report_matches_reference(data: Data) -> None:
    doc = run_pages(data.warehouse, PagesSpec(top=1000, date_from=FROM, date_to=TO,
                                              as_of=AS_OF), TZ).to_dict()
    expected = ref.pages(data.events, FROM, TO, AS_OF)
    got = {p["page"]: p for p in doc["data"]["pages"]}
    assert set(got) == set(expected) and len(expected) > 10
    for page, want in expected.items():
        for key in ("views", "sessions", "people", "entrances", "exits"):
            assert got[page][key] == want[key], (page, key)
        for key in ("mean_s_on_page", "median_s_on_page"):
            if want[key] is None:
                assert got[page][key] is None, (page, key)
            else:
                assert got[page][key] == pytest.approx(want[key], abs=0.002), (page, key)
    # Every session has exactly one entrance and one exit.
    assert sum(p["entrances"] for p in got.values()) == sum(p["exits"] for p in got.values())
    top = run_pages(data.warehouse, PagesSpec(top=3, date_from=FROM, date_to=TO, as_of=AS_OF),
                    TZ).to_dict()
    assert [r[0] for r in top["rows"]] == [p["page"] for p in sorted(
        got.values(), key=lambda p: (-p["views"], p["page"]))][:3]
