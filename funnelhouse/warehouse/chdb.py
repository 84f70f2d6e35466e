"""The embedded backend: ClickHouse's engine in-process (chdb), data in the data folder.

Only one process may open a data folder (chdb locks it); inside the process several
connections share one engine. Each ChdbWarehouse owns one connection and serialises
its own use with a lock, so the loader, the model runner and the SQL endpoint each
take their own handle and do not queue behind each other.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import chdb

from funnelhouse.warehouse.base import (
    INSERT_PARTS,
    INSERT_SETTINGS,
    RESULT_SETTINGS,
    QueryResult,
    WarehouseError,
    insert_parts,
)
from funnelhouse.warehouse.json_stage import STAGE_MIN_BYTES, JsonStage

# The engine's options (the process's first connection sets them). The background pool
# takes pool x ratio parts at once (2 x 2 by default) and the rest only at a later
# wake-up; the model runner's lightweight DELETEs mask a table's parts in one mutation,
# so 8 slots keep a mask of up to 8 parts at tens of milliseconds (models/swap.py).
# The pool's threads stay at 2: the ratio adds queued tasks, not concurrency.
ENGINE_OPTIONS = "?background_merges_mutations_concurrency_ratio=4"


class ChdbWarehouse:
    backend = "chdb"

    def __init__(self, path: Path, *, readonly: bool = False,
                 limits: Mapping[str, Any] | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = chdb.connect(str(path) + ENGINE_OPTIONS)
        except Exception as exc:
            raise WarehouseError(f"cannot open {path}: {exc}") from exc
        for name, value in {**RESULT_SETTINGS, **(limits or {})}.items():
            # Limits go in before `readonly`: after it, no query can change them.
            self._conn.query(f"SET {name} = {_literal(value)}")
        if readonly:
            # Set on the connection, not appended to the user's text: a SETTINGS clause
            # in a query could be overridden or commented out by that query.
            self._conn.query("SET readonly = 1")
        self.is_readonly = readonly
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._insert_conns: list[tuple[Any, threading.Lock]] = []
        # Per insert connection (part n): its stage tables (warehouse/json_stage.py).
        self._stages = [JsonStage() for _ in range(INSERT_PARTS)]

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        if params:
            params = {name: _escape_param(value) if isinstance(value, str) else value
                      for name, value in params.items()}
        with self._lock:
            try:
                result = self._conn.query(sql, fmt, params=params or None)
            except Exception as exc:
                self._drain()
                raise WarehouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""

    def _drain(self) -> None:
        # chdb keeps what a query that failed mid-way (a limit, a KILL) had written and
        # prepends it to the next result on this connection; one throwaway query takes it.
        try:
            self._conn.query("SELECT 1", "TabSeparated")
        except Exception:  # the original error is the one to report
            pass

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, "TabSeparated", params)

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        return QueryResult.from_json_compact(self._run(sql, "JSONCompact", params))

    def query_raw(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        return self._run(sql, fmt, params)

    def insert_json_rows(self, table: str, rows: Sequence[bytes], token: str | None = None) -> int:
        if not rows:
            return 0
        if self.is_readonly:  # the extra connections below are not read-only
            raise WarehouseError(f"insert into {table} refused: read-only handle")
        parts = insert_parts(rows, token)
        # Part 0 on this handle's connection, the others at once on connections of
        # their own (chdb runs an insert with the GIL released).
        others = [self._executor().submit(self._insert_part, n, table, part, part_token)
                  for n, (part, part_token) in enumerate(parts) if n]
        try:
            self._insert_part(0, table, *parts[0])
        finally:
            for other in others:
                other.result()
        return len(rows)

    def _insert_part(self, n: int, table: str, rows: Sequence[bytes], token: str | None) -> None:
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if token:
            settings["insert_deduplication_token"] = token
        clause = ", ".join(f"{name} = {_literal(value)}" for name, value in settings.items())
        conn, lock = (self._conn, self._lock) if n == 0 else self._insert_conns[n - 1]
        data = b"\n".join(rows)
        with lock:
            try:
                if len(data) >= STAGE_MIN_BYTES and self._stages[n].insert(conn, table, data,
                                                                           clause):
                    return
                with conn.send_insert(f"INSERT INTO {table} SETTINGS {clause}",
                                      "JSONEachRow") as ins:
                    ins.append(data)
                    ins.finish()
            except Exception as exc:
                raise WarehouseError(f"insert into {table} failed: {exc}") from exc

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._insert_conns = [
                    (chdb.connect(str(self.path) + ENGINE_OPTIONS), threading.Lock())
                    for _ in range(INSERT_PARTS - 1)]
                self._pool = ThreadPoolExecutor(INSERT_PARTS - 1,
                                                thread_name_prefix="chdb-insert")
            return self._pool

    def readonly(self, limits: Mapping[str, Any] | None = None) -> ChdbWarehouse:
        return ChdbWarehouse(self.path, readonly=True, limits=limits)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            for conn, _ in self._insert_conns:
                conn.close()
        with self._lock:
            self._conn.close()


# ClickHouse reads a query parameter's value in its escaped text format, where `\`
# starts an escape and a raw tab or newline ends the value; clickhouse-connect escapes
# values before sending them, so do the same here and a value round-trips unchanged.
_PARAM_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r",
                                "\0": "\\0"})


def _escape_param(value: str) -> str:
    return value.translate(_PARAM_ESCAPES)


def _literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
