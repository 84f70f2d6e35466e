"""The settings documents browser SDKs fetch before they send anything.

Segment's analytics-next reads `{cdnURL}/v1/projects/{writeKey}/settings` and RudderStack's
analytics-js reads `{configUrl}/sourceConfig`; answered here, pointing the SDK at this
collector is the only change a site makes.

Both documents are built from the configured write key alone (never from the text of the
request) and name no destinations, plugins, middleware or metrics endpoints: the SDKs
then load no further scripts and send to nobody but this collector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from funnelhouse.collector.auth import resolve_write_key
from funnelhouse.collector.body import request_headers
from funnelhouse.collector.reasons import Refusal, error_body
from funnelhouse.config import Settings, WriteKey

# Keys are added or revoked by a restart; a page load asks once, so nothing is cached long.
HEADERS = {"Cache-Control": "no-cache"}


def sdk_settings_routes(settings: Settings) -> list[BaseRoute]:
    keys = {key.key: key for key in settings.write_keys}

    async def segment_settings(request: Request) -> Response:
        headers = request_headers(request)
        try:
            # The path names the key; the Origin header is checked as on any other route.
            key = resolve_write_key(keys, request, {"x-write-key": request.path_params["key"],
                                                    "origin": headers.get("origin", "")})
            browser_only(key)
        except Refusal as refusal:
            # Segment's CDN answers an unknown write key 404; the SDK then stops loading.
            status = 404 if refusal.reason == "unknown_write_key" else refusal.status
            return json_response(error_body(refusal.reason, refusal.message), status)
        return json_response(segment_document(key, collector_origin(settings, request)))

    async def rudderstack_source_config(request: Request) -> Response:
        try:
            # Basic auth with the write key, and `?writeKey=` beside it.
            key = resolve_write_key(keys, request, request_headers(request))
            browser_only(key)
        except Refusal as refusal:
            return json_response(error_body(refusal.reason, refusal.message), refusal.status)
        return json_response(rudderstack_document(key))

    return [
        Route("/v1/projects/{key}/settings", segment_settings, methods=["GET"]),
        # The SDK asks for `/sourceConfig/` (trailing slash) unless configUrl ends with it.
        Route("/sourceConfig", rudderstack_source_config, methods=["GET"]),
        Route("/sourceConfig/", rudderstack_source_config, methods=["GET"]),
    ]


def browser_only(key: WriteKey) -> None:
    """A server key may backdate events and speak for any IP: it must not sit in a page."""
    if key.kind != "browser":
        raise Refusal("unknown_write_key", "this is a server key; browser SDKs take a "
                      "browser write key")


def collector_origin(settings: Settings, request: Request) -> tuple[str, str]:
    """(scheme, host[:port]) the browser reached this collector at.

    Behind a trusted proxy (FUNNELHOUSE_TRUSTED_PROXIES) its X-Forwarded-Proto/-Host
    name the public address; otherwise the request's own scheme and Host header do.
    """
    scheme, host = request.url.scheme, request.url.netloc
    client = request.scope.get("client")
    peer = client[0] if client else ""
    if peer and settings.is_trusted_proxy(peer):
        headers: Mapping[str, str] = request.headers
        forwarded_proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        forwarded_host = headers.get("x-forwarded-host", "").split(",")[0].strip()
        if forwarded_proto in ("http", "https"):
            scheme = forwarded_proto
        if forwarded_host:
            host = forwarded_host
    return scheme, host


def segment_document(key: WriteKey, origin: tuple[str, str]) -> dict[str, Any]:
    """analytics-next's CDN settings: only its own Segment.io destination, sending here.

    analytics-next posts to `{protocol}://{apiHost}/{t|p|i|a|g|s}` (and `{apiHost}/b` when
    batching), so apiHost carries the `/v1` prefix, as Segment's own `api.segment.io/v1`.
    """
    scheme, host = origin
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": key.key,
                "apiHost": f"{host}/v1",
                "protocol": scheme,
                "unbundledIntegrations": [],
                # `_metadata` lists Segment's own device-mode bundles: none here.
                "addBundledMetadata": False,
            },
        },
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # No remote metrics: by default they would be posted to api.segment.io.
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_document(key: WriteKey) -> dict[str, Any]:
    """analytics-js v3's source config: an enabled source with no device-mode destinations.

    The SDK needs `source.id`, `source.config` and a `destinations` list, and stops on
    `enabled: false`; error and metrics reporting stay off (they would post elsewhere).
    """
    return {
        "isHosted": False,
        "source": {
            "id": key.source,
            "name": key.source,
            "writeKey": key.key,
            "enabled": True,
            "workspaceId": "funnelhouse",
            "config": {"statsCollection": {"errors": {"enabled": False},
                                           "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


def json_response(document: Mapping[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, headers=HEADERS,
                    media_type="application/json")
