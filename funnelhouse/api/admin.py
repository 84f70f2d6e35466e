"""Admin routes of a running `up`: what other commands do through it while it holds chdb."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from datetime import date

from starlette.requests import Request
from starlette.routing import Route

from funnelhouse.api.endpoint import admin_endpoint, failure, json_object
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Settings
from funnelhouse.jobs.replay import ReplayResult, replay_invalid
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.lease import LeaseHeld, Leases


def routes(settings: Settings, warehouse: Warehouse, job_lock: threading.Lock,
           leases: Leases | None = None) -> list[Route]:
    """`job_lock` is held by every job that writes derived tables (replay, models) in this
    process; `leases` keep an on-demand model run off one scheduled on another replica."""

    async def replay(request: Request) -> dict:
        def job() -> ReplayResult:
            with job_lock:
                # The plan on disk may have been fixed since start: reload it.
                return replay_invalid(warehouse, settings, TrackingPlan.load(settings.plan_dir))

        return dataclasses.asdict(await asyncio.to_thread(job))

    async def models_run(request: Request) -> dict:
        from funnelhouse.models.run import ModelRun, run_models

        body = await json_object(request)
        lines: list[str] = []

        def job() -> list[ModelRun]:
            with job_lock, (leases.holding("models") if leases is not None
                            else contextlib.nullcontext()):
                return run_models(
                    warehouse, settings,
                    full_refresh=bool(body.get("full_refresh")),
                    since=date.fromisoformat(body["since"]) if body.get("since") else None,
                    select=body.get("select") or None,
                    progress=lines.append,
                )

        runs = await asyncio.to_thread(job)
        return {"runs": [dataclasses.asdict(r) for r in runs], "log": lines}

    bad_request = [(ValueError, failure(400, "bad_request"))]
    held = [(LeaseHeld, failure(409, "job_running"))]
    return [
        Route("/v1/admin/replay-invalid", admin_endpoint(settings, replay), methods=["POST"]),
        Route("/v1/admin/models/run", admin_endpoint(settings, models_run, [*held, *bad_request]),
              methods=["POST"]),
    ]
