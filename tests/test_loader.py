"""The loader: exactly once across crashes, nothing lost while the warehouse is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from funnelhouse.collector.enrich.time import format_ts
from funnelhouse.collector.sinks.base import Record
from funnelhouse.loader.load import Loader
from funnelhouse.loader.sources.base import Batch
from funnelhouse.loader.sources.embedded import PENDING, EmbeddedSource
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.warehouse.base import QueryResult, WarehouseUnavailable
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.json_stage import JsonStage
from funnelhouse.warehouse.stored_keys import STORED_EVENTS, StoredIn


class ProcessDied(BaseException):
    """Stands for SIGKILL at a chosen point: nothing after it runs, no cleanup is honest."""


class FlakyWarehouse:
    """Wraps a real warehouse; fails the first `failures` inserts, or dies after an insert."""

    def __init__(self, inner: ChdbWarehouse, failures: int = 0, die_after_insert: bool = False):
        self.inner = inner
        self.failures = failures
        self.die_after_insert = die_after_insert
        self.attempts = 0

    def query(self, sql: str, params: dict | None = None) -> QueryResult:
        return self.inner.query(sql, params)  # reads work: the loader looks up stored ids

    def insert_json_rows(self, table: str, rows: Sequence[bytes], token: str | None = None) -> int:
        self._attempt()
        count = self.inner.insert_json_rows(table, rows, token)
        if self.die_after_insert:
            raise ProcessDied()
        return count

    def insert_first_copies(self, table: str, rows: Sequence[bytes], token: str | None = None,
                            *, stored_in: StoredIn = STORED_EVENTS) -> list[str] | None:
        self._attempt()
        dropped = self.inner.insert_first_copies(table, rows, token, stored_in=stored_in)
        if dropped is not None and self.die_after_insert:
            raise ProcessDied()
        return dropped

    def _attempt(self) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise WarehouseUnavailable("warehouse is down")


def event_row(i: int, pad: int = 0) -> bytes:
    return orjson.dumps({"message_id": f"m{i}", "type": "track", "event": "click",
                         "anonymous_id": f"a{i % 7}", "source": "web",
                         "timestamp": "2026-03-01 10:00:00.000",
                         "properties": orjson.dumps({"pad": "x" * pad}).decode()})


def fill(log: EventLog, first: int, count: int, per_append: int = 60, pad: int = 0) -> None:
    # In appends of a few requests' worth, as the collector's group commits make them.
    for start in range(first, first + count, per_append):
        log.append([Record("events", "web:a", event_row(i, pad))
                    for i in range(start, min(start + per_append, first + count))])


def counts(warehouse: ChdbWarehouse) -> tuple[int, int]:
    return tuple(warehouse.query(
        "SELECT count(), uniqExact(message_id) FROM events_raw").rows[0])  # type: ignore[return-value]


# 0: batches of a few KB, inserted as they are; 4000: 120 rows make ≈500 KB, inserted
# through the staging table (warehouse/json_stage.py).
@pytest.mark.parametrize("pad", [0, 4000])
def test_loader_killed_after_insert_before_commit_loads_every_event_once(
    tmp_path: Path, warehouse: ChdbWarehouse, pad: int
) -> None:
    log_path = tmp_path / "queue.sqlite3"
    fill(EventLog(log_path), 0, 300, pad=pad)

    dying = Loader(EmbeddedSource(EventLog(log_path)), FlakyWarehouse(warehouse,
                   die_after_insert=True), batch_rows=120, batch_seconds=0.01)
    with pytest.raises(ProcessDied):
        asyncio.run(dying.load_once())
    assert counts(warehouse) == (120, 120)  # the batch landed, but was never committed
    assert EventLog(log_path).get_state(PENDING) == "1-120"

    # More events arrive while the loader is down: the retried batch must still be
    # exactly the one in flight, or its token would differ and duplicate it.
    fill(EventLog(log_path), 300, 50, pad=pad)
    restarted = Loader(EmbeddedSource(EventLog(log_path)), warehouse, batch_rows=120,
                       batch_seconds=0.01)
    asyncio.run(restarted.drain(timeout=30))
    assert counts(warehouse) == (350, 350)
    assert EventLog(log_path).depth() == 0


def test_a_loader_dying_between_staging_rows_and_copying_them_loads_each_once(
    tmp_path: Path, warehouse: ChdbWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after a batch was parsed into the staging table but before the copy into
    events_raw: nothing landed, and the next attempt (a stage made afresh) loads it."""
    log_path = tmp_path / "queue.sqlite3"
    fill(EventLog(log_path), 0, 300, pad=4000)
    real_copy = JsonStage.copy

    def dies_before_the_copy(self: JsonStage, conn: object, table: str, settings: str,
                             **kwargs: Any) -> None:
        if table == "events_raw":
            raise ProcessDied()
        real_copy(self, conn, table, settings, **kwargs)

    monkeypatch.setattr(JsonStage, "copy", dies_before_the_copy)
    dying = Loader(EmbeddedSource(EventLog(log_path)), warehouse, batch_rows=120,
                   batch_seconds=0.01)
    with pytest.raises(ProcessDied):
        asyncio.run(dying.load_once())
    assert counts(warehouse) == (0, 0)
    monkeypatch.setattr(JsonStage, "copy", real_copy)
    restarted = Loader(EmbeddedSource(EventLog(log_path)), warehouse, batch_rows=120,
                       batch_seconds=0.01)
    asyncio.run(restarted.drain(timeout=30))
    assert counts(warehouse) == (300, 300)
    assert warehouse.query("SELECT count() FROM message_keys").scalar() == 300


