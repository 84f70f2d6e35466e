"""The web console: its static files under /console and the data endpoints it reads.

The static files carry no data, so they are served without a token; every data call
below needs `Authorization: Bearer <admin token>` (the console asks for it on a login
screen) and answers JSON with typed errors, like every other admin endpoint.

  GET  /v1/plan                  the tracking plan: events, properties, sources
  GET  /v1/plan/coverage         ?days=30&source=   planned events/properties seen, failing …
  GET  /v1/campaigns             ?date_from&date_to&touch=first|last&sort&desc&trend_campaigns
  POST /v1/segments/preview      a segment definition → live member count (nothing saved)
  GET  /v1/people/search         ?q=&limit=20   people by person, user or anonymous id
  GET  /v1/meta                  events, breakdowns, date range, time zone, sources
  GET  /v1/meta/properties       ?event=   properties seen on an event (api/meta_values.py)
  GET  /v1/meta/values           ?event=&property=&q=&limit=   a property's top values
  GET  /v1/invalid-events        ?days=7&source=&event=&person=&limit=200   refusals from
                                 events_invalid, newest first, with the total
                                 (api/invalid_events.py)
The funnel/retention/paths/timeline, segment and debug endpoints the console also uses
live in their own modules (analyses_api, people_api, collector.app).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from funnelhouse.analyses.campaigns import CampaignQuery, campaign_performance
from funnelhouse.analyses.coverage import coverage
from funnelhouse.api import invalid_events, meta_values
from funnelhouse.api.endpoint import ErrorRule, Handler, admin_endpoint, failure, json_object
from funnelhouse.collector.plan import PAYLOAD_OF_EVENT, TrackingPlan
from funnelhouse.config import Settings
from funnelhouse.models.built import NotBuilt, existing_tables
from funnelhouse.people.search import MAX_LIMIT, search_people
from funnelhouse.people.segments import (
    NOT_FORGOTTEN,
    SEGMENT_TABLES,
    CompiledQuery,
    Segment,
    SegmentError,
    Segments,
    sql_failure,
    validate_definition,
)
from funnelhouse.warehouse.base import Warehouse, WarehouseError
from funnelhouse.warehouse.sql_guard import limited_reader

BUILD_COMMAND = "npm --prefix console ci && npm --prefix console run build"
NOT_BUILT_PAGE = f"""<!doctype html>
<meta charset="utf-8"><title>funnelhouse console not built</title>
<h1>The funnelhouse console is not built</h1>
<p>No <code>index.html</code> in <code>{{folder}}</code>. Build it from the repository with</p>
<pre>{html.escape(BUILD_COMMAND)}</pre>
<p>(<code>scripts/setup</code> does this), or point <code>FUNNELHOUSE_CONSOLE_DIR</code> at a
built console. The data API under <code>/v1/</code> works without it.</p>
"""
# The console's Content-Security-Policy: it holds an admin token in the browser and draws
# strings anyone with a write key can send, so no script runs but the bundle's own app.js
# (no inline script, no handler attributes, no eval) and nothing loads or connects elsewhere.
# Styles: app.css only; the style *attributes* Preact and ECharts set go through the CSSOM,
# which the policy allows, so no 'unsafe-inline' is needed for them either. Trusted Types
# is not required: ECharts clears its own nodes with innerHTML = "" and would break.
CONSOLE_CSP = "; ".join([
    "default-src 'none'", "script-src 'self'", "style-src 'self'",
    "img-src 'self' data:", "font-src 'self'", "connect-src 'self'",
    "manifest-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'"])
# Security headers for the console's pages (and its not-built page).
CONSOLE_HEADERS = {"Content-Security-Policy": CONSOLE_CSP, "X-Frame-Options": "DENY",
                   "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cross-Origin-Opener-Policy": "same-origin"}
# Columns of behavior_events that are ids, times or raw JSON: accepted by the funnel as
# breakdowns, but no useful one (one value per person/event), so the pickers skip them.
NOT_BREAKDOWNS = {"event_at", "event_date", "message_id", "person_id", "anonymous_id",
                  "user_id", "session_id", "sdk_session_id", "session_event_seq", "day_event_seq",
                  "properties", "traits", "order_id", "page_url"}
PREVIEW_SAMPLE = 10


# -- static files --------------------------------------------------------------------------

class ConsoleFiles(StaticFiles):
    """The built console: index.html for the app's own routes, every file revalidated
    (no-cache), a 503 page saying how to build it when the folder holds no index.html."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)
        self.folder = Path(directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        # Every answer under /console/ carries the security headers: files, the app's
        # routes, 304s, 404s and 405s alike (the last two are raised, not returned).
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in CONSOLE_HEADERS.items():
                    headers[name] = value
            await send(message)

        if not (self.folder / "index.html").is_file():
            page = NOT_BUILT_PAGE.replace("{folder}", html.escape(str(self.folder)))
            await HTMLResponse(page, status_code=503, headers={"Cache-Control": "no-cache"})(
                scope, receive, send_with_headers)
            return
        try:
            await super().__call__(scope, receive, send_with_headers)
        except HTTPException as exc:
            # Answered here, not by the app's handler, so the refusal carries the headers too.
            await PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)(
                scope, receive, send_with_headers)

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            # A client-side route (/console/funnels) has no file and no extension:
            # answer the app, which routes itself. Missing assets stay 404.
            if exc.status_code != 404 or "." in PurePosixPath(path).name:
                raise
            response = await super().get_response("index.html", scope)
        # The bundle's file names carry no content hash, so every file is revalidated
        # (ETag → 304): an upgrade never leaves a browser on an old app.js.
        response.headers["Cache-Control"] = "no-cache"
        return response


