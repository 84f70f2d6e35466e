"""Trends: how much of something happened per hour, day, week or month.

Semantics (the same in tests/support/analyses_reference.py):

* A series is an event (with filters, `*` for any) and what to count of it:
  `total` events, unique `people`, unique `sessions`, `sum` / `avg` / `min` / `max` of a
  numeric property (events where it is not a number are left out of avg/min/max and add 0
  to a sum), or active people — `dau`, `wau`, `mau`: people who did the event on any of
  the 1 / 7 / 30 reporting days ending on the bucket's last day (cut at the range end and
  at as_of).
* Buckets are calendar periods of the reporting time zone: hours, days, weeks from Monday,
  months from the 1st, over the reporting days [date_from, date_to]. Events after as_of
  are ignored; a bucket that ends after as_of (or after date_to's end) is `incomplete`.
* Breakdown: the property's value on each event (a person may count under several
  values); the 10 values with the most of the first series are shown, the rest summed into
  `(other)` for totals and sums (unique counts of `(other)` are counted, not summed).
* compare: the same series over the previous range of as many days, bucket by bucket.
* formula: arithmetic over the series by letter (`B / A * 100`); division by zero is empty.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses.common import (
    EVENTS_TABLE,
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
    split_unquoted,
    table_columns,
    utc_text,
)
from funnelhouse.models.built import existing_tables
from funnelhouse.warehouse.base import Warehouse

INTERVALS = ("hour", "day", "week", "month")
COUNTS = ("total", "people", "sessions")
PROPERTY_MATHS = ("sum", "avg", "min", "max")
ACTIVE = {"dau": 1, "wau": 7, "mau": 30}
MATHS = (*COUNTS, *PROPERTY_MATHS, *ACTIVE)
MAX_SERIES = 10
MAX_BUCKETS = 2000
TOP_VALUES = 10
OTHER = "(other)"
LETTERS = "ABCDEFGHIJ"
TRENDS_KEYS = ("series", "events", "interval", "breakdown", "compare", "formula",
               "date_from", "date_to", "as_of")


@dataclass(frozen=True)
class Series:
    event: EventSpec
    math: str = "total"
    property: str | None = None       # for sum/avg/min/max
    label: str = ""

    def __post_init__(self) -> None:
        if self.math not in MATHS:
            raise SpecError(f"math must be one of {', '.join(MATHS)}")
        if self.math in PROPERTY_MATHS and not self.property:
            raise SpecError(f"math {self.math} needs a property")

    @classmethod
    def from_json(cls, doc: Any) -> Series:
        """`"purchase"`, `"purchase:coupon=X|sum:revenue"` or {event, math, property, label}."""
        if isinstance(doc, str):
            event, math = split_unquoted(doc, "|")   # a quoted value may hold a "|"
            math_name, _, prop = math.partition(":")
            doc = {"event": event, "math": math_name or "total", "property": prop or None}
        if not isinstance(doc, dict) or "event" not in doc:
            raise SpecError(f"series {doc!r} must be \"EVENT[:FILTERS][|MATH[:PROP]]\" or "
                            "{event, math, property}")
        check_keys(doc, ("event", "math", "property", "label"), "series")
        event_spec = EventSpec.from_json(doc["event"])
        math_name = str(doc.get("math") or "total")
        prop_name = str(doc["property"]) if doc.get("property") else None
        label = str(doc.get("label") or "") or (
            event_spec.text() + ("" if math_name == "total" else f" · {math_name}")
            + (f"({prop_name})" if prop_name else ""))
        return cls(event_spec, math_name, prop_name, label)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event.text(), "math": self.math, "property": self.property,
                "label": self.label}


@dataclass(frozen=True)
class TrendsSpec:
    series: tuple[Series, ...]
    interval: str = "day"
    breakdown: str | None = None
    compare: bool = False
    formula: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    as_of: datetime | None = None
    _formula: Callable[[list[float | None]], float | None] | None = field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.series:
            raise SpecError("a trend needs at least one series")
        if len(self.series) > MAX_SERIES:
            raise SpecError(f"at most {MAX_SERIES} series")
        if self.interval not in INTERVALS:
            raise SpecError(f"interval must be one of {', '.join(INTERVALS)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")
        if self.formula:
            object.__setattr__(self, "_formula", compile_formula(self.formula,
                                                                 len(self.series)))

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrendsSpec:
        if not isinstance(doc, dict):
            raise SpecError("the trends spec must be a JSON object")
        check_keys(doc, TRENDS_KEYS, "trends spec")
        with spec_errors():
            series = doc.get("series") or doc.get("events")
            if isinstance(series, str | dict):
                series = [series]
            if not isinstance(series, list):
                raise SpecError("series must be a list")
            return cls(series=tuple(Series.from_json(s) for s in series),
                       interval=doc.get("interval", "day"),
                       breakdown=doc.get("breakdown") or None,
                       compare=bool(doc.get("compare", False)),
                       formula=doc.get("formula") or None,
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def evaluate(self, values: list[float | None]) -> float | None:
        return self._formula(values) if self._formula else None

    def to_json(self) -> dict[str, Any]:
        return {"series": [s.to_json() for s in self.series], "interval": self.interval,
                "breakdown": self.breakdown, "compare": self.compare, "formula": self.formula,
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}


# -- formulas: parsed to a tree of + - * / over numbers and series letters, never eval'd --
_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv}


def compile_formula(text: str, series: int) -> Callable[[list[float | None]], float | None]:
    if len(text) > 200:
        raise SpecError("formula is longer than 200 characters")
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise SpecError(f"formula {text!r} is not arithmetic over series letters") from exc
    letters = LETTERS[:series]

    def build(node: ast.AST) -> Callable[[list[float | None]], float | None]:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
                and not isinstance(node.value, bool):
            number = float(node.value)
            return lambda values: number
        if isinstance(node, ast.Name) and node.id in letters:
            index = letters.index(node.id)
            return lambda values: values[index]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = build(node.operand)
            return lambda values: None if (v := inner(values)) is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right, apply = build(node.left), build(node.right), _BINARY[type(node.op)]

            def binary(values: list[float | None]) -> float | None:
                a, b = left(values), right(values)
                if a is None or b is None or (apply is operator.truediv and b == 0):
                    return None
                return apply(a, b)
            return binary
        raise SpecError(f"formula {text!r}: only numbers, + - * / ( ) and the letters "
                        f"{', '.join(letters)} of the series")

    return build(tree)


# -- buckets ---------------------------------------------------------------------------
def bucket_start(interval: str, day: date) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def buckets(interval: str, date_from: date, date_to: date) -> list[str]:
    """Every bucket of the range, as the text ClickHouse gives it (empty ones included)."""
    if interval == "hour":
        hours = ((date_to - date_from).days + 1) * 24
        if hours > MAX_BUCKETS:
            raise SpecError(f"{hours} hourly buckets; at most {MAX_BUCKETS}")
        start = datetime(date_from.year, date_from.month, date_from.day)
        return [(start + timedelta(hours=h)).strftime("%Y-%m-%d %H:00:00")
                for h in range(hours)]
    out: list[str] = []
    day = bucket_start(interval, date_from)
    while day <= date_to:
        out.append(day.isoformat())
        if interval == "day":
            day += timedelta(days=1)
        elif interval == "week":
            day += timedelta(days=7)
        else:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        if len(out) > MAX_BUCKETS:
            raise SpecError(f"more than {MAX_BUCKETS} buckets")
    return out


def bucket_end(interval: str, start: str, tz: str) -> datetime:
    """The moment a bucket ends (exclusive), in the reporting time zone."""
    zone = ZoneInfo(tz)
    if interval == "hour":
        return datetime.fromisoformat(start).replace(tzinfo=zone) + timedelta(hours=1)
    day = date.fromisoformat(start)
    if interval == "day":
        end = day + timedelta(days=1)
    elif interval == "week":
        end = day + timedelta(days=7)
    else:
        end = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime(end.year, end.month, end.day, tzinfo=zone)


def last_day(interval: str, start: str, date_to: date, as_of_day: date) -> date:
    """The day an active-people count is read at: the bucket's last day, cut at the range
    end and at as_of."""
    if interval == "hour":
        return date.fromisoformat(start[:10])
    end = (bucket_end(interval, start, "UTC").date() - timedelta(days=1))
    return min(end, date_to, as_of_day)


# -- SQL -------------------------------------------------------------------------------
def _bucket_expr(interval: str, p_tz: str) -> str:
    return {"hour": f"toString(toStartOfHour(toTimeZone(event_at, {p_tz})))",
            "day": "toString(event_date)",
            "week": "toString(toMonday(event_date))",
            "month": "toString(toStartOfMonth(event_date))"}[interval]


def _value_expr(series: Series, index: int) -> str:
    hit = f"hit_{index}"
    if series.math == "total":
        return f"countIf({hit})"
    if series.math == "people":
        return f"uniqExactIf(person_id, {hit})"
    if series.math == "sessions":
        return f"uniqExactIf(session_id, {hit} AND session_id != '')"
    number = f"number_{index}"
    if series.math == "sum":
        return f"sumIf(ifNull({number}, 0), {hit})"
    # avg/min/max over the events where the property is a number
    return f"{series.math}If({number}, {hit} AND isNotNull({number}))"


def build_query(spec: TrendsSpec, columns: dict[str, str], as_of: datetime, date_from: date,
                date_to: date, tz: str) -> Query:
    """Counted series: one pass over the range, grouped by bucket (and breakdown value)."""
    params = SqlParams()
    props = Properties(columns, params)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_tz = params.add("tz", "String", tz)
    counted = [(i, s) for i, s in enumerate(spec.series) if s.math not in ACTIVE]
    hits = ",\n".join(f"        toUInt8({props.condition(s.event, f's{i}')}) AS hit_{i}"
                      for i, s in counted)
    numbers = "".join(
        f",\n        {props.number(s.property or '')} AS number_{i}"
        for i, s in counted if s.math in PROPERTY_MATHS)
    breakdown = props.expr(spec.breakdown) if spec.breakdown else "''"
    header = (f"-- Trends: {len(spec.series)} series per {spec.interval}"
              + (f", broken down by {comment(spec.breakdown)}" if spec.breakdown else "")
              + ".\n-- Buckets are calendar periods of the reporting time zone (event_date);"
              " weeks start on Monday.")
    events = Cte("events", f"""\
    SELECT
        person_id,
        session_id,
        {_bucket_expr(spec.interval, p_tz)} AS bucket,
        {breakdown} AS breakdown_value,
{hits}{numbers}
    FROM {EVENTS_TABLE}
    WHERE event_date BETWEEN {p_from} AND {p_to}
      AND event_at <= {p_as_of}""")
    values = ",\n    ".join(f"{_value_expr(s, i)} AS value_{i}" for i, s in counted)
    grouping = ("GROUP BY GROUPING SETS ((bucket, breakdown_value), (bucket))"
                if spec.breakdown else "GROUP BY bucket")
    is_total = "grouping(breakdown_value)" if spec.breakdown else "1"
    any_hit = " OR ".join(f"hit_{i}" for i, _ in counted) or "0"
    final = f"""\
