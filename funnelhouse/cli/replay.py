"""`funnelhouse replay-invalid`: re-validate dead letters and load the ones now valid."""

from __future__ import annotations

import argparse

from funnelhouse.cli.client import Client
from funnelhouse.cli.common import Subparsers, command, with_client


def cmd_replay_invalid(args: argparse.Namespace) -> int:
    def run(client: Client) -> int:
        result = client.replay_invalid()
        print(f"examined {result['examined']}, moved to events_raw {result['moved']}, "
              f"still invalid {result['still_invalid']}, skipped {result.get('skipped', 0)}")
        # A dead letter that can never be replayed is skipped with its reason, once.
        for row in result.get("skipped_rows", []):
            print(f"skipped {row['source']}:{row['message_id']}: {row['reason']}")
        return 0

    return with_client(args, run)


def register(sub: Subparsers) -> None:
    command(sub, "replay-invalid", cmd_replay_invalid,
            "re-validate dead-lettered events against the current plan and load the valid ones")
