"""Identity stitching that keeps its state between runs (the incremental identity_map).

A full build (sql/models/identity_map.sql) reads every event. Between runs the links it
found are kept in `identity_links` (each linked id's FIRST link, with the sort key that
picked it), so an incremental run reads only the events received since the previous
run and merges their links in:

1. the new events' links, per id, their first one by (timestamp, message_id);
2. merged with the stored link: the earlier of the two wins, as in a full build;
3. the ids whose link differs from what the published map says are *changed*; the
   ids whose person may move with them are those whose chain reaches a changed id
   within the 4 hops a person is resolved over (3 reverse steps over the links);
4. only those ids are resolved again (forward over their chains), the ids the new
   events carry get their kind and first sighting merged, and the map is swapped in
   whole (EXCHANGE TABLES: readers never see half a map). The map is one row per id,
   an order of magnitude smaller than the events; the copy reads no event.

The persons whose ids moved (the old person and the new one) are recorded in
`identity_map_changes`; the person-level models rebuild exactly those people (plus the
people of the new events). A forgotten person's rows are removed from every one of
these tables by the forget job, and their events from events_raw, so nothing here can
bring them back.
"""

from __future__ import annotations

from funnelhouse.models import swap
from funnelhouse.warehouse.base import Warehouse

__all__ = ["CHANGES", "LINKS", "LINKS_DDL", "MOVED", "map_version", "refresh", "save_links"]

LINKS = "identity_links"
CHANGES = "identity_map_changes"
# The ids an incremental merge moved to another person (or newly linked), each with
# the person it resolved to before (itself if unknown); kept in memory for the rest of
# the model run, which rebuilds the days holding their events (models/run.py).
MOVED = "models__moved_ids"
# A new random token is written here before every swap of the map: a table that
# records the token it was built with knows the map has not changed since, even when
# a run stopped between swapping the map and recording itself.
VERSION = "identity_map_version"
# Columns named like the events' (previous_id → user_id) so the forget job, which
# removes rows carrying a person's id in any such column, clears this state too.
LINKS_DDL = """CREATE TABLE IF NOT EXISTS {table}
(
    previous_id String,              -- the linked id (anonymous id, or an old user id)
    user_id     String,              -- its first link
    link_key    String,              -- (timestamp, message_id) of that link, sortable as text
    linked_at   DateTime64(3, 'UTC'),  -- the earliest link of the id
    version     UInt64               -- the run that wrote the row: the latest wins
)
-- ReplacingMergeTree: a run inserts the merged rows of the ids it saw (one INSERT,
-- atomic); reads use FINAL. Only the runner reads this table.
ENGINE = ReplacingMergeTree(version)
ORDER BY previous_id"""
CHANGES_DDL = """CREATE TABLE IF NOT EXISTS {table}
(person_id String)  -- a person whose ids changed in the last identity_map run
ENGINE = MergeTree ORDER BY person_id"""

# The link key: milliseconds offset to stay positive and padded, then the message_id
# (the same text sort key identity_map.sql uses).
_KEY = ("concat(leftPad(toString(toUnixTimestamp64Milli(timestamp) + 10000000000000), 15, '0'), "
        "message_id)")
_SCRATCH = "identity_map__"


def save_links(wh: Warehouse, scratch: str) -> None:
    """After a full build: the build's links (its scratch table) become the stored state."""
    new = f"{LINKS}__new"
    wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
    wh.execute(LINKS_DDL.format(table=new))
    wh.execute(f"INSERT INTO {new} SELECT id, to_id, link_key, linked_at, 1 FROM {scratch}")
    swap.swap(wh, LINKS, new)
    _replace_changes(wh, None)
    _new_version(wh)


def refresh(wh: Warehouse, source: str) -> int:
    """Merge the links of the new events (`source`: a table of events_raw's columns,
    the events received since the last run) into identity_map; returns its rows."""
    names = ("links_new", "merged", "changed", "affected", "level", "near", "resolved",
             "seen", "rows")
    t = {n: f"{_SCRATCH}{n}" for n in names}
    try:
        _run(wh, t, source)
        return int(wh.query("SELECT count() FROM identity_map").scalar() or 0)
    finally:
        for table in t.values():
            wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")


