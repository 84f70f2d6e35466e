"""Plain-Python reference for the analyses: the documented definitions, computed without SQL.

Tests run each analysis in ClickHouse and here on the same generated events and compare.
Input events are built from raw `events_raw` rows (`events_from_raw`): duplicates dropped
(earliest received copy wins), the reporting day computed in the reporting time zone, the
properties parsed from JSON. Identity and sessions are the models' business, so the caller
passes `person_of` / `session_of` (message_id → person, session) read from behavior_events.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses.common import EventSpec
from funnelhouse.analyses.funnel import PERCENTILES, FunnelSpec
from funnelhouse.analyses.paths import PathsSpec
from funnelhouse.analyses.retention import RetentionSpec

# behavior_events columns the reference knows, and where each comes from in a raw row.
_RAW_COLUMNS = ("type", "event", "channel", "device_type", "os_name", "browser_name", "source",
                "utm_source", "utm_medium", "utm_campaign", "traffic_source", "traffic_medium",
                "anonymous_id", "user_id", "message_id", "locale", "referrer_host")
_FROM_PROPERTIES = {"product_id": "product_id", "product_name": "name",
                    "product_category": "category", "order_id": "order_id", "coupon": "coupon",
                    "store_id": "store_id", "staff_id": "staff_id", "element": "element"}


@dataclass
class Event:
    person_id: str
    ts: int                         # epoch milliseconds
    message_id: str
    event: str
    type: str
    day: date                       # reporting day
    session_id: str
    columns: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def order_key(self) -> tuple[int, str]:
        return (self.ts, self.message_id)

    @property
    def page(self) -> str:
        return self.columns.get("page_path", "")


def _ms(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def events_from_raw(rows: list[dict[str, Any]], tz: str, person_of: dict[str, str],
                    session_of: dict[str, str] | None = None) -> list[Event]:
    zone = ZoneInfo(tz)
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.get("anonymous_id") and not row.get("user_id"):
            continue
        kept = first.get(row["message_id"])
        if kept is None or row["received_at"] < kept["received_at"]:
            first[row["message_id"]] = row
    events = []
    for mid, row in first.items():
        ts = _ms(row["timestamp"])
        props = json.loads(row.get("properties") or "{}")
        columns = {c: str(row.get(c, "") or "") for c in _RAW_COLUMNS}
        path = row.get("page_path", "") or ""
        if row["type"] == "screen" and not path:
            path = row.get("screen_name", "") or ""
        columns["page_path"] = path
        for column, key in _FROM_PROPERTIES.items():
            value = props.get(key)
            columns[column] = value if isinstance(value, str) else ""
        events.append(Event(
            person_id=person_of[mid], ts=ts, message_id=mid, event=row["event"], type=row["type"],
            day=datetime.fromtimestamp(ts / 1000, zone).date(),
            session_id=(session_of or {}).get(mid, ""), columns=columns, properties=props))
    return events


# -- properties and filters ------------------------------------------------------------
# A product field on an event with order lines (properties.items): each line's value.
_ITEM_KEYS = {"product_id": "product_id", "product_name": "name", "product_category": "category"}


def line_values(e: Event, name: str) -> list[str]:
    items = e.properties.get("items")
    if name not in _ITEM_KEYS or not isinstance(items, list):
        return []
    return [str(i.get(_ITEM_KEYS[name]) or "") if isinstance(i, dict) else "" for i in items]


def line_revenues(e: Event) -> list[float]:
    items = e.properties.get("items")
    if not isinstance(items, list):
        return []
    return [round(float(i.get("price") or 0) * max(int(i.get("quantity") or 0), 1), 2)
            if isinstance(i, dict) else 0.0 for i in items]


def event_revenue(e: Event) -> float:
    value = e.properties.get("revenue") if e.event == "purchase" else 0
    return float(value) if isinstance(value, int | float) else 0.0


def held_values(e: Event, name: str) -> list[str]:
    """What an event offers for a held property: its own value, or each line's."""
    lines = line_values(e, name)
    return lines if lines else [prop_value(e, name)]