def test_a_loader_killed_right_after_the_events_insert_has_recorded_their_ids(
    tmp_path: Path, warehouse: ChdbWarehouse
) -> None:
    """The ids are written by the events' own insert (migration 0018), so rows that
    landed just before a crash are known as stored even when they come back under
    another token (a Kafka batch split by a rebalance replays shares under their own)."""
    rows = [event_row(i) for i in range(3)]
    dying = Loader(EmbeddedSource(EventLog(tmp_path / "q1.sqlite3")),
                   FlakyWarehouse(warehouse, die_after_insert=True))
    with pytest.raises(ProcessDied):   # dies the moment events_raw's insert returns
        dying._insert(Batch(token="kafka:events/0:0-2", events=list(rows), event_rows=3))
    share = Batch(token="kafka:events/0:1-2", events=rows[1:], event_rows=2)
    Loader(EmbeddedSource(EventLog(tmp_path / "q2.sqlite3")), warehouse)._insert(share)
    assert counts(warehouse) == (3, 3)


def test_warehouse_down_for_a_while_loses_nothing(tmp_path: Path,
                                                  warehouse: ChdbWarehouse) -> None:
    log_path = tmp_path / "queue.sqlite3"
    fill(EventLog(log_path), 0, 500)
    flaky = FlakyWarehouse(warehouse, failures=4)
    loader = Loader(EmbeddedSource(EventLog(log_path)), flaky, batch_rows=200, batch_seconds=0.01)

    asyncio.run(loader.drain(timeout=60))

    assert flaky.attempts >= 4 + 3  # four refusals, then three batches
    assert counts(warehouse) == (500, 500)
    assert EventLog(log_path).depth() == 0


def test_queue_keeps_the_batch_while_the_warehouse_is_down(tmp_path: Path,
                                                           warehouse: ChdbWarehouse) -> None:
    log_path = tmp_path / "queue.sqlite3"
    fill(EventLog(log_path), 0, 10)
    loader = Loader(EmbeddedSource(EventLog(log_path)), FlakyWarehouse(warehouse, failures=10**6),
                    batch_rows=100, batch_seconds=0.01)

    async def run_briefly() -> None:
        task = asyncio.create_task(loader.run())
        await asyncio.sleep(1.0)
        loader.stop()
        await task

    asyncio.run(run_briefly())
    assert counts(warehouse) == (0, 0)
    assert EventLog(log_path).depth() == 10


