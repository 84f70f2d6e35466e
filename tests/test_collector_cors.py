"""The collector's CORS answers are exactly what Starlette's CORSMiddleware gives.

OpenCors (collector/cors.py) appends precomputed headers instead of merging them per
request; Starlette's own middleware, with the same options, is the reference.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from funnelhouse.collector.app import CORS_OPTIONS
from funnelhouse.collector.cors import OpenCors


def _inner(response_headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": list(response_headers)})
        await send({"type": "http.response.body", "body": b"{}"})
    return app


def _answer(middleware: type, response_headers: list[tuple[bytes, bytes]], method: str,
            request_headers: list[tuple[bytes, bytes]]) -> list[Message]:
    app = middleware(_inner(response_headers), **CORS_OPTIONS)
    scope = {"type": "http", "method": method, "path": "/v1/track", "headers": request_headers,
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1"}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


ORIGIN = (b"origin", b"https://shop.example")
PREFLIGHT = [ORIGIN, (b"access-control-request-method", b"POST"),
             (b"access-control-request-headers", b"content-type, x-retry-count")]


@pytest.mark.parametrize("method, request_headers", [
    ("POST", []),
    ("POST", [ORIGIN]),
    ("POST", [(b"origin", b"null")]),
    ("GET", [ORIGIN, (b"content-type", b"text/plain")]),
    ("OPTIONS", PREFLIGHT),
    ("OPTIONS", [*PREFLIGHT[:1], (b"access-control-request-method", b"DELETE")]),
    ("OPTIONS", [ORIGIN]),
], ids=["no origin", "origin", "null origin", "get", "preflight", "refused preflight",
        "options without a method"])
@pytest.mark.parametrize("response_headers", [
    [(b"content-type", b"application/json"), (b"content-length", b"2")],
    [(b"content-type", b"application/json"), (b"retry-after", b"5")],
    [(b"vary", b"Accept-Encoding")],
    [(b"access-control-allow-origin", b"https://other.example")],
], ids=["plain", "retry-after", "own vary", "own allow-origin"])
def test_open_cors_answers_as_starlette_does(method: str,
                                             request_headers: list[tuple[bytes, bytes]],
                                             response_headers: list[tuple[bytes, bytes]]) -> None:
    ours = _answer(OpenCors, response_headers, method, request_headers)
    reference = _answer(CORSMiddleware, response_headers, method, request_headers)
    assert ours[0]["status"] == reference[0]["status"]
    assert sorted(ours[0]["headers"]) == sorted(reference[0]["headers"])
    assert [m.get("body") for m in ours[1:]] == [m.get("body") for m in reference[1:]]