SELECT
    {is_total} AS is_total,
    bucket,
    {"breakdown_value" if spec.breakdown else "''"} AS breakdown,
    {values}
FROM events
WHERE {any_hit}
{grouping}
ORDER BY bucket, is_total DESC, breakdown"""
    return Query(header, (events,), final, params)


def build_active_query(event: EventSpec, windows: list[int], index: int,
                       columns: dict[str, str], as_of: datetime, date_from: date, date_to: date,
                       breakdown: str | None, sessions_built: bool = False) -> Query:
    """People active in the N days ending on each day, as day-by-day changes.

    A person with active days a1 < a2 < … is counted on the days of the disjoint runs
    [a_i, min(a_i + N - 1, a_(i+1) - 1)]; each run adds 1 on its first day and takes it
    off the day after its last. Summed up day by day (in Python, over the few rows this
    returns) that is the count of people active in the N days ending on each day — with
    no row per (person, covered day), which at 30 days per active day was 6.5 s at 10M.
    Every window (DAU, WAU, MAU of one event) comes from the same read of the events."""
    params = SqlParams()
    props = Properties(columns, params)
    longest = max(windows)
    p_first = params.add("first_day", "Date",
                         (date_from - timedelta(days=longest - 1)).isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    window_list = "[" + ", ".join(f"toUInt16({int(n)})" for n in windows) + "]"  # constants
    cond = props.condition(event, f"s{index}")
    # Each event counts for everyone (1, '') and, with a breakdown, for its value (0, v).
    keys = (f"[(1, ''), (0, {props.expr(breakdown)})]" if breakdown else "[(1, '')]")
    header = (f"-- Active people in the {', '.join(map(str, windows))} day(s) ending on each "
              f"day who did {comment(event.text())}, as changes per day.")
    source = active_days_source(cond, bool(breakdown), sessions_built)
    active = Cte("active_days", f"""\
    -- each person's active days, for everyone and per breakdown value
    SELECT person_id, key.1 AS is_total, key.2 AS breakdown,
           arraySort(groupUniqArray({source.day})) AS days
    FROM {source.table}
    ARRAY JOIN {keys} AS key
    WHERE {source.day} BETWEEN {p_first} AND {p_to}
      AND {source.at} <= {p_as_of}
      AND {cond}
    GROUP BY person_id, is_total, breakdown""")
    runs = Cte("runs", f"""\
    -- the days each active day keeps the person counted, up to their next active day
    SELECT window_days, is_total, breakdown, days[k] AS first,
           least(days[k] + window_days - 1,
                 if(k < length(days), days[k + 1] - 1, days[k] + window_days - 1)) AS last
    FROM active_days
    ARRAY JOIN arrayEnumerate(days) AS k
    ARRAY JOIN {window_list} AS window_days""")
    final = """\
