-- segments: every version of every segment definition. A change (or a delete) is a
-- new row with the next version; the current definition is the highest version.
-- Keeping all versions lets a member list and a KPI snapshot name the exact
-- definition that produced them.
-- Engine: plain MergeTree — rows are never changed, only added (a few per day at most).
-- Sort key: (segment_id, version) — every read is "the versions of one segment".
CREATE TABLE IF NOT EXISTS segments
(
    segment_id   String,
    version      UInt32,
    name         String,
    description  String,
    kind         LowCardinality(String),    -- containers | sql | people
    definition   String,                    -- the JSON definition as validated
    created_at   DateTime64(3, 'UTC'),
    created_by   String,
    deleted      UInt8                      -- 1: this version deletes the segment
)
ENGINE = MergeTree
ORDER BY (segment_id, version);

-- segment_people: the ids of a segment saved from a list of people (a funnel's
-- drop-outs, a path's exits). Ids are resolved through the identity map at every
-- materialisation, so an anonymous id that later identifies lands on its person.
-- Sort key: (segment_id, version, id) — read whole per segment version.
CREATE TABLE IF NOT EXISTS segment_people
(
    segment_id  String,
    version     UInt32,
    id          String
)
ENGINE = MergeTree
ORDER BY (segment_id, version, id);

-- segment_members: the materialised members of each segment's current version.
-- Partition: one per segment, so a materialisation replaces one segment's members
-- atomically (REPLACE PARTITION from a staging table): readers see the old list
-- until the new one is complete, and other segments are untouched.
-- Sort key: (segment_id, person_id) — "is person X in segment S?" is a point
-- lookup on the primary key; a member export reads one segment's range in order.
CREATE TABLE IF NOT EXISTS segment_members
(
    segment_id       String,
    person_id        String,
    version          UInt32,
    materialised_at  DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY segment_id
ORDER BY (segment_id, person_id);

-- segment_snapshots: size and KPIs of a segment at each materialisation — the
-- segment over time. One row per materialisation.
-- Sort key: (segment_id, materialised_at) — read as one segment's time series.
-- KPIs read other tables as they were at that moment; NULL when a table was missing.
CREATE TABLE IF NOT EXISTS segment_snapshots
(
    segment_id        String,
    version           UInt32,
    materialised_at   DateTime64(3, 'UTC'),
    as_of             DateTime64(3, 'UTC'),        -- the moment relative windows ended at
    members           UInt64,
    added             UInt64,                      -- members now that were not before
    removed           UInt64,                      -- members before that are not now
    identified        UInt64,                      -- members whose person is a user id
    buyers            Nullable(UInt64),            -- members with at least one order
    orders_30d        Nullable(UInt64),            -- their orders in the 30 days before as_of
    revenue_30d       Nullable(Decimal(18, 2)),    -- and the revenue of those orders
    active_7d         Nullable(UInt64),            -- members with a session in the last 7 days
    seconds           Float64
)
ENGINE = MergeTree
ORDER BY (segment_id, materialised_at);
