"""The one gate for user SQL: one read-only SELECT, checked by the engine's parser, with limits."""

# Every place a caller's SQL enters (POST /v1/sql, `funnelhouse sql`, SQL segments,
# segments from analyses) goes through guard(). The text is handed to the engine only
# as a query *parameter* of `formatQuery` / `parseQueryToJSON`, which parse exactly one
# statement with ClickHouse's own parser (several statements are a syntax error there).
# What runs afterwards is the engine's canonical re-print of that one statement (no
# comments, no trailing tricks), and the rules below are checked on the engine's AST of
# that very text, never on the user's characters.
#
# Why a guard at all when the handle is `readonly=1`: in chdb the process itself runs
# `INTO OUTFILE` (a server writes such files on the client side) and readonly does not
# stop it, nor `KILL QUERY`, nor the scalar `file()` function (reads any file).

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse, WarehouseError

MAX_SQL_CHARS = 200_000

# System tables that describe the schema only. Everything else in `system` is refused:
# mutations and parts name forgotten ids, query_log/processes show other people's
# queries, numbers/zeros are endless, settings and the rest are the server's business.
SYSTEM_TABLES = frozenset({"one", "tables", "columns", "databases", "functions",
                           "data_type_families", "table_functions", "formats", "time_zones"})
INFORMATION_SCHEMA_TABLES = frozenset({"tables", "columns", "schemata"})
# funnelhouse's own bookkeeping that user SQL may not read: the hashes of forgotten ids
# (a reader could confirm a guess of who asked to be forgotten) and the forget log.
INTERNAL_TABLES = frozenset({"forgotten_ids", "forget_log"})
_RESTRICTED_DATABASES = {"system": SYSTEM_TABLES,
                         "information_schema": INFORMATION_SCHEMA_TABLES}

# Scalar functions that reach outside the database: files, the server's configuration,
# dictionaries/Join tables by name, and the AI functions (they call a remote model).
DENIED_FUNCTIONS = frozenset({
    "file", "getserversetting", "getmacro", "globalvariable", "getclienthttpheader",
    "currentrequesturl", "catboostevaluate", "naivebayesclassifier", "joinget",
    "joingetornull", "dicthas", "dictisin",
})
_DENIED_PREFIXES = ("dictget", "ai", "__")

# Node types that may appear; any other `…Query` type is a statement of another kind.
_SELECT_TYPES = frozenset({"SelectWithUnionQuery", "SelectQuery", "SelectIntersectExceptQuery",
                           "TablesInSelectQuery", "TablesInSelectQueryElement"})
_STATEMENTS = {"KillQueryQuery": "KILL", "SystemQuery": "SYSTEM", "SetQuery": "SET",
               "InsertQuery": "INSERT", "AlterQuery": "ALTER", "CreateQuery": "CREATE",
               "DropQuery": "DROP", "OptimizeQuery": "OPTIMIZE", "ExplainQuery": "EXPLAIN",
               "UseQuery": "USE", "DeleteQuery": "DELETE", "UpdateQuery": "UPDATE",
               "RenameQuery": "RENAME", "GrantQuery": "GRANT", "BackupQuery": "BACKUP"}

# ClickHouse error names that mean "a limit of this handle stopped the query".
_LIMIT_ERRORS = {
    "TIMEOUT_EXCEEDED": "it ran longer than the time limit (sql_max_seconds)",
    "TOO_MANY_ROWS_OR_BYTES": "its result is larger than the limit "
                              "(sql_max_result_rows / sql_max_result_bytes)",
    "TOO_MANY_ROWS": "it reads or returns more rows than allowed (sql_max_result_rows)",
    "TOO_MANY_BYTES": "it reads or returns more bytes than allowed (sql_max_result_bytes)",
    "MEMORY_LIMIT_EXCEEDED": "it needs more memory than allowed (sql_max_memory_bytes)",
    "QUERY_WAS_CANCELLED": "it was cancelled (the client went away)",
}


class SqlRefused(ValueError):
    """User SQL the guard will not run; `reason` is the machine-readable refusal."""

    def __init__(self, message: str, reason: str = "sql_refused") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def as_json(self) -> dict[str, Any]:
        return {"error": self.message, "reason": self.reason}


