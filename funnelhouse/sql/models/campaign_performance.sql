-- campaign_performance: what each campaign (source / medium / campaign) brought, per
-- day, under first-touch and under last-touch attribution.
--
-- grain:        day × attribution_model × (source, medium, campaign)
-- key:          (performance_date, attribution_model, source, medium, campaign)
-- sources:      sessions
-- depends_on:   sessions
-- materialized: incremental_by_person (the affected days rebuilt, swapped in whole)
-- replace_by:   performance_date
--
-- Every session is credited once under each model, on its session_date:
-- * first_touch: the landing of the person's first session (kept for life) — an app
--   user's attributed install when that is their first event (see sessions);
-- * last_touch: the session's own landing if it is not direct, else the latest
--   earlier non-direct session of the person ("last non-direct click"), else direct.
-- Metrics are the credited sessions' sums: sessions, persons, new_persons (the
-- person's first session), product views, carts, checkouts, orders, revenue, and
-- conversion_rate = sessions with a purchase / sessions. Under last_touch, orders
-- and revenue match orders.last_touch_* day by day.
-- First touch is a person-level fact that an identity merge can change for any day:
-- the days the affected people were active on are rebuilt, from the whole histories
-- of everyone credited on them ({{ people:… }} on {{ days:… }}), and replace those
-- days' rows (swapped in whole, models/swap.py); see people.py.
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
    currency           LowCardinality(String),
    conversion_rate    Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(performance_date)
ORDER BY (attribution_model, performance_date, medium, source, campaign);

WITH
person_sessions AS (
    SELECT
        person_id,
        arraySort(s -> (s.started_at, s.session_id), groupArray(tuple(
            session_id, session_date, started_at, landing_source, landing_medium,
            landing_campaign, is_direct, product_views, add_to_carts, checkouts, orders,
            revenue, currency))) AS ss
    FROM sessions
    WHERE {{ people:person_id }} AND {{ days:session_date }}
    GROUP BY person_id
),

credited AS (
    SELECT
        person_id,
        ss,
        (ss[1].landing_source, ss[1].landing_medium, ss[1].landing_campaign) AS first_touch,
        arrayFill(t -> t.2 != '', arrayMap(s -> if(s.is_direct = 1, ('', '', ''),
                  (s.landing_source, s.landing_medium, s.landing_campaign)), ss)) AS last_touch
    FROM person_sessions
),

by_model AS (
    SELECT
        s.session_date AS performance_date,
        model.1 AS attribution_model,
        if(model.2.2 = '', ('(direct)', 'direct', ''), model.2) AS touch,
        s.session_id AS session_id,
        person_id,
        toUInt8(n = 1) AS is_new,
        s.product_views AS session_product_views,
        s.add_to_carts AS session_add_to_carts,
        s.checkouts AS session_checkouts,
        s.orders AS session_orders,
        s.revenue AS session_revenue,
        s.currency AS session_currency
    FROM credited
    ARRAY JOIN ss AS s, last_touch AS lt, arrayEnumerate(ss) AS n
    ARRAY JOIN [('first_touch', first_touch), ('last_touch', lt)] AS model
),

final AS (
    SELECT
        performance_date,
        attribution_model,
        touch.1 AS source,
        touch.2 AS medium,
        touch.3 AS campaign,
        toUInt32(count()) AS sessions,
        toUInt32(uniqExact(person_id)) AS persons,
        toUInt32(sum(is_new)) AS new_persons,
        toUInt32(sum(session_product_views)) AS product_views,
        toUInt32(sum(session_add_to_carts)) AS add_to_carts,
        toUInt32(sum(session_checkouts)) AS checkouts,
        toUInt32(countIf(session_orders > 0)) AS converting_sessions,
        toUInt32(sum(session_orders)) AS orders,
        sum(session_revenue) AS revenue,
        anyIf(session_currency, session_currency != '') AS currency,
        countIf(session_orders > 0) / count() AS conversion_rate
    FROM by_model
    GROUP BY performance_date, attribution_model, touch
)

SELECT * FROM final
