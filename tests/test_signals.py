"""CRM signals against a plain Python reading of order_items and behavior_events."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import permutations

import pytest

from funnelhouse.people.signals import run_signal
from tests.people_support import Built, built_warehouse

AS_OF = date(2024, 3, 31)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("signals") / "data", people=300,
                         days=28) as b:
        yield b


@pytest.fixture(scope="module")
def lines(built: Built) -> list[tuple[str, str, str, str, str]]:
    return [tuple(r) for r in built.warehouse.query(
        "SELECT order_id, person_id, product_id, product_category, toString(order_date) "
        "FROM order_items").rows]


def signal(built: Built, name: str, **options: object) -> list[dict]:
    _, result = run_signal(built.warehouse, name, as_of=AS_OF, **options)
    return result.dicts()


def test_co_bought_counts_orders_with_both_products(built: Built, lines) -> None:
    baskets: dict[str, set[str]] = defaultdict(set)
    for order, _, product, _, _ in lines:
        baskets[order].add(product)
    together: dict[tuple[str, str], int] = defaultdict(int)
    for basket in baskets.values():
        for pair in permutations(sorted(basket), 2):
            together[pair] += 1
    of_product = defaultdict(int)
    for basket in baskets.values():
        for product in basket:
            of_product[product] += 1
    rows = signal(built, "co-bought", min_orders=1, per_product=1000)
    assert rows
    got = {(r["product_id"], r["other_product_id"]): r for r in rows}
    assert set(got) == set(together)
    for pair, row in got.items():
        assert row["orders_together"] == together[pair]
        assert row["confidence"] == pytest.approx(together[pair] / of_product[pair[0]], abs=1e-4)
        expected_lift = together[pair] * len(baskets) / (of_product[pair[0]] * of_product[pair[1]])
        assert row["lift"] == pytest.approx(expected_lift, abs=1e-3)


def test_co_viewed_pairs_share_a_session(built: Built) -> None:
    rows = signal(built, "co-viewed", days=60, min_sessions=1, per_product=1000)
    views = built.warehouse.query(
        "SELECT session_id, product_id FROM behavior_events WHERE event = 'product_view'").rows
    sessions: dict[str, set[str]] = defaultdict(set)
    for session, product in views:
        sessions[session].add(product)
    together: dict[tuple[str, str], int] = defaultdict(int)
    for products in sessions.values():
        for pair in permutations(sorted(products), 2):
            together[pair] += 1
    assert {(r["product_id"], r["other_product_id"]): r["sessions_together"]
            for r in rows} == dict(together)


def cycles(lines, level: int) -> dict[str, list[int]]:
    days: dict[tuple[str, str], set[date]] = defaultdict(set)
    for _, person, product, category, day in lines:
        days[((product, category)[level], person)].add(date.fromisoformat(day))
    gaps: dict[str, list[int]] = defaultdict(list)
    for (item, _), bought in days.items():
        ordered = sorted(bought)
        gaps[item] += [(b - a).days for a, b in zip(ordered, ordered[1:], strict=False)]
    return gaps


@pytest.mark.parametrize(("level", "index"), [("product", 0), ("category", 1)])
def test_repurchase_cycle_is_the_median_gap_between_purchase_days(built: Built, lines,
                                                                   level: str,
                                                                   index: int) -> None:
    gaps = cycles(lines, index)
    rows = signal(built, "repurchase", level=level, min_repeat_buyers=1)
    assert rows, "no repeat purchases planted: the test would prove nothing"
    for row in rows:
        item_gaps = gaps[row[level]]
        assert row["repurchases"] == len(item_gaps)
        ordered = sorted(item_gaps)
        low, high = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
        assert low <= row["median_days"] <= high, (row, statistics.median(item_gaps))
    assert {r[level] for r in rows} == {item for item, g in gaps.items() if g}


def test_due_lists_people_whose_cycle_ends_within_the_horizon(built: Built, lines) -> None:
    cycle = {r["category"]: r["median_days"]
             for r in signal(built, "repurchase", level="category", min_repeat_buyers=1)}
    rows = signal(built, "due", level="category", min_repeat_buyers=1, horizon_days=7,
                  overdue_days=30)
    last: dict[tuple[str, str], date] = {}
    for _, person, _, category, day in lines:
        d = date.fromisoformat(day)
        if d <= AS_OF:
            last[(person, category)] = max(last.get((person, category), d), d)
    expected = {key for key, d in last.items() if key[1] in cycle and
                AS_OF - timedelta(days=30) <= d + timedelta(days=int(cycle[key[1]]))
                <= AS_OF + timedelta(days=7)}
    assert expected and {(r["person_id"], r["category"]) for r in rows} == expected
    one = rows[0]
    assert one["due_date"] == (date.fromisoformat(one["last_bought_date"])
                               + timedelta(days=one["cycle_days"])).isoformat()


def test_next_for_one_person_explains_each_product(built: Built) -> None:
    carted = built.warehouse.query(
        "SELECT person_id, product_id FROM product_engagement WHERE add_to_carts > 0 "
        "AND purchased_quantity = 0 AND activity_date > toDate('2024-03-01') "
        "ORDER BY person_id, product_id LIMIT 1").rows
    person, product = carted[0]
    rows = signal(built, "next", person=person, per_person=50)
    assert {r["person_id"] for r in rows} == {person}
    mine = {r["product_id"]: r for r in rows}
    assert "carted_not_bought" in mine[product]["reasons"]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    allowed = ("carted_not_bought", "viewed_not_bought", "due_for_repurchase", "bought_with:")
    assert all(reason.startswith(allowed) for r in rows for reason in r["reasons"])


def test_next_finds_a_person_by_any_of_their_ids(built: Built) -> None:
    person = next(t for t in built.data.truth if t.user_ids and len(t.anonymous_ids) > 1
                  and t.order_ids)
    by_person = signal(built, "next", person=person.person_id)
    by_device = signal(built, "next", person=person.anonymous_ids[-1])
    assert by_person == by_device
