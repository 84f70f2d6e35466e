"""User flows: the N steps people take after a start (or before an end), node by node.

Semantics (the same in tests/support/analyses_reference.py):

* Within a session (behavior_events.session_id, a session lies on one reporting day in
  [date_from, date_to]), nodes are in (event_at, message_id) order. A node is a view's
  page path or screen name (`nodes: views`, page_view/screen_view only) or an event name
  (`nodes: events`, every event).
* `collapse`: a node repeated back to back (a reload, three scrolls) counts once.
* `start`: the path begins at the session's first node equal to it; steps 1..N are that
  node and the N-1 after it. `end`: the path finishes at the session's last node equal to
  it; steps -(N-1)..0 are the N-1 before it and that node (fewer when the session
  starts later). Sessions without the node are not counted.
* At every (step, node): sessions there; `exits` = the path ends there because the
  session ends (start mode); `converted` = the session has a conversion event after that
  node. Edges count sessions going from a node at one step to a node at the next.
* The `top` nodes of each step by sessions are shown; others are grouped as `(other)`.
"""

from __future__ import annotations

from collections import defaultdict
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

NODE_KINDS = ("views", "events")
MAX_STEPS = 20
OTHER = "(other)"
EXIT = "(exit)"
# tie: what orders nodes of the same millisecond (common.tie_order).
_NODE = "Tuple(ts Int64, tie {tie}, node String)"
FLOWS_KEYS = ("start", "end", "steps", "nodes", "collapse", "conversion", "top",
              "date_from", "date_to", "as_of")


@dataclass(frozen=True)
class FlowsSpec:
    start: str | None = None
    end: str | None = None
    steps: int = 5
    nodes: str = "views"
    collapse: bool = True
    conversion: EventSpec = EventSpec("purchase")
    top: int = 10
    date_from: date | None = None
    date_to: date | None = None
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if bool(self.start) == bool(self.end):
            raise SpecError("a flow needs a start or an end node (one of them)")
        if not 2 <= self.steps <= MAX_STEPS:
            raise SpecError(f"steps must be between 2 and {MAX_STEPS}")
        if self.nodes not in NODE_KINDS:
            raise SpecError(f"nodes must be one of {', '.join(NODE_KINDS)}")
        if not 1 <= self.top <= 100:
            raise SpecError("top must be between 1 and 100")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise SpecError("date_from is after date_to")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FlowsSpec:
        if not isinstance(doc, dict):
            raise SpecError("the flows spec must be a JSON object")
        check_keys(doc, FLOWS_KEYS, "flows spec")
        with spec_errors():
            conversion = doc.get("conversion")
            return cls(start=doc.get("start") or None, end=doc.get("end") or None,
                       steps=int(doc.get("steps", 5)), nodes=doc.get("nodes", "views"),
                       collapse=bool(doc.get("collapse", True)),
                       conversion=EventSpec.from_json(conversion) if conversion
                       else EventSpec("purchase"),
                       top=int(doc.get("top", 10)),
                       date_from=parse_date(doc.get("date_from"), "date_from"),
                       date_to=parse_date(doc.get("date_to"), "date_to"),
                       as_of=parse_moment(doc.get("as_of")))

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps,
                "nodes": self.nodes, "collapse": self.collapse,
                "conversion": self.conversion.text(), "top": self.top,
                **days_json(self.date_from, self.date_to),
                "as_of": utc_text(self.as_of) if self.as_of else None}

    def step_numbers(self) -> list[int]:
        return list(range(1, self.steps + 1)) if self.start else \
            list(range(1 - self.steps, 1))


