"""The roles: serve (APIs, console, QA, scheduler; no collecting), migrations run once and
waited for, scheduled jobs never at once across replicas, QA seeing every worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.qa import warehouse_source
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import PACKAGE_ROOT, Settings
from funnelhouse.jobs.scheduler import Scheduler
from funnelhouse.loader.sources.open import make_source
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.server.roles import build_loader
from funnelhouse.server.serve import build_serve_app
from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.lease import Leases
from funnelhouse.warehouse.migrations import (
    MigrationsPending,
    migrate_coordinated,
    pending_migrations,
    shipped_versions,
    wait_for_migrations,
)
from tests.conftest import (
    ADMIN_TOKEN,
    BROWSER_KEY,
    every_handle_closed,
    free_port,
    make_settings,
    wait_until,
)
from tests.warehouse_backends import ServerDatabases, WarehouseMaker

REPO_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = PACKAGE_ROOT / "sql" / "migrations"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def cli(*args: str, env: dict[str, str], timeout: float = 180
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnelhouse.cli", *args], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def role_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "FUNNELHOUSE_DATA_DIR": str(data_dir),
            "FUNNELHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
            "FUNNELHOUSE_WRITE_KEYS": f"{BROWSER_KEY}:web", **extra}


# -- migrations: one-shot migrate, the roles wait -------------------------------------------


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every role, then wait (SIGKILL after 30 s)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

def test_a_loader_on_an_unmigrated_folder_exits_saying_to_run_migrate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    started = time.monotonic()
    loader = cli("loader", env=role_env(data, FUNNELHOUSE_LOADER_PORT=str(free_port())))
    # chdb: nothing else can migrate the folder it holds, so it does not wait.
    assert loader.returncode == 2
    assert "funnelhouse migrate" in loader.stderr
    assert time.monotonic() - started < 60
    # It created no table: the loader no longer migrates.
    warehouse = ChdbWarehouse(data / "warehouse")
    try:
        assert pending_migrations(warehouse, MIGRATIONS) == shipped_versions(MIGRATIONS)
    finally:
        warehouse.close()
    migrated = cli("migrate", env=role_env(data))
    assert migrated.returncode == 0, migrated.stderr
    assert "applied: 0001_events_raw" in migrated.stdout
    assert "nothing (up to date)" in cli("migrate", env=role_env(data)).stdout


@pytest.mark.server
def test_roles_wait_for_migrate_on_a_server_then_start(clickhouse_url: str, tmp_path: Path
                                                       ) -> None:
    databases = ServerDatabases(clickhouse_url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = databases.open().url  # type: ignore[attr-defined]
        loader_port, serve_port = free_port(), free_port()
        env = role_env(tmp_path / "loader", FUNNELHOUSE_CLICKHOUSE_URL=url,
                       FUNNELHOUSE_LOADER_PORT=str(loader_port),
                       FUNNELHOUSE_MIGRATION_WAIT_SECONDS="120")
        # Nobody migrates within a short wait: exit 2, naming the command to run.
        short = cli("serve", "--port", str(serve_port),
                    env={**env, "FUNNELHOUSE_MIGRATION_WAIT_SECONDS": "1"})
        assert short.returncode == 2 and "funnelhouse migrate" in short.stderr
        for args in (["loader"], ["serve", "--port", str(serve_port)]):
            processes.append(subprocess.Popen([sys.executable, "-m", "funnelhouse.cli", *args],
                                              env=env, cwd=REPO_ROOT,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
        time.sleep(3)
        # Waiting, not serving, and not migrating themselves.
        assert all(p.poll() is None for p in processes)
        assert not _answers(f"http://127.0.0.1:{serve_port}/healthz")
        migrated = cli("migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        wait_until(lambda: _answers(f"http://127.0.0.1:{loader_port}/healthz")
                   and _answers(f"http://127.0.0.1:{serve_port}/readyz"), timeout=60)
    finally:
        stop_all(processes)
        databases.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_concurrent_migrate_runs_apply_each_migration_once(make_warehouse: WarehouseMaker,
                                                           tmp_path: Path) -> None:
    first = make_warehouse(tmp_path / "warehouse")
    second = (ChdbWarehouse(first.path) if isinstance(first, ChdbWarehouse)  # type: ignore[attr-defined]
              else type(first)(first.url))  # type: ignore[attr-defined,call-arg]
    applied: list[list[str]] = []
    barrier = threading.Barrier(2)

    def run(warehouse: Warehouse) -> None:
        barrier.wait()
        applied.append(migrate_coordinated(warehouse, MIGRATIONS, wait_seconds=120))

    threads = [threading.Thread(target=run, args=(w,)) for w in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # One run applied everything, the other waited for the lease and found nothing.
    assert sorted(map(len, applied)) == [0, len(shipped_versions(MIGRATIONS))]
    twice = first.query("SELECT version, count() FROM schema_migrations GROUP BY version "
                        "HAVING count() > 1").rows
    assert twice == []
    wait_for_migrations(first, MIGRATIONS, role="test", timeout=0)   # up to date: returns
    second.close()


def test_waiting_for_migrations_gives_up_with_the_command_to_run(tmp_path: Path) -> None:
    warehouse = ChdbWarehouse(tmp_path / "warehouse")
    try:
        with pytest.raises(MigrationsPending, match="funnelhouse migrate"):
            wait_for_migrations(warehouse, MIGRATIONS, role="serve", timeout=0.5)
    finally:
        warehouse.close()


# -- scheduled jobs across replicas --------------------------------------------------------

def test_two_replicas_schedulers_never_run_a_job_at_once(make_warehouse: WarehouseMaker,
                                                         tmp_path: Path) -> None:
    """Two schedulers (as in two `serve` replicas) with the same periodic job, due at every
    tick: leases let one run it at a time, and the job still runs on both over time."""
    warehouse = make_warehouse(tmp_path / "warehouse")
    intervals: list[tuple[str, int, int]] = []

    def replica(name: str) -> None:
        handle = (ChdbWarehouse(warehouse.path) if isinstance(warehouse, ChdbWarehouse)
                  else type(warehouse)(warehouse.url))  # type: ignore[attr-defined,call-arg]
        leases = Leases(handle, name, ttl_seconds=30)
        scheduler = Scheduler(tick_seconds=0, leases=leases)

        def job() -> None:
            started = time.monotonic_ns()
            time.sleep(0.02)
            intervals.append((name, started, time.monotonic_ns()))

        # Due again at once after each run, and its lease kept for 0 s: the replicas
        # contend at every tick.
        scheduler.every("models", 0, job)

        async def drive() -> None:
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                await scheduler.tick()

        asyncio.run(drive())
        assert any(outcome == "held elsewhere" for _, _, outcome in scheduler.history)
        handle.close()

    threads = [threading.Thread(target=replica, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(intervals) >= 10
    assert {name for name, _, _ in intervals} == {"a", "b"}
    ordered = sorted(intervals, key=lambda i: i[1])
    for (_, _, stop), (_, start, _) in zip(ordered, ordered[1:], strict=False):
        assert start >= stop, "both replicas ran the job at once"


def test_a_kept_periodic_lease_keeps_the_other_replica_off_until_the_next_run(
        make_warehouse: WarehouseMaker, tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse")
    ran: list[str] = []
    schedulers = {}
    for name in ("a", "b"):
        scheduler = Scheduler(tick_seconds=0, leases=Leases(warehouse, name, ttl_seconds=30))
        scheduler.every("segments", 2.0, lambda name=name: ran.append(name))
        schedulers[name] = scheduler
    # Both due at once: `a` runs it and keeps the lease for the period (2 s).
    assert asyncio.run(schedulers["a"].tick()) == ["segments"]
    assert asyncio.run(schedulers["b"].tick()) == []     # held: b does not run it again
    assert schedulers["b"].history[-1][2] == "held elsewhere"
    time.sleep(2.2)
    # The period is over: whoever ticks first takes it (b, which was still due).
    assert asyncio.run(schedulers["b"].tick()) == ["segments"]
    assert ran == ["a", "b"]


# -- serve ---------------------------------------------------------------------------------

@pytest.fixture
def migrated(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "serve", models_interval_seconds=1,
                             segments_interval_minutes=0)
    warehouse = ChdbWarehouse(settings.warehouse_dir)
    try:
        migrate_coordinated(warehouse, MIGRATIONS)
    finally:
        warehouse.close()
    return settings


def test_serve_answers_apis_console_and_qa_and_refreshes_models_but_does_not_collect(
        migrated: Settings, tmp_path: Path) -> None:
    settings = migrated
    with every_handle_closed():
        warehouse = ChdbWarehouse(settings.warehouse_dir)
        # Events as a collector and a loader elsewhere would have stored them.
        _collect_and_load(settings, warehouse, [
            {"type": "track", "event": "click", "anonymousId": "a1",
             "properties": {"element": "#buy"}},
            {"type": "track", "event": "click", "anonymousId": "a1",
             "properties": {}}])                        # invalid: no element
        app, part = build_serve_app(settings, warehouse)
        with TestClient(app) as client:
            # Not a collector: no ingest routes.
            assert client.post("/v1/batch", json={"batch": []}).status_code == 404
            assert client.post("/v1/track", json={}).status_code == 404
            assert client.get("/readyz").json() == {"ready": True, "warehouse": "chdb"}
            assert client.get("/v1/meta", headers=AUTH).status_code == 200
            answer = client.post("/v1/sql", json={"sql": "SELECT count() AS n FROM events_raw"},
                                 headers=AUTH)
            assert answer.status_code == 200 and answer.json()["data"] == [{"n": 1}]
            qa = client.get("/v1/debug/events", headers=AUTH).json()["events"]
            assert sorted((e["event"], e["valid"]) for e in qa) == [("click", False),
                                                                    ("click", True)]
            invalid = next(e for e in qa if not e["valid"])
            assert invalid["errors"] and invalid["payload"]["properties"] == {}
            assert invalid["anonymous_id"] == "a1" and invalid["reason"]
            valid = next(e for e in qa if e["valid"])
            assert valid["payload"]["properties"]["element"] == "#buy"
            assert client.get("/v1/debug/events").status_code == 401
            console = client.get("/console/")
            assert console.status_code in (200, 503)      # 503: console not built here
            assert "Content-Security-Policy" in console.headers
            # The scheduler refreshes the models (every second here), under its lease.
            wait_until(lambda: client.get("/v1/meta", headers=AUTH).json()["events_table"]
                       == "behavior_events", timeout=90, interval=0.5)
            funnel = client.post("/v1/analyses/funnel", headers=AUTH,
                                 json={"steps": ["click", "click:element=#buy"],
                                       "window": "1d"})
            assert funnel.status_code == 200, funnel.text
        assert "models" in {name for name, _, ok in part.scheduler.history if ok == "ok"}
        holders = warehouse.query("SELECT DISTINCT holder FROM job_leases "
                                  "WHERE job = 'models'").rows
        assert len(holders) == 1 and holders[0][0].startswith("serve@")
        part.close()
        warehouse.close()


# -- QA across workers ---------------------------------------------------------------------

def _post(client: TestClient, events: list[dict]) -> None:
    response = client.post("/v1/batch", json={"batch": events}, auth=(BROWSER_KEY, ""))
    assert response.status_code in (200, 400), response.text


def _load_all(settings: Settings, warehouse: Warehouse) -> None:
    loader, _ = build_loader(settings, warehouse, make_source(settings))

    async def drain() -> None:
        await loader.source.start()
        try:
            while await loader.load_once():
                pass
        finally:
            await loader.source.stop()

    asyncio.run(drain())


def _collect_and_load(settings: Settings, warehouse: Warehouse, events: list[dict]) -> None:
    """Post `events` through a collector app and load its queue into `warehouse`."""
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app) as client:
        _post(client, events)
    _load_all(settings, warehouse)


def test_one_qa_answer_shows_the_events_of_every_collector_worker(migrated: Settings) -> None:
    settings = migrated
    with every_handle_closed():
        warehouse = ChdbWarehouse(settings.warehouse_dir)
        # Two workers: each its own app, ring and producer (one queue, as uvicorn's
        # workers share one log or one Kafka topic); QA from the warehouse as in serve.
        workers = [create_app(settings, EmbeddedSink(EventLog(settings.queue_path)),
                              qa_sources=[warehouse_source(warehouse.readonly())])
                   for _ in range(2)]
        with TestClient(workers[0]) as one, TestClient(workers[1]) as two:
            _post(one, [{"type": "track", "event": "click", "anonymousId": "w1",
                         "messageId": "from-one", "properties": {"element": "#a"}}])
            _post(two, [{"type": "track", "event": "click", "anonymousId": "w2",
                         "messageId": "from-two", "properties": {}}])   # invalid
            # Each worker's ring knows its own event only (the old QA view) …
            assert _ids(one.get("/v1/debug/events", headers=AUTH)) == {"from-one"}
            _load_all(settings, warehouse)          # … the loader stores both …
            # … and either worker's answer now shows both, each once.
            for client in (one, two):
                answer = client.get("/v1/debug/events", headers=AUTH).json()["events"]
                assert sorted(e["message_id"] for e in answer) == ["from-one", "from-two"]
            newest = max(e["received_at"] for e in one.get(
                "/v1/debug/events", headers=AUTH).json()["events"])
            # Polling with since= the newest: nothing shown twice (ring and warehouse
            # copies of one event carry the same millisecond).
            assert one.get(f"/v1/debug/events?since={newest}", headers=AUTH).json() == {
                "events": []}
            assert _ids(two.get("/v1/debug/events?person=w1", headers=AUTH)) == {"from-one"}
        warehouse.close()


def _ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["message_id"] for e in orjson.loads(response.content)["events"]}


@pytest.mark.server
def test_qa_of_a_two_worker_collector_shows_every_workers_events(clickhouse_url: str,
                                                                 tmp_path: Path) -> None:
    """Real processes: `collector --workers 2` and a loader against a server; whichever
    worker answers, the QA answer holds the events both workers received."""
    databases = ServerDatabases(clickhouse_url)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        url = databases.open().url  # type: ignore[attr-defined]
        port, loader_port = free_port(), free_port()
        env = role_env(tmp_path / "edge", FUNNELHOUSE_CLICKHOUSE_URL=url,
                       FUNNELHOUSE_LOADER_PORT=str(loader_port),
                       FUNNELHOUSE_LOADER_BATCH_SECONDS="0.2")
        assert cli("migrate", env=env).returncode == 0
        logs = open(tmp_path / "roles.log", "ab")  # noqa: SIM115 - closed below
        for args in (["collector", "--workers", "2", "--port", str(port)], ["loader"]):
            processes.append(subprocess.Popen([sys.executable, "-m", "funnelhouse.cli", *args],
                                              env=env, cwd=REPO_ROOT, stdout=logs,
                                              stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/readyz"), timeout=60)
        sent = set()
        for n in range(40):    # a fresh connection each: the two workers share them
            message_id = f"qa-{n}"
            event = {"type": "track", "event": "click", "anonymousId": f"p{n}",
                     "messageId": message_id,
                     "properties": {"element": "#x"} if n % 2 else {}}
            with httpx.Client(timeout=10) as client:
                answer = client.post(f"{base}/v1/track", json=event, auth=(BROWSER_KEY, ""))
            assert answer.status_code in (200, 400)
            sent.add(message_id)

        def every_answer_has_all() -> bool:
            for _ in range(6):
                with httpx.Client(timeout=10) as client:
                    events = client.get(f"{base}/v1/debug/events?limit=1000",
                                        headers=AUTH).json()["events"]
                if {e["message_id"] for e in events} != sent or len(events) != len(sent):
                    return False
            return True

        wait_until(every_answer_has_all, timeout=60, interval=0.5)
    finally:
        stop_all(processes)
        databases.close()
