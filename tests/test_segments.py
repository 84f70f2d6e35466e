"""Segments: union, intersection, exclusion, raw SQL, versions, membership, member export."""

from __future__ import annotations

import argparse
import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import people as people_api
from funnelhouse.cli.people import register
from funnelhouse.people.segments import SegmentError, Segments, from_people, from_sql
from tests.people_support import Built, built_warehouse
from tests.warehouse_backends import WarehouseMaker

AS_OF = datetime(2024, 3, 15, tzinfo=UTC)


def main(argv: list[str]) -> int:
    """`funnelhouse …` with only this module's commands (cli.py wires them the same way)."""
    parser = argparse.ArgumentParser(prog="funnelhouse")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
          ) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("segments") / "data",
                         make=make_warehouse) as b:
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


def period_truth(built: Built, people: set[str], start: datetime, end: datetime) -> dict:
    """The KPIs of a set of people over [start, end), from plain rows of the tables."""
    fmt = "%Y-%m-%d %H:%M:%S.000"
    lo, hi = start.strftime(fmt), end.strftime(fmt)
    sessions = built.warehouse.query(
        "SELECT person_id, toString(started_at) FROM sessions").rows
    orders = built.warehouse.query(
        "SELECT person_id, toString(ordered_at), toFloat64(revenue) FROM orders").rows
    in_period = [(p, r) for p, at, r in orders if p in people and lo <= at < hi]
    return {"people": len(people),
            "active": len({p for p, at in sessions if p in people and lo <= at < hi}),
            "buyers": len({p for p, _ in in_period}), "orders": len(in_period),
            "revenue": sum(r for _, r in in_period)}


def test_segment_kpis_beside_all_users_and_the_previous_period(
        built: Built, store: Segments, monkeypatch: pytest.MonkeyPatch) -> None:
    seg, _ = from_sql(built.warehouse, built.settings, "Carted",
                      "SELECT DISTINCT person_id FROM behavior_events "
                      "WHERE event = 'add_to_cart'")
    as_of, days = AS_OF, 7
    doc = store.compare(seg.segment_id, as_of=as_of, days=days)
    carted = members(store, seg.segment_id)
    everyone = {r[0] for r in built.warehouse.query(
        "SELECT person_id FROM users WHERE first_seen_at < {t:DateTime64(3, 'UTC')}",
        {"t": as_of.strftime("%Y-%m-%d %H:%M:%S.000")}).rows}
    week = timedelta(days=days)
    for who, people, end in (("segment", carted, as_of), ("all_users", everyone, as_of),
                             ("segment_previous", carted, as_of - week)):
        truth = period_truth(built, people, end - week, end)
        got = doc[who]
        assert {k: got[k] for k in ("people", "active", "buyers", "orders")} == {
            k: truth[k] for k in ("people", "active", "buyers", "orders")}, who
        assert got["revenue"] == pytest.approx(truth["revenue"], abs=0.01), who
    assert doc["segment"]["buyers"] > 0 and doc["all_users"]["people"] > doc["segment"]["people"]
    # The CLI prints the three side by side.
    if built.settings.clickhouse_url:  # the CLI finds the server as a deployment would
        monkeypatch.setenv("FUNNELHOUSE_CLICKHOUSE_URL", built.settings.clickhouse_url)
    assert main(["segment", "compare", seg.segment_id, "--days", "7", "--as-of",
                 as_of.isoformat(), "--data-dir", str(built.settings.data_dir),
                 "--format", "json"]) == 0


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


# -- HTTP API and CLI ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    app = Starlette(routes=people_api.routes(built.settings, built.warehouse))
    with TestClient(app, headers={"Authorization": "Bearer admintok"}) as client:
        yield client


