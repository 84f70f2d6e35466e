"""`funnelhouse funnel|retention|paths|timeline`: the analyses from the terminal.

Through the running `funnelhouse up` (HTTP, admin token) when one holds the data folder,
else on the folder directly (read-only). Output: a readable table, CSV or JSON;
`--show-sql` prints the SQL that ran with its parameters, ready for clickhouse-client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from funnelhouse.analyses.common import render_csv, render_pretty, render_sql
from funnelhouse.config import Settings, load_settings
from funnelhouse.server import instance

Command = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def register(sub: Any, add_common: Command) -> None:
    """Add the four subcommands; `add_common(name, handler, help)` makes a subparser with
    the options every command shares (--data-dir)."""
    funnel = add_common("funnel", cmd_funnel, "conversion through ordered steps within a window")
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
    _common(funnel)

    retention = add_common("retention", cmd_retention, "cohort × period retention table")
    retention.add_argument("--cohort", default="first_seen",
                           help="first_seen | first_purchase | event:NAME[:FILTERS]")
    retention.add_argument("--cohort-type", choices=["first_time", "recurring"],
                           default="first_time")
    retention.add_argument("--return-event", default=None, metavar="EVENT[:FILTERS]",
                           help="what counts as coming back (default: any event)")
    retention.add_argument("--period", choices=["day", "week", "month"], default="week")
    retention.add_argument("--periods", type=int, default=8)
    retention.add_argument("--mode", choices=["on", "on_or_after"], default="on")
    retention.add_argument("--breakdown", default=None, metavar="PROP")
    _common(retention)

    paths = add_common("paths", cmd_paths, "where people come from and go next around a page")
    paths.add_argument("page", help="page path or screen name")
    paths.add_argument("--conversion", default="purchase", metavar="EVENT[:FILTERS]")
    paths.add_argument("--top", type=int, default=10)
    for parser in (funnel, paths):
        parser.add_argument("--save-segment", default=None, metavar="NAME",
                            help="save the people given by --who as a (frozen) segment")
        parser.add_argument("--who", default=None,
                            help="funnel: converted | reached:K | dropped:K | in_window:K; "
                                 "paths: exited | converted | viewed")
    _common(paths)

    timeline = add_common("timeline", cmd_timeline, "every event of one person, in order")
    timeline.add_argument("person", help="person id, user id or anonymous id")
    timeline.add_argument("--limit", type=int, default=1000)
    timeline.add_argument("--from", dest="date_from", default=None)
    timeline.add_argument("--to", dest="date_to", default=None)
    timeline.add_argument("--format", choices=["pretty", "csv", "json"], default="pretty")
    timeline.add_argument("--show-sql", action="store_true")


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


def cmd_funnel(args: argparse.Namespace) -> int:
    optional = [int(k) for item in args.optional for k in str(item).split(",") if k.strip()]
    return _run(args, "funnel", {
        "steps": args.step, "window": args.window, "order": args.order, "exclude": args.exclude,
        "optional": optional, "hold": args.hold, "breakdown": args.breakdown,
        "attribution": args.attribution, **_dates(args)})


def cmd_retention(args: argparse.Namespace) -> int:
    return _run(args, "retention", {
        "cohort": args.cohort, "cohort_type": args.cohort_type, "return_event": args.return_event,
        "period": args.period, "periods": args.periods, "mode": args.mode,
        "breakdown": args.breakdown, **_dates(args)})


def cmd_paths(args: argparse.Namespace) -> int:
    return _run(args, "paths", {"page": args.page, "conversion": args.conversion,
                                "top": args.top, **_dates(args)})


def cmd_timeline(args: argparse.Namespace) -> int:
    return _run(args, "timeline", {"person": args.person, "limit": args.limit,
                                   "date_from": args.date_from, "date_to": args.date_to})


def _settings(args: argparse.Namespace) -> Settings:
    data_dir = getattr(args, "data_dir", None)
    return load_settings(data_dir=Path(data_dir) if data_dir else None)


def _run(args: argparse.Namespace, name: str, doc: dict[str, Any]) -> int:
    settings = instance.with_local_credentials(_settings(args))
    url = None if settings.clickhouse_url else instance.running_url(settings)
    if getattr(args, "save_segment", None):
        return _save_segment(settings, url, name, doc, args)
    if url:
        result, error = _over_http(settings, url, name, doc)
    else:
        result, error = _local(settings, name, doc)
    if error:
        print(error, file=sys.stderr)
        return 1
    assert result is not None
    _print(result, args.format, args.show_sql)
    return 0


def _save_segment(settings: Settings, url: str | None, name: str, doc: dict[str, Any],
                  args: argparse.Namespace) -> int:
    """Save the people of one part of the result (--who) as a frozen segment."""
    if not args.who:
        print("--save-segment needs --who (funnel: converted, reached:K, dropped:K, "
              "in_window:K; paths: exited, converted, viewed)", file=sys.stderr)
        return 1
    body = {"spec": doc, "who": args.who, "name": args.save_segment}
    if url:
        response = instance.call(settings, url, f"/v1/analyses/{name}/segment", body)
        if response.status_code != 200:
            print(response.text, file=sys.stderr)
            return 1
        saved = response.json()
    else:
        from funnelhouse.analyses import SpecError
        from funnelhouse.analyses.cohorts import save_as_segment
        from funnelhouse.warehouse.base import WarehouseError
        from funnelhouse.warehouse.open import open_warehouse

        writer = open_warehouse(settings)
        reader = writer.readonly()
        try:
            saved = save_as_segment(name, doc, args.who, args.save_segment, reader=reader,
                                    writer=writer, settings=settings)
        except (SpecError, WarehouseError, ValueError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        finally:
            reader.close()
            writer.close()
    if args.show_sql:
        print(saved["sql"], file=sys.stderr)
    print(f"saved segment {saved['segment_id']} with {saved['members']} people")
    return 0


def _over_http(settings: Settings, url: str, name: str,
               doc: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        if name == "timeline":
            params = {k: v for k, v in doc.items() if k != "person" and v is not None}
            response = httpx.get(f"{url}/v1/timeline/{quote(doc['person'], safe='')}",
                                 params=params, timeout=600,
                                 headers={"Authorization": f"Bearer {settings.admin_token}"})
        else:
            response = instance.call(settings, url, f"/v1/analyses/{name}", doc)
    except httpx.HTTPError as exc:
        return None, f"the running funnelhouse at {url} did not answer: {exc}"
    if response.status_code != 200:
        try:
            return None, response.json().get("error", response.text)
        except ValueError:
            return None, response.text
    return response.json(), None


def _local(settings: Settings, name: str,
           doc: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    from funnelhouse.analyses import SpecError, run_analysis
    from funnelhouse.warehouse.base import WarehouseError
    from funnelhouse.warehouse.open import open_warehouse

    try:
        warehouse = open_warehouse(settings, readonly=True)
    except WarehouseError as exc:
        return None, str(exc)
    try:
        return run_analysis(name, doc, warehouse, settings.reporting_tz).to_dict(), None
    except (SpecError, WarehouseError) as exc:
        return None, str(exc)
    finally:
        warehouse.close()


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
