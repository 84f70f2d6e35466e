"""The scaled topology on one machine: HTTP warehouse, Kafka, migrate, collector, loaders, serve."""

# Shared by tests/test_scaled_topology.py and the demo command scripts/scaled. Every
# role runs as its production entry point (`python -m funnelhouse.cli <role>`) in a
# process of its own, configured only through the environment, as in docker-compose.
# The warehouse is a ClickHouse server named by a URL: a real one, or the chdb-backed
# HTTP test fixture (tests/clickhouse_http_fixture.py) on machines that have none.

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from funnelhouse.config import REPO_ROOT

T = TypeVar("T")


def _die_with_parent() -> None:
    # In the child before exec: the kernel kills it if the parent dies, so a crashed
    # test run leaves no collector, loader or serve behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RoleDied(RuntimeError):
    """A role's process exited while it was waited for."""


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
        except RoleDied:
            raise
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
    `<clickhouse_url>/<database>`.
    """

    root: Path
    bootstrap: str
    clickhouse_url: str
    write_keys: str
    admin_token: str
    database: str = "funnelhouse"
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
        return f"{self.clickhouse_url.rstrip('/')}/{self.database}"

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
        response = httpx.post(self.clickhouse_url.rstrip("/") + "/", timeout=60,
                              content=f"CREATE DATABASE IF NOT EXISTS {self.database}")
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
                raise RoleDied(f"{role.name} exited {role.process.returncode}:\n"
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
            "database": self.database, "default_format": "TabSeparated"}, content=query, timeout=60)
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


# -- the demo command: scripts/scaled -----------------------------------------------------

DEMO_HELP = """Start the scaled deployment on this machine, for demos: Apache Kafka (the local
broker scripts/kafka runs), `funnelhouse migrate` once, a collector with N uvicorn
workers, N loaders in one consumer group, and `funnelhouse serve` (APIs, console,
scheduler), all against one ClickHouse server over HTTP. Ctrl-C stops everything.

The warehouse: FUNNELHOUSE_CLICKHOUSE_URL (http://user:password@host:8123/database) names
a real ClickHouse server to use. Without it, a stand-in is started: the embedded engine
(chdb) behind ClickHouse's HTTP interface, the TEST FIXTURE tests/clickhouse_http_fixture.py.
It stands in for a ClickHouse server on machines that have none (no modern server package
installs here); it is not a server to run in production."""


def split_clickhouse_url(url: str) -> tuple[str, str]:
    """(base URL without the database, database) of FUNNELHOUSE_CLICKHOUSE_URL."""
    parts = urlsplit(url)
    database = parts.path.strip("/") or "funnelhouse"
    return urlunsplit(parts._replace(path="", query="", fragment="")), database


@contextmanager
def stand_in_warehouse(data_dir: Path, port: int) -> Iterator[str]:
    """The chdb-backed HTTP test fixture on `port`; its base URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.parent / "clickhouse-http.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.clickhouse_http_fixture", str(data_dir), "--port",
         str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT,
        start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"the HTTP warehouse did not start; see {log.name}")
        yield line.split(" ", 1)[1].strip()
    finally:
        process.stdin.close()  # it shuts down on EOF
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _credentials(data_dir: Path) -> dict[str, str]:
    # Kept in the data folder so a restart keeps the keys the demo's pages already use.
    path = data_dir / "scaled.json"
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    saved = {"write_key": "wk_" + secrets.token_hex(8),
             "server_key": "sk_" + secrets.token_urlsafe(18),
             "admin_token": secrets.token_urlsafe(24)}
    path.write_text(json.dumps(saved))
    path.chmod(0o600)
    return saved


