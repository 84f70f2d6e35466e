"""The one shape of every admin endpoint: token check, JSON in, JSON out, typed errors.

A handler returns a dict/list (sent as JSON) or a Response; the exceptions it raises
are mapped to a status and a machine-readable reason, first match wins, with a
warehouse failure as 503 unless the endpoint says otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from funnelhouse.collector.app import ORJSONResponse, refusal_response
from funnelhouse.collector.auth import require_admin
from funnelhouse.collector.reasons import Refusal
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import WarehouseError

Handler = Callable[[Request], Awaitable[Any]]
# (exception types, reason) or (exception types, function of the exception → status, body)
ErrorRule = tuple[type[BaseException] | tuple[type[BaseException], ...],
                  Callable[[BaseException], tuple[int, dict[str, Any]]]]


def failure(status: int, reason: str) -> Callable[[BaseException], tuple[int, dict[str, Any]]]:
    """A rule's answer: this status, this reason, the exception's first line as the error."""
    def answer(exc: BaseException) -> tuple[int, dict[str, Any]]:
        text = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else reason
        return status, {"error": text, "reason": reason}

    return answer


WAREHOUSE_UNAVAILABLE: ErrorRule = (WarehouseError, failure(503, "warehouse_error"))
MALFORMED_JSON: ErrorRule = (orjson.JSONDecodeError, failure(400, "malformed_json"))


def admin_endpoint(settings: Settings, handler: Handler,
                   errors: Sequence[ErrorRule] = ()) -> Callable[[Request], Awaitable[Response]]:
    # A body that is not JSON is named as such before any broader ValueError rule.
    rules = [MALFORMED_JSON, *errors, WAREHOUSE_UNAVAILABLE]

    async def endpoint(request: Request) -> Response:
        try:
            require_admin(settings, request)
        except Refusal as refusal:
            return refusal_response(refusal)
        try:
            result = await handler(request)
        except Refusal as refusal:  # e.g. a bad query parameter (collector.params)
            return refusal_response(refusal)
        except Exception as exc:
            for kinds, answer in rules:
                if isinstance(exc, kinds):
                    status, body = answer(exc)
                    return ORJSONResponse(body, status_code=status)
            raise
        return result if isinstance(result, Response) else ORJSONResponse(result)

    return endpoint


async def json_object(request: Request, *, required: bool = False) -> dict[str, Any]:
    """The body as a JSON object ({} when empty and not required); ValueError otherwise."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ValueError("the body must be a JSON object")
        return {}
    doc = orjson.loads(raw)  # JSONDecodeError is a ValueError
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return doc
