"""An in-process uvicorn server with the collector's edge protocol, for socket-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from funnelhouse.collector.edge import HeaderTimeoutProtocol


@contextlib.asynccontextmanager
async def edge_server(app: Any) -> AsyncIterator[int]:
    """Serves `app` on a free loopback port with HeaderTimeoutProtocol; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=HeaderTimeoutProtocol, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
