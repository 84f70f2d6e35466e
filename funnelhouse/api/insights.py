"""HTTP API for the console's saved insights and dashboards (admin token).

Routes (all need `Authorization: Bearer <admin token>`):
  GET    /v1/insights                  every insight: id, name, path, query, created/updated
  POST   /v1/insights                  {"name", "path", "query"}
  GET    /v1/insights/{id}
  PUT    /v1/insights/{id}             any of name, path, query
  DELETE /v1/insights/{id}             also takes it off every dashboard
  GET    /v1/dashboards                every dashboard: id, name, insight_ids
  POST   /v1/dashboards                {"name", "insight_ids": [ … ]}
  GET    /v1/dashboards/{id}           with its insights in card order
  PUT    /v1/dashboards/{id}           any of name, insight_ids (the new order)
  DELETE /v1/dashboards/{id}
A refusal is 400 (404 for an unknown id) with {"error", "reason", "field"}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from funnelhouse.api.endpoint import admin_endpoint, failure, json_object
from funnelhouse.config import Settings
from funnelhouse.insights.store import Boards, InsightError
from funnelhouse.warehouse.base import Warehouse

NOT_FOUND = {"unknown_insight", "unknown_dashboard"}


def routes(settings: Settings, warehouse: Warehouse) -> list[Route]:
    boards = Boards(warehouse)

    def refused(exc: BaseException) -> tuple[int, dict[str, Any]]:
        assert isinstance(exc, InsightError)
        # An unknown id named in a dashboard's body is bad input, not a missing page.
        missing = exc.reason in NOT_FOUND and exc.field != "insight_ids"
        return (404 if missing else 400), exc.as_json()

    def endpoint(handler: Callable[[Request], Awaitable[Any]]
                 ) -> Callable[[Request], Awaitable[Response]]:
        return admin_endpoint(settings, handler, errors=[
            (InsightError, refused),
            ((ValueError, TypeError), failure(400, "bad_request")),
        ])

    def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return asyncio.to_thread(fn, *args)

    async def body(request: Request) -> dict[str, Any]:
        return await json_object(request, required=True)

    def ident(request: Request) -> str:
        return str(request.path_params["ident"])

    async def list_insights(request: Request) -> Any:
        return {"insights": await run(boards.list_insights)}

    async def create_insight(request: Request) -> Any:
        return {"insight": await run(boards.create_insight, await body(request))}

    async def show_insight(request: Request) -> Any:
        return {"insight": await run(boards.get_insight, ident(request))}

    async def update_insight(request: Request) -> Any:
        return {"insight": await run(boards.update_insight, ident(request), await body(request))}

    async def delete_insight(request: Request) -> Any:
        return await run(boards.delete_insight, ident(request))

    async def list_dashboards(request: Request) -> Any:
        return {"dashboards": await run(boards.list_dashboards)}

    async def create_dashboard(request: Request) -> Any:
        return {"dashboard": await run(boards.create_dashboard, await body(request))}

    async def show_dashboard(request: Request) -> Any:
        return {"dashboard": await run(boards.get_dashboard, ident(request))}

    async def update_dashboard(request: Request) -> Any:
        return {"dashboard": await run(boards.update_dashboard, ident(request),
                                       await body(request))}

    async def delete_dashboard(request: Request) -> Any:
        return await run(boards.delete_dashboard, ident(request))

    return [
        Route("/v1/insights", endpoint(list_insights), methods=["GET"]),
        Route("/v1/insights", endpoint(create_insight), methods=["POST"]),
        Route("/v1/insights/{ident}", endpoint(show_insight), methods=["GET"]),
        Route("/v1/insights/{ident}", endpoint(update_insight), methods=["PUT"]),
        Route("/v1/insights/{ident}", endpoint(delete_insight), methods=["DELETE"]),
        Route("/v1/dashboards", endpoint(list_dashboards), methods=["GET"]),
        Route("/v1/dashboards", endpoint(create_dashboard), methods=["POST"]),
        Route("/v1/dashboards/{ident}", endpoint(show_dashboard), methods=["GET"]),
        Route("/v1/dashboards/{ident}", endpoint(update_dashboard), methods=["PUT"]),
        Route("/v1/dashboards/{ident}", endpoint(delete_dashboard), methods=["DELETE"]),
    ]
