"""`funnelhouse demo`: realistic demo traffic through the collector's HTTP API."""

from __future__ import annotations

import argparse
import sys

from funnelhouse.cli.common import Subparsers, command, settings_of
from funnelhouse.server import instance


def cmd_demo(args: argparse.Namespace) -> int:
    from funnelhouse.demo.send import run_demo

    settings = settings_of(args)
    url = args.url or instance.running_url(settings)
    if not url:
        # Nothing is made in the folder (no credentials) when there is nothing to send to.
        print(f"no running funnelhouse for {settings.data_dir.resolve()}: start "
              "`funnelhouse up` or pass --url and --write-key", file=sys.stderr)
        return 1
    write_key = args.write_key
    if not write_key:
        settings = instance.with_local_credentials(settings)
        server_keys = [k.key for k in settings.write_keys if k.kind == "server"]
        write_key = server_keys[0] if server_keys else settings.write_keys[0].key
    print(f"sending {args.people} visitors over {args.days} days to {url} …")
    result = run_demo(url, write_key, people=args.people, days=args.days, seed=args.seed)
    print(f"sent {result.sent:,} events in {result.seconds:.1f}s: accepted {result.accepted:,}, "
          f"rejected {result.rejected:,} (see events_invalid), duplicates {result.duplicates:,}")
    return 0


def register(sub: Subparsers) -> None:
    demo = command(sub, "demo", cmd_demo, "send realistic demo traffic through the HTTP API")
    demo.add_argument("--url", default=None, help="collector URL (default: the local instance)")
    demo.add_argument("--write-key", default=None,
                      help="a server write key (default: the local instance's)")
    demo.add_argument("--people", type=int, default=3000)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--seed", type=int, default=7)
