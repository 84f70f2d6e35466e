"""KafkaSink against a real broker: acks, per-key order, the spool while Kafka is away."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from funnelhouse.collector.sinks.base import QueueUnavailable, Record
from funnelhouse.collector.sinks.kafka import KafkaSink
from funnelhouse.collector.sinks.kafka_batches import RECORD_MAX_BYTES, join_rows
from funnelhouse.config import load_settings
from funnelhouse.queue.kafka_broker import KafkaBroker, free_port
from tests.kafka_support import Read, kafka_broker, read_topics, running, unique  # noqa: F401

pytestmark = pytest.mark.kafka

KEYS = [f"web:anon-{n}" for n in range(12)]


def make_sink(bootstrap: str, spool_dir: Path, name: str, **options) -> KafkaSink:
    return KafkaSink(bootstrap, spool_dir, topic_events=f"{name}.events",
                     topic_invalid=f"{name}.invalid", partitions=4, retention_hours=5,
                     ack_timeout=1.0, retry_interval=0.2, **options)


def records(label: str, count: int) -> list[Record]:
    """Events spread over KEYS, each value saying who and in which order; every 10th invalid."""
    return [Record("invalid" if n % 10 == 9 else "events", KEYS[n % len(KEYS)],
                   f"{KEYS[n % len(KEYS)]}|{label}|{n:05d}".encode())
            for n in range(count)]


def assert_exactly_once_in_key_order(reads: list[Read], published: list[Record]) -> None:
    """Every row once; each key's rows on one partition, in the order published.

    A record holds the rows of a request that share a partition, so a row's own key is
    the one written in its value (`records`), not necessarily its record's."""
    assert sorted(r.value for r in reads) == sorted(r.value for r in published)
    by_key: dict[str, list[bytes]] = defaultdict(list)
    partitions: dict[tuple[str, str], set[int]] = defaultdict(set)
    for read in sorted(reads, key=lambda r: (r.topic, r.partition, r.offset, r.index)):
        key = read.value.split(b"|")[0].decode()
        by_key[(key, read.topic)].append(read.value)
        partitions[(key, read.topic)].add(read.partition)
    expected: dict[str, list[bytes]] = defaultdict(list)
    for record in published:
        expected[(record.key, record.stream)].append(record.value)
    for (key, topic), values in by_key.items():
        stream = "invalid" if topic.endswith(".invalid") else "events"
        assert values == expected[(key, stream)], key
        assert len(partitions[(key, topic)]) == 1, key


async def counting_batches(sink: KafkaSink, handed: list[tuple[str, int]]) -> None:
    """Start the sink, noting (topic, partition) of each batch it hands to the producer."""
    await sink.start()
    producer = sink._producer
    send_batch = producer.send_batch

    async def counted(batch, topic, *, partition):  # type: ignore[no-untyped-def]
        handed.append((topic, partition))
        return await send_batch(batch, topic, partition=partition)

    producer.send_batch = counted


async def read_back(bootstrap: str, name: str, expected: int) -> list[Read]:
    """Every record of the sink's two topics."""
    return await read_topics(bootstrap, [f"{name}.events", f"{name}.invalid"], expected)


async def replay_with_the_next_sink(broker: KafkaBroker, spool_dir: Path, name: str
                                    ) -> dict:
    """Start the broker, then a sink on the spool a stopped one left; its status once the
    spool is replayed."""
    bootstrap = await asyncio.to_thread(broker.start)
    sink = make_sink(bootstrap, spool_dir, name)
    await sink.start()
    try:
        await wait_for(lambda: sink.status()["depth"] == 0)
        status = sink.status()
        assert status["depth"] == 0
        return status
    finally:
        await sink.stop()


