"""A late day is rebuilt for the people its new events touch, the rest of it kept
(models/run.py: partial days), and ends exactly as a full refresh builds it.

What would break it: a row of the day the new events do not explain (a batch the loader
committed late, below the previous run's watermark), which only a whole-day rebuild
picks up; and a message whose earliest copy carries someone else's ids, which must keep
winning although only the late person's rows are read.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from funnelhouse.demo.generator import generate
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.test_models_lookback import BY_DAY, DAYS, START, TODAY
from tests.test_models_support import build, insert, settings_for, snapshot, warehouse_with
from tests.test_models_support import full_refresh_snapshot as full_refresh

OLD_DAY = START + timedelta(days=2)  # outside the look-back window of 2 days


def _received_now(wh) -> str:
    """An instant after everything received so far, as a live collector would stamp."""
    return str(wh.query("SELECT toString(max(received_at) + INTERVAL 1 HOUR) "
                        "FROM events_raw").scalar())


def _page_views_on(rows: list[dict], day: date) -> list[dict]:
    return [r for r in rows if r["timestamp"].startswith(day.isoformat())
            and r["event"] == "page_view" and r["anonymous_id"] and not r["user_id"]]


def _late_copy(row: dict, message_id: str, minute: int, received_at: str, **ids: str) -> dict:
    return {**row, "message_id": message_id, "received_at": received_at,
            "timestamp": row["timestamp"][:14] + f"{minute:02d}:00.000", **ids}


def test_a_late_event_rebuilds_only_its_persons_rows_of_the_day(tmp_path):
    data = generate(41, 150, DAYS, START)
    settings = settings_for(tmp_path, reporting_tz="UTC", lookback_days=2)
    wh = warehouse_with(tmp_path / "inc", data.rows)
    build(wh, settings, today=TODAY)
    day_rows = int(wh.query("SELECT count() FROM behavior_events WHERE event_date = "
                            "{d:Date}", {"d": OLD_DAY.isoformat()}).scalar())
    source = _page_views_on(data.rows, OLD_DAY)[0]
    late = [_late_copy(source, f"late-{n}", 50 + n, _received_now(wh)) for n in range(2)]
    insert(wh, late)
    runs = {r.model: r for r in build(wh, settings, today=TODAY,
                                      received_margin=timedelta(0))}

    person = wh.query("SELECT person_id FROM behavior_events WHERE message_id = 'late-0'"
                      ).scalar()
    persons_rows = int(wh.query(
        "SELECT count() FROM behavior_events WHERE event_date = {d:Date} "
        "AND person_id = {p:String}", {"d": OLD_DAY.isoformat(), "p": person}).scalar())
    # one day, and of it only the late person's rows were written again
    assert (runs["behavior_events"].mode, runs["behavior_events"].days) == ("incremental", 1)
    assert runs["behavior_events"].rows == persons_rows < day_rows
    assert runs["sessions"].days == 1
    got = snapshot(wh)
    wh.close()  # one chdb folder open per process
    want = full_refresh(tmp_path / "full", data.rows + late, settings)
    assert [name for name in want if got[name] != want[name]] == []


def test_a_message_whose_first_copy_is_someone_elses_stays_theirs(tmp_path):
    # Two copies of one message id on the old day: the first received carries B's
    # anonymous id, the second (received late, with a late event of A's) carries A's.
    # Only A's rows are rebuilt, yet the message stays B's, as in a whole-day build.
    data = generate(42, 150, DAYS, START)
    views = _page_views_on(data.rows, OLD_DAY)
    a_row = views[0]
    b_row = next(r for r in views if r["anonymous_id"] != a_row["anonymous_id"])
    first = _late_copy(b_row, "twice", 55, b_row["received_at"])
    history = data.rows + [first]
    settings = settings_for(tmp_path, reporting_tz="UTC", lookback_days=2)
    wh = warehouse_with(tmp_path / "inc", history)
    build(wh, settings, today=TODAY)
    persons = wh.query("SELECT uniqExact(person_id) FROM behavior_events "
                       "WHERE message_id IN ({a:String}, 'twice')",
                       {"a": a_row["message_id"]}).scalar()
    assert persons == 2  # A and B are two people
    now = _received_now(wh)
    late = [_late_copy(first, "twice", 55, now, anonymous_id=a_row["anonymous_id"]),
            _late_copy(a_row, "late-a", 56, now)]
    insert(wh, late)
    runs = {r.model: r for r in build(wh, settings, today=TODAY,
                                      received_margin=timedelta(0))}
    assert runs["behavior_events"].days == 1
    owner = wh.query("SELECT groupArray(anonymous_id) FROM behavior_events "
                     "WHERE message_id = 'twice'").scalar()
    assert owner == [b_row["anonymous_id"]]
    got = snapshot(wh)
    wh.close()
    want = full_refresh(tmp_path / "full", history + late, settings)
    assert [name for name in want if got[name] != want[name]] == []


def test_a_day_with_a_late_committed_batch_is_rebuilt_whole(tmp_path):
    # A window day gets a new event of A's and, in the same run, a batch the loader
    # committed late (received before the previous run's watermark) of C's: the new
    # events do not explain the day, so it is rebuilt whole and C's rows arrive too.
    data = generate(43, 150, DAYS, START)
    day = TODAY - timedelta(days=1)
    a_row, c_row = _page_views_on(data.rows, day)[:2]
    settings = settings_for(tmp_path, reporting_tz="UTC", lookback_days=2)
    wh = warehouse_with(tmp_path / "inc", data.rows)
    build(wh, settings, today=TODAY)
    day_rows = int(wh.query("SELECT count() FROM behavior_events WHERE event_date = "
                            "{d:Date}", {"d": day.isoformat()}).scalar())
    watermark = wh.query("SELECT toString(max(received_at)) FROM events_raw").scalar()
    committed_late = _late_copy(c_row, "late-c", 57, c_row["received_at"])
    assert committed_late["received_at"] < watermark
    late = [_late_copy(a_row, "late-a", 58, _received_now(wh)), committed_late]
    insert(wh, late)
    runs = {r.model: r for r in build(wh, settings, today=TODAY,
                                      received_margin=timedelta(0))}
    assert runs["behavior_events"].rows == day_rows + 2  # the whole day, written again
    assert wh.query("SELECT count() FROM behavior_events WHERE message_id = 'late-c'"
                    ).scalar() == 1
    got = snapshot(wh)
    wh.close()
    # the person-level tables learn of C only with C's next event (docs/models.md)
    want = full_refresh(tmp_path / "full", data.rows + late, settings)
    assert [name for name in BY_DAY if got[name] != want[name]] == []


def test_a_run_stopped_between_two_late_days_is_finished_by_the_next(tmp_path, monkeypatch):
    # The process dies after the first late day of a chunk was swapped in, before the
    # second: the next run must finish the job (its record of the model is older, so
    # the days are affected again) and leave every table as a full refresh builds it.

    data = generate(44, 150, DAYS, START)
    settings = settings_for(tmp_path, reporting_tz="UTC", lookback_days=2)
    wh = warehouse_with(tmp_path / "inc", data.rows)
    build(wh, settings, today=TODAY)
    now = _received_now(wh)
    late = [_late_copy(_page_views_on(data.rows, day)[0], f"late-{n}", 50, now)
            for n, day in enumerate((OLD_DAY, OLD_DAY + timedelta(days=1)))]
    insert(wh, late)
    real = ChdbWarehouse.execute

    def dies_on_the_second_day(self, sql, *args, **kwargs):
        # on any connection: late days may be built on one of their own (late_ tables)
        if "REPLACE PARTITION ID" in sql and (OLD_DAY + timedelta(days=1)).strftime(
                "%Y%m%d") in sql and re.search(r"FROM behavior_events__(late_)?stage", sql):
            raise RuntimeError("killed")
        return real(self, sql, *args, **kwargs)

    monkeypatch.setattr(ChdbWarehouse, "execute", dies_on_the_second_day)
    with pytest.raises(RuntimeError, match="killed"):
        build(wh, settings, today=TODAY, received_margin=timedelta(0))
    monkeypatch.setattr(ChdbWarehouse, "execute", real)
    runs = {r.model: r for r in build(wh, settings, today=TODAY,
                                      received_margin=timedelta(0))}
    assert runs["behavior_events"].mode == "incremental"
    got = snapshot(wh)
    wh.close()
    want = full_refresh(tmp_path / "full", data.rows + late, settings)
    assert [name for name in want if got[name] != want[name]] == []
