"""Saved insights and dashboards of the console, kept in the warehouse (migration 0017).

An insight is a console analysis view (its route path, e.g. ``/funnels``) with the URL
query that holds the view's state; a dashboard is a name and an ordered list of
insight ids. Both are versioned like segments: a change or a delete is a new row with
the next version, so nothing is ever updated in place. Names and queries are kept as
text: they are bound as query parameters here and never become SQL or HTML anywhere.
"""

from __future__ import annotations

import secrets
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from funnelhouse.warehouse.base import Warehouse

# The console's analysis views: a saved path must be one of them.
ANALYSIS_VIEWS = ("/trends", "/funnels", "/retention", "/stickiness", "/paths", "/flows",
                  "/pages", "/correlation", "/campaigns")
MAX_NAME = 200
MAX_QUERY = 8000
MAX_CARDS = 50
_ID_LIMIT = 2**53   # ids travel as JSON numbers: keep them exact in a browser


class InsightError(ValueError):
    """A request the store refuses; `reason` is machine-readable, `field` the JSON key."""

    def __init__(self, message: str, reason: str = "invalid_insight", field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "reason": self.reason}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(frozen=True)
class InsightFields:
    name: str
    path: str
    query: str


# -- validation ----------------------------------------------------------------------------

def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def valid_name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InsightError(f"{field} is required: a non-empty string", field=field)
    name = value.strip()
    if len(name) > MAX_NAME:
        raise InsightError(f"{field} is at most {MAX_NAME} characters", field=field)
    if _has_control(name):
        raise InsightError(f"{field} may not contain control characters", field=field)
    return name


def valid_path(value: Any) -> str:
    if value not in ANALYSIS_VIEWS:
        raise InsightError(f"path is one of {', '.join(ANALYSIS_VIEWS)}", field="path")
    return str(value)


def valid_query(value: Any) -> str:
    """The view's URL query as plain text (a leading '?' is dropped)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InsightError("query is a string (the view's URL query)", field="query")
    query = value[1:] if value.startswith("?") else value
    if len(query) > MAX_QUERY:
        raise InsightError(f"query is at most {MAX_QUERY} characters", field="query")
    if "#" in query or _has_control(query) or any(ch.isspace() for ch in query):
        raise InsightError("query is a URL query: no '#', spaces or control characters",
                           field="query")
    return query


def valid_id(value: Any, what: str = "insight") -> int:
    """An id from a URL or a JSON body: a whole number from 1."""
    if isinstance(value, bool):
        raise InsightError(f"{what} ids are whole numbers", field=f"{what}_ids")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) < 17:
        number = int(value)
    else:
        raise InsightError(f"{what} ids are whole numbers", f"unknown_{what}")
    if not 1 <= number < _ID_LIMIT:
        raise InsightError(f"no {what} {number}", f"unknown_{what}")
    return number


def _only(doc: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InsightError("the body must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InsightError(f"unknown field(s) {', '.join(unknown)}: give only "
                           f"{', '.join(sorted(allowed))}", field=unknown[0])
    return doc


# -- the store -----------------------------------------------------------------------------

_INSIGHT_COLUMNS = ("insight_id AS id, version, name, path, query, "
                    "toString(created_at) AS created_at, toString(updated_at) AS updated_at, "
                    "deleted")
_DASHBOARD_COLUMNS = ("dashboard_id AS id, version, name, insight_ids, "
                      "toString(created_at) AS created_at, toString(updated_at) AS updated_at, "
                      "deleted")


def _times(created_at: str | None) -> dict[str, str]:
    """Created (kept from version 1) and updated times: one clock reading for a new row."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return {"c": created_at or now, "u": now}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("version", "deleted")}
    out["id"] = int(out["id"])
    if "insight_ids" in out:
        out["insight_ids"] = [int(i) for i in out["insight_ids"]]
    return out


