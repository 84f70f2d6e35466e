"""The people behind one figure of a trends, stickiness, correlation or page report.

Each function takes the analysis' JSON spec and a `who` naming the figure, and returns
the SQL (with its parameters) of the person ids behind it — the analysis' own pieces up to
its per-person (or per-event) step, then a SELECT of the people that match. `cohorts.py`
saves them as a segment, frozen or live.

who, by analysis (exact semantics in docs/segments.md):

* trends      `SERIES@BUCKET[=VALUE]` — series letter (A = the first), bucket as the
  answer shows it (`2024-03-04`, `2024-03-04 13:00:00`, or `last`), breakdown value (`(none)` for
  empty). Counted series: people with a matching event in the bucket (for sum/avg/min/max
  one whose property is a number); dau/wau/mau: people active in the 1/7/30 days ending
  on the bucket's read day.
* stickiness  `exactly:K@PERIOD` | `at_least:K@PERIOD` — active on exactly / at least K
  days of the week or month starting on PERIOD (or the `last` one of the range).
* correlation `OUTCOME[:event:NAME | :property:PROP=VALUE]` — OUTCOME is success / failure
  (converted / dropped, retained / not_retained) or all; optionally who also did NAME in
  their span, or had VALUE of PROP on the entering event.
* pages       `viewed:PAGE` | `entered:PAGE` | `exited:PAGE`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses import correlation, pages, stickiness, trends
from funnelhouse.analyses.common import (
    EVENTS_TABLE,
    Properties,
    SpecError,
    SqlParams,
    analysis_window,
    table_columns,
    utc_text,
)
from funnelhouse.warehouse.base import Warehouse

TRENDS_WHO = re.compile(r"^([A-J])@(last|\d{4}-\d{2}-\d{2}(?: \d{2}:00:00)?)(?:=(.*))?$",
                        re.DOTALL)
STICKINESS_WHO = re.compile(r"^(exactly|at_least):(\d+)@(last|\d{4}-\d{2}-\d{2})$")
LAST = "last"     # the range's last bucket / period: what a rolling live segment follows
CORRELATION_WHO = re.compile(
    r"^(success|failure|converted|dropped|retained|not_retained|all)"
    r"(?::(event):(.+)|:(property):([^=]+)=(.*))?$", re.DOTALL)
PAGES_WHO = re.compile(r"^(viewed|entered|exited):(.+)$", re.DOTALL)
NONE_VALUE = "(none)"
_DATE_KEYS = ("date_from", "date_to", "as_of")


def _value(text: str) -> str:
    """A breakdown value as the answer shows it: `(none)` is the empty value."""
    return "" if text == NONE_VALUE else text


def trends_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                      ) -> tuple[str, dict[str, Any]]:
    spec = trends.TrendsSpec.from_json(doc)
    match = TRENDS_WHO.match(who)
    if not match:
        raise SpecError("who must be SERIES@BUCKET[=VALUE], e.g. A@2024-03-04 or "
                        "B@2024-03-04=mobile")
    index = trends.LETTERS.index(match.group(1))
    if index >= len(spec.series):
        raise SpecError(f"series {match.group(1)} is not in this trend")
    value = match.group(3)
    if value is not None and not spec.breakdown:
        raise SpecError("=VALUE needs a breakdown")
    if value == trends.OTHER:
        raise SpecError("name one breakdown value, not (other)")
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    all_buckets = trends.buckets(spec.interval, date_from, date_to)
    bucket = all_buckets[-1] if match.group(2) == LAST else match.group(2)
    if bucket not in all_buckets:
        raise SpecError(f"bucket {bucket} is not one of this trend's {spec.interval}s")
    series = spec.series[index]
    columns = table_columns(warehouse)
    if series.math in trends.ACTIVE:
        return _active_people_sql(spec, series, index, bucket, value, columns, as_of,
                                  date_to, tz)
    query = trends.build_query(spec, columns, as_of, date_from, date_to, tz)
    p_bucket = query.params.add("who_bucket", "String", bucket)
    conditions = [f"hit_{index}", f"bucket = {p_bucket}"]
    if value is not None:
        p_value = query.params.add("who_value", "String", _value(value))
        conditions.append(f"breakdown_value = {p_value}")
    if series.math in ("avg", "min", "max", "sum"):
        conditions.append(f"isNotNull(number_{index})")
    people = query.through("events").select(
        f"SELECT DISTINCT person_id FROM events WHERE {' AND '.join(conditions)}")
    return people.sql(), people.params.for_query()


def _active_people_sql(spec: trends.TrendsSpec, series: trends.Series, index: int,
                       bucket: str, value: str | None, columns: dict[str, str], as_of: Any,
                       date_to: Any, tz: str) -> tuple[str, dict[str, Any]]:
    """People who did the event on one of the N days ending on the bucket's read day."""
    as_of_day = as_of.astimezone(ZoneInfo(tz)).date()
    read_day = trends.last_day(spec.interval, bucket, date_to, as_of_day)
    days = trends.ACTIVE[series.math]
    params = SqlParams()
    props = Properties(columns, params)
    p_first = params.add("first_day", "Date", (read_day - timedelta(days=days - 1)).isoformat())
    p_last = params.add("read_day", "Date", read_day.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    cond = props.condition(series.event, f"s{index}")
    if value is not None:
        assert spec.breakdown is not None
        cond += (f"\n  AND {props.expr(spec.breakdown)} = "
                 f"{params.add('who_value', 'String', _value(value))}")
    sql = (f"-- People active ({series.math}) in the {days} day(s) ending on {read_day}.\n"
           f"SELECT DISTINCT person_id\nFROM {EVENTS_TABLE}\n"
           f"WHERE event_date BETWEEN {p_first} AND {p_last}\n"
           f"  AND event_at <= {p_as_of}\n  AND {cond}\n")
    return sql, params.for_query()


def stickiness_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str,
                          tz: str = "UTC") -> tuple[str, dict[str, Any]]:
    spec = stickiness.StickinessSpec.from_json(doc)
    match = STICKINESS_WHO.match(who)
    if not match:
        raise SpecError("who must be exactly:K@PERIOD or at_least:K@PERIOD, e.g. "
                        "at_least:3@2024-03-04")
    kind, k, period = match.group(1), int(match.group(2)), match.group(3)
    most = stickiness.PERIODS[spec.period]
    if not 1 <= k <= most:
        raise SpecError(f"K must be 1..{most}")
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    periods = trends.buckets(spec.period, date_from, date_to)
    period = periods[-1] if period == LAST else period
    if period not in periods:
        raise SpecError(f"{period} does not start one of this analysis' {spec.period}s")
    query = stickiness.build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    p_period = query.params.add("who_period", "Date", period)
    p_k = query.params.add("who_days", "UInt32", k)
    compare = "=" if kind == "exactly" else ">="
    # active_days: one row per person, one period start per active day.
    people = query.through("active_days").select(
        f"SELECT person_id FROM active_days "
        f"WHERE countEqual(periods, {p_period}) {compare} {p_k}")
    return people.sql(), people.params.for_query()


