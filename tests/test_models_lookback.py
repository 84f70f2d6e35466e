"""The look-back window rebuilds a day only when its raw rows changed (models/digests.py).

What the window is for: raw rows the received-since watermark cannot see — a batch the
loader committed after a model run had already passed its `received_at`, rows deleted
from events_raw. Those must still reach the tables; days nobody touched must not be
rebuilt on every run.
"""

from __future__ import annotations

from datetime import date, timedelta

from funnelhouse.demo.generator import generate
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.test_models_support import (
    build,
    full_refresh_snapshot,
    insert,
    settings_for,
    snapshot,
    warehouse_with,
)

START = date(2024, 3, 1)
DAYS = 8
TODAY = START + timedelta(days=DAYS - 1)
# What the window rebuilds. The person-level tables learn of their people from the
# received-since watermark (people.py), so a batch committed past the margin reaches
# them only with a later event of the same person or a full refresh (docs/models.md).
BY_DAY = ("behavior_events", "sessions", "product_engagement")


def _by_model(runs) -> dict[str, tuple[str, int]]:
    return {r.model: (r.mode, r.days) for r in runs}


def test_window_days_are_rebuilt_only_when_their_raw_rows_change(tmp_path):
    data = generate(31, 90, DAYS, START)
    settings = settings_for(tmp_path, reporting_tz="Asia/Seoul", lookback_days=2)
    wh = warehouse_with(tmp_path / "inc", data.rows)
    build(wh, settings, today=TODAY)

    # Nothing arrived: no day of the window is rebuilt (it used to be all three). No
    # margin: with one, the history's last minutes of received events count as new.
    quiet = _by_model(build(wh, settings, today=TODAY, received_margin=timedelta(0)))
    for model in BY_DAY:
        assert quiet[model] == ("incremental", 0), quiet

    # A batch the loader committed late: received before the previous run's watermark,
    # so only the window's digest can see it.
    watermark = wh.query("SELECT toString(max(received_at)) FROM events_raw").scalar()
    day = TODAY - timedelta(days=1)
    source = next(r for r in data.rows
                  if r["timestamp"].startswith(day.isoformat()) and r["event"] == "page_view")
    late = [{**source, "message_id": f"late-{n}", "timestamp": f"{day.isoformat()} 0{n}:30:00.000",
             "received_at": "2024-03-01 00:00:00.000"} for n in range(3)]
    assert late[0]["received_at"] < watermark
    insert(wh, late)
    caught = _by_model(build(wh, settings, today=TODAY, received_margin=timedelta(0)))
    assert caught["behavior_events"][0] == "incremental"
    assert 1 <= caught["behavior_events"][1] <= 2, caught  # the late rows' day(s) only
    found = wh.query("SELECT count() FROM behavior_events WHERE startsWith(message_id, 'late-')")
    assert int(found.scalar()) == 3
    caught_tables = snapshot(wh)
    wh.close()  # one chdb folder open per process
    want = full_refresh_snapshot(tmp_path / "full1", data.rows + late, settings)
    assert [n for n in BY_DAY if caught_tables[n] != want[n]] == []

    # Rows deleted from events_raw on a window day: that day is rebuilt without them.
    wh = ChdbWarehouse(tmp_path / "inc")
    wh.execute("DELETE FROM events_raw WHERE message_id = 'late-1'")
    pruned = _by_model(build(wh, settings, today=TODAY, received_margin=timedelta(0)))
    assert 1 <= pruned["behavior_events"][1] <= 2, pruned
    gone = wh.query("SELECT count() FROM behavior_events WHERE message_id = 'late-1'")
    assert int(gone.scalar()) == 0
    pruned_tables = snapshot(wh)
    wh.close()
    kept = [r for r in late if r["message_id"] != "late-1"]
    want = full_refresh_snapshot(tmp_path / "full2", data.rows + kept, settings)
    assert [n for n in BY_DAY if pruned_tables[n] != want[n]] == []


def test_a_since_run_rebuilds_its_days_whatever_their_digest(tmp_path):
    data = generate(32, 60, DAYS, START)
    settings = settings_for(tmp_path, reporting_tz="Asia/Seoul", lookback_days=2)
    wh = warehouse_with(tmp_path / "wh", data.rows)
    build(wh, settings, today=TODAY)
    since = TODAY - timedelta(days=4)
    runs = _by_model(build(wh, settings, today=TODAY, since=since))
    max_day = date.fromisoformat(
        wh.query("SELECT toString(max(event_date)) FROM behavior_events").scalar())
    assert runs["behavior_events"] == ("incremental", (max_day - since).days + 1)
    wh.close()
