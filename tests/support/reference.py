"""An independent, plain-Python statement of the model rules (no SQL), for the tests.

`build_reference(rows, tz, gap_minutes)` takes `events_raw` rows (dicts, as the
generator makes them) and computes the key figures of every table the SQL models
build. It is written for clarity, not speed: loops over each person's events in time
order, the way one would explain the rules to an analyst. The tests compare it with
the SQL, table by table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

STAGES = [
    "never_visited",
    "visited_no_shopping",
    "viewed_product_or_cart",
    "purchased_once",
    "purchased_repeat",
]
VISIT_EVENTS = {"page_view", "screen_view", "store_visit"}
SHOP_EVENTS = {"product_view", "add_to_cart"}
INTERACTIONS = {
    "click",
    "scroll",
    "swipe",
    "search",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "begin_checkout",
    "purchase",
    "signup",
    "login",
    "campaign_click",
    "store_visit",
    "staff_qr_scan",
}
PRODUCT_EVENTS = {"product_view", "add_to_cart", "remove_from_cart", "scroll", "swipe", "click"}
CENT = Decimal("0.01")


def money(value: Any) -> Decimal:
    """A JSON number as Decimal(18, 2), truncated like toDecimal64OrZero(text, 2)."""
    if value is None or isinstance(value, bool):
        return Decimal("0.00")
    try:
        return Decimal(str(value)).quantize(CENT, rounding="ROUND_DOWN")
    except ArithmeticError:
        return Decimal("0.00")


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def fmt_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


@dataclass
class Event:
    message_id: str
    at: int  # epoch ms, corrected time
    day: date  # reporting day
    type: str
    event: str
    anonymous_id: str
    user_id: str
    sdk: str
    campaign_key: str
    channel: str
    source: str
    referrer_host: str
    page_path: str
    traffic_source: str
    traffic_medium: str
    utm_campaign: str
    props: dict
    traits: str
    person: str = ""
    session: str = ""


@dataclass
class Reference:
    identity: dict[str, str] = field(default_factory=dict)  # id → person_id
    events: dict[str, Event] = field(default_factory=dict)  # message_id → event
    sessions: dict[str, dict] = field(default_factory=dict)
    product_engagement: dict[tuple, dict] = field(default_factory=dict)
    orders: dict[str, dict] = field(default_factory=dict)
    order_items: dict[tuple, dict] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    funnel_stages: dict[tuple, dict] = field(default_factory=dict)
    campaign_performance: dict[tuple, dict] = field(default_factory=dict)


def build_reference(rows: list[dict], tz: str = "UTC", gap_minutes: int = 30) -> Reference:
    ref = Reference()
    zone = ZoneInfo(tz)
    deduped = _dedup(rows)
    ref.identity = _identity(rows)
    for row in deduped:
        ev = _event(row, zone)
        if ev is None:
            continue
        if ev.user_id:
            ev.person = ref.identity.get(ev.user_id, ev.user_id)
        else:
            ev.person = ref.identity.get(ev.anonymous_id, ev.anonymous_id)
        ref.events[ev.message_id] = ev
    by_person: dict[str, list[Event]] = defaultdict(list)
    for ev in ref.events.values():
        by_person[ev.person].append(ev)
    for evs in by_person.values():
        evs.sort(key=lambda e: (e.at, e.message_id))
    _sessionise(ref, by_person, gap_minutes * 60 * 1000)
    _product_engagement(ref)
    _orders(ref, by_person)
    _users(ref, by_person)
    _funnel_stages(ref, by_person)
    _campaign_performance(ref)
    return ref


# -- the steps ----------------------------------------------------------------------------
def _dedup(rows: list[dict]) -> list[dict]:
    """One copy per message_id: the earliest received."""
    best: dict[str, dict] = {}
    for row in rows:
        kept = best.get(row["message_id"])
        if kept is None or row["received_at"] < kept["received_at"]:
            best[row["message_id"]] = row
    return list(best.values())


def _identity(rows: list[dict]) -> dict[str, str]:
    """Each id's first link (earliest time, then message_id), followed up to 4 hops."""
    first: dict[str, tuple] = {}

    def link(src: str, dst: str, row: dict) -> None:
        key = (row["timestamp"], row["message_id"])
        if src not in first or key < first[src][0]:
            first[src] = (key, dst)

    for row in rows:
        if row["anonymous_id"] and row["user_id"] and row["anonymous_id"] != row["user_id"]:
            link(row["anonymous_id"], row["user_id"], row)
        if (
            row["type"] == "alias"
            and row["previous_id"]
            and row["user_id"]
            and row["previous_id"] != row["user_id"]
        ):
            link(row["previous_id"], row["user_id"], row)
    links = {src: dst for src, (_, dst) in first.items()}
    identity = {}
    for src, dst in links.items():
        person = dst
        for _ in range(3):
            if person in links:
                person = links[person]
            else:
                break
        identity[src] = person
    return identity


