"""A local single-node Apache Kafka broker: fetch its jars, start, stop, check it.

Used by the Kafka tests and by `funnelhouse up --with-kafka`; `scripts/kafka` is the
command line (`python -m funnelhouse.kafka_broker {fetch|start|stop|status}`).

The jars come from Maven Central through Maven (kafka/pom.xml) into a cache shared by
every data folder: `$FUNNELHOUSE_KAFKA_CACHE/kafka-<version>/libs`, the cache root
defaulting to `~/.cache/funnelhouse`. One data folder holds one broker (KRaft, broker
and controller in one JVM): its settings, its log dirs, its log file and its pid, so
a restart on the same folder keeps the same port and the same topics and offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from string import Template
from types import TracebackType

from funnelhouse.config import REPO_ROOT

KAFKA_VERSION = "4.4.0"
KAFKA_DIR = REPO_ROOT / "kafka"  # the Maven project in a source checkout
HEAP = ["-Xms128m", "-Xmx512m"]
STOP_GRACE_SECONDS = 20.0
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-spawner")


class KafkaBrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


def cache_root() -> Path:
    return Path(os.environ.get("FUNNELHOUSE_KAFKA_CACHE") or Path.home() / ".cache/funnelhouse")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KafkaBroker:
    """One broker process on 127.0.0.1, its state in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, *,
                 version: str = KAFKA_VERSION, die_with_parent: bool = False) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.version = version
        # Tests set this so a crashed test run cannot leave a JVM behind; the CLI
        # does not, since its broker must outlive the command that started it.
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None
        saved = self._saved()
        self.port = port or saved.get("port") or free_port()
        self.controller_port: int = saved.get("controller_port") or free_port()
        if self.controller_port == self.port:
            self.controller_port = free_port()

    # -- paths -------------------------------------------------------------------

    @property
    def libs_dir(self) -> Path:
        return cache_root() / f"kafka-{self.version}" / "libs"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def _state_path(self) -> Path:
        return self.data_dir / "broker.json"

    @property
    def _kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def _saved(self) -> dict:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return {}

    # -- fetch -------------------------------------------------------------------

    def fetch(self) -> Path:
        """Download the broker's jars unless the cache has them; return the libs folder."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaBrokerError("Maven (mvn) is needed to fetch Kafka: apt-get install maven")
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        # Resolve into a temporary folder and rename it into place, so an interrupted
        # or concurrent fetch never leaves a half-filled libs folder that looks done.
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=self.libs_dir.parent))
        command = [mvn, "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"),
                   f"-Dkafka.version={self.version}",
                   "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not (staging / f"kafka_2.13-{self.version}.jar").exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaBrokerError(
                f"fetching Kafka {self.version} failed ({' '.join(command)}):\n"
                f"{(result.stdout + result.stderr)[-4000:]}")
        (staging / ".complete").write_text(self.version)
        try:
            staging.rename(self.libs_dir)
        except OSError:  # another fetch finished first
            shutil.rmtree(staging, ignore_errors=True)
        if not marker.exists():
            raise KafkaBrokerError(f"{self.libs_dir} is incomplete; remove it and fetch again")
        return self.libs_dir

    # -- start -------------------------------------------------------------------

    def start(self, timeout: float = 60) -> str:
        """Start the broker (formatting the data folder the first time); return bootstrap."""
        if self.running():
            return self.bootstrap
        self.fetch()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self._kraft_dir / "meta.properties").exists():
            self._format()
        log = open(self.log_path, "ab")
        try:
            def spawn() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    self._java("kafka.Kafka", str(self._properties_path)),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.data_dir, start_new_session=True,
                    preexec_fn=_die_with_parent if self.die_with_parent else None,
                )

            # The kernel's parent-death signal follows the *thread* that forked, so
            # fork from one that lives as long as the process, not from a passing
            # worker thread (asyncio.to_thread) whose exit would kill the broker.
            process = _SPAWNER.submit(spawn).result() if self.die_with_parent else spawn()
            self._process = process
        finally:
            log.close()
        self._pid_path.write_text(str(process.pid))
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self.bootstrap

    def _write_config(self) -> None:
        template = Template((KAFKA_DIR / "server.properties.template").read_text())
        self._properties_path.write_text(template.substitute(
            port=self.port, controller_port=self.controller_port, log_dir=self._kraft_dir))
        state = {"port": self.port, "controller_port": self.controller_port,
                 "version": self.version}
        self._state_path.write_text(json.dumps(state))

    def _format(self) -> None:
        cluster_id = "-"
        while cluster_id.startswith("-"):  # the tool would take it for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        command = self._java("kafka.tools.StorageTool", "format", "--standalone",
                             "--cluster-id", cluster_id, "--config", str(self._properties_path))
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.data_dir)
        if result.returncode != 0:
            raise KafkaBrokerError(
                f"formatting {self._kraft_dir} failed:\n{(result.stdout + result.stderr)[-4000:]}")

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java", path=os.path.join(os.environ.get("JAVA_HOME", ""), "bin")) \
            or shutil.which("java")
        if java is None:
            raise KafkaBrokerError("Java 17+ is needed for Kafka 4: apt-get install openjdk-17-jre")
        return [java, *HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
                "-cp", str(self.libs_dir / "*"), main, *args]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise KafkaBrokerError(
                    f"Kafka exited with code {self._process.returncode} while starting; "
                    f"{self.log_path} ends with:\n{self.log_tail()}")
            try:
                if _broker_registered(self.bootstrap):
                    return
                last_error = "no broker in the metadata yet"
            except Exception as exc:  # connection refused, broker not ready
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise KafkaBrokerError(
                    f"Kafka on {self.bootstrap} not ready after {timeout:.0f} s "
                    f"({last_error}); {self.log_path} ends with:\n{self.log_tail()}")
            time.sleep(0.25)

    # -- stop --------------------------------------------------------------------

    def stop(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (a clean shutdown, which flushes the logs), SIGKILL if it lingers."""
        pid = self._pid()
        if pid is None:
            return
        _signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            _signal(pid, signal.SIGKILL)
            self._wait_exit(pid, 10)
        self._forget()

    def kill(self) -> None:
        """SIGKILL at once: the crash that fault tests simulate."""
        pid = self._pid()
        if pid is None:
            return
        _signal(pid, signal.SIGKILL)
        self._wait_exit(pid, 10)
        self._forget()

    def restart(self, timeout: float = 60) -> str:
        self.stop()
        return self.start(timeout)

    def running(self) -> bool:
        return self._pid() is not None

    def _pid(self) -> int | None:
        """The broker's pid, if a process of ours for this data folder is alive."""
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        try:
            pid = int(self._pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        # A pid file can outlive its process and the pid be reused: check it is ours.
        if b"kafka.Kafka" in cmdline and str(self._properties_path).encode() in cmdline:
            return pid
        return None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None:
                try:
                    self._process.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                return True
            time.sleep(0.1)
        return False

    def _forget(self) -> None:
        self._process = None
        self._pid_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends SIGKILL when the parent dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _broker_registered(bootstrap: str) -> bool:
    """True once the broker answers a metadata request and lists itself (unfenced)."""
    host, port = bootstrap.rsplit(":", 1)
    # A plain connect first: aiokafka logs every refused connection as an error.
    with socket.create_connection((host, int(port)), timeout=2):
        pass

    async def probe() -> bool:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                connections_max_idle_ms=10000)
        try:
            await client.bootstrap()
            return bool(client.cluster.brokers())
        finally:
            await client.close()

    # A thread with its own loop: start() may be called from inside a running loop.
    result: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(asyncio.wait_for(probe(), 5)))
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/kafka", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=Path(".funnelhouse/kafka"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)

    broker = KafkaBroker(args.data_dir, args.port)
    try:
        if args.command == "fetch":
            started = time.monotonic()
            libs = broker.fetch()
            print(f"Kafka {broker.version} jars in {libs} ({time.monotonic() - started:.1f} s)")
        elif args.command == "start":
            if broker.running():
                print(f"already running: {broker.bootstrap} (pid {broker._pid()})")
                return 0
            started = time.monotonic()
            bootstrap = broker.start(args.timeout)
            print(f"{bootstrap}  (ready in {time.monotonic() - started:.1f} s; "
                  f"log {broker.log_path})")
        elif args.command == "stop":
            was_running = broker.running()
            broker.stop()
            print("stopped" if was_running else "not running")
        else:
            if broker.running():
                print(f"running: {broker.bootstrap} (pid {broker._pid()}, data {broker.data_dir})")
                return 0
            print(f"not running (data {broker.data_dir})")
            return 3
    except KafkaBrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
