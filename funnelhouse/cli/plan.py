"""`funnelhouse plan check|coverage`: the tracking plan, and what of it arrives."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from funnelhouse.cli.client import Client
from funnelhouse.cli.common import Subparsers, add_data_dir, settings_of, with_client


def cmd_plan_check(args: argparse.Namespace) -> int:
    from funnelhouse.cli.plan_check import plan_check

    settings = settings_of(args)
    return plan_check(Path(args.plan_dir) if args.plan_dir else settings.plan_dir,
                      Path(args.sample) if args.sample else None)


def cmd_plan_coverage(args: argparse.Namespace) -> int:
    """Which planned events and properties arrived, never arrived or are failing."""
    from funnelhouse.analyses.coverage import render_table

    def run(client: Client) -> int:
        doc = client.coverage(days=args.days, source=args.source,
                              plan_dir=Path(args.plan_dir) if args.plan_dir else None)
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if args.json
              else render_table(doc))
        return 0

    return with_client(args, run)


def register(sub: Subparsers) -> None:
    plan = sub.add_parser("plan", help="tracking plan tools")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True)
    check = plan_sub.add_parser("check", help="validate the plan and a sample payload file")
    check.add_argument("--plan-dir", default=None)
    check.add_argument("--sample", default=None, help="a JSON message, batch or list")
    add_data_dir(check)
    check.set_defaults(handler=cmd_plan_check)
    coverage = plan_sub.add_parser(
        "coverage", help="planned events and properties seen, never seen or failing")
    coverage.add_argument("--days", type=int, default=30, help="window of arrival (days)")
    coverage.add_argument("--source", default=None, help="one source only")
    coverage.add_argument("--json", action="store_true", help="the full audit as JSON")
    coverage.add_argument("--plan-dir", default=None)
    add_data_dir(coverage)
    coverage.set_defaults(handler=cmd_plan_coverage)
