"""One request's messages: normalise → validate → enrich → enqueue, event by event.

A batch is accepted per event: each event either becomes an events_raw row or a
dead-letter row with every error, and the answer lists what was refused and why.
Nothing reaches the queue until the whole request's rows are built, and the answer
is sent only after the queue said the rows are durable.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from funnelhouse.collector import metrics
from funnelhouse.collector.contexts import (
    ContextFacts,
    ContextMemo,
    as_dict,
    as_text,
    device_fields,
    members,
    page_fields,
    referrer_text,
)
from funnelhouse.collector.enrich.campaign import classify_traffic
from funnelhouse.collector.enrich.ip import anonymise_ip
from funnelhouse.collector.enrich.personal import scrub_fields
from funnelhouse.collector.enrich.time import (
    correct_timestamp,
    format_ts,
    parse_timestamp,
    sdk_text,
)
from funnelhouse.collector.enrich.useragent import parse_user_agent
from funnelhouse.collector.limits import DedupWindow
from funnelhouse.collector.normalise import LimitExceeded
from funnelhouse.collector.plan import TrackingPlan, Verdict
from funnelhouse.collector.sinks.base import Record, Sink
from funnelhouse.config import Limits, Settings, WriteKey

# The event name a non-track call is stored under.
EVENT_OF_TYPE = {"page": "page_view", "screen": "screen_view", "identify": "identify",
                 "alias": "alias", "group": "group"}
MESSAGE_TYPES = ("track", *EVENT_OF_TYPE)
CHANNELS = ("web", "app", "server", "offline")
STATED_CHANNELS = {**{channel: channel for channel in CHANNELS}, "mobile": "app"}
OFFLINE_EVENTS = ("store_visit", "staff_qr_scan")


class RequestInfo(NamedTuple):
    """What the collector knows about the request, beside its body (made per request:
    a NamedTuple, immutable like the frozen dataclass it was, at a fraction of its cost).
    """

    write_key: WriteKey
    ip: str
    user_agent: str
    received_at: float
    sent_at: Any = None              # batch-level sentAt
    privacy_signal: bool = False     # Sec-GPC / DNT: do not keep the IP


@dataclass
class Rejection:
    index: int
    message_id: str
    reason: str
    errors: list[dict[str, str]]

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "message_id": self.message_id, "reason": self.reason,
                "errors": self.errors}


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    dedup_keys: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"accepted": self.accepted, "duplicates": self.duplicates,
                                  "rejected": [r.as_json() for r in self.rejected]}
        if self.rejected:
            # Segment/RudderStack clients read `code` and `message` from a refusal.
            first = self.rejected[0]
            detail = f": {first.errors[0]['path']} {first.errors[0]['message']}" \
                if first.errors else ""
            answer["code"] = first.reason
            answer["message"] = (f"{len(self.rejected)} event(s) refused (in the "
                                 f"dead-letter); first, #{first.index}{detail}")
        return answer


@dataclass
class DebugEntry:
    received_at: float
    source: str
    event: str
    message_id: str
    anonymous_id: str
    user_id: str
    valid: bool
    reason: str
    errors: list[dict[str, str]]
    flags: list[str]
    payload: Any


class _Call:
    """One request's shared state while its events are processed, worked out once."""

    __slots__ = ("batch_sent_at", "forced_type", "key", "limits", "outcome", "ip_policy",
                 "received_at", "refused", "request", "request_ip", "seen", "source",
                 "request_members", "_formatted")

    def __init__(self, request: RequestInfo, limits: Limits, forced_type: str | None,
                 ip_salt: bytes) -> None:
        self.request = request
        self.key = request.write_key
        self.source = request.write_key.source
        self.limits = limits
        self.forced_type = forced_type
        self.outcome = Outcome()
        self.seen: set[str] = set()                     # dedup keys accepted in this request
        # dedup key -> (payload bytes, reason, errors, _reject keywords) of an event
        # refused earlier in this request, for its byte-identical copies.
        self.refused: dict[str, tuple[Any, ...]] = {}
        self.received_at = format_ts(request.received_at)
        self.batch_sent_at = parse_timestamp(request.sent_at)
        self.ip_policy = "drop" if request.privacy_signal else self.key.ip_policy
        self.request_ip = anonymise_ip(request.ip, self.ip_policy, ip_salt)
        self._formatted: dict[float, str] = {}
        # (the context names the user agent, the IP it gives) -> the row's request
        # fields as members, is a bot (Ingestor._request_members)
        self.request_members: dict[tuple[bool, str], tuple[bytes, bool]] = {}

    def remember_text(self, epoch_seconds: float, text: str | None) -> None:
        """The formatted text of a time already known (see enrich.time.sdk_text)."""
        if text is not None:
            self._formatted[epoch_seconds] = text

    def formatted(self, epoch_seconds: float) -> str:
        """format_ts, remembered: events of one request mostly share sent_at."""
        text = self._formatted.get(epoch_seconds)
        if text is None:
            text = self._formatted[epoch_seconds] = format_ts(epoch_seconds)
        return text


