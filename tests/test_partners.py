"""Install postbacks (AppsFlyer-style) and push-click webhooks (OneSignal-style) against a
live `funnelhouse up`: what lands in events_raw, what is refused and how, repeats as
duplicates — and an app user's attributed install as their first touch in users, orders,
campaign_performance and a funnel broken down by media source.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from funnelhouse.collector.partner_mapping import appsflyer_message, onesignal_message
from tests.conftest import ADMIN_TOKEN, BROWSER_KEY, SERVER_KEY, Funnelhouse, wait_until

APPSFLYER = "/v1/partners/appsflyer"
ONESIGNAL = "/v1/partners/onesignal"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnelhouse]:
    # The scheduler's model runs stay out of the way of the on-demand ones below.
    instance = Funnelhouse(Path(tmp_path_factory.mktemp("partners")) / "data",
                           env={"FUNNELHOUSE_MODELS_INTERVAL_SECONDS": "86400"}).start()
    yield instance
    instance.stop()


def sql(live: Funnelhouse, query: str, **params: Any) -> list[dict[str, Any]]:
    response = httpx.post(f"{live.url}/v1/sql", json={"sql": query, "params": params},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def array(values: list[str]) -> str:
    """An Array(String) query parameter in ClickHouse's text form (params are scalars)."""
    return "[" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                          for v in values) + "]"


def raw_rows(live: Funnelhouse, message_id: str, table: str = "events_raw"
             ) -> list[dict[str, Any]]:
    """The stored rows of one message id, once the loader has stored it."""
    assert table in ("events_raw", "events_invalid")
    return wait_until(lambda: sql(live, f"SELECT * FROM {table} WHERE message_id = {{id:String}}",
                                  id=message_id), timeout=60)


def install(**fields: Any) -> dict[str, Any]:
    """An AppsFlyer Push API install event, the fields a team sees in its payloads."""
    device = fields.pop("appsflyer_id", f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}")
    return {"event_name": "install", "event_type": "install", "appsflyer_id": device,
            "install_time": "2024-04-02 09:15:30.250", "event_time": "2024-04-02 09:15:30.250",
            "attributed_touch_time": "2024-04-02 09:01:02.000", "platform": "ios",
            "app_id": "id123456789", "app_version": "3.2.0", "os_version": "17.4",
            "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "device_model": "iPhone15,3",
            "media_source": "Meta Ads", "campaign": "spring-24", "af_adset": "lookalike-1",
            "af_ad": "video-15s", "af_channel": "Instagram", "customer_user_id": "",
            "ip": "198.51.100.23", "language": "ko-KR", **fields}


def push_click(**fields: Any) -> dict[str, Any]:
    """A OneSignal webhook body for a click (its field names as it sends them)."""
    return {"event": "notification.clicked", "notificationId": str(uuid.uuid4()),
            "heading": "Your cart misses you", "content": "10% off today",
            "url": "https://shop.example/cart", "actionId": "",
            "subscriptionId": str(uuid.uuid4()), **fields}


# ------------------------------------------------------------------ postbacks land

def test_json_install_postback_becomes_app_install_with_its_attribution(live: Funnelhouse
                                                                      ) -> None:
    body = install(customer_user_id="u-json-1")
    response = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    [row] = raw_rows(live, appsflyer_message(body)["messageId"])
    assert (row["event"], row["type"], row["channel"]) == ("app_install", "track", "app")
    assert row["schema_version"] == "app_install/1-0-0" and list(row["flags"]) == []
    # The install's own time (a server key keeps history), the partner's ids as ours.
    assert row["timestamp"].startswith("2024-04-02 09:15:30.250")
    assert (row["anonymous_id"], row["user_id"]) == (body["appsflyer_id"], "u-json-1")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"], row["utm_content"]) \
        == ("Meta Ads", "paid", "spring-24", "video-15s")
    assert (row["traffic_source"], row["traffic_medium"]) == ("meta ads", "paid")
    properties = orjson.loads(row["properties"])
    assert properties == {"partner": "appsflyer", "network": "Meta Ads", "campaign": "spring-24",
                          "adgroup": "lookalike-1", "creative": "video-15s", "version": "3.2.0",
                          "install_time": "2024-04-02T09:15:30.250Z",
                          "click_time": "2024-04-02T09:01:02.000Z"}
    context = orjson.loads(row["context"])
    assert context["device"]["advertising_id"] == body["idfa"]
    assert context["os"] == {"name": "ios", "version": "17.4"}
    assert row["ip"] == "198.51.100.0"            # the key's IP policy, as for any event
    assert (row["library_name"], row["locale"]) == ("appsflyer", "ko-KR")


