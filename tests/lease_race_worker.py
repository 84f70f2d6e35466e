"""Test helper process: race for one job lease on a ClickHouse HTTP URL, log held intervals."""

# Run as `python -m tests.lease_race_worker URL JOB ROUNDS OUT` by tests/test_lease.py;
# or with `hold` as ROUNDS: take the lease, renew it in a thread, say so and wait to be
# killed (a holder that dies).

from __future__ import annotations

import sys
import time

from funnelhouse.warehouse.lease import Leases, holder_id
from funnelhouse.warehouse.server import ServerWarehouse


def main(url: str, job: str, rounds: str, out: str, ttl: str = "30") -> None:
    leases = Leases(ServerWarehouse(url), holder_id("worker"), ttl_seconds=float(ttl))
    if rounds == "hold":
        lease = leases.acquire(job, timeout=60)
        with lease.keep_alive():
            print("held", flush=True)
            time.sleep(600)   # killed long before
        return
    with open(out, "a") as fh:
        for _ in range(int(rounds)):
            lease = leases.try_acquire(job)
            if lease is None:
                time.sleep(0.002)
                continue
            started = time.monotonic_ns()
            time.sleep(0.01)              # the "job"
            stopped = time.monotonic_ns()
            lease.release()
            fh.write(f"{leases.holder} {started} {stopped}\n")
            fh.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
