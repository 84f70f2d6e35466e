"""Realistic visitor traffic against a running collector, for locust.

Two kinds of users, in the proportions of a shop with an app:

* WebVisitor (weight 3) — a browser with the JS SDK: lands (sometimes from a campaign
  URL), views pages, clicks, scrolls, searches, views products, carts, sometimes buys.
  Events go one per request (`/v1/page`, `/v1/track`) as the SDK sends them when online,
  a campaign banner's impression goes by the GET pixel, and on page hide the SDK's
  queue leaves by `navigator.sendBeacon` (`text/plain` body to `/v1/batch`).
* AppUser (weight 1) — a mobile app: screens, swipes, product views, carts, purchases,
  queued on the device and flushed as batches of 10–40 events to `/v1/batch`; logs in
  and identifies now and then.

A share of events (INVALID_SHARE, 3% by default) breaks the tracking plan the way taggers
do (a number sent as text, an out-of-range value, a missing required property). Those are
expected to be refused (4xx for a single event; listed under `rejected` in a batch's 200)
and are reported under their own request names, so a wrong answer counts as a failure.

    funnelhouse up                                   # prints its write key
    FUNNELHOUSE_WRITE_KEY=wk_… locust -f load-tests/locustfile.py --headless \
        -u 50 -r 10 -t 60s --host http://127.0.0.1:8080 --csv results/locust

Environment: FUNNELHOUSE_WRITE_KEY (a browser key; required), FUNNELHOUSE_INVALID_SHARE
(0.03), FUNNELHOUSE_THINK (seconds between a visitor's actions, "0.5-3").
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from locust import FastHttpUser, between, events, task

WRITE_KEY = os.environ.get("FUNNELHOUSE_WRITE_KEY", "")
INVALID_SHARE = float(os.environ.get("FUNNELHOUSE_INVALID_SHARE", "0.03"))
THINK = tuple(float(x) for x in os.environ.get("FUNNELHOUSE_THINK", "0.5-3").split("-"))
SITE = "https://shop.example"

WEB_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S921N) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
]
APP_AGENTS = ["ShopApp/3.2.1 (iPhone; iOS 17.4; Scale/3.00)",
              "ShopApp/3.2.0 (Linux; U; Android 14; SM-S921N Build/UP1A)"]
CAMPAIGNS = [("newsletter", "email", "spring_sale"), ("google", "cpc", "brand_search"),
             ("instagram", "paid_social", "new_arrivals"), ("naver", "cpc", "bags_kw")]
REFERRERS = ["https://www.google.com/", "https://m.search.naver.com/", "https://instagram.com/",
             "", "", ""]
CATEGORIES = ["Bags", "Shoes", "Outer", "Tops", "Accessories"]
PRODUCTS = [(f"p{n:03d}", f"Product {n}", CATEGORIES[n % len(CATEGORIES)],
             (n % 17 + 3) * 9_900) for n in range(1, 121)]
PAGES = ["/", "/new", "/sale", "/category/bags", "/category/shoes", "/about", "/help"]
SEARCHES = ["tote bag", "sneakers", "rain coat", "wallet", "linen shirt"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _product_props(product: tuple[str, str, str, int], quantity: int = 1) -> dict[str, Any]:
    pid, name, category, price = product
    return {"product_id": pid, "name": name, "category": category, "price": price,
            "quantity": quantity, "currency": "KRW"}


def _broken(event: str, properties: dict[str, Any], n: int) -> tuple[str, dict[str, Any]]:
    """One of three tagging mistakes."""
    kind = n % 3
    if kind == 0:
        return "purchase", {"order_id": f"bad-{n}", "revenue": "12,000", "currency": "KRW",
                            "items": []}
    if kind == 1:
        return "scroll", {"depth_percent": 150}
    return "click", {"element_text": "Buy"}        # element is required


class Visitor:
    """What every user kind shares: identity, session, message building, checks."""

    channel = "web"
    library = {"name": "analytics.js", "version": "1.4.0"}

    def begin(self) -> None:
        self.anonymous_id = str(uuid.uuid4())
        self.user_id = ""
        self.session_id = f"s-{uuid.uuid4().hex[:16]}"
        self.cart: list[tuple[tuple[str, str, str, int], int]] = []
        self.sent = 0
        self.auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

    def message(self, kind: str, event: str = "", properties: dict[str, Any] | None = None,
                **extra: Any) -> tuple[dict[str, Any], bool]:
        """A Segment-spec message; the bool says whether it was deliberately broken."""
        self.sent += 1
        invalid = kind == "track" and random.random() < INVALID_SHARE
        if invalid:
            event, properties = _broken(event, properties or {}, self.sent)
        message: dict[str, Any] = {
            "type": kind, "messageId": str(uuid.uuid4()), "anonymousId": self.anonymous_id,
            "timestamp": _now(), "context": self.context(), "properties": properties or {},
            **extra,
        }
        if event:
            message["event"] = event
        if self.user_id:
            message["userId"] = self.user_id
        return message, invalid

    def context(self) -> dict[str, Any]:
        return {"library": self.library, "locale": "ko-KR", "timezone": "Asia/Seoul",
                "sessionId": self.session_id, "userAgent": self.user_agent}

    def check_single(self, response: Any, invalid: bool) -> None:
        if invalid:
            if 400 <= response.status_code < 500:
                response.success()
            else:
                response.failure(f"broken event answered {response.status_code}")
        elif response.status_code != 200:
            response.failure(f"{response.status_code}: {response.text[:200]}")

    def check_batch(self, response: Any, broken: int, size: int) -> None:
        # All events broken: the batch is answered with the refusal's 4xx.
        if response.status_code != 200 and not (400 <= response.status_code < 500
                                                and broken == size):
            response.failure(f"{response.status_code}: {response.text[:200]}")
            return
        try:
            body = json.loads(response.text)
        except ValueError:
            response.failure("answer is not JSON")
            return
        rejected = len(body.get("rejected", []))
        if rejected != broken or body.get("accepted", 0) + body.get("duplicates", 0) \
                != size - broken:
            response.failure(f"expected {broken} rejected of {size}, got {body}")


class WebVisitor(Visitor, FastHttpUser):
    weight = 3
    wait_time = between(*THINK)

    def on_start(self) -> None:
        if not WRITE_KEY:
            raise RuntimeError("set FUNNELHOUSE_WRITE_KEY to a browser write key")
        self.begin()
        self.user_agent = random.choice(WEB_AGENTS)
        self.queue: list[tuple[dict[str, Any], bool]] = []   # the SDK's unsent events
        self.campaign = random.choice(CAMPAIGNS) if random.random() < 0.4 else None
        self.referrer = random.choice(REFERRERS)
        self.path = "/"
        self.page()

    def context(self) -> dict[str, Any]:
        context = super().context()
        query = ""
        if self.campaign:
            source, medium, name = self.campaign
            query = "?" + urlencode({"utm_source": source, "utm_medium": medium,
                                     "utm_campaign": name})
        context["page"] = {"url": SITE + self.path + query, "path": self.path,
                           "referrer": self.referrer, "title": self.path.strip("/") or "home"}
        return context

    def send(self, kind: str, event: str = "", properties: dict[str, Any] | None = None,
             **extra: Any) -> None:
        message, invalid = self.message(kind, event, properties, **extra)
        if random.random() < 0.25:
            # Sent later, with the page-hide beacon (the SDK batches when it can).
            self.queue.append((message, invalid))
            return
        name = f"/v1/{kind}" + (" [invalid]" if invalid else "")
        with self.client.post(f"/v1/{kind}", data=json.dumps(message), name=name,
                              headers={"Authorization": self.auth,
                                       "Content-Type": "application/json",
                                       "Origin": SITE, "User-Agent": self.user_agent},
                              catch_response=True) as response:
            self.check_single(response, invalid)

    def page(self) -> None:
        self.send("page", properties={"path": self.path, "url": SITE + self.path})

    @task(5)
    def browse(self) -> None:
        self.path = random.choice(PAGES)
        self.referrer = SITE + "/"
        self.page()
        if random.random() < 0.6:
            self.send("track", "scroll", {"depth_percent": random.choice([25, 50, 75, 100])})

    @task(3)
    def click(self) -> None:
        self.send("track", "click", {"element": random.choice(["#buy", "nav a", ".banner",
                                                                "#menu"]),
                                     "element_text": "Shop now"})

    @task(2)
    def search(self) -> None:
        query = random.choice(SEARCHES)
        self.send("track", "search", {"query": query, "result_count": random.randint(0, 60)})

    @task(4)
    def product(self) -> None:
        product = random.choice(PRODUCTS)
        self.path = f"/product/{product[0]}"
        self.page()
        self.send("track", "product_view", _product_props(product))
        if random.random() < 0.3:
            self.cart.append((product, 1))
            self.send("track", "add_to_cart", _product_props(product))

    @task(1)
    def checkout(self) -> None:
        if not self.cart:
            return
        items = [_product_props(p, q) for p, q in self.cart]
        value = sum(i["price"] * i["quantity"] for i in items)
        self.send("track", "begin_checkout", {"value": value, "currency": "KRW", "items": items})
        if random.random() < 0.5:
            order_id = f"o-{uuid.uuid4().hex[:12]}"
            self.send("track", "purchase", {"order_id": order_id, "revenue": value,
                                            "currency": "KRW", "items": items})
            self.cart.clear()

    @task(1)
    def campaign_pixel(self) -> None:
        """A banner's impression as an <img> pixel (GET, query string)."""
        campaign = random.choice(CAMPAIGNS)
        params = {"writeKey": WRITE_KEY, "type": "track", "event": "campaign_impression",
                  "anonymousId": self.anonymous_id, "messageId": str(uuid.uuid4()),
                  "properties.campaign_id": campaign[2], "properties.placement": "hero",
                  "url": SITE + self.path}
        with self.client.get("/v1/p.gif?" + urlencode(params), name="/v1/p.gif",
                             headers={"User-Agent": self.user_agent}, catch_response=True
                             ) as response:
            if response.status_code != 200 or not response.content.startswith(b"GIF"):
                response.failure(f"pixel answered {response.status_code}")

    @task(2)
    def page_hide(self) -> None:
        """The tab is hidden: the SDK's queue leaves by sendBeacon (text/plain)."""
        if not self.queue:
            return
        batch, self.queue = self.queue, []
        broken = sum(1 for _, invalid in batch if invalid)
        body = json.dumps({"batch": [m for m, _ in batch], "writeKey": WRITE_KEY,
                           "sentAt": _now()})
        with self.client.post("/v1/batch", data=body, name="/v1/batch (beacon)",
                              headers={"Content-Type": "text/plain;charset=UTF-8",
                                       "Origin": SITE, "User-Agent": self.user_agent},
                              catch_response=True) as response:
            self.check_batch(response, broken, len(batch))
        if random.random() < 0.3:      # sometimes the visitor leaves for good
            self.begin()
            self.user_agent = random.choice(WEB_AGENTS)
            self.queue = []
            self.campaign = random.choice(CAMPAIGNS) if random.random() < 0.4 else None
            self.path = "/"
            self.page()


