-- behavior_events: one row per event — deduplicated, identity-resolved, sessionised.
--
-- grain:        event (one row per message_id)
-- key:          message_id
-- sources:      events_raw, identity_map
-- depends_on:   identity_map
-- materialized: incremental_by_day (partition column event_date, reporting time zone)
--
-- Refresh: the runner rebuilds days — the look-back window's changed days, the days of
-- events received since the last run, and the days of ids whose person changed — into
-- a staging table and swaps each day in with REPLACE PARTITION (atomic per day; readers
-- never see a half-written day). A session never crosses midnight in the reporting
-- time zone (as in Universal Analytics), so every day can be rebuilt on its own, and
-- every person's day too: a late day is rebuilt for the affected people only (the
-- people filters below; `1` when days are rebuilt whole), the rest of it kept.
--
-- Dedup: events_raw may hold several copies of a message_id; the earliest received
-- wins. Copies are rare, so the message_ids with copies are found first (a GROUP BY
-- over two narrow columns) and only their rows go through LIMIT 1 BY; the rest stream
-- through without a sort. One day either side of the rebuilt days is read so that
-- twin copies straddling midnight collapse. received_at is deliberately not carried:
-- copies differ in it. events_raw agrees on the winner: its ReplacingMergeTree keeps
-- the earliest received copy too (migration 0015), and the loader does not store a
-- copy of a (source, message_id) already stored.
--
-- Person: user_id's person when the event carries a user id (a server-side order,
-- an offline purchase), else the anonymous id's person; an id the map does not know
-- yet is its own person. Events from before a person identified get the person too,
-- because the map is applied to every rebuilt day and identity changes trigger rebuilds.
--
-- Sessions, per person and reporting day, events ordered by (event time, message_id).
-- An event starts a new session when it is the day's first, or
--   (a) it carries an SDK session id different from the last SDK session id seen, or
--   (b) more than {gap_seconds} passed since the previous event — unless the event
--       carries the same SDK session id as the last one (the SDK's word wins), or
--   (c) it carries a campaign (utm source/medium/campaign) different from the last
--       campaign seen that day.
-- session_id is the message_id of the session's first event. The session's landing
-- source/medium/campaign is its first event's classification ('' → direct).
--
-- Engine/sort key: MergeTree partitioned by day (the unit of rebuild and of retention);
-- ORDER BY (event, person_id, event_at): funnels, retention and rollups filter on a
-- few event names and then walk each person's events in time order, which this key
-- serves directly; the user timeline uses the bloom filter on person_id.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    event_date          Date,                        -- day of event_at in the reporting time zone
    event_at            DateTime64(3, 'UTC'),        -- corrected event time
    message_id          String,
    type                LowCardinality(String),
    event               LowCardinality(String),
    person_id           String,
    anonymous_id        String,
    user_id             String,
    session_id          String,                      -- message_id of the session's first event
    session_event_seq   UInt32,                      -- 1 for the session's first event
    day_event_seq       UInt32,                      -- 1-based place in the person's day
    sdk_session_id      String,                      -- the SDK's session id as sent ('' if none)
    session_source      String,                      -- landing classification of the session
    session_medium      LowCardinality(String),
    session_campaign    String,
    source              LowCardinality(String),
    channel             LowCardinality(String),
    device_type         LowCardinality(String),
    os_name             LowCardinality(String),
    browser_name        LowCardinality(String),
    device_timezone     LowCardinality(String),
    locale              LowCardinality(String),
    page_path           String,                      -- page path, or screen name for screens
    page_url            String,
    page_title          String,
    referrer_host       String,
    utm_source          String,
    utm_medium          String,
    utm_campaign        String,
    traffic_source      String,
    traffic_medium      LowCardinality(String),
    product_id          String,
    product_name        String,
    product_category    String,
    price               Decimal(18, 2),
    quantity            UInt32,
    currency            LowCardinality(String),
    dwell_ms            UInt32,
    scroll_depth        Nullable(Float32),           -- scroll: depth_percent
    swipe_direction     LowCardinality(String),
    element             String,                      -- click / swipe / scroll element
    element_text        String,
    search_query        String,
    search_result_count Nullable(UInt32),
    order_id            String,
    revenue             Decimal(18, 2),              -- purchase revenue, in currency
    -- Order lines (properties.items) of events that carry them — purchase, checkout —
    -- in items[] order: analyses match and hold product fields on any line.
    item_product_ids    Array(String),
    item_product_names  Array(String),
    item_categories     Array(String),
    item_revenues       Array(Decimal(18, 2)),       -- price × quantity (no quantity: 1)
    coupon              String,
    store_id            String,
    staff_id            String,
    properties          String,                      -- the raw JSON, for what is not modelled
    traits              String,
    INDEX idx_person person_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_session session_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (event, person_id, event_at);

-- Scratch 1: when a late day is rebuilt for the affected people only ({{ people_only }}
-- is 1), their raw rows of the chunk's days — those carrying one of their ids — read
-- once: the steps below read them several times, and every read of events_raw would
-- scan the days' id columns again. Empty when days are rebuilt whole.
CREATE TABLE {{ scratch:people_rows }} ENGINE = Memory AS
SELECT
    message_id, type, event, anonymous_id, user_id, timestamp, received_at, session_id,
    source, channel, page_url, page_path, page_title, screen_name, referrer_host,
    utm_source, utm_medium, utm_campaign, traffic_source, traffic_medium, device_type,
    os_name, browser_name, timezone, locale, properties, traits
FROM events_raw
WHERE {{ people_only }}
  AND timestamp >= {ts_from:DateTime64(3, 'UTC')}
  AND timestamp < {ts_to:DateTime64(3, 'UTC')}
  AND has({days:Array(Date)}, toDate(timestamp, {tz:String}))
  AND (anonymous_id != '' OR user_id != '')
  AND {{ people_ids:user_id, anonymous_id }};

-- Scratch 2: the few message_ids delivered more than once, and when their first copy
-- arrived: narrow columns over the chunk's days and one day either side. Its own step
-- because the dedup below reads it twice (a CTE would be grouped twice).
CREATE TABLE {{ scratch:copies }} ENGINE = Memory AS
SELECT message_id, min(received_at) AS first_received
FROM events_raw
WHERE timestamp >= {pad_from:DateTime64(3, 'UTC')}
  AND timestamp < {pad_to:DateTime64(3, 'UTC')}
  AND (anonymous_id != '' OR user_id != '')
  -- for the affected people, every copy of their messages (the earliest may carry
  -- someone else's ids; it then wins and theirs is dropped, as in a whole day)
  AND (NOT {{ people_only }}
       OR message_id IN (SELECT message_id FROM {{ scratch:people_rows }}))
GROUP BY message_id
HAVING count() > 1;

-- Scratch 3: the chunk's events — deduplicated, parsed and identity-resolved — held in
-- memory, because the SELECT below reads them twice (to cut sessions, and to emit
-- the events with their session).
CREATE TABLE {{ scratch }} ENGINE = Memory AS
WITH
slice AS (
    -- The chunk's days: events_raw is sorted by event day, so this is an index range
    -- (or, for the affected people only, their rows read in scratch 1).
    SELECT
        message_id, type, event, anonymous_id, user_id, timestamp, received_at, session_id,
        source, channel, page_url, page_path, page_title, screen_name, referrer_host,
        utm_source, utm_medium, utm_campaign, traffic_source, traffic_medium, device_type,
        os_name, browser_name, timezone, locale, properties, traits
    FROM events_raw
    WHERE NOT {{ people_only }}
      AND timestamp >= {ts_from:DateTime64(3, 'UTC')}
      AND timestamp < {ts_to:DateTime64(3, 'UTC')}
      AND has({days:Array(Date)}, toDate(timestamp, {tz:String}))
      AND (anonymous_id != '' OR user_id != '')
    UNION ALL
    SELECT * FROM {{ scratch:people_rows }}
),

raw AS (
    -- One row per message_id, the earliest received copy. Copies are rare, so only
    -- their rows go through LIMIT BY; the rest stream through unsorted.
    SELECT * FROM slice
    WHERE message_id NOT IN (SELECT message_id FROM {{ scratch:copies }})
    UNION ALL
    SELECT * FROM (
        SELECT * FROM slice
        WHERE (message_id, received_at) IN (
            SELECT message_id, first_received FROM {{ scratch:copies }})
        LIMIT 1 BY message_id
    )
),

parsed AS (
    -- The properties JSON is parsed once into a typed tuple (not once per field).
    SELECT
        *,
        JSONExtract(properties, 'Tuple(product_id String, name String, category String,
            price Decimal(18, 2), quantity UInt32, currency String, dwell_ms UInt32,
            depth_percent Nullable(Float32), direction String, element String,
            element_text String, query String, result_count Nullable(UInt32), order_id String,
            revenue Decimal(18, 2), coupon String, store_id String, staff_id String,
            items Array(Tuple(product_id String, name String, category String,
                              price Decimal(18, 2), quantity UInt32)))') AS p
    FROM raw
),

events AS (
    SELECT
        toDate(timestamp, {tz:String}) AS event_date,
        timestamp AS event_at,
        message_id,
        type,
        event,
        anonymous_id,
        user_id,
        if(user_id != '', user_id, anonymous_id) AS id_key,  -- whose person the event is
        session_id AS sdk_session_id,
        if(utm_campaign != '', concat(utm_source, '/', utm_medium, '/', utm_campaign), '') AS campaign_key,
        source,
        channel,
        device_type,
        os_name,
        browser_name,
        timezone AS device_timezone,
        locale,
        if(type = 'screen' AND page_path = '', screen_name, page_path) AS page_path,
        page_url,
        page_title,
        referrer_host,
        utm_source,
        utm_medium,
        utm_campaign,
        traffic_source,
        traffic_medium,
        p.product_id AS product_id,
        p.name AS product_name,
        p.category AS product_category,
        p.price AS price,
        p.quantity AS quantity,
        p.currency AS currency,
        p.dwell_ms AS dwell_ms,
        if(event = 'scroll', p.depth_percent, NULL) AS scroll_depth,
        if(event = 'swipe', p.direction, '') AS swipe_direction,
        p.element AS element,
        p.element_text AS element_text,
        if(event = 'search', p.query, '') AS search_query,
        if(event = 'search', p.result_count, NULL) AS search_result_count,
        p.order_id AS order_id,
        if(event = 'purchase', p.revenue, toDecimal64(0, 2)) AS revenue,
        arrayMap(i -> i.product_id, p.items) AS item_product_ids,
        arrayMap(i -> i.name, p.items) AS item_product_names,
        arrayMap(i -> i.category, p.items) AS item_categories,
        arrayMap(i -> toDecimal64(i.price * greatest(i.quantity, 1), 2), p.items)
            AS item_revenues,
        p.coupon AS coupon,
        p.store_id AS store_id,
        p.staff_id AS staff_id,
        properties,
        traits
    FROM parsed
),

linked AS (
    -- Only ids mapped to another person (an id that is its own person resolves to
    -- itself through the fallback below anyway), and only the chunk's ids: the map is
    -- sorted by id, so a small chunk reads a few granules of it, not every person.
    SELECT id, person_id FROM identity_map
    WHERE person_id != id
      AND id IN (SELECT if(user_id != '', user_id, anonymous_id) FROM slice)
),

identified AS (
    -- One join, on the id that decides: the user id's person wins whenever the event
    -- carries a user id (an unmapped user id is its own person, never the anonymous
    -- id's), so the anonymous id is looked up only when there is no user id.
    SELECT
        events.*,
        if(linked.person_id != '', linked.person_id, events.id_key) AS person_id
    FROM events
    LEFT JOIN linked ON linked.id = events.id_key
)

-- a row carrying one of the people's ids may resolve to someone else (its user id's)
SELECT * EXCEPT id_key FROM identified WHERE {{ people:person_id }};

WITH
person_days AS (
    -- Each person's day as one time-ordered array of the few fields sessions need
    -- (the arraySplit-style sessionisation, several times cheaper than windows).
    SELECT
        person_id,
        arraySort(e -> (e.event_at, e.message_id), groupArray(tuple(
            event_at, message_id, sdk_session_id, campaign_key, traffic_source,
            traffic_medium, utm_campaign
        ))) AS evs
    FROM {{ scratch }}
    GROUP BY person_id, event_date
),

boundaries AS (
    SELECT
        evs,
        arrayMap(e -> toUnixTimestamp64Milli(e.event_at), evs) AS ts,
        evs.sdk_session_id AS sdk,
        evs.campaign_key AS camp,
        arrayPushFront(arrayPopBack(arrayFill(x -> x != '', sdk)), '') AS prev_sdk,
        arrayPushFront(arrayPopBack(arrayFill(x -> x != '', camp)), '') AS prev_camp,
        arrayMap(i -> i = 1
            OR (sdk[i] != '' AND prev_sdk[i] != '' AND sdk[i] != prev_sdk[i])
            OR (NOT (sdk[i] != '' AND sdk[i] = prev_sdk[i])
                AND ts[i] - ts[i - 1] > toInt64({gap_seconds:UInt32}) * 1000)
            OR (camp[i] != '' AND camp[i] != prev_camp[i]),
            arrayEnumerate(evs)) AS is_start
    FROM person_days
),

sessionised AS (
    -- Per event: the index of its session's first event, and from it the session id
    -- (that event's message_id) and the landing classification.
    SELECT
        evs.message_id AS message_ids,
        arrayFill(x -> x != 0, arrayMap((s, i) -> if(s, i, 0), is_start, arrayEnumerate(evs))) AS start_index,
        arrayMap((i, k) -> toUInt32(k - i + 1), start_index, arrayEnumerate(evs)) AS seqs,
        -- The place in the day stands in for (event_at, message_id) wherever events of one
        -- person are ordered: equal times fall on one day, and a number sorts cheaper.
        arrayMap(k -> toUInt32(k), arrayEnumerate(evs)) AS day_seqs,
        arrayMap(i -> message_ids[i], start_index) AS session_ids,
        arrayMap(i -> evs.traffic_source[i], start_index) AS session_sources,
        arrayMap(i -> evs.traffic_medium[i], start_index) AS session_mediums,
        arrayMap(i -> evs.utm_campaign[i], start_index) AS session_campaigns
    FROM boundaries
),

event_sessions AS (
    SELECT message_id, session_id, session_event_seq, day_event_seq, landing_source,
           landing_medium, landing_campaign
    FROM sessionised
    ARRAY JOIN
        message_ids AS message_id,
        session_ids AS session_id,
        seqs AS session_event_seq,
        day_seqs AS day_event_seq,
        session_sources AS landing_source,
        session_mediums AS landing_medium,
        session_campaigns AS landing_campaign
),

final AS (
    SELECT
        e.event_date AS event_date,
        e.event_at AS event_at,
        e.message_id AS message_id,
        e.type AS type,
        e.event AS event,
        e.person_id AS person_id,
        e.anonymous_id AS anonymous_id,
        e.user_id AS user_id,
        s.session_id AS session_id,
        s.session_event_seq AS session_event_seq,
        s.day_event_seq AS day_event_seq,
        e.sdk_session_id AS sdk_session_id,
        if(s.landing_source != '', s.landing_source, '(direct)') AS session_source,
        if(s.landing_medium != '', s.landing_medium, 'direct') AS session_medium,
        s.landing_campaign AS session_campaign,
        e.source AS source,
        e.channel AS channel,
        e.device_type AS device_type,
        e.os_name AS os_name,
        e.browser_name AS browser_name,
        e.device_timezone AS device_timezone,
        e.locale AS locale,
        e.page_path AS page_path,
        e.page_url AS page_url,
        e.page_title AS page_title,
        e.referrer_host AS referrer_host,
        e.utm_source AS utm_source,
        e.utm_medium AS utm_medium,
        e.utm_campaign AS utm_campaign,
        e.traffic_source AS traffic_source,
        e.traffic_medium AS traffic_medium,
        e.product_id AS product_id,
        e.product_name AS product_name,
        e.product_category AS product_category,
        e.price AS price,
        e.quantity AS quantity,
        e.currency AS currency,
        e.dwell_ms AS dwell_ms,
        e.scroll_depth AS scroll_depth,
        e.swipe_direction AS swipe_direction,
        e.element AS element,
        e.element_text AS element_text,
        e.search_query AS search_query,
        e.search_result_count AS search_result_count,
        e.order_id AS order_id,
        e.revenue AS revenue,
        e.item_product_ids AS item_product_ids,
        e.item_product_names AS item_product_names,
        e.item_categories AS item_categories,
        e.item_revenues AS item_revenues,
        e.coupon AS coupon,
        e.store_id AS store_id,
        e.staff_id AS staff_id,
        e.properties AS properties,
        e.traits AS traits
    FROM {{ scratch }} AS e
    INNER JOIN event_sessions AS s ON s.message_id = e.message_id
)

SELECT * FROM final
