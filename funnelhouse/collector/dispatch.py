"""Ingest POSTs found by one dict lookup instead of Starlette's route-by-route scan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class IngestDispatch:
    """The innermost middleware: a POST to an ingest path goes straight to its endpoint.

    Starlette's router tries its routes' regular expressions one after another (a single
    event's path comes after the batch paths, and the collector has dozens), and its
    exception layer wraps each call. On the path every event takes, that is work for
    nothing: the ingest endpoints answer every refusal themselves. Anything else (other
    paths and methods, a root_path) goes on to the router as before; an unexpected error
    still reaches ServerErrorMiddleware outside, which answers 500.
    """

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" \
                and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
