"""`funnelhouse up`: collector, queue, loader and warehouse in one process."""

from __future__ import annotations

import argparse
import asyncio
import sys

from funnelhouse.cli.common import Subparsers, add_tls, command, settings_of
from funnelhouse.server import instance


def cmd_up(args: argparse.Namespace) -> int:
    from funnelhouse.collector.edge import tls_options
    from funnelhouse.server.up import serve

    settings = instance.with_local_credentials(settings_of(args))
    try:
        tls_options(settings.tls_cert, settings.tls_key)
    except (ValueError, OSError) as exc:
        print(f"cannot serve TLS: {exc}", file=sys.stderr)
        return 2
    if instance.running_url(settings):
        print(f"funnelhouse is already running for {settings.data_dir}", file=sys.stderr)
        return 1
    broker = None
    if args.with_kafka:
        from funnelhouse.queue.kafka_broker import KafkaBroker

        broker = KafkaBroker(settings.data_dir / "kafka")
        broker.fetch()
        settings = settings.replace(kafka_bootstrap=broker.start())
        print(f"Apache Kafka (KRaft, single node) at {settings.kafka_bootstrap}", flush=True)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    finally:
        if broker is not None:
            broker.stop()
    return 0


def register(sub: Subparsers) -> None:
    up = command(sub, "up", cmd_up, "run collector, queue, loader and warehouse in one process")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--with-kafka", action="store_true",
                    help="start a local Apache Kafka broker and run the queue through it")
    add_tls(up)
