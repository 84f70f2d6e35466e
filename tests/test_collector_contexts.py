"""A remembered context gives every event exactly the row a fresh look at it gives.

The collector works out each distinct context once (collector/contexts.py). Every
message below is processed by one Ingestor twice over (the second time, and often the
first, its context comes from memory) and by a fresh Ingestor of its own (never from
memory); the rows and refusals must be identical. The messages are shaped like what
analytics.js, RudderStack's SDKs, mobile SDKs and a server library send, plus the
variants an attacker tries on a cache keyed by content.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from funnelhouse.collector.contexts import MAX_CONTEXTS, ContextMemo
from funnelhouse.collector.ingest import Ingestor, Outcome, RequestInfo
from funnelhouse.collector.normalise import snake
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Limits, Settings
from funnelhouse.demo.send import demo_messages
from tests.conftest import make_settings

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
BROWSER_CONTEXT = {
    "page": {"url": "https://shop.example/p/1?utm_source=news&utm_medium=email&gclid=x1",
             "path": "/p/1", "title": "Shoe", "referrer": "https://www.google.com/",
             "search": "?utm_source=news"},
    "userAgent": IPHONE, "locale": "de-DE", "timezone": "Europe/Berlin",
    "library": {"name": "analytics.js", "version": "5.2.0"}, "sessionId": "s1",
    "traits": {"email": "a@example.com"},
}


def _messages() -> list[dict[str, Any]]:
    page_call = {"type": "page", "anonymousId": "a1", "messageId": "p1",
                 "properties": {"url": "https://shop.example/cart?utm_campaign=spring",
                                "title": "Cart", "referrer": "https://t.co/x"},
                 "context": {"library": {"name": "analytics.js", "version": "5.2.0"},
                             "referrer": "https://news.example/"}}
    messages = [
        {"type": "track", "event": "click", "anonymousId": "a1", "messageId": "m1",
         "properties": {"element": "#buy"}, "context": BROWSER_CONTEXT},
        {"type": "track", "event": "click", "anonymousId": "a1", "messageId": "m1b",
         "context": {**BROWSER_CONTEXT, "page": {"url": "https://shop.example/"}}},
        # The same context, another event: the second comes from memory.
        {"type": "track", "event": "search", "anonymousId": "a1", "messageId": "m2",
         "properties": {"query": "shoe"}, "context": BROWSER_CONTEXT},
        # A page call's own properties win over the remembered context's page.
        page_call,
        {**page_call, "messageId": "p2", "context": BROWSER_CONTEXT},
        # Segment's identify carries traits in context.traits when sent without them.
        {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "i1",
         "context": BROWSER_CONTEXT},
        # RudderStack: channel at the top level, context.app, "$direct" referrer.
        {"type": "track", "event": "click", "anonymousId": "a2", "messageId": "r1",
         "channel": "web", "properties": {"element": "a"},
         "context": {"app": {"name": "rudder"}, "page": {"referrer": "$direct",
                                                          "url": "https://shop.example/"},
                     "library": {"name": "RudderLabs JavaScript SDK"}}},
        {"type": "track", "event": "click", "anonymousId": "a2", "messageId": "r2",
         "channel": "mobile", "properties": {"element": "a"},
         "context": {"app": {"name": "rudder"}, "page": {"referrer": "$direct",
                                                          "url": "https://shop.example/"},
                     "library": {"name": "RudderLabs JavaScript SDK"}}},
        # A mobile library, a screen call: the channel and screen name.
        {"type": "screen", "name": "Home", "anonymousId": "a3", "messageId": "s1",
         "context": {"library": {"name": "analytics-ios", "version": "4.1"},
                     "screen": {"width": 390}}},
        {"type": "track", "event": "click", "anonymousId": "a3", "messageId": "s2",
         "context": {"library": {"name": "analytics-ios", "version": "4.1"},
                     "screen": {"width": 390}}},
        # A stated channel that is not one of ours hides the top-level one (as before).
        {"type": "track", "event": "click", "anonymousId": "a4", "messageId": "c1",
         "channel": "server", "context": {"channel": "kiosk"}},
        # An offline event: its channel follows from the event, not the context.
        {"type": "track", "event": "store_visit", "userId": "u4", "messageId": "o1",
         "context": {"channel": "kiosk"}},
        # No context, an empty one, a null one, one that is not an object.
        {"type": "track", "event": "click", "anonymousId": "a5", "messageId": "n1"},
        {"type": "track", "event": "click", "anonymousId": "a5", "messageId": "n2",
         "context": {}},
        {"type": "track", "event": "click", "anonymousId": "a5", "messageId": "n3",
         "context": None},
        {"type": "track", "event": "click", "anonymousId": "a5", "messageId": "n4",
         "context": "not an object"},
        # Two spellings of `context` in one message: the one normalise keeps wins,
        # whichever of them is remembered.
        {"type": "track", "event": "click", "anonymousId": "a6", "messageId": "x1",
         "context": BROWSER_CONTEXT, "Context": {"locale": "fr-FR"}},
        {"type": "track", "event": "click", "anonymousId": "a6", "messageId": "x2",
         "Context": BROWSER_CONTEXT, "context": {"locale": "fr-FR"}},
        # The same content in another key order is another entry, with the same facts.
        {"type": "track", "event": "click", "anonymousId": "a7", "messageId": "k1",
         "context": dict(reversed(list(BROWSER_CONTEXT.items())))},
        # A context over the string limit is refused with its path, remembered or not.
        {"type": "track", "event": "click", "anonymousId": "a8", "messageId": "l1",
         "context": {**BROWSER_CONTEXT, "locale": "x" * 9000}},
        # A context too deep.
        {"type": "track", "event": "click", "anonymousId": "a8", "messageId": "l2",
         "context": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {}}}}}}}}}}},
        # The rest of the message over a limit while its context is remembered: refused
        # with the same path as when the context is worked out afresh.
        {"type": "track", "event": "click", "anonymousId": "a8", "messageId": "l3",
         "properties": {"element": "x" * 9000}, "context": BROWSER_CONTEXT},
        {"type": "track", "event": "click", "anonymousId": "a8", "messageId": "l4",
         "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}},
         "context": BROWSER_CONTEXT},
        # Top-level fields that must not leak from one event's context to another's.
        {"type": "track", "event": "click", "userId": "u9", "messageId": "t1",
         "timestamp": "2026-12-01T10:00:00Z", "properties": {"element": "b"},
         "context": BROWSER_CONTEXT},
    ]
    for message in messages:  # a click needs its element to be accepted
        if message.get("event") == "click":
            message.setdefault("properties", {"element": "e"})
    return messages + [demo.message for demo in demo_messages(people=8, days=2, seed=3)][:120]


def _server_variants() -> list[dict[str, Any]]:
    """A server library passing its users' IPs and user agents in the context."""
    return [{"type": "track", "event": "click", "userId": f"u{i}", "messageId": f"sv{i}",
             "context": {"ip": ip, "userAgent": IPHONE, "library": {"name": "analytics-python"}}}
            for i, ip in enumerate(["203.0.113.9", "203.0.113.9", "2001:db8::1", "", None])]


