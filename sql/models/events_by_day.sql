-- events_by_day: the slice of events_raw a run rebuilds, re-partitioned by reporting day.
--
-- grain:        one row per delivered copy (duplicates are kept; behavior_events dedups)
-- key:          message_id (with copies)
-- sources:      events_raw
-- depends_on:
-- materialized: ephemeral (built by the runner once per run, for the days its dependants
--               rebuild plus one day either side, and dropped at the end of the run)
--
-- Why: events_raw is sorted by (source, message_id) for dedup, so once parts merge a
-- day's rows are spread over the whole month partition and every day-range read
-- decompresses the month. Copying the needed days once, partitioned by reporting day,
-- turns each chunk of behavior_events into a read of just its own partitions: one
-- streaming pass over events_raw per run instead of one (or two) per chunk.
-- Sort key: (message_id, received_at) — behavior_events dedups with
-- ORDER BY message_id, received_at LIMIT 1 BY message_id, which then reads in order
-- (a streaming merge) instead of sorting whole rows.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    event_date      Date,
    message_id      String,
    type            LowCardinality(String),
    event           LowCardinality(String),
    anonymous_id    String,
    user_id         String,
    timestamp       DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    session_id      String,
    source          LowCardinality(String),
    channel         LowCardinality(String),
    page_url        String,
    page_path       String,
    page_title      String,
    screen_name     String,
    referrer_host   String,
    utm_source      String,
    utm_medium      String,
    utm_campaign    String,
    traffic_source  String,
    traffic_medium  LowCardinality(String),
    device_type     LowCardinality(String),
    os_name         LowCardinality(String),
    browser_name    LowCardinality(String),
    timezone        LowCardinality(String),
    locale          LowCardinality(String),
    properties      String,
    traits          String
)
ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (message_id, received_at);

WITH
slice AS (
    SELECT
        toDate(timestamp, {tz:String}) AS event_date,
        message_id, type, event, anonymous_id, user_id, timestamp, received_at, session_id,
        source, channel, page_url, page_path, page_title, screen_name, referrer_host,
        utm_source, utm_medium, utm_campaign, traffic_source, traffic_medium, device_type,
        os_name, browser_name, timezone, locale, properties, traits
    FROM events_raw
    WHERE timestamp >= {ts_from:DateTime64(3, 'UTC')}
      AND timestamp < {ts_to:DateTime64(3, 'UTC')}
      AND (anonymous_id != '' OR user_id != '')
)

SELECT *
FROM slice
WHERE has({days:Array(Date)}, event_date)
