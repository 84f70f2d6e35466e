"""The analyses over HTTP (admin token) and from the CLI, on the folder or through a running up."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import analyses as analyses_api
from funnelhouse.cli import analyses as cli_analyses
from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.server import instance
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.support.sample import load_rows

TOKEN = "analyst-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUNNEL = {"steps": ["page_view", "product_view", "purchase"], "window": "2d",
          "breakdown": "channel", "date_from": "2024-03-01", "date_to": "2024-03-07",
          "as_of": "2024-04-01T00:00:00Z"}


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, ChdbWarehouse, str]]:
    root = tmp_path_factory.mktemp("api")
    settings = Settings(data_dir=root, admin_token=TOKEN, reporting_tz="UTC")
    generated = generate(seed=2, people=80, days=7, start_date=date(2024, 3, 1))
    warehouse = ChdbWarehouse(settings.warehouse_dir)
    try:
        load_rows(warehouse, settings, generated.rows)
        person = warehouse.query("SELECT person_id FROM behavior_events WHERE user_id != '' "
                                 "ORDER BY person_id LIMIT 1").scalar()
        yield settings, warehouse, person
    finally:
        warehouse.close()


@pytest.fixture(scope="module")
def client(setup) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings, warehouse, _ = setup
    with TestClient(Starlette(routes=analyses_api.routes(settings, warehouse))) as test_client:
        yield test_client


def test_funnel_over_http_returns_result_and_sql(client: TestClient) -> None:
    response = client.post("/v1/analyses/funnel", json=FUNNEL, headers=AUTH)
    assert response.status_code == 200
    doc = response.json()
    assert doc["analysis"] == "funnel" and doc["summary"]["entered"] > 0
    # A plain funnel (loose, all steps required) searches step by step, no fold.
    assert "arrayFirstIndex" in doc["sql"] and doc["params"]["step_1_event"] == "page_view"
    assert doc["columns"][0] == "breakdown"


def test_every_analysis_route_answers(client: TestClient, setup) -> None:  # type: ignore[no-untyped-def]
    _, _, person = setup
    retention = client.post("/v1/analyses/retention", headers=AUTH,
                            json={"period": "day", "periods": 5, "as_of": "2024-04-01"})
    assert retention.status_code == 200 and retention.json()["data"]["cohorts"]
    paths = client.post("/v1/analyses/paths", json={"page": "/sale"}, headers=AUTH)
    assert paths.status_code == 200 and paths.json()["summary"]["views"] > 0
    timeline = client.get(f"/v1/timeline/{person}?limit=3", headers=AUTH)
    assert timeline.status_code == 200 and len(timeline.json()["rows"]) == 3
    trends = client.post("/v1/analyses/trends", headers=AUTH, json={
        "series": ["page_view|people", "purchase|sum:revenue"], "interval": "week",
        "as_of": "2024-04-01"})
    assert trends.status_code == 200, trends.text
    assert trends.json()["summary"]["purchase · sum(revenue)"] > 0
    assert "uniqExactIf(person_id, hit_0)" in trends.json()["sql"]
    sticky = client.post("/v1/analyses/stickiness", headers=AUTH,
                         json={"period": "week", "as_of": "2024-04-01"})
    assert sticky.status_code == 200 and sticky.json()["summary"]["dau_mau_pct"] > 0
    flows = client.post("/v1/analyses/flows", headers=AUTH,
                        json={"start": "/", "steps": 3, "as_of": "2024-04-01"})
    assert flows.status_code == 200 and flows.json()["data"]["edges"]
    pages = client.post("/v1/analyses/pages", headers=AUTH, json={"top": 5})
    assert pages.status_code == 200 and len(pages.json()["rows"]) == 5
    correlation = client.post("/v1/analyses/correlation", headers=AUTH, json={
        "funnel": {"steps": ["product_view", "purchase"], "as_of": "2024-04-01"},
        "properties": ["channel"]})
    assert correlation.status_code == 200, correlation.text
    assert {c["kind"] for c in correlation.json()["data"]["candidates"]} == {"event", "property"}
    bad = client.post("/v1/analyses/trends", headers=AUTH,
                      json={"series": ["a", "b"], "formula": "__import__('os')"})
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_spec"


def test_admin_token_is_required(client: TestClient) -> None:
    assert client.post("/v1/analyses/funnel", json=FUNNEL).status_code == 401
    assert client.post("/v1/analyses/funnel", json=FUNNEL,
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/timeline/someone").status_code == 401


def test_bad_specs_get_a_clear_400(client: TestClient) -> None:
    bad = client.post("/v1/analyses/funnel", json={"steps": ["only_one"]}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_spec"
    broken = client.post("/v1/analyses/funnel", content=b"{nope", headers=AUTH)
    assert broken.status_code == 400 and broken.json()["reason"] == "malformed_json"
    unknown = client.post("/v1/analyses/segments", json={}, headers=AUTH)
    assert unknown.status_code == 404
    listed = client.post("/v1/analyses/retention", json=[1], headers=AUTH)
    assert listed.status_code == 400



@pytest.mark.parametrize("name, doc, key", [
    # a misspelt key would have answered a different question (the funnel without them)
    ("funnel", {"steps": ["page_view", "purchase"], "exclusions": ["refund"]}, "exclusions"),
    ("funnel", {"steps": ["page_view", "purchase"], "windows": "1d"}, "windows"),
    ("funnel", {"steps": [{"event": "page_view", "filter": [{"prop": "channel",
                                                            "value": "web"}]},
                          "purchase"]}, "filter"),
    ("funnel", {"steps": [{"event": "page_view", "filters": [{"prop": "channel",
                                                             "operator": "!="}]},
                          "purchase"]}, "operator"),
    ("funnel", {"steps": ["page_view", "purchase"],
                "exclude": [{"event": "refund", "from": 1, "to": 2}]}, "from"),
    ("retention", {"period": "week", "cohorts": 4}, "cohorts"),
    ("trends", {"series": [{"event": "purchase", "maths": "sum"}]}, "maths"),
    ("trends", {"series": ["purchase"], "date_form": "2024-03-01"}, "date_form"),
    ("stickiness", {"periods": "week"}, "periods"),
    ("paths", {"page": "/sale", "pages": 3}, "pages"),
    ("flows", {"start": "/", "step": 3}, "step"),
    ("pages", {"limit": 5}, "limit"),
    ("correlation", {"funnel": {"steps": ["product_view", "purchase"]},
                     "date_from": "2024-03-01"}, "date_from"),
    ("correlation", {"funnel": {"steps": ["product_view", "purchase"], "widow": "1d"}},
     "widow"),
    ("purchases", {"groups": [1, 2], "date_from": "2024-03-01"}, "date_from"),
])
def test_an_unknown_key_is_a_400_naming_it(client: TestClient, name: str, doc: dict,
                                           key: str) -> None:
    answer = client.post(f"/v1/analyses/{name}", json=doc, headers=AUTH)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["reason"] == "bad_spec" and "unknown key" in body["error"], body
    assert f"'{key}'" in body["error"].split("; known:")[0], body


def test_every_answer_spec_is_accepted_back(client: TestClient) -> None:
    """The console posts an answer's spec back (people behind a figure, saved insights):
    whatever to_json writes, from_json must read."""
    specs = {
        "funnel": {"steps": ["page_view", {"event": "purchase", "filters": ["channel=web"]}],
                   "exclude": [{"event": "refund", "from_step": 1, "to_step": 2}],
                   "optional": [], "breakdown": "channel", "trend": "week",
                   "as_of": "2024-04-01"},
        "retention": {"period": "day", "periods": 3, "return_event": "purchase",
                      "as_of": "2024-04-01"},
        "paths": {"page": "/sale"},
        "trends": {"series": [{"event": "purchase", "math": "sum", "property": "revenue",
                               "label": "revenue"}], "as_of": "2024-04-01"},
        "stickiness": {"period": "week", "as_of": "2024-04-01"},
        "flows": {"start": "/", "steps": 3, "as_of": "2024-04-01"},
        "pages": {"top": 5},
        "correlation": {"funnel": {"steps": ["product_view", "purchase"],
                                   "as_of": "2024-04-01"}, "properties": ["channel"]},
        "purchases": {"groups": [1, 2]},
    }
    for name, doc in specs.items():
        first = client.post(f"/v1/analyses/{name}", json=doc, headers=AUTH)
        assert first.status_code == 200, (name, first.text)
        again = client.post(f"/v1/analyses/{name}", json=first.json()["spec"], headers=AUTH)
        assert again.status_code == 200, (name, again.text)
        assert again.json()["spec"] == first.json()["spec"], name


# -- CLI --------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="funnelhouse")
    cli_analyses.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


FUNNEL_ARGS = ["funnel", "--step", "page_view", "--step", "product_view:product_category~shoes",
               "--step", "purchase", "--window", "2d", "--breakdown", "channel",
               "--from", "2024-03-01", "--to", "2024-03-07", "--as-of", "2024-04-01T00:00:00Z"]


def test_cli_funnel_pretty_table_with_sql(setup, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, _, _ = setup
    monkeypatch.setattr(instance, "running_url", lambda s: None)
    assert run_cli([*FUNNEL_ARGS, "--data-dir", str(settings.data_dir), "--show-sql"]) == 0
    out = capsys.readouterr().out
    assert "SET param_step_2_value_1 = 'shoes';" in out
    assert "pct_of_previous" in out and "(all)" in out


def test_cli_csv_and_json(setup, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, _, person = setup
    monkeypatch.setattr(instance, "running_url", lambda s: None)
    data_dir = ["--data-dir", str(settings.data_dir)]
    assert run_cli(["retention", "--period", "day", "--periods", "3", "--format", "csv",
                    "--as-of", "2024-04-01", *data_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "cohort,size,d0,d1,d2,d3"
    assert run_cli(["timeline", person, "--limit", "2", "--format", "json", *data_dir]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["summary"]["person_id"] == person and len(doc["rows"]) == 2
    assert run_cli(["trends", "--series", "page_view", "--series", "*|dau", "--interval",
                    "day", "--format", "csv", "--as-of", "2024-04-01", *data_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "bucket,page_view,* · dau,incomplete"
    assert all(len(line.split(",")) == 4 for line in lines[1:]) and len(lines) > 7
    assert "2024-03-01,12,11,False" in lines   # counts are integers in CSV
    assert run_cli(["flows", "--start", "/", "--steps", "3", "--format", "json", *data_dir]) == 0
    assert orjson.loads(capsys.readouterr().out)["analysis"] == "flows"
    assert run_cli(["correlation", "--period", "day", "--retained-period", "2",
                    "--format", "json", "--as-of", "2024-04-01", *data_dir]) == 0
    assert orjson.loads(capsys.readouterr().out)["summary"]["source"] == "retention"
    assert run_cli(["pages", "--top", "2", "--format", "csv", *data_dir]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("page,views,sessions,people")
    assert run_cli(["funnel", "--step", "a", *data_dir]) == 1
    assert "at least two steps" in capsys.readouterr().err


def test_cli_goes_through_the_running_instance(setup, client: TestClient,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, _, person = setup
    calls: list[str] = []

    def http_client(settings_, url, timeout=3600):  # type: ignore[no-untyped-def]
        # The running instance, in process: the CLI's one HTTP client, seen by its path.
        http = TestClient(client.app, base_url=url, headers=AUTH)
        http.event_hooks = {"request": [lambda request: calls.append(str(request.url))],
                            "response": []}
        return http

    monkeypatch.setattr(instance, "running_url", lambda s: "http://up")
    monkeypatch.setattr(instance, "http_client", http_client)
    # A folder the CLI must not open: everything goes over HTTP.
    other = ["--data-dir", str(tmp_path / "elsewhere")]
    assert run_cli([*FUNNEL_ARGS, "--format", "json", *other]) == 0
    assert orjson.loads(capsys.readouterr().out)["summary"]["entered"] > 0
    assert run_cli(["paths", "/sale", *other]) == 0
    assert "went_to" in capsys.readouterr().out
    assert run_cli(["timeline", person, "--limit", "1", *other]) == 0
    assert calls[:2] == ["http://up/v1/analyses/funnel", "http://up/v1/analyses/paths"]
    assert calls[2].startswith("http://up/v1/timeline/")


def test_cli_purchase_groups_and_segments_from_any_result(
        setup, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, warehouse, _ = setup
    monkeypatch.setattr(instance, "running_url", lambda s: None)
    data_dir = ["--data-dir", str(settings.data_dir)]
    assert run_cli(["purchases", "--groups", "1,2", "--to", "2024-03-07", "--format", "json",
                    *data_dir]) == 0
    groups = {g["group"]: g["people"] for g in orjson.loads(capsys.readouterr().out)["data"]
              ["groups"]}
    assert list(groups) == ["<1", "1", "2+"] and groups["1"] > 0
    assert run_cli(["retention", "--cohort", "first_purchase", "--period", "day",
                    "--periods", "2", "--breakdown", "purchase_count", "--purchase-groups",
                    "1,2", "--as-of", "2024-04-01", "--format", "json", *data_dir]) == 0
    labels = {c["breakdown"] for c in orjson.loads(capsys.readouterr().out)["data"]["cohorts"]}
    assert "1" in labels and labels <= {None, "<1", "1", "2+"}
    # --save-segment on the new analyses: the saved people are the figure's
    assert run_cli(["purchases", "--groups", "1,2", "--to", "2024-03-07", "--save-segment",
                    "bought once", "--who", "1", *data_dir]) == 0
    assert capsys.readouterr().out.strip().endswith(f"with {groups['1']} people")
    assert run_cli(["trends", "--series", "page_view|people", "--from", "2024-03-01",
                    "--to", "2024-03-07", "--as-of", "2024-04-01", "--format", "json",
                    *data_dir]) == 0
    first = orjson.loads(capsys.readouterr().out)["data"]["series"][0]["values"][0]
    assert run_cli(["trends", "--series", "page_view|people", "--from", "2024-03-01",
                    "--to", "2024-03-07", "--as-of", "2024-04-01", "--save-segment",
                    "viewers day 1", "--who", "A@2024-03-01", "--show-sql", *data_dir]) == 0
    out = capsys.readouterr()
    assert out.out.strip().endswith(f"with {first} people") and first > 0
    assert "SELECT DISTINCT person_id FROM events" in out.err
    assert run_cli(["pages", "--save-segment", "home exits", "--who", "exited:/", "--live",
                    "--last-days", "7", *data_dir]) == 0
    assert "saved live segment" in capsys.readouterr().out
    assert run_cli(["stickiness", "--save-segment", "x", *data_dir]) == 1
    assert "exactly:K@PERIOD" in capsys.readouterr().err
