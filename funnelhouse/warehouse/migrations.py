"""Who applies migrations and who waits: a one-shot `migrate` (under a lease); roles wait.

Some migrations copy `events_raw` into a new table and swap it in (0012, 0015):
nothing may insert meanwhile. So the long-running roles do not migrate at start —
several loaders (or a loader and a `serve`) starting together would each run them,
while the others insert. A one-shot `funnelhouse migrate` applies them first (the
compose file runs it before anything else starts); the loader, `serve`, and a
collector that answers /v1/sql wait until the warehouse has every shipped migration,
then start, or exit non-zero saying to run `funnelhouse migrate`. Two `migrate` runs at
once take turns on the `migrate` lease, so the second finds nothing left to do.
`up` (one process: nothing else inserts) migrates itself before it starts its loader.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.lease import Leases, holder_id
from funnelhouse.warehouse.migrate import migrate

log = logging.getLogger("funnelhouse.migrations")

MIGRATE_JOB = "migrate"


class MigrationsPending(RuntimeError):
    """The warehouse lacks shipped migrations: run `funnelhouse migrate` first."""


def shipped_versions(migrations_dir: Path) -> list[str]:
    return sorted(path.stem for path in migrations_dir.glob("*.sql"))


def applied_versions(warehouse: Warehouse) -> set[str]:
    """Versions recorded in schema_migrations (none when the ledger does not exist yet)."""
    exists = warehouse.query("SELECT count() FROM system.tables WHERE database = "
                             "currentDatabase() AND name = 'schema_migrations'").scalar()
    if not int(exists or 0):
        return set()
    return {row[0] for row in warehouse.query("SELECT version FROM schema_migrations").rows}


def pending_migrations(warehouse: Warehouse, migrations_dir: Path) -> list[str]:
    applied = applied_versions(warehouse)
    return [v for v in shipped_versions(migrations_dir) if v not in applied]


def migrate_coordinated(warehouse: Warehouse, migrations_dir: Path, *,
                        wait_seconds: float = 600.0, ttl_seconds: float = 60.0) -> list[str]:
    """Apply the pending migrations holding the `migrate` lease (waits for another run)."""
    leases = Leases(warehouse, holder_id("migrate"), ttl_seconds=ttl_seconds)
    lease = leases.acquire(MIGRATE_JOB, timeout=wait_seconds)
    try:
        with lease.keep_alive():   # a copy of events_raw may take longer than the ttl
            return migrate(warehouse, migrations_dir)
    finally:
        lease.release()


def wait_for_migrations(warehouse: Warehouse, migrations_dir: Path, *, role: str,
                        timeout: float, poll: float = 2.0) -> None:
    """Return once every shipped migration is applied; MigrationsPending after `timeout`.

    On chdb nothing else can migrate the folder while this process holds it, so a
    pending migration fails at once instead of waiting.
    """
    deadline = time.monotonic() + timeout
    pending = pending_migrations(warehouse, migrations_dir)
    if pending and warehouse.backend != "chdb":
        log.warning("%s: waiting up to %.0fs for migrations %s (run `funnelhouse migrate`)",
                    role, timeout, ", ".join(pending))
        while pending and time.monotonic() < deadline:
            time.sleep(poll)
            pending = pending_migrations(warehouse, migrations_dir)
    if pending:
        raise MigrationsPending(
            f"{role}: the warehouse lacks migrations {', '.join(pending)}; run "
            "`funnelhouse migrate` (with the same FUNNELHOUSE_CLICKHOUSE_URL or --data-dir) "
            "first, then start the " + role)
    log.info("%s: warehouse schema up to date", role)


def open_migrated(settings: Settings, *, role: str, readonly: bool = False) -> Warehouse:
    """The warehouse of a long-running role once it is migrated; SystemExit(2) saying to
    run `funnelhouse migrate` when it is not by `migration_wait_seconds`."""
    from funnelhouse.warehouse.open import open_warehouse

    warehouse = open_warehouse(settings, readonly=readonly)
    try:
        wait_for_migrations(warehouse, settings.sql_dir / "migrations", role=role,
                            timeout=settings.migration_wait_seconds)
    except MigrationsPending as exc:
        warehouse.close()
        log.error("%s", exc)
        raise SystemExit(2) from exc
    return warehouse
