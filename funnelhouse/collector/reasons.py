"""The named reasons a request or an event is refused, and the HTTP status of each.

One small taxonomy (after Snowplow's bad rows), used alike in HTTP answers, in
events_invalid, in metrics and in logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Request-level: the whole request is refused, nothing from it is stored.
REQUEST_STATUS = {
    "malformed_json": 400,
    "bad_encoding": 400,
    "bad_batch": 400,
    "bad_compression": 400,
    "unsupported_content_type": 415,
    "body_too_large": 413,
    "too_many_events": 413,
    "unknown_write_key": 401,
    "origin_not_allowed": 403,
    "rate_limited": 429,
    "unauthorized": 401,
    "bad_parameter": 400,        # a query parameter that is not what the route takes
    "request_timeout": 408,      # headers or body not received within the timeout
    "queue_unavailable": 503,
}

# Event-level: the event goes to the dead-letter stream; the rest of the batch is kept.
EVENT_STATUS = {
    "not_an_object": 400,
    "event_too_large": 413,
    "too_deep": 400,
    "string_too_long": 400,
    "envelope_violation": 400,
    "schema_violation": 400,
    "unknown_event": 400,
    "unexpected_property": 400,
}


@dataclass
class Refusal(Exception):
    """A request-level refusal, raised anywhere while reading a request."""

    reason: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return REQUEST_STATUS[self.reason]

    def body(self) -> dict[str, str]:
        return error_body(self.reason, self.message)


def error_body(reason: str, message: str) -> dict[str, str]:
    """An error answer every client family reads: `code`/`message` are what Segment's and
    RudderStack's libraries parse (rudder-sdk-python raises KeyError and retries without
    them); `reason`/`error` are this collector's own names for the same two things."""
    return {"code": reason, "message": message, "reason": reason, "error": message}
