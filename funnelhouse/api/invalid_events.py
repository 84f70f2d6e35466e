"""Refused events from history, for Live QA's "Invalid only" (read-only, admin token).

  GET /v1/invalid-events   ?days=7&source=&event=&person=&limit=200
      the newest refusals of the last `days` days in events_invalid (the dead-letter
      table), each with its source, event, person, received time, reason and errors,
      plus the total number of refusals those filters match in the period.

The collector's debug ring only remembers its last few hundred events, so after a burst
of refusals it may show one; this reads the table every refusal is kept in (90 days).
Every filter travels as a bound parameter; a person is matched against the ids in the
stored payload, as the debug endpoint does. Rows of forgotten people are left out.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from funnelhouse.api.endpoint import ErrorRule, admin_endpoint, failure
from funnelhouse.collector.qa import stored_error
from funnelhouse.config import Settings
from funnelhouse.models.built import NotBuilt, existing_tables
from funnelhouse.warehouse.base import Warehouse, WarehouseError

DEFAULT_DAYS = 7
MAX_DAYS = 90          # the table's TTL: nothing older is kept
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_TEXT = 200


class InvalidEventsError(ValueError):
    """A bad parameter: answered 400 bad_spec."""


# The ids of the person who sent it are only in the payload (the event was not parsed).
_ROWS = """
SELECT toUnixTimestamp64Milli(received_at) / 1000 AS received_ms, toString(source) AS source,
       toString(event) AS event, toString(type) AS type, message_id, toString(reason) AS reason,
       errors, payload,
       coalesce(nullIf(JSONExtractString(payload, 'anonymousId'), ''),
                JSONExtractString(payload, 'anonymous_id')) AS anonymous_id,
       coalesce(nullIf(JSONExtractString(payload, 'userId'), ''),
                JSONExtractString(payload, 'user_id')) AS user_id
FROM events_invalid
WHERE received_at >= now64(3) - toIntervalDay({days:UInt32})
  AND ({source:String} = '' OR source = {source:String})
  AND ({event:String} = '' OR event = {event:String})
"""
_WHERE_PERSON = """
WHERE ({person:String} = '' OR anonymous_id = {person:String} OR user_id = {person:String})
  AND lower(hex(SHA256(anonymous_id))) NOT IN (SELECT id_hash FROM forgotten_ids)
  AND lower(hex(SHA256(user_id))) NOT IN (SELECT id_hash FROM forgotten_ids)"""
LIST_SQL = (f"SELECT * FROM ({_ROWS}) {_WHERE_PERSON}\n"
            "ORDER BY received_ms DESC, message_id LIMIT {limit:UInt32}")
COUNT_SQL = f"SELECT count() FROM ({_ROWS}) {_WHERE_PERSON}"
REASONS_SQL = (f"SELECT reason, count() AS n FROM ({_ROWS}) {_WHERE_PERSON}\n"
               "GROUP BY reason ORDER BY n DESC, reason")


def _text(value: str | None, what: str) -> str:
    text = (value or "").strip()
    if len(text) > MAX_TEXT:
        raise InvalidEventsError(f"{what} is longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 for ch in text):
        raise InvalidEventsError(f"{what} holds a control character")
    return text


def _number(value: str | None, what: str, default: int, high: int) -> int:
    text = (value or "").strip()
    if not text:
        return default
    if not text.isdecimal() or not 1 <= int(text) <= high:
        raise InvalidEventsError(f"{what} is a whole number from 1 to {high}")
    return int(text)


def _payload(text: str) -> Any:
    try:
        return orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return text   # a truncated payload is shown as the text it is


def invalid_events(reader: Warehouse, params: dict[str, str | None]) -> dict[str, Any]:
    """The newest refusals matching the filters, the total in the period, and by reason."""
    bound: dict[str, Any] = {
        "days": _number(params.get("days"), "days", DEFAULT_DAYS, MAX_DAYS),
        "source": _text(params.get("source"), "source"),
        "event": _text(params.get("event"), "event"),
        "person": _text(params.get("person"), "person")}
    limit = _number(params.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
    if not {"events_invalid", "forgotten_ids"} <= existing_tables(reader):
        raise NotBuilt("events_invalid is not created yet (run `funnelhouse migrate`)")
    total = int(reader.query(COUNT_SQL, bound).scalar() or 0)
    reasons = {str(r): int(n) for r, n in reader.query(REASONS_SQL, bound).rows}
    events = [{"received_at": float(row["received_ms"]), "source": row["source"],
               "event": row["event"], "type": row["type"], "message_id": row["message_id"],
               "anonymous_id": row["anonymous_id"], "user_id": row["user_id"],
               "reason": row["reason"],
               "errors": [stored_error(e) for e in row["errors"]],
               "payload": _payload(row["payload"])}
              for row in reader.query(LIST_SQL, {**bound, "limit": limit}).dicts()]
    return {"days": bound["days"], "limit": limit, "total": total, "reasons": reasons,
            "events": events}


def routes(settings: Settings, reader: Warehouse) -> list[BaseRoute]:
    errors: list[ErrorRule] = [(NotBuilt, failure(503, "not_built")),
                               (WarehouseError, failure(400, "query_failed")),
                               ((ValueError, TypeError), failure(400, "bad_spec"))]

    async def get_invalid(request: Request) -> Any:
        return await asyncio.to_thread(invalid_events, reader, dict(request.query_params))

    return [Route("/v1/invalid-events", admin_endpoint(settings, get_invalid, errors),
                  methods=["GET"])]