def console_routes(settings: Settings) -> list[BaseRoute]:
    async def to_slash(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=307)

    return [Route("/console", to_slash, methods=["GET", "HEAD"]),
            Mount("/console", app=ConsoleFiles(settings.console_dir), name="console")]


# -- the plan ------------------------------------------------------------------------------

def plan_document(plan: TrackingPlan, settings: Settings) -> dict[str, Any]:
    """Every planned event (current version) with its properties, and the sources."""
    events = []
    for name, version in plan.events().items():
        schema = plan.schema(name)
        required = set(schema.get("required") or [])
        properties = [{"name": prop, "type": _type_of(sub, schema),
                       "required": prop in required,
                       "description": sub.get("description", "") if isinstance(sub, dict)
                       else ""}
                      for prop, sub in plan.declared_properties(name).items()]
        events.append({"name": name, "version": version, "versions": plan.versions(name),
                       "title": schema.get("title", ""),
                       "description": schema.get("description", ""),
                       "payload": PAYLOAD_OF_EVENT.get(name, "properties"),
                       "properties": properties})
    return {"events": events, "aliases": plan.aliases(), "sources": sources_of(settings)}


def sources_of(settings: Settings) -> list[str]:
    return sorted({key.source for key in settings.write_keys})


def _type_of(sub: Any, root: dict[str, Any]) -> str:
    """A property's JSON type as one word ("string", "number|null", "object" …)."""
    if not isinstance(sub, dict):
        return "any"
    ref = sub.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _type_of(root.get("$defs", {}).get(ref[len("#/$defs/"):]), root)
    kind = sub.get("type")
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    if isinstance(kind, str):
        return kind
    branches = sub.get("anyOf") or sub.get("oneOf")
    if isinstance(branches, list):
        return "|".join(dict.fromkeys(_type_of(b, root) for b in branches))
    if "enum" in sub or "const" in sub:
        values = sub.get("enum") or [sub.get("const")]
        return "|".join(dict.fromkeys(type(v).__name__.replace("str", "string") for v in values))
    return "any"


# -- segment preview -----------------------------------------------------------------------

PREVIEW_COUNT_SQL = ("-- members the segment would have if materialised now\n"
                     "SELECT count() AS members\nFROM (\nQUERY\n)\n"
                     f"WHERE person_id != '' AND {NOT_FORGOTTEN}")
PREVIEW_SAMPLE_SQL = ("SELECT person_id\nFROM (\nQUERY\n)\n"
                      f"WHERE person_id != '' AND {NOT_FORGOTTEN}\n"
                      f"ORDER BY person_id\nLIMIT {PREVIEW_SAMPLE}")
# The ids of a `people` definition travel as one text parameter (array parameters are
# not usable on chdb), split back into rows in SQL.
_ID_SEPARATOR = "\x1f"
PEOPLE_PREVIEW_SQL = """-- the given ids, each resolved to its person through the identity map
SELECT DISTINCT if(m.person_id != '', m.person_id, p.id) AS person_id
FROM (SELECT arrayJoin(splitByChar('\\x1f', {ids:String})) AS id) AS p
LEFT JOIN identity_map AS m ON m.id = p.id"""


