"""`funnelhouse up`: collector, queue, loader and warehouse in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from funnelhouse.api import admin as admin_api
from funnelhouse.api import console as console_api
from funnelhouse.api import people as people_api
from funnelhouse.api.analyses import routes as analyses_routes
from funnelhouse.api.sql import sql_routes
from funnelhouse.collector.app import create_app
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.sinks.base import Sink
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import Settings
from funnelhouse.jobs.scheduler import build_scheduler
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Source
from funnelhouse.people.forget import ForgetHooks, ForgottenSet, debug_ring_scrubber, queue_scrubber
from funnelhouse.queue.open import make_sink, make_source
from funnelhouse.server import instance
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.migrate import migrate
from funnelhouse.warehouse.open import open_warehouse

log = logging.getLogger("funnelhouse")


@dataclass
class Pipeline:
    """Everything `up` runs, built but not started; tests build one too."""

    settings: Settings
    plan: TrackingPlan
    warehouse: Warehouse
    sink: Sink
    source: Source
    loader: Loader
    app: Starlette


def build_pipeline(settings: Settings, queue: tuple[Sink, Source] | None = None) -> Pipeline:
    plan = TrackingPlan.load(settings.plan_dir)
    warehouse = open_warehouse(settings)
    migrate(warehouse, settings.sql_dir / "migrations")
    sink, source = queue or (make_sink(settings), make_source(settings))
    forgotten = ForgottenSet(warehouse)
    loader = Loader(source, warehouse, batch_rows=settings.loader_batch_rows,
                    batch_seconds=settings.loader_batch_seconds, forgotten=forgotten)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sink.start()
        loader_task = asyncio.create_task(loader.run(drain_timeout=30), name="loader")
        models_task = asyncio.create_task(
            refresh_models_periodically(settings, warehouse, job_lock), name="models")
        # Nightly export at export_time (reporting tz) and segment materialisation.
        people_scheduler = build_scheduler(
            settings, warehouse, segments_every_minutes=settings.segments_interval_minutes,
            hooks=forget_hooks)
        scheduler_task = asyncio.create_task(people_scheduler.run(), name="scheduler")
        try:
            yield
        finally:
            people_scheduler.stop()
            await scheduler_task
            models_task.cancel()
            # In-flight requests are done (uvicorn waits for them): flush the producer,
            # then let the loader load what is left, so Ctrl-C leaves the queue empty
            # when the warehouse is healthy (whatever is left stays queued, durable).
            await sink.stop()
            loader.stop()
            await loader_task

    job_lock = threading.Lock()
    # Forget takes the job lock (it swaps tables, as model runs do) and the loader's
    # gate; the scrubbers reach what this process keeps outside the warehouse.
    forget_hooks = ForgetHooks(job_lock=job_lock, load_gate=loader.gate,
                               on_forgotten=[forgotten.changed])
    if isinstance(sink, EmbeddedSink):
        forget_hooks.scrubbers["queue"] = queue_scrubber(sink.log)
    routes: list[BaseRoute] = [*sql_routes(settings, warehouse.readonly()),
                               *admin_api.routes(settings, warehouse, job_lock),
                               *console_api.routes(settings, warehouse.readonly(), plan),
                               *people_api.routes(settings, warehouse, hooks=forget_hooks),
                               *analyses_routes(settings, warehouse.readonly(), writer=warehouse)]
    app = create_app(settings, sink, plan=plan, extra_routes=routes, lifespan=lifespan)
    forget_hooks.scrubbers["debug_ring"] = debug_ring_scrubber(app.state.ingestor)
    return Pipeline(settings, plan, warehouse, sink, source, loader, app)


async def refresh_models_periodically(settings: Settings, warehouse: Warehouse,
                                      job_lock: threading.Lock) -> None:
    """Rebuild the eight tables every `models_interval_seconds` (incremental, look-back)."""
    from funnelhouse.models.run import run_models

    def job() -> None:
        with job_lock:
            started = time.perf_counter()
            runs = run_models(warehouse, settings, progress=log.debug)
            log.info("models refreshed: %d models in %.1fs", len(runs),
                     time.perf_counter() - started)

    while True:
        await asyncio.sleep(settings.models_interval_seconds)
        try:
            await asyncio.to_thread(job)
        except Exception:  # a failed refresh is retried at the next tick; keep serving
            log.exception("model refresh failed")


def print_welcome(settings: Settings, url: str) -> None:
    """What to do next. Secrets are not printed (they would land in every service log):
    a browser key is public by design (it sits in web pages); the admin token only at
    the start that made it."""
    browser = next((k for k in settings.write_keys if k.kind == "browser"), None)
    keys = "\n".join(f"  write key ({k.source}, {k.kind}):".ljust(31)
                     + (k.key if k.kind == "browser" else
                        "(secret, not shown: see credentials.json or your config)")
                     for k in settings.write_keys)
    if instance.admin_token_first_showing(settings):
        token = (f"{settings.admin_token}\n    (shown this once; kept in "
                 f"{instance.credentials_path(settings)}; `funnelhouse token show "
                 f"--data-dir {settings.data_dir}` prints it again)")
    else:
        token = instance.admin_token_source(settings)
    write_key = browser.key if browser else "WRITE_KEY"
    print(f"""funnelhouse is up at {url}  (data: {settings.data_dir})
{keys}
  admin token:                 {token}
  web console:                 {url}/console/  (log in with the admin token)

Send an event:
  curl -s -u {write_key}: {url}/v1/track -H 'Content-Type: application/json' \\
    -d '{{"event":"click","anonymousId":"a1","properties":{{"element":"#buy"}}}}'
Query it:
  funnelhouse sql --data-dir {settings.data_dir} \
    "SELECT event, anonymous_id, timestamp, properties FROM events_raw"
Ctrl-C drains the queue and stops.""", flush=True)


async def serve(settings: Settings, pipeline: Pipeline | None = None) -> None:
    from funnelhouse.collector.edge import server_options

    options = server_options(settings)  # header timeout, TLS; fails early on a bad cert
    pipeline = pipeline or build_pipeline(settings)
    config = uvicorn.Config(pipeline.app, host=settings.host, port=settings.port,
                            log_level="warning", access_log=False, lifespan="on", **options)
    server = uvicorn.Server(config)
    scheme = "https" if options.get("ssl_certfile") else "http"
    url = f"{scheme}://{settings.host}:{settings.port}"

    async def welcome_when_started() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        instance.announce(settings, url)
        print_welcome(settings, url)

    welcome = asyncio.create_task(welcome_when_started())
    try:
        await server.serve()
    finally:
        welcome.cancel()
        instance.retire(settings)
        pipeline.warehouse.close()
