"""What an event's `context` gives its row, worked out once per distinct context.

The events of one device carry the same context (page, user agent, library, locale,
campaign) event after event and request after request; only the event's own fields
change. Snake-casing the context, parsing its user agent, classifying its traffic and
serialising what is left of it cost about half of an event's ingest, so it is done once
per distinct context (by its exact JSON bytes) and remembered. The remembered context is
shared by every event that carries it and is never changed: the row is built from it,
and the raw message (not this) is what the debug view and the dead letter keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from funnelhouse.collector.enrich.campaign import TrafficInfo, classify_traffic
from funnelhouse.collector.enrich.useragent import UserAgentInfo, parse_user_agent
from funnelhouse.collector.normalise import normalise, snake

# Context fields that get their own column are not repeated in the `context` JSON;
# the raw IP is never stored anywhere.
CONTEXT_COLUMNS = ("ip", "page", "campaign", "user_agent", "library", "locale", "timezone",
                   "session_id", "channel", "referrer")
# Library names that mark an app's events (beside a `context.app` object).
APP_LIBRARIES = ("ios", "android", "react-native", "flutter")
# Past this many distinct contexts, or this many bytes of them as JSON, the memo starts
# again: a client sending a new context with every event costs one lookup an event,
# never unbounded memory. A remembered context takes ≈4.6× its JSON in memory (1,024
# contexts of 3.2 KB took 49 MB), so the byte cap holds a worker's memo near 10 MB.
MAX_CONTEXTS = 2048
MAX_CONTEXT_BYTES = 2_000_000


@dataclass(frozen=True, slots=True)
class ContextFacts:
    """One normalised context and the row fields that follow from it alone."""

    context: dict[str, Any]        # snake_case; shared, read-only
    page: dict[str, Any]
    context_referrer: str          # context.referrer alone (a page call's page may differ)
    campaign: dict[str, Any] | None
    agent: UserAgentInfo | None    # None when the context names no user agent
    given_ip: Any                  # context.ip as sent (a server key may pass its user's)
    locale: str
    screen_name: str
    stated_channel: Any            # context.channel as sent
    app_like: bool                 # a context.app object or a mobile library
    traits: dict[str, Any]         # context.traits (identify calls of some SDKs)
    traits_json: str
    # The events_raw row's fields that follow from the context alone, serialised once
    # (see `members`): the page and its traffic (for every call but page calls, which
    # carry their own page), and the rest (session, locale, library, the context
    # without its column fields as JSON, and the device when the context names the
    # user agent).
    page_members: bytes
    tail_members: bytes

    @classmethod
    def of(cls, context: dict[str, Any]) -> ContextFacts:
        page = as_dict(context.get("page"))
        library = as_dict(context.get("library"))
        page_url = as_text(page.get("url"))
        context_referrer = referrer_text(context.get("referrer"))
        referrer = referrer_text(page.get("referrer")) or context_referrer
        campaign = context.get("campaign")
        campaign = campaign if campaign.__class__ is dict else None
        user_agent = as_text(context.get("user_agent"))
        agent = parse_user_agent(user_agent) if user_agent else None
        traits = as_dict(context.get("traits"))
        library_name = as_text(library.get("name"))
        locale = as_text(context.get("locale"))
        tail = {"session_id": as_text(context.get("session_id")), "locale": locale,
                "timezone": as_text(context.get("timezone")), "library_name": library_name,
                "library_version": as_text(library.get("version")),
                "context": orjson.dumps({k: v for k, v in context.items()
                                         if k not in CONTEXT_COLUMNS}).decode()}
        if agent is not None:
            tail.update(device_fields(agent, user_agent))
        return cls(
            context=context,
            page=page,
            context_referrer=context_referrer,
            campaign=campaign,
            agent=agent,
            given_ip=context.get("ip"),
            locale=locale,
            screen_name=as_text(as_dict(context.get("screen")).get("name")),
            stated_channel=context.get("channel"),
            app_like=isinstance(context.get("app"), dict) or any(
                marker in str(library.get("name", "")).lower() for marker in APP_LIBRARIES),
            traits=traits,
            traits_json=orjson.dumps(traits).decode(),
            page_members=members(page_fields(
                page_url, as_text(page.get("path")), as_text(page.get("title")),
                as_text(page.get("search")), referrer,
                classify_traffic(page_url, referrer, campaign))),
            tail_members=members(tail),
        )


class ContextMemo:
    """Normalises messages, remembering each distinct context's facts."""

    def __init__(self, max_contexts: int = MAX_CONTEXTS,
                 max_bytes: int = MAX_CONTEXT_BYTES) -> None:
        self._facts: dict[bytes, ContextFacts] = {}
        self._max = max_contexts
        self._max_bytes = max_bytes
        self._bytes = 0

    def normalise(self, raw: dict[str, Any], *, max_depth: int, max_string: int,
                  encoded_size: int) -> tuple[dict[str, Any], ContextFacts]:
        """normalise() of a message, and its context's facts.

        Raises LimitExceeded as normalise() does, with the same path: a context is only
        remembered once it has passed the limits whole.
        """
        context = raw.get("context")
        if context.__class__ is not dict or not context:
            message = normalise(raw, max_depth=max_depth, max_string=max_string,
                                encoded_size=encoded_size)
            return message, _facts_of(message)
        key = orjson.dumps(context)
        facts = self._facts.get(key)
        if facts is not None:
            rest = normalise(raw, max_depth=max_depth, max_string=max_string,
                             encoded_size=encoded_size, without="context")
            if "context" not in rest:  # no other key of the message snake-cases to it
                rest["context"] = facts.context
                return rest, facts
        message = normalise(raw, max_depth=max_depth, max_string=max_string,
                            encoded_size=encoded_size)
        facts = _facts_of(message)
        # "Context" beside "context" would make the normalised one differ from the bytes.
        if sum(1 for name in raw if snake(name) == "context") == 1:
            if len(self._facts) >= self._max or self._bytes + len(key) > self._max_bytes:
                self._facts.clear()
                self._bytes = 0
            self._facts[key] = facts
            self._bytes += len(key)
        return message, facts


