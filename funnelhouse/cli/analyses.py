"""The analyses from the terminal: `funnelhouse trends|stickiness|funnel|retention|paths|
flows|pages|correlation|purchases|timeline`.

Through the running `funnelhouse up` when one holds the data folder, else on the data
directly (cli.client). Output: a readable table, CSV or JSON;
`--show-sql` prints the SQL that ran with its parameters, ready for clickhouse-client.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from funnelhouse.analyses.common import render_csv, render_pretty, render_sql
from funnelhouse.cli.client import Client
from funnelhouse.cli.common import Subparsers, command, with_client


def register(sub: Subparsers) -> None:
    """Add the analyses' commands (trends … purchases, timeline)."""
    trends = command(sub, "trends", cmd_trends,
                     "events, people, sessions, sums or active people per hour/day/week/month")
    trends.add_argument("--series", action="append", required=True,
                        metavar="EVENT[:FILTERS][|MATH[:PROP]]",
                        help="repeat; MATH: total (default), people, sessions, sum:PROP, "
                             "avg:PROP, min:PROP, max:PROP, dau, wau, mau")
    trends.add_argument("--interval", choices=["hour", "day", "week", "month"], default="day")
    trends.add_argument("--breakdown", default=None, metavar="PROP")
    trends.add_argument("--compare", action="store_true",
                        help="also the previous range of as many days")
    trends.add_argument("--formula", default=None, metavar="EXPR",
                        help="arithmetic over the series by letter, e.g. 'B / A * 100'")
    _common(trends)

    stickiness = command(sub, "stickiness", cmd_stickiness,
                         "people by active days per week or month, and DAU/MAU")
    stickiness.add_argument("--event", default="*", metavar="EVENT[:FILTERS]",
                            help="what counts as active (default: any event)")
    stickiness.add_argument("--period", choices=["week", "month"], default="week")
    _common(stickiness)

    funnel = command(sub, "funnel", cmd_funnel, "conversion through ordered steps within a window")
    funnel.add_argument("--step", action="append", required=True, metavar="EVENT[:PROP=VALUE,…]",
                        help="a step; repeat in order (filters: = != ~ !~ > >= < <=)")
    funnel.add_argument("--window", default="7d",
                        help="conversion window from step 1 (7d, 12h, 30m)")
    funnel.add_argument("--order", choices=["loose", "strict", "any"], default="loose")
    funnel.add_argument("--exclude", action="append", default=[], metavar="EVENT[:FILTERS][@I-J]",
                        help="exclude people doing EVENT between step I and J (default 1-last)")
    funnel.add_argument("--optional", action="append", default=[], metavar="N",
                        help="step number that may be skipped (repeat or 2,3)")
    funnel.add_argument("--hold", default=None, metavar="PROP", help="same value at every step")
    funnel.add_argument("--breakdown", default=None, metavar="PROP")
    funnel.add_argument("--attribution", choices=["first", "last"], default="first",
                        help="breakdown value of step 1 (first) or of the last step reached")
    funnel.add_argument("--covering", type=float, default=0.8, metavar="SHARE",
                        help="report the smallest window holding this share of converters")
    funnel.add_argument("--trend", choices=["day", "week", "month"], default=None,
                        help="also conversion by the period people entered")
    _common(funnel)

    retention = command(sub, "retention", cmd_retention, "cohort × period retention table")
    retention.add_argument("--cohort", default="first_seen",
                           help="first_seen | first_purchase | event:NAME[:FILTERS]")
    retention.add_argument("--cohort-type", choices=["first_time", "recurring"],
                           default="first_time")
    retention.add_argument("--return-event", default=None, metavar="EVENT[:FILTERS]",
                           help="what counts as coming back (default: any event)")
    retention.add_argument("--nth", type=int, default=1, metavar="N",
                           help="first_time cohorts: enter at the Nth cohort event "
                                "(--cohort first_purchase --nth 3: after the 3rd purchase)")
    retention.add_argument("--period", choices=["day", "week", "month"], default="week")
    retention.add_argument("--periods", type=int, default=8)
    retention.add_argument("--mode", choices=["on", "on_or_after"], default="on")
    retention.add_argument("--breakdown", default=None, metavar="PROP",
                           help="a property, segment:ID, or purchase_count (groups by "
                                "purchases made, see --purchase-groups)")
    retention.add_argument("--purchase-groups", default=None, metavar="N,N,…",
                           help="purchase_count groups, e.g. 1,2,3 → <1, 1, 2, 3+")
    retention.add_argument("--purchases-as-of", default=None, metavar="cohort_end|YYYY-MM-DD",
                           help="purchases counted up to the end of the cohort period "
                                "(default) or up to a fixed reporting day")
    _common(retention)

    paths = command(sub, "paths", cmd_paths, "where people come from and go next around a page")
    paths.add_argument("page", nargs="?", default=None, help="page path or screen name")
    paths.add_argument("--page", dest="page_option", default=None, metavar="PAGE",
                       help="the same, as an option (`paths --page /cart`)")
    paths.add_argument("--conversion", default="purchase", metavar="EVENT[:FILTERS]")
    paths.add_argument("--top", type=int, default=10)
    _common(paths)

    flows = command(sub, "flows", cmd_flows, "the steps people take after a start or before an end")
    anchor = flows.add_mutually_exclusive_group(required=True)
    anchor.add_argument("--start", default=None, help="page/screen (or event) the flow starts at")
    anchor.add_argument("--end", default=None, help="page/screen (or event) the flow ends at")
    flows.add_argument("--steps", type=int, default=5)
    flows.add_argument("--nodes", choices=["views", "events"], default="views")
    flows.add_argument("--no-collapse", dest="collapse", action="store_false",
                       help="keep back-to-back repeats of a node")
    flows.add_argument("--conversion", default="purchase", metavar="EVENT[:FILTERS]")
    flows.add_argument("--top", type=int, default=10, help="nodes shown per step")
    _common(flows)

    correlation = command(sub, "correlation", cmd_correlation,
                          "events and property values that set converters (or retained "
                          "people) apart")
    correlation.add_argument("--step", action="append", default=[],
                             metavar="EVENT[:FILTERS]",
                             help="funnel steps (repeat); without them: a retention cohort")
    correlation.add_argument("--window", default="7d")
    correlation.add_argument("--cohort", default="first_seen")
    correlation.add_argument("--period", choices=["day", "week", "month"], default="week")
    correlation.add_argument("--retained-period", type=int, default=1, metavar="K",
                             help="retention: success = came back in period K")
    correlation.add_argument("--mode", choices=["on", "on_or_after"], default="on")
    correlation.add_argument("--property", action="append", default=[], metavar="PROP",
                             help="also compare this property's values on the entering event")
    correlation.add_argument("--top", type=int, default=20)
    _common(correlation)

    pages = command(sub, "pages", cmd_pages,
                    "pages and screens: views, people, entrances, exits, time on page")
    pages.add_argument("--top", type=int, default=50)
    _common(pages)

    purchases = command(sub, "purchases", cmd_purchases,
                        "people by how many purchases they had made by a day")
    purchases.add_argument("--groups", default="1,2,3", metavar="N,N,…",
                           help="ascending counts: 1,2,3 → <1, 1, 2, 3+")
    purchases.add_argument("--to", dest="date_to", default=None, metavar="YYYY-MM-DD",
                           help="count purchases on reporting days up to this one "
                                "(default: the last day with data)")
    purchases.add_argument("--as-of", dest="as_of", default=None)
    purchases.add_argument("--format", choices=["pretty", "csv", "json"], default="pretty")
    purchases.add_argument("--show-sql", action="store_true")

    for parser in (trends, stickiness, funnel, paths, retention, flows, pages, correlation,
                   purchases):
        _segment_options(parser)

    timeline = command(sub, "timeline", cmd_timeline, "every event of one person, in order")
    timeline.add_argument("person", help="person id, user id or anonymous id")
    timeline.add_argument("--limit", type=int, default=1000)
    timeline.add_argument("--from", dest="date_from", default=None)
    timeline.add_argument("--to", dest="date_to", default=None)
    timeline.add_argument("--format", choices=["pretty", "csv", "json"], default="pretty")
    timeline.add_argument("--show-sql", action="store_true")


