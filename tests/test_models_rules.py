"""Each model rule pinned down by a tiny hand-made event log."""

from __future__ import annotations

import itertools
from decimal import Decimal

import orjson

from funnelhouse.demo.generator import COLUMNS
from tests.test_models_support import build, settings_for, warehouse_with

_ids = itertools.count(1)


def ev(
    event: str,
    at: str,
    *,
    anon: str = "",
    user: str = "",
    sdk: str = "",
    channel: str = "web",
    props: dict | None = None,
    traits: dict | None = None,
    **fields: str,
) -> dict:
    """One events_raw row; `at` is 'YYYY-MM-DD HH:MM' UTC."""
    row = {c: "" for c in COLUMNS} | {"is_bot": 0, "flags": []}
    stamp = f"{at}:00.000" if len(at) == 16 else at
    n = next(_ids)
    row.update(
        message_id=f"m{n:06d}",
        event=event,
        type={
            "page_view": "page",
            "screen_view": "screen",
            "identify": "identify",
            "alias": "alias",
        }.get(event, "track"),
        anonymous_id=anon,
        user_id=user,
        session_id=sdk,
        channel=channel,
        source=channel,
        original_timestamp=stamp,
        sent_at=stamp,
        received_at=stamp,
        timestamp=stamp,
        traffic_source="(direct)",
        traffic_medium="direct",
        properties=orjson.dumps(props or {}).decode(),
        traits=orjson.dumps(traits or {}).decode(),
    )
    row.update(fields)
    return row


def campaign(source: str, medium: str, name: str, classified: str) -> dict:
    return {
        "utm_source": source,
        "utm_medium": medium,
        "utm_campaign": name,
        "traffic_source": source,
        "traffic_medium": classified,
    }


def purchase(order_id: str, revenue: int, items: list[tuple[str, int, int]], **extra) -> dict:
    return {
        "order_id": order_id,
        "revenue": revenue,
        "currency": "KRW",
        "items": [{"product_id": p, "price": price, "quantity": q} for p, price, q in items],
    } | extra


def run(tmp_path, rows, **settings):
    wh = warehouse_with(tmp_path / "wh", rows)
    build(wh, settings_for(tmp_path, **settings))
    return wh


def rows_of(wh, sql: str) -> list[dict]:
    return wh.query(sql).dicts()


def test_identity_merges_every_device_and_channel_into_one_person(tmp_path):
    log = [
        ev("page_view", "2024-03-01 10:00", anon="web-A", page_path="/"),
        ev("product_view", "2024-03-01 10:01", anon="web-A", props={"product_id": "p1"}),
        ev("screen_view", "2024-03-02 09:00", anon="app-B", channel="app", screen_name="Home"),
        ev("identify", "2024-03-03 12:00", anon="web-A", user="u-1", traits={"email": "a@x"}),
        ev(
            "alias",
            "2024-03-04 08:00",
            anon="app-B",
            user="u-1",
            previous_id="app-B",
            channel="app",
        ),
        ev(
            "purchase",
            "2024-03-05 15:00",
            user="u-1",
            channel="server",
            props=purchase("o-1", 1000, [("p1", 1000, 1)]),
        ),
        ev(
            "store_visit",
            "2024-03-06 11:00",
            user="u-1",
            channel="offline",
            props={"store_id": "s1"},
        ),
        # renamed person: identified as an old id, then the old id aliased to the new one
        ev("page_view", "2024-03-01 11:00", anon="web-C", page_path="/"),
        ev("identify", "2024-03-01 11:05", anon="web-C", user="legacy-2"),
        ev("alias", "2024-03-02 11:05", anon="web-C", user="u-2", previous_id="legacy-2"),
        ev(
            "purchase",
            "2024-03-02 11:10",
            user="u-2",
            channel="server",
            props=purchase("o-2", 500, [("p2", 500, 1)]),
        ),
        # someone who never identifies stays their own person
        ev("page_view", "2024-03-01 12:00", anon="web-D", page_path="/"),
    ]
    wh = run(tmp_path, log)
    people = {
        r["id"]: r["person_id"] for r in rows_of(wh, "SELECT id, person_id FROM identity_map")
    }
    assert people == {
        "web-A": "u-1",
        "app-B": "u-1",
        "u-1": "u-1",
        "web-C": "u-2",
        "legacy-2": "u-2",
        "u-2": "u-2",
        "web-D": "web-D",
    }
    # events from before the person identified are theirs too
    persons = {
        r["message_id"]: r["person_id"]
        for r in rows_of(wh, "SELECT message_id, person_id FROM behavior_events")
    }
    assert persons[log[0]["message_id"]] == "u-1" and persons[log[2]["message_id"]] == "u-1"
    users = {r["person_id"]: r for r in rows_of(wh, "SELECT * FROM users")}
    assert set(users) == {"u-1", "u-2", "web-D"}
    assert users["u-1"]["anonymous_ids"] == ["app-B", "web-A"]
    assert users["u-1"]["channels"] == ["app", "offline", "server", "web"]
    assert users["u-1"]["orders"] == 1 and users["u-1"]["email"] == "a@x"
    assert users["u-2"]["user_ids"] == ["legacy-2", "u-2"]
    order = rows_of(wh, "SELECT person_id, order_seq FROM orders WHERE order_id = 'o-1'")[0]
    assert order == {"person_id": "u-1", "order_seq": 1}


