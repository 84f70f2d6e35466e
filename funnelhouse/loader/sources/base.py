"""The consumer-side queue interface shared by the embedded log and Kafka."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Batch:
    """Rows taken from the queue together.

    `token` names the batch by its position in the queue (e.g. `log:101-150`,
    `kafka:events/3:1200-1399`); the same position always yields the same token, so
    the warehouse drops a batch re-inserted after a crash (insert dedup token).
    """

    token: str
    # Newline-delimited JSON rows for events_raw / events_invalid: an item holds one
    # row or several (a Kafka record, a chunk of the embedded log).
    events: list[bytes] = field(default_factory=list)
    invalid: list[bytes] = field(default_factory=list)
    event_rows: int = 0
    invalid_rows: int = 0
    position: Any = None                                # source-specific, for commit()
    # Part of a batch handed out before under another token (Kafka: a rebalance split
    # its partitions between members). The token cannot catch a repeat of such rows,
    # so the loader checks dead letters by message id too (events always are).
    share_of_earlier_batch: bool = False

    def __len__(self) -> int:
        return self.event_rows + self.invalid_rows


class Source(Protocol):
    async def start(self) -> None: ...

    async def next_batch(self, max_rows: int, max_wait: float) -> Batch | None:
        """Up to max_rows rows, waiting at most max_wait seconds for the first one.

        After a crash, the first batch returned is exactly the one that was in flight.
        """

    async def read_ahead(self, max_rows: int, done: asyncio.Event) -> None:
        """While the last batch is inserted (until `done` is set): prepare the next one.

        Whatever is read here stays in memory until next_batch hands it out; nothing
        about it is recorded in the queue, so a crash loses nothing.
        """

    async def commit(self, batch: Batch) -> None:
        """The batch is in the warehouse: never hand it out again."""

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """For /metrics: at least `lag` (rows not yet loaded)."""
