"""Generated data in a warehouse, for the analyses' tests and benchmark."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from funnelhouse.config import Settings
from funnelhouse.demo.generator import COLUMNS, generate, iter_json_batches
from funnelhouse.models.run import run_models
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.migrate import migrate

# The analyses read behavior_events and, for the timeline, identity_map.
MODELS = ["identity_map", "behavior_events"]


def blank_row() -> dict[str, Any]:
    """An events_raw row with every column empty, to fill in by hand."""
    return {c: "" for c in COLUMNS} | {"is_bot": 0, "flags": []}


def load_rows(warehouse: Warehouse, settings: Settings, rows: Iterable[dict[str, Any]]) -> None:
    migrate(warehouse, settings.sql_dir / "migrations")
    batch = [orjson.dumps(r) for r in rows]
    for i in range(0, len(batch), 50_000):
        warehouse.insert_json_rows("events_raw", batch[i:i + 50_000])
    build(warehouse, settings)


def load_generated(warehouse: Warehouse, settings: Settings, *, seed: int, people: int, days: int,
                   start_date: date = date(2024, 3, 1), progress=print) -> int:  # type: ignore[no-untyped-def]
    """Stream generator rows into events_raw (big runs stay small in memory), build the models."""
    migrate(warehouse, settings.sql_dir / "migrations")
    total = 0
    for batch in iter_json_batches(seed, people, days, start_date):
        warehouse.insert_json_rows("events_raw", batch)
        total += len(batch)
        progress(f"loaded {total:,} rows")
    build(warehouse, settings, progress)
    return total


def build(warehouse: Warehouse, settings: Settings, progress=lambda _: None) -> None:  # type: ignore[no-untyped-def]
    run_models(warehouse, settings, full_refresh=True, select=MODELS, progress=progress)


def person_and_session_of(warehouse: Warehouse) -> tuple[dict[str, str], dict[str, str]]:
    """message_id → person_id and → session_id, as the models resolved them."""
    rows = warehouse.query("SELECT message_id, person_id, session_id FROM behavior_events").rows
    return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}


@dataclass
class Loaded:
    """Generated events in a warehouse with the models built, and the same events as the
    plain-Python reference sees them (person and session ids taken from the models)."""

    warehouse: Warehouse
    events: list[Any]


@contextmanager
def loaded_reference(root: Path, make_warehouse: Callable[[Path], Warehouse], tz: str,
                     **generate_args: Any) -> Iterator[Loaded]:
    from tests.conftest import every_handle_closed
    from tests.support import analyses_reference as ref

    settings = Settings(data_dir=root, reporting_tz=tz)
    generated = generate(**generate_args)
    with every_handle_closed():   # chdb serves one folder per process
        warehouse = make_warehouse(settings.warehouse_dir)
        try:
            load_rows(warehouse, settings, generated.rows)
            person_of, session_of = person_and_session_of(warehouse)
            yield Loaded(warehouse, ref.events_from_raw(generated.rows, tz, person_of,
                                                        session_of))
        finally:
            warehouse.close()
