"""Privacy: forget a person everywhere without a trace, and keep personal fields out of storage.

`forget(warehouse, user_id)` finds every id of the person — the user id, the person it
resolves to, every anonymous id and old user id linked to it (in the identity map and
in the raw events themselves, in case the map is not rebuilt yet) — and removes their
rows from the raw and invalid events, the identity map, the eight tables, segment
members and saved segment lists, and any other table of the warehouse that carries a
person/user/anonymous id. It redacts the ids from segment definitions, and calls the
`scrubbers` of the running process (the queue file, the QA debug ring).

No trace of the ids is left in the warehouse folder: an `ALTER … DELETE` mutation keeps
its statement (with the ids) in `mutation_N.txt` and `system.mutations`, and the parts
it replaced stay on disk (chdb never cleans them up). So each affected table is copied
without the person's rows into a scratch table, the copy is swapped in (EXCHANGE) and
the old table is dropped with SYNC, which deletes its files at once. Ids travel only as
query parameters, never in statement text. On a ClickHouse server (where another
process may be inserting) the delete is a mutation whose text names only a subquery;
the server removes finished mutations and replaced parts on its own schedule.

Forget runs under the process's job lock (the one model runs and replays take: a model
run swaps tables too) and holds the loader's gate, so no batch is inserted into a
table while it is being swapped. It is idempotent: the ids' hashes are recorded in
`forgotten_ids` first, every step matches them too, and the result is only logged
after a recount finds no row left — a forget that failed half-way is simply run again.

The request is logged in `forget_log` without personal data (ids as SHA-256 hashes,
rows removed per table). Exports, segment materialisation and the loader leave
forgotten ids out from then on, and `sweep_forgotten` (run nightly before the export)
removes rows that still arrived for them (sent straight into the warehouse).

`scrub_fields` is the collector-side half: per write key, named trait/property fields
are dropped or replaced by a keyed hash before an event is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from funnelhouse.collector.enrich.personal import scrub_fields
from funnelhouse.warehouse.base import Warehouse, WarehouseError

__all__ = ["ForgetHooks", "ForgetIncomplete", "ForgetResult", "ForgottenSet", "collect_ids",
           "forget", "hash_id", "scrub_fields", "sweep_forgotten"]

# Columns that hold an id of a person, in any table.
ID_COLUMNS = ("person_id", "user_id", "anonymous_id", "previous_id")
# Columns that hold several ids of a person (users: every id the person used).
ID_ARRAY_COLUMNS = ("user_ids", "anonymous_ids")
# Tables whose `id` column is a person's id.
ID_TABLES = {"identity_map": ("id", "person_id"), "segment_people": ("id",)}
# Bookkeeping that holds no person ids, or holds them hashed on purpose; segments are
# redacted, not deleted (see _redact_segments).
SKIP_TABLES = {"forget_log", "forgotten_ids", "schema_migrations", "model_runs", "segments"}
# JSON keys of an invalid event's payload that carry an id (camelCase as sent, snake too).
PAYLOAD_KEYS = ("userId", "user_id", "anonymousId", "anonymous_id", "previousId", "previous_id")
# What a forgotten id in a segment definition becomes: matches nobody, still valid.
REDACTED = "[forgotten]"
# What a queued record of a forgotten person becomes (the loader skips it).
TOMBSTONE = b'{"_forgotten":1}'
SCRATCH = "__forget"
# Array parameters are not usable on chdb: ids travel as one JSON text parameter.
IDS = "JSONExtract({ids:String}, 'Array(String)')"
FORGOTTEN = "(SELECT id_hash FROM forgotten_ids)"


def _hashed(expr: str) -> str:
    return f"lower(hex(SHA256({expr})))"


class ForgetIncomplete(RuntimeError):
    """Rows of the person were still found after the deletes: run forget again."""


@dataclass
class ForgetHooks:
    """What forget needs of the running process besides the warehouse.

    `job_lock` is the lock model runs, replays and the nightly sweep take (they swap
    tables too); `load_gate` is held by the loader while a batch is in flight, so a
    table is never swapped under an insert; `scrubbers` remove the ids from what the
    process keeps outside the warehouse (queue file, QA debug ring) and say how much.
    """

    job_lock: threading.Lock = field(default_factory=threading.Lock)
    load_gate: threading.Lock | None = None
    scrubbers: dict[str, Callable[[set[str]], int]] = field(default_factory=dict)
    on_forgotten: list[Callable[[], None]] = field(default_factory=list)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self.job_lock, (self.load_gate or contextlib.nullcontext()):
            yield


@dataclass
class ForgetResult:
    request_id: str
    ids_found: int
    rows_deleted: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    scrubbed: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "ids_found": self.ids_found,
                "rows_deleted": self.rows_deleted, "scrubbed": self.scrubbed,
                "seconds": self.seconds}


def hash_id(value: str) -> str:
    return _hash_bytes(value.encode())


def _hash_bytes(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _in(column: str, names: list[str]) -> str:
    return f"{column} IN ({', '.join('{' + n + ':String}' for n in names)})"


def _id_params(ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    params = {f"id{i}": value for i, value in enumerate(sorted(ids))}
    return list(params), params


def _tables(wh: Warehouse) -> dict[str, list[str]]:
    """MergeTree tables of the warehouse → their columns (scratch copies left out)."""
    out: dict[str, list[str]] = {}
    for table, column in wh.query(
            "SELECT c.table, c.name FROM system.columns AS c "
            "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
            "WHERE c.database = currentDatabase() AND t.engine LIKE '%MergeTree' "
            "AND NOT t.is_temporary ORDER BY c.table, c.position").rows:
        if not table.endswith(SCRATCH):
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


def _condition(table: str, columns: list[str], *, with_ids: bool) -> str | None:
    """Rows of a forgotten person: one of `{ids}` (when given) or a hash in forgotten_ids.

    The hash half makes a retry finish what a failed run started (the identity map may
    be gone already, so the ids could no longer be collected) and serves the sweep.
    """
    if "payload" in columns:         # dead letters: the ids are inside the JSON payload
        keys = ", ".join(f"'{k}'" for k in PAYLOAD_KEYS)
        values = f"arrayMap(k -> JSONExtractString(payload, k), [{keys}])"
        parts = [f"arrayExists(v -> v != '' AND {_hashed('v')} IN {FORGOTTEN}, {values})"]
        if with_ids:
            # A payload that is not JSON cannot be read by key: match the id as text.
            parts += [f"hasAny({values}, {IDS})",
                      f"(NOT isValidJSON(payload) AND multiSearchAny(payload, {IDS}))"]
        return " OR ".join(parts)
    wanted = ID_TABLES.get(table, ()) + tuple(c for c in ID_COLUMNS if c in columns)
    wanted = tuple(dict.fromkeys(c for c in wanted if c in columns))
    arrays = tuple(c for c in ID_ARRAY_COLUMNS if c in columns)
    if not wanted and not arrays:
        return None
    parts = [f"(`{c}` != '' AND {_hashed(f'`{c}`')} IN {FORGOTTEN})" for c in wanted]
    parts += [f"arrayExists(v -> {_hashed('v')} IN {FORGOTTEN}, `{c}`)" for c in arrays]
    if with_ids:
        parts = [f"has({IDS}, `{c}`)" for c in wanted] + \
                [f"hasAny({IDS}, `{c}`)" for c in arrays] + parts
    return " OR ".join(parts)


def _without_rows(wh: Warehouse, table: str, condition: str, params: dict[str, Any],
                  expected: int) -> None:
    """Remove the rows matching `condition` from `table`, leaving nothing of them on disk."""
    if wh.backend != "chdb":
        # A server deployment may have loaders inserting from other processes, so the
        # table cannot be swapped; the mutation's text names the hash subquery only.
        # The server deletes replaced parts (old_parts_lifetime) and finished mutations
        # (finished_mutations_to_keep) itself.
        wh.execute(f"ALTER TABLE `{table}` DELETE WHERE {_hashed_only(condition)} "
                   "SETTINGS mutations_sync = 2")
        return
    scratch = f"{table}{SCRATCH}"
    # A copy left by a run that died half-way: it holds nothing the table does not.
    wh.execute(f"DROP TABLE IF EXISTS `{scratch}` SYNC")
    wh.execute(f"CREATE TABLE `{scratch}` AS `{table}`")
    try:
        before = int(wh.query(f"SELECT count() FROM `{table}`").scalar() or 0)
        wh.execute(f"INSERT INTO `{scratch}` SELECT * FROM `{table}` WHERE NOT ({condition}) "
                   "SETTINGS insert_deduplicate = 0, optimize_on_insert = 0", params)
        copied = int(wh.query(f"SELECT count() FROM `{scratch}`").scalar() or 0)
        if copied != before - expected:
            raise ForgetIncomplete(f"{table}: copied {copied} rows of {before}, expected "
                                   f"{before - expected}; nothing was changed")
        wh.execute(f"EXCHANGE TABLES `{table}` AND `{scratch}`")
    finally:
        # SYNC: the old table's files go now, not after the engine's 8-minute delay.
        wh.execute(f"DROP TABLE IF EXISTS `{scratch}` SYNC")


def _hashed_only(condition: str) -> str:
    """A condition without the `{ids}` parameter (mutation text is stored with its values)."""
    parts = [p for p in condition.split(" OR ") if "{ids:String}" not in p]
    return " OR ".join(parts) or "0"


def _delete_everywhere(wh: Warehouse, ids: set[str], result: ForgetResult | None
                       ) -> dict[str, int]:
    params = {"ids": orjson.dumps(sorted(ids)).decode()}
    removed: dict[str, int] = {}
    # chdb never removes the parts a merge, mutation or REPLACE PARTITION replaced: rows
    # the models already dropped may still sit in them. Such tables are rewritten too.
    stale = {r[0] for r in wh.query(
        "SELECT DISTINCT table FROM system.parts WHERE database = currentDatabase() "
        "AND NOT active").rows} if wh.backend == "chdb" and ids else set()
    for table, columns in sorted(_tables(wh).items()):
        if table in SKIP_TABLES:
            continue
        condition = _condition(table, columns, with_ids=bool(ids))
        if condition is None:
            continue
        count = int(wh.query(f"SELECT count() FROM `{table}` WHERE {condition}", params).scalar()
                    or 0)
        if count or table in stale:
            _without_rows(wh, table, condition, params, count)
        if count:
            removed[table] = count
            if result is not None:
                result.rows_deleted[table] = count
    return removed


def _remaining(wh: Warehouse, ids: set[str]) -> dict[str, int]:
    """Rows still carrying any of `ids` (or a forgotten hash), per table."""
    params = {"ids": orjson.dumps(sorted(ids)).decode()}
    left: dict[str, int] = {}
    for table, columns in sorted(_tables(wh).items()):
        condition = None if table in SKIP_TABLES else _condition(table, columns, with_ids=True)
        if condition is not None:
            n = int(wh.query(f"SELECT count() FROM `{table}` WHERE {condition}", params).scalar()
                    or 0)
            if n:
                left[table] = n
    return left


def _whole(ids: set[str]) -> re.Pattern[str]:
    # Whole ids only: "u-5-7" must not match inside "u-5-71".
    return re.compile("|".join(rf"(?<![\w-]){re.escape(i)}(?![\w-])"
                               for i in sorted(ids, key=len, reverse=True)))


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, list):
        return [_redact(v, pattern) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v, pattern) for k, v in value.items()}
    return value


def _redact_segments(wh: Warehouse, ids: set[str]) -> int:
    """Segment definitions naming an id (a filter value, a SQL parameter) get it redacted.

    Every version is rewritten in place (same segment_id and version), so the
    definition stays valid and member lists still name the version they came from; the
    redacted value matches nobody.
    """
    if "segments" not in _tables(wh):
        return 0
    params = {"ids": orjson.dumps(sorted(ids)).decode()}
    rows = wh.query("SELECT * FROM segments WHERE multiSearchAny(definition, "
                    f"{IDS}) OR multiSearchAny(name, {IDS}) OR multiSearchAny(description, "
                    f"{IDS})", params).dicts()
    pattern = _whole(ids)
    changed = []
    for row in rows:
        new = {**row, "definition": orjson.dumps(_redact(orjson.loads(row["definition"]),
                                                         pattern)).decode(),
               "name": _redact(row["name"], pattern),
               "description": _redact(row["description"], pattern)}
        if new != row:
            changed.append(new)
    if not changed:
        return 0
    keys = [(r["segment_id"], r["version"]) for r in changed]
    condition = "(segment_id, version) IN (SELECT tupleElement(t, 1), toUInt32(tupleElement(" \
                "t, 2)) FROM (SELECT arrayJoin(JSONExtract({keys:String}, " \
                "'Array(Tuple(String, UInt32))')) AS t))"
    kparams = {"keys": orjson.dumps(keys).decode()}
    if wh.backend == "chdb":
        scratch = f"segments{SCRATCH}"
        wh.execute(f"DROP TABLE IF EXISTS {scratch} SYNC")
        wh.execute(f"CREATE TABLE {scratch} AS segments")
        try:
            wh.execute(f"INSERT INTO {scratch} SELECT * FROM segments WHERE NOT ({condition}) "
                       "SETTINGS insert_deduplicate = 0, optimize_on_insert = 0", kparams)
            wh.insert_json_rows(scratch, [orjson.dumps(r) for r in changed])
            wh.execute(f"EXCHANGE TABLES segments AND {scratch}")
        finally:
            wh.execute(f"DROP TABLE IF EXISTS {scratch} SYNC")
    else:
        wh.execute(f"ALTER TABLE segments DELETE WHERE {condition} SETTINGS mutations_sync = 2",
                   kparams)
        wh.insert_json_rows("segments", [orjson.dumps(r) for r in changed])
    return len(changed)


def forget(wh: Warehouse, user_id: str, *, requested_by: str = "", reason: str = "",
           hooks: ForgetHooks | None = None) -> ForgetResult:
    """Delete everything of the person behind `user_id`; log that it was done.

    Raises ForgetIncomplete (nothing logged) when a recount still finds rows: running
    it again with the same id finishes the job.
    """
    if not user_id:
        raise ValueError("a user id is required")
    hooks = hooks or ForgetHooks()
    with hooks.exclusive():
        started = time.monotonic()
        ids = collect_ids(wh, user_id)
        request_id = "fg_" + secrets.token_hex(8)
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        # Hashes first: an export, a materialisation or the loader racing this call
        # already leaves them out, and a retry after a failure finds them again.
        wh.insert_json_rows("forgotten_ids", [
            orjson.dumps({"id_hash": hash_id(i), "forgotten_at": now}) for i in sorted(ids)])
        for notify in hooks.on_forgotten:
            notify()
        result = ForgetResult(request_id, len(ids))
        _delete_everywhere(wh, ids, result)
        redacted = _redact_segments(wh, ids)
        if redacted:
            result.scrubbed["segment_definitions"] = redacted
        for name, scrub in hooks.scrubbers.items():
            result.scrubbed[name] = scrub(ids)
        left = _remaining(wh, ids)
        if left:
            raise ForgetIncomplete(f"rows of the person remain after the delete: {left}; "
                                   "run forget again")
        result.seconds = round(time.monotonic() - started, 3)
        wh.insert_json_rows("forget_log", [orjson.dumps({
            "request_id": request_id, "requested_at": now, "requested_by": requested_by,
            "reason": reason, "id_hashes": [hash_id(i) for i in sorted(ids)],
            "rows_deleted": result.rows_deleted, "seconds": result.seconds})])
        return result


def sweep_forgotten(wh: Warehouse, hooks: ForgetHooks | None = None) -> dict[str, int]:
    """Delete rows of forgotten ids that arrived after their request (late or new events)."""
    tables = _tables(wh)
    if "forgotten_ids" not in tables or not wh.query(
            "SELECT count() FROM forgotten_ids").scalar():
        return {}
    with (hooks or ForgetHooks()).exclusive():
        return _delete_everywhere(wh, set(), None)


class ForgottenSet:
    """The hashes of forgotten ids, for the loader: rows of those people are not loaded.

    Re-read from the warehouse when told (a forget in this process) and at most every
    `max_age` seconds (a forget in another process of a server deployment).
    """

    def __init__(self, warehouse: Warehouse, max_age: float = 10.0) -> None:
        self.warehouse = warehouse
        self.max_age = max_age
        self._hashes: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def changed(self) -> None:
        self._read_at = float("-inf")

    def hashes(self) -> frozenset[str]:
        if time.monotonic() - self._read_at > self.max_age:
            try:
                self._hashes = frozenset(r[0] for r in self.warehouse.query(
                    "SELECT DISTINCT id_hash FROM forgotten_ids").rows)
            except WarehouseError:  # not migrated yet: nobody forgotten
                self._hashes = frozenset()
            self._read_at = time.monotonic()
        return self._hashes

    def keep(self, items: list[bytes], hashes: frozenset[str], *, raw_rows: bool = False
             ) -> tuple[list[bytes], int]:
        """Newline-joined JSON rows without those of forgotten people; how many dropped.

        Once anyone has been forgotten every row is checked, so for events_raw rows
        (`raw_rows`) the check reads only the three id fields (`_raw_row_ids`), and every
        id is hashed once per call: parsing every row and hashing each of its ids cost
        5-8 µs a row, as much as the rest of the loader's per-row work."""
        kept: list[bytes] = []
        dropped = 0
        seen: dict[bytes, bool] = {}

        def forgotten_id(value: bytes) -> bool:
            known = seen.get(value)
            if known is None:
                known = seen[value] = _hash_bytes(value) in hashes
            return known

        def forgotten(line: bytes) -> bool:
            ids = _raw_row_ids(line) if raw_rows else None
            if ids is None:
                return _forgotten_row(line, hashes)
            return any(forgotten_id(v) for v in ids)

        for item in items:
            lines = item.split(b"\n")
            left = [line for line in lines if not (line and forgotten(line))]
            dropped += len(lines) - len(left)
            if left:
                kept.append(b"\n".join(left) if len(left) != len(lines) else item)
        return kept, dropped


