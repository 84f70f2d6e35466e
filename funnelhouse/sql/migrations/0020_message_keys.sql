-- message_keys: every (source, message_id) stored in events_raw, found by a hash of the
-- pair for the loader's first-copy check. Replaces message_ids (migrations 0016, 0018).
--
-- Why: message_ids was sorted by the pair itself, and a batch's keys were looked up
-- through its primary index. Real message ids are random (UUIDs), so a batch of 25k
-- keys falls in nearly every 8,192-row granule and each lookup read and compared the
-- whole table's strings: with random ids the loader drained 144k rows/s into an empty
-- warehouse, 26k with 10M events stored and 11k with 30M (docs/benchmarks.md).
--
-- How: the primary key is a 64-bit hash of the pair, in granules of 64 rows compressed
-- one by one, so a lookup reads only the granules its keys' hashes fall in (at most
-- one per key) and decompresses nothing else: 25k keys against 10M stored took 0.10 s
-- here, against 0.64 s; against 30M, 0.15 against 1.9 s. The pair is compared after
-- the hash (PREWHERE on the hash, then the strings of the few rows it leaves), so two
-- keys sharing a hash are never taken for each other. The price is disk: ids in hash
-- order hardly compress (10M UUIDs: 294 MB, against 186 MB sorted by the ids).
--
-- Engine: ReplacingMergeTree on the whole (hash, source, message_id): a repeated key
-- collapses on merge (the table is a set); different keys never do, even with one hash.
-- No partition: a copy may arrive any time later and must find its first copy.
-- Who writes: the view below, in the same INSERT as events_raw (as 0018's did), so the
-- two do not drift apart whoever inserts.
--
-- Order: the new view first, so rows inserted while this runs are recorded; then every
-- key of events_raw (not of message_ids: a re-run after the last step must still work,
-- and ids an old crash left unrecorded are recorded now); then the old view and table.
CREATE TABLE IF NOT EXISTS message_keys
(
    h          UInt64,                      -- sipHash64(source, message_id)
    source     LowCardinality(String),
    message_id String
)
ENGINE = ReplacingMergeTree
PRIMARY KEY h
ORDER BY (h, source, message_id)
SETTINGS index_granularity = 64, min_compress_block_size = 512,
         non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_keys_of_events_raw TO message_keys AS
SELECT sipHash64(toString(source), message_id) AS h, source, message_id
FROM events_raw;

-- (not DISTINCT: its set would hold every key in memory at once; the few copies
-- collapse on merge, and a lookup finds a key the same once or twice)
INSERT INTO message_keys
SELECT sipHash64(toString(source), message_id) AS h, source, message_id
FROM events_raw;

DROP VIEW IF EXISTS message_ids_of_events_raw;

DROP TABLE IF EXISTS message_ids;
