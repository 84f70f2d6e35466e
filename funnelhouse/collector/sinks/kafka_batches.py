"""Rows of concurrent publishes gathered into one Kafka batch per partition.

aiokafka's `send()` costs ≈20 µs of Python per record (a coroutine and a future per
record, the accumulator's bookkeeping, partition lookups); that was a third of the
collector's CPU for an event on the Kafka queue. Here a row costs a CRC32 and a list
append, and a request waits on one future per batch it has rows in.

Per topic-partition there is one open batch that rows join, and one flusher task that
hands batches to the producer in the order they were opened, the next one when Kafka
has answered the last. aiokafka has one batch per partition in flight at a time; while
it is, the open batch here fills, which is what makes batches large under load (the
producer's own linger is not needed) and keeps one person's events (one key, so one
partition) in the order they came.

A batch's rows go to Kafka as few records as they fit in (`join_rows`): values
newline-delimited, up to RECORD_MAX_BYTES a record. Every Kafka record costs work on
both ends and in between: the consumer makes a Python object per record, and the
broker decompresses and checks each one. A row is JSON written by orjson, which never
writes a raw newline, so the loader inserts a record as newline-delimited JSON as it
is, as it does the embedded log's chunks. A record's key is its first row's; all its
rows are on the partition of their own keys. A record of several rows has a `rows`
header saying how many; one without it holds one row.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from funnelhouse.queue.record import ROWS_HEADER

# How long a topic's partition list is trusted before it is read from the producer's
# metadata again (a topic's partitions can be added while the collector runs).
PARTITIONS_FRESH_SECONDS = 1.0
# A batch holding this many rows goes without lingering: it is a batch request's share
# of a partition (50 events over 6 partitions), and waiting only delays its answer.
LINGER_BELOW_ROWS = 4
# The producer's batch size (uncompressed); the broker's limit on a batch
# (message.max.bytes) is 1 MB compressed. A row alone may be larger: it goes alone.
BATCH_BYTES = 256 * 1024
# A record holds rows up to this size: two or more records a batch, so a consumer that
# must stop part-way through a batch (the loader's row bound) need not take all of it.
RECORD_MAX_BYTES = 128 * 1024
# What a row adds to a batch, over its value and key: more than a record's own framing
# (varints, attributes; the batch header is 61 bytes), so a batch filled by this count
# always fits the producer's builder.
ROW_OVERHEAD_BYTES = 32


def partition_of(key: bytes, all_partitions: Sequence[int], available: Any = None) -> int:
    """One key's partition: CRC32 of the key, as librdkafka's default `consistent` scheme.

    aiokafka's default (the Java client's murmur2, in pure Python) cost ≈6 µs per
    record. Every send of the Kafka sink, direct or replayed from the spool, partitions
    with this one function, so one person's events share a partition whichever way
    they go.
    """
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def join_rows(values: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """Rows as Kafka record values: (index of the record's first row, the rows joined
    by newlines), each record at most RECORD_MAX_BYTES or one row larger than that."""
    if len(values) == 1:
        return [(0, values[0])]
    out: list[tuple[int, bytes]] = []
    start, size = 0, 0
    for i, value in enumerate(values):
        if i > start and size + len(value) > RECORD_MAX_BYTES:
            out.append((start, b"\n".join(values[start:i])))
            start, size = i, 0
        size += len(value) + 1
    out.append((start, b"\n".join(values[start:])))
    return out


class _Open:
    """A partition's batch still taking rows, and the future its rows' senders wait on."""

    __slots__ = ("keys", "values", "size", "future", "opened")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.size = 0
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
        """Add (topic, key, value) rows; per row, the future of the batch it is in.

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
        size = len(key) + len(value) + ROW_OVERHEAD_BYTES
        if batch is None:
            batch = self._open[tp] = _Open(self._loop)
            self._wake(tp)
        elif batch.size + size > BATCH_BYTES:
            # Full: it goes as it is, and the row opens the next one (an empty batch
            # takes any row, whatever its size).
            self._seal(tp)
            batch = self._open[tp] = _Open(self._loop)
        batch.keys.append(key)
        batch.values.append(value)
        batch.size += size
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
        # One turn of the loop first: the requests being handled now add their rows.
        await asyncio.sleep(0)
        topic, partition = tp
        while True:
            await self._linger(tp)
            batch = self._next_batch(tp)
            if batch is None:
                break
            try:
                delivered = await self._producer.send_batch(self._build(batch), topic,
                                                             partition=partition)
            except asyncio.CancelledError:
                _settle(batch.future, None, KafkaError("stopped before the batch was sent"))
                raise
            except Exception as exc:  # KafkaTimeoutError, ProducerClosed, ...
                _settle(batch.future, None, exc)
                continue
            delivered.add_done_callback(lambda done, target=batch.future: _copy(done, target))
            # The next batch goes once this one is answered: aiokafka sends one batch per
            # partition at a time anyway, and rows arriving meanwhile join the open
            # batch here instead of a batch already handed over, which would have to
            # wait for a second round trip.
            await asyncio.wait([delivered])

    async def _linger(self, tp: tuple[str, int]) -> None:
        """Let a batch of a few rows gather more until it is `linger` old (off at 0).

        A produce request costs the broker ≈100 µs of CPU whatever it holds, and single-
        event requests otherwise go one or two rows a batch. Measured with one local
        broker on the collector's two cores (docs/benchmarks.md): 5 ms gave Kafka singles
        +15–21% with lower p50 and p99, batches within noise; it is the default
        (FUNNELHOUSE_KAFKA_LINGER_MS), as in Kafka's own producer since 4.0.
        """
        if self.linger <= 0 or self._sealed.get(tp) or self._closed:
            return
        batch = self._open.get(tp)
        if batch is not None and len(batch.values) < LINGER_BELOW_ROWS:
            wait = batch.opened + self.linger - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)

    def _build(self, batch: _Open) -> Any:
        """The producer's batch of the rows: as few records as `join_rows` makes."""
        builder = self._producer.create_batch()
        records = join_rows(batch.values)
        ends = [first for first, _ in records[1:]] + [len(batch.values)]
        for (first, value), end in zip(records, ends, strict=True):
            # A record of several rows says how many: counting its newlines cost the
            # loader ≈0.25 s a 200k-row batch.
            headers = [(ROWS_HEADER, b"%d" % (end - first))] if end - first > 1 else []
            if builder.append(timestamp=None, key=batch.keys[first], value=value,
                              headers=headers) is None:
                # Cannot happen while BATCH_BYTES is the producer's batch size (each
                # row is counted with more overhead than it adds); never drop a row.
                raise KafkaError("a batch outgrew the producer's batch size")
        return builder

    def _next_batch(self, tp: tuple[str, int]) -> _Open | None:
        sealed = self._sealed.get(tp)
        return sealed.popleft() if sealed else self._open.pop(tp, None)

    async def close(self) -> None:
        """Hand over what is gathered and stop taking rows."""
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
