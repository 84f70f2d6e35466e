-- insights: analyses saved from the console. An insight is a view of the console (its
-- route path, e.g. /funnels) and the query string that holds that view's state, so
-- opening it restores the view exactly. Every change (or a delete) is a new row with
-- the next version, as for segments; the current insight is the highest version.
-- Engine: plain MergeTree — rows are only added (a handful per day at most).
-- Sort key: (insight_id, version) — every read is "the versions of one insight" or all.
CREATE TABLE IF NOT EXISTS insights
(
    insight_id   UInt64,
    version      UInt32,
    name         String,
    path         LowCardinality(String),    -- one of the console's analysis views
    query        String,                    -- the view's URL query, without the '?'
    created_at   DateTime64(3, 'UTC'),      -- when version 1 was written
    updated_at   DateTime64(3, 'UTC'),      -- when this version was written
    deleted      UInt8                      -- 1: this version deletes the insight
)
ENGINE = MergeTree
ORDER BY (insight_id, version);

-- dashboards: named, ordered lists of insights. Versioned the same way; deleting an
-- insight writes a new version of every dashboard that showed it, without it.
-- Sort key: (dashboard_id, version).
CREATE TABLE IF NOT EXISTS dashboards
(
    dashboard_id UInt64,
    version      UInt32,
    name         String,
    insight_ids  Array(UInt64),             -- in the order the cards are shown
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC'),
    deleted      UInt8
)
ENGINE = MergeTree
ORDER BY (dashboard_id, version);
