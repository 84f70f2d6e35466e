"""The collector's HTTP routes (Segment/RudderStack-compatible) and the app factory."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from funnelhouse.collector import metrics
from funnelhouse.collector.auth import resolve_write_key
from funnelhouse.collector.body import check_content_type, parse_json, read_body, request_headers
from funnelhouse.collector.cors import OpenCors
from funnelhouse.collector.dispatch import Endpoint, IngestDispatch
from funnelhouse.collector.edge import EdgeMiddleware
from funnelhouse.collector.enrich.ip import client_ip
from funnelhouse.collector.ingest import MESSAGE_TYPES, Ingestor, RequestInfo
from funnelhouse.collector.limits import RateLimiter
from funnelhouse.collector.openapi import openapi_document
from funnelhouse.collector.partners import partner_routes
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.collector.qa import QaSource, debug_endpoint, ring_source
from funnelhouse.collector.reasons import EVENT_STATUS, Refusal
from funnelhouse.collector.sdk_settings import sdk_settings_routes
from funnelhouse.collector.sinks.base import QueueUnavailable, Sink
from funnelhouse.config import Settings

# A transparent 1×1 GIF for the pixel endpoint.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
            "Expires": "0"}


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def refusal_response(refusal: Refusal) -> Response:
    metrics.events_rejected.labels(refusal.reason).inc()
    return ORJSONResponse(refusal.body(), status_code=refusal.status, headers=refusal.headers)


class Collector:
    """The endpoints; state (settings, ingestor, limiter) lives here, not in globals."""

    def __init__(self, settings: Settings, ingestor: Ingestor, sink: Sink,
                 qa_sources: Sequence[QaSource] = ()) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.sink = sink
        # Tagging QA: this worker's ring, then whatever else sees every worker's events.
        self._debug_endpoint = debug_endpoint(settings, [ring_source(ingestor), *qa_sources])
        self.limiter = RateLimiter()
        self.keys = {key.key: key for key in settings.write_keys}
        # Labelled children looked up once: labels() costs more than the observation.
        self._latency = {True: metrics.request_seconds.labels("batch"),
                         False: metrics.request_seconds.labels("single")}

    # ---- ingest -------------------------------------------------------------------

    async def batch(self, request: Request) -> Response:
        return await self._ingest(request, batch=True)

    def single(self, message_type: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            return await self._ingest(request, batch=False, forced_type=message_type)

        endpoint.__name__ = message_type
        return endpoint

    async def _ingest(self, request: Request, *, batch: bool,
                      forced_type: str | None = None) -> Response:
        started = time.perf_counter()
        try:
            headers = request_headers(request)
            check_content_type(headers)
            body = parse_json(await read_body(request, headers, self.settings.limits))
            info = self._request_info(request, headers, body)
            messages = self._messages(body, batch)
            outcome = await self._run(messages, info, forced_type)
        except Refusal as refusal:
            return refusal_response(refusal)
        finally:
            self._latency[batch].observe(time.perf_counter() - started)
        status = 200
        if outcome.rejected and not outcome.accepted and not outcome.duplicates:
            # Nothing stored as valid: answer with the refusal's status so clients that
            # do not read bodies still see a 4xx (the events are in the dead-letter).
            status = EVENT_STATUS.get(outcome.rejected[0].reason, 400)
        return ORJSONResponse(outcome.as_json(), status_code=status)

    def _messages(self, body: Any, batch: bool) -> list[Any]:
        if not batch:
            return [body]
        messages = body.get("batch") if isinstance(body, dict) else body
        if not isinstance(messages, list):
            raise Refusal("bad_batch", "a batch is {\"batch\": [event, …]} or a JSON list")
        if len(messages) > self.settings.limits.max_events_per_batch:
            raise Refusal("too_many_events", f"{len(messages)} events in one batch; limit "
                          f"{self.settings.limits.max_events_per_batch}")
        if isinstance(body, dict):
            apply_batch_fields(body, messages)
        return messages

    def _request_info(self, request: Request, headers: Mapping[str, str],
                      body: Any) -> RequestInfo:
        key = resolve_write_key(self.keys, request, headers, body)
        client = request.scope.get("client")
        peer = client[0] if client else ""
        forwarded = headers.get("x-forwarded-for")
        return RequestInfo(
            write_key=key,
            ip=client_ip(peer, forwarded, self.settings.is_trusted_proxy),
            user_agent=headers.get("user-agent", ""),
            received_at=time.time(),
            sent_at=(body.get("sentAt") or body.get("sent_at")) if isinstance(body, dict)
            else None,
            privacy_signal=headers.get("sec-gpc") == "1" or headers.get("dnt") == "1",
        )

    async def _run(self, messages: list[Any], info: RequestInfo, forced_type: str | None):
        retry_after = self.limiter.check(info.write_key.key, info.write_key.rate_limit,
                                         len(messages))
        if retry_after:
            seconds = max(1, int(retry_after + 0.999))
            raise Refusal("rate_limited", f"over {info.write_key.rate_limit:g} events/s for "
                          "this write key", headers={"Retry-After": str(seconds)})
        try:
            return await self.ingestor.ingest(messages, info, forced_type)
        except QueueUnavailable as exc:
            raise Refusal("queue_unavailable", f"events could not be stored: {exc}",
                          headers={"Retry-After": "5"}) from exc

    async def pixel(self, request: Request) -> Response:
        """GET /v1/p.gif?…: one event from the query string, always answered with a GIF.

        Either `data=` (JSON, or base64 of JSON) or flat fields: type, event,
        anonymousId, userId, messageId, timestamp, url, title, referrer, and
        `properties.<name>` / `context.<name>` for nested values.
        """
        try:
            message = pixel_message(request)
            info = self._request_info(request, request_headers(request), None)
            outcome = await self._run([message], info, None)
        except Refusal as refusal:
            metrics.events_rejected.labels(refusal.reason).inc()
            return Response(PIXEL_GIF, status_code=refusal.status, media_type="image/gif",
                            headers={**NO_CACHE, "X-Funnelhouse-Reason": refusal.reason,
                                     **refusal.headers})
        headers = dict(NO_CACHE)
        status = 200
        if outcome.rejected:
            headers["X-Funnelhouse-Reason"] = outcome.rejected[0].reason
            status = EVENT_STATUS.get(outcome.rejected[0].reason, 400)
        return Response(PIXEL_GIF, status_code=status, media_type="image/gif", headers=headers)

    # ---- operations -----------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return ORJSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        status = self.sink.status()
        return ORJSONResponse(status, status_code=200 if status.get("ready") else 503)

    async def metrics(self, request: Request) -> Response:
        status = self.sink.status()
        metrics.queue_depth.set(status.get("depth", 0))
        metrics.queue_ready.set(1 if status.get("ready") else 0)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    async def debug_events(self, request: Request) -> Response:
        """The last events per source with their validation result, for tagging QA."""
        return await self._debug_endpoint(request)

    async def openapi(self, request: Request) -> Response:
        return ORJSONResponse(openapi_document())


# Browsers hide response headers from cross-origin scripts unless exposed; the SDK
# needs Retry-After to honour a 429.
CORS_OPTIONS: dict[str, Any] = {"allow_origins": ["*"], "allow_methods": ["GET", "POST"],
                                "allow_headers": ["*"], "expose_headers": ["Retry-After"],
                                "max_age": 86400}


# Fields a batch may carry once for all its messages (analytics-java sends its
# `context.library` only there); a message's own keys win over the batch's.
BATCH_LEVEL_FIELDS = ("context", "integrations")


def apply_batch_fields(body: dict[str, Any], messages: list[Any]) -> None:
    for name in BATCH_LEVEL_FIELDS:
        shared = body.get(name)
        if not isinstance(shared, dict) or not shared:
            continue
        for message in messages:
            if not isinstance(message, dict):
                continue  # refused on its own, as sent
            own = message.get(name)
            if own is None:
                message[name] = dict(shared)
            elif isinstance(own, dict):
                message[name] = {**shared, **own}


def pixel_message(request: Request) -> dict[str, Any]:
    params = request.query_params
    data = params.get("data")
    if data:
        try:
            decoded = data if data.lstrip().startswith("{") else base64.urlsafe_b64decode(
                data + "=" * (-len(data) % 4)).decode("utf-8")
            doc = orjson.loads(decoded)
        except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise Refusal("malformed_json", f"pixel data is not JSON or base64 JSON: {exc}"
                          ) from exc
        if not isinstance(doc, dict):
            raise Refusal("bad_batch", "pixel data must be one JSON object")
        return doc
    message: dict[str, Any] = {"type": params.get("type", "track")}
    properties: dict[str, Any] = {}
    context: dict[str, Any] = {}
    page: dict[str, Any] = {}
    for name, value in params.multi_items():
        if name.startswith("properties."):
            properties[name[len("properties."):]] = _pixel_value(value)
        elif name.startswith("context."):
            context[name[len("context."):]] = value
        elif name in ("url", "title", "referrer", "path", "search"):
            page[name] = value
        elif name in ("event", "anonymousId", "userId", "messageId", "timestamp", "name"):
            message[name] = value
    if not page.get("url") and request.headers.get("referer"):
        page["url"] = request.headers["referer"]
    if page:
        context["page"] = page
        if message["type"] == "page":
            properties = {**page, **properties}
    message["properties"] = properties
    message["context"] = context
    return message


def _pixel_value(value: str) -> Any:
    """Numbers and booleans in a query string arrive as text; give them their type back."""
    if value in ("true", "false"):
        return value == "true"
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        # Past 64 bits a number cannot be stored as an integer (orjson refuses it).
        if -(2**63) <= number < 2**64:
            return number
    try:
        return float(value)
    except ValueError:
        return value


# Each ingest path and the client family that posts to it. A trailing slash is the same
# route, not a 307 (analytics-java posts to `/v1/import/`).
BATCH_PATHS = (
    "/v1/batch",          # Segment and RudderStack server libraries, our SDK
    "/v1/import",         # analytics-java, historical imports
    "/v1/b",              # Segment's analytics-swift / analytics-kotlin (`{apiHost}/b`)
    "/beacon/v1/batch",   # RudderStack's analytics-js with useBeacon (sendBeacon)
)
# Segment's analytics-next posts each call alone to a one-letter path.
SHORT_PATHS = {"t": "track", "p": "page", "i": "identify", "a": "alias", "g": "group",
               "s": "screen"}


def ingest_endpoints(collector: Collector) -> dict[str, Endpoint]:
    """Every ingest path (with and without its trailing slash) and its endpoint."""
    singles = [(f"/v1/{kind}", kind) for kind in MESSAGE_TYPES]
    singles += [(f"/v1/{short}", kind) for short, kind in SHORT_PATHS.items()]
    endpoints: dict[str, Endpoint] = {}
    for path in BATCH_PATHS:
        endpoints[path] = endpoints[path + "/"] = collector.batch
    for path, kind in singles:
        endpoints[path] = endpoints[path + "/"] = collector.single(kind)
    return endpoints


def create_app(
    settings: Settings,
    sink: Sink,
    *,
    plan: TrackingPlan | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None = None,
    qa_sources: Sequence[QaSource] = (),
) -> Starlette:
    """The collector's app; `qa_sources` add to this worker's ring in /v1/debug/events."""
    plan = plan or TrackingPlan.load(settings.plan_dir)
    ingestor = Ingestor(settings, plan, sink)
    collector = Collector(settings, ingestor, sink, qa_sources)
    endpoints = ingest_endpoints(collector)
    routes: list[BaseRoute] = [
        # Also routes, so the router (and the OpenAPI check) know them; IngestDispatch
        # answers them first.
        *[Route(path, endpoint, methods=["POST"]) for path, endpoint in endpoints.items()],
        *partner_routes(collector),
        *sdk_settings_routes(settings),
        Route("/v1/p.gif", collector.pixel, methods=["GET"]),
        Route("/v1/debug/events", collector.debug_events, methods=["GET"]),
        Route("/healthz", collector.healthz, methods=["GET"]),
        Route("/readyz", collector.readyz, methods=["GET"]),
        Route("/metrics", collector.metrics, methods=["GET"]),
        Route("/openapi.json", collector.openapi, methods=["GET"]),
        *extra_routes,
    ]
    middleware = [
        # Outermost, so every answer carries the CORS headers, the edge's 408s included:
        # a browser SDK that cannot read a 429 or 503 cannot honour it, and retries blind.
        # Browsers post from any site that embeds an SDK; per-key origin allow-lists are
        # enforced in auth (403), so CORS itself stays open. No cookies are read, so any
        # request header may be allowed: SDKs add their own (analytics-next's
        # X-Retry-Count on a resend, RudderStack's AnonymousId and SentAt).
        Middleware(OpenCors, **CORS_OPTIONS),
        # Slow bodies get a 408, clients that hang up are not server errors.
        Middleware(EdgeMiddleware, body_timeout=settings.body_timeout_seconds),
        Middleware(IngestDispatch, endpoints=endpoints),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.collector = collector
    app.state.ingestor = ingestor
    app.state.settings = settings
    return app
