"""Records of concurrent publishes gathered into one Kafka batch per partition.

aiokafka's `send()` costs ≈20 µs of Python per record (a coroutine and a future per
record, the accumulator's bookkeeping, partition lookups); that was a third of the
collector's CPU for an event on the Kafka queue. Here a record costs a CRC32 and an
append to the C record builder, and a request waits on one future per batch it has
records in.

Per topic-partition there is one open builder that records join, and one flusher
task that hands builders to the producer in the order they were opened, the next one
when Kafka has answered the last. aiokafka has one batch per partition in flight at a
time; while it is, the open builder here fills, which is what makes batches large under
load (the producer's own linger is not needed) and keeps one person's events (one key,
so one partition) in the order they came.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

# How long a topic's partition list is trusted before it is read from the producer's
# metadata again (a topic's partitions can be added while the collector runs).
PARTITIONS_FRESH_SECONDS = 1.0
# A batch holding this many records goes without lingering: it is a batch request's
# share of a partition (50 events over 6 partitions), and waiting only delays its answer.
LINGER_BELOW_RECORDS = 4


def partition_of(key: bytes, all_partitions: Sequence[int], available: Any = None) -> int:
    """One key's partition: CRC32 of the key, as librdkafka's default `consistent` scheme.

    aiokafka's default (the Java client's murmur2, in pure Python) cost ≈6 µs per
    record. Every send of the Kafka sink, direct or replayed from the spool, partitions
    with this one function, so one person's events share a partition whichever way
    they go.
    """
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


class _Open:
    """A builder still taking records, and the future its records' senders wait on."""

    __slots__ = ("builder", "future", "opened")

    def __init__(self, producer: AIOKafkaProducer, loop: asyncio.AbstractEventLoop) -> None:
        self.builder = producer.create_batch()
        self.future: asyncio.Future[Any] = loop.create_future()
        self.opened = loop.time()


class PartitionBatches:
    """Gathers records into one producer batch per topic-partition; see the module doc."""

    def __init__(self, producer: AIOKafkaProducer, linger: float = 0.0) -> None:
        self._producer = producer
        self.linger = linger
        self._loop = asyncio.get_running_loop()
        self._open: dict[tuple[str, int], _Open] = {}
        self._sealed: dict[tuple[str, int], deque[_Open]] = {}
        self._flushers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._partitions: dict[str, tuple[float, list[int]]] = {}
        self._closed = False

    async def prepare(self, topics: Sequence[str]) -> None:
        """Wait for the topics' metadata, so `send_many` never has to."""
        for topic in topics:
            await self._producer.partitions_for(topic)

    def send_many(self, records: Sequence[tuple[str, bytes, bytes]]) -> list[asyncio.Future[Any]]:
        """Add (topic, key, value) records; per record, the future of the batch it is in.

        The future resolves once Kafka acknowledged the batch, or fails with why not.
        """
        if self._closed:
            return [self._failed(KafkaError("the Kafka sink is stopping"))] * len(records)
        futures: list[asyncio.Future[Any]] = []
        now = self._loop.time()
        partitions_by_topic: dict[str, list[int]] = {}
        for topic, key, value in records:
            partitions = partitions_by_topic.get(topic)
            if partitions is None:
                partitions = partitions_by_topic[topic] = self._partitions_of(topic, now)
            futures.append(self._add((topic, partition_of(key, partitions)), key, value))
        return futures

    def _add(self, tp: tuple[str, int], key: bytes, value: bytes) -> asyncio.Future[Any]:
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = _Open(self._producer, self._loop)
            self._wake(tp)
        if batch.builder.append(timestamp=None, key=key, value=value) is None:
            # Full: it goes as it is, and the record opens the next one (an empty
            # builder takes any record, whatever its size).
            self._seal(tp)
            batch = self._open[tp] = _Open(self._producer, self._loop)
            batch.builder.append(timestamp=None, key=key, value=value)
        return batch.future

    def _seal(self, tp: tuple[str, int]) -> None:
        batch = self._open.pop(tp, None)
        if batch is not None:  # an open batch holds a record from the moment it opens
            self._sealed.setdefault(tp, deque()).append(batch)
            self._wake(tp)

    def _wake(self, tp: tuple[str, int]) -> None:
        flusher = self._flushers.get(tp)
        if flusher is None or flusher.done():
            self._flushers[tp] = asyncio.create_task(self._flush(tp))

    async def _flush(self, tp: tuple[str, int]) -> None:
        """Hand this partition's batches to the producer, oldest first, until none is left."""
        # One turn of the loop first: the requests being handled now add their records.
        await asyncio.sleep(0)
        topic, partition = tp
        while True:
            await self._linger(tp)
            batch = self._next_batch(tp)
            if batch is None:
                break
            try:
                delivered = await self._producer.send_batch(batch.builder, topic,
                                                             partition=partition)
            except asyncio.CancelledError:
                _settle(batch.future, None, KafkaError("stopped before the batch was sent"))
                raise
            except Exception as exc:  # KafkaTimeoutError, ProducerClosed, ...
                _settle(batch.future, None, exc)
                continue
            delivered.add_done_callback(lambda done, target=batch.future: _copy(done, target))
            # The next batch goes once this one is answered: aiokafka sends one batch per
            # partition at a time anyway, and records arriving meanwhile join the open
            # builder here instead of a batch already handed over, which would have to
            # wait for a second round trip.
            await asyncio.wait([delivered])

    async def _linger(self, tp: tuple[str, int]) -> None:
        """Let a batch of a few records gather more until it is `linger` old (off at 0).

        A produce request costs the broker ≈100 µs of CPU whatever it holds, and single-
        event requests otherwise go one or two records a batch. Measured with one local
        broker on the collector's two cores (docs/benchmarks.md): 5 ms gave Kafka singles
        +15–21% with lower p50 and p99, batches within noise; it is the default
        (FUNNELHOUSE_KAFKA_LINGER_MS), as in Kafka's own producer since 4.0.
        """
        if self.linger <= 0 or self._sealed.get(tp) or self._closed:
            return
        batch = self._open.get(tp)
        if batch is not None and batch.builder.record_count() < LINGER_BELOW_RECORDS:
            wait = batch.opened + self.linger - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)

    def _next_batch(self, tp: tuple[str, int]) -> _Open | None:
        sealed = self._sealed.get(tp)
        return sealed.popleft() if sealed else self._open.pop(tp, None)

    async def close(self) -> None:
        """Hand over what is gathered and stop taking records."""
        self._closed = True
        for tp in list(self._open):
            self._seal(tp)
        flushers = [task for task in self._flushers.values() if not task.done()]
        if flushers:
            await asyncio.gather(*flushers, return_exceptions=True)

    def _partitions_of(self, topic: str, now: float) -> list[int]:
        known = self._partitions.get(topic)
        if known is None or now - known[0] > PARTITIONS_FRESH_SECONDS:
            found = self._producer.client.cluster.partitions_for_topic(topic)
            if not found:
                if known is None:
                    raise KafkaError(f"no partitions known for topic {topic}")
                return known[1]
            known = self._partitions[topic] = (now, sorted(found))
        return known[1]

    def _failed(self, exc: BaseException) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        future.set_exception(exc)
        return future


def _copy(done: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    """The producer's answer for a batch, given to the future its records wait on."""
    if done.cancelled():
        _settle(target, None, KafkaError("the batch's send was cancelled"))
    else:
        _settle(target, done.result() if done.exception() is None else None, done.exception())


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