def prop_value(e: Event, name: str) -> str:
    lines = line_values(e, name)
    if lines and not e.columns.get(name):
        return ",".join(dict.fromkeys(lines))        # distinct, in line order
    if name.startswith("properties."):
        return _json_text(e.properties.get(name[len("properties."):]))
    if name in e.columns:
        return e.columns[name]
    return _json_text(e.properties.get(name))


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def matches(e: Event, spec: EventSpec) -> bool:
    if not spec.any_event and e.event != spec.event:
        return False
    for flt in spec.filters:
        value = prop_value(e, flt.prop)
        lines = line_values(e, flt.prop)
        if lines and flt.op in ("=", "!=", "~", "!~"):
            own = e.columns.get(flt.prop, "")
            if flt.op in ("=", "!="):
                hit = own == flt.value or flt.value in lines
            else:
                hit = any(flt.value.lower() in v.lower() for v in [own, *lines])
            if hit != (flt.op in ("=", "~")):
                return False
            continue
        if flt.op == "=" and value != flt.value:
            return False
        if flt.op == "!=" and value == flt.value:
            return False
        if flt.op == "~" and flt.value.lower() not in value.lower():
            return False
        if flt.op == "!~" and flt.value.lower() in value.lower():
            return False
        if flt.op in (">", ">=", "<", "<="):
            try:
                number = float(value)
            except ValueError:
                return False
            limit = float(flt.value)
            ok = {">": number > limit, ">=": number >= limit, "<": number < limit,
                  "<=": number <= limit}[flt.op]
            if not ok:
                return False
    return True


def _by_person(events: list[Event]) -> dict[str, list[Event]]:
    people: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        people[e.person_id].append(e)
    for evs in people.values():
        evs.sort(key=lambda e: e.order_key)
    return people


# -- funnel ---------------------------------------------------------------------------
@dataclass
class _Attempt:
    started: int
    times: list[int]                # per step (ordered) / per k-th different step (any)
    excluded: bool
    value: str                      # breakdown value (first or last touch)
    values: list[float] = field(default_factory=list)   # revenue brought to each step


def _walk(evs: list[Event], spec: FunnelSpec, date_from: date, date_to: date) -> _Attempt | None:
    n = len(spec.steps)
    hold = spec.hold
    start = next((e for e in evs if date_from <= e.day <= date_to and (
        matches(e, spec.steps[0]) if spec.order != "any"
        else any(matches(e, s) for s in spec.steps))), None)
    if start is None:
        return None
    held = held_values(start, hold)[0] if hold else ""

    def value_of(e: Event) -> float:
        """The revenue an event brings to the step it fills (of its held lines if held)."""
        if not hold:
            return event_revenue(e)
        offered = held_values(e, hold)
        revenues = line_revenues(e) if line_values(e, hold) else [event_revenue(e)]
        return sum(r for v, r in zip(offered, revenues, strict=False) if v == held)

    bd = (lambda e: prop_value(e, spec.breakdown)) if spec.breakdown else (lambda e: "")
    first_value = last_value = bd(start)
    done: dict[int, int] = {}       # step → time
    values: dict[int, float] = {}   # step → revenue brought
    first_step = (min(k for k, s in enumerate(spec.steps, 1) if matches(start, s))
                  if spec.order == "any" else 1)
    done[first_step] = start.ts
    if hold:   # the first value it offers, and that value's revenue
        values[first_step] = (line_revenues(start) if line_values(start, hold)
                              else [event_revenue(start)])[0]
    else:
        values[first_step] = event_revenue(start)
    level, excluded = 1, False
    for e in evs[evs.index(start) + 1:]:
        if level == n or e.ts - start.ts > spec.window_ms:
            break
        same_hold = not hold or held in held_values(e, hold)
        hits = [k for k, s in enumerate(spec.steps, 1) if matches(e, s)]
        target = None
        if spec.order == "any":
            fresh = [k for k in hits if k not in done]
            if fresh and same_hold:
                done[min(fresh)] = e.ts
                values[min(fresh)] = value_of(e)
                level += 1
                last_value = bd(e)
                continue
        else:
            # From `level`, the next event may fill any step up to the next required one.
            allowed = []
            for k in range(level + 1, n + 1):
                allowed.append(k)
                if k not in spec.optional:
                    break
            target = next((k for k in allowed if k in hits), None)
            if target is not None and same_hold:
                done[target] = e.ts
                values[target] = value_of(e)
                level = target
                last_value = bd(e)
                continue
        if any(matches(e, x.event) and x.from_step <= level < (x.to_step or n)
               for x in spec.exclusions):
            excluded = True
            break
        if spec.order == "strict" and target is None and same_hold \
                and any(k != level for k in hits):
            break
    if spec.order == "any":
        by_time = sorted((done[k], values[k]) for k in done)
        times = [t for t, _ in by_time] + [0] * (n - len(done))
        step_values = [v for _, v in by_time] + [0.0] * (n - len(done))
    else:
        times = [done.get(k, 0) for k in range(1, n + 1)]
        step_values = [values.get(k, 0.0) for k in range(1, n + 1)]
    return _Attempt(start.ts, times, excluded,
                    first_value if spec.attribution == "first" else last_value, step_values)


