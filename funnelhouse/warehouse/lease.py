"""Job leases in the warehouse: one holder of a named job at a time, across processes and hosts.

Why in the warehouse: every `serve` replica, loader and `migrate` run already reaches
it (chdb in one process, a ClickHouse server over HTTP from many hosts), so no Redis,
Keeper client or file lock is needed to keep two replicas off the same job.

How. `job_leases` holds one row per *term* of a job: (job, term, holder, expires_ms).
The live lease of a job is its highest term, if unexpired by the warehouse's clock.
Taking or renewing a lease is a compare-and-set on the next term:

1. read the highest term T of the job (and the warehouse's `now`);
2. if it is unexpired and someone else's: the job is taken, give up;
3. insert (job, T+1, me, now + ttl) with `insert_deduplication_token = lease/<job>/<T+1>`;
4. read the row of term T+1 back: whoever it names holds the lease.

The race: two claimants that both read T insert two rows for T+1 under the *same*
token. ClickHouse keeps the first block of a token and drops any later one (on a plain
MergeTree through `non_replicated_deduplication_window`, under the table's insert
lock; on a Replicated table through Keeper, linearisably), so exactly one row of term
T+1 is stored, and both read back the same holder: one wins, the other sees it lost.
Inserts are synchronous (the INSERT returns once the part is committed), so a read
after one's own insert sees the stored winner. A claimant paused so long that the
dedup window (10,000 blocks of this table) forgot the token could store a second row
for an old term; readers take the earliest-written row of a term, so it loses too.

Renewal is the same step from one's own term; a holder that dies stops renewing and
its term expires after `ttl` (by the warehouse clock: no host clock is compared with
another). A holder that finds its renewal lost (it paused past its own expiry and
someone took over) is told so (`Lease.lost`); the caller logs it — ClickHouse offers
no fencing token a write could be checked against, so the ttl must be longer than any
pause of a healthy holder (default 60 s, renewed every ttl/3).

`release(keep_seconds)` writes a last term that ends `keep_seconds` from now: 0 frees
the job at once; a scheduler holds a periodic job until its next run is due, so a
second replica does not run it again straight after. The holder that kept it may take
it again (a lease is re-entrant for the same holder id: one id per process's
scheduler, whose jobs run one after another).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from funnelhouse.warehouse.base import Warehouse, WarehouseError

log = logging.getLogger("funnelhouse.lease")

TABLE = "job_leases"
# Created by the lease itself, not by a migration: `migrate` takes a lease before it
# applies anything. No TTL: a term's row must outlive its token in the dedup window.
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE}
(
    job         String,
    term        UInt64,
    holder      String,
    expires_ms  UInt64,                              -- warehouse clock, ms since epoch
    written_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (job, term)
SETTINGS non_replicated_deduplication_window = 10000
"""
NOW_MS = "toUnixTimestamp64Milli(now64(3))"
_LATEST = (f"SELECT term, holder, expires_ms, {NOW_MS} AS now_ms FROM {TABLE} "
           "WHERE job = {job:String} ORDER BY term DESC, written_at, holder LIMIT 1")
_TERM = (f"SELECT holder FROM {TABLE} WHERE job = {{job:String}} AND term = {{term:UInt64}} "
         "ORDER BY written_at, holder LIMIT 1")


def holder_id(role: str = "") -> str:
    """A holder id naming the host and process (readable in job_leases), unique per call."""
    where = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{role}@{where}" if role else where


class LeaseHeld(Exception):
    """The job is held by another holder (for blocking acquisitions that time out)."""


