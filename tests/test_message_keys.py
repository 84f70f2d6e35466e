"""message_keys: the stored (source, message_id) set the loader's first-copy check reads
(migration 0020) — filled by events_raw's own insert, read by the keys' hashes, exact
when two keys share a hash, kept across a SIGKILL, and built from events_raw when an
older warehouse is migrated."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from funnelhouse.config import PACKAGE_ROOT
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Batch
from funnelhouse.loader.sources.embedded import EmbeddedSource
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.json_stage import _stored
from funnelhouse.warehouse.migrate import migrate, split_statements
from funnelhouse.warehouse.stored_keys import STORED_EVENTS, stored_among

MIGRATIONS = PACKAGE_ROOT / "sql" / "migrations"
ROOT = PACKAGE_ROOT.parent


def row(message_id: str, anonymous_id: str = "a", source: str = "web", pad: int = 0) -> bytes:
    return orjson.dumps({"message_id": message_id, "type": "track", "event": "click",
                         "anonymous_id": anonymous_id, "source": source,
                         "timestamp": "2026-03-01 10:00:00.000",
                         "properties": orjson.dumps({"pad": "x" * pad}).decode()})


def stored(warehouse: ChdbWarehouse) -> list[list[str]]:
    """The stored keys, each once (a repeated insert collapses on merge)."""
    return warehouse.query("SELECT DISTINCT source, message_id FROM message_keys "
                           "ORDER BY source, message_id").rows


def granules_read(warehouse: ChdbWarehouse, sql: str) -> tuple[int, int]:
    """(granules selected, granules in all) of message_keys' primary index for `sql`."""
    plan = [r[0].lstrip("│├└─ ") for r in warehouse.query(f"EXPLAIN indexes = 1 {sql}").rows]
    at = plan.index("PrimaryKey")
    picked, total = next(line for line in plan[at:] if line.startswith("Granules:")
                         ).split()[1].split("/")
    return int(picked), int(total)


def test_a_lookup_reads_the_granules_of_its_keys_not_the_table(
    warehouse: ChdbWarehouse
) -> None:
    """Random ids, as real SDKs send: a lookup of 40 keys, new or stored, reads at
    most one granule each, whatever the table holds (sorted by the pair, it read
    every granule the keys' range spanned: all of them)."""
    warehouse.execute(
        "INSERT INTO message_keys SELECT sipHash64(source, message_id), source, message_id "
        "FROM (SELECT 'web' AS source, toString(generateUUIDv4()) AS message_id "
        "FROM numbers(100000))")
    warehouse.execute("OPTIMIZE TABLE message_keys FINAL")
    warehouse.execute("CREATE TEMPORARY TABLE staged (source String, message_id String)")
    warehouse.execute("INSERT INTO staged SELECT 'web', toString(generateUUIDv4()) "
                      "FROM numbers(30)")
    warehouse.execute("INSERT INTO staged SELECT source, message_id FROM message_keys LIMIT 10")
    for sql in (_stored(STORED_EVENTS, "staged"),
                stored_among(STORED_EVENTS, "SELECT source, message_id FROM staged")):
        picked, total = granules_read(warehouse, sql)
        assert total >= 1500 and picked <= 40, (picked, total)
        assert len(warehouse.query(sql).rows) == 10


def test_two_keys_sharing_a_hash_are_not_taken_for_each_other(
    warehouse: ChdbWarehouse
) -> None:
    """A 64-bit hash can repeat: the pair is compared after it, and a stored key with
    another key's hash neither stands in for it nor collapses with it."""
    warehouse.execute("INSERT INTO message_keys VALUES "
                      "(sipHash64('web', 'asked'), 'web', 'someone else')")
    asked = "SELECT 'web' AS source, 'asked' AS message_id"
    assert warehouse.query(stored_among(STORED_EVENTS, asked)).rows == []
    warehouse.execute("INSERT INTO message_keys VALUES (sipHash64('web', 'asked'), 'web', 'asked')")
    warehouse.execute("OPTIMIZE TABLE message_keys FINAL")
    assert warehouse.query(stored_among(STORED_EVENTS, asked)).rows == [["web", "asked"]]
    assert len(stored(warehouse)) == 2


