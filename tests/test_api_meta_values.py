"""GET /v1/meta/properties and /v1/meta/values: the console's property and value pickers,
checked against counts taken in Python from the rows of behavior_events, and against
injection attempts in every parameter."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import console as console_api
from funnelhouse.collector.plan import TrackingPlan
from tests.people_support import Built, built_warehouse

AUTH = {"Authorization": "Bearer admintok"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("meta-values") / "data") as b:
        yield b


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    plan = TrackingPlan.load(built.settings.plan_dir)
    app = Starlette(routes=console_api.routes(built.settings, built.warehouse.readonly(), plan))
    with TestClient(app) as client:
        yield client


@pytest.fixture(scope="module")
def events(built: Built) -> list[dict[str, Any]]:
    """Every row of behavior_events, as plain values: the independent side of each check."""
    return built.warehouse.query(
        "SELECT message_id, event, person_id, device_type, product_id, item_product_ids, "
        "browser_name, properties FROM behavior_events").dicts()


def get(api: TestClient, path: str, **params: Any) -> Any:
    response = api.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def expected_values(rows: list[dict[str, Any]], value_of: Any) -> dict[str, tuple[int, int]]:
    """value → (distinct events, distinct people), empty values left out."""
    found: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for row in rows:
        for value in value_of(row):
            if value != "":
                found[value][0].add(row["message_id"])
                found[value][1].add(row["person_id"])
    return {v: (len(m), len(p)) for v, (m, p) in found.items()}


def test_both_endpoints_need_the_admin_token(api: TestClient) -> None:
    for path in ("/v1/meta/properties?event=page_view",
                 "/v1/meta/values?event=page_view&property=device_type"):
        assert api.get(path).status_code == 401
        assert api.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_properties_of_an_event_are_its_set_columns_and_json_keys_with_counts(
        api: TestClient, events: list[dict[str, Any]]) -> None:
    views = [r for r in events if r["event"] == "product_view"]
    answer = get(api, "/v1/meta/properties", event="product_view")
    assert answer["events"] == len(views)
    listed = {p["name"]: p for p in answer["properties"]}
    keys = Counter(k for r in views for k in json.loads(r["properties"] or "{}"))
    assert keys, "product views carry properties"
    for key, count in keys.items():
        assert listed[f"properties.{key}"] == {"name": f"properties.{key}", "kind": "property",
                                                "events": count}
    assert listed["device_type"]["events"] == sum(r["device_type"] != "" for r in views)
    browsers = sum(r["browser_name"] != "" for r in views)
    assert 0 < browsers < len(views), "some product views come from apps"
    assert listed["browser_name"]["events"] == browsers
    # Ids and raw JSON are never offered; order lines only as their product field.
    assert not {"person_id", "message_id", "properties", "item_product_ids"} & set(listed)
    # Most frequent first.
    counts = [p["events"] for p in answer["properties"]]
    assert counts == sorted(counts, reverse=True)


def test_properties_without_an_event_cover_every_event(api: TestClient,
                                                       events: list[dict[str, Any]]) -> None:
    answer = get(api, "/v1/meta/properties")
    assert answer["events"] == len(events)
    listed = {p["name"]: p["events"] for p in answer["properties"]}
    keys = Counter(k for r in events for k in json.loads(r["properties"] or "{}"))
    assert {f"properties.{k}": n for k, n in keys.items()}.items() <= listed.items()


def test_values_of_a_column_match_an_independent_count(api: TestClient,
                                                      events: list[dict[str, Any]]) -> None:
    views = [r for r in events if r["event"] == "page_view"]
    want = expected_values(views, lambda r: [r["device_type"]])
    answer = get(api, "/v1/meta/values", event="page_view", property="device_type")
    got = {v["value"]: (v["events"], v["people"]) for v in answer["values"]}
    assert got == want and len(got) >= 2
    assert [v["events"] for v in answer["values"]] == sorted(
        (v["events"] for v in answer["values"]), reverse=True)


def test_values_of_a_json_key_with_a_search_and_a_limit(api: TestClient,
                                                        events: list[dict[str, Any]]) -> None:
    views = [r for r in events if r["event"] == "product_view"]
    category = lambda r: [str(json.loads(r["properties"] or "{}").get("category", ""))]  # noqa: E731
    want = expected_values(views, category)
    assert len(want) >= 3
    answer = get(api, "/v1/meta/values", event="product_view", property="properties.category")
    assert {v["value"]: (v["events"], v["people"]) for v in answer["values"]} == want
    # q keeps the values containing it, whatever the case.
    some = sorted(want)[0]
    needle = some[1:3].upper()
    searched = get(api, "/v1/meta/values", event="product_view",
                   property="properties.category", q=needle)
    assert {v["value"] for v in searched["values"]} == {v for v in want
                                                        if needle.lower() in v.lower()}
    top = get(api, "/v1/meta/values", event="product_view", property="properties.category",
              limit=2)
    ranked = sorted(want.items(), key=lambda kv: (-kv[1][0], kv[0]))[:2]
    assert [(v["value"], v["events"]) for v in top["values"]] == [(k, n[0]) for k, n in ranked]


def test_a_product_field_lists_each_order_line_apart(api: TestClient,
                                                     events: list[dict[str, Any]]) -> None:
    orders = [r for r in events if r["event"] == "purchase"]
    assert any(len(r["item_product_ids"]) > 1 for r in orders), "some orders have two lines"
    want = expected_values(orders, lambda r: r["item_product_ids"] or [r["product_id"]])
    answer = get(api, "/v1/meta/values", event="purchase", property="product_id",
                 limit=500)
    assert {v["value"]: (v["events"], v["people"]) for v in answer["values"]} == want


@pytest.mark.parametrize("params", [
    {"event": "page_view"},                                        # no property
    {"event": "page_view", "property": "nope_column"},             # not a column
    {"event": "page_view", "property": "device_type; DROP TABLE behavior_events"},
    {"event": "page_view", "property": "device_type) OR (1=1"},
    {"event": "page_view", "property": "person_id"},               # an id: not offered
    {"event": "page_view", "property": "properties."},             # an empty key
    {"event": "page_view", "property": "device_type", "limit": "0"},
    {"event": "page_view", "property": "device_type", "limit": "1; DROP"},
    {"event": "page_view", "property": "device_type", "limit": "9999"},
    {"event": "page_view", "property": "device_type", "q": "x" * 201},
    {"event": "page\x00view", "property": "device_type"},
])
def test_bad_parameters_get_a_400(api: TestClient, params: dict[str, str]) -> None:
    response = api.get("/v1/meta/values", params=params, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "bad_spec" and response.json()["error"]


@pytest.mark.parametrize("hostile", [
    "page_view' OR '1'='1", "page_view'; DROP TABLE behavior_events; --", "{event:String}",
    "x') UNION SELECT name, 1, 1 FROM system.tables --", "\\' OR 1=1 --"])
def test_injection_in_event_key_and_q_is_inert(api: TestClient, built: Built,
                                               hostile: str) -> None:
    before = built.warehouse.query("SELECT count() FROM behavior_events").scalar()
    # A hostile event name is a name no event has: nothing is found.
    assert get(api, "/v1/meta/values", event=hostile, property="device_type")["values"] == []
    assert get(api, "/v1/meta/properties", event=hostile)["events"] == 0
    # As a JSON key or a search text it is a value compared with, never SQL.
    assert get(api, "/v1/meta/values", event="page_view",
               property=f"properties.{hostile}")["values"] == []
    assert get(api, "/v1/meta/values", event="page_view", property="device_type",
               q=hostile)["values"] == []
    assert built.warehouse.query("SELECT count() FROM behavior_events").scalar() == before
