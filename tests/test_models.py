"""The SQL models equal the plain-Python reference, table by table, on generated logs;
incremental runs after late events equal a full refresh; running twice changes nothing.
On both backends (`make_warehouse`: chdb, and a ClickHouse server through clickhouse-connect)."""

from __future__ import annotations

from datetime import date

import pytest

from funnelhouse.demo.generator import generate
from funnelhouse.models.run import load_models
from tests.support.reference import build_reference
from tests.test_models_support import (
    MODEL_TABLES,
    assert_matches_reference,
    build,
    insert,
    settings_for,
    snapshot,
    warehouse_with,
)

START = date(2024, 3, 1)


@pytest.mark.parametrize(
    ("seed", "people", "days", "tz", "gap"),
    [
        (1, 150, 10, "UTC", 30),
        (2, 250, 14, "Asia/Seoul", 30),
        (3, 200, 12, "America/Los_Angeles", 30),
        (4, 120, 7, "Asia/Seoul", 10),
    ],
)
def test_models_equal_reference(tmp_path, make_warehouse, seed, people, days, tz, gap):
    data = generate(seed, people, days, START)
    wh = warehouse_with(tmp_path / "wh", data.rows, make_warehouse)
    build(wh, settings_for(tmp_path, reporting_tz=tz, session_gap_minutes=gap))
    assert_matches_reference(wh, build_reference(data.rows, tz, gap))


def test_generated_log_plants_what_the_models_must_handle(tmp_path):
    data = generate(5, 300, 14, START)
    channels = {r["channel"] for r in data.rows}
    events = {r["event"] for r in data.rows}
    assert channels == {"web", "app", "server", "offline"}
    assert {
        "identify",
        "alias",
        "purchase",
        "staff_qr_scan",
        "store_visit",
        "app_install",
    } <= events
    assert data.duplicate_message_ids and data.late_message_ids
    assert {r["timezone"] for r in data.rows} == {"Asia/Seoul", "America/Los_Angeles"}
    assert any(
        r["original_timestamp"][:13] != r["timestamp"][:13] for r in data.rows
    )  # skewed clocks
    assert generate(5, 300, 14, START).rows == data.rows  # deterministic


def test_generated_people_resolve_to_their_planted_person(tmp_path, make_warehouse):
    data = generate(6, 200, 10, START)
    wh = warehouse_with(tmp_path / "wh", data.rows, make_warehouse)
    build(wh, settings_for(tmp_path))
    persons = {r[0]: r[1] for r in wh.query("SELECT id, person_id FROM identity_map").rows}
    for person in data.truth:
        ids = person.anonymous_ids + person.user_ids
        resolved = {persons.get(i, i) for i in ids if i in persons}
        # A device that never identified stays its own person; every linked id is the person.
        linked = {r for r in resolved if not r or r in person.user_ids}
        assert linked <= {person.person_id}, (person, resolved)
        got_orders = {
            r[0]
            for r in wh.query(
                "SELECT order_id FROM orders WHERE person_id = {p:String}", {"p": person.person_id}
            ).rows
        }
        assert set(person.order_ids) <= got_orders


def test_incremental_run_with_late_events_equals_full_refresh(tmp_path, make_warehouse):
    # more history sizes, on chdb: tests/test_models_incremental.py
    check_incremental_equals_full_refresh(tmp_path, make_warehouse, 250)


def check_incremental_equals_full_refresh(tmp_path, make_warehouse, people: int) -> None:
    """Late events and late identifies, refreshed incrementally == a full refresh."""
    data = generate(7, people, 12, START)
    cutoff = "2024-03-09 00:00:00.000"
    early = [r for r in data.rows if r["received_at"] < cutoff]
    late = [r for r in data.rows if r["received_at"] >= cutoff]
    assert any(r["timestamp"] < cutoff for r in late), "the split must hold late events"
    settings = settings_for(tmp_path, reporting_tz="Asia/Seoul", lookback_days=2)

    wh = warehouse_with(tmp_path / "inc", early, make_warehouse)
    # small chunks here, one chunk for the full refresh below: chunking changes nothing
    build(wh, settings, today=date(2024, 3, 8), chunk_rows=1500)
    insert(wh, late)
    runs = build(wh, settings, today=date(2024, 3, 13), chunk_rows=1000)
    modes = {r.model: r.mode for r in runs}
    # the map merges what is new; the person-level tables rebuild the affected people
    assert {modes[m] for m in ("identity_map", "behavior_events", "users", "orders",
                               "order_items", "funnel_stages", "campaign_touches",
                               "campaign_performance")} == {
        "incremental"}, modes
    incremental = snapshot(wh)
    wh.close()

    fresh = warehouse_with(tmp_path / "full", data.rows, make_warehouse)
    build(fresh, settings, full_refresh=True)
    full = snapshot(fresh)
    for name in full:
        assert incremental[name] == full[name], f"{name} differs after the incremental run"
    assert_matches_reference(fresh, build_reference(data.rows, "Asia/Seoul", 30))


