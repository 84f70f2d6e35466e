"""Dead letters replay or are skipped; a messageId's first copy wins; refusals answered honestly."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import PACKAGE_ROOT, Settings
from funnelhouse.jobs.replay import replay_invalid
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.embedded import EmbeddedSource
from funnelhouse.models.run import run_models
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate
from tests.conftest import (
    ADMIN_TOKEN,
    BROWSER_KEY,
    SERVER_KEY,
    Funnelhouse,
    make_settings,
    queued_rows,
    track,
    wait_until,
)


def basic(key: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(client: TestClient, path: str, body: Any, key: str = BROWSER_KEY) -> httpx.Response:
    return client.post(path, json=body, headers=basic(key))


def post_raw(client: TestClient, path: str, body: bytes, key: str = BROWSER_KEY) -> httpx.Response:
    return client.post(path, content=body, headers={**basic(key),
                                                    "Content-Type": "application/json"})


def deep_event(levels: int, message_id: str | None = None) -> bytes:
    """A click whose properties nest `levels` lists deep (orjson writes only 255)."""
    head = b'{"type": "track", "event": "click", "anonymousId": "attacker", '
    if message_id:
        head += b'"messageId": "' + message_id.encode() + b'", '
    return head + b'"properties": {"element": "x", "d": ' + b"[" * levels + b"]" * levels + b"}}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    plan_dir = tmp_path / "plan"
    shutil.copytree(PACKAGE_ROOT / "schemas", plan_dir)
    return make_settings(tmp_path / "data", plan_dir=plan_dir)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def warehouse(settings: Settings) -> Iterator[ChdbWarehouse]:
    wh = ChdbWarehouse(settings.warehouse_dir)
    migrate(wh, settings.sql_dir / "migrations")
    yield wh
    wh.close()  # chdb serves one folder per process: the next test opens its own


def load_all(settings: Settings, warehouse: ChdbWarehouse) -> None:
    loader = Loader(EmbeddedSource(EventLog(settings.queue_path)), warehouse,
                    batch_rows=10_000, batch_seconds=0.01)
    asyncio.run(loader.drain(30))


# ------------------------------------------------ finding 13a: identical invalid events

def test_identical_invalid_events_are_each_rejected_not_duplicates(
        client: TestClient, settings: Settings) -> None:
    # No messageId: the id is a hash of the payload, so all 2,500 share one id.
    bad = {"type": "track", "event": "click", "anonymousId": "a", "properties": {}}
    response = post(client, "/v1/batch", {"batch": [bad] * 2500})
    assert response.status_code == 400, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"]) == (0, 0)
    assert [r["index"] for r in answer["rejected"]] == list(range(2500))
    assert {r["reason"] for r in answer["rejected"]} == {"schema_violation"}
    assert all(r["errors"] == answer["rejected"][0]["errors"] for r in answer["rejected"])
    # Every refusal listed is dead-lettered, as the README promises.
    dead = queued_rows(EventLog(settings.queue_path), "invalid")
    assert len(dead) == 2500
    assert {row["message_id"] for row in dead} == {answer["rejected"][0]["message_id"]}


@pytest.mark.parametrize("variant", ["same_message_id", "too_large", "too_long_string",
                                     "not_an_object", "too_deep"])
def test_identical_refusals_of_every_kind_are_all_listed(
        variant: str, client: TestClient, settings: Settings) -> None:
    events: dict[str, Any] = {
        "same_message_id": track(messageId="same", properties={}),
        "too_large": track(messageId="big", properties={"element": "x" * 40_000}),
        "too_long_string": track(properties={"element": "#b", "t": "y" * 9000}),
        "not_an_object": "click",
    }
    if variant == "too_deep":
        one = deep_event(600)
        body = b'{"batch": [' + b", ".join([one] * 5) + b"]}"
        response = post_raw(client, "/v1/batch", body)
    else:
        response = post(client, "/v1/batch", {"batch": [events[variant]] * 5})
    assert response.status_code in (400, 413), response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"]) == (0, 0)
    assert [r["index"] for r in answer["rejected"]] == [0, 1, 2, 3, 4]
    assert all(r["message_id"] for r in answer["rejected"])  # even a non-object gets an id
    assert len(queued_rows(EventLog(settings.queue_path), "invalid")) == 5


def test_corrected_copy_after_a_refusal_is_accepted_but_a_bad_copy_after_a_good_one_is_not(
        client: TestClient, settings: Settings) -> None:
    fixed = track(messageId="fix-me")
    broken = {**fixed, "properties": {}}
    answer = post(client, "/v1/batch", {"batch": [broken, fixed]}).json()
    assert (answer["accepted"], answer["duplicates"]) == (1, 0)
    assert [r["index"] for r in answer["rejected"]] == [0]
    # First copy wins: once accepted, a different payload under the id is a duplicate.
    answer = post(client, "/v1/batch", {"batch": [track(messageId="kept-1"),
                                                  {**track(messageId="kept-1"),
                                                   "properties": {}}]}).json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 1, [])
    stored = queued_rows(EventLog(settings.queue_path))
    assert sorted(row["message_id"] for row in stored) == ["fix-me", "kept-1"]


# ------------------------------------------------ finding 7: one dead letter blocks replay

def test_poisoned_dead_letters_are_skipped_with_reasons_and_the_rest_replay(
        client: TestClient, settings: Settings, warehouse: ChdbWarehouse) -> None:
    # Planted with the public browser key: every kind of refusal, plus a fixable one.
    for levels in (600, 40):                       # past orjson's writer, and just past 12
        assert post_raw(client, "/v1/track", deep_event(levels, f"deep-{levels}")
                        ).status_code == 400
    post(client, "/v1/batch", {"batch": [1, "click", None, [track()], True]})
    post(client, "/v1/track", track(messageId="huge", properties={"element": "x" * 40_000}))
    post(client, "/v1/track", track(messageId="long", properties={"element": "y" * 9000}))
    post(client, "/v1/track", track(messageId="needs-fix", properties={"selector": "#buy"}))
    # Broken UTF-8 and lone surrogates never become dead letters: refused as a request.
    for body in (b'{"type":"track","event":"click","properties":{"element":"\xff\xfe"}}',
                 b'{"type":"track","event":"click","properties":{"element":"\\ud800"}}'):
        response = post_raw(client, "/v1/track", body)
        assert response.status_code == 400 and response.json()["reason"] in (
            "bad_encoding", "malformed_json")
    load_all(settings, warehouse)
    # And rows as stored before this fix: an empty payload for the deepest events
    # (what blocked every replay), a cut-off one, a request column that is not JSON.
    # (Received an hour ago: events_invalid's 90-day TTL would drop an older row.)
    received = time.strftime("%Y-%m-%d %H:%M:%S.000", time.gmtime(time.time() - 3600))
    old = {"received_at": received, "source": "web", "type": "track",
           "event": "click", "errors": [{"path": "$", "message": "old"}], "schema_version": "",
           "request": "{}"}
    warehouse.insert_json_rows("events_invalid", [
        orjson.dumps({**old, "message_id": "old-empty", "reason": "too_deep", "payload": ""}),
        orjson.dumps({**old, "message_id": "old-cut", "reason": "event_too_large",
                      "payload": '{"type":"track","event":"cli'}),
        orjson.dumps({**old, "message_id": "old-request", "reason": "schema_violation",
                      "payload": orjson.dumps(track(messageId="old-request",
                                                    properties={"selector": "#x"})).decode(),
                      "request": "not json ["}),
    ])
    dead = {row[0]: row[1] for row in warehouse.query(
        "SELECT message_id, payload_truncated FROM events_invalid").rows}
    # The deepest event is stored with its first levels, flagged, not as "".
    assert dead["deep-600"] == 1 and dead["huge"] == 1 and dead["needs-fix"] == 0
    payload = warehouse.query("SELECT payload FROM events_invalid "
                              "WHERE message_id = 'deep-600'").scalar()
    assert orjson.loads(payload)["anonymousId"] == "attacker"

    # Fix the plan: click no longer requires `element`.
    schema_path = settings.plan_dir / "events" / "click" / "1-0-0.json"
    schema = json.loads(schema_path.read_text())
    schema["required"] = []
    schema_path.write_text(json.dumps(schema))
    result = replay_invalid(warehouse, settings, TrackingPlan.load(settings.plan_dir))

    skipped = {row["message_id"]: row["reason"] for row in result.skipped_rows}
    assert skipped == {"deep-600": "payload_truncated", "huge": "payload_truncated",
                       "old-empty": "payload_not_json", "old-cut": "payload_not_json"}
    assert result.moved == 2                       # needs-fix and old-request
    assert result.still_invalid == result.examined - 2 - 4
    moved = warehouse.query("SELECT message_id FROM events_raw ORDER BY message_id").rows
    assert moved == [["needs-fix"], ["old-request"]]
    reasons = dict(warehouse.query("SELECT message_id, reason FROM invalid_skipped").rows)
    assert reasons == skipped

    # Runs again cleanly: nothing skipped twice, nothing moved twice.
    again = replay_invalid(warehouse, settings, TrackingPlan.load(settings.plan_dir))
    assert (again.moved, again.skipped) == (0, 0)
    assert again.examined == result.still_invalid
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 2


def test_replay_does_not_store_a_second_copy_of_a_stored_message_id(
        client: TestClient, settings: Settings, warehouse: ChdbWarehouse) -> None:
    # A valid event, then (past the window) an invalid one reusing its id: fixing the
    # plan must not let the dead letter swap or double the stored event.
    assert post(client, "/v1/track", track(messageId="taken")).json()["accepted"] == 1
    load_all(settings, warehouse)
    impostor = track("click", "someone-else", messageId="taken", properties={"selector": "#x"})
    replay_settings = settings.replace(dedup_window_seconds=0)
    with TestClient(create_app(replay_settings,
                               EmbeddedSink(EventLog(settings.queue_path)))) as later:
        assert post(later, "/v1/track", impostor).status_code == 400
    load_all(settings, warehouse)
    schema_path = settings.plan_dir / "events" / "click" / "1-0-0.json"
    schema = json.loads(schema_path.read_text())
    schema["required"] = []
    schema_path.write_text(json.dumps(schema))
    result = replay_invalid(warehouse, settings, TrackingPlan.load(settings.plan_dir))
    assert result.moved == 0
    assert result.skipped_rows == [{"message_id": "taken", "source": "web",
                                    "reason": "message_id_already_stored"}]
    assert warehouse.query("SELECT anonymous_id FROM events_raw FINAL").rows == [["anon-1"]]


# ------------------------------------------------ finding 8: a reused messageId swaps the event

def element_of(rows: list[dict[str, Any]]) -> list[str]:
    return [json.loads(row["properties"])["element"] for row in rows]


def test_reused_message_id_after_restart_and_after_the_window_never_swaps_the_event(
        tmp_path: Path) -> None:
    now = time.time()
    original = track("click", "victim", messageId="X-1",
                     timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
                     properties={"element": "#A", "element_text": "A"})
    # The impostor claims another person and another day (any timestamp: server key).
    impostor = track("click", "attacker", messageId="X-1",
                     timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                             time.gmtime(now - 3 * 86400)),
                     properties={"element": "#B", "element_text": "B"})
    same_day = {**impostor, "timestamp": original["timestamp"],
                "properties": {"element": "#C", "element_text": "C"}}
    data_dir = tmp_path / "data"
    stored_sql = ("SELECT anonymous_id, properties FROM events_raw FINAL "
                  "WHERE message_id = 'X-1'")

    first = Funnelhouse(data_dir).start()
    try:
        assert first.post("/v1/track", original, SERVER_KEY).json()["accepted"] == 1
        wait_until(lambda: first.sql(stored_sql))
    finally:
        assert first.stop() == 0

    # A real restart: the in-memory window is gone, the one on disk is not.
    second = Funnelhouse(data_dir).start()
    try:
        for copy in (impostor, same_day):
            answer = second.post("/v1/track", copy, SERVER_KEY).json()
            assert answer == {"accepted": 0, "duplicates": 1, "rejected": []}
    finally:
        assert second.stop() == 0

    # Past the window the collector accepts the copy; the loader drops it, as the
    # id is already stored (accepted-but-dropped).
    third = Funnelhouse(data_dir, env={"FUNNELHOUSE_DEDUP_WINDOW_SECONDS": "1"}).start()
    try:
        for copy in (impostor, same_day):
            time.sleep(1.2)                        # past the (1 s) window each time
            assert third.post("/v1/track", copy, SERVER_KEY).json()["accepted"] == 1
        marker = track("click", "marker", messageId="after-the-copies")
        assert third.post("/v1/track", marker).json()["accepted"] == 1
        wait_until(lambda: third.sql("SELECT 1 FROM events_raw "
                                     "WHERE message_id = 'after-the-copies'"))
        rows = third.sql(stored_sql)
        assert [r["anonymous_id"] for r in rows] == ["victim"] and element_of(rows) == ["#A"]
        assert third.sql("SELECT count() AS n FROM events_raw WHERE message_id = 'X-1'") == [
            {"n": 1}]
        run = httpx.post(f"{third.url}/v1/admin/models/run", json={"full_refresh": True},
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=300)
        assert run.status_code == 200, run.text
        modelled = third.sql("SELECT anonymous_id, properties FROM behavior_events "
                             "WHERE message_id = 'X-1'")
        assert [r["anonymous_id"] for r in modelled] == ["victim"]
        assert element_of(modelled) == ["#A"]
    finally:
        assert third.stop() == 0


def test_events_raw_keeps_the_first_received_copy_on_merge_and_the_models_agree(
        settings: Settings, warehouse: ChdbWarehouse) -> None:
    # Copies that race past the loader's check (inserted directly): the engine keeps
    # the earliest received, as the models do, whatever order they were inserted in.
    def row(element: str, received: str, anonymous_id: str) -> bytes:
        return orjson.dumps({
            "message_id": "race-1", "type": "track", "event": "click", "source": "web",
            "anonymous_id": anonymous_id, "timestamp": "2026-03-01 10:00:00.000",
            "original_timestamp": "2026-03-01 10:00:00.000",
            "sent_at": "2026-03-01 10:00:00.000", "received_at": received,
            "properties": orjson.dumps({"element": element}).decode(),
            "traits": "{}", "context": "{}"})
    warehouse.insert_json_rows("events_raw", [row("#late", "2026-03-01 10:05:00.000", "b")])
    warehouse.insert_json_rows("events_raw", [row("#first", "2026-03-01 10:00:01.000", "a")])
    warehouse.execute("OPTIMIZE TABLE events_raw FINAL")
    assert warehouse.query("SELECT anonymous_id FROM events_raw").rows == [["a"]]
    run_models(warehouse, settings.replace(lookback_days=3650), full_refresh=True,
               progress=lambda _msg: None)
    assert warehouse.query("SELECT anonymous_id, element FROM behavior_events").rows == [
        ["a", "#first"]]


def test_loader_drops_stored_ids_and_repeats_within_a_batch(
        settings: Settings, warehouse: ChdbWarehouse) -> None:
    log = EventLog(settings.queue_path)
    from funnelhouse.collector.sinks.base import Record

    def row(message_id: str, anonymous_id: str, source: str = "web") -> Record:
        return Record("events", "k", orjson.dumps({
            "message_id": message_id, "type": "track", "event": "click", "source": source,
            "anonymous_id": anonymous_id, "timestamp": "2026-03-01 10:00:00.000",
            "received_at": "2026-03-01 10:00:00.000", "properties": "{}"}))
    log.append([row("m1", "first"), row("m1", "second"), row("m2", "first")])
    load_all(settings, warehouse)
    # Later: m1 again (another person), m2 from another source (a different event),
    # and an id with a ':' in a source-like position.
    log.append([row("m1", "third"), row("m2", "other", "backend"), row("a:b", "x")])
    load_all(settings, warehouse)
    rows = warehouse.query("SELECT source, message_id, anonymous_id FROM events_raw "
                           "ORDER BY source, message_id").rows
    assert rows == [["backend", "m2", "other"], ["web", "a:b", "x"], ["web", "m1", "first"],
                    ["web", "m2", "first"]]


def test_dedup_window_file_survives_a_restart_and_still_expires(tmp_path: Path) -> None:
    from funnelhouse.collector.limits import DedupWindow

    path = tmp_path / "dedup.sqlite3"
    window = DedupWindow(1, 1000, path)
    window.add_all(["web:a"])
    window.add_all(["web:b"])                      # within FLUSH_SECONDS: written by the timer
    time.sleep(DedupWindow.FLUSH_SECONDS + 0.3)
    restarted = DedupWindow(1, 1000, path)         # as a new process would open it
    assert "web:a" in restarted and "web:b" in restarted and "web:c" not in restarted
    time.sleep(1.1)
    assert "web:a" not in restarted                # the window still ends
    assert "web:a" not in DedupWindow(1, 1000, path)
    window.close()
    restarted.close()


def test_dedup_window_reads_the_per_id_rows_of_earlier_versions(tmp_path: Path) -> None:
    """After an upgrade the window written by the previous version still answers."""
    import sqlite3

    from funnelhouse.collector.limits import DedupWindow

    path = tmp_path / "dedup.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE seen (at REAL NOT NULL, key TEXT NOT NULL)")
    now = time.time()
    db.executemany("INSERT INTO seen (at, key) VALUES (?, ?)",
                   [(now - 30, "web:expired"), (now, "web:kept")])
    db.commit()
    db.close()
    window = DedupWindow(10, 1000, path)
    assert "web:kept" in window and "web:expired" not in window
    window.add_all(["web:new"])
    window.close()                                 # flushes
    again = DedupWindow(10, 1000, path)
    assert "web:kept" in again and "web:new" in again and "web:expired" not in again
    again.close()
