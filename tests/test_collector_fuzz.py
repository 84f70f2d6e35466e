"""Property-based: schemathesis against /openapi.json, and hypothesis throwing generated and
malformed JSON, bytes and headers at every endpoint. No 5xx, no hang, and every event the
collector acknowledged is in the queue exactly once (nothing else is).
"""

from __future__ import annotations

import atexit
import base64
import gzip
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import (
    ADMIN_TOKEN,
    ALLOWED_ORIGIN,
    BROWSER_KEY,
    SERVER_KEY,
    make_settings,
)

INGEST_PATHS = ("/v1/batch", "/v1/import", "/v1/track", "/v1/page", "/v1/screen",
                "/v1/identify", "/v1/alias", "/v1/group")


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@dataclass
class Collector:
    client: TestClient
    log: EventLog
    last_seq: int = 0

    def new_records(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self.log.read(self.last_seq, 1_000_000)
        if rows:
            self.last_seq = rows[-1][0]
        return [(record.stream, orjson.loads(record.value)) for _, record in rows]


# One collector for the whole module, built at import: schemathesis reads its OpenAPI
# document while collecting tests (its fixture-based mode does not work with pytest 9).
_FOLDER = Path(tempfile.mkdtemp(prefix="funnelhouse-fuzz-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)  # also when deselected
_SETTINGS = make_settings(_FOLDER / "data")
APP = create_app(_SETTINGS, EmbeddedSink(EventLog(_SETTINGS.queue_path)))


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    log = EventLog(_SETTINGS.queue_path)
    try:
        with TestClient(APP, raise_server_exceptions=False) as client:
            yield Collector(client, log)
    finally:
        log.close()


# ---------------------------------------------------------------- schemathesis

# /v1/sql belongs to `funnelhouse up` (the warehouse), not to the collector app.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/v1/sql")


@pytest.mark.timeout(120)
@schema.parametrize()
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_openapi_operations_never_answer_5xx(case: Any, collector: Collector) -> None:
    headers = dict(case.headers or {})
    if case.path == "/v1/debug/events":
        headers.setdefault("Authorization", f"Bearer {ADMIN_TOKEN}")
    elif case.path.startswith("/v1/"):
        headers.setdefault("Authorization", basic(BROWSER_KEY))
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, content_type_conformance])
    assert response.status_code < 500 or response.status_code == 503, response.text
    # Acknowledged means stored: an ingest 200 left its rows in the queue.
    records = collector.new_records()
    if response.status_code == 200 and case.path in INGEST_PATHS:
        outcome = response.json()
        stored = sum(1 for stream, _ in records if stream == "events")
        assert stored == outcome["accepted"]


# ---------------------------------------------------------------- hypothesis

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
camel_keys = st.sampled_from(["elementText", "productId", "order_id", "x", "URLPath",
                              "query", "resultCount", "revenue", "currency", "items", "element",
                              "depth_percent", "direction", "store_id", "campaign_id"])
event_names = st.sampled_from(["click", "search", "purchase", "Order Completed", "scroll",
                               "swipe", "page_view", "unplanned_thing", "", "store_visit"]) | \
    st.text(max_size=20)
timestamps = st.sampled_from([
    "2024-05-06T10:11:12.345Z", "2999-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "2024-13-45T99:99:99Z", "yesterday", "2024-05-06", "2024-05-06T10:11:12+05:30"]) | \
    st.integers(-(10**16), 10**16) | st.none()


@st.composite
def segment_events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly Segment-shaped, often broken: wrong types, odd names, stray fields."""
    event: dict[str, Any] = {
        "type": draw(st.sampled_from(["track", "page", "screen", "identify", "alias", "group"])
                     | json_values),
        "event": draw(event_names | json_values),
        "properties": draw(st.dictionaries(camel_keys, json_values, max_size=5) | json_values),
    }
    people = draw(st.sampled_from(["anon", "user", "both", "none", "junk"]))
    if people in ("anon", "both"):
        event["anonymousId"] = draw(st.text(min_size=1, max_size=20))
    if people in ("user", "both"):
        event["userId"] = draw(st.text(min_size=1, max_size=20))
    if people == "junk":
        event["anonymousId"] = draw(json_values)
    if draw(st.booleans()):
        event["timestamp"] = draw(timestamps)
    if draw(st.booleans()):
        event["context"] = draw(st.fixed_dictionaries({}, optional={
            "userAgent": st.text(max_size=60),
            "ip": st.sampled_from(["1.2.3.4", "::1", "999.1.1.1", "x"]) | json_values,
            "page": st.fixed_dictionaries({}, optional={
                "url": st.text(max_size=60) | st.just("https://s.example/?utm_source=a&gclid=1"),
                "referrer": st.text(max_size=40)}) | json_values,
            "campaign": st.dictionaries(st.sampled_from(["source", "medium", "name"]),
                                        json_values, max_size=3),
            "library": json_values,
            "channel": json_values,
        }) | json_values)
    if draw(st.booleans()):
        event["previousId"] = draw(st.text(max_size=10) | json_values)
        event["groupId"] = draw(st.text(max_size=10) | json_values)
    event.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    # The test gives every event a fresh id; "none" leaves it to the content hash.
    event["messageId"] = draw(st.sampled_from(["fresh", "fresh", "fresh", "none", "junk"]))
    return event


@dataclass
class Attempt:
    method: str
    path: str
    body: Any                # a JSON value (events inside carry id placeholders), or bytes
    encoding: str            # "json" | "raw" | "gzip" | "gzip-no-header"
    key_place: str           # basic | header | body | query | none | unknown
    headers: dict[str, str]
    repeat_first: bool       # resend the first event of a batch inside the same batch


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@st.composite
def attempts(draw: st.DrawFn) -> Attempt:
    path = draw(st.sampled_from([*INGEST_PATHS, "/v1/p.gif"]))
    batch = path in ("/v1/batch", "/v1/import")
    if batch:
        events = draw(st.lists(segment_events() | json_values, max_size=6))
        shape = draw(st.sampled_from(["object", "object", "list", "junk"]))
        body: Any = {"batch": events} if shape == "object" else events if shape == "list" \
            else draw(json_values)
        if shape == "object" and draw(st.booleans()):
            body["sentAt"] = draw(timestamps)
    else:
        body = draw(segment_events() | json_values)
    encoding = draw(st.sampled_from(["json", "json", "json", "raw", "gzip", "gzip-no-header"]))
    if encoding == "raw":
        body = draw(st.binary(max_size=200) | st.sampled_from([
            b"{", b"\xff\xfe{}", b"\x1f\x8b\x08\x00junk", b"[" * 300 + b"]" * 300, b"",
            b'{"batch": [' + b"1," * 50 + b"1]}"]))
    headers = draw(st.fixed_dictionaries({}, optional={
        "Content-Type": st.sampled_from(["application/json", "text/plain;charset=UTF-8",
                                         "application/json; charset=latin-1", "text/html",
                                         "application/x-json"]) | header_text,
        "Content-Encoding": st.sampled_from(["identity", "br", "deflate"]) | header_text,
        "Origin": st.sampled_from([ALLOWED_ORIGIN, "https://evil.example", "null"]),
        "X-Forwarded-For": header_text,
        "Sec-GPC": st.sampled_from(["1", "0"]),
        "User-Agent": header_text,
    }))
    return Attempt("GET" if path == "/v1/p.gif" else "POST", path, body, encoding,
                   draw(st.sampled_from(["basic", "header", "body", "query", "none",
                                         "unknown"])),
                   headers, draw(st.booleans()))


_ids = itertools.count()


def _with_ids(body: Any, attempt: Attempt) -> tuple[Any, list[Any]]:
    """Give each event a fresh messageId; return the body and its list of events."""
    def one(event: Any) -> Any:
        if not isinstance(event, dict) or event.get("messageId") not in ("fresh", "none",
                                                                          "junk"):
            return event
        event = dict(event)
        marker = event.pop("messageId")
        if marker == "fresh":
            event["messageId"] = f"fz-{next(_ids)}"
        elif marker == "junk":
            event["messageId"] = {"not": "an id"}
        return event

    if attempt.path in ("/v1/batch", "/v1/import"):
        container = body.get("batch") if isinstance(body, dict) else body
        if not isinstance(container, list):
            return body, []
        events = [one(e) for e in container]
        if attempt.repeat_first and events:
            events.append(events[0])
        if isinstance(body, dict):
            return {**body, "batch": events}, events
        return events, events
    event = one(body)
    return event, [event]


def _send(collector: Collector, attempt: Attempt) -> tuple[Any, list[Any]]:
    headers = dict(attempt.headers)
    params: dict[str, str] = {}
    # The server key: no origin list, no rate limit, history allowed, so what a request
    # gets depends on its body and headers alone.
    key = SERVER_KEY if attempt.key_place != "unknown" else "wk_unknown"
    if attempt.key_place == "basic":
        headers["Authorization"] = basic(key)
    elif attempt.key_place == "header":
        headers["X-Write-Key"] = key
    elif attempt.key_place in ("query", "unknown"):
        params["writeKey"] = key

    if attempt.method == "GET":
        # The pixel has no body: its event is flat query fields or `data=` (base64 JSON).
        if attempt.key_place == "body":
            params["writeKey"] = key
        headers.pop("Content-Encoding", None)
        if isinstance(attempt.body, bytes):
            params["data"] = base64.urlsafe_b64encode(attempt.body).decode()
            return collector.client.get(attempt.path, params=params, headers=headers), []
        body, events = _with_ids(attempt.body, attempt)
        if isinstance(body, dict) and attempt.encoding == "json":
            for name, value in body.items():
                if name.isascii() and name not in params:
                    params[name] = value if isinstance(value, str) else orjson.dumps(
                        value).decode()
        else:
            params["data"] = base64.urlsafe_b64encode(orjson.dumps(body)).decode()
        return collector.client.get(attempt.path, params=params, headers=headers), events

    if attempt.encoding == "raw":
        payload, events = attempt.body, []
    else:
        body, events = _with_ids(attempt.body, attempt)
        if attempt.key_place == "body" and isinstance(body, dict):
            body = {**body, "writeKey": key}
        payload = orjson.dumps(body)
        if attempt.encoding.startswith("gzip"):
            payload = gzip.compress(payload)
            if attempt.encoding == "gzip":
                headers["Content-Encoding"] = "gzip"
    headers.setdefault("Content-Type", "application/json")
    return collector.client.post(attempt.path, content=payload, headers=headers,
                                 params=params), events


@pytest.mark.timeout(120)
@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(attempt=attempts())
def test_generated_requests_never_5xx_and_acknowledged_events_are_stored_once(
        collector: Collector, attempt: Attempt) -> None:
    collector.new_records()  # start from here
    response, events = _send(collector, attempt)
    assert response.status_code < 500, (response.status_code, response.text)
    records = collector.new_records()
    stored = [row for stream, row in records if stream == "events"]
    dead = [row for stream, row in records if stream == "invalid"]

    if attempt.method == "GET":
        assert response.headers["content-type"] == "image/gif"
        assert len(stored) + len(dead) <= 1
        if response.status_code != 200:
            assert stored == []
            return
        assert dead == []
        # A 200 stored its event, unless it repeats an earlier one (no id of ours: the
        # content hash is the id, and hypothesis replays examples).
        fresh = bool(events) and isinstance(events[0], dict) and str(
            events[0].get("messageId", "")).startswith("fz-")
        assert len(stored) == 1 or not fresh
        return

    answer = response.json()
    if "accepted" not in answer:
        # Refused as a whole: a named reason, and nothing from it is in the queue.
        assert isinstance(answer.get("reason"), str) and answer["reason"]
        assert 400 <= response.status_code < 500
        assert records == []
        return

    rejected = {r["index"] for r in answer["rejected"]}
    assert len(stored) == answer["accepted"]
    assert len(dead) == len(rejected)
    assert {row["message_id"] for row in dead} == {r["message_id"] for r in answer["rejected"]}
    assert all(r["reason"] and r["errors"] for r in answer["rejected"])
    if answer["accepted"] == 0 and rejected and not answer["duplicates"]:
        assert 400 <= response.status_code < 500
    else:
        assert response.status_code == 200

    # Every acknowledged event with an id we gave is stored, once. (A repeat of a
    # rejected event within the batch is a duplicate of it, not an acceptance.)
    stored_ids = [row["message_id"] for row in stored]
    assert len(stored_ids) == len(set(stored_ids))
    rejected_ids = {r["message_id"] for r in answer["rejected"]}
    if len(events) == len(rejected) + answer["accepted"] + answer["duplicates"]:
        ours = {e["messageId"] for index, e in enumerate(events)
                if index not in rejected and isinstance(e, dict)
                and isinstance(e.get("messageId"), str) and e["messageId"] not in rejected_ids}
        assert ours <= set(stored_ids), (events, answer)
    assert all(row["source"] == "backend" for row in stored)


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([*INGEST_PATHS, "/v1/debug/events", "/healthz", "/readyz",
                             "/metrics", "/openapi.json"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       headers=st.dictionaries(
           st.sampled_from(["Authorization", "X-Write-Key", "Content-Type", "Content-Length",
                            "Content-Encoding", "Origin", "Access-Control-Request-Method",
                            "Access-Control-Request-Headers", "X-Admin-Token", "Sec-GPC",
                            "X-Forwarded-For"]),
           header_text, max_size=5),
       query=st.dictionaries(st.sampled_from(["writeKey", "limit", "source", "invalid",
                                              "person", "event", "data"]),
                             header_text, max_size=3),
       body=st.binary(max_size=100))
def test_any_method_headers_and_query_never_5xx(collector: Collector, path: str, method: str,
                                                headers: dict[str, str],
                                                query: dict[str, str], body: bytes) -> None:
    headers.pop("Content-Length", None)  # a lying length is the HTTP server's business
    response = collector.client.request(method, path, headers=headers, params=query,
                                        content=body if method not in ("GET", "HEAD") else None)
    assert response.status_code < 500, (response.status_code, response.text)
