"""Funnels in ClickHouse agree with the plain-Python reference on generated and hand-made data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from funnelhouse.analyses import FunnelSpec, SpecError, run_analysis
from funnelhouse.analyses.common import EventSpec
from funnelhouse.analyses.funnel import Exclusion, run_funnel
from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.support import analyses_reference as ref
from tests.support.sample import blank_row, load_rows, person_and_session_of
from tests.warehouse_backends import WarehouseMaker

TZ = "Asia/Seoul"
FROM, TO = date(2024, 3, 1), date(2024, 3, 14)
LATE_AS_OF = datetime(2024, 6, 1, tzinfo=UTC)         # every window has closed
MID_AS_OF = datetime(2024, 3, 9, 12, tzinfo=UTC)       # some people still inside their window


class Data:
    def __init__(self, warehouse: Warehouse, events: list[ref.Event]) -> None:
        self.warehouse = warehouse
        self.events = events


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Data]:
    root = tmp_path_factory.mktemp("funnel")
    settings = Settings(data_dir=root, reporting_tz=TZ)
    generated = generate(seed=11, people=260, days=14, start_date=FROM)
    data = Data(make_warehouse(settings.warehouse_dir), [])
    try:
        load_rows(data.warehouse, settings, generated.rows)
        person_of, session_of = person_and_session_of(data.warehouse)
        data.events = ref.events_from_raw(generated.rows, TZ, person_of, session_of)
        yield data
    finally:
        # The tie test swaps the handle; close whichever is open now.
        data.warehouse.close()


def steps(*texts: str) -> tuple[EventSpec, ...]:
    return tuple(EventSpec.parse(t) for t in texts)


def assert_matches_reference(data: Data, spec: FunnelSpec, as_of: datetime = LATE_AS_OF) -> dict:
    spec = FunnelSpec(**{**spec.__dict__, "date_from": FROM, "date_to": TO, "as_of": as_of})
    result = run_funnel(data.warehouse, spec, TZ)
    expected = ref.funnel(data.events, spec, FROM, TO, as_of)
    got = {g["breakdown"]: g for g in result.data["groups"]}
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key]["excluded"] == want["excluded"], key
        for k, (g, w) in enumerate(zip(got[key]["steps"], want["steps"], strict=True), 1):
            for field in ("people", "dropped", "in_window"):
                assert g[field] == w[field], (key, k, field)
            for field in ("median_s_from_prev", "mean_s_from_prev", "median_s_from_start",
                          "mean_s_from_start"):
                if w[field] is None:
                    assert g[field] is None, (key, k, field)
                else:
                    assert g[field] == pytest.approx(w[field], abs=0.002), (key, k, field)
            if w["percentiles_s_from_start"] is None:
                assert g["percentiles_s_from_start"] is None, (key, k)
            else:
                assert g["percentiles_s_from_start"] == pytest.approx(
                    w["percentiles_s_from_start"], abs=0.002), (key, k)
            assert g["covering_s_from_start"] == w["covering_s_from_start"], (key, k)
            assert g["revenue"] == pytest.approx(w["revenue"], abs=0.011), (key, k)
    assert expected[None]["steps"][0]["people"] > 0
    return result.to_dict()


SHOP = ("page_view", "product_view", "add_to_cart", "begin_checkout", "purchase")


def test_loose_funnel_with_first_touch_breakdown_matches_reference(data: Data) -> None:
    doc = assert_matches_reference(data, FunnelSpec(steps=steps(*SHOP), window_ms=3 * 86_400_000,
                                                    breakdown="device_type"))
    assert doc["summary"]["converted"] > 0
    assert len(doc["data"]["groups"]) > 2       # (all) and at least two devices


def test_strict_funnel_with_last_touch_breakdown_matches_reference(data: Data) -> None:
    assert_matches_reference(data, FunnelSpec(
        steps=steps("product_view", "add_to_cart", "begin_checkout", "purchase"), order="strict",
        window_ms=86_400_000, breakdown="product_category", attribution="last"))


@pytest.mark.parametrize("attribution", ["first", "last"])
@pytest.mark.parametrize("names", [SHOP, ("page_view", "page_view", "product_view", "page_view",
                                          "add_to_cart")])
def test_strict_funnel_searched_matches_reference(data: Data, attribution: str,
                                                  names: tuple[str, ...]) -> None:
    # Strict order without exclusions is a search, not the walk: the first step event
    # after step k-1's (a repeat of step k-1 aside) fills step k or ends the attempt.
    # Page views between the steps stop most attempts; repeated steps let some through.
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*names), order="strict", window_ms=2 * 86_400_000,
        breakdown="device_type", attribution=attribution))
    assert "arrayFold" not in doc["sql"]
    reached = [s["people"] for s in doc["data"]["groups"][0]["steps"]]
    assert reached[0] > reached[2] > 0          # some stopped, some went on


def test_loose_funnel_with_last_touch_breakdown_matches_reference(data: Data) -> None:
    # The plain search keeps step-1-only events out of its arrays: the last step reached
    # must still name its own event's value, and step 1's the opener's.
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*SHOP), window_ms=3 * 86_400_000, breakdown="page_path",
        attribution="last"))
    assert len(doc["data"]["groups"]) > 2


@pytest.mark.parametrize("attribution", ["first", "last"])
def test_loose_funnel_with_a_step_repeated_matches_reference(data: Data, attribution: str) -> None:
    # page_view is steps 1, 2 and 4: the opening page view cannot fill step 2 itself, and
    # a page view after the product view fills step 4.
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps("page_view", "page_view", "product_view", "page_view", "purchase"),
        window_ms=2 * 86_400_000, breakdown="device_type", attribution=attribution),
        as_of=MID_AS_OF)
    assert doc["data"]["groups"][0]["steps"][3]["people"] > 0


def test_any_order_funnel_matches_reference(data: Data) -> None:
    assert_matches_reference(data, FunnelSpec(
        steps=steps("search", "product_view", "add_to_cart"), order="any",
        window_ms=2 * 86_400_000, breakdown="channel"))


@pytest.mark.parametrize("attribution", ["first", "last"])
@pytest.mark.parametrize(("names", "searched"), [
    (("product_view", "search", "add_to_cart", "purchase"), True),
    # an event that may be two steps needs the walk: it fills the first one not done
    (("page_view", "product_view", "page_view"), False),
    (("product_view", "*", "add_to_cart"), False),
])
def test_any_order_funnel_searched_or_walked_matches_reference(
        data: Data, attribution: str, names: tuple[str, ...], searched: bool) -> None:
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*names), order="any", window_ms=2 * 86_400_000, breakdown="device_type",
        attribution=attribution))
    assert ("arrayFold" not in doc["sql"]) is searched
    reached = [s["people"] for s in doc["data"]["groups"][0]["steps"]]
    assert reached[0] > reached[-1] > 0


def test_filters_exclusion_optional_and_held_property_match_reference(data: Data) -> None:
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps("product_view:product_category~shoes", "scroll", "add_to_cart",
                    "purchase"),
        optional=(2,), hold="product_id", window_ms=86_400_000,
        exclusions=(Exclusion(EventSpec.parse("remove_from_cart"), 3, 4),)))
    assert doc["data"]["groups"][0]["steps"][2]["people"] > 0


@pytest.mark.parametrize("attribution", ["first", "last"])
@pytest.mark.parametrize(("names", "optional", "extra", "searched"), [
    (SHOP, (2,), {}, True),
    (SHOP, (2, 3), {}, True),                       # two optional steps in a row
    (SHOP, (2, 4), {"as_of": MID_AS_OF}, True),
    # an event that may fill the optional step and the required one after it fills the
    # optional one (the lowest), as in the walk; the opener may not fill step 2
    (("page_view", "product_view", "product_view", "purchase"), (2,), {}, True),
    (("page_view", "page_view", "product_view", "page_view", "purchase"), (2, 4), {}, True),
    # strict order: the first event of another step fills a step it may, or ends it
    (SHOP, (2,), {"order": "strict"}, True),
    (("page_view", "page_view", "product_view", "page_view", "add_to_cart"), (2, 4),
     {"order": "strict"}, True),
    # exclusions: voiding the level reached, until the next step is filled
    (SHOP, (3,), {"exclude": "remove_from_cart"}, True),
    (SHOP, (2, 3), {"exclude": "product_view@1-4"}, True),
    (SHOP, (3,), {"exclude": "page_view@2-4", "order": "strict"}, True),
])
def test_optional_steps_searched_or_walked_match_reference(
        data: Data, attribution: str, names: tuple[str, ...], optional: tuple[int, ...],
        extra: dict, searched: bool) -> None:
    extra = dict(extra)   # the parameters are shared between runs: not popped in place
    as_of = extra.pop("as_of", LATE_AS_OF)
    exclusions = (Exclusion.parse(extra.pop("exclude")),) if "exclude" in extra else ()
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*names), optional=optional, window_ms=2 * 86_400_000,
        breakdown="device_type", attribution=attribution, exclusions=exclusions, **extra),
        as_of=as_of)
    assert ("arrayFold" not in doc["sql"]) is searched
    assert doc["summary"]["excluded"] > 0 or not exclusions


@pytest.mark.parametrize("attribution", ["first", "last"])
@pytest.mark.parametrize(("names", "hold", "extra", "searched"), [
    (("product_view", "add_to_cart", "begin_checkout", "purchase"), "product_id", {}, True),
    (("product_view", "add_to_cart", "purchase"), "product_id", {"as_of": MID_AS_OF}, True),
    # the opener may not fill step 2 itself; a later view of the same product does
    (("product_view", "product_view", "purchase"), "product_id", {}, True),
    (("page_view", "product_view", "add_to_cart"), "device_type", {}, True),
    # an opener with several order lines holds its first line's product
    (("purchase", "product_view", "purchase"), "product_id", {}, True),
    # strict order: the first event offering the value of another step fills or ends it
    (("product_view", "add_to_cart", "purchase"), "product_id", {"order": "strict"}, True),
    (("product_view", "product_view", "add_to_cart", "product_view"), "product_id",
     {"order": "strict"}, True),
    # the walk: an optional step, an exclusion
    (("product_view", "add_to_cart", "purchase"), "product_id", {"optional": (2,)}, False),
    (("product_view", "add_to_cart", "purchase"), "product_id",
     {"exclude": "remove_from_cart"}, False),
])
def test_held_property_searched_or_walked_matches_reference(
        data: Data, attribution: str, names: tuple[str, ...], hold: str, extra: dict,
        searched: bool) -> None:
    extra = dict(extra)   # the parameters are shared between runs: not popped in place
    as_of = extra.pop("as_of", LATE_AS_OF)
    exclusions = (Exclusion.parse(extra.pop("exclude")),) if "exclude" in extra else ()
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*names), hold=hold, window_ms=2 * 86_400_000, breakdown="device_type",
        attribution=attribution, exclusions=exclusions, **extra), as_of=as_of)
    assert ("arrayFold" not in doc["sql"]) is searched
    assert doc["data"]["groups"][0]["steps"][1]["people"] > 0


def test_exclusions_remove_people_from_every_step(data: Data) -> None:
    spec = FunnelSpec(steps=steps("add_to_cart", "begin_checkout", "purchase"),
                      exclusions=(Exclusion(EventSpec.parse("remove_from_cart")),))
    doc = assert_matches_reference(data, spec)
    assert doc["summary"]["excluded"] > 0


@pytest.mark.parametrize(("names", "exclusions", "extra", "searched"), [
    (SHOP, ("remove_from_cart",), {}, True),
    (SHOP, ("remove_from_cart@2-4", "search@1-2"), {}, True),
    # an exclusion that is a step too: filling the next step wins over voiding
    (SHOP, ("product_view@1-3",), {}, True),
    (SHOP, ("page_view@2-5",), {}, True),
    # last touch, and more steps than the voids' bits: searched over tuples, not numbers
    (SHOP, ("remove_from_cart",), {"attribution": "last"}, True),
    (SHOP, ("remove_from_cart@2-4", "product_view@1-3"), {"attribution": "last"}, True),
    ((*SHOP, *SHOP[1:], "page_view", "add_to_cart", "purchase"), ("remove_from_cart",), {},
     True),
    # strict order: voiding up to the step event that ends the attempt, none after it
    # (a page view after step 2 voids level 2 and would end the attempt: voiding wins)
    (SHOP, ("remove_from_cart", "page_view@2-3"), {"order": "strict"}, True),
    (SHOP, ("remove_from_cart@2-4", "product_view@1-3"), {"order": "strict"}, True),
    (SHOP, ("search@1-3", "add_to_cart@3-5"), {"order": "strict", "attribution": "last"}, True),
    (("page_view", "page_view", "product_view", "page_view", "add_to_cart"),
     ("search@1-4", "product_view@1-2"), {"order": "strict"}, True),
    # any order: the level when a void happens is the number of steps found before it
    (("product_view", "search", "add_to_cart", "purchase"), ("remove_from_cart",),
     {"order": "any"}, True),
    (("product_view", "search", "add_to_cart", "purchase"), ("remove_from_cart@2-4",
                                                              "search@1-3"),
     {"order": "any", "attribution": "last"}, True),
    # the walk: any order where an event may be two steps
    (("product_view", "add_to_cart", "product_view"), ("remove_from_cart",), {"order": "any"},
     False),
])
def test_exclusions_searched_or_walked_match_reference(
        data: Data, names: tuple[str, ...], exclusions: tuple[str, ...],
        extra: dict[str, str], searched: bool) -> None:
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(*names), window_ms=3 * 86_400_000, breakdown="device_type",
        exclusions=tuple(Exclusion.parse(x) for x in exclusions), **extra))  # type: ignore[arg-type]
    assert ("arrayFold" not in doc["sql"]) is searched
    assert doc["summary"]["excluded"] > 0 or not searched


def test_property_filters_on_json_and_numbers_match_reference(data: Data) -> None:
    assert_matches_reference(data, FunnelSpec(
        steps=steps("page_view:page_path!=/faq", "product_view:price>=50000",
                    "add_to_cart:properties.quantity>1"), window_ms=86_400_000,
        breakdown="properties.category"))


def test_more_than_ten_steps(data: Data) -> None:
    twelve = ("page_view", "page_view", "product_view", "page_view", "product_view",
              "page_view", "product_view", "scroll", "page_view", "product_view", "add_to_cart",
              "purchase")
    doc = assert_matches_reference(data, FunnelSpec(steps=steps(*twelve),
                                                    window_ms=14 * 86_400_000))
    assert len(doc["data"]["groups"][0]["steps"]) == 12
    assert doc["data"]["groups"][0]["steps"][10]["people"] > 0


@pytest.mark.parametrize(("n", "packed"), [(23, True), (24, False)])
def test_the_most_steps_one_number_holds_and_one_more(data: Data, n: int, packed: bool) -> None:
    # Up to 23 steps a later-step event travels as one number (its hits in the low 24
    # bits); from 24 steps on as a tuple. Both agree with the reference.
    cycle = ("page_view", "product_view", "scroll", "page_view", "add_to_cart")
    spec = FunnelSpec(steps=steps(*(cycle * 5)[:n]), window_ms=14 * 86_400_000)
    doc = assert_matches_reference(data, spec)
    assert ("packed_raw" in doc["sql"]) is packed
    reached = [s["people"] for s in doc["data"]["groups"][0]["steps"]]
    assert reached[5] > 0                       # the walk goes past the first cycle


def test_people_inside_their_window_are_counted_apart(data: Data) -> None:
    doc = assert_matches_reference(
        data, FunnelSpec(steps=steps(*SHOP), window_ms=7 * 86_400_000), as_of=MID_AS_OF)
    steps_out = doc["data"]["groups"][0]["steps"]
    assert sum(s["in_window"] for s in steps_out) > 0
    assert sum(s["dropped"] for s in steps_out) > 0


def test_spec_errors_are_reported() -> None:
    with pytest.raises(SpecError):
        FunnelSpec(steps=steps("page_view"))
    with pytest.raises(SpecError):
        FunnelSpec(steps=steps("a", "b", "c"), optional=(3,))
    with pytest.raises(SpecError):
        FunnelSpec(steps=steps("a", "b"), order="sideways")
    with pytest.raises(SpecError):
        FunnelSpec.from_json({"steps": ["a", "b"], "window": "seven days"})
    with pytest.raises(SpecError):
        FunnelSpec(steps=steps("a", "b"), exclusions=(Exclusion(EventSpec("x"), 2, 2),))


def test_sql_names_its_parameters_and_never_inlines_values(data: Data) -> None:
    doc = run_analysis("funnel", {"steps": ["page_view:page_path=/it's", "purchase"],
                                  "date_from": "2024-03-01", "date_to": "2024-03-14",
                                  "as_of": "2024-06-01T00:00:00Z"}, data.warehouse, TZ).to_dict()
    code = "\n".join(line.split("--")[0] for line in doc["sql"].splitlines())
    assert "/it's" not in code
    assert "{step_1_value_1:String}" in doc["sql"]
    assert doc["params"]["step_1_value_1"] == "/it's"


# -- hand-made: ties in timestamps ------------------------------------------------------
def _row(anon: str, mid: str, event: str, at: str, **props: object) -> dict:
    import orjson

    row = blank_row()
    kind = {"page_view": "page"}.get(event, "track")
    row.update(message_id=mid, type=kind, event=event, anonymous_id=anon, timestamp=at,
               original_timestamp=at, sent_at=at, received_at=at, source="web", channel="web",
               device_type="desktop", properties=orjson.dumps(props).decode(), traits="{}",
               context="{}", page_path="/" if event == "page_view" else "")
    return row


def hand_made(tmp_path: Path, data: Data, make_warehouse: WarehouseMaker, rows: list[dict]
              ) -> Iterator[tuple[Warehouse, list[ref.Event]]]:
    """A warehouse of these rows (reporting time zone UTC), models built."""
    # chdb serves one data folder per process: pause the module's folder while this runs.
    if isinstance(data.warehouse, ChdbWarehouse):
        data.warehouse.close()
    settings = Settings(data_dir=tmp_path, reporting_tz="UTC")
    warehouse = make_warehouse(settings.warehouse_dir)
    try:
        load_rows(warehouse, settings, rows)
        person_of, session_of = person_and_session_of(warehouse)
        yield warehouse, ref.events_from_raw(rows, "UTC", person_of, session_of)
    finally:
        warehouse.close()
        if isinstance(data.warehouse, ChdbWarehouse):
            data.warehouse = ChdbWarehouse(data.warehouse.path)


@pytest.fixture
def tie_warehouse(tmp_path: Path, data: Data, make_warehouse: WarehouseMaker
                  ) -> Iterator[tuple[Warehouse, list[ref.Event]]]:
    same = "2024-03-02 10:00:00.000"
    rows = [
        # a: page_view and product_view in the same millisecond, page_view ordered first
        _row("a", "a-1", "page_view", same), _row("a", "a-2", "product_view", same),
        _row("a", "a-3", "purchase", "2024-03-02 10:05:00.000"),
        # b: the same millisecond, but product_view's message_id sorts first
        _row("b", "b-2", "page_view", same), _row("b", "b-1", "product_view", same),
        _row("b", "b-3", "purchase", "2024-03-02 10:05:00.000"),
        # c: a second page_view in the same millisecond is no step; a later product_view is
        _row("c", "c-1", "page_view", same), _row("c", "c-2", "page_view", same),
        _row("c", "c-3", "product_view", "2024-03-02 11:00:00.000"),
        # d: a product_view exactly at the window's end counts, one ms later would not
        _row("d", "d-1", "page_view", same),
        _row("d", "d-2", "product_view", "2024-03-02 11:00:00.000"),
        _row("e", "e-1", "page_view", same),
        _row("e", "e-2", "product_view", "2024-03-02 11:00:00.001"),
    ]
    yield from hand_made(tmp_path, data, make_warehouse, rows)


@pytest.mark.parametrize("order", ["loose", "strict"])
@pytest.mark.parametrize("table", ["current", "before_day_event_seq"])
def test_same_millisecond_steps_follow_message_id_order(tie_warehouse, table: str,  # type: ignore[no-untyped-def]
                                                        order: str) -> None:
    # Strict order answers alike here: c's second page view in the same millisecond is a
    # repeat of step 1, which lets the attempt go on.
    warehouse, events = tie_warehouse
    if table == "before_day_event_seq":     # a release's table before the column existed
        warehouse.execute("ALTER TABLE behavior_events DROP COLUMN day_event_seq")
    spec = FunnelSpec(steps=steps("page_view", "product_view", "purchase"), window_ms=3_600_000,
                      order=order, breakdown="anonymous_id", date_from=date(2024, 3, 2),
                      date_to=date(2024, 3, 2), as_of=LATE_AS_OF)
    result = run_funnel(warehouse, spec, "UTC")
    reached = {g["breakdown"]: [s["people"] for s in g["steps"]] for g in result.data["groups"]}
    assert reached["a"] == [1, 1, 1]          # a-1 page_view, then a-2 product_view at 0 ms
    assert reached["b"] == [1, 0, 0]          # b-1 product_view sorts before b-2 page_view
    assert reached["c"] == [1, 1, 0]          # c-3, exactly one hour later, is step 2
    assert reached["d"] == [1, 1, 0]          # exactly one hour: inside the window
    assert reached["e"] == [1, 0, 0]          # one millisecond too late
    a_steps = next(g for g in result.data["groups"] if g["breakdown"] == "a")["steps"]
    assert a_steps[1]["median_s_from_prev"] == 0.0
    expected = ref.funnel(events, spec, spec.date_from, spec.date_to, LATE_AS_OF)
    assert {k: [s["people"] for s in v["steps"]] for k, v in expected.items()} == \
        {g["breakdown"]: [s["people"] for s in g["steps"]] for g in result.data["groups"]}


@pytest.fixture
def repeat_buyers(tmp_path: Path, data: Data, make_warehouse: WarehouseMaker
                  ) -> Iterator[tuple[Warehouse, list[ref.Event]]]:
    # p's first purchase opens the funnel; its revenue and time are the opener's.
    rows = [_row("p", "p-1", "purchase", "2024-03-02 22:00:00.250", revenue=10.5),
            _row("p", "p-2", "purchase", "2024-03-02 22:05:00.000", revenue=99.0),
            _row("p", "p-3", "page_view", "2024-03-02 22:10:00.000"),
            _row("q", "q-1", "purchase", "2024-03-02 23:00:00.000", revenue=7.0)]
    yield from hand_made(tmp_path, data, make_warehouse, rows)


@pytest.mark.parametrize(("second", "revenues", "seconds"), [
    ("purchase", [10.5, 99.0], 299.75),    # the opener is a later step's event too
    ("page_view", [10.5, 0.0], 599.75),    # the opener is a step-1 event only
])
def test_the_opener_brings_its_own_revenue_and_time(repeat_buyers, second: str,  # type: ignore[no-untyped-def]
                                                    revenues: list[float], seconds: float
                                                    ) -> None:
    warehouse, events = repeat_buyers
    spec = FunnelSpec(steps=steps("purchase", second), window_ms=3_600_000,
                      breakdown="anonymous_id", date_from=date(2024, 3, 2),
                      date_to=date(2024, 3, 2), as_of=LATE_AS_OF)
    result = run_funnel(warehouse, spec, "UTC")
    assert "packed_raw" in result.sql
    got = {g["breakdown"]: g["steps"] for g in result.data["groups"]}
    assert [s["people"] for s in got["p"]] == [1, 1]
    assert [s["revenue"] for s in got["p"]] == revenues        # not a later purchase's
    assert got["p"][1]["median_s_from_prev"] == seconds         # to the millisecond
    assert [s["people"] for s in got["q"]] == [1, 0]
    assert [s["revenue"] for s in got["q"]] == [7.0, 0.0]
    expected = ref.funnel(events, spec, spec.date_from, spec.date_to, LATE_AS_OF)
    assert {k: [s["revenue"] for s in v["steps"]] for k, v in expected.items()} == \
        {k: [s["revenue"] for s in v] for k, v in got.items()}


@pytest.mark.parametrize("attribution", ["first", "last"])
@pytest.mark.parametrize("table", ["current", "before_day_event_seq"])
def test_an_optional_step_may_be_skipped(tie_warehouse, table: str,  # type: ignore[no-untyped-def]
                                         attribution: str) -> None:
    # page_view -> product_view (optional) -> purchase, searched both with packed numbers
    # (day_event_seq) and with tuples (message_id ties, an older table)
    warehouse, events = tie_warehouse
    if table == "before_day_event_seq":
        warehouse.execute("ALTER TABLE behavior_events DROP COLUMN day_event_seq")
    spec = FunnelSpec(steps=steps("page_view", "product_view", "purchase"), window_ms=3_600_000,
                      optional=(2,), breakdown="anonymous_id", attribution=attribution,
                      date_from=date(2024, 3, 2), date_to=date(2024, 3, 2), as_of=LATE_AS_OF)
    result = run_funnel(warehouse, spec, "UTC")
    assert "arrayFold" not in result.sql
    reached = {g["breakdown"]: [s["people"] for s in g["steps"]] for g in result.data["groups"]}
    assert reached["a"] == [1, 1, 1]
    assert reached["b"] == [1, 0, 1]          # b-1 product_view is before the opener: skipped
    assert reached["c"] == [1, 1, 0]
    assert reached["e"] == [1, 0, 0]
    expected = ref.funnel(events, spec, spec.date_from, spec.date_to, LATE_AS_OF)
    assert {k: [s["people"] for s in v["steps"]] for k, v in expected.items()} == \
        {g["breakdown"]: [s["people"] for s in g["steps"]] for g in result.data["groups"]}


@pytest.mark.parametrize("period", ["day", "week"])
def test_conversion_by_entry_period_and_covering_window_match_reference(data: Data,
                                                                        period: str) -> None:
    spec = FunnelSpec(steps=steps("product_view", "add_to_cart", "purchase"),
                      window_ms=2 * 86_400_000, covering=0.95, trend=period,
                      date_from=FROM, date_to=TO, as_of=MID_AS_OF)
    doc = assert_matches_reference(data, spec, as_of=MID_AS_OF)
    expected = ref.funnel_trend(data.events, spec, FROM, TO, MID_AS_OF, TZ, period)
    got = {t["period"]: (t["entered"], t["converted"], t["still_open"])
           for t in doc["data"]["trend"]}
    assert got == expected and len(expected) > 1
    assert sum(v[0] for v in got.values()) == doc["summary"]["entered"]
    last = doc["data"]["groups"][0]["steps"][-1]
    assert last["percentiles_s_from_start"]["p50"] == pytest.approx(
        last["median_s_from_start"], abs=0.002)
    assert last["covering_s_from_start"] >= last["percentiles_s_from_start"]["p90"] - 0.002


def test_purchases_match_and_hold_on_their_order_lines(data: Data) -> None:
    """product detail view → cart → purchase of that product: the purchase carries the
    product only in its items[]; it must still fill the held step, with the line's revenue."""
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps("product_view", "add_to_cart", "purchase"), hold="product_id",
        window_ms=3 * 86_400_000, breakdown="product_category"))
    bought = doc["data"]["groups"][0]["steps"][2]
    assert bought["people"] > 0 and bought["revenue"] > 0
    # A purchase step filtered on one product (found in some order's lines).
    product = next(item["product_id"] for e in data.events if e.event == "purchase"
                   for item in e.properties.get("items", []) if item.get("product_id"))
    doc = assert_matches_reference(data, FunnelSpec(
        steps=steps(f"product_view:product_id={product}", f"purchase:product_id={product}"),
        window_ms=7 * 86_400_000))
    assert doc["data"]["groups"][0]["steps"][1]["people"] > 0
    assert_matches_reference(data, FunnelSpec(
        steps=steps("product_view", f"purchase:product_id!={product}"),
        window_ms=7 * 86_400_000))