def test_running_twice_changes_nothing(tmp_path, make_warehouse):
    data = generate(8, 150, 8, START)
    wh = warehouse_with(tmp_path / "wh", data.rows, make_warehouse)
    settings = settings_for(tmp_path, reporting_tz="Asia/Seoul")
    build(wh, settings)
    first = snapshot(wh)
    runs = build(wh, settings, today=date(2024, 3, 8))
    assert snapshot(wh) == first
    assert [r.mode for r in runs if r.model == "sessions"] == ["incremental"]
    build(wh, settings, full_refresh=True)
    assert snapshot(wh) == first


def test_since_and_select_rebuild_only_what_is_asked(tmp_path, make_warehouse):
    data = generate(9, 100, 8, START)
    wh = warehouse_with(tmp_path / "wh", data.rows, make_warehouse)
    settings = settings_for(tmp_path)
    build(wh, settings)
    runs = build(wh, settings, since=date(2024, 3, 6), select=["behavior_events", "sessions"])
    assert [(r.model, r.mode) for r in runs] == [
        ("behavior_events", "incremental"),
        ("sessions", "incremental"),
    ]
    max_day = wh.query("SELECT max(event_date) FROM behavior_events").scalar()
    assert runs[0].days == (date.fromisoformat(max_day) - date(2024, 3, 6)).days + 1
    # no staging table is left behind
    assert not [r[0] for r in wh.query("SHOW TABLES").rows if "__" in r[0]]


def test_models_declare_dependencies_in_order():
    from funnelhouse.config import PACKAGE_ROOT

    models = load_models(PACKAGE_ROOT / "sql" / "models")
    names = [m.name for m in models]
    assert set(names) == set(MODEL_TABLES)
    for i, m in enumerate(models):
        assert all(names.index(d) < i for d in m.depends_on), m.name


@pytest.mark.parametrize("applied_record", [True, False])
def test_a_late_identify_moves_old_days_even_after_a_map_only_run(tmp_path, make_warehouse,
                                                                  applied_record):
    from tests.test_models_rules import ev

    rows = [
        ev("page_view", "2024-03-01 10:00", anon="old-device"),
        ev("page_view", "2024-03-20 10:00", anon="other"),
    ]
    wh = warehouse_with(tmp_path / "wh", rows, make_warehouse)
    settings = settings_for(tmp_path, lookback_days=1)
    build(wh, settings, today=date(2024, 3, 20))
    # weeks later the old device identifies; only the map is rebuilt at first
    insert(wh, [ev("identify", "2024-03-21 09:00", anon="old-device", user="u-late")])
    build(wh, settings, select=["identity_map"], today=date(2024, 3, 21))
    if not applied_record:  # a table built before the links it was built with were kept
        wh.execute("DROP TABLE behavior_events_identity")
    runs = build(wh, settings, today=date(2024, 3, 21))
    events = {r.model: r for r in runs}["behavior_events"]
    assert events.mode == "incremental"
    persons = wh.query(
        "SELECT event_date, person_id FROM behavior_events WHERE anonymous_id = 'old-device' "
        "ORDER BY event_at"
    ).rows
    assert persons == [["2024-03-01", "u-late"], ["2024-03-21", "u-late"]]
    assert wh.query("SELECT person_id, sessions FROM users WHERE person_id = 'u-late'").rows == [
        ["u-late", 2]
    ]


def test_changing_the_reporting_time_zone_rebuilds_every_day(tmp_path, make_warehouse):
    data = generate(10, 60, 5, START)
    wh = warehouse_with(tmp_path / "wh", data.rows, make_warehouse)
    build(wh, settings_for(tmp_path, reporting_tz="UTC"))
    runs = build(wh, settings_for(tmp_path, reporting_tz="Asia/Seoul"), today=date(2024, 3, 5))
    # the identity map does not depend on the time zone: it merges what is new
    assert {r.mode for r in runs if r.model != "identity_map"} == {"full"}
    assert_matches_reference(wh, build_reference(data.rows, "Asia/Seoul", 30))


def test_scratch_steps_are_named_per_model_and_checked(tmp_path):
    ddl = "CREATE TABLE IF NOT EXISTS {{ this }} (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
    (tmp_path / "m.sql").write_text(
        ddl
        + "CREATE TABLE {{ scratch:ids }} ENGINE = Memory AS SELECT 1 AS x;\n"
        + "CREATE TABLE {{ scratch }} ENGINE = Memory AS SELECT x FROM {{ scratch:ids }};\n"
        + "SELECT x FROM {{ scratch }}\n"
    )
    (model,) = load_models(tmp_path)
    assert model.statements() == ([
        "CREATE TABLE m__ids ENGINE = Memory AS SELECT 1 AS x",
        "CREATE TABLE m__scratch ENGINE = Memory AS SELECT x FROM m__ids",
    ], "SELECT x FROM m__scratch")
    # a second lane building the same model at once names its tables apart
    assert model.statements("late_") == ([
        "CREATE TABLE m__late_ids ENGINE = Memory AS SELECT 1 AS x",
        "CREATE TABLE m__late_scratch ENGINE = Memory AS SELECT x FROM m__late_ids",
    ], "SELECT x FROM m__late_scratch")
    (tmp_path / "m.sql").write_text(ddl + "DROP TABLE events_raw;\nSELECT 1 AS x\n")
    with pytest.raises(ValueError, match="scratch"):
        load_models(tmp_path)
