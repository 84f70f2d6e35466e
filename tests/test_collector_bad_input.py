"""What bad input gets: a defined 4xx with a machine-readable reason, never a 5xx or a
hang; the rest of a batch is kept; and a 503 (never a 2xx) when nothing could be stored.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.base import QueueUnavailable, Record
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import Limits, Settings
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import (
    BROWSER_KEY,
    LIMITED_KEY,
    SERVER_KEY,
    free_port,
    queued_rows,
    track,
    wait_until,
)

JSON = {"Content-Type": "application/json"}
LIMITS = Limits()


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def refused(response: Any, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason, response.text


def post_raw(client: TestClient, path: str, body: bytes, key: str = BROWSER_KEY,
             **headers: str) -> Any:
    return client.post(path, content=body, headers={**JSON, **basic(key), **headers})


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ch_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


# ---------------------------------------------------------------- size

def test_body_over_the_limit_with_content_length_is_413(client: TestClient,
                                                       event_log: EventLog) -> None:
    body = orjson.dumps({"batch": [track(properties={"element": "x" * 4000})] * 200})
    assert len(body) > LIMITS.max_body_bytes
    refused(post_raw(client, "/v1/batch", body), 413, "body_too_large")
    assert event_log.depth() == 0


def test_chunked_body_over_the_limit_without_content_length_is_413(
        client: TestClient, event_log: EventLog) -> None:
    chunk = b" " * 65536

    def chunks() -> Iterator[bytes]:
        yield b'{"batch": ['
        for _ in range(LIMITS.max_body_bytes // len(chunk) + 2):
            yield chunk
        yield b"]}"

    response = client.post("/v1/batch", content=chunks(), headers={**JSON, **basic(BROWSER_KEY)})
    refused(response, 413, "body_too_large")
    assert event_log.depth() == 0


def test_too_many_events_in_one_batch_is_413(client: TestClient, event_log: EventLog) -> None:
    batch = [{}] * (LIMITS.max_events_per_batch + 1)
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    refused(response, 413, "too_many_events")
    assert event_log.depth() == 0


def test_one_oversized_event_is_rejected_alone(client: TestClient, event_log: EventLog) -> None:
    big = track(messageId="big", properties={
        "element": "#x", **{f"field_{n}": "y" * 8000 for n in range(5)}})
    assert len(orjson.dumps(big)) > LIMITS.max_event_bytes
    batch = [track(messageId="small-1"), big, track(messageId="small-2")]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    [rejection] = response.json()["rejected"]
    assert (rejection["index"], rejection["message_id"], rejection["reason"]) == (
        1, "big", "event_too_large")
    assert sorted(r["message_id"] for r in queued_rows(event_log)) == ["small-1", "small-2"]
    [dead] = queued_rows(event_log, "invalid")
    assert dead["reason"] == "event_too_large"
    # The payload kept is cut at the event limit, so the dead-letter row stays bounded.
    assert len(dead["payload"].encode()) <= LIMITS.max_event_bytes


def test_oversized_single_event_is_413(client: TestClient) -> None:
    big = track(properties={"element": "#x", **{f"f{n}": "y" * 8000 for n in range(5)}})
    response = client.post("/v1/track", json=big, headers=basic(BROWSER_KEY))
    assert response.status_code == 413
    assert response.json()["rejected"][0]["reason"] == "event_too_large"


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"inner": value}
    return value


def test_too_deep_nesting_is_rejected_with_its_path(client: TestClient,
                                                    event_log: EventLog) -> None:
    batch = [track(messageId="deep", properties={"element": "#x", "blob": _nested(20)}),
             track(messageId="flat")]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    [rejection] = response.json()["rejected"]
    assert rejection["reason"] == "too_deep"
    assert rejection["errors"][0]["path"].startswith("$.properties.blob.inner")
    assert [r["message_id"] for r in queued_rows(event_log)] == ["flat"]
    assert queued_rows(event_log, "invalid")[0]["reason"] == "too_deep"


def test_nesting_past_what_json_writers_handle_is_too_deep_not_5xx(
        client: TestClient, event_log: EventLog) -> None:
    # 600 levels parse (orjson reads up to 1024) but cannot be written back (255).
    deep = b"[" * 600 + b"]" * 600
    body = (b'{"batch": [{"type": "track", "event": "click", "anonymousId": "a", '
            b'"properties": {"element": "x", "d": ' + deep + b'}}, '
            + orjson.dumps(track(messageId="kept")) + b"]}")
    response = post_raw(client, "/v1/batch", body)
    assert response.status_code == 200, response.text
    assert [r["reason"] for r in response.json()["rejected"]] == ["too_deep"]
    assert [r["message_id"] for r in queued_rows(event_log)] == ["kept"]
    [dead] = queued_rows(event_log, "invalid")
    assert (dead["reason"], dead["event"]) == ("too_deep", "click")
    # A deep non-object is refused as such, and the debug view still renders.
    response = post_raw(client, "/v1/track", deep)
    assert response.status_code == 400
    assert response.json()["rejected"][0]["reason"] == "not_an_object"


def test_overlong_string_is_rejected_with_its_path(client: TestClient,
                                                   event_log: EventLog) -> None:
    body = track(messageId="long", properties={
        "element": "#x", "element_text": "z" * (LIMITS.max_string_length + 1)})
    response = client.post("/v1/track", json=body, headers=basic(BROWSER_KEY))
    assert response.status_code == 400
    rejection = response.json()["rejected"][0]
    assert rejection["reason"] == "string_too_long"
    assert rejection["errors"][0]["path"] == "$.properties.element_text"
    assert queued_rows(event_log) == []
    assert queued_rows(event_log, "invalid")[0]["message_id"] == "long"


# ---------------------------------------------------------------- encoding and format

@pytest.mark.parametrize("body", [b"{", b'{"batch": [}', b"nope", b"   ", b"", b'{"a": NaN}'])
def test_malformed_json_is_400(body: bytes, client: TestClient, event_log: EventLog) -> None:
    refused(post_raw(client, "/v1/batch", body), 400, "malformed_json")
    assert event_log.depth() == 0


@pytest.mark.parametrize("body", [
    b'{"event": "click", "properties": {"element": "\xff\xfe"}}',
    b'{"event": "caf\xe9"}',                       # latin-1 bytes sent as if UTF-8
    '{"event": "click"}'.encode("utf-16"),
])
def test_invalid_utf8_is_400_bad_encoding(body: bytes, client: TestClient,
                                          event_log: EventLog) -> None:
    refused(post_raw(client, "/v1/track", body), 400, "bad_encoding")
    assert event_log.depth() == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=iso-8859-1",
                                          "text/plain; charset=utf-16",
                                          'application/json; charset="windows-1252"'])
def test_non_utf8_charset_is_415(content_type: str, client: TestClient) -> None:
    response = client.post("/v1/track", content=orjson.dumps(track()),
                           headers={**basic(BROWSER_KEY), "Content-Type": content_type})
    refused(response, 415, "unsupported_content_type")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8",
                                          "text/plain;charset=UTF-8", "application/json"])
def test_utf8_charsets_are_accepted(content_type: str, client: TestClient) -> None:
    response = client.post("/v1/track", content=orjson.dumps(track()),
                           headers={**basic(BROWSER_KEY), "Content-Type": content_type})
    assert response.status_code == 200


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded", "image/png"])
def test_wrong_content_type_is_415(content_type: str, client: TestClient,
                                   event_log: EventLog) -> None:
    response = client.post("/v1/track", content=orjson.dumps(track()),
                           headers={**basic(BROWSER_KEY), "Content-Type": content_type})
    refused(response, 415, "unsupported_content_type")
    assert event_log.depth() == 0


def test_gzip_bomb_is_413_at_the_decompressed_cap(client: TestClient,
                                                  event_log: EventLog) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (LIMITS.max_decompressed_bytes * 4) + b"]}")
    assert len(bomb) < LIMITS.max_body_bytes  # small on the wire, huge inflated
    response = post_raw(client, "/v1/batch", bomb, **{"Content-Encoding": "gzip"})
    refused(response, 413, "body_too_large")
    assert event_log.depth() == 0


@pytest.mark.parametrize("body", [
    b"\x1f\x8b\x08\x00garbage-after-the-magic",
    gzip.compress(orjson.dumps(track()))[:-6],      # truncated: no CRC and size trailer
    b"\x1f\x8b",
], ids=["garbage", "truncated", "magic-only"])
def test_corrupt_gzip_is_400_bad_compression(body: bytes, client: TestClient,
                                             event_log: EventLog) -> None:
    refused(post_raw(client, "/v1/track", body, **{"Content-Encoding": "gzip"}), 400,
            "bad_compression")
    # Recognised by magic bytes alone, it is refused the same way.
    refused(post_raw(client, "/v1/track", body), 400, "bad_compression")
    assert event_log.depth() == 0


def test_unsupported_content_encoding_is_400(client: TestClient) -> None:
    response = post_raw(client, "/v1/track", orjson.dumps(track()), **{"Content-Encoding": "br"})
    refused(response, 400, "bad_compression")


# ---------------------------------------------------------------- who is sending

def test_unknown_write_key_is_401(client: TestClient, event_log: EventLog) -> None:
    refused(client.post("/v1/track", json=track(), headers=basic("wk_nobody")), 401,
            "unknown_write_key")
    refused(client.post("/v1/track", json=track(), headers={"X-Write-Key": "wk_nobody"}), 401,
            "unknown_write_key")
    assert event_log.depth() == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic !!!not-base64"},
                                     {"Authorization": "Basic " + base64.b64encode(b":").decode()},
                                     {"Authorization": "Bearer something"}])
def test_missing_write_key_is_401(headers: dict[str, str], client: TestClient,
                                  event_log: EventLog) -> None:
    response = client.post("/v1/batch", json={"batch": [track()]}, headers=headers)
    refused(response, 401, "unknown_write_key")
    assert "no write key" in response.json()["error"]
    assert event_log.depth() == 0


def test_non_string_write_key_in_body_is_401(client: TestClient) -> None:
    refused(client.post("/v1/batch", json={"writeKey": 42, "batch": [track()]}), 401,
            "unknown_write_key")


def test_rate_limit_is_429_with_retry_after(client: TestClient, event_log: EventLog,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The limiter's clock stands still, so the burst is what it is however slow the
    # machine: 5 events/s with a one-second burst lets exactly 5 single events through.
    monkeypatch.setattr("funnelhouse.collector.limits.time.monotonic", lambda: 1000.0)
    statuses = [client.post("/v1/track", json=track(), headers=basic(LIMITED_KEY))
                for _ in range(8)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429] * 3
    limited = statuses[5:]
    assert {r.json()["reason"] for r in limited} == {"rate_limited"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert len(queued_rows(event_log)) == 5
    # Other keys are not affected.
    assert client.post("/v1/track", json=track(), headers=basic(BROWSER_KEY)).status_code == 200


def test_batch_bigger_than_the_burst_passes_after_retry_after(
        client: TestClient, event_log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("funnelhouse.collector.limits.time.monotonic", lambda: clock[0])
    batch = {"batch": [track(messageId=f"r-{n}") for n in range(20)]}  # 4 s worth at 5/s
    assert client.post("/v1/batch", json=batch, headers=basic(LIMITED_KEY)).status_code == 200
    second = {"batch": [track(messageId=f"s-{n}") for n in range(20)]}
    limited = client.post("/v1/batch", json=second, headers=basic(LIMITED_KEY))
    refused(limited, 429, "rate_limited")
    clock[0] += int(limited.headers["Retry-After"])
    assert client.post("/v1/batch", json=second, headers=basic(LIMITED_KEY)).status_code == 200
    assert len(queued_rows(event_log)) == 40


# ---------------------------------------------------------------- shape

@pytest.mark.parametrize("body", [{"batch": {"0": track()}}, {"batch": "events"}, {"batch": None},
                                  {"events": [track()]}, "a string", 42, None])
def test_batch_that_is_not_a_list_is_400(body: Any, client: TestClient,
                                         event_log: EventLog) -> None:
    refused(client.post("/v1/batch", content=orjson.dumps(body),
                        headers={**JSON, **basic(BROWSER_KEY)}), 400, "bad_batch")
    assert event_log.depth() == 0


def test_events_that_are_not_objects_are_rejected_each(client: TestClient,
                                                       event_log: EventLog) -> None:
    batch = [1, "click", None, [track()], True, track(messageId="real")]
    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    rejected = response.json()["rejected"]
    assert [(r["index"], r["reason"]) for r in rejected] == [
        (n, "not_an_object") for n in range(5)]
    assert rejected[2]["errors"] == [{"path": "$[2]",
                                      "message": "an event must be a JSON object"}]
    assert [r["message_id"] for r in queued_rows(event_log)] == ["real"]
    assert len(queued_rows(event_log, "invalid")) == 5


def test_single_event_that_is_not_an_object_is_400(client: TestClient) -> None:
    response = client.post("/v1/track", json=[track()], headers=basic(BROWSER_KEY))
    assert response.status_code == 400
    assert response.json()["rejected"][0]["reason"] == "not_an_object"


@pytest.mark.parametrize("message_type", [["track"], {"a": 1}, 7, "purchase"])
def test_odd_message_types_in_a_batch_are_envelope_violations(
        message_type: Any, client: TestClient, event_log: EventLog) -> None:
    body = {"batch": [{**track(), "type": message_type}, track(messageId="fine")]}
    response = client.post("/v1/batch", json=body, headers=basic(BROWSER_KEY))
    assert response.status_code == 200, response.text
    assert [r["reason"] for r in response.json()["rejected"]] == ["envelope_violation"]
    assert [r["message_id"] for r in queued_rows(event_log)] == ["fine"]


@pytest.mark.parametrize("fields", [
    {"anonymousId": None, "userId": None},             # nobody
    {"event": ""},                                     # no name
    {"properties": ["element"]},                       # properties not an object
    {"timestamp": 1714990000000},                      # not a string
    {"context": "web"},
    {"messageId": "m" * 129},                          # too long an id
], ids=["no-person", "empty-event", "list-properties", "numeric-timestamp", "string-context",
        "long-message-id"])
def test_wrong_types_in_the_envelope_are_rejected_not_crashed(
        fields: dict[str, Any], client: TestClient, event_log: EventLog) -> None:
    body = {**track(), **fields}
    response = client.post("/v1/track", json=body, headers=basic(BROWSER_KEY))
    if fields.get("messageId"):
        # An id past 128 characters is replaced by a content hash, not refused.
        assert response.status_code == 200
        assert queued_rows(event_log)[0]["message_id"].startswith("fh-")
        return
    assert response.status_code == 400, response.text
    assert response.json()["rejected"][0]["reason"] == "envelope_violation"
    assert queued_rows(event_log) == []


def test_bad_debug_limit_is_not_a_5xx(client: TestClient) -> None:
    # Named as a bad parameter (400), not silently replaced by the default.
    response = client.get("/v1/debug/events", params={"limit": "lots"},
                          headers={"Authorization": "Bearer admintok"})
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_parameter"


def test_pixel_with_a_number_past_64_bits_is_stored(client: TestClient,
                                                    event_log: EventLog) -> None:
    response = client.get("/v1/p.gif", params={
        "writeKey": BROWSER_KEY, "event": "click", "anonymousId": "a",
        "properties.element": "#x", "properties.big": "123456789012345678901234567890"})
    assert response.status_code == 200
    assert orjson.loads(queued_rows(event_log)[0]["properties"])["big"] == pytest.approx(1.2345e29,
                                                                                         rel=1e-3)


@pytest.mark.parametrize("data", ["!!!", base64.b64encode(b"\xff\xfe").decode(), "{oops",
                                  base64.b64encode(b"[1, 2]").decode()])
def test_pixel_with_bad_data_param_answers_a_gif_with_a_reason(data: str,
                                                               client: TestClient) -> None:
    response = client.get("/v1/p.gif", params={"writeKey": BROWSER_KEY, "data": data})
    assert response.status_code == 400
    assert response.headers["content-type"] == "image/gif"
    assert response.headers["x-funnelhouse-reason"] in ("malformed_json", "bad_batch")


# ---------------------------------------------------------------- time

def test_far_future_timestamp_is_accepted_clamped_and_flagged(client: TestClient,
                                                              event_log: EventLog) -> None:
    future = datetime.now(UTC) + timedelta(days=400)
    response = client.post("/v1/track", json=track(timestamp=iso(future)),
                           headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    row = queued_rows(event_log)[0]
    assert row["flags"] == ["timestamp_clamped_future"]
    assert row["timestamp"] == row["received_at"]
    assert ch_time(row["original_timestamp"]).date() == future.date()  # kept as sent


def test_small_future_skew_is_not_clamped(client: TestClient, event_log: EventLog) -> None:
    soon = datetime.now(UTC) + timedelta(hours=2)
    client.post("/v1/track", json=track(timestamp=iso(soon)), headers=basic(BROWSER_KEY))
    row = queued_rows(event_log)[0]
    assert row["flags"] == []
    assert abs(ch_time(row["timestamp"]) - soon) < timedelta(seconds=1)


def test_ancient_timestamp_is_clamped_for_every_key(client: TestClient,
                                                    event_log: EventLog) -> None:
    for key in (BROWSER_KEY, SERVER_KEY):
        response = client.post("/v1/track", json=track(timestamp="1995-03-01T12:00:00Z"),
                               headers=basic(key))
        assert response.status_code == 200
    rows = queued_rows(event_log)
    assert [r["flags"] for r in rows] == [["timestamp_clamped_past"]] * 2
    assert all(r["timestamp"] == r["received_at"] for r in rows)
    assert all(r["original_timestamp"].startswith("1995-03-01 12:00:00") for r in rows)


@pytest.mark.parametrize("path", ["/v1/import", "/v1/batch"])
def test_server_key_may_import_history_but_browser_key_may_not(
        path: str, client: TestClient, event_log: EventLog) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=365)
    batch = [track(messageId="hist", timestamp=iso(long_ago))]
    assert client.post(path, json={"batch": batch}, headers=basic(SERVER_KEY)).status_code == 200
    assert client.post(path, json={"batch": batch}, headers=basic(BROWSER_KEY)).status_code == 200
    rows = {r["source"]: r for r in queued_rows(event_log)}
    assert rows["backend"]["flags"] == []
    assert abs(ch_time(rows["backend"]["timestamp"]) - long_ago) < timedelta(seconds=1)
    assert rows["web"]["flags"] == ["timestamp_clamped_past"]
    assert rows["web"]["timestamp"] == rows["web"]["received_at"]


def test_unparseable_timestamp_falls_back_to_received_at(client: TestClient,
                                                         event_log: EventLog) -> None:
    # Matches the envelope's shape but is no real time (month 13).
    response = client.post("/v1/track", json=track(timestamp="2024-13-45T10:00:00Z"),
                           headers=basic(BROWSER_KEY))
    assert response.status_code == 200
    row = queued_rows(event_log)[0]
    assert row["timestamp"] == row["received_at"]


# ---------------------------------------------------------------- nothing stored → 503

class BrokenSink:
    """A queue that cannot store anything."""

    def __init__(self) -> None:
        self.calls = 0

    async def start(self) -> None:
        return None

    async def publish(self, records: Sequence[Record]) -> None:
        self.calls += 1
        raise QueueUnavailable("disk on fire")

    async def stop(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"ready": False, "depth": 0, "queue": "broken"}


def test_queue_that_cannot_store_answers_503_never_2xx(settings: Settings) -> None:
    sink = BrokenSink()
    with TestClient(create_app(settings, sink)) as client:  # type: ignore[arg-type]
        for path, body in (("/v1/track", track()), ("/v1/batch", {"batch": [track()] * 3})):
            response = client.post(path, json=body, headers=basic(BROWSER_KEY))
            refused(response, 503, "queue_unavailable")
            assert response.headers["Retry-After"]
        # Invalid events also need the queue (dead-letter rows): no 2xx/4xx pretence.
        response = client.post("/v1/track", json=track(properties={}), headers=basic(BROWSER_KEY))
        refused(response, 503, "queue_unavailable")
        gif = client.get("/v1/p.gif", params={"writeKey": BROWSER_KEY, "event": "click",
                                              "anonymousId": "a", "properties.element": "x"})
        assert gif.status_code == 503
        assert client.get("/readyz").status_code == 503
    assert sink.calls == 4


def test_unwritable_event_log_answers_503_and_a_retry_is_stored_later(
        settings: Settings, event_log: EventLog) -> None:
    writer = EventLog(settings.queue_path)
    with TestClient(create_app(settings, EmbeddedSink(writer))) as client:
        # The file refuses writes (as a read-only file or full disk would; we run as root,
        # so file permissions would not stop us).
        writer._db.execute("PRAGMA query_only = ON")
        body = {"batch": [track(messageId="w-1"), track(messageId="w-2")]}
        response = client.post("/v1/batch", json=body, headers=basic(BROWSER_KEY))
        refused(response, 503, "queue_unavailable")
        assert "readonly" in response.json()["error"] or "read" in response.json()["error"]
        assert client.get("/readyz").status_code == 503
        assert event_log.depth() == 0

        writer._db.execute("PRAGMA query_only = OFF")
        # Ready again without a request having to succeed first (a load balancer that
        # routes by /readyz would otherwise never send one).
        assert client.get("/readyz").status_code == 200
        # The refused ids were not remembered as seen: the client's retry is stored.
        retry = client.post("/v1/batch", json=body, headers=basic(BROWSER_KEY))
        assert retry.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
        assert client.get("/readyz").status_code == 200
    assert sorted(r["message_id"] for r in queued_rows(event_log)) == ["w-1", "w-2"]


def test_read_only_data_folder_file_answers_503(tmp_path: Path, settings: Settings) -> None:
    # A log opened read-only (mode=ro) is what a remounted read-only disk looks like.
    EventLog(settings.queue_path).close()
    writer = EventLog(settings.queue_path)
    writer._db.close()
    import sqlite3
    writer._db = sqlite3.connect(f"file:{settings.queue_path}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
    with TestClient(create_app(settings, EmbeddedSink(writer))) as client:
        response = client.post("/v1/track", json=track(), headers=basic(BROWSER_KEY))
        refused(response, 503, "queue_unavailable")


# ---------------------------------------------------------------- over a real socket

@pytest.fixture
def served(settings: Settings, event_log: EventLog) -> Iterator[str]:
    """The collector under uvicorn on a free port, in a thread of this process."""
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, interval=0.02)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def _exchange(address: str, head: bytes, body_parts: Sequence[bytes] = ()) -> bytes:
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered early and closed: that is allowed
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < _expected_length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _expected_length(answer: bytes) -> int:
    head, _, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(head) + 4


def test_declared_oversized_body_is_answered_413_without_waiting_for_it(served: str) -> None:
    # Headers promise 50 MB; only a few bytes follow. A server that waited for the body
    # would hang here until the socket timeout (10 s) fails the test.
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic " + base64.b64encode(f"{BROWSER_KEY}:".encode())
            + b"\r\nContent-Length: 52428800\r\n\r\n")
    answer = _exchange(served, head, [b'{"batch": ['])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body_too_large" in answer


def test_chunked_oversized_body_over_a_socket_is_413(served: str) -> None:
    head = (b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic " + base64.b64encode(f"{BROWSER_KEY}:".encode())
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    parts = [frame] * (LIMITS.max_body_bytes // len(chunk) + 4) + [b"0\r\n\r\n"]
    answer = _exchange(served, head, parts)  # bounded by the socket timeout
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body_too_large" in answer


def test_slow_client_that_stops_sending_does_not_block_others(served: str,
                                                             event_log: EventLog) -> None:
    host, port = served.split(":")
    stalled = socket.create_connection((host, int(port)), timeout=10)
    try:
        stalled.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 500\r\n\r\n{\"event\":")
        body = orjson.dumps(track(messageId="while-stalled"))
        head = (b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Basic " + base64.b64encode(f"{BROWSER_KEY}:".encode())
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        answer = _exchange(served, head, [body])
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        stalled.close()
    assert [r["message_id"] for r in queued_rows(event_log)] == ["while-stalled"]


def test_gzipped_json_labelled_as_a_form_is_json(client: TestClient,
                                                 event_log: EventLog) -> None:
    """rudder-sdk-node's axios labels its gzipped JSON x-www-form-urlencoded."""
    response = client.post("/v1/batch", content=gzip.compress(orjson.dumps({"batch": [track()]})),
                           headers={**basic(SERVER_KEY), "Content-Encoding": "gzip",
                                    "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert event_log.depth() == 1
