"""Pick the backend from settings: a server URL means clickhouse-connect, else chdb."""

from __future__ import annotations

from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse


def open_warehouse(settings: Settings, *, readonly: bool = False) -> Warehouse:
    if settings.clickhouse_url:
        from funnelhouse.warehouse.server import ServerWarehouse

        return ServerWarehouse(settings.clickhouse_url, readonly=readonly)
    from funnelhouse.warehouse.chdb import ChdbWarehouse

    return ChdbWarehouse(settings.warehouse_dir, readonly=readonly)
