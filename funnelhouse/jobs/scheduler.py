"""A small async scheduler for `serve` and `up`: daily jobs at a local time, periodic jobs.

Two kinds of job are all they need — the nightly sweep and export at `export_time` in
the reporting time zone; model refresh and segment materialisation every N — so this is a loop
that wakes every `tick_seconds`, asks each job whether it is due and runs the due ones
one after another in a worker thread (the warehouse calls block). A cron library would
add parsing for schedules nobody configures here; scaled deployments use real cron
(see docs/marketers.md).

The clock is injected (`clock()` returns an aware datetime), so tests drive days of
schedule in microseconds. A daily job fires once per local date, at the first tick at
or after its time; after a restart, `done(local_date)` tells whether today's run
already happened (the export checks for the day's manifest), so nothing runs twice and
a run missed while stopped is caught up.

Across processes and hosts (several `serve` replicas), a scheduler given `leases`
(warehouse/lease.py) runs a due job only while holding its lease in the warehouse: a
periodic job's lease is its name, a daily job's its name and local date. The lease is
renewed while the job runs and kept afterwards — a periodic job until its next run is
due, a daily one for the rest of the day — so the other replicas, finding it held, do
not run it again; they retry at their next tick (the job stays due), and take it over
if its holder dies (the lease expires after its ttl).
"""

from __future__ import annotations

import asyncio
import logging
import time as _time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("funnelhouse.jobs.scheduler")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DailyJob:
    name: str
    at: time
    tz: ZoneInfo
    run: Callable[[date], Any]                 # gets the local date it fires for
    done: Callable[[date], bool] | None = None
    last_date: date | None = None

    def due(self, now: datetime) -> date | None:
        local = now.astimezone(self.tz)
        today = local.date()
        if self.last_date == today or local.time().replace(tzinfo=None) < self.at:
            return None
        if self.last_date is None and self.done is not None and self.done(today):
            self.last_date = today
            return None
        return today


@dataclass
class PeriodicJob:
    name: str
    every: timedelta
    run: Callable[[], Any]
    next_at: datetime | None = None
    first_after: timedelta = field(default_factory=timedelta)

    def due(self, now: datetime) -> bool:
        if self.next_at is None:
            self.next_at = now + self.first_after
        return now >= self.next_at


class Scheduler:
    def __init__(self, *, clock: Clock = utc_now, tick_seconds: float = 20.0,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 leases: Any = None) -> None:
        self.clock = clock
        self.leases = leases          # warehouse.lease.Leases, or None: this process only
        self.tick_seconds = tick_seconds
        self.jobs: list[DailyJob | PeriodicJob] = []
        self.history: list[tuple[str, datetime, str]] = []   # (job, started, "ok" | error)
        self._stop = asyncio.Event()
        self._sleep = sleep

    def daily(self, name: str, at: str, tz: str, run: Callable[[date], Any], *,
              done: Callable[[date], bool] | None = None) -> DailyJob:
        hour, minute = (int(p) for p in at.split(":"))
        job = DailyJob(name, time(hour, minute), ZoneInfo(tz), run, done)
        self.jobs.append(job)
        return job

    def every(self, name: str, seconds: float, run: Callable[[], Any], *,
              first_after: float = 0.0) -> PeriodicJob:
        job = PeriodicJob(name, timedelta(seconds=seconds), run,
                          first_after=timedelta(seconds=first_after))
        self.jobs.append(job)
        return job

    async def tick(self) -> list[str]:
        """Run every job that is due now; the names of those that ran."""
        fired = []
        for job in self.jobs:
            now = self.clock()
            if isinstance(job, DailyJob):
                day = job.due(now)
                if day is None:
                    continue
                call: Callable[[], Any] = partial(job.run, day)
                key, keep = f"{job.name}/{day.isoformat()}", 26 * 3600.0
            else:
                if not job.due(now):
                    continue
                call, key, keep = job.run, job.name, job.every.total_seconds()
            try:
                ran = await asyncio.to_thread(self._run_leased, key, keep, call)
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the loop
                log.exception("scheduled job %s failed", job.name)
                ran, outcome = True, str(exc)[:300]
            else:
                outcome = "ok"
            if not ran:    # another replica holds it: still due, tried again next tick
                self.history.append((job.name, now, "held elsewhere"))
                continue
            if isinstance(job, DailyJob):
                job.last_date = day
            else:
                job.next_at = now + job.every
            fired.append(job.name)
            self.history.append((job.name, now, outcome))
        return fired

    def _run_leased(self, key: str, keep_seconds: float, call: Callable[[], Any]) -> bool:
        """Run `call` holding the job's lease (if coordinated); False if another holds it."""
        if self.leases is None:
            call()
            return True
        lease = self.leases.try_acquire(key)
        if lease is None:
            return False
        try:
            with lease.keep_alive():
                call()
        finally:
            # Kept whether it succeeded or not: a failed run is retried at its next time,
            # as without leases, not straight away by another replica.
            lease.release(keep_seconds)
        return True

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.tick()
            if self._sleep is not None:
                await self._sleep(self.tick_seconds)
            else:
                try:
                    await asyncio.wait_for(self._stop.wait(), self.tick_seconds)
                except TimeoutError:
                    pass

    def stop(self) -> None:
        self._stop.set()


