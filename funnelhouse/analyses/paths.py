"""Paths: for one page or screen, where people came from, where they went next, convert vs. exit.

Semantics (the same in `funnelhouse/analyses_reference.py`):

* Views are page_view/screen_view events (type page or screen); a screen's name is its
  page_path. Within a session (behavior_events.session_id) views are ordered by
  (event_at, message_id).
* For each view of the page: came_from is the session's previous view ('(entrance)' if
  none), went_to the next view ('(exit)' if none). A reload counts as coming from itself.
* converted: the session has a conversion event (default: purchase) after that view.
* Sessions are counted on their reporting day (event_date in [date_from, date_to]).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from funnelhouse.analyses.common import (
    EVENTS_TABLE,
    AnalysisResult,
    Cte,
    EventSpec,
    Properties,
    Query,
    SpecError,
    SqlParams,
    analysis_window,
    check_keys,
    days_json,
    parse_date,
    parse_moment,
    pct,
    spec_errors,
    table_columns,
    tie_order,
    utc_text,
)
from funnelhouse.warehouse.base import Warehouse

PATHS_KEYS = ("page", "conversion", "top", "date_from", "date_to", "as_of")


@dataclass(frozen=True)
class PathsSpec:
    page: str
    conversion: EventSpec = EventSpec("purchase")
    top: int = 10
    date_from: date | None = None
    date_to: date | None = None
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if not self.page:
            raise SpecError("paths need a page (page path or screen name)")
        if not 1 <= self.top <= 1000:
            raise SpecError("top must be between 1 and 1000")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PathsSpec:
        if not isinstance(doc, dict) or not isinstance(doc.get("page"), str):
            raise SpecError("the paths spec must be a JSON object with a page")
        check_keys(doc, PATHS_KEYS, "paths spec")
        with spec_errors():
            conv = doc.get("conversion")
            return cls(page=doc["page"], conversion=EventSpec.from_json(conv) if conv else
                       EventSpec("purchase"), top=int(doc.get("top", 10)),
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def to_json(self) -> dict[str, Any]:
        return {"page": self.page, "conversion": self.conversion.text(), "top": self.top,
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}


def build_query(spec: PathsSpec, columns: dict[str, str], as_of: datetime,
                date_from: date, date_to: date) -> Query:
    """Paths as named pieces: session_events, sessions, page_views (one row per view of
    the page), sides (each view under total, came_from and went_to); one row per side."""
    params = SqlParams()
    props = Properties(columns, params)
    p_page = params.add("page", "String", spec.page)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_top = params.add("top", "UInt32", spec.top)
    conversion = props.condition(spec.conversion, "conversion")
    tie, tie_type = tie_order(columns)
    session_events = Cte("session_events", f"""\
    SELECT
        session_id,
        person_id,
        toUnixTimestamp64Milli(event_at) AS ts,
        {tie} AS tie,
        toUInt8(type IN ('page', 'screen')) AS is_view,
        page_path AS page,
        toUInt8({conversion}) AS is_conversion
    FROM {EVENTS_TABLE}
    WHERE event_date BETWEEN {p_from} AND {p_to}
      AND event_at <= {p_as_of}
      AND (type IN ('page', 'screen') OR is_conversion = 1)""")
    sessions = Cte("sessions", f"""\
    -- sessions that viewed the page, their events in (event_at, message_id) order
    SELECT
        session_id,
        any(person_id) AS person_id,
        arraySort(e -> (e.ts, e.tie), groupArray(CAST(
            (ts, tie, is_view, page, is_conversion),
            'Tuple(ts Int64, tie {tie_type}, is_view UInt8, page String, is_conversion UInt8)'
        ))) AS events,
        arrayFilter(e -> e.is_view = 1, events) AS views,
        arrayFilter(e -> e.is_conversion = 1, events) AS conversions
    FROM session_events
    GROUP BY session_id
    HAVING countIf(is_view = 1 AND page = {p_page}) > 0""")
    page_views = Cte("page_views", f"""\
    -- one row per view of the page
    SELECT
        session_id,
        person_id,
        if(i = 1, '(entrance)', views[i - 1].page) AS came_from,
        if(i = length(views), '(exit)', views[i + 1].page) AS went_to,
        arrayExists(c -> (c.ts, c.tie) > (views[i].ts, views[i].tie),
                    conversions) AS converted
    FROM sessions
    ARRAY JOIN arrayEnumerate(views) AS i
    WHERE views[i].page = {p_page}""")
    sides = Cte("sides", f"""\
    SELECT 'total' AS side, {p_page} AS page, session_id, person_id, converted FROM page_views
    UNION ALL
    SELECT 'came_from', came_from, session_id, person_id, converted FROM page_views
    UNION ALL
    SELECT 'went_to', went_to, session_id, person_id, converted FROM page_views""")
    final = f"""\
