"""`funnelhouse models run`: build the eight tables, here or in the running instance."""

from __future__ import annotations

import argparse

from funnelhouse.cli.client import Client, RemoteClient
from funnelhouse.cli.common import Subparsers, add_data_dir, split_list, with_client
from funnelhouse.cli.progress import Status


def cmd_models_run(args: argparse.Namespace) -> int:
    status = Status()

    def run(client: Client) -> int:
        # Through a running instance the log comes at the end: count the seconds meanwhile.
        waiting = (status.ticking(f"building the models in {client.where} …")
                   if isinstance(client, RemoteClient) else lambda: None)
        try:
            client.models_run(full_refresh=args.full_refresh, since=args.since,
                              select=split_list(args.select), progress=status.model_line)
        finally:
            waiting()
        return 0

    return with_client(args, run)


def register(sub: Subparsers) -> None:
    models = sub.add_parser("models", help="the eight tables")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    run = models_sub.add_parser(
        "run", help="build the models in dependency order (incremental by day with look-back)")
    run.add_argument("--full-refresh", action="store_true",
                     help="rebuild every table from all of events_raw")
    run.add_argument("--since", default=None, help="rebuild days from DATE (YYYY-MM-DD)")
    run.add_argument("--select", action="append", default=[],
                     help="run only these models: repeat, or a comma-separated list")
    add_data_dir(run)
    run.set_defaults(handler=cmd_models_run)