def test_get_postback_from_a_macro_template_is_the_same_mapping(live: Funnelhouse) -> None:
    fields = install(media_source="googleadwords_int", campaign="brand-kr")
    params = {"writeKey": SERVER_KEY, **{k: v for k, v in fields.items() if v != ""}}
    response = httpx.get(f"{live.url}{APPSFLYER}", params=params)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    [row] = raw_rows(live, appsflyer_message(fields)["messageId"])
    assert (row["event"], row["traffic_source"], row["traffic_medium"], row["utm_campaign"]) \
        == ("app_install", "googleadwords_int", "paid", "brand-kr")
    # The query's writeKey authenticates; it is not an event field.
    assert "writekey" not in row["context"].lower()


@pytest.mark.parametrize("organic", [{"media_source": "organic"}, {"media_source": ""},
                                     {"af_status": "Organic", "media_source": "Organic"}])
def test_organic_install_invents_no_touch(live: Funnelhouse, organic: dict[str, str]) -> None:
    body = install(**organic)
    response = httpx.post(f"{live.url}{APPSFLYER}", json=body, auth=(SERVER_KEY, ""))
    assert response.status_code == 200, response.text
    [row] = raw_rows(live, appsflyer_message(body)["messageId"])
    assert row["event"] == "app_install"
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("", "", "")
    assert (row["traffic_source"], row["traffic_medium"]) == ("(direct)", "direct")
    properties = orjson.loads(row["properties"])
    assert "network" not in properties and "campaign" not in properties
    assert "click_time" not in properties


def test_owned_media_install_is_not_paid(live: Funnelhouse) -> None:
    body = install(media_source="Email", campaign="welcome-series")
    assert httpx.post(f"{live.url}{APPSFLYER}", json=body,
                      headers={"X-Write-Key": SERVER_KEY}).status_code == 200
    [row] = raw_rows(live, appsflyer_message(body)["messageId"])
    assert (row["traffic_source"], row["traffic_medium"]) == ("email", "email")


def test_push_click_webhook_becomes_push_open(live: Funnelhouse) -> None:
    body = push_click(externalId="u-push-1", timestamp=int(time.time()) - 3600,
                      additionalData={"campaign_id": "cart-reminder"})
    # OneSignal posts text/plain when its webhooks run without CORS.
    response = httpx.post(f"{live.url}{ONESIGNAL}?writeKey={SERVER_KEY}",
                          content=orjson.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    [row] = raw_rows(live, onesignal_message(body)["messageId"])
    assert (row["event"], row["schema_version"], list(row["flags"])) \
        == ("push_open", "push_open/1-0-0", [])
    assert (row["user_id"], row["anonymous_id"]) == ("u-push-1", body["subscriptionId"])
    assert row["channel"] == "app"
    assert orjson.loads(row["properties"]) == {
        "push_id": body["notificationId"], "title": "Your cart misses you",
        "deep_link": "https://shop.example/cart", "campaign_id": "cart-reminder"}
    stored = datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC).timestamp()
    assert abs(stored - body["timestamp"]) < 1


