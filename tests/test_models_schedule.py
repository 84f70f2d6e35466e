"""Models built side by side: what waits for what, how many at once, failures, and the
tables they leave (the same as one model at a time)."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from funnelhouse.config import PACKAGE_ROOT
from funnelhouse.demo.generator import generate
from funnelhouse.models.run import PLAN_UPSTREAM, load_models, run_models
from funnelhouse.models.schedule import build_side_by_side
from tests.test_models_support import build, insert, settings_for, snapshot, warehouse_with

START = date(2024, 3, 1)


class _Connection:
    """Stands in for a warehouse handle: the scheduler only opens and closes siblings."""

    def __init__(self, opened: list[_Connection]) -> None:
        self.opened = opened
        self.closed = False

    def sibling(self) -> _Connection:
        self.opened.append(_Connection(self.opened))
        return self.opened[-1]

    def close(self) -> None:
        self.closed = True


class _Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.most = 0
        self.connections: dict[str, _Connection] = {}

    def record(self, kind: str, name: str, connection: Any = None) -> None:
        with self.lock:
            self.events.append((kind, name))
            if kind == "start":
                assert not any(c is connection for n, c in self.connections.items()
                               if n in self.running), f"{name} got a connection in use"
                self.connections[name] = connection
                self.running.add(name)
                self.most = max(self.most, len(self.running))
            else:
                self.running.discard(name)

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


def test_a_model_starts_after_what_it_waits_for_and_independent_ones_run_at_once():
    # b and c both wait for a only: they must be built at the same time (each waits
    # for the other at a barrier, which fails if they ran one after the other)
    waits = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
    barrier = threading.Barrier(2, timeout=20)
    log, opened = _Log(), []
    main = _Connection(opened)

    def build_one(name: str, connection: _Connection) -> str:
        log.record("start", name, connection)
        if name in ("b", "c"):
            barrier.wait()
        log.record("end", name)
        return name.upper()

    assert build_side_by_side(["a", "b", "c", "d"], waits, main, 2, build_one) == [
        "A", "B", "C", "D"]
    for name, before in waits.items():
        for other in before:
            assert log.index("end", other) < log.index("start", name), (other, name)
    assert log.most == 2
    assert len(opened) == 1 and opened[0].closed and not main.closed
    assert log.connections["b"] is not log.connections["c"]


def test_one_thread_builds_in_the_given_order_on_the_one_connection():
    opened: list[_Connection] = []
    main = _Connection(opened)
    seen: list[tuple[str, _Connection]] = []
    build_side_by_side(["x", "y", "z"], {"z": {"x"}}, main, 1,
                       lambda name, conn: seen.append((name, conn)))
    assert seen == [("x", main), ("y", main), ("z", main)]
    assert not opened


def test_at_most_threads_models_at_once():
    log, opened = _Log(), []
    names = [f"m{i}" for i in range(8)]
    build_side_by_side(names, {}, _Connection(opened), 3,
                       lambda name, conn: (log.record("start", name, conn),
                                           log.record("end", name)))
    assert 1 <= log.most <= 3
    assert len(opened) <= 2 and all(c.closed for c in opened)


def test_a_failure_stops_what_waits_for_it_lets_the_running_finish_and_is_raised():
    waits = {"bad": set(), "slow": set(), "after_bad": {"bad"}, "after_slow": {"slow"}}
    started_both = threading.Barrier(2, timeout=20)
    built: list[str] = []

    def build_one(name: str, connection: _Connection) -> None:
        if name in ("bad", "slow"):
            started_both.wait()  # both running before bad fails
        if name == "bad":
            raise RuntimeError("the engine said no")
        built.append(name)

    with pytest.raises(RuntimeError, match="the engine said no"):
        build_side_by_side(["bad", "slow", "after_bad", "after_slow"], waits,
                           _Connection([]), 2, build_one)
    # what waits for the failed model never starts; slow was running and finished
    # (after_slow may or may not have started: slow can finish before bad fails)
    assert "after_bad" not in built and built[0] == "slow"


def test_a_wait_on_a_model_outside_the_run_is_refused():
    with pytest.raises(ValueError, match="never ready"):
        build_side_by_side(["a"], {"a": {"elsewhere"}}, _Connection([]), 2,
                           lambda name, conn: None)


def test_the_models_the_person_plan_waits_for_exist_and_are_not_person_level():
    # a renamed model would silently drop out of the waits (only this run's models count)
    models = {m.name: m for m in load_models(PACKAGE_ROOT / "sql" / "models")}
    assert set(PLAN_UPSTREAM) <= set(models)
    assert all(models[name].materialized in ("table", "incremental_by_day")
               for name in PLAN_UPSTREAM)


def _built(path: Path, threads: int, early: list[dict], late: list[dict]) -> tuple[
        dict[str, list], list[tuple[str, int, str, int]]]:
    settings = settings_for(path, reporting_tz="Asia/Seoul", lookback_days=2,
                            model_threads=threads)
    wh = warehouse_with(path / "wh", early)
    try:
        build(wh, settings, today=date(2024, 3, 8), chunk_rows=1500)
        insert(wh, late)
        lines: list[str] = []
        runs = run_models(wh, settings, today=date(2024, 3, 13), chunk_rows=1000,
                          progress=lines.append)
        # each model's closing line in model order, whichever finished first
        closing = [line for line in lines if line.startswith("[") and " rows in " in line]
        assert [line.split("]")[0] for line in closing] == [
            f"[{n}/{len(runs)}" for n in range(1, len(runs) + 1)], closing
        return snapshot(wh), [(r.model, r.rows, r.mode, r.days) for r in runs]
    finally:
        wh.close()


def test_models_built_side_by_side_leave_the_tables_one_at_a_time_leaves(tmp_path):
    """A full build, then late events and late identifies refreshed: two threads and
    one give the same tables, and each model rebuilds the same rows, days and mode."""
    data = generate(17, 220, 12, START)
    cutoff = "2024-03-09 00:00:00.000"
    early = [r for r in data.rows if r["received_at"] < cutoff]
    late = [r for r in data.rows if r["received_at"] >= cutoff]
    assert any(r["timestamp"] < cutoff for r in late), "the split must hold late events"
    one_tables, one_runs = _built(tmp_path / "one", 1, early, late)
    two_tables, two_runs = _built(tmp_path / "two", 2, early, late)
    assert [r[2] for r in two_runs if r[0] == "users"] == ["incremental"]
    assert two_runs == one_runs
    for name in one_tables:
        assert two_tables[name] == one_tables[name], name
