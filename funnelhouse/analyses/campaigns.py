"""Campaign performance over a date range: one row per campaign, and its daily trend.

Reads `campaign_performance` (grain: day × attribution model × source/medium/campaign),
which already credits every session under both models: `first_touch` (the landing of
the person's first session, kept for life) and `last_touch` (last non-direct click).
`touch=first|last` picks the model; nothing is re-attributed here.

Over a range, counts are summed and ratios are recomputed from the sums (conversion
rate = converting sessions / sessions, never an average of daily rates). `persons` is
a distinct count per day, so it is not additive across days: it appears in the daily
trend only, and the range rows carry `new_persons` (a person is new on one day only).

A trend day that had not ended at the answer's as-of moment (today in the reporting time
zone, or later) is `incomplete`: its counts can still grow, so a chart must not read its
fall as a drop (flag per trend row and `incomplete_days`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from funnelhouse.analyses.common import utc_text
from funnelhouse.models.built import require_tables
from funnelhouse.warehouse.base import Warehouse

TOUCHES = {"first": "first_touch", "last": "last_touch"}
DEFAULT_DAYS = 30
MAX_TREND_CAMPAIGNS = 100

# name, label, type — the range rows' columns, in order; sort accepts any of them.
COLUMNS: list[tuple[str, str, str]] = [
    ("source", "Source", "string"),
    ("medium", "Medium", "string"),
    ("campaign", "Campaign", "string"),
    ("sessions", "Sessions", "integer"),
    ("new_persons", "New people", "integer"),
    ("product_views", "Product views", "integer"),
    ("add_to_carts", "Add to carts", "integer"),
    ("checkouts", "Checkouts", "integer"),
    ("converting_sessions", "Converting sessions", "integer"),
    ("orders", "Orders", "integer"),
    ("revenue", "Revenue", "money"),
    ("currency", "Currency", "string"),
    ("conversion_rate", "Conversion rate", "ratio"),
    ("revenue_per_session", "Revenue / session", "money"),
    ("average_order_value", "Average order value", "money"),
]
COLUMN_NAMES = [name for name, _, _ in COLUMNS]
INTEGER_COLUMNS = {name for name, _, kind in COLUMNS if kind == "integer"}

# Sums under their own names first, so no alias shadows a column it is computed from.
_SUMS = """
            sum(sessions) AS sum_sessions,
            sum(new_persons) AS sum_new_persons,
            sum(product_views) AS sum_product_views,
            sum(add_to_carts) AS sum_add_to_carts,
            sum(checkouts) AS sum_checkouts,
            sum(converting_sessions) AS sum_converting_sessions,
            sum(orders) AS sum_orders,
            sum(revenue) AS sum_revenue,
            anyIf(currency, currency != '') AS any_currency,
            uniqExactIf(currency, currency != '') AS currencies"""

_DERIVED = """
        sum_sessions AS sessions,
        sum_new_persons AS new_persons,
        sum_product_views AS product_views,
        sum_add_to_carts AS add_to_carts,
        sum_checkouts AS checkouts,
        sum_converting_sessions AS converting_sessions,
        sum_orders AS orders,
        sum_revenue AS revenue,
        any_currency AS currency,
        currencies,
        if(sum_sessions = 0, 0, sum_converting_sessions / sum_sessions) AS conversion_rate,
        if(sum_sessions = 0, 0, toFloat64(sum_revenue) / sum_sessions) AS revenue_per_session,
        if(sum_orders = 0, NULL, toFloat64(sum_revenue) / sum_orders) AS average_order_value"""

_WHERE = """
        WHERE attribution_model = {model:String}
          AND performance_date >= {date_from:Date}
          AND performance_date <= {date_to:Date}"""

ROWS_SQL = f"""
-- one row per campaign over the range; ratios from the summed counts
SELECT
        source, medium, campaign,{_DERIVED}
FROM (
        SELECT source, medium, campaign,{_SUMS}
        FROM campaign_performance{_WHERE}
        GROUP BY source, medium, campaign
)
ORDER BY SORT_COLUMN SORT_DIRECTION, source, medium, campaign
"""

TOTALS_SQL = f"""
-- every campaign together over the range
SELECT{_DERIVED}
FROM (
        SELECT{_SUMS}
        FROM campaign_performance{_WHERE}
)
"""

TREND_SQL = """
-- per day and campaign: the table's own grain (persons is exact per day); every metric
-- of the range rows, so a chart can plot any column
SELECT
        toString(performance_date) AS day, source, medium, campaign,
        sessions, persons, new_persons, product_views, add_to_carts, checkouts,
        converting_sessions, orders, revenue, currency, conversion_rate,
        if(sessions = 0, 0, toFloat64(revenue) / sessions) AS revenue_per_session,
        if(orders = 0, NULL, toFloat64(revenue) / orders) AS average_order_value
FROM campaign_performance
WHERE attribution_model = {model:String}
  AND performance_date >= {date_from:Date}
  AND performance_date <= {date_to:Date}
