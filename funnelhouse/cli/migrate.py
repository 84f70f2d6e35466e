"""`funnelhouse migrate`: apply the raw-layer migrations to the warehouse."""

from __future__ import annotations

import argparse

from funnelhouse.cli.common import Subparsers, command, settings_of


def cmd_migrate(args: argparse.Namespace) -> int:
    from funnelhouse.warehouse.migrate import migrate
    from funnelhouse.warehouse.open import open_warehouse

    settings = settings_of(args)
    warehouse = open_warehouse(settings)
    try:
        applied = migrate(warehouse, settings.sql_dir / "migrations")
    finally:
        warehouse.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def register(sub: Subparsers) -> None:
    command(sub, "migrate", cmd_migrate, "apply the raw-layer migrations")