def test_invalid_records_go_to_events_invalid(tmp_path: Path, warehouse: ChdbWarehouse) -> None:
    # Recent on purpose: events_invalid keeps 90 days (TTL), older rows are dropped.
    log_path = tmp_path / "queue.sqlite3"
    invalid = orjson.dumps({"message_id": "bad1", "source": "web", "event": "purchase",
                            "reason": "schema_violation",
                            "errors": [{"path": "$.properties.revenue", "message": "not a number"}],
                            "payload": "{}", "received_at": format_ts(time.time())})
    EventLog(log_path).append([Record("events", "k", event_row(1)),
                               Record("invalid", "k", invalid)])
    asyncio.run(Loader(EmbeddedSource(EventLog(log_path)), warehouse,
                       batch_seconds=0.01).drain())
    assert warehouse.query("SELECT message_id, errors FROM events_invalid").rows == [
        ["bad1", [{"path": "$.properties.revenue", "message": "not a number"}]]]
    assert counts(warehouse) == (1, 1)


# -- first stored copy wins, looked up key by key in message_keys (migration 0020) ----------

def test_row_keys_read_both_ids_whatever_the_strings_hold() -> None:
    from funnelhouse.loader.load import _add_row_keys

    def keys_of(*rows: bytes) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        _add_row_keys(b"\n".join(rows), found)
        return found

    tricky = {"message_id": 'id "quoted" \\ and \u00e9', "type": "track",
              "properties": orjson.dumps({"source": "fake", "message_id": "x"}).decode(),
              "anonymous_id": '","source":"evil', "source": "web\"site"}
    assert keys_of(orjson.dumps(tricky)) == [('web"site', 'id "quoted" \\ and \u00e9')]
    # The byte search stops at the first quote: an id ending in a backslash, or a plain
    # id beside an escaped source, must still come out whole.
    assert keys_of(orjson.dumps({"message_id": "ends\\", "source": "a\\b"})) == [
        ("a\\b", "ends\\")]
    assert keys_of(orjson.dumps({"message_id": "m", "x": 1, "source": 'q"'})) == [('q"', "m")]
    assert keys_of(orjson.dumps({"message_id": "\u00e9t\u00e9", "source": "w"})) == [
        ("w", "\u00e9t\u00e9")]
    # A row written some other way (keys in another order) is parsed instead.
    assert keys_of(orjson.dumps({"source": "s", "message_id": "m"})) == [("s", "m")]
    # A chunk of rows, as the embedded log stores them: each row's own ids, in order,
    # whatever its neighbours hold; a search never runs on into the next row.
    plain = orjson.dumps({"message_id": "p1", "type": "track", "source": "web"})
    no_source = orjson.dumps({"message_id": "p2", "type": "track"})
    assert keys_of(plain, orjson.dumps(tricky), no_source, plain, b"") == [
        ("web", "p1"), ('web"site', 'id "quoted" \\ and \u00e9'), ("", "p2"), ("web", "p1")]


def test_a_copy_loaded_later_is_dropped_by_its_stored_id(tmp_path: Path,
                                                         warehouse: ChdbWarehouse) -> None:
    from funnelhouse.loader.load import first_copies

    first = orjson.dumps({"message_id": "m-1", "source": "web", "anonymous_id": "a"})
    assert first_copies(warehouse, [first]) == ([first], [])
    # Stored, its id is recorded by the same insert (migration 0020's view) ...
    warehouse.insert_json_rows("events_raw", [first], "t1")
    warehouse.insert_json_rows("events_raw", [first], "t1")   # ... once for a retried batch
    assert warehouse.query("SELECT count() FROM message_keys").scalar() == 1
    later = orjson.dumps({"message_id": "m-1", "source": "web", "anonymous_id": "b"})
    other_source = orjson.dumps({"message_id": "m-1", "source": "app", "anonymous_id": "c"})
    kept, dropped = first_copies(warehouse, [later + b"\n" + other_source])
    assert kept == [other_source] and dropped == ["web:m-1"]


