"""Correlation: which events and property values set people who succeed apart from those
who do not — converted vs dropped in a funnel, retained vs not in a retention cohort.

Semantics (the same in tests/support/analyses_reference.py):

* Funnel: the funnel's own people (tests/…/funnel semantics), excluded people left out and
  people still inside their window left out (their outcome is not known yet). Success =
  reached the last step. An event counts for a person when they did it inside their
  attempt: from step 1 up to the last step (converted) or to the window's end (dropped),
  at or before as_of. The funnel's step events are not candidates.
* Retention: first-time cohorts of the spec; success = came back in period `k`
  (`--retained-period`, mode `on`), or in period k or later (`on_or_after`). People whose
  period k had not begun at as_of are left out. An event counts when done in the cohort
  period itself (period 0).
* Properties: the value on the person's entering event (funnel step 1 / cohort event).
* For each candidate, the 2×2 table success/failure × did/did not: odds ratio with one
  added to each cell (so a zero does not make it infinite), and the two-sided p-value of
  Pearson's chi-square test with Yates' continuity correction (1 degree of freedom).
  Ranked: significant (p < 0.05) first, then by the size of the log odds ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from funnelhouse.analyses.common import (
    EVENTS_TABLE,
    AnalysisResult,
    Cte,
    Query,
    SpecError,
    analysis_window,
    check_keys,
    spec_errors,
    table_columns,
    utc_text,
)
from funnelhouse.analyses.funnel import FunnelSpec
from funnelhouse.analyses.funnel import build_query as funnel_query
from funnelhouse.analyses.retention import RetentionSpec, as_of_day, period_index, period_start
from funnelhouse.analyses.retention import build_query as retention_query
from funnelhouse.warehouse.base import Warehouse

SOURCES = ("funnel", "retention")
SIGNIFICANCE = 0.05
MAX_PROPERTIES = 10
CORRELATION_KEYS = ("funnel", "retention", "retained_period", "properties", "top")


@dataclass(frozen=True)
class CorrelationSpec:
    source: str
    funnel: FunnelSpec | None = None
    retention: RetentionSpec | None = None
    retained_period: int = 1
    properties: tuple[str, ...] = ()
    top: int = 20

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SpecError(f"source must be one of {', '.join(SOURCES)}")
        if (self.funnel is None) == (self.retention is None):
            raise SpecError("give a funnel or a retention spec")
        if self.retention is not None:
            if self.retention.cohort_type != "first_time":
                raise SpecError("correlation reads first-time cohorts")
            if not 1 <= self.retained_period <= self.retention.periods:
                raise SpecError(f"retained_period must be 1..{self.retention.periods}")
        if len(self.properties) > MAX_PROPERTIES:
            raise SpecError(f"at most {MAX_PROPERTIES} properties")
        if not 1 <= self.top <= 500:
            raise SpecError("top must be between 1 and 500")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CorrelationSpec:
        if not isinstance(doc, dict):
            raise SpecError("the correlation spec must be a JSON object")
        check_keys(doc, CORRELATION_KEYS, "correlation spec")
        with spec_errors():
            funnel = doc.get("funnel")
            retention = doc.get("retention")
            properties = doc.get("properties") or ()
            if isinstance(properties, str):
                properties = [properties]
            return cls(source="funnel" if funnel is not None else "retention",
                       funnel=FunnelSpec.from_json(funnel) if funnel is not None else None,
                       retention=RetentionSpec.from_json(retention)
                       if retention is not None else None,
                       retained_period=int(doc.get("retained_period", 1)),
                       properties=tuple(str(p) for p in properties),
                       top=int(doc.get("top", 20)))

    def to_json(self) -> dict[str, Any]:
        return {"funnel": self.funnel.to_json() if self.funnel else None,
                "retention": self.retention.to_json() if self.retention else None,
                "retained_period": self.retained_period, "properties": list(self.properties),
                "top": self.top}


# -- statistics ------------------------------------------------------------------------
def odds_ratio(success_with: int, failure_with: int, success_without: int,
               failure_without: int) -> float:
    """Odds of success with the candidate over without it, one added to every cell."""
    return ((success_with + 1) / (failure_with + 1)) / \
        ((success_without + 1) / (failure_without + 1))


def chi_square_p(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p of Pearson's chi-square with Yates' correction for [[a, b], [c, d]]."""
    n = a + b + c + d
    rows, cols = (a + b, c + d), (a + c, b + d)
    if 0 in rows or 0 in cols:
        return 1.0
    statistic = n * max(0.0, abs(a * d - b * c) - n / 2) ** 2 / (
        rows[0] * rows[1] * cols[0] * cols[1])
    return math.erfc(math.sqrt(statistic / 2))


