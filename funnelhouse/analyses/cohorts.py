"""The people behind an analysis result, as SQL, so they can be saved as a segment.

"Who dropped out at step 3", "who converted", "who left the site from /cart": the
same SQL as the analysis up to its per-person (or per-view) step, then a SELECT of
the person ids that match. The segment is frozen: it keeps the people of the result
the marketer looked at, for a re-engagement campaign.
"""

from __future__ import annotations

import re
from typing import Any

from funnelhouse.analyses import funnel, paths
from funnelhouse.analyses.common import SpecError, analysis_window, table_columns
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse

FUNNEL_WHO = re.compile(r"^(converted|reached:(\d+)|dropped:(\d+)|in_window:(\d+))$")
PATHS_WHO = ("exited", "converted", "viewed")


def funnel_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str
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


def paths_people_sql(warehouse: Warehouse, doc: dict[str, Any], who: str
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


def save_as_segment(analysis: str, doc: dict[str, Any], who: str, name: str, *,
                    reader: Warehouse, writer: Warehouse, settings: Settings) -> dict[str, Any]:
    """Save the people of one part of a funnel or paths result as a frozen segment."""
    from funnelhouse.people import segments

    builders = {"funnel": funnel_people_sql, "paths": paths_people_sql}
    if analysis not in builders:
        raise SpecError("segments can be saved from funnel or paths results")
    sql, params = builders[analysis](reader, doc, who)
    segment, materialised = segments.from_sql(
        writer, settings, name, sql, params, freeze=True, reader=reader,
        description=f"{analysis}: {who}",
        origin={"analysis": analysis, "spec": doc, "who": who})
    return {"segment_id": segment.segment_id, "members": materialised.members, "sql": sql,
            "params": params}
