"""HTTP API of the analyses: POST /v1/analyses/{name} (trends, stickiness, funnel, retention,
paths, flows, pages, correlation, purchases), GET /v1/timeline/{id}; POST
/v1/analyses/{name}/segment saves the people behind one figure of any of them.

Admin token required. The body is the analysis' JSON spec (as in docs/analyses.md); the
answer is the result with the SQL that ran and its parameters.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.analyses import SpecError, run_analysis
from funnelhouse.api.endpoint import admin_endpoint, failure, json_object
from funnelhouse.api.not_built import not_built_or
from funnelhouse.collector.app import ORJSONResponse
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse, WarehouseError

POSTED = ("funnel", "retention", "paths", "trends", "stickiness", "flows", "pages",
          "correlation", "purchases")


def routes(settings: Settings, warehouse: Warehouse,
           writer: Warehouse | None = None) -> list[Route]:
    """`warehouse` is read-only; `writer`, if given, saves segments from results."""
    errors = [(SpecError, failure(400, "bad_spec")),
              (WarehouseError, not_built_or(settings, failure(400, "query_failed"))),
              (ValueError, failure(400, "bad_spec"))]

    def run(name: str, doc: dict[str, Any]) -> Any:
        return asyncio.to_thread(
            lambda: run_analysis(name, doc, warehouse, settings.reporting_tz).to_dict())

    async def analysis(request: Request) -> Any:
        name = request.path_params["name"]
        if name not in POSTED:
            return ORJSONResponse({"error": f"unknown analysis {name!r}; one of "
                                   f"{', '.join(POSTED)}", "reason": "not_found"}, status_code=404)
        return await run(name, await json_object(request, required=True))

    async def timeline(request: Request) -> Any:
        query = request.query_params
        return await run("timeline", {"person": request.path_params["id"],
                                      "limit": query.get("limit") or 1000,
                                      "date_from": query.get("date_from"),
                                      "date_to": query.get("date_to")})

    async def save_segment(request: Request) -> Any:
        """POST /v1/analyses/{name}/segment {"spec", "who", "name", "live", "last_days"}:
        save the people behind one figure (frozen), or the definition (live)."""
        from funnelhouse.analyses.cohorts import save_as_segment

        doc = await json_object(request, required=True)
        if not isinstance(doc.get("spec"), dict) or not doc.get("who") or not doc.get("name") \
                or writer is None:
            raise SpecError('send {"spec": {…}, "who": "dropped:2", "name": "…"}')
        return await asyncio.to_thread(
            save_as_segment, request.path_params["name"], doc["spec"], str(doc["who"]),
            str(doc["name"]), reader=warehouse, writer=writer, settings=settings,
            live=bool(doc.get("live")),
            last_days=int(doc["last_days"]) if doc.get("last_days") is not None else None)

    async def people(request: Request) -> Any:
        """POST /v1/analyses/{name}/people {"spec", "who", "limit", "format"}: how many people
        are behind one figure, the first `limit` with their profile (JSON), or every id (csv)."""
        from funnelhouse.analyses.cohorts import BUILDERS
        from funnelhouse.models.built import existing_tables

        name = request.path_params["name"]
        doc = await json_object(request, required=True)
        if name not in BUILDERS or not isinstance(doc.get("spec"), dict) or not doc.get("who"):
            raise SpecError(f'send {{"spec": {{…}}, "who": "…"}} to one of {", ".join(BUILDERS)}')
        limit = max(1, min(int(doc.get("limit") or 100), 10_000))

        def job() -> Any:
            sql, params = BUILDERS[name](warehouse, doc["spec"], str(doc["who"]),
                                         settings.reporting_tz)
            if doc.get("format") == "csv":
                return Response(warehouse.query_raw(
                    f"SELECT person_id FROM ({sql}) ORDER BY person_id", "CSVWithNames", params),
                    media_type="text/csv")
            # The profile comes from the users model when it is built (ids alone otherwise).
            profile, join = ("", "")
            if "users" in existing_tables(warehouse):
                profile = (", u.email, u.first_seen_at, u.last_seen_at, u.first_touch_source, "
                           "u.first_touch_campaign, u.events, u.orders, u.revenue, "
                           "u.lifecycle_stage")
                join = "LEFT JOIN users AS u ON u.person_id = w.person_id"
            found = warehouse.query(
                f"SELECT w.person_id, count() OVER () AS total{profile} FROM ({sql}) AS w "
                f"{join} ORDER BY w.person_id LIMIT {limit}", params)
            rows = [dict(zip(found.columns, row, strict=True)) for row in found.rows]
            total = rows[0].pop("total") if rows else 0
            for row in rows[1:]:
                row.pop("total")
            return {"count": total, "people": rows, "sql": sql, "params": params}

        return await asyncio.to_thread(job)

    return [Route("/v1/analyses/{name:str}/segment", admin_endpoint(settings, save_segment, errors),
                  methods=["POST"]),
            Route("/v1/analyses/{name:str}/people", admin_endpoint(settings, people, errors),
                  methods=["POST"]),
            Route("/v1/analyses/{name:str}", admin_endpoint(settings, analysis, errors),
                  methods=["POST"]),
            Route("/v1/timeline/{id:path}", admin_endpoint(settings, timeline, errors),
                  methods=["GET"])]
