"""The benchmark's shared data set: SQL copies of a generated population are distinct people
with the same behaviour, so the models and analyses count exactly N times the base."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from funnelhouse.analyses import run_analysis
from funnelhouse.config import Settings
from funnelhouse.models.run import run_models
from funnelhouse.warehouse.chdb import ChdbWarehouse

LOAD_TESTS = Path(__file__).resolve().parent.parent / "load-tests"
COPIES = 3
FUNNEL = {"steps": ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase"],
          "window": "7d", "order": "loose", "breakdown": "session_campaign",
          "attribution": "first", "as_of": "2024-06-01T00:00:00Z"}


def _load_tests_module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, LOAD_TESTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


dataset = _load_tests_module("dataset")


def _build(folder: Path, files: Path, copies: int) -> dict[str, Any]:
    """Load `copies` copies of the generated files into a fresh folder, build, measure."""
    settings = Settings(data_dir=folder, reporting_tz=dataset.TZ)
    wh = ChdbWarehouse(settings.warehouse_dir)
    try:
        added = dataset.load(wh, files, copies, progress=lambda _: None)
        run_models(wh, settings, full_refresh=True, today=dataset.last_day(),
                   progress=lambda _: None)
        one = lambda sql: wh.query(sql).scalar()  # noqa: E731
        funnel = run_analysis("funnel", FUNNEL, wh, settings.reporting_tz)
        return {
            "added": added,
            "raw": one("SELECT count() FROM events_raw"),
            "message_ids": one("SELECT uniqExact(message_id) FROM events_raw"),
            "raw_ids": wh.query(
                "SELECT uniqExactIf(anonymous_id, anonymous_id != ''), "
                "uniqExactIf(user_id, user_id != ''), uniqExactIf(session_id, session_id != ''), "
                "uniqExactIf(previous_id, previous_id != ''), "
                "countIf(anonymous_id = ''), countIf(user_id = ''), countIf(session_id = '') "
                "FROM events_raw").rows[0],
            "order_ids": one("SELECT uniqExact(order_id) FROM orders"),
            "people": one("SELECT uniqExact(person_id) FROM behavior_events"),
            "base_people": one("SELECT uniqExact(replaceRegexpOne(person_id, '~[0-9]+$', '')) "
                               "FROM behavior_events"),
            "tables": {t: one(f"SELECT count() FROM {t}")
                       for t in ("behavior_events", "sessions", "users", "orders", "order_items",
                                 "identity_map")},
            "funnel": {g["breakdown"]: [s["people"] for s in g["steps"]]
                       for g in funnel.data["groups"]},
        }
    finally:
        wh.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, dict]]:
    root = tmp_path_factory.mktemp("bench-dataset")
    generated = dataset.generate(root / "generated", 120, days=10, workers=1,
                                 progress=lambda _: None)
    assert generated["rows"] > 2000
    # chdb serves one folder per process: each _build closes its folder before the next.
    base = _build(root / "base", root / "generated", 1)
    copied = _build(root / "copied", root / "generated", COPIES)
    yield base, copied


def test_copies_multiply_the_rows_and_keep_every_message_distinct(built) -> None:  # type: ignore[no-untyped-def]
    base, copied = built
    assert copied["raw"] == COPIES * base["raw"] == copied["added"]
    assert copied["message_ids"] == copied["raw"]
    # Every id ×3 (distinct per copy), and an empty id stays empty in every copy.
    assert copied["raw_ids"] == [COPIES * n for n in base["raw_ids"]]
    assert min(base["raw_ids"]) > 0


def test_copies_are_distinct_people_with_the_same_behaviour(built) -> None:  # type: ignore[no-untyped-def]
    base, copied = built
    assert base["people"] > 100
    assert copied["people"] == COPIES * base["people"]
    # Without their copy suffix, the copied people are exactly the base population.
    assert copied["base_people"] == base["people"]
    assert copied["order_ids"] == COPIES * base["order_ids"] > 0
    assert copied["tables"] == {t: COPIES * n for t, n in base["tables"].items()}


def test_the_funnel_keeps_its_shape_per_breakdown(built) -> None:  # type: ignore[no-untyped-def]
    base, copied = built
    assert base["funnel"][None][-1] > 0          # some people bought
    assert len(base["funnel"]) > 3               # and several campaigns broke it down
    assert copied["funnel"] == {label: [COPIES * n for n in steps]
                                for label, steps in base["funnel"].items()}


def test_copy_zero_keeps_the_generated_ids_and_later_copies_suffix_them() -> None:
    assert dataset.copy_sql("bench_base", 0) == "INSERT INTO events_raw SELECT * FROM bench_base"
    sql = dataset.copy_sql("bench_base", 2)
    for column in ("message_id", "anonymous_id", "user_id", "previous_id", "session_id",
                   "properties"):
        assert f"AS {column}" in sql
    assert "'~2'" in sql and "\\\\1~2" in sql


def test_the_bench_parts_fit_their_time_budgets(tmp_path: Path) -> None:
    bench = _load_tests_module("bench")
    parts = bench.parts(tmp_path, no_kafka=False)
    assert sum(bench.limit(p, quick=False) for p in parts) <= bench.BUDGET_FULL
    assert sum(bench.limit(p, quick=True) for p in parts) <= bench.BUDGET_QUICK
    # The analyses and segments read the folder the models part builds.
    models = next(p for p in parts if p.name == "models")
    for quick, args in ((False, models.full), (True, models.quick)):
        folder = bench.shared_folder(tmp_path, quick)
        sizes = args[args.index("--sizes") + 1].split(",")
        assert folder.name == f"events-{sizes[-1]}"
        assert folder.parent == Path(args[args.index("--work-dir") + 1])
        for name in ("analyses", "segments"):
            part = next(p for p in parts if p.name == name)
            used = part.quick if quick else part.full
            assert used[used.index("--folder") + 1] == str(folder)
