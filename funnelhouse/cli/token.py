"""`funnelhouse token show`: print the admin token kept in the data folder."""

from __future__ import annotations

import argparse
import sys

from funnelhouse.cli.client import ClientError
from funnelhouse.cli.common import Subparsers, command, settings_of
from funnelhouse.server import instance


def cmd_token(args: argparse.Namespace) -> int:
    """Print the admin token for the operator (`up` shows it once, when it is made)."""
    try:
        settings = settings_of(args, find=True)
    except ClientError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    token = instance.show_token(settings)
    if not token:
        print(f"no admin token yet in {settings.data_dir.resolve()}: `funnelhouse up` makes "
              "one (or pass --data-dir of an existing data folder)",
              file=sys.stderr)
        return 1
    print(token)
    return 0


def register(sub: Subparsers) -> None:
    token = command(sub, "token", cmd_token, "print the admin token kept in the data folder")
    token.add_argument("action", choices=["show"])
