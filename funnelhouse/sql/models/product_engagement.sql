-- product_engagement: how one person engaged with one product on one day, and whether
-- it ended in an order — behaviour joined to the (potential) order.
--
-- grain:        person × product × day (reporting time zone)
-- key:          (activity_date, person_id, product_id)
-- sources:      behavior_events
-- depends_on:   behavior_events
-- materialized: incremental_by_day (partition column activity_date)
--
-- Behaviour counted for a product: product_view (detail views, dwell_ms), add_to_cart
-- / remove_from_cart, and scroll / swipe / click events that carry the product_id the
-- tracking plan allows on them. Purchases come from the purchase event's items[]; an
-- order tracked twice the same day counts once (its first purchase event).
--
-- Engine/sort key: partitioned by day; ORDER BY (product_id, person_id): product
-- reports (views → carts → purchases per product) read one product's rows together,
-- and person × product joins follow.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    activity_date       Date,
    person_id           String,
    product_id          String,
    product_name        String,                    -- first name seen that day
    product_category    String,
    detail_views        UInt32,                    -- product_view events
    dwell_ms            UInt64,                    -- sum of product_view dwell_ms
    max_scroll_depth    Nullable(Float32),         -- deepest scroll (%) on the product
    swipes              UInt32,
    clicks              UInt32,
    add_to_carts        UInt32,
    added_quantity      UInt32,
    remove_from_carts   UInt32,
    orders              UInt32,                    -- distinct orders with this product
    purchased_quantity  UInt32,
    purchased_revenue   Decimal(18, 2),            -- sum of price × quantity of its lines
    currency            LowCardinality(String),
    first_event_at      DateTime64(3, 'UTC'),
    last_event_at       DateTime64(3, 'UTC'),
    first_viewed_at     Nullable(DateTime64(3, 'UTC')),
    converted           UInt8                      -- purchased that day
)
ENGINE = MergeTree
PARTITION BY activity_date
ORDER BY (product_id, person_id);

WITH
events AS (
    SELECT event_date, person_id, event_at, message_id, day_event_seq, event, product_id,
           product_name, product_category, dwell_ms, scroll_depth, quantity, currency, order_id,
           properties
    FROM behavior_events
    WHERE has({days:Array(Date)}, event_date) AND {{ people:person_id }}
),

product_events AS (
    SELECT event_date, person_id, product_id, event_at, day_event_seq, event, product_name,
           product_category, dwell_ms, scroll_depth, quantity, currency
    FROM events
    WHERE product_id != ''
      AND event IN ('product_view', 'add_to_cart', 'remove_from_cart', 'scroll', 'swipe', 'click')
),

purchases AS (
    -- One purchase event per order (the first), so a twice-tracked order counts once.
    SELECT event_date, person_id, event_at, day_event_seq, order_id, currency, properties
    FROM events
    WHERE event = 'purchase' AND order_id != ''
    ORDER BY event_at, message_id
    LIMIT 1 BY order_id
),

purchased_lines AS (
    SELECT
        event_date, person_id, event_at, day_event_seq, order_id, currency,
        JSONExtractString(item, 'product_id') AS product_id,
        JSONExtractString(item, 'name') AS product_name,
        JSONExtractString(item, 'category') AS product_category,
        toUInt32(JSONExtractUInt(item, 'quantity')) AS quantity,
        toDecimal64OrZero(trim(BOTH '"' FROM JSONExtractRaw(item, 'price')), 2) AS price
    FROM purchases
    ARRAY JOIN JSONExtractArrayRaw(properties, 'items') AS item
),

unioned AS (
    SELECT event_date, person_id, product_id, event_at, day_event_seq, event, product_name,
           product_category, dwell_ms, scroll_depth, quantity, currency,
           '' AS order_id, toDecimal64(0, 2) AS line_revenue
    FROM product_events
    UNION ALL
    SELECT event_date, person_id, product_id, event_at, day_event_seq, 'purchase' AS event,
           product_name, product_category, toUInt32(0) AS dwell_ms, CAST(NULL, 'Nullable(Float32)') AS scroll_depth,
           quantity, currency, order_id, price * quantity AS line_revenue
    FROM purchased_lines
    WHERE product_id != ''
),

final AS (
    SELECT
        event_date AS activity_date,
        person_id,
        product_id,
        argMinIf(product_name, first_key, product_name != '') AS product_name,
        argMinIf(product_category, first_key, product_category != '') AS product_category,
        toUInt32(countIf(event = 'product_view')) AS detail_views,
        toUInt64(sumIf(dwell_ms, event = 'product_view')) AS dwell_ms,
        maxIf(scroll_depth, event = 'scroll') AS max_scroll_depth,
        toUInt32(countIf(event = 'swipe')) AS swipes,
        toUInt32(countIf(event = 'click')) AS clicks,
        toUInt32(countIf(event = 'add_to_cart')) AS add_to_carts,
        toUInt32(sumIf(quantity, event = 'add_to_cart')) AS added_quantity,
        toUInt32(countIf(event = 'remove_from_cart')) AS remove_from_carts,
        toUInt32(uniqExactIf(order_id, event = 'purchase')) AS orders,
        toUInt32(sumIf(quantity, event = 'purchase')) AS purchased_quantity,
        sum(line_revenue) AS purchased_revenue,
        argMinIf(currency, first_key, currency != '') AS currency,
        min(event_at) AS first_event_at,
        max(event_at) AS last_event_at,
        if(countIf(event = 'product_view') > 0, minIf(event_at, event = 'product_view'), NULL) AS first_viewed_at,
        toUInt8(countIf(event = 'purchase') > 0) AS converted
    FROM (
        -- first_key: a row's place in its person's day, which behavior_events numbered
        -- by (event_at, message_id); every row of a group is one person's one day
        SELECT *, day_event_seq AS first_key
        FROM unioned
    )
    GROUP BY event_date, person_id, product_id
)

SELECT * FROM final
