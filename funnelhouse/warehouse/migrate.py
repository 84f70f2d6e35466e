"""Versioned migrations of the raw layer, applied in order, once each, at every start."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlparse import tokens
from sqlparse.lexer import Lexer

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
    """The statements of a SQL script, without their closing `;`.

    sqlparse's lexer knows `--`, `# ` and `/* */` comments and '…', "…", `…` and $$…$$
    quoting (with escapes), so a `;` inside any of them does not end a statement. A
    comment after the `;` on the same line stays with that statement, every other
    comment with the statement it precedes; pieces that are only comments are dropped.
    """
    statements: list[str] = []
    current: list[tuple[object, str]] = []

    def close() -> None:
        if any(not _blank(ttype) for ttype, _ in current):
            statements.append("".join(value for _, value in current).strip())
        current.clear()

    ended = False   # a `;` was seen and the rest of its line is still being read
    # Only the lexer: sqlparse's own splitter also ends statements at `GO` and keeps
    # BEGIN…END blocks together, and it attaches the next line's comment to the last
    # statement when a comment follows the `;`.
    for ttype, value in Lexer.get_default_instance().get_tokens(sql):
        if ended:
            if ttype in tokens.Comment.Single:      # runs to the line end, newline included
                current.append((ttype, value))
            if ttype in tokens.Whitespace and ttype not in tokens.Newline:
                current.append((ttype, value))
                continue
            close()
            ended = False
            if ttype in tokens.Comment.Single or ttype in tokens.Newline:
                continue
        if ttype in tokens.Punctuation and value == ";":
            ended = True
            continue
        current.append((ttype, value))
    close()
    return statements


def _blank(ttype: object) -> bool:
    return ttype in tokens.Whitespace or ttype in tokens.Comment


def migrate(warehouse: Warehouse, migrations_dir: Path) -> list[str]:
    """Apply every migration not yet recorded; return the versions applied now."""
    if not any(migrations_dir.glob("*.sql")):
        # A wrong path must not look like "up to date" (a moved folder once did).
        raise FileNotFoundError(f"no migrations in {migrations_dir}")
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
