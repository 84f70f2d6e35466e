"""The ceiling for the collector benchmark: a Starlette app that reads the body and answers 204.

Same routes the collector serves, no parsing, no validation, no queue: what uvicorn and
Starlette cost by themselves on this machine.

    uvicorn --app-dir load-tests bare_endpoint:app --workers 2
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def swallow(request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[
    *[Route(f"/v1/{name}", swallow, methods=["POST"])
      for name in ("batch", "import", "track", "page", "screen", "identify", "alias", "group")],
    Route("/healthz", healthz, methods=["GET"]),
])
