"""The three roles' parts — collector app, loader, serve routes and scheduler — built one way.

`funnelhouse collector` runs the collector app (collector/asgi.py), `funnelhouse
loader` the loader (loader/main.py), `funnelhouse serve` the serve part
(server/serve.py); `funnelhouse up` builds all three from these same builders over
the embedded queue and chdb, in one process (server/up.py).

The serve part is everything that is neither collecting nor loading: the admin,
analyses, segments, people and SQL APIs, the console (/console/ and its data
endpoints), tagging QA from the warehouse, and the scheduler (model refresh, segment
materialisation, nightly forget sweep and export), coordinated across replicas by
leases in the warehouse.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from starlette.routing import BaseRoute, Route

from funnelhouse.api import admin as admin_api
from funnelhouse.api import console as console_api
from funnelhouse.api import insights as insights_api
from funnelhouse.api import people as people_api
from funnelhouse.api.analyses import routes as analyses_routes
from funnelhouse.api.sql import sql_routes
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.qa import QaSource, debug_endpoint, warehouse_source
from funnelhouse.config import Settings
from funnelhouse.jobs.scheduler import Scheduler, build_scheduler
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Source
from funnelhouse.people.forget import ForgetHooks, ForgottenSet
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.lease import Leases, holder_id


def build_loader(settings: Settings, warehouse: Warehouse, source: Source
                 ) -> tuple[Loader, ForgottenSet]:
    """The loader, leaving out rows of forgotten people (the set it reloads on a forget)."""
    forgotten = ForgottenSet(warehouse)
    loader = Loader(source, warehouse, batch_rows=settings.loader_batch_rows,
                    batch_seconds=settings.loader_batch_seconds, forgotten=forgotten)
    return loader, forgotten


@dataclass
class ServePart:
    """The serve role's routes and scheduler, built but not started."""

    routes: list[BaseRoute]
    scheduler: Scheduler
    hooks: ForgetHooks
    qa: QaSource                           # tagging QA from the warehouse
    handles: list[Warehouse] = field(default_factory=list)   # opened here, closed by close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The scheduler runs while the block does; a job in flight finishes first."""
        task = asyncio.create_task(self.scheduler.run(), name="scheduler")
        try:
            yield
        finally:
            self.scheduler.stop()
            await task

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def build_serve(settings: Settings, warehouse: Warehouse, plan: TrackingPlan, *,
                load_gate: threading.Lock | None = None,
                on_forgotten: Sequence[Callable[[], None]] = (),
                with_qa_route: bool = True) -> ServePart:
    """The serve part over `warehouse` (the writer handle; read-only ones are made here).

    `load_gate`/`on_forgotten` connect forget to a loader in the same process (`up`);
    `with_qa_route` adds /v1/debug/events from the warehouse (`up` has the collector's,
    which merges its ring with this part's `qa` source).
    """
    # Model runs, replays, segment jobs and forget swap or rewrite tables: one at a time
    # in this process (the leases keep other processes off the scheduled ones).
    job_lock = threading.Lock()
    hooks = ForgetHooks(job_lock=job_lock, load_gate=load_gate, on_forgotten=list(on_forgotten))
    # Each route group reads on a connection of its own, so none queues behind another.
    sql_reader, console_reader, analyses_reader, qa_reader = (
        warehouse.readonly(), warehouse.readonly(), warehouse.readonly(), warehouse.readonly())
    qa = warehouse_source(qa_reader)
    lease_handle = people_api.own_handle(warehouse)
    leases = Leases(lease_handle, holder_id("serve"), ttl_seconds=settings.job_lease_seconds)
    routes: list[BaseRoute] = [
        *sql_routes(settings, sql_reader),
        *admin_api.routes(settings, warehouse, job_lock, leases),
        *console_api.routes(settings, console_reader, plan),
        *people_api.routes(settings, warehouse, hooks=hooks),
        *insights_api.routes(settings, warehouse),
        *analyses_routes(settings, analyses_reader, writer=warehouse),
    ]
    if with_qa_route:
        routes.append(Route("/v1/debug/events", debug_endpoint(settings, [qa]),
                            methods=["GET"]))
    scheduler = build_scheduler(settings, warehouse,
                                segments_every_minutes=settings.segments_interval_minutes,
                                models_every_seconds=settings.models_interval_seconds,
                                hooks=hooks, leases=leases)
    handles = [sql_reader, console_reader, analyses_reader, qa_reader]
    if lease_handle is not warehouse:
        handles.append(lease_handle)
    return ServePart(routes, scheduler, hooks, qa, handles)
