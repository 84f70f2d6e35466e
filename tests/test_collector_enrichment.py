"""Enrichment as seen through HTTP: corrected time, user agent, IP, campaign, source and
channel in the queued row; and, over a real socket, in events_raw / events_invalid.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import Settings, WriteKey
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import (
    BROWSER_KEY,
    SERVER_KEY,
    Funnelhouse,
    queued_rows,
    track,
    wait_until,
)

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
DESKTOP = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PROXY_NET = "10.0.0.0/8"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ch_time(text: str) -> datetime:
    """A ClickHouse DateTime64(3) text (or our ISO text) as an aware datetime."""
    return datetime.strptime(text[:23].replace("T", " "), "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=UTC)


def send(client: TestClient, body: dict[str, Any], key: str = BROWSER_KEY,
         path: str = "/v1/track", **headers: str) -> None:
    response = client.post(path, json=body, headers={**basic(key), **headers})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] >= 1, response.text


def one(log: EventLog) -> dict[str, Any]:
    rows = queued_rows(log)
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture
def behind_proxy(settings: Settings, event_log: EventLog) -> Iterator[TestClient]:
    """The collector behind a trusted proxy (peer 10.1.2.3), the proxy net trusted."""
    trusted = settings.replace(trusted_proxies=(PROXY_NET,))
    app = create_app(trusted, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app, client=("10.1.2.3", 40000)) as client:
        yield client


@pytest.fixture
def from_internet(settings: Settings, event_log: EventLog) -> Iterator[TestClient]:
    """The collector reached directly by a client at 203.0.113.77 (proxy net trusted)."""
    trusted = settings.replace(trusted_proxies=(PROXY_NET,))
    app = create_app(trusted, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app, client=("203.0.113.77", 40000)) as client:
        yield client


# ---------------------------------------------------------------- time

def test_clock_skew_is_corrected_from_sent_at(client: TestClient, event_log: EventLog) -> None:
    # The device clock runs 2 hours fast; the event happened 5 s before it was sent.
    device_now = datetime.now(UTC) + timedelta(hours=2)
    body = track(timestamp=iso(device_now - timedelta(seconds=5)), sentAt=iso(device_now))
    send(client, body)
    row = one(event_log)
    assert ch_time(row["timestamp"]) == ch_time(row["received_at"]) - timedelta(seconds=5)
    # What the client said is kept as it said it.
    assert ch_time(row["original_timestamp"]) == ch_time(iso(device_now - timedelta(seconds=5)))
    assert ch_time(row["sent_at"]) == ch_time(iso(device_now))
    assert row["flags"] == []


def test_batch_level_sent_at_corrects_every_event(client: TestClient,
                                                  event_log: EventLog) -> None:
    device_now = datetime.now(UTC) - timedelta(days=3)  # device clock 3 days slow
    batch = [track(messageId=f"s-{n}", timestamp=iso(device_now - timedelta(seconds=n)))
             for n in (1, 30)]
    send(client, {"batch": batch, "sentAt": iso(device_now)}, path="/v1/batch")
    rows = {r["message_id"]: r for r in queued_rows(event_log)}
    for n in (1, 30):
        row = rows[f"s-{n}"]
        assert ch_time(row["timestamp"]) == ch_time(row["received_at"]) - timedelta(seconds=n)
        assert row["flags"] == []  # corrected into the present: not clamped as "past"


def test_without_sent_at_the_device_timestamp_is_used(client: TestClient,
                                                      event_log: EventLog) -> None:
    happened = datetime.now(UTC) - timedelta(minutes=10)
    send(client, track(timestamp=iso(happened)))
    assert ch_time(one(event_log)["timestamp"]) == ch_time(iso(happened))


def test_without_timestamp_received_at_is_used(client: TestClient, event_log: EventLog) -> None:
    send(client, track())
    row = one(event_log)
    assert row["timestamp"] == row["received_at"] == row["original_timestamp"]
    assert abs(ch_time(row["received_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


# ---------------------------------------------------------------- user agent

def test_iphone_user_agent_is_parsed_to_mobile_ios(client: TestClient,
                                                   event_log: EventLog) -> None:
    send(client, track(), **{"User-Agent": IPHONE})
    row = one(event_log)
    assert (row["device_type"], row["device_brand"], row["device_model"]) == (
        "mobile", "Apple", "iPhone")
    assert (row["os_name"], row["os_version"]) == ("iOS", "17.4")
    assert row["browser_name"] == "Mobile Safari"
    assert row["is_bot"] == 0
    assert row["user_agent"] == IPHONE


def test_user_agent_in_context_wins_over_the_header(client: TestClient,
                                                    event_log: EventLog) -> None:
    # Server-side relays send the device's UA in context.userAgent.
    send(client, track(context={"userAgent": IPHONE}), key=SERVER_KEY,
         **{"User-Agent": "analytics-python/2.3"})
    row = one(event_log)
    assert (row["device_type"], row["os_name"]) == ("mobile", "iOS")


def test_desktop_user_agent_is_desktop(client: TestClient, event_log: EventLog) -> None:
    send(client, track(), **{"User-Agent": DESKTOP})
    row = one(event_log)
    assert (row["device_type"], row["os_name"], row["browser_name"]) == (
        "desktop", "Windows", "Chrome")


def test_bot_is_flagged_not_dropped(client: TestClient, event_log: EventLog) -> None:
    send(client, track(), **{"User-Agent": GOOGLEBOT})
    row = one(event_log)
    assert row["is_bot"] == 1
    assert row["device_type"] == "bot"
    assert "bot" in row["flags"]


# ---------------------------------------------------------------- IP

def test_ip_is_truncated_by_default(from_internet: TestClient, event_log: EventLog) -> None:
    send(from_internet, track())
    assert one(event_log)["ip"] == "203.0.113.0"


def test_forwarded_for_from_an_untrusted_peer_is_ignored(from_internet: TestClient,
                                                         event_log: EventLog) -> None:
    send(from_internet, track(), **{"X-Forwarded-For": "198.51.100.23"})
    assert one(event_log)["ip"] == "203.0.113.0"


def test_forwarded_for_from_a_trusted_proxy_is_honoured(behind_proxy: TestClient,
                                                        event_log: EventLog) -> None:
    # client, then a second trusted hop of ours; the leftmost entry is client-chosen noise.
    send(behind_proxy, track(), **{"X-Forwarded-For": "1.1.1.1, 198.51.100.23, 10.9.9.9"})
    assert one(event_log)["ip"] == "198.51.100.0"


def test_trusted_proxy_without_forwarded_for_gives_the_proxy_address(
        behind_proxy: TestClient, event_log: EventLog) -> None:
    send(behind_proxy, track())
    assert one(event_log)["ip"] == "10.1.2.0"


def test_global_privacy_control_drops_the_ip(behind_proxy: TestClient,
                                             event_log: EventLog) -> None:
    send(behind_proxy, track(), **{"X-Forwarded-For": "198.51.100.23", "Sec-GPC": "1"})
    assert one(event_log)["ip"] == ""


def test_global_privacy_control_drops_the_ip_of_dead_letters_too(
        behind_proxy: TestClient, event_log: EventLog) -> None:
    response = behind_proxy.post("/v1/track", json=track(properties={}), headers={
        **basic(BROWSER_KEY), "X-Forwarded-For": "198.51.100.23", "Sec-GPC": "1"})
    assert response.status_code == 400
    [dead] = queued_rows(event_log, "invalid")
    assert orjson.loads(dead["request"])["ip"] == ""
    assert "198.51.100" not in dead["request"]


def test_server_key_may_pass_the_users_ip_but_a_browser_may_not(
        from_internet: TestClient, event_log: EventLog) -> None:
    send(from_internet, track(messageId="srv", context={"ip": "192.0.2.55"}), key=SERVER_KEY)
    send(from_internet, track(messageId="brw", context={"ip": "192.0.2.55"}))
    rows = {r["message_id"]: r for r in queued_rows(event_log)}
    assert rows["srv"]["ip"] == "192.0.2.0"
    assert rows["brw"]["ip"] == "203.0.113.0"
    # The raw address is stored nowhere, not even in the leftover context.
    assert all("192.0.2.55" not in orjson.dumps(r).decode() for r in rows.values())


def test_hash_and_drop_ip_policies(settings: Settings, event_log: EventLog) -> None:
    keys = (WriteKey("wk_hash", "hashed", ip_policy="hash"),
            WriteKey("wk_drop", "dropped", ip_policy="drop"))
    app = create_app(settings.replace(write_keys=keys), EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app, client=("203.0.113.77", 1)) as client:
        send(client, track(messageId="h"), key="wk_hash")
        send(client, track(messageId="d"), key="wk_drop")
    rows = {r["message_id"]: r for r in queued_rows(event_log)}
    assert len(rows["h"]["ip"]) == 16 and "203" not in rows["h"]["ip"]
    assert rows["d"]["ip"] == ""


# ---------------------------------------------------------------- campaign and referrer

def test_utm_parameters_from_the_page_url(client: TestClient, event_log: EventLog) -> None:
    url = ("https://shop.example/spring?utm_source=Newsletter&utm_medium=email"
           "&utm_campaign=spring-sale&utm_term=boots&utm_content=hero")
    send(client, track(context={"page": {"url": url, "path": "/spring", "title": "Spring"}}))
    row = one(event_log)
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["utm_term"],
            row["utm_content"]) == ("Newsletter", "email", "spring-sale", "boots", "hero")
    assert (row["traffic_source"], row["traffic_medium"]) == ("newsletter", "email")
    assert (row["page_url"], row["page_path"], row["page_title"]) == (url, "/spring", "Spring")


def test_click_id_marks_paid_traffic(client: TestClient, event_log: EventLog) -> None:
    send(client, track(context={"page": {"url": "https://shop.example/?gclid=Cj0abc",
                                         "referrer": "https://www.google.com/"}}))
    row = one(event_log)
    assert (row["click_id"], row["click_id_type"]) == ("Cj0abc", "gclid")
    assert (row["traffic_source"], row["traffic_medium"]) == ("google", "paid")


@pytest.mark.parametrize("referrer, source, medium, host", [
    ("https://www.google.de/search?q=boots", "google", "search", "google.de"),
    ("https://m.facebook.com/", "facebook", "social", "m.facebook.com"),
    ("https://blog.example.org/post/1", "blog.example.org", "referral", "blog.example.org"),
    ("https://shop.example/cart", "(direct)", "direct", "shop.example"),
    ("", "(direct)", "direct", ""),
])
def test_referrer_is_classified(referrer: str, source: str, medium: str, host: str,
                                client: TestClient, event_log: EventLog) -> None:
    page = {"url": "https://shop.example/p/1", "referrer": referrer}
    send(client, {"type": "page", "anonymousId": "a", "properties": page}, path="/v1/page")
    row = one(event_log)
    assert (row["traffic_source"], row["traffic_medium"], row["referrer_host"]) == (
        source, medium, host)
    assert row["referrer"] == referrer


@pytest.mark.parametrize("context, referrer, medium", [
    ({"page": {"url": "https://shop.example/", "referrer": "https://m.facebook.com/"},
      "referrer": "https://www.google.com/"}, "https://m.facebook.com/", "social"),
    ({"page": {"url": "https://shop.example/"}, "referrer": "https://www.google.com/"},
     "https://www.google.com/", "search"),
    ({"page": {"url": "https://shop.example/", "referrer": "$direct"}}, "", "direct"),
])
def test_a_track_calls_referrer_comes_from_its_context(
        context: dict[str, Any], referrer: str, medium: str, client: TestClient,
        event_log: EventLog) -> None:
    """context.page.referrer first, then context.referrer; RudderStack's "$direct" is none."""
    send(client, track(context=context))
    row = one(event_log)
    assert (row["referrer"], row["traffic_medium"]) == (referrer, medium)