def funnel(events: list[Event], spec: FunnelSpec, date_from: date, date_to: date,
           as_of: datetime) -> dict[str | None, dict[str, Any]]:
    """breakdown value (None = everyone) → {excluded, steps: [{people, dropped, …}]}."""
    as_of_ms = int(as_of.timestamp() * 1000)
    n = len(spec.steps)
    bases = spec.bases()
    attempts = []
    for evs in _by_person([e for e in events if e.ts <= as_of_ms and e.day >= date_from]).values():
        attempt = _walk(evs, spec, date_from, date_to)
        if attempt is not None:
            attempts.append(attempt)
    groups: dict[str | None, list[_Attempt]] = {None: attempts}
    if spec.breakdown:
        for a in attempts:
            groups.setdefault(a.value, []).append(a)
    out = {}
    for key, members in groups.items():
        kept = [a for a in members if not a.excluded]
        steps = []
        for k in range(1, n + 1):
            base = bases[k - 1]
            reached = [a for a in kept if a.times[k - 1] > 0]
            missing = [a for a in kept
                       if (base == 0 or a.times[base - 1] > 0) and a.times[k - 1] == 0]
            is_open = [a.started + spec.window_ms >= as_of_ms for a in missing]
            from_prev = [(a.times[k - 1] - (a.started if base == 0 else a.times[base - 1])) / 1000
                         for a in reached] if k > 1 else []
            from_start = [(a.times[k - 1] - a.started) / 1000 for a in reached] if k > 1 else []
            steps.append({
                "people": len(reached),
                "dropped": is_open.count(False), "in_window": is_open.count(True),
                "revenue": sum(a.values[k - 1] for a in reached),
                "median_s_from_prev": statistics.median(from_prev) if from_prev else None,
                "mean_s_from_prev": statistics.fmean(from_prev) if from_prev else None,
                "median_s_from_start": statistics.median(from_start) if from_start else None,
                "mean_s_from_start": statistics.fmean(from_start) if from_start else None,
                "percentiles_s_from_start": {
                    f"p{round(q * 100)}": _linear_quantile(sorted(from_start), q)
                    for q in PERCENTILES} if from_start else None,
                "covering_s_from_start": sorted(from_start)[
                    math.ceil(spec.covering * len(from_start)) - 1] if from_start else None,
            })
        out[key] = {"excluded": len(members) - len(kept), "steps": steps}
    return out


def _linear_quantile(ordered: list[float], q: float) -> float:
    """The q-quantile with linear interpolation between closest ranks (R7, numpy's default)."""
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def funnel_trend(events: list[Event], spec: FunnelSpec, date_from: date, date_to: date,
                 as_of: datetime, tz: str, period: str) -> dict[str, tuple[int, int, int]]:
    """entry period → (entered, converted, still open) among people not excluded."""
    as_of_ms = int(as_of.timestamp() * 1000)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for evs in _by_person([e for e in events if e.ts <= as_of_ms and e.day >= date_from]).values():
        attempt = _walk(evs, spec, date_from, date_to)
        if attempt is None or attempt.excluded:
            continue
        day = datetime.fromtimestamp(attempt.started / 1000, ZoneInfo(tz)).date()
        cell = out[_period_start(period, day).isoformat()]
        converted = attempt.times[-1] > 0
        cell[0] += 1
        cell[1] += int(converted)
        cell[2] += int(not converted and attempt.started + spec.window_ms >= as_of_ms)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


