"""The HTTP edge's guards: header and body timeouts, quiet disconnects, worker watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from funnelhouse.collector.coalesced_writes import CoalescedTransport
from funnelhouse.collector.reasons import error_body
from funnelhouse.config import Settings

log = logging.getLogger("funnelhouse.edge")

# Set in a request's scope by HeaderTimeoutProtocol once the whole request, body and
# all, has been read off the socket: that request's receive() can no longer wait on
# the client, so EdgeMiddleware lets it through without watching a body deadline.
BODY_RECEIVED = "funnelhouse.body_received"


def _timeout_body(what: str, seconds: float) -> bytes:
    return orjson.dumps(error_body("request_timeout",
                                   f"{what} not received within {seconds:g}s"))


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request line and headers.

    uvicorn only times out idle keep-alive connections: a client that opens a socket
    and never finishes its headers (slowloris) holds it, and a file descriptor, forever.
    The timer starts when the connection is made or a request begins and stops when
    the headers are complete; on expiry the client gets a 408 and the socket is closed.
    """

    # Set per process: by `edge_protocol` (in-process servers) or by collector.asgi
    # (uvicorn workers, which get this class by its import path).
    header_timeout: float = 10.0
    # httptools sets no cap on the header block: 10 s of headers at loopback speed is
    # gigabytes held in memory. Past this the client gets 431 and the socket is closed.
    max_header_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None:  # headers complete (or not yet begun)
            return
        self._header_bytes += len(data)
        if self._header_bytes > self.max_header_bytes:
            self._disarm_header_timer()
            self._refuse(b"431 Request Header Fields Too Large", orjson.dumps(error_body(
                "headers_too_large", f"request headers over {self.max_header_bytes} bytes")))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # A response's headers and body leave in one write (see coalesced_writes).
        super().connection_made(cast(asyncio.Transport, CoalescedTransport(transport, self.loop)))
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Nearly every request (a single event, a batch under the socket buffer) arrives
        # in one read, so this runs before the app's task has started.
        cycle = self.cycle
        if cycle is not None and not cycle.more_body:
            cycle.scope[BODY_RECEIVED] = True  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self.header_timeout > 0:
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(self.header_timeout,
                                                      self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._refuse(b"408 Request Timeout",
                     _timeout_body("request headers", self.header_timeout))

    def _refuse(self, status: bytes, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        # Only answer when no earlier (pipelined) response is being written on this socket.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: " + str(len(body)).encode() +
                b"\r\n\r\n" + body)
        self.transport.close()


def edge_protocol(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for an in-process uvicorn server with this header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,),
                {"header_timeout": header_timeout})


