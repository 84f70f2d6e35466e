"""Tagging QA (`GET /v1/debug/events`): the latest events as received, from every worker.

Each collector worker remembers its last events in memory (Ingestor's debug ring): it
answers at once but knows only that worker's events. Every worker's events also reach
the warehouse within about a second (the loader's batch): `events_raw` for the valid
ones, `events_invalid` for the refused ones, with their errors and payload. So the
endpoint reads a list of *sources* and merges them:

- a collector worker: its ring, plus the warehouse when it can reach one (a server);
- `serve`: the warehouse — it sees what every collector worker and host received;
- `up`: its ring (instant) plus the warehouse (everything since the first start).

An event found in two sources is shown once (same source, message id and validity; the
first source's entry wins). The answer shape is the ring's: received_at (epoch
seconds), source, event, message_id, anonymous_id, user_id, valid, reason, errors
(path + message), flags, payload; newest first; `since=` (a received_at from an
earlier answer) returns only newer entries, for polling. For a valid event the
warehouse keeps the enriched row, not the bytes sent, so its payload is rebuilt from
the stored type, ids, timestamp, properties, traits and context.

Without `since`, the warehouse is read over the last `window_hours` of received_at (a
live QA view). A poll reads the received_at column of events_raw (no index can prune
it: rows are sorted by day, source and message id) plus the newest `limit` rows:
measured 15–20 ms per poll over 2M events on one core (a minmax skip index on
received_at made no difference), so ≈1 ms per 100k stored events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from funnelhouse.collector.auth import require_admin
from funnelhouse.collector.params import query_float, query_int
from funnelhouse.collector.reasons import Refusal
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse, WarehouseError


@dataclass(frozen=True)
class QaQuery:
    source: str | None = None
    event: str | None = None
    person: str | None = None
    only_invalid: bool = False
    limit: int = 100
    since: float | None = None

    @classmethod
    def from_request(cls, request: Request) -> QaQuery:
        """The filters of a request; Refusal (400) for a bad number."""
        params = request.query_params
        return cls(source=params.get("source") or None, event=params.get("event") or None,
                   person=params.get("person") or None,
                   only_invalid=params.get("invalid") in ("1", "true"),
                   limit=query_int(request, "limit", 100, 0, 10_000),
                   since=query_float(request, "since", None, 0, 1e11))


# A source gives the entries matching a query (at most `limit`), as dicts of the answer.
QaSource = Callable[[QaQuery], list[dict[str, Any]]]


def ring_source(ingestor: Any) -> QaSource:
    """This worker's in-memory ring (collector.ingest.Ingestor)."""
    def entries(q: QaQuery) -> list[dict[str, Any]]:
        found = []
        for e in ingestor.debug_entries(q.source):
            # To the millisecond, as stored: the warehouse's copy of the event then has
            # the very same received_at, and `since` never shows it a second time.
            received_at = round(e.received_at * 1000) / 1000
            if ((q.since is None or received_at > q.since)
                    and (not q.event or e.event == q.event)
                    and (not q.person or q.person in (e.anonymous_id, e.user_id))
                    and (not q.only_invalid or not e.valid)):
                found.append({**e.__dict__, "received_at": received_at})
        return found

    entries.in_loop = True  # type: ignore[attr-defined]  # the ring changes in the loop
    return entries


# The forgotten-id check runs on the newest `limit` candidates only: hashing every id of
# the window first made a poll over 2M rows ≈25× slower (158 ms vs 6 ms). Forget deletes
# the rows anyway; this is the backstop, so a rare forgotten row costs a shorter page.
_NOT_FORGOTTEN = """
WHERE lower(hex(SHA256(anonymous_id))) NOT IN (SELECT id_hash FROM forgotten_ids)
  AND lower(hex(SHA256(user_id))) NOT IN (SELECT id_hash FROM forgotten_ids)
ORDER BY received_at DESC"""
_FILTERS = """
WHERE received_at > fromUnixTimestamp64Milli({since_ms:Int64})
  AND ({source:String} = '' OR source = {source:String})
  AND ({event:String} = '' OR event = {event:String})
  AND ({person:String} = '' OR anonymous_id = {person:String} OR user_id = {person:String})
ORDER BY received_at DESC
LIMIT {limit:UInt32}"""
_VALID_SQL = f"""
SELECT * FROM (
    SELECT toUnixTimestamp64Milli(received_at) / 1000 AS received_ms, received_at,
           toString(source) AS source, toString(event) AS event, message_id, anonymous_id,
           user_id, toString(type) AS type, toString(original_timestamp) AS sent_timestamp,
           properties, traits, context, arrayMap(f -> toString(f), flags) AS flags
    FROM events_raw {_FILTERS}
) {_NOT_FORGOTTEN}
"""
_INVALID_SQL = f"""
SELECT * FROM (
    SELECT toUnixTimestamp64Milli(received_at) / 1000 AS received_ms, received_at,
           toString(source) AS source, toString(event) AS event, message_id,
           coalesce(nullIf(JSONExtractString(payload, 'anonymousId'), ''),
                    JSONExtractString(payload, 'anonymous_id')) AS anonymous_id,
           coalesce(nullIf(JSONExtractString(payload, 'userId'), ''),
                    JSONExtractString(payload, 'user_id')) AS user_id,
           toString(reason) AS reason, errors, payload
    FROM events_invalid {_FILTERS}
) {_NOT_FORGOTTEN}
"""


