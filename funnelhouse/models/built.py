"""Whether the models have built a table yet; readers that need one raise NotBuilt."""

from __future__ import annotations

from funnelhouse.warehouse.base import Warehouse


class NotBuilt(LookupError):
    """A table the answer reads has not been built yet (the models have not run)."""


def existing_tables(warehouse: Warehouse) -> set[str]:
    return {row[0] for row in warehouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()").rows}


def require_tables(warehouse: Warehouse, *names: str) -> None:
    missing = [name for name in names if name not in existing_tables(warehouse)]
    if missing:
        what = f"table {missing[0]} does not" if len(missing) == 1 else \
            f"tables {', '.join(missing)} do not"
        raise NotBuilt(f"{what} exist yet: run the models first "
                       "(funnelhouse models run; `up` refreshes them every few minutes)")
