"""Source → warehouse: batches, inserts with a dedup token, commits only after success."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Sequence

import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from funnelhouse.collector import metrics
from funnelhouse.config import Settings
from funnelhouse.loader.sources.base import Batch, Source
from funnelhouse.people.forget import ForgottenSet
from funnelhouse.warehouse.base import Warehouse, WarehouseError, minus_token
from funnelhouse.warehouse.stored_keys import STORED_EVENTS, StoredIn, stored_among

log = logging.getLogger("funnelhouse.loader")


class Loader:
    """Exactly-once loading from an at-least-once queue.

    The batch token names the batch's position in the queue; it goes into the
    insert as `insert_deduplication_token`. If the process dies after the insert but
    before the commit, the source hands out the same range again after restart, the
    insert carries the same token, and the warehouse drops it as a repeat.
    """

    def __init__(self, source: Source, warehouse: Warehouse, *,
                 batch_rows: int = Settings.loader_batch_rows,
                 batch_seconds: float = Settings.loader_batch_seconds,
                 forgotten: ForgottenSet | None = None) -> None:
        self.source = source
        # Rows of forgotten people are not loaded (a device still sending, a late batch).
        self.forgotten = forgotten
        # Held from a batch's insert to its commit: forget swaps tables only between
        # batches, so no insert lands in a table being replaced and no batch is left
        # inserted-but-uncommitted across a swap (its dedup token would be forgotten).
        self.gate = threading.Lock()
        self.warehouse = warehouse
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.rows_loaded = 0
        self.last_loaded_at = 0.0
        self._stopping = asyncio.Event()

    async def run(self, drain_timeout: float = 0.0) -> None:
        """Load until stop() is called; then load what is left (up to drain_timeout)."""
        await self.source.start()
        try:
            while not self._stopping.is_set():
                await self.load_once()
            if drain_timeout:
                await self.drain(drain_timeout)
        except WarehouseError as exc:
            log.warning("loader stopped with a batch not loaded (kept in the queue): %s", exc)
        finally:
            await self.source.stop()

    async def load_once(self) -> int:
        batch = await self.source.next_batch(self.batch_rows, self.batch_seconds)
        metrics.loader_lag.set(self.source.status().get("lag", 0))
        if batch is None or len(batch) == 0:
            if batch is not None:
                await self.source.commit(batch)
            return 0
        while not self.gate.acquire(blocking=False):   # a forget is swapping tables
            await asyncio.sleep(0.02)
        try:
            await self._insert_reading_ahead(batch)
            await self.source.commit(batch)
        finally:
            self.gate.release()
        self.rows_loaded += len(batch)
        self.last_loaded_at = time.time()
        return len(batch)

    async def drain(self, timeout: float = 30.0) -> None:
        """Load until the source is empty (used at shutdown and in tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.load_once() == 0 and self.source.status().get("lag", 0) == 0:
                return
        log.warning("drain stopped after %.0fs with rows left in the queue", timeout)

    def stop(self) -> None:
        self._stopping.set()

    async def _insert_reading_ahead(self, batch: Batch) -> None:
        """The insert (in a thread), and meanwhile the source reads the next batch."""
        done = asyncio.Event()
        ahead = asyncio.create_task(self.source.read_ahead(self.batch_rows, done))
        try:
            await self._insert_with_retries(batch)
        finally:
            done.set()
            await ahead

    async def _insert_with_retries(self, batch: Batch) -> None:
        # Retried without limit: dropping a batch would lose acknowledged events. The
        # backoff keeps a failing warehouse from being hammered; metrics show failures.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(WarehouseError),
            wait=wait_exponential_jitter(multiplier=0.2, max=10),
            before_sleep=self._log_retry,
            # On shutdown give up the retry: the batch stays in the queue, uncommitted.
            stop=lambda _state: self._stopping.is_set(),
            reraise=True,
        ):
            with attempt:
                await asyncio.to_thread(self._insert, batch)

    def _insert(self, batch: Batch) -> None:
        # Two tables, two inserts; each has its own token so either may be repeated alone.
        events, invalid, gone = batch.events, batch.invalid, 0
        forgotten = self.forgotten
        hashes = forgotten.hashes() if forgotten is not None else frozenset()
        if forgotten is not None and hashes:
            # The token stays the batch's: the same rows are dropped again on a retry.
            events, gone = forgotten.keep(events, hashes, raw_rows=True)
            invalid, gone_invalid = forgotten.keep(invalid, hashes)
            gone += gone_invalid
            if gone:
                log.info("loader: %d rows of forgotten people not loaded", gone)
        if events:
            token = f"{batch.token}:events"
            # Their keys go to message_keys in the same insert (migration 0020's view).
            # Where the warehouse can, it finds the first copies itself (the embedded
            # backend, from the rows it has parsed); otherwise the ids are read here.
            dropped = self.warehouse.insert_first_copies("events_raw", events, token)
            if dropped is None:
                kept, dropped = first_copies(self.warehouse, events)
                if kept:
                    self.warehouse.insert_json_rows(
                        "events_raw", kept, minus_token(token, dropped) if dropped else token)
            metrics.events_duplicate.inc(len(dropped))
            # Rows, not items: an item of the embedded log is a chunk of several rows.
            # The batch has counted them, unless forgotten people's rows were taken out
            # (counting the newlines of a 300k-row drain again took 0.1 s).
            metrics.loader_rows.labels("events_raw").inc(
                batch.event_rows if events is batch.events
                else sum(item.count(b"\n") + 1 for item in events))
        if invalid:
            token = f"{batch.token}:invalid"
            if batch.share_of_earlier_batch:
                # The earlier batch's insert (another token) may have stored these.
                kept, dropped = first_copies(self.warehouse, invalid,
                                             stored_in="events_invalid")
                if dropped:
                    invalid, token = kept, minus_token(token, dropped)
            if invalid:
                self.warehouse.insert_json_rows("events_invalid", invalid, token)
            metrics.loader_rows.labels("events_invalid").inc(batch.invalid_rows)

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        metrics.loader_failures.inc()
        log.warning("warehouse insert failed (attempt %d), retrying: %s",
                    state.attempt_number, state.outcome.exception() if state.outcome else None)


