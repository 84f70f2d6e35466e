-- Dead letters that replay can always process, or skip with a reason.
--
-- payload_truncated: the stored payload is not the whole event — cut at the size
-- limit (event_too_large) or at the depth limit (too_deep past what a JSON writer
-- handles). Such a row is kept for reading, but replay cannot re-validate a fragment:
-- it records it in invalid_skipped instead. Rows from before this column read 0;
-- replay treats their empty or unparseable payloads the same way.
ALTER TABLE events_invalid ADD COLUMN IF NOT EXISTS payload_truncated UInt8 DEFAULT 0 AFTER payload;

-- invalid_skipped: dead letters replay looked at and will never move, each with why
-- (payload_truncated, payload_not_json, message_id_already_stored, replay_failed: …).
-- Replay leaves them out from then on, so one poisoned row never blocks the others,
-- and a second replay runs clean. Kept apart from invalid_replayed because plan
-- coverage counts a replayed failure as fixed, and a skipped one is not.
CREATE TABLE IF NOT EXISTS invalid_skipped
(
    message_id  String,
    source      LowCardinality(String),
    skipped_at  DateTime64(3, 'UTC'),
    reason      String
)
ENGINE = ReplacingMergeTree(skipped_at)
ORDER BY (source, message_id);
