"""The body deadline is watched only for a request whose body has not all arrived.

HeaderTimeoutProtocol marks a request's scope (edge.BODY_RECEIVED) once its whole body
has been read off the socket; EdgeMiddleware then lets it through without a deadline.
A request still short of its body when the app starts keeps the watch: it is served if
the rest comes in time and answered 408 if not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from funnelhouse.collector.edge import BODY_RECEIVED, EdgeMiddleware
from tests.support.edge_server import edge_server

BODY = b'{"event":"click"}'
HEAD = (f"POST /in HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(BODY)}\r\n\r\n").encode()


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers whether the body was marked as received when the app started."""
    marked = bool(scope.get(BODY_RECEIVED))
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    answer = orjson.dumps({"marked": marked, "length": len(body)})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


async def exchange(port: int, parts: list[bytes], pause: float) -> bytes:
    """Sends the parts with a pause between them; returns everything until closed or answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for index, part in enumerate(parts):
        if index:
            await asyncio.sleep(pause)
        writer.write(part)
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return head.split(b"\r\n")[0] + b" " + body


def serve_and_send(cases: list[tuple[list[bytes], float]]) -> list[bytes]:
    async def scenario() -> list[bytes]:
        async with edge_server(EdgeMiddleware(echo, body_timeout=0.5)) as port:
            return [await exchange(port, parts, pause) for parts, pause in cases]

    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_request_read_whole_is_marked_and_one_still_arriving_is_watched() -> None:
    whole, late_in_time, pipelined = serve_and_send([
        ([HEAD + BODY], 0),                    # the usual case: one read holds it all
        ([HEAD, BODY], 0.2),                   # the body comes later, within the deadline
        ([HEAD + BODY + HEAD + BODY], 0),      # two requests in one read
    ])
    assert whole == b'HTTP/1.1 200 OK {"marked":true,"length":17}'
    assert late_in_time == b'HTTP/1.1 200 OK {"marked":false,"length":17}'
    assert pipelined == whole


def test_a_body_that_stops_arriving_still_gets_408() -> None:
    # Half the body, then nothing: the request was never marked, so its deadline holds.
    (answer,) = serve_and_send([([HEAD + BODY[:5]], 0)])
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert orjson.loads(answer[answer.index(b"{"):])["reason"] == "request_timeout"