def test_api_needs_the_admin_token(api: TestClient) -> None:
    assert api.get("/v1/segments", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_api_creates_materialises_and_answers_membership(api: TestClient, built: Built,
                                                         events_by_person) -> None:
    created = api.post("/v1/segments", json={"name": "API carts", "containers": [
        {"groups": [event_group("add_to_cart")]}]})
    assert created.status_code == 200, created.text
    body = created.json()
    segment_id = body["segment"]["segment_id"]
    assert "FROM behavior_events" in body["sql"] and body["params"]
    expected = people_who(events_by_person, "add_to_cart")
    assert body["materialisation"]["members"] == len(expected)
    member = sorted(expected)[0]
    answer = api.get(f"/v1/segments/{segment_id}/members/{member}").json()
    assert answer["member"] is True and answer["sql"].startswith("SELECT person_id")
    outsider = next(p for p in events_by_person if p not in expected)
    assert api.get(f"/v1/segments/{segment_id}/members/{outsider}").json()["member"] is False
    assert api.get("/v1/segments/nope/members/x").status_code == 404
    export = api.get(f"/v1/segments/{segment_id}/members", params={"format": "csv"})
    assert {r["person_id"] for r in csv.DictReader(io.StringIO(export.text))} == expected
    assert len(api.get(f"/v1/segments/{segment_id}/members", params={"limit": 3}).json()[
        "members"]) == 3
    assert api.post(f"/v1/segments/{segment_id}/materialise").status_code == 200
    history = api.get(f"/v1/segments/{segment_id}/history").json()["history"]
    assert [h["members"] for h in history] == [len(expected)] * 2
    shown = api.get(f"/v1/segments/{segment_id}").json()
    assert shown["segment"]["version"] == 1 and shown["last"]["members"] == len(expected)


def test_api_refuses_bad_definitions_with_their_path(api: TestClient) -> None:
    refused = api.post("/v1/segments", json={"name": "x", "containers": [{"groups": [
        {"table": "sessions", "filters": [{"column": "nope", "value": 1}]}]}]})
    assert refused.status_code == 400
    assert refused.json()["path"] == "$.containers[0].groups[0].filters[0].column"
    assert api.post("/v1/segments", json={"name": "x", "sql": "DROP TABLE users"}
                    ).status_code == 400
    assert api.post("/v1/segments", content=b"{").status_code == 400


def test_api_saves_segments_from_people_and_sql(api: TestClient, built: Built) -> None:
    person = built.data.truth[3]
    saved = api.post("/v1/segments/from-people", json={
        "name": "Exited at /cart", "people": person.anonymous_ids,
        "origin": {"analysis": "paths", "page": "/cart", "side": "exit"}}).json()
    assert saved["materialisation"]["members"] == 1
    from_query = api.post("/v1/segments/from-sql", json={
        "name": "Converted", "sql": "SELECT person_id FROM orders", "freeze": True}).json()
    assert from_query["segment"]["kind"] == "people"


def test_api_signals_show_their_sql(api: TestClient) -> None:
    answer = api.get("/v1/signals/co-bought", params={"min_orders": "1", "as_of": "2024-03-15"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] and "order_items" in answer.json()["sql"]
    assert api.get("/v1/signals/nope").status_code == 400
    assert api.get("/v1/signals/due", params={"bogus": "1"}).status_code == 400


def test_cli_lists_shows_checks_and_prints_sql(built: Built, capsys: pytest.CaptureFixture,
                                               events_by_person,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if built.settings.clickhouse_url:  # the CLI finds the server as a deployment would
        monkeypatch.setenv("FUNNELHOUSE_CLICKHOUSE_URL", built.settings.clickhouse_url)
    data_dir = str(built.settings.data_dir)
    assert main(["segment", "create", "--data-dir", data_dir, "--name", "CLI viewers",
                 "--json", orjson.dumps({"containers": [
                     {"groups": [event_group("product_view")]}]}).decode(),
                 "--show-sql"]) == 0
    out, err = capsys.readouterr()
    assert "cli-viewers" in out and "FROM behavior_events" in err
    assert main(["segment", "list", "--data-dir", data_dir, "--format", "json"]) == 0
    listed = orjson.loads(capsys.readouterr().out)
    assert "cli-viewers" in {s["segment_id"] for s in listed}
    member = sorted(people_who(events_by_person, "product_view"))[0]
    assert main(["segment", "check", "cli-viewers", member, "--data-dir", data_dir]) == 0
    assert "True" in capsys.readouterr().out
    assert main(["segment", "check", "cli-viewers", "nobody", "--data-dir", data_dir]) == 3
    capsys.readouterr()
    assert main(["segment", "members", "cli-viewers", "--data-dir", data_dir,
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["person_id"] for r in rows} == people_who(events_by_person, "product_view")
    assert main(["signals", "repurchase", "--data-dir", data_dir, "--level", "category",
                 "--min-repeat-buyers", "1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("category,category_name,buyers")
    assert main(["segment", "show", "nope", "--data-dir", data_dir]) == 2
