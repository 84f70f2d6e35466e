-- orders: one row per order — revenue, sequence number, lead times, attribution, staff.
--
-- grain:        order
-- key:          order_id
-- sources:      behavior_events, sessions, order_items
-- depends_on:   behavior_events, sessions, order_items
-- materialized: incremental_by_person (the affected people's orders rebuilt, swapped in whole)
--
-- order_seq, first touch and staff credit depend on the person's entire history, which
-- a late identify or a late event can change for orders of any day: the affected
-- people's orders are recomputed from their whole history ({{ people:… }} on
-- {{ days:… }}, see funnelhouse/models/people.py) and replace their old orders.
--
-- Rules (the same in funnelhouse/reference.py):
-- * an order is its first purchase event (event time, message_id); order_seq numbers a
--   person's orders by (ordered_at, order_id), 1 = first order;
-- * first touch = the person's first session (kept for life): its landing
--   source/medium/campaign (an app user's attributed install, when that is their first
--   event: see sessions), and first touch → order in seconds;
-- * last touch = the latest non-direct session of the person that started at or before
--   the order ("last non-direct click"); '(direct)'/'direct' when there is none;
-- * staff credit = the person's first staff_qr_scan, for every order at or after it,
--   online or offline;
-- * session start → order: from the start of the session the purchase event is in;
-- * first product view → order: from the earliest view of any ordered product.
--
-- Engine/sort key: partitioned by month; ORDER BY (person_id, ordered_at): repeat-
-- purchase, cohort and LTV questions walk each person's orders in order.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    order_id                              String,
    person_id                             String,
    user_id                               String,
    ordered_at                            DateTime64(3, 'UTC'),
    order_date                            Date,                    -- reporting time zone
    order_seq                             UInt32,                  -- 1st, 2nd … order of the person
    is_first_order                        UInt8,
    channel                               LowCardinality(String),  -- web | app | server | offline
    source                                LowCardinality(String),
    session_id                            String,
    revenue                               Decimal(18, 2),
    currency                              LowCardinality(String),
    coupon                                String,
    item_lines                            UInt32,
    item_quantity                         UInt32,
    store_id                              String,                  -- from the purchase (offline)
    staff_id                              String,
    credited_staff_id                     String,                  -- first QR scan's staff, if before the order
    credited_store_id                     String,
    first_touch_at                        DateTime64(3, 'UTC'),
    first_touch_source                    String,
    first_touch_medium                    LowCardinality(String),
    first_touch_campaign                  String,
    last_touch_at                         Nullable(DateTime64(3, 'UTC')),
    last_touch_source                     String,
    last_touch_medium                     LowCardinality(String),
    last_touch_campaign                   String,
    lead_time_first_touch_seconds         Int64,
    lead_time_session_seconds             Nullable(Int64),
    lead_time_first_product_view_seconds  Nullable(Int64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(order_date)
ORDER BY (person_id, ordered_at, order_id);

-- Scratch: the orders in sequence, held in memory because the SELECT reads them
-- four times.
CREATE TABLE {{ scratch }} ENGINE = Memory AS
WITH
purchases AS (
    SELECT order_id, person_id, user_id, event_at AS ordered_at, event_date AS order_date,
           channel, source, session_id, revenue, currency, coupon, store_id, staff_id
    FROM behavior_events
    WHERE event = 'purchase' AND order_id != ''
      AND {{ people:person_id }} AND {{ days:event_date }}
    ORDER BY event_at, message_id
    LIMIT 1 BY order_id
),

sequenced AS (
    SELECT *,
        row_number() OVER (PARTITION BY person_id ORDER BY ordered_at, order_id) AS order_seq
    FROM purchases
)

SELECT * FROM sequenced;

WITH
buyer_sessions AS (
    SELECT person_id, session_id, started_at, landing_source, landing_medium, landing_campaign, is_direct
    FROM sessions
    WHERE person_id IN (SELECT person_id FROM {{ scratch }}) AND {{ days:session_date }}
),

first_touch AS (
    SELECT
        person_id,
        min(started_at) AS first_touch_at,
        argMin(landing_source, (started_at, session_id)) AS first_touch_source,
        argMin(landing_medium, (started_at, session_id)) AS first_touch_medium,
        argMin(landing_campaign, (started_at, session_id)) AS first_touch_campaign
    FROM buyer_sessions
    GROUP BY person_id
),

non_direct_touches AS (
    SELECT person_id, started_at, landing_source, landing_medium, landing_campaign
    FROM buyer_sessions
    WHERE is_direct = 0
),

staff_credit AS (
    SELECT
        person_id,
        min(event_at) AS scanned_at,
        argMin(staff_id, (event_at, message_id)) AS staff_id,
        argMin(store_id, (event_at, message_id)) AS store_id
    FROM behavior_events
    WHERE event = 'staff_qr_scan' AND {{ people:person_id }} AND {{ days:event_date }}
    GROUP BY person_id
),

items AS (
    SELECT
        order_id,
        count() AS item_lines,
        sum(quantity) AS item_quantity,
        min(first_viewed_at) AS first_viewed_at
    FROM order_items
    WHERE {{ people:person_id }}
    GROUP BY order_id
),

last_touch AS (
    SELECT
        s.order_id AS order_id,
        t.started_at AS touch_at,
        t.landing_source AS touch_source,
        t.landing_medium AS touch_medium,
        t.landing_campaign AS touch_campaign
    FROM {{ scratch }} AS s
    ASOF LEFT JOIN non_direct_touches AS t
        ON t.person_id = s.person_id AND s.ordered_at >= t.started_at
),

order_sessions AS (
    -- only the sessions the orders were placed in: the join's hash table stays small
    SELECT session_id, started_at
    FROM buyer_sessions
    WHERE session_id IN (SELECT session_id FROM {{ scratch }})
),

final AS (
    SELECT
        s.order_id AS order_id,
        s.person_id AS person_id,
        s.user_id AS user_id,
        s.ordered_at AS ordered_at,
        s.order_date AS order_date,
        toUInt32(s.order_seq) AS order_seq,
        toUInt8(s.order_seq = 1) AS is_first_order,
        s.channel AS channel,
        s.source AS source,
        s.session_id AS session_id,
        s.revenue AS revenue,
        s.currency AS currency,
        s.coupon AS coupon,
        toUInt32(i.item_lines) AS item_lines,
        toUInt32(i.item_quantity) AS item_quantity,
        s.store_id AS store_id,
        s.staff_id AS staff_id,
        if(sc.staff_id != '' AND sc.scanned_at <= s.ordered_at, sc.staff_id, '') AS credited_staff_id,
        if(sc.staff_id != '' AND sc.scanned_at <= s.ordered_at, sc.store_id, '') AS credited_store_id,
        ft.first_touch_at AS first_touch_at,
        ft.first_touch_source AS first_touch_source,
        ft.first_touch_medium AS first_touch_medium,
        ft.first_touch_campaign AS first_touch_campaign,
        if(lt.touch_medium != '', lt.touch_at, NULL) AS last_touch_at,
        if(lt.touch_medium != '', lt.touch_source, '(direct)') AS last_touch_source,
        if(lt.touch_medium != '', lt.touch_medium, 'direct') AS last_touch_medium,
        if(lt.touch_medium != '', lt.touch_campaign, '') AS last_touch_campaign,
        intDiv(toUnixTimestamp64Milli(s.ordered_at) - toUnixTimestamp64Milli(ft.first_touch_at), 1000)
            AS lead_time_first_touch_seconds,
        if(os.session_id != '',
           intDiv(toUnixTimestamp64Milli(s.ordered_at) - toUnixTimestamp64Milli(os.started_at), 1000),
           NULL) AS lead_time_session_seconds,
        if(i.first_viewed_at IS NOT NULL,
           intDiv(toUnixTimestamp64Milli(s.ordered_at) - toUnixTimestamp64Milli(assumeNotNull(i.first_viewed_at)), 1000),
           NULL) AS lead_time_first_product_view_seconds
    FROM {{ scratch }} AS s
    LEFT JOIN items AS i ON i.order_id = s.order_id
    LEFT JOIN first_touch AS ft ON ft.person_id = s.person_id
    LEFT JOIN last_touch AS lt ON lt.order_id = s.order_id
    LEFT JOIN staff_credit AS sc ON sc.person_id = s.person_id
    LEFT JOIN order_sessions AS os ON os.session_id = s.session_id
)

SELECT * FROM final
