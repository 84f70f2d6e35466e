"""Deterministic generator of realistic `events_raw` rows with the truth it planted.

Every person is generated from their own `random.Random(seed, person)` stream, so the
same (seed, people, days, start_date) always yields the same rows, and a big run can be
streamed person by person (`iter_rows`) without holding 10M dicts in memory.

What is planted, on purpose, because the models must cope with it:
- people with 1–3 devices (web desktop/mobile, iOS/Android app), each its own
  anonymous id, who identify late (a later session, often right before buying) — some
  devices through `alias` instead of `identify`, some people renamed (old user id
  aliased to the new one);
- server-side orders carrying only a user id, offline store visits with staff QR
  scans and offline purchases, app installs imported from an attribution partner;
- several campaigns (utm) and classified referrers, direct traffic, a new campaign
  arriving in the middle of a session, pixel traffic without an SDK session id that
  pauses longer than the inactivity gap;
- duplicate deliveries of one message_id, late batches (received days later),
  devices whose clock is hours off (corrected `timestamp` stays true), two device
  time zones (Asia/Seoul and America/Los_Angeles).

Rows use exactly the column names of `events_raw`; times are "YYYY-MM-DD HH:MM:SS.mmm" UTC.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

CURRENCY = "KRW"

# (utm_source, utm_medium, utm_campaign, traffic_source, traffic_medium)
CAMPAIGNS = [
    ("google", "cpc", "spring_sale", "google", "paid"),
    ("naver", "cpc", "brand_keywords", "naver", "paid"),
    ("facebook", "paid_social", "retarget_cart", "facebook", "paid"),
    ("newsletter", "email", "weekly_digest", "newsletter", "email"),
    ("instagram", "social", "influencer_mina", "instagram", "social"),
    ("kakao", "push", "app_push_promo", "kakao", "push"),
]
# (referrer_host, traffic_source, traffic_medium)
REFERRERS = [
    ("google.com", "google", "search"),
    ("search.naver.com", "naver", "search"),
    ("facebook.com", "facebook", "social"),
    ("blog.example.org", "blog.example.org", "referral"),
]
PARTNER_CAMPAIGNS = [("appsflyer", "meta_app_install"), ("adjust", "tiktok_app_install")]
STORES = {
    "store-gangnam": ["staff-01", "staff-02"],
    "store-hongdae": ["staff-03", "staff-04"],
    "store-busan": ["staff-05"],
}
CATEGORIES = ["Shoes/Running", "Shoes/Casual", "Apparel/Tops", "Apparel/Outer", "Bags", "Beauty"]
PRODUCTS = [
    (
        f"p{i:03d}",
        f"Product {i}",
        CATEGORIES[i % len(CATEGORIES)],
        9900 + (i * 7919) % 190000 // 100 * 100,
    )
    for i in range(60)
]
DEVICE_KINDS = {
    "web_desktop": ("web", "desktop", "Windows", "Chrome", "analytics.js"),
    "web_mobile": ("web", "mobile", "iOS", "Mobile Safari", "analytics.js"),
    "app_ios": ("app", "mobile", "iOS", "", "analytics-ios"),
    "app_android": ("app", "mobile", "Android", "", "analytics-android"),
}
COLUMNS = [
    "message_id",
    "type",
    "event",
    "anonymous_id",
    "user_id",
    "previous_id",
    "group_id",
    "original_timestamp",
    "sent_at",
    "received_at",
    "timestamp",
    "session_id",
    "source",
    "channel",
    "page_url",
    "page_path",
    "page_title",
    "page_search",
    "screen_name",
    "referrer",
    "referrer_host",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "click_id",
    "click_id_type",
    "traffic_source",
    "traffic_medium",
    "device_type",
    "device_brand",
    "device_model",
    "os_name",
    "os_version",
    "browser_name",
    "browser_version",
    "is_bot",
    "user_agent",
    "ip",
    "locale",
    "timezone",
    "library_name",
    "library_version",
    "properties",
    "traits",
    "context",
    "schema_version",
    "flags",
]
_BLANK = {c: "" for c in COLUMNS} | {"is_bot": 0, "flags": []}
_TYPE_OF = {"page_view": "page", "screen_view": "screen", "identify": "identify", "alias": "alias"}
_PAGES = ["/", "/new", "/sale", "/category/shoes", "/category/apparel", "/about", "/faq"]


CAMPAIGN_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "traffic_source", "traffic_medium")


def _campaign_fields(campaign: tuple[str, ...]) -> dict[str, str]:
    """One CAMPAIGNS entry as the fields a landing page carries."""
    return dict(zip(CAMPAIGN_FIELDS, campaign, strict=True))


@dataclass
class PersonTruth:
    """What one generated person really is: every id of theirs resolves to `person_id`."""

    person_id: str  # the user id they end up with, else their only anonymous id
    anonymous_ids: list[str]
    user_ids: list[str]  # all user ids, old (aliased) ones first
    order_ids: list[str] = field(default_factory=list)
    staff_id: str = ""  # staff of the first QR scan, "" if none
    store_id: str = ""


@dataclass
class GeneratedData:
    rows: list[dict]
    truth: list[PersonTruth]
    duplicate_message_ids: set[str]
    late_message_ids: set[str]  # received more than a day after they happened


def generate(
    seed: int = 1,
    people: int = 200,
    days: int = 14,
    start_date: date = date(2024, 3, 1),
    **options: float,
) -> GeneratedData:
    """All rows in memory, with the truth — for tests and small demos."""
    rows: list[dict] = []
    truth: list[PersonTruth] = []
    for person_rows, person_truth in _people(seed, people, days, start_date, 0, options):
        rows.extend(person_rows)
        truth.append(person_truth)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["message_id"]] = counts.get(row["message_id"], 0) + 1
    late = {
        r["message_id"]
        for r in rows
        if r["received_at"][:10] > r["timestamp"][:10]
        and r["received_at"] > _plus_ms(r["timestamp"], 24 * 3600 * 1000)
    }
    return GeneratedData(rows, truth, {m for m, n in counts.items() if n > 1}, late)


def iter_rows(
    seed: int = 1,
    people: int = 200,
    days: int = 14,
    start_date: date = date(2024, 3, 1),
    *,
    first_person: int = 0,
    **options: float,
) -> Iterator[dict]:
    """The same rows as `generate`, streamed person by person (for 10M-row runs).

    `first_person`/`people` select a slice of persons, so several processes can
    generate disjoint parts of one dataset.
    """
    for person_rows, _ in _people(seed, people, days, start_date, first_person, options):
        yield from person_rows


def iter_json_batches(
    seed: int,
    people: int,
    days: int,
    start_date: date,
    batch_rows: int = 100_000,
    *,
    first_person: int = 0,
    **options: float,
) -> Iterator[list[bytes]]:
    """Rows already serialised for `Warehouse.insert_json_rows`, in batches."""
    batch: list[bytes] = []
    for row in iter_rows(seed, people, days, start_date, first_person=first_person, **options):
        batch.append(orjson.dumps(row))
        if len(batch) >= batch_rows:
            yield batch
            batch = []
    if batch:
        yield batch


def _people(
    seed: int, people: int, days: int, start_date: date, first_person: int,
    options: dict[str, float],
) -> Iterator[tuple[list[dict[str, Any]], PersonTruth]]:
    start_ms = int(
        datetime(start_date.year, start_date.month, start_date.day, tzinfo=UTC).timestamp() * 1000
    )
    for index in range(first_person, first_person + people):
        person = _Person(random.Random(f"{seed}:{index}"), seed, index, days, start_ms, options)
        yield person.build()


_DAY_PREFIX: dict[int, str] = {}


def _fmt(ms: int) -> str:
    """Epoch milliseconds → "YYYY-MM-DD HH:MM:SS.mmm" (UTC), without datetime per call."""
    day, rest = divmod(ms, 86_400_000)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d ")
    seconds, milli = divmod(rest, 1000)
    minutes, sec = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}"


def _plus_ms(text: str, ms: int) -> str:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return _fmt(int(moment.timestamp() * 1000) + ms)


class _Person:
    """One person's whole history: devices, sessions, identity, orders, store visits."""

    def __init__(
        self,
        rng: random.Random,
        seed: int,
        index: int,
        days: int,
        start_ms: int,
        options: dict[str, float],
    ) -> None:
        self.rng = rng
        self.days = days
        self.start_ms = start_ms
        self.dup_rate = options.get("duplicate_rate", 0.01)
        self.late_rate = options.get("late_session_rate", 0.03)
        self.skew_rate = options.get("skewed_device_rate", 0.1)
        self.tz_name = "Asia/Seoul" if rng.random() < 0.7 else "America/Los_Angeles"
        self.tz = ZoneInfo(self.tz_name)
        self.ip = f"10.{index % 250}.{(index // 250) % 250}.0"
        self.rows: list[dict] = []
        self.user_id = f"u-{seed}-{index}"
        self.identifies = rng.random() < 0.65
        self.legacy_user_id = (
            f"legacy-{seed}-{index}" if self.identifies and rng.random() < 0.08 else ""
        )
        kinds = list(DEVICE_KINDS)
        n_devices = rng.choices([1, 2, 3], [0.5, 0.35, 0.15])[0]
        self.devices: list[dict[str, Any]] = []
        for _ in range(n_devices):
            kind = rng.choice(kinds)
            self.devices.append(
                {
                    "kind": kind,
                    "anonymous_id": f"{rng.getrandbits(128):032x}",
                    "skew_ms": (
                        rng.choice([-1, 1]) * rng.randint(3600, 6 * 3600) * 1000
                        if rng.random() < self.skew_rate
                        else 0
                    ),
                    # Pixel-only web traffic: no SDK session id, sessions found by the gap.
                    "pixel": kind.startswith("web") and rng.random() < 0.2,
                    "identified": False,
                    "via_alias": kind.startswith("app") and rng.random() < 0.3,
                }
            )
        self.identified_at: int | None = None
        self.truth = PersonTruth(
            person_id=self.user_id if self.identifies else self.devices[0]["anonymous_id"],
            anonymous_ids=[d["anonymous_id"] for d in self.devices],
            user_ids=([self.legacy_user_id] if self.legacy_user_id else [])
            + ([self.user_id] if self.identifies else []),
        )
        if not self.identifies:
            # An anonymous person uses one device only: nothing could ever join two.
            del self.devices[1:]
            self.truth.anonymous_ids = [self.devices[0]["anonymous_id"]]
        self.order_no = 0
        self.seed = seed
        self.index = index

    # -- building -------------------------------------------------------------------
    def build(self) -> tuple[list[dict], PersonTruth]:
        rng = self.rng
        n_sessions = min(1 + int(rng.expovariate(1 / 3.0)), 25)
        first_day = rng.randrange(self.days)
        starts = sorted(
            self._local_start(rng.randint(first_day, self.days - 1)) for _ in range(n_sessions)
        )
        starts[0] = self._local_start(first_day)
        starts.sort()
        for i, start in enumerate(starts):
            device = self.devices[0] if i == 0 else rng.choice(self.devices)
            self._session(device, start, first=(i == 0))
        if self.identifies and self.identified_at is not None:
            self._server_orders(self.identified_at)
            self._store_visits(self.identified_at)
        return self.rows, self.truth

    def _local_start(self, day: int) -> int:
        """A moment on `day` between 08:00 and 23:30 local time of this person."""
        base = datetime.fromtimestamp(self.start_ms / 1000 + day * 86400, UTC).date()
        local = datetime(base.year, base.month, base.day, 8, 0, tzinfo=self.tz)
        return int(local.timestamp() * 1000) + self.rng.randint(0, int(15.5 * 3600)) * 1000

    def _session(self, device: dict, start: int, first: bool) -> None:
        rng = self.rng
        channel = DEVICE_KINDS[device["kind"]][0]
        sdk_session = "" if device["pixel"] else f"s-{rng.getrandbits(64):016x}"
        late = rng.random() < self.late_rate and channel == "app"
        roll = rng.random()
        landing: dict[str, str] = {}
        if roll < 0.4:
            landing = _campaign_fields(rng.choice(CAMPAIGNS))
        elif roll < 0.7 and channel == "web":
            host, src, med = rng.choice(REFERRERS)
            landing = {
                "referrer": f"https://{host}/",
                "referrer_host": host,
                "traffic_source": src,
                "traffic_medium": med,
            }
        ctx = {
            "device": device,
            "channel": channel,
            "session_id": sdk_session,
            "late": late,
            "late_ms": rng.randint(26, 80) * 3600 * 1000,
        }
        t = start
        if channel == "app" and first and rng.random() < 0.5:
            partner, campaign = rng.choice(PARTNER_CAMPAIGNS)
            self._emit(
                ctx,
                t - 60_000,
                "app_install",
                {"partner": partner, "campaign": campaign},
                source="partner-import",
                channel="server",
                session_id="",
                extra={
                    "utm_source": partner,
                    "utm_medium": "app_install",
                    "utm_campaign": campaign,
                    "traffic_source": partner,
                    "traffic_medium": "paid",
                },
            )
        if landing.get("traffic_source") == "kakao" and channel == "app":
            self._emit(ctx, t, "push_open", {"campaign_id": landing["utm_campaign"]}, extra=landing)
            t += rng.randint(1, 5) * 1000
            landing = {}
        self._view(ctx, t, rng.choice(_PAGES), landing)
        intent = rng.random()
        steps = rng.randint(1, 6)
        viewed: list[tuple] = []
        for _ in range(steps):
            t += rng.randint(5, 120) * 1000
            if device["pixel"] and rng.random() < 0.1:
                t += rng.randint(35, 70) * 60_000  # a pause longer than the gap
            r = rng.random()
            if r < 0.15:
                self._emit(
                    ctx,
                    t,
                    "search",
                    {
                        "query": rng.choice(["shoes", "bag", "jacket", "serum"]),
                        "result_count": rng.randint(0, 40),
                    },
                )
            elif r < 0.25:
                self._emit(
                    ctx,
                    t,
                    "click",
                    {"element": rng.choice(["#banner", "#menu", ".tile"]), "element_text": "more"},
                )
            elif r < 0.3 and steps > 2:
                # A new campaign lands in the middle of the session.
                camp = _campaign_fields(rng.choice(CAMPAIGNS))
                self._view(ctx, t, rng.choice(_PAGES), camp)
            elif intent > 0.35:
                product = rng.choice(PRODUCTS)
                viewed.append(product)
                t = self._product_page(ctx, t, product)
            else:
                self._view(ctx, t, rng.choice(_PAGES), {})
                if rng.random() < 0.5:
                    t += rng.randint(2, 30) * 1000
                    self._emit(ctx, t, "scroll", {"depth_percent": rng.choice([25, 50, 75, 100])})
        if viewed and intent > 0.6:
            cart = []
            for product in viewed[: rng.randint(1, len(viewed))]:
                t += rng.randint(3, 60) * 1000
                qty = rng.randint(1, 3)
                cart.append((product, qty))
                self._emit(ctx, t, "add_to_cart", _product_props(product, qty))
            if len(cart) > 1 and rng.random() < 0.2:
                t += rng.randint(3, 30) * 1000
                product, qty = cart.pop()
                self._emit(ctx, t, "remove_from_cart", _product_props(product, qty))
            if intent > 0.75 and self.identifies:
                t += rng.randint(10, 90) * 1000
                self._emit(ctx, t, "begin_checkout", {"value": _money(cart)})
                self._identify_device(ctx, t + 500)
                if rng.random() < 0.8:
                    t += rng.randint(30, 300) * 1000
                    self._purchase(ctx, t, cart)
        if self.identifies and rng.random() < 0.25:
            self._identify_device(ctx, t + rng.randint(5, 60) * 1000)

    def _view(self, ctx: dict, t: int, path: str, landing: dict) -> None:
        if ctx["channel"] == "app":
            screen = path.strip("/").replace("/", " ").title() or "Home"
            self._emit(
                ctx, t, "screen_view", {"name": screen}, extra=landing | {"screen_name": screen}
            )
        else:
            query = (
                "?utm_source={utm_source}&utm_medium={utm_medium}&utm_campaign={utm_campaign}".format(
                    **landing
                )
                if landing.get("utm_campaign")
                else ""
            )
            self._emit(
                ctx,
                t,
                "page_view",
                {"path": path},
                extra=landing
                | {
                    "page_path": path,
                    "page_url": f"https://shop.example.com{path}{query}",
                    "page_title": path.strip("/") or "home",
                    "page_search": query,
                },
            )

    def _product_page(self, ctx: dict, t: int, product: tuple) -> int:
        rng = self.rng
        self._view(ctx, t, f"/products/{product[0]}", {})
        t += rng.randint(1, 3) * 1000
        props = _product_props(product, 1) | {"dwell_ms": rng.randint(2, 90) * 1000}
        self._emit(ctx, t, "product_view", props)
        if rng.random() < 0.6:
            t += rng.randint(2, 20) * 1000
            self._emit(
                ctx,
                t,
                "scroll",
                {"depth_percent": rng.choice([25, 50, 75, 100]), "product_id": product[0]},
            )
        if ctx["channel"] == "app" and rng.random() < 0.6:
            for _ in range(rng.randint(1, 4)):
                t += rng.randint(1, 5) * 1000
                self._emit(
                    ctx,
                    t,
                    "swipe",
                    {
                        "direction": rng.choice(["left", "right"]),
                        "element": "product-gallery",
                        "distance_px": rng.randint(80, 400),
                        "product_id": product[0],
                    },
                )
        return t

    def _purchase(self, ctx: dict, t: int, cart: list, **kw) -> None:
        self.order_no += 1
        order_id = f"o-{self.seed}-{self.index}-{self.order_no}"
        self.truth.order_ids.append(order_id)
        items = [
            {"product_id": p[0], "name": p[1], "category": p[2], "price": p[3], "quantity": q}
            for p, q in cart
        ]
        props = {
            "order_id": order_id,
            "revenue": _money(cart),
            "currency": CURRENCY,
            "coupon": "WELCOME10" if self.order_no == 1 and self.rng.random() < 0.3 else "",
            "items": items,
        } | kw.pop("props", {})
        self._emit(ctx, t, "purchase", props, **kw)

    def _identify_device(self, ctx: dict, t: int) -> None:
        device = ctx["device"]
        if device["identified"]:
            return
        device["identified"] = True
        if self.identified_at is None:
            self.identified_at = t
            if self.legacy_user_id:
                # Known first under an old id, then renamed: old id aliased to the new one.
                self._emit(
                    ctx,
                    t,
                    "identify",
                    {},
                    user_id=self.legacy_user_id,
                    traits={"email": f"{self.user_id}@example.com", "plan": "legacy"},
                )
                self._emit(ctx, t + 200, "alias", {}, previous_id=self.legacy_user_id)
                return
        if device["via_alias"]:
            self._emit(ctx, t, "alias", {}, previous_id=device["anonymous_id"])
        else:
            self._emit(
                ctx,
                t,
                "identify",
                {},
                traits={"email": f"{self.user_id}@example.com", "name": f"Person {self.index}"},
            )

    def _server_orders(self, identified_at: int) -> None:
        rng = self.rng
        if rng.random() >= 0.15:
            return
        for _ in range(rng.randint(1, 2)):
            t = identified_at + rng.randint(1, 72) * 3600 * 1000
            cart = [(rng.choice(PRODUCTS), rng.randint(1, 2))]
            ctx = {
                "device": None,
                "channel": "server",
                "session_id": "",
                "late": False,
                "late_ms": 0,
            }
            self._purchase(ctx, t, cart, source="backend")

    def _store_visits(self, identified_at: int) -> None:
        rng = self.rng
        if rng.random() >= 0.2:
            return
        store = rng.choice(sorted(STORES))
        staff = rng.choice(STORES[store])
        t = identified_at + rng.randint(-72, 72) * 3600 * 1000
        ctx = {"device": None, "channel": "offline", "session_id": "", "late": False, "late_ms": 0}
        self._emit(ctx, t, "store_visit", {"store_id": store}, source="pos")
        if rng.random() < 0.7:
            self._emit(
                ctx,
                t + 60_000,
                "staff_qr_scan",
                {"staff_id": staff, "store_id": store},
                source="pos",
            )
            if not self.truth.staff_id:
                self.truth.staff_id, self.truth.store_id = staff, store
        if rng.random() < 0.5:
            cart = [(rng.choice(PRODUCTS), 1)]
            self._purchase(
                ctx,
                t + 15 * 60_000,
                cart,
                source="pos",
                props={"store_id": store, "staff_id": staff},
            )

    # -- one row ---------------------------------------------------------------------
    def _emit(
        self,
        ctx: dict,
        t: int,
        event: str,
        props: dict,
        *,
        extra: dict | None = None,
        user_id: str | None = None,
        previous_id: str = "",
        traits: dict | None = None,
        source: str | None = None,
        channel: str | None = None,
        session_id: str | None = None,
    ) -> None:
        rng = self.rng
        device = ctx["device"]
        channel = channel or ctx["channel"]
        row = dict(_BLANK)
        row["message_id"] = f"{rng.getrandbits(128):032x}"
        row["type"] = _TYPE_OF.get(event, "track")
        row["event"] = event
        if device is not None:
            row["anonymous_id"] = device["anonymous_id"]
        if user_id is not None:
            row["user_id"] = user_id
        elif self.identifies and (device is None or device["identified"]):
            row["user_id"] = self.user_id
        if event == "alias":
            row["user_id"] = self.user_id
        row["previous_id"] = previous_id
        skew = device["skew_ms"] if device is not None else 0
        send_delay = rng.randint(50, 3000)
        net = rng.randint(20, 400)
        if ctx["late"]:
            send_delay += ctx["late_ms"]  # an app batch kept offline for days
        row["original_timestamp"] = _fmt(t + skew)
        row["sent_at"] = _fmt(t + skew + send_delay)
        row["received_at"] = _fmt(t + send_delay + net)
        row["timestamp"] = _fmt(t + net)
        row["session_id"] = ctx["session_id"] if session_id is None else session_id
        row["source"] = source or channel
        row["channel"] = channel
        row["traffic_source"], row["traffic_medium"] = "(direct)", "direct"
        if extra:
            row.update(extra)
        if device is not None and channel in ("web", "app"):
            _, dtype, os_name, browser, lib = DEVICE_KINDS[device["kind"]]
            row.update(
                device_type=dtype,
                os_name=os_name,
                browser_name=browser,
                library_name=lib,
                library_version="1.0.0",
                locale="ko-KR" if self.tz_name == "Asia/Seoul" else "en-US",
            )
        row["timezone"] = self.tz_name
        row["ip"] = self.ip
        row["properties"] = orjson.dumps(props).decode()
        row["traits"] = orjson.dumps(traits or {}).decode()
        row["context"] = "{}"
        row["schema_version"] = f"{event}/1-0-0"
        self.rows.append(row)
        if rng.random() < self.dup_rate:
            copy = dict(row)
            retry = rng.randint(1_000, 120_000)
            copy["sent_at"] = _fmt(t + skew + send_delay + retry)
            copy["received_at"] = _fmt(t + send_delay + net + retry)
            self.rows.append(copy)


def _product_props(product: tuple, qty: int) -> dict:
    pid, name, category, price = product
    return {
        "product_id": pid,
        "name": name,
        "category": category,
        "price": price,
        "quantity": qty,
        "currency": CURRENCY,
    }


def _money(cart: list) -> int:
    return sum(p[3] * q for p, q in cart)


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a reporting day in UTC."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
