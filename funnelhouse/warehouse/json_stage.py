"""JSON rows inserted through a temporary table of plain columns (the embedded backend).

Parsing JSONEachRow straight into a LowCardinality column puts each value through the
column's dictionary one at a time: for events_raw (16 such columns of 49) that was half
of ClickHouse's parse, 2.7 of 5.5 µs a row. Parsed into a temporary Memory table with
the same columns made plain, then copied by INSERT … SELECT (which converts a whole
column at once), the insert took 7.3 instead of 10.3 µs a row (docs/benchmarks.md).

The rows stored are the same: the stage has the table's columns, types (less the
LowCardinality wrapper) and DEFAULTs, so an omitted field gets the table's default; the
copy names every column but MATERIALIZED and ALIAS ones, which the table computes; and
the dedup token applies to INSERT … SELECT as to a plain insert (tests/test_json_stage.py).
"""

from __future__ import annotations

from typing import Any

import orjson

# Smaller inserts go straight in: the stage costs three statements more (a few ms).
STAGE_MIN_BYTES = 256 << 10

_LOW_CARDINALITY = "LowCardinality("


def plain_type(type_: str) -> str:
    """`type_` without its LowCardinality wrappers: LowCardinality(Nullable(String)) →
    Nullable(String), Array(LowCardinality(String)) → Array(String)."""
    while (at := type_.find(_LOW_CARDINALITY)) >= 0:
        depth, end = 1, at + len(_LOW_CARDINALITY)
        while depth:
            depth += {"(": 1, ")": -1}.get(type_[end], 0)
            end += 1
        type_ = type_[:at] + type_[at + len(_LOW_CARDINALITY):end - 1] + type_[end:]
    return type_


def _name(column: str) -> str:
    return "`" + column.replace("\\", "\\\\").replace("`", "\\`") + "`"


class JsonStage:
    """One connection's stages, a temporary table per target table (temporary tables
    belong to their connection, so each insert connection has its own JsonStage)."""

    def __init__(self) -> None:
        self._made: dict[str, str] = {}   # target table -> the stage's column list

    def insert(self, conn: Any, table: str, data: bytes, settings: str) -> bool:
        """Insert `data` (JSON rows) into `table` through its stage, with `settings` (a
        SETTINGS clause's body); False, having done nothing, when a stage would not
        help (no LowCardinality column) or could not stand in for the table (an
        EPHEMERAL column, which only an insert into the table itself may take)."""
        columns = orjson.loads(conn.query(
            "SELECT name, type, default_kind, default_expression FROM system.columns "
            "WHERE database = currentDatabase() AND table = {t:String} ORDER BY position",
            "JSONCompact", params={"t": table}).bytes())["data"]
        kinds = {kind for _, _, kind, _ in columns}
        if "EPHEMERAL" in kinds or not any(_LOW_CARDINALITY in t for _, t, _, _ in columns):
            return False
        given = [(name, type_, kind, default) for name, type_, kind, default in columns
                 if kind in ("", "DEFAULT")]
        shape = ", ".join(
            f"{_name(name)} {plain_type(type_)}"
            + (f" DEFAULT {default}" if kind == "DEFAULT" else "")
            for name, type_, kind, default in given)
        stage = _name(f"{table}__json_stage")
        if self._made.get(table) != shape:   # first use, or the table's columns changed
            conn.query(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
            conn.query(f"CREATE TEMPORARY TABLE {stage} ({shape}) ENGINE = Memory")
            self._made[table] = shape
        names = ", ".join(_name(name) for name, _, _, _ in given)
        try:
            with conn.send_insert(f"INSERT INTO {stage}", "JSONEachRow") as ins:
                ins.append(data)
                ins.finish()
            conn.query(f"INSERT INTO {_name(table)} ({names}) "
                       + (f"SETTINGS {settings} " if settings else "")
                       + f"SELECT {names} FROM {stage}")
        except BaseException:
            self._made.pop(table, None)   # made afresh next time, whatever it holds now
            raise
        finally:
            if table in self._made:
                conn.query(f"TRUNCATE TABLE {stage}")
        return True