def _event(row: dict, zone: ZoneInfo) -> Event | None:
    if not row["anonymous_id"] and not row["user_id"]:
        return None
    at = ms_of(row["timestamp"])
    page_path = row["page_path"]
    if row["type"] == "screen" and not page_path:
        page_path = row["screen_name"]
    campaign_key = (
        f"{row['utm_source']}/{row['utm_medium']}/{row['utm_campaign']}"
        if row["utm_campaign"]
        else ""
    )
    return Event(
        message_id=row["message_id"],
        at=at,
        day=datetime.fromtimestamp(at / 1000, zone).date(),
        type=row["type"],
        event=row["event"],
        anonymous_id=row["anonymous_id"],
        user_id=row["user_id"],
        sdk=row["session_id"],
        campaign_key=campaign_key,
        channel=row["channel"],
        source=row["source"],
        referrer_host=row["referrer_host"],
        page_path=page_path,
        traffic_source=row["traffic_source"],
        traffic_medium=row["traffic_medium"],
        utm_campaign=row["utm_campaign"],
        props=orjson.loads(row["properties"] or "{}"),
        traits=row["traits"],
    )


def _sessionise(ref: Reference, by_person: dict[str, list[Event]], gap_ms: int) -> None:
    for person, evs in by_person.items():
        by_day: dict[date, list[Event]] = defaultdict(list)
        for ev in evs:
            by_day[ev.day].append(ev)
        for day, day_evs in by_day.items():
            last_sdk = last_camp = ""
            prev_at = None
            current: list[Event] = []
            for ev in day_evs:
                starts = (
                    prev_at is None
                    or (ev.sdk and last_sdk and ev.sdk != last_sdk)
                    or (not (ev.sdk and ev.sdk == last_sdk) and ev.at - prev_at > gap_ms)
                    or (ev.campaign_key and ev.campaign_key != last_camp)
                )
                if starts and current:
                    _close_session(ref, person, day, current)
                    current = []
                current.append(ev)
                prev_at = ev.at
                last_sdk = ev.sdk or last_sdk
                last_camp = ev.campaign_key or last_camp
            _close_session(ref, person, day, current)


def _close_session(ref: Reference, person: str, day: date, evs: list[Event]) -> None:
    first = evs[0]
    for ev in evs:
        ev.session = first.message_id
    views = [e for e in evs if e.type in ("page", "screen")]
    orders: dict[str, Decimal] = {}
    for e in evs:
        if e.event == "purchase" and e.props.get("order_id") and e.props["order_id"] not in orders:
            orders[e.props["order_id"]] = money(e.props.get("revenue"))
    count = lambda name: sum(1 for e in evs if e.event == name)  # noqa: E731
    pageviews = sum(1 for e in evs if e.event in ("page_view", "screen_view"))
    interactions = sum(1 for e in evs if e.event in INTERACTIONS)
    ref.sessions[first.message_id] = {
        "session_date": day.isoformat(),
        "person_id": person,
        "started_at": fmt_ms(first.at),
        "ended_at": fmt_ms(evs[-1].at),
        "duration_seconds": (evs[-1].at - first.at) // 1000,
        "entry_page": views[0].page_path if views else "",
        "exit_page": views[-1].page_path if views else "",
        "landing_source": first.traffic_source or "(direct)",
        "landing_medium": first.traffic_medium or "direct",
        "landing_campaign": first.utm_campaign,
        "landing_referrer_host": first.referrer_host,
        "channel": first.channel,
        "source": first.source,
        "pageviews": pageviews,
        "events": len(evs),
        "product_views": count("product_view"),
        "add_to_carts": count("add_to_cart"),
        "checkouts": count("begin_checkout"),
        "is_bounce": int(pageviews == 1 and interactions == 0),
        "reached_purchase": int(count("purchase") > 0),
        "orders": len(orders),
        "revenue": sum(orders.values(), Decimal("0.00")),
    }


