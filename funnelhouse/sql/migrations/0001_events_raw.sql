-- events_raw: every valid event, one row per delivered copy, as the collector enriched it.
--
-- Engine: ReplacingMergeTree(received_at) ordered by (source, message_id) so that
-- at-least-once delivery (client retries past the collector's dedup window, Kafka
-- redelivery) collapses to one row per message_id on merge (the merge keeps the copy
-- received last). Models never rely on merges having happened: they pick one copy per
-- message_id themselves and carry no per-copy column (received_at, sent_at) into the
-- tables, so the result is the same before and after a merge.
-- The loader additionally inserts with an insert_deduplication_token derived from
-- the queue offsets, so a batch re-sent after a crash is dropped at insert time
-- (non_replicated_deduplication_window keeps the last tokens).
--
-- Partition: by month of the corrected event time. Models rebuild a day range
-- (incremental with a look-back window) and prune whole months; retention drops
-- whole partitions. No TTL by default: raw events are the source of truth that
-- models can always be rebuilt from.
--
-- Sort key: (source, message_id) serves dedup; person/time access goes through
-- behavior_events, which is sorted by (person_id, timestamp). A minmax skip index
-- on timestamp lets day-range scans skip granules within a partition.
CREATE TABLE IF NOT EXISTS events_raw
(
    message_id          String,
    type                LowCardinality(String),   -- track | page | screen | identify | alias | group
    event               LowCardinality(String),   -- plan event name: page_view, click, purchase, identify …
    anonymous_id        String,
    user_id             String,
    previous_id         String,                   -- alias: the id being merged into user_id
    group_id            String,
    original_timestamp  DateTime64(3, 'UTC'),     -- device clock when the event happened
    sent_at             DateTime64(3, 'UTC'),     -- device clock when the batch was sent
    received_at         DateTime64(3, 'UTC'),     -- collector clock
    timestamp           DateTime64(3, 'UTC'),     -- received_at - (sent_at - original_timestamp)
    session_id          String,
    source              LowCardinality(String),   -- from the write key
    channel             LowCardinality(String),   -- web | app | server | offline
    page_url            String,
    page_path           String,
    page_title          String,
    page_search         String,
    screen_name         String,
    referrer            String,
    referrer_host       String,
    utm_source          String,
    utm_medium          String,
    utm_campaign        String,
    utm_term            String,
    utm_content         String,
    click_id            String,                   -- gclid / fbclid / msclkid / ttclid …
    click_id_type       LowCardinality(String),
    traffic_source      String,                   -- classified: google, newsletter, (direct) …
    traffic_medium      LowCardinality(String),   -- search | social | referral | direct | email | paid | …
    device_type         LowCardinality(String),   -- desktop | mobile | tablet | bot | other
    device_brand        LowCardinality(String),
    device_model        String,
    os_name             LowCardinality(String),
    os_version          String,
    browser_name        LowCardinality(String),
    browser_version     String,
    is_bot              UInt8,
    user_agent          String,
    ip                  String,                   -- anonymised before storage
    locale              LowCardinality(String),
    timezone            LowCardinality(String),
    library_name        LowCardinality(String),
    library_version     LowCardinality(String),
    properties          String,                   -- JSON object, snake_case keys
    traits              String,                   -- JSON object, snake_case keys
    context             String,                   -- JSON object: the rest of the client's context
    schema_version      LowCardinality(String),   -- e.g. purchase/1-0-0
    flags               Array(LowCardinality(String)), -- unplanned_event, extra_properties, timestamp_clamped …
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (source, message_id)
SETTINGS non_replicated_deduplication_window = 10000;
