"""User timeline: every event of one person — all their devices and ids — in order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from funnelhouse.analyses.common import (
    EVENTS_TABLE,
    AnalysisResult,
    SpecError,
    SqlParams,
    days_json,
    parse_date,
    spec_errors,
    table_columns,
)
from funnelhouse.warehouse.base import Warehouse

# Shown when the table has them (the model may grow); in this order.
TIMELINE_COLUMNS = ("event_at", "event", "type", "channel", "device_type", "os_name", "source",
                    "session_id", "page_path", "product_id", "order_id", "revenue", "currency",
                    "utm_campaign", "anonymous_id", "user_id", "message_id", "properties")
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class TimelineSpec:
    person: str                       # a person_id, user id or anonymous id
    limit: int = 1000
    date_from: date | None = None
    date_to: date | None = None

    def __post_init__(self) -> None:
        if not self.person:
            raise SpecError("which person? pass a person id, user id or anonymous id")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise SpecError(f"limit must be between 1 and {MAX_LIMIT}")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TimelineSpec:
        with spec_errors():
            return cls(person=str(doc.get("person") or ""), limit=int(doc.get("limit") or 1000),
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"))

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person, "limit": self.limit,
                **days_json(self.date_from, self.date_to)}


def build_sql(spec: TimelineSpec, columns: dict[str, str]) -> tuple[str, SqlParams]:
    params = SqlParams()
    p_id = params.add("id", "String", spec.person)
    p_limit = params.add("limit", "UInt32", spec.limit)
    shown = [c for c in TIMELINE_COLUMNS if c in columns]
    days = ""
    if spec.date_from:
        p_from = params.add("date_from", "Date", spec.date_from.isoformat())
        days += f"\n  AND event_date >= {p_from}"
    if spec.date_to:
        days += f"\n  AND event_date <= {params.add('date_to', 'Date', spec.date_to.isoformat())}"
    select = ",\n    ".join(
        f"toString({c}) AS {c}" if c == "event_at" else c
        for c in shown)
    sql = f"""-- Timeline: every event of one person across devices and ids,
-- in (event_at, message_id) order.
-- Any of their ids finds them: identity_map resolves anonymous and user ids to the person.
SELECT
    person_id,
    {select}
FROM {EVENTS_TABLE}
WHERE person_id = (
    SELECT if(count() = 0, {p_id}, any(person_id)) FROM identity_map WHERE id = {p_id}
){days}
ORDER BY event_at, message_id
LIMIT {p_limit}
"""
    return sql, params


def run_timeline(warehouse: Warehouse, spec: TimelineSpec,
                 reporting_tz: str = "UTC") -> AnalysisResult:
    sql, params = build_sql(spec, table_columns(warehouse))
    result = warehouse.query(sql, params.for_query())
    rows = result.rows
    person = rows[0][0] if rows else None
    columns = result.columns[1:]
    table = [row[1:] for row in rows]
    ids = sorted({r[columns.index(c)] for r in table for c in ("anonymous_id", "user_id")
                  if c in columns and r[columns.index(c)]})
    devices = sorted({r[columns.index("device_type")] for r in table
                      if "device_type" in columns and r[columns.index("device_type")]})
    summary = {"person_id": person, "events": len(table), "ids": len(ids),
               "devices": ", ".join(devices)}
    notes = ["times are UTC; events in (event_at, message_id) order"]
    if len(table) >= spec.limit:
        notes.append(f"showing the first {spec.limit} events (raise --limit for more)")
    return AnalysisResult("timeline", spec.to_json(), sql, dict(params.values), columns, table,
                          summary, notes, {"person_id": person, "ids": ids})
