"""The people behind an analysis result, as SQL, so they can be saved as a segment.

"Who dropped out at step 3", "who converted", "who left the site from /cart": the
same SQL as the analysis up to its per-person (or per-view) step, then a SELECT of
the person ids that match. Saved frozen, the segment keeps the people of the result the
marketer looked at; saved live, it keeps the definition (analysis, spec, who, and
optionally a rolling number of days) and is re-evaluated at every materialisation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses import flows, funnel, paths, purchases, result_people, retention
from funnelhouse.analyses.common import SpecError, analysis_window, table_columns
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse

FUNNEL_WHO = re.compile(r"^(converted|reached:(\d+)|dropped:(\d+)|in_window:(\d+))$")
PATHS_WHO = ("exited", "converted", "viewed")
RETENTION_WHO = re.compile(r"^(cohort|retained:(\d+)|not_retained:(\d+))(?:=(.*))?$", re.DOTALL)
FLOWS_WHO = re.compile(r"^(at|exited|converted):(-?\d+):(.+)$", re.DOTALL)


def funnel_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                      ) -> tuple[str, dict[str, Any]]:
    """who: converted | reached:K | dropped:K (window closed) | in_window:K (still open)."""
    spec = funnel.FunnelSpec.from_json(doc)
    match = FUNNEL_WHO.match(who)
    if not match:
        raise SpecError("who must be converted, reached:K, dropped:K or in_window:K")
    n = len(spec.steps)
    step = int(next((g for g in match.groups()[1:] if g), n))
    if not 1 <= step <= n:
        raise SpecError(f"step {step} is not in 1..{n}")
    base = spec.bases()[step - 1]
    base_reached = "1" if base == 0 else f"step_times[{base}] > 0"
    condition = {
        "converted": f"step_times[{n}] > 0",
        "reached": f"step_times[{step}] > 0",
        "dropped": f"{base_reached} AND step_times[{step}] = 0 AND NOT window_open",
        "in_window": f"{base_reached} AND step_times[{step}] = 0 AND window_open",
    }[who.split(":")[0]]
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = funnel.build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    # The funnel's pieces through `people` (one row per person: step_times, excluded,
    # window_open), then the people who match instead of the per-step counts.
    people = query.through("people").select(
        f"SELECT DISTINCT person_id FROM people WHERE NOT excluded AND {condition}")
    return people.sql(), people.params.for_query()


def paths_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                     ) -> tuple[str, dict[str, Any]]:
    """who: exited (left from the page) | converted (after viewing it) | viewed."""
    spec = paths.PathsSpec.from_json(doc)
    if who not in PATHS_WHO:
        raise SpecError(f"who must be one of {', '.join(PATHS_WHO)}")
    condition = {"exited": "went_to = '(exit)'", "converted": "converted",
                 "viewed": "1"}[who]
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = paths.build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    # Through `page_views` (one row per view of the page: came_from, went_to, converted).
    people = query.through("page_views").select(
        f"SELECT DISTINCT person_id FROM page_views WHERE {condition}")
    return people.sql(), people.params.for_query()


def retention_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                         ) -> tuple[str, dict[str, Any]]:
    """who: cohort (every member) | retained:K (came back in period K, or K or later with
    on_or_after) | not_retained:K (period K begun at as_of, and did not); `=VALUE` keeps
    the members with that breakdown value (a purchase-count group: `retained:3=3+`)."""
    from funnelhouse.analyses.correlation import _retention_outcomes

    spec = retention.RetentionSpec.from_json(doc)
    match = RETENTION_WHO.match(who)
    if not match:
        raise SpecError("who must be cohort, retained:K or not_retained:K (=VALUE)")
    value = match.group(4)
    if value is not None and not spec.breakdown:
        raise SpecError("=VALUE needs a breakdown")
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    columns = table_columns(warehouse)
    if match.group(1) == "cohort":
        query = retention.build_query(spec, columns, as_of, date_from, date_to)
        where = ""
        if value is not None:
            where = f" WHERE breakdown = {query.params.add('who_value', 'String', _none(value))}"
        people = query.select(f"SELECT DISTINCT person_id FROM memberships{where}")
        return people.sql(), people.params.for_query()
    k = int(match.group(2) or match.group(3))
    if not 1 <= k <= spec.periods:
        raise SpecError(f"period {k} is not in 1..{spec.periods}")
    if spec.cohort_type != "first_time":
        raise SpecError("retained:K reads first-time cohorts")
    # The same decided members as correlation: period K had begun at as_of.
    outcomes = _retention_outcomes(spec, k, columns, as_of, date_from, date_to, tz)
    wanted = "success" if who.startswith("retained") else "NOT success"
    if value is not None:
        wanted += f" AND entry_value = {outcomes.params.add('who_value', 'String', _none(value))}"
    people = outcomes.select(f"SELECT DISTINCT person_id FROM outcomes WHERE {wanted}")
    return people.sql(), people.params.for_query()


def _none(value: str) -> str:
    """A breakdown value as the answer shows it: `(none)` is the empty value."""
    return "" if value == "(none)" else value


def flows_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str, tz: str = "UTC"
                     ) -> tuple[str, dict[str, Any]]:
    """who: at:STEP:NODE (their session was at NODE at that step) | exited:STEP:NODE (and
    the session ended there) | converted:STEP:NODE (and converted after it)."""
    spec = flows.FlowsSpec.from_json(doc)
    match = FLOWS_WHO.match(who)
    if not match:
        raise SpecError("who must be at:STEP:NODE, exited:STEP:NODE or converted:STEP:NODE")
    kind, step, node = match.group(1), int(match.group(2)), match.group(3)
    if step not in spec.step_numbers():
        raise SpecError(f"step {step} is not one of this flow's steps")
    date_from, date_to, as_of = analysis_window(warehouse, spec.date_from, spec.date_to,
                                                spec.as_of)
    query = flows.build_query(spec, table_columns(warehouse), as_of, date_from, date_to)
    p_step = query.params.add("who_step", "Int32", step)
    p_node = query.params.add("who_node", "String", node)
    extra = {"at": "", "exited": f" AND next = '{flows.EXIT}'",
             "converted": " AND converted"}[kind]
    people = query.select(f"SELECT DISTINCT person_id FROM path_nodes "
                          f"WHERE step = {p_step} AND node = {p_node}{extra}")
    return people.sql(), people.params.for_query()


# analysis → (reader, spec, who, reporting time zone) → (SQL of person ids, params)
BUILDERS: dict[str, Callable[[Warehouse, dict[str, Any], str, str],
                             tuple[str, dict[str, Any]]]] = {
    "funnel": funnel_people_sql, "paths": paths_people_sql,
    "retention": retention_people_sql, "flows": flows_people_sql,
    "trends": result_people.trends_people_sql,
    "stickiness": result_people.stickiness_people_sql,
    "correlation": result_people.correlation_people_sql,
    "pages": result_people.pages_people_sql,
    "purchases": purchases.purchases_people_sql}


def live_people_sql(reader: Warehouse, definition: dict[str, Any], as_of: datetime,
                    tz: str) -> tuple[str, dict[str, Any]]:
    """A live analysis segment's SQL at `as_of`: its spec over the last N reporting days
    up to as_of (when `last_days` is set), else over the spec's own days."""
    spec = dict(definition["spec"])
    spec["as_of"] = as_of.isoformat()
    if definition.get("last_days"):
        today = as_of.astimezone(ZoneInfo(tz)).date()
        if definition["name"] != "purchases":   # purchases count up to date_to, from the start
            spec["date_from"] = (today - timedelta(days=int(definition["last_days"]) - 1)
                                 ).isoformat()
        spec["date_to"] = today.isoformat()
    return BUILDERS[definition["name"]](reader, spec, definition["who"], tz)