@dataclass
class Lease:
    """A won term of a job; `renew()`/`release()` move it on, `keep_alive()` renews in a thread."""

    leases: Leases
    job: str
    term: int
    expires_ms: int
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def holder(self) -> str:
        return self.leases.holder

    def renew(self) -> bool:
        """Extend by the ttl from now; False (and `lost`) when another holder took the job."""
        won = self.leases._claim(self.job, self.term + 1, self.leases.ttl_seconds)
        if won is None:
            self.lost = True
            log.error("lease %s lost by %s (term %d): another holder took it", self.job,
                      self.holder, self.term)
            return False
        self.term, self.expires_ms = won
        return True

    def release(self, keep_seconds: float = 0.0) -> None:
        """End the lease `keep_seconds` from now (0: at once); nothing if already lost."""
        self._stop.set()
        if self.lost:
            return
        try:
            won = self.leases._claim(self.job, self.term + 1, keep_seconds)
        except WarehouseError:  # it expires on its own
            log.warning("lease %s: release failed; it expires by itself", self.job)
            return
        if won is not None:
            self.term, self.expires_ms = won

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[Lease]:
        """Renew every ttl/3 in a thread while the block runs (the job itself blocks)."""
        self._stop.clear()
        interval = self.leases.ttl_seconds / 3

        def renew_loop() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        return
                except WarehouseError as exc:  # retried next interval, until expiry
                    log.warning("lease %s: renewal failed: %s", self.job, exc)

        thread = threading.Thread(target=renew_loop, name=f"lease-{self.job}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


class Leases:
    """Claims leases on one warehouse as one holder; thread-safe for distinct jobs."""

    def __init__(self, warehouse: Warehouse, holder: str | None = None, *,
                 ttl_seconds: float = 60.0) -> None:
        self.warehouse = warehouse
        self.holder = holder or holder_id()
        self.ttl_seconds = ttl_seconds
        self._ensured = False

    def ensure_table(self) -> None:
        if self._ensured:
            return
        try:
            self.warehouse.execute(DDL)
        except WarehouseError:
            # Two processes creating it at once on a server: one may be told it exists.
            time.sleep(0.2)
            self.warehouse.execute(DDL)
        self._ensured = True

    def current(self, job: str) -> dict[str, object] | None:
        """The latest term of `job`: term, holder, expires_ms, now_ms, live."""
        self.ensure_table()
        rows = self.warehouse.query(_LATEST, {"job": job}).dicts()
        if not rows:
            return None
        row = rows[0]
        row["live"] = int(row["expires_ms"]) > int(row["now_ms"])
        return row

    def try_acquire(self, job: str) -> Lease | None:
        """The lease of `job` if it is free, expired or ours already; else None."""
        latest = self.current(job)
        term = 0
        if latest is not None:
            term = int(str(latest["term"]))
            if latest["live"] and latest["holder"] != self.holder:
                return None
        won = self._claim(job, term + 1, self.ttl_seconds)
        if won is None:
            return None
        return Lease(self, job, *won)

    def acquire(self, job: str, *, timeout: float, poll: float = 0.5) -> Lease:
        """Wait up to `timeout` seconds for `job`; LeaseHeld naming the holder after that."""
        deadline = time.monotonic() + timeout
        while True:
            lease = self.try_acquire(job)
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                latest = self.current(job) or {}
                left = (int(str(latest.get("expires_ms", 0)))
                        - int(str(latest.get("now_ms", 0)))) / 1000
                raise LeaseHeld(f"{job} is held by {latest.get('holder')} for {left:.0f}s more")
            time.sleep(poll)

    @contextlib.contextmanager
    def holding(self, job: str) -> Iterator[Lease]:
        """Run a block as `job`'s holder (renewed while it runs, released after); LeaseHeld
        at once when another holder has it — for on-demand runs of scheduled jobs."""
        lease = self.try_acquire(job)
        if lease is None:
            latest = self.current(job) or {}
            raise LeaseHeld(f"{job} is running elsewhere ({latest.get('holder')}); try later")
        try:
            with lease.keep_alive():
                yield lease
        finally:
            lease.release()

    def _claim(self, job: str, term: int, seconds: float) -> tuple[int, int] | None:
        """Insert our claim on `term` and read who got it: (term, expires_ms) if we did."""
        self.ensure_table()
        now_ms = int(self.warehouse.query(f"SELECT {NOW_MS}").scalar())
        expires_ms = now_ms + int(seconds * 1000)
        row = orjson.dumps({"job": job, "term": term, "holder": self.holder,
                            "expires_ms": expires_ms})
        self.warehouse.insert_json_rows(TABLE, [row], token=f"lease/{job}/{term}")
        winner = self.warehouse.query(_TERM, {"job": job, "term": term}).scalar()
        if winner != self.holder:
            return None
        return term, expires_ms
