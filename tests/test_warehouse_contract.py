"""The warehouse contract, run on both backends: chdb, and a ClickHouse server through
clickhouse-connect (FUNNELHOUSE_CLICKHOUSE_URL when set, else the chdb-backed HTTP fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from funnelhouse.config import PACKAGE_ROOT
from funnelhouse.warehouse.base import (
    INSERT_PARTS,
    MIN_PART_BYTES,
    Warehouse,
    WarehouseError,
    insert_parts,
)
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate, split_statements
from tests.warehouse_backends import BACKENDS, ServerDatabases

MIGRATIONS = PACKAGE_ROOT / "sql" / "migrations"


@pytest.fixture(params=BACKENDS)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    databases = None
    if request.param == "chdb":
        wh: Warehouse = ChdbWarehouse(tmp_path / "wh")
    else:
        # A fresh database per test keeps server runs independent.
        databases = ServerDatabases(request.getfixturevalue("clickhouse_url"))
        wh = databases.open()
    migrate(wh, MIGRATIONS)
    yield wh
    # chdb serves one data folder per process: close it so the next test can open its own.
    wh.close()
    if databases is not None:
        databases.close()


def row(message_id: str, **fields: object) -> bytes:
    return orjson.dumps({"message_id": message_id, "type": "track", "event": "click",
                         "anonymous_id": "a1", "source": "web",
                         "timestamp": "2026-03-01 10:00:00.000",
                         "received_at": "2026-03-01 10:00:01.000", "flags": ["bot"],
                         "properties": '{"element":"#buy"}', **fields})


def test_migrations_are_applied_once_and_rerun_is_a_no_op(warehouse: Warehouse) -> None:
    assert migrate(warehouse, MIGRATIONS) == []
    tables = {r[0] for r in warehouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase()").rows}
    assert {"events_raw", "events_invalid", "invalid_replayed", "schema_migrations"} <= tables


def test_insert_then_query_round_trips_types(warehouse: Warehouse) -> None:
    warehouse.insert_json_rows("events_raw", [row("m1"), row("m2", anonymous_id="a2")])
    result = warehouse.query(
        "SELECT message_id, flags, timestamp, JSONExtractString(properties, 'element') AS el, "
        "count() OVER () AS n FROM events_raw ORDER BY message_id")
    assert result.columns == ["message_id", "flags", "timestamp", "el", "n"]
    assert result.rows[0] == ["m1", ["bot"], "2026-03-01 10:00:00.000", "#buy", 2]


def test_same_dedup_token_inserts_once(warehouse: Warehouse) -> None:
    batch = [row("m1"), row("m2")]
    warehouse.insert_json_rows("events_raw", batch, token="log:1-2:events")
    warehouse.insert_json_rows("events_raw", batch, token="log:1-2:events")
    warehouse.insert_json_rows("events_raw", [row("m3")], token="log:3-3:events")
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 3


def test_a_large_insert_retried_after_a_partial_landing_inserts_each_row_once(
        warehouse: Warehouse) -> None:
    # Large enough to be inserted as several parts at once, each under its own token.
    rows = [row(f"big{i}", properties=orjson.dumps({"pad": "x" * 400}).decode())
            for i in range(2 * MIN_PART_BYTES // 400 + 100)]
    parts = insert_parts(rows, "log:1-9:events")
    assert len(parts) == INSERT_PARTS and sum(len(p) for p, _ in parts) == len(rows)
    assert insert_parts(rows, "log:1-9:events") == parts  # a retry splits the same way
    # The first attempt died after one part had landed; the retry sends them all.
    first_part, first_token = parts[0]
    warehouse.insert_json_rows("events_raw", first_part, first_token)
    warehouse.insert_json_rows("events_raw", rows, "log:1-9:events")
    warehouse.insert_json_rows("events_raw", rows, "log:1-9:events")
    assert warehouse.query("SELECT count(), uniqExact(message_id) FROM events_raw").rows == [
        [len(rows), len(rows)]]


def test_rows_may_come_several_to_an_item(warehouse: Warehouse) -> None:
    # The embedded log hands the loader chunks of newline-joined rows.
    warehouse.insert_json_rows("events_raw", [row("m1") + b"\n" + row("m2"), row("m3")])
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 3


def test_query_parameters_are_bound_not_spliced(warehouse: Warehouse) -> None:
    warehouse.insert_json_rows("events_raw", [row("it's")])
    result = warehouse.query("SELECT count() FROM events_raw WHERE message_id = {id:String}",
                             {"id": "it's"})
    assert result.scalar() == 1


def test_readonly_handle_refuses_writes_ddl_and_settings(warehouse: Warehouse) -> None:
    readonly = warehouse.readonly()
    for statement in (
        "INSERT INTO events_raw (message_id) VALUES ('x')",
        "DROP TABLE events_raw",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "ALTER TABLE events_raw DELETE WHERE 1",
        "SET readonly = 0",
        "SELECT 1 SETTINGS readonly = 0",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ):
        with pytest.raises(WarehouseError):
            readonly.query(statement)
    assert readonly.query("SELECT count() FROM events_raw").scalar() == 0
    # The writer handle is unaffected by its read-only sibling.
    warehouse.insert_json_rows("events_raw", [row("m9")])
    assert warehouse.query("SELECT count() FROM events_raw").scalar() == 1


def test_a_sibling_shares_the_warehouse_and_keeps_the_handles_rights(
        warehouse: Warehouse) -> None:
    sibling = warehouse.sibling()
    try:
        sibling.insert_json_rows("events_raw", [row("from-sibling")])
        warehouse.execute("CREATE TABLE made_here (a UInt8) ENGINE = Memory")
        sibling.execute("INSERT INTO made_here VALUES (7)")
        assert warehouse.query("SELECT count() FROM events_raw").scalar() == 1
        assert warehouse.query("SELECT sum(a) FROM made_here").scalar() == 7
        readonly = warehouse.readonly()
        readonly_sibling = readonly.sibling()
        with pytest.raises(WarehouseError):
            readonly_sibling.query("DROP TABLE made_here")
        readonly_sibling.close()
        readonly.close()
    finally:
        sibling.close()
    # closing the sibling leaves this handle working
    assert warehouse.query("SELECT count() FROM made_here").scalar() == 1


def test_bad_sql_raises_warehouse_error(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError):
        warehouse.query("SELEC nothing")


def test_csv_output_has_header_and_rows(warehouse: Warehouse) -> None:
    warehouse.insert_json_rows("events_raw", [row("m1")])
    text = warehouse.query_raw("SELECT message_id, event FROM events_raw", "CSVWithNames")
    assert text.decode().splitlines() == ['"message_id","event"', '"m1","click"']


def test_statement_splitter_keeps_comments_with_statements() -> None:
    sql = "-- one\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\n-- two\nSELECT 1;\n-- trailing\n"
    assert split_statements(sql) == ["-- one\nCREATE TABLE a (x UInt8) ENGINE = Memory",
                                     "-- two\nSELECT 1"]


def test_string_parameters_round_trip_unchanged(warehouse: Warehouse) -> None:
    # JSON text with escapes, real newlines and tabs, backslashes, quotes, NUL.
    for value in ('{"sql": "SELECT 1\\nFROM t", "q": "a\\"b"}', "two\nlines", "tab\there",
                  "it's", "C:\\temp\\new", "nul\0byte", "한국어 ✓"):
        assert warehouse.query("SELECT {v:String} AS v", {"v": value}).scalar() == value


def test_collection_parameters_given_as_literal_text(warehouse: Warehouse) -> None:
    # The models bind the days they rebuild as one literal: "['2024-03-01',…]".
    result = warehouse.query("SELECT {d:Array(Date)} AS d, {s:Array(String)} AS s",
                             {"d": "['2024-03-01','2024-03-02']", "s": "['a', 'b c']"})
    assert result.rows == [[["2024-03-01", "2024-03-02"], ["a", "b c"]]]
