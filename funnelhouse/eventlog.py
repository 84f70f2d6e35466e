"""The durable on-disk log behind the embedded queue: SQLite in WAL mode.

An append is one transaction; with `fsync="full"` SQLite syncs the WAL before the
commit returns, so a record the collector acknowledged survives SIGKILL and power
loss. Concurrent requests are grouped into one append by the embedded sink, so the
sync cost is paid once per group, not once per request.

Several processes may open the same file (collector workers append, a loader reads
and deletes); SQLite's locking serialises the writers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from collector.sinks.base import Record

_STREAM_CODES = {"events": 0, "invalid": 1}
_STREAM_NAMES = {code: name for name, code in _STREAM_CODES.items()}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream INTEGER NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class EventLog:
    """Append, read in order, delete what was consumed; plus a tiny key/value state."""

    def __init__(self, path: Path, fsync: str = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync == 'full' else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        # One connection, used from one thread at a time (the sink's writer thread or
        # the loader's); the lock makes misuse from two threads safe rather than corrupt.
        self._lock = threading.Lock()

    def append(self, records: Iterable[Record]) -> tuple[int, int]:
        """Store records in one transaction; return the (first, last) sequence numbers."""
        rows = [(_STREAM_CODES[r.stream], r.key, r.value) for r in records]
        if not rows:
            return (0, 0)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.executemany(
                    "INSERT INTO log (stream, key, value) VALUES (?, ?, ?)", rows
                )
                last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        del cursor
        return (last - len(rows) + 1, last)

    def read(self, after_seq: int, limit: int, through_seq: int | None = None
             ) -> list[tuple[int, Record]]:
        """Records with seq > after_seq (and <= through_seq if given), oldest first."""
        sql = "SELECT seq, stream, key, value FROM log WHERE seq > ?"
        args: list[int] = [after_seq]
        if through_seq is not None:
            sql += " AND seq <= ?"
            args.append(through_seq)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [(seq, Record(_STREAM_NAMES[stream], key, bytes(value)))
                for seq, stream, key, value in rows]

    def delete_through(self, seq: int, *, state: dict[str, str | None] | None = None) -> None:
        """Drop records up to seq, and update state in the same transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM log WHERE seq <= ?", (seq,))
                for name, value in (state or {}).items():
                    self._set_state_locked(name, value)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def depth(self) -> int:
        # Records are appended with consecutive seqs and deleted only from the head,
        # so the span of seqs is the count, read from the primary key without a scan.
        with self._lock:
            low, high = self._db.execute("SELECT min(seq), max(seq) FROM log").fetchone()
        return 0 if low is None else high - low + 1

    def first_seq(self) -> int:
        """The oldest record's seq, or 0 when empty."""
        with self._lock:
            return self._db.execute("SELECT coalesce(min(seq), 0) FROM log").fetchone()[0]

    def writable(self) -> bool:
        """Whether a write can be committed now (a tiny one, to the state table)."""
        try:
            self.set_state("probe", "1")
        except sqlite3.Error:
            return False
        return True

    def get_state(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_state(self, name: str, value: str | None) -> None:
        with self._lock:
            self._set_state_locked(name, value)

    def _set_state_locked(self, name: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM state WHERE name = ?", (name,))
        else:
            self._db.execute(
                "INSERT INTO state (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def records_of(rows: Sequence[tuple[int, Record]]) -> list[Record]:
    return [record for _, record in rows]