class _Wait:
    """One receive() waiting for body bytes, and when it must give up."""

    __slots__ = ("deadline", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self.task = task
        self.expired = False


class BodyDeadlines:
    """The receive() calls waiting for body bytes, watched by one task per event loop.

    A timer per receive() (asyncio.timeout, or loop.call_at) cost 3–5 µs of a single
    event's request even when the body had already arrived, which is nearly always.
    Instead each waiting call is put in a set (and taken out when it returns), and a
    watcher wakes every `tick` seconds while the set is not empty, cancelling the calls
    past their deadline. A deadline is met up to one tick late.
    """

    def __init__(self, timeout: float) -> None:
        self.tick = min(0.25, max(timeout / 10, 0.01))
        self._waits: set[_Wait] = set()
        self._watcher: asyncio.Task[None] | None = None

    def start(self, deadline: float) -> _Wait:
        task = asyncio.current_task()
        assert task is not None
        wait = _Wait(deadline, task)
        self._waits.add(wait)
        if self._watcher is None or self._watcher.done() \
                or self._watcher.get_loop() is not task.get_loop():
            self._watcher = task.get_loop().create_task(self._watch(), name="body-deadlines")
        return wait

    def stop(self, wait: _Wait) -> None:
        self._waits.discard(wait)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waits:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for wait in [w for w in self._waits if w.deadline <= now]:
                self._waits.discard(wait)
                wait.expired = True
                wait.task.cancel()


class EdgeMiddleware:
    """Bounds the time spent waiting for a request body; keeps disconnects out of the logs.

    The body deadline counts only time spent waiting in `receive()` (a slow app is not
    the client's fault). When it passes, the client gets 408 `request_timeout` (if no
    answer has started) with `Connection: close`, the app sees a disconnect, and
    whatever it answers after that is dropped. A client that goes away mid-body makes
    Starlette raise ClientDisconnect; that is the client's doing, not a server error,
    so it is logged at debug level instead of as a traceback.
    """

    def __init__(self, app: ASGIApp, body_timeout: float = 30.0) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.deadlines = BodyDeadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get(BODY_RECEIVED) or self.body_timeout <= 0:
            # Nothing to wait for (or no deadline): the watch below cost ≈10 µs of a
            # single event's ≈85 µs in process, for a body that was already here.
            try:
                await self.app(scope, receive, send)
            except ClientDisconnect:
                log.debug("client went away mid-request: %s %s", scope.get("method"),
                          scope.get("path"))
            return
        loop = asyncio.get_running_loop()
        waited = 0.0
        body_done = False
        started = False
        timed_out = False
        disconnected = False

        async def timed_receive() -> Message:
            nonlocal waited, body_done, timed_out, disconnected
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done:
                # After the body, receive() only reports a disconnect: no deadline.
                message = await receive()
            else:
                began = loop.time()
                wait = self.deadlines.start(began + max(self.body_timeout - waited, 0.001))
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if not wait.expired:
                        raise
                    # Our cancel, not the server's: the deadline passed.
                    wait.task.uncancel()
                    timed_out = True
                    await self._answer_timeout(send, started)
                    return {"type": "http.disconnect"}
                finally:
                    self.deadlines.stop(wait)
                    waited += loop.time() - began
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            elif message["type"] == "http.disconnect":
                disconnected = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 408 went out; the app's late answer has nowhere to go
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except Exception as exc:
            if timed_out or disconnected or isinstance(exc, ClientDisconnect):
                log.debug("client went away mid-request: %s %s", scope.get("method"),
                          scope.get("path"))
                return
            raise

    async def _answer_timeout(self, send: Send, started: bool) -> None:
        log.info("request body not received within %gs; answered 408", self.body_timeout)
        if started:
            return
        body = _timeout_body("request body", self.body_timeout)
        with contextlib.suppress(OSError, RuntimeError):
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})


async def _watch_parent(parent_pid: int, interval: float) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(interval)
    log.warning("the collector's master process %d is gone; this worker stops", parent_pid)
    # uvicorn's own SIGTERM handling: stop accepting, finish in-flight requests, run
    # the lifespan's shutdown (which flushes the queue producer).
    os.kill(os.getpid(), signal.SIGTERM)


@contextlib.asynccontextmanager
async def orphan_watchdog(interval: float = 0.5) -> AsyncIterator[None]:
    """In a uvicorn worker: exit when the master dies instead of serving on, orphaned.

    A SIGKILLed master cannot stop its workers; they keep the shared socket open, so
    a restart fails with "Address already in use". Workers are spawned by
    multiprocessing, so `parent_process()` names the master; outside a worker (`up`,
    `collector --workers 1`) there is nothing to watch.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        yield
        return
    task = asyncio.create_task(_watch_parent(parent.pid, interval), name="orphan-watchdog")
    try:
        yield
    finally:
        task.cancel()


def tls_options(cert: str, key: str) -> dict[str, Any]:
    """uvicorn's ssl_* arguments for a certificate and key (both or neither)."""
    if bool(cert) != bool(key):
        raise ValueError("TLS needs both a certificate and a key "
                         "(--tls-cert/--tls-key or FUNNELHOUSE_TLS_CERT/FUNNELHOUSE_TLS_KEY)")
    if not cert:
        return {}
    # Fail here, in the command, with the file's name, rather than in every worker.
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    return {"ssl_certfile": cert, "ssl_keyfile": key}


def server_options(settings: Settings, *, protocol: type[asyncio.Protocol] | str | None = None
                   ) -> dict[str, Any]:
    """The uvicorn arguments every funnelhouse server shares (`up` and `collector`).

    `protocol` is a class for an in-process server; uvicorn workers are given the
    import path instead (a class made at run time cannot be sent to a spawned worker).
    """
    return {
        "http": protocol or edge_protocol(settings.header_timeout_seconds),
        # The client address is the peer's: X-Forwarded-For and -Proto are read by the
        # app, and only from FUNNELHOUSE_TRUSTED_PROXIES (collector.app, sdk_settings).
        # uvicorn's own rewrite, on by default, believed them from any loopback peer.
        "proxy_headers": False,
        # Idle keep-alive connections: uvicorn's own timer.
        "timeout_keep_alive": 5,
        **tls_options(settings.tls_cert, settings.tls_key),
    }
