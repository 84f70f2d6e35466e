"""jsonschema-rs (the hot path) and jsonschema (the error report) agree on every plan schema.

The collector trusts jsonschema-rs's yes/no and asks jsonschema only for the errors, so a
message one of them accepts and the other refuses would be either let through unreported or
refused without a reason. This runs both over a hand-written corpus and over hypothesis
mutations of the plan's own examples, for the envelope and for every event schema version.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as count_as
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from funnelhouse.cli.plan_check import read_messages
from funnelhouse.collector.plan import ReportValidator, TrackingPlan, compile_fast

PLAN_DIR = Path(__file__).resolve().parent.parent / "funnelhouse" / "schemas"
PLAN = TrackingPlan.load(PLAN_DIR)


def _schemas() -> dict[str, dict[str, Any]]:
    schemas = {"envelope": PLAN.envelope_schema()}
    for event in PLAN.events():
        for version in PLAN.versions(event):
            schemas[f"{event}/{version}"] = PLAN.schema(event, version)
    return schemas


SCHEMAS = _schemas()
FAST = {label: compile_fast(schema) for label, schema in SCHEMAS.items()}
REPORT = {label: ReportValidator(schema) for label, schema in SCHEMAS.items()}
EVENT_LABELS = sorted(label for label in SCHEMAS if label != "envelope")


def fast_accepts(label: str, instance: Any) -> bool:
    return FAST[label](instance)


def assert_agree(label: str, instance: Any) -> bool:
    fast = fast_accepts(label, instance)
    report = REPORT[label].is_valid(instance)
    assert fast == report, (
        f"{label}: jsonschema-rs says {'valid' if fast else 'invalid'}, jsonschema says "
        f"{'valid' if report else 'invalid'} for {json.dumps(instance, default=repr)[:500]}"
    )
    return fast


def envelope_for(label: str, payload: Any) -> dict[str, Any]:
    event = label.split("/")[0]
    call = {"page_view": "page", "screen_view": "screen", "identify": "identify",
            "alias": "alias", "group": "group"}.get(event, "track")
    message: dict[str, Any] = {
        "type": call, "event": event, "message_id": f"m-{event}", "anonymous_id": "a-1",
        "timestamp": "2024-03-01T10:00:00.5+01:00",
        "context": {"channel": "app", "session_id": 1709287200000,
                    "device": {"id": "d-1", "type": "ios"}, "os": {"name": "iOS"},
                    "app": {"name": "Shop", "version": "3.2.0"}, "screen": {"name": "Cart"},
                    "campaign": {"source": "push"}},
    }
    if call == "alias":
        message |= {"previous_id": "a-0", "user_id": "u-1"}
    if call == "group":
        message["group_id"] = "g-1"
    message["traits" if event in ("identify", "group") else "properties"] = payload
    return message


EXAMPLES = {label: SCHEMAS[label]["examples"] for label in EVENT_LABELS}
SAMPLES = (read_messages(PLAN_DIR / "samples" / "valid_batch.json")
           + read_messages(PLAN_DIR / "samples" / "invalid_batch.json"))
ENVELOPE_BASES = SAMPLES + [envelope_for(label, copy.deepcopy(examples[0]))
                            for label, examples in EXAMPLES.items()]

# Values that sit on the edges where two implementations are most likely to part ways.
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 1.0, 2.5, -0.0, 100, 100.0, 100.5, 101, 150, 2**53 + 1,
    10**30, -(10**30), 1e308, "", "x", "EUR", "EUR\n", "eur", "\n", "left", "diagonal",
    "a" * 257, "2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z\n", "2024-03-01", "ada@example.com",
    "ümlaut", "\u0663\u0664", [], [1], {}, {"product_id": "p"}, {"a": None},
]

# ---------------------------------------------------------------------- hand-written corpus
HAND_WRITTEN: list[tuple[str, Any, bool]] = [
    # (schema, instance, expected validity)
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": "u"}, True),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": ""}, False),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": None,
                  "anonymous_id": "a"}, True),
    ("envelope", {"type": "track", "message_id": "m", "user_id": "u"}, False),
    ("envelope", {"type": "page", "message_id": "m", "user_id": "u"}, True),
    ("envelope", {"type": "alias", "message_id": "m", "user_id": "u"}, False),
    ("envelope", {"type": "alias", "message_id": "m", "user_id": "u", "previous_id": "a"}, True),
    ("envelope", {"type": "group", "message_id": "m", "user_id": "u"}, False),
    ("envelope", {"type": "Track", "event": "x", "message_id": "m", "user_id": "u"}, False),
    ("envelope", {"event": "x", "message_id": "m", "user_id": "u"}, False),
    ("envelope", {"type": "track", "event": "x", "message_id": "m" * 129, "user_id": "u"}, False),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": "u",
                  "sent_at": "2024-03-01T10:00:00Z\n"}, False),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": "u",
                  "context": {"session_id": ""}}, False),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": "u",
                  "context": {"session_id": 12.0}}, True),
    ("envelope", {"type": "track", "event": "x", "message_id": "m", "user_id": "u",
                  "context": {"session_id": True}}, False),
    ("envelope", [], False),
    ("envelope", None, False),
    ("purchase/1-0-0", {"order_id": "o", "revenue": 0, "currency": "EUR",
                        "items": [{"product_id": "p", "price": 0, "quantity": 1.0}]}, True),
    ("purchase/1-0-0", {"order_id": "o", "revenue": True, "currency": "EUR",
                        "items": [{"product_id": "p", "price": 0, "quantity": 1}]}, False),
    ("purchase/1-0-0", {"order_id": "o", "revenue": 1, "currency": "EUR", "items": []}, False),
    ("purchase/1-0-0", {"order_id": "o", "revenue": 1, "currency": "EUR",
                        "items": {"product_id": "p"}}, False),
    ("purchase/1-0-0", {"order_id": "o", "revenue": 1, "currency": "EUR",
                        "items": [{"product_id": "p", "price": 1, "quantity": 1.5}]}, False),
    ("purchase/1-0-0", {"order_id": "o", "revenue": 1, "currency": "EUR\n",
                        "items": [{"product_id": "p", "price": 1, "quantity": 1}]}, False),
    ("scroll/1-0-0", {"depth_percent": 100.0}, True),
    ("scroll/1-0-0", {"depth_percent": 100.000001}, False),
    ("scroll/1-0-0", {"depth_percent": "50"}, False),
    ("swipe/1-0-0", {"direction": "up", "element": "e"}, True),
    ("swipe/1-0-0", {"direction": "Up", "element": "e"}, False),
    ("swipe/1-0-0", {"direction": "up", "element": ""}, False),
    ("identify/1-0-0", {"email": "a b@c"}, False),
    ("identify/1-0-0", {"phone": "+49 (30) 123-456"}, True),
    ("identify/1-0-0", {"birthday": "1815-12-10\n"}, False),
    ("search/1-0-0", {"query": "", "result_count": 0}, True),
    ("search/1-0-0", {"query": "q", "result_count": -1}, False),
]


@pytest.mark.parametrize(("label", "instance", "expected"), HAND_WRITTEN)
def test_validators_agree_on_the_hand_written_corpus(
    label: str, instance: Any, expected: bool,
) -> None:
    assert assert_agree(label, instance) is expected


def test_validators_agree_on_the_shipped_samples() -> None:
    verdicts = [assert_agree("envelope", message) for message in SAMPLES]
    assert any(verdicts) and not all(verdicts)


@pytest.mark.parametrize("label", EVENT_LABELS)
def test_validators_agree_on_every_property_set_to_odd_values(label: str) -> None:
    """Each declared property, and each required one dropped, at every odd value."""
    base = EXAMPLES[label][0]
    assert assert_agree(label, base)
    outcomes = []
    for name in SCHEMAS[label].get("properties", {}):
        for value in ODD_VALUES:
            outcomes.append(assert_agree(label, base | {name: value}))
    for name in SCHEMAS[label].get("required", []):
        outcomes.append(assert_agree(label, {k: v for k, v in base.items() if k != name}))
    if outcomes:
        assert not all(outcomes), "the odd values should break at least one property"


def test_plain_jsonschema_would_disagree_on_a_trailing_newline() -> None:
    """Why the report validator treats `$` as ECMA-262 does (end of input, as jsonschema-rs)."""
    schema = {"type": "string", "pattern": "^[A-Z]{3}$"}
    assert Draft202012Validator(schema).is_valid("EUR\n")      # Python's `$` allows it
    assert not ReportValidator(schema).is_valid("EUR\n")
    assert not compile_fast(schema)("EUR\n")


# ---------------------------------------------------------------------- hypothesis mutations
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=6,
)
NUMBERS = (st.sampled_from([v for v in ODD_VALUES if isinstance(v, int | float)])
           | st.integers() | st.floats(allow_nan=False, allow_infinity=False))
STRINGS = st.sampled_from([v for v in ODD_VALUES if isinstance(v, str)]) | st.text(max_size=300)


def locations(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from locations(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from locations(value, (*path, i))


def replace_at(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


@st.composite
def mutations_of(draw: st.DrawFn, base: Any) -> Any:
    """`base` after 1-3 of: drop a key, wrong type, odd number, odd string, extra key."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path, node = draw(st.sampled_from(list(locations(doc))))
        operation = draw(st.sampled_from(["drop", "retype", "number", "string", "extra"]))
        note(f"{operation} at {path}")
        if operation == "drop" and isinstance(node, dict) and node:
            del node[draw(st.sampled_from(sorted(node)))]
        elif operation == "drop" and isinstance(node, list) and node:
            del node[draw(st.integers(0, len(node) - 1))]
        elif operation == "extra" and isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        elif operation == "extra" and isinstance(node, list):
            node.append(draw(JSON_VALUES))
        elif operation == "number":
            doc = replace_at(doc, path, draw(NUMBERS))
        elif operation == "string":
            doc = replace_at(doc, path, draw(STRINGS))
        else:
            doc = replace_at(doc, path, draw(JSON_VALUES))
    return doc


