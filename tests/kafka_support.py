"""Kafka test support: one real broker per test session, readers, and a child consumer.

Test modules import the fixture with
`from tests.kafka_support import kafka_broker  # noqa: F401`.

`python -m tests.kafka_support consume ...` runs a KafkaSource in a child process that
a test can SIGKILL: the only honest way to drop a group member without it leaving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from funnelhouse.loader.sources.base import Batch
from funnelhouse.loader.sources.kafka import KafkaSource
from funnelhouse.queue.kafka_broker import KafkaBroker

# Each module that imports the fixture gets its own copy of it, session-scoped or
# not; this keeps them to one broker, stopped when the session ends.
_SHARED: dict[str, KafkaBroker] = {}


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A running broker for the whole session; tests that stop it must start it again."""
    broker = _SHARED.get("broker")
    if broker is None:
        broker = KafkaBroker(tmp_path_factory.mktemp("kafka-broker"), die_with_parent=True)
        _SHARED["broker"] = broker
    try:
        broker.start(timeout=120)
        yield broker
    finally:
        broker.stop()


def running(broker: KafkaBroker) -> str:
    """The bootstrap address, starting the broker if an earlier test left it stopped."""
    return broker.start(timeout=120)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Read:
    """One row read from a topic: a record holds one row or several, newline-delimited
    (`index` is the row's place in its record; `key` is the record's)."""

    topic: str
    partition: int
    offset: int
    index: int
    key: str
    value: bytes


async def read_topics(bootstrap: str, topics: list[str], expected: int,
                      timeout: float = 30.0) -> list[Read]:
    """Every row of the topics from the start (no group), in offset order per partition.

    Stops once `expected` rows were read and a short quiet spell shows no more
    (so duplicates beyond `expected` are seen too), or at `timeout`.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        reads: list[Read] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=300)
            for tp, records in got.items():
                reads.extend(Read(tp.topic, tp.partition, r.offset, index, r.key.decode(), row)
                             for r in records
                             for index, row in enumerate(r.value.split(b"\n")))
            if got:
                quiet_until = None
            if len(reads) >= expected:
                if quiet_until is None:
                    quiet_until = time.monotonic() + 1.0
                elif time.monotonic() > quiet_until:
                    break
        return reads
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return partitions
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} has no partitions")


class TokenWarehouse:
    """Stands in for ClickHouse's insert dedup: a token seen before inserts nothing."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.rows: list[bytes] = []
        self.dropped: list[str] = []

    def insert(self, token: str, rows: list[bytes]) -> bool:
        if token in self.tokens:
            self.dropped.append(token)
            return False
        self.tokens.append(token)
        self.rows.extend(rows)
        return True

    def insert_batch(self, batch: Batch) -> bool:
        """A batch's items hold one row or several (newline-delimited), as the loader's."""
        return self.insert(batch.token, [row for item in batch.events + batch.invalid
                                         for row in item.split(b"\n")])


# -- the child consumer ----------------------------------------------------------------


async def _consume(args: argparse.Namespace) -> None:
    """Load batches into a JSON-lines file; once the --trigger file exists, take one more
    batch, write it as inserted and wait (uncommitted) to be killed."""
    source = KafkaSource(args.bootstrap, topic_events=args.events, topic_invalid=args.invalid,
                         group_id=args.group, client_id="child-loader",
                         session_timeout_ms=args.session_timeout_ms,
                         heartbeat_interval_ms=500)
    out = open(args.out, "a", buffering=1)

    def write(entry: dict) -> None:
        out.write(json.dumps(entry) + "\n")
        out.flush()
        os.fsync(out.fileno())

    await source.start()
    write({"started": True})
    while True:
        batch = await source.next_batch(args.max_rows, 0.5)
        write({"assigned": source.status()["assigned"]})
        if batch is None:
            continue
        write({"inserted": batch.token,
               "rows": [row.decode() for row in batch.events + batch.invalid]})
        if args.trigger.exists():
            write({"hanging": batch.token})
            await asyncio.sleep(3600)
        await source.commit(batch)
        write({"committed": batch.token})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["consume"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--invalid", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-rows", type=int, default=20)
    parser.add_argument("--trigger", type=Path, required=True)
    parser.add_argument("--session-timeout-ms", type=int, default=4000)
    asyncio.run(_consume(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
