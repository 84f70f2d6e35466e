"""Stickiness: how many days of a week (or month) people are active, and DAU/MAU.

Semantics (the same in tests/support/analyses_reference.py):

* Active on a day: did the event (with filters; `*` for any) on that reporting day, on a
  day in [date_from, date_to], at or before as_of.
* Distribution: for each calendar week (from Monday) or month of the range, the number of
  people active on exactly k of its days (k = 1..7 or 1..31). Only people active at least
  once in the period are counted; a period cut by the range or by as_of is `incomplete`.
* DAU/MAU: for each day of the range, people active that day over people active in the 30
  days ending that day; the headline is its mean over the days with anyone active in their
  30 days (the days before as_of's day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses.common import (
    AnalysisResult,
    Cte,
    EventSpec,
    Properties,
    Query,
    SpecError,
    SqlParams,
    active_days_source,
    analysis_window,
    check_keys,
    comment,
    days_json,
    parse_date,
    parse_moment,
    spec_errors,
    table_columns,
    utc_text,
)
from funnelhouse.analyses.trends import Series, TrendsSpec, bucket_end, buckets, run_trends
from funnelhouse.models.built import existing_tables
from funnelhouse.warehouse.base import Warehouse

PERIODS = {"week": 7, "month": 31}
STICKINESS_KEYS = ("event", "period", "date_from", "date_to", "as_of")


@dataclass(frozen=True)
class StickinessSpec:
    event: EventSpec = EventSpec("*")
    period: str = "week"
    date_from: date | None = None
    date_to: date | None = None
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise SpecError(f"period must be one of {', '.join(PERIODS)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> StickinessSpec:
        if not isinstance(doc, dict):
            raise SpecError("the stickiness spec must be a JSON object")
        check_keys(doc, STICKINESS_KEYS, "stickiness spec")
        with spec_errors():
            return cls(event=EventSpec.from_json(doc.get("event") or "*"),
                       period=doc.get("period", "week"),
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event.text(), "period": self.period,
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}


def build_query(spec: StickinessSpec, columns: dict[str, str], as_of: datetime,
                date_from: date, date_to: date, sessions_built: bool = False) -> Query:
    params = SqlParams()
    props = Properties(columns, params)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    start = "toMonday(d)" if spec.period == "week" else "toStartOfMonth(d)"
    header = (f"-- Stickiness: people by active days per {spec.period} "
              f"({comment(spec.event.text())}).")
    # One group per person (not per person and day): their active days as an array, then
    # per period of those days how many there are — half the hashing of a DISTINCT.
    condition = props.condition(spec.event, "active")
    source = active_days_source(condition, False, sessions_built)
    active = Cte("active_days", f"""\
    SELECT person_id, arrayMap(d -> {start}, groupUniqArray({source.day})) AS periods
    FROM {source.table}
    WHERE {source.day} BETWEEN {p_from} AND {p_to}
      AND {source.at} <= {p_as_of}
      AND {condition}
    GROUP BY person_id""")
    per_person = Cte("per_person", f"""\
    -- one row per person and {spec.period}: on how many of its days they were active
    SELECT period_start, countEqual(periods, period_start) AS active_days
    FROM active_days
    ARRAY JOIN arrayDistinct(periods) AS period_start""")
    final = """\
SELECT toString(period_start) AS period, active_days, count() AS people
FROM per_person
GROUP BY period, active_days
ORDER BY period, active_days"""
    return Query(header, (active, per_person), final, params)


def run_stickiness(warehouse: Warehouse, spec: StickinessSpec,
                   reporting_tz: str = "UTC") -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_from, date_to,
                        "sessions" in existing_tables(warehouse))
    rows = warehouse.query(query.sql(), query.params.for_query()).dicts()
    most = PERIODS[spec.period]
    periods = buckets(spec.period, date_from, date_to)
    counts = {p: [0] * most for p in periods}
    for row in rows:
        counts[row["period"]][int(row["active_days"]) - 1] = int(row["people"])
    range_end = datetime(date_to.year, date_to.month, date_to.day,
                         tzinfo=ZoneInfo(reporting_tz)) + timedelta(days=1)
    incomplete = {p: bucket_end(spec.period, p, reporting_tz) > min(as_of, range_end)
                  or date.fromisoformat(p) < date_from for p in periods}
    ratio, ratio_sql = _dau_over_mau(warehouse, spec, date_from, date_to, as_of, reporting_tz)
    columns = ["period", "people", *[str(k) for k in range(1, most + 1)], "incomplete"]
    table = [[p, sum(counts[p]), *counts[p], incomplete[p]] for p in periods]
    overall = [sum(counts[p][k] for p in periods if not incomplete[p]) for k in range(most)]
    summary = {"period": spec.period, "dau_mau_pct": ratio, "as_of": utc_text(as_of)}
    notes = [f"people active on exactly k days of each calendar {spec.period} in "
             f"{reporting_tz}; incomplete = the {spec.period} is cut by the range or as_of",
             "dau_mau_pct: mean over the range's days of people active that day / people "
             "active in the 30 days ending that day"]
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(),
                                 "date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    return AnalysisResult("stickiness", spec_doc, query.sql() + "\n\n" + ratio_sql,
                          dict(query.params.values), columns, table, summary, notes,
                          {"periods": [{"period": p, "counts": counts[p],
                                        "incomplete": incomplete[p]} for p in periods],
                           "complete_periods_counts": overall})


def _dau_over_mau(warehouse: Warehouse, spec: StickinessSpec, date_from: date, date_to: date,
                  as_of: datetime, tz: str) -> tuple[float | None, str]:
    """Mean of daily DAU/MAU (in %), from the trends' active-people series."""
    active = TrendsSpec(series=(Series(spec.event, "dau"), Series(spec.event, "mau")),
                        interval="day", date_from=date_from, date_to=date_to, as_of=as_of)
    result = run_trends(warehouse, active, tz)
    dau, mau = (line["values"] for line in result.data["series"][:2])
    as_of_day = as_of.astimezone(ZoneInfo(tz)).date()
    days = [d for d in result.data["buckets"] if date.fromisoformat(d) <= as_of_day]
    ratios = [100.0 * dau[k] / mau[k] for k, d in enumerate(result.data["buckets"])
              if d in days and mau[k]]
    return (round(sum(ratios) / len(ratios), 2) if ratios else None), result.sql
