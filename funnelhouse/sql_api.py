"""POST /v1/sql: read-only SQL for analysts, enforced by the engine, not by parsing."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.app import ORJSONResponse, refusal_response
from collector.auth import require_admin
from collector.reasons import Refusal
from funnelhouse.config import Settings
from warehouse.base import Warehouse, WarehouseError

FORMATS = {"json": ("JSON", "application/json"), "csv": ("CSVWithNames", "text/csv"),
           "tsv": ("TSVWithNames", "text/tab-separated-values")}


def sql_routes(settings: Settings, readonly_warehouse: Warehouse) -> list[Route]:
    async def sql(request: Request) -> Response:
        try:
            require_admin(settings, request)
        except Refusal as refusal:
            return refusal_response(refusal)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return ORJSONResponse({"error": "body must be JSON", "reason": "malformed_json"},
                                  status_code=400)
        text = body.get("sql") if isinstance(body, dict) else None
        fmt = (body.get("format") or "json").lower() if isinstance(body, dict) else "json"
        if not isinstance(text, str) or not text.strip() or fmt not in FORMATS:
            return ORJSONResponse({"error": "send {\"sql\": \"SELECT …\", \"format\": "
                                   "\"json|csv|tsv\"}", "reason": "bad_request"}, status_code=400)
        clickhouse_format, media_type = FORMATS[fmt]
        params = body.get("params") if isinstance(body.get("params"), dict) else None
        try:
            result = await asyncio.to_thread(readonly_warehouse.query_raw, text,
                                             clickhouse_format, params)
        except WarehouseError as exc:
            reason = "read_only" if "readonly" in str(exc).lower() else "query_failed"
            return ORJSONResponse({"error": str(exc), "reason": reason}, status_code=400)
        return Response(result, media_type=media_type)

    return [Route("/v1/sql", sql, methods=["POST"])]