def test_a_shared_device_stays_with_who_identified_first(tmp_path):
    log = [
        ev("identify", "2024-03-01 10:00", anon="shared", user="u-first"),
        ev("identify", "2024-03-02 10:00", anon="shared", user="u-second"),
        ev("page_view", "2024-03-03 10:00", anon="shared"),
        ev("page_view", "2024-03-03 11:00", anon="shared", user="u-second"),
    ]
    wh = run(tmp_path, log)
    persons = [
        r["person_id"]
        for r in rows_of(wh, "SELECT person_id FROM behavior_events ORDER BY event_at")
    ]
    # an anonymous hit follows the device's first link; a hit with a user id is that user's
    assert persons == ["u-first", "u-second", "u-first", "u-second"]


def test_sessions_split_by_inactivity_gap_and_sdk_id_wins(tmp_path):
    log = [
        # pixel traffic without SDK ids: 40 minutes of silence splits
        ev("page_view", "2024-03-01 10:00", anon="px"),
        ev("page_view", "2024-03-01 10:20", anon="px"),
        ev("page_view", "2024-03-01 11:00", anon="px"),
        # the SDK says one session for two hours: one session
        ev("page_view", "2024-03-01 10:00", anon="sdk", sdk="s-1"),
        ev("page_view", "2024-03-01 12:00", anon="sdk", sdk="s-1"),
        # a new SDK session id splits even a minute later
        ev("page_view", "2024-03-01 12:01", anon="sdk", sdk="s-2"),
        # a server event without an SDK id joins the session it happens in
        ev("page_view", "2024-03-01 15:00", anon="buyer", user="u-9", sdk="s-9"),
        ev(
            "purchase",
            "2024-03-01 15:02",
            user="u-9",
            channel="server",
            props=purchase("o-9", 100, [("p1", 100, 1)]),
        ),
    ]
    wh = run(tmp_path, log)
    counts = {
        r["person_id"]: r["n"]
        for r in rows_of(wh, "SELECT person_id, count() AS n FROM sessions GROUP BY person_id")
    }
    assert counts == {"px": 2, "sdk": 2, "u-9": 1}
    buyer = rows_of(
        wh, "SELECT events, orders, revenue, reached_purchase FROM sessions WHERE person_id = 'u-9'"
    )[0]
    assert buyer == {"events": 2, "orders": 1, "revenue": 100, "reached_purchase": 1}
    # the gap is configurable
    wh.close()
    wh = run(tmp_path / "wider", log, session_gap_minutes=45)
    assert rows_of(wh, "SELECT count() AS n FROM sessions WHERE person_id = 'px'") == [{"n": 1}]


