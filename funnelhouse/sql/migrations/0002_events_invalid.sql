-- events_invalid: the dead-letter table. Every event the tracking plan (or the
-- envelope rules) refused, with every error and the original payload, so it can be
-- understood and replayed (`funnelhouse replay-invalid`) once the plan is fixed.
--
-- Engine: plain MergeTree — every rejection is a fact worth keeping, and replay marks
-- rows as replayed in a separate table rather than mutating this one.
-- Sort key: (source, event, received_at) serves the tagging-QA and coverage questions
-- "what failed for this source / this event lately".
-- TTL: 90 days — long enough to fix a plan and replay, short enough not to hoard
-- payloads that never became valid.
CREATE TABLE IF NOT EXISTS events_invalid
(
    message_id      String,
    received_at     DateTime64(3, 'UTC'),
    source          LowCardinality(String),
    type            LowCardinality(String),
    event           LowCardinality(String),
    reason          LowCardinality(String),   -- schema_violation | unknown_event | unexpected_property | …
    errors          Array(Tuple(path String, message String)),
    schema_version  LowCardinality(String),
    payload         String,                   -- the event as the client sent it (JSON)
    request         String,                   -- what the collector knew of the request: ip, user agent, write key kind (JSON)
    INDEX idx_message_id message_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source, event, received_at)
TTL toDateTime(received_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 10000;