def test_context_campaign_is_used_when_sent(client: TestClient, event_log: EventLog) -> None:
    send(client, track(context={"campaign": {"source": "insta", "medium": "paid_social",
                                             "name": "launch"}}))
    row = one(event_log)
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == (
        "insta", "paid_social", "launch")
    assert row["traffic_medium"] == "paid"


# ---------------------------------------------------------------- source and channel

def test_source_comes_from_the_write_key_not_the_body(client: TestClient,
                                                      event_log: EventLog) -> None:
    send(client, track(source="forged", context={"source": "forged"}), key=SERVER_KEY)
    assert one(event_log)["source"] == "backend"


@pytest.mark.parametrize("key, body, path, channel", [
    (BROWSER_KEY, track(), "/v1/track", "web"),
    (SERVER_KEY, track(), "/v1/track", "server"),
    (BROWSER_KEY, {"anonymousId": "a", "name": "Cart"}, "/v1/screen", "app"),
    (BROWSER_KEY, track(context={"app": {"name": "Shop", "version": "3.1"}}), "/v1/track", "app"),
    (BROWSER_KEY, track(context={"library": {"name": "analytics-ios", "version": "4"}}),
     "/v1/track", "app"),
    (SERVER_KEY, track(event="store_visit", properties={"store_id": "st-1"}), "/v1/track",
     "offline"),
    (SERVER_KEY, track(context={"channel": "offline"}), "/v1/track", "offline"),
], ids=["browser-web", "server", "screen-app", "context-app", "mobile-library", "store-visit",
        "stated"])
