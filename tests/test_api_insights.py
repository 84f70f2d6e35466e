"""Saved insights and dashboards (/v1/insights, /v1/dashboards) on the embedded backend:
what is stored comes back as stored, in order; bad input gets a 4xx naming the reason;
names with HTML or SQL in them are kept as text and never run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import insights as insights_api
from funnelhouse.cli.main import main as cli
from funnelhouse.config import Settings
from funnelhouse.insights.store import ANALYSIS_VIEWS, MAX_NAME, MAX_QUERY, Boards
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate

TOKEN = "insights-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TREND_QUERY = ("series=%5B%7B%22event%22%3A%22*%22%2C%22math%22%3A%22sessions%22%7D%5D"
               "&interval=week&from=2024-03-01&to=2024-03-07")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("insights")


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Iterator[tuple[TestClient, ChdbWarehouse]]:
    settings = Settings(data_dir=data_dir, admin_token=TOKEN)
    warehouse = ChdbWarehouse(settings.warehouse_dir)
    try:
        migrate(warehouse, settings.sql_dir / "migrations")
        app = Starlette(routes=insights_api.routes(settings, warehouse))
        with TestClient(app) as client:
            yield client, warehouse
    finally:
        warehouse.close()


@pytest.fixture
def api(store: tuple[TestClient, ChdbWarehouse]) -> TestClient:
    return store[0]


def insight(api: TestClient, name: str, path: str = "/trends", query: str = TREND_QUERY
            ) -> dict[str, Any]:
    answer = api.post("/v1/insights", headers=AUTH,
                      json={"name": name, "path": path, "query": query})
    assert answer.status_code == 200, answer.text
    return answer.json()["insight"]


def refusal(answer: Any, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    doc = answer.json()
    assert doc["reason"] and doc["error"], doc
    return doc


# -- the token ---------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/insights"), ("POST", "/v1/insights"), ("GET", "/v1/insights/1"),
    ("PUT", "/v1/insights/1"), ("DELETE", "/v1/insights/1"), ("GET", "/v1/dashboards"),
    ("POST", "/v1/dashboards"), ("GET", "/v1/dashboards/1"), ("PUT", "/v1/dashboards/1"),
    ("DELETE", "/v1/dashboards/1")])
def test_every_route_needs_the_admin_token(api: TestClient, method: str, path: str) -> None:
    assert api.request(method, path, json={}).status_code == 401
    wrong = {"Authorization": "Bearer not-it"}
    assert api.request(method, path, json={}, headers=wrong).status_code == 401


# -- insights ----------------------------------------------------------------------------

def test_an_insight_comes_back_as_saved_and_an_update_keeps_what_it_does_not_name(
        api: TestClient) -> None:
    saved = insight(api, "Weekly sessions")
    assert (saved["name"], saved["path"], saved["query"]) == (
        "Weekly sessions", "/trends", TREND_QUERY)
    assert saved["created_at"] == saved["updated_at"]
    assert api.get(f"/v1/insights/{saved['id']}", headers=AUTH).json()["insight"] == saved
    assert saved in api.get("/v1/insights", headers=AUTH).json()["insights"]

    renamed = api.put(f"/v1/insights/{saved['id']}", headers=AUTH,
                      json={"name": "  Sessions per week  "}).json()["insight"]
    assert renamed["name"] == "Sessions per week"          # trimmed
    assert (renamed["path"], renamed["query"]) == ("/trends", TREND_QUERY)
    assert renamed["created_at"] == saved["created_at"]
    assert renamed["updated_at"] >= saved["updated_at"]
    moved = api.put(f"/v1/insights/{saved['id']}", headers=AUTH,
                    json={"path": "/funnels", "query": "?steps=%5B%5D"}).json()["insight"]
    assert (moved["name"], moved["path"], moved["query"]) == (
        "Sessions per week", "/funnels", "steps=%5B%5D")   # the leading '?' is dropped
    listed = [i for i in api.get("/v1/insights", headers=AUTH).json()["insights"]
              if i["id"] == saved["id"]]
    assert listed == [moved]                               # one row: the latest version


def test_every_analysis_view_can_be_saved_and_nothing_else(api: TestClient) -> None:
    for path in ANALYSIS_VIEWS:
        assert insight(api, f"view {path}", path=path, query="")["path"] == path
    wrong: list[Any] = ["/sql", "/people", "/segments", "/dashboards", "/trends/../sql",
                        "https://example.com/", "", None, 5]
    for bad in wrong:
        doc = refusal(api.post("/v1/insights", headers=AUTH,
                               json={"name": "x", "path": bad, "query": ""}))
        assert doc["field"] == "path" and "/funnels" in doc["error"]


@pytest.mark.parametrize("body,field", [
    ({"path": "/trends", "query": ""}, "name"),
    ({"name": "   ", "path": "/trends", "query": ""}, "name"),
    ({"name": 7, "path": "/trends", "query": ""}, "name"),
    ({"name": "x" * (MAX_NAME + 1), "path": "/trends", "query": ""}, "name"),
    ({"name": "tab\tinside", "path": "/trends", "query": ""}, "name"),
    ({"name": "x", "path": "/trends", "query": ["a=1"]}, "query"),
    ({"name": "x", "path": "/trends", "query": "a=" + "1" * MAX_QUERY}, "query"),
    ({"name": "x", "path": "/trends", "query": "a=1#/sql"}, "query"),
    ({"name": "x", "path": "/trends", "query": "a=1 2"}, "query"),
    ({"name": "x", "path": "/trends", "query": "", "sql": "SELECT 1"}, "sql"),
])
def test_bad_insights_are_refused_with_the_field(api: TestClient, body: dict[str, Any],
                                                 field: str) -> None:
    before = len(api.get("/v1/insights", headers=AUTH).json()["insights"])
    doc = refusal(api.post("/v1/insights", headers=AUTH, json=body))
    assert doc["field"] == field, doc
    assert len(api.get("/v1/insights", headers=AUTH).json()["insights"]) == before


def test_a_body_that_is_not_a_json_object_is_refused(api: TestClient) -> None:
    bad = api.post("/v1/insights", headers={**AUTH, "Content-Type": "application/json"},
                   content=b"{not json")
    assert refusal(bad)["reason"] == "malformed_json"
    for content in (b"[1, 2]", b"", b'"name"'):
        refusal(api.post("/v1/insights", headers=AUTH, content=content))
    saved = insight(api, "kept")
    refusal(api.put(f"/v1/insights/{saved['id']}", headers=AUTH, content=b"[]"))
    assert api.get(f"/v1/insights/{saved['id']}", headers=AUTH).json()["insight"] == saved


@pytest.mark.parametrize("ident", ["0", "999999", "abc", "1.5", "-1", "1e3",
                                   "99999999999999999999"])
def test_unknown_ids_are_404(api: TestClient, ident: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        for kind in ("insights", "dashboards"):
            answer = api.request(method, f"/v1/{kind}/{ident}", headers=AUTH,
                                 json={"name": "x"})
            assert refusal(answer, 404)["reason"] == f"unknown_{kind[:-1]}"


def test_html_and_sql_in_names_are_stored_as_text_and_never_run(
        store: tuple[TestClient, ChdbWarehouse]) -> None:
    api, warehouse = store
    names = ["<img src=x onerror=alert(1)><script>alert('x')</script>",
             "x'); DROP TABLE insights; --",
             "{n:String} \\' \" ` ; SELECT * FROM system.tables",
             "émoji 📈 ünïcode"]
    saved = [insight(api, n, query="a=%3Cb%3E&b='%3B") for n in names]
    assert [s["name"] for s in saved] == names
    for s, name in zip(saved, names, strict=True):
        answer = api.get(f"/v1/insights/{s['id']}", headers=AUTH)
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["insight"]["name"] == name
        assert answer.json()["insight"]["query"] == "a=%3Cb%3E&b='%3B"
    # The tables are all there and hold exactly what was sent.
    stored = warehouse.query("SELECT name FROM insights WHERE insight_id IN {ids:Array(UInt64)}",
                             {"ids": "[" + ",".join(str(s["id"]) for s in saved) + "]"})
    assert sorted(r[0] for r in stored.rows) == sorted(names)
    board = api.post("/v1/dashboards", headers=AUTH,
                     json={"name": names[1], "insight_ids": [saved[0]["id"]]}).json()
    assert board["dashboard"]["name"] == names[1]
    assert board["dashboard"]["insights"][0]["name"] == names[0]


# -- dashboards --------------------------------------------------------------------------

def test_a_dashboard_keeps_its_cards_in_order_and_can_reorder_them(api: TestClient) -> None:
    a, b, c = (insight(api, f"card {x}") for x in "abc")
    created = api.post("/v1/dashboards", headers=AUTH,
                       json={"name": "Weekly", "insight_ids": [c["id"], a["id"]]})
    assert created.status_code == 200, created.text
    board = created.json()["dashboard"]
    assert board["insight_ids"] == [c["id"], a["id"]]
    assert [i["name"] for i in board["insights"]] == ["card c", "card a"]
    assert board["insights"][0] == c

    changed = api.put(f"/v1/dashboards/{board['id']}", headers=AUTH,
                      json={"insight_ids": [a["id"], b["id"], c["id"]]}).json()["dashboard"]
    assert changed["insight_ids"] == [a["id"], b["id"], c["id"]]
    assert changed["name"] == "Weekly" and changed["created_at"] == board["created_at"]
    renamed = api.put(f"/v1/dashboards/{board['id']}", headers=AUTH,
                      json={"name": "Weekly review"}).json()["dashboard"]
    assert renamed["insight_ids"] == [a["id"], b["id"], c["id"]]
    listed = [d for d in api.get("/v1/dashboards", headers=AUTH).json()["dashboards"]
              if d["id"] == board["id"]]
    assert [(d["name"], d["insight_ids"]) for d in listed] == [
        ("Weekly review", [a["id"], b["id"], c["id"]])]


def test_deleting_an_insight_takes_it_off_every_dashboard(
        api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    keep, gone = insight(api, "keep"), insight(api, "gone")
    first = api.post("/v1/dashboards", headers=AUTH,
                     json={"name": "one", "insight_ids": [gone["id"], keep["id"]]}).json()
    second = api.post("/v1/dashboards", headers=AUTH,
                      json={"name": "two", "insight_ids": [gone["id"]]}).json()
    other = api.post("/v1/dashboards", headers=AUTH,
                     json={"name": "three", "insight_ids": [keep["id"]]}).json()
    ids = [d["dashboard"]["id"] for d in (first, second, other)]

    deleted = api.delete(f"/v1/insights/{gone['id']}", headers=AUTH).json()
    assert deleted == {"deleted": gone["id"], "dashboards_changed": ids[:2]}
    refusal(api.get(f"/v1/insights/{gone['id']}", headers=AUTH), 404)
    refusal(api.delete(f"/v1/insights/{gone['id']}", headers=AUTH), 404)
    assert gone["id"] not in [i["id"] for i in
                              api.get("/v1/insights", headers=AUTH).json()["insights"]]
    shown = [api.get(f"/v1/dashboards/{i}", headers=AUTH).json()["dashboard"]["insight_ids"]
             for i in ids]
    assert shown == [[keep["id"]], [], [keep["id"]]]
    # A deleted insight cannot be put back on a dashboard, and its id is not reused.
    doc = refusal(api.put(f"/v1/dashboards/{ids[1]}", headers=AUTH,
                          json={"insight_ids": [gone["id"]]}))
    assert (doc["reason"], doc["field"]) == ("unknown_insight", "insight_ids")
    # Ids are drawn at random: the first draw here is the deleted id, which is drawn again.
    draws = iter([gone["id"] - 1, keep["id"] + 41 - 1])
    monkeypatch.setattr("funnelhouse.insights.store.secrets.randbelow", lambda _: next(draws))
    assert insight(api, "newer")["id"] == keep["id"] + 41


def test_a_deleted_dashboard_is_gone(api: TestClient) -> None:
    board = api.post("/v1/dashboards", headers=AUTH, json={"name": "brief"}).json()["dashboard"]
    assert board["insight_ids"] == [] and board["insights"] == []
    assert api.delete(f"/v1/dashboards/{board['id']}", headers=AUTH).json() == {
        "deleted": board["id"]}
    refusal(api.get(f"/v1/dashboards/{board['id']}", headers=AUTH), 404)
    refusal(api.put(f"/v1/dashboards/{board['id']}", headers=AUTH, json={"name": "x"}), 404)
    assert board["id"] not in [d["id"] for d in
                               api.get("/v1/dashboards", headers=AUTH).json()["dashboards"]]


@pytest.mark.parametrize("body,field", [
    ({"insight_ids": []}, "name"),
    ({"name": "", "insight_ids": []}, "name"),
    ({"name": "x", "insight_ids": "1,2"}, "insight_ids"),
    ({"name": "x", "insight_ids": [True]}, "insight_ids"),
    ({"name": "x", "insight_ids": ["1"]}, "insight_ids"),
    ({"name": "x", "insight_ids": [1.0]}, "insight_ids"),
    ({"name": "x", "insight_ids": [999_999]}, "insight_ids"),
    ({"name": "x", "insight_ids": list(range(1, 52))}, "insight_ids"),
    ({"name": "x", "cards": []}, "cards"),
])
def test_bad_dashboards_are_refused_with_the_field(api: TestClient, body: dict[str, Any],
                                                   field: str) -> None:
    before = len(api.get("/v1/dashboards", headers=AUTH).json()["dashboards"])
    doc = refusal(api.post("/v1/dashboards", headers=AUTH, json=body))
    assert doc["field"] == field, doc
    assert len(api.get("/v1/dashboards", headers=AUTH).json()["dashboards"]) == before


def test_an_insight_appears_once_on_a_dashboard(api: TestClient) -> None:
    one = insight(api, "once")
    doc = refusal(api.post("/v1/dashboards", headers=AUTH,
                           json={"name": "twice", "insight_ids": [one["id"], one["id"]]}))
    assert doc["field"] == "insight_ids" and "once" in doc["error"]


# -- the CLI -----------------------------------------------------------------------------

def test_the_cli_lists_what_the_api_saved(api: TestClient, data_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    saved = insight(api, "for the CLI")
    api.post("/v1/dashboards", headers=AUTH, json={"name": "CLI board",
                                                  "insight_ids": [saved["id"]]})
    for kind in ("insights", "dashboards"):
        assert cli([kind, "list", "--data-dir", str(data_dir), "--format", "json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        listed = api.get(f"/v1/{kind}", headers=AUTH).json()[kind]
        assert [{k: v for k, v in row.items() if k != "link"} for row in printed] == listed
    assert cli(["insights", "list", "--data-dir", str(data_dir)]) == 0
    table = capsys.readouterr().out
    assert "for the CLI" in table and f"#/trends?{TREND_QUERY}"[:40] in table


class _MeetBeforeWriting:
    """A warehouse whose inserts wait until both `serve` replicas have reached theirs: the
    moment when two replicas saving at once have each picked an id and written nothing."""

    def __init__(self, warehouse: ChdbWarehouse, barrier: threading.Barrier) -> None:
        self._warehouse = warehouse
        self._barrier = barrier

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._warehouse.query(*args, **kwargs)

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql.startswith("INSERT INTO insights"):
            self._barrier.wait(timeout=30)
        return self._warehouse.execute(sql, *args, **kwargs)


def test_two_replicas_saving_at_once_keep_both_insights(
        store: tuple[TestClient, ChdbWarehouse]) -> None:
    warehouse = store[1]
    barrier = threading.Barrier(2)
    replicas = [Boards(_MeetBeforeWriting(warehouse, barrier)) for _ in range(2)]  # type: ignore[arg-type]
    names = ["replica one's insight", "replica two's insight"]
    with ThreadPoolExecutor(2) as pool:
        saved = list(pool.map(
            lambda pair: pair[0].create_insight({"name": pair[1], "path": "/trends",
                                                 "query": TREND_QUERY}),
            zip(replicas, names, strict=True)))
    assert saved[0]["id"] != saved[1]["id"]
    stored = {i["id"]: i["name"] for i in Boards(warehouse).list_insights()}
    assert [stored.get(s["id"]) for s in saved] == names
