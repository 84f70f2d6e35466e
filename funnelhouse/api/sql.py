"""POST /v1/sql: one guarded read-only SELECT, with limits, cancelled when the client goes away."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.api.endpoint import admin_endpoint, failure, json_object
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse, WarehouseError
from funnelhouse.warehouse.sql_guard import SqlRefused, SqlRunner, new_tag

log = logging.getLogger(__name__)

FORMATS = {"json": ("JSON", "application/json"), "csv": ("CSVWithNames", "text/csv"),
           "tsv": ("TSVWithNames", "text/tab-separated-values")}
# How often a running query looks whether its client is still there.
DISCONNECT_POLL_SECONDS = 0.2


def _refused(exc: BaseException) -> tuple[int, dict[str, Any]]:
    assert isinstance(exc, SqlRefused)
    return 400, exc.as_json()


def _failed(exc: BaseException) -> tuple[int, dict[str, Any]]:
    reason = "read_only" if "readonly" in str(exc).lower() else "query_failed"
    return 400, {"error": str(exc).strip().splitlines()[0][:500] if str(exc).strip()
                 else reason, "reason": reason}


def sql_routes(settings: Settings, readonly_warehouse: Warehouse) -> list[Route]:
    """`readonly_warehouse` checks SQL and cancels; queries run on limited handles of their own."""
    runner = SqlRunner(readonly_warehouse, settings)

    async def sql(request: Request) -> Response:
        body = await json_object(request, required=True)
        fmt = str(body.get("format") or "json").lower()
        if fmt not in FORMATS:
            raise ValueError('send {"sql": "SELECT …", "format": "json|csv|tsv"}')
        clickhouse_format, media_type = FORMATS[fmt]
        query = await asyncio.to_thread(runner.guard, body.get("sql"), body.get("params"))
        tag = new_tag()
        task = asyncio.ensure_future(asyncio.to_thread(runner.run, query, clickhouse_format, tag))
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return Response(task.result(), media_type=media_type)
            if await request.is_disconnected():
                # Nobody will read the answer: stop the work instead of finishing it.
                await asyncio.to_thread(runner.cancel, tag)
                try:
                    await task
                except (SqlRefused, WarehouseError):
                    pass
                log.info("SQL query cancelled: the client disconnected")
                return Response(status_code=499)

    endpoint = admin_endpoint(settings, sql, errors=[
        (SqlRefused, _refused), (WarehouseError, _failed),
        (ValueError, failure(400, "bad_request"))])
    return [Route("/v1/sql", endpoint, methods=["POST"])]