def test_a_new_campaign_and_midnight_start_new_sessions(tmp_path):
    google = campaign("google", "cpc", "spring", "paid")
    mail = campaign("newsletter", "email", "digest", "email")
    log = [
        ev("page_view", "2024-03-01 10:00", anon="c", sdk="s-1", page_path="/a", **google),
        ev("page_view", "2024-03-01 10:05", anon="c", sdk="s-1", page_path="/b"),
        ev("page_view", "2024-03-01 10:06", anon="c", sdk="s-1", page_path="/c", **mail),
        ev("page_view", "2024-03-01 10:07", anon="c", sdk="s-1", page_path="/d"),
        # 23:50 and 00:10 Seoul time (14:50 and 15:10 UTC): two reporting days, two sessions
        ev("page_view", "2024-03-01 14:50", anon="n", sdk="s-n"),
        ev("page_view", "2024-03-01 15:10", anon="n", sdk="s-n"),
    ]
    wh = run(tmp_path, log, reporting_tz="Asia/Seoul")
    sessions = rows_of(
        wh,
        "SELECT person_id, session_date, entry_page, exit_page, landing_campaign, "
        "landing_medium, pageviews FROM sessions ORDER BY person_id, started_at",
    )
    assert sessions == [
        {
            "person_id": "c",
            "session_date": "2024-03-01",
            "entry_page": "/a",
            "exit_page": "/b",
            "landing_campaign": "spring",
            "landing_medium": "paid",
            "pageviews": 2,
        },
        {
            "person_id": "c",
            "session_date": "2024-03-01",
            "entry_page": "/c",
            "exit_page": "/d",
            "landing_campaign": "digest",
            "landing_medium": "email",
            "pageviews": 2,
        },
        {
            "person_id": "n",
            "session_date": "2024-03-01",
            "entry_page": "",
            "exit_page": "",
            "landing_campaign": "",
            "landing_medium": "direct",
            "pageviews": 1,
        },
        {
            "person_id": "n",
            "session_date": "2024-03-02",
            "entry_page": "",
            "exit_page": "",
            "landing_campaign": "",
            "landing_medium": "direct",
            "pageviews": 1,
        },
    ]
    bounces = rows_of(wh, "SELECT sum(is_bounce) AS b FROM sessions WHERE person_id = 'n'")
    assert bounces == [{"b": 2}]


def test_first_touch_for_life_and_last_non_direct_touch_for_orders(tmp_path):
    log = [
        ev(
            "page_view",
            "2024-03-01 10:00",
            anon="a",
            sdk="s1",
            **campaign("google", "cpc", "spring", "paid"),
        ),
        ev(
            "page_view",
            "2024-03-02 10:00",
            anon="a",
            sdk="s2",
            **campaign("newsletter", "email", "digest", "email"),
        ),
        ev("page_view", "2024-03-03 10:00", anon="a", user="u", sdk="s3"),  # direct
        ev(
            "purchase",
            "2024-03-03 10:05",
            anon="a",
            user="u",
            sdk="s3",
            props=purchase("o-1", 300, [("p1", 300, 1)]),
        ),
        ev(
            "page_view",
            "2024-03-04 10:00",
            anon="a",
            user="u",
            sdk="s4",
            **campaign("instagram", "social", "mina", "social"),
        ),
        ev(
            "purchase",
            "2024-03-04 10:05",
            anon="a",
            user="u",
            sdk="s4",
            props=purchase("o-2", 200, [("p1", 200, 1)]),
        ),
    ]
    wh = run(tmp_path, log)
    orders = {r["order_id"]: r for r in rows_of(wh, "SELECT * FROM orders")}
    for o in orders.values():
        assert (o["first_touch_source"], o["first_touch_campaign"]) == ("google", "spring")
    assert (orders["o-1"]["last_touch_source"], orders["o-1"]["last_touch_campaign"]) == (
        "newsletter",
        "digest",
    )
    assert (orders["o-2"]["last_touch_source"], orders["o-2"]["last_touch_campaign"]) == (
        "instagram",
        "mina",
    )
    assert [orders["o-1"]["order_seq"], orders["o-2"]["order_seq"]] == [1, 2]
    user = rows_of(
        wh, "SELECT first_touch_campaign, last_touch_campaign, orders, revenue FROM users"
    )[0]
    assert user == {
        "first_touch_campaign": "spring",
        "last_touch_campaign": "mina",
        "orders": 2,
        "revenue": 500,
    }
    perf = {
        (r["performance_date"], r["attribution_model"], r["campaign"]): r
        for r in rows_of(wh, "SELECT * FROM campaign_performance")
    }
    # the direct session of 03-03: the newsletter under last touch, google under first touch
    assert perf[("2024-03-03", "last_touch", "digest")]["orders"] == 1
    assert perf[("2024-03-03", "first_touch", "spring")]["revenue"] == 300
    assert perf[("2024-03-01", "first_touch", "spring")]["new_persons"] == 1
    assert sum(r["orders"] for k, r in perf.items() if k[1] == "first_touch") == 2


