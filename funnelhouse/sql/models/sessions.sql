-- sessions: one row per session — when, where it landed, what it reached, what it earned.
--
-- grain:        session (a person's run of events within one reporting day; see
--               behavior_events for the split rules: SDK session id, inactivity gap,
--               new campaign, midnight)
-- key:          session_id (the message_id of its first event)
-- sources:      behavior_events
-- depends_on:   behavior_events
-- materialized: incremental_by_day (partition column session_date)
--
-- Refresh: the same days as behavior_events, replaced whole per day. A session lives
-- in one day, so a day's sessions depend on that day's events only.
-- Revenue counts each order once per session (an order tracked twice in one session,
-- e.g. by the browser and the server, is one order); currency beside it.
-- Bounce: exactly one page/screen view and no interaction (click, scroll, swipe,
-- search, product, cart, checkout, purchase, signup, login, promotion click, store).
-- Landing: the first event's classification. An attributed app install from a partner
-- postback (funnelhouse/collector/partners.py) carries the install's media source and
-- campaign in its campaign fields, so the session it starts lands there; an organic
-- install carries none and lands direct.
--
-- Engine/sort key: partitioned by day like its source; ORDER BY (person_id, started_at)
-- because attribution and funnel work walks each person's sessions in time order
-- (first touch, last non-direct touch, session → order joins).
CREATE TABLE IF NOT EXISTS {{ this }}
(
    session_date          Date,                    -- reporting time zone
    session_id            String,
    person_id             String,
    started_at            DateTime64(3, 'UTC'),
    ended_at              DateTime64(3, 'UTC'),
    duration_seconds      UInt32,
    anonymous_id          String,                  -- first anonymous id seen in the session
    user_id               String,                  -- first user id seen in the session
    sdk_session_id        String,                  -- first SDK session id ('' if none)
    channel               LowCardinality(String),  -- of the first event
    source                LowCardinality(String),  -- write-key source of the first event
    device_type           LowCardinality(String),
    os_name               LowCardinality(String),
    browser_name          LowCardinality(String),
    entry_page            String,                  -- first page path / screen name
    exit_page             String,                  -- last page path / screen name
    landing_source        String,                  -- first event's classified source ('(direct)')
    landing_medium        LowCardinality(String),  -- first event's classified medium ('direct')
    landing_campaign      String,                  -- first event's utm_campaign
    landing_referrer_host String,
    is_direct             UInt8,                   -- landing_medium = 'direct'
    pageviews             UInt32,                  -- page_view + screen_view
    events                UInt32,
    product_views         UInt32,
    add_to_carts          UInt32,
    checkouts             UInt32,
    is_bounce             UInt8,
    reached_product_view  UInt8,
    reached_cart          UInt8,
    reached_checkout      UInt8,
    reached_purchase      UInt8,
    orders                UInt32,                  -- distinct order ids purchased in the session
    revenue               Decimal(18, 2),
    currency              LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY session_date
ORDER BY (person_id, started_at, session_id);

WITH
events AS (
    SELECT
        event_date, session_id, session_event_seq, person_id, event_at, message_id, event, type,
        anonymous_id, user_id, sdk_session_id, channel, source, device_type, os_name,
        browser_name, page_path, session_source, session_medium, session_campaign,
        referrer_host, order_id, revenue, currency
    FROM behavior_events
    WHERE has({days:Array(Date)}, event_date) AND {{ people:person_id }}
),

session_orders AS (
    -- An order counts once per session: its first purchase event in the session.
    SELECT
        session_id,
        count() AS orders,
        sum(revenue) AS revenue,
        argMin(currency, first_at) AS currency
    FROM (
        SELECT session_id, order_id,
               argMin(revenue, session_event_seq) AS revenue,
               argMin(currency, session_event_seq) AS currency,
               min(event_at) AS first_at
        FROM events
        WHERE event = 'purchase' AND order_id != ''
        GROUP BY session_id, order_id
    )
    GROUP BY session_id
),

per_session AS (
    -- "First"/"last" by session_event_seq: behavior_events numbered each session's events
    -- by (event_at, message_id), so a UInt32 stands in for that tuple (2.5x less CPU),
    -- and a field of the first event itself is the one numbered 1 (anyIf: 0.9x argMin's time).
    SELECT
        session_id,
        any(event_date) AS session_date,
        any(person_id) AS person_id,
        min(event_at) AS started_at,
        max(event_at) AS ended_at,
        argMinIf(anonymous_id, session_event_seq, anonymous_id != '') AS anonymous_id,
        argMinIf(user_id, session_event_seq, user_id != '') AS user_id,
        argMinIf(sdk_session_id, session_event_seq, sdk_session_id != '') AS sdk_session_id,
        anyIf(channel, session_event_seq = 1) AS channel,
        anyIf(source, session_event_seq = 1) AS source,
        argMinIf(device_type, session_event_seq, device_type != '') AS device_type,
        argMinIf(os_name, session_event_seq, os_name != '') AS os_name,
        argMinIf(browser_name, session_event_seq, browser_name != '') AS browser_name,
        argMinIf(page_path, session_event_seq, type IN ('page', 'screen')) AS entry_page,
        argMaxIf(page_path, session_event_seq, type IN ('page', 'screen')) AS exit_page,
        any(session_source) AS landing_source,
        any(session_medium) AS landing_medium,
        any(session_campaign) AS landing_campaign,
        anyIf(referrer_host, session_event_seq = 1) AS landing_referrer_host,
        countIf(event IN ('page_view', 'screen_view')) AS pageviews,
        count() AS events,
        countIf(event = 'product_view') AS product_views,
        countIf(event = 'add_to_cart') AS add_to_carts,
        countIf(event = 'begin_checkout') AS checkouts,
        countIf(event IN ('click', 'scroll', 'swipe', 'search', 'product_view', 'add_to_cart',
                          'remove_from_cart', 'begin_checkout', 'purchase', 'signup', 'login',
                          'campaign_click', 'store_visit', 'staff_qr_scan')) AS interactions,
        countIf(event = 'purchase') AS purchases
    FROM events
    GROUP BY session_id
),

final AS (
    SELECT
        s.session_date AS session_date,
        s.session_id AS session_id,
        s.person_id AS person_id,
        s.started_at AS started_at,
        s.ended_at AS ended_at,
        toUInt32(intDiv(toUnixTimestamp64Milli(s.ended_at) - toUnixTimestamp64Milli(s.started_at), 1000)) AS duration_seconds,
        s.anonymous_id AS anonymous_id,
        s.user_id AS user_id,
        s.sdk_session_id AS sdk_session_id,
        s.channel AS channel,
        s.source AS source,
        s.device_type AS device_type,
        s.os_name AS os_name,
        s.browser_name AS browser_name,
        s.entry_page AS entry_page,
        s.exit_page AS exit_page,
        s.landing_source AS landing_source,
        s.landing_medium AS landing_medium,
        s.landing_campaign AS landing_campaign,
        s.landing_referrer_host AS landing_referrer_host,
        toUInt8(s.landing_medium = 'direct') AS is_direct,
        toUInt32(s.pageviews) AS pageviews,
        toUInt32(s.events) AS events,
        toUInt32(s.product_views) AS product_views,
        toUInt32(s.add_to_carts) AS add_to_carts,
        toUInt32(s.checkouts) AS checkouts,
        toUInt8(s.pageviews = 1 AND s.interactions = 0) AS is_bounce,
        toUInt8(s.product_views > 0) AS reached_product_view,
        toUInt8(s.add_to_carts > 0) AS reached_cart,
        toUInt8(s.checkouts > 0) AS reached_checkout,
        toUInt8(s.purchases > 0) AS reached_purchase,
        toUInt32(o.orders) AS orders,
        o.revenue AS revenue,
        o.currency AS currency
    FROM per_session AS s
    LEFT JOIN session_orders AS o ON o.session_id = s.session_id
)

SELECT * FROM final
