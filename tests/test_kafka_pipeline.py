"""collector → Apache Kafka → loader → ClickHouse, end to end, with faults.

Every test ends the same way: each event the collector acknowledged is in
`events_raw` exactly once. The broker is the real one started by the project's own
script; collector and loader run as the production entry points (`funnelhouse
collector`, `funnelhouse loader`) in their own processes unless a fault has to be
injected inside the loader.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from funnelhouse.config import PACKAGE_ROOT, REPO_ROOT, Settings
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.kafka import KafkaSource
from funnelhouse.queue.kafka_broker import KafkaBroker
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate
from tests.conftest import ADMIN_TOKEN, BROWSER_KEY, free_port, wait_until
from tests.kafka_support import kafka_broker, read_topics, running, unique  # noqa: F401
from tests.test_loader import FlakyWarehouse, ProcessDied

pytestmark = pytest.mark.kafka


class Stack:
    """Topics, group and folders of one test; starts collector and loader processes."""

    def __init__(self, tmp_path: Path, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topic_events = unique("events")
        self.topic_invalid = unique("invalid")
        self.group = unique("loaders")
        self.collector_dir = tmp_path / "collector"
        self.loader_dir = tmp_path / "loader"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loader_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = tmp_path

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "FUNNELHOUSE_DATA_DIR": str(data_dir),
            "FUNNELHOUSE_WRITE_KEYS": f"{BROWSER_KEY}:web",
            "FUNNELHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
            "FUNNELHOUSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "FUNNELHOUSE_KAFKA_TOPIC_EVENTS": self.topic_events,
            "FUNNELHOUSE_KAFKA_TOPIC_INVALID": self.topic_invalid,
            "FUNNELHOUSE_KAFKA_GROUP": self.group,
            "FUNNELHOUSE_KAFKA_PARTITIONS": "4",
            "FUNNELHOUSE_LOADER_BATCH_SECONDS": "0.2",
            "FUNNELHOUSE_LOADER_PORT": str(self.loader_port),
            **extra,
        }

    def settings(self) -> Settings:
        return Settings(data_dir=self.loader_dir, kafka_bootstrap=self.bootstrap,
                        kafka_topic_events=self.topic_events,
                        kafka_topic_invalid=self.topic_invalid, kafka_group=self.group,
                        kafka_partitions=4)

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([sys.executable, "-m", "funnelhouse.cli", *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        self.processes.append(process)
        return process

    def start_collector(self) -> subprocess.Popen:
        process = self._spawn(["collector", "--workers", "1", "--port", str(self.port)],
                              self.env(self.collector_dir), "collector")
        wait_until(lambda: _answers(f"{self.url}/readyz"), timeout=60)
        return process

    def start_loader(self, **extra: str) -> subprocess.Popen:
        # Loaders do not migrate: the one-shot `migrate` goes first, as in compose.
        subprocess.run([sys.executable, "-m", "funnelhouse.cli", "migrate"], check=True,
                       env=self.env(self.loader_dir, **extra), cwd=REPO_ROOT, timeout=120,
                       stdout=subprocess.DEVNULL)
        process = self._spawn(["loader"], self.env(self.loader_dir, **extra), "loader")
        wait_until(lambda: _answers(f"http://127.0.0.1:{self.loader_port}/healthz"), timeout=60)
        return process

    def loader_metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.loader_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_loaded(self, timeout: float = 120) -> None:
        """Until the loader has loaded something and its lag is zero."""
        wait_until(lambda: self.loader_metric('funnelhouse_loader_rows_total{table="events_raw"}')
                   > 0 and self.loader_metric("funnelhouse_loader_lag") == 0, timeout=timeout,
                   interval=0.5)

    def post_batch(self, events: list[dict]) -> bool:
        """True when the collector acknowledged (2xx) the batch."""
        try:
            response = httpx.post(f"{self.url}/v1/batch", json={"batch": events},
                                  auth=(BROWSER_KEY, ""), timeout=30)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json()["accepted"] == len(events)

    def stored(self) -> tuple[int, int, set[str]]:
        """(rows, distinct ids, ids) in the loader's warehouse; loaders must be stopped."""
        warehouse = ChdbWarehouse(self.loader_dir / "warehouse")
        try:
            rows = warehouse.query("SELECT message_id FROM events_raw").rows
        finally:
            warehouse.close()
        ids = [r[0] for r in rows]
        return len(ids), len(set(ids)), set(ids)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def clicks(person: str, first: int, count: int, tag: str = "") -> list[dict]:
    return [{"type": "track", "event": "click", "anonymousId": person,
             "messageId": f"{tag}{person}-{n}", "properties": {"element": f"#{n}"}}
            for n in range(first, first + count)]


