"""Other vendors' browser SDKs, unmodified, in Debian's Chromium against a live funnelhouse.

@segment/analytics-next and @rudderstack/analytics-js (pinned in clients/browser, installed by
its `setup`) are loaded from their own UMD bundles on a page of another origin, configured as
their docs say with only the collector's URL and a write key changed: their settings come
from funnelhouse (funnelhouse/collector/sdk_settings.py). clients/browser/drive.mjs runs the
calls and writes down every exchange on the wire; the assertions are here, on that record and
on what the warehouse stored.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    BROWSER_KEY,
    ORIGIN_KEY,
    SERVER_KEY,
    Funnelhouse,
    make_settings,
    wait_until,
)

CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "browser"
PACKAGES = CLIENTS / "node_modules"
# A browser key allowed 1 event/s: a batch of five leaves a debt the next batch runs into.
LIMITED_KEY = "wk_limited_browser"
KEYS_TOML = f"""
[[write_keys]]
key = "{LIMITED_KEY}"
source = "limited"
kind = "browser"
rate_limit = 1
"""
# Longer than any retry delay the SDKs would take after an answer (backoff ≈ 0.5–2 s; the
# collector's Retry-After here ≤ 5 s): a run ends only after the wire stayed silent this long.
QUIET_MS = 4000
QUIET_AFTER_RATE_LIMIT_MS = 8000


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnelhouse]:
    if not (PACKAGES / "playwright-core").is_dir():
        pytest.fail("clients/browser is not installed: run clients/browser/setup")
    data_dir = Path(tmp_path_factory.mktemp("browser-sdks")) / "data"
    data_dir.mkdir()
    (data_dir / "funnelhouse.toml").write_text(KEYS_TOML)
    instance = Funnelhouse(data_dir).start()
    yield instance
    instance.stop()


# ---- driving the browser ------------------------------------------------------------------

def drive(collector: Funnelhouse, sdk: str, key: str, calls: list[list[Any]], *,
          options: dict[str, Any] | None = None, unload: bool = False,
          quiet_ms: int = QUIET_MS) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is needed to drive the browser"
    spec = {"sdk": sdk, "collector": collector.url, "writeKey": key, "options": options or {},
            "calls": calls, "unload": unload, "quietMs": quiet_ms}
    done = subprocess.run([node, str(CLIENTS / "drive.mjs"), json.dumps(spec)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["error"] is None, result["error"]
    assert result["ready"] is True, result
    assert result["finished"] is True, "the SDK was still sending when the run ended"
    assert result["offsite"] == [], "the SDK reached past funnelhouse (CDN, vendor API)"
    assert result["pageErrors"] == []
    return result


def posts(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["requests"] if r["method"] == "POST"]


def messages_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    body = request["body"]
    return body["batch"] if isinstance(body, dict) and "batch" in body else [body]


def delivered(result: dict[str, Any]) -> Counter[str]:
    """How often each message id went out and was answered 2xx."""
    return Counter(m["messageId"] for r in posts(result) if 200 <= r["status"] < 300
                   for m in messages_of(r))


def sent(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["messageId"]: m for r in posts(result) for m in messages_of(r)}


def assert_cors_on_every_answer(result: dict[str, Any]) -> None:
    for exchange in result["requests"]:
        assert exchange["headers"]["origin"] == result["site"].rstrip("/"), exchange["path"]
        assert exchange["responseHeaders"].get("access-control-allow-origin") == "*", exchange
        if exchange["method"] == "OPTIONS":
            assert exchange["status"] == 200, exchange


# ---- what each page does -----------------------------------------------------------------

def backdated() -> str:
    when = datetime.now(UTC) - timedelta(hours=2)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def calls_for(sdk: str, run: str, back_then: str) -> list[list[Any]]:
    """The calls a shop page makes; the SDKs share the signatures but for two options."""
    timestamp_option = {"timestamp": back_then} if sdk == "segment" else \
        {"originalTimestamp": back_then}
    calls: list[list[Any]] = [
        ["track", "Product Viewed", {"product_id": f"sku-{run}", "price": 12.5}],
        ["page", "Shop", "Boots", {"title": f"Boots {run}"}],
    ]
    if sdk == "segment":  # analytics-js v3 has no screen(); analytics-next has
        calls.append(["screen", "Shop", f"Cart {run}", {}])
    calls += [
        ["alias", f"user-{run}"],  # the anonymous visitor becomes user-<run>
        ["identify", f"user-{run}", {"email": f"{run}@example.com", "firstName": "Ann"}],
        ["group", f"org-{run}", {"name": "Acme", "employees": 12}],
        ["track", "Product Viewed", {"product_id": f"old-{run}"}, timestamp_option],
        # Refused by the plan (purchase needs revenue, currency, items): dead-lettered once.
        ["track", "Order Completed", {"order_id": f"o-{run}"}],
    ]
    return calls


# ---- what the warehouse must hold ------------------------------------------------------------

def query(collector: Funnelhouse, sql: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{collector.url}/v1/sql", json={"sql": sql, "params": params},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


ROWS = ("SELECT message_id, type, event, anonymous_id, user_id, previous_id, group_id, "
        "channel, referrer, referrer_host, traffic_medium, "
        "properties, traits, page_title, screen_name, library_name, library_version, flags, "
        "toUnixTimestamp64Milli(timestamp) AS ts FROM events_raw "
        "WHERE anonymous_id = {anonymous_id:String}")
INVALID = ("SELECT message_id, type, event, reason FROM events_invalid "
           "WHERE message_id = {message_id:String}")


def stored_rows(collector: Funnelhouse, anonymous_id: str, count: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = wait_until(
        lambda: (found := query(collector, ROWS, anonymous_id=anonymous_id))
        and len(found) >= count and found, timeout=60)
    return rows


def one(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, rows)
    return hits[0]


def sdk_version(package: str) -> str:
    version: str = orjson.loads((PACKAGES / package / "package.json").read_bytes())["version"]
    return version


def check_warehouse(collector: Funnelhouse, result: dict[str, Any], sdk: str, run: str,
                    back_then: str, package: str) -> None:
    """Every call stored once as the SDK sent it; the refused one dead-lettered once."""
    anonymous_id = result["anonymousId"]
    messages = sent(result)
    refused = [m for m in messages.values() if m.get("event") == "Order Completed"]
    assert len(refused) == 1
    refused_id = refused[0]["messageId"]
    valid_ids = set(messages) - {refused_id}
    expected = len(calls_for(sdk, run, back_then)) - 1
    assert len(valid_ids) == expected

    rows = stored_rows(collector, anonymous_id, expected)
    assert Counter(r["message_id"] for r in rows) == Counter(valid_ids)

    # The SDK's own name and version, as it wrote them into every message.
    [library] = {(m["context"]["library"]["name"], m["context"]["library"]["version"])
                 for m in messages.values()}
    assert sdk_version(package) in library[1]
    assert {(r["library_name"], r["library_version"]) for r in rows} == {library}

    # A browser page with no referrer: web, direct.
    assert {(r["channel"], r["referrer"], r["referrer_host"], r["traffic_medium"])
            for r in rows if r["type"] != "screen"} == {("web", "", "", "direct")}, rows
    viewed = {orjson.loads(r["properties"])["product_id"]: r
              for r in rows if (r["type"], r["event"]) == ("track", "product_view")}
    assert viewed.keys() == {f"sku-{run}", f"old-{run}"}
    assert orjson.loads(viewed[f"sku-{run}"]["properties"]) == {"product_id": f"sku-{run}",
                                                                 "price": 12.5}
    assert viewed[f"sku-{run}"]["user_id"] == ""
    page = one(rows, type="page", event="page_view")
    assert page["page_title"] == f"Boots {run}"
    if sdk == "segment":
        assert one(rows, type="screen", event="screen_view")["screen_name"] == f"Cart {run}"
    alias = one(rows, type="alias", event="alias")
    assert (alias["user_id"], alias["previous_id"]) == (f"user-{run}", anonymous_id)
    identify = one(rows, type="identify", event="identify", user_id=f"user-{run}")
    assert orjson.loads(identify["traits"]) == {"email": f"{run}@example.com",
                                                "first_name": "Ann"}
    group = one(rows, type="group", event="group", group_id=f"org-{run}")
    assert orjson.loads(group["traits"]) == {"name": "Acme", "employees": 12}

    old = viewed[f"old-{run}"]
    assert old["user_id"] == f"user-{run}"
    # Kept at the time it happened (skew-corrected, so within a few ms), not clamped.
    wanted = datetime.fromisoformat(back_then).timestamp() * 1000
    assert abs(int(old["ts"]) - wanted) < 60_000, (old["ts"], back_then)
    assert not [f for f in old["flags"] if f.startswith("timestamp")]

    [invalid] = wait_until(lambda: query(collector, INVALID, message_id=refused_id), timeout=60)
    assert (invalid["type"], invalid["event"], invalid["reason"]) == (
        "track", "purchase", "schema_violation")
    # Checked again now that the loader has caught up: still exactly once each.
    assert len(query(collector, INVALID, message_id=refused_id)) == 1
    assert Counter(r["message_id"] for r in query(collector, ROWS, anonymous_id=anonymous_id)
                   ) == Counter(valid_ids)


# ---- Segment analytics-next ----------------------------------------------------------------

SEGMENT_PATHS = {"/v1/t", "/v1/p", "/v1/s", "/v1/i", "/v1/a", "/v1/g"}


def test_analytics_next_sends_each_call_to_its_one_letter_path(
        collector: Funnelhouse) -> None:
    run, back_then = uuid.uuid4().hex[:8], backdated()
    result = drive(collector, "segment", BROWSER_KEY, calls_for("segment", run, back_then))

    [settings] = [r for r in result["requests"] if r["method"] == "GET"]
    assert settings["path"] == f"/v1/projects/{BROWSER_KEY}/settings"
    assert settings["status"] == 200
    segmentio = settings["responseBody"]["integrations"]["Segment.io"]
    assert segmentio["apiHost"] == result["collector"].removeprefix("http://") + "/v1"
    assert settings["responseBody"]["integrations"].keys() == {"Segment.io"}

    assert {r["path"] for r in posts(result)} == SEGMENT_PATHS
    assert_cors_on_every_answer(result)
    # Every message went out once: none resent, the refused one (a 400) neither.
    assert set(Counter(m["messageId"] for r in posts(result) for m in messages_of(r))
               .values()) == {1}
    [refusal] = [r for r in posts(result) if r["status"] != 200]
    assert refusal["status"] == 400
    assert refusal["responseBody"]["code"] == "schema_violation"
    assert set(result["messageIds"]) == set(sent(result))
    check_warehouse(collector, result, "segment", run, back_then, "@segment/analytics-next")


def test_analytics_next_batching_waits_out_a_429_and_resends_once(
        collector: Funnelhouse) -> None:
    run, back_then = uuid.uuid4().hex[:8], backdated()
    batching = {"integrations": {"Segment.io": {"deliveryStrategy": {
        "strategy": "batching", "config": {"size": 5, "timeout": 500}}}}}
    result = drive(collector, "segment", LIMITED_KEY, calls_for("segment", run, back_then),
                   options=batching, quiet_ms=QUIET_AFTER_RATE_LIMIT_MS)

    batches = posts(result)
    assert {r["path"] for r in batches} == {"/v1/b"}
    assert_cors_on_every_answer(result)
    limited = [i for i, r in enumerate(batches) if r["status"] == 429]
    assert limited, [r["status"] for r in batches]
    assert "x-retry-count" not in batches[0]["headers"]
    for index in limited:
        refused, resend = batches[index], batches[index + 1]
        assert refused["responseBody"]["code"] == "rate_limited"
        assert int(refused["responseHeaders"]["retry-after"]) >= 1
        # The same batch again (with any call made meanwhile), saying it is a retry.
        held_back = [m["messageId"] for m in messages_of(refused)]
        assert [m["messageId"] for m in messages_of(resend)][:len(held_back)] == held_back
        assert int(resend["headers"]["x-retry-count"]) >= 1
    assert batches[-1]["status"] == 200
    # Each message taken exactly once, the ones held back by the 429 included.
    assert set(delivered(result).values()) == {1}
    check_warehouse(collector, result, "segment", run, back_then, "@segment/analytics-next")


# ---- RudderStack analytics-js --------------------------------------------------------------

RUDDERSTACK_PATHS = {"/v1/track", "/v1/page", "/v1/alias", "/v1/identify", "/v1/group"}


def check_source_config(result: dict[str, Any]) -> None:
    [config] = [r for r in result["requests"] if r["method"] == "GET"]
    assert config["path"].startswith("/sourceConfig/?")
    assert config["status"] == 200
    source = config["responseBody"]["source"]
    assert (source["id"], source["enabled"], source["destinations"]) == ("web", True, [])


def test_rudderstack_sends_each_call_over_xhr(collector: Funnelhouse) -> None:
    run, back_then = uuid.uuid4().hex[:8], backdated()
    result = drive(collector, "rudderstack", BROWSER_KEY,
                   calls_for("rudderstack", run, back_then))

    check_source_config(result)
    assert {r["path"] for r in posts(result)} == RUDDERSTACK_PATHS
    assert_cors_on_every_answer(result)
    anonymous = base64.b64encode(result["anonymousId"].encode()).decode()
    for request in posts(result):
        # The headers that make the browser ask a preflight; the collector allows them.
        assert request["headers"]["anonymousid"] == anonymous
        assert datetime.fromisoformat(request["headers"]["sentat"])
    assert set(Counter(m["messageId"] for r in posts(result) for m in messages_of(r))
               .values()) == {1}
    [refusal] = [r for r in posts(result) if r["status"] != 200]
    assert (refusal["status"], refusal["responseBody"]["code"]) == (400, "schema_violation")
    check_warehouse(collector, result, "rudderstack", run, back_then,
                    "@rudderstack/analytics-js")


def test_rudderstack_with_beacon_sends_the_queue_when_the_page_is_left(
        collector: Funnelhouse) -> None:
    run, back_then = uuid.uuid4().hex[:8], backdated()
    result = drive(collector, "rudderstack", BROWSER_KEY,
                   calls_for("rudderstack", run, back_then),
                   options={"useBeacon": True}, unload=True)

    check_source_config(result)
    beacons = posts(result)
    assert {r["path"] for r in beacons} == {f"/beacon/v1/batch?writeKey={BROWSER_KEY}"}
    # sendBeacon: text/plain, no credentials and no custom header, so no preflight.
    assert {r["headers"]["content-type"] for r in beacons} == {"text/plain"}
    assert not [r for r in result["requests"] if r["method"] == "OPTIONS"
                and r["path"].startswith("/beacon/")]
    assert_cors_on_every_answer(result)
    assert set(Counter(m["messageId"] for r in beacons for m in messages_of(r))
               .values()) == {1}
    check_warehouse(collector, result, "rudderstack", run, back_then,
                    "@rudderstack/analytics-js")


# ---- the settings documents themselves -------------------------------------------------------

@pytest.mark.parametrize(("path", "auth", "status"), [
    ("/v1/projects/wk_nobody/settings", None, 404),
    (f"/v1/projects/{SERVER_KEY}/settings", None, 404),   # a server key is no page's key
    ("/sourceConfig/?p=npm&v=3.34.1&writeKey=wk_nobody", ("wk_nobody", ""), 401),
    ("/sourceConfig/", None, 401),
])
def test_settings_for_an_unknown_key_are_refused_with_code_and_message(
        collector: Funnelhouse, path: str, auth: tuple[str, str] | None,
        status: int) -> None:
    response = httpx.get(f"{collector.url}{path}", auth=auth, timeout=10,
                         headers={"Origin": "http://localhost:1"})
    assert response.status_code == status, response.text
    assert response.json()["code"] == "unknown_write_key"
    assert response.json()["message"]
    assert response.headers["access-control-allow-origin"] == "*"


def test_segment_settings_name_the_host_the_browser_used(collector: Funnelhouse) -> None:
    response = httpx.get(f"{collector.url}/v1/projects/{BROWSER_KEY}/settings", timeout=10,
                         headers={"Host": "collect.shop.example:8443"})
    segmentio = response.json()["integrations"]["Segment.io"]
    assert (segmentio["apiKey"], segmentio["apiHost"], segmentio["protocol"]) == (
        BROWSER_KEY, "collect.shop.example:8443/v1", "http")


@pytest.mark.parametrize(("peer", "expected"), [
    ("10.0.0.7", ("https", "collect.shop.example/v1")),  # the trusted TLS-terminating proxy
    ("203.0.113.9", ("http", "10.0.0.2:8080/v1")),       # anyone else: its forwarded-* ignored
])
def test_segment_settings_behind_a_trusted_proxy_name_its_public_address(
        tmp_path: Path, peer: str, expected: tuple[str, str]) -> None:
    settings = make_settings(tmp_path / "data", trusted_proxies=("10.0.0.0/24",))
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app, base_url="http://10.0.0.2:8080", client=(peer, 40000)) as client:
        response = client.get(f"/v1/projects/{BROWSER_KEY}/settings", headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "collect.shop.example"})
    segmentio = response.json()["integrations"]["Segment.io"]
    assert (segmentio["protocol"], segmentio["apiHost"]) == expected


@pytest.mark.parametrize(("origin", "status"), [(ALLOWED_ORIGIN, 200),
                                                ("https://elsewhere.example", 403)])
def test_settings_of_an_origin_bound_key_only_for_its_origins(
        tmp_path: Path, origin: str, status: int) -> None:
    settings = make_settings(tmp_path / "data")
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app) as client:
        segment = client.get(f"/v1/projects/{ORIGIN_KEY}/settings", headers={"Origin": origin})
        rudderstack = client.get(f"/sourceConfig/?writeKey={ORIGIN_KEY}",
                                 headers={"Origin": origin})
    assert (segment.status_code, rudderstack.status_code) == (status, status)
    if status != 200:
        assert segment.json()["code"] == rudderstack.json()["code"] == "origin_not_allowed"
