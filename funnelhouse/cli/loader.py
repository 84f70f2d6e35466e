"""`funnelhouse loader`: the production loader process, queue → warehouse."""

from __future__ import annotations

import argparse
import asyncio

from funnelhouse.cli.common import Subparsers, command, settings_of


def cmd_loader(args: argparse.Namespace) -> int:
    from funnelhouse.loader.main import run_loader

    asyncio.run(run_loader(settings_of(args)))
    return 0


def register(sub: Subparsers) -> None:
    command(sub, "loader", cmd_loader, "production loader: queue → warehouse, /metrics on "
            "$FUNNELHOUSE_LOADER_PORT")
