"""KafkaSource against a real broker: ranges as tokens, crash replay, group members."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka.errors import KafkaError

from funnelhouse.collector.enrich.time import format_ts
from funnelhouse.collector.sinks.base import Record
from funnelhouse.collector.sinks.kafka import KafkaSink
from funnelhouse.config import PACKAGE_ROOT
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Batch
from funnelhouse.loader.sources.kafka import KafkaSource
from funnelhouse.queue.kafka_broker import KafkaBroker
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate
from tests.kafka_support import TokenWarehouse, kafka_broker, running, unique  # noqa: F401

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 3


async def produce(bootstrap: str, name: str, spool_dir: Path, label: str,
                  count: int, per_request: int = 1) -> list[bytes]:
    """`count` rows over many keys (so every partition gets some); every 10th invalid.

    Each row is a request of its own, answered before the next is made, so each is a
    record of its own (as a trickle of single events is) and a batch's offset ranges
    count its rows; with `per_request` rows a request, those of a request that share a
    partition are one record."""
    sink = KafkaSink(bootstrap, spool_dir, topic_events=f"{name}.events",
                     topic_invalid=f"{name}.invalid", partitions=PARTITIONS, retention_hours=1)
    rows = [Record("invalid" if n % 10 == 9 else "events", f"web:{label}-{n % 17}",
                   f"{label}-{n:04d}".encode()) for n in range(count)]
    await sink.start()
    try:
        for at in range(0, count, per_request):
            await sink.publish(rows[at:at + per_request])
        assert sink.status()["depth"] == 0
    finally:
        await sink.stop()
    return [row.value for row in rows]


def source(bootstrap: str, name: str, group: str, **options) -> KafkaSource:
    return KafkaSource(bootstrap, topic_events=f"{name}.events", topic_invalid=f"{name}.invalid",
                       group_id=group, **options)


def ranges_of(token: str) -> dict[str, tuple[int, int]]:
    assert token.startswith("kafka:")
    ranges = {}
    for part in token.removeprefix("kafka:").split(","):
        where, span = part.split(":")
        start, end = span.split("-")
        ranges[where] = (int(start), int(end))
    return ranges


def rows_of(batch: Batch) -> list[bytes]:
    return batch.events + batch.invalid


async def first_batch(src: KafkaSource, rows: int) -> Batch:
    """The source's next batch, waiting up to 30 s for one (a group join comes first)."""
    deadline = time.monotonic() + 30
    batch = None
    while batch is None and time.monotonic() < deadline:
        batch = await src.next_batch(rows, 1.0)
    assert batch is not None
    return batch