# An events_raw row's id columns, found by byte search: inside a string value every quote
# is escaped, so `"user_id":"` can only be that key (as the loader's `_row_key` relies
# on). The collector writes them near the start of the row, so each search is short;
# events_raw has no person_id or payload column, whose absence would take a whole scan.
_RAW_ID_KEYS = tuple(f'"{column}":"'.encode()
                     for column in ("anonymous_id", "user_id", "previous_id"))   # as written


def _raw_row_ids(line: bytes) -> list[bytes] | None:
    """The non-empty id values of an events_raw row as their UTF-8 bytes (what hash_id
    hashes), or None when only a parse can tell (a tombstone, an id that is not a
    string or holds an escape). Each key is looked for after the previous one first:
    the collector writes them one after another."""
    ids = []
    pos = 0
    for key in _RAW_ID_KEYS:
        at = line.find(key, pos)
        if at < 0:
            at = line.find(key)          # written in another order
            if at < 0:
                return None
        start = at + len(key)
        end = line.find(b'"', start)
        if end < 0:
            return None
        if end > start:
            value = line[start:end]
            if b"\\" in value:
                return None
            ids.append(value)
        pos = end
    return ids


def _forgotten_row(line: bytes, hashes: frozenset[str]) -> bool:
    if line == TOMBSTONE:
        return True
    row = orjson.loads(line)
    values = [row.get(c) for c in ID_COLUMNS]
    payload = row.get("payload")
    if isinstance(payload, str) and payload.startswith("{"):
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            values += [doc.get(k) for k in PAYLOAD_KEYS]
    return any(isinstance(v, str) and v and hash_id(v) in hashes for v in values)


def queue_scrubber(log: Any) -> Callable[[set[str]], int]:
    """For ForgetHooks.scrubbers: the person's records still queued in the embedded log."""

    def scrub(ids: set[str]) -> int:
        hashes = frozenset(hash_id(i) for i in ids)
        # As the ids appear inside a JSON line (escaped), to pick the chunks to parse.
        hints = [orjson.dumps(i)[1:-1] for i in ids]
        return int(log.redact(hints, lambda line: line != TOMBSTONE and bool(line)
                              and _forgotten_row(line, hashes), TOMBSTONE))

    return scrub


def debug_ring_scrubber(ingestor: Any) -> Callable[[set[str]], int]:
    """For ForgetHooks.scrubbers: the QA debug ring's entries of the person."""

    def scrub(ids: set[str]) -> int:
        return int(ingestor.forget_entries(ids, _whole(ids)))

    return scrub


def forget_log(wh: Warehouse, limit: int = 100) -> list[dict[str, Any]]:
    return wh.query(
        "SELECT request_id, toString(requested_at) AS requested_at, requested_by, reason, "
        "length(id_hashes) AS ids, rows_deleted, seconds FROM forget_log "
        "ORDER BY requested_at DESC LIMIT {n:UInt32}", {"n": limit}).dicts()
