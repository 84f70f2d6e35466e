"""A step's text form reads back as the same step, whatever its values hold.

`EventSpec.text()` is what every spec's `to_json` sends back (and what a saved or shared
spec is run from again); a value such as `Shoes, Men` used to be re-read as two filters
and refused. Here: text → parse is the identity on specs with `,` `:` `=` `|` quotes,
backslashes and edge spaces; every form accepted before still reads the same; and a
funnel and a trend run from the re-read spec give the same figures as from the original,
and those figures are the ones counted by hand from the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from funnelhouse.analyses import FunnelSpec, SpecError, run_analysis
from funnelhouse.analyses.common import EventSpec, Filter
from funnelhouse.analyses.funnel import Exclusion
from funnelhouse.config import Settings
from funnelhouse.warehouse.base import Warehouse
from tests.support.sample import blank_row, load_rows
from tests.warehouse_backends import WarehouseMaker

# Values that a bare text form cannot carry, and plain ones that must stay bare.
AWKWARD = ["Shoes, Men", "a|b", 'say "hi"', '"quoted"', "  padded ", "padded\t", "=5", "<b>",
           "!x", "~tilde", ",", '"', "a,b:c=d|e\"f", "한글, 日本", 'back\\slash, "q"']
PLAIN = ["Shoes", "/cart", "a:b", "x=y", "https://shop.example/p?id=7", "me@example.com",
         "@1-2", "it's", "", "back\\slash", "trailing\\", "line\nbreak", "a>b"]


def spec(event: str, *filters: tuple[str, str, str]) -> EventSpec:
    return EventSpec(event, tuple(Filter(*f) for f in filters))


ROUND_TRIP = [
    *(spec("product_view", ("product_category", "=", v)) for v in AWKWARD + PLAIN),
    *(spec("product_view", ("product_category", op, "Shoes, Men"), ("price", ">", "10"))
      for op in ("=", "!=", "~", "!~")),
    spec("purchase", ("coupon", "=", "A, B"), ("properties.note", "~", 'x:"y"|z'),
         ("revenue", ">=", "5")),
    spec("*", ("page_path", "!=", "/a,b")),
    spec("checkout:step 2", ("x", "=", "1")),              # a name with a colon
    spec("checkout:step 2"),
    spec(" spaced name "),
    spec('"quoted name"', ("x", "=", "1")),
    spec("purchase", ("weird key, with comma", "=", "1")),  # a JSON key no bare form holds
    spec("purchase", ("properties.a b", "=", "x")),
]


@pytest.mark.parametrize("step", ROUND_TRIP, ids=lambda s: repr(s.text()))
def test_text_reads_back_as_the_same_step(step: EventSpec) -> None:
    assert EventSpec.parse(step.text()) == step
    assert EventSpec.from_json(step.text()) == step
    for flt in step.filters:
        assert Filter.parse(flt.text()) == flt


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_values_are_quoted_and_plain_ones_stay_bare(value: str) -> None:
    text = spec("e", ("p", "=", value)).text()
    assert text.startswith('e:p="'), text
    assert EventSpec.parse(text).filters[0].value == value


@pytest.mark.parametrize("value", PLAIN)
def test_plain_values_stay_bare(value: str) -> None:
    assert spec("e", ("p", "=", value)).text() == f"e:p={value}"


def test_the_reported_step_round_trips_through_a_funnel_spec() -> None:
    funnel = FunnelSpec(steps=(spec("product_view", ("product_category", "=", "Shoes, Men")),
                               EventSpec("purchase")),
                        exclusions=(Exclusion(spec("refund", ("reason", "=", "late, broken@1-2")),
                                              1, 2),))
    doc = funnel.to_json()
    assert doc["steps"][0] == 'product_view:product_category="Shoes, Men"'
    again = FunnelSpec.from_json(doc)
    assert again.steps == funnel.steps
    assert again.exclusions == funnel.exclusions
    assert FunnelSpec.from_json(again.to_json()).to_json() == doc


# Every form accepted before quoting existed reads as it always did.
EARLIER_FORMS = [
    ("page_view", spec("page_view")),
    ("  page_view  ", spec("page_view")),
    ("product_view:product_category~shoes,price>100",
     spec("product_view", ("product_category", "~", "shoes"), ("price", ">", "100"))),
    ("a: x = 1 , , y>=2,", spec("a", ("x", "=", "1"), ("y", ">=", "2"))),
    ("a:x!=", spec("a", ("x", "!=", ""))),
    ("a:x!~b c", spec("a", ("x", "!~", "b c"))),
    ("a:x==y", spec("a", ("x", "=", "=y"))),
    ("a:x<=5", spec("a", ("x", "<=", "5"))),
    ("a:url=https://x.example/?q=1", spec("a", ("url", "=", "https://x.example/?q=1"))),
    ('a:title~say "hi"', spec("a", ("title", "~", 'say "hi"'))),
    ('a:x="unclosed', spec("a", ("x", "=", '"unclosed'))),
    ('a:x="a" b', spec("a", ("x", "=", '"a" b'))),
    ("page_view:page_path=/it's", spec("page_view", ("page_path", "=", "/it's"))),
    ("a:properties.$os-name=iOS", spec("a", ("properties.$os-name", "=", "iOS"))),
]


@pytest.mark.parametrize(("text", "expected"), EARLIER_FORMS, ids=[t for t, _ in EARLIER_FORMS])
def test_earlier_text_forms_read_the_same(text: str, expected: EventSpec) -> None:
    assert EventSpec.parse(text) == expected


def test_a_lone_filter_value_runs_to_the_end_unless_quoted() -> None:
    # A filter given alone (an object's "filters": ["…"]) has no separator to stop at.
    shoes = Filter("product_category", "=", "Shoes, Men")
    assert Filter.parse("product_category=Shoes, Men") == shoes
    assert Filter.parse('product_category="Shoes, Men"') == shoes


@pytest.mark.parametrize("text", ["product_view:product_category=Shoes, Men", ":x=1", "a:=1",
                                  "a:x", '"unclosed:x=1', '"name" junk:x=1', 'a:""=1'])
def test_ambiguous_or_broken_text_is_refused(text: str) -> None:
    with pytest.raises(SpecError):
        EventSpec.parse(text)


# -- the analyses run from the re-read spec ----------------------------------------------
DAY = "2024-03-02"
AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
# person → the product_view categories they saw, and whether they then purchased
PEOPLE: dict[str, tuple[list[str], bool]] = {
    "a": (["Shoes, Men"], True),
    "b": (["Shoes, Men", "Shoes, Men"], False),
    "c": (["Shoes"], True),
    "d": (["Men"], True),
    "e": (['say "hi" | x:y=z'], True),
    "f": (['say "hi" | x:y=z', "Shoes, Men"], False),
    "g": (["=5, <b>"], True),
}
CATEGORIES = sorted({c for seen, _ in PEOPLE.values() for c in seen})


def _row(anon: str, mid: str, event: str, at: str, **props: object) -> dict[str, Any]:
    row = blank_row()
    row.update(message_id=mid, type="track", event=event, anonymous_id=anon, timestamp=at,
               original_timestamp=at, sent_at=at, received_at=at, source="web", channel="web",
               device_type="desktop", properties=orjson.dumps(props).decode(), traits="{}",
               context="{}")
    return row


def _rows() -> list[dict[str, Any]]:
    rows = []
    for anon, (seen, bought) in PEOPLE.items():
        for i, category in enumerate(seen):
            rows.append(_row(anon, f"{anon}-{i}", "product_view", f"{DAY} 10:0{i}:00.000",
                             category=category, tag=category))
        if bought:
            rows.append(_row(anon, f"{anon}-buy", "purchase", f"{DAY} 11:00:00.000"))
    return rows


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
              ) -> Iterator[Warehouse]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("roundtrip"), reporting_tz="UTC")
    opened = make_warehouse(settings.warehouse_dir)
    try:
        load_rows(opened, settings, _rows())
        yield opened
    finally:
        opened.close()


def _by_hand(category: str) -> tuple[int, int, int]:
    """People who viewed `category`, of them those who then purchased, and its views."""
    viewed = [p for p, (seen, _) in PEOPLE.items() if category in seen]
    bought = [p for p in viewed if PEOPLE[p][1]]
    views = sum(seen.count(category) for seen, _ in PEOPLE.values())
    return len(viewed), len(bought), views


@pytest.mark.parametrize("prop", ["product_category", "properties.tag"])
@pytest.mark.parametrize("category", CATEGORIES)
def test_a_funnel_from_the_re_read_spec_gives_the_same_figures(warehouse: Warehouse, prop: str,
                                                               category: str) -> None:
    first = {"event": "product_view", "filters": [{"prop": prop, "op": "=", "value": category}]}
    doc = {"steps": [first, "purchase"], "window": "1d", "date_from": DAY, "date_to": DAY,
           "as_of": AS_OF.isoformat()}
    original = run_analysis("funnel", doc, warehouse, "UTC").to_dict()
    re_read = run_analysis("funnel", original["spec"], warehouse, "UTC").to_dict()
    assert re_read["spec"] == original["spec"]
    assert re_read["data"] == original["data"]
    viewed, bought, _ = _by_hand(category)
    assert [s["people"] for s in original["data"]["groups"][0]["steps"]] == [viewed, bought]
    assert viewed > 0


@pytest.mark.parametrize("category", CATEGORIES)
def test_a_trend_from_the_re_read_spec_gives_the_same_figures(warehouse: Warehouse,
                                                              category: str) -> None:
    step = EventSpec("product_view", (Filter("product_category", "=", category),))
    doc = {"series": [{"event": step.text(), "math": "total"}], "interval": "day",
           "date_from": DAY, "date_to": DAY, "as_of": AS_OF.isoformat(), "compare": False}
    original = run_analysis("trends", doc, warehouse, "UTC").to_dict()
    re_read = run_analysis("trends", original["spec"], warehouse, "UTC").to_dict()
    assert re_read["data"] == original["data"]
    assert [float(v) for v in original["data"]["series"][0]["values"]] == [_by_hand(category)[2]]
