"""The OpenAPI description of the HTTP API, served at /openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

_MESSAGE = {
    "type": "object",
    "description": "A Segment-spec message; camelCase or snake_case keys.",
    "properties": {
        "type": {"type": "string", "enum": ["track", "page", "screen", "identify", "alias",
                                            "group"]},
        "event": {"type": "string"},
        "messageId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "userId": {"type": "string"},
        "previousId": {"type": "string"},
        "groupId": {"type": "string"},
        "timestamp": {"type": "string"},
        "sentAt": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
    },
}
# `code`/`message` are what Segment's and RudderStack's libraries read; `reason`/`error`
# carry the same for everyone else.
_REFUSAL = {"type": "object", "properties": {"code": {"type": "string"},
                                             "message": {"type": "string"},
                                             "error": {"type": "string"},
                                             "reason": {"type": "string"}}}
_OUTCOME = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "code": {"type": "string", "description": "the first refusal's reason, if any"},
        "message": {"type": "string"},
        "rejected": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "message_id": {"type": "string"},
            "reason": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {
                "path": {"type": "string"}, "message": {"type": "string"}}}}}}},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    refusal = {"description": "", **_json(_REFUSAL)}
    return {
        "200": {"description": "Stored durably (partially: see `rejected`)", **_json(ok)},
        "400": {"description": "Malformed input or every event invalid", **_json(_OUTCOME)},
        "401": {**refusal, "description": "Unknown write key"},
        "403": {**refusal, "description": "Origin not allowed for this key"},
        "413": {**refusal, "description": "Body, batch or event too large"},
        "415": {**refusal, "description": "Unsupported content type"},
        "429": {**refusal, "description": "Rate limited; see Retry-After"},
        "503": {**refusal, "description": "Could not store durably; retry"},
    }


def _ingest(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "security": [{"basic": []}, {"writeKeyHeader": []}, {"writeKeyQuery": []}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": body}, "text/plain": {"schema": {"type": "string"}}}},
        "responses": _responses(_OUTCOME),
    }}


@cache
def openapi_document() -> dict[str, Any]:
    batch = {"type": "object", "required": ["batch"], "properties": {
        "batch": {"type": "array", "items": _MESSAGE}, "sentAt": {"type": "string"},
        "writeKey": {"type": "string"},
        "context": {"type": "object", "description": "applied to every message of the batch "
                                                    "(a message's own keys win)"},
        "integrations": {"type": "object"}}}
    paths: dict[str, Any] = {"/v1/batch": _ingest("A batch of messages", batch)}
    for alias in ("/v1/import", "/v1/b", "/beacon/v1/batch"):
        paths[alias] = _ingest("A batch of messages (same as /v1/batch)", batch)
    for kind in ("track", "page", "screen", "identify", "alias", "group"):
        paths[f"/v1/{kind}"] = _ingest(f"One {kind} message", _MESSAGE)
        paths[f"/v1/{kind[0]}"] = _ingest(f"One {kind} message (analytics-next's path)",
                                          _MESSAGE)
    paths["/v1/p.gif"] = {"get": {
        "summary": "Tracking pixel: one event from the query string; answers a 1×1 GIF",
        "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                       for n in ("writeKey", "data", "type", "event", "anonymousId", "userId",
                                 "messageId", "url", "title", "referrer")],
        "responses": {str(code): {"description": d, "content": {"image/gif": {}}}
                      for code, d in ((200, "Stored"), (400, "Invalid"), (401, "Unknown key"),
                                      (429, "Rate limited"), (503, "Not stored"))},
    }}
    paths["/v1/debug/events"] = {"get": {
        "summary": "Last events per source with their validation result (tagging QA)",
        "security": [{"admin": []}],
        "parameters": [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                       for n in ("source", "event", "person", "invalid", "limit")],
        "responses": {"200": {"description": "Recent events"},
                      "401": {"description": "Admin token required"}},
    }}
    paths["/v1/sql"] = {"post": {
        "summary": "Read-only SQL over the warehouse",
        "security": [{"admin": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["sql"], "properties": {
                "sql": {"type": "string"}, "format": {"type": "string",
                                                      "enum": ["json", "csv"]}}}}}},
        "responses": {"200": {"description": "Result"}, "400": {"description": "Refused"},
                      "401": {"description": "Admin token required"}},
    }}
    refusals = {"400": {"description": "Refused (code, message)", "content": {
        "application/json": {"schema": _REFUSAL}}}, "401": {"description": "Unknown key"}}
    paths["/v1/partners/appsflyer"] = {method: {
        "summary": "Install postback (AppsFlyer-style push API) → app_install; server key",
        "security": [{"basic": []}, {"writeKeyQuery": []}],
        "responses": {"200": {"description": "Stored (or a duplicate)"}, **refusals},
    } for method in ("get", "post")}
    paths["/v1/partners/onesignal"] = {"post": {
        "summary": "Push-click webhook (OneSignal-style notification.clicked) → push_open",
        "security": [{"basic": []}, {"writeKeyQuery": []}],
        "responses": {"200": {"description": "Stored (or a duplicate)"}, **refusals},
    }}
    paths["/v1/projects/{writeKey}/settings"] = {"get": {
        "summary": "Settings Segment's analytics-next fetches from cdnURL (browser keys)",
        "parameters": [{"name": "writeKey", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "Settings pointing the SDK here"},
                      "404": {"description": "Unknown write key"}}}}
    paths["/sourceConfig"] = {"get": {
        "summary": "Source config RudderStack's analytics-js fetches from configUrl",
        "security": [{"basic": []}, {"writeKeyQuery": []}],
        "responses": {"200": {"description": "An enabled source, no destinations"},
                      "401": {"description": "Unknown write key"}}}}
    for path in ("/healthz", "/readyz", "/metrics"):
        paths[path] = {"get": {"summary": path[1:], "responses": {
            "200": {"description": "OK"}, "503": {"description": "Not ready"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "funnelhouse collector", "version": "1",
                 "description": "Segment/RudderStack-compatible event collection."},
        "paths": paths,
        "components": {"securitySchemes": {
            "basic": {"type": "http", "scheme": "basic",
                      "description": "write key as user, empty password"},
            "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
            "writeKeyQuery": {"type": "apiKey", "in": "query", "name": "writeKey"},
            "admin": {"type": "http", "scheme": "bearer"},
        }},
    }
