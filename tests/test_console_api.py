"""The web console's backend: static files, plan, campaigns, segment preview, people
search and meta, checked against counts taken independently from the warehouse."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import analyses as analyses_api
from funnelhouse.api import console as console_api
from funnelhouse.api import people as people_api
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Settings, WriteKey
from funnelhouse.people.segments import SEGMENT_TABLES
from tests.people_support import Built, built_warehouse

AUTH = {"Authorization": "Bearer admintok"}
KEYS = (WriteKey("wk_a", "shop-web", "browser"), WriteKey("sk_b", "shop-server", "server"))
# Everyone who put something in a cart: a definition the console builds.
CARTS = {"name": "carts", "containers": [{"groups": [{
    "table": "behavior_events",
    "filters": [{"column": "event", "op": "=", "value": "add_to_cart"}]}]}]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("console") / "data") as b:
        yield b


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    settings = built.settings.replace(write_keys=KEYS)
    plan = TrackingPlan.load(settings.plan_dir)
    reader = built.warehouse.readonly()
    app = Starlette(routes=[*console_api.routes(settings, reader, plan),
                            *people_api.routes(settings, built.warehouse),
                            *analyses_api.routes(settings, reader)])
    with TestClient(app) as client:
        yield client


def rows(built: Built, sql: str, params: dict | None = None) -> list[dict]:
    return built.warehouse.query(sql, params).dicts()


# -- auth and bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/plan"), ("GET", "/v1/plan/coverage"), ("GET", "/v1/campaigns"),
    ("POST", "/v1/segments/preview"), ("GET", "/v1/people/search?q=u-1"), ("GET", "/v1/meta")])
def test_every_console_endpoint_needs_the_admin_token(api: TestClient, method: str,
                                                      path: str) -> None:
    assert api.request(method, path, json=CARTS).status_code == 401
    wrong = api.request(method, path, json=CARTS, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["reason"] == "unauthorized"


@pytest.mark.parametrize("path", [
    "/v1/campaigns?sort=nope", "/v1/campaigns?sort=revenue;DROP", "/v1/campaigns?touch=middle",
    "/v1/campaigns?date_from=yesterday", "/v1/campaigns?date_from=2024-03-10&date_to=2024-03-01",
    "/v1/campaigns?desc=maybe", "/v1/campaigns?trend_campaigns=-1",
    "/v1/people/search", "/v1/people/search?q=", "/v1/people/search?q=%20x%20",
    "/v1/people/search?q=u-1&limit=0", "/v1/people/search?q=u-1&limit=abc",
    "/v1/people/search?q=" + "x" * 257,
    "/v1/plan/coverage?days=0", "/v1/plan/coverage?days=many"])
def test_bad_parameters_get_a_400_with_a_reason(api: TestClient, path: str) -> None:
    response = api.get(path, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "bad_spec" and response.json()["error"]


# -- plan ------------------------------------------------------------------------------------

def test_plan_lists_every_planned_event_with_its_properties_and_the_sources(
        api: TestClient, built: Built) -> None:
    doc = api.get("/v1/plan", headers=AUTH).json()
    events_dir = built.settings.plan_dir / "events"
    assert [e["name"] for e in doc["events"]] == sorted(p.name for p in events_dir.iterdir())
    purchase = next(e for e in doc["events"] if e["name"] == "purchase")
    schema = json.loads((events_dir / "purchase" / "1-0-0.json").read_text())
    assert purchase["version"] == "1-0-0" and purchase["description"] == schema["description"]
    by_name = {p["name"]: p for p in purchase["properties"]}
    assert list(by_name) == list(schema["properties"])
    assert {n for n, p in by_name.items() if p["required"]} == set(schema["required"])
    assert by_name["revenue"]["type"] == "number" and by_name["items"]["type"] == "array"
    identify = next(e for e in doc["events"] if e["name"] == "identify")
    assert identify["payload"] == "traits"
    assert doc["sources"] == ["shop-server", "shop-web"]


# -- campaigns -------------------------------------------------------------------------------

def test_campaign_rows_are_sums_of_the_days_with_ratios_from_the_sums(api: TestClient,
                                                                      built: Built) -> None:
    doc = api.get("/v1/campaigns?date_from=2024-03-01&date_to=2024-03-10&touch=first",
                  headers=AUTH).json()
    assert doc["attribution_model"] == "first_touch" and doc["sql"] and doc["params"]
    days = rows(built, "SELECT source, medium, campaign, sessions, converting_sessions, orders, "
                       "toString(revenue) AS revenue, conversion_rate FROM campaign_performance "
                       "WHERE attribution_model = 'first_touch' "
                       "AND performance_date BETWEEN '2024-03-01' AND '2024-03-10'")
    expected: dict[tuple, dict] = defaultdict(lambda: defaultdict(Decimal))
    for day in days:
        sums = expected[(day["source"], day["medium"], day["campaign"])]
        for name in ("sessions", "converting_sessions", "orders", "revenue"):
            sums[name] += Decimal(str(day[name]))
    assert len(doc["rows"]) == len(expected) > 3
    for row in doc["rows"]:
        sums = expected[(row["source"], row["medium"], row["campaign"])]
        assert row["sessions"] == sums["sessions"] and row["orders"] == sums["orders"]
        assert Decimal(str(row["revenue"])) == sums["revenue"]
        assert row["conversion_rate"] == pytest.approx(
            float(sums["converting_sessions"] / sums["sessions"]))
        if row["orders"]:
            assert row["average_order_value"] == pytest.approx(
                float(sums["revenue"] / sums["orders"]))
    # Ratios come from sums: with uneven days, the mean of daily rates differs.
    per_campaign_days = defaultdict(list)
    for day in days:
        per_campaign_days[(day["source"], day["medium"], day["campaign"])].append(day)
    assert any(abs(sum(d["conversion_rate"] for d in ds) / len(ds) - float(
        expected[k]["converting_sessions"] / expected[k]["sessions"])) > 1e-6
        for k, ds in per_campaign_days.items())
    # Every session of the range is credited once under each model.
    sessions = rows(built, "SELECT count() AS n, sum(orders) AS orders FROM sessions WHERE "
                           "session_date BETWEEN '2024-03-01' AND '2024-03-10'")[0]
    assert doc["totals"]["sessions"] == int(sessions["n"])
    assert doc["totals"]["orders"] == int(sessions["orders"])


def test_last_touch_orders_match_the_orders_table(api: TestClient, built: Built) -> None:
    doc = api.get("/v1/campaigns?date_from=2024-03-01&date_to=2024-03-14&touch=last"
                  "&trend_campaigns=0", headers=AUTH).json()
    assert doc["attribution_model"] == "last_touch" and doc["trend"] == []
    orders = rows(built, """
        SELECT if(last_touch_medium IN ('', 'direct'), '(direct)', last_touch_source) AS source,
               if(last_touch_medium IN ('', 'direct'), '', last_touch_campaign) AS campaign,
               count() AS orders, toString(sum(revenue)) AS revenue
        FROM orders WHERE order_date BETWEEN '2024-03-01' AND '2024-03-14'
        GROUP BY source, campaign""")
    by_campaign: dict[tuple, list] = defaultdict(lambda: [0, Decimal(0)])
    for row in doc["rows"]:
        by_campaign[(row["source"], row["campaign"])][0] += row["orders"]
        by_campaign[(row["source"], row["campaign"])][1] += Decimal(str(row["revenue"]))
    got = {k: v for k, v in by_campaign.items() if v[0]}
    assert got == {(o["source"], o["campaign"]): [int(o["orders"]), Decimal(o["revenue"])]
                   for o in orders}


def test_campaigns_sort_and_trend_of_the_top_rows(api: TestClient) -> None:
    base = "/v1/campaigns?date_from=2024-03-01&date_to=2024-03-14&touch=first"
    ascending = api.get(base + "&sort=revenue&desc=false&trend_campaigns=2",
                        headers=AUTH).json()
    revenues = [row["revenue"] for row in ascending["rows"]]
    assert revenues == sorted(revenues)
    descending = api.get(base + "&sort=campaign&desc=true", headers=AUTH).json()
    names = [row["campaign"] for row in descending["rows"]]
    assert names == sorted(names, reverse=True)
    top = {(r["source"], r["medium"], r["campaign"]) for r in ascending["rows"][:2]}
    assert {(t["source"], t["medium"], t["campaign"]) for t in ascending["trend"]} == top
    for key in top:
        row = next(r for r in ascending["rows"] if (r["source"], r["medium"], r["campaign"]) == key)
        days = [t for t in ascending["trend"] if (t["source"], t["medium"], t["campaign"]) == key]
        assert sum(t["sessions"] for t in days) == row["sessions"]
        assert sum(t["product_views"] for t in days) == row["product_views"]
    # A trend row carries every numeric column of the table, for any chart metric.
    numeric = {c["name"] for c in ascending["columns"] if c["type"] != "string"}
    assert all(numeric <= set(t) for t in ascending["trend"])
    assert [c["name"] for c in ascending["columns"]][:3] == ["source", "medium", "campaign"]


# -- segment preview -------------------------------------------------------------------------

def test_preview_count_equals_the_materialised_segment(api: TestClient, built: Built) -> None:
    preview = api.post("/v1/segments/preview", json=CARTS, headers=AUTH)
    assert preview.status_code == 200, preview.text
    members = preview.json()["members"]
    independent = rows(built, "SELECT uniqExact(person_id) AS n FROM behavior_events "
                              "WHERE event = 'add_to_cart'")[0]["n"]
    assert members == int(independent) > 0
    saved = api.post("/v1/segments", json={**CARTS, "segment_id": "console-carts"},
                     headers=AUTH).json()
    assert saved["materialisation"]["members"] == members
    listed = api.get("/v1/segments/console-carts/members?limit=100000", headers=AUTH).json()
    assert len(listed["members"]) == members
    assert set(preview.json()["sample"]) <= {m["person_id"] for m in listed["members"]}
    # Nothing was saved by the preview itself: only the one segment exists.
    ids = [s["segment_id"] for s in api.get("/v1/segments", headers=AUTH).json()["segments"]]
    assert ids.count("console-carts") == 1 and "preview" not in ids


def test_preview_of_sql_and_people_definitions(api: TestClient, built: Built) -> None:
    sql = api.post("/v1/segments/preview", headers=AUTH, json={
        "sql": "SELECT person_id FROM orders WHERE revenue > {min:Decimal(18,2)}",
        "params": {"min": 200000}}).json()
    expected = rows(built, "SELECT uniqExact(person_id) AS n FROM orders WHERE revenue > 200000")
    assert sql["members"] == int(expected[0]["n"]) > 0
    person = rows(built, "SELECT person_id, anonymous_ids FROM users "
                         "WHERE length(anonymous_ids) >= 2 ORDER BY person_id LIMIT 1")[0]
    # Two devices and the user id of one person are one member.
    people = api.post("/v1/segments/preview", headers=AUTH, json={
        "people": [*person["anonymous_ids"][:2], person["person_id"]]}).json()
    assert people["members"] == 1 and people["sample"] == [person["person_id"]]


def test_preview_of_a_bad_definition_names_the_path(api: TestClient) -> None:
    unknown = api.post("/v1/segments/preview", headers=AUTH, json={"containers": [{"groups": [
        {"table": "behavior_events", "filters": [{"column": "nope", "op": "=", "value": 1}]}]}]})
    assert unknown.status_code == 400
    assert unknown.json()["path"].startswith("$.containers[0].groups[0].filters[0]")
    writes = api.post("/v1/segments/preview", headers=AUTH,
                      json={"sql": "INSERT INTO users (person_id) VALUES ('x')"})
    assert writes.status_code == 400 and writes.json()["path"] == "$.sql"
    empty = api.post("/v1/segments/preview", headers=AUTH, content=b"")
    assert empty.status_code == 400
    separator = api.post("/v1/segments/preview", headers=AUTH, json={"people": ["a\x1fb"]})
    assert separator.status_code == 400 and separator.json()["path"] == "$.people"


# -- people search ---------------------------------------------------------------------------

def test_search_finds_a_person_by_any_id_exact_first(api: TestClient, built: Built) -> None:
    person = rows(built, "SELECT person_id, anonymous_ids, user_ids, events, "
                         "toString(first_seen_at) AS first_seen FROM users "
                         "WHERE length(anonymous_ids) >= 2 AND length(user_ids) >= 1 "
                         "ORDER BY person_id LIMIT 1")[0]
    for any_id in (person["anonymous_ids"][1], person["user_ids"][0], person["person_id"]):
        doc = api.get(f"/v1/people/search?q={any_id}", headers=AUTH).json()
        first = doc["people"][0]
        assert first["person_id"] == person["person_id"] and first["match"] == "exact"
        assert first["anonymous_ids"] == person["anonymous_ids"]
        assert first["events"] == int(person["events"])
        assert first["first_seen"] == person["first_seen"].replace(" ", "T") + "Z"
    prefix = person["anonymous_ids"][0][:3]
    doc = api.get(f"/v1/people/search?q={prefix}&limit=200", headers=AUTH).json()
    expected = rows(built, "SELECT DISTINCT person_id FROM identity_map "
                           "WHERE startsWith(id, {p:String})", {"p": prefix})
    assert sorted(p["person_id"] for p in doc["people"]) == sorted(
        r["person_id"] for r in expected)
    assert all(any(i.startswith(prefix) for i in p["matched_ids"]) for p in doc["people"])
    limited = api.get(f"/v1/people/search?q={prefix}&limit=1", headers=AUTH).json()
    assert len(limited["people"]) == 1
    nobody = api.get("/v1/people/search?q=no-such-person-anywhere", headers=AUTH).json()
    assert nobody["people"] == []


def test_search_lists_exact_matches_before_prefix_matches(api: TestClient, built: Built) -> None:
    ids = rows(built, "SELECT id, person_id FROM identity_map ORDER BY id")
    # A user id that is also the start of other people's ids (u-5-1 → u-5-10, u-5-11 …).
    exact = next(i["id"] for i in ids if any(
        j["id"].startswith(i["id"]) and j["person_id"] != i["person_id"] for j in ids))
    doc = api.get(f"/v1/people/search?q={exact}&limit=200", headers=AUTH).json()
    matches = [p["match"] for p in doc["people"]]
    assert matches[0] == "exact" and len(matches) >= 2
    assert matches == ["exact"] + ["prefix"] * (len(matches) - 1)
    owner = next(i["person_id"] for i in ids if i["id"] == exact)
    assert doc["people"][0]["person_id"] == owner


# -- meta ------------------------------------------------------------------------------------

def test_meta_counts_events_and_offers_breakdowns_the_funnel_accepts(api: TestClient,
                                                                     built: Built) -> None:
    doc = api.get("/v1/meta", headers=AUTH).json()
    counts = {r["event"]: int(r["n"]) for r in rows(
        built, "SELECT event, count() AS n FROM behavior_events GROUP BY event")}
    assert {e["name"]: e["count"] for e in doc["events"]} == counts
    assert [e["count"] for e in doc["events"]] == sorted(counts.values(), reverse=True)
    span = rows(built, "SELECT toString(min(event_date)) AS lo, toString(max(event_date)) AS hi "
                       "FROM behavior_events")[0]
    assert doc["date_range"] == {"min": span["lo"], "max": span["hi"]}
    assert doc["reporting_tz"] == "Asia/Seoul" and doc["events_table"] == "behavior_events"
    assert "shop-web" in doc["sources"]
    assert "utm_campaign" in doc["breakdowns"] and "person_id" not in doc["breakdowns"]
    assert any(b.startswith("properties.") for b in doc["breakdowns"])
    pages = {r["page_path"]: int(r["n"]) for r in rows(
        built, "SELECT page_path, count() AS n FROM behavior_events WHERE event IN "
               "('page_view', 'screen_view') AND page_path != '' GROUP BY page_path")}
    assert {p["page"]: p["views"] for p in doc["pages"]} == pages and pages
    assert [p["views"] for p in doc["pages"]] == sorted(pages.values(), reverse=True)
    assert list(doc["segment_tables"]) == list(SEGMENT_TABLES)
    users = [c["name"] for c in doc["segment_tables"]["users"]]
    assert users == [r["name"] for r in rows(
        built, "SELECT name FROM system.columns WHERE database = currentDatabase() "
               "AND table = 'users' ORDER BY position")] and "revenue" in users
    for breakdown in ("channel", next(b for b in doc["breakdowns"]
                                      if b.startswith("properties."))):
        funnel = api.post("/v1/analyses/funnel", headers=AUTH, json={
            "steps": ["page_view", "purchase"], "breakdown": breakdown,
            "date_from": span["lo"], "date_to": span["hi"]})
        assert funnel.status_code == 200, funnel.text


# -- static console --------------------------------------------------------------------------

def console_client(folder: Path) -> TestClient:
    settings = Settings(console_dir=folder, admin_token="admintok")
    return TestClient(Starlette(routes=console_api.console_routes(settings)))


def test_console_serves_the_built_app_without_a_token(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>funnelhouse</title>")
    (tmp_path / "assets" / "app-1a2b.js").write_text("console.log('hi')")
    client = console_client(tmp_path)
    redirect = client.get("/console", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == "/console/"
    index = client.get("/console/")
    assert index.status_code == 200 and "<title>funnelhouse</title>" in index.text
    assert index.headers["cache-control"] == "no-cache"
    assert index.headers["x-frame-options"] == "DENY"
    script = client.get("/console/assets/app-1a2b.js")
    assert script.status_code == 200 and script.text == "console.log('hi')"
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    revalidated = client.get("/console/assets/app-1a2b.js",
                             headers={"If-None-Match": script.headers["etag"]})
    assert revalidated.status_code == 304
    # The app's own routes get the app; a missing asset is a 404.
    route = client.get("/console/funnels/new")
    assert route.status_code == 200 and route.text == index.text
    assert route.headers["cache-control"] == "no-cache"
    assert client.get("/console/assets/missing.js").status_code == 404
    assert client.get("/console/../pyproject.toml").status_code == 404


def test_console_not_built_says_how_to_build_it(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):   # no folder; a folder without index.html
        response = console_client(folder).get("/console/")
        assert response.status_code == 503
        assert "npm --prefix console ci && npm --prefix console run build" in \
            html.unescape(response.text)
        assert response.headers["content-type"].startswith("text/html")