WHO_HELP = {
    "trends": "SERIES@BUCKET[=VALUE] (A@2024-03-04, B@2024-03-04=mobile)",
    "stickiness": "exactly:K@PERIOD | at_least:K@PERIOD (at_least:3@2024-03-04)",
    "funnel": "converted | reached:K | dropped:K | in_window:K",
    "paths": "exited | converted | viewed",
    "retention": "cohort | retained:K | not_retained:K",
    "flows": "at:STEP:NODE | exited:STEP:NODE | converted:STEP:NODE",
    "pages": "viewed:PAGE | entered:PAGE | exited:PAGE",
    "correlation": "success | failure | all, optionally :event:NAME or :property:PROP=VALUE",
    "purchases": "a group (3+, 1, <1) | exactly:N | at_least:N",
}


def _segment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-segment", default=None, metavar="NAME",
                        help="save the people given by --who as a segment")
    parser.add_argument("--who", default=None, help=WHO_HELP[parser.prog.split()[-1]])
    parser.add_argument("--live", action="store_true",
                        help="save the definition, re-evaluated at every "
                             "materialisation, instead of today's people")
    parser.add_argument("--last-days", type=int, default=None, metavar="N",
                        help="live: each evaluation covers the last N reporting days")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="date_from", default=None, metavar="YYYY-MM-DD",
                        help="first reporting day (default: the first day with data)")
    parser.add_argument("--to", dest="date_to", default=None, metavar="YYYY-MM-DD")
    parser.add_argument("--as-of", dest="as_of", default=None,
                        help="analysis time (ISO, default now): later events are ignored")
    parser.add_argument("--format", choices=["pretty", "csv", "json"], default="pretty")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL that ran")