MUTATION_SETTINGS = settings(max_examples=400, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@MUTATION_SETTINGS
@given(st.data())
def test_validators_agree_on_mutated_envelopes(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(ENVELOPE_BASES))
    count_as("valid" if assert_agree("envelope", data.draw(mutations_of(base))) else "invalid")


@MUTATION_SETTINGS
@given(st.data())
def test_validators_agree_on_mutated_event_payloads(data: st.DataObject) -> None:
    label = data.draw(st.sampled_from(EVENT_LABELS))
    base = data.draw(st.sampled_from(EXAMPLES[label]))
    count_as("valid" if assert_agree(label, data.draw(mutations_of(base))) else "invalid")


@MUTATION_SETTINGS
@given(st.data())
def test_validate_reports_errors_exactly_when_the_fast_path_fails(data: st.DataObject) -> None:
    """End to end: a verdict is never 'invalid' without jsonschema errors, nor 'valid' with."""
    label = data.draw(st.sampled_from(EVENT_LABELS))
    message = data.draw(mutations_of(envelope_for(label, copy.deepcopy(EXAMPLES[label][0]))))
    verdict = PLAN.validate(message, unknown_events="allow", extra_properties="allow")
    # A message without its payload (no "properties") is checked as an empty one: the
    # event's required properties are then missing. A payload that is not an object
    # fails the envelope already.
    payload = message.get(_payload_key(verdict), {}) if isinstance(message, dict) else None
    assert verdict.ok == (fast_accepts("envelope", message) and (
        verdict.schema_version == "" or not isinstance(payload, dict)
        or fast_accepts(verdict.schema_version, payload)))
    if not verdict.ok:
        assert verdict.errors
        assert all(error.path.startswith("$") for error in verdict.errors)


def _payload_key(verdict: Any) -> str:
    return "traits" if verdict.event in ("identify", "group") else "properties"
