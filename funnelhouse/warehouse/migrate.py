"""Versioned migrations of the raw layer, applied in order, once each, at every start."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from funnelhouse.warehouse.base import Warehouse

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    String,
    checksum   String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


def split_statements(sql: str) -> list[str]:
    """Statements separated by `;` at a line end; comments stay with their statement."""
    parts = re.split(r";\s*(?:\n|$)", sql)
    return [p.strip() for p in parts if re.sub(r"--[^\n]*", "", p).strip()]


def migrate(warehouse: Warehouse, migrations_dir: Path) -> list[str]:
    """Apply every migration not yet recorded; return the versions applied now."""
    warehouse.execute(_LEDGER)
    done = {row[0] for row in warehouse.query("SELECT version FROM schema_migrations").rows}
    applied = []
    for path in sorted(migrations_dir.glob("*.sql")):
        version = path.stem
        if version in done:
            continue
        text = path.read_text()
        for statement in split_statements(text):
            warehouse.execute(statement)
        warehouse.execute(
            "INSERT INTO schema_migrations (version, checksum) VALUES ({v:String}, {c:String})",
            {"v": version, "c": hashlib.sha256(text.encode()).hexdigest()[:16]},
        )
        applied.append(version)
    return applied