def build_scheduler(settings: Any, warehouse: Any, *, segments_every_minutes: float = 60,
                    clock: Clock = utc_now, tick_seconds: float = 20.0,
                    hooks: Any = None, models_every_seconds: float = 0,
                    leases: Any = None) -> Scheduler:
    """The jobs of `serve` and `up`: nightly sweep + export at `export_time`, segments
    every N minutes, and (when `models_every_seconds` > 0) the model refresh.

    `hooks` (ForgetHooks) carry the job lock: the sweep swaps tables, the segment job
    writes segment_members and a model run swaps tables, so none of them may run while
    forget or another of them does. `leases` coordinate the jobs across replicas.
    """
    from funnelhouse.api.people import own_handle
    from funnelhouse.jobs.exports import EXPORT_TABLES, export_day
    from funnelhouse.people.forget import ForgetHooks, sweep_forgotten
    from funnelhouse.people.segments import Segments

    writer = own_handle(warehouse)      # long jobs do not hold up the loader's inserts
    reader = warehouse.readonly()
    segments = Segments(writer, settings, reader)
    scheduler = Scheduler(clock=clock, tick_seconds=tick_seconds, leases=leases)
    hooks = hooks or ForgetHooks()

    def nightly_export(local_day: date) -> None:
        day = local_day - timedelta(days=1)
        names = ", ".join(f"'{t}'" for t in EXPORT_TABLES)
        if not reader.query("SELECT count() FROM system.tables WHERE database = "
                            f"currentDatabase() AND name IN ({names})").scalar():
            log.info("nightly export %s: no tables yet (models never ran)", day)
            return
        removed = sweep_forgotten(writer, hooks)
        if removed:
            log.info("forget sweep removed late rows: %s", removed)
        result = export_day(reader, settings.export_dir, day, formats=settings.export_formats,
                            segments=["all"], tz=settings.reporting_tz, now=clock)
        log.info("nightly export %s: %d files, %d errors", day, len(result.files),
                 len(result.errors))

    def exported(local_day: date) -> bool:
        day = local_day - timedelta(days=1)
        return (settings.export_dir / day.isoformat() / "manifest.json").is_file()

    def materialise_segments() -> None:
        with hooks.job_lock:
            segments.materialise_all()

    def refresh_models() -> None:
        from funnelhouse.models.run import run_models

        with hooks.job_lock:
            started = _time.perf_counter()
            runs = run_models(warehouse, settings, progress=log.debug)
            log.info("models refreshed: %d models in %.1fs", len(runs),
                     _time.perf_counter() - started)

    if models_every_seconds > 0:
        # The first refresh one interval after start, as `up` always did.
        scheduler.every("models", models_every_seconds, refresh_models,
                        first_after=models_every_seconds)
    scheduler.daily("nightly-export", settings.export_time, settings.reporting_tz,
                    nightly_export, done=exported)
    if segments_every_minutes > 0:
        scheduler.every("segments", segments_every_minutes * 60,
                        materialise_segments, first_after=60)
    return scheduler
