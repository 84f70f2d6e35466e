"""Retention: cohorts of people by when they first (or each time) did something, and who came back.

Semantics (the same in `funnelhouse/analyses_reference.py`):

* Periods are calendar periods of the reporting time zone: a day is a calendar day there
  (behavior_events.event_date), a week starts on Monday, a month on its 1st.
* Cohort event: any event (`first_seen`), a purchase (`first_purchase`) or any named event
  with filters (`event:NAME[:filters]`).
  - first_time: a person's cohort is the period of their first cohort event ever (history
    before date_from counts, so "first" really is first); they belong to it when that event's
    day lies in [date_from, date_to].
  - recurring: a person belongs to the cohort of every period in which they did the cohort
    event on a day in [date_from, date_to].
* Return event (default any event): the person "returned on period k" when they did it in
  the period k periods after their cohort's period (period 0 is the cohort period itself).
  mode `on`: counted at k if they returned in period k.
  mode `on_or_after` (unbounded): counted at k if they returned in period k or any later one.
* Breakdown: the property's value on the event that put the person in the cohort; or
  `purchase_count`: the member's group by purchases made (analyses/purchases.py), counted
  up to the end of their cohort period (`purchases_as_of` "cohort_end", the default: period
  0 included, history before it too) or up to a fixed reporting day ("YYYY-MM-DD"), never
  after as_of. Groups: `purchase_groups` ([1, 2, 3]: "<1", "1", "2", "3+").
* Events after as_of are ignored; a cell whose period has not begun at as_of is empty (None);
  one whose period has begun but not ended at as_of is `incomplete` (kept, flagged), and
  the "(all cohorts)" row counts each period over the cohorts whose period had ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses import purchases
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
    comment,
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

PERIODS = ("day", "week", "month")
MODES = ("on", "on_or_after")
COHORT_TYPES = ("first_time", "recurring")
MAX_PERIODS = 400
_PERIOD_START = {"day": "event_date", "week": "toMonday(event_date)",
                 "month": "toStartOfMonth(event_date)"}
RETENTION_KEYS = ("cohort", "cohort_type", "return_event", "period", "periods", "mode",
                  "breakdown", "date_from", "date_to", "as_of", "nth", "purchase_groups",
                  "purchases_as_of")


@dataclass(frozen=True)
class RetentionSpec:
    cohort: str = "first_seen"               # first_seen | first_purchase | event:NAME[:filters]
    cohort_type: str = "first_time"          # first_time | recurring
    return_event: EventSpec | None = None    # None: any event
    period: str = "week"
    periods: int = 8                         # periods 0..periods
    mode: str = "on"
    breakdown: str | None = None
    date_from: date | None = None            # cohort days (reporting time zone)
    date_to: date | None = None
    as_of: datetime | None = None
    nth: int = 1                             # first_time: the Nth cohort event (3rd purchase)
    purchase_groups: tuple[int, ...] = purchases.DEFAULT_GROUPS   # breakdown purchase_count
    purchases_as_of: str = "cohort_end"      # cohort_end | YYYY-MM-DD

    def __post_init__(self) -> None:
        if not 1 <= self.nth <= 1000:
            raise SpecError("nth must be between 1 and 1000")
        if self.nth > 1 and self.cohort_type != "first_time":
            raise SpecError("nth applies to first_time cohorts")
        if self.period not in PERIODS:
            raise SpecError(f"period must be one of {', '.join(PERIODS)}")
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}")
        if self.cohort_type not in COHORT_TYPES:
            raise SpecError(f"cohort_type must be one of {', '.join(COHORT_TYPES)}")
        if not 0 <= self.periods <= MAX_PERIODS:
            raise SpecError(f"periods must be between 0 and {MAX_PERIODS}")
        self.cohort_event()   # validates the cohort text
        if self.purchases_as_of != "cohort_end":
            parse_date(self.purchases_as_of, "purchases_as_of")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")

    def cohort_event(self) -> EventSpec:
        if self.cohort == "first_seen":
            return EventSpec("*")
        if self.cohort == "first_purchase":
            return EventSpec("purchase")
        if self.cohort.startswith("event:") and len(self.cohort) > 6:
            return EventSpec.parse(self.cohort[6:])
        raise SpecError("cohort must be first_seen, first_purchase or event:NAME[:filters]")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RetentionSpec:
        if not isinstance(doc, dict):
            raise SpecError("the retention spec must be a JSON object")
        check_keys(doc, RETENTION_KEYS, "retention spec")
        with spec_errors():
            ret = doc.get("return_event")
            return cls(cohort=doc.get("cohort", "first_seen"),
                       cohort_type=doc.get("cohort_type", "first_time"),
                       return_event=EventSpec.from_json(ret) if ret else None,
                       period=doc.get("period", "week"), periods=int(doc.get("periods", 8)),
                       mode=doc.get("mode", "on"), breakdown=doc.get("breakdown") or None,
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")),
                       nth=int(doc.get("nth", 1)),
                       purchase_groups=purchases.parse_groups(doc.get("purchase_groups")),
                       purchases_as_of=str(doc.get("purchases_as_of") or "cohort_end"))

    def to_json(self) -> dict[str, Any]:
        return {"cohort": self.cohort, "cohort_type": self.cohort_type, "nth": self.nth,
                "return_event": self.return_event.text() if self.return_event else None,
                "period": self.period, "periods": self.periods, "mode": self.mode,
                "breakdown": self.breakdown,
                **({"purchase_groups": list(self.purchase_groups),
                    "purchases_as_of": self.purchases_as_of}
                   if self.breakdown == purchases.BREAKDOWN else {}),
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}


def build_query(spec: RetentionSpec, columns: dict[str, str], as_of: datetime,
                date_from: date, date_to: date, *, person_ids: bool = True) -> Query:
    """One pass over the events, grouped by person into arrays (no self-join): named
    pieces events, people (each person's cohorts and return periods), memberships.

    `person_ids=False` (the table alone, no people behind it) groups by a 64-bit hash
    of the person id: 0.6× the time at 10M events. Two people share a hash with
    probability ≈ n²/2⁶⁵ (3·10⁻⁹ at 314k people); segments and correlation, which need
    the people, keep the id."""
    params = SqlParams()
    props = Properties(columns, params)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_periods = params.add("periods", "UInt32", spec.periods)
    cohort_cond = props.condition(spec.cohort_event(), "cohort")
    return_cond = props.condition(spec.return_event, "return") if spec.return_event else "1"
    by_purchases = spec.breakdown == purchases.BREAKDOWN
    breakdown = props.expr(spec.breakdown) if spec.breakdown and not by_purchases else "''"
    unit = spec.period
    tie, tie_type = tie_order(columns)

    p_nth = params.add("nth", "UInt32", spec.nth)
    if spec.cohort_type == "first_time" and spec.nth > 1:
        cohorts = f"""    -- the {spec.nth}th cohort event ever (history before date_from counts)
        arraySort(e -> (e.ts, e.tie), groupArrayIf(
            CAST((period_start, event_date, breakdown_value, toUnixTimestamp64Milli(event_at),
                  tie),
                 'Tuple(period Date, day Date, value String, ts Int64, tie {tie_type})'),
            is_cohort_event = 1)) AS entries,
        if(length(entries) >= {p_nth} AND entries[{p_nth}].day BETWEEN {p_from} AND {p_to},
           [CAST((entries[{p_nth}].period, entries[{p_nth}].day, entries[{p_nth}].value),
                 'Tuple(period Date, day Date, value String)')], []) AS cohorts,"""
    elif spec.cohort_type == "first_time" and breakdown == "''":
        # Without a breakdown the first event's day is the earliest day: no tie to break,
        # so no (event_at, tie) comparison over every event (4× the time at 10M).
        first_period = _PERIOD_START[unit].replace("event_date", "first_day")
        cohorts = f"""    -- the first cohort event ever: its day and period
        minIf(event_date, is_cohort_event = 1) AS first_day,
        CAST(({first_period}, first_day, ''), 'Tuple(period Date, day Date, value String)')
            AS first_entry,
        if(countIf(is_cohort_event = 1) > 0 AND first_day BETWEEN {p_from} AND {p_to},
           [first_entry], []) AS cohorts,"""
    elif spec.cohort_type == "first_time":
        cohorts = f"""    -- the first cohort event ever: its period, its day, the breakdown on it
        argMinIf(CAST((period_start, event_date, breakdown_value),
                      'Tuple(period Date, day Date, value String)'),
                 (event_at, tie), is_cohort_event = 1) AS first_entry,
        if(countIf(is_cohort_event = 1) > 0 AND first_entry.day BETWEEN {p_from} AND {p_to},
           [first_entry], []) AS cohorts,"""
    else:
        cohorts = f"""    -- each period with a cohort event in the range, breakdown on its first
        arraySort(e -> (e.period, e.ts, e.tie), groupArrayIf(
            CAST((period_start, toUnixTimestamp64Milli(event_at), tie, breakdown_value),
                 'Tuple(period Date, ts Int64, tie {tie_type}, value String)'),
            is_cohort_event = 1 AND event_date BETWEEN {p_from} AND {p_to})) AS entries,
        arrayMap(e -> CAST((e.period, e.period, e.value),
                           'Tuple(period Date, day Date, value String)'),
                 arrayFilter((e, i) -> i = 1 OR e.period != entries[i - 1].period,
                             entries, arrayEnumerate(entries))) AS cohorts,"""

    if spec.mode == "on":
        returned = "arrayMap(k -> toUInt64(has(offsets, k)), range(0, periods + 1))"
        returned_note = "-- on: came back in period k"
    else:
        returned = ("arrayMap(k -> toUInt64(length(offsets) > 0 AND arrayMax(offsets) >= k), "
                    "range(0, periods + 1))")
        returned_note = "-- on or after: came back in period k or any later one"
    group_by = ("GROUP BY GROUPING SETS ((cohort_period, breakdown), (cohort_period))"
                if spec.breakdown else "GROUP BY cohort_period, breakdown")
    is_total = "grouping(breakdown)" if spec.breakdown else "0"

    header = (f"-- Retention: cohorts by {comment(spec.cohort)} ({spec.cohort_type}), "
              f"{unit}s 0..periods, mode {spec.mode}.\n"
              f"-- Periods are calendar {unit}s of the reporting time zone (event_date); "
              "weeks start on Monday.")
    events = Cte("events", f"""\
    SELECT
        person_id,
        event_at,
        {tie} AS tie,  -- orders events of the same millisecond (common.tie_order)
        event_date,
        {_PERIOD_START[unit]} AS period_start,
        toUInt8({cohort_cond}) AS is_cohort_event,
        toUInt8({return_cond}) AS is_return_event,
        {breakdown} AS breakdown_value{_purchase_flag(props) if by_purchases else ""}
    FROM {EVENTS_TABLE}
    WHERE event_at <= {p_as_of}""")
    person = "person_id" if person_ids else "cityHash64(person_id) AS person_key"
    person_column = person.split()[-1]
    people = Cte("people", f"""\
    -- one row per person: the cohort(s) they belong to and every period they came back in
    SELECT
        {person},
    {cohorts}{_PURCHASE_DAYS if by_purchases else ""}
        groupUniqArrayIf(period_start, is_return_event = 1) AS return_periods
    FROM events
    GROUP BY {person_column}
    HAVING length(cohorts) > 0""")
    memberships = Cte("memberships", f"""\
    SELECT
        {person_column},
        cohort.period AS cohort_period,
        {_purchase_group(spec, params) if by_purchases else "cohort.value"} AS breakdown,
        {p_periods} AS periods,
        -- how many {unit}s after the cohort's {unit} each return happened (0 = same {unit})
        arrayFilter(k -> k >= 0,
                    arrayMap(p -> dateDiff('{unit}', cohort_period, p), return_periods)) AS offsets
    FROM people
    ARRAY JOIN cohorts AS cohort""")
    final = f"""\
SELECT
    {is_total} AS is_total,
    cohort_period,
    breakdown,
    count() AS cohort_size,
    sumForEach({returned}) AS returned  {returned_note}
FROM memberships
{group_by}
ORDER BY cohort_period, is_total DESC, cohort_size DESC, breakdown"""
    return Query(header, (events, people, memberships), final, params)


_PURCHASE_DAYS = """
        -- the day of each purchase (one event per order), for the purchase-count groups
        groupArrayIf(event_date, is_purchase = 1) AS purchase_days,"""


def _purchase_flag(props: Properties) -> str:
    return f",\n        toUInt8({props.condition(purchases.PURCHASE, 'purchase')}) AS is_purchase"


def _purchase_group(spec: RetentionSpec, params: SqlParams) -> str:
    """The member's purchase-count group: purchases before their cohort's next period
    (cohort_end), or on reporting days up to a fixed day."""
    if spec.purchases_as_of == "cohort_end":
        end = {"day": "cohort.period + 1", "week": "cohort.period + 7",
               "month": "addMonths(cohort.period, 1)"}[spec.period]
        count = f"arrayCount(d -> d < {end}, purchase_days)"
    else:
        p_day = params.add("purchases_day", "Date", spec.purchases_as_of)
        count = f"arrayCount(d -> d <= {p_day}, purchase_days)"
    return purchases.label_sql(count, spec.purchase_groups, params)


def build_sql(spec: RetentionSpec, columns: dict[str, str], as_of: datetime,
              date_from: date, date_to: date) -> tuple[str, SqlParams]:
    query = build_query(spec, columns, as_of, date_from, date_to)
    return query.sql(), query.params


def period_index(unit: str, start: date, day: date) -> int:
    if unit == "day":
        return (day - start).days
    if unit == "week":
        return (day - start).days // 7
    return (day.year - start.year) * 12 + day.month - start.month


def run_retention(warehouse: Warehouse, spec: RetentionSpec,
                  reporting_tz: str = "UTC") -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_from, date_to,
                        person_ids=False)
    sql, params = query.sql(), query.params
    rows = warehouse.query(sql, params.for_query()).dicts()
    return shape_result(spec, rows, sql, params, date_from, date_to, as_of, reporting_tz)


def as_of_day(as_of: datetime, tz: str) -> date:
    return as_of.astimezone(ZoneInfo(tz)).date()


def period_start(unit: str, day: date) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return date.fromordinal(day.toordinal() - day.weekday())
    return day.replace(day=1)


def shape_result(spec: RetentionSpec, rows: list[dict[str, Any]], sql: str, params: SqlParams,
                 date_from: date, date_to: date, as_of: datetime, tz: str) -> AnalysisResult:
    """Cohort × period table; cells of periods that had not begun at as_of are None."""
    epoch = date(1970, 1, 5)      # a Monday: any fixed origin works for differences
    current = period_index(spec.period, epoch, period_start(spec.period, as_of_day(as_of, tz)))
    cohorts: list[dict[str, Any]] = []
    for row in rows:
        start = date.fromisoformat(row["cohort_period"])
        age = current - period_index(spec.period, epoch, start)
        counts = [int(c) if k <= age else None for k, c in enumerate(row["returned"])]
        # Period k == age holds as_of: begun (as_of at or after its start) but not ended
        # (its end is after as_of), so its count can still grow. as_of exactly at a
        # period's end falls in the next period: the ended one is complete.
        incomplete = [k == age for k in range(len(counts))]
        label = None if (row["is_total"] or not spec.breakdown) else row["breakdown"]
        cohorts.append({"cohort": start.isoformat(), "breakdown": label,
                        "size": int(row["cohort_size"]), "counts": counts,
                        "pcts": [pct(c, int(row["cohort_size"])) for c in counts],
                        "incomplete": incomplete})
    # All cohorts together: each period over the cohorts whose period k had ENDED at as_of
    # (an in-progress period would read as a drop).
    totals = [c for c in cohorts if c["breakdown"] is None]
    overall = []
    for k in range(spec.periods + 1):
        ended = [c for c in totals if c["counts"][k] is not None and not c["incomplete"][k]]
        overall.append(pct(sum(c["counts"][k] for c in ended), sum(c["size"] for c in ended)))
    columns = (["cohort"] + (["breakdown"] if spec.breakdown else []) + ["size"]
               + [f"{spec.period[0]}{k}" for k in range(spec.periods + 1)])
    table: list[list[Any]] = []
    for c in cohorts:
        label = "(all)" if c["breakdown"] is None else (c["breakdown"] or "(none)")
        table.append([c["cohort"]] + ([label] if spec.breakdown else [])
                     + [c["size"]] + [None if p is None else p for p in c["pcts"]])
    table.append(["(all cohorts)"] + (["(all)"] if spec.breakdown else [])
                 + [sum(c["size"] for c in totals)] + overall)
    summary = {"people": sum(c["size"] for c in totals), "cohorts": len(totals),
               "period": spec.period, "mode": spec.mode, "as_of": utc_text(as_of)}
    notes = [f"a day is a calendar day in {tz}; weeks start on Monday, months on the 1st",
             f"cohort days {date_from} .. {date_to}; cells are % of the cohort "
             f"({'returned in' if spec.mode == 'on' else 'returned in or after'} period k); "
             "empty = period not begun at as_of",
             "incomplete = the period had begun but not ended at as_of (its count can still "
             "grow; data.cohorts[].incomplete); (all cohorts) counts each period over the "
             "cohorts whose period had ended"]
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
                                 "as_of": utc_text(as_of)}
    return AnalysisResult("retention", spec_doc, sql, dict(params.values), columns, table,
                          summary, notes, {"cohorts": cohorts, "overall_pcts": overall})