def correlation_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str,
                           tz: str = "UTC") -> tuple[str, dict[str, Any]]:
    doc = _dates_into_base(doc)
    spec = correlation.CorrelationSpec.from_json(doc)
    match = CORRELATION_WHO.match(who)
    if not match:
        raise SpecError("who must be success|failure|all[:event:NAME|:property:PROP=VALUE]")
    outcome = match.group(1)
    wrong = {"funnel": ("retained", "not_retained"),
             "retention": ("converted", "dropped")}[spec.source]
    if outcome in wrong:
        raise SpecError(f"a {spec.source} correlation has no {outcome} people")
    wanted = {"success": "success", "converted": "success", "retained": "success",
              "all": "1"}.get(outcome, "NOT success")
    base = spec.funnel or spec.retention
    assert base is not None
    date_from, date_to, as_of = analysis_window(warehouse, base.date_from, base.date_to,
                                                base.as_of)
    columns = table_columns(warehouse)
    prop = match.group(5)
    if prop is not None and prop not in spec.properties:
        raise SpecError(f"property {prop!r} is not one of this correlation's properties")
    if spec.funnel is not None:
        outcomes = correlation._funnel_outcomes(
            replace(spec.funnel, breakdown=prop, attribution="first"), columns, as_of,
            date_from, date_to)
    else:
        assert spec.retention is not None
        outcomes = correlation._retention_outcomes(
            replace(spec.retention, breakdown=prop), spec.retained_period, columns, as_of,
            date_from, date_to, tz)
    if match.group(2):   # did an event in their span (as the correlation counts it)
        event = match.group(3)
        if spec.funnel is not None and event in {s.event for s in spec.funnel.steps}:
            raise SpecError(f"{event} is a step of the funnel, not a candidate")
        query = correlation.did_events(outcomes, spec.source)
        p_event = query.params.add("who_event", "String", event)
        did = query.through("did").select(
            f"SELECT person_id FROM did WHERE has(names, {p_event}) AND {wanted}")
        return did.sql(), did.params.for_query()
    if prop is not None:
        p_value = outcomes.params.add("who_value", "String", _value(match.group(6)))
        people = outcomes.select(f"SELECT DISTINCT person_id FROM outcomes "
                                 f"WHERE entry_value = {p_value} AND {wanted}")
        return people.sql(), people.params.for_query()
    people = outcomes.select(f"SELECT DISTINCT person_id FROM outcomes WHERE {wanted}")
    return people.sql(), people.params.for_query()


def _dates_into_base(doc: dict[str, Any]) -> dict[str, Any]:
    """A live segment sets date_from/date_to/as_of at the top of the spec: a correlation
    keeps them in its funnel or retention spec."""
    moved = {k: doc[k] for k in _DATE_KEYS if k in doc}
    if not moved:
        return doc
    out = {k: v for k, v in doc.items() if k not in _DATE_KEYS}
    for source in ("funnel", "retention"):
        if isinstance(out.get(source), dict):
            out[source] = {**out[source], **moved}
    return out


def pages_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                     ) -> tuple[str, dict[str, Any]]:
    spec = pages.PagesSpec.from_json(doc)
    match = PAGES_WHO.match(who)
    if not match:
        raise SpecError("who must be viewed:PAGE, entered:PAGE or exited:PAGE")
    kind, page = match.group(1), match.group(2)
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = pages.build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    p_page = query.params.add("who_page", "String", page)
    extra = {"viewed": "", "entered": " AND is_entrance", "exited": " AND is_exit"}[kind]
    # page_views: one row per view, with the session's person.
    people = query.through("page_views").select(
        f"SELECT DISTINCT person_id FROM page_views WHERE page = {p_page}{extra}")
    return people.sql(), people.params.for_query()