def test_staff_of_the_first_qr_scan_is_credited_with_every_later_order(tmp_path):
    log = [
        ev(
            "purchase",
            "2024-03-01 10:00",
            user="u",
            channel="server",
            props=purchase("o-before", 100, [("p1", 100, 1)]),
        ),
        ev(
            "store_visit",
            "2024-03-02 11:00",
            user="u",
            channel="offline",
            props={"store_id": "gangnam"},
        ),
        ev(
            "staff_qr_scan",
            "2024-03-02 11:01",
            user="u",
            channel="offline",
            props={"staff_id": "staff-7", "store_id": "gangnam"},
        ),
        ev(
            "staff_qr_scan",
            "2024-03-05 11:01",
            user="u",
            channel="offline",
            props={"staff_id": "staff-8", "store_id": "busan"},
        ),
        ev(
            "purchase",
            "2024-03-03 20:00",
            anon="web",
            user="u",
            sdk="s",
            props=purchase("o-online", 200, [("p1", 200, 1)]),
        ),
        ev(
            "purchase",
            "2024-03-06 12:00",
            user="u",
            channel="offline",
            props=purchase("o-store", 300, [("p2", 300, 1)], store_id="busan", staff_id="staff-8"),
        ),
    ]
    wh = run(tmp_path, log)
    credit = {
        r["order_id"]: (r["credited_staff_id"], r["credited_store_id"])
        for r in rows_of(wh, "SELECT order_id, credited_staff_id, credited_store_id FROM orders")
    }
    assert credit == {
        "o-before": ("", ""),
        "o-online": ("staff-7", "gangnam"),
        "o-store": ("staff-7", "gangnam"),
    }
    user = rows_of(wh, "SELECT acquired_staff_id, acquired_store_id, acquired_at FROM users")[0]
    assert user == {
        "acquired_staff_id": "staff-7",
        "acquired_store_id": "gangnam",
        "acquired_at": "2024-03-02 11:01:00.000",
    }


def test_funnel_stage_moves_with_the_day_they_happen(tmp_path):
    log = [
        ev("page_view", "2024-03-01 10:00", anon="a", user="u"),
        ev("page_view", "2024-03-02 10:00", anon="a", user="u"),
        ev("product_view", "2024-03-03 10:00", anon="a", user="u", props={"product_id": "p1"}),
        ev(
            "purchase",
            "2024-03-04 10:00",
            anon="a",
            user="u",
            props=purchase("o1", 10, [("p1", 10, 1)]),
        ),
        ev(
            "purchase",
            "2024-03-06 10:00",
            user="u",
            channel="server",
            props=purchase("o2", 10, [("p1", 10, 1)]),
        ),
        # known only from an identify: never visited
        ev("identify", "2024-03-02 10:00", anon="z", user="crm-only"),
        # a store-only buyer jumps straight to purchased_once
        ev(
            "purchase",
            "2024-03-02 10:00",
            user="offline-only",
            channel="offline",
            props=purchase("o3", 10, [("p1", 10, 1)]),
        ),
    ]
    wh = run(tmp_path, log)
    stages = [
        (r["stage_date"], r["stage"], r["previous_stage"], r["moved"])
        for r in rows_of(
            wh, "SELECT * FROM funnel_stages WHERE person_id = 'u' ORDER BY stage_date"
        )
    ]
    assert stages == [
        ("2024-03-01", "visited_no_shopping", "never_visited", 1),
        ("2024-03-02", "visited_no_shopping", "visited_no_shopping", 0),
        ("2024-03-03", "viewed_product_or_cart", "visited_no_shopping", 1),
        ("2024-03-04", "purchased_once", "viewed_product_or_cart", 1),
        ("2024-03-06", "purchased_repeat", "purchased_once", 1),
    ]
    entered = rows_of(
        wh,
        "SELECT stage_entered_date FROM funnel_stages WHERE person_id = 'u' "
        "AND stage_date = '2024-03-02'",
    )
    assert entered == [{"stage_entered_date": "2024-03-01"}]
    current = {
        r["person_id"]: r["lifecycle_stage"]
        for r in rows_of(wh, "SELECT person_id, lifecycle_stage FROM users")
    }
    assert current == {
        "u": "purchased_repeat",
        "crm-only": "never_visited",
        "offline-only": "purchased_once",
    }