def save_as_segment(analysis: str, doc: dict[str, Any], who: str, name: str, *,
                    reader: Warehouse, writer: Warehouse, settings: Settings,
                    live: bool = False, last_days: int | None = None) -> dict[str, Any]:
    """Save the people of one part of an analysis result as a segment: frozen (the
    people now) or live (the definition, re-evaluated at every materialisation)."""
    from funnelhouse.people import segments

    if analysis not in BUILDERS:
        raise SpecError(f"segments can be saved from {', '.join(BUILDERS)} results")
    if live:
        store = segments.Segments(writer, settings, reader)
        try:
            segment = store.create({"name": name, "description": f"{analysis}: {who} (live)",
                                    "analysis": {"name": analysis, "spec": doc, "who": who,
                                                 "last_days": last_days}},
                                   created_by="analysis")
            done = store.materialise(segment.segment_id)
        except segments.SegmentError as exc:
            raise SpecError(str(exc)) from exc
        finally:
            store.close()
        return {"segment_id": segment.segment_id, "members": done.members, "live": True,
                "sql": done.sql.sql, "params": done.sql.params}
    sql, params = BUILDERS[analysis](reader, doc, who, settings.reporting_tz)
    segment, materialised = segments.from_sql(
        writer, settings, name, sql, params, freeze=True, reader=reader,
        description=f"{analysis}: {who}",
        origin={"analysis": analysis, "spec": doc, "who": who})
    return {"segment_id": segment.segment_id, "members": materialised.members, "sql": sql,
            "params": params}
