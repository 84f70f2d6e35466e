"""Replay dead-lettered events against the current plan; skip, with a reason, what never can be."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from funnelhouse.collector.ingest import Ingestor, RequestInfo
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Settings, WriteKey
from funnelhouse.loader.load import first_copies
from funnelhouse.warehouse.base import Warehouse


@dataclass
class ReplayResult:
    examined: int
    moved: int
    still_invalid: int
    skipped: int = 0
    # One {"message_id", "source", "reason"} per row skipped by this run.
    skipped_rows: list[dict[str, str]] = field(default_factory=list)


def replay_invalid(warehouse: Warehouse, settings: Settings, plan: TrackingPlan,
                   limit: int = 100_000) -> ReplayResult:
    rows = warehouse.query(
        """
        SELECT message_id, toUnixTimestamp64Milli(received_at) AS received_ms, source, type,
               payload, payload_truncated, request
        FROM events_invalid
        WHERE message_id NOT IN (SELECT message_id FROM invalid_replayed)
          AND (source, message_id) NOT IN (SELECT source, message_id FROM invalid_skipped)
        ORDER BY received_at
        LIMIT 1 BY source, message_id
        LIMIT {limit:UInt64}
        """,
        {"limit": limit},
    ).rows
    # The dedup window is for live traffic; a replay must re-check every row.
    ingestor = Ingestor(settings.replace(dedup_window_seconds=0), plan)
    keys_by_source = {key.source: key for key in settings.write_keys}
    moved: list[bytes] = []
    moved_ids: list[tuple[str, str, str]] = []        # (source, message_id, schema_version)
    skipped: list[dict[str, str]] = []
    for message_id, received_ms, source, message_type, payload, truncated, request in rows:
        # Each row on its own: whatever one dead letter holds, it is skipped with a
        # reason and the others proceed (a poisoned row once blocked every replay).
        try:
            events = _revalidate(ingestor, keys_by_source, source, received_ms, message_type,
                                 payload, truncated, request)
        except _Skip as skip:
            skipped.append({"message_id": message_id, "source": source, "reason": str(skip)})
            continue
        except Exception as exc:  # noqa: BLE001 — any failure skips the row, never the run
            skipped.append({"message_id": message_id, "source": source,
                            "reason": f"replay_failed: {type(exc).__name__}: {exc}"[:300]})
            continue
        if events:
            moved.extend(events)
            moved_ids.append((source, message_id, orjson.loads(events[0])["schema_version"]))
    if moved:
        # A message_id already stored (the valid copy came first) is not stored again:
        # the first stored copy wins here as at load.
        kept, dropped = first_copies(warehouse, moved)
        dropped_keys = set(dropped)
        for source, message_id, _ in moved_ids:
            if f"{source}:{message_id}" in dropped_keys:
                skipped.append({"message_id": message_id, "source": source,
                                "reason": "message_id_already_stored"})
        moved_ids = [m for m in moved_ids if f"{m[0]}:{m[1]}" not in dropped_keys]
        moved = kept
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if moved:
        # Same rows → same token: a replay interrupted between the two inserts and
        # run again does not double the events.
        token = "replay:" + hashlib.sha256(b"".join(moved)).hexdigest()[:32]
        warehouse.insert_json_rows("events_raw", moved, token)   # ids: migration 0018
        warehouse.insert_json_rows("invalid_replayed", [orjson.dumps({
            "message_id": message_id, "replayed_at": now, "schema_version": version,
        }) for _, message_id, version in moved_ids], token)
    if skipped:
        warehouse.insert_json_rows("invalid_skipped", [orjson.dumps({**row, "skipped_at": now})
                                                       for row in skipped])
    return ReplayResult(examined=len(rows), moved=len(moved),
                        still_invalid=len(rows) - len(moved) - len(skipped),
                        skipped=len(skipped), skipped_rows=skipped)


class _Skip(Exception):
    """This dead letter can never be replayed; the message is the recorded reason."""


def _revalidate(ingestor: Ingestor, keys_by_source: dict[str, WriteKey], source: str,
                received_ms: int, message_type: str, payload: str, truncated: int,
                request: str) -> list[bytes]:
    """The events_raw rows the dead letter makes now ([] if it is still invalid)."""
    if truncated:
        raise _Skip("payload_truncated")
    try:
        message: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # Rows stored before payloads were kept whole: a cut-off or empty payload.
        raise _Skip("payload_not_json") from None
    try:
        request_doc = orjson.loads(request) if request else {}
    except orjson.JSONDecodeError:
        request_doc = {}
    if not isinstance(request_doc, dict):
        request_doc = {}
    key = keys_by_source.get(source) or WriteKey(
        key="", source=source, kind=request_doc.get("key_kind") or "browser")
    sent_at = request_doc.get("sent_at")
    info = RequestInfo(write_key=key, ip=str(request_doc.get("ip") or ""),
                       user_agent=str(request_doc.get("user_agent") or ""),
                       received_at=received_ms / 1000,
                       sent_at=sent_at if isinstance(sent_at, str) else None)
    outcome = ingestor.process([message], info, message_type or None)
    return [r.value for r in outcome.records if r.stream == "events"]
