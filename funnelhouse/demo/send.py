"""`funnelhouse demo`: realistic traffic sent through the public HTTP API.

The visitors come from the same deterministic generator the model tests use (several
devices per person, late identification, campaigns, carts, purchases, store visits),
turned back into Segment-spec messages, plus a few events that break the tracking
plan so the dead-letter table has something to show. They are sent with a server
key, because they carry their own (historical) timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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


def demo_messages(people: int, days: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    start = (datetime.now(UTC) - timedelta(days=days)).date()
    for n, row in enumerate(iter_rows(seed=seed, people=people, days=days,
                                      start_date=date(start.year, start.month, start.day))):
        message = message_of(row)
        yield _break(message, n) if n % INVALID_EVERY == INVALID_EVERY - 1 else message


def run_demo(url: str, write_key: str, *, people: int = 3000, days: int = 7, seed: int = 7,
             batch_size: int = 250, progress: Any = print) -> DemoResult:
    started = time.perf_counter()
    totals = {"sent": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
    batch: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=60) as client:

        def send() -> None:
            response = client.post("/v1/batch", content=orjson.dumps({"batch": batch}),
                                   headers={"Content-Type": "application/json"})
            if response.status_code >= 500 or response.status_code in (401, 403, 413, 429):
                raise RuntimeError(f"collector answered {response.status_code}: {response.text}")
            body = response.json()
            totals["sent"] += len(batch)
            totals["accepted"] += body.get("accepted", 0)
            totals["rejected"] += len(body.get("rejected", []))
            totals["duplicates"] += body.get("duplicates", 0)
            if totals["sent"] % (batch_size * 40) == 0:
                progress(f"  sent {totals['sent']:,} events …")
            batch.clear()

        for message in demo_messages(people, days, seed):
            batch.append(message)
            if len(batch) >= batch_size:
                send()
        if batch:
            send()
    return DemoResult(seconds=time.perf_counter() - started, **totals)
