-- message_ids filled by ClickHouse itself, in the same INSERT as events_raw.
--
-- Why: the loader recorded a batch's ids with a second insert after the events. A
-- loader killed between the two left rows in events_raw whose ids were not recorded,
-- so a later copy of them (a batch replayed under another token, as when a Kafka
-- rebalance splits a batch between members) was not recognised and stored twice.
-- A materialized view writes the ids as part of every events_raw insert — the
-- loader's, replay's, and any other — so the two no longer drift apart, and the loader
-- saves its second insert (0.3–0.5 s per 300k rows).
--
-- The view follows the name events_raw: a copy-and-swap (EXCHANGE TABLES, as the
-- forget sweep and migrations 0012/0015 do) leaves it on the new events_raw. Ids the
-- loader stored before this migration stay as they are; an id a crash left unrecorded
-- under an earlier release is not backfilled (a scan of all of events_raw against
-- all of message_ids, for a case of milliseconds in the past).
CREATE MATERIALIZED VIEW IF NOT EXISTS message_ids_of_events_raw TO message_ids AS
SELECT source, message_id
FROM events_raw;
