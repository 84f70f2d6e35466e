"""Prometheus metrics shared by the collector and the loader (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector

REGISTRY = CollectorRegistry()
# python_gc_collections_total / _objects_collected_total per generation: how often the
# garbage collector runs in a worker (collector/gc_tuning.py spaces it out).
GCCollector(registry=REGISTRY)

events_accepted = Counter(
    "funnelhouse_events_accepted", "Events accepted and made durable", ["source"], registry=REGISTRY
)
events_rejected = Counter(
    "funnelhouse_events_rejected", "Events or requests rejected, by reason", ["reason"],
    registry=REGISTRY,
)
events_duplicate = Counter(
    "funnelhouse_events_duplicate", "Events dropped as repeats within the dedup window",
    registry=REGISTRY,
)
request_seconds = Histogram(
    "funnelhouse_request_seconds", "Collector request latency", ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
queue_depth = Gauge(
    "funnelhouse_queue_depth", "Records in the queue's on-disk log not yet handed on",
    registry=REGISTRY,
)
queue_ready = Gauge("funnelhouse_queue_ready", "1 when the queue stores durably", registry=REGISTRY)
loader_rows = Counter(
    "funnelhouse_loader_rows", "Rows inserted into the warehouse", ["table"], registry=REGISTRY
)
loader_failures = Counter(
    "funnelhouse_loader_insert_failures", "Failed warehouse inserts (retried)", registry=REGISTRY
)
loader_lag = Gauge("funnelhouse_loader_lag", "Rows waiting in the queue for the loader",
                   registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
