"""`funnelhouse sql`: one read-only query, through the running instance if any."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from funnelhouse.cli.client import Client
from funnelhouse.cli.common import Subparsers, command, with_client


def cmd_sql(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        # The API speaks JSON, CSV and TSV; a pretty table is rendered here from JSON,
        # so both ways print the same table.
        if args.format == "pretty":
            print(pretty(orjson.loads(client.sql(args.query, "json"))))
        else:
            sys.stdout.write(client.sql(args.query, args.format).decode())
        return 0

    return with_client(args, run)


def pretty(doc: dict[str, Any]) -> str:
    """A ClickHouse JSON answer as aligned text columns."""
    columns = [m["name"] for m in doc.get("meta", [])]
    rows = [[str(row.get(c, "")) for c in columns] for row in doc.get("data", [])]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def register(sub: Subparsers) -> None:
    sql = command(sub, "sql", cmd_sql, "run read-only SQL (through the running instance if any)")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["pretty", "csv", "json", "tsv"], default="pretty")
