"""Cohorts by purchase count: people grouped by how many purchases they had made by a day.

Semantics (the same in tests/support/analyses_reference.py):

* A purchase is a `purchase` event of behavior_events (one per order; its order lines are
  one event, and a resent copy of the same message is counted once).
* Groups are given as ascending counts, e.g. [1, 2, 3]: "1", "2", "3+" — each group runs
  up to the next one's count minus one ([1, 3, 5]: "1-2", "3-4", "5+"), the last is open;
  a count below the first group is "<FIRST" ("<1": no purchase).
* As-of (the purchases counted): those on reporting days up to and including `date_to`
  (default: the last day with data), at or before `as_of` (default now). History before
  any date_from counts: this is the count since the first event.
* The people grouped: everyone with any event on a reporting day up to date_to, at or
  before as_of (so "<1" is the people seen who never bought).
* As a retention breakdown (`"breakdown": "purchase_count"`), the as-of is by default
  the end of each member's cohort period (`"purchases_as_of": "cohort_end"`: purchases on
  reporting days before the cohort's next period starts, period 0 included), or a fixed
  day (`"purchases_as_of": "YYYY-MM-DD"`) — see retention.py.
"""

from __future__ import annotations

import re
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
    parse_date,
    parse_moment,
    pct,
    spec_errors,
    table_columns,
    utc_text,
)
from funnelhouse.warehouse.base import Warehouse

PURCHASE = EventSpec("purchase")
DEFAULT_GROUPS = (1, 2, 3)
MAX_GROUPS = 20
BREAKDOWN = "purchase_count"     # the retention breakdown that groups by purchases made
WHO = re.compile(r"^(?:(exactly|at_least):(\d+)|(<?\d+(?:-\d+|\+)?))$")
PURCHASES_KEYS = ("groups", "date_to", "as_of")


def parse_groups(value: Any) -> tuple[int, ...]:
    """[1, 2, 3] or "1,2,3" → (1, 2, 3): distinct, ascending, 0..100000."""
    if value is None or value == "" or value == []:
        return DEFAULT_GROUPS
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise SpecError("purchase groups are a list of counts, e.g. [1, 2, 3]")
    try:
        groups = sorted({int(str(g).strip().rstrip("+")) for g in items})
    except ValueError as exc:
        raise SpecError("purchase groups are whole numbers, e.g. [1, 2, 3]") from exc
    if not groups or len(groups) > MAX_GROUPS or groups[0] < 0 or groups[-1] > 100_000:
        raise SpecError(f"1..{MAX_GROUPS} purchase groups between 0 and 100000")
    return tuple(groups)


def labels(groups: tuple[int, ...]) -> list[str]:
    """The label of each group: "2", "3-4", "5+"."""
    out = []
    for i, g in enumerate(groups):
        if i == len(groups) - 1:
            out.append(f"{g}+")
        elif groups[i + 1] == g + 1:
            out.append(str(g))
        else:
            out.append(f"{g}-{groups[i + 1] - 1}")
    return out


def below(groups: tuple[int, ...]) -> str | None:
    return f"<{groups[0]}" if groups[0] > 0 else None


def label_of(count: int, groups: tuple[int, ...]) -> str:
    """The group label of a count (the plain-Python twin of label_sql)."""
    inside = [i for i, g in enumerate(groups) if g <= count]
    return labels(groups)[inside[-1]] if inside else f"<{groups[0]}"


def label_sql(count: str, groups: tuple[int, ...], params: SqlParams) -> str:
    """SQL of the group label of the count expression `count`."""
    p_groups = params.add("purchase_groups", "Array(UInt32)",
                          "[" + ",".join(str(g) for g in groups) + "]")
    p_labels = params.add("purchase_labels", "Array(String)",
                          "[" + ",".join(f"'{x}'" for x in labels(groups)) + "]")
    p_below = params.add("purchase_below", "String", f"<{groups[0]}")
    return (f"if({count} < {p_groups}[1], {p_below}, "
            f"{p_labels}[arrayCount(g -> g <= {count}, {p_groups})])")


