-- events_raw: the FIRST received copy of a message_id wins on merge, as in the models.
--
-- Why: ReplacingMergeTree(received_at) kept the LATEST copy, so a different payload
-- sent later under a stored messageId (past the collector's dedup window, or after a
-- restart) replaced the event in `events_raw FINAL` while the models kept the earliest.
-- A ReplacingMergeTree keeps the row with the highest version, so the version is
-- `first_copy`, which falls as received_at rises. It is MATERIALIZED: computed on
-- insert, absent from `SELECT *` and from the loader's JSON rows.
--
-- The loader also drops rows whose (source, message_id) is already stored before it
-- inserts them (loader/load.py); this engine is the backstop for copies that race past
-- that check and for copies stored before it existed. (No skip index serves that
-- lookup: a bloom filter on message_id, measured with 10k random ids per batch, matched
-- every granule block and made it slower, so it reads the message_id column.)
--
-- How: as in 0012, a new table with the engine, rows copied, swapped in; each step safe
-- to repeat. Nothing may insert meanwhile (stop the loaders on a shared server).
ALTER TABLE events_raw ADD COLUMN IF NOT EXISTS first_copy UInt64
    MATERIALIZED 18446744073709551615 - toUInt64(toUnixTimestamp64Milli(received_at));

DROP TABLE IF EXISTS events_raw__first_copy;

CREATE TABLE events_raw__first_copy AS events_raw
ENGINE = ReplacingMergeTree(first_copy)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (toDate(timestamp), source, message_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO events_raw__first_copy SELECT * FROM events_raw;

EXCHANGE TABLES events_raw AND events_raw__first_copy;

DROP TABLE events_raw__first_copy;
