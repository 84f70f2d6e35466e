"""The scaled backend: a ClickHouse server through clickhouse-connect, same SQL as chdb."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from warehouse.base import (
    INSERT_SETTINGS,
    RESULT_SETTINGS,
    QueryResult,
    WarehouseError,
    WarehouseUnavailable,
)


class ServerWarehouse:
    backend = "server"

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        parts = urlparse(url)
        settings: dict[str, Any] = dict(RESULT_SETTINGS)
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

    def _raw(self, sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        try:
            return self._client.raw_query(sql, parameters=params or None, fmt=fmt)
        except OperationalError as exc:
            raise WarehouseUnavailable(str(exc)) from exc
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=params or None)
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
        return len(rows)

    def readonly(self) -> ServerWarehouse:
        return ServerWarehouse(self.url, readonly=True)

    def close(self) -> None:
        self._client.close()
