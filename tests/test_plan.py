"""The tracking plan (schemas/) and its validator (collector/plan.py)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from funnelhouse.cli.plan_check import plan_check
from funnelhouse.collector.plan import (
    EVENT_OF_TYPE,
    InvalidPlan,
    PlanError,
    TrackingPlan,
    Verdict,
    to_snake_case_keys,
)

PLAN_DIR = Path(__file__).resolve().parent.parent / "funnelhouse" / "schemas"
TYPE_OF_EVENT = {event: call for call, event in EVENT_OF_TYPE.items()}
REQUIRED_EVENTS = {
    "page_view", "screen_view", "click", "scroll", "swipe", "search", "product_view",
    "add_to_cart", "remove_from_cart", "begin_checkout", "purchase", "signup", "login",
    "identify", "alias", "group", "campaign_impression", "campaign_click", "push_open",
    "app_install", "store_visit", "staff_qr_scan",
}


@pytest.fixture(scope="module")
def plan() -> TrackingPlan:
    return TrackingPlan.load(PLAN_DIR)


def message_for(event: str, payload: dict[str, Any] | None = None, /, **fields: Any) -> dict:
    """A valid normalised envelope carrying `payload` for a planned event."""
    call = TYPE_OF_EVENT.get(event, "track")
    message: dict[str, Any] = {
        "type": call,
        "event": event,
        "message_id": f"m-{event}",
        "anonymous_id": "anon-1",
        "user_id": "user-1",
        "timestamp": "2024-03-01T10:00:00.123Z",
        "sent_at": "2024-03-01T10:00:01+00:00",
        "context": {"channel": "web", "library": {"name": "analytics.js", "version": "5.2.0"},
                    "page": {"url": "https://shop.example/", "path": "/"}},
    }
    if call == "alias":
        message["previous_id"] = "anon-1"
    if call == "group":
        message["group_id"] = "g-1"
    message["traits" if event in ("identify", "group") else "properties"] = payload or {}
    message.update(fields)
    return message


def example(plan: TrackingPlan, event: str) -> dict[str, Any]:
    return copy.deepcopy(plan.schema(event)["examples"][0])


def paths(verdict: Verdict) -> list[str]:
    return [error.path for error in verdict.errors]


# ---------------------------------------------------------------------- the plan itself
def test_shipped_plan_has_no_problems(plan: TrackingPlan) -> None:
    assert plan.check() == []


def test_plan_covers_every_event_of_the_product_contract(plan: TrackingPlan) -> None:
    assert REQUIRED_EVENTS <= set(plan.events())
    # Every event starts at 1-0-0; page_view gained RudderStack's page fields in 1-1-0.
    assert all(plan.versions(event)[0] == "1-0-0" for event in plan.events())
    assert {e: v for e, v in plan.events().items() if v != "1-0-0"} == {"page_view": "1-1-0"}


def test_every_event_schema_documents_each_property(plan: TrackingPlan) -> None:
    for event in plan.events():
        schema = plan.schema(event)
        assert schema["x-event"] == event
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        for name, prop in plan.declared_properties(event).items():
            assert prop.get("description"), f"{event}.{name} has no description"


@pytest.mark.parametrize("event", sorted(REQUIRED_EVENTS))
def test_each_planned_event_has_a_valid_example_that_passes(plan: TrackingPlan, event: str) -> None:
    verdict = plan.validate(message_for(event, example(plan, event)),
                            unknown_events="reject", extra_properties="reject")
    assert verdict == Verdict(True, event, f"{event}/{plan.events()[event]}")


def test_rudderstack_page_fields_are_planned_in_page_view_1_1_0(plan: TrackingPlan) -> None:
    """analytics-js adds these to every page call; they are not unexpected properties."""
    props = {"tab_url": "https://shop.example/x", "initial_referrer": "$direct",
             "initial_referring_domain": "", "referring_domain": "", "title": "X"}
    verdict = plan.validate(message_for("page_view", props), extra_properties="reject")
    assert verdict.ok and verdict.schema_version == "page_view/1-1-0" and not verdict.flags
    old = plan.validate(message_for("page_view", props), version="1-0-0",
                        extra_properties="flag")
    assert "extra_properties" in old.flags


def test_declared_properties_lists_the_event_schema_properties(plan: TrackingPlan) -> None:
    declared = plan.declared_properties("purchase")
    assert {"order_id", "revenue", "currency", "coupon", "items"} <= set(declared)
    assert declared["revenue"]["type"] == "number"
    with pytest.raises(KeyError):
        plan.declared_properties("no_such_event")


# ---------------------------------------------------------------------- typical mistakes
def test_purchase_without_order_id_fails_at_order_id(plan: TrackingPlan) -> None:
    props = example(plan, "purchase")
    del props["order_id"]
    verdict = plan.validate(message_for("purchase", props))
    assert not verdict.ok
    assert verdict.errors == (PlanError("$.properties.order_id",
                                        "'order_id' is a required property",
                                        "schema_violation"),)
    assert verdict.schema_version == "purchase/1-0-0"


def test_purchase_revenue_as_string_fails_at_revenue(plan: TrackingPlan) -> None:
    props = example(plan, "purchase") | {"revenue": "179.80"}
    verdict = plan.validate(message_for("purchase", props))
    assert paths(verdict) == ["$.properties.revenue"]
    assert "is not of type 'number'" in verdict.errors[0].message


def test_scroll_depth_above_100_fails(plan: TrackingPlan) -> None:
    verdict = plan.validate(message_for("scroll", {"depth_percent": 150}))
    assert paths(verdict) == ["$.properties.depth_percent"]
    assert "maximum of 100" in verdict.errors[0].message
    assert plan.validate(message_for("scroll", {"depth_percent": 100})).ok
    assert plan.validate(message_for("scroll", {"depth_percent": 0})).ok
    assert not plan.validate(message_for("scroll", {"depth_percent": -1})).ok


def test_swipe_direction_outside_enum_fails(plan: TrackingPlan) -> None:
    verdict = plan.validate(message_for("swipe", {"direction": "diagonal", "element": "gallery"}))
    assert paths(verdict) == ["$.properties.direction"]
    assert "'diagonal' is not one of" in verdict.errors[0].message


def test_purchase_item_without_quantity_fails_at_that_item(plan: TrackingPlan) -> None:
    props = example(plan, "purchase")
    props["items"] = [
        {"product_id": "a", "price": 1.0, "quantity": 1},
        {"product_id": "b", "price": 2.0},
    ]
    verdict = plan.validate(message_for("purchase", props))
    assert paths(verdict) == ["$.properties.items[1].quantity"]


def test_every_error_is_reported_sorted_by_path(plan: TrackingPlan) -> None:
    props = {
        "revenue": "x",
        "currency": "euro",
        "items": [{"product_id": "a", "price": -1, "quantity": 1}] * 11
        + [{"product_id": "b", "price": 1, "quantity": 0}],
    }
    verdict = plan.validate(message_for("purchase", props, timestamp="yesterday"))
    assert paths(verdict) == [
        "$.properties.currency",
        *[f"$.properties.items[{i}].price" for i in range(11)],
        "$.properties.items[11].quantity",
        "$.properties.order_id",
        "$.properties.revenue",
        "$.timestamp",
    ]
    reasons = {e.path: e.reason for e in verdict.errors}
    assert reasons["$.timestamp"] == "envelope_violation"
    assert reasons["$.properties.revenue"] == "schema_violation"


def test_currency_must_be_iso_4217_shaped(plan: TrackingPlan) -> None:
    for bad in ("eur", "EURO", "EU", "EUR\n"):
        props = example(plan, "purchase") | {"currency": bad}
        assert paths(plan.validate(message_for("purchase", props))) == ["$.properties.currency"]


def test_integer_fields_accept_whole_floats_and_refuse_booleans(plan: TrackingPlan) -> None:
    item = {"product_id": "a", "price": 1, "quantity": 2.0}
    assert plan.validate(message_for("purchase", example(plan, "purchase") | {"items": [item]})).ok
    item_bool = item | {"quantity": True}
    verdict = plan.validate(message_for("purchase",
                                        example(plan, "purchase") | {"items": [item_bool]}))
    assert paths(verdict) == ["$.properties.items[0].quantity"]


def test_validate_leaves_the_message_untouched(plan: TrackingPlan) -> None:
    message = message_for("purchase", example(plan, "purchase") | {"revenue": "x", "extra": 1})
    before = copy.deepcopy(message)
    plan.validate(message, extra_properties="reject")
    assert message == before


# ---------------------------------------------------------------------- the envelope
def test_identify_validates_traits_not_properties(plan: TrackingPlan) -> None:
    message = message_for("identify", {"email": "not-an-address"})
    message["properties"] = {"email": "ignored"}
    verdict = plan.validate(message, extra_properties="allow")
    assert paths(verdict) == ["$.traits.email"]
    assert verdict.event == "identify"


def test_page_and_screen_calls_map_to_view_events_without_an_event_name(
    plan: TrackingPlan,
) -> None:
    for event in ("page_view", "screen_view"):
        message = message_for(event, {})
        assert message["type"] in ("page", "screen")
        del message["event"]
        verdict = plan.validate(message, unknown_events="reject")
        assert verdict == Verdict(True, event, f"{event}/{plan.events()[event]}")


def test_message_needs_an_anonymous_or_user_id(plan: TrackingPlan) -> None:
    message = message_for("login", {}, anonymous_id="", user_id=None)
    verdict = plan.validate(message)
    assert verdict.errors == (PlanError(
        "$", "must satisfy one of: has a non-empty anonymous_id | has a non-empty user_id",
        "envelope_violation"),)
    assert plan.validate(message_for("login", {}, anonymous_id=None)).ok
    assert plan.validate(message_for("login", {}, user_id=None)).ok


def test_track_needs_an_event_name(plan: TrackingPlan) -> None:
    message = message_for("login", {})
    del message["event"]
    verdict = plan.validate(message, unknown_events="reject")
    assert verdict.errors == (PlanError("$.event", "'event' is a required property",
                                        "envelope_violation"),)


def test_alias_needs_previous_id_and_group_needs_group_id(plan: TrackingPlan) -> None:
    alias = message_for("alias")
    del alias["previous_id"]
    assert paths(plan.validate(alias)) == ["$.previous_id"]
    group = message_for("group", {"name": "Initech"})
    del group["group_id"]
    assert paths(plan.validate(group)) == ["$.group_id"]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("message_id", "x" * 129, "$.message_id"),
        ("message_id", "", "$.message_id"),
        ("anonymous_id", "a" * 257, "$.anonymous_id"),
        ("timestamp", "2024-03-01 10:00", "$.timestamp"),
        ("timestamp", "2024-03-01T10:00:00Z\n", "$.timestamp"),
        ("sent_at", 1709287200, "$.sent_at"),
        ("type", "pageview", "$.type"),
        ("properties", [], "$.properties"),
        ("context", {"channel": "tv"}, "$.context.channel"),
        ("context", {"page": {"url": 5}}, "$.context.page.url"),
    ],
)
def test_envelope_violations_point_at_the_field(
    plan: TrackingPlan, field: str, value: Any, path: str,
) -> None:
    verdict = plan.validate(message_for("login", {}, **{field: value}))
    assert not verdict.ok
    assert path in paths(verdict)
    assert {e.reason for e in verdict.errors} == {"envelope_violation"}


def test_a_message_that_is_not_an_object_is_an_envelope_violation(plan: TrackingPlan) -> None:
    verdict = plan.validate(["not", "a", "message"])  # type: ignore[arg-type]
    assert not verdict.ok
    assert verdict.errors[0] == PlanError("$", "['not', 'a', 'message'] is not of type 'object'",
                                          "envelope_violation")


def test_envelope_allows_unknown_top_level_fields(plan: TrackingPlan) -> None:
    assert plan.validate(message_for("login", {}, write_key="k", integrations={"All": True})).ok


# ---------------------------------------------------------------------- aliases
@pytest.mark.parametrize(
    ("sent", "planned"),
    [
        ("Order Completed", "purchase"),
        ("Product Viewed", "product_view"),
        ("Product Added", "add_to_cart"),
        ("Product Removed", "remove_from_cart"),
        ("Checkout Started", "begin_checkout"),
        ("Products Searched", "search"),
        ("Signed Up", "signup"),
        ("Signed In", "login"),
        ("Application Installed", "app_install"),
        ("Push Notification Tapped", "push_open"),
        ("purchase", "purchase"),
        ("order completed", "purchase"),
        ("Add To Cart", "add_to_cart"),
        ("Newsletter Subscribed", "Newsletter Subscribed"),
    ],
)
def test_canonical_event_maps_segment_names_to_plan_names(
    plan: TrackingPlan, sent: str, planned: str,
) -> None:
    assert plan.canonical_event(sent) == planned


def test_aliased_event_is_validated_against_the_plan_event(plan: TrackingPlan) -> None:
    message = message_for("purchase", example(plan, "purchase"), event="Order Completed")
    assert plan.validate(message) == Verdict(True, "purchase", "purchase/1-0-0")
    del message["properties"]["order_id"]
    assert paths(plan.validate(message)) == ["$.properties.order_id"]


# ---------------------------------------------------------------------- policies
def test_unknown_event_allowed_is_ok_without_flag(plan: TrackingPlan) -> None:
    message = message_for("login", {"anything": 1}, event="Newsletter Subscribed")
    assert plan.validate(message, unknown_events="allow") == Verdict(
        True, "Newsletter Subscribed", "")


def test_unknown_event_flagged_is_ok_with_flag(plan: TrackingPlan) -> None:
    message = message_for("login", {"anything": 1}, event="Newsletter Subscribed")
    assert plan.validate(message, unknown_events="flag") == Verdict(
        True, "Newsletter Subscribed", "", (), ("unplanned_event",))


def test_unknown_event_rejected_has_reason_unknown_event(plan: TrackingPlan) -> None:
    message = message_for("login", {}, event="Newsletter Subscribed")
    verdict = plan.validate(message, unknown_events="reject")
    assert not verdict.ok
    assert verdict.errors == (PlanError("$.event", "'Newsletter Subscribed' is not a planned event",
                                        "unknown_event"),)


def test_unknown_event_still_gets_its_envelope_checked(plan: TrackingPlan) -> None:
    message = message_for("login", {}, event="Newsletter Subscribed", timestamp="soon")
    verdict = plan.validate(message, unknown_events="allow")
    assert not verdict.ok
    assert paths(verdict) == ["$.timestamp"]


def test_extra_properties_allowed_pass_silently(plan: TrackingPlan) -> None:
    message = message_for("scroll", {"depth_percent": 10, "zoom": 2})
    verdict = plan.validate(message, extra_properties="allow")
    assert verdict == Verdict(True, "scroll", "scroll/1-0-0")


def test_extra_properties_flagged_pass_with_flag(plan: TrackingPlan) -> None:
    message = message_for("scroll", {"depth_percent": 10, "zoom": 2})
    verdict = plan.validate(message, extra_properties="flag")
    assert verdict == Verdict(True, "scroll", "scroll/1-0-0", (), ("extra_properties",))


def test_extra_properties_rejected_give_one_error_per_key(plan: TrackingPlan) -> None:
    message = message_for("scroll", {"depth_percent": 10, "zoom": 2, "Button Name": "x"})
    verdict = plan.validate(message, extra_properties="reject")
    assert not verdict.ok
    assert verdict.errors == (
        PlanError('$.properties["Button Name"]',
                  "'Button Name' is not a property of scroll/1-0-0", "unexpected_property"),
        PlanError("$.properties.zoom", "'zoom' is not a property of scroll/1-0-0",
                  "unexpected_property"),
    )


def test_extra_traits_on_identify_follow_the_same_policy(plan: TrackingPlan) -> None:
    message = message_for("identify", {"email": "a@b.c", "favourite_colour": "teal"})
    assert plan.validate(message).flags == ("extra_properties",)
    assert paths(plan.validate(message, extra_properties="reject")) == [
        "$.traits.favourite_colour"]


def test_nested_extra_keys_are_not_policed(plan: TrackingPlan) -> None:
    props = example(plan, "purchase")
    props["items"][0]["gift_wrap"] = True
    assert plan.validate(message_for("purchase", props), extra_properties="reject").ok


# ---------------------------------------------------------------------- versions
@pytest.fixture()
def plan_copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(PLAN_DIR, target)
    return target


def edit_json(path: Path, change) -> None:  # noqa: ANN001 - a small test helper
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def test_highest_version_is_current_and_older_versions_stay_loadable(plan_copy: Path) -> None:
    old = plan_copy / "events" / "scroll" / "1-0-0.json"
    new = plan_copy / "events" / "scroll" / "1-10-0.json"
    shutil.copy(old, new)

    def bump(schema: dict) -> None:
        schema["x-version"] = "1-10-0"
        schema["properties"]["depth_percent"]["maximum"] = 200

    edit_json(new, bump)
    shutil.copy(old, plan_copy / "events" / "scroll" / "1-2-0.json")
    edit_json(plan_copy / "events" / "scroll" / "1-2-0.json",
              lambda s: s.update({"x-version": "1-2-0"}))
    plan = TrackingPlan.load(plan_copy)

    assert plan.check() == []
    assert plan.events()["scroll"] == "1-10-0"
    assert plan.versions("scroll") == ["1-0-0", "1-2-0", "1-10-0"]
    message = message_for("scroll", {"depth_percent": 150})
    assert plan.validate(message) == Verdict(True, "scroll", "scroll/1-10-0")
    pinned = plan.validate(message, version="1-0-0")
    assert pinned.schema_version == "scroll/1-0-0"
    assert paths(pinned) == ["$.properties.depth_percent"]
    with pytest.raises(KeyError):
        plan.validate(message, version="9-9-9")


# ---------------------------------------------------------------------- check() on a broken plan
def test_check_finds_a_keyword_outside_the_whitelist(plan_copy: Path) -> None:
    def add_format(schema: dict) -> None:
        schema["properties"]["order_id"]["format"] = "uuid"
        schema["properties"]["items"]["prefixItems"] = [{"type": "object"}]

    edit_json(plan_copy / "events" / "purchase" / "1-0-0.json", add_format)
    problems = TrackingPlan.load(plan_copy).check()
    assert any("'format' is not allowed" in p and "order_id" in p for p in problems)
    assert any("'prefixItems' is not allowed" in p for p in problems)


def test_check_finds_x_event_and_x_version_mismatches(plan_copy: Path) -> None:
    edit_json(plan_copy / "events" / "click" / "1-0-0.json",
              lambda s: s.update({"x-event": "tap", "x-version": "2-0-0"}))
    problems = TrackingPlan.load(plan_copy).check()
    assert any("x-event 'tap' does not match the folder ('click')" in p for p in problems)
    assert any("x-version '2-0-0' does not match" in p for p in problems)


def test_check_finds_an_alias_to_nothing(plan_copy: Path) -> None:
    edit_json(plan_copy / "aliases.json", lambda a: a.update({"Cart Viewed": "cart_view"}))
    problems = TrackingPlan.load(plan_copy).check()
    assert problems == ["aliases.json: 'Cart Viewed' -> 'cart_view', which is not a planned event"]


def test_check_finds_schema_rules_both_validators_would_read_differently(plan_copy: Path) -> None:
    def break_it(schema: dict) -> None:
        items = schema["properties"]["items"]
        items["items"] = {"$ref": "#/$defs/item", "minItems": 2}
        schema["properties"]["order_id"].pop("description")
        schema["additionalProperties"] = False
        schema["properties"]["coupon"]["title"] = 5

    edit_json(plan_copy / "events" / "purchase" / "1-0-0.json", break_it)
    problems = "\n".join(TrackingPlan.load(plan_copy).check())
    assert "$ref must stand alone" in problems
    assert "order_id: every property needs a description" in problems
    assert "additionalProperties must be true" in problems
    assert "5 is not of type 'string'" in problems       # the 2020-12 metaschema


def test_check_finds_an_example_that_does_not_validate(plan_copy: Path) -> None:
    edit_json(plan_copy / "events" / "scroll" / "1-0-0.json",
              lambda s: s["examples"].append({"depth_percent": 101}))
    problems = TrackingPlan.load(plan_copy).check()
    assert any("examples[1] is invalid" in p and "maximum of 100" in p for p in problems)


def test_load_refuses_a_schema_that_is_not_json(plan_copy: Path) -> None:
    (plan_copy / "events" / "click" / "1-0-0.json").write_text("{not json")
    with pytest.raises(InvalidPlan) as caught:
        TrackingPlan.load(plan_copy)
    assert any("click/1-0-0.json: not readable JSON" in p for p in caught.value.problems)


# ---------------------------------------------------------------------- camelCase input
def test_to_snake_case_keys_converts_keys_recursively_and_leaves_values() -> None:
    raw = {
        "messageId": "m-1",
        "anonymousId": "anonymousId",
        "context": {"userAgent": "UA", "library": {"name": "x"}, "page": {"URL": "u"}},
        "properties": {"orderId": "o", "items": [{"productID": "p", "imageUrl": "i"}],
                       "HTTPStatus": 200, "utm_source": "s", "Button Name": "b", "$ga": 1},
    }
    assert to_snake_case_keys(raw) == {
        "message_id": "m-1",
        "anonymous_id": "anonymousId",
        "context": {"user_agent": "UA", "library": {"name": "x"}, "page": {"url": "u"}},
        "properties": {"order_id": "o", "items": [{"product_id": "p", "image_url": "i"}],
                       "http_status": 200, "utm_source": "s", "Button Name": "b", "$ga": 1},
    }


def test_to_snake_case_keys_prefers_the_snake_case_spelling_when_both_are_sent() -> None:
    assert to_snake_case_keys({"userId": "camel", "user_id": "snake"}) == {"user_id": "snake"}
    assert to_snake_case_keys({"user_id": "snake", "userId": "camel"}) == {"user_id": "snake"}


def test_to_snake_case_keys_does_not_touch_the_input() -> None:
    raw = {"sentAt": "t", "properties": {"depthPercent": 5}}
    to_snake_case_keys(raw)
    assert raw == {"sentAt": "t", "properties": {"depthPercent": 5}}


# ---------------------------------------------------------------------- plan_check
def test_plan_check_passes_the_shipped_valid_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert plan_check(PLAN_DIR, PLAN_DIR / "samples" / "valid_batch.json") == 0
    out = capsys.readouterr().out
    assert "no problems" in out
    assert "9 valid, 0 invalid" in out
    assert "'Order Completed' -> purchase/1-0-0: ok" in out


def test_plan_check_reports_every_error_of_the_invalid_sample(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert plan_check(PLAN_DIR, PLAN_DIR / "samples" / "invalid_batch.json") == 1
    out = capsys.readouterr().out
    for expected in ("$.properties.order_id", "$.properties.revenue",
                     "$.properties.items[1].quantity", "$.properties.depth_percent",
                     "$.properties.direction", "$.previous_id", "$.timestamp",
                     "$.properties.store_id"):
        assert expected in out
    assert "0 valid, 6 invalid" in out


def test_plan_check_accepts_a_single_message_and_a_list(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"type": "track", "event": "Signed In", "messageId": "m",
                               "userId": "u", "properties": {"method": "password"}}))
    assert plan_check(PLAN_DIR, one) == 0
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"type": "page", "messageId": "m", "anonymousId": "a"},
                                {"type": "track", "event": "scroll", "messageId": "n",
                                 "anonymousId": "a", "properties": {"depthPercent": 101}}]))
    assert plan_check(PLAN_DIR, many) == 1


def test_plan_check_fails_on_a_broken_plan_or_unreadable_sample(
    plan_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    bad_sample = tmp_path / "bad.json"
    bad_sample.write_text("[{")
    assert plan_check(PLAN_DIR, bad_sample) == 1
    edit_json(plan_copy / "aliases.json", lambda a: a.update({"Cart Viewed": "cart_view"}))
    assert plan_check(plan_copy, None) == 1
    assert "'Cart Viewed' -> 'cart_view'" in capsys.readouterr().out
