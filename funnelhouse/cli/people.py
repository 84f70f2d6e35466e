"""CLI: `funnelhouse segment …`, `signals …`, `export …`, `forget …`.

Through the running `up` when there is one, else on the data directly (cli.client);
both ways return the same JSON, rendered here as a readable table, CSV or JSON.
`--show-sql` prints the SQL that ran (and its parameters) on stderr, so stdout stays
clean for `--format csv|json`.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from funnelhouse.cli.client import Client, ClientError
from funnelhouse.cli.common import Subparsers, add_data_dir, settings_of, split_list
from funnelhouse.cli.progress import Status

SIGNAL_FLAGS = {"person": str, "product_id": str, "level": str, "days": int, "min_orders": int,
                "per_product": int, "min_sessions": int, "min_repeat_buyers": int,
                "horizon_days": int, "overdue_days": int, "lookback_days": int,
                "per_person": int, "limit": int}


# -- output ---------------------------------------------------------------------------------

def render(rows: list[dict[str, Any]], fmt: str, out: Any = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if fmt == "csv":
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
        return
    if not rows:
        out.write("(no rows)\n")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(60, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write("  ".join((v if len(v) <= w else v[:w - 1] + "…").ljust(w)
                            for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def show_sql(result: Any, args: argparse.Namespace) -> None:
    if getattr(args, "show_sql", False) and isinstance(result, dict) and result.get("sql"):
        print(f"-- SQL\n{result['sql']}", file=sys.stderr)
        if result.get("params"):
            print(f"-- params: {orjson.dumps(result['params']).decode()}", file=sys.stderr)


# -- commands -------------------------------------------------------------------------------

def _definition(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        doc = orjson.loads(Path(args.file).read_bytes())
    elif args.json:
        doc = orjson.loads(args.json)
    elif args.sql:
        doc = {"sql": args.sql}
    else:
        raise ClientError("give a definition: --file def.json, --json '{…}' or --sql 'SELECT …'")
    if args.name:
        doc["name"] = args.name
    if getattr(args, "id", None):
        doc["segment_id"] = args.id
    return doc


def cmd_segment(args: argparse.Namespace, client: Client) -> int:
    action = args.segment_command
    fmt = args.format
    if action == "list":
        result = client.segment_list()
        render(result["segments"], fmt)
    elif action in ("create", "update"):
        doc = _definition(args)
        if action == "update" and "name" not in doc:
            # A new definition keeps the segment's name (and description) unless given.
            current = client.segment_show(args.segment_id)["segment"]
            doc["name"] = current["name"]
            if current.get("description") and "description" not in doc:
                doc["description"] = current["description"]
        result = (client.segment_create(doc, materialise=not args.no_materialise)
                  if action == "create" else
                  client.segment_update(args.segment_id, doc,
                                        materialise=not args.no_materialise))
        show_sql(result, args)
        row = {**result["segment"], **result.get("materialisation", {})}
        row.pop("definition", None)
        render([row], fmt)
    elif action == "from-sql":
        result = client.segment_from_sql({"name": args.name, "sql": args.sql,
                                          "freeze": args.freeze, "created_by": "cli"})
        show_sql(result, args)
        render([{**result["segment"], **result["materialisation"], "definition": None}], fmt)
    elif action == "show":
        result = client.segment_show(args.segment_id, args.version)
        show_sql(result, args)
        if fmt == "table":
            segment = result["segment"]
            print(f"{segment['segment_id']} v{segment['version']}: {segment['name']} "
                  f"({segment['kind']})")
            if segment["description"]:
                print(segment["description"])
            print(orjson.dumps(segment["definition"], option=orjson.OPT_INDENT_2).decode())
            print("\nversions:")
            render(result["versions"], fmt)
            if result.get("last"):
                print("\nlast materialisation:")
                render([result["last"]], fmt)
        else:
            render([result], fmt)
    elif action == "delete":
        render([client.segment_delete(args.segment_id)], fmt)
    elif action == "materialise":
        if not args.segment_id and not args.all:
            raise ClientError("name a segment or pass --all")
        result = client.segment_materialise(None if args.all else args.segment_id)
        show_sql(result, args)
        render(result["materialisations"], fmt)
    elif action == "members":
        if fmt == "csv" and args.limit is None:
            # The full member export, streamed as the warehouse wrote it.
            sys.stdout.write(client.segment_members_csv(args.segment_id).decode())
        else:
            result = client.segment_members(args.segment_id, limit=args.limit)
            show_sql(result, args)
            render(result["members"], fmt)
    elif action == "check":
        result = client.segment_check(args.segment_id, args.member_id)
        show_sql(result, args)
        render([{k: v for k, v in result.items() if k not in ("sql", "params")}], fmt)
        return 0 if result["member"] else 3
    elif action == "history":
        render(client.segment_history(args.segment_id)["history"], fmt)
    elif action == "compare":
        kpis = client.segment_compare(args.segment_id, args.days, args.as_of)
        render([{"who": who, **kpis[who]} for who in ("segment", "all_users",
                                                       "segment_previous")], fmt)
    return 0


def cmd_signals(args: argparse.Namespace, client: Client) -> int:
    options = {k: getattr(args, k) for k in SIGNAL_FLAGS}
    options["as_of"] = args.as_of
    result = client.signal(args.signal, options)
    show_sql(result, args)
    render(result["rows"], args.format)
    return 0


def cmd_export(args: argparse.Namespace, client: Client) -> int:
    body: dict[str, Any] = {"date": args.date, "tables": split_list(args.tables),
                            "formats": split_list(args.formats),
                            "segments": split_list(args.segments)}
    waiting = Status().ticking(f"exporting {args.date or 'yesterday'} …")
    try:
        result = client.export(body, args.out)
    finally:
        waiting()
    rows = [{k: f[k] for k in ("file", "rows", "bytes", "sha256")} for f in result["files"]]
    if args.format == "table":
        print(f"exported {result['day']} into {result['folder']}")
    render(rows, args.format)
    for skipped in result.get("skipped", []):
        print(f"skipped {skipped['table']}: {skipped['reason']}", file=sys.stderr)
    for error in result.get("errors", []):
        print(f"FAILED {error['table']} ({error['format']}): {error['error']}", file=sys.stderr)
    return 1 if result.get("errors") else 0


def cmd_forget(args: argparse.Namespace, client: Client) -> int:
    if args.log:
        render(client.forget_log()["log"], args.format)
        return 0
    if not args.user_id:
        raise ClientError("--user-id is required")
    result = client.forget(args.user_id, requested_by=args.requested_by or "cli",
                           reason=args.reason or "")
    if args.format == "table":
        print(f"forgot {result['ids_found']} id(s) of this person "
              f"(request {result['request_id']}, {result['seconds']}s)")
    render([{"table": t, "rows_deleted": n} for t, n in result["rows_deleted"].items()],
           args.format)
    return 0


# -- registration ---------------------------------------------------------------------------

def register(sub: Subparsers) -> None:
    """Add `segment`, `signals`, `export` and `forget` to the `funnelhouse` parser."""

    def leaf(parser: argparse.ArgumentParser, handler: PeopleHandler,
             output_flag: str = "--format") -> argparse.ArgumentParser:
        add_data_dir(parser)
        parser.add_argument(output_flag, dest="format", choices=("table", "csv", "json"),
                            default="table", help="how to print the answer")
        parser.add_argument("--show-sql", action="store_true",
                            help="print the SQL that ran (and its parameters) on stderr")
        parser.set_defaults(handler=_run(handler))
        return parser

    segment = sub.add_parser("segment", help="segments: define, materialise, check membership")
    actions = segment.add_subparsers(dest="segment_command", required=True)
    leaf(actions.add_parser("list", help="segments with size and last materialisation"),
         cmd_segment)
    for name in ("create", "update"):
        p = leaf(actions.add_parser(name, help=f"{name} a segment (materialised at once)"),
                 cmd_segment)
        if name == "update":
            p.add_argument("segment_id")
        else:
            p.add_argument("--id", default=None, help="segment id (default: from the name)")
        p.add_argument("--file", help="a JSON definition file")
        p.add_argument("--json", help="a JSON definition")
        p.add_argument("--sql", help="a SELECT returning person_id")
        p.add_argument("--name", help="the segment's name (overrides the definition's)")
        p.add_argument("--no-materialise", action="store_true")
    p = leaf(actions.add_parser("from-sql", help="save the people a query returns"), cmd_segment)
    p.add_argument("--name", required=True)
    p.add_argument("--sql", required=True)
    p.add_argument("--freeze", action="store_true", help="keep today's people, do not re-run")
    p = leaf(actions.add_parser("show", help="definition, versions, SQL"), cmd_segment)
    p.add_argument("segment_id")
    p.add_argument("--version", type=int, default=None)
    p = leaf(actions.add_parser("delete", help="delete a segment (a new version)"), cmd_segment)
    p.add_argument("segment_id")
    p = leaf(actions.add_parser("materialise", help="recompute members now"), cmd_segment)
    p.add_argument("segment_id", nargs="?")
    p.add_argument("--all", action="store_true")
    p = leaf(actions.add_parser("members", help="list members (--format csv: full export)"),
             cmd_segment)
    p.add_argument("segment_id")
    p.add_argument("--limit", type=int, default=None)
    p = leaf(actions.add_parser("check", help="is this person (any id) a member? exit 0 yes, 3 no"),
             cmd_segment)
    p.add_argument("segment_id")
    p.add_argument("member_id")
    p = leaf(actions.add_parser("history", help="size and KPIs over time"), cmd_segment)
    p.add_argument("segment_id")
    p = leaf(actions.add_parser("compare", help="KPIs beside all users and the previous "
                                                "period"), cmd_segment)
    p.add_argument("segment_id")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--as-of", dest="as_of", default=None, help="ISO time (default now)")

    signals = leaf(sub.add_parser("signals", help="next-purchase signals for CRM"), cmd_signals)
    signals.add_argument("signal", choices=["co-bought", "co-viewed", "repurchase", "due", "next"])
    signals.add_argument("--as-of", dest="as_of", default=None, help="YYYY-MM-DD (default today)")
    signals.add_argument("--product", dest="product_id", default=None)
    for flag, kind in SIGNAL_FLAGS.items():
        if flag != "product_id":
            signals.add_argument(f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None)

    # Here --format names the files' formats; the answer is printed per --output.
    export = leaf(sub.add_parser("export", help="export tables and segments for one day"),
                  cmd_export, output_flag="--output")
    export.add_argument("--date", default=None, help="YYYY-MM-DD (default: yesterday, local)")
    export.add_argument("--tables", default=None, help="comma-separated (default: all eight)")
    export.add_argument("--format", "--formats", dest="formats", default=None,
                        help="csv,parquet,xlsx — one or more, comma-separated "
                             "(default: the configured export formats)")
    export.add_argument("--segments", default=None, help="segment ids, or 'all'")
    export.add_argument("--out", default=None,
                        help="folder (default: the export root, <data dir>/exports); while "
                             "`up` runs, a folder inside the export root")

    forget = leaf(sub.add_parser("forget", help="delete a person everywhere (logged)"),
                  cmd_forget)
    forget.add_argument("--user-id", dest="user_id", default=None)
    forget.add_argument("--reason", default=None)
    forget.add_argument("--requested-by", dest="requested_by", default=None)
    forget.add_argument("--log", action="store_true", help="show the forget log instead")



PeopleHandler = Callable[[argparse.Namespace, Client], int]


def _run(handler: PeopleHandler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            with Client.for_settings(settings_of(args, find=True)) as client:
                return handler(args, client)
        except ClientError as exc:
            # The warehouse failing is 1; a request it refuses (bad definition …) is 2.
            if exc.reason == "warehouse_error":
                print(f"warehouse error: {exc.message}", file=sys.stderr)
                return 1
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:   # a --json or --file that is not JSON
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


__all__ = ["register", "render"]
