"""A small async scheduler for `funnelhouse up`: daily jobs at a local time, periodic jobs.

Two kinds of job are all `up` needs — the nightly export at `export_time` in the
reporting time zone, and segment materialisation every N minutes — so this is a loop
that wakes every `tick_seconds`, asks each job whether it is due and runs the due ones
one after another in a worker thread (the warehouse calls block). A cron library would
add parsing for schedules nobody configures here; scaled deployments use real cron
(see docs/marketers.md).

The clock is injected (`clock()` returns an aware datetime), so tests drive days of
schedule in microseconds. A daily job fires once per local date, at the first tick at
or after its time; after a restart, `done(local_date)` tells whether today's run
already happened (the export checks for the day's manifest), so nothing runs twice and
a run missed while stopped is caught up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
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
                 sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        self.clock = clock
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
                job.last_date = day
                call: Callable[[], Any] = lambda job=job, day=day: job.run(day)  # noqa: E731
            else:
                if not job.due(now):
                    continue
                job.next_at = now + job.every
                call = job.run
            fired.append(job.name)
            try:
                await asyncio.to_thread(call)
                self.history.append((job.name, now, "ok"))
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the loop
                log.exception("scheduled job %s failed", job.name)
                self.history.append((job.name, now, str(exc)[:300]))
        return fired

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
                    hooks: Any = None) -> Scheduler:
    """The jobs of `up`: nightly sweep + export at `export_time`, segments every N minutes.

    `hooks` (ForgetHooks) carry the job lock: the sweep swaps tables and the segment
    job writes segment_members, so neither may run while forget or a model run does.
    """
    from funnelhouse.api.people import own_handle
    from funnelhouse.jobs.exports import EXPORT_TABLES, export_day
    from funnelhouse.people.forget import ForgetHooks, sweep_forgotten
    from funnelhouse.people.segments import Segments

    writer = own_handle(warehouse)      # long jobs do not hold up the loader's inserts
    reader = warehouse.readonly()
    segments = Segments(writer, settings, reader)
    scheduler = Scheduler(clock=clock, tick_seconds=tick_seconds)
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

    scheduler.daily("nightly-export", settings.export_time, settings.reporting_tz,
                    nightly_export, done=exported)
    if segments_every_minutes > 0:
        scheduler.every("segments", segments_every_minutes * 60,
                        materialise_segments, first_after=60)
    return scheduler
