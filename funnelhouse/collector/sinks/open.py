"""Which queue the collector writes to: Kafka when bootstrap servers are set, else the log."""

from __future__ import annotations

from funnelhouse.collector.sinks.base import Sink
from funnelhouse.config import Settings


def make_sink(settings: Settings) -> Sink:
    if settings.kafka_bootstrap:
        from funnelhouse.collector.sinks.kafka import KafkaSink

        return KafkaSink.from_settings(
            settings, replication_factor=settings.kafka_replication_factor,
            ack_timeout=settings.kafka_ack_timeout_seconds)
    from funnelhouse.collector.sinks.embedded import EmbeddedSink
    from funnelhouse.queue.eventlog import EventLog

    return EmbeddedSink(EventLog(settings.queue_path, settings.queue_fsync))