def preview_segment(reader: Warehouse, settings: Settings, doc: dict[str, Any]) -> dict[str, Any]:
    """The member count a definition would have now, by the SQL materialisation runs."""
    if isinstance(doc, dict) and not doc.get("name"):
        doc = {**doc, "name": "preview"}   # a name is for saving; a preview needs none
    definition = validate_definition(doc)
    # compiled() refuses unknown tables/columns and SQL that does not run read-only,
    # with the JSON path, as saving would.
    store = Segments(reader, settings, reader)
    if definition["kind"] == "people":
        if any(_ID_SEPARATOR in person for person in definition["people"]):
            raise SegmentError("an id holds a control character (\\x1f)", "$.people")
        if "identity_map" in existing_tables(reader):
            query = CompiledQuery(PEOPLE_PREVIEW_SQL,
                                  {"ids": _ID_SEPARATOR.join(definition["people"])})
        else:
            query = CompiledQuery(
                "SELECT DISTINCT arrayJoin(splitByChar('\\x1f', {ids:String})) AS person_id",
                {"ids": _ID_SEPARATOR.join(definition["people"])})
    else:
        query = store.compiled(Segment("preview", 0, definition["name"], "",
                                       definition["kind"], definition, "", ""))
    count_sql = PREVIEW_COUNT_SQL.replace("QUERY", query.sql)
    # A caller's SQL runs with the per-query time and memory limits, as materialising does.
    runner = (limited_reader(reader, settings, result=False) if definition["kind"] == "sql"
              else reader)
    try:
        members = int(runner.query(count_sql, query.params or None).scalar() or 0)
        sample = [row[0] for row in runner.query(PREVIEW_SAMPLE_SQL.replace("QUERY", query.sql),
                                                 query.params or None).rows]
    except WarehouseError as exc:
        if definition["kind"] != "sql":
            raise
        raise sql_failure(exc) from exc
    return {"members": members, "sample": sample, "kind": definition["kind"],
            "sql": count_sql, "params": query.params}


# -- meta for the pickers ------------------------------------------------------------------

def console_meta(reader: Warehouse, settings: Settings, plan: TrackingPlan) -> dict[str, Any]:
    """What the console's pickers offer: events with counts, breakdowns, dates, sources."""
    tables = existing_tables(reader)
    planned = plan.events()
    # A server quotes 64-bit counts in JSON ("0"), hence int() before truth.
    modelled = "behavior_events" in tables and int(
        reader.query("SELECT count() FROM (SELECT 1 FROM behavior_events LIMIT 1)").scalar()) > 0
    if modelled:
        table = "behavior_events"
        events_sql = ("SELECT event, count() AS n FROM behavior_events "
                      "GROUP BY event ORDER BY n DESC, event")
        range_sql = ("SELECT toString(min(event_date)), toString(max(event_date)), count() "
                     "FROM behavior_events")
    else:
        table = "events_raw"
        events_sql = ("SELECT event, count() AS n FROM events_raw "
                      "GROUP BY event ORDER BY n DESC, event")
        range_sql = ("SELECT toString(min(toDate(timestamp, {tz:String}))), "
                     "toString(max(toDate(timestamp, {tz:String}))), count() FROM events_raw")
    events = [{"name": name, "count": int(n), "planned": name in planned}
              for name, n in reader.query(events_sql).rows]
    low, high, count = reader.query(range_sql, {"tz": settings.reporting_tz}
                                    if table == "events_raw" else None).rows[0]
    seen_sources = [row[0] for row in reader.query(
        "SELECT DISTINCT source FROM events_raw ORDER BY source").rows]
    return {
        "events": events,
        "events_table": table,
        "planned_events": list(planned),
        "breakdowns": _breakdowns(reader, plan) if modelled else [],
        "pages": _top_pages(reader) if modelled else [],
        "segment_tables": _segment_tables(reader),
        "breakdown_prefixes": {"properties.": "a key of the event's properties JSON",
                               "segment:": "membership of a materialised segment (id)"},
        "date_range": {"min": low, "max": high} if int(count) else {"min": None, "max": None},
        "reporting_tz": settings.reporting_tz,
        "sources": sorted(set(sources_of(settings)) | set(seen_sources)),
    }


