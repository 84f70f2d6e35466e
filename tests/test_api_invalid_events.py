"""GET /v1/invalid-events: refusals read back from events_invalid after going through the
real collector and loader, counted against what was sent; filters, bad input, injection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

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
# More refusals than the collector's debug ring shows at once would be nice, but the
# point here is exactness: every one sent comes back, with its reason.
CLICKS_WITHOUT_ELEMENT = 23          # web: click lacks its required `element`
UNKNOWN_EVENTS = 4                   # strict key: events the plan does not know
VALID = 5
PERSON = "anon-qa-7"


def web_batch() -> list[dict[str, Any]]:
    bad = [track("click", PERSON if i < 3 else f"anon-{i}", messageId=f"bad-click-{i}",
                 properties={"selector": f"#x{i}"})
           for i in range(CLICKS_WITHOUT_ELEMENT)]
    good = [track("click", f"anon-ok-{i}", messageId=f"ok-{i}") for i in range(VALID)]
    return bad + good


STRICT = [track("made_up_event", f"z{i}", messageId=f"odd-{i}") for i in range(UNKNOWN_EVENTS)]
SENT_INVALID = CLICKS_WITHOUT_ELEMENT + UNKNOWN_EVENTS
Fixture = tuple[Pipeline, TestClient]


def row_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    settings = make_settings(tmp_path_factory.mktemp("invalid-events") / "data")
    with every_handle_closed():
        built = build_pipeline(settings)
        with TestClient(built.app) as client:
            for key, batch in ((BROWSER_KEY, web_batch()), (STRICT_KEY, STRICT),
                               (SERVER_KEY, [track("click", "s1", messageId="srv-ok")])):
                # A batch with nothing valid is answered 400; its refusals are still kept.
                assert client.post("/v1/batch", json={"batch": batch},
                                   auth=(key, "")).status_code in (200, 400)

            def loaded() -> bool:
                counts = built.warehouse.query(
                    "SELECT (SELECT count() FROM events_raw), "
                    "(SELECT count() FROM events_invalid)").rows[0]
                return [int(c) for c in counts] == [VALID + 1, SENT_INVALID]

            wait_until(loaded, timeout=60)
            # A refusal from 20 days ago: in a 30-day period, not in the default 7 days.
            now = datetime.now(UTC)
            built.warehouse.insert_json_rows("events_invalid", [orjson.dumps({
                "message_id": "old-1", "received_at": row_time(now - timedelta(days=20)),
                "source": "web", "type": "track", "event": "click",
                "reason": "schema_violation",
                "errors": [{"path": "$.properties", "message": "'element' is required"}],
                "schema_version": "click/1-0-0", "payload": "{}", "request": "{}"})])
            yield built, client


def invalid(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/invalid-events", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def stored_reasons(built: Pipeline) -> dict[str, str]:
    return {m: r for m, r in built.warehouse.query(
        "SELECT message_id, toString(reason) FROM events_invalid").rows}


def test_every_refusal_sent_comes_back_with_its_reasons(pipeline: Fixture) -> None:
    built, client = pipeline
    doc = invalid(client)
    assert doc["total"] == SENT_INVALID == len(doc["events"])
    sent_ids = ({f"bad-click-{i}" for i in range(CLICKS_WITHOUT_ELEMENT)}
                | {f"odd-{i}" for i in range(UNKNOWN_EVENTS)})
    assert {e["message_id"] for e in doc["events"]} == sent_ids
    reasons = stored_reasons(built)
    for e in doc["events"]:
        assert e["reason"] == reasons[e["message_id"]] and e["errors"], e
        assert all(err["path"] and err["message"] for err in e["errors"])
    clicks = [e for e in doc["events"] if e["event"] == "click"]
    assert {e["source"] for e in clicks} == {"web"} and len(clicks) == CLICKS_WITHOUT_ELEMENT
    # Paths and messages read apart, as plain arrays: no tuple shape to interpret.
    stored_errors = {m: [{"path": p, "message": t} for p, t in zip(paths, texts, strict=True)]
                     for m, paths, texts in built.warehouse.query(
                         "SELECT message_id, arrayMap(e -> tupleElement(e, 'path'), errors), "
                         "arrayMap(e -> tupleElement(e, 'message'), errors) "
                         "FROM events_invalid").rows}
    for e in doc["events"]:
        assert e["errors"] == stored_errors[e["message_id"]], e
    assert {e["reason"] for e in doc["events"] if e["event"] == "made_up_event"} == \
        {"unknown_event"}
    by_reason: dict[str, int] = {}
    for r in (reasons[m] for m in sent_ids):
        by_reason[r] = by_reason.get(r, 0) + 1
    assert doc["reasons"] == by_reason
    times = [e["received_at"] for e in doc["events"]]
    assert times == sorted(times, reverse=True)


def test_period_limit_and_filters(pipeline: Fixture) -> None:
    _, client = pipeline
    month = invalid(client, days=30)
    assert month["total"] == SENT_INVALID + 1
    assert "old-1" in {e["message_id"] for e in month["events"]}
    page = invalid(client, limit=5)
    assert len(page["events"]) == 5 and page["total"] == SENT_INVALID
    assert page["events"] == invalid(client)["events"][:5]
    web = invalid(client, source="web")
    assert web["total"] == CLICKS_WITHOUT_ELEMENT
    assert {e["source"] for e in web["events"]} == {"web"}
    strict = invalid(client, source="strict", event="made_up_event")
    assert strict["total"] == UNKNOWN_EVENTS == len(strict["events"])
    assert invalid(client, source="strict", event="click")["total"] == 0
    person = invalid(client, person=PERSON)
    assert person["total"] == 3
    assert {e["message_id"] for e in person["events"]} == {"bad-click-0", "bad-click-1",
                                                           "bad-click-2"}
    assert {e["anonymous_id"] for e in person["events"]} == {PERSON}


@pytest.mark.parametrize("text", ["' OR 1=1 --", "web' OR '1'='1",
                                  "x'); DROP TABLE events_invalid; --",
                                  "{source:String}", "\\' OR 1 --"])
def test_injection_attempts_are_inert(pipeline: Fixture, text: str) -> None:
    built, client = pipeline
    for name in ("source", "event", "person"):
        doc = invalid(client, **{name: text})
        assert doc["total"] == 0 and doc["events"] == [], (name, text)
    assert int(built.warehouse.query("SELECT count() FROM events_invalid").scalar()) == \
        SENT_INVALID + 1


@pytest.mark.parametrize("query", ["days=0", "days=91", "days=seven", "days=1.5", "limit=0",
                                   "limit=1001", "limit=-1", "source=" + "x" * 201,
                                   "event=a%0Ab", "days=1;DROP"])
def test_bad_input_is_a_400_with_a_reason(pipeline: Fixture, query: str) -> None:
    _, client = pipeline
    response = client.get(f"/v1/invalid-events?{query}", headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "bad_spec" and response.json()["error"]


def test_needs_the_admin_token(pipeline: Fixture) -> None:
    _, client = pipeline
    assert client.get("/v1/invalid-events").status_code == 401
    wrong = client.get("/v1/invalid-events", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_errors_read_the_same_from_either_client_shape() -> None:
    # chdb returns a named tuple as a pair, the HTTP client as an object.
    from funnelhouse.collector.qa import stored_error as _error
    want = {"path": "$.properties.element", "message": "'element' is a required property"}
    assert _error(("$.properties.element", "'element' is a required property")) == want
    assert _error(want) == want
