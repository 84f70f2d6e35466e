"""The production loader (`funnelhouse loader`): queue → warehouse, plus /metrics.

Run several for Kafka (the consumer group shares the partitions). With the embedded
log, run one: it owns the log's read side. It does not migrate the warehouse (another
loader may be inserting while a migration copies events_raw): it waits for
`funnelhouse migrate`, then exits non-zero if the schema is still behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.collector import metrics
from funnelhouse.config import Settings
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.open import make_source
from funnelhouse.warehouse.migrations import open_migrated

log = logging.getLogger("funnelhouse.loader")


def metrics_app(loader: Loader) -> Starlette:
    async def metrics_endpoint(request: Request) -> Response:
        metrics.loader_lag.set(loader.source.status().get("lag", 0))
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/metrics", metrics_endpoint), Route("/healthz", healthz)])


class _MetricsServer(uvicorn.Server):
    """uvicorn leaving SIGINT/SIGTERM to the loader, which stops this server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn >= 0.29 takes the signals here (signal.signal) while it serves.
        yield


async def run_loader(settings: Settings) -> None:
    """Load until SIGINT/SIGTERM; SystemExit(2) when the schema is not migrated."""
    warehouse = await asyncio.to_thread(open_migrated, settings, role="loader")
    loader = Loader(make_source(settings), warehouse, batch_rows=settings.loader_batch_rows,
                    batch_seconds=settings.loader_batch_seconds)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loader.stop)
    server = _MetricsServer(uvicorn.Config(metrics_app(loader), host=settings.host,
                                           port=settings.loader_port, log_level="warning"))
    metrics_task = asyncio.create_task(server.serve())
    log.info("loader running (%s → %s), metrics on :%d",
             "kafka" if settings.kafka_bootstrap else "embedded log", warehouse.backend,
             settings.loader_port)
    try:
        await loader.run()
    finally:
        server.should_exit = True
        await metrics_task
        warehouse.close()
