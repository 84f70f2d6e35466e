"""The scaled deployment on one machine: 2 collector workers → Kafka (3 partitions) →
2 loaders → the warehouse over HTTP ← serve; one loader SIGKILLed mid-stream.

Every role is its production command in its own process (tests/scaled_support.py);
the warehouse is a ClickHouse HTTP interface — the chdb-backed test fixture, or the
server named by FUNNELHOUSE_CLICKHOUSE_URL. The test only sends events and looks: the
models are refreshed by serve's scheduler, the funnel is answered by serve's API.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from funnelhouse.queue.kafka_broker import KafkaBroker
from tests.clickhouse_http_fixture import start_fixture
from tests.conftest import ADMIN_TOKEN, BROWSER_KEY, free_port
from tests.kafka_support import kafka_broker, running, unique  # noqa: F401
from tests.scaled_support import Topology, answers, split_clickhouse_url, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.server, pytest.mark.timeout(600)]

PEOPLE = 600
CHECKOUT = "#checkout"
FUNNEL = {"steps": ["page_view", "add_to_cart", f"click:element={CHECKOUT}"], "window": "1d"}


@dataclass
class Scaled:
    topology: Topology
    collector_url: str
    serve_url: str


@pytest.fixture
def scaled(tmp_path: Path, kafka_broker: KafkaBroker) -> Iterator[Scaled]:  # noqa: F811
    with ExitStack() as stack:
        real = os.environ.get("FUNNELHOUSE_CLICKHOUSE_URL")
        # The warehouse server: chdb behind ClickHouse's HTTP interface, in its own process.
        base = split_clickhouse_url(real)[0] if real else stack.enter_context(
            start_fixture(tmp_path / "clickhouse"))
        topology = Topology(tmp_path / "roles", bootstrap=running(kafka_broker),
                            clickhouse_url=base, write_keys=f"{BROWSER_KEY}:web",
                            database=unique("fh_scaled").replace("-", "_"),
                            admin_token=ADMIN_TOKEN, partitions=3,
                            topic_prefix=unique("scaled"), group=unique("loaders"),
                            models_interval_seconds=4)
        topology.root.mkdir(parents=True)
        if real:  # a real server keeps databases: drop this test's
            stack.callback(topology.sql, f"DROP DATABASE IF EXISTS {topology.database}")
        stack.callback(topology.stop)
        scaled = Scaled(topology, f"http://127.0.0.1:{free_port()}",
                        f"http://127.0.0.1:{free_port()}")
        yield scaled
        # pytest shows what teardown printed only when the test failed: every role's log.
        print(topology.logs())


def person_events(n: int, start: datetime) -> list[dict]:
    """One visitor: a page view, for two in three an add to cart, for one in three then a
    checkout click; and five clicks elsewhere that no funnel step matches."""
    person = f"visitor-{n}"
    t0 = start + timedelta(seconds=n % 97)

    def event(name: str, seq: int, minutes: float, props: dict) -> dict:
        return {"type": "track", "event": name, "anonymousId": person,
                "messageId": f"{person}-{seq}", "properties": props,
                "timestamp": (t0 + timedelta(minutes=minutes)).isoformat()}

    events = [event("page_view", 0, 0, {"path": "/shoes", "url": "https://shop.example/shoes"})]
    if n % 3 != 2:
        events.append(event("add_to_cart", 1, 1, {"product_id": f"sku-{n % 11}"}))
    if n % 3 == 0:
        events.append(event("click", 2, 2, {"element": CHECKOUT}))
    events += [event("click", 10 + k, 0.5 + k, {"element": f"#nav-{k}"}) for k in range(5)]
    return events


def expected_funnel(acknowledged: dict[str, dict]) -> list[int]:
    """People per step, counted from the acknowledged events alone."""
    by_person: dict[str, list[dict]] = {}
    for event in acknowledged.values():
        by_person.setdefault(event["anonymousId"], []).append(event)
    counts = [0, 0, 0]
    for events in by_person.values():
        events.sort(key=lambda e: (e["timestamp"], e["messageId"]))
        matchers = [lambda e: e["event"] == "page_view",
                    lambda e: e["event"] == "add_to_cart",
                    lambda e: e["event"] == "click" and e["properties"]["element"] == CHECKOUT]
        step = 0
        for event in events:  # loose order; everything here is within the 1-day window
            if step < 3 and matchers[step](event):
                counts[step] += 1
                step += 1
    return counts


def post(url: str, events: list[dict]) -> bool:
    """True when the collector acknowledged every event of the batch."""
    try:
        response = httpx.post(f"{url}/v1/batch", json={"batch": events},
                              auth=(BROWSER_KEY, ""), timeout=30)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json()["accepted"] == len(events)


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return len(described[0]["partitions"])
    finally:
        await admin.close()


def test_scaled_topology_loses_nothing_and_serves_the_models(scaled: Scaled) -> None:
    topology = scaled.topology
    topology.create_database()
    assert "applied" in topology.migrate()
    collector = topology.start_collector(int(scaled.collector_url.rsplit(":", 1)[1]), workers=2)
    doomed = topology.start_loader("loader-1", free_port())
    survivor = topology.start_loader("loader-2", free_port())
    topology.start_serve(int(scaled.serve_url.rsplit(":", 1)[1]))

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    events = [e for n in range(PEOPLE) for e in person_events(n, start)]
    random.Random(14).shuffle(events)  # people's events spread over batches and partitions
    batches = [events[i:i + 40] for i in range(0, len(events), 40)]
    acknowledged: dict[str, dict] = {}

    def send(part: list[list[dict]]) -> None:
        for batch in part:
            if post(scaled.collector_url, batch):
                acknowledged.update((e["messageId"], e) for e in batch)

    third = len(batches) // 3
    send(batches[:third])
    assert asyncio.run(_partitions(topology.bootstrap, f"{topology.topic_prefix}.events")) == 3
    rows = 'funnelhouse_loader_rows_total{table="events_raw"}'
    # The doomed loader has loaded at least one batch; then it dies mid-stream.
    wait_for(lambda: topology.loader_metric(doomed, rows) > 0, 60, 0.05,
             "loader-1 loading a batch")
    send(batches[third:2 * third])
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(timeout=10)
    send(batches[2 * third:])
    assert collector.alive and survivor.alive
    # Nothing was refused: Kafka and both collector workers stayed up.
    assert len(acknowledged) == len(events)

    # Every acknowledged event is stored exactly once (the survivor takes over the
    # dead loader's partitions once its session times out, and replays what it had not
    # committed; the insert's dedup token drops the copy it had already inserted).
    def loaded() -> bool:
        return int(topology.sql("SELECT uniqExact(message_id) FROM events_raw")[0][0]) \
            >= len(acknowledged)

    wait_for(loaded, 180, 1.0, "every acknowledged event in events_raw")
    wait_for(lambda: topology.loader_metric(survivor, "funnelhouse_loader_lag") == 0, 60, 0.5,
             "the surviving loader caught up")
    (count, distinct), = topology.sql("SELECT count(), uniqExact(message_id) FROM events_raw")
    assert (int(count), int(distinct)) == (len(acknowledged), len(acknowledged))
    stored = {row[0] for row in topology.sql("SELECT message_id FROM events_raw")}
    assert stored == set(acknowledged)
    assert topology.loader_metric(survivor, rows) > 0

    # The models are refreshed by serve's scheduler: the test never runs them.
    def modelled() -> bool:
        got = topology.sql("SELECT uniqExact(message_id) FROM behavior_events")[0][0]
        return int(got) == len(acknowledged)

    wait_for(modelled, 180, 1.0, "serve's scheduler refreshing behavior_events")
    assert int(topology.sql("SELECT count() FROM model_runs")[0][0]) > 0

    # A funnel answered by serve, against the count made from the events sent.
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = httpx.post(f"{scaled.serve_url}/v1/analyses/funnel", json=FUNNEL, headers=auth,
                          timeout=60)
    assert response.status_code == 200, response.text
    steps = response.json()["data"]["groups"][0]["steps"]
    assert [s["people"] for s in steps] == expected_funnel(acknowledged) == [
        PEOPLE, PEOPLE * 2 // 3, PEOPLE // 3]

    # The console is served by serve, with its Content-Security-Policy.
    console = httpx.get(f"{scaled.serve_url}/console/", timeout=10)
    assert console.status_code == 200 and "<html" in console.text.lower()
    assert "default-src" in console.headers["content-security-policy"]
    assert answers(f"{scaled.serve_url}/console/")