class QueryLimitExceeded(SqlRefused):
    """The query hit a per-query limit (time, rows, bytes, memory) or was cancelled."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "query_limit")


@dataclass(frozen=True)
class GuardedSql:
    """One checked SELECT in the engine's canonical form, and its parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def query_limits(settings: Settings, *, result: bool = True) -> dict[str, Any]:
    """The per-query settings of a user-SQL handle (set before `readonly`, so fixed).

    `result=False` keeps the time and memory limits but not the result size, for
    segment materialisation, whose result is every member.
    """
    limits: dict[str, Any] = {
        "max_execution_time": max(1, int(round(settings.sql_max_seconds))),
        "timeout_overflow_mode": "throw",
        "max_memory_usage": int(settings.sql_max_memory_bytes),
    }
    if result:
        limits.update(max_result_rows=int(settings.sql_max_result_rows),
                      max_result_bytes=int(settings.sql_max_result_bytes),
                      result_overflow_mode="throw")
    return limits


def guard(reader: Warehouse, text: Any, params: Any = None) -> GuardedSql:
    """The caller's text as one checked read-only SELECT, or SqlRefused saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise SqlRefused("send one SELECT statement as text", "bad_request")
    if len(text) > MAX_SQL_CHARS:
        raise SqlRefused(f"the SQL is longer than {MAX_SQL_CHARS} characters", "bad_request")
    bound = _params(params)
    try:
        # The text travels as a parameter value: nothing of it is SQL to this statement.
        canonical, tree = reader.query(
            "SELECT formatQuery({q:String}) AS c, parseQueryToJSON(c)", {"q": text}).rows[0]
    except WarehouseError as exc:
        first = _first_line(exc)
        if "Multi-statements" in first:
            raise SqlRefused("exactly one statement is allowed") from exc
        raise SqlRefused(f"not a valid SQL statement: {first}", "invalid_sql") from exc
    check_ast(orjson.loads(tree))
    return GuardedSql(canonical, bound)


def check_ast(root: dict[str, Any]) -> None:
    """Refuse anything in the engine's AST that is not a plain read (see module notes)."""
    kind = root.get("type", "")
    if kind != "SelectWithUnionQuery":
        raise SqlRefused(f"only SELECT may run here, not {_STATEMENTS.get(kind, kind)}")
    for node in _nodes(root):
        kind = node.get("type", "")
        if "out_file" in node or node.get("is_into_outfile_with_stdout") \
                or node.get("is_outfile_append") or node.get("is_outfile_truncate"):
            raise SqlRefused("INTO OUTFILE is not allowed: results come back in the answer")
        if "format_ast" in node:
            raise SqlRefused("a FORMAT clause is not allowed: ask for json, csv or tsv "
                             "with the request's format field")
        if "settings" in node or kind == "SetQuery":
            raise SqlRefused("a SETTINGS clause is not allowed: limits and read-only mode "
                             "are fixed for user SQL")
        if kind.endswith("Query") and kind not in _SELECT_TYPES:
            raise SqlRefused(f"{_STATEMENTS.get(kind, kind)} is not allowed inside a SELECT")
        table_function = node.get("table_function")
        if isinstance(table_function, dict):
            raise SqlRefused(f"table function {table_function.get('name')}() is not allowed; "
                             "read tables by name")
        if kind == "TableIdentifier" or (kind == "Identifier" and node.get("name_parts")):
            _check_table(node)
        if kind == "Function":
            _check_function(str(node.get("name", "")))


def _check_table(node: dict[str, Any]) -> None:
    # `name` is the dotted full name; a backquoted `system.x` has no name_parts but the
    # same dotted name, and is judged the same (refusing more, never less).
    name = str(node.get("name", ""))
    parts = node.get("name_parts") or name.split(".")
    if str(parts[-1]).lower() in INTERNAL_TABLES or name.split(".")[-1].lower() in INTERNAL_TABLES:
        raise SqlRefused(f"{name} is funnelhouse's own bookkeeping and not readable")
    if len(parts) < 2 and "." not in name:
        return
    database, _, rest = name.partition(".")
    allowed = _RESTRICTED_DATABASES.get(database.lower())
    if allowed is None:
        return
    table = rest.split(".")[0]
    if table.lower() not in allowed:
        raise SqlRefused(f"{database}.{table} is not readable; of {database} only "
                         f"{', '.join(sorted(allowed))}")


