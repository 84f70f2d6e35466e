"""Next-purchase signals for CRM: what goes together, when people buy again, what is due.

Each signal is a parameterised query over the marts (order_items, behavior_events,
product_engagement, identity_map) that an analyst can read and a marketer's message
can use as input:

* ``co-bought`` — pairs of products in the same order, with support (orders with
  both), confidence P(other | product) and lift (how much more often than chance).
* ``co-viewed`` — the same for products viewed in the same session.
* ``repurchase`` — the repurchase cycle of each product (or category): among people
  who bought it on two or more days, the days between consecutive purchase days
  (median, quartiles) and the share of buyers who came back.
* ``due`` — per person, products (or categories) whose cycle says they are due again:
  last purchase day + median cycle falls within the horizon (or is a little overdue).
* ``next`` — per person, the products they are likely to buy next, with the reasons:
  carted but not bought, viewed but not bought, due for repurchase, bought together
  with something they bought. Scores are simple points, documented below, so a
  marketer can explain any recommendation.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from funnelhouse.people.segments import CompiledQuery
from funnelhouse.warehouse.base import QueryResult, Warehouse

__all__ = ["SIGNALS", "co_bought", "co_viewed", "due_for_repurchase", "likely_next",
           "repurchase_cycle", "run_signal"]

# Points of each reason in `next` (see the module docstring).
POINTS_CARTED = 3.0            # added to cart in the look-back window, not bought since
POINTS_VIEWED = 1.0            # viewed …, plus 0.5 per detail view up to 4 views
POINTS_DUE = 4.0               # due for repurchase by its cycle
POINTS_BOUGHT_WITH = 2.0       # × confidence of "bought together" with a recent purchase

_PERSON = ("person_id IN (SELECT person_id FROM identity_map WHERE id = {person:String} "
           "UNION ALL SELECT {person:String})")


def _item(level: str) -> tuple[str, str]:
    if level == "product":
        return "product_id", "any(product_name)"
    if level == "category":
        return "product_category", "product_category"
    raise ValueError("level is product or category")


# Products bought together: one basket per order.
ORDER_BASKETS = "SELECT DISTINCT order_id, product_id FROM order_items"


def _pairs(baskets: str, basket: str, count_name: str) -> str:
    """CTEs up to `scored` over a CTE `baskets(basket, product_id)`: support, confidence,
    lift per product pair."""
    return f"""baskets AS (
    {baskets}
),
product_baskets AS (
    SELECT product_id, count() AS n FROM baskets GROUP BY product_id
),
total AS (
    SELECT uniqExact({basket}) AS n FROM baskets
),
pairs AS (
    SELECT a.product_id AS product_id, b.product_id AS other_product_id,
           count() AS {count_name}
    FROM baskets AS a
    INNER JOIN baskets AS b ON a.{basket} = b.{basket}
    WHERE a.product_id != b.product_id
    GROUP BY product_id, other_product_id
),
scored AS (
    SELECT p.product_id AS product_id, p.other_product_id AS other_product_id,
           p.{count_name} AS {count_name},
           round(p.{count_name} / pa.n, 4) AS confidence,            -- P(other | product)
           round(p.{count_name} * t.n / (pa.n * pb.n), 3) AS lift      -- > 1: more than chance
    FROM pairs AS p
    INNER JOIN product_baskets AS pa ON pa.product_id = p.product_id
    INNER JOIN product_baskets AS pb ON pb.product_id = p.other_product_id
    CROSS JOIN total AS t
)"""


def _bought_or_viewed_together(baskets: str, basket: str, names: str, count_name: str,
                               min_param: str, params: dict[str, Any],
                               product_id: str | None) -> CompiledQuery:
    """Product pairs that share a basket (`baskets(basket, product_id)`): how often, the
    confidence P(other | product) and the lift, top `per_product` per product."""
    where = " AND s.product_id = {product:String}" if product_id else ""
    if product_id:
        params = {**params, "product": product_id}
    sql = f"""WITH
{_pairs(baskets, basket, count_name)},
names AS ({names})
SELECT s.product_id AS product_id, n1.product_name AS product_name,
       s.other_product_id AS other_product_id, n2.product_name AS other_product_name,
       s.{count_name} AS {count_name}, s.confidence AS confidence, s.lift AS lift
