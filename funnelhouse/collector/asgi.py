"""The production collector app (`funnelhouse collector`), configured from env vars.

Each uvicorn worker imports this module and builds its own app and queue producer.
With a ClickHouse server configured, /v1/sql is served too (read-only user settings),
and /v1/debug/events adds what every worker received (read back from the warehouse).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from funnelhouse.collector.app import create_app
from funnelhouse.collector.edge import HeaderTimeoutProtocol, orphan_watchdog
from funnelhouse.collector.gc_tuning import tune_gc
from funnelhouse.collector.qa import QaSource
from funnelhouse.collector.sinks.open import make_sink
from funnelhouse.config import load_settings


def build() -> Starlette:
    settings = load_settings()
    # uvicorn workers get the protocol class by its import path; its timeout is set here.
    HeaderTimeoutProtocol.header_timeout = settings.header_timeout_seconds
    sink = make_sink(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sink.start()
        tune_gc()  # after start-up: what it built is frozen
        try:
            async with orphan_watchdog():  # a worker whose master died stops serving
                yield
        finally:
            await sink.stop()

    routes: Sequence[BaseRoute] = ()
    qa_sources: list[QaSource] = []
    if settings.clickhouse_url:
        from funnelhouse.api.sql import sql_routes
        from funnelhouse.collector.qa import warehouse_source
        from funnelhouse.warehouse.open import open_warehouse

        routes = sql_routes(settings, open_warehouse(settings, readonly=True))
        # QA shows every worker's events (as loaded), not only this worker's ring.
        qa_sources = [warehouse_source(open_warehouse(settings, readonly=True))]
    return create_app(settings, sink, extra_routes=routes, lifespan=lifespan,
                      qa_sources=qa_sources)


app = build()