def test_lead_times_and_the_behaviour_behind_each_order_line(tmp_path):
    log = [
        ev("page_view", "2024-03-01 09:00", anon="a", sdk="s1"),  # first touch
        ev("product_view", "2024-03-01 09:10", anon="a", sdk="s1", props={"product_id": "p1"}),
        ev("product_view", "2024-03-02 18:00", anon="a", sdk="s2", props={"product_id": "p1"}),
        ev("page_view", "2024-03-03 10:00", anon="a", sdk="s3"),  # order session
        ev("product_view", "2024-03-03 10:01", anon="a", sdk="s3", props={"product_id": "p2"}),
        ev(
            "add_to_cart",
            "2024-03-03 10:02",
            anon="a",
            sdk="s3",
            props={"product_id": "p2", "quantity": 2, "price": 50},
        ),
        ev("identify", "2024-03-03 10:03", anon="a", user="u", sdk="s3"),
        ev(
            "purchase",
            "2024-03-03 10:05",
            anon="a",
            user="u",
            sdk="s3",
            props=purchase("o1", 250, [("p1", 150, 1), ("p2", 50, 2)]),
        ),
        ev(
            "product_view",
            "2024-03-03 10:30",
            anon="a",
            user="u",
            sdk="s3",
            props={"product_id": "p1"},
        ),
    ]
    wh = run(tmp_path, log)
    order = rows_of(
        wh,
        "SELECT lead_time_first_touch_seconds AS ft, lead_time_session_seconds AS ss, "
        "lead_time_first_product_view_seconds AS pv, revenue, item_quantity FROM orders",
    )[0]
    day = 86400
    assert order == {
        "ft": 2 * day + 3600 + 5 * 60,
        "ss": 5 * 60,
        "pv": 2 * day + 3600 - 5 * 60,
        "revenue": 250,
        "item_quantity": 3,
    }
    items = rows_of(
        wh,
        "SELECT product_id, views_before_purchase AS views, carts_before_purchase AS carts, "
        "seconds_from_first_view AS s, line_revenue FROM order_items ORDER BY line_number",
    )
    assert items == [
        {
            "product_id": "p1",
            "views": 2,
            "carts": 0,
            "s": 2 * day + 3600 - 5 * 60,
            "line_revenue": 150,
        },
        {"product_id": "p2", "views": 1, "carts": 1, "s": 4 * 60, "line_revenue": 100},
    ]
    engagement = rows_of(
        wh,
        "SELECT activity_date, product_id, detail_views, purchased_quantity, "
        "purchased_revenue, converted FROM product_engagement "
        "WHERE activity_date = '2024-03-03' ORDER BY product_id",
    )
    assert engagement == [
        {
            "activity_date": "2024-03-03",
            "product_id": "p1",
            "detail_views": 1,
            "purchased_quantity": 1,
            "purchased_revenue": 150,
            "converted": 1,
        },
        {
            "activity_date": "2024-03-03",
            "product_id": "p2",
            "detail_views": 1,
            "purchased_quantity": 2,
            "purchased_revenue": 100,
            "converted": 1,
        },
    ]


def test_duplicates_count_once_and_money_is_exact(tmp_path):
    first = ev(
        "purchase",
        "2024-03-01 10:00",
        anon="a",
        user="u",
        sdk="s",
        props=purchase("o1", 19.99, [("p1", 19.99, 1)], currency="USD"),
    )
    copy = dict(first, received_at="2024-03-01 10:03:00.000")
    wh = run(tmp_path, [first, copy, ev("page_view", "2024-03-01 09:59", anon="a", sdk="s")])
    assert rows_of(wh, "SELECT count() AS n FROM behavior_events") == [{"n": 2}]
    order = rows_of(wh, "SELECT toString(revenue) AS r, currency FROM orders")[0]
    assert order == {"r": "19.99", "currency": "USD"}
    assert Decimal(order["r"]) == Decimal("19.99")


def test_a_products_name_category_and_currency_are_the_days_first_given(tmp_path):
    """Each is the first non-empty value of that person's day with the product, in
    (event time, message_id) order: two events of one millisecond go by message_id."""
    product = {"product_id": "p-1"}
    log = [
        # 09:59: the cart gives a category but no name or currency
        ev("add_to_cart", "2024-03-01 09:59", anon="a", message_id="m-c",
           props=product | {"category": "Shoes", "quantity": 1}),
        # 10:00:00.000 twice: "m-a" sorts before "m-b", so its name and currency win
        ev("product_view", "2024-03-01 10:00", anon="a", message_id="m-b",
           props=product | {"name": "Later name", "category": "Boots", "currency": "USD"}),
        ev("product_view", "2024-03-01 10:00", anon="a", message_id="m-a",
           props=product | {"name": "First name", "currency": "KRW"}),
        ev("product_view", "2024-03-01 11:00", anon="a", message_id="m-0",
           props=product | {"name": "Renamed", "category": "Sandals", "currency": "EUR"}),
    ]
    wh = run(tmp_path, log)
    assert rows_of(wh, "SELECT product_name, product_category, currency, detail_views "
                       "FROM product_engagement WHERE person_id = 'a'") == [
        {"product_name": "First name", "product_category": "Shoes", "currency": "KRW",
         "detail_views": 3}]