# -- SQL: outcomes, then candidates ---------------------------------------------------
def _funnel_outcomes(spec: FunnelSpec, columns: dict[str, str], as_of: datetime,
                     date_from: date, date_to: date) -> Query:
    """The funnel's pieces up to `people`, then each decided person's outcome and span."""
    n = len(spec.steps)
    query = funnel_query(spec, columns, as_of, date_from, date_to, with_revenue=False)
    window = query.params.add("window_ms", "Int64", spec.window_ms)
    return query.through("people").with_cte(Cte("outcomes", f"""\
    -- decided people: converted, or dropped with their window closed at as_of
    SELECT
        person_id,
        step_times[{n}] > 0 AS success,
        started_ms AS from_ms,
        if(success, step_times[{n}], started_ms + {window}) AS to_ms,
        breakdown AS entry_value
    FROM people
    WHERE excluded = 0 AND (success OR window_open = 0)"""))


def _retention_outcomes(spec: RetentionSpec, k: int, columns: dict[str, str],
                        as_of: datetime, date_from: date, date_to: date, tz: str) -> Query:
    """The retention's pieces up to `memberships`, then each decided member's outcome and
    their cohort period as a span of reporting days."""
    query = retention_query(spec, columns, as_of, date_from, date_to)
    # Cohorts whose period k had begun at as_of: the latest cohort period that qualifies.
    epoch = date(1970, 1, 5)
    current = period_index(spec.period, epoch, period_start(spec.period, as_of_day(as_of, tz)))
    p_k = query.params.add("retained_period", "Int32", k)
    p_latest = query.params.add("latest_index", "Int32", current - k)
    p_epoch = query.params.add("epoch", "Date", epoch.isoformat())
    retained = ("has(offsets, {k})" if spec.mode == "on"
                else "length(offsets) > 0 AND arrayMax(offsets) >= {k}").format(k=p_k)
    index = {"day": f"dateDiff('day', {p_epoch}, cohort_period)",
             "week": f"intDiv(dateDiff('day', {p_epoch}, cohort_period), 7)",
             "month": f"dateDiff('month', {p_epoch}, cohort_period)"}[spec.period]
    end = {"day": "cohort_period + 1", "week": "cohort_period + 7",
           "month": "addMonths(cohort_period, 1)"}[spec.period]
    return query.with_cte(Cte("outcomes", f"""\
    -- members whose period k had begun at as_of: came back in it (or later) or not
    SELECT
        person_id,
        {retained} AS success,
        cohort_period AS from_day,
        {end} AS to_day,
        breakdown AS entry_value
    FROM memberships
    WHERE {index} <= {p_latest}"""))


def _span(source: str) -> tuple[str, str]:
    """The day bounds and the span test joining an event (e) to its person's outcome (o).

    The funnel's own day bounds prune partitions; a cohort period may start before
    date_from (its week or month), so retention reads from the person's cohort period."""
    if source == "funnel":
        return ("e.event_date BETWEEN {date_from:Date} AND {date_to:Date} + {scan_days:UInt32}",
                "toUnixTimestamp64Milli(e.event_at) BETWEEN o.from_ms AND o.to_ms")
    return "1", "e.event_date >= o.from_day AND e.event_date < o.to_day"


def did_events(query: Query, source: str) -> Query:
    """`did`: each decided person once, with the names of the events they did in their span
    (the people behind a candidate; result_people reads it)."""
    days, span = _span(source)
    return query.with_cte(Cte("did", f"""\
    SELECT o.person_id AS person_id, any(o.success) AS success,
           groupUniqArray(toString(e.event)) AS names
    FROM {EVENTS_TABLE} AS e
    INNER JOIN outcomes AS o ON e.person_id = o.person_id
    WHERE {days}
      AND e.event_at <= {{as_of:DateTime64(3, 'UTC')}}
      AND {span}"""
                                      "\n    GROUP BY o.person_id"))


# Events meet their person's outcome on two independent 64-bit hashes of the person id:
# a join on fixed-width keys took 20% less time than on the text at 10M events, and two
# ids agreeing on both 128 bits by chance is far below any other error (≈ n²/2¹²⁹).
_JOIN_ON = ("cityHash64(e.person_id) = o.person_key_1 "
            "AND xxHash64(e.person_id) = o.person_key_2")


