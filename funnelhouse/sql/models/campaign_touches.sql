-- campaign_touches: what each person's sessions of a day brought each campaign they are
-- credited to, under first-touch and under last-touch attribution — the rows
-- campaign_performance adds up.
--
-- grain:        person × day × attribution_model × (source, medium, campaign)
-- key:          (person_id, performance_date, attribution_model, source, medium, campaign)
-- sources:      sessions
-- depends_on:   sessions
-- materialized: incremental_by_person (the affected people's sessions credited again)
--
-- Every session is credited once under each model, on its session_date:
-- * first_touch: the landing of the person's first session (kept for life) — an app
--   user's attributed install when that is their first event (see sessions);
-- * last_touch: the session's own landing if it is not direct, else the latest
--   earlier non-direct session of the person ("last non-direct click"), else direct.
-- A credit depends on the person's whole history (their first session, their earlier
-- sessions), so the affected people's rows are rebuilt from all their sessions, read
-- on their own days ({{ people:… }} on {{ days:… }}; see people.py); everyone else's
-- stand, as their sessions did not change. One row per person (not per session) keeps
-- campaign_performance a plain sum: its `persons` is the number of these rows.
--
-- Engine/sort key: partitioned by month; ORDER BY person first: a refresh reads and
-- replaces whole people (their rows before and after are what campaign_performance
-- adds and takes away). Granules of 256 rows (not 8192): a refresh's few thousand
-- people then read a few thousand small granules, not every large one.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    performance_date     Date,                      -- the sessions' day (reporting time zone)
    attribution_model    LowCardinality(String),    -- first_touch | last_touch
    source               String,
    medium               LowCardinality(String),
    campaign             String,
    person_id            String,
    sessions             UInt32,
    new_person           UInt8,                     -- the person's first session is among them
    product_views        UInt32,
    add_to_carts         UInt32,
    checkouts            UInt32,
    converting_sessions  UInt32,                    -- sessions with an order
    orders               UInt32,
    revenue              Decimal(18, 2),
    priced_sessions      UInt32,                    -- sessions that carried a currency
    currency             LowCardinality(String)     -- the greatest of theirs ('' if none)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(performance_date)
ORDER BY (person_id, performance_date, attribution_model, source, medium, campaign)
SETTINGS index_granularity = 256;

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

by_session AS (
    SELECT
        s.session_date AS performance_date,
        model.1 AS attribution_model,
        if(model.2.2 = '', ('(direct)', 'direct', ''), model.2) AS touch,
        person_id,
        n = 1 AS is_first,
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
        person_id,
        toUInt32(count()) AS sessions,
        toUInt8(max(is_first)) AS new_person,
        toUInt32(sum(session_product_views)) AS product_views,
        toUInt32(sum(session_add_to_carts)) AS add_to_carts,
        toUInt32(sum(session_checkouts)) AS checkouts,
        toUInt32(countIf(session_orders > 0)) AS converting_sessions,
        toUInt32(sum(session_orders)) AS orders,
        sum(session_revenue) AS revenue,
        toUInt32(countIf(session_currency != '')) AS priced_sessions,
        max(session_currency) AS currency
    FROM by_session
    GROUP BY performance_date, attribution_model, touch, person_id
)

SELECT * FROM final