def _top_pages(reader: Warehouse, limit: int = 200) -> list[dict[str, Any]]:
    """The most viewed page paths and screen names: the Paths view's start-page choices."""
    rows = reader.query(
        "SELECT page_path, count() AS views FROM behavior_events "
        "WHERE event IN ('page_view', 'screen_view') AND page_path != '' "
        "GROUP BY page_path ORDER BY views DESC, page_path LIMIT {limit:UInt32}",
        {"limit": limit}).rows
    return [{"page": page, "views": int(views)} for page, views in rows]


def _segment_tables(reader: Warehouse) -> dict[str, list[dict[str, str]]]:
    """The tables a segment group may read (the order of SEGMENT_TABLES) with their columns,
    for the segment builder's pickers; a table not built yet has no columns."""
    columns: dict[str, list[dict[str, str]]] = {table: [] for table in SEGMENT_TABLES}
    for table, name, ch_type in reader.query(
            "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
            "ORDER BY table, position").rows:
        if table in columns:
            columns[table].append({"name": name, "type": ch_type})
    return columns


def _breakdowns(reader: Warehouse, plan: TrackingPlan) -> list[str]:
    """behavior_events' columns worth breaking down by, then `properties.<name>` for every
    scalar property the plan declares (what tagging sends, without scanning the data)."""
    columns = [name for name, _ in reader.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'behavior_events' ORDER BY position").rows if name not in NOT_BREAKDOWNS]
    planned: set[str] = set()
    for event in plan.events():
        if PAYLOAD_OF_EVENT.get(event, "properties") != "properties":
            continue
        schema = plan.schema(event)
        planned.update(name for name, sub in plan.declared_properties(event).items()
                       if _type_of(sub, schema) not in ("object", "array"))
    return columns + [f"properties.{name}" for name in sorted(planned)]


# -- HTTP ----------------------------------------------------------------------------------

def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdecimal() or not low <= int(text) <= high:
        raise ValueError(f"{name} is a number from {low} to {high}")
    return int(text)


def _segment_failure(exc: BaseException) -> tuple[int, dict[str, Any]]:
    assert isinstance(exc, SegmentError)
    return 400, exc.as_json()


def routes(settings: Settings, reader: Warehouse, plan: TrackingPlan) -> list[BaseRoute]:
    """The console's data endpoints over a read-only handle, and its static files."""
    errors: list[ErrorRule] = [(NotBuilt, failure(503, "not_built")),
              (SegmentError, _segment_failure),
              (WarehouseError, failure(400, "query_failed")),
              ((ValueError, TypeError), failure(400, "bad_spec"))]

    # The audit reads every event of the window: its own connection, so the quick
    # lookups (meta, search, preview) do not queue behind it.
    auditor = reader.readonly()

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return admin_endpoint(settings, handler, errors)

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    async def get_plan(request: Request) -> Any:
        return plan_document(plan, settings)

    async def get_coverage(request: Request) -> Any:
        days = _query_int(request, "days", 30, 1, 3660)
        return await run(coverage, auditor, plan, days=days,
                         source=request.query_params.get("source") or None)

    async def get_campaigns(request: Request) -> Any:
        query = CampaignQuery.from_params(dict(request.query_params))
        return await run(campaign_performance, reader, query, settings.reporting_tz)

    async def post_preview(request: Request) -> Any:
        return await run(preview_segment, reader, settings,
                         await json_object(request, required=True))

    async def get_people(request: Request) -> Any:
        limit = _query_int(request, "limit", 20, 1, MAX_LIMIT)
        return await run(search_people, reader, request.query_params.get("q"), limit)

    async def get_meta(request: Request) -> Any:
        return await run(console_meta, reader, settings, plan)

    return [
        Route("/v1/plan", endpoint(get_plan), methods=["GET"]),
        Route("/v1/plan/coverage", endpoint(get_coverage), methods=["GET"]),
        Route("/v1/campaigns", endpoint(get_campaigns), methods=["GET"]),
        # Before people_api's /v1/segments/{segment_id} routes, which would take "preview".
        Route("/v1/segments/preview", endpoint(post_preview), methods=["POST"]),
        Route("/v1/people/search", endpoint(get_people), methods=["GET"]),
        Route("/v1/meta", endpoint(get_meta), methods=["GET"]),
        *meta_values.routes(settings, reader),
        *invalid_events.routes(settings, reader),
        *console_routes(settings),
    ]
