"""The collector's HTTP surface: every route, every place a write key may be, CORS,
pixel, beacon, gzip, partial batches, dedup, plan policies and the operations routes.

In process (TestClient over the embedded queue); rows are read back from the queue.
"""

from __future__ import annotations

import base64
import gzip
import time
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import PIXEL_GIF
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    BROWSER_KEY,
    ORIGIN_KEY,
    SERVER_KEY,
    STRICT_KEY,
    queued_rows,
    track,
)

JSON = {"Content-Type": "application/json"}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def only_row(log: EventLog, stream: str = "events") -> dict[str, Any]:
    rows = queued_rows(log, stream)
    assert len(rows) == 1, rows
    return rows[0]


def row_by_id(log: EventLog, message_id: str, stream: str = "events") -> dict[str, Any]:
    rows = [r for r in queued_rows(log, stream) if r["message_id"] == message_id]
    assert len(rows) == 1, (message_id, rows)
    return rows[0]


# ---------------------------------------------------------------- every endpoint

SINGLE_CALLS = {
    "track": ({"event": "click", "properties": {"element": "#buy"}}, "click"),
    "page": ({"name": "Home", "properties": {"url": "https://shop.example/", "title": "Home"}},
             "page_view"),
    "screen": ({"name": "Cart", "properties": {"name": "Cart"}}, "screen_view"),
    "identify": ({"userId": "u-1", "traits": {"email": "a@b.example"}}, "identify"),
    "alias": ({"userId": "u-1", "previousId": "anon-9"}, "alias"),
    "group": ({"userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}}, "group"),
}


@pytest.mark.parametrize("kind", sorted(SINGLE_CALLS))
def test_each_single_endpoint_queues_its_event(kind: str, client: TestClient,
                                               event_log: EventLog) -> None:
    fields, event = SINGLE_CALLS[kind]
    body = {"anonymousId": "anon-1", "messageId": f"m-{kind}", **fields}
    response = client.post(f"/v1/{kind}", json=body, headers=basic(BROWSER_KEY))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    row = only_row(event_log)
    assert row["type"] == kind
    assert row["event"] == event
    assert row["message_id"] == f"m-{kind}"
    assert row["source"] == "web"
    assert row["schema_version"] == f"{event}/{'1-1-0' if event == 'page_view' else '1-0-0'}"


def test_single_endpoint_type_wins_over_body_type(client: TestClient,
                                                  event_log: EventLog) -> None:
    # /v1/page with a body claiming "track": the route decides what the call is.
    body = {"type": "track", "anonymousId": "a", "properties": {"url": "https://x.example/"}}
    assert client.post("/v1/page", json=body, headers=basic(BROWSER_KEY)).status_code == 200
    row = only_row(event_log)
    assert (row["type"], row["event"]) == ("page", "page_view")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_batch_and_import_queue_every_event(path: str, client: TestClient,
                                            event_log: EventLog) -> None:
    batch = [
        track(messageId="b-1"),
        {"type": "page", "anonymousId": "anon-1", "messageId": "b-2",
         "properties": {"url": "https://shop.example/p"}},
        {"type": "identify", "userId": "u-1", "messageId": "b-3", "traits": {"name": "Ann"}},
    ]
    response = client.post(path, json={"batch": batch}, headers=basic(SERVER_KEY))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3
    rows = {r["message_id"]: r for r in queued_rows(event_log)}
    assert set(rows) == {"b-1", "b-2", "b-3"}
    assert [rows[m]["event"] for m in ("b-1", "b-2", "b-3")] == ["click", "page_view", "identify"]
    assert {r["source"] for r in rows.values()} == {"backend"}


def test_batch_may_be_a_bare_json_list(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/batch", json=[track(messageId="l-1"), track(messageId="l-2")],
                           headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    assert sorted(r["message_id"] for r in queued_rows(event_log)) == ["l-1", "l-2"]


# ---------------------------------------------------------------- write key, four places

def test_write_key_as_basic_auth_user(client: TestClient, event_log: EventLog) -> None:
    assert client.post("/v1/track", json=track(), auth=(BROWSER_KEY, "")).status_code == 200
    assert only_row(event_log)["source"] == "web"


def test_write_key_in_x_write_key_header(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(), headers={"X-Write-Key": SERVER_KEY})
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "backend"


def test_write_key_in_batch_body(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/batch", json={"writeKey": SERVER_KEY, "batch": [track()]})
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "backend"


def test_write_key_in_single_event_body(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track", json={**track(), "writeKey": BROWSER_KEY})
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "web"


def test_write_key_in_query_string(client: TestClient, event_log: EventLog) -> None:
    response = client.post(f"/v1/track?writeKey={SERVER_KEY}", json=track())
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "backend"


def test_basic_auth_wins_over_body_key(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/batch", json={"writeKey": BROWSER_KEY, "batch": [track()]},
                           headers=basic(SERVER_KEY))
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "backend"


# ---------------------------------------------------------------- camelCase → snake_case

def test_camel_case_keys_become_snake_case_in_the_row(client: TestClient,
                                                      event_log: EventLog) -> None:
    body = {
        "type": "track", "event": "click", "anonymousId": "anon-7", "userId": "user-7",
        "messageId": "camel-1",
        "properties": {"element": "#buy", "elementText": "Buy", "productId": "sku-1",
                       "nestedThing": {"innerKey": 1}},
        "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                    "sessionId": "s-7", "library": {"name": "analytics.js", "version": "5.0"},
                    "customField": {"someValue": 2}},
    }
    assert client.post("/v1/track", json=body, headers=basic(BROWSER_KEY)).status_code == 200
    row = only_row(event_log)
    assert row["anonymous_id"] == "anon-7"
    assert row["user_id"] == "user-7"
    assert row["session_id"] == "s-7"
    assert row["library_name"] == "analytics.js"
    assert row["user_agent"].startswith("Mozilla/5.0")
    assert orjson.loads(row["properties"]) == {
        "element": "#buy", "element_text": "Buy", "product_id": "sku-1",
        "nested_thing": {"inner_key": 1}}
    assert orjson.loads(row["context"]) == {"custom_field": {"some_value": 2}}
    # element_text/product_id are planned once snake_cased; only nested_thing is extra.
    assert row["flags"] == ["extra_properties"]


# ---------------------------------------------------------------- pixel

def test_pixel_with_flat_params_answers_no_cache_gif_and_queues(client: TestClient,
                                                                event_log: EventLog) -> None:
    response = client.get("/v1/p.gif", params={
        "writeKey": BROWSER_KEY, "event": "click", "anonymousId": "px-1", "messageId": "px-m1",
        "properties.element": "#banner", "properties.x": "12",
        "url": "https://shop.example/?utm_source=news&utm_medium=email"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL_GIF
    assert response.content[:6] == b"GIF89a"
    assert (response.content[6:8], response.content[8:10]) == (b"\x01\x00", b"\x01\x00")  # 1×1
    assert "no-cache" in response.headers["cache-control"]
    assert "no-store" in response.headers["cache-control"]
    row = only_row(event_log)
    assert (row["event"], row["anonymous_id"], row["message_id"]) == ("click", "px-1", "px-m1")
    assert orjson.loads(row["properties"]) == {"element": "#banner", "x": 12}
    assert row["page_url"].startswith("https://shop.example/")
    assert (row["utm_source"], row["traffic_medium"]) == ("news", "email")


def test_pixel_with_base64_data_param_queues_the_event(client: TestClient,
                                                       event_log: EventLog) -> None:
    event = {"type": "track", "event": "search", "anonymousId": "px-2", "messageId": "px-m2",
             "properties": {"query": "red shoes", "resultCount": 3}}
    data = base64.urlsafe_b64encode(orjson.dumps(event)).decode().rstrip("=")
    response = client.get("/v1/p.gif", params={"writeKey": BROWSER_KEY, "data": data})
    assert response.status_code == 200
    assert response.content == PIXEL_GIF
    assert "no-cache" in response.headers["cache-control"]
    row = only_row(event_log)
    assert (row["event"], row["message_id"]) == ("search", "px-m2")
    assert orjson.loads(row["properties"]) == {"query": "red shoes", "result_count": 3}


def test_pixel_with_invalid_event_still_answers_a_gif_and_dead_letters(
        client: TestClient, event_log: EventLog) -> None:
    response = client.get("/v1/p.gif", params={"writeKey": BROWSER_KEY, "event": "click",
                                               "anonymousId": "px-3"})
    assert response.status_code == 400
    assert response.content == PIXEL_GIF
    assert response.headers["x-funnelhouse-reason"] == "schema_violation"
    assert queued_rows(event_log) == []
    assert only_row(event_log, "invalid")["reason"] == "schema_violation"


def test_pixel_with_unknown_key_is_refused_with_a_gif(client: TestClient,
                                                      event_log: EventLog) -> None:
    response = client.get("/v1/p.gif", params={"writeKey": "nope", "event": "click",
                                               "properties.element": "x", "anonymousId": "a"})
    assert response.status_code == 401
    assert response.content == PIXEL_GIF
    assert response.headers["x-funnelhouse-reason"] == "unknown_write_key"
    assert event_log.depth() == 0


# ---------------------------------------------------------------- beacon and gzip

def test_send_beacon_text_plain_with_key_in_query(client: TestClient,
                                                  event_log: EventLog) -> None:
    body = orjson.dumps({"batch": [track(messageId="beacon-1")], "sentAt": "2024-01-01T00:00:00Z"})
    response = client.post(f"/v1/batch?writeKey={BROWSER_KEY}", content=body,
                           headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200, response.text
    assert only_row(event_log)["message_id"] == "beacon-1"


def test_gzip_body_with_content_encoding_header(client: TestClient, event_log: EventLog) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track(messageId="gz-1")]}))
    response = client.post("/v1/batch", content=body,
                           headers={**JSON, **basic(BROWSER_KEY), "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert only_row(event_log)["message_id"] == "gz-1"


def test_gzip_body_recognised_by_magic_bytes_without_header(client: TestClient,
                                                            event_log: EventLog) -> None:
    body = gzip.compress(orjson.dumps(track(messageId="gz-2")))
    response = client.post("/v1/track", content=body, headers={**JSON, **basic(BROWSER_KEY)})
    assert response.status_code == 200, response.text
    assert only_row(event_log)["message_id"] == "gz-2"


# ---------------------------------------------------------------- CORS and origins

def test_cors_preflight_allows_authorization_and_content_type(client: TestClient) -> None:
    response = client.options("/v1/batch", headers={
        "Origin": "https://anywhere.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://anywhere.example")
    allowed = {h.strip().lower() for h in
               response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert int(response.headers["access-control-max-age"]) > 0


def test_cors_headers_on_post(client: TestClient) -> None:
    response = client.post("/v1/track", json=track(), headers={
        **basic(BROWSER_KEY), "Origin": "https://anywhere.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] in ("*", "https://anywhere.example")


def test_cors_headers_on_refusals_too(client: TestClient) -> None:
    # A browser must be able to read why it was refused.
    response = client.post("/v1/track", content=b"{", headers={
        **JSON, **basic(BROWSER_KEY), "Origin": "https://anywhere.example"})
    assert response.status_code == 400
    assert "access-control-allow-origin" in response.headers


def test_origin_limited_key_refuses_another_origin(client: TestClient,
                                                   event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(), headers={
        **basic(ORIGIN_KEY), "Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["reason"] == "origin_not_allowed"
    assert event_log.depth() == 0


def test_origin_limited_key_allows_its_own_origin(client: TestClient,
                                                  event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(), headers={
        **basic(ORIGIN_KEY), "Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200
    assert only_row(event_log)["source"] == "shop"


def test_origin_limited_key_refuses_another_origin_on_the_pixel(client: TestClient,
                                                                event_log: EventLog) -> None:
    response = client.get("/v1/p.gif", params={
        "writeKey": ORIGIN_KEY, "event": "click", "properties.element": "x", "anonymousId": "a"},
        headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.headers["x-funnelhouse-reason"] == "origin_not_allowed"
    assert event_log.depth() == 0


# ---------------------------------------------------------------- partial batches

def test_partial_batch_keeps_valid_events_and_dead_letters_the_rest(
        client: TestClient, event_log: EventLog) -> None:
    batch = [
        track(messageId="ok-1"),
        track(messageId="bad-1", properties={"element_text": "no element"}),
        track(messageId="ok-2"),
        {"type": "track", "event": "purchase", "anonymousId": "a", "messageId": "bad-2",
         "properties": {"order_id": "", "revenue": -1, "currency": "euro", "items": []}},
    ]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["accepted"] == 2
    assert [(r["index"], r["message_id"], r["reason"]) for r in outcome["rejected"]] == [
        (1, "bad-1", "schema_violation"), (3, "bad-2", "schema_violation")]
    assert sorted(r["message_id"] for r in queued_rows(event_log)) == ["ok-1", "ok-2"]

    invalid = {r["message_id"]: r for r in queued_rows(event_log, "invalid")}
    assert set(invalid) == {"bad-1", "bad-2"}
    assert [e["path"] for e in invalid["bad-1"]["errors"]] == ["$.properties.element"]
    assert "element" in invalid["bad-1"]["errors"][0]["message"]
    # Every error of the purchase, not just the first one, each with path and message.
    paths = {e["path"] for e in invalid["bad-2"]["errors"]}
    assert {"$.properties.order_id", "$.properties.revenue", "$.properties.currency",
            "$.properties.items"} <= paths
    assert all(e["message"] for e in invalid["bad-2"]["errors"])
    assert outcome["rejected"][1]["errors"] == invalid["bad-2"]["errors"]
    # The dead-letter row keeps the original payload for replay.
    assert orjson.loads(invalid["bad-2"]["payload"])["properties"]["currency"] == "euro"
    assert invalid["bad-2"]["source"] == "web"
    assert invalid["bad-2"]["event"] == "purchase"


def test_batch_where_every_event_is_invalid_answers_4xx(client: TestClient,
                                                        event_log: EventLog) -> None:
    batch = [track(messageId="x-1", properties={}), track(messageId="x-2", properties={})]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.status_code == 400
    assert [r["index"] for r in response.json()["rejected"]] == [0, 1]
    assert len(queued_rows(event_log, "invalid")) == 2


# ---------------------------------------------------------------- dedup

def test_same_message_id_twice_is_stored_once(client: TestClient, event_log: EventLog) -> None:
    first = client.post("/v1/track", json=track(messageId="dup-1"), headers=basic(BROWSER_KEY))
    second = client.post("/v1/track", json=track(messageId="dup-1"), headers=basic(BROWSER_KEY))
    assert first.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert [r["message_id"] for r in queued_rows(event_log)] == ["dup-1"]


def test_same_message_id_within_one_batch_is_stored_once(client: TestClient,
                                                         event_log: EventLog) -> None:
    batch = [track(messageId="dup-2"), track(messageId="dup-2"), track(messageId="dup-3")]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    assert sorted(r["message_id"] for r in queued_rows(event_log)) == ["dup-2", "dup-3"]


def test_same_message_id_from_two_sources_is_two_events(client: TestClient,
                                                        event_log: EventLog) -> None:
    client.post("/v1/track", json=track(messageId="dup-4"), headers=basic(BROWSER_KEY))
    client.post("/v1/track", json=track(messageId="dup-4"), headers=basic(SERVER_KEY))
    assert sorted(r["source"] for r in queued_rows(event_log)) == ["backend", "web"]


def test_resend_without_message_id_is_deduplicated_by_content(client: TestClient,
                                                              event_log: EventLog) -> None:
    body = {"type": "track", "event": "click", "anonymousId": "a",
            "timestamp": "2024-05-06T10:11:12.345Z", "properties": {"element": "#x"}}
    client.post("/v1/track", json=body, headers=basic(SERVER_KEY))
    again = client.post("/v1/track", json=body, headers=basic(SERVER_KEY))
    assert again.json()["duplicates"] == 1
    rows = queued_rows(event_log)
    assert len(rows) == 1 and rows[0]["message_id"].startswith("fh-")


# ---------------------------------------------------------------- plan policies

def test_default_key_flags_unplanned_events(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(event="wishlist_shared", properties={"a": 1}),
                           headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    row = only_row(event_log)
    assert row["event"] == "wishlist_shared"
    assert row["flags"] == ["unplanned_event"]
    assert row["schema_version"] == ""


def test_default_key_flags_extra_properties(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(properties={"element": "#a", "colour": "red"}),
                           headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    assert only_row(event_log)["flags"] == ["extra_properties"]


def test_strict_key_rejects_unplanned_events(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track", json=track(event="wishlist_shared", properties={}),
                           headers=basic(STRICT_KEY))
    assert response.status_code == 400
    rejection = response.json()["rejected"][0]
    assert rejection["reason"] == "unknown_event"
    assert rejection["errors"][0]["path"] == "$.event"
    assert queued_rows(event_log) == []
    assert only_row(event_log, "invalid")["reason"] == "unknown_event"


def test_strict_key_rejects_extra_properties(client: TestClient, event_log: EventLog) -> None:
    response = client.post("/v1/track",
                           json=track(properties={"element": "#a", "colour": "red", "size": 1}),
                           headers=basic(STRICT_KEY))
    assert response.status_code == 400
    errors = response.json()["rejected"][0]["errors"]
    assert [e["path"] for e in errors] == ["$.properties.colour", "$.properties.size"]
    assert only_row(event_log, "invalid")["reason"] == "unexpected_property"


def test_event_aliases_map_to_plan_names(client: TestClient, event_log: EventLog) -> None:
    body = track(event="Products Searched", properties={"query": "boots"})
    assert client.post("/v1/track", json=body, headers=basic(BROWSER_KEY)).status_code == 200
    assert only_row(event_log)["event"] == "search"


# ---------------------------------------------------------------- operations

def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_the_queue(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["ready"] is True
    assert response.json()["queue"] == "embedded"


def test_metrics_expose_accepted_rejected_latency_and_depth(client: TestClient) -> None:
    client.post("/v1/track", json=track(), headers=basic(BROWSER_KEY))
    client.post("/v1/track", content=b"{", headers={**JSON, **basic(BROWSER_KEY)})
    client.post("/v1/track", json=track(properties={}), headers=basic(BROWSER_KEY))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'funnelhouse_events_accepted_total{source="web"}' in text
    assert 'funnelhouse_events_rejected_total{reason="malformed_json"}' in text
    assert 'funnelhouse_events_rejected_total{reason="schema_violation"}' in text
    assert "# TYPE funnelhouse_request_seconds histogram" in text
    assert 'funnelhouse_request_seconds_bucket{le="+Inf",route="single"}' in text
    assert 'funnelhouse_request_seconds_count{route="single"}' in text
    # One accepted event and one dead-letter row are in the queue; the malformed body
    # stored nothing.
    depth = [line for line in text.splitlines() if line.startswith("funnelhouse_queue_depth ")]
    assert depth == ["funnelhouse_queue_depth 2.0"]


def test_openapi_document_lists_every_ingest_route(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    for path in ("/v1/batch", "/v1/track", "/v1/page", "/v1/screen", "/v1/identify",
                 "/v1/alias", "/v1/group"):
        assert "post" in document["paths"][path], path
    assert "get" in document["paths"]["/v1/p.gif"]
    assert {"401", "413", "415", "429", "503"} <= set(document["paths"]["/v1/batch"]["post"]
                                                      ["responses"])


# ---------------------------------------------------------------- debug view

def _debug(client: TestClient, token: str | None = ADMIN_TOKEN, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/v1/debug/events", params=params, headers=headers)


def test_debug_view_requires_the_admin_token(client: TestClient) -> None:
    assert _debug(client, token=None).status_code == 401
    refused = _debug(client, token="wrong")
    assert refused.status_code == 401
    assert refused.json()["reason"] == "unauthorized"
    assert _debug(client).status_code == 200


def test_debug_view_shows_valid_and_invalid_events_with_errors(client: TestClient) -> None:
    client.post("/v1/batch", headers=basic(BROWSER_KEY), json={"batch": [
        track(messageId="dbg-ok", anonymous_id="p-1"),
        track(messageId="dbg-bad", anonymous_id="p-1", properties={})]})
    events = {e["message_id"]: e for e in _debug(client).json()["events"]}
    assert events["dbg-ok"]["valid"] is True
    assert events["dbg-ok"]["errors"] == []
    assert events["dbg-bad"]["valid"] is False
    assert events["dbg-bad"]["reason"] == "schema_violation"
    assert events["dbg-bad"]["errors"][0]["path"] == "$.properties.element"
    assert events["dbg-bad"]["payload"]["messageId"] == "dbg-bad"


def test_debug_view_filters_by_source_event_and_person(client: TestClient) -> None:
    client.post("/v1/track", json=track(messageId="f-1", anonymous_id="p-1"),
                headers=basic(BROWSER_KEY))
    client.post("/v1/track", json=track(event="search", messageId="f-2", anonymous_id="p-2",
                                        properties={"query": "q"}), headers=basic(BROWSER_KEY))
    client.post("/v1/track", json=track(messageId="f-3", anonymous_id="p-3", userId="u-3"),
                headers=basic(SERVER_KEY))

    def ids(**params: str) -> list[str]:
        return sorted(e["message_id"] for e in _debug(client, **params).json()["events"])

    assert ids() == ["f-1", "f-2", "f-3"]
    assert ids(source="backend") == ["f-3"]
    assert ids(source="web") == ["f-1", "f-2"]
    assert ids(event="search") == ["f-2"]
    assert ids(person="p-1") == ["f-1"]
    assert ids(person="u-3") == ["f-3"]
    assert ids(source="web", event="click") == ["f-1"]


def test_debug_view_can_show_only_invalid_events(client: TestClient) -> None:
    client.post("/v1/batch", headers=basic(BROWSER_KEY), json={"batch": [
        track(messageId="i-ok"), track(messageId="i-bad", properties={})]})
    events = _debug(client, invalid="1").json()["events"]
    assert [e["message_id"] for e in events] == ["i-bad"]


def test_debug_view_newest_first(client: TestClient) -> None:
    for n in range(3):
        client.post("/v1/track", json=track(messageId=f"n-{n}"), headers=basic(BROWSER_KEY))
        time.sleep(0.002)  # distinct received_at; ordering is what is asserted
    events = _debug(client, limit="2").json()["events"]
    assert [e["message_id"] for e in events] == ["n-2", "n-1"]
