"""A small warehouse with generated events and all models built, for the segment, export,
signal and forget tests. chdb serves one data folder per process, so each test module
builds one (module scope) and closes it before the next module opens another."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import lz4.frame
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


LZ4_MAGIC = b"\x04\x22\x4d\x18"


def readable_bytes(data: bytes) -> bytes:
    """A file's bytes, then every LZ4 frame found in them decoded as far as it goes.

    The embedded queue stores its chunks as LZ4 frames: `grep` on the file would miss
    an id that is only there compressed, so the search decodes them too (a frame cut
    by a page boundary is decoded up to the cut).
    """
    parts = [data]
    start = data.find(LZ4_MAGIC)
    while start >= 0:
        decoder = lz4.frame.LZ4FrameDecompressor()
        try:
            parts.append(decoder.decompress(data[start:]))
        except RuntimeError:
            pass  # not a frame after all, or cut before its first block
        start = data.find(LZ4_MAGIC, start + 1)
    return b"\n".join(parts)


def files_holding(folder: Path, ids: set[str]) -> dict[str, list[str]]:
    """What `grep -r -a <id> <folder>` would find, LZ4 frames decoded: per id, the files."""
    # Whole ids only: "u-5-7" inside another person's "u-5-71" is not theirs.
    patterns = {i: re.compile(rb"(?<![\w-])" + re.escape(i.encode()) + rb"(?![\w-])")
                for i in ids}
    found: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = readable_bytes(path.read_bytes())
            for i, pattern in patterns.items():
                if pattern.search(data):
                    found.setdefault(i, []).append(str(path.relative_to(folder)))
    return found
