"""Trends and active people agree with the plain-Python reference, on generated logs with
late identifies, several devices, duplicates and local midnights (a non-UTC zone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from funnelhouse.analyses import SpecError, StickinessSpec, TrendsSpec
from funnelhouse.analyses.stickiness import run_stickiness
from funnelhouse.analyses.trends import ACTIVE, OTHER, buckets, last_day, run_trends
from funnelhouse.config import Settings
from funnelhouse.models.run import run_models
from tests.support import analyses_reference as ref
from tests.support.sample import Loaded, loaded_reference
from tests.warehouse_backends import WarehouseMaker

TZ = "America/Los_Angeles"
START = date(2024, 2, 26)
FROM, TO = date(2024, 3, 4), date(2024, 3, 24)
LATE_AS_OF = datetime(2024, 9, 1, tzinfo=UTC)


Data = Loaded


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Data]:
    with loaded_reference(tmp_path_factory.mktemp("trends"), make_warehouse, TZ,
                          seed=11, people=250, days=30, start_date=START) as loaded:
        yield loaded


def trend(data: Data, doc: dict, as_of: datetime = LATE_AS_OF, date_from: date = FROM,
          date_to: date = TO) -> dict:
    spec = TrendsSpec.from_json({**doc, "date_from": date_from.isoformat(),
                                 "date_to": date_to.isoformat(), "as_of": as_of.isoformat()})
    return run_trends(data.warehouse, spec, TZ).to_dict()


def check_counted(data: Data, doc: dict, as_of: datetime = LATE_AS_OF) -> dict:
    result = trend(data, doc, as_of)
    spec = TrendsSpec.from_json(doc)
    bucket_list = result["data"]["buckets"]
    checked = 0
    for line in result["data"]["series"]:
        series = spec.series[line["series"]]
        expected = ref.trend_counts(data.events, series, spec.interval, spec.breakdown,
                                    FROM, TO, as_of, TZ)
        if line["breakdown"] == OTHER:
            continue
        for bucket, value in zip(bucket_list, line["values"], strict=True):
            want = expected.get((bucket, line["breakdown"]))
            if want is None:
                assert value in (0, None), (series.label, bucket, line["breakdown"], value)
            else:
                assert value == pytest.approx(want, rel=1e-9, abs=1e-6), (
                    series.label, bucket, line["breakdown"])
                checked += 1
    assert checked > 0, "the data do not exercise the series"
    return result


@pytest.mark.parametrize("interval", ["hour", "day", "week", "month"])
def test_totals_people_sessions_per_interval_match_reference(data: Data, interval: str) -> None:
    check_counted(data, {"interval": interval, "series": [
        "page_view", "*|people", "product_view|sessions"]})


def test_property_sums_and_averages_match_reference(data: Data) -> None:
    result = check_counted(data, {"interval": "week", "series": [
        "purchase|sum:revenue", "purchase|avg:revenue", "purchase|min:revenue",
        {"event": "purchase", "math": "max", "property": "revenue", "label": "biggest order"}]})
    assert result["columns"][1:5] == ["purchase · sum(revenue)", "purchase · avg(revenue)",
                                      "purchase · min(revenue)", "biggest order"]


def test_breakdown_and_filters_match_reference(data: Data) -> None:
    result = check_counted(data, {"interval": "day", "breakdown": "device_type", "series": [
        "product_view:product_category~a", "*|people"]})
    values = {ln["breakdown"] for ln in result["data"]["series"]}
    assert None in values and len(values) > 2
    # The all-values line is the sum of the values for additive maths.
    first = [ln for ln in result["data"]["series"] if ln["series"] == 0]
    everyone = next(ln for ln in first if ln["breakdown"] is None)["values"]
    parts = [ln["values"] for ln in first if ln["breakdown"] is not None]
    assert everyone == [sum(p[k] or 0 for p in parts) for k in range(len(everyone))]


def test_top_ten_values_and_the_rest_as_other(data: Data) -> None:
    result = trend(data, {"interval": "week", "breakdown": "person_id",
                          "series": ["page_view", "page_view|people"]})
    lines = [ln for ln in result["data"]["series"] if ln["series"] == 0]
    labels = [ln["breakdown"] for ln in lines]
    assert labels[0] is None and labels[-1] == OTHER and len(labels) == 12
    everyone = lines[0]["values"]
    assert everyone == [sum(ln["values"][k] or 0 for ln in lines[1:])
                        for k in range(len(everyone))]
    people_other = next(ln for ln in result["data"]["series"]
                        if ln["series"] == 1 and ln["breakdown"] == OTHER)
    assert set(people_other["values"]) == {None}      # unique counts do not add up


def test_active_people_match_reference(data: Data) -> None:
    as_of = datetime(2024, 3, 20, 17, 30, tzinfo=UTC)   # mid-range: later days cut
    result = trend(data, {"interval": "day", "series": ["*|dau", "*|wau", "purchase|mau"]},
                   as_of=as_of)
    as_of_day = as_of.astimezone(ZoneInfo(TZ)).date()
    spec = TrendsSpec.from_json({"series": ["*|dau", "*|wau", "purchase|mau"]})
    for line in result["data"]["series"]:
        series = spec.series[line["series"]]
        for bucket, value in zip(result["data"]["buckets"], line["values"], strict=True):
            on_day = last_day("day", bucket, TO, as_of_day)
            assert value == ref.active_people(data.events, series.event, ACTIVE[series.math],
                                              on_day, as_of), (series.label, bucket)
    dau = result["data"]["series"][0]["values"]
    wau = result["data"]["series"][1]["values"]
    assert all(d <= w for d, w in zip(dau, wau, strict=True)) and max(dau) > 0


def test_active_people_per_breakdown_value_match_reference(data: Data) -> None:
    result = trend(data, {"interval": "day", "breakdown": "device_type",
                          "series": ["*|wau", "product_view|mau"]})
    spec = TrendsSpec.from_json({"series": ["*|wau", "product_view|mau"]})
    checked = 0
    for line in result["data"]["series"]:
        if line["breakdown"] == OTHER:
            continue
        series = spec.series[line["series"]]
        where = None if line["breakdown"] is None else ("device_type", line["breakdown"])
        for bucket, value in zip(result["data"]["buckets"], line["values"], strict=True):
            assert value == ref.active_people(data.events, series.event, ACTIVE[series.math],
                                              date.fromisoformat(bucket), LATE_AS_OF, where), (
                series.label, line["breakdown"], bucket)
            checked += 1
    assert checked > 40


def test_weekly_active_read_on_each_weeks_last_day(data: Data) -> None:
    result = trend(data, {"interval": "week", "series": ["*|wau"]})
    spec = TrendsSpec.from_json({"series": ["*|wau"]})
    for bucket, value in zip(result["data"]["buckets"], result["data"]["series"][0]["values"],
                             strict=True):
        on_day = min(date.fromisoformat(bucket) + timedelta(days=6), TO)
        assert value == ref.active_people(data.events, spec.series[0].event, 7, on_day,
                                          LATE_AS_OF)


def test_incomplete_buckets_are_flagged(data: Data) -> None:
    as_of = datetime(2024, 3, 13, 20, 0, tzinfo=UTC)    # Wednesday 13:00 in Los Angeles
    result = trend(data, {"interval": "week", "series": ["page_view"]}, as_of=as_of)
    flags = dict(zip(result["data"]["buckets"], result["data"]["incomplete"], strict=True))
    assert flags["2024-03-04"] is False
    assert flags["2024-03-11"] is True                  # the week as_of falls in
    assert flags["2024-03-18"] is True
    # Events after as_of are not counted.
    check_counted(data, {"interval": "week", "series": ["page_view"]}, as_of=as_of)


def test_compare_with_previous_period_and_formula(data: Data) -> None:
    result = trend(data, {"interval": "day", "compare": True, "formula": "B / A * 100",
                          "series": ["product_view|people", "purchase|people"]})
    previous = result["data"]["previous"]
    span = (TO - FROM).days + 1
    prev_from = FROM - timedelta(days=span)
    spec = TrendsSpec.from_json({"series": ["product_view|people"]})
    expected = ref.trend_counts(data.events, spec.series[0], "day", None, prev_from,
                                FROM - timedelta(days=1), LATE_AS_OF, TZ)
    line = previous[0]
    assert line["buckets"][0] == prev_from.isoformat()
    for bucket, value in zip(line["buckets"], line["values"], strict=True):
        assert value == expected.get((bucket, None), 0)
    views, buys = (result["data"]["series"][i]["values"] for i in (0, 1))
    for a, b, f in zip(views, buys, result["data"]["formula"], strict=True):
        assert f == (None if not a else pytest.approx(b / a * 100))


@pytest.mark.parametrize("formula", ["__import__('os')", "A.real", "A ** 2", "C + 1",
                                     "A; B", "lambda: 1", "A if B else 1"])
def test_formulas_are_arithmetic_only(formula: str) -> None:
    with pytest.raises(SpecError):
        TrendsSpec.from_json({"series": ["page_view", "purchase"], "formula": formula})


@pytest.mark.parametrize("doc", [
    {"series": []}, {"series": ["page_view|median"]}, {"series": ["purchase|sum"]},
    {"series": ['"purchase|people']},      # an event name's quote never closed
    {"series": ["page_view"], "interval": "year"},
    {"series": ["page_view"], "date_from": "2024-03-02", "date_to": "2024-03-01"},
    {"series": [f"e{i}" for i in range(11)]},
])
def test_bad_specs_are_refused(doc: dict) -> None:
    with pytest.raises(SpecError):
        TrendsSpec.from_json(doc)


@pytest.mark.parametrize(("text", "value", "math", "prop"), [
    ('purchase:coupon="A|B"|sum:revenue', "A|B", "sum", "revenue"),
    ('purchase:coupon="A|B"', "A|B", "total", None),
    ('purchase:coupon="say \\"x|y\\""|people', 'say "x|y"', "people", None),
    ("purchase:coupon=AB|avg:revenue", "AB", "avg", "revenue"),
    # a quote never closed is a character (as the step parser reads it): the bar splits
    ('purchase:coupon="A|sum:revenue', '"A', "sum", "revenue"),
])
def test_a_quoted_bar_belongs_to_the_value_not_the_math(text: str, value: str, math: str,
                                                          prop: str | None) -> None:
    series = TrendsSpec.from_json({"series": [text]}).series[0]
    assert (series.event.filters[0].value, series.math, series.property) == (value, math, prop)
    # and the series' own text reads back to it
    again = TrendsSpec.from_json({"series": [series.to_json()]}).series[0]
    assert again == series


def test_bucket_lists_cover_the_range_including_empty_ones() -> None:
    assert buckets("week", date(2024, 3, 6), date(2024, 3, 19)) == [
        "2024-03-04", "2024-03-11", "2024-03-18"]
    assert buckets("month", date(2024, 1, 31), date(2024, 3, 1)) == [
        "2024-01-01", "2024-02-01", "2024-03-01"]
    assert len(buckets("hour", date(2024, 3, 9), date(2024, 3, 10))) == 48


@pytest.mark.parametrize(("period", "event"), [("week", "*"), ("month", "product_view")])
def test_stickiness_distribution_matches_reference(data: Data, period: str, event: str
                                                   ) -> None:
    as_of = datetime(2024, 3, 21, 3, 0, tzinfo=UTC)
    spec = StickinessSpec.from_json({"event": event, "period": period,
                                     "date_from": FROM.isoformat(), "date_to": TO.isoformat(),
                                     "as_of": as_of.isoformat()})
    result = run_stickiness(data.warehouse, spec, TZ).to_dict()
    expected = ref.stickiness(data.events, spec.event, period, FROM, TO, as_of)
    got = {p["period"]: p["counts"] for p in result["data"]["periods"] if any(p["counts"])}
    assert got == expected and expected
    # DAU/MAU from the same definition as the reference's active people.
    as_of_day = as_of.astimezone(ZoneInfo(TZ)).date()
    ratios = []
    day = FROM
    while day <= min(TO, as_of_day):
        mau = ref.active_people(data.events, spec.event, 30, day, as_of)
        if mau:
            ratios.append(100 * ref.active_people(data.events, spec.event, 1, day, as_of) / mau)
        day += timedelta(days=1)
    assert result["summary"]["dau_mau_pct"] == pytest.approx(sum(ratios) / len(ratios),
                                                             abs=0.006)


# Last in the file: it builds the sessions model into the shared warehouse, after which
# "active by any event" is read from sessions instead of the events.
def test_any_event_activity_read_from_sessions_matches_reference(
        data: Data, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("sessions"), reporting_tz=TZ)
    run_models(data.warehouse, settings, full_refresh=True, select=["sessions"])
    as_of = datetime(2024, 3, 20, 17, 30, tzinfo=UTC)
    result = trend(data, {"interval": "day", "series": ["*|dau", "*|wau", "*|mau"]},
                   as_of=as_of)
    assert "FROM sessions" in result["sql"]
    as_of_day = as_of.astimezone(ZoneInfo(TZ)).date()
    spec = TrendsSpec.from_json({"series": ["*|dau", "*|wau", "*|mau"]})
    for line in result["data"]["series"]:
        series = spec.series[line["series"]]
        for bucket, value in zip(result["data"]["buckets"], line["values"], strict=True):
            on_day = last_day("day", bucket, TO, as_of_day)
            assert value == ref.active_people(data.events, series.event, ACTIVE[series.math],
                                              on_day, as_of), (series.label, bucket)
    for period in ("week", "month"):
        sticky = StickinessSpec.from_json({"event": "*", "period": period,
                                           "date_from": FROM.isoformat(),
                                           "date_to": TO.isoformat(),
                                           "as_of": as_of.isoformat()})
        answer = run_stickiness(data.warehouse, sticky, TZ).to_dict()
        assert "FROM sessions" in answer["sql"]
        got = {p["period"]: p["counts"] for p in answer["data"]["periods"] if any(p["counts"])}
        expected = ref.stickiness(data.events, sticky.event, period, FROM, TO, as_of)
        assert got == expected and expected
