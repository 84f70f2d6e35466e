"""The incremental refresh reads what is new, not the history, and forgets stay forgotten.

A fixed new day (new people, received after everything else) is refreshed on top of
histories of different sizes; the rows the by-person models read (their stage builds,
counted by the engine as storage rows read) must not grow with the history.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from funnelhouse.demo.generator import generate, iter_json_batches
from funnelhouse.people.forget import collect_ids, forget
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.test_models import check_incremental_equals_full_refresh
from tests.test_models_support import build, insert, settings_for, snapshot, warehouse_with

START = date(2024, 3, 1)
DAYS = 8
NEW_DAY = START + timedelta(days=DAYS + 5)  # after every late batch of the history
BY_PERSON = ("order_items", "orders", "users", "funnel_stages", "campaign_performance")


class _Recorder:
    """Stands in for the chdb connection: records each statement's storage rows read."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.reads: list[tuple[str, int]] = []

    def query(self, sql: str, *args: Any, **kw: Any) -> Any:
        result = self.conn.query(sql, *args, **kw)
        if result is not None:
            self.reads.append((sql, int(result.storage_rows_read())))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _new_day(people: int) -> list[bytes]:
    return [row for batch in iter_json_batches(99, people, 1, NEW_DAY, batch_rows=5000,
                                               first_person=100_000) for row in batch]


def _stage_rows_read(tmp_path, people: int) -> tuple[int, dict[str, str]]:
    data = generate(21, people, DAYS, START)
    wh = warehouse_with(tmp_path / f"h{people}", data.rows)
    try:
        # one model at a time: the recorder stands in for this handle's connection
        # only, and models built side by side would run on connections of their own
        settings = settings_for(tmp_path, reporting_tz="Asia/Seoul", lookback_days=0,
                                model_threads=1)
        build(wh, settings, today=START + timedelta(days=DAYS))
        wh.execute("SYSTEM STOP MERGES")  # a merge would rewrite parts between the runs
        wh.insert_json_rows("events_raw", _new_day(30))
        recorder = _Recorder(wh._conn)  # type: ignore[attr-defined]
        wh._conn = recorder  # type: ignore[attr-defined]
        runs = build(wh, settings, today=NEW_DAY, received_margin=timedelta(0))
        wh._conn = recorder.conn  # type: ignore[attr-defined]
        modes = {r.model: r.mode for r in runs}
        read = sum(n for sql, n in recorder.reads
                   if "models__people" in sql and "__stage" in sql)
        return read, modes
    finally:
        wh.close()


@pytest.mark.parametrize("people", [80, 450])  # and 250 on both backends in test_models.py
def test_incremental_run_equals_full_refresh_at_other_history_sizes(tmp_path, people):
    check_incremental_equals_full_refresh(tmp_path, ChdbWarehouse, people)


def test_the_by_person_refresh_reads_the_same_rows_whatever_the_history(tmp_path):
    small, modes = _stage_rows_read(tmp_path, 60)
    big, _ = _stage_rows_read(tmp_path, 400)
    assert {modes[m] for m in ("identity_map", *BY_PERSON)} == {"incremental"}, modes
    assert small > 0
    # ~7x the history, the same new day: the stage builds read the same granules
    assert big <= small * 1.2, (small, big)


def test_a_forgotten_person_stays_forgotten_after_an_incremental_run(tmp_path):
    make_warehouse = ChdbWarehouse
    data = generate(22, 120, DAYS, START)
    settings = settings_for(tmp_path, reporting_tz="Asia/Seoul", lookback_days=1)
    wh = warehouse_with(tmp_path / "inc", data.rows, make_warehouse)
    build(wh, settings, today=START + timedelta(days=DAYS))
    victim = next(t for t in data.truth if t.user_ids and t.order_ids)
    ids = sorted(collect_ids(wh, victim.user_ids[0]))
    assert len(ids) >= 2
    forget(wh, victim.user_ids[0])
    day = [row for batch in iter_json_batches(23, 20, 1, NEW_DAY, first_person=50_000)
           for row in batch]
    wh.insert_json_rows("events_raw", day)
    runs = build(wh, settings, today=NEW_DAY)
    assert {r.model: r.mode for r in runs}["users"] == "incremental"
    for table, columns in {"identity_map": ("id", "person_id"),
                           "identity_links": ("previous_id", "user_id"),
                           "users": ("person_id",), "orders": ("person_id",),
                           "funnel_stages": ("person_id",), "order_items": ("person_id",),
                           "behavior_events": ("person_id",)}.items():
        for column in columns:
            found = wh.query(
                f"SELECT count() FROM {table} WHERE has(JSONExtract({{ids:String}}, "
                f"'Array(String)'), {column})", {"ids": orjson.dumps(ids).decode()}).scalar()
            assert not int(found), (table, column)
    incremental = snapshot(wh)
    rest = wh.query("SELECT count() FROM events_raw").scalar()
    wh.close()

    fresh = warehouse_with(tmp_path / "full", [], make_warehouse)
    remaining = [r for r in data.rows
                 if r["user_id"] not in ids and r["anonymous_id"] not in ids
                 and r.get("previous_id", "") not in ids]
    insert(fresh, remaining)
    fresh.insert_json_rows("events_raw", day)
    assert fresh.query("SELECT count() FROM events_raw").scalar() == rest
    build(fresh, settings, full_refresh=True)
    full = snapshot(fresh)
    fresh.close()
    for name in full:
        assert incremental[name] == full[name], f"{name} differs after forget + incremental"


def test_a_run_stopped_after_the_map_swap_still_moves_the_linked_history(tmp_path):
    from tests.test_models_rules import ev

    rows = [
        ev("page_view", "2024-03-01 10:00", anon="old-device"),
        ev("product_view", "2024-03-02 10:00", anon="old-device", product_id="p1"),
        ev("page_view", "2024-03-20 10:00", anon="other"),
    ]
    settings = settings_for(tmp_path, lookback_days=1)
    wh = warehouse_with(tmp_path / "wh", rows)
    try:
        build(wh, settings, today=date(2024, 3, 20))
        late = [ev("identify", "2024-03-21 09:00", anon="old-device", user="u-late")]
        insert(wh, late)
        # a run that swapped the new map in and stopped before recording it
        build(wh, settings, select=["identity_map"], today=date(2024, 3, 21))
        wh.execute("DELETE FROM model_runs WHERE model = 'identity_map' "
                   "AND ran_at = (SELECT max(ran_at) FROM model_runs)")
        runs = build(wh, settings, today=date(2024, 3, 21))
        assert {r.model: r.mode for r in runs}["users"] == "incremental"
        assert not wh.query("SELECT count() FROM identity_map_changes").scalar()
        incremental = snapshot(wh)
    finally:
        wh.close()
    fresh = warehouse_with(tmp_path / "full", rows + late)
    try:
        build(fresh, settings, full_refresh=True)
        full = snapshot(fresh)
    finally:
        fresh.close()
    assert incremental["users"] == full["users"]
    assert incremental == full