@pytest.fixture
def stack(tmp_path: Path, kafka_broker: KafkaBroker) -> Iterator[Stack]:  # noqa: F811
    stack = Stack(tmp_path, running(kafka_broker))
    yield stack
    stack.stop_all()


def test_events_reach_the_warehouse_through_kafka_in_person_order(stack: Stack) -> None:
    stack.start_collector()
    stack.start_loader()
    sent: set[str] = set()
    for round_ in range(5):
        for person in range(8):
            batch = clicks(f"p{person}", round_ * 10, 10)
            assert stack.post_batch(batch)
            sent.update(e["messageId"] for e in batch)
    stack.wait_loaded()
    stack.stop_all()

    rows, distinct, ids = stack.stored()
    assert (rows, distinct) == (len(sent), len(sent))
    assert ids == sent

    # One person, one partition, and their events in the order they were sent.
    reads = asyncio.run(read_topics(stack.bootstrap, [stack.topic_events], len(sent)))
    by_person: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for read in reads:
        row = orjson.loads(read.value)
        seq = int(orjson.loads(row["properties"])["element"][1:])
        by_person[row["anonymous_id"]].append((read.partition, read.offset, read.index, seq))
    assert len(by_person) == 8
    for person, entries in by_person.items():
        assert len({partition for partition, _, _, _ in entries}) == 1, person
        in_offset_order = [seq for _, _, _, seq in sorted(entries)]
        assert in_offset_order == list(range(50)), person


def test_line_breaks_in_user_text_never_split_a_kafka_record_into_rows(stack: Stack) -> None:
    """Rows travel newline-delimited inside Kafka records: an attacker's line breaks (and
    a forged row after one) stay text in their own event, each stored once."""
    stack.start_collector()
    stack.start_loader()
    texts = ["a\nb", "a\r\nb", "a\u2028b\u2029c", "a\u0085b", "\n",
             '"}\n{"message_id":"forged","type":"track","event":"purchase"}\n']
    batch = [{"type": "track", "event": "click", "anonymousId": "attacker",
              "messageId": f"nl-{n}", "properties": {"element": text}}
             for n, text in enumerate(texts * 5)]
    assert stack.post_batch(batch)
    stack.wait_loaded()
    stack.stop_all()

    warehouse = ChdbWarehouse(stack.loader_dir / "warehouse")
    try:
        rows = warehouse.query("SELECT message_id, properties FROM events_raw").rows
    finally:
        warehouse.close()
    assert sorted(message_id for message_id, _ in rows) == sorted(e["messageId"] for e in batch)
    stored = {message_id: orjson.loads(properties)["element"] for message_id, properties in rows}
    assert stored == {e["messageId"]: e["properties"]["element"] for e in batch}


def test_broker_stopped_while_collector_takes_traffic_loses_nothing(
    stack: Stack, kafka_broker: KafkaBroker  # noqa: F811
) -> None:
    stack.start_collector()
    acknowledged: set[str] = set()

    def send(tag: str, batches: int) -> None:
        for n in range(batches):
            batch = clicks(f"q{n % 5}", n * 5, 5, tag=tag)
            if stack.post_batch(batch):
                acknowledged.update(e["messageId"] for e in batch)

    send("before-", 20)
    kafka_broker.stop()
    try:
        send("during-", 20)
        # With the broker gone the collector kept answering from its on-disk spool.
        assert any(m.startswith("during-") for m in acknowledged)
        ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
        assert ready["kafka_connected"] is False
        assert ready["spooled"] > 0
    finally:
        running(kafka_broker)
    send("after-", 20)
    wait_until(lambda: httpx.get(f"{stack.url}/readyz", timeout=5).json()["spooled"] == 0,
               timeout=90, interval=0.5)

    stack.start_loader()
    stack.wait_loaded()
    stack.stop_all()
    rows, distinct, ids = stack.stored()
    assert (rows, distinct) == (len(acknowledged), len(acknowledged))
    assert ids == acknowledged


