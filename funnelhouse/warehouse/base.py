"""The warehouse interface: run SQL, query, insert a batch. Both backends run the same SQL."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from funnelhouse.warehouse.stored_keys import STORED_EVENTS, StoredIn

# Every query result is read as ClickHouse's JSONCompact on both backends, so types
# render identically (64-bit integers as numbers, DateTime64 as text).
RESULT_SETTINGS = {"output_format_json_quote_64bit_integers": 0,
                   "output_format_json_quote_decimals": 0}

# Sent with every insert on both backends. A ReplacingMergeTree (events_raw) would
# otherwise collapse repeats inside each inserted block at insert time; they collapse
# on merge anyway and models pick one copy per message_id themselves, so doing it at
# insert bought nothing and made a 50k-row insert ≈1.3× slower.
INSERT_SETTINGS = {"optimize_on_insert": 0}

# ClickHouse parses and writes one insert on about one core. A large insert is split
# into this many parts inserted at once, each with its own dedup token; the split
# depends only on the rows, so a retried batch is split the same way and every part
# that had landed is dropped as a repeat.
INSERT_PARTS = 2
MIN_PART_BYTES = 4 << 20


def insert_parts(rows: Sequence[bytes], token: str | None
                 ) -> list[tuple[Sequence[bytes], str | None]]:
    """`rows` cut into parts of about equal size, each with the token it is inserted under."""
    total = sum(len(item) for item in rows)
    if total < INSERT_PARTS * MIN_PART_BYTES or len(rows) < INSERT_PARTS:
        return [(rows, token)]
    cuts = [0]
    size = 0
    for i, item in enumerate(rows):
        size += len(item)
        if size * INSERT_PARTS >= total * len(cuts) and len(cuts) < INSERT_PARTS:
            cuts.append(i + 1)
    cuts.append(len(rows))
    return [(rows[start:end], f"{token}/{n}" if token else None)
            for n, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False))
            if end > start]


def minus_token(token: str, dropped: Sequence[str]) -> str:
    """The token of a batch inserted without some of its rows (`dropped`: their
    `source:message_id`): its own, so that a retry after a half-landed insert, which
    drops more, is not taken for the part that landed."""
    digest = hashlib.sha256("\n".join(sorted(dropped)).encode()).hexdigest()[:16]
    return f"{token}:minus:{digest}"


class WarehouseError(Exception):
    """The warehouse refused or failed a statement (bad SQL, read-only, unreachable)."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be reached or failed transiently: retry later."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]

    @classmethod
    def from_json_compact(cls, raw: bytes) -> QueryResult:
        if not raw.strip():
            return cls([], [], [])
        doc = orjson.loads(raw)
        meta = doc.get("meta", [])
        return cls([m["name"] for m in meta], [m["type"] for m in meta], doc.get("data", []))

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows and self.rows[0] else None


class Warehouse(Protocol):
    """What every part of funnelhouse may ask of ClickHouse, and nothing more."""

    backend: str  # "chdb" | "server"

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """DDL or DML with no result."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...

    def query_raw(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        """The result in a ClickHouse output format (CSVWithNames, JSON, Parquet …)."""

    def insert_json_rows(self, table: str, rows: Sequence[bytes], token: str | None = None) -> int:
        """Insert newline-delimited JSON objects; `token` makes a repeat a no-op.

        An item of `rows` is one JSON object or several joined by newlines; the count
        returned is the number of items. A large insert goes in as `insert_parts()`,
        inserted at once.
        """

    def insert_first_copies(self, table: str, rows: Sequence[bytes], token: str | None = None,
                            *, stored_in: StoredIn = STORED_EVENTS) -> list[str] | None:
        """Insert the first copies among `rows` (events_raw rows), as insert_json_rows
        would: rows whose (source, message_id) is in `stored_in`, or came earlier in
        `rows`, are left out, and then the insert goes under `minus_token(token,
        dropped)`. Returns the dropped rows' `source:message_id`.

        None, with nothing inserted, when the backend cannot do it without reading the
        ids out of the rows in Python: the caller then filters the rows itself
        (loader.load.first_copies) and inserts the rest with insert_json_rows.
        """

    def readonly(self, limits: Mapping[str, Any] | None = None) -> Warehouse:
        """A second handle on which the engine itself refuses writes, DDL and settings changes.

        `limits` are settings fixed on it before read-only mode (max_execution_time …).
        """

    def sibling(self) -> Warehouse:
        """Another handle on the same warehouse with this one's rights and limits, for
        statements that run at the same time as this handle's; the caller closes it."""

    def close(self) -> None: ...