def test_channel_is_derived(key: str, body: dict[str, Any], path: str, channel: str,
                            client: TestClient, event_log: EventLog) -> None:
    send(client, body, key=key, path=path)
    assert one(event_log)["channel"] == channel


def test_locale_timezone_session_and_library_are_columns(client: TestClient,
                                                         event_log: EventLog) -> None:
    send(client, track(context={"locale": "de-DE", "timezone": "Europe/Berlin",
                                "sessionId": "sess-1",
                                "library": {"name": "funnelhouse.js", "version": "1.2.0"}}))
    row = one(event_log)
    assert (row["locale"], row["timezone"], row["session_id"]) == (
        "de-DE", "Europe/Berlin", "sess-1")
    assert (row["library_name"], row["library_version"]) == ("funnelhouse.js", "1.2.0")
    assert orjson.loads(row["context"]) == {}


# ---------------------------------------------------------------- over a real socket

def test_events_over_http_reach_the_warehouse_enriched(funnelhouse_up: Funnelhouse) -> None:
    device_now = datetime.now(UTC) + timedelta(hours=1)
    good = {"type": "track", "event": "Product Viewed", "anonymousId": "sock-anon",
            "messageId": "sock-ok", "timestamp": iso(device_now - timedelta(seconds=7)),
            "properties": {"productId": "sku-9", "price": 19.5, "currency": "EUR"},
            "context": {"page": {"url": "https://shop.example/p/9?utm_source=news&utm_medium="
                                        "email&utm_campaign=may",
                                 "referrer": "https://www.google.com/"},
                        "locale": "fr-FR"}}
    bad = {"type": "track", "event": "purchase", "anonymousId": "sock-anon",
           "messageId": "sock-bad", "properties": {"revenue": "lots", "currency": "euro"}}
    response = funnelhouse_up.post("/v1/batch", {"batch": [good, bad], "sentAt": iso(device_now)},
                                   headers={"User-Agent": IPHONE})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert [r["index"] for r in response.json()["rejected"]] == [1]

    rows = wait_until(lambda: funnelhouse_up.sql(
        "SELECT event, type, anonymous_id, source, channel, device_type, os_name, ip, "
        "utm_source, utm_campaign, traffic_medium, locale, properties, schema_version, flags, "
        "toUnixTimestamp64Milli(timestamp) AS ts, toUnixTimestamp64Milli(received_at) AS rcv "
        "FROM events_raw WHERE message_id = 'sock-ok'"), timeout=60)
    [row] = rows
    assert (row["event"], row["type"], row["anonymous_id"]) == ("product_view", "track",
                                                                "sock-anon")
    assert (row["source"], row["channel"]) == ("web", "web")
    assert (row["device_type"], row["os_name"]) == ("mobile", "iOS")
    assert row["ip"] == "127.0.0.0"
    assert (row["utm_source"], row["utm_campaign"], row["traffic_medium"]) == (
        "news", "may", "email")
    assert row["locale"] == "fr-FR"
    assert orjson.loads(row["properties"]) == {"product_id": "sku-9", "price": 19.5,
                                               "currency": "EUR"}
    assert row["schema_version"] == "product_view/1-0-0"
    assert list(row["flags"]) == []
    assert int(row["rcv"]) - int(row["ts"]) == 7000  # skew corrected over the wire too

    invalid = wait_until(lambda: funnelhouse_up.sql(
        "SELECT reason, event, source, errors, payload FROM events_invalid "
        "WHERE message_id = 'sock-bad'"), timeout=60)
    [dead] = invalid
    assert (dead["reason"], dead["event"], dead["source"]) == (
        "schema_violation", "purchase", "web")
    paths = {_error_path(e) for e in dead["errors"]}
    assert {"$.properties.revenue", "$.properties.currency"} <= paths
    assert "$.properties" in paths or "$.properties.order_id" in paths  # missing required
    assert orjson.loads(dead["payload"])["messageId"] == "sock-bad"


def _error_path(error: Any) -> str:
    # ClickHouse returns a named tuple as an object or as a [path, message] pair.
    return error["path"] if isinstance(error, dict) else error[0]


def test_source_hashes_and_drops_named_personal_fields(tmp_path) -> None:
    from tests.conftest import make_settings, queued_rows

    settings = make_settings(tmp_path / "data").replace(write_keys=(
        WriteKey("wk_crm", "crm", "server", hash_fields=("email",),
                 drop_fields=("address.street",)),))
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app) as client:
        response = client.post("/v1/identify", auth=("wk_crm", ""), json={
            "userId": "u1", "messageId": "pii-1",
            "traits": {"email": "Mina@Example.com", "name": "Mina",
                       "address": {"street": "1 Main St", "city": "Seoul"}}})
    assert response.status_code == 200, response.text
    traits = orjson.loads(queued_rows(EventLog(settings.queue_path))[0]["traits"])
    assert traits["name"] == "Mina"
    assert traits["address"] == {"city": "Seoul"}
    assert len(traits["email"]) == 32 and "@" not in traits["email"]