def _numbered(query: Query, source: str) -> Query:
    """`numbered`: `outcomes` with one number per decided person, so that people are
    counted as integers per event rather than gathered per person as strings, and the
    join keys of _JOIN_ON."""
    bounds = "from_ms, to_ms" if source == "funnel" else "from_day, to_day"
    return query.with_cte(Cte("numbered", f"""\
    -- one number per decided person: counted as integers below
    SELECT cityHash64(person_id) AS person_key_1, xxHash64(person_id) AS person_key_2,
           success, {bounds},
           toLowCardinality(entry_value) AS entry_value,
           rowNumberInAllBlocks() AS person_no
    FROM outcomes"""))


def _event_candidates(query: Query, source: str, excluded_events: list[str],
                      with_values: bool = False) -> Query:
    """One row per event name (and a total row): how many decided people did it.

    `outcomes` is read once, as the join's hash table: ClickHouse inlines a CTE at every
    reference, and each reference would run the whole funnel (or retention) again.
    Every decided person is in the join (their entering event lies in their span), which
    makes the () set the totals. `with_values`: also one row per value of the outcomes'
    entry_value, counted from the same pass instead of running the funnel again."""
    params = query.params
    names = [params.add(f"not_candidate_{i}", "String", e)
             for i, e in enumerate(excluded_events, 1)]
    days, span = _span(source)
    sets = "(e.event), (o.entry_value), ()" if with_values else "(e.event), ()"
    not_candidate = (f"\nHAVING NOT (kind = 'event' AND is_total = 0 AND name IN "
                     f"({', '.join(names)}))" if names else "")
    is_total = ("grouping(e.event) = 1 AND grouping(o.entry_value) = 1" if with_values
                else "grouping(e.event) = 1")
    name = ("if(kind = 'event', toString(e.event), toString(o.entry_value))" if with_values
            else "toString(e.event)")
    return _numbered(query, source).select(f"""\
SELECT
    if(grouping(e.event) = 0, 'event', 'property') AS kind,
    {name} AS name,
    toUInt8({is_total}) AS is_total,
    uniqExactIf(o.person_no, o.success) AS success_with,
    uniqExactIf(o.person_no, NOT o.success) AS failure_with
FROM {EVENTS_TABLE} AS e
INNER JOIN numbered AS o ON {_JOIN_ON}
WHERE {days}
  AND e.event_at <= {{as_of:DateTime64(3, 'UTC')}}
  AND {span}
GROUP BY GROUPING SETS ({sets}){not_candidate}""")


def _entry_keyed_candidates(query: Query, entry_event: str, other_steps: list[str]) -> Query:
    """The funnel's counts when step 1 is a named event, in one plain GROUP BY: rows keyed
    (event, '') — except the entry event's, keyed (event, the person's entry value).

    A person's entry value is one value, and every decided person did the entry event
    inside their span (it opens it), so the entry event's groups split the decided
    people by value: they are the property rows, and their sum is the totals. The other
    steps' events are no candidates and are left out before the join. One key per row
    instead of three grouping sets is a third less work on the joined rows."""
    params = query.params
    entry = params.add("entry_event", "String", entry_event)
    days, span = _span("funnel")
    skipped = [params.add(f"not_candidate_{i}", "String", e)
               for i, e in enumerate(other_steps, 1)]
    skip = f"\n  AND e.event NOT IN ({', '.join(skipped)})" if skipped else ""
    return _numbered(query, "funnel").select(f"""\
SELECT
    e.event AS event,
    if(event = {entry}, o.entry_value, '') AS value,
    uniqExactIf(o.person_no, o.success) AS success_with,
    uniqExactIf(o.person_no, NOT o.success) AS failure_with
FROM {EVENTS_TABLE} AS e
INNER JOIN numbered AS o ON {_JOIN_ON}
WHERE {days}
  AND e.event_at <= {{as_of:DateTime64(3, 'UTC')}}{skip}
  AND {span}
GROUP BY event, value""")


def _entry_keyed_rows(rows: list[dict[str, Any]], entry_event: str,
                      with_values: bool) -> list[dict[str, Any]]:
    """_entry_keyed_candidates' rows as the (kind, name, is_total) rows of the others."""
    out: list[dict[str, Any]] = []
    successes = failures = 0
    for row in rows:
        if row["event"] != entry_event:
            out.append({"kind": "event", "name": row["event"], "is_total": 0,
                        "success_with": row["success_with"],
                        "failure_with": row["failure_with"]})
            continue
        successes += int(row["success_with"])
        failures += int(row["failure_with"])
        if with_values:
            out.append({"kind": "property", "name": row["value"], "is_total": 0,
                        "success_with": row["success_with"],
                        "failure_with": row["failure_with"]})
    total = {"kind": "property", "name": "", "is_total": 1, "success_with": successes,
             "failure_with": failures}
    return [total, *out]