def _check_function(name: str) -> None:
    low = name.lower()
    if low in DENIED_FUNCTIONS or low.startswith(_DENIED_PREFIXES):
        raise SqlRefused(f"function {name}() is not allowed in user SQL")


def _nodes(root: Any) -> Iterator[dict[str, Any]]:
    stack = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool))
            for k, v in params.items()):
        raise SqlRefused("params is an object of names to strings, numbers or booleans",
                         "bad_request")
    return {k: int(v) if isinstance(v, bool) else v for k, v in params.items()}


def limit_error(exc: BaseException) -> QueryLimitExceeded | None:
    """The engine's error as a QueryLimitExceeded when a per-query limit stopped it."""
    text = str(exc)
    for name, what in _LIMIT_ERRORS.items():
        if f"({name})" in text:
            return QueryLimitExceeded(f"the query was stopped: {what}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


# -- running user SQL ---------------------------------------------------------------------

_LIMITED: weakref.WeakKeyDictionary[Any, dict[bool, Warehouse]] = weakref.WeakKeyDictionary()
_LIMITED_LOCK = threading.Lock()


def limited_reader(reader: Warehouse, settings: Settings, *, result: bool = True) -> Warehouse:
    """A read-only handle with the per-query limits, one per reader (kept while it lives)."""
    with _LIMITED_LOCK:
        handles = _LIMITED.setdefault(reader, {})
        if result not in handles:
            handles[result] = reader.readonly(limits=query_limits(settings, result=result))
        return handles[result]


def release_limited(reader: Warehouse) -> None:
    """Close the limited handles made for `reader` (when the reader itself is closed)."""
    with _LIMITED_LOCK:
        handles = _LIMITED.pop(reader, {})
    for handle in handles.values():
        handle.close()


_MARK = "funnelhouse-sql:"


class SqlRunner:
    """Runs guarded SQL on limited read-only handles, and cancels it on request.

    Each query is tagged with a comment naming a fresh id, so the control handle can
    `KILL QUERY` it from another connection when the HTTP client goes away. A small
    pool of handles keeps one slow query from holding up the next analyst's.
    """

    def __init__(self, reader: Warehouse, settings: Settings, size: int = 2) -> None:
        self.control = reader
        self.settings = settings
        self._size = size
        self._idle: list[Warehouse] = []
        self._made = 0
        self._cond = threading.Condition()

    def guard(self, text: Any, params: Any = None) -> GuardedSql:
        return guard(self.control, text, params)

    @contextmanager
    def _handle(self) -> Iterator[Warehouse]:
        with self._cond:
            while not self._idle and self._made >= self._size:
                self._cond.wait()
            if self._idle:
                handle = self._idle.pop()
            else:
                self._made += 1
                handle = None
        if handle is None:
            try:
                handle = self.control.readonly(limits=query_limits(self.settings))
            except BaseException:
                with self._cond:
                    self._made -= 1
                    self._cond.notify()
                raise
        try:
            yield handle
        finally:
            with self._cond:
                self._idle.append(handle)
                self._cond.notify()

    def run(self, query: GuardedSql, fmt: str, tag: str | None = None) -> bytes:
        """The result in a ClickHouse output format; QueryLimitExceeded when a limit hit."""
        tag = tag or new_tag()
        with self._handle() as handle:
            try:
                return handle.query_raw(f"/* {_MARK}{tag} */\n{query.sql}", fmt,
                                        query.params or None)
            except WarehouseError as exc:
                limit = limit_error(exc)
                if limit is not None:
                    raise limit from exc
                raise

    def cancel(self, tag: str) -> None:
        """Stop the query tagged `tag`, if it still runs (from the control connection)."""
        if not tag.isalnum():   # our own hex ids only: it is pasted into the KILL below
            raise ValueError(f"bad query tag {tag!r}")
        self.control.execute(
            f"KILL QUERY WHERE startsWith(query, '/* {_MARK}{tag} */') ASYNC")

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.close()


def new_tag() -> str:
    return uuid.uuid4().hex
