"""The Kafka queue, producer side: records to Kafka, or to a local spool while it is away.

A record is acknowledged to the collector once Kafka has it on every in-sync replica
(acks=all, idempotent producer) or, when Kafka is unreachable or slower than
`ack_timeout`, once it is durable in a local spool (an EventLog of its own). A
background task replays the spool to Kafka in order and deletes records only after
Kafka acknowledged them. While the spool holds anything, new records queue behind it,
so one person's events reach their partition in the order they were accepted.

A send that timed out is not abandoned: its future is kept beside the spooled copy,
and the replay waits for it first. If the late send lands, the copy is deleted
without being sent again; only a send that failed is repeated. That is what keeps a
slow broker from doubling events. Duplicates remain possible only if the process dies
while such a send is in the air; `message_id` is the key for those.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from funnelhouse.collector.sinks.base import QueueUnavailable, Record
from funnelhouse.collector.sinks.kafka_batches import BATCH_BYTES, PartitionBatches, partition_of
from funnelhouse.config import Settings
from funnelhouse.queue.eventlog import EventLog

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
REPLAY_CHUNK = 500
COMPRESSIONS = ("lz4", "zstd", "gzip", "snappy", "none")


class KafkaSink:
    def __init__(
        self,
        bootstrap: str,
        spool_dir: Path,
        *,
        topic_events: str = "funnelhouse.events",
        topic_invalid: str = "funnelhouse.invalid",
        partitions: int = 6,
        retention_hours: int = 168,
        replication_factor: int = 1,
        ack_timeout: float = 2.0,
        retry_interval: float = 1.0,
        compression: str = Settings.kafka_compression,
        fsync: str = "full",
        client_id: str = "funnelhouse-collector",
        linger_ms: float = Settings.kafka_linger_ms,
    ) -> None:
        self.bootstrap = bootstrap
        self.spool_dir = Path(spool_dir)
        self.topics = {"events": topic_events, "invalid": topic_invalid}
        self.partitions = partitions
        self.retention_hours = retention_hours
        self.replication_factor = replication_factor
        self.ack_timeout = ack_timeout
        self.retry_interval = retry_interval
        if compression not in COMPRESSIONS:
            raise ValueError(f"Kafka compression {compression!r}: use one of "
                             f"{', '.join(COMPRESSIONS)}")
        self.compression = compression
        self.linger_ms = linger_ms
        self.fsync = fsync
        self.client_id = client_id

        self.spool: EventLog | None = None
        self._spool_lock: IO[str] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._batches: PartitionBatches | None = None
        self._connected = False
        self._spool_healthy = True
        self._depth = 0             # records in the spool
        self._appending = 0         # spool appends under way: they count as non-empty
        self._spooled_total = 0
        self._replayed_total = 0
        self._last_error = ""
        # Spooled seq -> the send of that record that was still in flight when spooled
        # (or sent by the replay and not yet answered); acked: seqs Kafka confirmed.
        self._in_flight: dict[int, asyncio.Future[Any]] = {}
        self._acked: set[int] = set()
        self._spool_waiting: list[
            tuple[list[Record], list[asyncio.Future[Any] | None], asyncio.Future[None]]] = []
        self._spool_writer: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-spool")
        self._wake = asyncio.Event()
        self._replayer: asyncio.Task[None] | None = None
        # Besides cancel(): Python 3.11's wait_for can swallow a cancellation.
        self._stopping = False

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> KafkaSink:
        options: dict[str, Any] = dict(
            topic_events=settings.kafka_topic_events,
            topic_invalid=settings.kafka_topic_invalid,
            partitions=settings.kafka_partitions,
            retention_hours=settings.kafka_retention_hours,
            fsync=settings.queue_fsync,
            linger_ms=settings.kafka_linger_ms,
            compression=settings.kafka_compression,
        )
        options.update(overrides)
        return cls(settings.kafka_bootstrap, settings.data_dir, **options)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        spool, self._spool_lock = await loop.run_in_executor(self._executor, self._open_spool)
        self.spool = spool
        self._depth = await loop.run_in_executor(self._executor, spool.depth)
        if self._depth:
            log.warning("kafka spool %s holds %d records from before; replaying",
                        spool.path, self._depth)
        try:
            async with asyncio.timeout(max(self.ack_timeout, 5.0)):
                await self._connect()
        except (TimeoutError, KafkaError, OSError) as exc:
            self._note_error("Kafka unreachable at start, spooling", exc)
        self._replayer = asyncio.create_task(self._replay_forever())

    def _open_spool(self) -> tuple[EventLog, IO[str]]:
        """Take the first spool file no other live process holds.

        Each collector process needs a spool of its own (two replaying one spool would
        send it twice); the lock is released when a process dies, so a restarted
        worker adopts what a dead one left behind.
        """
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1024):
            stem = "kafka-spool" if n == 0 else f"kafka-spool-{n}"
            lock = open(self.spool_dir / f"{stem}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            return EventLog(self.spool_dir / f"{stem}.sqlite3", fsync=self.fsync), lock
        raise QueueUnavailable(f"no free Kafka spool file in {self.spool_dir}")

    async def _connect(self) -> None:
        """Create the topics if missing, then start the producer."""
        await ensure_topics(self.bootstrap, list(self.topics.values()),
                            partitions=self.partitions, retention_hours=self.retention_hours,
                            replication_factor=self.replication_factor,
                            client_id=f"{self.client_id}-admin",
                            timeout=max(self.ack_timeout, 5.0))
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=None if self.compression == "none" else self.compression,
            # PartitionBatches gathers records while a partition's batch is in flight;
            # a linger on top would only delay each batch it hands over.
            linger_ms=0,
            max_batch_size=BATCH_BYTES,
            # Records go through PartitionBatches, which partitions them itself; the
            # same function here keeps any other send on the same partitions.
            partitioner=partition_of,
            # A batch that cannot be delivered fails after this; the spool then
            # resends it. Long enough to ride out a leader election.
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()
            batches = PartitionBatches(producer, linger=self.linger_ms / 1000)
            await batches.prepare(list(self.topics.values()))
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._batches = batches
        self._connected = True
        log.info("kafka producer connected to %s", self.bootstrap)

    async def stop(self) -> None:
        self._stopping = True
        if self._replayer is not None:
            self._replayer.cancel()
            await asyncio.gather(self._replayer, return_exceptions=True)
            self._replayer = None
        if self._spool_writer is not None:
            await asyncio.gather(asyncio.shield(self._spool_writer), return_exceptions=True)
        if self._producer is not None:
            # Flushing lets in-flight sends settle, so their spooled copies can go.
            # Each step has its own time: a broker that stopped answering must not keep
            # the producer from being stopped.
            try:
                async with asyncio.timeout(self.ack_timeout):
                    if self._batches is not None:
                        await self._batches.close()
            except TimeoutError as exc:
                self._note_error("Kafka did not answer the last batches on stop", exc)
            try:
                async with asyncio.timeout(self.ack_timeout):
                    await self._producer.stop()
            except (TimeoutError, KafkaError) as exc:
                self._note_error("Kafka producer did not flush on stop", exc)
            self._producer = None
            self._batches = None
            if self._in_flight and self._spool_usable():
                await self._settle_and_trim()
        for future in self._in_flight.values():
            future.cancel()
        self._in_flight.clear()
        self._connected = False
        loop = asyncio.get_running_loop()
        if self.spool is not None:
            await loop.run_in_executor(self._executor, self.spool.close)
            self.spool = None
        self._executor.shutdown(wait=True)
        if self._spool_lock is not None:
            self._spool_lock.close()
            self._spool_lock = None

    # -- publish -----------------------------------------------------------------

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self._producer is None or not self._connected or self._depth or self._appending:
            await self._spool_append(list(records))
            return

        futures = self._send(records)
        if futures:
            await asyncio.wait(set(futures), timeout=self.ack_timeout)

        leftovers: list[tuple[Record, asyncio.Future[Any] | None]] = []
        for i, record in enumerate(records):
            future = futures[i] if futures else None
            if future is not None and future.done() and future.exception() is None:
                continue
            if future is not None and future.done():
                self._note_error("Kafka rejected a record", future.exception())
                future = None
            leftovers.append((record, future))
        if not leftovers:
            return

        # Order matters from here: every later publish must queue behind these.
        if self._connected:
            log.warning("kafka not acknowledging within %.1f s; spooling to %s",
                        self.ack_timeout, self.spool.path if self.spool else "?")
        self._connected = False
        await self._spool_append([record for record, _ in leftovers],
                                 [future for _, future in leftovers])

    def _send(self, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        """Hand records to Kafka; per record, the future of its batch ([] if none could go)."""
        if self._batches is None:
            return []
        try:
            return self._batches.send_many(
                [(self.topics[r.stream], r.key.encode(), r.value) for r in records])
        except KafkaError as exc:  # no partitions known for a topic
            self._note_error("Kafka send failed", exc)
            return []

    async def _spool_append(self, records: list[Record],
                            sends: list[asyncio.Future[Any] | None] | None = None) -> None:
        """Durably append; concurrent callers share one transaction (one fsync).

        `sends` are the records' sends still in the air, registered against their
        spool positions in the same step as the append, before the replay can see them.
        """
        if self.spool is None:
            raise QueueUnavailable("Kafka sink is not started")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._appending += 1
        try:
            self._spool_waiting.append((records, sends or [], future))
            if self._spool_writer is None or self._spool_writer.done():
                self._spool_writer = asyncio.create_task(self._drain_spool_waiting())
            return await future
        finally:
            self._appending -= 1

    async def _drain_spool_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        while self._spool_waiting:
            group, self._spool_waiting = self._spool_waiting, []
            everything = [record for records, _, _ in group for record in records]
            try:
                first, _ = await loop.run_in_executor(
                    self._executor, self.spool.append, everything)  # type: ignore[union-attr]
            except Exception as exc:  # disk full, I/O error: nowhere left to put them
                self._spool_healthy = False
                error = QueueUnavailable(f"Kafka unavailable and spool append failed: {exc}")
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._spool_healthy = True
            self._depth += len(everything)
            self._spooled_total += len(everything)
            self._wake.set()
            for records, sends, future in group:
                for offset, send in enumerate(sends):
                    if send is not None:
                        self._in_flight[first + offset] = send
                if not future.done():
                    future.set_result(None)
                first += len(records)

    # -- replay ------------------------------------------------------------------

    async def _replay_forever(self) -> None:
        while not self._stopping:
            try:
                progressed = await self._replay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep replaying whatever went wrong this round
                self._note_error("Kafka spool replay failed", exc)
                progressed = False
            if progressed:
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(self.retry_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _replay_once(self) -> bool:
        """One step towards an empty spool; False when there is nothing to do now."""
        if self._producer is None:
            try:
                async with asyncio.timeout(max(self.ack_timeout, 5.0)):
                    await self._connect()
            except (TimeoutError, KafkaError, OSError) as exc:
                self._note_error("Kafka still unreachable", exc)
                return False
        if not self._depth:
            if not self._connected:
                self._connected = await self._probe()
            return False
        if not await self._settle_and_trim():
            return False  # earlier sends still unanswered: let them land or fail first

        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(
            self._executor, self.spool.read, 0, REPLAY_CHUNK)  # type: ignore[union-attr]
        unsent = [(seq, record) for seq, record in rows if seq not in self._acked]
        futures = self._send([record for _, record in unsent])
        sent = {seq: future for (seq, _), future in zip(unsent, futures, strict=False)}
        self._in_flight.update(sent)
        if sent:
            await asyncio.wait(set(sent.values()), timeout=self.ack_timeout)
        trimmed = await self._settle_and_trim()
        self._connected = trimmed and not self._in_flight
        return trimmed

    async def _settle_and_trim(self) -> bool:
        """Record the answers of finished sends; delete the acknowledged head of the spool.

        True when no send is still waiting for an answer.
        """
        for seq, future in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[seq]
            if future.cancelled():
                continue
            if future.exception() is None:
                self._acked.add(seq)
            else:
                self._note_error("Kafka send failed; will resend", future.exception())
        if self._acked:
            loop = asyncio.get_running_loop()
            head = await loop.run_in_executor(self._executor, self.spool.first_seq)  # type: ignore[union-attr]
            through = head - 1
            while through + 1 in self._acked:
                through += 1
            if through >= head:
                await loop.run_in_executor(
                    self._executor, self.spool.delete_through, through)  # type: ignore[union-attr]
                count = through - head + 1
                self._acked.difference_update(range(head, through + 1))
                self._depth -= count
                self._replayed_total += count
                if not self._depth:
                    log.info("kafka spool drained (%d records replayed)", self._replayed_total)
        return not self._in_flight

    async def _probe(self) -> bool:
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(self.ack_timeout):
                await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    def _spool_usable(self) -> bool:
        return self.spool is not None and self._spool_healthy

    def _note_error(self, what: str, exc: BaseException | None) -> None:
        self._last_error = f"{what}: {type(exc).__name__}: {exc}" if exc else what
        log.warning("%s", self._last_error)

    def status(self) -> dict[str, Any]:
        return {
            "ready": self._connected or self._spool_usable(),
            "depth": self._depth,
            "queue": "kafka",
            "kafka_connected": self._connected,
            "spooled": self._depth,
            "spooled_total": self._spooled_total,
            "replayed_total": self._replayed_total,
            "spool": str(self.spool.path) if self.spool else None,
            "topics": dict(self.topics),
            "last_error": self._last_error,
            "pid": os.getpid(),
        }


async def ensure_topics(bootstrap: str, topics: list[str], *, partitions: int,
                        retention_hours: int, replication_factor: int = 1,
                        client_id: str = "funnelhouse-admin", timeout: float = 5.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id,
                                request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if not missing:
            return
        retention_ms = str(retention_hours * 3600 * 1000)
        response = await admin.create_topics([
            NewTopic(name, partitions, replication_factor,
                     topic_configs={"retention.ms": retention_ms})
            for name in missing
        ])
        for topic, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {topic} failed: {code} {message}")
            if code == 0:
                log.info("created topic %s: %d partitions, retention %d h, %d replicas",
                         topic, partitions, retention_hours, replication_factor)
    finally:
        await admin.close()
