"""`funnelhouse serve`: the APIs, the console and the scheduled jobs; no collecting or loading.

One process serves the admin, analyses, segments, people and SQL APIs, the console
(/console/ and its data endpoints), tagging QA read from the warehouse (every
collector worker's events), and runs the scheduler: model refresh, segment
materialisation, the nightly forget sweep and export. Several replicas may run behind
a load balancer: each scheduled job runs on one replica at a time (a lease in the
warehouse). Configured by env like the other roles: FUNNELHOUSE_CLICKHOUSE_URL for a
ClickHouse server, else chdb in the data folder (then no other process may open it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from funnelhouse.collector.edge import EdgeMiddleware
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Settings
from funnelhouse.server import instance
from funnelhouse.server.roles import ServePart, build_serve
from funnelhouse.warehouse.base import Warehouse, WarehouseError
from funnelhouse.warehouse.migrations import open_migrated

log = logging.getLogger("funnelhouse.serve")


def build_serve_app(settings: Settings, warehouse: Warehouse) -> tuple[Starlette, ServePart]:
    """The serve role's app (scheduler started by its lifespan) and its part, to close."""
    part = build_serve(settings, warehouse, TrackingPlan.load(settings.plan_dir))
    probe = warehouse.readonly()
    part.handles.append(probe)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await asyncio.to_thread(probe.query, "SELECT 1")
        except WarehouseError as exc:
            return JSONResponse({"ready": False, "warehouse": str(exc).splitlines()[0][:300]},
                                status_code=503)
        return JSONResponse({"ready": True, "warehouse": warehouse.backend})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with part.running():
            yield

    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"]),
                               Route("/readyz", readyz, methods=["GET"]), *part.routes]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[
        Middleware(EdgeMiddleware, body_timeout=settings.body_timeout_seconds)])
    return app, part


async def run_serve(settings: Settings) -> None:
    """Serve until stopped; SystemExit(2) when the warehouse is not migrated."""
    from funnelhouse.collector.edge import server_options

    options = server_options(settings)  # header timeout, TLS; fails early on a bad cert
    warehouse = await asyncio.to_thread(open_migrated, settings, role="serve")
    app, part = build_serve_app(settings, warehouse)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_level="warning", access_log=False,
                                           lifespan="on", **options))
    scheme = "https" if options.get("ssl_certfile") else "http"
    url = f"{scheme}://{settings.host}:{settings.port}"
    # With chdb, serve holds the data folder: local commands go through it, as with `up`.
    local = not settings.clickhouse_url

    async def announce_when_started() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        if local:
            instance.announce(settings, url)
        print(f"funnelhouse serve at {url}  (warehouse: {warehouse.backend}; console: "
              f"{url}/console/)", flush=True)

    started = asyncio.create_task(announce_when_started())
    try:
        await server.serve()
    finally:
        started.cancel()
        if local:
            instance.retire(settings)
        part.close()
        warehouse.close()
