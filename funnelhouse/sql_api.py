"""POST /v1/sql: read-only SQL for analysts, enforced by the engine, not by parsing."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.admin_http import admin_endpoint, failure, json_object
from funnelhouse.config import Settings
from warehouse.base import Warehouse, WarehouseError

FORMATS = {"json": ("JSON", "application/json"), "csv": ("CSVWithNames", "text/csv"),
           "tsv": ("TSVWithNames", "text/tab-separated-values")}


def _refused(exc: BaseException) -> tuple[int, dict[str, Any]]:
    reason = "read_only" if "readonly" in str(exc).lower() else "query_failed"
    return 400, {"error": str(exc), "reason": reason}


def sql_routes(settings: Settings, readonly_warehouse: Warehouse) -> list[Route]:
    async def sql(request: Request) -> Response:
        body = await json_object(request, required=True)
        text = body.get("sql")
        fmt = str(body.get("format") or "json").lower()
        if not isinstance(text, str) or not text.strip() or fmt not in FORMATS:
            raise ValueError('send {"sql": "SELECT …", "format": "json|csv|tsv"}')
        clickhouse_format, media_type = FORMATS[fmt]
        params = body.get("params") if isinstance(body.get("params"), dict) else None
        result = await asyncio.to_thread(readonly_warehouse.query_raw, text, clickhouse_format,
                                         params)
        return Response(result, media_type=media_type)

    endpoint = admin_endpoint(settings, sql, errors=[
        (WarehouseError, _refused), (ValueError, failure(400, "bad_request"))])
    return [Route("/v1/sql", endpoint, methods=["POST"])]
