-- order_items: one row per order line, with the behaviour that led to it.
--
-- grain:        order line (an element of the purchase event's items[])
-- key:          (order_id, line_number)
-- sources:      behavior_events
-- depends_on:   behavior_events
-- materialized: incremental_by_person (the affected people's lines rebuilt, swapped in whole)
--
-- An order is its first purchase event (by event time, then message_id); a second
-- copy of the same order_id (browser + server tracking) is ignored.
-- views_before_purchase / carts_before_purchase: the person's product_view /
-- add_to_cart events of that product strictly before the order, over their whole
-- history (every device, every day) — which is why a person's lines are rebuilt from
-- their whole history when they are affected (new events, or an identity merge: a late
-- identify can add views from any day to an order of any day); see people.py.
--
-- Engine/sort key: partitioned by month of the order; ORDER BY (product_id, order_date)
-- because the questions are per product ("how many views before a purchase of X").
CREATE TABLE IF NOT EXISTS {{ this }}
(
    order_id                String,
    line_number             UInt32,                    -- 1-based position in items[]
    person_id               String,
    ordered_at              DateTime64(3, 'UTC'),
    order_date              Date,                      -- reporting time zone
    product_id              String,
    product_name            String,
    product_category        String,
    price                   Decimal(18, 2),
    quantity                UInt32,
    line_revenue            Decimal(18, 2),            -- price × quantity
    currency                LowCardinality(String),
    views_before_purchase   UInt32,
    carts_before_purchase   UInt32,
    first_viewed_at         Nullable(DateTime64(3, 'UTC')),
    seconds_from_first_view Nullable(Int64)            -- first view of the product → order
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(order_date)
ORDER BY (product_id, order_date, order_id, line_number);

-- Scratch: the order lines, held in memory because the SELECT reads them three times.
CREATE TABLE {{ scratch }} ENGINE = Memory AS
WITH
purchases AS (
    SELECT order_id, person_id, event_at AS ordered_at, event_date AS order_date, currency, properties
    FROM behavior_events
    WHERE event = 'purchase' AND order_id != ''
      AND {{ people:person_id }} AND {{ days:event_date }}
    ORDER BY event_at, message_id
    LIMIT 1 BY order_id
),

lines AS (
    SELECT
        order_id, person_id, ordered_at, order_date, currency,
        toUInt32(line_number) AS line_number,
        JSONExtractString(item, 'product_id') AS product_id,
        JSONExtractString(item, 'name') AS product_name,
        JSONExtractString(item, 'category') AS product_category,
        toDecimal64OrZero(trim(BOTH '"' FROM JSONExtractRaw(item, 'price')), 2) AS price,
        toUInt32(JSONExtractUInt(item, 'quantity')) AS quantity
    FROM purchases
    ARRAY JOIN
        JSONExtractArrayRaw(properties, 'items') AS item,
        arrayEnumerate(JSONExtractArrayRaw(properties, 'items')) AS line_number
)

SELECT * FROM lines;

WITH
product_touches AS (
    SELECT person_id, product_id, event, event_at
    FROM behavior_events
    WHERE event IN ('product_view', 'add_to_cart')
      AND product_id != '' AND {{ days:event_date }}
      AND person_id IN (SELECT person_id FROM {{ scratch }})
),

behaviour AS (
    SELECT
        l.order_id AS order_id,
        l.line_number AS line_number,
        countIf(t.event = 'product_view' AND t.event_at < l.ordered_at) AS views,
        countIf(t.event = 'add_to_cart' AND t.event_at < l.ordered_at) AS carts,
        minIf(t.event_at, t.event = 'product_view' AND t.event_at < l.ordered_at) AS first_view
    -- the lines (fewer rows) are the join's hash table, the touches stream past it
    FROM product_touches AS t
    INNER JOIN {{ scratch }} AS l ON l.person_id = t.person_id AND l.product_id = t.product_id
    GROUP BY l.order_id, l.line_number
),

final AS (
    SELECT
        l.order_id AS order_id,
        l.line_number AS line_number,
        l.person_id AS person_id,
        l.ordered_at AS ordered_at,
        l.order_date AS order_date,
        l.product_id AS product_id,
        l.product_name AS product_name,
        l.product_category AS product_category,
        l.price AS price,
        l.quantity AS quantity,
        l.price * l.quantity AS line_revenue,
        l.currency AS currency,
        toUInt32(b.views) AS views_before_purchase,
        toUInt32(b.carts) AS carts_before_purchase,
        if(b.views > 0, b.first_view, NULL) AS first_viewed_at,
        if(b.views > 0,
           intDiv(toUnixTimestamp64Milli(l.ordered_at) - toUnixTimestamp64Milli(b.first_view), 1000),
           NULL) AS seconds_from_first_view
    FROM {{ scratch }} AS l
    LEFT JOIN behaviour AS b ON b.order_id = l.order_id AND b.line_number = l.line_number
)

SELECT * FROM final
