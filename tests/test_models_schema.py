"""A release that adds a column to a day-incremental model rebuilds that model whole on
the next run (days cannot be swapped into the old shape); an unchanged model does not.
A model whose last run recorded the DDL it has now is not probed at all (run.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.models.run import run_models
from tests.support.sample import MODELS, load_rows
from tests.warehouse_backends import WarehouseMaker


def _loaded(tmp_path, make_warehouse: WarehouseMaker, *, seed: int, people: int, days: int
            ) -> tuple[Settings, Any, dict[str, Any]]:
    """A warehouse with generated events and every model built once; `quiet` holds the
    run_models arguments of the day after them."""
    settings = Settings(data_dir=tmp_path, reporting_tz="UTC")
    warehouse = make_warehouse(settings.warehouse_dir)
    load_rows(warehouse, settings, generate(seed=seed, people=people, days=days,
                                            start_date=date(2024, 3, 1)).rows)
    quiet = {"progress": lambda _: None, "today": date(2024, 3, 1) + timedelta(days=days)}
    return settings, warehouse, quiet


@pytest.mark.parametrize("older_hash", ["", "the hash of an older DDL"])
def test_a_changed_model_schema_is_rebuilt_whole(tmp_path, make_warehouse: WarehouseMaker,
                                                 older_hash: str) -> None:
    settings, warehouse, quiet = _loaded(tmp_path, make_warehouse, seed=1, people=30, days=3)
    try:
        again = {r.model: r.mode for r in run_models(warehouse, settings, select=MODELS,
                                                     **quiet)}
        assert again["behavior_events"] == "incremental"
        # What an older release built: the same table without the order-line columns,
        # recorded by a run of that release (which wrote no DDL hash, or another one).
        warehouse.execute("ALTER TABLE behavior_events DROP COLUMN item_revenues")
        warehouse.execute(
            "INSERT INTO model_runs SELECT * REPLACE (ran_at + INTERVAL 1 SECOND AS ran_at, "
            "{h:String} AS ddl_hash) FROM model_runs WHERE model = 'behavior_events' "
            "ORDER BY ran_at DESC LIMIT 1", {"h": older_hash})
        runs = {r.model: r for r in run_models(warehouse, settings, select=MODELS, **quiet)}
        assert runs["behavior_events"].mode == "full"
        assert runs["behavior_events"].rows > 0
        assert warehouse.query("SELECT count() FROM system.columns WHERE database = "
                               "currentDatabase() AND table = 'behavior_events' AND name = "
                               "'item_revenues'").scalar() == 1
        lines = warehouse.query("SELECT sum(length(item_product_ids)) FROM behavior_events "
                                "WHERE event = 'purchase'").scalar()
        assert lines and int(lines) > 0
        assert warehouse.query("SELECT count() FROM system.tables WHERE name LIKE "
                               "'%__probe'").scalar() == 0
    finally:
        warehouse.close()


def test_a_model_left_with_this_ddl_is_not_probed(tmp_path, make_warehouse: WarehouseMaker
                                                  ) -> None:
    settings, warehouse, quiet = _loaded(tmp_path, make_warehouse, seed=2, people=20, days=2)
    try:
        run_models(warehouse, settings, select=MODELS, **quiet)  # records each DDL's hash
        statements: list[str] = []
        execute = warehouse.execute

        def spy(sql: str, *args, **kwargs):  # type: ignore[no-untyped-def]
            statements.append(sql)
            return execute(sql, *args, **kwargs)

        warehouse.execute = spy  # type: ignore[method-assign]
        # one model at a time: the spy sees this handle's statements only
        modes = {r.model: r.mode for r in run_models(
            warehouse, settings.replace(model_threads=1), select=MODELS, **quiet)}
        warehouse.execute = execute  # type: ignore[method-assign]
        assert modes["behavior_events"] == "incremental"
        assert statements, "the spy saw the run"
        assert not [s for s in statements if "__probe" in s]
    finally:
        warehouse.close()
