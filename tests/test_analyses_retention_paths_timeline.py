"""Retention, paths and the user timeline agree with the plain-Python reference."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from funnelhouse.analyses import PathsSpec, RetentionSpec, SpecError, TimelineSpec
from funnelhouse.analyses.common import EventSpec
from funnelhouse.analyses.paths import run_paths
from funnelhouse.analyses.retention import run_retention
from funnelhouse.analyses.timeline import run_timeline
from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.warehouse.base import Warehouse
from tests.support import analyses_reference as ref
from tests.support.sample import load_rows, person_and_session_of
from tests.warehouse_backends import WarehouseMaker

TZ = "America/Los_Angeles"
START = date(2024, 2, 26)
FROM, TO = date(2024, 2, 26), date(2024, 3, 24)
LATE_AS_OF = datetime(2024, 9, 1, tzinfo=UTC)


class Data:
    def __init__(self, warehouse: Warehouse, events: list[ref.Event], truth: list) -> None:
        self.warehouse = warehouse
        self.events = events
        self.truth = truth


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Data]:
    root = tmp_path_factory.mktemp("retention")
    settings = Settings(data_dir=root, reporting_tz=TZ)
    generated = generate(seed=5, people=300, days=35, start_date=START)
    warehouse = make_warehouse(settings.warehouse_dir)
    try:
        load_rows(warehouse, settings, generated.rows)
        person_of, session_of = person_and_session_of(warehouse)
        yield Data(warehouse, ref.events_from_raw(generated.rows, TZ, person_of, session_of),
                   generated.truth)
    finally:
        warehouse.close()


def check_retention(data: Data, spec: RetentionSpec, as_of: datetime = LATE_AS_OF) -> dict:
    spec = RetentionSpec(**{**spec.__dict__, "date_from": FROM, "date_to": TO, "as_of": as_of})
    result = run_retention(data.warehouse, spec, TZ)
    expected = ref.retention(data.events, spec, FROM, TO, as_of)
    got = {(c["cohort"], c["breakdown"]): c for c in result.data["cohorts"]}
    assert set(got) == set(expected)
    for key, (size, counts) in expected.items():
        assert got[key]["size"] == size, key
        observed = [c for c in got[key]["counts"] if c is not None]
        assert observed == counts[:len(observed)], key
    assert expected, "no cohorts: the test data do not exercise anything"
    return result.to_dict()


def test_daily_first_seen_retention_on_matches_reference(data: Data) -> None:
    doc = check_retention(data, RetentionSpec(period="day", periods=14, mode="on"))
    assert "calendar day in America/Los_Angeles" in " ".join(doc["notes"])
    first = doc["data"]["cohorts"][0]
    assert first["counts"][0] == first["size"]      # everyone is seen on their first day


def test_weekly_unbounded_retention_with_breakdown_matches_reference(data: Data) -> None:
    check_retention(data, RetentionSpec(period="week", periods=4, mode="on_or_after",
                                        breakdown="device_type"))


@pytest.mark.parametrize("nth", [2, 3])
def test_nth_purchase_cohorts_match_reference(data: Data, nth: int) -> None:
    """A hypermarket's "after the 3rd purchase" cohort: the day of each person's Nth
    purchase (earlier history counts), returning to buy again."""
    doc = check_retention(data, RetentionSpec(cohort="first_purchase", nth=nth, period="week",
                                              periods=3, return_event=EventSpec("purchase")))
    assert sum(c["size"] for c in doc["data"]["cohorts"] if c["breakdown"] is None) > 0


def test_first_purchase_cohort_with_return_event_matches_reference(data: Data) -> None:
    check_retention(data, RetentionSpec(cohort="first_purchase", period="week", periods=3,
                                        return_event=EventSpec("product_view")))


def test_recurring_event_cohorts_match_reference(data: Data) -> None:
    check_retention(data, RetentionSpec(cohort="event:add_to_cart", cohort_type="recurring",
                                        period="day", periods=10, mode="on_or_after",
                                        return_event=EventSpec.parse("purchase"),
                                        breakdown="channel"))


def test_more_than_31_periods_and_monthly(data: Data) -> None:
    doc = check_retention(data, RetentionSpec(period="day", periods=45))
    assert len(doc["columns"]) == 2 + 46
    check_retention(data, RetentionSpec(period="month", periods=2))


def test_periods_not_begun_at_as_of_are_empty(data: Data) -> None:
    as_of = datetime(2024, 3, 20, 12, tzinfo=UTC)
    doc = check_retention(data, RetentionSpec(period="week", periods=6), as_of=as_of)
    last = doc["data"]["cohorts"][-1]
    assert last["counts"][0] is not None and last["counts"][-1] is None
    assert doc["rows"][-1][0] == "(all cohorts)"


def test_retention_spec_errors() -> None:
    with pytest.raises(SpecError):
        RetentionSpec(period="fortnight")
    with pytest.raises(SpecError):
        RetentionSpec(cohort="first_love")
    with pytest.raises(SpecError):
        RetentionSpec.from_json({"periods": "many"})


# -- paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/sale", "/", "Home", "/category/shoes"])
def test_paths_match_reference(data: Data, page: str) -> None:
    spec = PathsSpec(page=page, top=1000, date_from=FROM, date_to=TO, as_of=LATE_AS_OF)
    result = run_paths(data.warehouse, spec, TZ)
    expected = ref.paths(data.events, spec, FROM, TO, LATE_AS_OF)
    got = {("total", page): {k: result.summary[k] for k in ("views", "sessions", "people",
                                                           "converted_sessions")}}
    for side in ("came_from", "went_to"):
        for entry in result.data[side]:
            got[(side, entry["page"])] = {k: entry[k] for k in ("views", "sessions", "people",
                                                               "converted_sessions")}
    if not expected:
        assert result.summary["views"] == 0
        return
    assert got == expected
    assert result.summary["exits"] == expected.get(("went_to", "(exit)"), {}).get("views", 0)


def test_paths_top_limits_each_side(data: Data) -> None:
    spec = PathsSpec(page="/sale", top=2, date_from=FROM, date_to=TO, as_of=LATE_AS_OF)
    result = run_paths(data.warehouse, spec, TZ)
    assert len(result.data["came_from"]) == 2 and len(result.data["went_to"]) == 2
    assert [r[0] for r in result.rows] == ["came_from"] * 2 + ["went_to"] * 2


# -- timeline -------------------------------------------------------------------------
def test_timeline_of_any_id_shows_every_device_in_order(data: Data) -> None:
    person = next(t for t in data.truth if len(t.anonymous_ids) > 1 and t.user_ids)
    person_id = next(e.person_id for e in data.events
                     if e.columns["anonymous_id"] == person.anonymous_ids[-1])
    expected = ref.timeline(data.events, person_id)
    for some_id in (person.anonymous_ids[-1], person_id):
        result = run_timeline(data.warehouse, TimelineSpec(person=some_id, limit=10_000), TZ)
        mids = [row[result.columns.index("message_id")] for row in result.rows]
        assert mids == expected
        assert result.summary["person_id"] == person_id
    assert len({e.columns["anonymous_id"] for e in data.events if e.person_id == person_id
                and e.columns["anonymous_id"]}) > 1


def test_timeline_limit_and_unknown_person(data: Data) -> None:
    some = data.events[0].person_id
    result = run_timeline(data.warehouse, TimelineSpec(person=some, limit=2), TZ)
    assert len(result.rows) == min(2, len(ref.timeline(data.events, some)))
    assert run_timeline(data.warehouse, TimelineSpec(person="nobody"), TZ).rows == []
