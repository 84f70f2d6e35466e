"""What every CLI command module shares: its subparser, the settings it runs with, errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from funnelhouse.cli.client import Client, ClientError
from funnelhouse.config import Settings, load_settings

Handler = Callable[[argparse.Namespace], int]
# argparse keeps its subparsers' action type private; this is what `register(sub)` takes.
Subparsers = Any

DATA_DIR_HELP = ("data folder (default $FUNNELHOUSE_DATA_DIR, else ./.funnelhouse if it "
                 "exists, else the one running funnelhouse of this user)")
START_HINT = ("start one with `funnelhouse up` (and `funnelhouse demo` for sample data), "
              "or pass --data-dir")


def command(sub: Subparsers, name: str, handler: Handler,
            help_text: str) -> argparse.ArgumentParser:
    """A subcommand with the option every command has (--data-dir), dispatched to handler."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                     description=help_text)
    add_data_dir(parser)
    parser.set_defaults(handler=handler)
    return parser


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", dest="data_dir", default=None, help=DATA_DIR_HELP)


def add_tls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", dest="tls_cert", default=None,
                        help="PEM certificate (chain) to serve HTTPS (env FUNNELHOUSE_TLS_CERT)")
    parser.add_argument("--tls-key", dest="tls_key", default=None,
                        help="its PEM private key (env FUNNELHOUSE_TLS_KEY)")


def settings_of(args: argparse.Namespace, *, find: bool = False) -> Settings:
    """Settings from the environment and config file, with what the command line said.

    `find` (commands that use existing data, never the ones that start a role): with no
    data folder named, ./.funnelhouse when it exists, else the one running instance of
    this user wherever its folder is (ClientError when several run).
    """
    overrides = {name: getattr(args, name, None)
                 for name in ("host", "port", "data_dir", "tls_cert", "tls_key")}
    if overrides["data_dir"] is not None:
        overrides["data_dir"] = Path(overrides["data_dir"])
    settings = load_settings(**overrides)
    if not find or data_dir_given(args) or settings.clickhouse_url or settings.data_dir.is_dir():
        return settings
    return _running_elsewhere(settings, overrides)


def data_dir_given(args: argparse.Namespace) -> bool:
    """Whether the user named the data folder (--data-dir or FUNNELHOUSE_DATA_DIR)."""
    return bool(getattr(args, "data_dir", None) or os.environ.get("FUNNELHOUSE_DATA_DIR"))


def _running_elsewhere(settings: Settings, overrides: dict[str, Any]) -> Settings:
    from funnelhouse.server import instance, registry

    answering = []
    for entry in registry.running():
        there = load_settings(**{**overrides, "data_dir": entry.data_dir})
        if instance.running_url(there):
            answering.append(there)
    if len(answering) > 1:
        folders = "\n".join(f"  --data-dir {s.data_dir}" for s in answering)
        raise ClientError(f"{len(answering)} funnelhouse instances are running; name one:\n"
                          f"{folders}", "several_instances")
    if answering:
        print(f"(using the running funnelhouse of {answering[0].data_dir})", file=sys.stderr)
        return answering[0]
    return settings


def split_list(values: str | list[str] | None) -> list[str] | None:
    """`a,b` or repeated flags (`--x a --x b,c`) as one list; None when nothing was given."""
    if not values:
        return None
    items = [values] if isinstance(values, str) else values
    out = [v.strip() for item in items for v in item.split(",") if v.strip()]
    return out or None


def with_client(args: argparse.Namespace, action: Callable[[Client], int]) -> int:
    """Run `action` with the client for this command's settings; a ClientError is said on
    stderr and the command exits 1."""
    try:
        with Client.for_settings(settings_of(args, find=True)) as client:
            return action(client)
    except ClientError as exc:
        print(str(exc), file=sys.stderr)
        return 1
