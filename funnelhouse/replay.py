"""Replay dead-lettered events against the current tracking plan."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from collector.ingest import Ingestor, RequestInfo
from collector.plan import TrackingPlan
from funnelhouse.config import Settings, WriteKey
from warehouse.base import Warehouse

# A cut-off event cannot become valid by a plan change: its payload was truncated.
NOT_REPLAYABLE = "event_too_large"


@dataclass
class ReplayResult:
    examined: int
    moved: int
    still_invalid: int


def replay_invalid(warehouse: Warehouse, settings: Settings, plan: TrackingPlan,
                   limit: int = 100_000) -> ReplayResult:
    rows = warehouse.query(
        """
        SELECT message_id, toUnixTimestamp64Milli(received_at) AS received_ms, source, type,
               payload, request
        FROM events_invalid
        WHERE reason != {skip:String}
          AND message_id NOT IN (SELECT message_id FROM invalid_replayed)
        ORDER BY received_at
        LIMIT 1 BY message_id
        LIMIT {limit:UInt64}
        """,
        {"skip": NOT_REPLAYABLE, "limit": limit},
    ).rows
    # The dedup window is for live traffic; a replay must re-check every row.
    ingestor = Ingestor(settings.replace(dedup_window_seconds=0), plan)
    keys_by_source = {key.source: key for key in settings.write_keys}
    moved: list[bytes] = []
    moved_ids: list[bytes] = []
    for message_id, received_ms, source, message_type, payload, request in rows:
        request_doc = orjson.loads(request) if request else {}
        key = keys_by_source.get(source) or WriteKey(
            key="", source=source, kind=request_doc.get("key_kind", "browser"))
        info = RequestInfo(write_key=key, ip=request_doc.get("ip") or "",
                           user_agent=request_doc.get("user_agent") or "",
                           received_at=received_ms / 1000, sent_at=request_doc.get("sent_at"))
        outcome = ingestor.process([orjson.loads(payload)], info, message_type or None)
        events = [r.value for r in outcome.records if r.stream == "events"]
        if events:
            moved.extend(events)
            moved_ids.append(orjson.dumps({
                "message_id": message_id,
                "replayed_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                "schema_version": orjson.loads(events[0])["schema_version"],
            }))
    if moved:
        # Same rows → same token: a replay interrupted between the two inserts and
        # run again does not double the events.
        token = "replay:" + hashlib.sha256(b"".join(moved)).hexdigest()[:32]
        warehouse.insert_json_rows("events_raw", moved, token)
        warehouse.insert_json_rows("invalid_replayed", moved_ids, token)
    return ReplayResult(examined=len(rows), moved=len(moved), still_invalid=len(rows) - len(moved))
