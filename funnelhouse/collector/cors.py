"""CORS for the collector: open to every origin, with the common answer made cheap."""

from __future__ import annotations

from functools import cached_property

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

# Response headers the CORS answer sets; a response already carrying one of them is
# left to Starlette's own merge.
_CORS_NAMES = frozenset({b"vary", b"access-control-allow-origin",
                         b"access-control-expose-headers", b"access-control-allow-credentials"})


class OpenCors(CORSMiddleware):
    """Starlette's CORSMiddleware for an open policy (any origin, no credentials).

    Preflights and any response that already names a CORS header go through Starlette
    unchanged. For the rest (every ingest answer) the headers Starlette would add are
    worked out once and appended, without parsing the request's headers into a Headers
    object and the response's into a MutableHeaders one on every request.
    """

    @cached_property
    def _added(self) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]] | None:
        """The headers to add with and without an Origin; None unless the policy is open."""
        if not self.allow_all_origins or self.allow_credentials:
            return None
        simple = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                  for name, value in self.simple_headers.items()]
        return [*simple, (b"vary", b"Origin")], [(b"vary", b"Origin")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        both = self._added
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or both is None:
            await super().__call__(scope, receive, send)
            return
        origin = any(name == b"origin" for name, _ in scope["headers"])
        added = both[0] if origin else both[1]

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(name in _CORS_NAMES for name, _ in headers):
                    await self.send(message, send, Headers(scope=scope))
                    return
                message["headers"] = [*headers, *added]
            await send(message)

        await self.app(scope, receive, cors_send)
