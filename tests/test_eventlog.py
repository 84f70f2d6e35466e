"""The embedded queue's on-disk log: chunked storage behind a per-record interface."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from funnelhouse.collector.sinks.base import Record
from funnelhouse.queue.eventlog import EventLog


def ev(i: int, key: str = "web:a") -> Record:
    return Record("events", key, b'{"i":%d}' % i)


def bad(i: int) -> Record:
    return Record("invalid", "web:b", b'{"bad":%d}' % i)


def test_records_are_numbered_in_append_order_across_streams(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "q.sqlite3")
    records = [ev(0), ev(1), bad(2), ev(3, key="odd\nkey")]
    assert log.append(records) == (1, 4)
    assert log.read(0, 100) == list(enumerate(records, start=1))
    assert log.append([ev(5)]) == (5, 5)
    assert log.depth() == 5 and log.first_seq() == 1


def test_chunks_are_read_whole_up_to_the_limit(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "q.sqlite3")
    log.append([ev(i) for i in range(3)])
    log.append([ev(i) for i in range(3, 6)] + [bad(6)])
    chunks = log.read_chunks(0, 5)
    assert [(c.first, c.last, c.stream) for c in chunks] == [(1, 3, "events")]
    assert chunks[0].rows == b'{"i":0}\n{"i":1}\n{"i":2}'
    # A chunk larger than the limit still comes back, alone: a batch is never empty.
    assert [(c.first, c.last) for c in log.read_chunks(0, 2)] == [(1, 3)]
    assert [(c.first, c.last, c.stream) for c in log.read_chunks(0, 7)] == [
        (1, 3, "events"), (4, 6, "events"), (7, 7, "invalid")]
    # A range that starts or ends inside a chunk is cut to it.
    cut = log.read_chunks(1, 100, through_seq=5)
    assert [(c.first, c.last, c.rows) for c in cut] == [
        (2, 3, b'{"i":1}\n{"i":2}'), (4, 5, b'{"i":3}\n{"i":4}')]


def test_deleting_inside_a_chunk_keeps_the_rest(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "q.sqlite3")
    log.append([ev(i, key=f"k{i}") for i in range(5)])
    log.delete_through(2, state={"pending": "x"})
    assert log.read(0, 100) == [(3, ev(2, "k2")), (4, ev(3, "k3")), (5, ev(4, "k4"))]
    assert log.depth() == 3 and log.first_seq() == 3
    assert log.get_state("pending") == "x"


def test_chunks_are_stored_compressed_and_plain_ones_of_earlier_versions_still_read(
        tmp_path: Path) -> None:
    """A queue written by the previous version (plain JSON lines) is read, cut and drained
    beside the LZ4 chunks this version writes."""
    path = tmp_path / "q.sqlite3"
    log = EventLog(path)
    log.close()
    db = sqlite3.connect(path)   # as the previous version stored a chunk of three rows
    db.execute("INSERT INTO chunks (last, first, stream, keys, rows) VALUES (3, 1, 0, ?, ?)",
               (b'["web:a","web:a","web:a"]', b'{"i":0}\n{"i":1}\n{"i":2}'))
    db.commit()
    db.close()
    log = EventLog(path)
    rows = [Record("events", "web:a", b'{"i":%d,"page":"https://shop.example/p/1"}' % i)
            for i in range(3, 53)]
    assert log.append(rows) == (4, 53)
    stored = sqlite3.connect(path).execute("SELECT rows FROM chunks WHERE last = 53").fetchone()
    assert stored[0][:4] == b"\x04\x22\x4d\x18"              # an LZ4 frame
    assert len(stored[0]) < len(b"\n".join(r.value for r in rows)) / 5
    assert log.read(0, 100) == [(1, ev(0)), (2, ev(1)), (3, ev(2))] + list(
        enumerate(rows, start=4))
    log.delete_through(2)                                       # inside the plain chunk
    log.delete_through(30)                                      # inside the compressed one
    assert log.read(0, 100) == list(enumerate(rows, start=4))[27:]
    log.close()


def test_sequence_numbers_are_never_reused_after_the_log_empties(tmp_path: Path) -> None:
    # Batch tokens are built from them: a reused number would make the warehouse drop
    # a new batch as a repeat of an old one.
    path = tmp_path / "q.sqlite3"
    log = EventLog(path)
    log.append([ev(i) for i in range(4)])
    log.delete_through(4)
    assert log.depth() == 0 and log.read_chunks(0, 10) == []
    log.close()
    assert EventLog(path).append([ev(9)]) == (5, 5)


def test_a_value_with_a_newline_is_refused(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "q.sqlite3")
    with pytest.raises(ValueError):
        log.append([Record("events", "k", b'{"a":\n1}')])
    assert log.depth() == 0


def test_log_view_counts_records_like_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    log = EventLog(path)
    log.append([ev(0), ev(1), bad(2), ev(3)])
    log.append([ev(i) for i in range(10)])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*), sum(stream = 0) FROM log").fetchone() == (14, 13)
        assert db.execute("SELECT min(seq), max(seq) FROM log").fetchone() == (1, 14)


def test_a_log_written_one_row_per_record_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    with sqlite3.connect(path) as db:  # the layout of earlier versions
        db.executescript("""
            CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream INTEGER NOT NULL,
                              key TEXT NOT NULL, value BLOB NOT NULL);
            CREATE TABLE state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO state VALUES ('loader.pending', '3-4');
        """)
        db.executemany("INSERT INTO log (stream, key, value) VALUES (?, ?, ?)",
                       [(0, "web:a", b'{"i":%d}' % i) for i in range(6)])
        db.execute("DELETE FROM log WHERE seq <= 2")
    log = EventLog(path)
    assert log.read(0, 100) == [(seq, ev(seq - 1)) for seq in range(3, 7)]
    assert log.get_state("loader.pending") == "3-4"
    assert [(c.first, c.last) for c in log.read_chunks(2, 2, through_seq=4)] == [(3, 3), (4, 4)]
    assert log.append([ev(9)]) == (7, 7)


def test_an_emptied_old_log_keeps_its_high_water_mark(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "stream INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL)")
        db.executemany("INSERT INTO log (stream, key, value) VALUES (0, 'k', ?)",
                       [(b"{}",)] * 8)
        db.execute("DELETE FROM log")
    assert EventLog(path).append([ev(1)]) == (9, 9)


def test_with_full_fsync_every_write_is_synced_before_it_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite commits without syncing (synchronous=NORMAL); the log syncs the WAL
    # itself, outside the write lock. Dropping that call would silently turn an
    # acknowledged event into one a power cut can lose.
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    durable = EventLog(tmp_path / "full.sqlite3", fsync="full")
    for write in (lambda: durable.append([ev(1)]), lambda: durable.set_state("x", "1"),
                  lambda: durable.delete_through(1)):
        synced.clear()
        write()
        assert synced == [str(tmp_path / "full.sqlite3-wal")]
    relaxed = EventLog(tmp_path / "normal.sqlite3", fsync="normal")
    synced.clear()
    relaxed.append([ev(1)])
    assert synced == []
