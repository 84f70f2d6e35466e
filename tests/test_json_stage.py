"""The embedded backend's staged insert (warehouse/json_stage.py) stores what a plain
JSONEachRow insert stores, and events_raw's inserts write Compact parts (migration 0019)."""

from __future__ import annotations

import orjson
import pytest

from funnelhouse.config import PACKAGE_ROOT
from funnelhouse.warehouse import base as warehouse_base
from funnelhouse.warehouse import chdb as chdb_backend
from funnelhouse.warehouse.base import WarehouseError
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.json_stage import STAGE_MIN_BYTES, JsonStage, plain_type

MIGRATIONS = PACKAGE_ROOT / "sql" / "migrations"


def varied_rows(count: int, tag: str = "") -> list[bytes]:
    """Rows as a collector writes them, and as older or odder writers might: omitted
    fields, JSON nulls, escapes, non-ASCII text, arrays, numbers as numbers."""
    rows = []
    for i in range(count):
        doc: dict[str, object] = {
            "message_id": f"{tag}m{i}", "type": ["track", "page", "identify"][i % 3],
            "event": f"evént \"{i % 7}\"\\\n", "anonymous_id": f"a{i % 50}",
            "source": "web" if i % 4 else "ios", "timestamp": f"2024-03-{1 + i % 28:02d} "
            f"{i % 24:02d}:00:00.{i % 1000:03d}", "received_at": "2024-03-29 00:00:00.000",
            "flags": ["bot", "late"][: i % 3], "is_bot": i % 2,
            "properties": orjson.dumps({"n": i, "text": "x" * (i % 300)}).decode(),
            "device_type": None if i % 5 == 0 else ["mobile", "desktop", ""][i % 3],
            "locale": "ko-KR" if i % 6 else "",
        }
        if i % 9 == 0:       # a row from before some columns were written at all
            for key in ("flags", "locale", "device_type", "properties"):
                doc.pop(key)
        rows.append(orjson.dumps(doc))
    return rows


def table_text(wh: ChdbWarehouse, table: str) -> bytes:
    return wh.query_raw(f"SELECT * EXCEPT first_copy FROM {table} ORDER BY message_id",
                        "TabSeparated")


def test_plain_type_unwraps_low_cardinality_at_any_depth() -> None:
    assert plain_type("LowCardinality(String)") == "String"
    assert plain_type("Array(LowCardinality(String))") == "Array(String)"
    assert plain_type("LowCardinality(Nullable(String))") == "Nullable(String)"
    assert plain_type("Map(LowCardinality(String), LowCardinality(String))") == \
        "Map(String, String)"
    assert plain_type("DateTime64(3, 'UTC')") == "DateTime64(3, 'UTC')"