def _first_purchases(ref: Reference, per_day: bool) -> list[Event]:
    """The first purchase event of each order (of each order and day, if per_day)."""
    seen: dict[tuple, Event] = {}
    for ev in sorted(ref.events.values(), key=lambda e: (e.at, e.message_id)):
        if ev.event == "purchase" and ev.props.get("order_id"):
            key = (ev.day, ev.props["order_id"]) if per_day else (ev.props["order_id"],)
            seen.setdefault(key, ev)
    return list(seen.values())


def _lines(purchase: Event) -> list[dict]:
    return [item for item in purchase.props.get("items") or [] if isinstance(item, dict)]


def _product_engagement(ref: Reference) -> None:
    cells: dict[tuple, dict] = {}

    firsts: dict[tuple, list[tuple[int, str, str, str, str]]] = defaultdict(list)

    def cell(ev: Event, product: str, name: str, category: str, currency: str) -> dict:
        key = (ev.day.isoformat(), ev.person, product)
        firsts[key].append((ev.at, ev.message_id, name, category, currency))
        if key not in cells:
            cells[key] = {
                "detail_views": 0,
                "dwell_ms": 0,
                "max_scroll_depth": None,
                "swipes": 0,
                "clicks": 0,
                "add_to_carts": 0,
                "added_quantity": 0,
                "remove_from_carts": 0,
                "orders": set(),
                "purchased_quantity": 0,
                "purchased_revenue": Decimal("0.00"),
            }
        return cells[key]

    for ev in ref.events.values():
        product = ev.props.get("product_id") or ""
        if not product or ev.event not in PRODUCT_EVENTS:
            continue
        c = cell(ev, product, _text(ev.props.get("name")), _text(ev.props.get("category")),
                 _text(ev.props.get("currency")))
        if ev.event == "product_view":
            c["detail_views"] += 1
            c["dwell_ms"] += int(ev.props.get("dwell_ms") or 0)
        elif ev.event == "scroll" and "depth_percent" in ev.props:
            depth = float(ev.props["depth_percent"])
            c["max_scroll_depth"] = (
                depth if c["max_scroll_depth"] is None else max(c["max_scroll_depth"], depth)
            )
        elif ev.event == "swipe":
            c["swipes"] += 1
        elif ev.event == "click":
            c["clicks"] += 1
        elif ev.event == "add_to_cart":
            c["add_to_carts"] += 1
            c["added_quantity"] += int(ev.props.get("quantity") or 0)
        elif ev.event == "remove_from_cart":
            c["remove_from_carts"] += 1
    for purchase in _first_purchases(ref, per_day=True):
        for item in _lines(purchase):
            if not item.get("product_id"):
                continue
            c = cell(purchase, item["product_id"], _text(item.get("name")),
                     _text(item.get("category")), _text(purchase.props.get("currency")))
            qty = int(item.get("quantity") or 0)
            c["orders"].add(purchase.props["order_id"])
            c["purchased_quantity"] += qty
            c["purchased_revenue"] += money(item.get("price")) * qty
    for key, c in cells.items():
        # The first non-empty value of each, in (event time, message_id) order.
        seen = sorted(firsts[key], key=lambda f: (f[0], f[1]))
        for i, column in enumerate(("product_name", "product_category", "currency"), 2):
            c[column] = next((f[i] for f in seen if f[i]), "")
        c["orders"] = len(c["orders"])
        c["converted"] = int(c["orders"] > 0)
        ref.product_engagement[key] = c


