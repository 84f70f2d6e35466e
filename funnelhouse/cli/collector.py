"""`funnelhouse collector`: the production collector, uvicorn workers in front of the queue."""

from __future__ import annotations

import argparse
import os
import sys

from funnelhouse.cli.common import Subparsers, add_tls, command, settings_of
from funnelhouse.config import Settings

APP = "funnelhouse.collector.asgi:app"


def cmd_collector(args: argparse.Namespace) -> int:
    """Workers importing funnelhouse.collector.asgi:app (config from the env).

    More than one worker: each listens on its own SO_REUSEPORT socket (collector.workers),
    so the kernel spreads connections evenly across them.
    """
    import uvicorn

    from funnelhouse.collector.edge import server_options
    from funnelhouse.collector.workers import run_workers

    settings = settings_of(args)
    # The workers read their settings from the environment (collector.asgi): hand them
    # what the command line said too.
    for var, value in (("FUNNELHOUSE_DATA_DIR", args.data_dir),
                       ("FUNNELHOUSE_TLS_CERT", args.tls_cert),
                       ("FUNNELHOUSE_TLS_KEY", args.tls_key)):
        if value:
            os.environ[var] = str(value)
    try:
        options = server_options(settings,
                                 protocol="funnelhouse.collector.edge:HeaderTimeoutProtocol")
    except (ValueError, OSError) as exc:
        print(f"cannot serve TLS: {exc}", file=sys.stderr)
        return 2
    if settings.clickhouse_url and not _schema_ready(settings):
        return 2
    scheme = "https" if options.get("ssl_certfile") else "http"
    print(f"funnelhouse collector at {scheme}://{settings.host}:{settings.port}", flush=True)
    workers = args.workers or settings.collector_workers
    common = {"log_level": "warning", "access_log": False, "env_file": None, **options}
    if workers > 1:
        return run_workers(APP, host=settings.host, port=settings.port, workers=workers,
                           options=common)
    uvicorn.run(APP, host=settings.host, port=settings.port, **common)
    return 0


def _schema_ready(settings: Settings) -> bool:
    """With a server, the workers answer /v1/sql and QA from it: wait for `migrate` first."""
    from funnelhouse.warehouse.migrations import open_migrated

    try:
        open_migrated(settings, role="collector", readonly=True).close()
    except SystemExit:
        return False
    return True


def register(sub: Subparsers) -> None:
    collector = command(sub, "collector", cmd_collector,
                        "production collector (uvicorn workers; queue from env: Kafka or log)")
    collector.add_argument("--host", default=None)
    collector.add_argument("--port", type=int, default=None)
    collector.add_argument("--workers", type=int, default=None)
    add_tls(collector)
