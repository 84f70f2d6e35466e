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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from funnelhouse.warehouse.stored_keys import StoredIn, stored_among

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


@dataclass(frozen=True)
class StagedKeys:
    """The staged rows' (source, message_id) keys: a 64-bit hash of each (to compare with
    another connection's stage), and those that are not new — already in the table of
    stored keys, or staged more than once — with how many times each was staged."""

    hashes: frozenset[int]
    not_new: tuple[tuple[str, str, int, bool], ...]   # (source, message_id, copies, stored)


# Items are streamed in pieces of about this size: joining a whole batch first took an
# allocation the size of the batch (345 MB per 300k-row drain; the drain's peak RSS is
# 80-150 MB lower without it, its speed the same), one append per item a call per
# Kafka record.
_PIECE_BYTES = 1 << 20


def append_rows(inserter: Any, rows: Sequence[bytes]) -> None:
    """Stream `rows` — items of one or more JSON rows joined by newlines, no newline at
    either end — into a chdb insert, a newline between items, the items joined about a
    megabyte at a time."""
    piece: list[bytes] = []
    size = 0
    first = True
    for item in rows:
        piece.append(item)
        size += len(item)
        if size >= _PIECE_BYTES:
            if not first:
                inserter.append(b"\n")
            inserter.append(b"\n".join(piece))
            piece, size, first = [], 0, False
    if piece:
        if not first:
            inserter.append(b"\n")
        inserter.append(b"\n".join(piece))


class JsonStage:
    """One connection's stages, a temporary table per target table (temporary tables
    belong to their connection, so each insert connection has its own JsonStage).

    `insert` is fill → copy. A caller that must look at the rows before they go in
    (`ChdbWarehouse.insert_first_copies`) calls fill, `keys`, then copy or clear, and
    keeps other inserts on the connection out in between."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[str, str]] = {}   # target -> (stage's shape, names)

    def insert(self, conn: Any, table: str, rows: Sequence[bytes], settings: str) -> bool:
        """Insert `rows` (items of JSON rows, see `append_rows`) into `table` through its
        stage, with `settings` (a SETTINGS clause's body); False, having done nothing,
        when a stage would not help (no LowCardinality column) or could not stand in for
        the table (an EPHEMERAL column, which only an insert into the table itself may
        take)."""
        if not self.fill(conn, table, rows):
            return False
        self.copy(conn, table, settings)
        return True

    def fill(self, conn: Any, table: str, rows: Sequence[bytes]) -> bool:
        """Parse `rows` into `table`'s stage (False, having done nothing: see insert)."""
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
        stage = _stage(table)
        if self._made.get(table, ("",))[0] != shape:   # first use, or the columns changed
            conn.query(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
            conn.query(f"CREATE TEMPORARY TABLE {stage} ({shape}) ENGINE = Memory")
            self._made[table] = (shape, ", ".join(_name(name) for name, _, _, _ in given))
        try:
            with conn.send_insert(f"INSERT INTO {stage}", "JSONEachRow") as ins:
                append_rows(ins, rows)
                ins.finish()
        except BaseException:
            self.forget(table)
            raise
        return True

    def keys(self, conn: Any, table: str, stored_in: StoredIn, *, hashes: bool) -> StagedKeys:
        """The staged rows' keys, looked up in `stored_in` (see stored_keys); their
        hashes only when asked."""
        stage = _stage(table)
        try:
            not_new = orjson.loads(conn.query(
                f"SELECT source, message_id, count() AS copies, "
                f"(source, message_id) IN ({_stored(stored_in, stage)}) AS stored "
                f"FROM {stage} GROUP BY source, message_id HAVING copies > 1 OR stored",
                "JSONCompact").bytes())["data"]
            found = orjson.loads(conn.query(
                f"SELECT groupArray(sipHash64(source, message_id)) FROM {stage}",
                "JSONCompact").bytes())["data"][0][0] if hashes else []
        except BaseException:
            self.forget(table)
            raise
        # (an insert connection renders 64-bit numbers as JSON strings)
        return StagedKeys(frozenset(int(h) for h in found), tuple(
            (source, message_id, int(copies), bool(stored))
            for source, message_id, copies, stored in not_new))

    def rows_hashed(self, conn: Any, table: str, hashes: Iterable[int]
                    ) -> list[tuple[str, str, int]]:
        """(source, message_id, key hash) of each staged row whose key hash is one of these."""
        listed = ", ".join(str(int(h)) for h in hashes)
        return [(source, message_id, int(h)) for source, message_id, h in orjson.loads(conn.query(
            f"SELECT source, message_id, sipHash64(source, message_id) AS h "
            f"FROM {_stage(table)} WHERE h IN [{listed}]", "JSONCompact").bytes())["data"]]

    def copy(self, conn: Any, table: str, settings: str, *, stored_in: StoredIn | None = None,
             without: Iterable[int] = (), first_only: bool = False) -> None:
        """Copy the staged rows into `table` (with `settings`), then empty the stage.
        Left out: rows whose key is in `stored_in`, rows whose key hash is in `without`,
        and, with `first_only`, each key's later copies (the stage is read in the order
        it was filled, on one thread)."""
        names = self._made[table][1]
        stage = _stage(table)
        where = []
        if stored_in:
            where.append(f"(source, message_id) NOT IN ({_stored(stored_in, stage)})")
        if listed := ", ".join(str(int(h)) for h in without):
            where.append(f"sipHash64(source, message_id) NOT IN [{listed}]")
        if first_only:
            settings = ", ".join(filter(None, (settings, "max_threads = 1")))
        try:
            conn.query(f"INSERT INTO {_name(table)} ({names}) "
                       + (f"SETTINGS {settings} " if settings else "")
                       + f"SELECT {names} FROM {stage}"
                       + (" WHERE " + " AND ".join(where) if where else "")
                       + (" LIMIT 1 BY source, message_id" if first_only else ""))
        except BaseException:
            self.forget(table)
            raise
        self.clear(conn, table)

    def clear(self, conn: Any, table: str) -> None:
        if table in self._made:
            conn.query(f"TRUNCATE TABLE {_stage(table)}")

    def forget(self, table: str) -> None:
        """Make the stage afresh next time, whatever it holds now (after a failure)."""
        self._made.pop(table, None)


def _stage(table: str) -> str:
    return _name(f"{table}__json_stage")


def _stored(stored_in: StoredIn, stage: str) -> str:
    """The staged keys already in `stored_in`, read for these keys only."""
    return stored_among(stored_in, f"SELECT source, message_id FROM {stage}")