@pytest.mark.parametrize("pad", [0, 4000])   # looked up in Python / inside ClickHouse
def test_the_same_id_from_another_source_is_another_key(
    tmp_path: Path, warehouse: ChdbWarehouse, pad: int
) -> None:
    loader = Loader(EmbeddedSource(EventLog(tmp_path / "q.sqlite3")), warehouse)
    first = [row(f"m{i}", pad=pad) for i in range(120)]
    loader._insert(Batch(token="log:1-120", events=first, event_rows=120))
    # m1 again from the web (a copy: dropped) and from the app (a new key: stored)
    again = [row("m1", "later", pad=pad), row("m1", "app-user", "app", pad=pad),
             *(row(f"n{i}", pad=pad) for i in range(118))]
    loader._insert(Batch(token="log:121-240", events=again, event_rows=120))
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 239
    assert warehouse.query("SELECT source, anonymous_id FROM events_raw WHERE message_id = 'm1' "
                           "ORDER BY source").rows == [["app", "app-user"], ["web", "a"]]
    assert len(stored(warehouse)) == 239


def test_keys_stored_just_before_a_sigkill_are_there_after_it(tmp_path: Path) -> None:
    """The keys are written to RocksDB's log as the insert returns: a loader killed
    right after it (no close, no flush) leaves them found by the next process, which
    then drops a copy of those rows."""
    folder = tmp_path / "wh"
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from funnelhouse.config import PACKAGE_ROOT
        from funnelhouse.warehouse.chdb import ChdbWarehouse
        from funnelhouse.warehouse.migrate import migrate
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_message_keys import row
        wh = ChdbWarehouse(Path({str(folder)!r}))
        migrate(wh, PACKAGE_ROOT / "sql" / "migrations")
        rows = [row(f"k{{i}}", pad=4000) for i in range(200)]
        assert wh.insert_first_copies("events_raw", rows, "before-kill") == []
        print("inserted", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.strip() == "inserted"
    wh = ChdbWarehouse(folder)
    try:
        assert len(stored(wh)) == 200
        loader = Loader(EmbeddedSource(EventLog(tmp_path / "q.sqlite3")), wh)
        copies = [row(f"k{i}", "copy") for i in range(0, 200, 2)]
        loader._insert(Batch(token="log:other", events=copies, event_rows=len(copies)))
        assert wh.query("SELECT count(), countIf(anonymous_id = 'copy') FROM events_raw"
                        ).rows == [[200, 0]]
    finally:
        wh.close()


def test_an_older_warehouse_gets_every_stored_key_and_keeps_dropping_copies(
    tmp_path: Path
) -> None:
    """A warehouse migrated up to 0019 (keys in the sorted message_ids) moves to
    message_keys: every key of events_raw is there, the old view and table are gone,
    the new view records later inserts, and the migration's statements run again
    safely (a migration stopped halfway is run again from its start)."""
    older = tmp_path / "older-migrations"
    older.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "0020":
            shutil.copy(path, older / path.name)
    wh = ChdbWarehouse(tmp_path / "wh")
    try:
        migrate(wh, older)
        wh.insert_json_rows("events_raw", [row("old-1"), row("old-2", source="app")], "t1")
        # an id a crash under an old release left out of message_ids is recorded too
        wh.execute("ALTER TABLE message_ids DELETE WHERE message_id = 'old-2' "
                   "SETTINGS mutations_sync = 1")
        migrate(wh, MIGRATIONS)
        assert stored(wh) == [["app", "old-2"], ["web", "old-1"]]
        tables = {r[0] for r in wh.query("SELECT name FROM system.tables WHERE database = "
                                          "currentDatabase() AND name LIKE 'message%'").rows}
        assert tables == {"message_keys", "message_keys_of_events_raw"}
        for statement in split_statements((MIGRATIONS / "0020_message_keys.sql").read_text()):
            wh.execute(statement)
        assert stored(wh) == [["app", "old-2"], ["web", "old-1"]]
        loader = Loader(EmbeddedSource(EventLog(tmp_path / "q.sqlite3")), wh)
        loader._insert(Batch(token="log:1-2", events=[row("old-1", "copy"), row("new-1")],
                             event_rows=2))
        assert wh.query("SELECT message_id, anonymous_id FROM events_raw ORDER BY message_id"
                        ).rows == [["new-1", "a"], ["old-1", "a"], ["old-2", "a"]]
        assert stored(wh) == [["app", "old-2"], ["web", "new-1"], ["web", "old-1"]]
    finally:
        wh.close()