class Ingestor:
    def __init__(self, settings: Settings, plan: TrackingPlan, sink: Sink | None = None,
                 debug_size: int = 200) -> None:
        self.settings = settings
        self.plan = plan
        self.sink = sink
        # The live collector (with a sink) keeps its window in the data folder, so a
        # restart does not forget it; a replay's throwaway Ingestor does not.
        self.dedup = DedupWindow(settings.dedup_window_seconds, settings.dedup_window_size,
                                 settings.data_dir / "dedup.sqlite3" if sink else None)
        # Per source, the last events as DebugEntry field tuples (a tuple is ~5× cheaper
        # to make, and every event is remembered while few are ever looked at).
        self._debug: dict[str, deque[tuple[Any, ...]]] = {}
        self._debug_size = debug_size
        self._accepted: dict[str, Any] = {}  # source -> its events_accepted counter
        self._ip_salt = hashlib.sha256(settings.admin_token.encode() or b"funnelhouse").digest()
        self.contexts = ContextMemo()

    async def ingest(self, messages: list[Any], request: RequestInfo,
                     forced_type: str | None = None) -> Outcome:
        """Build rows for every message, make them durable, then remember their ids.

        Raises QueueUnavailable (→ 503) when the rows could not be stored.
        """
        outcome = self.process(messages, request, forced_type)
        if outcome.records:
            assert self.sink is not None
            await self.sink.publish(outcome.records)
        # Only after the publish: a retry of a request that got a 503 must not be
        # mistaken for a repeat of something stored.
        self.dedup.add_all(outcome.dedup_keys)
        if outcome.accepted:
            source = request.write_key.source
            accepted = self._accepted.get(source)
            if accepted is None:  # labels() costs more than inc(): look it up once
                accepted = self._accepted[source] = metrics.events_accepted.labels(source)
            accepted.inc(outcome.accepted)
        if outcome.duplicates:
            metrics.events_duplicate.inc(outcome.duplicates)
        for rejection in outcome.rejected:
            metrics.events_rejected.labels(rejection.reason).inc()
        return outcome

    def process(self, messages: list[Any], request: RequestInfo,
                forced_type: str | None = None) -> Outcome:
        call = _Call(request, self.settings.limits, forced_type, self._ip_salt)
        for index, message in enumerate(messages):
            self._process_one(index, message, call)
        return call.outcome

    def _process_one(self, index: int, raw: Any, call: _Call) -> None:
        request, limits, outcome = call.request, call.limits, call.outcome
        if not isinstance(raw, dict):
            # Cut to the depth limit: a non-object nested past what orjson writes (255
            # levels) is still stored, as its first levels, flagged truncated.
            shown, truncated = _cut_deep(raw, limits.max_depth)
            shown_bytes = orjson.dumps(shown)
            self._reject(outcome, index, shown, request,
                         _message_id({}, shown_bytes, call.source), "not_an_object",
                         [{"path": f"$[{index}]", "message": "an event must be a JSON object"}],
                         raw_bytes=shown_bytes, truncated=truncated)
            return
        try:
            raw_bytes = orjson.dumps(raw)
        except orjson.JSONEncodeError:
            # orjson reads 1024 levels of nesting but writes only 255: far past max_depth.
            # Its first levels are stored, flagged truncated, so the dead letter can be
            # read and replay skips it with a reason instead of failing on it.
            shown, _ = _cut_deep(raw, limits.max_depth)
            shown_bytes = orjson.dumps(shown)
            self._reject(outcome, index, shown, request,
                         _message_id(raw, shown_bytes, call.source),
                         "too_deep",
                         [{"path": "$", "message": f"nesting deeper than {limits.max_depth} "
                                                   "levels"}],
                         raw_bytes=shown_bytes, truncated=True)
            return
        message_id = _message_id(raw, raw_bytes, call.source)
        dedup_key = f"{call.source}:{message_id}"
        earlier = call.refused.get(dedup_key)
        if earlier is not None and earlier[0] == raw_bytes:
            # A byte-identical copy of an event refused earlier in this request is
            # refused alike (not counted as a duplicate of something stored), and
            # dead-lettered like every refused event listed in the answer.
            reason, errors, details = earlier[1:]
            self._reject(outcome, index, raw, request, message_id, reason, errors, **details)
            return
        if len(raw_bytes) > limits.max_event_bytes:
            self._reject(outcome, index, raw, request, message_id, "event_too_large",
                         [{"path": "$", "message": f"event is {len(raw_bytes)} bytes; "
                                                   f"limit {limits.max_event_bytes}"}],
                         raw_bytes=raw_bytes[: limits.max_event_bytes], truncated=True)
            call.refused[dedup_key] = (raw_bytes, "event_too_large", outcome.rejected[-1].errors,
                                       {"raw_bytes": raw_bytes[: limits.max_event_bytes],
                                        "truncated": True})
            return
        try:
            message, facts = self.contexts.normalise(raw, max_depth=limits.max_depth,
                                                     max_string=limits.max_string_length,
                                                     encoded_size=len(raw_bytes))
        except LimitExceeded as exc:
            self._reject(outcome, index, raw, request, message_id, exc.reason,
                         [{"path": exc.path, "message": exc.message}], raw_bytes=raw_bytes)
            call.refused[dedup_key] = (raw_bytes, exc.reason, outcome.rejected[-1].errors,
                                       {"raw_bytes": raw_bytes})
            return
        # Segment's libraries send absent fields as null (`"category": null` on every
        # screen call); at the top of a message null means "not given".
        if None in message.values():
            for name in [name for name, value in message.items() if value is None]:
                del message[name]

        # First copy wins: a message_id already accepted (in this request or the
        # window) is a duplicate whatever its payload. A refused one is not "seen": a
        # corrected copy with the same id may follow it.
        if dedup_key in self.dedup or dedup_key in call.seen:
            outcome.duplicates += 1
            return

        properties = message.get("properties")
        if properties.__class__ is dict and "products" in properties \
                and "items" not in properties:
            # Segment's ecommerce spec names an order's lines `products`; the plan, `items`.
            properties["items"] = properties.pop("products")
        message_type = call.forced_type or message.get("type") or "track"
        message["type"] = message_type
        message["message_id"] = message_id
        if message_type == "track":
            sent = message.get("event")
            message["event"] = self.plan.canonical_event(sent) if isinstance(sent, str) else sent
        elif isinstance(message_type, str) and message_type in EVENT_OF_TYPE:
            message["event"] = EVENT_OF_TYPE[message_type]
        key = call.key
        verdict = self.plan.validate(message, unknown_events=key.unknown_events,
                                     extra_properties=key.extra_properties)
        if not verdict.ok:
            errors = [{"path": e.path, "message": e.message} for e in verdict.errors]
            reason = verdict.errors[0].reason if verdict.errors else "schema_violation"
            self._reject(outcome, index, raw, request, message_id, reason, errors,
                         raw_bytes=raw_bytes, event=str(message.get("event") or ""),
                         message_type=str(message_type), schema_version=verdict.schema_version)
            call.refused[dedup_key] = (raw_bytes, reason, errors, {
                "raw_bytes": raw_bytes, "event": str(message.get("event") or ""),
                "message_type": str(message_type), "schema_version": verdict.schema_version})
            return
        call.seen.add(dedup_key)

        value, event, anonymous_id, user_id, flags = self._row(message, call, verdict, facts)
        outcome.records.append(Record("events", f"{call.source}:{anonymous_id or user_id}",
                                      value))
        outcome.dedup_keys.append(dedup_key)
        outcome.accepted += 1
        self._remember(request, event, message_id, anonymous_id, user_id, True, "", [], flags,
                       raw)

    def _row(self, message: dict[str, Any], call: _Call, verdict: Verdict,
             facts: ContextFacts) -> tuple[bytes, str, str, str, list[str]]:
        """The events_raw row as JSON, and its event, anonymous_id, user_id and flags.

        Only the event's own fields are built and serialised here. The rest are joined
        as bytes: the context's (ContextFacts' members, serialised once per context) and
        the request's (once per request, _request_members). The events of a batch, and
        a device's requests, share a context: building and serialising its 33 fields
        again for each event cost 15% of a batched event.
        """
        request, key, limits = call.request, call.key, call.limits
        get = message.get
        properties = as_dict(get("properties"))
        traits = get("traits")
        traits_json = None
        if traits.__class__ is not dict:
            traits, traits_json = facts.traits, facts.traits_json
        if key.hash_fields or key.drop_fields:
            properties, traits = scrub_fields(properties, traits, hash_fields=key.hash_fields,
                                              drop_fields=key.drop_fields, salt=self._ip_salt)
            traits_json = None
        message_type = message["type"]
        if message_type == "page":
            page = _page_members(properties, facts)
        else:
            page = facts.page_members
        shared, is_bot = self._request_members(call, facts)

        original_at = get("timestamp") or get("original_timestamp")
        sent_at_given = get("sent_at") or request.sent_at
        parsed = None if original_at is None else parse_timestamp(original_at)
        if parsed is not None:
            call.remember_text(parsed, sdk_text(original_at))
        timestamp, original, sent_at, time_flags = correct_timestamp(
            parsed,
            call.batch_sent_at if sent_at_given is request.sent_at
            else parse_timestamp(sent_at_given),
            request.received_at,
            key_kind=key.kind,
            max_future_skew_seconds=limits.max_future_skew_seconds,
            max_past_days_browser=limits.max_past_days_browser,
        )
        flags = [*verdict.flags, *time_flags]
        if is_bot:
            flags.append("bot")
        event = verdict.event or str(get("event") or "")
        anonymous_id, user_id = as_text(get("anonymous_id")), as_text(get("user_id"))
        formatted = call.formatted
        screen_name = facts.screen_name
        if not screen_name and message_type == "screen":
            screen_name = as_text(get("name"))
        own = orjson.dumps({
            "message_id": message["message_id"],
            "type": message_type,
            "event": event,
            "anonymous_id": anonymous_id,
            "user_id": user_id,
            "previous_id": as_text(get("previous_id")),
            "group_id": as_text(get("group_id")),
            "original_timestamp": formatted(original),
            "sent_at": formatted(sent_at),
            "timestamp": formatted(timestamp),
            "channel": _channel(facts, get("channel"), key, message_type, event),
            "screen_name": screen_name,
            "properties": orjson.dumps(properties).decode(),
            "traits": traits_json if traits_json is not None
            else orjson.dumps(traits).decode(),
            "schema_version": verdict.schema_version,
            "flags": flags,
        })
        # `own` ends with its closing brace; the other members go before it.
        row = b"".join((memoryview(own)[:-1], page, shared, facts.tail_members, b"}"))
        return row, event, anonymous_id, user_id, flags

    def _request_members(self, call: _Call, facts: ContextFacts) -> tuple[bytes, bool]:
        """The row's fields that follow from the request (with what the context says of
        the device and the IP), as `members`, and whether the device is a bot."""
        key = call.key
        # Server keys speak for their users and may pass the user's IP; a browser's
        # body cannot claim an IP other than the one it connects from.
        given_ip = as_text(facts.given_ip) if key.kind == "server" and facts.given_ip else ""
        context_agent = facts.agent
        known = call.request_members.get((context_agent is not None, given_ip))
        if known is not None:
            return known
        fields: dict[str, Any] = {
            "received_at": call.received_at,
            "source": key.source,
            "ip": anonymise_ip(given_ip, call.ip_policy, self._ip_salt) if given_ip
            else call.request_ip,
        }
        if context_agent is not None:  # the context's device is in its tail_members
            is_bot = context_agent.is_bot
        else:
            # The request's own user agent describes the end user's device only when
            # the device itself sent it (browser keys: SDKs, beacons, pixels). From a
            # server it names the server's HTTP library, which would make every such
            # event a "bot".
            user_agent = call.request.user_agent if key.kind == "browser" else ""
            agent = parse_user_agent(user_agent)
            fields.update(device_fields(agent, user_agent))
            is_bot = agent.is_bot
        known = call.request_members[(context_agent is not None, given_ip)] = (
            members(fields), is_bot)
        return known

    def _reject(self, outcome: Outcome, index: int, raw: Any, request: RequestInfo,
                message_id: str, reason: str, errors: list[dict[str, str]], *,
                raw_bytes: bytes | None = None, event: str = "", message_type: str = "",
                schema_version: str = "", truncated: bool = False) -> None:
        """Refuse one event: it goes to the dead-letter stream, never silently away."""
        if isinstance(raw, dict):
            event = event or as_text(raw.get("event"))
            message_type = message_type or as_text(raw.get("type"))
        key = request.write_key
        if raw_bytes is None:
            try:
                raw_bytes = orjson.dumps(raw)
            except orjson.JSONEncodeError:  # a non-object nested past 255 levels
                raw_bytes, raw = b"", None
        payload = raw_bytes.decode("utf-8", "replace")
        row = {
            "message_id": message_id,
            "received_at": format_ts(request.received_at),
            "source": key.source,
            "type": message_type,
            "event": event,
            "reason": reason,
            "errors": errors,
            "schema_version": schema_version,
            "payload": payload,
            # The payload is not the whole event (cut at the size or depth limit): replay
            # skips such a row with a reason instead of re-validating a fragment.
            "payload_truncated": int(truncated),
            "request": orjson.dumps({
                "ip": anonymise_ip(request.ip, "drop" if request.privacy_signal
                                   else key.ip_policy, self._ip_salt),
                "user_agent": request.user_agent,
                "key_kind": key.kind,
                "sent_at": request.sent_at if isinstance(request.sent_at, str) else None,
            }).decode(),
        }
        outcome.records.append(Record("invalid", f"{key.source}:{message_id}", orjson.dumps(row)))
        outcome.rejected.append(Rejection(index, message_id, reason, errors))
        anonymous_id = as_text(raw.get("anonymousId") or raw.get("anonymous_id")) \
            if isinstance(raw, dict) else ""
        user_id = as_text(raw.get("userId") or raw.get("user_id")) if isinstance(raw, dict) else ""
        self._remember(request, event, message_id, anonymous_id, user_id, False, reason, errors,
                       [], raw)

    def _remember(self, request: RequestInfo, event: str, message_id: str, anonymous_id: str,
                  user_id: str, valid: bool, reason: str, errors: list[dict[str, str]],
                  flags: list[str], payload: Any) -> None:
        """Keep the last few events per source for the tagging-QA debug view."""
        source = request.write_key.source
        recent = self._debug.get(source)
        if recent is None:
            recent = self._debug[source] = deque(maxlen=self._debug_size)
        recent.append((request.received_at, source, event, message_id, anonymous_id, user_id,
                       valid, reason, errors, flags, payload))

    def forget_entries(self, ids: set[str], pattern: re.Pattern[str]) -> int:
        """Drop the debug entries of a forgotten person (by id, or an id in the payload)."""
        removed = 0
        for source, recent in list(self._debug.items()):
            kept = [e for e in recent
                    if not (e[4] in ids or e[5] in ids
                            or pattern.search(_as_json_text(e[10])))]
            removed += len(recent) - len(kept)
            self._debug[source] = deque(kept, maxlen=self._debug_size)
        return removed

    def debug_entries(self, source: str | None = None) -> list[DebugEntry]:
        """The remembered events of one source (or all), oldest first per source."""
        return [DebugEntry(*fields) for name, recent in self._debug.items()
                if not source or name == source for fields in recent]