def test_staged_rows_are_stored_exactly_as_a_plain_insert_stores_them(
        warehouse: ChdbWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = varied_rows(3000)
    assert sum(map(len, rows)) > STAGE_MIN_BYTES   # big enough to go through the stage
    warehouse.insert_json_rows("events_raw", rows, "t")
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == len(rows)
    # The same rows the plain way, into a table of the same structure.
    warehouse.execute("CREATE TABLE plain AS events_raw")
    monkeypatch.setattr(chdb_backend, "STAGE_MIN_BYTES", 1 << 60)
    warehouse.insert_json_rows("plain", rows, "t")
    assert table_text(warehouse, "events_raw") == table_text(warehouse, "plain")
    # The table computed its MATERIALIZED column; the view filled message_keys.
    assert warehouse.query("SELECT countIf(first_copy > 0) FROM events_raw").scalar() == \
        len(rows)
    assert warehouse.query("SELECT count() FROM message_keys").scalar() == len(rows)


def test_the_dedup_token_drops_a_repeated_staged_insert(warehouse: ChdbWarehouse) -> None:
    rows = varied_rows(3000)
    for _ in range(2):
        warehouse.insert_json_rows("events_raw", rows, "log:1-3000:events")
    warehouse.insert_json_rows("events_raw", varied_rows(3000, tag="b"), "log:3001-6000:events")
    assert warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows == \
        [[6000, 6000]]
    assert warehouse.query("SELECT count() FROM message_keys").scalar() == 6000


def test_a_column_added_between_inserts_is_staged_too(warehouse: ChdbWarehouse) -> None:
    warehouse.insert_json_rows("events_raw", varied_rows(3000), "one")
    warehouse.execute("ALTER TABLE events_raw ADD COLUMN tier LowCardinality(String) "
                      "DEFAULT 'free'")
    given = [orjson.dumps({**orjson.loads(r), "tier": "gold"}) if i % 2 else r
             for i, r in enumerate(varied_rows(3000, tag="b"))]
    warehouse.insert_json_rows("events_raw", given, "two")
    assert dict(warehouse.query(
        "SELECT tier, count() FROM events_raw WHERE startsWith(message_id, 'b') "
        "GROUP BY tier").rows) == {"gold": 1500, "free": 1500}


def test_a_failed_staged_insert_leaves_nothing_behind(warehouse: ChdbWarehouse) -> None:
    rows = varied_rows(3000)
    with pytest.raises(WarehouseError):
        warehouse.insert_json_rows("events_raw", [*rows[:2000], b'{"message_id": broken'],
                                   "bad")
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 0
    warehouse.insert_json_rows("events_raw", rows, "good")
    assert warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows == \
        [[3000, 3000]]


def test_a_bug_in_an_insert_step_is_not_taken_for_a_warehouse_error(
        warehouse: ChdbWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader retries a WarehouseError without end; a bug of ours (here a
    TypeError in the stage's fill, on either part's connection) would fail the same
    way every time, so it surfaces as itself. The engine's own errors stay
    WarehouseErrors, and each connection answers cleanly after one."""
    rows = varied_rows(3000)
    monkeypatch.setattr(warehouse_base, "MIN_PART_BYTES", 1 << 18)   # two parts
    assert len(warehouse_base.insert_parts(rows, "t")) == 2
    real_fill = JsonStage.fill
    for failing_part in (0, 1):
        stages = warehouse._stages

        def buggy_fill(self: JsonStage, conn: object, table: str, part_rows: object,
                       _bad: JsonStage = stages[failing_part]) -> bool:
            if self is _bad:
                raise TypeError("a bug in the stage")
            return real_fill(self, conn, table, part_rows)  # type: ignore[arg-type]

        monkeypatch.setattr(JsonStage, "fill", buggy_fill)
        with pytest.raises(TypeError, match="a bug in the stage"):
            warehouse.insert_first_copies("events_raw", rows, f"bug{failing_part}")
        monkeypatch.setattr(JsonStage, "fill", real_fill)
    with pytest.raises(WarehouseError):   # the engine refuses a row: still retried
        warehouse.insert_first_copies("events_raw", [*rows[:2000], b'{"message_id": x'],
                                      "bad")
    assert warehouse.insert_first_copies("events_raw", rows, "good") == []
    assert warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows == \
        [[3000, 3000]]


def test_a_table_without_low_cardinality_is_not_staged(warehouse: ChdbWarehouse) -> None:
    warehouse.execute("CREATE TABLE notes (id String, body String) "
                      "ENGINE = MergeTree ORDER BY id")
    stage = JsonStage()
    assert not stage.insert(warehouse._conn, "notes", [b'{"id":"1","body":"x"}'], "")
    assert warehouse.query("SELECT count() FROM notes").scalar() == 0


def test_loaded_batches_are_written_as_compact_parts(warehouse: ChdbWarehouse) -> None:
    warehouse.execute("SYSTEM STOP MERGES events_raw")
    warehouse.insert_json_rows("events_raw", varied_rows(20000), "batch")
    kinds = dict(warehouse.query(
        "SELECT part_type, sum(rows) FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'events_raw' AND active GROUP BY part_type").rows)
    assert kinds == {"Compact": 20000}


# -- insert_first_copies: the loader's first-copy check inside ClickHouse -------------


def with_pad(rows: list[bytes], pad: int) -> list[bytes]:
    return [orjson.dumps({**orjson.loads(r), "properties": "x" * pad}) for r in rows]


def scenario(where: str) -> tuple[list[bytes], list[bytes]]:
    """(rows stored before, the batch) with a copy of an id where named."""
    rows = varied_rows(3000, tag="n")
    if where == "once in each part":
        # over 2 x 4 MB: inserted as two parts at once, each staged on its own connection
        rows = with_pad(rows, 3000)
        assert len(chdb_backend.insert_parts(rows, "t")) == 2
    earlier: list[bytes] = []
    if where == "stored":
        earlier = [rows[1234], rows[5]]
    elif where == "twice in one part":
        rows[40:40] = [orjson.dumps({**orjson.loads(rows[2900]), "event": "later copy"})]
    elif where == "once in each part":
        rows[2990:2990] = [orjson.dumps({**orjson.loads(rows[3]), "event": "later copy"})]
        rows.append(rows[17])
    elif where == "stored and twice":
        earlier = [rows[8]]
        rows[100:100] = [rows[8], rows[9]]
    elif where == "another source":   # the key is (source, message_id): this one is new
        earlier = [orjson.dumps({**orjson.loads(rows[1234]), "source": "elsewhere"})]
    elif where == "hostile ids":
        # ids a client may send: quotes, backslashes, SQL, a newline, NUL, non-ASCII,
        # one stored, one repeated, one differing from another only by an escape
        hostile = ["x'); DROP TABLE events_raw; --", 'q"uote\\', "line\nbreak\ttab",
                   "nul\u0000byte", "ünï💥", "`tick` {x:String}", "x'); DROP TABLE events_raw; -- "]
        for i, message_id in enumerate(hostile):
            rows[i * 300] = orjson.dumps({**orjson.loads(rows[i * 300]), "message_id": message_id})
        earlier = [rows[300]]
        rows.append(rows[600])
    return earlier, rows


@pytest.mark.parametrize("where", ["nowhere", "stored", "twice in one part",
                                   "once in each part", "stored and twice",
                                   "another source", "hostile ids"])
def test_first_copies_kept_inside_clickhouse_are_the_ones_the_loader_keeps(
        warehouse: ChdbWarehouse, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The staged check against the loader's own (first_copies, reading ids in Python):
    the same rows stored, the same rows dropped, in every case of a copy."""
    from funnelhouse.loader.load import first_copies

    earlier, rows = scenario(where)
    if earlier:
        warehouse.insert_json_rows("events_raw", earlier, "earlier")
    dropped = warehouse.insert_first_copies("events_raw", rows, "t")
    assert dropped is not None
    staged = events_text(warehouse)

    warehouse.execute("TRUNCATE TABLE events_raw")
    warehouse.execute("TRUNCATE TABLE message_keys")
    monkeypatch.setattr(chdb_backend, "STAGE_MIN_BYTES", 1 << 60)   # plain inserts
    if earlier:
        warehouse.insert_json_rows("events_raw", earlier, "earlier")
    kept, expected = first_copies(warehouse, rows)
    warehouse.insert_json_rows("events_raw", kept, "t2")
    assert sorted(dropped) == sorted(expected)
    assert staged == events_text(warehouse)
    assert bool(dropped) == (where not in ("nowhere", "another source"))


def events_text(wh: ChdbWarehouse) -> bytes:
    return table_text(wh, "events_raw")


def test_a_batch_checked_in_the_stage_is_stored_as_a_plain_insert_stores_it(
        warehouse: ChdbWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = varied_rows(3000)
    assert warehouse.insert_first_copies("events_raw", rows, "t") == []
    warehouse.execute("CREATE TABLE plain AS events_raw")
    monkeypatch.setattr(chdb_backend, "STAGE_MIN_BYTES", 1 << 60)
    warehouse.insert_json_rows("plain", rows, "t")
    assert events_text(warehouse) == table_text(warehouse, "plain")
    assert warehouse.query("SELECT count() FROM message_keys").scalar() == len(rows)


def test_a_retried_batch_is_dropped_whole_and_the_stage_left_empty(
        warehouse: ChdbWarehouse) -> None:
    rows = varied_rows(3000)
    assert warehouse.insert_first_copies("events_raw", rows, "t") == []
    # the same batch after a crash before the queue commit: every id is stored now
    assert len(warehouse.insert_first_copies("events_raw", rows, "t") or []) == len(rows)
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == len(rows)
    # the stage was emptied: the next batch brings only its own rows
    assert warehouse.insert_first_copies("events_raw", varied_rows(3000, tag="f"), "u") == []
    assert warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows == \
        [[6000, 6000]]


def test_a_small_batch_is_left_to_the_loader(warehouse: ChdbWarehouse) -> None:
    rows = varied_rows(10)
    assert sum(map(len, rows)) < STAGE_MIN_BYTES
    assert warehouse.insert_first_copies("events_raw", rows, "t") is None
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 0
