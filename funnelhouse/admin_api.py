"""Admin routes of a running `up`: what other commands do through it while it holds chdb."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import date

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.app import ORJSONResponse, refusal_response
from collector.auth import require_admin
from collector.plan import TrackingPlan
from collector.reasons import Refusal
from funnelhouse.config import Settings
from funnelhouse.replay import replay_invalid
from warehouse.base import Warehouse, WarehouseError


def routes(settings: Settings, warehouse: Warehouse, job_lock: threading.Lock) -> list[Route]:
    """`job_lock` is held by every job that writes derived tables (replay, models)."""

    def admin(handler):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            try:
                require_admin(settings, request)
            except Refusal as refusal:
                return refusal_response(refusal)
            try:
                return await handler(request)
            except WarehouseError as exc:
                return ORJSONResponse({"error": str(exc), "reason": "warehouse_error"},
                                      status_code=503)

        return endpoint

    async def replay(request: Request) -> Response:
        def job():  # type: ignore[no-untyped-def]
            with job_lock:
                # The plan on disk may have been fixed since start: reload it.
                return replay_invalid(warehouse, settings, TrackingPlan.load(settings.plan_dir))

        result = await asyncio.to_thread(job)
        return ORJSONResponse(dataclasses.asdict(result))

    async def models_run(request: Request) -> Response:
        from funnelhouse.models import run_models

        body = await request.json() if await request.body() else {}
        lines: list[str] = []

        def job():  # type: ignore[no-untyped-def]
            with job_lock:
                return run_models(
                    warehouse, settings,
                    full_refresh=bool(body.get("full_refresh")),
                    since=date.fromisoformat(body["since"]) if body.get("since") else None,
                    select=body.get("select") or None,
                    progress=lines.append,
                )

        runs = await asyncio.to_thread(job)
        return ORJSONResponse({"runs": [dataclasses.asdict(r) for r in runs], "log": lines})

    return [Route("/v1/admin/replay-invalid", admin(replay), methods=["POST"]),
            Route("/v1/admin/models/run", admin(models_run), methods=["POST"])]
