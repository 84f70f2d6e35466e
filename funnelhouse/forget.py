"""Privacy: forget a person everywhere, and keep personal fields out of storage per source.

`forget(warehouse, user_id)` finds every id of the person — the user id, the person it
resolves to, every anonymous id and old user id linked to it (in the identity map and
in the raw events themselves, in case the map is not rebuilt yet) — and deletes their
rows from the raw and invalid events, the identity map, the eight tables, segment
members and saved segment lists, and any other table of the warehouse that carries a
person/user/anonymous id. Deletes are mutations that rewrite the affected parts
(`mutations_sync = 2`), so the rows are gone from disk when the call returns, not
merely hidden.

The request is logged in `forget_log` without personal data (ids as SHA-256 hashes,
rows removed per table), and the hashes go into `forgotten_ids`: exports and segment
materialisation leave those ids out from then on, and `sweep_forgotten` (run nightly
before the export) deletes events that arrived for them after the request.

`scrub_fields` is the collector-side half: per write key, named trait/property fields
are dropped or replaced by a keyed hash before an event is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from collector.enrich.personal import scrub_fields
from warehouse.base import Warehouse

__all__ = ["ForgetResult", "collect_ids", "forget", "hash_id", "scrub_fields",
           "sweep_forgotten"]

# Columns that hold an id of a person, in any table.
ID_COLUMNS = ("person_id", "user_id", "anonymous_id", "previous_id")
# Tables whose `id` column is a person's id.
ID_TABLES = {"identity_map": ("id", "person_id"), "segment_people": ("id",)}
# Bookkeeping that holds no person ids, or holds them hashed on purpose.
SKIP_TABLES = {"forget_log", "forgotten_ids", "schema_migrations", "model_runs"}
# JSON keys of an invalid event's payload that carry an id (camelCase as sent, snake too).
PAYLOAD_KEYS = ("userId", "user_id", "anonymousId", "anonymous_id", "previousId", "previous_id")
MUTATION = "SETTINGS mutations_sync = 2"


@dataclass
class ForgetResult:
    request_id: str
    ids_found: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "ids_found": self.ids_found,
                "rows_deleted": self.rows_deleted, "seconds": self.seconds}


def hash_id(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _in(column: str, names: list[str]) -> str:
    return f"{column} IN ({', '.join('{' + n + ':String}' for n in names)})"


def _id_params(ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    params = {f"id{i}": value for i, value in enumerate(sorted(ids))}
    return list(params), params


def _tables(wh: Warehouse) -> dict[str, list[str]]:
    """MergeTree tables of the warehouse → their columns."""
    out: dict[str, list[str]] = {}
    for table, column in wh.query(
            "SELECT c.table, c.name FROM system.columns AS c "
            "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
            "WHERE c.database = currentDatabase() AND t.engine LIKE '%MergeTree' "
            "ORDER BY c.table, c.position").rows:
        out.setdefault(table, []).append(column)
    return out


def collect_ids(wh: Warehouse, user_id: str) -> set[str]:
    """Every id of the person behind `user_id`: until no new id turns up (a few rounds)."""
    tables = _tables(wh)
    ids = {user_id}
    for _ in range(6):
        names, params = _id_params(ids)
        found: set[str] = set()
        if "identity_map" in tables:
            found |= {r[0] for r in wh.query(
                f"SELECT person_id FROM identity_map WHERE {_in('id', names)} "
                f"UNION DISTINCT SELECT id FROM identity_map WHERE person_id IN ("
                f"SELECT person_id FROM identity_map WHERE {_in('id', names)}) "
                f"UNION DISTINCT SELECT id FROM identity_map WHERE {_in('person_id', names)}",
                params).rows}
        if "events_raw" in tables:
            found |= {r[0] for r in wh.query(
                f"SELECT anonymous_id FROM events_raw WHERE {_in('user_id', names)} "
                f"UNION DISTINCT SELECT previous_id FROM events_raw WHERE {_in('user_id', names)} "
                f"UNION DISTINCT SELECT user_id FROM events_raw WHERE {_in('previous_id', names)} "
                f"UNION DISTINCT SELECT user_id FROM events_raw WHERE {_in('anonymous_id', names)} "
                "AND type IN ('identify', 'alias')", params).rows}
        found.discard("")
        if found <= ids:
            break
        ids |= found
    return ids


def _condition(table: str, columns: list[str], names: list[str]) -> str | None:
    if table == "events_invalid":
        keys = ", ".join(f"'{k}'" for k in PAYLOAD_KEYS)
        values = ", ".join("{" + n + ":String}" for n in names)
        # A payload that is not JSON cannot be read by key: match the id as text.
        return (f"hasAny(arrayMap(k -> JSONExtractString(payload, k), [{keys}]), [{values}]) "
                f"OR (NOT isValidJSON(payload) AND multiSearchAny(payload, [{values}]))")
    wanted = ID_TABLES.get(table, ()) + tuple(c for c in ID_COLUMNS if c in columns)
    wanted = tuple(dict.fromkeys(c for c in wanted if c in columns))
    if not wanted:
        return None
    return " OR ".join(_in(c, names) for c in wanted)


def forget(wh: Warehouse, user_id: str, *, requested_by: str = "", reason: str = ""
           ) -> ForgetResult:
    """Delete everything of the person behind `user_id`; log that it was done."""
    if not user_id:
        raise ValueError("a user id is required")
    started = time.monotonic()
    ids = collect_ids(wh, user_id)
    names, params = _id_params(ids)
    request_id = "fg_" + secrets.token_hex(8)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    # Hashes first: an export or a materialisation racing this call already leaves them out.
    wh.insert_json_rows("forgotten_ids", [
        orjson.dumps({"id_hash": hash_id(i), "forgotten_at": now}) for i in sorted(ids)])
    result = ForgetResult(request_id, len(ids))
    for table, columns in sorted(_tables(wh).items()):
        if table in SKIP_TABLES:
            continue
        condition = _condition(table, columns, names)
        if condition is None:
            continue
        count = int(wh.query(f"SELECT count() FROM `{table}` WHERE {condition}", params).scalar()
                    or 0)
        if count:
            wh.execute(f"ALTER TABLE `{table}` DELETE WHERE {condition} {MUTATION}", params)
            result.rows_deleted[table] = count
    result.seconds = round(time.monotonic() - started, 3)
    wh.insert_json_rows("forget_log", [orjson.dumps({
        "request_id": request_id, "requested_at": now, "requested_by": requested_by,
        "reason": reason, "id_hashes": [hash_id(i) for i in sorted(ids)],
        "rows_deleted": result.rows_deleted, "seconds": result.seconds})])
    return result


def sweep_forgotten(wh: Warehouse) -> dict[str, int]:
    """Delete rows of forgotten ids that arrived after their request (late or new events)."""
    tables = _tables(wh)
    if "forgotten_ids" not in tables or not wh.query(
            "SELECT count() FROM forgotten_ids").scalar():
        return {}
    hashed = "(SELECT id_hash FROM forgotten_ids)"
    removed: dict[str, int] = {}
    for table, columns in sorted(tables.items()):
        if table in SKIP_TABLES:
            continue
        wanted = [c for c in ID_TABLES.get(table, ()) + ID_COLUMNS if c in columns]
        if table == "events_invalid":
            keys = ", ".join(f"'{k}'" for k in PAYLOAD_KEYS)
            condition = (f"hasAny(arrayMap(k -> lower(hex(SHA256(JSONExtractString(payload, k)))),"
                         f" [{keys}]), (SELECT groupArray(id_hash) FROM forgotten_ids))")
        elif wanted:
            condition = " OR ".join(f"lower(hex(SHA256({c}))) IN {hashed}"
                                    for c in dict.fromkeys(wanted))
        else:
            continue
        count = int(wh.query(f"SELECT count() FROM `{table}` WHERE {condition}").scalar() or 0)
        if count:
            wh.execute(f"ALTER TABLE `{table}` DELETE WHERE {condition} {MUTATION}")
            removed[table] = count
    return removed


def forget_log(wh: Warehouse, limit: int = 100) -> list[dict[str, Any]]:
    return wh.query(
        "SELECT request_id, toString(requested_at) AS requested_at, requested_by, reason, "
        "length(id_hashes) AS ids, rows_deleted, seconds FROM forget_log "
        "ORDER BY requested_at DESC LIMIT {n:UInt32}", {"n": limit}).dicts()
