-- identity_map: one row per id (anonymous id or user id) → the person it belongs to.
--
-- grain:       id
-- key:         id
-- sources:     events_raw
-- depends_on:
-- materialized: table (built whole on a full refresh; merged by funnelhouse/models/identity.py
--               on an incremental run: only the events received since the last run)
--
-- Rules (the same in funnelhouse/reference.py):
-- * A link is "from_id → user_id": every event with both an anonymous_id and a user_id
--   links that anonymous id (identify, login, any identified hit); an `alias` links its
--   previous_id (an anonymous id or an old user id) to its user_id.
-- * Each id keeps its FIRST link (earliest event time, then message_id): a shared
--   device stays with the person who identified on it first.
-- * Links are followed up to 4 hops (anonymous → old user id → renamed user id …);
--   the last id reached is the person_id. An id with no link is its own person.
-- Incremental runs: each id's first link is kept in `identity_links` (the scratch below,
-- with its sort key), so a run merges the new events' links into it, re-resolves only
-- the ids whose chain reaches a changed link, and swaps the map in whole (EXCHANGE:
-- the map's parts hard-linked, the replaced ids masked; no event read). A late
-- `identify` thus moves only the ids it links; the persons it moved are recorded in
-- identity_map_changes.
-- Sort key: id — the lookups are point joins by id.
CREATE TABLE IF NOT EXISTS {{ this }}
(
    id            String,
    id_kind       LowCardinality(String),   -- anonymous | user
    person_id     String,                   -- canonical user id, else the id itself
    linked_to     String,                   -- the id this one was first linked to ('' if none)
    linked_at     Nullable(DateTime64(3, 'UTC')),  -- when that first link was seen
    first_seen_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY id;

-- Scratch: each linked id's first link, held in memory because the chain below reads
-- it four times (a CTE would re-run the scans of events_raw at each hop).
CREATE TABLE {{ scratch }} ENGINE = Memory AS
WITH
links_raw AS (
    SELECT anonymous_id AS from_id, user_id AS to_id, timestamp, message_id
    FROM events_raw
    WHERE anonymous_id != '' AND user_id != '' AND anonymous_id != user_id
    UNION ALL
    SELECT previous_id AS from_id, user_id AS to_id, timestamp, message_id
    FROM events_raw
    WHERE type = 'alias' AND previous_id != '' AND user_id != '' AND previous_id != user_id
),

links AS (
    -- The first link by (timestamp, message_id). The key is that pair spelled as one
    -- string that sorts the same way (milliseconds, offset to stay positive and padded
    -- to a fixed width, then the message_id): argMin over a string key is ~3x cheaper
    -- than over a tuple, and an identified device links on every event (3M links in
    -- 10M events).
    SELECT
        from_id AS id,
        argMin(to_id, concat(
            leftPad(toString(toUnixTimestamp64Milli(timestamp) + 10000000000000), 15, '0'),
            message_id)) AS to_id,
        min(concat(
            leftPad(toString(toUnixTimestamp64Milli(timestamp) + 10000000000000), 15, '0'),
            message_id)) AS link_key,
        min(timestamp) AS linked_at
    FROM links_raw
    GROUP BY from_id
)

SELECT id, to_id, link_key, linked_at FROM links;

WITH
resolved AS (
    -- join_use_nulls = 0: a missing hop reads as '' and stops the chain.
    SELECT
        l1.id AS id,
        l1.to_id AS linked_to,
        l1.linked_at AS linked_at,
        multiIf(l4.to_id != '', l4.to_id, l3.to_id != '', l3.to_id, l2.to_id != '', l2.to_id, l1.to_id) AS person_id
    FROM {{ scratch }} AS l1
    LEFT JOIN {{ scratch }} AS l2 ON l2.id = l1.to_id
    LEFT JOIN {{ scratch }} AS l3 ON l3.id = l2.to_id
    LEFT JOIN {{ scratch }} AS l4 ON l4.id = l3.to_id
),

ids AS (
    SELECT id, if(max(is_user) = 1, 'user', 'anonymous') AS id_kind, min(seen_at) AS first_seen_at
    FROM (
        SELECT anonymous_id AS id, 0 AS is_user, min(timestamp) AS seen_at
        FROM events_raw WHERE anonymous_id != '' GROUP BY anonymous_id
        UNION ALL
        SELECT user_id AS id, 1 AS is_user, min(timestamp) AS seen_at
        FROM events_raw WHERE user_id != '' GROUP BY user_id
        UNION ALL
        SELECT previous_id AS id, 0 AS is_user, min(timestamp) AS seen_at
        FROM events_raw WHERE type = 'alias' AND previous_id != '' GROUP BY previous_id
    )
    GROUP BY id
),

final AS (
    SELECT
        ids.id AS id,
        ids.id_kind AS id_kind,
        if(r.person_id != '', r.person_id, ids.id) AS person_id,
        r.linked_to AS linked_to,
        if(r.linked_to != '', r.linked_at, NULL) AS linked_at,
        ids.first_seen_at AS first_seen_at
    FROM ids
    LEFT JOIN resolved AS r ON r.id = ids.id
)

SELECT id, id_kind, person_id, linked_to, linked_at, first_seen_at
FROM final
