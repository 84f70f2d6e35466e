"""Segments: JSON definitions compiled to SQL, versioned, materialised into a members table.

A definition is one of three kinds:

* containers — ``{"containers": [{"groups": [group, …]}, …]}``. Containers are
  unioned; the groups inside one container are intersected on ``person_id``; a group
  with ``"exclude": true`` removes its people from the container instead. A group is a
  set of conditions on ONE table::

      {"table": "behavior_events",
       "filters": [{"column": "event", "op": "=", "value": "add_to_cart"},
                   {"column": "properties.coupon", "op": "is_set"}],
       "within_days": 30,                                   # optional, before as_of
       "having": [{"fn": "count", "op": ">=", "value": 2}],  # optional, per person
       "exclude": false}

* sql — ``{"sql": "SELECT person_id FROM …", "params": {...}}``: any read-only SELECT
  returning a ``person_id`` column (or exactly one column); ``{name:Type}`` parameters.
* people — a fixed list of ids (person, user or anonymous ids), kept in
  ``segment_people`` and resolved through the identity map at every materialisation.
* analysis — ``{"analysis": {"name": "funnel", "spec": {…}, "who": "dropped:3",
  "last_days": 30}}``: the people of one part of an analysis result, re-evaluated from
  its definition at every materialisation (a live "dropped at step 3" audience).
  With ``last_days`` the analysis covers the N reporting days up to the materialisation;
  without, the spec's own days (or all days with data).

Every change is a new version (table ``segments``). Materialising a segment writes its
members into a staging table and swaps them into ``segment_members`` with REPLACE
PARTITION (one partition per segment), then records size and KPIs in
``segment_snapshots``. Membership is a primary-key point lookup, by person id or by
any id of the person (through the identity map).
"""

from __future__ import annotations

import builtins
import re
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse, WarehouseError
from funnelhouse.warehouse.sql_guard import (
    GuardedSql,
    SqlRefused,
    guard,
    limit_error,
    limited_reader,
    release_limited,
)

__all__ = [
    "CompiledQuery", "SegmentError", "Segments", "compile_definition", "create_segment_from_sql",
    "from_people", "from_sql", "validate_definition",
]

# The tables a group may read: each has one row per something of one person.
# `time` lists the column a `within_days` window applies to, in order of preference;
# the first that exists in the table is used (tables evolve; the check is live).
SEGMENT_TABLES: dict[str, tuple[str, ...]] = {
    "users": ("last_seen_at", "first_seen_at"),
    "sessions": ("started_at", "session_date"),
    "behavior_events": ("event_at", "event_date"),
    "product_engagement": ("activity_date",),
    "orders": ("ordered_at", "order_date"),
    "order_items": ("ordered_at", "order_date"),
    "funnel_stages": ("stage_date",),
}
JSON_COLUMNS = ("properties", "traits")
COMPARISONS = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
OPS = set(COMPARISONS) | {"in", "not_in", "contains", "not_contains", "starts_with",
                          "is_set", "is_not_set", "between", "has"}
AGGREGATES = {"count", "sum", "avg", "min", "max", "uniq"}
KINDS = ("containers", "sql", "people", "analysis")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_JSON_KEY = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
_TIME = "DateTime64(3, 'UTC')"
# Forgotten people never come back into a member list, whatever the source tables say.
NOT_FORGOTTEN = "lower(hex(SHA256(person_id))) NOT IN (SELECT id_hash FROM forgotten_ids)"