def _json(text: str) -> Any:
    try:
        return orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return text


def warehouse_source(reader: Warehouse, *, window_hours: float = 24.0,
                     clock: Callable[[], float] | None = None) -> QaSource:
    """events_raw and events_invalid: what every worker received, about a second late."""
    import time

    now = clock or time.time

    def entries(q: QaQuery) -> list[dict[str, Any]]:
        since = q.since if q.since is not None else now() - window_hours * 3600
        params = {"since_ms": int(since * 1000), "source": q.source or "",
                  "event": q.event or "", "person": q.person or "", "limit": q.limit}
        found: list[dict[str, Any]] = []
        if not q.only_invalid:
            for row in reader.query(_VALID_SQL, params).dicts():
                payload = {"type": row["type"], "event": row["event"],
                           "messageId": row["message_id"], "anonymousId": row["anonymous_id"],
                           "userId": row["user_id"], "timestamp": row["sent_timestamp"],
                           "properties": _json(row["properties"]),
                           "traits": _json(row["traits"]), "context": _json(row["context"])}
                found.append(_entry(row, True, "", [], row["flags"], payload))
        for row in reader.query(_INVALID_SQL, params).dicts():
            errors = [stored_error(item) for item in row["errors"]]
            found.append(_entry(row, False, row["reason"], errors, [], _json(row["payload"])))
        return found

    return entries


def stored_error(item: Any) -> dict[str, str]:
    """One error of events_invalid.errors: a named tuple that arrives as a dict from some
    warehouse clients and as a (path, message) pair from others."""
    if isinstance(item, dict):
        return {"path": str(item.get("path", "")), "message": str(item.get("message", ""))}
    path, message = item
    return {"path": str(path), "message": str(message)}


def _entry(row: dict[str, Any], valid: bool, reason: str, errors: list[dict[str, str]],
           flags: list[str], payload: Any) -> dict[str, Any]:
    return {"received_at": float(row["received_ms"]), "source": row["source"],
            "event": row["event"], "message_id": row["message_id"],
            "anonymous_id": row["anonymous_id"], "user_id": row["user_id"], "valid": valid,
            "reason": reason, "errors": errors, "flags": flags, "payload": payload}


def merged(q: QaQuery, answers: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Newest first, at most `limit`, each event once (the first source's copy)."""
    seen: set[tuple[str, str, bool]] = set()
    events = []
    for entries in answers:
        for entry in entries:
            key = (entry["source"], entry["message_id"], entry["valid"])
            if key in seen and entry["message_id"]:
                continue
            seen.add(key)
            events.append(entry)
    events.sort(key=lambda e: e["received_at"], reverse=True)
    return events[:q.limit]


def debug_endpoint(settings: Settings, sources: Sequence[QaSource]
                   ) -> Callable[[Request], Awaitable[Response]]:
    """GET /v1/debug/events over `sources` (admin token)."""
    from funnelhouse.collector.app import ORJSONResponse, refusal_response

    async def endpoint(request: Request) -> Response:
        try:
            require_admin(settings, request)
            query = QaQuery.from_request(request)
        except Refusal as refusal:
            return refusal_response(refusal)
        answers = []
        for source in sources:
            try:
                if getattr(source, "in_loop", False):
                    answers.append(source(query))
                else:   # warehouse reads block: off the event loop
                    answers.append(await asyncio.to_thread(source, query))
            except WarehouseError as exc:
                if len(sources) == 1:
                    return ORJSONResponse({"error": str(exc).splitlines()[0][:500],
                                           "reason": "warehouse_error"}, status_code=503)
                answers.append([])   # the other sources still answer (the ring at least)
        return ORJSONResponse({"events": merged(query, answers)})

    return endpoint