def _orders(ref: Reference, by_person: dict[str, list[Event]]) -> None:
    sessions_of: dict[str, list[tuple]] = defaultdict(list)
    for sid, s in ref.sessions.items():
        sessions_of[s["person_id"]].append((s["started_at"], sid, s))
    for items in sessions_of.values():
        items.sort(key=lambda x: (x[0], x[1]))
    purchases = sorted(
        _first_purchases(ref, per_day=False), key=lambda e: (e.person, e.at, e.props["order_id"])
    )
    seq: dict[str, int] = defaultdict(int)
    for p in purchases:
        order_id = p.props["order_id"]
        seq[p.person] += 1
        history = by_person[p.person]
        first_view_of_order = None
        lines = _lines(p)
        for n, item in enumerate(lines, 1):
            product = item.get("product_id") or ""
            views = [
                e.at
                for e in history
                if e.event == "product_view"
                and e.props.get("product_id") == product
                and product
                and e.at < p.at
            ]
            carts = [
                e
                for e in history
                if e.event == "add_to_cart"
                and e.props.get("product_id") == product
                and product
                and e.at < p.at
            ]
            first_view = min(views) if views else None
            if first_view is not None:
                first_view_of_order = min(first_view_of_order or first_view, first_view)
            ref.order_items[(order_id, n)] = {
                "person_id": p.person,
                "product_id": product,
                "quantity": int(item.get("quantity") or 0),
                "line_revenue": money(item.get("price")) * int(item.get("quantity") or 0),
                "views_before_purchase": len(views),
                "carts_before_purchase": len(carts),
                "seconds_from_first_view": (p.at - first_view) // 1000
                if first_view is not None
                else None,
            }
        person_sessions = sessions_of[p.person]
        first_started, _, first_session = person_sessions[0]
        touch = None
        for started, _, s in person_sessions:
            if started <= fmt_ms(p.at) and s["landing_medium"] != "direct":
                touch = s  # the latest non-direct session started at or before the order
        scans = [e for e in history if e.event == "staff_qr_scan"]
        scan = scans[0] if scans else None
        credited = scan is not None and scan.at <= p.at
        order_session = ref.sessions.get(p.session)
        ref.orders[order_id] = {
            "person_id": p.person,
            "ordered_at": fmt_ms(p.at),
            "order_date": p.day.isoformat(),
            "order_seq": seq[p.person],
            "channel": p.channel,
            "revenue": money(p.props.get("revenue")),
            "item_lines": len(lines),
            "item_quantity": sum(int(i.get("quantity") or 0) for i in lines),
            "credited_staff_id": scan.props.get("staff_id", "") if credited else "",
            "credited_store_id": scan.props.get("store_id", "") if credited else "",
            "first_touch_source": first_session["landing_source"],
            "first_touch_medium": first_session["landing_medium"],
            "first_touch_campaign": first_session["landing_campaign"],
            "last_touch_source": touch["landing_source"] if touch else "(direct)",
            "last_touch_medium": touch["landing_medium"] if touch else "direct",
            "last_touch_campaign": touch["landing_campaign"] if touch else "",
            "lead_time_first_touch_seconds": (p.at - ms_of(first_started)) // 1000,
            "lead_time_session_seconds": (
                (p.at - ms_of(order_session["started_at"])) // 1000 if order_session else None
            ),
            "lead_time_first_product_view_seconds": (
                (p.at - first_view_of_order) // 1000 if first_view_of_order is not None else None
            ),
        }


def _stage(visited: bool, shopped: bool, orders: int) -> int:
    if orders >= 2:
        return 4
    if orders == 1:
        return 3
    return 2 if shopped else 1 if visited else 0