def _facts_of(message: dict[str, Any]) -> ContextFacts:
    context = message.get("context")
    return ContextFacts.of(context) if context.__class__ is dict and context else NO_CONTEXT


def members(fields: dict[str, Any]) -> bytes:
    """`fields` as JSON object members after a comma (`,"a":1,"b":2`), to be joined
    into a row; `fields` must not be empty."""
    return b"," + orjson.dumps(fields)[1:-1]


def page_fields(url: str, path: str, title: str, search: str, referrer: str,
                traffic: TrafficInfo) -> dict[str, str]:
    """The row's page and traffic columns."""
    return {"page_url": url, "page_path": path, "page_title": title, "page_search": search,
            "referrer": referrer, **traffic._asdict()}


def device_fields(agent: UserAgentInfo, user_agent: str) -> dict[str, Any]:
    """The row's device columns."""
    return {"device_type": agent.device_type, "device_brand": agent.device_brand,
            "device_model": agent.device_model, "os_name": agent.os_name,
            "os_version": agent.os_version, "browser_name": agent.browser_name,
            "browser_version": agent.browser_version, "is_bot": int(agent.is_bot),
            "user_agent": user_agent}


def as_dict(value: Any) -> dict[str, Any]:
    # Messages come from orjson, so objects are plain dicts; on this per-event path a
    # class check is cheaper than isinstance().
    return value if value.__class__ is dict else {}


def as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def referrer_text(value: Any) -> str:
    # RudderStack's analytics-js writes "$direct" where the page has no referrer.
    text = as_text(value)
    return "" if text == "$direct" else text


NO_CONTEXT = ContextFacts.of({})
