-- message_ids: every (source, message_id) stored in events_raw, for the loader's
-- "first stored copy wins" check.
--
-- Why: the loader looked each batch's ids up in events_raw, whose sort key starts with
-- the day, so the lookup read the whole message_id column: a batch cost more the more
-- history there was (a 300k-row queue drained at ≈12k rows/s on a 300k-row table).
-- Here the ids are the primary key, so `(source, message_id) IN batch` reads only the
-- granules the index points at: the cost follows the batch, not the history.
--
-- Engine: ReplacingMergeTree, so a repeated id collapses on merge (the table is a set).
-- No partition: a copy may arrive any time later and must find its first copy.
-- Who writes: the loader and replay, right after their events_raw insert, with that
-- insert's token + ":ids" (a retried batch does not add twice). Rows inserted into
-- events_raw any other way (a migration's copy, a benchmark's SQL) are not checked at
-- load anyway; the backfill below covers what was stored before this table existed.
CREATE TABLE IF NOT EXISTS message_ids
(
    source LowCardinality(String),
    message_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (source, message_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO message_ids SELECT DISTINCT source, message_id FROM events_raw;
