"""The embedded queue, consumer side: batches read from the on-disk log in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from funnelhouse.loader.sources.base import Batch
from funnelhouse.queue.eventlog import Chunk, EventLog

# The batch being loaded, written to the log's state before the insert starts. After
# a crash the loader re-reads exactly this range, so the retry carries the same
# dedup token and the warehouse drops it if the first insert had landed.
PENDING = "loader.pending"
POLL_SECONDS = 0.02


class EmbeddedSource:
    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def start(self) -> None:
        return None

    async def read_ahead(self, max_rows: int, done: asyncio.Event) -> None:
        """Nothing: the log's read is a small part of a batch (0.2 s of a 300k-row drain)."""

    async def next_batch(self, max_rows: int, max_wait: float) -> Batch | None:
        pending = await asyncio.to_thread(self.log.get_state, PENDING)
        if pending:
            first, last = (int(part) for part in pending.split("-"))
            chunks = await asyncio.to_thread(self.log.read_chunks, first - 1,
                                             last - first + 1, last)
            return self._batch(chunks, first, last)

        # Wait for a full batch while there is time left, so a trickle is loaded as one
        # insert per max_wait rather than one insert per event (each insert has a
        # fixed cost of several milliseconds).
        deadline = time.monotonic() + max_wait
        while (await asyncio.to_thread(self.log.depth) < max_rows
               and time.monotonic() < deadline):
            await asyncio.sleep(POLL_SECONDS)
        chunks = await asyncio.to_thread(self.log.read_chunks, 0, max_rows)
        if not chunks:
            return None
        first, last = chunks[0].first, chunks[-1].last
        await asyncio.to_thread(self.log.set_state, PENDING, f"{first}-{last}")
        return self._batch(chunks, first, last)

    @staticmethod
    def _batch(chunks: list[Chunk], first: int, last: int) -> Batch:
        batch = Batch(token=f"log:{first}-{last}", position=last)
        for chunk in chunks:
            if chunk.stream == "events":
                batch.events.append(chunk.rows)
                batch.event_rows += len(chunk)
            else:
                batch.invalid.append(chunk.rows)
                batch.invalid_rows += len(chunk)
        return batch

    async def commit(self, batch: Batch) -> None:
        await asyncio.to_thread(self.log.delete_through, batch.position, state={PENDING: None})

    async def stop(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"lag": self.log.depth(), "queue": "embedded"}
