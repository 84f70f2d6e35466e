"""HTTP API of the analyses: POST /v1/analyses/{funnel|retention|paths}, GET /v1/timeline/{id}.

Admin token required. The body is the analysis' JSON spec (as in docs/analyses.md); the
answer is the result with the SQL that ran and its parameters.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.app import ORJSONResponse, refusal_response
from collector.auth import require_admin
from collector.reasons import Refusal
from funnelhouse.analyses import SpecError, run_analysis
from funnelhouse.config import Settings
from warehouse.base import Warehouse, WarehouseError

POSTED = ("funnel", "retention", "paths")


def routes(settings: Settings, warehouse: Warehouse,
           writer: Warehouse | None = None) -> list[Route]:
    """`warehouse` is read-only; `writer`, if given, saves segments from results."""

    async def run(name: str, doc: dict[str, Any]) -> Response:
        try:
            result = await asyncio.to_thread(run_analysis, name, doc, warehouse,
                                             settings.reporting_tz)
        except SpecError as exc:
            return ORJSONResponse({"error": str(exc), "reason": "bad_spec"}, status_code=400)
        except WarehouseError as exc:
            return ORJSONResponse({"error": str(exc), "reason": "query_failed"}, status_code=400)
        return ORJSONResponse(result.to_dict())

    async def analysis(request: Request) -> Response:
        try:
            require_admin(settings, request)
        except Refusal as refusal:
            return refusal_response(refusal)
        name = request.path_params["name"]
        if name not in POSTED:
            return ORJSONResponse({"error": f"unknown analysis {name!r}; one of "
                                   f"{', '.join(POSTED)}", "reason": "not_found"}, status_code=404)
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return ORJSONResponse({"error": "body must be a JSON spec", "reason": "malformed_json"},
                                  status_code=400)
        if not isinstance(doc, dict):
            return ORJSONResponse({"error": "body must be a JSON object", "reason": "bad_spec"},
                                  status_code=400)
        return await run(name, doc)

    async def timeline(request: Request) -> Response:
        try:
            require_admin(settings, request)
        except Refusal as refusal:
            return refusal_response(refusal)
        query = request.query_params
        return await run("timeline", {"person": request.path_params["id"],
                                      "limit": query.get("limit") or 1000,
                                      "date_from": query.get("date_from"),
                                      "date_to": query.get("date_to")})

    async def save_segment(request: Request) -> Response:
        """POST /v1/analyses/{funnel|paths}/segment {"spec", "who", "name"}: save the people."""
        from funnelhouse.analyses.cohorts import save_as_segment

        try:
            require_admin(settings, request)
        except Refusal as refusal:
            return refusal_response(refusal)
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict) \
                or not doc.get("who") or not doc.get("name") or writer is None:
            return ORJSONResponse({"error": "send {\"spec\": {…}, \"who\": \"dropped:2\", "
                                   "\"name\": \"…\"}", "reason": "bad_spec"}, status_code=400)
        try:
            saved = await asyncio.to_thread(
                save_as_segment, request.path_params["name"], doc["spec"], str(doc["who"]),
                str(doc["name"]), reader=warehouse, writer=writer, settings=settings)
        except (SpecError, ValueError) as exc:
            return ORJSONResponse({"error": str(exc), "reason": "bad_spec"}, status_code=400)
        except WarehouseError as exc:
            return ORJSONResponse({"error": str(exc), "reason": "query_failed"}, status_code=400)
        return ORJSONResponse(saved)

    return [Route("/v1/analyses/{name:str}/segment", save_segment, methods=["POST"]),
            Route("/v1/analyses/{name:str}", analysis, methods=["POST"]),
            Route("/v1/timeline/{id:path}", timeline, methods=["GET"])]