async def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_publish_returns_after_kafka_has_every_record_in_key_order(
        kafka_broker: KafkaBroker, tmp_path: Path, compression: str) -> None:  # noqa: F811
    """With the default codec (zstd) and the others offered."""
    bootstrap = running(kafka_broker)
    name = unique("sink")
    published = records("a", 600)

    async def scenario() -> list[Read]:
        sink = make_sink(bootstrap, tmp_path, name, compression=compression)
        await sink.start()
        try:
            assert sink.status()["kafka_connected"] is True
            # Sequential requests keep their order; each returns only once acknowledged.
            for start in range(0, len(published), 50):
                await sink.publish(published[start:start + 50])
            status = sink.status()
            assert status["depth"] == 0 and status["spooled_total"] == 0
            assert status["queue"] == "kafka" and status["ready"] is True
        finally:
            await sink.stop()
        return await read_back(bootstrap, name, len(published))

    reads = asyncio.run(scenario())
    assert_exactly_once_in_key_order(reads, published)


def test_concurrent_publishes_share_batches_and_a_full_batch_splits_in_key_order(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """200 requests at once travel in a few batches per partition, not one per request;
    more than a batch holds (256 KiB) goes as several, still in each key's order."""
    bootstrap = running(kafka_broker)
    name = unique("batches")
    padding = b"x" * 700  # 4,000 records of ≈730 bytes: ≈370 KiB per topic-partition
    published = [Record(r.stream, r.key, r.value + b"|" + padding)
                 for r in records("c", 4000)]
    requests = [published[i:i + 20] for i in range(0, len(published), 20)]
    handed: list[tuple[str, int]] = []

    async def scenario() -> list[Read]:
        sink = make_sink(bootstrap, tmp_path, name)
        await counting_batches(sink, handed)
        try:
            await asyncio.gather(*(sink.publish(request) for request in requests))
            assert sink.status()["spooled_total"] == 0
        finally:
            await sink.stop()
        return await read_back(bootstrap, name, len(published))

    reads = asyncio.run(scenario())
    # Requests were started in order, so each key's records are in that order.
    assert_exactly_once_in_key_order(reads, published)
    per_partition = Counter(handed)
    assert 0 < len(handed) < len(requests) / 5, per_partition
    assert max(per_partition.values()) >= 2, per_partition  # some batch filled up


def test_the_rows_of_a_batch_travel_as_few_records(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """A batch's rows go as records of newline-delimited values (what the loader inserts
    as they are), up to RECORD_MAX_BYTES each, keyed by their first row."""
    bootstrap = running(kafka_broker)
    name = unique("rows")
    small = records("s", 150)                       # 3 requests over 12 keys
    large = [Record("events", "web:one-person", f"web:one-person|b|{n:03d}|".encode()
                    + b"x" * 1000) for n in range(300)]  # ≈300 KB, one key

    async def scenario() -> list[Read]:
        sink = make_sink(bootstrap, tmp_path, name)
        await sink.start()
        try:
            for start in range(0, len(small), 50):
                await sink.publish(small[start:start + 50])
            await sink.publish(large)
            assert sink.status()["spooled_total"] == 0
        finally:
            await sink.stop()
        return await read_back(bootstrap, name, len(small) + len(large))

    reads = asyncio.run(scenario())
    assert_exactly_once_in_key_order(reads, small + large)
    records_of = defaultdict(list)
    for read in reads:
        records_of[(read.topic, read.partition, read.offset)].append(read)
    for rows in records_of.values():
        assert rows[0].key == rows[0].value.split(b"|")[0].decode()
    small_records = {where for where, rows in records_of.items()
                     if not rows[0].value.startswith(b"web:one-person")}
    # Each request is answered before the next: one record per partition and topic.
    assert len(small_records) <= 3 * 4 * 2
    large_records = [rows for where, rows in records_of.items() if where not in small_records]
    # 300 rows of ≈1 KB: a full batch (256 KiB) as two records of ≤ 128 KiB, then the rest.
    assert len(large_records) == 3
    for rows in large_records:
        assert sum(len(read.value) + 1 for read in rows) - 1 <= RECORD_MAX_BYTES


def test_the_codec_comes_from_the_settings_and_an_unknown_one_is_refused(
        tmp_path: Path) -> None:
    settings = load_settings({"FUNNELHOUSE_KAFKA_COMPRESSION": "lz4"}, data_dir=tmp_path)
    assert KafkaSink.from_settings(settings).compression == "lz4"
    assert KafkaSink.from_settings(load_settings({}, data_dir=tmp_path)).compression == "zstd"
    with pytest.raises(ValueError, match="'brotli': use one of lz4, zstd, gzip, snappy, none"):
        make_sink("127.0.0.1:1", tmp_path, "x", compression="brotli")


def test_join_rows_keeps_rows_whole_and_records_within_the_limit() -> None:
    assert join_rows([b"a"]) == [(0, b"a")]
    assert join_rows([b"a", b"b", b"c"]) == [(0, b"a\nb\nc")]
    rows = [bytes([65 + n % 26]) * 50_000 for n in range(7)]
    joined = join_rows(rows)
    assert [(first, value.split(b"\n")) for first, value in joined] == [
        (0, rows[0:2]), (2, rows[2:4]), (4, rows[4:6]), (6, rows[6:7])]
    assert all(len(value) <= RECORD_MAX_BYTES for _, value in joined)
    exact = [b"e" * 65_535, b"f" * 65_536]          # joined: exactly the limit
    assert join_rows(exact) == [(0, b"\n".join(exact))]
    huge = b"h" * (RECORD_MAX_BYTES + 1)   # a row alone larger than the limit goes alone
    assert join_rows([b"a", huge, b"b"]) == [(0, b"a"), (1, huge), (2, b"b")]


@pytest.mark.parametrize("linger_ms", [0, 300])
def test_a_linger_gathers_single_events_into_fewer_batches(
        kafka_broker: KafkaBroker, tmp_path: Path, linger_ms: int) -> None:  # noqa: F811
    """Single-record publishes a few ms apart, one key: with FUNNELHOUSE_KAFKA_LINGER_MS
    they share batches; without it each goes as soon as Kafka answered the last."""
    bootstrap = running(kafka_broker)
    name = unique(f"linger{linger_ms}")
    published = [Record("events", "web:one-person", f"web:one-person|l|{n:03d}".encode())
                 for n in range(30)]
    handed: list[tuple[str, int]] = []

    async def scenario() -> list[Read]:
        sink = make_sink(bootstrap, tmp_path, name, linger_ms=linger_ms)
        await counting_batches(sink, handed)

        async def one(n: int) -> None:
            await asyncio.sleep(n * 0.02)          # a request every 20 ms
            await sink.publish([published[n]])

        try:
            await asyncio.gather(*(one(n) for n in range(len(published))))
        finally:
            await sink.stop()
        return await read_back(bootstrap, name, len(published))

    reads = asyncio.run(scenario())
    assert_exactly_once_in_key_order(reads, published)
    if linger_ms:
        assert len(handed) <= 6, handed            # 600 ms of publishes, 300 ms lingers
    else:
        assert len(handed) >= 10, handed           # a batch per answer from Kafka


def test_topics_are_created_with_the_partitions_and_retention_asked_for(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name = unique("topics")

    async def scenario() -> None:
        sink = make_sink(bootstrap, tmp_path, name)
        await sink.start()
        await sink.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            for topic in (f"{name}.events", f"{name}.invalid"):
                [description] = await admin.describe_topics([topic])
                assert len(description["partitions"]) == 4
                [response] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None})])
                configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
                assert configs["retention.ms"] == str(5 * 3600 * 1000)
        finally:
            await admin.close()

    asyncio.run(scenario())