def _users(ref: Reference, by_person: dict[str, list[Event]]) -> None:
    orders_of: dict[str, list[dict]] = defaultdict(list)
    for o in ref.orders.values():
        orders_of[o["person_id"]].append(o)
    sessions_of: dict[str, list[dict]] = defaultdict(list)
    for _, s in sorted(ref.sessions.items(), key=lambda kv: (kv[1]["started_at"], kv[0])):
        sessions_of[s["person_id"]].append(s)
    for person, evs in by_person.items():
        sessions = sessions_of[person]
        non_direct = [s for s in sessions if s["landing_medium"] != "direct"]
        scans = [e for e in evs if e.event == "staff_qr_scan"]
        orders = orders_of[person]
        days = {e.day for e in evs}
        ref.users[person] = {
            "first_seen_at": fmt_ms(evs[0].at),
            "last_seen_at": fmt_ms(evs[-1].at),
            "sessions": len(sessions),
            "events": len(evs),
            "active_days": len(days),
            "first_touch_source": sessions[0]["landing_source"],
            "first_touch_medium": sessions[0]["landing_medium"],
            "first_touch_campaign": sessions[0]["landing_campaign"],
            "last_touch_source": non_direct[-1]["landing_source"] if non_direct else "(direct)",
            "last_touch_medium": non_direct[-1]["landing_medium"] if non_direct else "direct",
            "last_touch_campaign": non_direct[-1]["landing_campaign"] if non_direct else "",
            "acquired_staff_id": scans[0].props.get("staff_id", "") if scans else "",
            "acquired_store_id": scans[0].props.get("store_id", "") if scans else "",
            "orders": len(orders),
            "revenue": sum((o["revenue"] for o in orders), Decimal("0.00")),
            "stage_rank": _stage(
                any(e.event in VISIT_EVENTS for e in evs),
                any(e.event in SHOP_EVENTS for e in evs),
                len(orders),
            ),
        }


def _funnel_stages(ref: Reference, by_person: dict[str, list[Event]]) -> None:
    orders_on: dict[tuple, int] = defaultdict(int)
    for o in ref.orders.values():
        orders_on[(o["person_id"], o["order_date"])] += 1
    for person, evs in by_person.items():
        visited = shopped = False
        orders = 0
        previous = 0
        for day in sorted({e.day for e in evs}):
            day_evs = [e for e in evs if e.day == day]
            visited = visited or any(e.event in VISIT_EVENTS for e in day_evs)
            shopped = shopped or any(e.event in SHOP_EVENTS for e in day_evs)
            orders += orders_on[(person, day.isoformat())]
            rank = _stage(visited, shopped, orders)
            ref.funnel_stages[(person, day.isoformat())] = {
                "stage": STAGES[rank],
                "previous_stage": STAGES[previous],
                "moved": int(rank > previous),
                "orders_to_date": orders,
            }
            previous = rank


def _campaign_performance(ref: Reference) -> None:
    sessions_of: dict[str, list[dict]] = defaultdict(list)
    for _, s in sorted(ref.sessions.items(), key=lambda kv: (kv[1]["started_at"], kv[0])):
        sessions_of[s["person_id"]].append(s)
    cells: dict[tuple, dict] = {}
    for person, sessions in sessions_of.items():
        first = sessions[0]
        first_touch = (first["landing_source"], first["landing_medium"], first["landing_campaign"])
        last_touch = ("(direct)", "direct", "")
        for n, s in enumerate(sessions):
            if s["landing_medium"] != "direct":
                last_touch = (s["landing_source"], s["landing_medium"], s["landing_campaign"])
            for model, touch in (("first_touch", first_touch), ("last_touch", last_touch)):
                key = (s["session_date"], model) + touch
                c = cells.setdefault(
                    key,
                    {
                        "sessions": 0,
                        "persons": set(),
                        "new_persons": 0,
                        "product_views": 0,
                        "add_to_carts": 0,
                        "orders": 0,
                        "converting_sessions": 0,
                        "revenue": Decimal("0.00"),
                    },
                )
                c["sessions"] += 1
                c["persons"].add(person)
                c["new_persons"] += int(n == 0)
                c["product_views"] += s["product_views"]
                c["add_to_carts"] += s["add_to_carts"]
                c["orders"] += s["orders"]
                c["converting_sessions"] += int(s["orders"] > 0)
                c["revenue"] += s["revenue"]
    for key, c in cells.items():
        c["persons"] = len(c["persons"])
        ref.campaign_performance[key] = c


def _text(value: object) -> str:
    """A property as the models read it with JSONExtract(…, 'String'): text or ''."""
    return value if isinstance(value, str) else ""
