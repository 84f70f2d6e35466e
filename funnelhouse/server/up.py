"""`funnelhouse up`: the three roles — collector, loader, serve — in one process, over the
embedded queue and chdb, built by the same builders the separate roles use (roles.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from funnelhouse.collector.app import create_app
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.sinks.base import Sink
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.collector.sinks.open import make_sink
from funnelhouse.config import Settings, WriteKey
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Source
from funnelhouse.loader.sources.open import make_source
from funnelhouse.people.forget import debug_ring_scrubber, queue_scrubber
from funnelhouse.server import instance
from funnelhouse.server.roles import ServePart, build_loader, build_serve
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.migrations import migrate_coordinated
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
    serve: ServePart


def build_pipeline(settings: Settings, queue: tuple[Sink, Source] | None = None) -> Pipeline:
    plan = TrackingPlan.load(settings.plan_dir)
    warehouse = open_warehouse(settings)
    # One process: nothing else inserts, so `up` migrates itself before its loader starts.
    migrate_coordinated(warehouse, settings.sql_dir / "migrations")
    sink, source = queue or (make_sink(settings), make_source(settings))
    loader, forgotten = build_loader(settings, warehouse, source)
    # Forget holds the loader's gate (no batch lands in a table being swapped) and
    # reloads the loader's forgotten set; the scrubbers reach what this process keeps
    # outside the warehouse.
    serve_part = build_serve(settings, warehouse, plan, load_gate=loader.gate,
                             on_forgotten=[forgotten.changed], with_qa_route=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sink.start()
        loader_task = asyncio.create_task(loader.run(drain_timeout=30), name="loader")
        try:
            async with serve_part.running():
                yield
        finally:
            # In-flight requests are done (uvicorn waits for them): flush the producer,
            # then let the loader load what is left, so Ctrl-C leaves the queue empty
            # when the warehouse is healthy (whatever is left stays queued, durable).
            await sink.stop()
            loader.stop()
            await loader_task

    if isinstance(sink, EmbeddedSink):
        serve_part.hooks.scrubbers["queue"] = queue_scrubber(sink.log)
    # The collector's QA answer: its ring (at once) and the warehouse (everything loaded).
    app = create_app(settings, sink, plan=plan, extra_routes=serve_part.routes,
                     lifespan=lifespan, qa_sources=[serve_part.qa])
    serve_part.hooks.scrubbers["debug_ring"] = debug_ring_scrubber(app.state.ingestor)
    return Pipeline(settings, plan, warehouse, sink, source, loader, app, serve_part)


def print_welcome(settings: Settings, url: str) -> None:
    """What to do next. A browser key is public by design (it sits in web pages). The
    server key and the admin token `up` made are secrets shown at the start that made
    them only (imports and backdated events need the key), so they do not end up in the
    service log of every start; configured keys are never printed."""
    browser = next((k for k in settings.write_keys if k.kind == "browser"), None)
    made = instance.made_keys(settings)
    first = instance.admin_token_first_showing(settings)

    def shown(key: WriteKey) -> str:
        if key.kind == "browser" or (key.key in made and first):
            return key.key
        if key.key in made:
            return f"(secret: in {instance.credentials_path(settings)})"
        return "(secret, not shown: see your config)"

    keys = "\n".join(f"  write key ({k.source}, {k.kind}):".ljust(31) + shown(k)
                     for k in settings.write_keys)
    if first:
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

Sample data (a week of shop visitors, then the models built):
  funnelhouse demo --data-dir {settings.data_dir}
Send an event:
  curl -s -u {write_key}: {url}/v1/track -H 'Content-Type: application/json' \\
    -d '{{"event":"click","anonymousId":"a1","properties":{{"element":"#buy"}}}}'
Query it:
  funnelhouse sql --data-dir {settings.data_dir} \\
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
        pipeline.serve.close()
        pipeline.warehouse.close()
