"""The producer-side queue interface shared by the embedded log and Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

# The queue's own types; re-exported here because every sink speaks them.
from funnelhouse.queue.record import QueueUnavailable, Record, Stream

__all__ = ["QueueUnavailable", "Record", "Sink", "Stream"]

class Sink(Protocol):
    async def start(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None:
        """Return only once every record is durable; raise QueueUnavailable otherwise."""

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """For /readyz and /metrics: at least `ready` (bool) and `depth` (int)."""
