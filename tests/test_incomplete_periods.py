"""Periods still in progress at as_of are flagged and kept out of averages (issue 19):
retention cells and the "(all cohorts)" row, and the campaigns' daily trend.

The expectations are computed here from moments in the reporting time zone (a period is
incomplete when it starts at or before as_of and ends after it), not from the code's own
period arithmetic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.analyses.campaigns import CampaignQuery, campaign_performance
from funnelhouse.analyses.retention import RetentionSpec, run_retention
from funnelhouse.api import console as console_api
from funnelhouse.collector.plan import TrackingPlan
from tests.people_support import START, Built, built_warehouse

TZ = "Asia/Seoul"          # UTC+9: a UTC day and a reporting day differ
ZONE = ZoneInfo(TZ)
FROM, TO = START, START + timedelta(days=13)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("incomplete") / "data", tz=TZ) as b:
        yield b


def local(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=ZONE)


def period_bounds(period: str, cohort: date, k: int) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of period k of a cohort, as moments in the time zone."""
    if period == "day":
        first = cohort + timedelta(days=k)
        return local(first), local(first + timedelta(days=1))
    if period == "week":
        first = cohort + timedelta(days=7 * k)
        return local(first), local(first + timedelta(days=7))
    month = cohort.month - 1 + k
    first = date(cohort.year + month // 12, month % 12 + 1, 1)
    month += 1
    return local(first), local(date(cohort.year + month // 12, month % 12 + 1, 1))


def retention(built: Built, period: str, as_of: datetime, **spec: object) -> dict:
    doc = RetentionSpec(period=period, periods=spec.pop("periods", 6),  # type: ignore[arg-type]
                        date_from=FROM, date_to=TO, as_of=as_of, **spec)  # type: ignore[arg-type]
    return run_retention(built.warehouse, doc, TZ).to_dict()


def check_flags_and_average(doc: dict, period: str, as_of: datetime) -> tuple[int, int]:
    """Asserts every cell's incomplete flag and the all-cohorts row; returns how many cells
    were incomplete and how many complete."""
    cohorts = doc["data"]["cohorts"]
    assert cohorts, "no cohorts: the test data exercise nothing"
    incomplete_cells = complete_cells = 0
    for c in cohorts:
        start_day = date.fromisoformat(c["cohort"])
        for k, count in enumerate(c["counts"]):
            start, end = period_bounds(period, start_day, k)
            begun, ended = start <= as_of, end <= as_of
            assert (count is not None) == begun, (c["cohort"], k)
            assert c["incomplete"][k] == (begun and not ended), (c["cohort"], c["breakdown"], k)
            if c["breakdown"] is None and begun:
                if ended:
                    complete_cells += 1
                else:
                    incomplete_cells += 1
    totals = [c for c in cohorts if c["breakdown"] is None]
    expected: list[float | None] = []
    for k in range(len(totals[0]["counts"])):
        over = [c for c in totals
                if period_bounds(period, date.fromisoformat(c["cohort"]), k)[1] <= as_of]
        size = sum(c["size"] for c in over)
        returned = sum(c["counts"][k] for c in over)
        expected.append(round(100.0 * returned / size, 2) if size else None)
    assert doc["data"]["overall_pcts"] == expected
    last = doc["rows"][-1]
    assert last[0] == "(all cohorts)"
    assert last[-len(expected):] == expected
    assert any("incomplete" in note and "ended" in note for note in doc["notes"])
    return incomplete_cells, complete_cells


def test_retention_days_mid_day(built: Built) -> None:
    as_of = local(START + timedelta(days=9), 12)
    doc = retention(built, "day", as_of, periods=7)
    running, done = check_flags_and_average(doc, "day", as_of)
    assert running >= 5 and done > 0
    # The in-progress diagonal is kept (people who came back so far), only flagged.
    today = [c for c in doc["data"]["cohorts"] if c["breakdown"] is None
             and c["cohort"] == (START + timedelta(days=9)).isoformat()]
    assert today and today[0]["counts"][0] == today[0]["size"] and today[0]["incomplete"][0]


def test_retention_weeks_mid_week_with_breakdown(built: Built) -> None:
    as_of = local(date(2024, 3, 13), 18)      # a Wednesday
    doc = retention(built, "week", as_of, periods=3, breakdown="device_type")
    running, done = check_flags_and_average(doc, "week", as_of)
    assert running >= 2 and done > 0
    assert any(c["breakdown"] is not None and any(c["incomplete"])
               for c in doc["data"]["cohorts"])


def test_retention_month_in_progress_has_no_average(built: Built) -> None:
    as_of = local(date(2024, 3, 20), 8)
    doc = retention(built, "month", as_of, periods=2)
    check_flags_and_average(doc, "month", as_of)
    assert doc["data"]["overall_pcts"] == [None, None, None]


@pytest.mark.parametrize("period", ["day", "week"])
def test_retention_as_of_exactly_at_a_period_end(built: Built, period: str) -> None:
    """Monday 00:00 in the time zone: the day (and week) before ended exactly at as_of,
    so it is complete; the one starting at that moment has begun and is incomplete.
    A millisecond earlier the day before is still in progress."""
    monday = date(2024, 3, 11)
    at_end = local(monday)
    doc = retention(built, period, at_end, periods=6)
    check_flags_and_average(doc, period, at_end)
    by_cohort = {c["cohort"]: c for c in doc["data"]["cohorts"]}
    if period == "day":
        sunday = by_cohort[(monday - timedelta(days=1)).isoformat()]
        assert sunday["incomplete"][:2] == [False, True]
        before = at_end - timedelta(milliseconds=1)
        doc_before = retention(built, period, before, periods=6)
        check_flags_and_average(doc_before, period, before)
        sunday = {c["cohort"]: c for c in doc_before["data"]["cohorts"]}[
            (monday - timedelta(days=1)).isoformat()]
        assert sunday["incomplete"][0] and sunday["counts"][1] is None
        assert doc["data"]["overall_pcts"] != doc_before["data"]["overall_pcts"]
    else:
        week = by_cohort[(monday - timedelta(days=7)).isoformat()]
        assert week["incomplete"][:2] == [False, True]


# -- campaigns --------------------------------------------------------------------------
def test_campaign_trend_flags_today_not_yesterday(built: Built) -> None:
    # 20:00 UTC on the 8th is 05:00 on the 9th in Seoul: the 9th is today, the 8th ended.
    as_of = datetime(2024, 3, 8, 20, tzinfo=UTC)
    today, yesterday = "2024-03-09", "2024-03-08"
    answer = campaign_performance(built.warehouse, CampaignQuery(FROM, TO, trend_campaigns=100),
                                  TZ, as_of)
    days = {r["day"] for r in answer["trend"]}
    assert {today, yesterday} <= days, "the data have campaign traffic on both days"
    for r in answer["trend"]:
        assert r["incomplete"] == (r["day"] >= today), r
    assert answer["incomplete_days"] == sorted(d for d in days if d >= today)
    assert answer["as_of"].startswith("2024-03-08 20:00:00")
    assert any("incomplete" in n for n in answer["notes"])


def test_campaign_trend_of_past_days_is_complete(built: Built) -> None:
    answer = campaign_performance(built.warehouse, CampaignQuery(FROM, TO), TZ)
    assert answer["trend"] and not any(r["incomplete"] for r in answer["trend"])
    assert answer["incomplete_days"] == []


def test_campaigns_endpoint_uses_the_reporting_time_zone(built: Built) -> None:
    settings = built.settings
    app = Starlette(routes=console_api.routes(settings, built.warehouse.readonly(),
                                              TrackingPlan.load(settings.plan_dir)))
    with TestClient(app) as client:
        doc = client.get("/v1/campaigns?date_from=2024-03-01&date_to=2024-03-14",
                         headers={"Authorization": "Bearer admintok"}).json()
    assert doc["reporting_tz"] == TZ
    assert doc["incomplete_days"] == [] and all(r["incomplete"] is False for r in doc["trend"])
