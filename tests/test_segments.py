"""Segments: union, intersection, exclusion, raw SQL, versions, membership, member export."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from funnelhouse.segments import SegmentError, Segments, from_people, from_sql
from tests.people_support import Built, built_warehouse

AS_OF = datetime(2024, 3, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("segments") / "data") as b:
        yield b


@pytest.fixture(scope="module")
def store(built: Built) -> Segments:
    return Segments(built.warehouse, built.settings)


@pytest.fixture(scope="module")
def events_by_person(built: Built) -> dict[str, list[tuple[str, str]]]:
    """(event, event_at) per person, read plainly — the truth the compiler must match."""
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for person, event, at in built.warehouse.query(
            "SELECT person_id, event, toString(event_at) FROM behavior_events").rows:
        out[person].append((event, at))
    return out


def people_who(events: dict[str, list[tuple[str, str]]], event: str, *, at_least: int = 1,
               since: datetime | None = None) -> set[str]:
    floor = since.strftime("%Y-%m-%d %H:%M:%S.000") if since else ""
    ceiling = AS_OF.strftime("%Y-%m-%d %H:%M:%S.000") if since else "9999"
    return {p for p, evs in events.items()
            if sum(1 for e, at in evs if e == event and floor <= at < ceiling) >= at_least}


def event_group(event: str, **extra: object) -> dict:
    return {"table": "behavior_events", "filters": [{"column": "event", "value": event}], **extra}


def members(store: Segments, segment_id: str) -> set[str]:
    return {m["person_id"] for m in store.members(segment_id)}


def test_groups_in_a_container_intersect_on_person(store: Segments, events_by_person) -> None:
    seg = store.create({"name": "Carted and bought", "containers": [
        {"groups": [event_group("add_to_cart"), event_group("purchase")]}]})
    store.materialise(seg.segment_id, as_of=AS_OF)
    expected = people_who(events_by_person, "add_to_cart") & people_who(events_by_person,
                                                                        "purchase")
    assert expected and members(store, seg.segment_id) == expected


def test_containers_union_and_exclusion_removes(store: Segments, events_by_person) -> None:
    seg = store.create({"name": "Abandoners or searchers", "containers": [
        {"groups": [event_group("add_to_cart"), event_group("purchase", exclude=True)]},
        {"groups": [event_group("search", having=[{"fn": "count", "op": ">=", "value": 2}])]},
    ]})
    result = store.materialise(seg.segment_id, as_of=AS_OF)
    abandoners = people_who(events_by_person, "add_to_cart") - people_who(events_by_person,
                                                                         "purchase")
    searchers = {p for p, evs in events_by_person.items()
                 if sum(1 for e, _ in evs if e == "search") >= 2}
    assert abandoners and searchers - abandoners
    assert members(store, seg.segment_id) == abandoners | searchers
    assert result.members == len(abandoners | searchers)


def test_within_days_counts_only_the_window_before_as_of(store: Segments,
                                                         events_by_person) -> None:
    seg = store.create({"name": "Recent viewers", "containers": [
        {"groups": [event_group("product_view", within_days=3)]}]})
    store.materialise(seg.segment_id, as_of=AS_OF)
    expected = people_who(events_by_person, "product_view", since=AS_OF - timedelta(days=3))
    everyone = people_who(events_by_person, "product_view")
    assert expected and expected < everyone
    assert members(store, seg.segment_id) == expected


def test_filters_on_other_tables_and_json_properties(built: Built, store: Segments) -> None:
    seg = store.create({"name": "Big spenders on running shoes", "containers": [{"groups": [
        {"table": "order_items", "filters": [
            {"column": "product_category", "op": "starts_with", "value": "Shoes/"},
            {"column": "price", "op": ">=", "value": 50000}]},
        {"table": "behavior_events", "filters": [
            {"column": "event", "value": "purchase"},
            {"column": "properties.currency", "op": "in", "value": ["KRW", "USD"]}]},
    ]}]})
    store.materialise(seg.segment_id, as_of=AS_OF)
    expected = {r[0] for r in built.warehouse.query(
        "SELECT person_id FROM order_items WHERE startsWith(product_category, 'Shoes/') "
        "AND price >= 50000 INTERSECT DISTINCT SELECT person_id FROM behavior_events "
        "WHERE event = 'purchase' AND JSONExtractString(properties, 'currency') IN ('KRW', 'USD')"
    ).rows}
    assert expected and members(store, seg.segment_id) == expected


def test_raw_sql_segment_equals_its_query(built: Built, store: Segments) -> None:
    sql = "SELECT person_id FROM sessions WHERE landing_medium = {medium:String} -- paid only"
    seg = store.create({"name": "Paid landers", "sql": sql, "params": {"medium": "paid"}})
    store.materialise(seg.segment_id)
    expected = {r[0] for r in built.warehouse.query(
        "SELECT DISTINCT person_id FROM sessions WHERE landing_medium = 'paid'").rows}
    assert expected and members(store, seg.segment_id) == expected


def test_raw_sql_that_writes_is_refused_by_the_engine(store: Segments) -> None:
    for sql in ("INSERT INTO segments (segment_id) VALUES ('x')",
                "SELECT * FROM file('/etc/passwd', 'LineAsString')",
                "SELECT event, session_id FROM behavior_events"):
        with pytest.raises(SegmentError) as refused:
            store.create({"name": "bad", "sql": sql})
        assert refused.value.path == "$.sql"


@pytest.mark.parametrize(("definition", "path"), [
    ({"name": "x", "containers": [{"groups": [{"table": "nope"}]}]},
     "$.containers[0].groups[0].table"),
    ({"name": "x", "containers": [{"groups": [{"table": "sessions",
                                               "filters": [{"column": "nope", "value": 1}]}]}]},
     "$.containers[0].groups[0].filters[0].column"),
    ({"name": "x", "containers": [{"groups": [event_group("click", exclude=True)]}]},
     "$.containers[0]"),
    ({"name": "x", "containers": [{"groups": [{"table": "sessions", "filters": [
        {"column": "channel", "op": "like", "value": "a"}]}]}]},
     "$.containers[0].groups[0].filters[0].op"),
    ({"containers": []}, "$.name"),
])
def test_invalid_definitions_name_the_json_path(store: Segments, definition: dict,
                                                path: str) -> None:
    with pytest.raises(SegmentError) as refused:
        store.create(definition)
    assert refused.value.path == path


def test_membership_by_person_user_or_anonymous_id(built: Built, store: Segments) -> None:
    person = next(t for t in built.data.truth if t.user_ids and t.order_ids
                  and len(t.anonymous_ids) > 1)
    other = next(t for t in built.data.truth if not t.user_ids)
    seg, _ = from_people(built.warehouse, built.settings, "One person",
                         [person.anonymous_ids[-1]])
    for any_id in [person.person_id, *person.user_ids, *person.anonymous_ids]:
        answer = store.membership(seg.segment_id, any_id)
        assert answer["member"] is True and answer["person_id"] == person.person_id, any_id
    assert store.membership(seg.segment_id, other.person_id)["member"] is False
    with pytest.raises(SegmentError):
        store.membership("no-such-segment", person.person_id)


def test_a_new_version_changes_members_and_history_keeps_both(store: Segments,
                                                              events_by_person) -> None:
    seg = store.create({"name": "Versioned", "containers": [{"groups": [event_group("login")]}]})
    first = store.materialise(seg.segment_id, as_of=AS_OF)
    updated = store.update(seg.segment_id, {"name": "Versioned", "containers": [
        {"groups": [event_group("signup")]}]})
    second = store.materialise(seg.segment_id, as_of=AS_OF)
    logins = people_who(events_by_person, "login")
    signups = people_who(events_by_person, "signup")
    assert updated.version == 2 and second.version == 2
    assert members(store, seg.segment_id) == signups
    assert second.added == len(signups - logins) and second.removed == len(logins - signups)
    history = store.history(seg.segment_id)
    assert [h["version"] for h in history] == [1, 2]
    assert [h["members"] for h in history] == [first.members, second.members]
    assert [v["version"] for v in store.versions(seg.segment_id)] == [1, 2]
    assert store.get(seg.segment_id, 1).definition["containers"][0]["groups"][0][
        "filters"][0]["value"] == "login"


def test_snapshot_kpis_count_buyers_among_members(built: Built, store: Segments) -> None:
    seg, _ = from_sql(built.warehouse, built.settings, "Buyers",
                      "SELECT person_id FROM orders")
    history = store.history(seg.segment_id)
    buyers = built.warehouse.query("SELECT uniqExact(person_id) FROM orders").scalar()
    assert history[-1]["members"] == buyers and history[-1]["buyers"] == buyers


def test_frozen_sql_segment_keeps_its_people(built: Built, store: Segments) -> None:
    seg, result = from_sql(built.warehouse, built.settings, "Dropped at checkout",
                           "SELECT person_id FROM sessions WHERE reached_checkout = 1 "
                           "AND reached_purchase = 0", freeze=True,
                           origin={"analysis": "funnel", "step": 3})
    assert seg.kind == "people" and seg.definition["origin"]["step"] == 3
    assert result.members == len(members(store, seg.segment_id)) > 0


def test_full_member_export_lists_every_member(store: Segments) -> None:
    seg = store.create({"name": "Viewers", "containers": [{"groups": [event_group("page_view")]}]})
    store.materialise(seg.segment_id)
    rows = list(csv.DictReader(io.StringIO(store.members_raw(seg.segment_id,
                                                             "CSVWithNames").decode())))
    assert {r["person_id"] for r in rows} == members(store, seg.segment_id)
    assert all(r["user_id"] in ("", r["person_id"]) for r in rows)


def test_deleting_a_segment_drops_its_members(store: Segments) -> None:
    seg = store.create({"name": "Short lived", "containers": [{"groups": [event_group("click")]}]})
    assert store.materialise(seg.segment_id).members > 0
    store.delete(seg.segment_id)
    assert seg.segment_id not in {s["segment_id"] for s in store.list()}
    with pytest.raises(SegmentError):
        store.members(seg.segment_id)


def test_materialise_all_and_list(store: Segments, tmp_path: Path) -> None:
    done = store.materialise_all(as_of=AS_OF)
    listed = {s["segment_id"]: s for s in store.list()}
    assert {d.segment_id for d in done} == set(listed)
    assert all(d.members >= 0 for d in done)
    assert all(s["members"] is not None for s in listed.values())
