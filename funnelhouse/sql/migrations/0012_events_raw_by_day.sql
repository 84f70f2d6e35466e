-- events_raw re-sorted by event day: ORDER BY (toDate(timestamp), source, message_id).
--
-- Why: the models rebuild ranges of days. Sorted by (source, message_id), a day's rows
-- were spread over the whole month partition once parts merged, so every day-range read
-- decompressed the month (the models first copied the days they needed into a scratch
-- table). With the event's UTC day leading the key, a range of days is a range of the
-- primary index: the models read events_raw directly, and an incremental run reads
-- only the days it rebuilds.
--
-- Dedup on merge: ReplacingMergeTree(received_at) still collapses the copies of a
-- message_id that fall on the same UTC day — in practice all of them, as copies differ
-- by their delivery latency only. Models never relied on merges: they keep the
-- earliest received copy themselves.
--
-- How: a sort key cannot be changed in place, so the rows are copied into a table with
-- the new key (same columns, index and settings) that is then swapped in. Every step is
-- safe to repeat: a migration stopped half way drops the partial copy on the next start
-- and does it again; stopped after the swap, it copies the re-sorted table once more.
-- Nothing may insert meanwhile: on a ClickHouse server shared by several processes, stop
-- the loaders first (Kafka keeps what they have not consumed), or rows inserted between
-- the copy and the swap would stay behind in the old table. (chdb: one process per data
-- folder, and `up` migrates before its loader starts.)
DROP TABLE IF EXISTS events_raw__by_day;

CREATE TABLE events_raw__by_day AS events_raw
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), source, message_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO events_raw__by_day SELECT * FROM events_raw;

EXCHANGE TABLES events_raw AND events_raw__by_day;

DROP TABLE events_raw__by_day;
