"""The scheduler of `up`: daily jobs at a local time (injected clock), periodic jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from funnelhouse.jobs.scheduler import Scheduler

SEOUL = ZoneInfo("Asia/Seoul")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def test_nightly_job_fires_once_per_day_after_its_local_time() -> None:
    clock = FakeClock(datetime(2024, 3, 10, 0, 0, tzinfo=SEOUL))
    fired: list[date] = []
    scheduler = Scheduler(clock=clock)
    scheduler.daily("export", "02:00", "Asia/Seoul", fired.append)

    async def drive() -> None:
        # Three days in 10-minute ticks.
        for _ in range(3 * 24 * 6):
            await scheduler.tick()
            clock.advance(minutes=10)

    asyncio.run(drive())
    assert fired == [date(2024, 3, 10), date(2024, 3, 11), date(2024, 3, 12)]
    # Each fired at its first tick at or after 02:00 Seoul (17:00 UTC the day before).
    times = [started.astimezone(SEOUL) for name, started, _ in scheduler.history]
    assert [(t.hour, t.minute) for t in times] == [(2, 0)] * 3


def test_nightly_job_uses_the_reporting_time_zone_not_utc() -> None:
    # 01:59 Seoul = 16:59 UTC: not yet; 02:00 Seoul: yes — though UTC says 17:00.
    clock = FakeClock(datetime(2024, 3, 9, 16, 59, tzinfo=UTC))
    fired: list[date] = []
    scheduler = Scheduler(clock=clock)
    scheduler.daily("export", "02:00", "Asia/Seoul", fired.append)
    assert asyncio.run(scheduler.tick()) == []
    clock.advance(minutes=1)
    assert asyncio.run(scheduler.tick()) == ["export"]
    assert fired == [date(2024, 3, 10)]
    clock.advance(hours=5)
    assert asyncio.run(scheduler.tick()) == []


def test_restart_after_the_run_does_not_fire_again_and_a_missed_run_catches_up() -> None:
    clock = FakeClock(datetime(2024, 3, 10, 9, 0, tzinfo=SEOUL))
    done_days = {date(2024, 3, 10)}
    fired: list[date] = []
    restarted = Scheduler(clock=clock)
    restarted.daily("export", "02:00", "Asia/Seoul", fired.append, done=done_days.__contains__)
    asyncio.run(restarted.tick())
    assert fired == []
    missed = Scheduler(clock=clock)
    missed.daily("export", "02:00", "Asia/Seoul", fired.append, done=lambda day: False)
    asyncio.run(missed.tick())
    assert fired == [date(2024, 3, 10)]


def test_a_failing_job_is_recorded_and_the_next_day_still_runs() -> None:
    clock = FakeClock(datetime(2024, 3, 10, 2, 0, tzinfo=SEOUL))
    calls: list[date] = []

    def flaky(day: date) -> None:
        calls.append(day)
        if len(calls) == 1:
            raise RuntimeError("disk full")

    scheduler = Scheduler(clock=clock)
    scheduler.daily("export", "02:00", "Asia/Seoul", flaky)
    asyncio.run(scheduler.tick())
    clock.advance(days=1)
    asyncio.run(scheduler.tick())
    assert calls == [date(2024, 3, 10), date(2024, 3, 11)]
    assert [outcome for _, _, outcome in scheduler.history] == ["disk full", "ok"]


def test_periodic_job_runs_every_interval_and_the_loop_stops() -> None:
    clock = FakeClock(datetime(2024, 3, 10, 12, 0, tzinfo=UTC))
    runs: list[datetime] = []

    async def fake_sleep(seconds: float) -> None:
        clock.advance(seconds=seconds)
        if clock.now >= datetime(2024, 3, 10, 13, 0, tzinfo=UTC):
            scheduler.stop()

    scheduler = Scheduler(clock=clock, tick_seconds=60, sleep=fake_sleep)
    scheduler.every("segments", 15 * 60, lambda: runs.append(clock.now), first_after=60)
    asyncio.run(asyncio.wait_for(scheduler.run(), 10))
    assert [r.strftime("%H:%M") for r in runs] == ["12:01", "12:16", "12:31", "12:46"]
