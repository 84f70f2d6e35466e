"""CLI: `funnelhouse insights list` and `funnelhouse dashboards list`, what the console saved.

Through the running `up` when there is one (GET /v1/insights, /v1/dashboards), else on
the data folder itself; printed as a table, CSV or JSON like the segment list.
"""

from __future__ import annotations

import argparse
import sys

from funnelhouse.cli.client import Client, ClientError
from funnelhouse.cli.common import Subparsers, add_data_dir, settings_of
from funnelhouse.cli.people import render


def cmd_list(args: argparse.Namespace) -> int:
    kind = args.saved_kind
    try:
        with Client.for_settings(settings_of(args, find=True)) as client:
            rows = client.saved_list(kind)[kind]
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if exc.reason == "warehouse_error" else 2
    if kind == "insights":
        # The console opens an insight at its path + query: print that link too.
        rows = [{**row, "link": f"#{row['path']}" + (f"?{row['query']}" if row["query"] else "")}
                for row in rows]
    render(rows, args.format)
    return 0


def register(sub: Subparsers) -> None:
    """Add `insights list` and `dashboards list` to the `funnelhouse` parser."""
    for kind, what in (("insights", "analyses saved from the console (id, name, view, query)"),
                       ("dashboards", "the console's dashboards (id, name, insight ids)")):
        group = sub.add_parser(kind, help=f"{kind} saved in the console")
        actions = group.add_subparsers(dest=f"{kind}_command", required=True)
        leaf = actions.add_parser("list", help=what)
        add_data_dir(leaf)
        leaf.add_argument("--format", choices=("table", "csv", "json"), default="table",
                          help="how to print the answer")
        leaf.set_defaults(handler=cmd_list, saved_kind=kind)
