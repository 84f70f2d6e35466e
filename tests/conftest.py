"""Shared fixtures: settings on a temp data folder, an in-process collector, a real `up`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.testclient import TestClient

from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.config import PACKAGE_ROOT, Limits, Settings, WriteKey
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.warehouse.chdb import ChdbWarehouse
from funnelhouse.warehouse.migrate import migrate
from tests.parallel_runs import (  # noqa: F401 - hooks, used by name
    pytest_collection_modifyitems,
    pytest_xdist_make_scheduler,
)
from tests.warehouse_backends import (  # noqa: F401 - fixtures, used by name
    backend,
    clickhouse_url,
    make_warehouse,
)

# Every `up` a test starts registers itself in the per-user list of running instances;
# the test run keeps that list to itself instead of the user's (tests that look for
# instances set their own folder), and each xdist worker to itself too: a command
# without --data-dir must not find another worker's `up`.
_instances = os.environ.setdefault("FUNNELHOUSE_INSTANCES_DIR",
                                   tempfile.mkdtemp(prefix="funnelhouse-test-instances-"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["FUNNELHOUSE_INSTANCES_DIR"] = str(
        Path(_instances) / os.environ["PYTEST_XDIST_WORKER"])

BROWSER_KEY = "wk_browser"
SERVER_KEY = "sk_server"
ORIGIN_KEY = "wk_origin"
LIMITED_KEY = "wk_limited"
STRICT_KEY = "wk_strict"
ADMIN_TOKEN = "admintok"
ALLOWED_ORIGIN = "https://shop.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_settings(data_dir: Path, **changes: Any) -> Settings:
    keys = (
        WriteKey(BROWSER_KEY, "web", "browser"),
        WriteKey(SERVER_KEY, "backend", "server"),
        WriteKey(ORIGIN_KEY, "shop", "browser", allowed_origins=(ALLOWED_ORIGIN,)),
        WriteKey(LIMITED_KEY, "limited", "browser", rate_limit=5),
        WriteKey(STRICT_KEY, "strict", "browser", unknown_events="reject",
                 extra_properties="reject"),
    )
    base = Settings(data_dir=data_dir, write_keys=keys, admin_token=ADMIN_TOKEN,
                    limits=Limits(), loader_batch_seconds=0.1)
    return base.replace(**changes) if changes else base


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[ChdbWarehouse]:
    """An embedded warehouse with every migration applied (a module may define its own).
    chdb serves one data folder per process: closed so the next test can open its own."""
    wh = ChdbWarehouse(tmp_path / "wh")
    migrate(wh, PACKAGE_ROOT / "sql" / "migrations")
    yield wh
    wh.close()


@pytest.fixture
def event_log(settings: Settings) -> Iterator[EventLog]:
    log = EventLog(settings.queue_path)
    yield log
    log.close()


@pytest.fixture
def client(settings: Settings, event_log: EventLog) -> Iterator[TestClient]:
    """The collector app over the embedded queue, in process (no warehouse)."""
    app = create_app(settings, EmbeddedSink(EventLog(settings.queue_path)))
    with TestClient(app) as test_client:
        yield test_client


def queued_rows(log: EventLog, stream: str = "events") -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for _, r in log.read(0, 1_000_000) if r.stream == stream]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1) -> Any:  # type: ignore[no-untyped-def]
    """Poll until predicate() is truthy; the value it returned, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Funnelhouse:
    """A real `funnelhouse up` process on a free port, for socket-level and crash tests."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FUNNELHOUSE_WRITE_KEYS": f"{BROWSER_KEY}:web,{SERVER_KEY}:backend:server",
            "FUNNELHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
            "FUNNELHOUSE_LOADER_BATCH_SECONDS": "0.1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"up-{self.port}.log"

    def start(self, timeout: float = 60) -> Funnelhouse:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "funnelhouse.cli", "up", "--data-dir", str(self.data_dir),
             "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"funnelhouse up exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"funnelhouse up did not start:\n{self.log_path.read_text()[-3000:]}")

    def post(self, path: str, body: Any, key: str = BROWSER_KEY, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, auth=(key, ""), timeout=30, **kwargs)

    def sql(self, query: str) -> list[dict[str, Any]]:
        response = httpx.post(f"{self.url}/v1/sql", json={"sql": query}, timeout=60,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        """Ctrl-C, as a person would; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def funnelhouse_up(tmp_path: Path) -> Iterator[Funnelhouse]:
    instance = Funnelhouse(tmp_path / "data").start()
    yield instance
    instance.stop()


def track(event: str = "click", anonymous_id: str = "anon-1", **fields: Any) -> dict[str, Any]:
    """A valid track message in Segment's camelCase form."""
    properties = fields.pop("properties", None)
    if properties is None:
        properties = {"element": "#buy", "element_text": "Buy"} if event == "click" else {}
    return {"type": "track", "event": event, "anonymousId": anonymous_id,
            "messageId": fields.pop("messageId", f"m-{time.monotonic_ns()}"),
            "properties": properties, **fields}


@contextmanager
def every_handle_closed() -> Iterator[None]:
    """Close every chdb handle opened inside (an app opens read-only ones of its own):
    chdb serves one folder per process, and the next test module opens another."""
    opened: list[ChdbWarehouse] = []
    real_init = ChdbWarehouse.__init__

    def recording_init(self: ChdbWarehouse, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ChdbWarehouse, "__init__", recording_init)
        try:
            yield
        finally:
            for handle in reversed(opened):
                try:
                    handle.close()
                except Exception:  # noqa: BLE001 - already closed
                    pass