def _settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", limits=Limits(max_depth=8, max_string_length=8192))


def _process(ingestor: Ingestor, message: dict[str, Any], key_index: int) -> Outcome:
    settings = ingestor.settings
    request = RequestInfo(write_key=settings.write_keys[key_index], ip="198.51.100.7",
                          user_agent="curl/8.5", received_at=1_764_500_000.0)
    # A deep copy: processing must not depend on (or change) the caller's objects.
    return ingestor.process([copy.deepcopy(message)], request)


def _answer(outcome: Outcome) -> tuple[Any, ...]:
    return ([orjson.loads(record.value) for record in outcome.records],
            [rejection.as_json() for rejection in outcome.rejected])


@pytest.mark.parametrize("key_index", [0, 1], ids=["browser key", "server key"])
def test_remembered_contexts_give_the_rows_a_fresh_look_gives(tmp_path: Path,
                                                             key_index: int) -> None:
    settings = _settings(tmp_path)
    plan = TrackingPlan.load(settings.plan_dir)
    shared = Ingestor(settings, plan)
    messages = _messages() + _server_variants()
    accepted = 0
    for round_ in range(2):
        for message in messages:
            fresh = Ingestor(settings, plan)
            expected = _answer(_process(fresh, message, key_index))
            assert _answer(_process(shared, message, key_index)) == expected, \
                (round_, message.get("messageId"))
            accepted += bool(expected[0]) and not expected[1]
    assert accepted >= 0.8 * 2 * len(messages)  # rows compared, not only refusals
    remembered = {orjson.dumps(m["context"]) for m in messages
                  if isinstance(m.get("context"), dict) and m["context"]
                  and "Context" not in m and len(orjson.dumps(m["context"])) < 8000
                  and m["messageId"] != "l2"}
    assert remembered <= set(shared.contexts._facts)


