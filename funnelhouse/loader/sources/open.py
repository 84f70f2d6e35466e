"""Which queue the loader reads: Kafka when bootstrap servers are set, else the log."""

from __future__ import annotations

from funnelhouse.config import Settings
from funnelhouse.loader.sources.base import Source


def make_source(settings: Settings) -> Source:
    if settings.kafka_bootstrap:
        from funnelhouse.loader.sources.kafka import KafkaSource

        source = KafkaSource.from_settings(settings, group_id=settings.kafka_group)
        if source.create_topics is not None:
            source.create_topics["replication_factor"] = settings.kafka_replication_factor
        return source
    from funnelhouse.loader.sources.embedded import EmbeddedSource
    from funnelhouse.queue.eventlog import EventLog

    # Its own connection to the log file: the sink's writer appends while the loader
    # reads and deletes, and SQLite's WAL lets both proceed.
    return EmbeddedSource(EventLog(settings.queue_path, settings.queue_fsync))
