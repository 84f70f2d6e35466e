"""A small warehouse with generated events and all models built, for the segment, export,
signal and forget tests. chdb serves one data folder per process, so each test module
builds one (module scope) and closes it before the next module opens another."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson

from funnelhouse.config import Settings
from funnelhouse.demo.generator import GeneratedData, generate
from funnelhouse.models.run import run_models
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate

START = date(2024, 3, 1)


@dataclass
class Built:
    settings: Settings
    warehouse: Warehouse
    data: GeneratedData


@contextmanager
def built_warehouse(data_dir: Path, *, people: int = 120, days: int = 14, seed: int = 5,
                    tz: str = "Asia/Seoul",
                    make: Callable[[Path], Warehouse] | None = None) -> Iterator[Built]:
    """`make` opens the warehouse on another backend (tests/warehouse_backends.py)."""
    settings = Settings(data_dir=data_dir, reporting_tz=tz, admin_token="admintok")
    # Every handle opened on this folder (read-only ones, the API's own) is closed at the
    # end, or the engine would stay on this folder and refuse the next module's.
    opened: list[ChdbWarehouse] = []
    real_init = ChdbWarehouse.__init__

    def recording_init(self: ChdbWarehouse, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    ChdbWarehouse.__init__ = recording_init  # type: ignore[method-assign]
    warehouse = make(settings.warehouse_dir) if make else ChdbWarehouse(settings.warehouse_dir)
    server_url = getattr(warehouse, "url", "")
    if server_url:  # what the code under test opens itself goes to the same database
        settings = settings.replace(clickhouse_url=server_url)
    try:
        migrate(warehouse, settings.sql_dir / "migrations")
        data = generate(seed=seed, people=people, days=days, start_date=START)
        warehouse.insert_json_rows("events_raw", [orjson.dumps(r) for r in data.rows])
        run_models(warehouse, settings, progress=lambda _: None, today=START)
        yield Built(settings, warehouse, data)
    finally:
        ChdbWarehouse.__init__ = real_init  # type: ignore[method-assign]
        for handle in reversed(opened):
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - already closed
                pass