async def join_while_batch_in_hand(first: KafkaSource, second: KafkaSource) -> asyncio.Task:
    """Start `second` in the group (a rebalance); return once `first`'s revocation waits
    for the batch it handed out. The task ends when the join is done."""
    joining = asyncio.create_task(second.start())
    deadline = time.monotonic() + 30
    while not first.status()["rebalance_waiting_for_commit"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert first.status()["rebalance_waiting_for_commit"]
    return joining


async def load_until(sources: list[KafkaSource], warehouse: TokenWarehouse, total: int,
                     timeout: float = 60.0) -> None:
    """Each source in turn: take a batch, insert it, commit; until every row is in."""
    deadline = time.monotonic() + timeout
    while len(set(warehouse.rows)) < total and time.monotonic() < deadline:
        for src in sources:
            batch = await src.next_batch(25, 0.3)
            if batch is not None:
                warehouse.insert_batch(batch)
                await src.commit(batch)


def test_batches_name_their_offset_ranges_and_commits_move_the_group_on(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name, group = unique("ranges"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "r", 60)
        first = source(bootstrap, name, group)
        await first.start()
        warehouse = TokenWarehouse()
        try:
            deadline = time.monotonic() + 60
            while len(warehouse.rows) < len(produced) and time.monotonic() < deadline:
                batch = await first.next_batch(25, 1.0)
                if batch is None:
                    continue
                assert len(batch) <= 25
                ranges = ranges_of(batch.token)
                assert sum(end - start + 1 for start, end in ranges.values()) == len(batch)
                assert all(k.split("/")[0] in ("events", "invalid") for k in ranges)
                warehouse.insert_batch(batch)
                await first.commit(batch)
            assert first.status()["lag"] == 0
            assert first.status()["queue"] == "kafka"
        finally:
            await first.stop()
        assert sorted(warehouse.rows) == sorted(produced)

        second = source(bootstrap, name, group)
        await second.start()
        try:
            assert await second.next_batch(100, 3.0) is None
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_records_holding_a_requests_rows_are_counted_and_batched_by_rows(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """50-row requests: each request's rows on one partition are one record. A batch
    counts rows, stops at the first record that reaches max_rows, and the records a
    fetch brought beyond that come first in the next batch: every row once, each
    partition's ranges following on."""
    bootstrap = running(kafka_broker)
    name, group = unique("rows"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "m", 300, per_request=50)
        src = source(bootstrap, name, group)
        await src.start()
        warehouse = TokenWarehouse()
        ends: dict[str, int] = {}
        records = 0
        try:
            deadline = time.monotonic() + 60
            while len(warehouse.rows) < len(produced) and time.monotonic() < deadline:
                batch = await src.next_batch(40, 1.0)
                if batch is None:
                    continue
                items = batch.events + batch.invalid
                biggest = max(item.count(b"\n") + 1 for item in items)
                assert biggest > 1  # the requests' rows did share records
                assert len(batch) == sum(item.count(b"\n") + 1 for item in items)
                assert len(batch) < 40 + biggest
                ranges = ranges_of(batch.token)
                assert sum(end - start + 1 for start, end in ranges.values()) == len(items)
                for where, (start, end) in ranges.items():
                    assert start == ends.get(where, -1) + 1, where
                    ends[where] = end
                records += len(items)
                assert warehouse.insert_batch(batch)
                await src.commit(batch)
            assert src.status()["lag"] == 0
        finally:
            await src.stop()
        assert sorted(warehouse.rows) == sorted(produced)
        assert records < len(produced) / 3

    asyncio.run(scenario())


def test_uncommitted_batch_comes_back_whole_with_the_same_token_after_a_crash(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name, group = unique("crash"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "c", 80)
        warehouse = TokenWarehouse()

        crashed = source(bootstrap, name, group)
        await crashed.start()
        try:
            lost = await first_batch(crashed, 30)
            warehouse.insert_batch(lost)  # the insert landed; the commit never happened
        finally:
            await crashed.stop()

        restarted = source(bootstrap, name, group)
        await restarted.start()
        try:
            again = await first_batch(restarted, 30)
            assert again.token == lost.token
            assert again.events == lost.events and again.invalid == lost.invalid
            assert restarted.status()["lag"] == len(produced) - len(lost)
            assert warehouse.insert_batch(again) is False
            await restarted.commit(again)
            await load_until([restarted], warehouse, len(produced))
        finally:
            await restarted.stop()
        assert sorted(warehouse.rows) == sorted(produced)
        assert warehouse.dropped == [lost.token]

    asyncio.run(scenario())


def test_rebalance_lets_the_batch_in_hand_commit_instead_of_moving_it(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name, group = unique("grace"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "g", 90)
        warehouse = TokenWarehouse()
        first = source(bootstrap, name, group)
        second = source(bootstrap, name, group)
        await first.start()
        try:
            in_hand = await first_batch(first, 20)
            # As the loader does while it inserts: the next batch's records are read.
            task, done = await read_ahead_until_some(first, 20)
            warehouse.insert_batch(in_hand)

            joining = await join_while_batch_in_hand(first, second)
            assert first.status()["read_ahead"] > 0   # still held while the batch commits
            await first.commit(in_hand)
            await joining
            done.set()
            await task
            # Their partitions may have moved: the rows read ahead are gone, to be read
            # again by whoever owns each partition now.
            assert first.status()["read_ahead"] == 0

            await load_until([first, second], warehouse, len(produced))
            assert first.status()["assigned"] and second.status()["assigned"]
        finally:
            await first.stop()
            await second.stop()
        assert sorted(warehouse.rows) == sorted(produced)
        assert warehouse.dropped == []  # the batch in hand was never handed out again

    asyncio.run(scenario())


async def read_ahead_until_some(src: KafkaSource, rows: int) -> tuple[asyncio.Task, asyncio.Event]:
    """Start read_ahead as the loader does during an insert; return once it holds rows."""
    done = asyncio.Event()
    task = asyncio.create_task(src.read_ahead(rows, done))
    deadline = time.monotonic() + 20
    while not src.status()["read_ahead"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert src.status()["read_ahead"] > 0
    return task, done


def test_records_read_ahead_during_an_insert_continue_the_ranges_and_are_lost_by_no_crash(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name, group = unique("ahead"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "a", 90)
        warehouse = TokenWarehouse()
        first = source(bootstrap, name, group)
        await first.start()
        try:
            in_hand = await first_batch(first, 20)
            task, done = await read_ahead_until_some(first, 20)   # "during the insert"
            warehouse.insert_batch(in_hand)
            done.set()
            await task
            held = first.status()["read_ahead"]
            assert 0 < held <= 20
            await first.commit(in_hand)

            # The next batch is what was read ahead (and perhaps more), from where the
            # batch in hand ended on each partition: the same ranges a restart reads.
            following = await first.next_batch(20, 0.2)
            assert following is not None and len(following) >= held
            assert first.status()["read_ahead"] == 0
            before, after = ranges_of(in_hand.token), ranges_of(following.token)
            for where, (start, _end) in after.items():
                if where in before:
                    assert start == before[where][1] + 1, where
            assert sum(end - start + 1 for start, end in after.values()) == len(following)
            assert first.status()["lag"] == len(produced) - len(in_hand) - len(following)
            warehouse.insert_batch(following)
            await first.commit(following)

            # Read ahead again, then stop without handing it out: nothing was recorded
            # for those rows, so the next member reads them from the committed offsets.
            task, done = await read_ahead_until_some(first, 20)
            done.set()
            await task
        finally:
            await first.stop()

        restarted = source(bootstrap, name, group)
        await restarted.start()
        try:
            await load_until([restarted], warehouse, len(produced))
        finally:
            await restarted.stop()
        assert sorted(warehouse.rows) == sorted(produced)
        assert warehouse.dropped == []   # no batch was handed out twice

    asyncio.run(scenario())


def test_a_fetch_that_fails_during_read_ahead_sends_the_source_back_to_the_committed_offsets(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """A fetch can fail after the consumer's position moved past records it never gave
    out; reading on from there would skip them. Here the consumer takes a real batch of
    records and then fails: every row still arrives, once."""
    bootstrap = running(kafka_broker)
    name, group = unique("ahead-error"), unique("group")

    async def scenario() -> None:
        produced = await produce(bootstrap, name, tmp_path, "e", 90)
        warehouse = TokenWarehouse()
        first = source(bootstrap, name, group)
        await first.start()
        try:
            in_hand = await first_batch(first, 20)
            consumer = first._require_consumer()
            real_getmany = consumer.getmany
            swallowed = []

            async def failing_getmany(*args, **kwargs):
                got = await real_getmany(*args, **kwargs)
                swallowed.extend(r.value for records in got.values() for r in records)
                raise KafkaError("the connection broke after the records were taken")

            consumer.getmany = failing_getmany
            done = asyncio.Event()
            reading = asyncio.create_task(first.read_ahead(20, done))
            deadline = time.monotonic() + 20
            while not swallowed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            done.set()
            await reading
            consumer.getmany = real_getmany
            assert swallowed and first.status()["read_ahead"] == 0

            warehouse.insert_batch(in_hand)
            await first.commit(in_hand)
            await load_until([first], warehouse, len(produced))
        finally:
            await first.stop()
        assert sorted(warehouse.rows) == sorted(produced)

    asyncio.run(scenario())


def test_killed_member_partitions_move_to_the_survivor_nothing_lost_or_twice(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    name, group = unique("kill"), unique("group")
    out, trigger = tmp_path / "child.jsonl", tmp_path / "hang-now"

    def child_lines() -> list[dict]:
        entries = []
        for line in out.read_text().splitlines() if out.exists() else []:
            try:
                entries.append(json.loads(line))
            except ValueError:  # the child is writing it right now
                pass
        return entries

    async def scenario(child: subprocess.Popen) -> None:
        warehouse = TokenWarehouse()
        survivor = source(bootstrap, name, group, session_timeout_ms=6000)
        await survivor.start()
        try:
            # Both members own a share of the six partitions and load from it.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = await survivor.next_batch(20, 0.3)
                if batch is not None:
                    warehouse.insert_batch(batch)
                    await survivor.commit(batch)
                assigned = [e["assigned"] for e in child_lines() if "assigned" in e]
                mine = set(survivor.status()["assigned"])
                # Disjoint as well as covering: the child's last line may still show
                # its share from before the survivor joined (all six partitions).
                if assigned and assigned[-1] and mine and not mine & set(assigned[-1]) \
                        and len(set(assigned[-1]) | mine) == 2 * PARTITIONS:
                    break
            # The share the loop above saw: the child may have logged a batch since.
            child_share = set(assigned[-1])
            assert child_share and not child_share & set(survivor.status()["assigned"])

            # The child loads one more batch and dies before committing it.
            trigger.write_text("now")
            produced = first_wave + await produce(bootstrap, name, tmp_path, "second", 150)
            deadline = time.monotonic() + 60
            while not any("hanging" in e for e in child_lines()) and \
                    time.monotonic() < deadline:
                batch = await survivor.next_batch(20, 0.3)
                if batch is not None:
                    warehouse.insert_batch(batch)
                    await survivor.commit(batch)
            [hanging] = [e["hanging"] for e in child_lines() if "hanging" in e]
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            for entry in child_lines():  # what the child inserted, landed
                if "inserted" in entry:
                    warehouse.insert(entry["inserted"],
                                     [row.encode() for row in entry["rows"]])

            # Its session expires; the survivor takes its partitions and loads the rest.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (
                    hanging in warehouse.dropped and survivor.status()["lag"] == 0
                    and len(set(warehouse.rows)) == len(produced)):
                batch = await survivor.next_batch(20, 0.3)
                if batch is not None:
                    warehouse.insert_batch(batch)
                    await survivor.commit(batch)
            assert set(survivor.status()["assigned"]) >= child_share
            assert survivor.status()["lag"] == 0
        finally:
            await survivor.stop()
        assert sorted(warehouse.rows) == sorted(produced)
        # The survivor re-read the dead member's uncommitted batch under its token.
        assert hanging in warehouse.dropped
        assert set(warehouse.dropped) == {hanging}

    async def first_produce() -> list[bytes]:
        return await produce(bootstrap, name, tmp_path, "first", 120)

    first_wave = asyncio.run(first_produce())
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.kafka_support", "consume", "--bootstrap", bootstrap,
         "--group", group, "--events", f"{name}.events", "--invalid", f"{name}.invalid",
         "--out", str(out), "--trigger", str(trigger), "--max-rows", "20",
         "--session-timeout-ms", "4000"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "child.log", "wb"))
    try:
        asyncio.run(scenario(child))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def _warehouse_row(stream: str, n: int) -> bytes:
    """An events_raw or events_invalid row as the collector writes it (message_id first)."""
    if stream == "events":
        return orjson.dumps({"message_id": f"e{n}", "type": "track", "event": "click",
                             "anonymous_id": f"a{n % 5}", "source": "web",
                             "timestamp": "2026-03-01 10:00:00.000", "properties": "{}"})
    # Received now: the dead-letter table keeps 90 days (TTL).
    return orjson.dumps({"message_id": f"i{n}", "received_at": format_ts(time.time()),
                         "source": "web", "type": "track", "event": "click",
                         "reason": "schema_violation", "errors": [], "schema_version": "1",
                         "payload": "{}", "request": "{}"})


def test_a_batch_split_by_a_rebalance_is_stored_once_by_the_real_loader(
        kafka_broker: KafkaBroker, tmp_path: Path) -> None:  # noqa: F811
    """A member inserts a batch of every partition and leaves without committing; the two
    members that take over split its partitions, so each replays its share under a token
    the warehouse has not seen. The loader's id checks keep every event and every dead
    letter once (a token alone would store the shares' rows a second time)."""
    bootstrap = running(kafka_broker)
    name, group = unique("split"), unique("group")
    warehouse = ChdbWarehouse(tmp_path / "wh")
    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")

    async def scenario() -> list[Batch]:
        sink = KafkaSink(bootstrap, tmp_path, topic_events=f"{name}.events",
                         topic_invalid=f"{name}.invalid", partitions=PARTITIONS,
                         retention_hours=1)
        await sink.start()
        try:  # many keys: every partition of both topics gets rows
            await sink.publish([Record(stream, f"web:{n % 17}", _warehouse_row(stream, n))
                                for n in range(90) for stream in ("events", "invalid")])
        finally:
            await sink.stop()

        leaving = source(bootstrap, name, group)
        await leaving.start()
        try:
            whole: Batch | None = None
            deadline = time.monotonic() + 30
            while (whole is None or len(ranges_of(whole.token)) < 2 * PARTITIONS) \
                    and time.monotonic() < deadline:
                whole = await leaving.next_batch(1000, 2.0) or whole
            assert whole is not None and len(ranges_of(whole.token)) == 2 * PARTITIONS
            Loader(leaving, warehouse)._insert(whole)   # landed; never committed
        finally:
            await leaving.stop()

        members = [source(bootstrap, name, group) for _ in range(2)]
        for member in members:   # start() returns once the member has joined
            await member.start()
        seen: list[Batch] = []
        try:
            # Until the first member has rejoined, it still shows all six partitions.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                shares = [set(m.status()["assigned"]) for m in members]
                if all(shares) and not shares[0] & shares[1]:
                    break
                await asyncio.sleep(0.1)
            assert all(shares) and not shares[0] & shares[1]
            loaders = [Loader(m, warehouse) for m in members]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    len([b for b in seen if b.share_of_earlier_batch]) == 2
                    and all(m.status()["lag"] == 0 for m in members)):
                for member, loader in zip(members, loaders, strict=True):
                    batch = await member.next_batch(1000, 0.5)
                    if batch is not None:
                        seen.append(batch)
                        loader._insert(batch)
                        await member.commit(batch)
        finally:
            for member in members:
                await member.stop()
        return seen

    try:
        seen = asyncio.run(scenario())
        events = warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows
        invalid = warehouse.query(
            "SELECT count(), uniqExact(message_id) FROM events_invalid").rows
    finally:
        warehouse.close()
    shares = [b for b in seen if b.share_of_earlier_batch]
    assert len(shares) == 2 and all(b.token.startswith("kafka:") for b in shares)
    assert sum(len(ranges_of(b.token)) for b in shares) == 2 * PARTITIONS
    assert events == [[90, 90]]
    assert invalid == [[90, 90]]
