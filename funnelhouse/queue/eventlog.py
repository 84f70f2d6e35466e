"""The durable on-disk log behind the embedded queue: SQLite in WAL mode.

An append is one transaction; with `fsync="full"` the WAL is synced before append()
returns, so a record the collector acknowledged survives SIGKILL and power loss.
Concurrent requests are grouped into one append by the embedded sink, so the sync
cost is paid once per group, not once per request.

Every record has its own sequence number, but records are stored in chunks: one row
per run of same-stream records of an append, holding their values joined by newlines.
A value is one JSON line, so a chunk is already the newline-delimited JSON the
warehouse loads. Storing a request group as one row instead of one row per record
made reading and deleting 50k records ≈7× cheaper (per-row B-tree work and
SQLite's page rewrites on delete were most of the loader's time).

A chunk's rows are stored LZ4-compressed (a frame, told apart by its magic number from
the plain JSON lines earlier versions stored, which stay readable). Rows of one request
share most of their bytes (column names, context, page): 50 of them shrink 10–24×,
for ≈0.3 µs of CPU a row, where writing them plain cost ≈5 µs a row in the kernel
(the WAL write, then the checkpoint's).

Several processes may open the same file (collector workers append, a loader reads
and deletes); SQLite's locking serialises the writers.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import lz4.frame
import orjson

from funnelhouse.queue.record import Record, Stream

_STREAM_CODES: dict[Stream, int] = {"events": 0, "invalid": 1}
_STREAM_NAMES = {code: name for name, code in _STREAM_CODES.items()}
# The first bytes of an LZ4 frame; a plain chunk starts with a JSON line.
_LZ4_MAGIC = b"\x04\x22\x4d\x18"

_TABLES = (
    """CREATE TABLE IF NOT EXISTS chunks (
        last   INTEGER PRIMARY KEY AUTOINCREMENT,  -- seq of the chunk's last record
        first  INTEGER NOT NULL,                   -- seq of its first record
        stream INTEGER NOT NULL,
        keys   BLOB NOT NULL,                      -- JSON array, one key per record
        rows   BLOB NOT NULL                       -- the records' values joined by newlines,
                                                   -- LZ4-compressed (see the docstring)
    )""",
    """CREATE TABLE IF NOT EXISTS state (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # One row per record (seq, stream), the shape of the table this log had before
    # chunks, for tools that count records with SQL.
    """CREATE VIEW IF NOT EXISTS log AS
        WITH RECURSIVE n(i) AS (
            SELECT 0 UNION ALL
            SELECT i + 1 FROM n WHERE i < (SELECT max(last - first) FROM chunks))
        SELECT first + i AS seq, stream FROM chunks JOIN n ON i <= last - first""",
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Consecutive records of one stream, `first`..`last`, values joined by newlines."""

    first: int
    last: int
    stream: Stream
    rows: bytes

    def __len__(self) -> int:
        return self.last - self.first + 1


class EventLog:
    """Append, read in order, delete what was consumed; plus a tiny key/value state."""

    def __init__(self, path: Path, fsync: str = "full") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        # Larger pages suit chunks of tens of KB (fewer overflow pages to walk); it only
        # takes effect on a new file, before WAL mode is set.
        self._db.execute("PRAGMA page_size = 16384")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit writes the WAL without syncing it. With fsync="full" the WAL is
        # synced right after each write transaction (_sync), before it returns: as
        # durable as SQLite's FULL, but SQLite's FULL syncs while holding the write
        # lock, so two collector workers sharing the file waited for each other's
        # fsync; synced outside the lock, their fsyncs overlap.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._durable = fsync == "full"
        self._wal_path = f"{path}-wal"
        # Some builds (Debian's) overwrite every freed page, which doubled the cost of
        # deleting a loaded batch; FAST still clears what is rewritten anyway.
        self._db.execute("PRAGMA secure_delete = FAST")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._upgrade_record_table()
            for statement in _TABLES:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        # One connection, used from one thread at a time (the sink's writer thread or
        # the loader's); the lock makes misuse from two threads safe rather than corrupt.
        self._lock = threading.Lock()

    def append(self, records: Iterable[Record]) -> tuple[int, int]:
        """Store records in one transaction; return the (first, last) sequence numbers.

        Records get consecutive numbers in the order given.
        """
        runs = [(stream, list(run)) for stream, run in groupby(records, lambda r: r.stream)]
        if not runs:
            return (0, 0)
        rows = []
        for stream, run in runs:
            joined = b"\n".join(r.value for r in run)
            if joined.count(b"\n") != len(run) - 1:
                raise ValueError("a record's value must be a single line")
            rows.append((len(run), _STREAM_CODES[stream],
                         orjson.dumps([r.key for r in run]), _pack(joined)))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                first = last = self._last_seq() + 1
                for count, stream_code, keys, joined in rows:
                    self._db.execute(
                        "INSERT INTO chunks (last, first, stream, keys, rows) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (last + count - 1, last, stream_code, keys, joined))
                    last += count
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self._sync()
        return (first, last - 1)

    def read_chunks(self, after_seq: int, limit: int, through_seq: int | None = None
                    ) -> list[Chunk]:
        """Chunks of records with seq > after_seq (and <= through_seq), oldest first.

        Whole chunks while they fit in `limit` records (at least one chunk); a chunk
        that straddles after_seq or through_seq is cut to the range.
        """
        chunks: list[Chunk] = []
        total = 0
        with self._lock:
            for chunk, _ in self._chunks(after_seq, through_seq, keys=False):
                if chunks and total + len(chunk) > limit:
                    break
                chunks.append(chunk)
                total += len(chunk)
        return chunks

    def read(self, after_seq: int, limit: int, through_seq: int | None = None
             ) -> list[tuple[int, Record]]:
        """Records with seq > after_seq (and <= through_seq if given), oldest first."""
        out: list[tuple[int, Record]] = []
        with self._lock:
            for chunk, keys in self._chunks(after_seq, through_seq, keys=True):
                for offset, (key, value) in enumerate(zip(keys, chunk.rows.split(b"\n"),
                                                          strict=True)):
                    if len(out) == limit:
                        return out
                    out.append((chunk.first + offset, Record(chunk.stream, key, value)))
        return out

    def _chunks(self, after_seq: int, through_seq: int | None, *, keys: bool
                ) -> Iterator[tuple[Chunk, list[str]]]:
        sql = (f"SELECT first, last, stream, {'keys' if keys else 'NULL'}, rows FROM chunks "
               "WHERE last > ?")
        args = [after_seq]
        if through_seq is not None:
            sql += " AND first <= ?"
            args.append(through_seq)
        # Iterated lazily: a caller that has enough stops before reading further blobs.
        for first, last, stream, key_list, rows in self._db.execute(sql + " ORDER BY last", args):
            chunk = Chunk(first, last, _STREAM_NAMES[stream], _unpack(rows))
            key_list = orjson.loads(key_list) if keys else []
            low = max(first, after_seq + 1)
            high = last if through_seq is None else min(last, through_seq)
            if (low, high) != (first, last):
                chunk, key_list = _cut(chunk, key_list, low, high)
            yield chunk, key_list

    def delete_through(self, seq: int, *, state: dict[str, str | None] | None = None) -> None:
        """Drop records up to seq, and update state in the same transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM chunks WHERE last <= ?", (seq,))
                # A chunk that straddles seq keeps only its records after seq.
                straddling = self._db.execute(
                    "SELECT first, last, stream, keys, rows FROM chunks "
                    "WHERE first <= ? ORDER BY last LIMIT 1", (seq,)).fetchone()
                if straddling is not None:
                    first, last, stream, keys, rows = straddling
                    chunk, key_list = _cut(
                        Chunk(first, last, _STREAM_NAMES[stream], _unpack(rows)),
                        orjson.loads(keys), seq + 1, last)
                    self._db.execute("UPDATE chunks SET first = ?, keys = ?, rows = ? "
                                     "WHERE last = ?",
                                     (chunk.first, orjson.dumps(key_list), _pack(chunk.rows),
                                      last))
                for name, value in (state or {}).items():
                    self._set_state_locked(name, value)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        self._sync()

    def redact(self, hints: Sequence[bytes], is_match: Callable[[bytes], bool],
               tombstone: bytes) -> int:
        """Replace every queued record `is_match` accepts by `tombstone`; leave no copy.

        For forget: a record keeps its seq (batch tokens and the loader's pending range
        stay valid) but its value becomes the tombstone, which the loader skips. Only
        chunks containing one of `hints` are parsed. Then the freed pages are zeroed
        (secure_delete), the WAL is checkpointed and truncated and the file vacuumed, so
        neither the database file nor its WAL keeps the old bytes. Returns records changed.
        """
        changed = 0
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for last, stored in self._db.execute(
                            "SELECT last, rows FROM chunks").fetchall():
                        rows = _unpack(stored)
                        if not any(h in rows for h in hints):
                            continue
                        lines = rows.split(b"\n")
                        new = [tombstone if is_match(line) else line for line in lines]
                        hits = sum(1 for a, b in zip(lines, new, strict=True) if a is not b)
                        if hits:
                            changed += hits
                            self._db.execute("UPDATE chunks SET rows = ? WHERE last = ?",
                                             (_pack(b"\n".join(new)), last))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._checkpoint()
                self._db.execute("VACUUM")
                self._checkpoint()
            finally:
                self._db.execute("PRAGMA secure_delete = FAST")
        self._sync()
        return changed

    def _checkpoint(self) -> None:
        # TRUNCATE waits (busy timeout) for other connections' readers, then empties
        # the WAL file; retried briefly if a reader was still in the way.
        for _ in range(50):
            busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.1)
        raise sqlite3.OperationalError("the queue's WAL could not be checkpointed (busy)")

    def depth(self) -> int:
        # Records have consecutive seqs and are deleted only from the head, so the
        # span from the head chunk's first to the last seq is the count, no scan.
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT max(last) FROM chunks) - first + 1 FROM chunks "
                "ORDER BY last LIMIT 1").fetchone()
        return 0 if row is None else row[0]

    def first_seq(self) -> int:
        """The oldest record's seq, or 0 when empty."""
        with self._lock:
            row = self._db.execute("SELECT first FROM chunks ORDER BY last LIMIT 1").fetchone()
        return 0 if row is None else row[0]

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
        self._sync()

    def _set_state_locked(self, name: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM state WHERE name = ?", (name,))
        else:
            self._db.execute(
                "INSERT INTO state (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def _sync(self) -> None:
        """With fsync="full": make the transaction just committed survive power loss."""
        if not self._durable:
            return
        try:
            fd = os.open(self._wal_path, os.O_RDWR)
        except FileNotFoundError:
            # No WAL: the last connection closed and checkpointed it into the database
            # file, which that checkpoint synced.
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rollback(self) -> None:
        # SQLite ends the transaction itself on some errors (SQLITE_FULL among them); a
        # second ROLLBACK then fails with "no transaction is active" and would hide the
        # real cause (a full disk) behind it.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass   # the error being handled is the one to report

    def _upgrade_record_table(self) -> None:
        """Move the records of an earlier version's one-row-per-record table into chunks."""
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'log' AND type = 'table'").fetchone()
        if not found:
            return
        self._db.execute(_TABLES[0])
        self._db.execute("INSERT INTO chunks (last, first, stream, keys, rows) "
                         "SELECT seq, seq, stream, json_array(key), value FROM log")
        # Carry the high-water mark over, so seqs (and batch tokens) are never reused.
        old = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'log'").fetchone()
        if old and old[0] > self._last_seq():
            self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'chunks'")
            self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('chunks', ?)",
                             (old[0],))
        self._db.execute("DROP TABLE log")

    def _last_seq(self) -> int:
        # AUTOINCREMENT's high-water mark: never reused, even once the log is empty,
        # so a batch token (`log:first-last`) never names two different batches.
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def disk_full(exc: BaseException) -> bool:
    """Whether a failed write means the disk (or the file's size limit) is full."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == \
            sqlite3.SQLITE_FULL:
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def records_of(rows: Sequence[tuple[int, Record]]) -> list[Record]:
    return [record for _, record in rows]


def _pack(rows: bytes) -> bytes:
    return lz4.frame.compress(rows)


def _unpack(stored: bytes) -> bytes:
    """A chunk's rows as JSON lines, whether stored compressed or (earlier) plain."""
    return lz4.frame.decompress(stored) if stored[:4] == _LZ4_MAGIC else stored


def _cut(chunk: Chunk, keys: list[str], low: int, high: int) -> tuple[Chunk, list[str]]:
    """The part of a chunk from seq `low` to `high`."""
    start, stop = low - chunk.first, high - chunk.first + 1
    rows = b"\n".join(chunk.rows.split(b"\n")[start:stop])
    return Chunk(low, high, chunk.stream, rows), keys[start:stop]
