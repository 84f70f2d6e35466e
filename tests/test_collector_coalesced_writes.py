"""A response's headers and body leave in one socket write (collector/coalesced_writes.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from funnelhouse.collector.coalesced_writes import CoalescedTransport
from tests.support.edge_server import edge_server


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__(extra={"peername": ("10.1.2.3", 4567)})
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


def test_two_writes_leave_as_one_at_once_and_a_lone_write_at_the_end_of_the_turn() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        outer = CoalescedTransport(inner, asyncio.get_running_loop())
        outer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert inner.writes == []                       # held for the body
        outer.write(b"ok")
        assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
        outer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        assert len(inner.writes) == 1                   # no follower yet in this turn
        await asyncio.sleep(0)                          # the turn ends
        assert inner.writes[1].endswith(b"chunked\r\n\r\n")
        outer.write(b"")                                # nothing to hold
        await asyncio.sleep(0)
        assert len(inner.writes) == 2
        assert outer.get_extra_info("peername") == ("10.1.2.3", 4567)

    asyncio.run(scenario())


def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        inner = RecordingTransport()
        outer = CoalescedTransport(inner, loop)
        outer.write(b"last answer")
        outer.close()
        assert inner.writes == [b"last answer"] and inner.closed
        await asyncio.sleep(0)                          # the scheduled flush finds nothing
        assert inner.writes == [b"last answer"]

        inner = RecordingTransport()
        outer = CoalescedTransport(inner, loop)
        outer.write(b"never sent")
        outer.abort()
        await asyncio.sleep(0)
        assert inner.writes == [] and inner.aborted

    asyncio.run(scenario())


def test_a_real_server_answers_plain_streamed_and_kept_alive_requests_whole() -> None:
    """uvicorn with the edge protocol: the wrapped transport under real responses."""

    async def stream(_request: Any) -> StreamingResponse:
        async def parts() -> Any:
            for part in (b"one,", b"two,", b"three"):
                await asyncio.sleep(0.01)
                yield part
        return StreamingResponse(parts(), media_type="text/plain")

    app = Starlette(routes=[Route("/plain", lambda _r: PlainTextResponse("hello")),
                            Route("/stream", stream)])

    async def scenario() -> list[bytes]:
        async with edge_server(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = []
            for path in ("/plain", "/stream", "/plain"):     # one kept-alive connection
                writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if b"transfer-encoding: chunked" in head:
                    body = await reader.readuntil(b"0\r\n\r\n")
                else:
                    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                    body = await reader.readexactly(length)
                answers.append(head.split(b"\r\n")[0] + b" " + body)
            writer.close()
            return answers

    plain, streamed, again = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert plain == again == b"HTTP/1.1 200 OK hello"
    assert streamed.startswith(b"HTTP/1.1 200 OK ")
    assert b"one," in streamed and b"two," in streamed and b"three" in streamed