def main(argv: list[str] | None = None) -> int:
    from funnelhouse.queue.kafka_broker import KafkaBroker

    parser = argparse.ArgumentParser(prog="scripts/scaled", description=DEMO_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(".funnelhouse-scaled"),
                        help="where Kafka, the stand-in warehouse and the roles keep their "
                             "state (default ./.funnelhouse-scaled)")
    parser.add_argument("--port", type=int, default=8080, help="collector port (8080)")
    parser.add_argument("--serve-port", type=int, default=8081, help="serve port (8081)")
    parser.add_argument("--warehouse-port", type=int, default=8123,
                        help="the stand-in warehouse's HTTP port (8123)")
    parser.add_argument("--workers", type=int, default=2, help="collector workers (2)")
    parser.add_argument("--loaders", type=int, default=2, help="loader processes (2)")
    parser.add_argument("--partitions", type=int, default=3,
                        help="partitions of the events topic, made at first start (3)")
    parser.add_argument("--models-interval", type=int, default=60,
                        help="seconds between serve's model refreshes (60)")
    options = parser.parse_args(argv)
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    creds = _credentials(data_dir)
    write_keys = os.environ.get("FUNNELHOUSE_WRITE_KEYS") or (
        f"{creds['write_key']}:web,{creds['server_key']}:backend:server")
    admin_token = os.environ.get("FUNNELHOUSE_ADMIN_TOKEN") or creds["admin_token"]

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with ExitStack() as stack:
        broker = KafkaBroker(data_dir / "kafka")
        print("Apache Kafka: fetching (first start only) and starting …", flush=True)
        broker.fetch()
        bootstrap = broker.start(timeout=120)
        stack.callback(broker.stop)
        real = os.environ.get("FUNNELHOUSE_CLICKHOUSE_URL")
        if real:
            base, database = split_clickhouse_url(real)
            shown = f"{urlsplit(base).hostname} (FUNNELHOUSE_CLICKHOUSE_URL)"
        else:
            base = stack.enter_context(stand_in_warehouse(data_dir / "warehouse-http",
                                                          options.warehouse_port))
            database = "funnelhouse"
            shown = f"{base} (the chdb-backed stand-in: a test fixture, not a server)"
        topology = Topology(data_dir / "roles", bootstrap=bootstrap, clickhouse_url=base,
                            write_keys=write_keys, admin_token=admin_token, database=database,
                            partitions=options.partitions,
                            models_interval_seconds=options.models_interval,
                            segments_interval_minutes=60, detach=True)
        stack.callback(topology.stop)
        topology.create_database()
        print(topology.migrate().strip(), flush=True)
        topology.start_collector(options.port, workers=options.workers)
        for n in range(options.loaders):
            topology.start_loader(f"loader-{n + 1}", options.port + 1000 + n)
        topology.start_serve(options.serve_port)
        collector = f"http://127.0.0.1:{options.port}"
        serve = f"http://127.0.0.1:{options.serve_port}"
        keys = [item.split(":") for item in write_keys.split(",")]
        key = keys[0][0]
        server_key = next((k[0] for k in keys if k[2:3] == ["server"]), "SERVER_KEY")
        print(f"""
funnelhouse, scaled, on this machine (state and logs in {data_dir})
  collector:               {collector}   ({options.workers} workers)   write key: {key}
  Kafka:                   {bootstrap}   events topic: {options.partitions} partitions
  loaders:                 {options.loaders}, /metrics on ports {options.port + 1000}…
  warehouse:               {shown}
  serve:                   {serve}   console: {serve}/console/
  admin token:             {admin_token}

Send events:
  curl -s -u {key}: {collector}/v1/track -H 'Content-Type: application/json' \\
    -d '{{"event":"click","anonymousId":"a1","properties":{{"element":"#buy"}}}}'
  .venv/bin/funnelhouse demo --url {collector} --write-key {server_key}
Ctrl-C stops everything.""", flush=True)
        while not stopping:
            dead = [role for role in topology.roles
                    if role.name != "migrate" and not role.alive]
            if dead:
                for role in dead:
                    print(f"{role.name} exited {role.process.returncode}; its log: {role.log}",
                          file=sys.stderr)
                return 1
            time.sleep(0.5)
        print("stopping: collector, loaders (they load what is queued), serve, Kafka …",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