SELECT
    side,
    page,
    count() AS views,
    uniqExact(session_id) AS sessions,
    uniqExact(person_id) AS people,
    uniqExactIf(session_id, converted) AS converted_sessions
FROM sides
GROUP BY side, page
ORDER BY side = 'total' DESC, side, views DESC, page
LIMIT {p_top} + 1 BY side"""
    header = ("-- Paths around one page: previous and next view in the session, "
              "conversion after it.")
    return Query(header, (session_events, sessions, page_views, sides), final, params)


def build_sql(spec: PathsSpec, columns: dict[str, str], as_of: datetime,
              date_from: date, date_to: date) -> tuple[str, SqlParams]:
    query = build_query(spec, columns, as_of, date_from, date_to)
    return query.sql(), query.params


def run_paths(warehouse: Warehouse, spec: PathsSpec, reporting_tz: str = "UTC") -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    sql, params = build_sql(spec, table_columns(warehouse), as_of, date_from, date_to)
    rows = warehouse.query(sql, params.for_query()).dicts()
    return shape_result(spec, rows, sql, params, date_from, date_to, as_of, reporting_tz)


def shape_result(spec: PathsSpec, rows: list[dict[str, Any]], sql: str, params: SqlParams,
                 date_from: date, date_to: date, as_of: datetime, tz: str) -> AnalysisResult:
    total = next((r for r in rows if r["side"] == "total"), None)
    sides: dict[str, list[dict[str, Any]]] = {"came_from": [], "went_to": []}
    for row in rows:
        if row["side"] in sides and len(sides[row["side"]]) < spec.top:
            sides[row["side"]].append({k: row[k] for k in ("page", "views", "sessions", "people",
                                                           "converted_sessions")})
    views = int(total["views"]) if total else 0
    sessions = int(total["sessions"]) if total else 0
    exits = next((r["views"] for r in rows if r["side"] == "went_to" and r["page"] == "(exit)"), 0)
    entrances = next((r["views"] for r in rows
                      if r["side"] == "came_from" and r["page"] == "(entrance)"), 0)
    converted = int(total["converted_sessions"]) if total else 0
    summary = {"page": spec.page, "views": views, "sessions": sessions,
               "people": int(total["people"]) if total else 0, "entrances": int(entrances),
               "exits": int(exits), "exit_pct": pct(int(exits), views),
               "converted_sessions": converted, "conversion_pct": pct(converted, sessions)}
    columns = ["side", "page", "views", "pct_of_views", "sessions", "people", "converted_sessions",
               "conversion_pct"]
    table = []
    for side in ("came_from", "went_to"):
        for entry in sides[side]:
            table.append([side, entry["page"], entry["views"], pct(entry["views"], views),
                          entry["sessions"], entry["people"], entry["converted_sessions"],
                          pct(entry["converted_sessions"], entry["sessions"])])
    notes = [f"sessions on reporting days {date_from} .. {date_to} (calendar days in {tz}); "
             f"converted = {spec.conversion.text()} later in the same session; "
             f"top {spec.top} each side"]
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
                                 "as_of": utc_text(as_of)}
    return AnalysisResult("paths", spec_doc, sql, dict(params.values), columns, table, summary,
                          notes, sides)
