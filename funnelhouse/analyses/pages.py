"""The page (and screen) report: views, people, entrances, exits and time on page.

Semantics (the same in tests/support/analyses_reference.py):

* Views are page_view/screen_view events (type page or screen) on reporting days in
  [date_from, date_to], at or before as_of; a screen's name is its page_path.
* Within a session, views are in (event_at, message_id) order. An entrance is a session's
  first view, an exit its last view.
* Time on page: from the view to the session's next view (as web analytics has always
  measured it); a session's last view has no next view, so it has no time and is left out
  of the mean and the median.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from funnelhouse.analyses.common import (
    EVENTS_TABLE,
    AnalysisResult,
    Cte,
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

# tie: what orders views of the same millisecond (common.tie_order).
_VIEW = "Tuple(ts Int64, tie {tie}, page String)"
PAGES_KEYS = ("top", "date_from", "date_to", "as_of")


@dataclass(frozen=True)
class PagesSpec:
    top: int = 50
    date_from: date | None = None
    date_to: date | None = None
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.top <= 10_000:
            raise SpecError("top must be between 1 and 10000")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PagesSpec:
        if not isinstance(doc, dict):
            raise SpecError("the pages spec must be a JSON object")
        check_keys(doc, PAGES_KEYS, "pages spec")
        with spec_errors():
            return cls(top=int(doc.get("top", 50)),
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def to_json(self) -> dict[str, Any]:
        return {"top": self.top, **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}


def build_query(spec: PagesSpec, columns: dict[str, str], as_of: datetime, date_from: date,
                date_to: date) -> Query:
    params = SqlParams()
    tie, tie_type = tie_order(columns)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_top = params.add("top", "UInt32", spec.top)
    header = "-- Pages and screens: views, people, entrances, exits, time to the next view."
    sessions = Cte("sessions", f"""\
    -- each session's views in (event_at, message_id) order; a number per session, so
    -- that sessions are counted as integers per page (a third of the time at 10M events)
    SELECT
        rowNumberInAllBlocks() AS session_no,
        any(person_id) AS person_id,
        arraySort(groupArray(CAST((toUnixTimestamp64Milli(event_at), {tie}, page_path),
                                  '{_VIEW.format(tie=tie_type)}'))) AS views
    FROM {EVENTS_TABLE}
    WHERE event_date BETWEEN {p_from} AND {p_to}
      AND event_at <= {p_as_of}
      AND type IN ('page', 'screen')
      AND session_id != ''
    GROUP BY session_id""")
    page_views = Cte("page_views", """\
    -- one row per view: first/last of its session, and ms until the session's next view
    SELECT
        session_no,
        person_id,
        views[k].page AS page,
        k = 1 AS is_entrance,
        k = length(views) AS is_exit,
        if(k < length(views), views[k + 1].ts - views[k].ts, NULL) AS ms_on_page
    FROM sessions
    ARRAY JOIN arrayEnumerate(views) AS k""")
    final = f"""\
SELECT
    page,
    count() AS views,
    uniqExact(session_no) AS sessions,
    uniqExact(person_id) AS people,
    countIf(is_entrance) AS entrances,
    countIf(is_exit) AS exits,
    avg(ms_on_page) / 1000 AS mean_s_on_page,
    quantileExactInclusive(0.5)(ms_on_page) / 1000 AS median_s_on_page
FROM page_views
GROUP BY page
ORDER BY views DESC, page
LIMIT {p_top}"""
    return Query(header, (sessions, page_views), final, params)


def run_pages(warehouse: Warehouse, spec: PagesSpec, reporting_tz: str = "UTC"
              ) -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    rows = warehouse.query(query.sql(), query.params.for_query()).dicts()
    pages = []
    for row in rows:
        views = int(row["views"])
        pages.append({"page": row["page"], "views": views, "sessions": int(row["sessions"]),
                      "people": int(row["people"]), "entrances": int(row["entrances"]),
                      "exits": int(row["exits"]), "exit_pct": pct(int(row["exits"]), views),
                      "mean_s_on_page": _seconds(row["mean_s_on_page"]),
                      "median_s_on_page": _seconds(row["median_s_on_page"])})
    columns = ["page", "views", "sessions", "people", "entrances", "exits", "exit_pct",
               "mean_s_on_page", "median_s_on_page"]
    summary = {"pages": len(pages), "views": sum(p["views"] for p in pages),
               "as_of": utc_text(as_of)}
    notes = [f"views on reporting days {date_from} .. {date_to} in {reporting_tz}; exit % = "
             "exits / views",
             "time on page: to the session's next view; a session's last view has none"]
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(),
                                 "date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    return AnalysisResult("pages", spec_doc, query.sql(), dict(query.params.values), columns,
                          [[p[c] for c in columns] for p in pages], summary, notes,
                          {"pages": pages})


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else round(number, 3)   # NaN: no timed view