@pytest.mark.parametrize("pad", [0, 4000])
def test_in_a_loaded_batch_the_first_copy_of_an_id_wins(
    tmp_path: Path, warehouse: ChdbWarehouse, pad: int
) -> None:
    """A batch holding a copy of an id stored before and two copies of a new one, small
    (read in Python) or staged (checked and filtered inside ClickHouse)."""
    def row(message_id: str, anonymous_id: str) -> bytes:
        return orjson.dumps({"message_id": message_id, "type": "track", "event": "click",
                             "anonymous_id": anonymous_id, "source": "web",
                             "timestamp": "2026-03-01 10:00:00.000",
                             "properties": orjson.dumps({"pad": "x" * pad}).decode()})
    warehouse.insert_json_rows("events_raw", [row("old", "first")], "earlier")
    rows = [event_row(i, pad) for i in range(120)]
    rows[7:7] = [row("old", "later")]
    rows[50:50] = [row("twin", "first")]
    rows[90:90] = [row("twin", "later")]
    loader = Loader(EmbeddedSource(EventLog(tmp_path / "q.sqlite3")), warehouse)
    loader._insert(Batch(token="log:1-123", events=rows, event_rows=len(rows)))
    assert counts(warehouse) == (122, 122)
    assert dict(warehouse.query("SELECT message_id, anonymous_id FROM events_raw "
                                "WHERE message_id IN ('old', 'twin')").rows) == \
        {"old": "first", "twin": "first"}


def test_ids_are_still_recorded_after_a_forget_swapped_events_raw(
    tmp_path: Path, warehouse: ChdbWarehouse
) -> None:
    """Forget copies events_raw without the person and swaps the copy in (EXCHANGE
    TABLES); the view that records ids follows the name, so later loads are checked."""
    from funnelhouse.people.forget import forget

    gone = orjson.dumps({"message_id": "g-1", "type": "identify", "event": "identify",
                         "user_id": "u-gone", "anonymous_id": "a-gone", "source": "web",
                         "timestamp": "2026-03-01 10:00:00.000", "properties": "{}"})
    warehouse.insert_json_rows("events_raw", [gone, event_row(1)], "before")
    forget(warehouse, "u-gone")
    assert counts(warehouse) == (1, 1)
    loader = Loader(EmbeddedSource(EventLog(tmp_path / "q.sqlite3")), warehouse)
    loader._insert(Batch(token="log:1-1", events=[event_row(2)], event_rows=1))
    assert warehouse.query("SELECT count() FROM message_keys WHERE message_id = 'm2'"
                           ).scalar() == 1
    # ... and a copy of it under another token is dropped.
    loader._insert(Batch(token="kafka:events/0:7-7", events=[event_row(2)], event_rows=1))
    assert counts(warehouse) == (2, 2)


@pytest.mark.parametrize("forget", [False, True])
def test_rows_loaded_are_counted_once_each_in_the_metric(tmp_path: Path, warehouse: ChdbWarehouse,
                                                         forget: bool) -> None:
    # Chunks of 60 rows: the metric counts rows, not chunks; rows of a forgotten person
    # (every 7th row here) are not loaded and not counted.
    from funnelhouse.collector import metrics
    from funnelhouse.people.forget import ForgottenSet, hash_id

    log = EventLog(tmp_path / "queue.sqlite3")
    fill(log, 0, 300)
    forgotten = None
    if forget:
        warehouse.insert_json_rows("forgotten_ids", [orjson.dumps(
            {"id_hash": hash_id("a3"), "forgotten_at": "2026-01-01 00:00:00.000"})])
        forgotten = ForgottenSet(warehouse)
    counter = metrics.loader_rows.labels("events_raw")
    before = counter._value.get()
    loader = Loader(EmbeddedSource(log), warehouse, batch_rows=100, batch_seconds=0.0,
                    forgotten=forgotten)
    asyncio.run(loader.drain(timeout=30))
    loaded = 300 - sum(1 for i in range(300) if forget and i % 7 == 3)
    assert counts(warehouse) == (loaded, loaded)
    assert counter._value.get() - before == loaded