def _page_members(properties: dict[str, Any], facts: ContextFacts) -> bytes:
    """A page call's page and traffic fields, as `members`: Segment's page call carries
    the page in properties, and context.page may be absent."""
    page = {**{k: properties.get(k) for k in ("url", "path", "title", "referrer", "search")
               if properties.get(k)},
            **facts.page}
    url = as_text(page.get("url"))
    referrer = referrer_text(page.get("referrer")) or facts.context_referrer
    return members(page_fields(url, as_text(page.get("path")), as_text(page.get("title")),
                               as_text(page.get("search")), referrer,
                               classify_traffic(url, referrer, facts.campaign)))


def _cut_deep(value: Any, max_depth: int, depth: int = 0) -> tuple[Any, bool]:
    """`value` with containers past `max_depth` levels replaced by a marker; and whether any was.

    Recursion stops at max_depth, so a value nested 1,000 levels deep is safe to walk.
    """
    if isinstance(value, dict | list) and depth >= max_depth:
        return f"(cut: nested deeper than {max_depth} levels)", True
    if isinstance(value, dict):
        pairs = [(k, _cut_deep(v, max_depth, depth + 1)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, any(cut for _, (_, cut) in pairs)
    if isinstance(value, list):
        items = [_cut_deep(v, max_depth, depth + 1) for v in value]
        return [v for v, _ in items], any(cut for _, cut in items)
    return value, False


def _as_json_text(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):  # nested past orjson's depth
        return repr(value)


def _message_id(raw: dict[str, Any], raw_bytes: bytes, source: str) -> str:
    """The client's messageId; without one, a hash of the payload, so a resend dedups."""
    value = raw.get("messageId") or raw.get("message_id")
    if isinstance(value, str) and 0 < len(value) <= 128:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return "fh-" + hashlib.blake2b(source.encode() + raw_bytes, digest_size=16).hexdigest()


def _channel(facts: ContextFacts, top_level: Any, key: WriteKey, message_type: str,
             event: str) -> str:
    # RudderStack's SDKs state theirs at the top level: "web" from analytics-js (which
    # also sends a context.app), "mobile" from its Android/iOS SDKs, "server".
    stated = facts.stated_channel or top_level
    if isinstance(stated, str) and stated in STATED_CHANNELS:
        return STATED_CHANNELS[stated]
    if event in OFFLINE_EVENTS:
        return "offline"
    if message_type == "screen" or facts.app_like:
        return "app"
    return "server" if key.kind == "server" else "web"


def now() -> float:
    return time.time()