FROM scored AS s
LEFT JOIN names AS n1 ON n1.product_id = s.product_id
LEFT JOIN names AS n2 ON n2.product_id = s.other_product_id
WHERE s.{count_name} >= {{{min_param}:UInt32}}{where}
ORDER BY product_id, {count_name} DESC, lift DESC, other_product_id
LIMIT {{per_product:UInt32}} BY product_id"""
    return CompiledQuery(sql, params)


def co_bought(*, product_id: str | None = None, min_orders: int = 2, per_product: int = 10,
              **_: Any) -> CompiledQuery:
    """Products bought in the same order."""
    return _bought_or_viewed_together(
        ORDER_BASKETS, "order_id",
        "SELECT product_id, any(product_name) AS product_name FROM order_items "
        "GROUP BY product_id",
        "orders_together", "min_orders",
        {"min_orders": min_orders, "per_product": per_product}, product_id)


def co_viewed(*, as_of: date, days: int = 90, product_id: str | None = None,
              min_sessions: int = 2, per_product: int = 10, **_: Any) -> CompiledQuery:
    """Products viewed in the same session, in the `days` before `as_of`."""
    viewed = ("FROM behavior_events WHERE event = 'product_view' AND product_id != '' "
              "AND event_date > {since:Date} AND event_date <= {as_of:Date}")
    return _bought_or_viewed_together(
        f"SELECT DISTINCT session_id, product_id {viewed}", "session_id",
        f"SELECT product_id, any(product_name) AS product_name {viewed} GROUP BY product_id",
        "sessions_together", "min_sessions",
        {"since": (as_of - timedelta(days=days)).isoformat(), "as_of": as_of.isoformat(),
         "min_sessions": min_sessions, "per_product": per_product}, product_id)


def _cycles(level: str) -> str:
    """CTE `cycles(item, item_name, buyers, repeat_buyers, repurchases, median_days, …)`."""
    item, item_name = _item(level)
    return f"""purchase_days AS (
    -- one row per person and item: the days they bought it, in order
    SELECT {item} AS item, {item_name} AS item_name, person_id,
           arraySort(groupUniqArray(order_date)) AS days
    FROM order_items
    WHERE {item} != ''
    GROUP BY item, person_id
),
cycles AS (
    -- gaps between consecutive purchase days of the people who bought on 2+ days
    SELECT item, any(item_name) AS item_name,
           count() AS buyers,
           countIf(length(days) >= 2) AS repeat_buyers,
           arrayFlatten(groupArray(
               arrayPopFront(arrayDifference(arrayMap(d -> toInt32(d), days))))) AS gaps,
           length(gaps) AS repurchases,
           round(repeat_buyers / buyers, 3) AS repeat_rate,
           if(repurchases = 0, NULL, arrayReduce('quantileExact(0.5)', gaps)) AS median_days,
           if(repurchases = 0, NULL, arrayReduce('quantileExact(0.25)', gaps)) AS p25_days,
           if(repurchases = 0, NULL, arrayReduce('quantileExact(0.75)', gaps)) AS p75_days
    FROM purchase_days
    GROUP BY item
)"""


def repurchase_cycle(*, level: str = "product", min_repeat_buyers: int = 2,
                     **_: Any) -> CompiledQuery:
    """Repurchase cycle of each product (or category) with enough repeat buyers."""
    sql = f"""WITH
{_cycles(level)}
SELECT item AS {level}, item_name AS {level}_name, buyers, repeat_buyers, repeat_rate,
       repurchases, median_days, p25_days, p75_days
FROM cycles
WHERE repeat_buyers >= {{min_repeat_buyers:UInt32}}
ORDER BY repeat_buyers DESC, {level}"""
    return CompiledQuery(sql, {"min_repeat_buyers": min_repeat_buyers})


def _due_cte(level: str, person: str | None) -> str:
    item, item_name = _item(level)
    who = f"\n      AND {_PERSON}" if person else ""
    return f"""{_cycles(level)},
last_bought AS (
    SELECT person_id, {item} AS item, {item_name} AS item_name,
           max(order_date) AS last_bought_date, uniqExact(order_date) AS times_bought
    FROM order_items
    WHERE {item} != '' AND order_date <= {{as_of:Date}}{who}
    GROUP BY person_id, item
),
due AS (
    SELECT l.person_id AS person_id, l.item AS item, l.item_name AS item_name,
           l.last_bought_date AS last_bought_date, l.times_bought AS times_bought,
           toUInt32(c.median_days) AS cycle_days,
           l.last_bought_date + toUInt32(c.median_days) AS due_date,
           dateDiff('day', due_date, {{as_of:Date}}) AS days_overdue
    FROM last_bought AS l
    INNER JOIN cycles AS c ON c.item = l.item
    WHERE c.repeat_buyers >= {{min_repeat_buyers:UInt32}} AND c.median_days IS NOT NULL
      AND due_date <= {{as_of:Date}} + {{horizon_days:UInt32}}
      AND due_date >= {{as_of:Date}} - {{overdue_days:UInt32}}
)"""


def due_for_repurchase(*, as_of: date, level: str = "product", person: str | None = None,
                       horizon_days: int = 7, overdue_days: int = 30,
                       min_repeat_buyers: int = 2, limit: int = 1000, **_: Any) -> CompiledQuery:
    """Per person: items whose repurchase cycle says they are due within the horizon."""
    sql = f"""WITH
{_due_cte(level, person)}
SELECT person_id, item AS {level}, item_name AS {level}_name, last_bought_date, times_bought,
       cycle_days, due_date, days_overdue