def _dates(args: argparse.Namespace) -> dict[str, Any]:
    return {"date_from": args.date_from, "date_to": args.date_to,
            "as_of": getattr(args, "as_of", None)}


def cmd_trends(args: argparse.Namespace) -> int:
    return _run(args, "trends", {
        "series": args.series, "interval": args.interval, "breakdown": args.breakdown,
        "compare": args.compare, "formula": args.formula, **_dates(args)})


def cmd_stickiness(args: argparse.Namespace) -> int:
    return _run(args, "stickiness", {"event": args.event, "period": args.period,
                                     **_dates(args)})


def cmd_funnel(args: argparse.Namespace) -> int:
    optional = [int(k) for item in args.optional for k in str(item).split(",") if k.strip()]
    return _run(args, "funnel", {
        "steps": args.step, "window": args.window, "order": args.order, "exclude": args.exclude,
        "optional": optional, "hold": args.hold, "breakdown": args.breakdown,
        "attribution": args.attribution, "covering": args.covering, "trend": args.trend,
        **_dates(args)})


def cmd_retention(args: argparse.Namespace) -> int:
    return _run(args, "retention", {
        "cohort": args.cohort, "cohort_type": args.cohort_type, "nth": args.nth,
        "return_event": args.return_event,
        "period": args.period, "periods": args.periods, "mode": args.mode,
        "breakdown": args.breakdown, "purchase_groups": args.purchase_groups,
        "purchases_as_of": args.purchases_as_of, **_dates(args)})


def cmd_paths(args: argparse.Namespace) -> int:
    if bool(args.page) == bool(args.page_option):
        print("funnelhouse paths: name one page: `paths /cart` or `paths --page /cart`",
              file=sys.stderr)
        return 2
    return _run(args, "paths", {"page": args.page or args.page_option,
                                "conversion": args.conversion,
                                "top": args.top, **_dates(args)})


def cmd_flows(args: argparse.Namespace) -> int:
    return _run(args, "flows", {
        "start": args.start, "end": args.end, "steps": args.steps, "nodes": args.nodes,
        "collapse": args.collapse, "conversion": args.conversion, "top": args.top,
        **_dates(args)})


def cmd_correlation(args: argparse.Namespace) -> int:
    if args.step:
        base: dict[str, Any] = {"funnel": {"steps": args.step, "window": args.window,
                                           **_dates(args)}}
    else:
        base = {"retention": {"cohort": args.cohort, "period": args.period,
                              "periods": max(args.retained_period, 1), "mode": args.mode,
                              **_dates(args)}}
    return _run(args, "correlation", {**base, "retained_period": args.retained_period,
                                      "properties": args.property, "top": args.top})


def cmd_pages(args: argparse.Namespace) -> int:
    return _run(args, "pages", {"top": args.top, **_dates(args)})


def cmd_purchases(args: argparse.Namespace) -> int:
    return _run(args, "purchases", {"groups": args.groups, "date_to": args.date_to,
                                    "as_of": args.as_of})


def cmd_timeline(args: argparse.Namespace) -> int:
    return _run(args, "timeline", {"person": args.person, "limit": args.limit,
                                   "date_from": args.date_from, "date_to": args.date_to})


def _run(args: argparse.Namespace, name: str, doc: dict[str, Any]) -> int:
    if getattr(args, "save_segment", None):
        return _save_segment(name, doc, args)

    def run(client: Client) -> int:
        _print(client.analysis(name, doc), args.format, args.show_sql)
        return 0

    return with_client(args, run)


def _save_segment(name: str, doc: dict[str, Any], args: argparse.Namespace) -> int:
    """Save the people of one part of the result (--who) as a segment (frozen, or --live)."""
    if not args.who:
        print(f"--save-segment needs --who: {WHO_HELP[name]}", file=sys.stderr)
        return 1

    def run(client: Client) -> int:
        saved = client.save_segment(name, doc, args.who, args.save_segment, live=args.live,
                                    last_days=args.last_days)
        if args.show_sql:
            print(saved["sql"], file=sys.stderr)
        kind = "live segment" if saved.get("live") else "segment"
        print(f"saved {kind} {saved['segment_id']} with {saved['members']} people")
        return 0

    return with_client(args, run)


def _print(result: dict[str, Any], fmt: str, show_sql: bool) -> None:
    if show_sql:
        # Beside a table on the terminal; on stderr when stdout is CSV/JSON for a pipe.
        print(render_sql(result), file=sys.stdout if fmt == "pretty" else sys.stderr)
    if fmt == "json":
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        sys.stdout.write(render_csv(result))
    else:
        print(render_pretty(result))
