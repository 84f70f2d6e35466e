"""Reading a request body: size cap, gzip (by header or magic bytes), charset, JSON."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request

from funnelhouse.collector.reasons import Refusal
from funnelhouse.config import Limits

GZIP_MAGIC = b"\x1f\x8b"
# sendBeacon can only send text/plain (or a Blob's type) without a preflight.
JSON_TYPES = ("application/json", "text/plain", "application/x-json", "")
# rudder-sdk-node posts gzipped JSON through axios without naming a type, and axios
# labels a Buffer application/x-www-form-urlencoded: with `Content-Encoding: gzip` that
# type is taken as JSON (a real form is never gzipped by a browser).
GZIPPED_JSON_TYPES = ("application/x-www-form-urlencoded",)


def request_headers(request: Request) -> dict[str, str]:
    """The request's headers as a plain dict (names lowercased; the first of repeats)."""
    # Starlette's Headers scans the raw list on every lookup; a request needs a dozen.
    return {name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(request.scope["headers"])}


async def read_body(request: Request, headers: Mapping[str, str], limits: Limits) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise Refusal("body_too_large", f"body is {declared} bytes; limit {limits.max_body_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise Refusal("body_too_large", f"body exceeds {limits.max_body_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = headers.get("content-encoding", "").lower()
    if encoding == "gzip" or body[:2] == GZIP_MAGIC:
        body = gunzip_capped(body, limits.max_decompressed_bytes)
    elif encoding not in ("", "identity"):
        raise Refusal("bad_compression", f"content-encoding {encoding!r} is not supported")
    return body


def gunzip_capped(data: bytes, cap: int) -> bytes:
    """Decompress, refusing to inflate past `cap` bytes (a zip bomb costs us nothing)."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, cap + 1)
    except zlib.error as exc:
        raise Refusal("bad_compression", f"body is not valid gzip: {exc}") from exc
    if len(out) > cap or decompressor.unconsumed_tail:
        raise Refusal("body_too_large", f"decompressed body exceeds {cap} bytes")
    if not decompressor.eof:
        raise Refusal("bad_compression", "gzip body is truncated")
    return out


def check_content_type(headers: Mapping[str, str]) -> None:
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    gzipped = headers.get("content-encoding", "").lower() == "gzip"
    if media_type not in JSON_TYPES and not (gzipped and media_type in GZIPPED_JSON_TYPES):
        raise Refusal("unsupported_content_type",
                      f"content-type {media_type!r}; send application/json or text/plain")
    charset = _charset(content_type)
    if charset and charset not in ("utf-8", "utf8"):
        raise Refusal("unsupported_content_type", f"charset {charset!r}; send utf-8")


def parse_json(body: bytes) -> Any:
    if not body or body.isspace():  # not strip(): that copies the whole body
        raise Refusal("malformed_json", "empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson reports invalid UTF-8 as a decode error too; name it for what it is.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise Refusal("bad_encoding", f"body is not valid UTF-8 at byte {bad.start}") from exc
        raise Refusal("malformed_json", f"body is not valid JSON: {exc}") from exc


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset":
            return value.strip().strip('"').lower()
    return ""
