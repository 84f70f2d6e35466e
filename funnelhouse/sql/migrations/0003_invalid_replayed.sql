-- invalid_replayed: which dead-letter rows were replayed into events_raw, so a second
-- replay does not move them again. One row per replayed message_id.
CREATE TABLE IF NOT EXISTS invalid_replayed
(
    message_id   String,
    replayed_at  DateTime64(3, 'UTC'),
    schema_version LowCardinality(String)
)
ENGINE = ReplacingMergeTree(replayed_at)
ORDER BY message_id;
