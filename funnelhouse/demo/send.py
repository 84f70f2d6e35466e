"""`funnelhouse demo`: realistic traffic sent through the public HTTP API.

The visitors come from the same deterministic generator the model tests use (several
devices per person, late identification, campaigns, carts, purchases, store visits),
turned back into Segment-spec messages, plus a few events that break the tracking
plan so the dead-letter table has something to show. They are sent with a server
key, because they carry their own (historical) timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson

from funnelhouse.demo.generator import iter_rows

SITE = "https://shop.example"
USER_AGENTS = {
    ("iOS", "Mobile Safari"): "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    ("Android", "Chrome Mobile"): "Mozilla/5.0 (Linux; Android 14; SM-S921N) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    ("Windows", "Chrome"): "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ("Mac OS X", "Safari"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
}
# Every INVALID_EVERY-th message is broken in one of these ways.
INVALID_EVERY = 250


@dataclass
class DemoResult:
    sent: int
    accepted: int
    rejected: int
    duplicates: int
    seconds: float


def _iso(text: str) -> str:
    return text.replace(" ", "T") + "Z" if text else ""


def message_of(row: dict[str, Any]) -> dict[str, Any]:
    """A generated events_raw row as the Segment-spec message a client would have sent."""
    context: dict[str, Any] = {
        "channel": row["channel"],
        "sessionId": row["session_id"],
        "locale": row["locale"],
        "timezone": row["timezone"],
        "ip": row["ip"],
    }
    if row.get("library_name"):
        context["library"] = {"name": row["library_name"], "version": row["library_version"]}
    agent = USER_AGENTS.get((row.get("os_name", ""), row.get("browser_name", "")))
    if agent:
        context["userAgent"] = agent
    if row.get("page_path"):
        context["page"] = {"url": SITE + row["page_path"], "path": row["page_path"],
                           "title": row.get("page_title", ""),
                           "referrer": row.get("referrer", "")}
    if row.get("utm_campaign"):
        context["campaign"] = {"source": row["utm_source"], "medium": row["utm_medium"],
                               "name": row["utm_campaign"]}
    if row.get("screen_name"):
        context["screen"] = {"name": row["screen_name"]}
    message: dict[str, Any] = {
        "type": row["type"],
        "messageId": row["message_id"],
        "timestamp": _iso(row["original_timestamp"]),
        "context": {k: v for k, v in context.items() if v},
        "properties": orjson.loads(row["properties"] or "{}"),
    }
    if row["type"] == "track":
        message["event"] = row["event"]
    for field, key in (("anonymousId", "anonymous_id"), ("userId", "user_id"),
                       ("previousId", "previous_id"), ("groupId", "group_id")):
        if row.get(key):
            message[field] = row[key]
    traits = orjson.loads(row.get("traits") or "{}")
    if traits:
        message["traits"] = traits
    return message


def _break(message: dict[str, Any], n: int) -> dict[str, Any]:
    """Three mistakes taggers make: wrong type, out of range, missing required field."""
    kind = n % 3
    if kind == 0:
        return {**message, "type": "track", "event": "purchase",
                "properties": {"order_id": f"bad-{n}", "revenue": "12,000", "currency": "KRW",
                               "items": []}}
    if kind == 1:
        return {**message, "type": "track", "event": "scroll",
                "properties": {"depth_percent": 150}}
    return {**message, "type": "track", "event": "click", "properties": {"text": "Buy"}}


def _ms(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass
class DemoMessage:
    """A message to send, and when its event really happened (epoch ms)."""

    message: dict[str, Any]
    happened_ms: int
    clock_ms: int     # the device's clock at that moment (hours off on skewed devices)

    def stamped(self, now_ms: int) -> dict[str, Any]:
        """With `sentAt` read from the device's clock at `now_ms`: the collector then
        stores when the event happened, however wrong the device's clock is."""
        sent = self.clock_ms + (now_ms - self.happened_ms)
        return {**self.message, "sentAt": _iso(_fmt_ms(sent))}


def _fmt_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def demo_messages(people: int, days: int, seed: int = 7, now: datetime | None = None,
                  on_person: Callable[[int], None] | None = None) -> Iterator[DemoMessage]:
    """The visitors of the `days` days before today (UTC), none after `now`.

    The generator plants orders up to three days after a visit and evening visits in
    Los Angeles that end on the next UTC day: what lies after `now` has not happened
    yet and is left out (it used to be sent, up to a day ahead).
    """
    now = now or datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    start = (now - timedelta(days=days)).date()
    n = 0
    for person in range(people):
        # One person at a time (the generator's persons are independent): progress.
        for row in iter_rows(seed=seed, people=1, days=days, first_person=person,
                             start_date=date(start.year, start.month, start.day)):
            happened = _ms(row["timestamp"])
            if happened > now_ms:
                continue
            message = message_of(row)
            if n % INVALID_EVERY == INVALID_EVERY - 1:
                message = _break(message, n)
            n += 1
            yield DemoMessage(message, happened, _ms(row["original_timestamp"]))
        if on_person:
            on_person(person + 1)


def run_demo(url: str, write_key: str, *, people: int = 3000, days: int = 7, seed: int = 7,
             batch_size: int = 250, progress: Callable[[str], None] | None = None,
             now: datetime | None = None) -> DemoResult:
    """Send the demo through POST /v1/batch; `progress` gets a line now and then."""
    started = time.perf_counter()
    totals = {"sent": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    batch: list[DemoMessage] = []
    done_people = 0

    def person_done(count: int) -> None:
        nonlocal done_people
        done_people = count

    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=60) as client:

        def send() -> None:
            now_ms = int(time.time() * 1000)
            body = orjson.dumps({"batch": [m.stamped(now_ms) for m in batch]})
            response = client.post("/v1/batch", content=body,
                                   headers={"Content-Type": "application/json"})
            if response.status_code >= 500 or response.status_code in (401, 403, 413, 429):
                raise RuntimeError(f"collector answered {response.status_code}: {response.text}")
            answer = response.json()
            totals["sent"] += len(batch)
            totals["accepted"] += answer.get("accepted", 0)
            totals["rejected"] += len(answer.get("rejected", []))
            totals["duplicates"] += answer.get("duplicates", 0)
            if progress:
                progress(f"sent {totals['sent']:,} events of {done_people:,}/{people:,} "
                         "visitors …")
            batch.clear()

        for message in demo_messages(people, days, seed, now=now, on_person=person_done):
            batch.append(message)
            if len(batch) >= batch_size:
                send()
        if batch:
            send()
    return DemoResult(seconds=time.perf_counter() - started, **totals)
