"""The local Kafka broker (funnelhouse/kafka_broker.py, scripts/kafka) on a real JVM."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from funnelhouse.collector.sinks.kafka import ensure_topics
from funnelhouse.queue.kafka_broker import KafkaBroker, KafkaBrokerError
from tests.kafka_support import kafka_broker, read_topics, running, unique  # noqa: F401

pytestmark = pytest.mark.kafka

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "kafka"


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    await ensure_topics(bootstrap, [topic], partitions=2, retention_hours=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


def test_restart_keeps_port_topics_and_records(kafka_broker: KafkaBroker) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    topic = unique("restart")
    values = [f"before-restart-{i}".encode() for i in range(20)]
    asyncio.run(_produce(bootstrap, topic, values))

    assert kafka_broker.restart() == bootstrap

    reads = asyncio.run(read_topics(bootstrap, [topic], len(values)))
    assert [r.value for r in reads] == values


def test_sigkilled_broker_starts_again_with_its_data(kafka_broker: KafkaBroker) -> None:  # noqa: F811
    bootstrap = running(kafka_broker)
    topic = unique("killed")
    values = [f"acked-before-kill-{i}".encode() for i in range(10)]
    asyncio.run(_produce(bootstrap, topic, values))

    kafka_broker.kill()
    assert not kafka_broker.running()
    assert kafka_broker.start() == bootstrap

    reads = asyncio.run(read_topics(bootstrap, [topic], len(values)))
    assert [r.value for r in reads] == values


def test_script_starts_reports_and_stops_a_broker(tmp_path: Path) -> None:
    def kafka(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args, "--data-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=150)

    try:
        assert kafka("fetch").returncode == 0
        assert kafka("status").returncode == 3
        started = kafka("start")
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.split()[0]
        assert bootstrap.startswith("127.0.0.1:")

        status = kafka("status")
        assert status.returncode == 0 and bootstrap in status.stdout
        asyncio.run(_produce(bootstrap, unique("cli"), [b"x"]))

        assert kafka("stop").stdout.strip() == "stopped"
        assert kafka("status").returncode == 3
    finally:
        KafkaBroker(tmp_path).kill()


def test_start_on_a_taken_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = KafkaBroker(tmp_path, port=taken.getsockname()[1])
        try:
            with pytest.raises(KafkaBrokerError) as failure:
                broker.start(timeout=90)
        finally:
            broker.kill()
    assert "broker.log" in str(failure.value)
    assert not broker.running()