SELECT window_days, is_total, breakdown, toString(edge.1) AS day, sum(edge.2) AS change
FROM runs
ARRAY JOIN [(first, 1), (last + 1, -1)] AS edge
GROUP BY window_days, is_total, breakdown, day
ORDER BY window_days, is_total DESC, breakdown, day"""
    return Query(header, (active, runs), final, params)


def active_counts(rows: list[dict[str, Any]], first_day: date, date_to: date
                  ) -> dict[tuple[str, str | None], int]:
    """(day, breakdown value or None for everyone) → people, from the day-by-day changes."""
    changes: dict[str | None, dict[str, int]] = {}
    for row in rows:
        label = None if row["is_total"] else row["breakdown"]
        changes.setdefault(label, {})[row["day"]] = int(row["change"])
    out: dict[tuple[str, str | None], int] = {}
    for label, by_day in changes.items():
        running, day = 0, first_day
        while day <= date_to:
            text = day.isoformat()
            running += by_day.get(text, 0)
            out[(text, label)] = running
            day += timedelta(days=1)
    return out


# -- running and shaping ---------------------------------------------------------------
@dataclass
class _Table:
    """value[(bucket, breakdown or None for all)][series index]"""

    cells: dict[tuple[str, str | None], dict[int, float]] = field(default_factory=dict)
    sql: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def put(self, bucket: str, breakdown: str | None, index: int, value: Any) -> None:
        if value is None:
            return
        self.cells.setdefault((bucket, breakdown), {})[index] = float(value)


def _query_range(warehouse: Warehouse, spec: TrendsSpec, columns: dict[str, str],
                 as_of: datetime, date_from: date, date_to: date, tz: str) -> _Table:
    table = _Table()
    as_of_day = as_of.astimezone(ZoneInfo(tz)).date()
    if any(s.math not in ACTIVE for s in spec.series):
        query = build_query(spec, columns, as_of, date_from, date_to, tz)
        table.sql.append(query.sql())
        table.params.update(query.params.values)
        counted = [i for i, s in enumerate(spec.series) if s.math not in ACTIVE]
        for row in warehouse.query(query.sql(), query.params.for_query()).dicts():
            label = None if row["is_total"] else row["breakdown"]
            for i in counted:
                table.put(row["bucket"], label, i, row[f"value_{i}"])
    all_buckets = buckets(spec.interval, date_from, date_to)
    # Active series of the same event share one query (one read for DAU, WAU and MAU).
    groups: dict[str, list[int]] = {}
    for index, series in enumerate(spec.series):
        if series.math in ACTIVE:
            groups.setdefault(series.event.text(), []).append(index)
    sessions_built = bool(groups) and "sessions" in existing_tables(warehouse)
    for indexes in groups.values():
        event = spec.series[indexes[0]].event
        windows = sorted({ACTIVE[spec.series[i].math] for i in indexes})
        query = build_active_query(event, windows, indexes[0], columns, as_of, date_from,
                                   date_to, spec.breakdown, sessions_built)
        table.sql.append(query.sql())
        table.params.update(query.params.values)
        rows = warehouse.query(query.sql(), query.params.for_query()).dicts()
        for index in indexes:
            n = ACTIVE[spec.series[index].math]
            # Summed from the first day read (the longest window's), not this window's.
            by_day = active_counts([r for r in rows if int(r["window_days"]) == n],
                                   date_from - timedelta(days=windows[-1] - 1), date_to)
            labels = {label for _, label in by_day}
            for bucket in all_buckets:
                read_at = last_day(spec.interval, bucket, date_to, as_of_day).isoformat()
                for label in labels | {None}:
                    table.put(bucket, label, index, by_day.get((read_at, label), 0))
    return table


def _top_values(table: _Table) -> list[str]:
    """The breakdown values with the most of the first series, ties by value."""
    totals: dict[str, float] = {}
    for (_, label), values in table.cells.items():
        if label is not None:
            totals[label] = totals.get(label, 0.0) + values.get(0, 0.0)
    ranked = sorted(totals, key=lambda v: (-totals[v], v))
    return ranked if len(ranked) <= TOP_VALUES + 1 else ranked[:TOP_VALUES]


def _lines(spec: TrendsSpec, table: _Table, bucket_list: list[str],
           shown: list[str] | None) -> list[dict[str, Any]]:
    """One line per series (and per shown breakdown value, plus `(other)`)."""
    labels: list[str | None] = [None, *(shown or [])]
    all_values = {label for _, label in table.cells if label is not None}
    hidden = sorted(all_values - set(shown or []))
    if shown is not None and hidden:
        labels.append(OTHER)
    lines = []
    for index, series in enumerate(spec.series):
        additive = series.math in ("total", "sum")
        for label in labels:
            values: list[float | None] = []
            for bucket in bucket_list:
                if label == OTHER:
                    parts = [table.cells.get((bucket, v), {}).get(index) for v in hidden]
                    known = [p for p in parts if p is not None]
                    values.append(sum(known) if additive else None)
                else:
                    got = table.cells.get((bucket, label), {}).get(index)
                    if series.math not in PROPERTY_MATHS:   # counts of people or events
                        values.append(int(got or 0))
                    else:
                        values.append(got if got is not None or series.math != "sum" else 0.0)
            lines.append({"series": index, "label": series.label, "breakdown": label,
                          "values": values})
    return lines


def run_trends(warehouse: Warehouse, spec: TrendsSpec, reporting_tz: str = "UTC"
               ) -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    columns = table_columns(warehouse)
    table = _query_range(warehouse, spec, columns, as_of, date_from, date_to, reporting_tz)
    bucket_list = buckets(spec.interval, date_from, date_to)
    shown = _top_values(table) if spec.breakdown else None
    lines = _lines(spec, table, bucket_list, shown)
    range_end = datetime(date_to.year, date_to.month, date_to.day,
                         tzinfo=ZoneInfo(reporting_tz)) + timedelta(days=1)
    incomplete = [bucket_end(spec.interval, b, reporting_tz) > min(as_of, range_end)
                  or (spec.interval != "hour" and date.fromisoformat(b) < date_from)
                  for b in bucket_list]
    previous: list[dict[str, Any]] = []
    sql, params = list(table.sql), dict(table.params)
    if spec.compare:
        span = (date_to - date_from).days + 1
        prev_from, prev_to = date_from - timedelta(days=span), date_from - timedelta(days=1)
        prev_table = _query_range(warehouse, spec, columns, as_of, prev_from, prev_to,
                                  reporting_tz)
        prev_buckets = buckets(spec.interval, prev_from, prev_to)
        previous = _lines(spec, prev_table, prev_buckets, shown)
        for line in previous:   # aligned bucket by bucket with the current range
            line["values"] = (line["values"] + [None] * len(bucket_list))[:len(bucket_list)]
            line["buckets"] = prev_buckets[:len(bucket_list)]
        sql.append("-- previous period: the same SQL with date_from "
                   f"{prev_from}, date_to {prev_to}")
    formula_values: list[float | None] = []
    if spec.formula:
        totals = [next(line for line in lines if line["series"] == i
                       and line["breakdown"] is None) for i in range(len(spec.series))]
        formula_values = [spec.evaluate([t["values"][k] for t in totals])
                          for k in range(len(bucket_list))]
    return _shape(spec, lines, previous, formula_values, bucket_list, incomplete,
                  "\n\n".join(sql), params, date_from, date_to, as_of, reporting_tz)


def _shape(spec: TrendsSpec, lines: list[dict[str, Any]], previous: list[dict[str, Any]],
           formula_values: list[float | None], bucket_list: list[str], incomplete: list[bool],
           sql: str, params: dict[str, Any], date_from: date, date_to: date, as_of: datetime,
           tz: str) -> AnalysisResult:
    shown_lines = lines
    names = [ln["label"] + ("" if not spec.breakdown else " [(all)]" if ln["breakdown"] is None
                            else f" [{ln['breakdown'] or '(none)'}]") for ln in shown_lines]
    columns = ["bucket", *names, *([spec.formula or ""] if formula_values else []),
               "incomplete"]
    rows = []
    for k, bucket in enumerate(bucket_list):
        rows.append([bucket, *[ln["values"][k] for ln in shown_lines],
                     *([formula_values[k]] if formula_values else []), incomplete[k]])
    totals = {}
    for ln in lines:
        if ln["breakdown"] is None and spec.series[ln["series"]].math in ("total", "sum"):
            totals[ln["label"]] = sum(v or 0 for v in ln["values"])
    summary: dict[str, Any] = {"buckets": len(bucket_list), "interval": spec.interval,
                               "as_of": utc_text(as_of), **totals}
    notes = [f"buckets are calendar {spec.interval}s in {tz}"
             + ("; weeks start on Monday" if spec.interval == "week" else ""),
             f"days {date_from} .. {date_to}; incomplete = the bucket ends after as_of or "
             "reaches outside the range"]
    if any(s.math in ACTIVE for s in spec.series):
        notes.append("dau/wau/mau: people active in the 1/7/30 days ending on the bucket's "
                     "last day (cut at the range end and at as_of)")
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(),
                                 "date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    return AnalysisResult("trends", spec_doc, sql, params, columns, rows, summary, notes, {
        "buckets": bucket_list, "incomplete": incomplete, "series": lines,
        "previous": previous, "formula": formula_values})