ORDER BY day, source, medium, campaign
"""


class CampaignError(ValueError):
    """A campaigns request with a bad parameter (date, touch, sort)."""


@dataclass(frozen=True)
class CampaignQuery:
    date_from: date | None = None
    date_to: date | None = None
    touch: str = "last"
    sort: str = "sessions"
    desc: bool = True
    trend_campaigns: int = 10   # how many of the top rows get a daily trend

    @classmethod
    def from_params(cls, params: dict[str, str]) -> CampaignQuery:
        touch = params.get("touch") or "last"
        if touch not in TOUCHES:
            raise CampaignError("touch is first or last")
        sort = params.get("sort") or "sessions"
        if sort not in COLUMN_NAMES:
            raise CampaignError(f"sort must be one of {', '.join(COLUMN_NAMES)}")
        desc_text = (params.get("desc") or "true").lower()
        if desc_text not in ("1", "true", "0", "false"):
            raise CampaignError("desc is true or false")
        top_text = params.get("trend_campaigns") or "10"
        if not top_text.isdecimal() or int(top_text) > MAX_TREND_CAMPAIGNS:
            raise CampaignError(f"trend_campaigns is a number from 0 to {MAX_TREND_CAMPAIGNS}")
        query = cls(_date(params.get("date_from"), "date_from"),
                    _date(params.get("date_to"), "date_to"), touch, sort,
                    desc_text in ("1", "true"), int(top_text))
        if query.date_from and query.date_to and query.date_from > query.date_to:
            raise CampaignError("date_from is after date_to")
        return query


def campaign_performance(warehouse: Warehouse, query: CampaignQuery, reporting_tz: str = "UTC",
                         as_of: datetime | None = None) -> dict[str, Any]:
    """Rows per campaign, totals and the daily trend of the top campaigns, with the SQL.
    `as_of` (default now) decides which trend days are still incomplete."""
    require_tables(warehouse, "campaign_performance")
    as_of = as_of or datetime.now(UTC)
    first_open_day = as_of.astimezone(ZoneInfo(reporting_tz)).date()
    date_from, date_to = _range(warehouse, query)
    params = {"model": TOUCHES[query.touch], "date_from": date_from.isoformat(),
              "date_to": date_to.isoformat()}
    rows_sql = ROWS_SQL.replace("SORT_COLUMN", query.sort).replace(
        "SORT_DIRECTION", "DESC" if query.desc else "ASC")
    rows = [_typed(r) for r in warehouse.query(rows_sql, params).dicts()]
    totals = _typed(warehouse.query(TOTALS_SQL, params).dicts()[0])
    notes = []
    if any(int(r.pop("currencies")) > 1 for r in rows):
        notes.append("some campaigns have revenue in more than one currency: their revenue "
                     "is a sum across currencies")
    totals.pop("currencies", None)
    top = {(r["source"], r["medium"], r["campaign"]) for r in rows[:query.trend_campaigns]}
    trend = [_typed(r) for r in warehouse.query(TREND_SQL, params).dicts()
             if (r["source"], r["medium"], r["campaign"]) in top]
    for r in trend:   # a day ends at the next midnight of the reporting time zone
        r["incomplete"] = date.fromisoformat(r["day"]) >= first_open_day
    incomplete_days = sorted({r["day"] for r in trend if r["incomplete"]})
    if incomplete_days:
        notes.append(f"incomplete = the day had not ended at as_of ({utc_text(as_of)}, "
                     f"days in {reporting_tz}): its counts can still grow")
    return {
        "touch": query.touch, "attribution_model": params["model"],
        "date_from": params["date_from"], "date_to": params["date_to"],
        "sort": query.sort, "desc": query.desc,
        "columns": [{"name": n, "label": label, "type": kind} for n, label, kind in COLUMNS],
        "rows": [{name: r.get(name) for name in COLUMN_NAMES} for r in rows],
        "totals": {name: totals.get(name) for name in COLUMN_NAMES[3:]},
        "trend": trend, "trend_campaigns": query.trend_campaigns, "notes": notes,
        "as_of": utc_text(as_of), "reporting_tz": reporting_tz,
        "incomplete_days": incomplete_days,
        "sql": rows_sql, "params": params,
        "queries": [{"sql": rows_sql, "params": params}, {"sql": TOTALS_SQL, "params": params},
                    {"sql": TREND_SQL, "params": params}],
    }


def _range(warehouse: Warehouse, query: CampaignQuery) -> tuple[date, date]:
    """The asked range; missing ends default to the last DEFAULT_DAYS days holding data."""
    if query.date_from and query.date_to:
        return query.date_from, query.date_to
    last = warehouse.query("SELECT toString(max(performance_date)), count() "
                           "FROM campaign_performance").rows[0]
    latest = date.fromisoformat(last[0]) if int(last[1]) else date.today()
    date_to = query.date_to or max(latest, query.date_from or latest)
    date_from = query.date_from or date_to - timedelta(days=DEFAULT_DAYS - 1)
    return date_from, date_to


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    # JSON output quotes 64-bit integers; the UI wants numbers.
    out = dict(row)
    for name in INTEGER_COLUMNS | {"persons", "currencies"}:
        if name in out and out[name] is not None:
            out[name] = int(out[name])
    return out


def _date(value: str | None, what: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CampaignError(f"{what} is a date (YYYY-MM-DD)") from None
