"""The embedded queue, producer side: group-committed appends to the on-disk log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from funnelhouse.collector.sinks.base import QueueUnavailable, Record
from funnelhouse.queue.eventlog import EventLog, disk_full


class EmbeddedSink:
    """Requests that arrive while a commit is running wait and share the next commit.

    One writer thread owns the appends, so at most one transaction is in flight and
    every waiting request rides on it: the fsync is paid per group, not per request.
    """

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._waiting: list[tuple[Sequence[Record], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog")
        self._healthy = True

    async def start(self) -> None:
        return None

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((records, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            group, self._waiting = self._waiting, []
            records = [record for batch, _ in group for record in batch]
            try:
                await loop.run_in_executor(self._executor, self.log.append, records)
            except Exception as exc:  # disk full, I/O error, locked for too long
                self._healthy = False
                # Name a full disk as such: it is the one cause an operator must fix.
                error = QueueUnavailable(
                    f"disk full: the event queue cannot grow ({exc})"
                    if disk_full(exc) else f"event log append failed: {exc}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._healthy = True
            for _, future in group:
                if not future.done():
                    future.set_result(None)

    async def stop(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
        self._executor.shutdown(wait=True)

    def status(self) -> dict[str, Any]:
        if not self._healthy:
            # Probe instead of waiting for a request to succeed: behind a load balancer
            # that routes by /readyz, no request would come to prove the disk is back.
            self._healthy = self.log.writable()
        return {"ready": self._healthy, "depth": self.log.depth(), "queue": "embedded"}
