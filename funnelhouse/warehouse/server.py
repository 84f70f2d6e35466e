"""The scaled backend: a ClickHouse server through clickhouse-connect, same SQL as chdb."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from funnelhouse.warehouse.base import (
    INSERT_PARTS,
    INSERT_SETTINGS,
    RESULT_SETTINGS,
    QueryResult,
    WarehouseError,
    WarehouseUnavailable,
    insert_parts,
)
from funnelhouse.warehouse.stored_keys import STORED_EVENTS, StoredIn


class ServerWarehouse:
    backend = "server"

    def __init__(self, url: str, *, readonly: bool = False,
                 limits: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self._limits = limits
        parts = urlparse(url)
        # Per-query limits travel with every query, like readonly, which forbids changing them.
        settings: dict[str, Any] = {**RESULT_SETTINGS, **(limits or {})}
        if readonly:
            # Sent with every query by the client; the server refuses a query that
            # tries to lower it, so user SQL cannot switch it off.
            settings["readonly"] = 1
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=parts.port or (8443 if parts.scheme == "https" else 8123),
                username=parts.username or "default",
                password=parts.password or "",
                database=(parts.path or "/").strip("/") or "default",
                secure=parts.scheme == "https",
                settings=settings,
                autogenerate_session_id=False,
            )
        except OperationalError as exc:
            raise WarehouseUnavailable(f"cannot reach {parts.hostname}: {exc}") from exc
        self.is_readonly = readonly
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _raw(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        try:
            return self._client.raw_query(sql, parameters=_bind(sql, params), fmt=fmt)
        except OperationalError as exc:
            raise WarehouseUnavailable(str(exc)) from exc
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=_bind(sql, params))
        except OperationalError as exc:
            raise WarehouseUnavailable(str(exc)) from exc
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        return QueryResult.from_json_compact(self._raw(sql, "JSONCompact", params))

    def query_raw(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        return self._raw(sql, fmt, params)

    def insert_json_rows(self, table: str, rows: Sequence[bytes], token: str | None = None) -> int:
        if not rows:
            return 0
        parts = insert_parts(rows, token)
        # Part 0 from this thread, the others at once (the client is safe to share
        # between threads: no session, one HTTP connection per request).
        others = [self._executor().submit(self._insert_part, table, part, part_token)
                  for part, part_token in parts[1:]]
        try:
            self._insert_part(table, *parts[0])
        finally:
            for other in others:
                other.result()
        return len(rows)

    def insert_first_copies(self, table: str, rows: Sequence[bytes], token: str | None = None,
                            *, stored_in: StoredIn = STORED_EVENTS) -> list[str] | None:
        # A server's temporary tables live in an HTTP session, which this client does
        # not keep: the loader reads the ids out of the rows and looks them up instead.
        return None

    def _insert_part(self, table: str, rows: Sequence[bytes], token: str | None) -> None:
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if token:
            settings["insert_deduplication_token"] = token
        try:
            self._client.raw_insert(table, insert_block=b"\n".join(rows), fmt="JSONEachRow",
                                    settings=settings)
        except OperationalError as exc:
            raise WarehouseUnavailable(str(exc)) from exc
        except ClickHouseError as exc:
            raise WarehouseError(f"insert into {table} failed: {exc}") from exc

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(INSERT_PARTS - 1,
                                                thread_name_prefix="clickhouse-insert")
            return self._pool

    def readonly(self, limits: Mapping[str, Any] | None = None) -> ServerWarehouse:
        return ServerWarehouse(self.url, readonly=True, limits=limits)

    def sibling(self) -> ServerWarehouse:
        return ServerWarehouse(self.url, readonly=self.is_readonly, limits=self._limits)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()


# ClickHouse reads a query parameter's value in its escaped text form, and a value bound
# as a collection ({days:Array(Date)} given "['2024-03-01']") is read as that literal:
# clickhouse-connect escapes every quote of a str (`\'`), which the array reader refuses
# (CANNOT_PARSE_INPUT_ASSERTION_FAILED). Escape as warehouse/chdb.py does instead (the
# characters that end or start an escape), so both backends take the same values.
_PARAM_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r",
                                "\0": "\\0"})


class _Escaped:
    """A str parameter already in escaped form: clickhouse-connect sends str(value) as is."""

    __slots__ = ("text",)

    def __init__(self, value: str) -> None:
        self.text = value.translate(_PARAM_ESCAPES)

    def __str__(self) -> str:
        return self.text


def _bind(sql: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    # Only server-side placeholders ({name:Type}); anything else is left to the client.
    return {name: _Escaped(value) if isinstance(value, str) and f"{{{name}:" in sql else value
            for name, value in params.items()}
