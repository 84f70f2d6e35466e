"""The Kafka queue, consumer side: batches from both topics, named by their offset ranges.

A batch's token lists the offset range it took from each partition, e.g.
`kafka:events/0:100-199,events/1:50-80,invalid/2:7-7`. The loader inserts with that
token, so the warehouse drops a batch inserted twice. For that to work after a crash
or a rebalance, the same ranges must come back as one batch with the same token. So,
before a batch is handed out, its ranges are written to Kafka itself: for every
partition in it, the *start* offset is committed with metadata

    fh1:<end offset>:<batch id>:<partitions in the batch>

(the consumer position does not move: start is where the group already is). Whoever
owns those partitions next finds the metadata, re-reads exactly start..end and, when
it owns every partition of that batch, rebuilds the identical token. `commit()` then
commits end + 1 with empty metadata.

While the loader inserts a batch, `read_ahead` takes the next batch's records off the
consumer (aiokafka's per-record Python work then overlaps the insert, which runs in a
thread with the GIL released). They only wait in memory: nothing is marked or committed
for them until `next_batch` hands them out, and a rebalance or a failed fetch drops
them, to be read again from the committed offsets.

On a rebalance, the revocation callback first waits (up to `revoke_grace` seconds)
for the batch in hand to be committed, as Kafka's own consumers do, so a loader that
is merely busy does not make its batch move. A batch still uncommitted then is never
committed by this consumer; its next owner replays it. If the new assignment splits
such a batch between consumers, each re-reads its share under the token of that
share, marked as such: the loader then drops rows whose (source, message_id) is already
stored, in events_raw (as always) and in events_invalid (only then), since the dead
member's insert under the whole batch's token may have landed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from funnelhouse.loader.sources.base import Batch
from funnelhouse.queue.record import ROWS_HEADER

log = logging.getLogger(__name__)

PENDING_PREFIX = "fh1"
COMMIT_ATTEMPTS = 3
REPLAY_FETCH_SECONDS = 30.0
# read_ahead asks the consumer this often whether the insert is done (and for records).
READ_AHEAD_POLL_MS = 50

Ranges = dict[TopicPartition, tuple[int, int]]


@dataclass
class _Replay:
    """A batch handed out before (by us or a previous owner) that must come back whole."""

    ranges: Ranges
    share: bool = False  # only some of its partitions are ours: another token
    rows: dict[TopicPartition, list[Any]] = field(default_factory=dict)


class KafkaSource:
    def __init__(
        self,
        bootstrap: str,
        *,
        topic_events: str = "funnelhouse.events",
        topic_invalid: str = "funnelhouse.invalid",
        group_id: str = "funnelhouse-loader",
        client_id: str = "funnelhouse-loader",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 2_000,
        max_poll_interval_ms: int = 300_000,
        revoke_grace: float = 15.0,
        create_topics: dict[str, Any] | None = None,
    ) -> None:
        """`create_topics`, if given, holds KafkaSink's topic arguments (partitions,
        retention_hours, replication_factor): a loader started before any collector
        then creates the topics rather than waiting for them."""
        self.bootstrap = bootstrap
        self.topics = {"events": topic_events, "invalid": topic_invalid}
        self._streams = {topic: stream for stream, topic in self.topics.items()}
        self.group_id = group_id
        self.client_id = client_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.revoke_grace = revoke_grace
        self.create_topics = create_topics

        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        # Bumped on every revocation: a batch from an older epoch is never committed,
        # since its partitions may have moved (its next owner replays it instead).
        self._epoch = 0
        self._unchecked: set[TopicPartition] = set()  # assigned, pending metadata not read
        self._replays: list[_Replay] = []
        self._deferred: dict[TopicPartition, int] = {}  # final commits that failed
        self._handed_out: Batch | None = None  # returned by next_batch, not committed
        self._handed_out_committed = asyncio.Event()
        self._waiting_for_commit = False  # a rebalance waits for the batch in hand
        self._lag = 0
        # Records read ahead of the next batch (read_ahead), in the epoch they were read.
        self._ahead: dict[TopicPartition, list[Any]] = {}
        self._ahead_rows = 0
        self._ahead_epoch = -1

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> KafkaSource:
        options: dict[str, Any] = dict(
            topic_events=settings.kafka_topic_events,
            topic_invalid=settings.kafka_topic_invalid,
            create_topics=dict(partitions=settings.kafka_partitions,
                               retention_hours=settings.kafka_retention_hours),
        )
        options.update(overrides)
        return cls(settings.kafka_bootstrap, **options)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self.create_topics is not None:
            from funnelhouse.collector.sinks.kafka import ensure_topics

            await ensure_topics(self.bootstrap, list(self.topics.values()),
                                client_id=f"{self.client_id}-admin", **self.create_topics)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                          client_id=f"{self.client_id}-admin")
        await self._admin.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            # How long the group waits for members to rejoin: longer than the grace
            # a member may spend in the revocation callback, or it is thrown out.
            rebalance_timeout_ms=int((self.revoke_grace + 15) * 1000),
            # Topics created after the loader started are noticed within this.
            metadata_max_age_ms=30_000,
            # A fetch brings up to 16 MB of a partition (64 MB in all) rather than the
            # client's 1 MB: a batch of the default 200k rows spread over 6 partitions
            # is several MB of LZ4 records in each (the embedded log holds 50k rows in
            # 6.4 MB), and each fetch is a round trip. 300k rows in 50k-row batches:
            # read 2.1 -> 1.4-1.7 s.
            max_partition_fetch_bytes=16 << 20,
            fetch_max_bytes=64 << 20,
        )
        self._consumer.subscribe(list(self.topics.values()), listener=_Listener(self))
        await self._consumer.start()

    async def stop(self) -> None:
        # Leaves the group without committing: an uncommitted batch stays pending and
        # its next owner replays it.
        self._handed_out = None
        self._handed_out_committed.set()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._handed_out is not None and self._handed_out.position[0] == self._epoch:
            # Our generation is still valid until this callback returns: give the
            # loader the chance to finish and commit rather than move the batch.
            self._waiting_for_commit = True
            try:
                async with asyncio.timeout(self.revoke_grace):
                    await self._handed_out_committed.wait()
            except TimeoutError:
                log.warning("batch %s not committed within %.0f s of a rebalance; its next "
                            "owner replays it", self._handed_out.token, self.revoke_grace)
            finally:
                self._waiting_for_commit = False
        self._handed_out = None
        self._epoch += 1
        self._drop_ahead()
        self._unchecked -= revoked
        self._replays = [r for r in self._replays if not revoked & r.ranges.keys()]
        for tp in revoked:
            self._deferred.pop(tp, None)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._epoch += 1
        self._drop_ahead()
        self._unchecked |= assigned

    # -- batches -----------------------------------------------------------------

    async def next_batch(self, max_rows: int, max_wait: float) -> Batch | None:
        consumer = self._require_consumer()
        deadline = time.monotonic() + max_wait
        while True:
            epoch = self._epoch
            try:
                if self._unchecked:
                    await self._load_pending(self._unchecked)
                if self._replays:
                    batch = await self._replay(self._replays[0], epoch)
                else:
                    batch = await self._fresh(consumer, max_rows, deadline, epoch)
            except KafkaError as exc:
                log.warning("kafka fetch failed, will retry: %s", exc)
                self._restart_from_committed(consumer)
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                batch = None
            if self._epoch != epoch:
                # The assignment changed while rows were gathered: drop them and go
                # back to the committed offsets, which is where they will come from.
                self._restart_from_committed(consumer)
                if time.monotonic() < deadline:
                    continue
                batch = None
            await self._update_lag(consumer)
            if batch is not None:
                self._handed_out = batch
                self._handed_out_committed.clear()
            return batch

    async def read_ahead(self, max_rows: int, done: asyncio.Event) -> None:
        """Until `done` is set: read up to max_rows records of the next batch.

        Only between batches of this epoch, with no partition to seek and no replay
        waiting (those move the consumer's position). A failed fetch drops what was
        read ahead and sends next_batch back to the committed offsets.
        """
        consumer = self._consumer
        epoch = self._epoch
        if consumer is None or self._unchecked or self._replays:
            return
        if self._ahead_epoch != epoch:
            self._drop_ahead()
        self._ahead_epoch = epoch
        while not done.is_set() and self._ahead_rows < max_rows:
            try:
                got = await consumer.getmany(timeout_ms=READ_AHEAD_POLL_MS,
                                             max_records=max_rows - self._ahead_rows)
            except KafkaError as exc:
                # The position may have moved past records that never reached us: go
                # back to the committed offsets, as next_batch does after a failed fetch.
                log.warning("kafka read-ahead failed, will read again: %s", exc)
                self._restart_from_committed(consumer)
                return
            if self._epoch != epoch:  # a rebalance: every position is sought again
                self._drop_ahead()
                return
            for tp, records in got.items():
                if records:
                    self._ahead.setdefault(tp, []).extend(records)
                    self._ahead_rows += rows_in(records)

    def _keep_first(self, rows: dict[TopicPartition, list[Any]], max_rows: int,
                    epoch: int) -> dict[TopicPartition, list[Any]]:
        """The first records of each partition up to max_rows rows in all; the rest
        (the consumer's position is past them) wait as read ahead for the next batch.

        A record holds one row or several (rows a collector gathered for its partition),
        and a fetch asks for records, so it can bring more rows than a batch may have.
        """
        kept: dict[TopicPartition, list[Any]] = {}
        total = 0
        for tp, records in rows.items():
            taken = 0
            while taken < len(records) and total < max_rows:
                total += rows_of(records[taken])
                taken += 1
            if taken:
                kept[tp] = records[:taken]
            if taken < len(records):
                self._ahead[tp] = records[taken:]
                self._ahead_rows += rows_in(records[taken:])
        self._ahead_epoch = epoch
        return kept

    def _drop_ahead(self) -> None:
        self._ahead, self._ahead_rows, self._ahead_epoch = {}, 0, -1

    def _take_ahead(self, epoch: int) -> tuple[dict[TopicPartition, list[Any]], int]:
        """The records read ahead, if still of this epoch (else dropped)."""
        rows, count = (self._ahead, self._ahead_rows) if self._ahead_epoch == epoch \
            else ({}, 0)
        self._drop_ahead()
        return rows, count

    async def _fresh(self, consumer: AIOKafkaConsumer, max_rows: int, deadline: float,
                     epoch: int) -> Batch | None:
        # The records read ahead come first: the consumer's position is past them.
        rows, count = self._take_ahead(epoch)
        # Fill the batch until max_wait, so a trickle is one insert per max_wait.
        while count < max_rows and self._epoch == epoch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            got = await consumer.getmany(timeout_ms=max(1, int(remaining * 1000)),
                                         max_records=max_rows - count)
            for tp, records in got.items():
                if records:
                    rows.setdefault(tp, []).extend(records)
                    count += rows_in(records)
        if not count or self._epoch != epoch:
            return None
        if count > max_rows:
            rows = self._keep_first(rows, max_rows, epoch)
        ranges = {tp: (records[0].offset, records[-1].offset) for tp, records in rows.items()}
        if not await self._mark_pending(ranges, epoch):
            # Could not record the ranges: hand out nothing and read them again later.
            self._restart_from_committed(consumer)
            return None
        return self._batch(ranges, rows, epoch)

    async def _mark_pending(self, ranges: Ranges, epoch: int) -> bool:
        batch_id = hashlib.sha1(self._token(ranges).encode()).hexdigest()[:16]
        offsets = {tp: (start, f"{PENDING_PREFIX}:{end}:{batch_id}:{len(ranges)}")
                   for tp, (start, end) in ranges.items()}
        return await self._commit(offsets, epoch)

    def _restart_from_committed(self, consumer: AIOKafkaConsumer) -> None:
        """Forget what was read but not handed out; _load_pending seeks back."""
        owned = consumer.assignment()
        self._drop_ahead()
        self._unchecked |= owned
        self._replays = [r for r in self._replays if not owned & r.ranges.keys()]

    async def _load_pending(self, partitions: set[TopicPartition]) -> None:
        """Position partitions at their committed offsets; pending metadata becomes replays."""
        assert self._admin is not None
        consumer = self._require_consumer()
        asked = set(partitions) & consumer.assignment()
        committed = await self._admin.list_consumer_group_offsets(
            self.group_id, partitions=sorted(asked))
        for tp in asked:
            offset = committed[tp].offset if tp in committed else -1
            if offset >= 0:
                consumer.seek(tp, offset)
            else:
                await consumer.seek_to_beginning(tp)  # as auto_offset_reset="earliest"
        self._unchecked -= set(partitions)
        batches: dict[tuple[str, int], Ranges] = {}
        for tp, meta in committed.items():
            parts = (meta.metadata or "").split(":")
            if meta.offset < 0 or len(parts) != 4 or parts[0] != PENDING_PREFIX:
                continue
            end, batch_id, size = int(parts[1]), parts[2], int(parts[3])
            batches.setdefault((batch_id, size), {})[tp] = (meta.offset, end)
        for (batch_id, size), ranges in batches.items():
            if len(ranges) < size:
                log.warning("pending batch %s split by a rebalance: replaying %d of its %d "
                            "partitions under their own token", batch_id, len(ranges), size)
            self._replays.append(_Replay(ranges, share=len(ranges) < size))

    async def _replay(self, replay: _Replay, epoch: int) -> Batch | None:
        """Re-read exactly the recorded ranges, however long that takes (within bounds)."""
        consumer = self._require_consumer()
        for tp, (start, _) in replay.ranges.items():
            if tp not in replay.rows:
                consumer.seek(tp, start)
                replay.rows[tp] = []
        open_tps = {tp for tp, (_, end) in replay.ranges.items()
                    if not replay.rows[tp] or replay.rows[tp][-1].offset < end}
        give_up = time.monotonic() + REPLAY_FETCH_SECONDS
        while open_tps and self._epoch == epoch and time.monotonic() < give_up:
            got = await consumer.getmany(*open_tps, timeout_ms=500)
            for tp, records in got.items():
                end = replay.ranges[tp][1]
                replay.rows[tp].extend(r for r in records if r.offset <= end)
                if records and records[-1].offset >= end:
                    open_tps.discard(tp)
                    consumer.seek(tp, end + 1)  # records past the range are read later
        if self._epoch != epoch:
            return None
        if open_tps:
            # The log no longer holds the whole range (retention, truncation): hand out
            # what is there under the same token rather than block the loader forever.
            log.warning("replay of %s incomplete after %.0f s; partitions %s short",
                        self._token(replay.ranges), REPLAY_FETCH_SECONDS, sorted(open_tps))
            for tp in open_tps:
                consumer.seek(tp, replay.ranges[tp][1] + 1)
        self._replays.remove(replay)
        batch = self._batch(replay.ranges, replay.rows, epoch)
        batch.share_of_earlier_batch = replay.share
        return batch

    def _batch(self, ranges: Ranges, rows: dict[TopicPartition, list[Any]], epoch: int) -> Batch:
        batch = Batch(token=self._token(ranges), position=(epoch, dict(ranges)))
        for tp in self._order(ranges):
            records = rows.get(tp, [])
            if self._streams[tp.topic] == "events":
                batch.events.extend(record.value for record in records)
                batch.event_rows += rows_in(records)
            else:
                batch.invalid.extend(record.value for record in records)
                batch.invalid_rows += rows_in(records)
        return batch

    def _order(self, ranges: Ranges) -> list[TopicPartition]:
        return sorted(ranges, key=lambda tp: (self._streams.get(tp.topic, tp.topic), tp.partition))

    def _token(self, ranges: Ranges) -> str:
        parts = [f"{self._streams.get(tp.topic, tp.topic)}/{tp.partition}:{start}-{end}"
                 for tp in self._order(ranges) for start, end in [ranges[tp]]]
        return "kafka:" + ",".join(parts)

    # -- commit ------------------------------------------------------------------

    async def commit(self, batch: Batch) -> None:
        epoch, ranges = batch.position
        if epoch != self._epoch:
            log.info("not committing %s: partitions were reassigned since; its next owner "
                     "replays it under the same token", batch.token)
            return
        await self._commit({tp: (end + 1, "") for tp, (_, end) in ranges.items()}, epoch)
        if self._handed_out is batch:
            self._handed_out = None
            self._handed_out_committed.set()

    async def _commit(self, offsets: dict[TopicPartition, tuple[int, str]], epoch: int) -> bool:
        """Commit for partitions we still own; False if it could not be done.

        A failed final commit is not lost: it is retried with the next commit, and
        until then the pending metadata makes the batch come back with its token.
        """
        consumer = self._require_consumer()
        owned = consumer.assignment()
        merged = {tp: (offset, "") for tp, offset in self._deferred.items()
                  if tp in owned and tp not in offsets}
        merged.update({tp: value for tp, value in offsets.items() if tp in owned})
        for attempt in range(COMMIT_ATTEMPTS):
            if self._epoch != epoch:
                return False
            try:
                await consumer.commit(merged)
            except KafkaError as exc:
                log.warning("kafka commit failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            for tp in merged:
                self._deferred.pop(tp, None)
            return True
        for tp, (offset, meta) in merged.items():
            if not meta:
                self._deferred[tp] = offset
        return False

    # -- status ------------------------------------------------------------------

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = list(consumer.assignment())
        if not assigned:
            self._lag = 0
            return
        try:
            async with asyncio.timeout(5):
                # Each partition's end as of the consumer's last fetch of it (a fetch is
                # always in the air while partitions are assigned). Asking the broker
                # instead took 0.03-0.46 s a batch: the request waits behind the fetch
                # the broker holds open for up to fetch_max_wait_ms. Only a partition
                # not fetched yet is asked.
                ends = {tp: consumer.highwater(tp) for tp in assigned}
                unknown = [tp for tp, end in ends.items() if end is None]
                if unknown:
                    ends.update(await consumer.end_offsets(unknown))
                # Kafka counts records (one row, or several a collector gathered),
                # so the lag is in records: those read ahead and those not yet read.
                lag = sum(len(records) for records in self._ahead.values())
                for tp in assigned:
                    lag += max(0, ends[tp] - await consumer.position(tp))
        except (KafkaError, TimeoutError, AssertionError) as exc:
            # AssertionError: aiokafka asserts ownership; a rebalance can race this.
            log.debug("lag not updated: %r", exc)
            return
        self._lag = lag

    def status(self) -> dict[str, Any]:
        consumer = self._consumer
        return {
            "lag": self._lag,
            "queue": "kafka",
            "group": self.group_id,
            "assigned": sorted(f"{self._streams.get(tp.topic, tp.topic)}/{tp.partition}"
                               for tp in consumer.assignment()) if consumer else [],
            "pending_replays": len(self._replays),
            "read_ahead": self._ahead_rows,
            "rebalance_waiting_for_commit": self._waiting_for_commit,
        }

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("KafkaSource is not started")
        return self._consumer


def rows_in(records: list[Any]) -> int:
    return sum(rows_of(record) for record in records)


def rows_of(record: Any) -> int:
    """Rows in a Kafka record: its `rows` header, else one (see kafka_batches)."""
    for name, value in record.headers:
        if name == ROWS_HEADER:
            return int(value)
    return 1


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.source._on_assigned(set(assigned))