def test_the_memo_starts_again_when_full(tmp_path: Path) -> None:
    """A client sending a new context with every event cannot grow the memo unbounded."""
    memo = ContextMemo(max_contexts=4)
    for i in range(10):
        message, facts = memo.normalise({"context": {"locale": f"l{i}"}}, max_depth=8,
                                        max_string=100, encoded_size=40)
        assert facts.locale == f"l{i}" and message["context"] == {"locale": f"l{i}"}
        assert len(memo._facts) <= 4
    assert MAX_CONTEXTS >= 1024


def test_the_memo_starts_again_past_its_bytes() -> None:
    """Big contexts (an attacker's 30 KB ones) are capped by their bytes, not their count."""
    memo = ContextMemo(max_contexts=1000, max_bytes=10_000)
    for i in range(20):
        context = {"locale": f"l{i}", "pad": "x" * 3000}
        memo.normalise({"context": context}, max_depth=8, max_string=8192, encoded_size=3100)
        assert sum(len(key) for key in memo._facts) <= 10_000
        assert len(memo._facts) <= 3


def test_a_remembered_context_is_not_changed_by_the_events_that_share_it(
        tmp_path: Path) -> None:
    """Hashing a trait of one event must not reach the next event's copy of the context."""
    settings = _settings(tmp_path)
    settings = settings.replace(write_keys=(settings.write_keys[0].__class__(
        "wk_hash", "web", "browser", hash_fields=("email",)), *settings.write_keys))
    ingestor = Ingestor(settings, TrackingPlan.load(settings.plan_dir))
    identify = {"type": "identify", "anonymousId": "a", "context": BROWSER_CONTEXT}
    rows = []
    for i in range(3):
        outcome = _process(ingestor, {**identify, "messageId": f"h{i}"}, 0)
        rows.append(orjson.loads(outcome.records[0].value))
    assert len({row["traits"] for row in rows}) == 1
    assert "a@example.com" not in rows[0]["traits"]
    facts = next(iter(ingestor.contexts._facts.values()))
    assert facts.traits == {"email": "a@example.com"}


# Text an attacker writes hoping to close a JSON string and add a member of their own to
# the row, which is joined from serialised parts (the event's own fields, the context's,
# the request's): every part is serialised by orjson, so it must stay one value.
HOSTILE = ['","ip":"203.0.113.66', '\\",\\"is_bot\\":0,\\"x\\":\\"', '"}\n{"message_id":"evil',
           "\u2028\u0000</script>", "ünïcödé 🎯"]


def test_hostile_text_stays_inside_its_field_of_the_joined_row(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ingestor = Ingestor(settings, TrackingPlan.load(settings.plan_dir))
    for index, text in enumerate(HOSTILE):
        context = {"page": {"url": f"https://shop.example/?q={text}", "title": text,
                            "referrer": text},
                   "userAgent": text, "locale": text, "ip": text, "sessionId": text,
                   "library": {"name": text, "version": text}, "custom": {text: text}}
        for call in ("track", "page"):
            message = {"type": call, "event": "click", "anonymousId": text,
                       "messageId": f"h{index}{call}", "properties": {"element": text},
                       "context": context}
            for key_index in (0, 1):   # a browser key, and a server key passing the IP
                outcome = _process(ingestor, message, key_index)
                assert len(outcome.records) == 1, outcome.as_json()
                value = outcome.records[0].value
                pairs = json.loads(value, object_pairs_hook=lambda p: p)
                names = [name for name, _ in pairs]
                assert len(names) == len(set(names)) == 49   # no member added or doubled
                row = dict(pairs)
                assert row["anonymous_id"] == text and row["page_title"] == text
                assert row["locale"] == text and row["user_agent"] == text
                assert json.loads(row["context"])["custom"] == {snake(text): text}
                assert json.loads(row["properties"]) == {"element": text}
                assert row["ip"] != "203.0.113.66" and row["message_id"] == f"h{index}{call}"
                assert b"\n" not in value