def test_web_push_webhook_from_the_browser_takes_a_browser_key(live: Funnelhouse) -> None:
    body = push_click(event="notification.clicked")
    response = httpx.post(f"{live.url}{ONESIGNAL}?writeKey={BROWSER_KEY}",
                          content=orjson.dumps(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    [row] = raw_rows(live, onesignal_message(body)["messageId"])
    assert (row["event"], row["channel"], row["source"]) == ("push_open", "web", "web")


# ------------------------------------------------------------------ repeats and refusals

def test_a_repeated_postback_is_a_duplicate(live: Funnelhouse) -> None:
    body = install(customer_user_id="u-repeat")
    first = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=body)
    again = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=body)
    # The same install as a GET postback (another template, same partner ids).
    as_get = httpx.get(f"{live.url}{APPSFLYER}",
                       params={"writeKey": SERVER_KEY, "event_name": "install",
                               "appsflyer_id": body["appsflyer_id"], "app_id": body["app_id"],
                               "install_time": "2024-04-02T09:15:30.250Z",
                               "media_source": "Meta Ads"})
    assert first.json()["accepted"] == 1
    assert again.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert as_get.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    click = push_click(externalId="u-repeat")
    answers = [httpx.post(f"{live.url}{ONESIGNAL}?writeKey={SERVER_KEY}", json=click).json()
               for _ in range(2)]
    assert [a["accepted"] for a in answers] == [1, 0]
    assert answers[1]["duplicates"] == 1
    message_id = appsflyer_message(body)["messageId"]
    raw_rows(live, message_id)
    assert len(sql(live, "SELECT message_id FROM events_raw WHERE message_id = {id:String}",
                   id=message_id)) == 1


@pytest.mark.parametrize(("request_args", "status", "code"), [
    ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400,
     "malformed_json"),
    ({"content": b"\"install\"", "headers": {"Content-Type": "application/json"}}, 400,
     "bad_batch"),
    ({"content": b"<xml/>", "headers": {"Content-Type": "application/xml"}}, 415,
     "unsupported_content_type"),
])
def test_malformed_postbacks_are_refused_with_code_and_message(
        live: Funnelhouse, request_args: dict[str, Any], status: int, code: str) -> None:
    response = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", **request_args)
    assert response.status_code == status
    doc = response.json()
    assert doc["code"] == code and doc["message"]


def test_install_postbacks_need_a_server_key(live: Funnelhouse) -> None:
    body = install()
    with_browser_key = httpx.post(f"{live.url}{APPSFLYER}?writeKey={BROWSER_KEY}", json=body)
    without_key = httpx.post(f"{live.url}{APPSFLYER}", json=body)
    assert with_browser_key.status_code == 401
    assert with_browser_key.json()["code"] == "unauthorized"
    assert "server write key" in with_browser_key.json()["message"]
    assert without_key.status_code == 401
    assert without_key.json()["code"] == "unknown_write_key"


def test_a_head_request_on_the_postback_url_is_no_install(live: Funnelhouse) -> None:
    params = {"writeKey": SERVER_KEY, **{k: v for k, v in install().items() if v != ""}}
    assert httpx.head(f"{live.url}{APPSFLYER}", params=params).status_code == 200
    # The install itself is still new: the HEAD stored nothing and reserved no id.
    assert httpx.get(f"{live.url}{APPSFLYER}", params=params).json()["accepted"] == 1


def test_get_postback_without_fields_is_a_bad_parameter(live: Funnelhouse) -> None:
    response = httpx.get(f"{live.url}{APPSFLYER}", params={"writeKey": SERVER_KEY})
    assert response.status_code == 400
    assert response.json()["code"] == "bad_parameter"


def test_a_postback_missing_what_an_event_needs_is_dead_lettered(live: Funnelhouse) -> None:
    # No device id and no customer user id: nobody to credit. Refused, with the payload kept.
    body = install(appsflyer_id="", customer_user_id="", install_time="not a time")
    response = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=body)
    assert response.status_code == 400
    doc = response.json()
    assert doc["code"] == "envelope_violation" and "anonymous_id" in doc["message"]
    [refused] = doc["rejected"]
    paths = {e["path"] for e in refused["errors"]}
    assert "$.timestamp" in paths
    [dead] = raw_rows(live, refused["message_id"], table="events_invalid")
    assert dead["reason"] == "envelope_violation"
    assert orjson.loads(dead["payload"])["properties"]["network"] == "Meta Ads"