def test_loader_sigkilled_mid_batch_and_restarted_loads_every_event_once(stack: Stack) -> None:
    stack.start_collector()
    acknowledged: set[str] = set()
    for n in range(60):
        batch = clicks(f"r{n % 13}", n * 100, 100)
        assert stack.post_batch(batch)
        acknowledged.update(e["messageId"] for e in batch)

    loader = stack.start_loader(FUNNELHOUSE_LOADER_BATCH_ROWS="500")
    wait_until(lambda: stack.loader_metric(
        'funnelhouse_loader_rows_total{table="events_raw"}') > 0, timeout=60, interval=0.05)
    loader.send_signal(signal.SIGKILL)
    loader.wait(timeout=30)

    stack.start_loader(FUNNELHOUSE_LOADER_BATCH_ROWS="500")
    stack.wait_loaded()
    stack.stop_all()
    rows, distinct, ids = stack.stored()
    assert (rows, distinct) == (len(acknowledged), len(acknowledged))
    assert ids == acknowledged


def in_process_loader(stack: Stack, warehouse, name: str) -> Loader:  # type: ignore[no-untyped-def]
    source = KafkaSource(stack.bootstrap, topic_events=stack.topic_events,
                         topic_invalid=stack.topic_invalid, group_id=stack.group,
                         client_id=name, session_timeout_ms=6000, heartbeat_interval_ms=500)
    return Loader(source, warehouse, batch_rows=300, batch_seconds=0.2)


def stored_in(path: Path) -> tuple[int, int]:
    warehouse = ChdbWarehouse(path)
    try:
        return tuple(warehouse.query(  # type: ignore[return-value]
            "SELECT count(), uniqExact(message_id) FROM events_raw").rows[0])
    finally:
        warehouse.close()


async def _run_until_loaded(loaders: list[Loader], expected: int, path: Path,
                            timeout: float = 120) -> list[BaseException | None]:
    tasks = [asyncio.create_task(loader.run()) for loader in loaders]
    deadline = time.monotonic() + timeout
    counter = ChdbWarehouse(path)
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if counter.query("SELECT uniqExact(message_id) FROM events_raw").scalar() >= expected:
                # Let a replay that might double a batch land before we stop.
                await asyncio.sleep(2)
                break
    finally:
        counter.close()
        for loader in loaders:
            loader.stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


def test_warehouse_failing_inserts_for_a_while_loses_nothing(stack: Stack) -> None:
    stack.start_collector()
    acknowledged = 0
    for n in range(30):
        assert stack.post_batch(clicks(f"w{n % 4}", n * 50, 50))
        acknowledged += 50
    path = stack.loader_dir / "warehouse"
    warehouse = ChdbWarehouse(path)
    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")
    flaky = FlakyWarehouse(warehouse, failures=5)
    try:
        asyncio.run(_run_until_loaded([in_process_loader(stack, flaky, "flaky")], acknowledged,
                                      path))
        assert flaky.attempts > 5
    finally:
        warehouse.close()
    assert stored_in(path) == (acknowledged, acknowledged)


def test_two_loaders_in_one_group_one_killed_mid_batch(stack: Stack) -> None:
    stack.start_collector()
    acknowledged = 0
    for n in range(40):
        assert stack.post_batch(clicks(f"t{n % 9}", n * 100, 100))
        acknowledged += 100
    path = stack.loader_dir / "warehouse"
    survivor_handle = ChdbWarehouse(path)
    migrate(survivor_handle, PACKAGE_ROOT / "sql" / "migrations")
    # The doomed loader inserts one batch and dies before committing it.
    doomed_handle = ChdbWarehouse(path)
    doomed = in_process_loader(stack, FlakyWarehouse(doomed_handle, die_after_insert=True),
                               "doomed")
    survivor = in_process_loader(stack, survivor_handle, "survivor")

    async def doomed_then_survivor() -> list[BaseException | None]:
        # The doomed loader starts alone, so it surely gets a batch (started together,
        # the survivor could take every partition and load everything first); the
        # survivor then joins the group and must take over its uncommitted batch.
        dying = asyncio.create_task(doomed.run())
        await asyncio.wait({dying}, timeout=60)
        assert dying.done(), "the doomed loader never got a batch"
        return [dying.exception(), *await _run_until_loaded([survivor], acknowledged, path)]

    try:
        outcomes = asyncio.run(doomed_then_survivor())
    finally:
        doomed_handle.close()
        survivor_handle.close()
    assert isinstance(outcomes[0], ProcessDied)
    assert outcomes[1] is None
    assert doomed.rows_loaded == 0 and survivor.rows_loaded >= acknowledged - 300
    assert stored_in(path) == (acknowledged, acknowledged)
