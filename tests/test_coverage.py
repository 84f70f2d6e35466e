"""The tracking-plan coverage audit over events sent through the real collector and loader,
counted against what was sent; plus the console endpoints before any model ran."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.analyses.coverage import render_table
from funnelhouse.cli import main as cli
from funnelhouse.server import instance
from funnelhouse.server.up import Pipeline, build_pipeline
from tests.conftest import (
    ADMIN_TOKEN,
    BROWSER_KEY,
    SERVER_KEY,
    STRICT_KEY,
    every_handle_closed,
    make_settings,
    track,
    wait_until,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PURCHASE = {"order_id": "o-1", "revenue": 10.0, "currency": "EUR",
            "items": [{"product_id": "p-1", "price": 10.0, "quantity": 1}]}

# What is sent, by source. Valid: 3 + 1 + 1 + 1 (web), 1 + 1 (backend). Refused: 2 clicks
# without `element`, 2 purchases (bad revenue and empty items; a bad nested price), and
# one unknown event on the strict key.
WEB = [
    track("click", "a1", messageId="click-1"),
    track("click", "a2", messageId="click-2"),
    track("click", "a3", messageId="click-3", properties={"element": "#buy"}),
    track("click", "a4", messageId="click-bad-1", properties={"selector": "#x"}),
    track("click", "a5", messageId="click-bad-2", properties={"element_text": "Buy"}),
    track("product_view", "a1", messageId="pv-1",
          properties={"product_id": "p-1", "colour": "red"}),   # colour: not in the plan
    track("purchase", "a1", messageId="buy-bad-1",
          properties={**PURCHASE, "revenue": "ten", "items": []}),
    track("purchase", "a2", messageId="buy-bad-2", properties={
        **PURCHASE, "items": [{"product_id": "p-1", "price": "cheap", "quantity": 1}]}),
    track("made_up_event", "a1", messageId="odd-1"),
    {"type": "identify", "anonymousId": "a1", "userId": "u1", "messageId": "id-1",
     "traits": {"email": "a1@example.com"}},
]
BACKEND = [track("click", "s1", messageId="click-server"),
           track("purchase", "s1", messageId="buy-1", properties=PURCHASE)]
STRICT = [track("another_made_up", "z1", messageId="odd-strict")]
VALID, INVALID = 8, 5


def row_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, TestClient]]:
    settings = make_settings(tmp_path_factory.mktemp("coverage") / "data")
    with every_handle_closed():
        built = build_pipeline(settings)
        with TestClient(built.app) as client:
            for key, batch in ((BROWSER_KEY, WEB), (SERVER_KEY, BACKEND), (STRICT_KEY, STRICT)):
                client.post("/v1/batch", json={"batch": batch}, auth=(key, ""))

            def loaded() -> bool:
                counts = built.warehouse.query(
                    "SELECT (SELECT count() FROM events_raw), "
                    "(SELECT count() FROM events_invalid)").rows[0]
                return [int(c) for c in counts] == [VALID, INVALID]

            wait_until(loaded, timeout=60)
            plant_history(built)
            yield built, client


def plant_history(built: Pipeline) -> None:
    """Rows the collector cannot make on demand: a redelivered copy, an old arrival, and a
    failure already replayed."""
    now = datetime.now(UTC)
    raw = built.warehouse.query(
        "SELECT * FROM events_raw WHERE message_id = 'click-1'").dicts()[0]
    copy = {**raw, "received_at": row_time(now - timedelta(seconds=1))}
    old = {**raw, "message_id": "click-old", "received_at": row_time(now - timedelta(days=40)),
           "timestamp": row_time(now - timedelta(days=40)),
           "original_timestamp": row_time(now - timedelta(days=40)),
           "sent_at": row_time(now - timedelta(days=40))}
    built.warehouse.insert_json_rows("events_raw", [orjson.dumps(copy), orjson.dumps(old)])
    built.warehouse.insert_json_rows("events_invalid", [orjson.dumps({
        "message_id": "search-fixed", "received_at": row_time(now), "source": "web",
        "type": "track", "event": "search", "reason": "schema_violation",
        "errors": [{"path": "$.properties.query", "message": "'query' is a required property"}],
        "schema_version": "search/1-0-0", "payload": "{}", "request": "{}"})])
    built.warehouse.insert_json_rows("invalid_replayed", [orjson.dumps({
        "message_id": "search-fixed", "replayed_at": row_time(now),
        "schema_version": "search/1-0-0"})])


def audit(client: TestClient, query: str = "") -> dict[str, Any]:
    response = client.get(f"/v1/plan/coverage{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def event_of(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["events"] if e["event"] == name)


def prop_of(event: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in event["properties"] if p["name"] == name)


def test_counts_match_what_was_sent(pipeline) -> None:  # type: ignore[no-untyped-def]
    _, client = pipeline
    doc = audit(client)
    click = event_of(doc, "click")
    # 3 web + 1 backend valid (the redelivered copy of click-1 counts once, the 40-day-old
    # arrival is outside the window); 2 refused.
    assert (click["valid_count"], click["invalid_count"]) == (4, 2)
    assert click["status"] == "failing" and click["planned"] is True
    element = prop_of(click, "element")
    assert (element["seen_count"], element["failing_count"]) == (4, 2)
    assert element["required"] is True and element["status"] == "failing"
    element_text = prop_of(click, "element_text")
    assert (element_text["seen_count"], element_text["status"]) == (3, "seen")
    assert prop_of(click, "target_url")["status"] == "never_seen"
    assert click["top_errors"] == [{"path": "$.properties.element",
                                    "message": "'element' is a required property", "count": 2}]

    purchase = event_of(doc, "purchase")
    assert (purchase["valid_count"], purchase["invalid_count"]) == (1, 2)
    assert prop_of(purchase, "items")["failing_count"] == 2      # [] and items[0].price
    assert prop_of(purchase, "revenue")["failing_count"] == 1
    assert prop_of(purchase, "order_id")["status"] == "seen"
    assert prop_of(purchase, "coupon")["status"] == "never_seen"
    paths = {e["path"] for e in purchase["top_errors"]}
    assert paths == {"$.properties.items", "$.properties.revenue",
                     "$.properties.items[0].price"}

    product_view = event_of(doc, "product_view")
    assert product_view["status"] == "seen" and product_view["valid_count"] == 1
    assert product_view["extra_properties"] == [
        {"name": "colour", "seen_count": 1, "last_seen": product_view["last_seen"]}]
    identify = event_of(doc, "identify")   # identify's payload is its traits
    assert identify["status"] == "seen" and prop_of(identify, "email")["seen_count"] == 1
    # Replayed failures are fixed: search never arrived as far as the audit is concerned.
    assert event_of(doc, "search")["status"] == "never_seen"
    assert event_of(doc, "signup")["status"] == "never_seen"

    unplanned = {e["event"]: e for e in doc["events"] if not e["planned"]}
    assert set(unplanned) == {"made_up_event", "another_made_up"}
    assert unplanned["made_up_event"]["valid_count"] == 1      # flagged, stored
    assert unplanned["another_made_up"]["invalid_count"] == 1  # refused by the strict key
    assert all(e["status"] == "unplanned" for e in unplanned.values())
    # Planned events first, in plan order, then the unplanned ones.
    names = [e["event"] for e in doc["events"]]
    assert names[:len(names) - 2] == sorted(names[:len(names) - 2])
    # seen: product_view, identify; failing: click, purchase.
    assert doc["summary"] == {"planned": len(names) - 2, "seen": 2, "failing": 2,
                              "never_seen": len(names) - 2 - 4, "unplanned": 2}
    assert len(doc["sql"]) == 3 and all(q["params"]["source"] == "" for q in doc["sql"])


def test_source_and_window_narrow_the_counts(pipeline) -> None:  # type: ignore[no-untyped-def]
    _, client = pipeline
    backend = audit(client, "?source=backend")
    click = event_of(backend, "click")
    assert (click["valid_count"], click["invalid_count"], click["status"]) == (1, 0, "seen")
    assert event_of(backend, "purchase")["status"] == "seen"
    assert backend["window"]["source"] == "backend"
    assert not [e for e in backend["events"] if not e["planned"]]
    # Forty days back includes the old arrival.
    wide = audit(client, "?days=60")
    assert event_of(wide, "click")["valid_count"] == 5
    assert wide["window"]["days"] == 60
    nothing = audit(client, "?source=no-such-source")
    assert nothing["summary"]["never_seen"] == nothing["summary"]["planned"]


def test_last_seen_is_the_latest_arrival(pipeline) -> None:  # type: ignore[no-untyped-def]
    built, client = pipeline
    doc = audit(client)
    latest_valid, latest_failed = built.warehouse.query(
        "SELECT (SELECT toString(max(received_at)) FROM events_raw WHERE event = 'click' "
        "AND received_at > now() - INTERVAL 30 DAY), (SELECT toString(max(received_at)) "
        "FROM events_invalid WHERE event = 'click')").rows[0]
    click = event_of(doc, "click")
    assert click["last_valid"] == latest_valid.replace(" ", "T") + "Z"
    assert click["last_failed"] == latest_failed.replace(" ", "T") + "Z"
    assert click["last_seen"] == max(click["last_valid"], click["last_failed"])
    assert doc["window"]["from"] < click["last_seen"] <= doc["window"]["to"]


def test_cli_prints_the_audit_from_the_folder(pipeline, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    built, client = pipeline
    monkeypatch.setattr(instance, "running_url", lambda s: None)
    data_dir = str(built.settings.data_dir)
    for variable in ("FUNNELHOUSE_CLICKHOUSE_URL", "FUNNELHOUSE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    assert cli.main(["plan", "coverage", "--data-dir", data_dir, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert event_of(doc, "click")["valid_count"] == 4
    assert cli.main(["plan", "coverage", "--data-dir", data_dir, "--source", "web",
                     "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "last 7 day(s) for source web" in out
    assert "$.properties.element: 'element' is a required property" in out
    table = render_table(audit(client, "?days=7&source=web")).splitlines()
    assert out.splitlines()[2:] == table[2:]   # the same audit (line 1 holds the times)
    assert cli.main(["plan", "coverage", "--data-dir", data_dir, "--days", "0"]) == 1
    assert "days must be" in capsys.readouterr().err


def test_cli_goes_through_the_running_instance(pipeline, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    built, client = pipeline
    url = "http://funnelhouse.test"
    calls: list[str] = []

    def http_client(settings: Any, address: str, timeout: float = 3600) -> TestClient:
        # The running instance in process, reached with the token the CLI holds.
        http = TestClient(client.app, base_url=address,
                          headers={"Authorization": f"Bearer {settings.admin_token}"})
        http.event_hooks = {"request": [lambda r: calls.append(f"{url}{r.url.path}")],
                            "response": []}
        return http

    monkeypatch.setattr(instance, "running_url", lambda s: url)
    monkeypatch.setattr(instance, "http_client", http_client)
    monkeypatch.setenv("FUNNELHOUSE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("FUNNELHOUSE_CLICKHOUSE_URL", raising=False)
    data_dir = str(built.settings.data_dir)
    assert cli.main(["plan", "coverage", "--data-dir", data_dir, "--source", "backend",
                     "--json"]) == 0
    assert calls == [f"{url}/v1/plan/coverage"]
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["window"]["source"] == "backend" and event_of(doc, "click")["valid_count"] == 1
    monkeypatch.setenv("FUNNELHOUSE_ADMIN_TOKEN", "wrong")
    assert cli.main(["plan", "coverage", "--data-dir", data_dir]) == 1
    assert "unauthorized" in capsys.readouterr().err


def test_console_endpoints_before_the_models_ran(pipeline) -> None:  # type: ignore[no-untyped-def]
    built, client = pipeline
    for path in ("/v1/campaigns", "/v1/people/search?q=a1"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 503, response.text
        assert response.json()["reason"] == "not_built"
    meta = client.get("/v1/meta", headers=AUTH).json()
    assert meta["events_table"] == "events_raw" and meta["breakdowns"] == []
    counts = {r[0]: int(r[1]) for r in built.warehouse.query(
        "SELECT event, count() FROM events_raw GROUP BY event").rows}
    assert {e["name"]: e["count"] for e in meta["events"]} == counts
    assert {"web", "backend", "strict"} <= set(meta["sources"])
    # A preview needs only what it reads: an unknown table is refused with its path.
    refused = client.post("/v1/segments/preview", headers=AUTH, json={
        "containers": [{"groups": [{"table": "users", "filters": []}]}]})
    assert refused.status_code == 400 and refused.json()["path"].startswith("$.containers[0]")


def test_debug_events_since_returns_only_newer_entries(pipeline) -> None:  # type: ignore[no-untyped-def]
    _, client = pipeline
    first = client.get("/v1/debug/events?limit=1000", headers=AUTH).json()["events"]
    newest = max(e["received_at"] for e in first)
    assert client.get(f"/v1/debug/events?since={newest}", headers=AUTH).json()["events"] == []
    time.sleep(0.01)
    client.post("/v1/track", json=track("click", "late", messageId="click-late"),
                auth=(BROWSER_KEY, ""))
    newer = client.get(f"/v1/debug/events?since={newest}", headers=AUTH).json()["events"]
    assert [e["message_id"] for e in newer] == ["click-late"]
    older = client.get(f"/v1/debug/events?since={newest - 3600}&source=backend",
                       headers=AUTH).json()["events"]
    assert {e["message_id"] for e in older} == {"click-server", "buy-1"}
    bad = client.get("/v1/debug/events?since=yesterday", headers=AUTH)
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_parameter"
    assert client.get("/v1/debug/events?since=0").status_code == 401


def test_days_out_of_range_is_a_400(pipeline) -> None:  # type: ignore[no-untyped-def]
    _, client = pipeline
    for days in ("0", "-3", "99999", "1.5"):
        response = client.get(f"/v1/plan/coverage?days={days}", headers=AUTH)
        assert response.status_code == 400 and response.json()["reason"] == "bad_spec"
