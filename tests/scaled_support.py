"""The scaled topology on one machine: HTTP warehouse, Kafka, migrate, collector, loaders, serve."""

# Shared by tests/test_scaled_topology.py and the demo command scripts/scaled. Every
# role runs as its production entry point (`python -m funnelhouse.cli <role>`) in a
# process of its own, configured only through the environment, as in docker-compose.
# The warehouse is a ClickHouse server named by a URL: a real one, or the chdb-backed
# HTTP test fixture (tests/clickhouse_http_fixture.py) on machines that have none.

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from funnelhouse.config import REPO_ROOT

T = TypeVar("T")
DATABASE = "funnelhouse"


def _die_with_parent() -> None:
    # In the child before exec: the kernel kills it if the parent dies, so a crashed
    # test run leaves no collector, loader or serve behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.25,
             what: str = "condition") -> T:
    """Poll until `predicate()` is truthy (exceptions count as not yet); its value."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a process still starting refuses connections
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s"
                               + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def answers(url: str, **kwargs: Any) -> bool:
    """True when `url` answers 200."""
    try:
        return httpx.get(url, timeout=3, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Role:
    """One started process of the topology and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Topology:
    """Starts the roles of the scaled deployment against one Kafka and one warehouse URL.

    `clickhouse_url` is the server's base URL (no database); the roles use
    `<clickhouse_url>/funnelhouse`.
    """

    root: Path
    bootstrap: str
    clickhouse_url: str
    write_keys: str
    admin_token: str
    partitions: int = 3
    topic_prefix: str = "funnelhouse"
    group: str = "funnelhouse-loader"
    models_interval_seconds: int = 5
    segments_interval_minutes: float = 0.1
    detach: bool = False  # own session: Ctrl-C in a terminal reaches only the launcher
    extra_env: dict[str, str] = field(default_factory=dict)
    roles: list[Role] = field(default_factory=list)

    @property
    def warehouse_url(self) -> str:
        return f"{self.clickhouse_url.rstrip('/')}/{DATABASE}"

    def env(self, name: str, **extra: str) -> dict[str, str]:
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "FUNNELHOUSE_DATA_DIR": str(data_dir),
            "FUNNELHOUSE_WRITE_KEYS": self.write_keys,
            "FUNNELHOUSE_ADMIN_TOKEN": self.admin_token,
            "FUNNELHOUSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "FUNNELHOUSE_KAFKA_TOPIC_EVENTS": f"{self.topic_prefix}.events",
            "FUNNELHOUSE_KAFKA_TOPIC_INVALID": f"{self.topic_prefix}.invalid",
            "FUNNELHOUSE_KAFKA_GROUP": self.group,
            "FUNNELHOUSE_KAFKA_PARTITIONS": str(self.partitions),
            "FUNNELHOUSE_CLICKHOUSE_URL": self.warehouse_url,
            "FUNNELHOUSE_LOADER_BATCH_SECONDS": "0.2",
            "FUNNELHOUSE_MODELS_INTERVAL_SECONDS": str(self.models_interval_seconds),
            "FUNNELHOUSE_SEGMENTS_INTERVAL_MINUTES": str(self.segments_interval_minutes),
            **self.extra_env,
            **extra,
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str],
              port: int | None = None) -> Role:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "funnelhouse.cli", *args], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                preexec_fn=None if self.detach else _die_with_parent,
                start_new_session=self.detach)
        role = Role(name, process, log, port)
        self.roles.append(role)
        return role

    # -- the steps, in the order a deployment runs them -------------------------------

    def create_database(self) -> None:
        """The database the roles use (a real server's CLICKHOUSE_DB does this)."""
        response = httpx.post(self.clickhouse_url.rstrip("/") + "/",
                              content=f"CREATE DATABASE IF NOT EXISTS {DATABASE}", timeout=60)
        response.raise_for_status()

    def migrate(self, timeout: float = 180) -> str:
        """The one-shot `funnelhouse migrate`; its output. Raises if it fails."""
        role = self.spawn("migrate", ["migrate"], self.env("migrate"))
        code = role.process.wait(timeout=timeout)
        output = role.log.read_text(errors="replace")
        if code != 0:
            raise RuntimeError(f"funnelhouse migrate exited {code}:\n{output[-3000:]}")
        return output

    def start_collector(self, port: int, workers: int = 2, timeout: float = 90) -> Role:
        role = self.spawn("collector", ["collector", "--workers", str(workers), "--host",
                                        "127.0.0.1", "--port", str(port)],
                          self.env("collector"), port)
        self._wait_up(role, f"http://127.0.0.1:{port}/readyz", timeout)
        return role

    def start_loader(self, name: str, metrics_port: int, timeout: float = 90) -> Role:
        role = self.spawn(name, ["loader"],
                          self.env(name, FUNNELHOUSE_LOADER_PORT=str(metrics_port)), metrics_port)
        self._wait_up(role, f"http://127.0.0.1:{metrics_port}/healthz", timeout)
        return role

    def start_serve(self, port: int, timeout: float = 120) -> Role:
        role = self.spawn("serve", ["serve", "--host", "127.0.0.1", "--port", str(port)],
                          self.env("serve"), port)
        self._wait_up(role, f"http://127.0.0.1:{port}/healthz", timeout)
        return role

    def _wait_up(self, role: Role, url: str, timeout: float) -> None:
        def up() -> bool:
            if not role.alive:
                raise RuntimeError(f"{role.name} exited {role.process.returncode}:\n"
                                   f"{role.log.read_text(errors='replace')[-3000:]}")
            return answers(url)

        try:
            wait_for(up, timeout, what=f"{role.name} answering {url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{role.log.read_text(errors='replace')[-3000:]}") from exc

    # -- looking in ------------------------------------------------------------------

    def loader_metric(self, role: Role, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{role.port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query on the warehouse over its HTTP interface (TabSeparated)."""
        response = httpx.post(self.clickhouse_url.rstrip("/") + "/", params={
            "database": DATABASE, "default_format": "TabSeparated"}, content=query, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"{query!r}: {response.status_code} {response.text[:500]}")
        return [line.split("\t") for line in response.text.splitlines()]

    def logs(self, tail: int = 4000) -> str:
        """The end of every role's log, for a failed test's report."""
        return "\n".join(f"----- {role.name} (exit {role.process.poll()}) -----\n"
                         + role.log.read_text(errors="replace")[-tail:]
                         for role in self.roles)

    # -- stopping --------------------------------------------------------------------

    def stop(self, timeout: float = 45) -> None:
        """Collectors first (they flush to Kafka), then loaders (they load what is left),
        then the rest; SIGKILL whatever has not exited by `timeout`."""
        order = {"collector": 0, "serve": 2, "migrate": 3}
        for role in sorted(self.roles, key=lambda r: order.get(r.name, 1)):
            if role.alive:
                role.process.send_signal(signal.SIGTERM)
                try:
                    role.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    role.process.kill()
                    role.process.wait(timeout=10)