def _run(wh: Warehouse, t: dict[str, str], source: str) -> None:
    for table in t.values():
        wh.execute(f"DROP TABLE IF EXISTS {table} SYNC")
    # 1. the new events' first link per id
    wh.execute(f"""
        CREATE TABLE {t['links_new']} ENGINE = Memory AS
        SELECT from_id AS id, argMin(to_id, key) AS to_id, min(key) AS link_key,
               min(timestamp) AS linked_at
        FROM (
            SELECT anonymous_id AS from_id, user_id AS to_id, timestamp, {_KEY} AS key
            FROM {source}
            WHERE anonymous_id != '' AND user_id != ''
              AND anonymous_id != user_id
            UNION ALL
            SELECT previous_id AS from_id, user_id AS to_id, timestamp, {_KEY} AS key
            FROM {source}
            WHERE type = 'alias' AND previous_id != '' AND user_id != ''
              AND previous_id != user_id
        )
        GROUP BY from_id""")
    # 2. merged with the stored first link: the earlier one wins
    wh.execute(f"""
        CREATE TABLE {t['merged']} ENGINE = Memory AS
        SELECT n.id AS id,
               if(s.previous_id != '' AND s.link_key <= n.link_key, s.user_id, n.to_id) AS to_id,
               if(s.previous_id != '', least(s.link_key, n.link_key), n.link_key) AS link_key,
               if(s.previous_id != '', least(s.linked_at, n.linked_at), n.linked_at)
                   AS linked_at
        FROM {t['links_new']} AS n
        LEFT JOIN (SELECT * FROM {LINKS} FINAL
                   WHERE previous_id IN (SELECT id FROM {t['links_new']})) AS s
            ON s.previous_id = n.id
        SETTINGS join_use_nulls = 0""")
    # 3. changed = the link differs from the published map's (so a run that stopped
    # after storing the links still republishes them)
    wh.execute(f"""
        CREATE TABLE {t['changed']} ENGINE = Memory AS
        SELECT m.id AS id
        FROM {t['merged']} AS m
        LEFT JOIN (SELECT id, linked_to FROM identity_map
                   WHERE id IN (SELECT id FROM {t['merged']})) AS o ON o.id = m.id
        WHERE m.to_id != o.linked_to
        SETTINGS join_use_nulls = 0""")
    wh.execute(f"""
        INSERT INTO {LINKS}
        SELECT id, to_id, link_key, linked_at, toUInt64(toUnixTimestamp64Milli(now64(3)))
        FROM {t['merged']}""")
    # ids whose chain reaches a changed id within 3 steps resolve through it
    wh.execute(f"CREATE TABLE {t['affected']} ENGINE = Memory AS "
               f"SELECT id FROM {t['changed']}")
    wh.execute(f"CREATE TABLE {t['level']} ENGINE = Memory AS SELECT id FROM {t['changed']}")
    for _ in range(3):
        wh.execute(f"""
            INSERT INTO {t['level']}
            SELECT previous_id FROM {LINKS} FINAL
            WHERE user_id IN (SELECT id FROM {t['level']})
              AND previous_id NOT IN (SELECT id FROM {t['affected']})""")
        wh.execute(f"""
            INSERT INTO {t['affected']}
            SELECT DISTINCT id FROM {t['level']}
            WHERE id NOT IN (SELECT id FROM {t['affected']})""")
    # 4. resolve the affected ids: the links along their chains (4 hops forward)
    wh.execute(f"""
        CREATE TABLE {t['near']} ENGINE = Memory AS
        SELECT previous_id AS id, user_id AS to_id FROM {LINKS} FINAL
        WHERE previous_id IN (SELECT id FROM {t['affected']})""")
    for _ in range(3):
        wh.execute(f"""
            INSERT INTO {t['near']}
            SELECT previous_id, user_id FROM {LINKS} FINAL
            WHERE previous_id IN (SELECT to_id FROM {t['near']})
              AND previous_id NOT IN (SELECT id FROM {t['near']})""")
    wh.execute(f"""
        CREATE TABLE {t['resolved']} ENGINE = Memory AS
        SELECT a.id AS id,
               multiIf(l4.to_id != '', l4.to_id, l3.to_id != '', l3.to_id,
                       l2.to_id != '', l2.to_id, l1.to_id != '', l1.to_id, a.id) AS person_id
        FROM {t['affected']} AS a
        LEFT JOIN (SELECT DISTINCT id, to_id FROM {t['near']}) AS l1 ON l1.id = a.id
        LEFT JOIN (SELECT DISTINCT id, to_id FROM {t['near']}) AS l2 ON l2.id = l1.to_id
        LEFT JOIN (SELECT DISTINCT id, to_id FROM {t['near']}) AS l3 ON l3.id = l2.to_id
        LEFT JOIN (SELECT DISTINCT id, to_id FROM {t['near']}) AS l4 ON l4.id = l3.to_id
        SETTINGS join_use_nulls = 0""")
    # the ids the new events carry: kind and first sighting
    wh.execute(f"""
        CREATE TABLE {t['seen']} ENGINE = Memory AS
        SELECT id, max(is_user) AS is_user, min(seen_at) AS seen_at
        FROM (
            SELECT anonymous_id AS id, 0 AS is_user, timestamp AS seen_at
            FROM {source} WHERE anonymous_id != ''
            UNION ALL
            SELECT user_id AS id, 1 AS is_user, timestamp AS seen_at
            FROM {source} WHERE user_id != ''
            UNION ALL
            SELECT previous_id AS id, 0 AS is_user, timestamp AS seen_at
            FROM {source} WHERE type = 'alias' AND previous_id != ''
        )
        GROUP BY id""")
    wh.execute(f"""
        CREATE TABLE {t['rows']} ENGINE = Memory AS
        WITH touched AS (
            SELECT id FROM {t['seen']} UNION DISTINCT SELECT id FROM {t['affected']}
        )
        SELECT
            tt.id AS id,
            if(o.id_kind = 'user' OR n.is_user = 1, 'user', 'anonymous') AS id_kind,
            multiIf(r.id != '', r.person_id, o.id != '', o.person_id, tt.id) AS person_id,
            if(m.id != '', m.to_id, o.linked_to) AS linked_to,
            if(m.id != '', toNullable(m.linked_at), o.linked_at) AS linked_at,
            multiIf(o.id = '', n.seen_at, n.id = '', o.first_seen_at,
                    least(o.first_seen_at, n.seen_at)) AS first_seen_at,
            o.id != '' AS existed,
            o.person_id AS old_person_id
        FROM touched AS tt
        LEFT JOIN (SELECT * FROM identity_map WHERE id IN (SELECT id FROM touched)) AS o
            ON o.id = tt.id
        LEFT JOIN {t['seen']} AS n ON n.id = tt.id
        LEFT JOIN {t['merged']} AS m ON m.id = tt.id
        LEFT JOIN {t['resolved']} AS r ON r.id = tt.id
        SETTINGS join_use_nulls = 0""")
    wh.execute(f"DROP TABLE IF EXISTS {MOVED} SYNC")
    wh.execute(f"""
        CREATE TABLE {MOVED} ENGINE = Memory AS
        SELECT id, if(existed, old_person_id, id) AS stored_person
        FROM {t['rows']} WHERE if(existed, old_person_id, id) != person_id""")
    _replace_changes(wh, f"""
        SELECT old_person_id FROM {t['rows']} WHERE existed AND old_person_id != person_id
        UNION DISTINCT
        SELECT person_id FROM {t['rows']} WHERE existed AND old_person_id != person_id""")
    _new_version(wh)
    swap.replace_rows(wh, "identity_map", "identity_map__new",
                      f"id IN (SELECT id FROM {t['rows']})",
                      "(id, id_kind, person_id, linked_to, linked_at, first_seen_at) "
                      "SELECT id, id_kind, person_id, linked_to, linked_at, first_seen_at "
                      f"FROM {t['rows']}")


def _replace_changes(wh: Warehouse, select: str | None) -> None:
    new = f"{CHANGES}__new"
    wh.execute(f"DROP TABLE IF EXISTS {new} SYNC")
    wh.execute(CHANGES_DDL.format(table=new))
    if select:
        wh.execute(f"INSERT INTO {new} {select}")
    swap.swap(wh, CHANGES, new)


def _new_version(wh: Warehouse) -> None:
    wh.execute(f"CREATE TABLE IF NOT EXISTS {VERSION} (token String) "
               "ENGINE = MergeTree ORDER BY tuple()")
    wh.execute(f"TRUNCATE TABLE {VERSION}")
    wh.execute(f"INSERT INTO {VERSION} SELECT toString(generateUUIDv4())")


def map_version(wh: Warehouse) -> str:
    """The token of the map now ('' before any map was built by this version)."""
    if not swap.exists(wh, VERSION):
        return ""
    return str(wh.query(f"SELECT any(token) FROM {VERSION}").scalar() or "")
