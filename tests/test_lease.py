"""Job leases in the warehouse: racing holders never overlap; a dead holder's lease expires."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.lease import Leases, holder_id
from funnelhouse.warehouse.server import ServerWarehouse
from tests.conftest import every_handle_closed
from tests.warehouse_backends import WarehouseMaker

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def warehouse(make_warehouse: WarehouseMaker, tmp_path: Path) -> Iterator[Warehouse]:
    # Every chdb handle a test opens is closed after it: one folder per process.
    with every_handle_closed():
        yield make_warehouse(tmp_path / "warehouse")


def another_handle(warehouse: Warehouse) -> Warehouse:
    """A handle of its own on the same warehouse (own chdb connection or own HTTP client)."""
    if isinstance(warehouse, ChdbWarehouse):
        return ChdbWarehouse(warehouse.path)
    assert isinstance(warehouse, ServerWarehouse)
    return ServerWarehouse(warehouse.url)


def assert_no_overlap(intervals: list[tuple[str, int, int]]) -> None:
    ordered = sorted(intervals, key=lambda i: i[1])
    for (holder_a, _, stop_a), (holder_b, start_b, _) in zip(ordered, ordered[1:], strict=False):
        assert start_b >= stop_a, f"{holder_a} and {holder_b} held the job at once"


def test_threads_racing_for_a_job_never_hold_it_at_once(warehouse: Warehouse) -> None:
    job = f"race-{uuid.uuid4().hex[:6]}"
    intervals: list[tuple[str, int, int]] = []
    attempts = {"n": 0}
    barrier = threading.Barrier(3)

    def racer() -> None:
        handle = another_handle(warehouse)
        leases = Leases(handle, holder_id("thread"), ttl_seconds=30)
        leases.ensure_table()
        barrier.wait()
        try:
            for _ in range(40):
                attempts["n"] += 1
                lease = leases.try_acquire(job)
                if lease is None:
                    continue
                started = time.monotonic_ns()
                time.sleep(0.005)
                intervals.append((leases.holder, started, time.monotonic_ns()))
                lease.release()
        finally:
            handle.close()

    threads = [threading.Thread(target=racer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert len(intervals) >= 10                      # the job did run, many times …
    assert len({holder for holder, _, _ in intervals}) >= 2   # … by more than one holder
    assert_no_overlap(intervals)
    # Every term is stored once: the dedup token let exactly one claim of each in.
    per_term = warehouse.query("SELECT term, count() FROM job_leases WHERE job = {j:String} "
                               "GROUP BY term HAVING count() > 1", {"j": job}).rows
    assert per_term == []


@pytest.mark.server
def test_two_processes_racing_never_hold_it_at_once(clickhouse_url: str, tmp_path: Path
                                                     ) -> None:
    from tests.warehouse_backends import ServerDatabases

    databases = ServerDatabases(clickhouse_url)
    try:
        warehouse = databases.open()
        Leases(warehouse).ensure_table()
        url = warehouse.url  # type: ignore[attr-defined]
        out = tmp_path / "intervals.txt"
        workers = [subprocess.Popen([sys.executable, "-m", "tests.lease_race_worker", url,
                                     "nightly", "60", str(out)], cwd=REPO_ROOT)
                   for _ in range(2)]
        for worker in workers:
            assert worker.wait(timeout=300) == 0
        intervals = [(h, int(a), int(b)) for h, a, b in
                     (line.split() for line in out.read_text().splitlines())]
        assert len(intervals) >= 10
        assert len({holder for holder, _, _ in intervals}) == 2
        assert_no_overlap(intervals)
    finally:
        databases.close()


def test_a_holder_that_stops_renewing_is_taken_over_after_its_ttl(warehouse: Warehouse
                                                                   ) -> None:
    dead = Leases(warehouse, "dead", ttl_seconds=1.5)
    alive = Leases(another_handle(warehouse), "alive", ttl_seconds=30)
    assert dead.try_acquire("models") is not None
    started = time.monotonic()
    assert alive.try_acquire("models") is None
    current = alive.current("models")
    assert current is not None and current["holder"] == "dead" and current["live"]
    lease = None
    while lease is None and time.monotonic() - started < 30:
        time.sleep(0.1)
        lease = alive.try_acquire("models")
    assert lease is not None
    assert time.monotonic() - started >= 1.2          # not before the ttl ran out
    # The old holder comes back: its renewal is refused and it knows it lost.
    stale = dead.try_acquire("models")
    assert stale is None
    alive.warehouse.close()


def test_renewal_keeps_it_and_a_late_renewal_is_lost(warehouse: Warehouse) -> None:
    first = Leases(warehouse, "first", ttl_seconds=1.0)
    second = Leases(another_handle(warehouse), "second", ttl_seconds=30)
    lease = first.try_acquire("segments")
    assert lease is not None
    with lease.keep_alive():          # renewed every ttl/3: alive past its ttl
        time.sleep(2.0)
        assert second.try_acquire("segments") is None
    # Not renewed any more: once expired, taken; the late renewal says it lost.
    time.sleep(1.2)
    assert second.try_acquire("segments") is not None
    assert lease.renew() is False and lease.lost
    second.warehouse.close()


def test_release_with_keep_holds_others_off_but_not_the_holder(warehouse: Warehouse) -> None:
    mine = Leases(warehouse, "mine", ttl_seconds=30)
    other = Leases(another_handle(warehouse), "other", ttl_seconds=30)
    lease = mine.try_acquire("export/2024-03-07")
    assert lease is not None
    lease.release(keep_seconds=60)
    assert other.try_acquire("export/2024-03-07") is None
    again = mine.try_acquire("export/2024-03-07")
    assert again is not None
    again.release()                   # keep 0: free at once
    assert other.try_acquire("export/2024-03-07") is not None
    other.warehouse.close()


@pytest.mark.server
def test_a_killed_process_loses_its_lease_after_the_ttl(clickhouse_url: str) -> None:
    from tests.warehouse_backends import ServerDatabases

    databases = ServerDatabases(clickhouse_url)
    holder = None
    try:
        warehouse = databases.open()
        Leases(warehouse).ensure_table()
        holder = subprocess.Popen([sys.executable, "-m", "tests.lease_race_worker",
                                   warehouse.url, "models", "hold", "-", "2"],  # type: ignore[attr-defined]
                                  cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waiting = Leases(warehouse, "waiting", ttl_seconds=30)
        time.sleep(3.0)               # past its 2 s ttl: still held, it renews
        assert waiting.try_acquire("models") is None
        holder.kill()
        holder.wait(timeout=10)
        killed = time.monotonic()
        lease = None
        while lease is None and time.monotonic() - killed < 30:
            time.sleep(0.1)
            lease = waiting.try_acquire("models")
        assert lease is not None
        assert time.monotonic() - killed < 5          # about the ttl, not forever
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
        databases.close()


def test_an_on_demand_model_run_waits_its_turn_behind_a_scheduled_one(
        warehouse: Warehouse, tmp_path: Path) -> None:
    """POST /v1/admin/models/run and `funnelhouse models run` on a server warehouse take
    the `models` lease that serve's scheduler takes: 409 job_running while another holds it."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from funnelhouse.api import admin
    from funnelhouse.cli.client import ClientError, LocalClient
    from funnelhouse.config import PACKAGE_ROOT
    from funnelhouse.warehouse.migrate import migrate
    from tests.conftest import ADMIN_TOKEN, make_settings

    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")
    # The CLI's settings name the same warehouse: the folder, or the server database.
    settings = make_settings(tmp_path, clickhouse_url=getattr(warehouse, "url", ""))
    mine = Leases(warehouse, holder_id("serve-a"), ttl_seconds=30)
    app = Starlette(routes=admin.routes(settings, warehouse, threading.Lock(), mine))
    other = another_handle(warehouse)
    scheduled = Leases(other, holder_id("serve-b"), ttl_seconds=30)
    admin_header = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TestClient(app) as client:
        lease = scheduled.try_acquire("models")
        assert lease is not None
        refused = client.post("/v1/admin/models/run", json={}, headers=admin_header)
        assert refused.status_code == 409 and refused.json()["reason"] == "job_running"
        assert "serve-b" in refused.json()["error"]
        local = LocalClient(settings)  # the CLI's way on the warehouse itself
        try:
            with pytest.raises(ClientError) as cli_refused:
                local.models_run(progress=lambda line: None)
        finally:
            local.close()
        assert cli_refused.value.reason == "job_running"
        lease.release()
        ran = client.post("/v1/admin/models/run", json={}, headers=admin_header)
        assert ran.status_code == 200, ran.text
        assert ran.json()["runs"]
    latest = mine.current("models")
    other.close()  # chdb serves one folder per process: the next module opens another
    assert latest is not None and latest["holder"] == mine.holder and not latest["live"]
