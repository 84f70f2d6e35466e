"""Segment's own Python library (segment-analytics-python, from PyPI) talks to funnelhouse
unchanged: its calls land in events_raw, validated against the plan and enriched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.conftest import BROWSER_KEY, SERVER_KEY, Funnelhouse, wait_until


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnelhouse]:
    instance = Funnelhouse(Path(tmp_path_factory.mktemp("segment")) / "data").start()
    yield instance
    instance.stop()


@pytest.fixture
def errors() -> list[Any]:
    return []


@pytest.fixture
def segment(collector: Funnelhouse, errors: list[Any]) -> Iterator[Client]:
    """A synchronous client: each call is one POST /v1/batch, errors are collected."""
    client = Client(SERVER_KEY, host=collector.url, sync_mode=True, max_retries=0,
                    on_error=lambda error, batch: errors.append(error))
    yield client  # no shutdown(): a sync-mode client has no consumer threads to join


def rows_of(collector: Funnelhouse, message_id: str) -> list[dict[str, Any]]:
    return wait_until(lambda: collector.sql(
        "SELECT type, event, anonymous_id, user_id, previous_id, group_id, source, channel, "
        "library_name, properties, traits, schema_version, flags, page_url, page_title, "
        "referrer_host, traffic_medium, device_type, os_name, ip, "
        "toUnixTimestamp64Milli(timestamp) AS ts, toUnixTimestamp64Milli(received_at) AS rcv "
        f"FROM events_raw WHERE message_id = '{message_id}'"), timeout=60)


def the_row(collector: Funnelhouse, message_id: str) -> dict[str, Any]:
    rows = rows_of(collector, message_id)
    assert len(rows) == 1, rows
    return rows[0]


def new_id() -> str:
    return str(uuid.uuid4())


def test_segment_track_is_validated_and_enriched(collector: Funnelhouse, segment: Client,
                                                 errors: list[Any]) -> None:
    message_id = new_id()
    happened = datetime.now(UTC) - timedelta(minutes=3)
    segment.track(
        user_id="user-42", event="Order Completed", message_id=message_id, timestamp=happened,
        properties={"order_id": "o-1001", "revenue": 59.9, "currency": "EUR", "coupon": "SPRING",
                    "items": [{"product_id": "sku-1", "price": 29.95, "quantity": 2}]},
        context={"ip": "198.51.100.77",
                 "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
                              "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
                              "Mobile/15E148 Safari/604.1"})
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"], row["user_id"]) == ("track", "purchase", "user-42")
    assert row["schema_version"] == "purchase/1-0-0"
    assert list(row["flags"]) == []
    assert (row["source"], row["channel"]) == ("backend", "server")
    assert row["library_name"] == "analytics-python"
    assert orjson.loads(row["properties"])["items"] == [
        {"product_id": "sku-1", "price": 29.95, "quantity": 2}]
    assert (row["device_type"], row["os_name"]) == ("mobile", "iOS")
    assert row["ip"] == "198.51.100.0"  # a server key relays the user's IP; stored truncated
    # sentAt and timestamp come from one clock: the event lands ≈3 minutes before receipt.
    lag = int(row["rcv"]) - int(row["ts"])
    assert 170_000 < lag < 190_000, lag


def test_segment_identify_lands_with_traits(collector: Funnelhouse, segment: Client,
                                            errors: list[Any]) -> None:
    message_id = new_id()
    segment.identify(user_id="user-42", anonymous_id="anon-42", message_id=message_id,
                     traits={"email": "ann@example.com", "firstName": "Ann", "plan": "pro"})
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"], row["anonymous_id"]) == ("identify", "identify", "anon-42")
    assert orjson.loads(row["traits"]) == {"email": "ann@example.com", "first_name": "Ann",
                                           "plan": "pro"}
    assert row["schema_version"] == "identify/1-0-0"


def test_segment_page_lands_with_page_fields(collector: Funnelhouse, segment: Client,
                                             errors: list[Any]) -> None:
    message_id = new_id()
    segment.page(anonymous_id="anon-42", category="Shop", name="Boots", message_id=message_id,
                 properties={"url": "https://shop.example/boots", "title": "Boots",
                             "referrer": "https://www.bing.com/search?q=boots"})
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"]) == ("page", "page_view")
    assert (row["page_url"], row["page_title"]) == ("https://shop.example/boots", "Boots")
    assert (row["referrer_host"], row["traffic_medium"]) == ("bing.com", "search")
    assert row["schema_version"] == "page_view/1-1-0"


def test_segment_alias_lands_with_previous_id(collector: Funnelhouse, segment: Client,
                                              errors: list[Any]) -> None:
    message_id = new_id()
    segment.alias(previous_id="anon-42", user_id="user-42", message_id=message_id)
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"], row["previous_id"], row["user_id"]) == (
        "alias", "alias", "anon-42", "user-42")


def test_segment_group_lands_with_group_traits(collector: Funnelhouse, segment: Client,
                                               errors: list[Any]) -> None:
    message_id = new_id()
    segment.group(user_id="user-42", group_id="acme", message_id=message_id,
                  traits={"name": "Acme Inc", "employees": 120})
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"], row["group_id"]) == ("group", "group", "acme")
    assert orjson.loads(row["traits"]) == {"name": "Acme Inc", "employees": 120}


def test_segment_screen_is_an_app_event(collector: Funnelhouse, segment: Client,
                                        errors: list[Any]) -> None:
    message_id = new_id()
    segment.screen(user_id="user-42", name="Cart", message_id=message_id)
    assert errors == []
    row = the_row(collector, message_id)
    assert (row["type"], row["event"], row["channel"]) == ("screen", "screen_view", "app")


def test_segment_batches_gzipped_in_background_mode_all_land(collector: Funnelhouse,
                                                             errors: list[Any]) -> None:
    # The default (asynchronous) mode: a consumer thread batches and gzips uploads.
    client = Client(BROWSER_KEY, host=collector.url, gzip=True, upload_size=25,
                    upload_interval=0.05, max_retries=2,
                    on_error=lambda error, batch: errors.append(error))
    ids = [new_id() for _ in range(60)]
    for n, message_id in enumerate(ids):
        client.track(anonymous_id=f"bg-{n % 7}", event="click", message_id=message_id,
                     properties={"element": f"#item-{n}", "elementText": "Add"})
    client.flush()
    client.shutdown()
    assert errors == []
    id_list = ", ".join(f"'{m}'" for m in ids)
    counts = wait_until(lambda: (lambda rows: rows if rows[0]["n"] == len(ids) else None)(
        collector.sql(f"SELECT count() AS n, uniqExact(message_id) AS u, "
                      f"groupUniqArray(source) AS sources, groupUniqArray(event) AS events "
                      f"FROM events_raw WHERE message_id IN ({id_list})")), timeout=60)
    assert counts[0]["u"] == len(ids)
    assert counts[0]["sources"] == ["web"]
    assert counts[0]["events"] == ["click"]


def test_segment_invalid_track_is_dead_lettered_not_lost(collector: Funnelhouse, segment: Client,
                                                         errors: list[Any]) -> None:
    message_id = new_id()
    # The whole (one-event) batch is invalid: a 400, which a sync-mode client raises.
    with pytest.raises(APIError) as refused:
        segment.track(user_id="user-42", event="Order Completed", message_id=message_id,
                      properties={"revenue": -5})
    assert refused.value.status == 400
    # Segment's APIError reads `code` and `message` from the answer.
    assert refused.value.code == "schema_violation"
    assert "$.properties.currency" in refused.value.message
    dead = wait_until(lambda: collector.sql(
        "SELECT reason, event, source FROM events_invalid "
        f"WHERE message_id = '{message_id}'"), timeout=60)
    assert dead == [{"reason": "schema_violation", "event": "purchase", "source": "backend"}]
    assert collector.sql(f"SELECT count() AS n FROM events_raw WHERE message_id = '{message_id}'"
                         ) == [{"n": 0}]


def test_segment_null_fields_are_treated_as_absent(collector: Funnelhouse, segment: Client,
                                                   errors: list[Any]) -> None:
    # screen() and page() without a category send `"category": null`; track without an
    # anonymous id sends `"anonymousId": null`. None of that is an envelope violation.
    ids = [new_id() for _ in range(3)]
    segment.screen(user_id="user-42", name="Home", message_id=ids[0])
    segment.page(user_id="user-42", message_id=ids[1])
    segment.track(user_id="user-42", event="login", message_id=ids[2])
    assert errors == []
    assert [the_row(collector, m)["event"] for m in ids] == ["screen_view", "page_view", "login"]
