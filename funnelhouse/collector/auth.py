"""Who is sending: the write key (four places it may be) and the admin token."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from funnelhouse.collector.reasons import Refusal
from funnelhouse.config import Settings, WriteKey


def write_key_of(request: Request, headers: Mapping[str, str], body: Any = None) -> str:
    """Basic auth user, X-Write-Key header, `writeKey` in the body, or in the query string."""
    authorization = headers.get("authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            user = base64.b64decode(authorization[6:]).decode("utf-8").split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user:
            return user
    header = headers.get("x-write-key")
    if header:
        return header
    if isinstance(body, dict):
        key = body.get("writeKey") or body.get("write_key")
        if isinstance(key, str) and key:
            return key
    return request.query_params.get("writeKey") or request.query_params.get("write_key") or ""


def resolve_write_key(keys: Mapping[str, WriteKey], request: Request,
                      headers: Mapping[str, str], body: Any = None) -> WriteKey:
    """The write key of a request; `keys` maps each key to its settings."""
    key = write_key_of(request, headers, body)
    if not key:
        raise Refusal("unknown_write_key", "no write key: send it as Basic auth user, "
                      "X-Write-Key header, writeKey in the body or the query string")
    write_key = keys.get(key)
    if write_key is None:
        raise Refusal("unknown_write_key", "write key is not known")
    origin = headers.get("origin")
    if origin and write_key.allowed_origins and origin not in write_key.allowed_origins:
        raise Refusal("origin_not_allowed", f"origin {origin} may not use this write key")
    return write_key


# Longer than any token we issue by far; refuse before comparing megabytes of header.
MAX_TOKEN_BYTES = 1024


def _raw_header(request: Request, name: bytes) -> bytes:
    """A header's bytes as sent (names are lowercased by the server)."""
    for key, value in request.scope.get("headers", ()):
        if key == name:
            return value
    return b""


def admin_token_of(request: Request) -> bytes:
    """`Authorization: Bearer …` or `X-Admin-Token`, as raw bytes."""
    authorization = _raw_header(request, b"authorization")
    token = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else b""
    return token or _raw_header(request, b"x-admin-token").strip()


def require_admin(settings: Settings, request: Request) -> None:
    # Compared as bytes: hmac.compare_digest raises TypeError on non-ASCII str, and a
    # header may carry any byte (`Bearer t\xe9` was a 500 on every admin route).
    token = admin_token_of(request)
    expected = settings.admin_token.encode("utf-8")
    if not expected or not token or len(token) > MAX_TOKEN_BYTES \
            or not hmac.compare_digest(token, expected):
        raise Refusal("unauthorized", "admin token required (Authorization: Bearer …)")
