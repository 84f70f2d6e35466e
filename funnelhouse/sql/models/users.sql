-- users: the single customer record — one row per person.
--
-- grain:        person
-- key:          person_id
-- sources:      identity_map, behavior_events, sessions, orders
-- depends_on:   identity_map, behavior_events, sessions, orders
-- materialized: incremental_by_person (the affected people's rows rebuilt, swapped in whole)
--
-- Every column is a fold over the person's entire history, so a person's row is
-- recomputed from all of it — for the affected people only: those with new events and
-- those an identity merge moved ({{ people:… }}), read on their own days
-- ({{ days:… }}); see funnelhouse/models/people.py. The new table is the old one's
-- parts hard-linked with their rows masked (or, past a few parts, copied without them),
-- plus their new rows, swapped in (EXCHANGE; models/swap.py): readers never see people
-- missing.
--
-- Rules: first touch = landing of the first session, kept for life — for an app user
-- whose first event is an attributed app_install (a partner postback), the install's
-- media source / campaign (see sessions); last touch = the latest non-direct session
-- (else direct); acquired_staff/store = the first
-- staff_qr_scan; lifecycle stage as in funnel_stages (cumulative):
--   never_visited < visited_no_shopping < viewed_product_or_cart < purchased_once < purchased_repeat
-- where a visit is a page_view, screen_view or store_visit.
--
-- Engine/sort key: ORDER BY person_id — segment membership checks and joins are by person.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    person_id                String,
    user_ids                 Array(String),            -- every user id of the person (sorted)
    anonymous_ids            Array(String),            -- every device / anonymous id (sorted)
    email                    String,                   -- from the latest traits carrying one
    traits                   String,                   -- latest non-empty identify traits (JSON)
    first_seen_at            DateTime64(3, 'UTC'),
    last_seen_at             DateTime64(3, 'UTC'),
    first_seen_date          Date,                     -- reporting time zone
    last_seen_date           Date,
    identified_at            Nullable(DateTime64(3, 'UTC')),  -- first event carrying a user id
    signup_at                Nullable(DateTime64(3, 'UTC')),
    first_touch_source       String,
    first_touch_medium       LowCardinality(String),
    first_touch_campaign     String,
    first_touch_channel      LowCardinality(String),
    last_touch_source        String,
    last_touch_medium        LowCardinality(String),
    last_touch_campaign      String,
    acquired_staff_id        String,
    acquired_store_id        String,
    acquired_at              Nullable(DateTime64(3, 'UTC')),
    channels                 Array(LowCardinality(String)),   -- channels ever used (sorted)
    sessions                 UInt32,
    events                   UInt32,
    active_days              UInt32,
    orders                   UInt32,
    revenue                  Decimal(18, 2),
    currency                 LowCardinality(String),
    first_order_at           Nullable(DateTime64(3, 'UTC')),
    last_order_at            Nullable(DateTime64(3, 'UTC')),
    avg_days_between_visits  Nullable(Float64),        -- usage cycle: span of active days / (active days − 1)
    avg_days_between_orders  Nullable(Float64),        -- purchase cycle
    lifecycle_stage          LowCardinality(String),
    stage_rank               UInt8                     -- 0 never_visited … 4 purchased_repeat
)
ENGINE = MergeTree
ORDER BY person_id;

WITH
ids AS (
    SELECT
        person_id,
        arraySort(groupArrayIf(id, id_kind = 'user')) AS user_ids,
        arraySort(groupArrayIf(id, id_kind = 'anonymous')) AS anonymous_ids
    FROM identity_map
    WHERE {{ people:person_id }}
    GROUP BY person_id
),

activity AS (
    SELECT
        person_id,
        min(event_at) AS first_seen_at,
        max(event_at) AS last_seen_at,
        min(event_date) AS first_seen_date,
        max(event_date) AS last_seen_date,
        uniqExact(event_date) AS active_days,
        count() AS events,
        minIf(event_at, user_id != '') AS identified_at,
        countIf(user_id != '') AS identified_events,
        minIf(event_at, event = 'signup') AS signup_at,
        countIf(event = 'signup') AS signups,
        arraySort(groupUniqArray(channel)) AS channels,
        max(event IN ('page_view', 'screen_view', 'store_visit')) AS visited,
        max(event IN ('product_view', 'add_to_cart')) AS shopped
    FROM behavior_events
    WHERE {{ people:person_id }} AND {{ days:event_date }}
    GROUP BY person_id
),