def build_query(spec: FlowsSpec, columns: dict[str, str], as_of: datetime,
                date_from: date, date_to: date) -> Query:
    """Named pieces: anchored_sessions (those holding the start or end node),
    session_events, sessions (node and time arrays, last conversion),
    paths (each session's slice), path_nodes (one row per session and step)."""
    params = SqlParams()
    props = Properties(columns, params)
    tie, tie_type = tie_order(columns)
    p_from = params.add("date_from", "Date", date_from.isoformat())
    p_to = params.add("date_to", "Date", date_to.isoformat())
    p_as_of = params.add("as_of", "DateTime64(3, 'UTC')", utc_text(as_of))
    p_node = params.add("anchor", "String", spec.start or spec.end or "")
    p_steps = params.add("steps", "UInt32", spec.steps)
    conversion = props.condition(spec.conversion, "conversion")
    node = ("if(type IN ('page', 'screen'), page_path, '')" if spec.nodes == "views"
            else "toString(event)")
    header = (f"-- Flows: {spec.steps} steps {'after' if spec.start else 'before'} "
              f"{comment(spec.start or spec.end or '')} ({spec.nodes}"
              f"{', repeats collapsed' if spec.collapse else ''}), per session.")
    # Only sessions that hold the anchor node have a path: finding them first spares the
    # per-session arrays of every other session (most of them, for any one page).
    anchored = Cte("anchored_sessions", f"""\
    SELECT DISTINCT session_id
    FROM {EVENTS_TABLE}
    WHERE event_date BETWEEN {p_from} AND {p_to}
      AND event_at <= {p_as_of}
      AND session_id != ''
      AND {node} = {p_node}""")
    # Events that are neither a node nor a conversion change nothing in a path.
    useful = f"\n      AND ({node} != '' OR {conversion})" if spec.nodes == "views" else ""
    session_events = Cte("session_events", f"""\
    SELECT
        session_id,
        person_id,
        toUnixTimestamp64Milli(event_at) AS ts,
        {tie} AS tie,
        {node} AS node,
        toUInt8({conversion}) AS is_conversion
    FROM {EVENTS_TABLE}
    WHERE event_date BETWEEN {p_from} AND {p_to}
      AND event_at <= {p_as_of}
      AND session_id IN anchored_sessions{useful}""")
    keep = ("(x, i) -> i = 1 OR x.node != ordered[i - 1].node" if spec.collapse
            else "(x, i) -> 1")
    sessions = Cte("sessions", f"""\
    -- each session's nodes in (event_at, message_id) order, and its last conversion
    SELECT
        session_id,
        any(person_id) AS person_id,
        arraySort(groupArrayIf(CAST((ts, tie, node), '{_NODE.format(tie=tie_type)}'),
                             node != '')) AS ordered,
        arrayFilter({keep}, ordered, arrayEnumerate(ordered)) AS kept,
        arrayMap(x -> x.node, kept) AS nodes,
        arrayMap(x -> x.ts, kept) AS times,
        maxIf(ts, is_conversion = 1) AS last_conversion,
        countIf(is_conversion = 1) > 0 AS has_conversion
    FROM session_events
    GROUP BY session_id""")
    if spec.start:
        anchor = f"indexOf(nodes, {p_node})"
        first = "anchor"
        length = f"least({p_steps}, length(nodes) - anchor + 1)"
        step = "k"
        ends = "anchor + k - 1 = length(nodes)"
    else:
        anchor = f"arrayLastIndex(x -> x = {p_node}, nodes)"
        first = f"greatest(1, anchor - {p_steps} + 1)"
        length = f"anchor - {first} + 1"
        step = f"toInt32(k) - toInt32({length})"
        ends = "0"
    paths = Cte("paths", f"""\
    SELECT
        session_id,
        person_id,
        {anchor} AS anchor,
        arraySlice(nodes, {first}, {length}) AS path,
        arraySlice(times, {first}, {length}) AS path_times,
        last_conversion,
        has_conversion,
        nodes
    FROM sessions
    WHERE anchor > 0""")
    path_nodes = Cte("path_nodes", f"""\
    -- one row per session and step; `next` is the node at the following step
    SELECT
        session_id,
        person_id,
        {step} AS step,
        path[k] AS node,
        if(k < length(path), path[k + 1], if({ends}, '{EXIT}', '')) AS next,
        has_conversion AND last_conversion > path_times[k] AS converted
    FROM paths
    ARRAY JOIN arrayEnumerate(path) AS k""")
    final = """\
SELECT step, node, next, count() AS sessions, uniqExact(person_id) AS people,
       countIf(converted) AS converted
FROM path_nodes
GROUP BY step, node, next
ORDER BY step, node, next"""
    return Query(header, (anchored, session_events, sessions, paths, path_nodes), final,
                 params)


