"""The `funnelhouse` command line: the parser built from one module per command, and dispatch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from funnelhouse.server import instance

# One module per command (or group), each with `register(sub)`, in the order of --help.
COMMANDS = (
    "up",          # up
    "collector",   # collector
    "loader",      # loader
    "serve",       # serve (admin/analyses/people/SQL APIs, console, scheduler)
    "migrate",     # migrate
    "token",       # token show
    "sql",         # sql
    "plan",        # plan check | coverage
    "replay",      # replay-invalid
    "import_cmd",  # import (CSV / JSON lines through the plan)
    "models",      # models run
    "demo",        # demo
    "people",      # segment, signals, export, forget
    "insights",    # insights list, dashboards list (saved in the console)
    "analyses",    # funnel, retention, paths, timeline
    "bench",       # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="funnelhouse",
                                     description="Event collector and funnel warehouse")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"funnelhouse.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Every file any command makes (queue, chdb, credentials, exports) is private.
    instance.private_files()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # A line per request to the running instance would only clutter what a command says.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