profile AS (
    -- Traits and the first staff QR scan come from few events, so they are aggregated
    -- over those alone: over all events these aggregates read the message_id, traits,
    -- staff and store of every row (at 10M events, a third of the model's time).
    SELECT
        person_id,
        argMaxIf(traits, (event_at, message_id), type = 'identify' AND traits NOT IN ('', '{}'))
            AS latest_traits,
        argMaxIf(JSONExtractString(traits, 'email'), (event_at, message_id),
                 traits NOT IN ('', '{}') AND JSONExtractString(traits, 'email') != '')
            AS latest_email,
        minIf(event_at, event = 'staff_qr_scan') AS acquired_at,
        countIf(event = 'staff_qr_scan') AS scans,
        argMinIf(staff_id, (event_at, message_id), event = 'staff_qr_scan') AS acquired_staff_id,
        argMinIf(store_id, (event_at, message_id), event = 'staff_qr_scan') AS acquired_store_id
    FROM behavior_events
    WHERE (traits NOT IN ('', '{}') OR event = 'staff_qr_scan')
      AND {{ people:person_id }} AND {{ days:event_date }}
    GROUP BY person_id
),

touches AS (
    -- First and latest non-direct session by (started_at, session_id). touch_key is that
    -- pair as one string that sorts the same way (milliseconds offset to stay positive,
    -- padded to a fixed width, then the session_id): argMin over a string key is ~3x
    -- cheaper than over a tuple, and one aggregate per touch returns all its fields.
    SELECT
        person_id,
        sessions,
        first.1 AS first_touch_source,
        first.2 AS first_touch_medium,
        first.3 AS first_touch_campaign,
        first.4 AS first_touch_channel,
        non_direct_sessions,
        last.1 AS last_touch_source,
        last.2 AS last_touch_medium,
        last.3 AS last_touch_campaign
    FROM (
        SELECT
            person_id,
            count() AS sessions,
            argMin((landing_source, landing_medium, landing_campaign, channel), touch_key)
                AS first,
            countIf(is_direct = 0) AS non_direct_sessions,
            argMaxIf((landing_source, landing_medium, landing_campaign), touch_key,
                     is_direct = 0) AS last
        FROM (
            SELECT *,
                concat(leftPad(toString(toUnixTimestamp64Milli(started_at) + 10000000000000),
                               15, '0'), session_id) AS touch_key
            FROM sessions
            WHERE {{ people:person_id }} AND {{ days:session_date }}
        )
        GROUP BY person_id
    )
),

purchases AS (
    SELECT
        person_id,
        count() AS orders,
        sum(revenue) AS revenue,
        argMin(currency, (ordered_at, order_id)) AS currency,
        min(ordered_at) AS first_order_at,
        max(ordered_at) AS last_order_at
    FROM orders
    WHERE {{ people:person_id }}
    GROUP BY person_id
),

staged AS (
    SELECT
        *,
        multiIf(orders >= 2, 4, orders = 1, 3, shopped, 2, visited, 1, 0) AS stage_rank
    FROM activity
    LEFT JOIN profile USING (person_id)
    LEFT JOIN touches USING (person_id)
    LEFT JOIN purchases USING (person_id)
),

final AS (
    SELECT
        s.person_id AS person_id,
        if(empty(i.user_ids) AND s.identified_events > 0, [s.person_id], i.user_ids) AS user_ids,
        i.anonymous_ids AS anonymous_ids,
        s.latest_email AS email,
        if(s.latest_traits = '', '{}', s.latest_traits) AS traits,
        s.first_seen_at AS first_seen_at,
        s.last_seen_at AS last_seen_at,
        s.first_seen_date AS first_seen_date,
        s.last_seen_date AS last_seen_date,
        if(s.identified_events > 0, s.identified_at, NULL) AS identified_at,
        if(s.signups > 0, s.signup_at, NULL) AS signup_at,
        s.first_touch_source AS first_touch_source,
        s.first_touch_medium AS first_touch_medium,
        s.first_touch_campaign AS first_touch_campaign,
        s.first_touch_channel AS first_touch_channel,
        if(s.non_direct_sessions > 0, s.last_touch_source, '(direct)') AS last_touch_source,
        if(s.non_direct_sessions > 0, s.last_touch_medium, 'direct') AS last_touch_medium,
        if(s.non_direct_sessions > 0, s.last_touch_campaign, '') AS last_touch_campaign,
        s.acquired_staff_id AS acquired_staff_id,
        s.acquired_store_id AS acquired_store_id,
        if(s.scans > 0, s.acquired_at, NULL) AS acquired_at,
        s.channels AS channels,
        toUInt32(s.sessions) AS sessions,
        toUInt32(s.events) AS events,
        toUInt32(s.active_days) AS active_days,
        toUInt32(s.orders) AS orders,
        s.revenue AS revenue,
        s.currency AS currency,
        if(s.orders > 0, s.first_order_at, NULL) AS first_order_at,
        if(s.orders > 0, s.last_order_at, NULL) AS last_order_at,
        if(s.active_days > 1, (s.last_seen_date - s.first_seen_date) / (s.active_days - 1), NULL)
            AS avg_days_between_visits,
        if(s.orders > 1,
           (toUnixTimestamp64Milli(s.last_order_at) - toUnixTimestamp64Milli(s.first_order_at))
               / 86400000 / (s.orders - 1),
           NULL) AS avg_days_between_orders,
        ['never_visited', 'visited_no_shopping', 'viewed_product_or_cart', 'purchased_once',
         'purchased_repeat'][s.stage_rank + 1] AS lifecycle_stage,
        toUInt8(s.stage_rank) AS stage_rank
    FROM staged AS s
    LEFT JOIN ids AS i ON i.person_id = s.person_id
)

SELECT * FROM final