@dataclass(frozen=True)
class PurchasesSpec:
    groups: tuple[int, ...] = DEFAULT_GROUPS
    date_to: date | None = None        # purchases on reporting days up to this one
    as_of: datetime | None = None

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PurchasesSpec:
        if not isinstance(doc, dict):
            raise SpecError("the purchases spec must be a JSON object")
        check_keys(doc, PURCHASES_KEYS, "purchases spec")
        with spec_errors():
            return cls(groups=parse_groups(doc.get("groups")),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def to_json(self) -> dict[str, Any]:
        return {"groups": list(self.groups),
                "date_to": self.date_to.isoformat() if self.date_to else None,
                "as_of": utc_text(self.as_of) if self.as_of else None}


def build_query(spec: PurchasesSpec, columns: dict[str, str], as_of: datetime,
                date_to: date) -> Query:
    params = SqlParams()
    props = Properties(columns, params)
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    header = ("-- People by how many purchases they had made by the end of date_to "
              "(at or before as_of).")
    people = Cte("people", f"""\
    -- everyone seen by then, with their purchases (one event per order)
    SELECT
        person_id,
        countIf({props.condition(PURCHASE, 'purchase')}) AS purchases,
        {label_sql('purchases', spec.groups, params)} AS purchase_group
    FROM {EVENTS_TABLE}
    WHERE event_date <= {p_to}
      AND event_at <= {p_as_of}
    GROUP BY person_id""")
    final = """\
SELECT purchase_group, count() AS people, sum(purchases) AS purchases
FROM people
GROUP BY purchase_group"""
    return Query(header, (people,), final, params)


def run_purchases(warehouse: Warehouse, spec: PurchasesSpec, reporting_tz: str = "UTC"
                  ) -> AnalysisResult:
    _, date_to, as_of = analysis_window(warehouse, None, spec.date_to, spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_to)
    rows = {r["purchase_group"]: r
            for r in warehouse.query(query.sql(), query.params.for_query()).dicts()}
    order = ([b] if (b := below(spec.groups)) else []) + labels(spec.groups)
    everyone = sum(int(r["people"]) for r in rows.values())
    groups: list[dict[str, Any]] = []
    for g in order:
        people = int(rows[g]["people"]) if g in rows else 0
        groups.append({"group": g, "people": people, "pct": pct(people, everyone),
                       "purchases": int(rows[g]["purchases"]) if g in rows else 0})
    columns = ["group", "people", "pct", "purchases"]
    summary = {"people": everyone, "date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    notes = [f"purchases on reporting days up to {date_to} in {reporting_tz}, at or before "
             "as_of, since the first event; people = everyone seen by then"]
    spec_doc = spec.to_json() | {"date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    return AnalysisResult("purchases", spec_doc, query.sql(), dict(query.params.values),
                          columns, [[g[c] for c in columns] for g in groups], summary, notes,
                          {"groups": groups})


def purchases_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str,
                         tz: str = "UTC") -> tuple[str, dict[str, Any]]:
    """who: a group label ("3+", "1", "<1", "3-4"), exactly:N or at_least:N."""
    spec = PurchasesSpec.from_json(doc)
    match = WHO.match(who)
    if not match:
        raise SpecError('who must be a group ("3+", "1", "<1"), exactly:N or at_least:N')
    _, date_to, as_of = analysis_window(warehouse, None, spec.date_to, spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_to)
    if match.group(1):
        p_n = query.params.add("who_count", "UInt32", int(match.group(2)))
        condition = f"purchases {'=' if match.group(1) == 'exactly' else '>='} {p_n}"
    else:
        known = ([b] if (b := below(spec.groups)) else []) + labels(spec.groups)
        if who not in known:
            raise SpecError(f"group {who!r} is not one of {', '.join(known)}")
        condition = f"purchase_group = {query.params.add('who_group', 'String', who)}"
    people = query.select(f"SELECT person_id FROM people WHERE {condition}")
    return people.sql(), people.params.for_query()
