"""Find people by any of their ids: person id, user id or anonymous (device) id.

The identity map has one row per id with the person it resolves to, sorted by id, so
both an exact id and an id prefix are a range read of its primary key. Exact matches
come first, then prefix matches (by id); each person once. The person's ids and
activity come from `users` (one row per person, sorted by person id).
"""

from __future__ import annotations

from typing import Any

from funnelhouse.models.built import require_tables
from funnelhouse.warehouse.base import Warehouse

MIN_QUERY = 2
MAX_QUERY = 256
MAX_LIMIT = 200

SEARCH_SQL = """
-- people whose ids equal or start with the query: exact matches first
WITH matched AS (
    SELECT
        person_id,
        min(id != {q:String}) AS prefix_only,     -- 0 when some id equals the query
        arraySort(groupArray(id)) AS matched_ids
    FROM identity_map
    WHERE startsWith(id, {q:String})
    GROUP BY person_id
    ORDER BY prefix_only, person_id
    LIMIT {limit:UInt32}
)
SELECT
    m.person_id AS person_id,
    if(m.prefix_only = 0, 'exact', 'prefix') AS match,
    m.matched_ids AS matched_ids,
    u.user_ids AS user_ids,
    u.anonymous_ids AS anonymous_ids,
    if(u.person_id = '', '', toString(u.first_seen_at)) AS first_seen,
    if(u.person_id = '', '', toString(u.last_seen_at)) AS last_seen,
    u.events AS events,
    u.sessions AS sessions,
    u.orders AS orders,
    u.email AS email,
    u.lifecycle_stage AS lifecycle_stage
FROM matched AS m
LEFT JOIN (
    -- only the matched people's rows: a primary-key read, not the whole table
    SELECT person_id, user_ids, anonymous_ids, first_seen_at, last_seen_at, events, sessions,
           orders, email, lifecycle_stage
    FROM users
    WHERE person_id IN (SELECT person_id FROM matched)
) AS u ON u.person_id = m.person_id
ORDER BY m.prefix_only, m.person_id
"""


class SearchError(ValueError):
    """A search with no usable query or a bad limit."""


def search_people(warehouse: Warehouse, q: str | None, limit: int = 20) -> dict[str, Any]:
    text = (q or "").strip()
    if not MIN_QUERY <= len(text) <= MAX_QUERY:
        raise SearchError(f"q is {MIN_QUERY} to {MAX_QUERY} characters of an id")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit is a number from 1 to {MAX_LIMIT}")
    require_tables(warehouse, "identity_map", "users")
    params = {"q": text, "limit": limit}
    people = []
    for row in warehouse.query(SEARCH_SQL, params).dicts():
        # A person the map knows but `users` has not picked up yet (refresh pending).
        known = bool(row["first_seen"])
        people.append({
            "person_id": row["person_id"], "match": row["match"],
            "matched_ids": row["matched_ids"],
            "user_ids": row["user_ids"] if known else [],
            "anonymous_ids": row["anonymous_ids"] if known else [],
            "first_seen": _iso(row["first_seen"]), "last_seen": _iso(row["last_seen"]),
            "events": int(row["events"]) if known else None,
            "sessions": int(row["sessions"]) if known else None,
            "orders": int(row["orders"]) if known else None,
            "email": row["email"] or None,
            "lifecycle_stage": row["lifecycle_stage"] or None,
        })
    return {"q": text, "people": people, "sql": SEARCH_SQL,
            "params": {k: str(v) for k, v in params.items()}}


def _iso(text: str) -> str | None:
    return f"{text.replace(' ', 'T')}Z" if text else None