def first_copies(warehouse: Warehouse, items: Sequence[bytes], *,
                 stored_in: StoredIn = STORED_EVENTS) -> tuple[list[bytes], list[str]]:
    """`items` (newline-joined JSON rows) without rows whose message_id is already stored.

    `stored_in` is the table that says so: `message_keys` for events, `events_invalid`
    itself for dead letters.

    The first stored copy of a (source, message_id) wins: a later row with that id — a
    retry past the collector's dedup window, or a different payload reusing the id — is
    dropped here, as is a second copy within `items` (the queue's order is the order
    received). Returns the rows to insert and the `source:message_id` of those dropped.
    """
    keys: list[tuple[str, str]] = []
    for item in items:
        _add_row_keys(item, keys)
    unique = set(keys)
    # One lookup per batch, of these keys only (stored_keys).
    stored = {(source, message_id) for source, message_id in warehouse.query(
        stored_among(stored_in, "SELECT k.1 AS source, k.2 AS message_id FROM (SELECT "
                                "arrayJoin(JSONExtract({keys:String}, "
                                "'Array(Tuple(String, String))')) AS k)"),
        {"keys": orjson.dumps(list(unique)).decode()}).rows} if unique else set()
    if not stored and len(unique) == len(keys):   # the usual batch: every row is new
        return list(items), []
    lines = [line for item in items for line in item.split(b"\n") if line]
    kept: list[bytes] = []
    dropped: list[str] = []
    for key, line in zip(keys, lines, strict=True):
        if key in stored:
            dropped.append(f"{key[0]}:{key[1]}")
        else:
            stored.add(key)
            kept.append(line)
    return kept, dropped


# The collector writes each events_raw row with message_id first, and `source` as a
# top-level key; inside a string value every quote is escaped, so `"source":"` can only
# be that key. Reading the two ids this way costs a fraction of parsing the row: byte
# searches through the chunk as it is (splitting it into rows first copied every row
# and took a third of the time), and the regular expressions only for an id that holds
# an escape (their per-character alternation cost 3 µs a row).
_ID_KEY = b'{"message_id":"'
_SOURCE_KEY = b'"source":"'
_MESSAGE_ID = re.compile(rb'^\{"message_id":"((?:[^"\\]|\\.)*)"')
_SOURCE = re.compile(rb'"source":"((?:[^"\\]|\\.)*)"')


def _add_row_keys(item: bytes, keys: list[tuple[str, str]]) -> None:
    """Append (source, message_id) of each row in `item` (JSON rows joined by newlines)."""
    find, at, end = item.find, 0, len(item)
    while at < end:
        row_end = find(b"\n", at)
        if row_end < 0:
            row_end = end
        if item.startswith(_ID_KEY, at):
            id_start = at + len(_ID_KEY)
            id_end = find(b'"', id_start, row_end)
            source_at = find(_SOURCE_KEY, id_end, row_end) if id_end > 0 else -1
            source_start = source_at + len(_SOURCE_KEY)
            source_end = find(b'"', source_start, row_end) if source_at > 0 else -1
            message_id, source = item[id_start:id_end], item[source_start:source_end]
            # A backslash means an escape the quote search may have stopped inside.
            if source_end > 0 and b"\\" not in message_id and b"\\" not in source:
                keys.append((source.decode(), message_id.decode()))
                at = row_end + 1
                continue
        if row_end > at:                  # an empty line is no row
            keys.append(_row_key_escaped(item[at:row_end]))
        at = row_end + 1


def _row_key_escaped(line: bytes) -> tuple[str, str]:
    message_id = _MESSAGE_ID.match(line)
    source = _SOURCE.search(line, message_id.end()) if message_id else None
    if message_id is None or source is None:  # written some other way: parse it
        row = orjson.loads(line)
        return str(row.get("source", "")), str(row.get("message_id", ""))
    return _unescape(source.group(1)), _unescape(message_id.group(1))


def _unescape(raw: bytes) -> str:
    return orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
