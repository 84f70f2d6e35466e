"""HTTP API for segments, CRM signals, exports and forget (admin token), and the service
both the API and the CLI call, so `funnelhouse segment …` answers the same whether it
goes through a running `up` or opens the data folder itself.

Routes (all need `Authorization: Bearer <admin token>`):
  GET    /v1/segments                          list, with size and last materialisation
  POST   /v1/segments                          create from a definition (materialised now
                                               unless "materialise": false)
  POST   /v1/segments/from-sql                 save the people a query returns
  POST   /v1/segments/from-people              save a list of ids
  POST   /v1/segments/materialise              every segment
  GET    /v1/segments/{id}                     definition, versions, SQL (?version=N)
  PUT    /v1/segments/{id}                     new version
  DELETE /v1/segments/{id}
  POST   /v1/segments/{id}/materialise
  GET    /v1/segments/{id}/members             ?format=csv (full export) | json &limit&offset
  GET    /v1/segments/{id}/members/{any id}    membership by person, user or anonymous id
  GET    /v1/segments/{id}/history             size and KPIs over time
  GET    /v1/signals/{name}                    co-bought | co-viewed | repurchase | due | next
  POST   /v1/exports                           {"date", "tables", "formats", "segments", "out"}
  POST   /v1/forget                            {"user_id", "reason"}
  GET    /v1/forget                            the forget log
Every answer that ran SQL carries it ("sql", "params"), for `--show-sql`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.api.endpoint import admin_endpoint, failure, json_object
from funnelhouse.collector.params import query_int
from funnelhouse.config import Settings
from funnelhouse.jobs.exports import PathNotAllowed, confined_folder, default_day, export_day
from funnelhouse.people.forget import ForgetHooks, forget, forget_log
from funnelhouse.people.segments import (
    MEMBERSHIP_SQL,
    SegmentError,
    Segments,
    from_people,
    from_sql,
)
from funnelhouse.people.signals import SIGNALS, run_signal
from funnelhouse.warehouse.base import Warehouse

# Signal options that are numbers (query strings and CLI flags arrive as text).
NUMERIC_OPTIONS = {"days", "min_orders", "per_product", "min_sessions", "min_repeat_buyers",
                   "horizon_days", "overdue_days", "lookback_days", "per_person", "limit"}
TEXT_OPTIONS = {"person", "product_id", "level"}


def own_handle(warehouse: Warehouse) -> Warehouse:
    """A writer connection of our own, so long jobs do not queue behind the loader."""
    path = getattr(warehouse, "path", None)
    if warehouse.backend == "chdb" and path is not None:
        from funnelhouse.warehouse.chdb import ChdbWarehouse

        return ChdbWarehouse(path)
    return warehouse


class People:
    """Segments, signals, exports and forget over one warehouse: what the API and CLI call."""

    def __init__(self, settings: Settings, warehouse: Warehouse,
                 reader: Warehouse | None = None, hooks: ForgetHooks | None = None) -> None:
        self.settings = settings
        # Forget's job lock and loader gate (from `up`); alone, a lock of its own.
        self.hooks = hooks or ForgetHooks()
        self.wh = warehouse
        self.reader = reader or warehouse.readonly()
        self.segments = Segments(warehouse, settings, self.reader)
        self._jobs = threading.Lock()     # exports and forgets: one at a time

    # -- segments --------------------------------------------------------------------------
    def segment_list(self) -> dict[str, Any]:
        return {"segments": self.segments.list()}

    def segment_create(self, doc: dict[str, Any], *, materialise: bool = True,
                       created_by: str = "") -> dict[str, Any]:
        segment = self.segments.create(doc, segment_id=doc.get("segment_id"),
                                       created_by=created_by)
        return self._created(segment, materialise)

    def segment_update(self, segment_id: str, doc: dict[str, Any], *,
                       materialise: bool = True) -> dict[str, Any]:
        return self._created(self.segments.update(segment_id, doc), materialise)

    def _created(self, segment: Any, materialise: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"segment": segment.as_json()}
        if materialise:
            done = self.segments.materialise(segment.segment_id)
            out["materialisation"] = done.as_json()
            out.update(done.sql.as_json())
        else:
            out.update(self.segments.compiled(segment).as_json())
        return out

    def segment_show(self, segment_id: str, version: int | None = None) -> dict[str, Any]:
        segment = self.segments.get(segment_id, version)
        history = self.segments.history(segment_id)
        return {"segment": segment.as_json(), "versions": self.segments.versions(segment_id),
                "last": history[-1] if history else None,
                **self.segments.compiled(segment).as_json()}

    def segment_delete(self, segment_id: str) -> dict[str, Any]:
        self.segments.delete(segment_id)
        return {"deleted": segment_id}

    def segment_materialise(self, segment_id: str | None = None) -> dict[str, Any]:
        if segment_id:
            done = self.segments.materialise(segment_id)
            return {"materialisations": [done.as_json()], **done.sql.as_json()}
        return {"materialisations": [d.as_json() for d in self.segments.materialise_all()]}

    def segment_members(self, segment_id: str, *, limit: int | None = None,
                        offset: int = 0) -> dict[str, Any]:
        from funnelhouse.people.segments import members_sql

        return {"members": self.segments.members(segment_id, limit=limit, offset=offset),
                "sql": members_sql(limit is not None), "params": {"s": segment_id}}

    def segment_members_csv(self, segment_id: str) -> bytes:
        return self.segments.members_raw(segment_id, "CSVWithNames")

    def segment_check(self, segment_id: str, any_id: str) -> dict[str, Any]:
        return {**self.segments.membership(segment_id, any_id), "sql": MEMBERSHIP_SQL,
                "params": {"s": segment_id, "id": any_id}}

    def segment_history(self, segment_id: str) -> dict[str, Any]:
        return {"history": self.segments.history(segment_id)}

    def segment_compare(self, segment_id: str, *, days: int = 30,
                        as_of: datetime | None = None) -> dict[str, Any]:
        return self.segments.compare(segment_id, days=days, as_of=as_of)

    def segment_from_sql(self, body: dict[str, Any]) -> dict[str, Any]:
        segment, done = from_sql(self.wh, self.settings, _text(body, "name"), _text(body, "sql"),
                                 body.get("params") or None,
                                 description=str(body.get("description") or ""),
                                 origin=body.get("origin"), freeze=bool(body.get("freeze")),
                                 created_by=str(body.get("created_by") or "api"),
                                 reader=self.reader)
        return {"segment": segment.as_json(), "materialisation": done.as_json(),
                **done.sql.as_json()}

    def segment_from_people(self, body: dict[str, Any]) -> dict[str, Any]:
        people = body.get("people")
        if not isinstance(people, list):
            raise SegmentError("people is a list of ids", "$.people")
        segment, done = from_people(self.wh, self.settings, _text(body, "name"),
                                    [str(p) for p in people],
                                    description=str(body.get("description") or ""),
                                    origin=body.get("origin"),
                                    created_by=str(body.get("created_by") or "api"),
                                    reader=self.reader)
        return {"segment": segment.as_json(), "materialisation": done.as_json()}

    # -- signals, exports, forget -----------------------------------------------------------
    def signal(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        as_of = options.pop("as_of", None)
        day = (date.fromisoformat(as_of) if as_of else
               datetime.now(UTC).astimezone(ZoneInfo(self.settings.reporting_tz)).date())
        query, result = run_signal(self.reader, name, as_of=day, **clean_options(options))
        return {"signal": name, "as_of": day.isoformat(), "rows": result.dicts(),
                **query.as_json()}

    def export(self, body: dict[str, Any], *, out_anywhere: bool = False) -> dict[str, Any]:
        """`out` is a sub-folder of the export root; any folder only for the operator's
        own CLI working on the data folder itself (`out_anywhere`)."""
        day = (date.fromisoformat(body["date"]) if body.get("date")
               else default_day(self.settings.reporting_tz))
        root = self.settings.export_dir
        confine: Path | None = root
        if out_anywhere:
            out, confine = (Path(body["out"]) if body.get("out") else root), None
        else:
            out = confined_folder(root, body.get("out"))
        with self._jobs:
            result = export_day(self.reader, out, day, tables=body.get("tables") or None,
                                formats=body.get("formats") or self.settings.export_formats,
                                segments=body.get("segments"), tz=self.settings.reporting_tz,
                                root=confine)
        return result.as_json()

    def forget(self, user_id: str, *, requested_by: str = "", reason: str = "") -> dict[str, Any]:
        return forget(self.wh, user_id, requested_by=requested_by, reason=reason,
                      hooks=self.hooks).as_json()

    def forget_log(self) -> dict[str, Any]:
        return {"log": forget_log(self.reader)}


def clean_options(options: dict[str, Any]) -> dict[str, Any]:
    """Signal options from text to their types; unknown ones are refused."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or value == "":
            continue
        if key in NUMERIC_OPTIONS:
            # Whole numbers of days/counts: no signs, no 5,000-digit values, no floats.
            text = str(value).strip()
            if not (text.isascii() and text.isdecimal()) or len(text) > 9:
                raise ValueError(f"{key} is a whole number from 0 to 999999999")
            out[key] = int(text)
        elif key in TEXT_OPTIONS:
            out[key] = str(value)
        else:
            raise ValueError(f"unknown option {key!r}")
    return out


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SegmentError(f"{key} is required", f"$.{key}")
    return value


