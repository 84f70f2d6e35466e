"""Per-key rate limits (in memory) and the message_id dedup window (kept on disk too)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import orjson

log = logging.getLogger("funnelhouse.collector")


class TokenBucket:
    """Events per second with a burst of one second's worth."""

    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = time.monotonic()

    def take(self, count: int) -> float:
        """Take `count` tokens; return 0 on success, else seconds until they would exist."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        # A batch bigger than the burst passes on a full bucket and leaves a debt that
        # later requests wait out; otherwise it could never pass, whatever Retry-After said.
        needed = min(count, self.rate)
        if needed <= self.tokens:
            self.tokens -= count
            return 0.0
        return (needed - self.tokens) / self.rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, rate: float, count: int) -> float:
        """0 when allowed, else the Retry-After in seconds. A rate of 0 means no limit."""
        if rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = TokenBucket(rate)
        return bucket.take(count)


class DedupWindow:
    """message_ids seen in the last `seconds` (at most `size` of them).

    Catches client retries (a lost response, a beacon sent twice) before they reach
    the queue. With a `path`, the ids are also written to a small SQLite file and read
    back at start, so the window survives a restart (a reused messageId just after a
    restart is still answered as a duplicate); the collector's workers share that file.
    Past the window, the loader drops rows whose message_id is already stored.
    """

    FLUSH_SECONDS = 0.2
    FLUSH_KEYS = 2000

    def __init__(self, seconds: float, size: int, path: Path | None = None) -> None:
        self.seconds = seconds
        self.size = size
        # Wall-clock times: they must mean the same after a restart.
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        self._db_lock = threading.Lock()
        self._pruned_at = 0.0
        # Written in groups (FLUSH_SECONDS / FLUSH_KEYS), not a transaction per request;
        # a crash may lose the last group's ids (the loader still drops their copies).
        # Each add_all's keys share one time: kept as (time, keys) until written.
        self._pending: list[tuple[float, list[str]]] = []
        self._pending_keys = 0
        self._legacy_table = False
        self._pending_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._flushed_at = time.time()
        if path is not None and seconds > 0:
            self._open(path)

    def _open(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            # A lost last write costs only a retry answered 200 instead of "duplicate";
            # the loader still drops the copy. Not worth an fsync per request.
            db.execute("PRAGMA synchronous = NORMAL")
            # Append-only, in time order (rowid), one row per flush holding its ids as
            # JSON [[time, [key, …]], …]: an indexed key table cost ≈10 µs per id in
            # random B-tree inserts, a row per id ≈1.4 µs, a row per flush ≈0.1 µs.
            # Start-up reads the window's rows once (a repeated key: the later wins, as
            # in memory). `at` is the newest time in the row.
            db.execute("CREATE TABLE IF NOT EXISTS seen_groups (at REAL NOT NULL, "
                       "keys BLOB NOT NULL)")
            cutoff = time.time() - self.seconds
            pairs: list[tuple[str, float]] = []
            # Earlier versions wrote a row per id to `seen`: read, never written.
            self._legacy_table = db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'seen' AND type = 'table'"
            ).fetchone() is not None
            if self._legacy_table:
                pairs += db.execute("SELECT key, at FROM seen WHERE at > ? ORDER BY rowid",
                                    (cutoff,)).fetchall()
            for (blob,) in db.execute("SELECT keys FROM seen_groups WHERE at > ? ORDER BY rowid",
                                      (cutoff,)):
                pairs += [(key, at) for at, keys in orjson.loads(blob) if at > cutoff
                          for key in keys]
        except (sqlite3.Error, orjson.JSONDecodeError, TypeError, ValueError) as exc:
            # The window is an optimisation: without its file it works in memory only.
            log.warning("dedup window not persisted (%s): %s", path, exc)
            return
        for key, at in pairs[-self.size:]:
            self._seen[key] = at
            self._seen.move_to_end(key)
        self._db = db

    def __contains__(self, message_key: str) -> bool:
        seen_at = self._seen.get(message_key)
        return seen_at is not None and time.time() - seen_at < self.seconds

    def add_all(self, message_keys: Iterable[str]) -> None:
        now = time.time()
        seen = self._seen
        keys = list(message_keys)
        for key in keys:
            seen[key] = now
            seen.move_to_end(key)
        while len(seen) > self.size:
            seen.popitem(last=False)
        # Expire from the old end; entries are in insertion-time order.
        while seen:
            oldest_key, oldest_at = next(iter(seen.items()))
            if now - oldest_at < self.seconds:
                break
            del seen[oldest_key]
        if self._db is not None and keys:
            with self._pending_lock:
                self._pending.append((now, keys))
                self._pending_keys += len(keys)
                due = self._pending_keys >= self.FLUSH_KEYS or \
                    now - self._flushed_at >= self.FLUSH_SECONDS
                if not due and self._timer is None:
                    # The last ids of a burst are written even if no request follows.
                    self._timer = threading.Timer(self.FLUSH_SECONDS, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
            if due:
                self.flush()

    def flush(self) -> None:
        """Write the ids added since the last flush to the file."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
            self._pending_keys = 0
            now = self._flushed_at = time.time()
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if self._db is None or not pending:
            return
        try:
            with self._db_lock:
                self._db.execute("BEGIN")
                self._db.execute("INSERT INTO seen_groups (at, keys) VALUES (?, ?)",
                                 (max(at for at, _ in pending), orjson.dumps(pending)))
                if now - self._pruned_at > 60:  # expired ids go once a minute
                    cutoff = now - self.seconds
                    self._db.execute("DELETE FROM seen_groups WHERE at <= ?", (cutoff,))
                    if self._legacy_table:
                        self._db.execute("DELETE FROM seen WHERE at <= ?", (cutoff,))
                    self._pruned_at = now
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            log.warning("dedup window not persisted: %s", exc)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            with self._db_lock:
                self._db.close()
            self._db = None
