-- funnel_stages: a person's lifecycle stage on each day they were active, and moves.
--
-- grain:        person × day (the days with at least one event of the person, in the
--               reporting time zone; the stage holds until the next row)
-- key:          (person_id, stage_date)
-- sources:      behavior_events, orders
-- depends_on:   behavior_events, orders
-- materialized: incremental_by_person (the affected people's days rebuilt, swapped in whole)
--
-- Stages are cumulative (a person never moves down):
--   0 never_visited           known only from non-visit events (identify, impressions, a server order…)
--   1 visited_no_shopping     a page_view / screen_view / store_visit, nothing else yet
--   2 viewed_product_or_cart  a product_view or add_to_cart
--   3 purchased_once          one order (online or offline)
--   4 purchased_repeat        two or more orders
-- Orders rank above browsing: a first order from the store makes a person
-- purchased_once even if they never visited. Everyone starts at never_visited, so the
-- first row has previous_stage = 'never_visited' and moved = 1 if it reached higher.
-- A stage is a running total over the person's history and an identity merge can
-- change it on any past day, so an affected person's rows are all recomputed (window
-- functions over their person-days) and replace their old rows; see people.py.
--
-- Engine/sort key: partitioned by month; ORDER BY (stage_date, stage_rank, person_id):
-- "who moved / who was where on day X" reads one contiguous range per day.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    stage_date           Date,
    person_id            String,
    stage                LowCardinality(String),
    stage_rank           UInt8,
    previous_stage       LowCardinality(String),     -- stage at the end of the previous active day
    previous_stage_rank  UInt8,
    moved                UInt8,                      -- stage_rank > previous_stage_rank
    stage_entered_date   Date,                       -- the day the person reached this stage
    orders_to_date       UInt32,
    is_first_day         UInt8
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(stage_date)
ORDER BY (stage_date, stage_rank, person_id);

WITH
activity AS (
    SELECT
        person_id,
        event_date,
        max(event IN ('page_view', 'screen_view', 'store_visit')) AS visited,
        max(event IN ('product_view', 'add_to_cart')) AS shopped
    FROM behavior_events
    WHERE {{ people:person_id }} AND {{ days:event_date }}
    GROUP BY person_id, event_date
),

order_days AS (
    SELECT person_id, order_date, count() AS orders
    FROM orders
    WHERE {{ people:person_id }}
    GROUP BY person_id, order_date
),

cumulative AS (
    SELECT
        a.person_id AS person_id,
        a.event_date AS stage_date,
        max(a.visited) OVER w AS ever_visited,
        max(a.shopped) OVER w AS ever_shopped,
        sum(o.orders) OVER w AS orders_to_date,
        row_number() OVER w AS day_number
    FROM activity AS a
    LEFT JOIN order_days AS o ON o.person_id = a.person_id AND o.order_date = a.event_date
    WINDOW w AS (PARTITION BY a.person_id ORDER BY a.event_date ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),

ranked AS (
    SELECT *,
        toUInt8(multiIf(orders_to_date >= 2, 4, orders_to_date = 1, 3, ever_shopped, 2, ever_visited, 1, 0)) AS stage_rank
    FROM cumulative
),

moves AS (
    SELECT *,
        toUInt8(lagInFrame(stage_rank, 1, 0) OVER (PARTITION BY person_id ORDER BY stage_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS previous_stage_rank
    FROM ranked
),

final AS (
    SELECT
        stage_date,
        person_id,
        ['never_visited', 'visited_no_shopping', 'viewed_product_or_cart', 'purchased_once',
         'purchased_repeat'][stage_rank + 1] AS stage,
        stage_rank,
        ['never_visited', 'visited_no_shopping', 'viewed_product_or_cart', 'purchased_once',
         'purchased_repeat'][previous_stage_rank + 1] AS previous_stage,
        previous_stage_rank,
        toUInt8(stage_rank > previous_stage_rank) AS moved,
        max(if(stage_rank > previous_stage_rank, stage_date, toDate(0))) OVER (
            PARTITION BY person_id ORDER BY stage_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS entered,
        -- a person who stays never_visited entered it on their first day
        if(entered = toDate(0), min(stage_date) OVER (PARTITION BY person_id), entered) AS stage_entered_date,
        toUInt32(orders_to_date) AS orders_to_date,
        toUInt8(day_number = 1) AS is_first_day
    FROM moves
)

SELECT * FROM final
