"""The people behind a trends point, a stickiness bar, a correlation candidate, a page, and
purchase-count groups (alone and as a retention breakdown) agree with the plain-Python
reference, on generated logs with late identifies, several devices, duplicates and local
midnights in a non-UTC zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.analyses import SpecError, run_analysis
from funnelhouse.analyses.cohorts import BUILDERS, save_as_segment
from funnelhouse.analyses.correlation import CorrelationSpec
from funnelhouse.analyses.retention import RetentionSpec
from funnelhouse.analyses.trends import TrendsSpec
from funnelhouse.api import analyses as analyses_api
from funnelhouse.config import Settings
from funnelhouse.people import segments
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.sql_guard import release_limited
from tests.support import analyses_reference as ref
from tests.support.sample import Loaded, loaded_reference
from tests.warehouse_backends import WarehouseMaker

TZ = "America/Los_Angeles"
START = date(2024, 2, 26)
FROM, TO = date(2024, 3, 4), date(2024, 3, 24)
LATE_AS_OF = datetime(2024, 9, 1, tzinfo=UTC)
MID_AS_OF = datetime(2024, 3, 20, 15, tzinfo=UTC)    # inside the range: a cut week
DATES = {"date_from": FROM.isoformat(), "date_to": TO.isoformat()}


ROOT: dict[str, Path] = {}
TOKEN = "people-token"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Loaded]:
    ROOT["root"] = tmp_path_factory.mktemp("result_people")
    with loaded_reference(ROOT["root"], make_warehouse, TZ,
                          seed=17, people=250, days=30, start_date=START) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def saving(data: Loaded) -> Iterator[tuple[Settings, Warehouse]]:
    """The settings of the loaded folder and a read-only handle, closed before the data."""
    settings = Settings(data_dir=ROOT["root"], reporting_tz=TZ, admin_token=TOKEN)
    reader = data.warehouse.readonly()
    try:
        yield settings, reader
    finally:
        release_limited(reader)
        reader.close()


def people(data: Loaded, analysis: str, doc: dict[str, Any], who: str) -> set[str]:
    sql, params = BUILDERS[analysis](data.warehouse, doc, who, TZ)
    return {r[0] for r in data.warehouse.query(sql, params).rows}


# -- trends ---------------------------------------------------------------------------
TREND = {"series": ["page_view|people", "purchase|sum:revenue", "*|dau", "product_view|wau",
                    "add_to_cart"],
         "interval": "week", "breakdown": "device_type", **DATES}


@pytest.mark.parametrize("as_of", [LATE_AS_OF, MID_AS_OF])
def test_trend_point_people_match_reference_and_the_point(data: Loaded, as_of: datetime) -> None:
    doc = {**TREND, "as_of": as_of.isoformat()}
    result = run_analysis("trends", doc, data.warehouse, TZ).to_dict()
    spec = TrendsSpec.from_json(doc)
    as_of_day = as_of.astimezone(ZoneInfo(TZ)).date()
    checked = 0
    for line in result["data"]["series"]:
        if line["breakdown"] == "(other)":
            continue
        series = spec.series[line["series"]]
        letter = "ABCDE"[line["series"]]
        for bucket, value in zip(result["data"]["buckets"], line["values"], strict=True):
            label = line["breakdown"]
            who = f"{letter}@{bucket}" + ("" if label is None else f"={label or '(none)'}")
            got = people(data, "trends", doc, who)
            if series.math in ("dau", "wau", "mau"):
                read = min(date.fromisoformat(bucket) + timedelta(days=6), TO, as_of_day)
                days = {"dau": 1, "wau": 7, "mau": 30}[series.math]
                where = None if label is None else ("device_type", label)
                want = ref.active_people_of(data.events, series.event, days, read, as_of, where)
            else:
                want = ref.trend_people(data.events, series, "week", "device_type", bucket,
                                        label, FROM, TO, as_of, TZ)
            assert got == want, (who, series.label)
            if series.math in ("people", "dau", "wau"):
                assert len(got) == value, who    # the point's own figure
            checked += bool(got)
    assert checked > 20


def test_hourly_point_at_local_midnight(data: Loaded) -> None:
    doc = {"series": ["*|people"], "interval": "hour", "date_from": "2024-03-09",
           "date_to": "2024-03-11", "as_of": LATE_AS_OF.isoformat()}
    spec = TrendsSpec.from_json(doc)
    result = run_analysis("trends", doc, data.warehouse, TZ).to_dict()
    values = dict(zip(result["data"]["buckets"], result["data"]["series"][0]["values"],
                      strict=True))
    seen = 0
    # 2024-03-10 is the spring-forward day in Los Angeles: its 02:00 hour does not exist.
    for bucket in ("2024-03-10 00:00:00", "2024-03-10 23:00:00", "2024-03-11 00:00:00",
                   "2024-03-10 13:00:00"):
        got = people(data, "trends", doc, f"A@{bucket}")
        want = ref.trend_people(data.events, spec.series[0], "hour", None, bucket, None,
                                date(2024, 3, 9), date(2024, 3, 11), LATE_AS_OF, TZ)
        assert got == want and len(got) == values[bucket], bucket
        seen += len(got)
    assert seen > 0


@pytest.mark.parametrize("who", ["F@2024-03-04", "A@2024-03-05", "A@2024-03-04=x",
                                 "A@2024-03-04=(other)", "A2024-03-04"])
def test_trend_who_out_of_the_result_is_refused(data: Loaded, who: str) -> None:
    doc = {"series": ["page_view|people"], "interval": "week", **DATES}
    with pytest.raises(SpecError):
        BUILDERS["trends"](data.warehouse, doc, who, TZ)


# -- stickiness -----------------------------------------------------------------------
@pytest.mark.parametrize("period, as_of", [("week", MID_AS_OF), ("month", LATE_AS_OF)])
def test_stickiness_people_match_reference_and_the_bars(data: Loaded, period: str,
                                                        as_of: datetime) -> None:
    doc = {"event": "product_view", "period": period, **DATES, "as_of": as_of.isoformat()}
    result = run_analysis("stickiness", doc, data.warehouse, TZ).to_dict()
    event = ref.EventSpec.parse("product_view")
    checked = 0
    for row in result["data"]["periods"]:
        start = date.fromisoformat(row["period"])
        for k in (1, 2, 3, 5):
            exactly = people(data, "stickiness", doc, f"exactly:{k}@{row['period']}")
            at_least = people(data, "stickiness", doc, f"at_least:{k}@{row['period']}")
            assert exactly == ref.stickiness_people(data.events, event, period, start, k,
                                                    False, FROM, TO, as_of)
            assert at_least == ref.stickiness_people(data.events, event, period, start, k,
                                                     True, FROM, TO, as_of)
            assert len(exactly) == row["counts"][k - 1]
            assert len(at_least) == sum(row["counts"][k - 1:])
            checked += bool(exactly)
    assert checked > 3
    with pytest.raises(SpecError):
        BUILDERS["stickiness"](data.warehouse, doc, "exactly:3@2024-03-05", TZ)


# -- correlation ----------------------------------------------------------------------
FUNNEL = {"steps": ["product_view", "add_to_cart", "purchase"], "window": "2d", **DATES,
          "as_of": MID_AS_OF.isoformat()}


def test_funnel_correlation_people_match_reference(data: Loaded) -> None:
    doc = {"funnel": FUNNEL, "properties": ["device_type"], "top": 500}
    result = run_analysis("correlation", doc, data.warehouse, TZ).to_dict()
    spec = CorrelationSpec.from_json({**doc, "funnel": {**FUNNEL, "breakdown": "device_type"}})
    assert spec.funnel is not None
    outcomes = ref.funnel_outcome_people(data.events, spec.funnel, FROM, TO, MID_AS_OF)
    converted = {p for p, o in outcomes.items() if o[0]}
    dropped = set(outcomes) - converted
    assert converted and dropped
    assert people(data, "correlation", doc, "converted") == converted
    assert people(data, "correlation", doc, "failure") == dropped
    assert people(data, "correlation", doc, "all") == set(outcomes)
    checked = 0
    for c in result["data"]["candidates"]:
        if c["kind"] == "event":
            suffix = f":event:{c['name']}"
            want = {p for p, o in outcomes.items() if c["name"] in o[1]}
        else:
            suffix = f":property:device_type={c['name']}"
            value = "" if c["name"] == "(none)" else c["name"]
            want = {p for p, o in outcomes.items() if o[2] == value}
        success = people(data, "correlation", doc, "success" + suffix)
        failure = people(data, "correlation", doc, "dropped" + suffix)
        assert success == want & converted and failure == want & dropped, c["name"]
        assert (len(success), len(failure)) == (c["success_with"], c["failure_with"])
        checked += 1
    assert checked > 3
    for bad in ("retained", "success:event:purchase", "success:property:os_name=x"):
        with pytest.raises(SpecError):
            BUILDERS["correlation"](data.warehouse, doc, bad, TZ)


def test_retention_correlation_people_match_reference(data: Loaded) -> None:
    retention = {"cohort": "first_seen", "period": "week", "periods": 1, **DATES,
                 "as_of": LATE_AS_OF.isoformat()}
    doc = {"retention": retention, "retained_period": 1}
    outcomes = ref.retention_outcome_people(data.events, RetentionSpec.from_json(retention),
                                            1, FROM, TO, LATE_AS_OF, TZ)
    retained = {p for p, o in outcomes.items() if o[0]}
    assert retained and set(outcomes) - retained
    assert people(data, "correlation", doc, "retained") == retained
    assert people(data, "correlation", doc, "not_retained") == set(outcomes) - retained
    carted = {p for p, o in outcomes.items() if "add_to_cart" in o[1]}
    assert people(data, "correlation", doc, "retained:event:add_to_cart") == carted & retained
    assert carted & retained


# -- pages ----------------------------------------------------------------------------
@pytest.mark.parametrize("as_of", [LATE_AS_OF, MID_AS_OF])
def test_page_people_match_reference(data: Loaded, as_of: datetime) -> None:
    doc = {"top": 5, **DATES, "as_of": as_of.isoformat()}
    result = run_analysis("pages", doc, data.warehouse, TZ).to_dict()
    assert result["data"]["pages"]
    for page in result["data"]["pages"]:
        for kind in ("viewed", "entered", "exited"):
            got = people(data, "pages", doc, f"{kind}:{page['page']}")
            assert got == ref.page_people(data.events, page["page"], kind, FROM, TO, as_of)
        assert len(people(data, "pages", doc, f"viewed:{page['page']}")) == page["people"]


# -- purchase counts ------------------------------------------------------------------
@pytest.mark.parametrize("groups, day", [([1, 2, 3], "2024-03-24"), ([0, 1, 3], "2024-03-20")])
def test_purchase_groups_match_reference(data: Loaded, groups: list[int], day: str) -> None:
    doc = {"groups": groups, "date_to": day, "as_of": LATE_AS_OF.isoformat()}
    result = run_analysis("purchases", doc, data.warehouse, TZ).to_dict()
    counts = ref.purchase_counts(data.events, date.fromisoformat(day), LATE_AS_OF)
    by_group: dict[str, set[str]] = {}
    for person, n in counts.items():
        by_group.setdefault(ref.purchase_group(n, groups), set()).add(person)
    shown = {g["group"]: g["people"] for g in result["data"]["groups"]}
    assert shown == {g: len(by_group.get(g, set())) for g in shown}
    assert sum(shown.values()) == len(counts)
    assert sum(1 for g in shown if shown[g]) >= 3, shown
    for group in shown:
        assert people(data, "purchases", doc, group) == by_group.get(group, set())
    for n in (1, 2):
        assert people(data, "purchases", doc, f"at_least:{n}") == {
            p for p, c in counts.items() if c >= n}
        assert people(data, "purchases", doc, f"exactly:{n}") == {
            p for p, c in counts.items() if c == n}
    with pytest.raises(SpecError):
        BUILDERS["purchases"](data.warehouse, doc, "7+", TZ)
    # the data resend some purchases (same message_id): each is counted once
    raw = data.warehouse.query("SELECT count() FROM events_raw WHERE event = 'purchase'"
                               ).scalar()
    assert int(raw) > sum(1 for e in data.events if e.event == "purchase")


@pytest.mark.parametrize("cohort, period, fixed, kind", [
    ("first_purchase", "week", None, "first_time"), ("first_seen", "week", None, "first_time"),
    ("first_purchase", "day", "2024-03-14", "first_time"),
    ("first_seen", "month", None, "first_time"),
    ("event:add_to_cart", "week", None, "recurring")])
def test_retention_by_purchase_count_matches_reference(data: Loaded, cohort: str, period: str,
                                                       fixed: str | None, kind: str) -> None:
    doc = {"cohort": cohort, "cohort_type": kind, "period": period, "periods": 3,
           "mode": "on_or_after",
           "breakdown": "purchase_count", "purchase_groups": [1, 2, 3],
           "purchases_as_of": fixed, **DATES, "as_of": MID_AS_OF.isoformat()}
    result = run_analysis("retention", doc, data.warehouse, TZ).to_dict()
    expected = ref.retention_by_purchases(
        data.events, RetentionSpec.from_json(doc), [1, 2, 3],
        date.fromisoformat(fixed) if fixed else None, FROM, TO, MID_AS_OF)
    got = {(c["cohort"], c["breakdown"]): (c["size"], c["counts"])
           for c in result["data"]["cohorts"] if c["breakdown"] is not None}
    assert set(got) == set(expected)
    for key, (size, counts) in expected.items():
        assert got[key][0] == size, key
        # cells of periods not begun at as_of are empty; the others agree
        assert [c for c in got[key][1] if c is not None] \
            == [c for c, shown in zip(counts, got[key][1], strict=True) if shown is not None]
    groups = {g for _, g in expected}
    assert len(groups) >= 2, "the data give more than one purchase group"


def test_bad_purchase_groups_are_refused(data: Loaded) -> None:
    for doc in ({"groups": ["x"]}, {"groups": [-1]}, {"groups": list(range(30))}):
        with pytest.raises(SpecError):
            run_analysis("purchases", doc, data.warehouse, TZ)
    with pytest.raises(SpecError):
        run_analysis("retention", {"breakdown": "purchase_count", "purchases_as_of": "soon"},
                     data.warehouse, TZ)


# -- saved as segments: frozen, live, over HTTP --------------------------------------
def members_of(data: Loaded, settings: Settings, segment_id: str) -> set[str]:
    store = segments.Segments(data.warehouse, settings)
    try:
        return {m["person_id"] for m in store.members(segment_id)}
    finally:
        store.close()


@pytest.mark.parametrize("analysis, doc, who", [
    ("trends", {**TREND, "as_of": LATE_AS_OF.isoformat()}, "C@2024-03-11=mobile"),
    ("stickiness", {"event": "*", "period": "week", **DATES}, "at_least:2@2024-03-18"),
    ("correlation", {"funnel": FUNNEL}, "dropped:event:page_view"),
    ("pages", {**DATES}, "entered:/"),
    ("purchases", {"date_to": "2024-03-24", "groups": [1, 2]}, "2+")])
def test_frozen_segments_hold_the_people_behind_the_figure(data: Loaded, saving, analysis: str,
                                                           doc: dict, who: str) -> None:  # type: ignore[no-untyped-def]
    settings, reader = saving
    expected = people(data, analysis, doc, who)
    assert expected
    saved = save_as_segment(analysis, doc, who, f"{analysis} {who}", reader=reader,
                            writer=data.warehouse, settings=settings)
    assert saved["members"] == len(expected) and "SELECT" in saved["sql"]
    assert members_of(data, settings, saved["segment_id"]) == expected


@pytest.mark.parametrize("analysis, doc, who", [
    ("trends", {"series": ["*|wau"], "interval": "day"}, "A@last"),
    ("stickiness", {"event": "product_view", "period": "week"}, "at_least:1@last"),
    ("pages", {}, "viewed:/"),
    ("correlation", {"funnel": {"steps": ["product_view", "add_to_cart"], "window": "1d"}},
     "converted"),
    ("purchases", {}, "at_least:1")])
def test_live_segments_follow_the_calendar(data: Loaded, saving, analysis: str, doc: dict,
                                           who: str) -> None:  # type: ignore[no-untyped-def]
    """A live segment re-runs its definition over the last N days at each materialisation:
    the same people as the builder over those days, different on different days."""
    settings, reader = saving
    live = save_as_segment(analysis, doc, who, f"live {analysis}", reader=reader,
                           writer=data.warehouse, settings=settings, live=True, last_days=7)
    assert live["live"] is True
    store = segments.Segments(data.warehouse, settings, reader)
    try:
        seen = []
        for day in (date(2024, 3, 10), date(2024, 3, 20)):
            as_of = datetime(day.year, day.month, day.day, 23, tzinfo=ZoneInfo(TZ))
            store.materialise(live["segment_id"], as_of=as_of)
            window = {"date_from": (day - timedelta(days=6)).isoformat(),
                      "date_to": day.isoformat(), "as_of": as_of.isoformat()}
            if analysis == "purchases":   # purchases are counted up to date_to, from the start
                del window["date_from"]
            if analysis == "correlation":
                rolled = {"funnel": {**doc["funnel"], **window}}
            else:
                rolled = {**doc, **window}
            expected = people(data, analysis, rolled, who)
            assert members_of(data, settings, live["segment_id"]) == expected
            seen.append(expected)
        assert seen[0] and seen[1] and seen[0] != seen[1]
    finally:
        store.close()


def test_segments_from_the_new_analyses_over_http(data: Loaded, saving) -> None:  # type: ignore[no-untyped-def]
    settings, reader = saving
    auth = {"Authorization": f"Bearer {TOKEN}"}
    app = Starlette(routes=analyses_api.routes(settings, reader, writer=data.warehouse))
    with TestClient(app) as client:
        groups = client.post("/v1/analyses/purchases", headers=auth,
                             json={"groups": [1, 3], "date_to": "2024-03-24"})
        assert groups.status_code == 200, groups.text
        shown = {g["group"]: g["people"] for g in groups.json()["data"]["groups"]}
        saved = client.post("/v1/analyses/purchases/segment", headers=auth, json={
            "spec": {"groups": [1, 3], "date_to": "2024-03-24"}, "who": "1-2",
            "name": "one or two purchases"})
        assert saved.status_code == 200, saved.text
        assert saved.json()["members"] == shown["1-2"] > 0
        pages = client.post("/v1/analyses/pages/segment", headers=auth, json={
            "spec": DATES, "who": "exited:/", "name": "left from home", "live": True,
            "last_days": 14})
        assert pages.status_code == 200 and pages.json()["live"] is True
        bad = client.post("/v1/analyses/trends/segment", headers=auth, json={
            "spec": {"series": ["*"], **DATES}, "who": "B@2024-03-04", "name": "x"})
        assert bad.status_code == 400 and bad.json()["reason"] == "bad_spec"


def test_retention_correlation_by_purchase_count_matches_reference(data: Loaded) -> None:
    retention = {"cohort": "first_seen", "period": "week", "periods": 1,
                 "purchase_groups": [1, 2], **DATES, "as_of": LATE_AS_OF.isoformat()}
    doc = {"retention": retention, "retained_period": 1, "properties": ["purchase_count"],
           "top": 500}
    result = run_analysis("correlation", doc, data.warehouse, TZ).to_dict()
    outcomes = ref.retention_outcome_people(data.events, RetentionSpec.from_json(retention),
                                            1, FROM, TO, LATE_AS_OF, TZ)
    groups: dict[str, list[int]] = {}
    group_of: dict[str, str] = {}
    for person, (retained, _, _) in outcomes.items():
        mine = sorted((e for e in data.events if e.person_id == person),
                      key=lambda e: e.order_key)
        cut = ref._next_period("week", ref._period_start("week", mine[0].day))
        bought = sum(1 for e in mine if e.event == "purchase" and e.day < cut)
        group_of[person] = ref.purchase_group(bought, [1, 2])
        cell = groups.setdefault(group_of[person], [0, 0])
        cell[0 if retained else 1] += 1
    got = {c["name"]: [c["success_with"], c["failure_with"]]
           for c in result["data"]["candidates"] if c["kind"] == "property"}
    assert got == groups and groups.get("2+", [0, 0])[0] > 0
    assert people(data, "correlation", doc, "retained:property:purchase_count=2+") \
        == {p for p, (retained, _, _) in outcomes.items() if retained and group_of[p] == "2+"}


def test_retention_segments_by_purchase_group_match_reference(data: Loaded) -> None:
    """"3+ buyers who came back in month 1": retention's who with =GROUP."""
    doc = {"cohort": "first_purchase", "period": "week", "periods": 2, "mode": "on",
           "return_event": "purchase", "breakdown": "purchase_count",
           "purchase_groups": [1, 2], **DATES, "as_of": MID_AS_OF.isoformat()}
    members: dict[str, tuple[str, str, list[bool]]] = {}
    ref.retention_by_purchases(data.events, RetentionSpec.from_json(doc), [1, 2], None,
                               FROM, TO, MID_AS_OF, members)
    now = ref._period_start("week", MID_AS_OF.astimezone(ZoneInfo(TZ)).date())
    for group in ("1", "2+"):
        inside = {p for p, m in members.items() if m[1] == group}
        decided = {p for p in inside
                   if ref._periods_between("week", date.fromisoformat(members[p][0]), now) >= 1}
        retained = {p for p in decided if members[p][2][1]}
        assert people(data, "retention", doc, f"cohort={group}") == inside and inside
        assert people(data, "retention", doc, f"retained:1={group}") == retained
        assert people(data, "retention", doc, f"not_retained:1={group}") == decided - retained
    assert any(members[p][2][1] for p in members if members[p][1] == "2+")
    with pytest.raises(SpecError):
        BUILDERS["retention"](data.warehouse, {**doc, "breakdown": None}, "cohort=1", TZ)


def test_purchase_count_rule_agrees_with_the_builder(data: Loaded, saving) -> None:  # type: ignore[no-untyped-def]
    """The rule segments.md gives for "3+ purchases" (behavior_events, event = purchase,
    count >= N) holds the purchases builder's at_least:N people (all history)."""
    settings, reader = saving
    store = segments.Segments(data.warehouse, settings, reader)
    try:
        for n in (2, 3):
            rule = store.create({"name": f"{n}+ purchases (rule)", "containers": [{"groups": [{
                "table": "behavior_events",
                "filters": [{"column": "event", "op": "=", "value": "purchase"}],
                "having": [{"fn": "count", "op": ">=", "value": n}]}]}]})
            store.materialise(rule.segment_id, as_of=LATE_AS_OF)
            built = people(data, "purchases", {"as_of": LATE_AS_OF.isoformat()},
                           f"at_least:{n}")
            assert members_of(data, settings, rule.segment_id) == built and built
    finally:
        store.close()
