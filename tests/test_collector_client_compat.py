"""What other vendors' clients need of the HTTP surface, checked in process: their paths,
the headers their browsers ask a preflight for, the answer shape their libraries parse,
batch-level fields, and whose user agent an event carries. The real libraries run against
a live collector in tests/test_clients_*.py.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import SHORT_PATHS
from funnelhouse.config import Settings
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import BROWSER_KEY, LIMITED_KEY, SERVER_KEY, queued_rows, track

SITE = "https://shop.example"
CURL_LIKE_UA = "python-requests/2.31.0"  # a server library's UA: the parser says "bot"
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def events(log: EventLog) -> list[dict[str, Any]]:
    return queued_rows(log)


@pytest.mark.parametrize(("short", "kind"), sorted(SHORT_PATHS.items()))
def test_analytics_next_short_paths_take_one_call_of_their_type(
        short: str, kind: str, client: TestClient, event_log: EventLog) -> None:
    # analytics-next sends the write key in the body and text/plain, no preflight.
    message: dict[str, Any] = {"anonymousId": "a-1", "messageId": f"short-{short}",
                               "writeKey": BROWSER_KEY, "userId": "u-1", "groupId": "g-1",
                               "previousId": "a-0", "name": "Home", "event": "click",
                               "properties": {"element": "#x"}}
    response = client.post(f"/v1/{short}", content=orjson.dumps(message),
                           headers={"Content-Type": "text/plain", "Origin": SITE})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    [row] = events(event_log)
    assert row["type"] == kind


@pytest.mark.parametrize("path", ["/v1/import/", "/v1/batch/", "/beacon/v1/batch",
                                  "/beacon/v1/batch/", "/v1/track/"])
def test_trailing_slash_and_beacon_paths_are_answered_in_place(
        path: str, client: TestClient, event_log: EventLog) -> None:
    body = track() if path == "/v1/track/" else {"batch": [track()]}
    response = client.post(f"{path}?writeKey={BROWSER_KEY}", content=orjson.dumps(body),
                           headers={"Content-Type": "text/plain;charset=UTF-8"},
                           follow_redirects=False)
    assert response.status_code == 200, (response.status_code, response.text)
    assert len(events(event_log)) == 1


@pytest.mark.parametrize("headers", [
    "content-type,x-retry-count",                  # analytics-next's resend after a 429
    "anonymousid,content-type,sentat,authorization",  # @rudderstack/analytics-js XHR
])
def test_preflight_allows_the_headers_sdks_send(headers: str, client: TestClient) -> None:
    response = client.options("/v1/batch", headers={
        "Origin": SITE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers})
    assert response.status_code == 200, response.text
    allowed = {h.strip().lower() for h in
               response.headers["access-control-allow-headers"].split(",")}
    assert set(headers.split(",")) <= allowed


def test_a_429_carries_cors_and_retry_after_a_browser_can_read(client: TestClient) -> None:
    # The first batch passes on a full bucket and leaves a debt; the resend waits it out.
    for attempt in range(2):
        batch = {"batch": [track(messageId=f"r-{attempt}-{i}") for i in range(20)]}
        response = client.post("/v1/batch", content=orjson.dumps(batch),
                               headers={**basic(LIMITED_KEY), "Origin": SITE,
                                        "X-Retry-Count": str(attempt)})
    assert response.status_code == 429, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in response.headers["access-control-expose-headers"].lower()
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("body", "headers", "status", "code"), [
    (b"{nope", {}, 400, "malformed_json"),
    (orjson.dumps({"batch": [track()]}), {"Authorization": "Basic " +
                                          base64.b64encode(b"wrong:").decode()},
     401, "unknown_write_key"),
    (orjson.dumps({"batch": [{"type": "track"}]}), {}, 400, "envelope_violation"),
])
def test_error_answers_carry_code_and_message(body: bytes, headers: dict[str, str],
                                              status: int, code: str,
                                              client: TestClient) -> None:
    """rudder-sdk-python raises APIError(status, payload['code'], payload['message']); a
    missing key was a KeyError it retried, dead-lettering the event once per retry."""
    response = client.post("/v1/batch", content=body,
                           headers={**basic(SERVER_KEY), "Content-Type": "application/json",
                                    "Origin": SITE, **headers})
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["code"] == code
    assert isinstance(answer["message"], str) and answer["message"]
    assert response.headers["access-control-allow-origin"] == "*"


def test_batch_level_context_reaches_every_message(client: TestClient,
                                                  event_log: EventLog) -> None:
    """analytics-java sends `context.library` once per batch, not per message."""
    batch = {
        "context": {"library": {"name": "analytics-java", "version": "3.5.4"},
                    "locale": "de-DE"},
        "integrations": {"All": True},
        "batch": [track(messageId="b-1"),
                  track(messageId="b-2", context={"locale": "fr-FR"}),
                  track(messageId="b-3", context={"library": {"name": "own", "version": "1"}})],
    }
    response = client.post("/v1/import/", content=orjson.dumps(batch),
                           headers={**basic(SERVER_KEY), "Content-Type": "application/json"})
    assert response.json()["accepted"] == 3, response.text
    rows = {r["message_id"]: r for r in events(event_log)}
    assert (rows["b-1"]["library_name"], rows["b-1"]["library_version"]) == (
        "analytics-java", "3.5.4")
    assert rows["b-1"]["locale"] == "de-DE"
    # A message's own context keys win over the batch's.
    assert rows["b-2"]["locale"] == "fr-FR"
    assert rows["b-2"]["library_name"] == "analytics-java"
    assert rows["b-3"]["library_name"] == "own"


def test_server_events_without_a_user_agent_are_not_bots(client: TestClient,
                                                         event_log: EventLog) -> None:
    client.post("/v1/batch", content=orjson.dumps({"batch": [
        track(messageId="s-1"),
        track(messageId="s-2", context={"userAgent": PHONE_UA})]}),
        headers={**basic(SERVER_KEY), "User-Agent": CURL_LIKE_UA,
                 "Content-Type": "application/json"})
    rows = {r["message_id"]: r for r in events(event_log)}
    assert rows["s-1"]["user_agent"] == ""
    assert rows["s-1"]["device_type"] != "bot" and not rows["s-1"]["is_bot"]
    assert "bot" not in rows["s-1"]["flags"]
    # The end user's device, as the server passed it, is used.
    assert (rows["s-2"]["device_type"], rows["s-2"]["os_name"]) == ("mobile", "iOS")


def test_browser_requests_keep_their_own_user_agent(settings: Settings, client: TestClient,
                                                    event_log: EventLog) -> None:
    client.post("/v1/track", content=orjson.dumps(track(messageId="w-1")),
                headers={**basic(BROWSER_KEY), "User-Agent": PHONE_UA,
                         "Content-Type": "application/json"})
    client.post("/v1/track", content=orjson.dumps(track(messageId="w-2")),
                headers={**basic(BROWSER_KEY), "User-Agent": "Googlebot/2.1",
                         "Content-Type": "application/json"})
    rows = {r["message_id"]: r for r in events(event_log)}
    assert rows["w-1"]["device_type"] == "mobile"
    assert rows["w-2"]["device_type"] == "bot"
