"""`funnelhouse migrate`: apply the raw-layer migrations to the warehouse."""

from __future__ import annotations

import argparse
import sys

from funnelhouse.cli.common import Subparsers, command, settings_of


def cmd_migrate(args: argparse.Namespace) -> int:
    from funnelhouse.warehouse.lease import LeaseHeld
    from funnelhouse.warehouse.migrations import migrate_coordinated
    from funnelhouse.warehouse.open import open_warehouse

    settings = settings_of(args)
    warehouse = open_warehouse(settings)
    try:
        # Under the `migrate` lease: a second run at once waits, then finds nothing to do.
        applied = migrate_coordinated(warehouse, settings.sql_dir / "migrations")
    except LeaseHeld as exc:
        print(f"another migrate is running: {exc}", file=sys.stderr)
        return 1
    finally:
        warehouse.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def register(sub: Subparsers) -> None:
    command(sub, "migrate", cmd_migrate, "apply the raw-layer migrations")
