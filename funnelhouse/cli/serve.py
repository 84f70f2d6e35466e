"""`funnelhouse serve`: APIs, console and scheduled jobs; no collecting, no loading."""

from __future__ import annotations

import argparse
import asyncio
import sys

from funnelhouse.cli.common import Subparsers, add_tls, command, settings_of
from funnelhouse.server import instance


def cmd_serve(args: argparse.Namespace) -> int:
    from funnelhouse.collector.edge import tls_options
    from funnelhouse.server.serve import run_serve

    settings = settings_of(args)
    if not settings.clickhouse_url:
        # chdb in the data folder: like `up`, keep an admin token there if none is set.
        settings = instance.with_local_credentials(settings)
        if instance.running_url(settings):
            print(f"funnelhouse is already running for {settings.data_dir}", file=sys.stderr)
            return 1
    if not settings.admin_token:
        print("serve needs an admin token (FUNNELHOUSE_ADMIN_TOKEN)", file=sys.stderr)
        return 2
    try:
        tls_options(settings.tls_cert, settings.tls_key)
    except (ValueError, OSError) as exc:
        print(f"cannot serve TLS: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_serve(settings))
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:   # the schema is behind: the message is logged
        return int(exc.code or 2)
    return 0


def register(sub: Subparsers) -> None:
    serve = command(sub, "serve", cmd_serve,
                    "admin/analyses/segments/people/SQL APIs, the console and the scheduled "
                    "jobs (models, segments, exports, forget sweep); no collecting or loading")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    add_tls(serve)
