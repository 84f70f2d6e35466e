"""The producer-side queue interface shared by the embedded log and Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Stream = Literal["events", "invalid"]


class QueueUnavailable(Exception):
    """Nothing could be stored durably; the collector answers 503, never 2xx."""


@dataclass(frozen=True, slots=True)
class Record:
    """One row for the warehouse, already serialised.

    `stream` picks the table (events -> events_raw, invalid -> events_invalid); `key`
    keeps one person's events in order (Kafka partition key `source:person`); `value`
    is the JSON object of the row, column names as in sql/migrations.
    """

    stream: Stream
    key: str
    value: bytes


class Sink(Protocol):
    async def start(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None:
        """Return only once every record is durable; raise QueueUnavailable otherwise."""

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """For /readyz and /metrics: at least `ready` (bool) and `depth` (int)."""