class Boards:
    """Insights and dashboards over one warehouse handle; writes take turns on a lock."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse
        self._lock = threading.Lock()

    # -- insights -------------------------------------------------------------------------
    def list_insights(self) -> list[dict[str, Any]]:
        return [_public(r) for r in self._current("insights", "insight_id", _INSIGHT_COLUMNS)]

    def get_insight(self, insight_id: Any) -> dict[str, Any]:
        row = self._latest("insights", "insight_id", _INSIGHT_COLUMNS, valid_id(insight_id))
        if row is None or row["deleted"]:
            raise InsightError(f"no insight {insight_id}", "unknown_insight")
        return _public(row)

    def create_insight(self, doc: Any) -> dict[str, Any]:
        body = _only(doc, {"name", "path", "query"})
        fields = InsightFields(valid_name(body.get("name")), valid_path(body.get("path")),
                               valid_query(body.get("query")))
        with self._lock:
            new_id = self._next_id("insights", "insight_id")
            self._write_insight(new_id, 1, fields, created_at=None)
        return self.get_insight(new_id)

    def update_insight(self, insight_id: Any, doc: Any) -> dict[str, Any]:
        body = _only(doc, {"name", "path", "query"})
        number = valid_id(insight_id)
        with self._lock:
            row = self._live("insights", "insight_id", _INSIGHT_COLUMNS, number, "insight")
            fields = InsightFields(
                valid_name(body["name"]) if "name" in body else row["name"],
                valid_path(body["path"]) if "path" in body else row["path"],
                valid_query(body["query"]) if "query" in body else row["query"])
            self._write_insight(number, int(row["version"]) + 1, fields,
                                created_at=row["created_at"])
        return self.get_insight(number)

    def delete_insight(self, insight_id: Any) -> dict[str, Any]:
        """Deletes the insight and takes it off every dashboard that showed it."""
        number = valid_id(insight_id)
        with self._lock:
            row = self._live("insights", "insight_id", _INSIGHT_COLUMNS, number, "insight")
            self.wh.execute(
                "INSERT INTO insights (insight_id, version, name, path, query, created_at, "
                "updated_at, deleted) SELECT insight_id, version + 1, name, path, query, "
                "created_at, now64(3), 1 FROM insights "
                "WHERE insight_id = {i:UInt64} AND version = {v:UInt32}",
                {"i": number, "v": int(row["version"])})
            changed = []
            for board in self._current("dashboards", "dashboard_id", _DASHBOARD_COLUMNS):
                ids = [int(i) for i in board["insight_ids"]]
                if number in ids:
                    self._write_dashboard(int(board["id"]), int(board["version"]) + 1,
                                          board["name"], [i for i in ids if i != number],
                                          created_at=board["created_at"])
                    changed.append(int(board["id"]))
        return {"deleted": number, "dashboards_changed": changed}

    # -- dashboards -----------------------------------------------------------------------
    def list_dashboards(self) -> list[dict[str, Any]]:
        return [_public(r) for r in
                self._current("dashboards", "dashboard_id", _DASHBOARD_COLUMNS)]

    def get_dashboard(self, dashboard_id: Any) -> dict[str, Any]:
        """The dashboard with its insights in card order."""
        row = self._latest("dashboards", "dashboard_id", _DASHBOARD_COLUMNS,
                           valid_id(dashboard_id, "dashboard"))
        if row is None or row["deleted"]:
            raise InsightError(f"no dashboard {dashboard_id}", "unknown_dashboard")
        board = _public(row)
        by_id = {i["id"]: i for i in self.list_insights()}
        board["insights"] = [by_id[i] for i in board["insight_ids"] if i in by_id]
        return board

    def create_dashboard(self, doc: Any) -> dict[str, Any]:
        body = _only(doc, {"name", "insight_ids"})
        name = valid_name(body.get("name"))
        with self._lock:
            ids = self._valid_cards(body.get("insight_ids", []))
            new_id = self._next_id("dashboards", "dashboard_id")
            self._write_dashboard(new_id, 1, name, ids, created_at=None)
        return self.get_dashboard(new_id)

    def update_dashboard(self, dashboard_id: Any, doc: Any) -> dict[str, Any]:
        body = _only(doc, {"name", "insight_ids"})
        number = valid_id(dashboard_id, "dashboard")
        with self._lock:
            row = self._live("dashboards", "dashboard_id", _DASHBOARD_COLUMNS, number,
                             "dashboard")
            name = valid_name(body["name"]) if "name" in body else row["name"]
            ids = (self._valid_cards(body["insight_ids"]) if "insight_ids" in body
                   else [int(i) for i in row["insight_ids"]])
            self._write_dashboard(number, int(row["version"]) + 1, name, ids,
                                  created_at=row["created_at"])
        return self.get_dashboard(number)

    def delete_dashboard(self, dashboard_id: Any) -> dict[str, Any]:
        number = valid_id(dashboard_id, "dashboard")
        with self._lock:
            row = self._live("dashboards", "dashboard_id", _DASHBOARD_COLUMNS, number,
                             "dashboard")
            self._write_dashboard(number, int(row["version"]) + 1, row["name"],
                                  [int(i) for i in row["insight_ids"]],
                                  created_at=row["created_at"], deleted=True)
        return {"deleted": number}

    # -- helpers --------------------------------------------------------------------------
    def _valid_cards(self, value: Any) -> list[int]:
        if not isinstance(value, list):
            raise InsightError("insight_ids is a list of insight ids", field="insight_ids")
        if len(value) > MAX_CARDS:
            raise InsightError(f"a dashboard shows at most {MAX_CARDS} insights",
                               field="insight_ids")
        ids: list[int] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise InsightError("insight_ids is a list of whole numbers", field="insight_ids")
            ids.append(item)
        if len(set(ids)) != len(ids):
            raise InsightError("an insight appears once on a dashboard", field="insight_ids")
        live = {i["id"] for i in self.list_insights()}
        missing = [i for i in ids if i not in live]
        if missing:
            raise InsightError(f"no insight {', '.join(map(str, missing))}", "unknown_insight",
                               "insight_ids")
        return ids

    def _current(self, table: str, key: str, columns: str) -> list[dict[str, Any]]:
        # table, key and columns are this module's constants, never user text.
        return self.wh.query(
            f"SELECT {columns} FROM {table} WHERE ({key}, version) IN "
            f"(SELECT {key}, max(version) FROM {table} GROUP BY {key}) AND deleted = 0 "
            f"ORDER BY created_at, {key}").dicts()     # in the order they were saved

    def _latest(self, table: str, key: str, columns: str, number: int
                ) -> dict[str, Any] | None:
        rows = self.wh.query(
            f"SELECT {columns} FROM {table} WHERE {key} = {{i:UInt64}} "
            "ORDER BY version DESC LIMIT 1", {"i": number}).dicts()
        return rows[0] if rows else None

    def _live(self, table: str, key: str, columns: str, number: int, what: str
              ) -> dict[str, Any]:
        row = self._latest(table, key, columns, number)
        if row is None or row["deleted"]:
            raise InsightError(f"no {what} {number}", f"unknown_{what}")
        return row

    def _next_id(self, table: str, key: str) -> int:
        """A random unused id below 2**53, not "the highest + 1": two `serve` replicas on one
        warehouse saving at the same moment would both take the same next number, and one
        insight would silently become a version of the other. Ids already used, deleted
        ones included, are drawn again: an old link must not open something else."""
        while True:
            candidate = secrets.randbelow(_ID_LIMIT - 1) + 1
            if not self.wh.query(f"SELECT count() FROM {table} WHERE {key} = {{i:UInt64}}",
                                 {"i": candidate}).scalar():
                return candidate

    def _write_insight(self, number: int, version: int, fields: InsightFields,
                       created_at: str | None) -> None:
        self.wh.execute(
            "INSERT INTO insights (insight_id, version, name, path, query, created_at, "
            "updated_at, deleted) VALUES ({i:UInt64}, {v:UInt32}, {n:String}, {p:String}, "
            "{q:String}, toDateTime64({c:String}, 3, 'UTC'), toDateTime64({u:String}, 3, 'UTC'), "
            "0)",
            {"i": number, "v": version, "n": fields.name, "p": fields.path, "q": fields.query,
             **_times(created_at)})

    def _write_dashboard(self, number: int, version: int, name: str, ids: list[int],
                         created_at: str | None, deleted: bool = False) -> None:
        self.wh.execute(
            "INSERT INTO dashboards (dashboard_id, version, name, insight_ids, created_at, "
            "updated_at, deleted) VALUES ({i:UInt64}, {v:UInt32}, {n:String}, "
            "{ids:Array(UInt64)}, toDateTime64({c:String}, 3, 'UTC'), "
            "toDateTime64({u:String}, 3, 'UTC'), {d:UInt8})",
            # An array parameter is bound as its text form on both backends.
            {"i": number, "v": version, "n": name, "ids": "[" + ",".join(map(str, ids)) + "]",
             "d": int(deleted), **_times(created_at)})
