"""Putting a rebuilt table in place whole, so readers never see it half-written.

Both ways end in EXCHANGE TABLES, which is atomic: a reader sees the old table or the
new one. They differ in how the new table is made when only some rows change:

* a copy: every kept row read and written again (the cost grows with the table);
* `replace_rows`: the new table starts as hard links to the old one's parts (ATTACH
  PARTITION … FROM copies no data), the replaced rows are masked with a lightweight
  DELETE (it reads the replaced column and writes a one-byte row mask per part), then
  the new rows are inserted. The old table's parts are never changed, so its readers
  are undisturbed until the exchange. The mask's cost is per part more than per row:
  each part is one background task (two at a time in chdb), so a table of many parts
  can still be cheaper to copy (funnel_stages: see its `kept_rows`).
"""

from __future__ import annotations

import re

from funnelhouse.warehouse.base import Warehouse

__all__ = ["exists", "replace_rows", "swap"]

# Partition ids come from system.parts (digits, letters, '_', '-'); checked before
# they are written into a statement all the same.
_PARTITION_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def exists(wh: Warehouse, name: str) -> bool:
    return bool(wh.query("SELECT count() FROM system.tables "
                         "WHERE database = currentDatabase() AND name = {t:String}",
                         {"t": name}).scalar())


def swap(wh: Warehouse, name: str, new: str) -> None:
    """`new` becomes `name` (atomically, when `name` exists); the old table is dropped."""
    if exists(wh, name):
        wh.execute(f"EXCHANGE TABLES {name} AND {new}")
        wh.execute(f"DROP TABLE {new} SYNC")
    else:
        wh.execute(f"RENAME TABLE {new} TO {name}")


def replace_rows(wh: Warehouse, table: str, new: str, replaced: str, rows: str) -> None:
    """Swap in `table` with the rows matching `replaced` (a condition) swapped for those
    `rows` (a SELECT of the table's columns) returns, without copying the kept rows."""
    wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
    # the same structure as the stored table (not the model's DDL): parts can only be
    # attached between tables of one sort key and partition key
    wh.execute(f"CREATE TABLE {new} AS {table}")
    partitions = [r[0] for r in wh.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
        "AND table = {t:String} AND active", {"t": table}).rows]
    for partition in partitions:
        if not _PARTITION_ID.match(partition):
            raise ValueError(f"unexpected partition id {partition!r} in {table}")
        wh.execute(f"ALTER TABLE {new} ATTACH PARTITION ID '{partition}' FROM {table}")
    wh.execute(f"DELETE FROM {new} WHERE {replaced}")
    wh.execute(f"INSERT INTO {new} {rows}")
    swap(wh, table, new)