# -- retention ------------------------------------------------------------------------
def _period_start(unit: str, day: date) -> date:
    if unit == "day":
        return day
    if unit == "week":
        return date.fromordinal(day.toordinal() - day.weekday())
    return date(day.year, day.month, 1)


def _periods_between(unit: str, a: date, b: date) -> int:
    if unit == "day":
        return (b - a).days
    if unit == "week":
        return (b - a).days // 7
    return (b.year - a.year) * 12 + (b.month - a.month)


def retention(events: list[Event], spec: RetentionSpec, date_from: date, date_to: date,
              as_of: datetime) -> dict[tuple[str, str | None], tuple[int, list[int]]]:
    """(cohort period, breakdown value or None for everyone) → (size, count per period)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    unit = spec.period
    cohort_spec = spec.cohort_event()
    cells: dict[tuple[str, str | None], tuple[int, list[int]]] = {}

    def add(key: tuple[str, str | None], returned: list[bool]) -> None:
        size, counts = cells.get(key, (0, [0] * (spec.periods + 1)))
        cells[key] = (size + 1, [c + int(r) for c, r in zip(counts, returned, strict=True)])

    for evs in _by_person([e for e in events if e.ts <= as_of_ms]).values():
        entries = [e for e in evs if matches(e, cohort_spec)]
        if spec.cohort_type == "first_time":
            entries = entries[spec.nth - 1:spec.nth]
        entries = [e for e in entries if date_from <= e.day <= date_to]
        cohorts: dict[date, Event] = {}
        for e in entries:
            cohorts.setdefault(_period_start(unit, e.day), e)
        returns = {_period_start(unit, e.day) for e in evs
                   if spec.return_event is None or matches(e, spec.return_event)}
        for start, entry in cohorts.items():
            offsets = [_periods_between(unit, start, r) for r in returns]
            offsets = [k for k in offsets if k >= 0]
            if spec.mode == "on":
                returned = [k in offsets for k in range(spec.periods + 1)]
            else:
                last = max(offsets, default=-1)
                returned = [last >= k for k in range(spec.periods + 1)]
            add((start.isoformat(), None), returned)
            if spec.breakdown:
                add((start.isoformat(), prop_value(entry, spec.breakdown)), returned)
    return cells


# -- paths ----------------------------------------------------------------------------
def paths(events: list[Event], spec: PathsSpec, date_from: date, date_to: date,
          as_of: datetime) -> dict[tuple[str, str], dict[str, int]]:
    """(side, page) → {views, sessions, people, converted_sessions}.

    side is total, came_from or went_to."""
    as_of_ms = int(as_of.timestamp() * 1000)
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms:
            sessions[e.session_id].append(e)
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for evs in sessions.values():
        evs.sort(key=lambda e: e.order_key)
        views = [e for e in evs if e.type in ("page", "screen")]
        conversions = [e for e in evs if matches(e, spec.conversion)]
        for i, view in enumerate(views):
            if view.page != spec.page:
                continue
            came = views[i - 1].page if i > 0 else "(entrance)"
            went = views[i + 1].page if i + 1 < len(views) else "(exit)"
            converted = any(c.order_key > view.order_key for c in conversions)
            for key in (("total", spec.page), ("came_from", came), ("went_to", went)):
                slot = acc.setdefault(key, {"views": 0, "sessions": set(), "people": set(),
                                            "converted": set()})
                slot["views"] += 1
                slot["sessions"].add(view.session_id)
                slot["people"].add(view.person_id)
                if converted:
                    slot["converted"].add(view.session_id)
    return {key: {"views": s["views"], "sessions": len(s["sessions"]), "people": len(s["people"]),
                  "converted_sessions": len(s["converted"])} for key, s in acc.items()}


# -- timeline -------------------------------------------------------------------------
def timeline(events: list[Event], person_id: str) -> list[str]:
    """The person's message ids in (event_at, message_id) order."""
    mine = sorted((e for e in events if e.person_id == person_id), key=lambda e: e.order_key)
    return [e.message_id for e in mine]


# -- trends ---------------------------------------------------------------------------
def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _bucket(interval: str, e: Event, tz: str) -> str:
    if interval == "hour":
        local = datetime.fromtimestamp(e.ts / 1000, ZoneInfo(tz))
        return local.strftime("%Y-%m-%d %H:00:00")
    return _period_start(interval, e.day).isoformat() if interval != "month" \
        else date(e.day.year, e.day.month, 1).isoformat()


