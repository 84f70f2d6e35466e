"""Correlation counts agree with the plain-Python reference (funnel and retention, events
and property values), and the statistics agree with a second formulation of the test."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from funnelhouse.analyses import SpecError
from funnelhouse.analyses.correlation import (
    CorrelationSpec,
    chi_square_p,
    odds_ratio,
    run_correlation,
)
from tests.support import analyses_reference as ref
from tests.support.sample import Loaded, loaded_reference
from tests.warehouse_backends import WarehouseMaker

TZ = "Asia/Kolkata"      # a half-hour offset: local midnights off the hour
FROM, TO = date(2024, 3, 4), date(2024, 3, 24)
MID_AS_OF = datetime(2024, 3, 22, 9, tzinfo=UTC)


Data = Loaded


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_warehouse: WarehouseMaker
         ) -> Iterator[Data]:
    with loaded_reference(tmp_path_factory.mktemp("correlation"), make_warehouse, TZ,
                          seed=3, people=300, days=21, start_date=FROM) as loaded:
        yield loaded


def check(result: dict, expected: dict[str, tuple[int, int]], successes: int, failures: int,
          kind: str) -> None:
    got = {c["name"]: c for c in result["data"]["candidates"] if c["kind"] == kind}
    want = {(k or "(none)") if kind == "property" else k: v for k, v in expected.items()}
    assert set(got) == set(want) and want
    for name, (a, b) in want.items():
        row = got[name]
        assert (row["success_with"], row["failure_with"]) == (a, b), name
        assert (row["success_without"], row["failure_without"]) == (successes - a,
                                                                    failures - b), name
    assert (result["summary"]["success"], result["summary"]["failure"]) == (successes, failures)
    assert successes > 0 and failures > 0


# Step 1 named (its events carry the property counts and the totals), step 1 with a
# filter, and step 1 any event (the grouping-sets form); a second property runs apart.
FUNNEL_STEPS = [["product_view", "add_to_cart", "purchase"],
                ["product_view:device_type=mobile", "add_to_cart", "product_view", "purchase"],
                ["*", "purchase"]]


@pytest.mark.parametrize("steps", FUNNEL_STEPS, ids=["named", "filtered-repeated", "any"])
def test_funnel_event_and_property_correlation_match_reference(data: Data,
                                                               steps: list[str]) -> None:
    doc = {"funnel": {"steps": steps, "window": "2d",
                      "date_from": FROM.isoformat(), "date_to": TO.isoformat(),
                      "as_of": MID_AS_OF.isoformat()},
           "properties": ["device_type", "channel"], "top": 500}
    spec = CorrelationSpec.from_json(doc)
    result = run_correlation(data.warehouse, spec, TZ).to_dict()
    assert spec.funnel is not None
    outcomes = ref.funnel_outcomes(data.events, spec.funnel, FROM, TO, MID_AS_OF)
    counts, successes, failures = ref.correlation_counts(outcomes)
    check(result, counts, successes, failures, "event")
    assert "purchase" not in {c["name"] for c in result["data"]["candidates"]}
    for prop in ("device_type", "channel"):
        by_value = ref.funnel_outcomes(data.events, replace(spec.funnel, breakdown=prop),
                                       FROM, TO, MID_AS_OF)
        counts, successes, failures = ref.correlation_counts(by_value, by_value=True)
        got = {c["name"]: c for c in result["data"]["candidates"]
               if c["kind"] == "property" and c["property"] == prop}
        want = {k or "(none)": v for k, v in counts.items()}
        assert {n: (c["success_with"], c["failure_with"]) for n, c in got.items()} == want


@pytest.mark.parametrize("mode", ["on", "on_or_after"])
def test_retention_correlation_matches_reference(data: Data, mode: str) -> None:
    doc = {"retention": {"cohort": "first_seen", "period": "week", "periods": 3, "mode": mode,
                         "date_from": FROM.isoformat(), "date_to": TO.isoformat(),
                         "as_of": MID_AS_OF.isoformat()},
           "retained_period": 1, "properties": ["channel"], "top": 500}
    spec = CorrelationSpec.from_json(doc)
    result = run_correlation(data.warehouse, spec, TZ).to_dict()
    assert spec.retention is not None
    outcomes = ref.retention_outcomes(data.events, spec.retention, 1, FROM, TO, MID_AS_OF, TZ)
    counts, successes, failures = ref.correlation_counts(outcomes)
    check(result, counts, successes, failures, "event")
    by_channel = ref.retention_outcomes(
        data.events, replace(spec.retention, breakdown="channel"),
        1, FROM, TO, MID_AS_OF, TZ)
    counts, successes, failures = ref.correlation_counts(by_channel, by_value=True)
    check(result, counts, successes, failures, "property")


def test_ranking_puts_significant_and_strong_first(data: Data) -> None:
    doc = {"funnel": {"steps": ["page_view", "purchase"], "window": "3d",
                      "date_from": FROM.isoformat(), "date_to": TO.isoformat(),
                      "as_of": MID_AS_OF.isoformat()}, "top": 5}
    result = run_correlation(data.warehouse, CorrelationSpec.from_json(doc), TZ).to_dict()
    shown = result["data"]["candidates"]
    assert len(shown) <= 5 and shown
    keys = [(not c["significant"], -abs(math.log(c["odds_ratio"]))) for c in shown]
    assert keys == sorted(keys)
    # Adding to cart is what sets buyers apart in the generated shop.
    assert shown[0]["significant"] and shown[0]["direction"] == "positive"


def yates_by_cells(a: int, b: int, c: int, d: int) -> float:
    """The same test from observed vs expected cells (a second formulation)."""
    n = a + b + c + d
    observed = [[a, b], [c, d]]
    rows, cols = [a + b, c + d], [a + c, b + d]
    statistic = 0.0
    for i in range(2):
        for j in range(2):
            expected = rows[i] * cols[j] / n
            statistic += max(0.0, abs(observed[i][j] - expected) - 0.5) ** 2 / expected
    # 1 degree of freedom: P(chi2 > x) = P(|Z| > sqrt(x)) = 2 * (1 - Phi(sqrt(x)))
    return 2 * (1 - 0.5 * (1 + math.erf(math.sqrt(statistic) / math.sqrt(2))))


@pytest.mark.parametrize("table", [(10, 20, 30, 40), (90, 10, 40, 60), (1, 0, 0, 1),
                                   (500, 480, 510, 490), (3, 17, 25, 5)])
def test_p_value_agrees_with_a_second_formulation(table: tuple[int, int, int, int]) -> None:
    assert chi_square_p(*table) == pytest.approx(yates_by_cells(*table), abs=1e-9)


def test_odds_ratio_is_smoothed_and_directional() -> None:
    assert odds_ratio(9, 1, 1, 9) == pytest.approx((10 / 2) / (2 / 10))
    assert odds_ratio(0, 5, 5, 0) < 1 < odds_ratio(5, 0, 0, 5)
    assert chi_square_p(0, 0, 5, 5) == 1.0            # nobody did it: nothing to test


@pytest.mark.parametrize("doc", [
    {}, {"funnel": {"steps": ["a", "b"]}, "retention": {}},
    {"retention": {"cohort_type": "recurring"}},
    {"retention": {"periods": 2}, "retained_period": 3},
    {"funnel": {"steps": ["a", "b"]}, "properties": [f"p{i}" for i in range(11)]},
])
def test_bad_correlation_specs_are_refused(doc: dict) -> None:
    with pytest.raises(SpecError):
        CorrelationSpec.from_json(doc)