def test_a_list_of_postbacks_is_taken_one_by_one(live: Funnelhouse) -> None:
    good, bad = install(customer_user_id="u-list"), install(appsflyer_id="",
                                                           customer_user_id="")
    response = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=[good, bad, 7])
    assert response.status_code == 200
    doc = response.json()
    assert doc["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in doc["rejected"]] \
        == [(1, "envelope_violation"), (2, "not_an_object")]


# ------------------------------------------------------------------ install → first touch

def run_models(live: Funnelhouse) -> None:
    def ran() -> bool:
        response = httpx.post(f"{live.url}/v1/admin/models/run", json={"full_refresh": True},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=600)
        assert response.status_code in (200, 409), response.text   # 409: the scheduler's run
        return response.status_code == 200
    wait_until(ran, timeout=300, interval=1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_install_attribution_is_the_app_users_first_touch_and_breaks_down_the_funnel(
        live: Funnelhouse) -> None:
    """Three app users: a paid install that buys, a paid install linked later (no customer
    user id at install, the app aliases the device) that does not buy, an organic install
    that buys. Each install's postback and each push click land on one person; the paid
    ones' media source is their first touch in users, orders and campaign_performance, and
    the funnel install → signup → push open → purchase breaks down by it."""
    run = uuid.uuid4().hex[:6]
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                           microsecond=0)
    meta, google, organic = f"u-meta-{run}", f"u-google-{run}", f"u-organic-{run}"
    devices = {meta: f"af-meta-{run}", google: f"af-google-{run}", organic: f"af-org-{run}"}
    installs = {
        meta: install(appsflyer_id=devices[meta], customer_user_id=meta,
                      media_source="Meta Ads", campaign=f"spring-{run}",
                      install_time=day.strftime("%Y-%m-%d %H:%M:%S")),
        google: install(appsflyer_id=devices[google], customer_user_id="",
                        media_source="googleadwords_int", campaign=f"brand-{run}",
                        install_time=(day + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")),
        organic: install(appsflyer_id=devices[organic], customer_user_id=organic,
                         media_source="organic", campaign="",
                         install_time=(day + timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S")),
    }
    for body in installs.values():
        response = httpx.post(f"{live.url}{APPSFLYER}?writeKey={SERVER_KEY}", json=body)
        assert response.json()["accepted"] == 1, response.text

    # The app's own events (its SDK's anonymous id, then the user id), a server key.
    app_events: list[dict[str, Any]] = []
    for n, user in enumerate((meta, google, organic)):
        sdk_device = f"sdk-{user}"
        start = day + timedelta(minutes=n)
        app_events += [
            {"type": "screen", "name": "Home", "anonymousId": sdk_device,
             "timestamp": iso(start + timedelta(seconds=20)),
             "context": {"app": {"version": "3.2.0"}}},
            {"type": "track", "event": "signup", "anonymousId": sdk_device, "userId": user,
             "timestamp": iso(start + timedelta(minutes=5)),
             "properties": {"method": "email"}, "context": {"app": {"version": "3.2.0"}}},
        ]
    # The device's install postback had no customer user id: the app links it.
    app_events.append({"type": "alias", "previousId": devices[google], "userId": google,
                       "timestamp": iso(day + timedelta(minutes=7))})
    response = live.post("/v1/batch", {"batch": app_events}, key=SERVER_KEY)
    assert response.json()["accepted"] == len(app_events), response.text

    pushes = {}
    for user in (meta, google, organic):
        pushes[user] = push_click(externalId=user, subscriptionId=f"sub-{user}",
                                  timestamp=iso(day + timedelta(days=1)))
        response = httpx.post(f"{live.url}{ONESIGNAL}?writeKey={SERVER_KEY}",
                              json=pushes[user])
        assert response.json()["accepted"] == 1, response.text
    purchases = [
        {"type": "track", "event": "purchase", "userId": user,
         "timestamp": iso(day + timedelta(days=1, minutes=10)),
         "context": {"app": {"version": "3.2.0"}},
         "properties": {"order_id": f"o-{user}", "revenue": revenue, "currency": "KRW",
                        "items": [{"product_id": "sku-1", "price": revenue, "quantity": 1}]}}
        for user, revenue in ((meta, 30000), (organic, 12000))]
    assert live.post("/v1/batch", {"batch": purchases}, key=SERVER_KEY).json()["accepted"] == 2

    last_purchase = f"o-{organic}"
    wait_until(lambda: sql(live, "SELECT 1 FROM events_raw WHERE event = 'purchase' AND "
                                 "JSONExtractString(properties, 'order_id') = {o:String}",
                           o=last_purchase), timeout=60)
    run_models(live)

    # One person each: the install (partner device id), the app's events and the push.
    people = sql(live, "SELECT person_id, groupUniqArray(event) AS events FROM behavior_events "
                       "WHERE person_id IN {ids:Array(String)} GROUP BY person_id "
                       "ORDER BY person_id", ids=array([meta, google, organic]))
    assert {p["person_id"]: sorted(p["events"]) for p in people} == {
        meta: ["app_install", "purchase", "push_open", "screen_view", "signup"],
        google: ["alias", "app_install", "push_open", "screen_view", "signup"],
        organic: ["app_install", "purchase", "push_open", "screen_view", "signup"],
    }
    strays = sql(live, "SELECT person_id FROM behavior_events WHERE anonymous_id IN "
                       "{ids:Array(String)} AND person_id NOT IN {users:Array(String)}",
                 ids=array([*devices.values(), *(f"sub-{u}" for u in devices)]),
                 users=array(list(devices)))
    assert strays == []

    users = {u["person_id"]: u for u in sql(
        live, "SELECT person_id, first_touch_source, first_touch_medium, first_touch_campaign, "
              "first_touch_channel, anonymous_ids FROM users WHERE person_id IN "
              "{ids:Array(String)}", ids=array([meta, google, organic]))}
    assert {k: (u["first_touch_source"], u["first_touch_medium"], u["first_touch_campaign"],
                u["first_touch_channel"]) for k, u in users.items()} == {
        meta: ("meta ads", "paid", f"spring-{run}", "app"),
        google: ("googleadwords_int", "paid", f"brand-{run}", "app"),
        organic: ("(direct)", "direct", "", "app"),
    }
    assert devices[meta] in users[meta]["anonymous_ids"]
    assert f"sub-{meta}" in users[meta]["anonymous_ids"]

    orders = {o["order_id"]: o for o in sql(
        live, "SELECT order_id, person_id, first_touch_source, first_touch_medium, "
              "first_touch_campaign FROM orders WHERE order_id IN {ids:Array(String)}",
        ids=array([f"o-{meta}", f"o-{organic}"]))}
    assert (orders[f"o-{meta}"]["person_id"], orders[f"o-{meta}"]["first_touch_source"],
            orders[f"o-{meta}"]["first_touch_campaign"]) == (meta, "meta ads", f"spring-{run}")
    assert orders[f"o-{organic}"]["first_touch_source"] == "(direct)"

    credited = sql(live, "SELECT source, medium, sum(orders) AS orders, "
                         "toFloat64(sum(revenue)) AS revenue, sum(new_persons) AS new_persons "
                         "FROM campaign_performance WHERE attribution_model = 'first_touch' "
                         "AND campaign IN {c:Array(String)} GROUP BY source, medium "
                         "ORDER BY source", c=array([f"spring-{run}", f"brand-{run}"]))
    assert credited == [
        {"source": "googleadwords_int", "medium": "paid", "orders": 0, "revenue": 0.0,
         "new_persons": 1},
        {"source": "meta ads", "medium": "paid", "orders": 1, "revenue": 30000.0,
         "new_persons": 1},
    ]

    funnel = httpx.post(f"{live.url}/v1/analyses/funnel", headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120, json={
        "steps": ["app_install", "signup", "push_open", "purchase"], "window": "7d",
        "breakdown": "traffic_source", "attribution": "first",
        "date_from": day.date().isoformat(), "date_to": day.date().isoformat()})
    assert funnel.status_code == 200, funnel.text
    reached = {group["breakdown"]: [step["people"] for step in group["steps"]]
               for group in funnel.json()["data"]["groups"] if group["breakdown"] is not None}
    # Other tests' installs are on other days; these three are the day's.
    assert reached == {"meta ads": [1, 1, 1, 1], "googleadwords_int": [1, 1, 1, 0],
                       "(direct)": [1, 1, 1, 1]}