def trend_counts(events: list[Event], series: Any, interval: str, breakdown: str | None,
                 date_from: date, date_to: date, as_of: datetime, tz: str
                 ) -> dict[tuple[str, str | None], float]:
    """(bucket, breakdown value or None for all) → the series' value, for counted maths
    (total, people, sessions, sum, avg, min, max). Buckets without events are absent."""
    as_of_ms = int(as_of.timestamp() * 1000)
    groups: dict[tuple[str, str | None], list[Event]] = defaultdict(list)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and matches(e, series.event):
            bucket = _bucket(interval, e, tz)
            groups[(bucket, None)].append(e)
            if breakdown:
                groups[(bucket, prop_value(e, breakdown))].append(e)
    out: dict[tuple[str, str | None], float] = {}
    for key, evs in groups.items():
        if series.math == "total":
            out[key] = len(evs)
        elif series.math == "people":
            out[key] = len({e.person_id for e in evs})
        elif series.math == "sessions":
            out[key] = len({e.session_id for e in evs if e.session_id})
        else:
            numbers = [n for e in evs
                       if (n := _number(prop_value(e, series.property))) is not None]
            if series.math == "sum":
                out[key] = sum(numbers)
            elif numbers:
                out[key] = {"avg": statistics.fmean, "min": min, "max": max}[series.math](numbers)
    return out


def active_people(events: list[Event], event_spec: EventSpec, days: int, on_day: date,
                  as_of: datetime, where: tuple[str, str] | None = None) -> int:
    """People who did the event on one of the `days` days ending on `on_day` (with
    `where` = (property, value): an event carrying that value)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    first = date.fromordinal(on_day.toordinal() - days + 1)
    return len({e.person_id for e in events
                if first <= e.day <= on_day and e.ts <= as_of_ms and matches(e, event_spec)
                and (where is None or prop_value(e, where[0]) == where[1])})


def stickiness(events: list[Event], event_spec: EventSpec, period: str, date_from: date,
               date_to: date, as_of: datetime) -> dict[str, list[int]]:
    """period start → people active on exactly k days of it (index k-1)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and matches(e, event_spec):
            start = _period_start(period, e.day)
            days[(start.isoformat(), e.person_id)].add(e.day)
    out: dict[str, list[int]] = defaultdict(lambda: [0] * (7 if period == "week" else 31))
    for (start, _), active in days.items():
        out[start][len(active) - 1] += 1
    return dict(out)


