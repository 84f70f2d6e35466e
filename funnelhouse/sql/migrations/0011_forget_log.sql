-- forget_log: one row per "forget this person" request — the record that it was done.
-- It keeps no personal data: ids are stored as SHA-256 hashes, with how many rows each
-- table lost, so the request can be proven without keeping what was erased.
-- Sort key: requested_at — read as a log.
CREATE TABLE IF NOT EXISTS forget_log
(
    request_id    String,
    requested_at  DateTime64(3, 'UTC'),
    requested_by  String,
    reason        String,
    id_hashes     Array(String),                   -- lower(hex(SHA256(id))) of every id erased
    rows_deleted  Map(String, UInt64),             -- table → rows removed
    seconds       Float64
)
ENGINE = MergeTree
ORDER BY requested_at;

-- forgotten_ids: every id ever forgotten, hashed. Exports and segment
-- materialisation leave these ids out, and the nightly sweep deletes events that
-- arrive for them after the request (a device still sending, a late batch).
-- Sort key: id_hash — read as an IN set and looked up by hash.
CREATE TABLE IF NOT EXISTS forgotten_ids
(
    id_hash       String,
    forgotten_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(forgotten_at)
ORDER BY id_hash;
