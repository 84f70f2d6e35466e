"""Events from the tools a team already uses: install postbacks from mobile measurement
partners (AppsFlyer-style) and push-click webhooks from push providers (OneSignal-style),
mapped to `app_install` and `push_open` and ingested like any other event.

* `POST /v1/partners/appsflyer`: AppsFlyer's Push API, one JSON object per event;
  `GET` with the same fields in the query string, for a postback URL template of macros.
* `POST /v1/partners/onesignal`: OneSignal webhooks (`notification.clicked`), JSON or
  text/plain; `?channel=web|app` says where the push was opened.

The write key is read as on every route (Basic auth user, `X-Write-Key`, `?writeKey=`).
Install postbacks need a server key: an install's media source becomes the person's
first touch, which a browser key must not be able to claim; server keys may also send
the install's historical time and the device's IP. Push webhooks take either kind: web
push webhooks are sent by the browser itself, so only a browser key belongs in their URL.
Answers are those of /v1/batch (`accepted`, `duplicates`, `rejected`, `code`/`message`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from funnelhouse.collector.body import check_content_type, parse_json, read_body, request_headers
from funnelhouse.collector.partner_mapping import appsflyer_message, onesignal_message
from funnelhouse.collector.reasons import EVENT_STATUS, Refusal
from funnelhouse.config import WriteKey

if TYPE_CHECKING:
    from funnelhouse.collector.app import Collector

ToMessage = Callable[[Mapping[str, Any], str], dict[str, Any]]
APPSFLYER_PATH = "/v1/partners/appsflyer"
ONESIGNAL_PATH = "/v1/partners/onesignal"
# Query parameters that say how to read the request rather than describe the event.
ROUTE_PARAMS = ("writekey", "write_key", "channel")
CHANNELS = ("web", "app")


class PartnerEndpoints:
    """The partner routes; they hand their messages to the collector's one ingest path."""

    def __init__(self, collector: Collector) -> None:
        # app.py imports this module for partner_routes: its helpers are read at build time.
        from funnelhouse.collector.app import ORJSONResponse, refusal_response

        self.collector = collector
        self._json = ORJSONResponse
        self._refused = refusal_response

    async def appsflyer(self, request: Request) -> Response:
        return await self._handle(request, appsflyer_message, server_key_only=True)

    async def onesignal(self, request: Request) -> Response:
        return await self._handle(request, onesignal_message, server_key_only=False)

    @staticmethod
    def _channel(request: Request, key: WriteKey) -> str:
        """Where the event happened: `?channel=web|app`; else a browser key's webhook came
        from a web push (the browser sends it), a server key's from a provider's servers
        about an app (a push open is never a "server" event)."""
        stated = request.query_params.get("channel", "")
        if stated in CHANNELS:
            return stated
        return "web" if key.kind == "browser" else "app"

    async def _handle(self, request: Request, to_message: ToMessage, *,
                      server_key_only: bool) -> Response:
        if request.method == "HEAD":
            # Starlette answers HEAD on GET routes; a link check or a partner validating
            # the URL is not an install.
            return Response(status_code=200)
        collector = self.collector
        try:
            headers = request_headers(request)
            info = collector._request_info(request, headers, None)
            if server_key_only and info.write_key.kind != "server":
                raise Refusal("unauthorized", "install postbacks take a server write key: "
                              "a browser key may not credit installs to a media source")
            payloads = await self._payloads(request, headers)
            channel = self._channel(request, info.write_key)
            messages = [to_message(p, channel) if isinstance(p, dict) else p for p in payloads]
            outcome = await collector._run(messages, info, None)
        except Refusal as refusal:
            return self._refused(refusal)
        status = 200
        if outcome.rejected and not outcome.accepted and not outcome.duplicates:
            # As /v1/batch: nothing stored as valid, so the status says why (the payload
            # is in the dead letter); partners retry 5xx, not 4xx.
            status = EVENT_STATUS.get(outcome.rejected[0].reason, 400)
        return self._json(outcome.as_json(), status_code=status)

    async def _payloads(self, request: Request, headers: Mapping[str, str]) -> list[Any]:
        """One payload from the query string (GET), or a JSON object or list (POST)."""
        if request.method == "GET":
            fields = {name: value for name, value in request.query_params.items()
                      if name.lower() not in ROUTE_PARAMS}
            if not fields:
                raise Refusal("bad_parameter", "a GET postback carries its fields in the "
                              "query string, e.g. ?event_name=install&appsflyer_id=…")
            return [fields]
        check_content_type(headers)
        limits = self.collector.settings.limits
        body = parse_json(await read_body(request, headers, limits))
        if isinstance(body, dict):
            return [body]
        if not isinstance(body, list):
            raise Refusal("bad_batch", "a postback is a JSON object (or a list of them)")
        if len(body) > limits.max_events_per_batch:
            raise Refusal("too_many_events", f"{len(body)} postbacks in one request; limit "
                          f"{limits.max_events_per_batch}")
        return body


def partner_routes(collector: Collector) -> list[BaseRoute]:
    endpoints = PartnerEndpoints(collector)
    routes: list[BaseRoute] = []
    for path, endpoint, methods in ((APPSFLYER_PATH, endpoints.appsflyer, ["GET", "POST"]),
                                    (ONESIGNAL_PATH, endpoints.onesignal, ["POST"])):
        # A trailing slash is the same route, as for the ingest paths.
        routes += [Route(path, endpoint, methods=methods),
                   Route(path + "/", endpoint, methods=methods)]
    return routes
