"""Funnels: ordered (or unordered) steps within a conversion window, as one readable SQL query.

Semantics (the same in `funnelhouse/analyses_reference.py`):

* A person's events are taken in the order (event_at, message_id): two events in the same
  millisecond are ordered by message_id, and one event satisfies at most one step.
* The person's attempt starts at their FIRST step-1 event whose reporting day lies in
  [date_from, date_to]; the window is [start, start + window] (both ends inclusive).
  One attempt per person: a later step-1 event does not start another.
* loose:  each later event in the window that is the next step advances the person
          (other events, repeats of earlier steps, are ignored).
  strict: like loose, but an event of another step of this funnel (neither the current
          step again nor an allowed next step) ends the attempt where it stands.
  any:    the attempt starts at the first event of any step; "step k" counts people who
          did k different steps of the funnel within the window.
* Optional steps may be skipped: from step i a person may move to any later step up to
  and including the next required one; an event advances to the nearest step it can.
* Exclusion `EVENT@i-j`: a person who does EVENT after reaching step i and before
  reaching step j (within the window) is excluded from the funnel altogether (reported
  apart). Default i=1, j=last step.
* Hold a property constant: every step event must carry the same value of the property
  as the step-1 event (events with another value are ignored for steps).
* Breakdown: the property's value on the first step event (attribution `first`) or on
  the last step the person reached (`last`).
* As of `as_of`: events after it are ignored; a person who has not reached a step and
  whose window has not ended at `as_of` counts as `in_window`, not `dropped`.

windowFunnel() is not used: it takes equal timestamps in step order (not by message_id),
lets one event fill two steps, reports no step times (needed for time to convert and
for "still in window") and has no exclusions, optional steps or held properties. The
per-person array walk below (groupArray + arrayFold) does all of it in one pass. The
common funnels (every step required, nothing held; in any order only when no event can
be two steps; exclusions in loose order with first touch) skip the walk: one
arrayFirstIndex per step over arrays of numbers (`is_searched`, `walked_by_search`)
reaches the same state 4-8x faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
    comment,
    days_json,
    format_duration,
    parse_date,
    parse_duration_ms,
    parse_moment,
    pct,
    spec_errors,
    table_columns,
    tie_order,
    utc_text,
)
from funnelhouse.analyses.funnel_search import (
    STATE,
    held_walked_by_search,
    is_held_search,
    is_searched,
    literal_masks,
    mask,
    packs,
    plain_journeys,
    walked_by_search,
    walked_columns,
)
from funnelhouse.warehouse.base import Warehouse

ORDERS = ("loose", "strict", "any")
TREND_PERIODS = ("day", "week", "month")
# Time-to-convert percentiles reported for every step after the first.
PERCENTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
ATTRIBUTIONS = ("first", "last")
MAX_STEPS = 63
FUNNEL_KEYS = ("steps", "window", "order", "exclude", "optional", "hold", "breakdown",
               "attribution", "date_from", "date_to", "as_of", "covering", "trend")
_DAY_MS = 86_400_000

# tie: what orders events of the same millisecond (common.tie_order).
_EVENT = ("Tuple(ts Int64, tie {tie}, hits UInt64, voids UInt64, can_start UInt8, "
          "revenue Float64, breakdown_value String{held})")
# Only a funnel that holds a property carries the held values: two arrays per event cost
# a plain funnel 40% of its time at 10M events.
_HELD = ", holds Array(UInt64), revenues Array(Float64)"

@dataclass(frozen=True)
class Exclusion:
    """A person doing `event` after step `from_step` and before step `to_step` is excluded."""

    event: EventSpec
    from_step: int = 1
    to_step: int | None = None        # None: the last step

    @classmethod
    def parse(cls, text: str) -> Exclusion:
        """`remove_from_cart`, `remove_from_cart@2-3`, `page_view:page_path=/faq@1-2`."""
        body, at, span = text.rpartition("@")
        if at and "-" in span and all(p.strip().isdigit() for p in span.split("-", 1)):
            lo, hi = (int(p) for p in span.split("-", 1))
            return cls(EventSpec.parse(body), lo, hi)
        return cls(EventSpec.parse(text))

    @classmethod
    def from_json(cls, doc: Any) -> Exclusion:
        if isinstance(doc, str):
            return cls.parse(doc)
        if not isinstance(doc, dict):
            raise SpecError(f"exclusion {doc!r} must be \"event@from-to\" or an object")
        check_keys(doc, ("event", "filters", "from_step", "to_step"), "exclusion")
        event = {k: v for k, v in doc.items() if k in ("event", "filters")}
        return cls(EventSpec.from_json(event), int(doc.get("from_step", 1)),
                   int(doc["to_step"]) if doc.get("to_step") is not None else None)

    def text(self, steps: int) -> str:
        return f"{self.event.text()}@{self.from_step}-{self.to_step or steps}"


@dataclass(frozen=True)
class FunnelSpec:
    steps: tuple[EventSpec, ...]
    window_ms: int = 7 * _DAY_MS
    order: str = "loose"
    exclusions: tuple[Exclusion, ...] = ()
    optional: tuple[int, ...] = ()           # 1-based step numbers that may be skipped
    hold: str | None = None                  # property held constant across the steps
    breakdown: str | None = None
    attribution: str = "first"
    date_from: date | None = None            # reporting days in which step 1 may happen
    date_to: date | None = None
    as_of: datetime | None = None            # default: now
    covering: float = 0.8                    # share of converters the "covering" window holds
    trend: str | None = None                 # day | week | month: conversion by entry period
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.steps)
        if n < 2:
            raise SpecError("a funnel needs at least two steps")
        if n > MAX_STEPS:
            raise SpecError(f"a funnel has at most {MAX_STEPS} steps")
        if self.order not in ORDERS:
            raise SpecError(f"order must be one of {', '.join(ORDERS)}")
        if self.attribution not in ATTRIBUTIONS:
            raise SpecError(f"attribution must be one of {', '.join(ATTRIBUTIONS)}")
        if self.window_ms <= 0:
            raise SpecError("the conversion window must be positive")
        for k in self.optional:
            if not 1 < k < n:
                raise SpecError(f"optional step {k}: only steps 2..{n - 1} may be optional")
        if self.optional and self.order == "any":
            raise SpecError("optional steps mean nothing in an any-order funnel")
        for ex in self.exclusions:
            hi = ex.to_step or n
            if not 1 <= ex.from_step < hi <= n:
                raise SpecError(f"exclusion {ex.event.text()}: steps must satisfy "
                                f"1 <= from < to <= {n}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")
        if not 0 < self.covering <= 1:
            raise SpecError("covering is a share of converters in (0, 1]")
        if self.trend is not None and self.trend not in TREND_PERIODS:
            raise SpecError(f"trend must be one of {', '.join(TREND_PERIODS)}")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FunnelSpec:
        if not isinstance(doc, dict):
            raise SpecError("the funnel spec must be a JSON object")
        check_keys(doc, FUNNEL_KEYS, "funnel spec")
        with spec_errors():
            return cls(
                steps=tuple(EventSpec.from_json(s) for s in doc.get("steps") or ()),
                window_ms=parse_duration_ms(doc.get("window", "7d")),
                order=doc.get("order", "loose"),
                exclusions=tuple(Exclusion.from_json(x) for x in doc.get("exclude") or ()),
                optional=tuple(int(k) for k in doc.get("optional") or ()),
                hold=doc.get("hold") or None,
                breakdown=doc.get("breakdown") or None,
                attribution=doc.get("attribution", "first"),
                date_from=parse_date(doc.get("date_from"), "date_from"),
                date_to=parse_date(doc.get("date_to"), "date_to"),
                as_of=parse_moment(doc.get("as_of")),
                covering=float(doc.get("covering", 0.8)),
                trend=doc.get("trend") or None,
            )

    def to_json(self) -> dict[str, Any]:
        n = len(self.steps)
        return {"steps": [s.text() for s in self.steps], "window": format_duration(self.window_ms),
                "order": self.order, "exclude": [x.text(n) for x in self.exclusions],
                "optional": list(self.optional), "hold": self.hold, "breakdown": self.breakdown,
                "attribution": self.attribution,
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None,
                "covering": self.covering, "trend": self.trend}

    # Step structure the SQL and the reference both use.
    def eligible(self) -> list[list[int]]:
        """For each level 0..n-1 (steps done so far), the steps the next event may fill."""
        n = len(self.steps)
        out = []
        for level in range(n):
            steps, k = [], level + 1
            while k <= n:
                steps.append(k)
                if k not in self.optional:
                    break
                k += 1
            out.append(steps)
        return out

    def bases(self) -> list[int]:
        """For each step, the step its conversion is measured from (0 for step 1)."""
        if self.order == "any":
            return list(range(len(self.steps)))
        out, last_required = [], 0
        for k in range(1, len(self.steps) + 1):
            out.append(last_required)
            if k not in self.optional:
                last_required = k
        return out


def build_query(spec: FunnelSpec, columns: dict[str, str], as_of: datetime,
                date_from: date, date_to: date, *, with_revenue: bool = True) -> Query:
    """The funnel as named pieces: step_events, journeys (each person's events in order),
    walked (per person: steps done, window start, excluded, each step's time and revenue:
    `walked_columns`), people (one row per person: step_times, excluded, window_open,
    breakdown) and person_steps; one row per (breakdown, step).

    `with_revenue=False` carries no revenue through the walk (step values are 0), for
    callers that read only who reached which step: a narrower array per person."""
    n = len(spec.steps)
    params = SqlParams()
    props = Properties(columns, params)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_window = params.add("window_ms", "Int64", spec.window_ms)
    p_scan = params.add("scan_days", "UInt32", -(-spec.window_ms // _DAY_MS) + 1)
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_cover = params.add("covering", "Float64", spec.covering)

    step_conds = [props.condition(s, f"step_{k}") for k, s in enumerate(spec.steps, 1)]
    excl_conds = [props.condition(x.event, f"exclude_{i}")
                  for i, x in enumerate(spec.exclusions, 1)]
    held_columns = (f",\n        {props.hold_keys(spec.hold)} AS holds,\n"
                    f"        {props.hold_revenues(spec.hold)} AS revenues" if spec.hold else "")
    tie, tie_type = tie_order(columns)
    event_type = _EVENT.format(tie=tie_type, held=_HELD if spec.hold else "")
    revenue = "toFloat64(revenue)" if with_revenue and "revenue" in columns else "0."
    breakdown = props.expr(spec.breakdown) if spec.breakdown else "''"

    # hits: bit k set when the event is step k.
    hits = "\n".join(
        f"            {'+ ' if k > 1 else '  '}if({c}, {1 << k}, 0)  "
        f"-- step {k}: {comment(spec.steps[k - 1].text())}"
        for k, c in enumerate(step_conds, 1))
    # voids: bit L set when the event is an exclusion that applies after L steps.
    if spec.exclusions:
        voids = "\n".join(
            f"            {',' if i > 1 else ' '} "
            f"if({c}, {mask(range(x.from_step, x.to_step or n))}, 0)"
            f"  -- exclude {comment(x.text(n))}"
            for i, (c, x) in enumerate(zip(excl_conds, spec.exclusions, strict=True), 1))
        voids = f"arrayReduce('groupBitOr', [\n{voids}\n        ])"
    else:
        voids = "0"
    names = {s.event for s in spec.steps} | {x.event.event for x in spec.exclusions}
    prefilter = ""
    if not any(s in ("*", "any") for s in names):
        placeholders = sorted(set(_event_placeholders(params)))
        prefilter = f"\n      AND event IN ({', '.join(placeholders)})"

    # The walk: (comment, condition, new state) branches of one multiIf, first match wins.
    same_hold = " AND has(e.holds, s.hold)" if spec.hold else ""
    hold_at_open = "e.holds[1]" if spec.hold else "0"
    # The revenue an event brings to the step it fills: its held lines', else its own.
    filled_value = ("arraySum(arrayMap((h, r) -> if(h = s.hold, r, 0.), e.holds, e.revenues))"
                    if spec.hold else "e.revenue")
    opened_value = "e.revenues[1]" if spec.hold else "e.revenue"
    if spec.order == "any":
        first_bit = "bitCount(bitXor(e.hits, e.hits - 1)) - 1"
        opened = _state("1", "e.ts", "0", "0", _set_time(first_bit, f"arrayWithConstant({n}, 0)"),
                        "bitAnd(e.hits, bitXor(e.hits, e.hits - 1))", hold_at_open, "i", "i",
                        _set_at(first_bit, opened_value, f"arrayWithConstant({n}, 0.)"))
        start = (f"if(e.can_start = 1 AND e.hits > 0,\n"
                 f"               {opened},\n               s)")
        fresh = "bitAnd(e.hits, bitNot(s.done))"
        fresh_bit = f"bitCount(bitXor({fresh}, {fresh} - 1)) - 1"
        branches = [("a step not done yet: the k-th different step of this funnel",
                     f"{fresh} > 0{same_hold}",
                     _state("s.level + 1", "s.t0", "0", "0", _set_time(fresh_bit, "s.times"),
                            f"bitOr(s.done, bitShiftLeft(toUInt64(1), {fresh_bit}))",
                            "s.hold", "s.first_index", "i",
                            _set_at(fresh_bit, filled_value, "s.values")))]
    else:
        opened = _state("1", "e.ts", "0", "0",
                        f"arrayConcat([e.ts], arrayWithConstant({n - 1}, 0))",
                        "2", hold_at_open, "i", "i",
                        f"arrayConcat([{opened_value}], arrayWithConstant({n - 1}, 0.))")
        start = (f"if(e.can_start = 1 AND bitTest(e.hits, 1),\n"
                 f"               {opened},\n               s)")
        # From `level` steps done, the next event may fill these steps (mask per level).
        nexts = literal_masks([mask(steps) for steps in spec.eligible()])
        fill = f"bitAnd(e.hits, {nexts}[s.level + 1])"
        fill_bit = f"bitCount(bitXor({fill}, {fill} - 1)) - 1"
        branches = [("the next step (or a later one when the steps between are optional)",
                     f"{fill} > 0{same_hold}",
                     _state(fill_bit, "s.t0", "0", "0", _set_time(fill_bit, "s.times"),
                            "s.done", "s.hold", "s.first_index", "i",
                            _set_at(fill_bit, filled_value, "s.values")))]
    if spec.exclusions:
        branches.append(("an exclusion event between its steps voids the attempt",
                         "bitTest(e.voids, s.level)",
                         _state("s.level", "s.t0", "0", "1", "s.times", "s.done", "s.hold",
                                "s.first_index", "s.last_index", "s.values")))
    if spec.order == "strict":
        branches.append(("strict order: another step of this funnel in between ends the attempt",
                         f"bitAnd(e.hits, {nexts}[s.level + 1]) = 0"
                         " AND bitAnd(e.hits, bitNot(bitShiftLeft(toUInt64(1), s.level))) > 0"
                         f"{same_hold}",
                         _state("s.level", "s.t0", "1", "0", "s.times", "s.done", "s.hold",
                                "s.first_index", "s.last_index", "s.values")))
    walk = "".join(f"        -- {note}\n        {cond},\n            {state},\n"
                   for note, cond, state in branches)

    if spec.order == "any":
        step_times = f"arrayResize(arraySort(arrayFilter(t -> t > 0, found_times)), {n}, 0)"
        step_times_note = "-- any order: when the k-th different step was done"
        step_values = (f"arrayResize(arrayMap(x -> x.2, arraySort(x -> x.1, arrayFilter("
                       f"x -> x.1 > 0, arrayZip(found_times, found_values)))), {n}, 0.)")
    else:
        step_times = "found_times"
        step_times_note = "-- when each step was done (0: not done)"
        step_values = "found_values"
    is_total = "grouping(breakdown)" if spec.breakdown else "0"
    touch = "first_index" if spec.attribution == "first" else "last_index"
    levels = ", ".join(str(level) for level in PERCENTILES)   # constants, not user text
    median_at = PERCENTILES.index(0.5) + 1   # the median from step 1 is one of them

    excludes = bool(spec.exclusions)
    if is_searched(spec, tie_type):
        walked = walked_by_search(
            n, p_window, tie_type, last_touch=spec.attribution == "last",
            packed=packs(tie_type, spec.attribution == "last", n, voids=excludes),
            order=spec.order, exclusions=excludes,
            nexts=[mask(steps) for steps in spec.eligible()] if spec.optional else None)
    elif is_held_search(spec):
        walked = held_walked_by_search(n, p_window, last_touch=spec.attribution == "last",
                                        strict=spec.order == "strict")
    else:
        walked = [Cte("walked", f"""\
    -- walk the events once: level = steps done, t0 = when the window opened
    SELECT
        person_id,
        events[state.{touch}].breakdown_value AS breakdown,  -- {spec.attribution}-touch
        arrayFold((s, e, i) -> multiIf(
        s.level = 0,
            {start},
        s.level = {n} OR s.stopped = 1 OR s.excluded = 1 OR e.ts - s.t0 > {p_window},
            s,
{walk}        s),
        events, arrayEnumerate(events),
        CAST((0, 0, 0, 0, arrayWithConstant({n}, 0), 0, 0, 0, 0, arrayWithConstant({n}, 0.)),
             '{STATE}')) AS state,
        {walked_columns("state.level", "state.t0", "state.excluded", "state.times",
                        "state.values")}
    FROM journeys""")]

    header = (f"-- Funnel: {n} steps, {spec.order} order, "
              f"window {format_duration(spec.window_ms)}.\n"
              "-- Step 1 happens on a reporting day in [date_from, date_to]; "
              "events after as_of are ignored.\n"
              '-- Masks: bit k stands for step k (hits) or for "after k steps" (voids).')
    step_events = Cte("step_events", f"""\
    -- every event that fills a step or an exclusion
    SELECT
        person_id,
        toUnixTimestamp64Milli(event_at) AS ts,
        {tie} AS tie,
        (
{hits}
        ) AS hits,
        {voids} AS voids,
        toUInt8(event_date <= {p_to}) AS can_start,
        {revenue} AS event_revenue,
        {breakdown} AS breakdown_value{held_columns}
    FROM {EVENTS_TABLE}
    WHERE event_date >= {p_from}
      AND event_date <= {p_to} + {p_scan}
      AND event_at <= {p_as_of}{prefilter}""")
    journeys = plain_journeys(tie_type, spec.attribution == "last", n, order=spec.order,
                               voids=excludes) if is_searched(spec, tie_type) \
        else Cte("journeys", f"""\
    -- each person's events in (event_at, message_id) order: tuples sort by their fields
    SELECT
        person_id,
        arraySort(groupArray(CAST(
            (ts, tie, hits, voids, can_start, event_revenue, breakdown_value
             {", holds, revenues" if spec.hold else ""}),
            '{event_type}'))) AS events
    FROM step_events
    WHERE hits > 0 OR voids > 0
    GROUP BY person_id""")
    people = Cte("people", f"""\
    SELECT
        person_id,
        started_ms,
        excluded,
        {step_times} AS step_times,  {step_times_note}
        {step_values} AS step_values,  -- the revenue each step's event brought
        toUInt8(started_ms + {p_window} >= toUnixTimestamp64Milli({p_as_of})) AS window_open,
        breakdown
    FROM walked
    WHERE level > 0""")
    person_steps = Cte("person_steps", f"""\
    -- per person, one element per step: counted (reached, not excluded), missing (the
    -- step before it reached, this one not), the times from step 1 and from the step
    -- before, and whether those times count (counted, past step 1)
    SELECT
        breakdown,
        excluded,
        window_open,
        step_values,
        {_literal(spec.bases())} AS bases,
        arrayMap(t -> t > 0 AND NOT excluded, step_times) AS counted,
        arrayMap((t, b) -> t = 0 AND NOT excluded AND (b = 0 OR step_times[b] > 0),
                 step_times, bases) AS missing,
        arrayMap(t -> t - started_ms, step_times) AS from_start,
        arrayMap((t, b) -> t - if(b = 0, started_ms, step_times[b]), step_times, bases)
            AS from_previous,
        arrayMap((c, k) -> c AND k > 1, counted, arrayEnumerate(step_times)) AS timed_here
    FROM people""")
    # Each aggregate over the per-step arrays (-ForEach): one row per person rather than
    # one per (person, step): 0.95-1.01x the time at 10M in four alternated runs. The
    # total row by ROLLUP, which merges the breakdowns' states, rather than GROUPING SETS,
    # which aggregates the people a second time (0.609 -> 0.593 s, the same rows).
    grouping = ("GROUP BY breakdown WITH ROLLUP" if spec.breakdown
                else "GROUP BY breakdown")
    final = f"""\
SELECT
    is_total,
    breakdown,
    step,
    people_by_step[step] AS people,
    dropped_by_step[step] AS dropped,
    in_window_by_step[step] AS in_window,
    if(step = 1, excluded_people_all, 0) AS excluded_people,
    revenue_by_step[step] AS revenue,
    median_prev_by_step[step] / 1000 AS median_s_from_prev,
    mean_prev_by_step[step] / 1000 AS mean_s_from_prev,
    percentiles_by_step[step][{median_at}] / 1000 AS median_s_from_start,
    mean_start_by_step[step] / 1000 AS mean_s_from_start,
    -- the time-to-convert distribution from step 1 (linear interpolation, like the median)
    arrayMap(q -> q / 1000, percentiles_by_step[step]) AS percentiles_s_from_start,
    -- the smallest window from step 1 within which the covering share of them got here
    timed_by_step[step] AS timed,
    arraySort(from_start_by_step[step])[toUInt64(ceil({p_cover} * timed))] / 1000
        AS covering_s_from_start
FROM (
    SELECT
        {is_total} AS is_total,
        breakdown,
        countIfForEach(counted) AS people_by_step,
        countIfForEach(arrayMap(m -> m AND NOT window_open, missing)) AS dropped_by_step,
        countIfForEach(arrayMap(m -> m AND window_open, missing)) AS in_window_by_step,
        countIf(excluded) AS excluded_people_all,
        sumIfForEach(step_values, counted) AS revenue_by_step,
        quantileExactInclusiveIfForEach(0.5)(from_previous, timed_here) AS median_prev_by_step,
        avgIfForEach(from_previous, timed_here) AS mean_prev_by_step,
        avgIfForEach(from_start, timed_here) AS mean_start_by_step,
        quantilesExactInclusiveIfForEach({levels})(from_start, timed_here) AS percentiles_by_step,
        countIfForEach(timed_here) AS timed_by_step,
        groupArrayIfForEach(from_start, timed_here) AS from_start_by_step
    FROM person_steps
    {grouping}
)
ARRAY JOIN arrayEnumerate(people_by_step) AS step
ORDER BY is_total DESC, breakdown, step"""
    return Query(header, (step_events, journeys, *walked, people, person_steps), final, params)


def build_sql(spec: FunnelSpec, columns: dict[str, str], as_of: datetime,
              date_from: date, date_to: date) -> tuple[str, SqlParams]:
    """The funnel as one parameterised query; one row per (breakdown, step)."""
    query = build_query(spec, columns, as_of, date_from, date_to)
    return query.sql(), query.params


def _state(level: str, t0: str, stopped: str, excluded: str, times: str, done: str, hold: str,
           first_index: str, last_index: str, values: str) -> str:
    """A new walk state; the breakdown is read afterwards from the event at first/last_index."""
    return (f"CAST(({level}, {t0}, {stopped}, {excluded}, {times}, {done}, {hold}, "
            f"{first_index}, {last_index}, {values}), '{STATE}')")


def _set_at(step: str, value: str, values: str) -> str:
    """`values` with the step's slot set to `value`."""
    return f"arrayMap((v, j) -> if(j = {step}, {value}, v), {values}, arrayEnumerate({values}))"


def _set_time(step: str, times: str) -> str:
    """`times` with the step's slot set to this event's time."""
    return f"arrayMap((t, j) -> if(j = {step}, e.ts, t), {times}, arrayEnumerate({times}))"


def _event_placeholders(params: SqlParams) -> list[str]:
    return [f"{{{name}:String}}" for name in params.values if name.endswith("_event")]


def _literal(value: list) -> str:
    """A constant array of integers from the spec (never user text)."""
    return "[" + ", ".join(_literal(v) if isinstance(v, list) else str(int(v)) for v in value) + "]"


def run_funnel(warehouse: Warehouse, spec: FunnelSpec, reporting_tz: str = "UTC") -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    columns = table_columns(warehouse)
    query = build_query(spec, columns, as_of, date_from, date_to)
    sql, params = query.sql(), query.params
    result = warehouse.query(sql, params.for_query())
    shaped = shape_result(spec, result.dicts(), sql, params, date_from, date_to, as_of,
                          reporting_tz)
    if spec.trend:
        trend = trend_query(query, spec, spec.trend, reporting_tz)
        rows = warehouse.query(trend.sql(), trend.params.for_query()).dicts()
        shaped.data["trend"] = [
            {"period": r["period"], "entered": int(r["entered"]),
             "converted": int(r["converted"]), "still_open": int(r["still_open"]),
             "conversion_pct": pct(int(r["converted"]), int(r["entered"]))} for r in rows]
        shaped.sql += "\n-- conversion by entry period\n" + trend.sql()
    return shaped


def trend_query(query: Query, spec: FunnelSpec, period: str, tz: str) -> Query:
    """Conversion by the period people entered in: the funnel's pieces up to `people`,
    then one row per entry period (reporting time zone)."""
    p_tz = query.params.add("tz", "String", tz)
    start = {"day": "toDate", "week": "toMonday", "month": "toStartOfMonth"}[period]
    entered_day = f"toDate(fromUnixTimestamp64Milli(started_ms), {p_tz})"
    n = len(spec.steps)
    return query.through("people").select(f"""\
-- conversion by the {period} people entered (step 1), excluded people left out
SELECT
    toString({start}({entered_day})) AS period,
    count() AS entered,
    countIf(step_times[{n}] > 0) AS converted,
    countIf(step_times[{n}] = 0 AND window_open = 1) AS still_open
FROM people
WHERE excluded = 0
GROUP BY period
ORDER BY period""")


def shape_result(spec: FunnelSpec, rows: list[dict[str, Any]], sql: str, params: SqlParams,
                 date_from: date, date_to: date, as_of: datetime, tz: str) -> AnalysisResult:
    n = len(spec.steps)
    bases = spec.bases()
    groups: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((int(row["is_total"]), row["breakdown"]), {})[int(row["step"])] = row
    ordered = sorted(groups.items(),
                     key=lambda kv: (-kv[0][0], -int(kv[1].get(1, {}).get("people", 0)), kv[0][1]))
    out_groups: list[dict[str, Any]] = []
    table: list[list[Any]] = []
    for (is_total, value), steps in ordered:
        label = None if (is_total or not spec.breakdown) else value
        first = int(steps.get(1, {}).get("people", 0))
        entries = []
        for k in range(1, n + 1):
            row = steps.get(k, {})
            people = int(row.get("people", 0))
            base = bases[k - 1]
            base_people = first if base == 0 else int(steps.get(base, {}).get("people", 0))
            entry = {
                "step": k, "name": spec.steps[k - 1].text(), "optional": k in spec.optional,
                "people": people,
                "pct_of_start": pct(people, first),
                "pct_of_previous": pct(people, base_people) if k > 1 else None,
                "dropped": int(row.get("dropped", 0)), "in_window": int(row.get("in_window", 0)),
                "revenue": round(float(row.get("revenue") or 0), 2),
                "median_s_from_prev": _num(row.get("median_s_from_prev")),
                "mean_s_from_prev": _num(row.get("mean_s_from_prev")),
                "median_s_from_start": _num(row.get("median_s_from_start")),
                "mean_s_from_start": _num(row.get("mean_s_from_start")),
                "percentiles_s_from_start": _percentiles(row) if k > 1 else None,
                "covering_s_from_start": (_num(row.get("covering_s_from_start"))
                                          if k > 1 and int(row.get("timed", 0)) else None),
            }
            entries.append(entry)
            cells = [entry[c] for c in _STEP_COLUMNS]
            shown = "(all)" if label is None else (label or "(none)")
            table.append(([shown] if spec.breakdown else []) + cells)
        excluded = int(steps.get(1, {}).get("excluded_people", 0))
        out_groups.append({"breakdown": label, "excluded": excluded, "steps": entries})
    total: dict[str, Any] = out_groups[0] if out_groups else {"steps": [], "excluded": 0}
    entered = total["steps"][0]["people"] if total["steps"] else 0
    converted = total["steps"][-1]["people"] if total["steps"] else 0
    # Required steps only: each unconverted person is missing exactly one of them first.
    open_total = sum(s["in_window"] for s in total["steps"] if not s["optional"])
    summary = {"entered": entered, "converted": converted,
               "conversion_pct": pct(converted, entered),
               "excluded": total["excluded"], "order": spec.order,
               "window": format_duration(spec.window_ms), "as_of": utc_text(as_of),
               "still_in_window": open_total}
    notes = [f"step 1 on reporting days {date_from} .. {date_to}; a day is a calendar day in {tz}",
             "events in (event_at, message_id) order; in_window = not there yet but the window "
             "is still open at as_of"]
    notes.append(f"covering_s_from_start: the smallest time from step 1 within which "
                 f"{spec.covering:.0%} of the people at that step got there; "
                 "percentiles_s_from_start in data.groups[].steps[]")
    if spec.breakdown:
        notes.append(f"breakdown {spec.breakdown} by {spec.attribution}-touch "
                     f"({'step 1 event' if spec.attribution == 'first' else 'last step reached'})")
    columns = (["breakdown"] if spec.breakdown else []) + list(_STEP_COLUMNS)
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(), "date_to": date_to.isoformat(),
                                 "as_of": utc_text(as_of)}
    return AnalysisResult("funnel", spec_doc, sql, dict(params.values), columns, table, summary,
                          notes, {"groups": out_groups})


_STEP_COLUMNS = ("step", "name", "people", "pct_of_start", "pct_of_previous", "dropped",
                 "in_window", "revenue", "median_s_from_prev", "mean_s_from_prev",
                 "median_s_from_start", "mean_s_from_start", "covering_s_from_start")


def _percentiles(row: dict[str, Any]) -> dict[str, float | None] | None:
    values = row.get("percentiles_s_from_start")
    if not values or not int(row.get("timed", 0)):
        return None
    return {f"p{round(level * 100)}": _num(v)
            for level, v in zip(PERCENTILES, values, strict=True)}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else round(value, 3)   # NaN (no one) → None


def window_end(started: datetime, spec: FunnelSpec) -> datetime:
    return started + timedelta(milliseconds=spec.window_ms)