# -- flows ----------------------------------------------------------------------------
def flows(events: list[Event], spec: Any, date_from: date, date_to: date,
          as_of: datetime) -> dict[tuple[int, str, str], tuple[int, int]]:
    """(step, node, next node / '(exit)' / '') → (sessions, converted), before top-N."""
    as_of_ms = int(as_of.timestamp() * 1000)
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and e.session_id:
            sessions[e.session_id].append(e)
    out: dict[tuple[int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for evs in sessions.values():
        evs.sort(key=lambda e: e.order_key)
        if spec.nodes == "views":
            seq = [(e.page, e.ts) for e in evs if e.type in ("page", "screen") and e.page]
        else:
            seq = [(e.event, e.ts) for e in evs]
        if spec.collapse:
            seq = [x for i, x in enumerate(seq) if i == 0 or x[0] != seq[i - 1][0]]
        conversions = [e.ts for e in evs if matches(e, spec.conversion)]
        last_conversion = max(conversions, default=None)
        names = [n for n, _ in seq]
        if spec.start:
            if spec.start not in names:
                continue
            first = names.index(spec.start)
            path = seq[first:first + spec.steps]
            steps = list(range(1, len(path) + 1))
            ends_session = first + len(path) == len(seq)
        else:
            if spec.end not in names:
                continue
            last = len(names) - 1 - names[::-1].index(spec.end)
            path = seq[max(0, last - spec.steps + 1):last + 1]
            steps = list(range(1 - len(path), 1))
            ends_session = False
        for i, ((node, ts), step) in enumerate(zip(path, steps, strict=True)):
            if i + 1 < len(path):
                nxt = path[i + 1][0]
            else:
                nxt = "(exit)" if ends_session else ""
            cell = out[(step, node, nxt)]
            cell[0] += 1
            cell[1] += int(last_conversion is not None and last_conversion > ts)
    return {k: (v[0], v[1]) for k, v in out.items()}


def pages(events: list[Event], date_from: date, date_to: date,
          as_of: datetime) -> dict[str, dict[str, Any]]:
    """page → views, sessions, people, entrances, exits, mean/median seconds on page."""
    as_of_ms = int(as_of.timestamp() * 1000)
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and e.session_id \
                and e.type in ("page", "screen"):
            sessions[e.session_id].append(e)
    acc: dict[str, dict[str, Any]] = {}
    for evs in sessions.values():
        evs.sort(key=lambda e: e.order_key)
        for i, e in enumerate(evs):
            slot = acc.setdefault(e.page, {"views": 0, "sessions": set(), "people": set(),
                                           "entrances": 0, "exits": 0, "times": []})
            slot["views"] += 1
            slot["sessions"].add(e.session_id)
            slot["people"].add(e.person_id)
            slot["entrances"] += int(i == 0)
            slot["exits"] += int(i == len(evs) - 1)
            if i + 1 < len(evs):
                slot["times"].append((evs[i + 1].ts - e.ts) / 1000)
    return {page: {"views": s["views"], "sessions": len(s["sessions"]),
                   "people": len(s["people"]), "entrances": s["entrances"],
                   "exits": s["exits"],
                   "mean_s_on_page": statistics.fmean(s["times"]) if s["times"] else None,
                   "median_s_on_page": statistics.median(s["times"]) if s["times"] else None}
            for page, s in acc.items()}


# -- correlation ----------------------------------------------------------------------
def funnel_outcomes(events: list[Event], spec: FunnelSpec, date_from: date, date_to: date,
                    as_of: datetime) -> list[tuple[bool, set[str], str]]:
    """Each decided person: (converted, event names done in their attempt span except the
    funnel's steps, value of `spec.breakdown` on their step-1 event)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    steps = {s.event for s in spec.steps}
    out = []
    for evs in _by_person([e for e in events if e.ts <= as_of_ms and e.day >= date_from]).values():
        attempt = _walk(evs, spec, date_from, date_to)
        if attempt is None or attempt.excluded:
            continue
        converted = attempt.times[-1] > 0
        if not converted and attempt.started + spec.window_ms >= as_of_ms:
            continue   # still inside the window: not decided
        end = attempt.times[-1] if converted else attempt.started + spec.window_ms
        names = {e.event for e in evs if attempt.started <= e.ts <= end and e.event not in steps}
        out.append((converted, names, attempt.value))
    return out


def retention_outcomes(events: list[Event], spec: RetentionSpec, k: int, date_from: date,
                       date_to: date, as_of: datetime, tz: str
                       ) -> list[tuple[bool, set[str], str]]:
    """Each first-time cohort member whose period k had begun at as_of: (retained, event
    names done in the cohort period, breakdown value on the cohort event)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    unit = spec.period
    now = _period_start(unit, datetime.fromtimestamp(as_of_ms / 1000, ZoneInfo(tz)).date())
    cohort_spec = spec.cohort_event()
    out = []
    for evs in _by_person([e for e in events if e.ts <= as_of_ms]).values():
        entry = next((e for e in evs if matches(e, cohort_spec)), None)
        if entry is None or not date_from <= entry.day <= date_to:
            continue
        start = _period_start(unit, entry.day)
        if _periods_between(unit, start, now) < k:
            continue
        offsets = {_periods_between(unit, start, _period_start(unit, e.day)) for e in evs
                   if spec.return_event is None or matches(e, spec.return_event)}
        retained = k in offsets if spec.mode == "on" else max(offsets, default=-1) >= k
        names = {e.event for e in evs if _period_start(unit, e.day) == start}
        value = prop_value(entry, spec.breakdown) if spec.breakdown else ""
        out.append((retained, names, value))
    return out


def correlation_counts(outcomes: list[tuple[bool, set[str], str]], by_value: bool = False
                       ) -> tuple[dict[str, tuple[int, int]], int, int]:
    """name (event, or entry value) → (success with it, failure with it); and the totals."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for success, names, value in outcomes:
        for name in ([value] if by_value else names):
            counts[name][0 if success else 1] += 1
    successes = sum(1 for o in outcomes if o[0])
    return ({k: (v[0], v[1]) for k, v in counts.items()}, successes, len(outcomes) - successes)


# -- the people behind one figure (segments from any analysis result) -----------------
def trend_people(events: list[Event], series: Any, interval: str, breakdown: str | None,
                 bucket: str, value: str | None, date_from: date, date_to: date,
                 as_of: datetime, tz: str) -> set[str]:
    """Counted maths: people with a matching event in the bucket (carrying `value` of the
    breakdown); for sum/avg/min/max an event whose property is a number."""
    as_of_ms = int(as_of.timestamp() * 1000)
    out = set()
    for e in events:
        if not (date_from <= e.day <= date_to and e.ts <= as_of_ms
                and matches(e, series.event) and _bucket(interval, e, tz) == bucket):
            continue
        if value is not None and prop_value(e, breakdown or "") != value:
            continue
        if series.math in ("sum", "avg", "min", "max") \
                and _number(prop_value(e, series.property)) is None:
            continue
        out.add(e.person_id)
    return out


def active_people_of(events: list[Event], event_spec: EventSpec, days: int, on_day: date,
                     as_of: datetime, where: tuple[str, str] | None = None) -> set[str]:
    """The people `active_people` counts."""
    as_of_ms = int(as_of.timestamp() * 1000)
    first = date.fromordinal(on_day.toordinal() - days + 1)
    return {e.person_id for e in events
            if first <= e.day <= on_day and e.ts <= as_of_ms and matches(e, event_spec)
            and (where is None or prop_value(e, where[0]) == where[1])}


def stickiness_people(events: list[Event], event_spec: EventSpec, period: str,
                      start: date, k: int, at_least: bool, date_from: date, date_to: date,
                      as_of: datetime) -> set[str]:
    """People active on exactly (or at least) k days of the period starting on `start`."""
    as_of_ms = int(as_of.timestamp() * 1000)
    days: dict[str, set[date]] = defaultdict(set)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and matches(e, event_spec) \
                and _period_start(period, e.day) == start:
            days[e.person_id].add(e.day)
    return {p for p, d in days.items() if (len(d) >= k if at_least else len(d) == k)}


def page_people(events: list[Event], page: str, kind: str, date_from: date, date_to: date,
                as_of: datetime) -> set[str]:
    """kind viewed / entered (a session's first view) / exited (its last view)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    sessions: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if date_from <= e.day <= date_to and e.ts <= as_of_ms and e.session_id \
                and e.type in ("page", "screen"):
            sessions[e.session_id].append(e)
    out = set()
    for evs in sessions.values():
        evs.sort(key=lambda e: e.order_key)
        picked = {"viewed": evs, "entered": evs[:1], "exited": evs[-1:]}[kind]
        out |= {e.person_id for e in picked if e.page == page}
    return out


def funnel_outcome_people(events: list[Event], spec: FunnelSpec, date_from: date,
                          date_to: date, as_of: datetime) -> dict[str, tuple[bool, set[str], str]]:
    """funnel_outcomes by person: person → (converted, event names in the span, value)."""
    as_of_ms = int(as_of.timestamp() * 1000)
    steps = {s.event for s in spec.steps}
    out = {}
    for person, evs in _by_person([e for e in events
                                   if e.ts <= as_of_ms and e.day >= date_from]).items():
        attempt = _walk(evs, spec, date_from, date_to)
        if attempt is None or attempt.excluded:
            continue
        converted = attempt.times[-1] > 0
        if not converted and attempt.started + spec.window_ms >= as_of_ms:
            continue
        end = attempt.times[-1] if converted else attempt.started + spec.window_ms
        names = {e.event for e in evs if attempt.started <= e.ts <= end and e.event not in steps}
        out[person] = (converted, names, attempt.value)
    return out


def retention_outcome_people(events: list[Event], spec: RetentionSpec, k: int, date_from: date,
                             date_to: date, as_of: datetime, tz: str
                             ) -> dict[str, tuple[bool, set[str], str]]:
    """retention_outcomes by person."""
    as_of_ms = int(as_of.timestamp() * 1000)
    unit = spec.period
    now = _period_start(unit, datetime.fromtimestamp(as_of_ms / 1000, ZoneInfo(tz)).date())
    out = {}
    for person, evs in _by_person([e for e in events if e.ts <= as_of_ms]).items():
        entry = next((e for e in evs if matches(e, spec.cohort_event())), None)
        if entry is None or not date_from <= entry.day <= date_to:
            continue
        start = _period_start(unit, entry.day)
        if _periods_between(unit, start, now) < k:
            continue
        offsets = {_periods_between(unit, start, _period_start(unit, e.day)) for e in evs
                   if spec.return_event is None or matches(e, spec.return_event)}
        retained = k in offsets if spec.mode == "on" else max(offsets, default=-1) >= k
        names = {e.event for e in evs if _period_start(unit, e.day) == start}
        out[person] = (retained, names, prop_value(entry, spec.breakdown)
                       if spec.breakdown else "")
    return out


# -- purchase counts ------------------------------------------------------------------
def _next_period(unit: str, start: date) -> date:
    if unit == "day":
        return date.fromordinal(start.toordinal() + 1)
    if unit == "week":
        return date.fromordinal(start.toordinal() + 7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def purchase_group(count: int, groups: list[int]) -> str:
    """[1, 3, 5]: 0 → "<1", 1-2 → "1-2", 3-4 → "3-4", 5 and more → "5+"."""
    if count < groups[0]:
        return f"<{groups[0]}"
    for low, high in zip(groups, groups[1:], strict=False):
        if low <= count < high:
            return str(low) if high == low + 1 else f"{low}-{high - 1}"
    return f"{groups[-1]}+"


def purchase_counts(events: list[Event], last_day: date, as_of: datetime) -> dict[str, int]:
    """Everyone with an event on a reporting day up to last_day (at or before as_of) → how
    many purchase events they had by then."""
    as_of_ms = int(as_of.timestamp() * 1000)
    counts: dict[str, int] = {}
    for e in events:
        if e.day <= last_day and e.ts <= as_of_ms:
            counts[e.person_id] = counts.get(e.person_id, 0) + int(e.event == "purchase")
    return counts


def retention_by_purchases(events: list[Event], spec: RetentionSpec, groups: list[int],
                           fixed_day: date | None, date_from: date, date_to: date,
                           as_of: datetime,
                           members: dict[str, tuple[str, str, list[bool]]] | None = None
                           ) -> dict[tuple[str, str], tuple[int, list[int]]]:
    """(cohort period, purchase group) → (size, count per period). First-time cohorts (the
    Nth cohort event ever, its day in the range) or recurring ones (every period with a
    cohort event on a day in the range); the group counted from the person's purchases
    before that cohort's next period (or on days up to fixed_day), at or before as_of.
    `members`, if given, gets person → (cohort period, group, returned per period) of
    their (last) cohort."""
    as_of_ms = int(as_of.timestamp() * 1000)
    unit = spec.period
    cells: dict[tuple[str, str], tuple[int, list[int]]] = {}
    for person, evs in _by_person([e for e in events if e.ts <= as_of_ms]).items():
        entries = [e for e in evs if matches(e, spec.cohort_event())]
        if spec.cohort_type == "first_time":
            entries = entries[spec.nth - 1:spec.nth]
        starts = sorted({_period_start(unit, e.day) for e in entries
                         if date_from <= e.day <= date_to})
        for start in starts:
            cut = _next_period(unit, start)
            bought = sum(1 for e in evs if e.event == "purchase"
                         and (e.day <= fixed_day if fixed_day else e.day < cut))
            returns = {_periods_between(unit, start, _period_start(unit, e.day)) for e in evs
                       if spec.return_event is None or matches(e, spec.return_event)}
            if spec.mode == "on":
                returned = [k in returns for k in range(spec.periods + 1)]
            else:
                returned = [max(returns, default=-1) >= k for k in range(spec.periods + 1)]
            key = (start.isoformat(), purchase_group(bought, groups))
            if members is not None:
                members[person] = (key[0], key[1], returned)
            size, counts = cells.get(key, (0, [0] * (spec.periods + 1)))
            cells[key] = (size + 1, [c + int(r) for c, r in zip(counts, returned, strict=True)])
    return cells
