"""A query that failed because a model table is missing is a state, not an engine error.

Before the first model run the analyses read tables that do not exist yet; the console
(and any client) gets 503 `not_built` with what to do, like the console routes' NotBuilt,
instead of ClickHouse's "Unknown table expression identifier" text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from funnelhouse.config import Settings

Answer = Callable[[BaseException], tuple[int, dict[str, Any]]]

# ClickHouse names the table in quotes (or backquotes) and ends with the code's name.
_UNKNOWN_TABLE = re.compile(r"[Uu]nknown table[^'`]*['`](?:\w+\.)?(\w+)['`]")


def not_built_or(settings: Settings, otherwise: Answer) -> Answer:
    """503 not_built when the error is about a missing model table, else `otherwise`."""
    models = {path.stem for path in (settings.sql_dir / "models").glob("*.sql")}

    def answer(exc: BaseException) -> tuple[int, dict[str, Any]]:
        text = str(exc)
        match = _UNKNOWN_TABLE.search(text) if "UNKNOWN_TABLE" in text else None
        if match and match.group(1) in models:
            return 503, {"error": f"table {match.group(1)} does not exist yet: run the models "
                                  "first (funnelhouse models run; `up` refreshes them every "
                                  "few minutes)",
                         "reason": "not_built", "table": match.group(1)}
        return otherwise(exc)

    return answer