class AppUser(Visitor, FastHttpUser):
    weight = 1
    wait_time = between(THINK[0] * 3, THINK[1] * 3)    # flushes are less frequent
    channel = "app"

    def on_start(self) -> None:
        if not WRITE_KEY:
            raise RuntimeError("set FUNNELHOUSE_WRITE_KEY to a browser write key")
        self.begin()
        self.user_agent = random.choice(APP_AGENTS)
        ios = "iPhone" in self.user_agent
        self.library = {"name": "analytics-ios" if ios else "analytics-android",
                        "version": "4.1.8"}
        self.screen = "Home"

    def context(self) -> dict[str, Any]:
        context = super().context()
        context["app"] = {"name": "ShopApp", "version": "3.2.1", "build": "321"}
        context["screen"] = {"name": self.screen}
        context["device"] = {"type": "ios" if "iPhone" in self.user_agent else "android"}
        return context

    def flush(self, messages: list[tuple[dict[str, Any], bool]]) -> None:
        broken = sum(1 for _, invalid in messages if invalid)
        body = json.dumps({"batch": [m for m, _ in messages], "sentAt": _now()})
        with self.client.post("/v1/batch", data=body, name="/v1/batch (app)",
                              headers={"Authorization": self.auth,
                                       "Content-Type": "application/json",
                                       "User-Agent": self.user_agent},
                              catch_response=True) as response:
            self.check_batch(response, broken, len(messages))

    @task(4)
    def session(self) -> None:
        """A stretch of app use, flushed as one batch of 10–40 events."""
        out: list[tuple[dict[str, Any], bool]] = []
        size = random.randint(10, 40)
        while len(out) < size:
            roll = random.random()
            if roll < 0.35:
                self.screen = random.choice(["Home", "Search", "Category", "Wishlist"])
                out.append(self.message("screen", name=self.screen,
                                        properties={"name": self.screen}))
            elif roll < 0.55:
                out.append(self.message("track", "swipe", {
                    "direction": random.choice(["left", "right", "up", "down"]),
                    "element": "product_carousel", "index": random.randint(0, 9)}))
            elif roll < 0.8:
                product = random.choice(PRODUCTS)
                self.screen = "Product"
                out.append(self.message("track", "product_view", _product_props(product)))
                if random.random() < 0.25:
                    self.cart.append((product, 1))
                    out.append(self.message("track", "add_to_cart", _product_props(product)))
            elif roll < 0.9 and self.cart:
                items = [_product_props(p, q) for p, q in self.cart]
                revenue = sum(i["price"] * i["quantity"] for i in items)
                out.append(self.message("track", "purchase", {
                    "order_id": f"o-{uuid.uuid4().hex[:12]}", "revenue": revenue,
                    "currency": "KRW", "items": items}))
                self.cart.clear()
            else:
                out.append(self.message("track", "search", {
                    "query": random.choice(SEARCHES), "result_count": random.randint(0, 60)}))
        self.flush(out)

    @task(1)
    def login(self) -> None:
        if self.user_id:
            return
        self.user_id = f"u-{uuid.uuid4().hex[:10]}"
        self.flush([self.message("track", "login", {"method": "password"}),
                    self.message("identify", traits={"plan": "member",
                                                     "created_at": _now()})])


@events.test_start.add_listener
def _announce(environment: Any, **_: Any) -> None:
    print(f"funnelhouse locust: {INVALID_SHARE:.0%} invalid events, think time "
          f"{THINK[0]:g}–{THINK[1]:g} s, started {time.strftime('%H:%M:%S')}")
