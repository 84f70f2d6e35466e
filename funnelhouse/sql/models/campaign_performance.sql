-- campaign_performance: what each campaign (source / medium / campaign) brought, per
-- day, under first-touch and under last-touch attribution.
--
-- grain:        day × attribution_model × (source, medium, campaign)
-- key:          (performance_date, attribution_model, source, medium, campaign)
-- sources:      campaign_touches
-- depends_on:   campaign_touches
-- materialized: incremental_sum (its rows plus what the refreshed people changed)
--
-- The sum of campaign_touches (one row per person, day and credited campaign; first
-- touch for life, last non-direct touch: see there): sessions, persons, new_persons
-- (the person's first session), product views, carts, checkouts, converting sessions,
-- orders, revenue, and conversion_rate = converting sessions / sessions. Under
-- last_touch, orders and revenue match orders.last_touch_* day by day. currency: the
-- greatest of the credited sessions' currencies, while priced_sessions (those that
-- carried one) is above 0 (a shop reports in one; a key that held two keeps the
-- greater after a refresh takes the sessions of it away, until a full build).
-- Every measure is a sum, so a refresh adds the refreshed people's rows as they are
-- now and takes away the same people's rows as they were ({{ delta:… }}, kept by the
-- runner while campaign_touches was replaced), to the table's own rows ({{ kept }});
-- a key whose persons fall to 0 is gone. A full build sums every row. The table is a
-- few thousand rows a month, built whole and swapped in (EXCHANGE TABLES). After a
-- forget (whose rows leave campaign_touches but not these sums) it is built whole.
--
-- Engine/sort key: partitioned by month; ORDER BY (attribution_model, performance_date,
-- medium, source, campaign): dashboards pick one model and a date range.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    performance_date   Date,
    attribution_model  LowCardinality(String),     -- first_touch | last_touch
    source             String,
    medium             LowCardinality(String),
    campaign           String,
    sessions           UInt32,
    persons            UInt32,
    new_persons        UInt32,
    product_views      UInt32,
    add_to_carts       UInt32,
    checkouts          UInt32,
    converting_sessions UInt32,
    orders             UInt32,
    revenue            Decimal(18, 2),
    priced_sessions    UInt32,                     -- sessions that carried a currency
    currency           LowCardinality(String),
    conversion_rate    Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(performance_date)
ORDER BY (attribution_model, performance_date, medium, source, campaign);

WITH
summed AS (
    SELECT
        performance_date, attribution_model, source, medium, campaign,
        toInt64(sessions) AS sessions,
        toInt64(persons) AS persons,
        toInt64(new_persons) AS new_persons,
        toInt64(product_views) AS product_views,
        toInt64(add_to_carts) AS add_to_carts,
        toInt64(checkouts) AS checkouts,
        toInt64(converting_sessions) AS converting_sessions,
        toInt64(orders) AS orders,
        revenue,
        toInt64(priced_sessions) AS priced_sessions,
        toString(currency) AS currency
    FROM {{ kept }}
    UNION ALL
    SELECT
        performance_date, attribution_model, source, medium, campaign,
        toInt64(sign * sessions),
        toInt64(sign),
        toInt64(sign * new_person),
        toInt64(sign * product_views),
        toInt64(sign * add_to_carts),
        toInt64(sign * checkouts),
        toInt64(sign * converting_sessions),
        toInt64(sign * orders),
        sign * revenue,
        toInt64(sign * priced_sessions),
        if(sign > 0, toString(currency), '')
    FROM {{ delta:campaign_touches }}
),

final AS (
    -- (columns read through `s.`: the sums are named like the columns they add up)
    SELECT
        s.performance_date AS performance_date,
        s.attribution_model AS attribution_model,
        s.source AS source,
        s.medium AS medium,
        s.campaign AS campaign,
        toUInt32(sum(s.sessions)) AS sessions,
        toUInt32(sum(s.persons)) AS persons,
        toUInt32(sum(s.new_persons)) AS new_persons,
        toUInt32(sum(s.product_views)) AS product_views,
        toUInt32(sum(s.add_to_carts)) AS add_to_carts,
        toUInt32(sum(s.checkouts)) AS checkouts,
        toUInt32(sum(s.converting_sessions)) AS converting_sessions,
        toUInt32(sum(s.orders)) AS orders,
        toDecimal64(sum(s.revenue), 2) AS revenue,
        toUInt32(sum(s.priced_sessions)) AS priced_sessions,
        if(priced_sessions > 0, max(s.currency), '') AS currency,
        sum(s.converting_sessions) / sum(s.sessions) AS conversion_rate
    FROM summed AS s
    GROUP BY s.performance_date, s.attribution_model, s.source, s.medium, s.campaign
    HAVING sum(s.persons) > 0
)

SELECT * FROM final