FROM due
ORDER BY person_id, due_date, {level}
LIMIT {{limit:UInt32}}"""
    params: dict[str, Any] = {"as_of": as_of.isoformat(), "horizon_days": horizon_days,
                              "overdue_days": overdue_days,
                              "min_repeat_buyers": min_repeat_buyers, "limit": limit}
    if person:
        params["person"] = person
    return CompiledQuery(sql, params)


def likely_next(*, as_of: date, person: str | None = None, lookback_days: int = 30,
                per_person: int = 5, min_orders: int = 2, horizon_days: int = 7,
                overdue_days: int = 30, min_repeat_buyers: int = 2, limit: int = 1000,
                **_: Any) -> CompiledQuery:
    """Per person: the products most likely next, with points and reasons."""
    who = f" AND {_PERSON}" if person else ""
    sql = f"""WITH
{_pairs(ORDER_BASKETS, "order_id", "orders_together")},
{_due_cte("product", person)},
recent AS (
    -- what each person did with each product in the look-back window
    SELECT person_id, product_id, any(product_name) AS product_name,
           sum(detail_views) AS views, sum(add_to_carts) AS carts,
           sum(purchased_quantity) AS bought
    FROM product_engagement
    WHERE activity_date > {{since:Date}} AND activity_date <= {{as_of:Date}}{who}
    GROUP BY person_id, product_id
),
bought_recently AS (
    SELECT DISTINCT person_id, product_id FROM order_items
    WHERE order_date > {{since:Date}} AND order_date <= {{as_of:Date}}{who}
),
candidates AS (
    SELECT person_id, product_id, product_name,
           {POINTS_CARTED} AS points, 'carted_not_bought' AS reason
    FROM recent WHERE carts > 0 AND bought = 0
    UNION ALL
    SELECT person_id, product_id, product_name,
           {POINTS_VIEWED} + 0.5 * least(views, 4) AS points, 'viewed_not_bought' AS reason
    FROM recent WHERE views > 0 AND carts = 0 AND bought = 0
    UNION ALL
    SELECT person_id, item AS product_id, item_name AS product_name,
           {POINTS_DUE} AS points, 'due_for_repurchase' AS reason
    FROM due
    UNION ALL
    SELECT r.person_id AS person_id, s.other_product_id AS product_id, '' AS product_name,
           {POINTS_BOUGHT_WITH} * s.confidence AS points,
           concat('bought_with:', s.product_id) AS reason
    FROM bought_recently AS r
    INNER JOIN scored AS s ON s.product_id = r.product_id
    WHERE s.orders_together >= {{min_orders:UInt32}} AND s.lift > 1
),
names AS (
    SELECT product_id, any(product_name) AS product_name FROM order_items GROUP BY product_id
)
SELECT c.person_id AS person_id, c.product_id AS product_id,
       if(any(n.product_name) != '', any(n.product_name), max(c.product_name)) AS product_name,
       round(sum(c.points), 2) AS score,
       arraySort(groupUniqArray(c.reason)) AS reasons
FROM candidates AS c
LEFT JOIN names AS n ON n.product_id = c.product_id
-- not what they just bought, unless its cycle says it is due again
WHERE (c.person_id, c.product_id) NOT IN (SELECT person_id, product_id FROM bought_recently)
   OR c.reason = 'due_for_repurchase'
GROUP BY person_id, product_id
ORDER BY person_id, score DESC, product_id
LIMIT {{per_person:UInt32}} BY person_id
LIMIT {{limit:UInt32}}"""
    params: dict[str, Any] = {
        "as_of": as_of.isoformat(), "since": (as_of - timedelta(days=lookback_days)).isoformat(),
        "per_person": per_person, "min_orders": min_orders, "horizon_days": horizon_days,
        "overdue_days": overdue_days, "min_repeat_buyers": min_repeat_buyers, "limit": limit}
    if person:
        params["person"] = person
    return CompiledQuery(sql, params)


SIGNALS = {
    "co-bought": co_bought,
    "co-viewed": co_viewed,
    "repurchase": repurchase_cycle,
    "due": due_for_repurchase,
    "next": likely_next,
}


def run_signal(reader: Warehouse, name: str, *, as_of: date, **options: Any
               ) -> tuple[CompiledQuery, QueryResult]:
    """Compile signal `name` with `options` (None values dropped) and run it."""
    if name not in SIGNALS:
        raise ValueError(f"unknown signal {name!r}: one of {', '.join(SIGNALS)}")
    query = SIGNALS[name](as_of=as_of, **{k: v for k, v in options.items() if v is not None})
    return query, reader.query(query.sql, query.params)
