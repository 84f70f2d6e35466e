"""The embedded backend: ClickHouse's engine in-process (chdb), data in the data folder.

Only one process may open a data folder (chdb locks it); inside the process several
connections share one engine. Each ChdbWarehouse owns one connection and serialises
its own use with a lock, so the loader, the model runner and the SQL endpoint each
take their own handle and do not queue behind each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import chdb

from funnelhouse.warehouse.base import (
    INSERT_PARTS,
    INSERT_SETTINGS,
    RESULT_SETTINGS,
    QueryResult,
    WarehouseError,
    insert_parts,
    minus_token,
)
from funnelhouse.warehouse.json_stage import STAGE_MIN_BYTES, JsonStage, append_rows
from funnelhouse.warehouse.stored_keys import STORED_EVENTS, StoredIn

# The engine's options (the process's first connection sets them). The background pool
# takes pool x ratio parts at once (2 x 2 by default) and the rest only at a later
# wake-up; the model runner's lightweight DELETEs mask a table's parts in one mutation,
# so 8 slots keep a mask of up to 8 parts at tens of milliseconds (models/swap.py).
# The pool's threads stay at 2: the ratio adds queued tasks, not concurrency.
ENGINE_OPTIONS = "?background_merges_mutations_concurrency_ratio=4"

T = TypeVar("T")


class ChdbWarehouse:
    backend = "chdb"

    def __init__(self, path: Path, *, readonly: bool = False,
                 limits: Mapping[str, Any] | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._limits = limits
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
        # One insert at a time on this handle: insert_first_copies leaves rows in the
        # stages between its steps, where another insert's rows must not join them.
        self._insert_lock = threading.Lock()

    def _run(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        if params:
            params = {name: _escape_param(value) if isinstance(value, str) else value
                      for name, value in params.items()}
        with self._lock:
            try:
                result = self._conn.query(sql, fmt, params=params or None)
            except Exception as exc:
                _drain(self._conn)
                raise WarehouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""

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
        with self._insert_lock:
            self._on_parts(len(parts), lambda n, conn: self._insert_part(
                n, conn, table, *parts[n]), table)
        return len(rows)

    def insert_first_copies(self, table: str, rows: Sequence[bytes], token: str | None = None,
                            *, stored_in: StoredIn = STORED_EVENTS) -> list[str] | None:
        """The loader's insert of events_raw rows, first copies only (see the Protocol).

        The rows are staged (parsed once, each part on its connection), their keys
        looked up and counted inside ClickHouse, and copied in without the rows that
        are not first copies: keys stored before, a key's later copies in its part,
        and a part's keys that an earlier part holds (found by comparing the parts'
        key hashes, then confirmed key by key). None, having inserted nothing, when
        the rows are too few to stage, a table will not stage, or two hashes collide."""
        if self.is_readonly:
            raise WarehouseError(f"insert into {table} refused: read-only handle")
        parts = insert_parts(rows, token)
        if _size(rows) < STAGE_MIN_BYTES:
            return None
        several = len(parts) > 1
        with self._insert_lock:
            try:
                filled = self._on_parts(len(parts), lambda n, conn: self._stages[n].fill(
                    conn, table, parts[n][0]), table)
                if not all(filled):
                    self._on_parts(len(parts), lambda n, conn: self._stages[n].clear(
                        conn, table), table)
                    return None
                keys = self._on_parts(len(parts), lambda n, conn: self._stages[n].keys(
                    conn, table, stored_in, hashes=several), table)
                # a later part's keys that an earlier part holds: all their copies go
                earlier: frozenset[int] = frozenset()
                held: list[frozenset[int]] = []
                for k in keys:
                    held.append(k.hashes & earlier)
                    earlier |= k.hashes
                stored = {(source, message_id) for k in keys
                          for source, message_id, _, is_stored in k.not_new if is_stored}
                held_rows = self._held_rows(table, held, stored) if any(held) \
                    else [[] for _ in parts]
                if held_rows is None:   # two keys share a hash: let the caller do it
                    self._on_parts(len(parts), lambda n, conn: self._stages[n].clear(
                        conn, table), table)
                    return None
                dropped: list[str] = []
                for k, rows_held in zip(keys, held_rows, strict=True):
                    whole = set(rows_held)
                    for source, message_id, copies, is_stored in k.not_new:
                        if is_stored or (source, message_id) not in whole:
                            # stored: every copy; else every copy after the first
                            dropped += [f"{source}:{message_id}"] * (copies - 1 + is_stored)
                    dropped += [f"{source}:{message_id}" for source, message_id in rows_held]
                if dropped:
                    parts = insert_parts(rows, minus_token(token, dropped) if token else None)
                self._on_parts(len(parts), lambda n, conn: self._stages[n].copy(
                    conn, table, _settings_clause(parts[n][1]),
                    stored_in=stored_in if any(s for *_, s in keys[n].not_new) else None,
                    without=held[n],
                    first_only=any(c > 1 and not s for *_, c, s in keys[n].not_new)), table)
            except BaseException:
                for stage in self._stages:   # made afresh: a stage may hold rows still
                    stage.forget(table)
                raise
        return dropped

    def _held_rows(self, table: str, held: list[frozenset[int]], stored: set[tuple[str, str]]
                   ) -> list[list[tuple[str, str]]] | None:
        """Per part, its rows (one per copy) whose key an earlier part holds, found by
        the key hashes in held[n] — the stored keys aside (dropped anyway) — or None if
        a hash was shared by two different keys (a collision), not by one key."""
        asked = [frozenset().union(*held[n:]) for n in range(len(held))]
        found = self._on_parts(len(held), lambda n, conn: self._stages[n].rows_hashed(
            conn, table, asked[n]) if asked[n] else [], table)
        out: list[list[tuple[str, str]]] = []
        before: set[tuple[str, str]] = set()
        for n, rows in enumerate(found):
            mine = []
            for source, message_id, h in rows:
                if h in held[n] and (source, message_id) not in stored:
                    if (source, message_id) not in before:
                        return None
                    mine.append((source, message_id))
            out.append(mine)
            before.update((source, message_id) for source, message_id, _ in rows)
        return out

    def _on_parts(self, count: int, step: Callable[[int, Any], T], table: str) -> list[T]:
        """step(n, connection of part n) for n < count: part 0 on this handle's
        connection, the others at once on connections of their own (chdb runs a
        statement with the GIL released)."""
        def run(n: int) -> T:
            conn, lock = (self._conn, self._lock) if n == 0 else self._insert_conns[n - 1]
            with lock:
                try:
                    return step(n, conn)
                except (RuntimeError, OSError) as exc:
                    # The engine's errors (chdb's are RuntimeErrors) and the disk's: the
                    # loader retries these. A bug of ours (TypeError, KeyError, …) is
                    # not wrapped: retried, it would fail the same way forever.
                    _drain(conn)
                    raise WarehouseError(f"insert into {table} failed: {exc}") from exc

        others = [self._executor().submit(run, n) for n in range(1, count)]
        try:
            first = run(0)
        finally:
            results = [other.result() for other in others]
        return [first, *results]

    def _insert_part(self, n: int, conn: Any, table: str, rows: Sequence[bytes],
                     token: str | None) -> None:
        clause = _settings_clause(token)
        if _size(rows) >= STAGE_MIN_BYTES and self._stages[n].insert(conn, table, rows, clause):
            return
        with conn.send_insert(f"INSERT INTO {table} SETTINGS {clause}", "JSONEachRow") as ins:
            append_rows(ins, rows)
            ins.finish()

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

    def sibling(self) -> ChdbWarehouse:
        # a connection of its own: a handle runs one statement at a time (its lock)
        return ChdbWarehouse(self.path, readonly=self.is_readonly, limits=self._limits)

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


def _size(rows: Sequence[bytes]) -> int:
    """The bytes of `rows` as one JSONEachRow text (a newline between items)."""
    return sum(map(len, rows)) + max(len(rows) - 1, 0)


def _settings_clause(token: str | None) -> str:
    """An insert's SETTINGS clause body: INSERT_SETTINGS and the dedup token, if any."""
    settings: dict[str, Any] = dict(INSERT_SETTINGS)
    if token:
        settings["insert_deduplication_token"] = token
    return ", ".join(f"{name} = {_literal(value)}" for name, value in settings.items())


def _escape_param(value: str) -> str:
    return value.translate(_PARAM_ESCAPES)


def _literal(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _drain(conn: Any) -> None:
    # chdb keeps what a query that failed mid-way (a limit, a KILL) had written and
    # prepends it to the next result on this connection; one throwaway query takes it.
    try:
        conn.query("SELECT 1", "TabSeparated")
    except Exception:  # the original error is the one to report
        pass