# -- HTTP -----------------------------------------------------------------------------------

def routes(settings: Settings, warehouse: Warehouse, hooks: ForgetHooks | None = None
           ) -> list[Route]:
    writer = own_handle(warehouse)
    people = People(settings, writer, warehouse.readonly(), hooks)
    # Membership gets a connection of its own: a long export or signal on the shared
    # reader must not hold up a point lookup.
    checker = People(settings, writer, warehouse.readonly())

    def segment_failure(exc: BaseException) -> tuple[int, dict[str, Any]]:
        assert isinstance(exc, SegmentError)
        status = {"unknown_segment": 404, "segment_exists": 409}.get(exc.reason, 400)
        return status, exc.as_json()

    def endpoint(handler: Callable[[Request], Awaitable[Any]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        return admin_endpoint(settings, handler, errors=[
            (SegmentError, segment_failure),
            (PathNotAllowed, failure(400, "path_not_allowed")),
            ((ValueError, KeyError, TypeError), failure(400, "bad_request")),
        ])

    async def body_of(request: Request) -> dict[str, Any]:
        return await json_object(request)

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return asyncio.to_thread(fn, *args, **kwargs)

    def sid(request: Request) -> str:
        return request.path_params["segment_id"]

    async def list_segments(request: Request) -> Any:
        return await run(people.segment_list)

    async def create(request: Request) -> Any:
        doc = await body_of(request)
        return await run(people.segment_create, doc, materialise=doc.get("materialise", True),
                         created_by="api")

    async def create_from_sql(request: Request) -> Any:
        return await run(people.segment_from_sql, await body_of(request))

    async def create_from_people(request: Request) -> Any:
        return await run(people.segment_from_people, await body_of(request))

    async def show(request: Request) -> Any:
        version = query_int(request, "version", None, 0, 2**31)
        return await run(people.segment_show, sid(request), version)

    async def update(request: Request) -> Any:
        doc = await body_of(request)
        return await run(people.segment_update, sid(request), doc,
                         materialise=doc.get("materialise", True))

    async def delete(request: Request) -> Any:
        return await run(people.segment_delete, sid(request))

    async def materialise_one(request: Request) -> Any:
        return await run(people.segment_materialise, sid(request))

    async def materialise_all(request: Request) -> Any:
        return await run(people.segment_materialise)

    async def members(request: Request) -> Any:
        if request.query_params.get("format", "json") == "csv":
            data = await run(people.segment_members_csv, sid(request))
            return Response(data, media_type="text/csv", headers={
                "Content-Disposition": f'attachment; filename="segment__{sid(request)}.csv"'})
        return await run(people.segment_members, sid(request),
                         limit=query_int(request, "limit", None, 0, 10_000_000),
                         offset=query_int(request, "offset", 0, 0, 2**62))

    async def membership(request: Request) -> Any:
        return await run(checker.segment_check, sid(request), request.path_params["member_id"])

    async def history(request: Request) -> Any:
        return await run(people.segment_history, sid(request))

    async def compare(request: Request) -> Any:
        as_of = request.query_params.get("as_of")
        return await run(people.segment_compare, sid(request),
                         days=query_int(request, "days", 30, 1, 3650),
                         as_of=datetime.fromisoformat(as_of.replace("Z", "+00:00"))
                         if as_of else None)

    async def signal(request: Request) -> Any:
        name = request.path_params["name"]
        if name not in SIGNALS:
            raise ValueError(f"unknown signal {name!r}: one of {', '.join(SIGNALS)}")
        return await run(people.signal, name, dict(request.query_params))

    async def export(request: Request) -> Any:
        return await run(people.export, await body_of(request))

    async def forget_person(request: Request) -> Any:
        body = await body_of(request)
        return await run(people.forget, _text(body, "user_id"),
                         requested_by=str(body.get("requested_by") or "api"),
                         reason=str(body.get("reason") or ""))

    async def forget_entries(request: Request) -> Any:
        return await run(people.forget_log)

    return [
        Route("/v1/segments", endpoint(list_segments), methods=["GET"]),
        Route("/v1/segments", endpoint(create), methods=["POST"]),
        Route("/v1/segments/from-sql", endpoint(create_from_sql), methods=["POST"]),
        Route("/v1/segments/from-people", endpoint(create_from_people), methods=["POST"]),
        Route("/v1/segments/materialise", endpoint(materialise_all), methods=["POST"]),
        Route("/v1/segments/{segment_id}", endpoint(show), methods=["GET"]),
        Route("/v1/segments/{segment_id}", endpoint(update), methods=["PUT"]),
        Route("/v1/segments/{segment_id}", endpoint(delete), methods=["DELETE"]),
        Route("/v1/segments/{segment_id}/materialise", endpoint(materialise_one),
              methods=["POST"]),
        Route("/v1/segments/{segment_id}/members", endpoint(members), methods=["GET"]),
        Route("/v1/segments/{segment_id}/members/{member_id}", endpoint(membership),
              methods=["GET"]),
        Route("/v1/segments/{segment_id}/history", endpoint(history), methods=["GET"]),
        Route("/v1/segments/{segment_id}/compare", endpoint(compare), methods=["GET"]),
        Route("/v1/signals/{name}", endpoint(signal), methods=["GET"]),
        Route("/v1/exports", endpoint(export), methods=["POST"]),
        Route("/v1/forget", endpoint(forget_person), methods=["POST"]),
        Route("/v1/forget", endpoint(forget_entries), methods=["GET"]),
    ]