def test_broker_down_spools_then_replays_in_order_nothing_lost_or_doubled(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name = unique("outage")
    before, during, after = records("before", 120), records("during", 300), records("after", 60)

    async def scenario() -> list[Read]:
        sink = make_sink(bootstrap, tmp_path, name)
        await sink.start()
        try:
            await sink.publish(before)
            await asyncio.to_thread(kafka_broker.stop)

            # Concurrent requests while Kafka is away: all answered from the spool.
            await asyncio.gather(*(sink.publish(during[i:i + 20])
                                   for i in range(0, len(during), 20)))
            status = sink.status()
            assert status["kafka_connected"] is False
            assert status["ready"] is True
            assert status["depth"] == len(during) == status["spooled"]

            await asyncio.to_thread(kafka_broker.start)
            # Accepted while the replay may still run: queued behind the spool.
            await sink.publish(after)
            await wait_for(lambda: sink.status()["depth"] == 0 and sink.status()["kafka_connected"])
            status = sink.status()
            assert status["depth"] == 0 and status["kafka_connected"] is True
            assert status["replayed_total"] == status["spooled_total"]
        finally:
            await sink.stop()
        return await read_back(bootstrap, name, len(before) + len(during) + len(after))

    reads = asyncio.run(scenario())
    assert_exactly_once_in_key_order(reads, before + during + after)


def test_spool_outlives_the_sink_and_is_replayed_by_the_next_one(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """Kafka down when the collector starts: it still accepts; a restart replays."""
    bootstrap = running(kafka_broker)
    name = unique("restart")
    published = records("spooled", 200)

    async def scenario() -> list[Read]:
        await asyncio.to_thread(kafka_broker.stop)
        first = make_sink(bootstrap, tmp_path, name)
        await first.start()
        try:
            assert first.status()["kafka_connected"] is False
            for start in range(0, len(published), 25):
                await first.publish(published[start:start + 25])
            assert first.status()["depth"] == len(published)
        finally:
            await first.stop()

        status = await replay_with_the_next_sink(kafka_broker, tmp_path, name)
        assert status["replayed_total"] == len(published)
        return await read_back(bootstrap, name, len(published))

    reads = asyncio.run(scenario())
    assert_exactly_once_in_key_order(reads, published)


def test_broker_killed_with_batches_in_flight_stop_returns_and_nothing_is_lost(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """SIGKILL the broker while requests wait on their batches: each request still gets
    its answer (Kafka's ack or the spool), the sink stops although batches are left
    unanswered, and the next sink delivers every answered record (a record whose send
    was in the air may arrive twice; none may be missing)."""
    bootstrap = running(kafka_broker)
    name = unique("killed")
    published = records("k", 2000)
    requests = [published[i:i + 20] for i in range(0, len(published), 20)]

    async def scenario() -> list[Read]:
        first = make_sink(bootstrap, tmp_path, name)
        await first.start()
        try:
            answered = asyncio.gather(*(first.publish(request) for request in requests[:50]))
            await asyncio.sleep(0)           # their records are in batches now
            await asyncio.to_thread(kafka_broker.kill)
            later = [first.publish(request) for request in requests[50:]]
            await asyncio.gather(answered, *later)   # every request answered, none raised
            assert first.status()["spooled_total"] > 0
        finally:
            await first.stop()
        await replay_with_the_next_sink(kafka_broker, tmp_path, name)
        return await read_back(bootstrap, name, len(published))

    reads = asyncio.run(scenario())
    assert {r.value for r in reads} == {r.value for r in published}


def test_two_live_sinks_never_share_a_spool(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def scenario() -> tuple[str, str]:
        one, two = make_sink(dead, tmp_path, "x"), make_sink(dead, tmp_path, "x")
        await one.start()
        await two.start()
        try:
            return one.status()["spool"], two.status()["spool"]
        finally:
            await one.stop()
            await two.stop()

    first, second = asyncio.run(scenario())
    assert first != second


def test_neither_kafka_nor_spool_raises_queue_unavailable(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def scenario() -> None:
        sink = make_sink(dead, tmp_path, "nowhere")
        await sink.start()
        try:
            await sink.publish(records("ok", 3))
            assert sink.status()["depth"] == 3
            sink.spool.close()  # the disk is gone
            with pytest.raises(QueueUnavailable):
                await sink.publish(records("lost", 3))
            assert sink.status()["ready"] is False
        finally:
            sink.spool = None
            await sink.stop()

    asyncio.run(scenario())