def run_flows(warehouse: Warehouse, spec: FlowsSpec, reporting_tz: str = "UTC"
              ) -> AnalysisResult:
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    rows = warehouse.query(query.sql(), query.params.for_query()).dicts()
    return shape_result(spec, rows, query, date_from, date_to, as_of, reporting_tz)


def shape_result(spec: FlowsSpec, rows: list[dict[str, Any]], query: Query, date_from: date,
                 date_to: date, as_of: datetime, tz: str) -> AnalysisResult:
    """Nodes per step (top N + other) with sessions, exits and conversions; edges."""
    cells: dict[tuple[int, str], dict[str, int]] = defaultdict(
        lambda: {"sessions": 0, "exits": 0, "converted": 0})
    for row in rows:
        cell = cells[(int(row["step"]), row["node"])]
        cell["sessions"] += int(row["sessions"])
        cell["converted"] += int(row["converted"])
        if row["next"] == EXIT:
            cell["exits"] += int(row["sessions"])
    shown: dict[int, set[str]] = {}
    for step in spec.step_numbers():
        ranked = sorted((n for s, n in cells if s == step),
                        key=lambda n: (-cells[(step, n)]["sessions"], n))
        shown[step] = set(ranked if len(ranked) <= spec.top + 1 else ranked[:spec.top])

    def name(step: int, node: str) -> str:
        return node if node in shown.get(step, set()) else OTHER

    nodes: dict[tuple[int, str], dict[str, int]] = defaultdict(
        lambda: {"sessions": 0, "exits": 0, "converted": 0})
    for (step, node), cell in cells.items():
        target = nodes[(step, name(step, node))]
        for key in target:
            target[key] += cell[key]
    edges: dict[tuple[int, str, str], int] = defaultdict(int)
    for row in rows:
        step, nxt = int(row["step"]), row["next"]
        if nxt and nxt != EXIT:
            edges[(step, name(step, row["node"]), name(step + 1, nxt))] += int(row["sessions"])
    node_list = [{"step": step, "node": node, **cell,
                  "exit_pct": pct(cell["exits"], cell["sessions"]),
                  "conversion_pct": pct(cell["converted"], cell["sessions"])}
                 for (step, node), cell in sorted(
                     nodes.items(), key=lambda kv: (kv[0][0], -kv[1]["sessions"], kv[0][1]))]
    edge_list = [{"step": step, "from": src, "to": dst, "sessions": n}
                 for (step, src, dst), n in sorted(edges.items(),
                                                   key=lambda kv: (kv[0][0], -kv[1], kv[0][1:]))]
    anchor_step = 1 if spec.start else 0
    total = sum(c["sessions"] for (s, _), c in nodes.items() if s == anchor_step)
    columns = ["step", "node", "sessions", "exits", "exit_pct", "converted", "conversion_pct"]
    table = [[n["step"], n["node"], n["sessions"], n["exits"], n["exit_pct"], n["converted"],
              n["conversion_pct"]] for n in node_list]
    summary = {"sessions": total, "steps": spec.steps, "nodes": spec.nodes,
               "as_of": utc_text(as_of)}
    notes = [f"per session (sessions lie on one reporting day in {tz}), nodes in "
             "(event_at, message_id) order"
             + ("; back-to-back repeats collapsed" if spec.collapse else ""),
             "exits: the session ends at that node; converted: a conversion event "
             f"({spec.conversion.text()}) after that node in the session"]
    spec_doc = spec.to_json() | {"date_from": date_from.isoformat(),
                                 "date_to": date_to.isoformat(), "as_of": utc_text(as_of)}
    return AnalysisResult("flows", spec_doc, query.sql(), dict(query.params.values), columns,
                          table, summary, notes, {"nodes": node_list, "edges": edge_list})