def _value_candidates(query: Query) -> Query:
    return query.select("""\
SELECT
    'property' AS kind,
    entry_value AS name,
    grouping(entry_value) AS is_total,
    countIf(success) AS success_with,
    countIf(NOT success) AS failure_with
FROM outcomes
GROUP BY GROUPING SETS ((entry_value), ())""")


def run_correlation(warehouse: Warehouse, spec: CorrelationSpec, reporting_tz: str = "UTC"
                    ) -> AnalysisResult:
    base = spec.funnel or spec.retention
    assert base is not None
    date_from, date_to, as_of = analysis_window(warehouse, base.date_from, base.date_to,
                                                base.as_of)
    columns = table_columns(warehouse)

    def outcomes(breakdown: str | None) -> Query:
        if spec.funnel is not None:
            return _funnel_outcomes(replace(spec.funnel, breakdown=breakdown,
                                            attribution="first"),
                                    columns, as_of, date_from, date_to)
        assert spec.retention is not None
        return _retention_outcomes(replace(spec.retention, breakdown=breakdown),
                                   spec.retained_period, columns, as_of, date_from, date_to,
                                   reporting_tz)

    steps = [s.event for s in spec.funnel.steps] if spec.funnel else []
    # A funnel's first property rides along with the events (one funnel run, not two);
    # retention counts memberships, not people, so its values keep their own query.
    shared = spec.properties[0] if spec.funnel is not None and spec.properties else None
    entry = spec.funnel.steps[0] if spec.funnel is not None else None
    keyed_by_entry = entry is not None and not entry.any_event
    if entry is not None and keyed_by_entry:
        first = _entry_keyed_candidates(outcomes(shared), entry.event,
                                        [s for s in dict.fromkeys(steps) if s != entry.event])
    else:
        first = _event_candidates(outcomes(shared), spec.source, steps,
                                  with_values=shared is not None)
    queries = [(shared or "", first)]
    queries += [(prop, _value_candidates(outcomes(prop))) for prop in spec.properties
                if prop != shared]
    candidates: list[dict[str, Any]] = []
    sql_parts, params = [], {}
    success_total = failure_total = 0
    for prop, query in queries:
        sql_parts.append(query.sql())
        params.update(query.params.values)
        rows = warehouse.query(query.sql(), query.params.for_query()).dicts()
        if query is first and entry is not None and keyed_by_entry:
            rows = _entry_keyed_rows(rows, entry.event, with_values=shared is not None)
        for row in rows:
            if row["is_total"]:
                success_total = int(row["success_with"])
                failure_total = int(row["failure_with"])
        for row in rows:
            if row["is_total"]:
                continue
            a, b = int(row["success_with"]), int(row["failure_with"])
            c, d = success_total - a, failure_total - b
            ratio = odds_ratio(a, b, c, d)
            p_value = chi_square_p(a, b, c, d)
            candidates.append({
                "kind": row["kind"], "property": prop if row["kind"] == "property" else None,
                "name": row["name"] if row["kind"] == "event" else (row["name"] or "(none)"),
                "success_with": a, "failure_with": b,
                "success_without": c, "failure_without": d,
                "odds_ratio": round(ratio, 4), "p_value": p_value,
                "significant": p_value < SIGNIFICANCE,
                "direction": "positive" if ratio > 1 else "negative"})
    candidates.sort(key=lambda x: (not x["significant"], -abs(math.log(x["odds_ratio"])),
                                   x["kind"], x["name"]))
    shown = candidates[:spec.top]
    columns_out = ["kind", "property", "name", "direction", "odds_ratio", "p_value",
                   "success_with", "failure_with", "success_without", "failure_without"]
    summary = {"source": spec.source, "success": success_total, "failure": failure_total,
               "candidates": len(candidates), "as_of": utc_text(as_of)}
    success_word = "converted" if spec.source == "funnel" else "retained"
    notes = [f"success = {success_word}; people whose outcome is not known at as_of are left "
             "out",
             "odds ratio with one added to each cell; p from Pearson's chi-square with Yates' "
             f"correction; significant below {SIGNIFICANCE}"]
    return AnalysisResult("correlation", spec.to_json(), "\n\n".join(sql_parts), params,
                          columns_out, [[c[k] for k in columns_out] for c in shown], summary,
                          notes, {"candidates": shown})