class SegmentError(ValueError):
    """A definition or a request the segment store refuses; `path` points into the JSON."""

    def __init__(self, message: str, path: str = "$", reason: str = "invalid_segment") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path
        self.reason = reason

    def as_json(self) -> dict[str, Any]:
        return {"error": self.message, "path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class CompiledQuery:
    """SQL returning one column `person_id` (distinct), with its named parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"sql": self.sql, "params": self.params}


# -- validation ----------------------------------------------------------------------------

def validate_definition(doc: Any) -> dict[str, Any]:
    """The definition in canonical form (kind + fields), or SegmentError naming the path."""
    if not isinstance(doc, dict):
        raise SegmentError("a segment definition is a JSON object")
    present = [k for k in KINDS if k in doc]
    if len(present) != 1:
        raise SegmentError("give exactly one of containers, sql, people or analysis")
    kind = present[0]
    name = doc.get("name", "")
    if not isinstance(name, str) or not name.strip():
        raise SegmentError("name is required", "$.name")
    out: dict[str, Any] = {"name": name.strip(), "description": str(doc.get("description") or ""),
                           "kind": kind}
    if isinstance(doc.get("origin"), dict):
        out["origin"] = doc["origin"]   # where it came from: an analysis, its step …
    if kind == "sql":
        sql = doc["sql"]
        if not isinstance(sql, str) or not sql.strip():
            raise SegmentError("sql must be a SELECT statement", "$.sql")
        params = doc.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, (str, int, float, bool))
                                                   for v in params.values()):
            raise SegmentError("params is an object of scalar values", "$.params")
        out["sql"] = sql.strip().rstrip(";").strip()
        out["params"] = params
        return out
    if kind == "analysis":
        out["analysis"] = _validate_analysis(doc["analysis"])
        return out
    if kind == "people":
        people = doc["people"]
        if not isinstance(people, list) or not all(isinstance(p, str) and p for p in people):
            raise SegmentError("people is a list of ids", "$.people")
        out["people"] = sorted(set(people))
        return out
    containers = doc["containers"]
    if not isinstance(containers, list) or not containers:
        raise SegmentError("containers is a non-empty list", "$.containers")
    out["containers"] = [_validate_container(c, f"$.containers[{i}]")
                         for i, c in enumerate(containers)]
    return out


def _validate_analysis(doc: Any) -> dict[str, Any]:
    from funnelhouse.analyses.cohorts import BUILDERS

    if not isinstance(doc, dict) or doc.get("name") not in BUILDERS:
        raise SegmentError(f"analysis.name is one of {', '.join(BUILDERS)}", "$.analysis.name")
    if not isinstance(doc.get("spec"), dict):
        raise SegmentError("analysis.spec is the analysis' JSON spec", "$.analysis.spec")
    if not isinstance(doc.get("who"), str) or not doc["who"]:
        raise SegmentError("analysis.who names the people (e.g. dropped:3)", "$.analysis.who")
    last_days = doc.get("last_days")
    if last_days is not None and (not isinstance(last_days, int) or isinstance(last_days, bool)
                                  or not 1 <= last_days <= 3650):
        raise SegmentError("analysis.last_days is a number of days (1..3650)",
                           "$.analysis.last_days")
    return {"name": doc["name"], "spec": doc["spec"], "who": doc["who"],
            "last_days": last_days}


def _validate_container(container: Any, path: str) -> dict[str, Any]:
    if not isinstance(container, dict) or not isinstance(container.get("groups"), list) \
            or not container["groups"]:
        raise SegmentError("a container is {\"groups\": [ … ]} with at least one group", path)
    groups = [_validate_group(g, f"{path}.groups[{i}]") for i, g in enumerate(container["groups"])]
    if all(g["exclude"] for g in groups):
        raise SegmentError("a container needs at least one group that is not an exclusion", path)
    return {"groups": groups}


def _validate_group(group: Any, path: str) -> dict[str, Any]:
    if not isinstance(group, dict):
        raise SegmentError("a group is an object", path)
    table = group.get("table")
    if table not in SEGMENT_TABLES:
        raise SegmentError(f"table must be one of {', '.join(SEGMENT_TABLES)}", f"{path}.table")
    filters = group.get("filters", [])
    if not isinstance(filters, list):
        raise SegmentError("filters is a list", f"{path}.filters")
    within = group.get("within_days")
    if within is not None and (not isinstance(within, int) or isinstance(within, bool)
                               or not 0 < within <= 3660):
        raise SegmentError("within_days is a whole number of days (1–3660)", f"{path}.within_days")
    having = group.get("having", [])
    if not isinstance(having, list):
        raise SegmentError("having is a list", f"{path}.having")
    return {"table": table,
            "filters": [_validate_filter(f, f"{path}.filters[{i}]") for i, f in enumerate(filters)],
            "within_days": within,
            "having": [_validate_having(h, f"{path}.having[{i}]") for i, h in enumerate(having)],
            "exclude": bool(group.get("exclude", False))}


def _validate_filter(flt: Any, path: str) -> dict[str, Any]:
    if not isinstance(flt, dict):
        raise SegmentError("a filter is {column, op, value}", path)
    column, op = flt.get("column"), flt.get("op", "=")
    if not isinstance(column, str) or not _valid_column_ref(column):
        raise SegmentError("column is a column name, or properties.KEY / traits.KEY",
                           f"{path}.column")
    if op not in OPS:
        raise SegmentError(f"op must be one of {', '.join(sorted(OPS))}", f"{path}.op")
    value = flt.get("value")
    if op in ("is_set", "is_not_set"):
        value = None
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value or not all(_scalar(v) for v in value):
            raise SegmentError("value is a non-empty list of scalars", f"{path}.value")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2 or not all(_scalar(v) for v in value):
            raise SegmentError("value is [low, high]", f"{path}.value")
    elif not _scalar(value):
        raise SegmentError("value is a string, number or boolean", f"{path}.value")
    return {"column": column, "op": op, "value": value}


def _validate_having(having: Any, path: str) -> dict[str, Any]:
    if not isinstance(having, dict) or having.get("fn", "count") not in AGGREGATES:
        raise SegmentError(f"fn must be one of {', '.join(sorted(AGGREGATES))}", f"{path}.fn")
    fn = having.get("fn", "count")
    column = having.get("column")
    if fn != "count" and (not isinstance(column, str) or not _COLUMN.match(column)):
        raise SegmentError(f"{fn} needs a column", f"{path}.column")
    op = having.get("op", ">=")
    if op not in COMPARISONS:
        raise SegmentError(f"op must be one of {', '.join(COMPARISONS)}", f"{path}.op")
    value = having.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SegmentError("value is a number", f"{path}.value")
    return {"fn": fn, "column": column if fn != "count" else None, "op": op, "value": value}


def _valid_column_ref(column: str) -> bool:
    if "." in column:
        head, _, key = column.partition(".")
        return head in JSON_COLUMNS and bool(_JSON_KEY.match(key))
    return bool(_COLUMN.match(column))


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and value is not None


# -- compilation ---------------------------------------------------------------------------

def compile_definition(definition: dict[str, Any], columns: dict[str, dict[str, str]], *,
                       as_of: datetime, tz: str) -> CompiledQuery:
    """SQL for the people of a `containers` definition.

    `columns` maps each existing table to {column: ClickHouse type}; a group on a missing
    table or column is refused here with its JSON path, before anything runs.
    """
    params: dict[str, Any] = {}
    ctes: list[str] = []
    container_names: list[str] = []
    for ci, container in enumerate(definition["containers"]):
        keep: list[str] = []
        drop: list[str] = []
        for gi, group in enumerate(container["groups"]):
            name = f"c{ci}_g{gi}"
            path = f"$.containers[{ci}].groups[{gi}]"
            body = _group_sql(group, name, path, columns, params, as_of, tz)
            ctes.append(f"{name} AS (\n{body}\n)")
            (drop if group["exclude"] else keep).append(name)
        first, *others = keep
        conditions = [f"person_id IN (SELECT person_id FROM {g})" for g in others]
        conditions += [f"person_id NOT IN (SELECT person_id FROM {g})" for g in drop]
        where = ("\n    WHERE " + "\n      AND ".join(conditions)) if conditions else ""
        cname = f"container_{ci}"
        ctes.append(f"{cname} AS (\n    -- groups of container {ci}, intersected on person\n"
                    f"    SELECT person_id FROM {first}{where}\n)")
        container_names.append(cname)
    union = "\n    UNION ALL\n".join(f"    SELECT person_id FROM {c}" for c in container_names)
    sql = ("WITH\n" + ",\n".join(ctes) +
           f"\n-- containers, unioned\nSELECT DISTINCT person_id\nFROM (\n{union}\n)")
    return CompiledQuery(sql, params)


def _group_sql(group: dict[str, Any], name: str, path: str, columns: dict[str, dict[str, str]],
               params: dict[str, Any], as_of: datetime, tz: str) -> str:
    table = group["table"]
    if table not in columns:
        raise SegmentError(f"table {table} does not exist (yet): run the models",
                           f"{path}.table", "unknown_table")
    types = columns[table]
    conditions = []
    for fi, flt in enumerate(group["filters"]):
        conditions.append(_filter_sql(flt, f"{name}_f{fi}", f"{path}.filters[{fi}]", types, params))
    if group["within_days"]:
        time_column = next((c for c in SEGMENT_TABLES[table] if c in types), None)
        if time_column is None:
            raise SegmentError(f"{table} has no time column for within_days",
                               f"{path}.within_days")
        since = f"{name}_since"
        start = as_of - timedelta(days=group["within_days"])
        if _base_type(types[time_column]) == "Date":
            params[since] = start.astimezone(ZoneInfo(tz)).date().isoformat()
            params[f"{name}_until"] = as_of.astimezone(ZoneInfo(tz)).date().isoformat()
            conditions.append(f"{time_column} > {{{since}:Date}} "
                              f"AND {time_column} <= {{{name}_until:Date}}")
        else:
            params[since] = _utc_text(start)
            params[f"{name}_until"] = _utc_text(as_of)
            conditions.append(f"{time_column} >= {{{since}:{_TIME}}} "
                              f"AND {time_column} < {{{name}_until:{_TIME}}}")
    where = ("\n    WHERE " + "\n      AND ".join(conditions)) if conditions else ""
    having = []
    for hi, agg in enumerate(group["having"]):
        p = f"{name}_h{hi}"
        if agg["fn"] == "count":
            expr = "count()"
        else:
            if agg["column"] not in types:
                raise SegmentError(f"{table} has no column {agg['column']}",
                                   f"{path}.having[{hi}].column", "unknown_column")
            fn = {"uniq": "uniqExact"}.get(agg["fn"], agg["fn"])
            expr = f"{fn}({agg['column']})"
        params[p] = agg["value"]
        having.append(f"{expr} {agg['op']} {{{p}:Float64}}")
    having_sql = ("\n    HAVING " + " AND ".join(having)) if having else ""
    return (f"    -- {table}{' (excluded)' if group['exclude'] else ''}\n"
            f"    SELECT person_id\n    FROM {table}{where}\n    GROUP BY person_id{having_sql}")


def _filter_sql(flt: dict[str, Any], p: str, path: str, types: dict[str, str],
                params: dict[str, Any]) -> str:
    column, op, value = flt["column"], flt["op"], flt["value"]
    if "." in column:
        head, _, key = column.partition(".")
        if head not in types:
            raise SegmentError(f"this table has no {head} column", f"{path}.column",
                               "unknown_column")
        params[f"{p}_key"] = key
        numeric = op in (">", ">=", "<", "<=", "between") or (
            op in ("=", "!=") and isinstance(value, (int, float)) and not isinstance(value, bool))
        expr = (f"JSONExtractFloat({head}, {{{p}_key:String}})" if numeric
                else f"JSONExtractString({head}, {{{p}_key:String}})")
        ptype = "Float64" if numeric else "String"
        if op in ("in", "not_in") and all(isinstance(v, (int, float)) for v in value):
            expr, ptype = f"JSONExtractFloat({head}, {{{p}_key:String}})", "Float64"
    else:
        if column not in types:
            raise SegmentError(f"no column {column} in this table", f"{path}.column",
                               "unknown_column")
        expr = column
        ptype = _base_type(types[column])
    if op in COMPARISONS:
        params[p] = _param_value(value)
        return f"{expr} {COMPARISONS[op]} {{{p}:{ptype}}}"
    if op in ("in", "not_in"):
        names = []
        for i, v in enumerate(value):
            params[f"{p}_{i}"] = _param_value(v)
            names.append(f"{{{p}_{i}:{ptype}}}")
        return f"{expr} {'NOT IN' if op == 'not_in' else 'IN'} ({', '.join(names)})"
    if op == "between":
        params[f"{p}_lo"], params[f"{p}_hi"] = (_param_value(v) for v in value)
        return f"{expr} BETWEEN {{{p}_lo:{ptype}}} AND {{{p}_hi:{ptype}}}"
    if op == "has":
        inner = ptype[6:-1] if ptype.startswith("Array(") else "String"
        params[p] = _param_value(value)
        return f"has({expr}, {{{p}:{_base_type(inner)}}})"
    if op in ("contains", "not_contains", "starts_with"):
        params[p] = str(value)
        if op == "starts_with":
            return f"startsWith(toString({expr}), {{{p}:String}})"
        test = f"positionCaseInsensitiveUTF8(toString({expr}), {{{p}:String}}) > 0"
        return test if op == "contains" else f"NOT ({test})"
    test = f"({expr} IS NOT NULL AND toString({expr}) NOT IN ('', '0', '[]', '{{}}'))"
    return test if op == "is_set" else f"NOT {test}"


def _base_type(ch_type: str) -> str:
    for wrapper in ("LowCardinality(", "Nullable("):
        while ch_type.startswith(wrapper):
            ch_type = ch_type[len(wrapper):-1]
    return ch_type


def _param_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _slug(name: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48]
    return text or "segment"


# -- the store -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    segment_id: str
    version: int
    name: str
    description: str
    kind: str
    definition: dict[str, Any]
    created_at: str
    created_by: str

    def as_json(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "version": self.version, "name": self.name,
                "description": self.description, "kind": self.kind,
                "definition": self.definition, "created_at": self.created_at,
                "created_by": self.created_by}


@dataclass(frozen=True)
class Materialisation:
    segment_id: str
    version: int
    members: int
    added: int
    removed: int
    materialised_at: str
    seconds: float
    sql: CompiledQuery

    def as_json(self) -> dict[str, Any]:
        return {"segment_id": self.segment_id, "version": self.version, "members": self.members,
                "added": self.added, "removed": self.removed,
                "materialised_at": self.materialised_at, "seconds": self.seconds}


# One materialisation per segment at a time in this process (staging names are unique,
# but two runs racing to REPLACE one partition would leave the slower one's list).
_SEGMENT_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _segment_lock(segment_id: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _SEGMENT_LOCKS.setdefault(segment_id, threading.Lock())


class Segments:
    """The segment store over one warehouse handle (writes) and an optional read handle.

    Raw-SQL definitions are checked on a read-only handle first, so the engine itself
    refuses anything but reading (DDL, INSERT, file()/url()) before a definition is kept.
    """

    def __init__(self, warehouse: Warehouse, settings: Settings,
                 reader: Warehouse | None = None) -> None:
        self.wh = warehouse
        self.settings = settings
        self._reader = reader
        self._own_reader = False
        self._version_lock = threading.Lock()

    @property
    def reader(self) -> Warehouse:
        if self._reader is None:
            self._reader = self.wh.readonly()
            self._own_reader = True
        return self._reader

    def close(self) -> None:
        """Close the read-only handle this store opened itself (not one it was given)."""
        if self._own_reader and self._reader is not None:
            release_limited(self._reader)
            self._reader.close()
            self._reader, self._own_reader = None, False

    # -- definitions ----------------------------------------------------------------------
    def create(self, doc: dict[str, Any], *, segment_id: str | None = None,
               created_by: str = "") -> Segment:
        definition = validate_definition(doc)
        self._check(definition)
        with self._version_lock:
            if segment_id is not None:
                if not _ID.match(segment_id):
                    raise SegmentError("segment id: lower-case letters, digits, - and _",
                                       "$.segment_id")
                if self._latest_row(segment_id) is not None:
                    raise SegmentError(f"segment {segment_id} exists", "$.segment_id",
                                       "segment_exists")
            else:
                segment_id = self._free_id(_slug(definition["name"]))
            return self._write_version(segment_id, 1, definition, created_by)

    def update(self, segment_id: str, doc: dict[str, Any], *, created_by: str = "") -> Segment:
        definition = validate_definition(doc)
        self._check(definition)
        with self._version_lock:
            latest = self._latest_row(segment_id)
            if latest is None or latest["deleted"]:
                raise SegmentError(f"no segment {segment_id}", "", "unknown_segment")
            return self._write_version(segment_id, latest["version"] + 1, definition, created_by)

    def delete(self, segment_id: str, *, created_by: str = "") -> None:
        with self._version_lock:
            latest = self._latest_row(segment_id)
            if latest is None or latest["deleted"]:
                raise SegmentError(f"no segment {segment_id}", "", "unknown_segment")
            self.wh.execute(
                "INSERT INTO segments (segment_id, version, name, description, kind, definition, "
                "created_at, created_by, deleted) SELECT segment_id, version + 1, name, "
                "description, kind, definition, now64(3), {by:String}, 1 FROM segments "
                "WHERE segment_id = {s:String} AND version = {v:UInt32}",
                {"s": segment_id, "v": latest["version"], "by": created_by})
            self.wh.execute(f"ALTER TABLE segment_members DROP PARTITION {_partition(segment_id)}")

    def get(self, segment_id: str, version: int | None = None) -> Segment:
        row = self._latest_row(segment_id) if version is None else self._row(segment_id, version)
        if row is None or (version is None and row["deleted"]):
            raise SegmentError(f"no segment {segment_id}"
                               + (f" version {version}" if version else ""), "", "unknown_segment")
        return _segment(row)

    def list(self) -> list[dict[str, Any]]:
        """Current segments with their last materialisation (size, when)."""
        return self.reader.query("""
            WITH current AS (
                SELECT segment_id, max(version) AS version
                FROM segments GROUP BY segment_id
            ),
            latest_snapshot AS (
                SELECT segment_id,
                       argMax(members, materialised_at) AS last_members,
                       toString(max(materialised_at)) AS last_materialised_at
                FROM segment_snapshots GROUP BY segment_id
            )
            SELECT s.segment_id AS segment_id, s.version AS version, s.name AS name,
                   s.kind AS kind, s.description AS description,
                   toString(s.created_at) AS updated_at,
                   if(l.segment_id = '', NULL, l.last_members) AS members,
                   if(l.segment_id = '', NULL, l.last_materialised_at) AS materialised_at
            FROM segments AS s
            INNER JOIN current AS c ON c.segment_id = s.segment_id AND c.version = s.version
            LEFT JOIN latest_snapshot AS l ON l.segment_id = s.segment_id
            WHERE s.deleted = 0
            ORDER BY s.segment_id""").dicts()

    def versions(self, segment_id: str) -> builtins.list[dict[str, Any]]:
        return self.reader.query(
            "SELECT version, name, kind, toString(created_at) AS created_at, created_by, deleted "
            "FROM segments WHERE segment_id = {s:String} ORDER BY version",
            {"s": segment_id}).dicts()

    # -- SQL ------------------------------------------------------------------------------
    def compiled(self, segment: Segment, as_of: datetime | None = None) -> CompiledQuery:
        """The SQL the segment's people come from (what `--show-sql` prints)."""
        definition = segment.definition
        as_of = as_of or datetime.now(UTC)
        if segment.kind == "containers":
            return compile_definition(definition, self._columns(), as_of=as_of,
                                      tz=self.settings.reporting_tz)
        if segment.kind == "sql":
            query, index = self._sql_column(definition)
            return CompiledQuery(self._wrap_sql(query, index), dict(query.params))
        if segment.kind == "analysis":
            from funnelhouse.analyses.cohorts import live_people_sql

            sql, params = live_people_sql(self.reader, definition["analysis"], as_of,
                                          self.settings.reporting_tz)
            return CompiledQuery(sql, params)
        has_map = "identity_map" in self._columns()
        resolve = ("SELECT DISTINCT if(m.person_id != '', m.person_id, p.id) AS person_id\n"
                   "FROM segment_people AS p\nLEFT JOIN identity_map AS m ON m.id = p.id\n"
                   if has_map else "SELECT DISTINCT p.id AS person_id\nFROM segment_people AS p\n")
        return CompiledQuery(
            "-- the saved ids, each resolved to its person through the identity map\n" + resolve +
            "WHERE p.segment_id = {segment_id:String} AND p.version = {segment_version:UInt32}",
            {"segment_id": segment.segment_id, "segment_version": segment.version})

    def _wrap_sql(self, query: GuardedSql, index: int) -> str:
        # Only the engine's canonical print of one guarded SELECT goes in (no comments,
        # nothing after it), and the person column is taken by position: no name or text
        # the caller chose is pasted into this statement.
        return (f"SELECT DISTINCT toString(tupleElement(tuple(*), {int(index)})) AS person_id\n"
                f"FROM (\n{query.sql}\n)\nWHERE person_id != ''")

    def _user_reader(self) -> Warehouse:
        """The read-only handle user SQL runs on: time and memory limited."""
        return limited_reader(self.reader, self.settings, result=False)

    def _sql_column(self, definition: dict[str, Any]) -> tuple[GuardedSql, int]:
        """A raw-SQL definition guarded, and the 1-based position of its person column."""
        try:
            query = guard(self.reader, definition["sql"], definition.get("params") or None)
        except SqlRefused as exc:
            raise SegmentError(exc.message, "$.sql", exc.reason) from exc
        try:
            meta = self._user_reader().query(f"SELECT * FROM (\n{query.sql}\n) LIMIT 0",
                                             query.params or None)
        except WarehouseError as exc:
            raise sql_failure(exc) from exc
        if "person_id" in meta.columns:
            return query, meta.columns.index("person_id") + 1
        if len(meta.columns) == 1:
            return query, 1
        raise SegmentError("the SQL must return a person_id column (or a single column)",
                           "$.sql", "invalid_sql")

    def _sql_people(self, definition: dict[str, Any], where: str = "1") -> builtins.list[str]:
        """The person ids a raw-SQL definition returns, read on the limited read-only handle."""
        query, index = self._sql_column(definition)
        try:
            raw = self._user_reader().query_raw(
                f"SELECT person_id FROM (\n{self._wrap_sql(query, index)}\n) WHERE {where}",
                "JSONCompactEachRow", query.params or None)
        except WarehouseError as exc:
            raise sql_failure(exc) from exc
        return [orjson.loads(line)[0] for line in raw.splitlines() if line.strip()]

    def _check(self, definition: dict[str, Any]) -> None:
        if definition["kind"] == "sql":
            self._sql_column(definition)
        elif definition["kind"] == "analysis":
            from funnelhouse.analyses.cohorts import live_people_sql
            from funnelhouse.analyses.common import SpecError

            try:   # the spec and `who` are checked now, against the live tables
                live_people_sql(self.reader, definition["analysis"], datetime.now(UTC),
                                self.settings.reporting_tz)
            except SpecError as exc:
                raise SegmentError(str(exc), "$.analysis") from exc
        elif definition["kind"] == "containers":
            # Compiles against the live columns: unknown tables/columns fail now.
            compile_definition(definition, self._columns(), as_of=datetime.now(UTC),
                               tz=self.settings.reporting_tz)

    def _columns(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for table, name, ch_type in self.wh.query(
                "SELECT table, name, type FROM system.columns "
                "WHERE database = currentDatabase() ORDER BY table, position").rows:
            out.setdefault(table, {})[name] = ch_type
        return out

    # -- materialisation ------------------------------------------------------------------
    def materialise(self, segment_id: str, *, as_of: datetime | None = None) -> Materialisation:
        """Recompute the members of the segment's current version and swap them in."""
        with _segment_lock(segment_id):
            return self._materialise(self.get(segment_id), as_of or datetime.now(UTC))

    def materialise_all(self, *, as_of: datetime | None = None) -> builtins.list[Materialisation]:
        """Every current segment; one failing segment does not stop the others."""
        done = []
        for row in self.list():
            try:
                done.append(self.materialise(row["segment_id"], as_of=as_of))
            except (SegmentError, WarehouseError) as exc:
                done.append(Materialisation(row["segment_id"], row["version"], -1, 0, 0, "", 0.0,
                                            CompiledQuery(f"-- failed: {_first_line(exc)}")))
        return done

    def _materialise(self, segment: Segment, as_of: datetime) -> Materialisation:
        started = time.monotonic()
        query = self.compiled(segment, as_of)
        stage = f"segment_members__stage_{secrets.token_hex(4)}"
        sid = segment.segment_id
        at = _utc_text(datetime.now(UTC))
        # User SQL never runs on the writer: its people are read on the read-only handle
        # (guarded, limited) and handed to the writer as data.
        people = (self._sql_people(segment.definition, f"person_id != '' AND {NOT_FORGOTTEN}")
                  if segment.kind == "sql" else None)
        self.wh.execute(f"CREATE TABLE {stage} AS segment_members")
        try:
            if people is not None:
                for chunk in _chunks(people, 50_000):
                    self.wh.insert_json_rows(stage, [orjson.dumps({
                        "segment_id": sid, "person_id": p, "version": segment.version,
                        "materialised_at": at}) for p in chunk])
            else:
                self.wh.execute(
                    f"INSERT INTO {stage} (segment_id, person_id, version, materialised_at)\n"
                    f"SELECT {{m_segment:String}}, person_id, {{m_version:UInt32}}, "
                    f"{{m_at:{_TIME}}}\nFROM (\n{query.sql}\n)\n"
                    f"WHERE person_id != '' AND {NOT_FORGOTTEN}",
                    {**query.params, "m_segment": sid, "m_version": segment.version,
                     "m_at": at})
            members, added, removed = self.wh.query(f"""
                SELECT (SELECT count() FROM {stage}),
                       (SELECT count() FROM {stage} WHERE person_id NOT IN (
                            SELECT person_id FROM segment_members WHERE segment_id = {{s:String}})),
                       (SELECT count() FROM segment_members WHERE segment_id = {{s:String}}
                            AND person_id NOT IN (SELECT person_id FROM {stage}))""",
                {"s": sid}).rows[0]
            kpis = self._kpis(stage, as_of)
            if members:
                self.wh.execute(f"ALTER TABLE segment_members REPLACE PARTITION {_partition(sid)} "
                                f"FROM {stage}")
            else:
                self.wh.execute(f"ALTER TABLE segment_members DROP PARTITION {_partition(sid)}")
        finally:
            self.wh.execute(f"DROP TABLE IF EXISTS {stage} SYNC")
        seconds = round(time.monotonic() - started, 3)
        self.wh.insert_json_rows("segment_snapshots", [orjson.dumps({
            "segment_id": sid, "version": segment.version, "materialised_at": at,
            "as_of": _utc_text(as_of), "members": members, "added": added, "removed": removed,
            **kpis, "seconds": seconds})])
        return Materialisation(sid, segment.version, int(members), int(added), int(removed), at,
                               seconds, query)

    def _kpis(self, stage: str, as_of: datetime) -> dict[str, Any]:
        tables = self._columns()
        parts = {"identified": "0"}
        members = f"(SELECT person_id FROM {stage})"
        if "identity_map" in tables:
            parts["identified"] = ("(SELECT uniqExact(id) FROM identity_map "
                                   "WHERE id_kind = 'user' AND id = person_id "
                                   f"AND id IN {members})")
        if "orders" in tables:
            parts["buyers"] = ("(SELECT uniqExact(person_id) FROM orders "
                               f"WHERE person_id IN {members})")
            recent = (f"person_id IN {members} "
                      f"AND ordered_at >= {{as_of:{_TIME}}} - INTERVAL 30 DAY "
                      f"AND ordered_at < {{as_of:{_TIME}}}")
            parts["orders_30d"] = f"(SELECT count() FROM orders WHERE {recent})"
            parts["revenue_30d"] = f"(SELECT toString(sum(revenue)) FROM orders WHERE {recent})"
        if "sessions" in tables:
            parts["active_7d"] = (f"(SELECT uniqExact(person_id) FROM sessions WHERE person_id IN "
                                  f"{members} AND started_at >= {{as_of:{_TIME}}} - INTERVAL 7 DAY "
                                  f"AND started_at < {{as_of:{_TIME}}})")
        row = self.wh.query("SELECT " + ", ".join(f"{v} AS {k}" for k, v in parts.items()),
                            {"as_of": _utc_text(as_of)}).dicts()[0]
        return {k: row.get(k) for k in ("identified", "buyers", "orders_30d", "revenue_30d",
                                        "active_7d")}

    def compare(self, segment_id: str, *, as_of: datetime | None = None, days: int = 30
                ) -> dict[str, Any]:
        """The segment's KPIs over the `days` before as_of, beside all users over the same
        days and beside the segment's own members over the `days` before that."""
        self.get(segment_id)
        if not 1 <= days <= 3650:
            raise SegmentError("days must be between 1 and 3650", "$.days")
        as_of = as_of or datetime.now(UTC)
        members = "SELECT person_id FROM segment_members WHERE segment_id = {s:String}"
        everyone = f"SELECT person_id FROM users WHERE first_seen_at < {{period_end:{_TIME}}}"
        out: dict[str, Any] = {"segment_id": segment_id, "as_of": _utc_text(as_of),
                               "days": days}
        for name, people, end in (("segment", members, as_of),
                                  ("all_users", everyone, as_of),
                                  ("segment_previous", members,
                                   as_of - timedelta(days=days))):
            out[name] = self._period_kpis(people, segment_id, end - timedelta(days=days), end)
        out["sql"] = PERIOD_KPIS_SQL
        return out

    def _period_kpis(self, people: str, segment_id: str, start: datetime, end: datetime
                     ) -> dict[str, Any]:
        row = self.reader.query(PERIOD_KPIS_SQL.replace("{people}", people), {
            "s": segment_id, "period_start": _utc_text(start),
            "period_end": _utc_text(end)}).dicts()[0]
        size, active, buyers = int(row["people"]), int(row["active"]), int(row["buyers"])
        revenue = float(row["revenue"])

        def share(part: float) -> float | None:
            return round(100 * part / size, 2) if size else None

        return {"from": _utc_text(start), "to": _utc_text(end), "people": size,
                "active": active, "buyers": buyers, "orders": int(row["orders"]),
                "revenue": revenue, "active_pct": share(active), "buyers_pct": share(buyers),
                "revenue_per_person": round(revenue / size, 2) if size else None}

    # -- reading members ------------------------------------------------------------------
    def membership(self, segment_id: str, any_id: str) -> dict[str, Any]:
        """Is this person (by person id, user id or anonymous id) in the segment now?

        Two primary-key lookups: the id in the identity map (sorted by id), then
        (segment_id, person_id) in segment_members.
        """
        try:
            row = self.reader.query(MEMBERSHIP_SQL, {"s": segment_id, "id": any_id}).rows
        except WarehouseError:
            # No identity map yet (models never ran): the id can only be a person id.
            row = self.reader.query(MEMBERSHIP_BY_PERSON_SQL, {"s": segment_id, "id": any_id}).rows
        if row:
            person_id, version, materialised_at = row[0]
            return {"segment_id": segment_id, "id": any_id, "member": True,
                    "person_id": person_id, "version": version, "materialised_at": materialised_at}
        self.get(segment_id)   # unknown segment → SegmentError, not "not a member"
        return {"segment_id": segment_id, "id": any_id, "member": False, "person_id": None,
                "version": None, "materialised_at": None}

    def members(self, segment_id: str, *, limit: int | None = None, offset: int = 0
                ) -> builtins.list[dict[str, Any]]:
        self.get(segment_id)
        return self.reader.query(members_sql(limit is not None),
                                 {"s": segment_id, "limit": limit or 0, "offset": offset}).dicts()

    def members_raw(self, segment_id: str, fmt: str) -> bytes:
        """The full member list in a ClickHouse output format (CSVWithNames, JSONEachRow …)."""
        self.get(segment_id)
        return self.reader.query_raw(members_sql(False), fmt, {"s": segment_id})

    def history(self, segment_id: str) -> builtins.list[dict[str, Any]]:
        """Size and KPIs at every materialisation, oldest first."""
        self.get(segment_id)
        return self.reader.query(
            "SELECT toString(materialised_at) AS materialised_at, version, members, added, "
            "removed, identified, buyers, orders_30d, toString(revenue_30d) AS revenue_30d, "
            "active_7d, seconds FROM segment_snapshots WHERE segment_id = {s:String} "
            "ORDER BY materialised_at", {"s": segment_id}).dicts()

    # -- helpers --------------------------------------------------------------------------
    def _write_version(self, segment_id: str, version: int, definition: dict[str, Any],
                       created_by: str) -> Segment:
        stored = {k: v for k, v in definition.items() if k != "people"}
        if definition["kind"] == "people":
            stored["people_count"] = len(definition["people"])
            self._insert_people(segment_id, version, definition["people"])
        self.wh.execute(
            "INSERT INTO segments (segment_id, version, name, description, kind, definition, "
            "created_at, created_by, deleted) VALUES ({s:String}, {v:UInt32}, {n:String}, "
            "{d:String}, {k:String}, {def:String}, now64(3), {by:String}, 0)",
            {"s": segment_id, "v": version, "n": definition["name"],
             "d": definition["description"], "k": definition["kind"],
             "def": orjson.dumps(stored).decode(), "by": created_by})
        return self.get(segment_id, version)

    def _insert_people(self, segment_id: str, version: int, people: Sequence[str]) -> None:
        for chunk in _chunks(people, 50_000):
            self.wh.insert_json_rows("segment_people", [
                orjson.dumps({"segment_id": segment_id, "version": version, "id": p})
                for p in chunk])

    def _free_id(self, base: str) -> str:
        taken = {r[0] for r in self.wh.query(
            "SELECT DISTINCT segment_id FROM segments WHERE segment_id = {b:String} "
            "OR startsWith(segment_id, {p:String})", {"b": base, "p": base + "-"}).rows}
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def _latest_row(self, segment_id: str) -> dict[str, Any] | None:
        rows = self.wh.query(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE segment_id = {{s:String}} "
            "ORDER BY version DESC LIMIT 1", {"s": segment_id}).dicts()
        return rows[0] if rows else None

    def _row(self, segment_id: str, version: int) -> dict[str, Any] | None:
        rows = self.wh.query(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE segment_id = {{s:String}} "
            "AND version = {v:UInt32}", {"s": segment_id, "v": version}).dicts()
        return rows[0] if rows else None


_SEGMENT_COLUMNS = ("segment_id, version, name, description, kind, definition, "
                    "toString(created_at) AS created_at, created_by, deleted")

MEMBERSHIP_SQL = """
SELECT person_id, version, toString(materialised_at) AS materialised_at
FROM segment_members
WHERE segment_id = {s:String}
  AND person_id IN (
      SELECT person_id FROM identity_map WHERE id = {id:String}
      UNION ALL
      SELECT {id:String}
  )
LIMIT 1
""".strip()


MEMBERSHIP_BY_PERSON_SQL = """
SELECT person_id, version, toString(materialised_at) AS materialised_at
FROM segment_members
WHERE segment_id = {s:String} AND person_id = {id:String}
LIMIT 1
""".strip()


# One period's KPIs for a set of people ({people} is a fixed SELECT of person ids chosen
# by the caller — the segment's members or all users; every value is a parameter).
PERIOD_KPIS_SQL = f"""WITH people AS ({{people}})
SELECT
    (SELECT count() FROM people) AS people,
    (SELECT uniqExact(person_id) FROM sessions WHERE person_id IN (SELECT person_id FROM people)
        AND started_at >= {{period_start:{_TIME}}} AND started_at < {{period_end:{_TIME}}})
        AS active,
    (SELECT uniqExact(person_id) FROM orders WHERE person_id IN (SELECT person_id FROM people)
        AND ordered_at >= {{period_start:{_TIME}}} AND ordered_at < {{period_end:{_TIME}}})
        AS buyers,
    (SELECT count() FROM orders WHERE person_id IN (SELECT person_id FROM people)
        AND ordered_at >= {{period_start:{_TIME}}} AND ordered_at < {{period_end:{_TIME}}})
        AS orders,
    (SELECT toFloat64(sum(revenue)) FROM orders WHERE person_id IN (SELECT person_id FROM people)
        AND ordered_at >= {{period_start:{_TIME}}} AND ordered_at < {{period_end:{_TIME}}})
        AS revenue"""


def members_sql(paged: bool) -> str:
    """The member list, with the person's user id when the person is identified."""
    page = "\nLIMIT {limit:UInt64} OFFSET {offset:UInt64}" if paged else ""
    return ("SELECT m.person_id AS person_id,\n"
            "       if(i.id_kind = 'user', m.person_id, '') AS user_id,\n"
            "       m.version AS segment_version,\n"
            "       toString(m.materialised_at) AS materialised_at\n"
            "FROM segment_members AS m\n"
            "LEFT JOIN (SELECT id, id_kind FROM identity_map WHERE id_kind = 'user') AS i\n"
            "       ON i.id = m.person_id\n"
            "WHERE m.segment_id = {s:String}\n"
            "ORDER BY m.person_id" + page)


def _segment(row: dict[str, Any]) -> Segment:
    definition = orjson.loads(row["definition"])
    return Segment(row["segment_id"], int(row["version"]), row["name"], row["description"],
                   row["kind"], definition, row["created_at"], row["created_by"])


def _partition(segment_id: str) -> str:
    # Segment ids are validated slugs ([a-z0-9_-]); ALTER … PARTITION takes no parameters.
    if not _ID.match(segment_id):
        raise SegmentError(f"bad segment id {segment_id!r}", "", "unknown_segment")
    return f"'{segment_id}'"


def sql_failure(exc: WarehouseError) -> SegmentError:
    """A failure of user SQL as a refusal (a 4xx), naming a limit when one stopped it."""
    limit = limit_error(exc)
    if limit is not None:
        return SegmentError(limit.message, "$.sql", limit.reason)
    return SegmentError(f"the SQL does not run read-only: {_first_line(exc)}", "$.sql",
                        "invalid_sql")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# -- one-call creation, for analyses ---------------------------------------------------------

def from_sql(warehouse: Warehouse, settings: Settings, name: str, sql: str,
             params: dict[str, Any] | None = None, *, description: str = "",
             origin: dict[str, Any] | None = None, freeze: bool = False,
             created_by: str = "analysis", reader: Warehouse | None = None,
             ) -> tuple[Segment, Materialisation]:
    """Save the people a query returns as a segment and materialise it now.

    `sql` returns a person_id column (or one column of ids), with `{name:Type}` params.
    A live segment re-runs the query at every materialisation; `freeze=True` keeps the
    people it returns now (e.g. "who dropped out at step 3 last week", for a campaign).
    `reader` is a read-only handle to check the SQL on (one is opened and closed if not).
    """
    store = Segments(warehouse, settings, reader)
    try:
        if freeze:
            ids = store._sql_people({"sql": sql, "params": params or {}})
            return from_people(warehouse, settings, name, ids, description=description,
                               origin={**(origin or {}), "sql": sql, "params": params or {}},
                               created_by=created_by, reader=store.reader)
        doc = {"name": name, "description": description, "sql": sql, "params": params or {}}
        if origin:
            doc["origin"] = origin
        segment = store.create(doc, created_by=created_by)
        return segment, store.materialise(segment.segment_id)
    finally:
        store.close()


def from_people(warehouse: Warehouse, settings: Settings, name: str, person_ids: Iterable[str],
                *, description: str = "", origin: dict[str, Any] | None = None,
                created_by: str = "analysis", reader: Warehouse | None = None,
                ) -> tuple[Segment, Materialisation]:
    """Save a list of person (or user, or anonymous) ids as a segment; materialise it now."""
    doc: dict[str, Any] = {"name": name, "description": description,
                           "people": [p for p in person_ids if p]}
    if origin:
        doc["origin"] = origin
    store = Segments(warehouse, settings, reader)
    try:
        segment = store.create(doc, created_by=created_by)
        return segment, store.materialise(segment.segment_id)
    finally:
        store.close()


create_segment_from_sql = from_sql
