"""Today's collector against an earlier one, side by side in one run: the speed-up ratios.

    python load-tests/bench_ab.py --baseline f11ab8c            # 3 rounds, 10 s each
    python load-tests/bench_ab.py --baseline f11ab8c --quick    # 1 round, 4 s each
    python load-tests/bench_ab.py --baseline HEAD~3 --queue kafka

The baseline is a git ref checked out into a temporary worktree; "new" is this checkout
(committed or not). Each is started the way an operator starts it —
`python -m funnelhouse collector --workers 2` with that tree first on PYTHONPATH and
the same venv — on the embedded queue (or on one local Kafka broker with --queue kafka),
and loaded by wrk with the click event of bench_collector.py (a unique messageId each):

  single-64    one event per request to /v1/track, 64 connections
  single-256   the same, 256 connections
  batch-64     50 events per request to /v1/batch, 64 connections

The two alternate (old, new, old, new …) round after round, so drift in the machine's
load hits both alike; the table shows each one's median over the rounds and the ratio
new/old. After every run the queue is counted: each answered request's events must be
in it, else the run is marked (!). Per worker process, the share of the collector's
CPU it used shows whether the workers were evenly loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_collector as bc  # noqa: E402  (the wrk script, event and runner)
from packaging.requirements import Requirement  # noqa: E402

SHAPES = {"single-64": ("/v1/track", 1, 64), "single-256": ("/v1/track", 1, 256),
          "batch-64": ("/v1/batch", bc.BATCH, 64)}


@dataclass
class Run:
    version: str
    shape: str
    events_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    stored_ok: bool
    cpu_us_per_event: float
    worker_shares: list[float] = field(default_factory=list)
    worker_sockets: list[int] = field(default_factory=list)


class Collector:
    """`python -m funnelhouse collector` from one source tree, in its own process group."""

    def __init__(self, tree: Path, data_dir: Path, workers: int, kafka: str,
                 topic: str, site: Path | None = None) -> None:
        self.port = bc.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        # The tree first; then, for a baseline, the libraries it needs that the venv no
        # longer has (`baseline_site`).
        python_path = os.pathsep.join(str(p) for p in (tree, site) if p is not None)
        env = {**os.environ, "PYTHONPATH": python_path, "FUNNELHOUSE_DATA_DIR": str(data_dir),
               "FUNNELHOUSE_WRITE_KEYS": f"{bc.WRITE_KEY}:web:browser",
               "FUNNELHOUSE_ADMIN_TOKEN": "bench", "FUNNELHOUSE_CLICKHOUSE_URL": "",
               "FUNNELHOUSE_KAFKA_BOOTSTRAP": kafka,
               # A topic of its own per run: the count after it is this run's alone.
               "FUNNELHOUSE_KAFKA_TOPIC_EVENTS": topic,
               "FUNNELHOUSE_KAFKA_TOPIC_INVALID": topic + "-invalid"}
        self.log = open(data_dir.parent / "collector.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "funnelhouse", "collector", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers)],
            cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"collector exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as answer:
                    if answer.status == 200:
                        time.sleep(0.5)  # every worker up, not only the first
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"collector did not start; see {self.log.name}")

    def cpu_by_process(self) -> dict[int, float]:
        """CPU seconds (user + system) so far of every process in the group."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.process.pid:
                out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def sockets_by_process(self) -> list[int]:
        """Open sockets per busy process (its connections, plus its listening socket)."""
        counts = []
        for pid in self.cpu_by_process():
            try:
                links = [os.readlink(f"/proc/{pid}/fd/{fd}")
                         for fd in os.listdir(f"/proc/{pid}/fd")]
            except OSError:
                continue
            sockets = sum(link.startswith("socket:") for link in links)
            if sockets > 2:
                counts.append(sockets)
        return sorted(counts, reverse=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def stored(data_dir: Path, kafka: str, topic: str) -> int:
    if kafka:
        from bench_pipeline import kafka_count

        # Acknowledged events are in the topic or, when Kafka answered slower than the
        # ack timeout, in a worker's spool, replayed at its next start.
        return asyncio.run(kafka_count(kafka, [topic])) + spooled(data_dir)
    return bc.stored_events(data_dir)


def spooled(data_dir: Path) -> int:
    total = 0
    for path in data_dir.glob("kafka-spool*.sqlite3"):
        with sqlite3.connect(path) as db:
            total += db.execute("SELECT coalesce(sum(last - first + 1), 0) FROM chunks "
                                "WHERE stream = 0").fetchone()[0]
    return total


def measure(version: str, tree: Path, shape: str, *, wrk: str, lua: Path, seconds: float,
            warmup: float, workers: int, kafka: str, scratch: Path,
            site: Path | None = None) -> Run:
    path, per_request, connections = SHAPES[shape]
    folder = Path(tempfile.mkdtemp(prefix=f"{version}-{shape}-", dir=scratch))
    data_dir = folder / "data"
    data_dir.mkdir()
    topic = f"fh-ab-{folder.name}"
    server = Collector(tree, data_dir, workers, kafka, topic, site)
    try:
        server.wait_ready()
        warm = bc.run_wrk(wrk, lua, server.url, path, per_request, warmup, connections)
        cpu_before = server.cpu_by_process()
        sockets: list[int] = []
        sampler = threading.Timer(seconds / 2,
                                  lambda: sockets.extend(server.sockets_by_process()))
        sampler.start()
        result = bc.run_wrk(wrk, lua, server.url, path, per_request, seconds, connections)
        cpu_after = server.cpu_by_process()
        sampler.join()
    finally:
        server.stop()
    answered = (warm["requests"] + result["requests"]) * per_request
    have = stored(data_dir, kafka, topic)
    used = {pid: cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after}
    total = sum(used.values())
    # The workers are the processes that did the work; the supervisor idles.
    busy = sorted((u for u in used.values() if u > 0.05 * total), reverse=True)
    events = max(1, result["requests"] * per_request)
    shutil.rmtree(folder, ignore_errors=True)
    return Run(version, shape, result["rps"] * per_request, result["p50"], result["p99"],
               result["errors"], have >= answered and result["errors"] == 0,
               total / events * 1e6, [round(u / total, 2) for u in busy] if total else [],
               sockets)


def worktree(ref: str, scratch: Path) -> Path:
    tree = scratch / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                   check=True, capture_output=True)
    return tree


def missing_requirements(tree: Path) -> list[str]:
    """The dependencies `tree` declares that this venv does not satisfy: a library the
    code has since replaced (fastjsonschema, before jsonschema-rs) or pinned otherwise."""
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    missing = []
    for text in project.get("dependencies", []):
        wanted = Requirement(text)
        if wanted.marker is not None and not wanted.marker.evaluate():
            continue
        try:
            installed = metadata.version(wanted.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if not wanted.specifier.contains(installed, prereleases=True):
            missing.append(text)
    return missing


def baseline_site(tree: Path, scratch: Path) -> Path | None:
    """A folder holding what the baseline needs beyond this venv (from PyPI, as setup
    installs), put after the baseline's tree on its PYTHONPATH; None if nothing."""
    missing = missing_requirements(tree)
    if not missing:
        return None
    site = scratch / "baseline-site"
    print(f"baseline needs {', '.join(missing)}: installing into {site}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(site),
                    *missing], check=True)
    return site


def table(runs: list[Run], shapes: list[str]) -> str:
    lines = ["| request shape | old events/s | new events/s | new / old | old p50 / p99 ms "
             "| new p50 / p99 ms | old CPU µs/event | new CPU µs/event | worker CPU shares "
             "old → new | sockets per worker old → new |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for shape in shapes:
        old = [r for r in runs if r.shape == shape and r.version == "old"]
        new = [r for r in runs if r.shape == shape and r.version == "new"]
        if not old or not new:
            continue

        def med(rs: list[Run], attr: str) -> float:
            return statistics.median(getattr(r, attr) for r in rs)

        flag = {v: "" if all(r.stored_ok for r in rs) else " (!)"
                for v, rs in (("old", old), ("new", new))}
        lines.append(
            f"| {shape} | {med(old, 'events_per_s'):,.0f}{flag['old']} | "
            f"{med(new, 'events_per_s'):,.0f}{flag['new']} | "
            f"**{med(new, 'events_per_s') / med(old, 'events_per_s'):.2f}** | "
            f"{med(old, 'p50_ms'):.1f} / {med(old, 'p99_ms'):.1f} | "
            f"{med(new, 'p50_ms'):.1f} / {med(new, 'p99_ms'):.1f} | "
            f"{med(old, 'cpu_us_per_event'):.1f} | {med(new, 'cpu_us_per_event'):.1f} | "
            f"{old[-1].worker_shares} → {new[-1].worker_shares} | "
            f"{old[-1].worker_sockets} → {new[-1].worker_sockets} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git ref of the old collector")
    parser.add_argument("--rounds", type=int, default=None, help="alternations (3)")
    parser.add_argument("--seconds", type=float, default=None, help="per run (10)")
    parser.add_argument("--quick", action="store_true", help="1 round of 4 s runs")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--bootstrap", default="", help="a running broker for --queue kafka "
                        "(else one is started from the cached jars)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (4 if args.quick else 10)
    warmup = 1 if args.quick else 2
    shapes = args.shapes.split(",")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = bc.ensure_wrk()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    broker = None
    try:
        tree = worktree(args.baseline, scratch)
        site = baseline_site(tree, scratch)
        kafka = ""
        if args.queue == "kafka":
            kafka = args.bootstrap
            if not kafka:
                from funnelhouse.queue.kafka_broker import KafkaBroker
                broker = KafkaBroker(scratch / "kafka")
                kafka = broker.start()
        lua = bc.write_lua(scratch)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "funnelhouse"], capture_output=True, text=True).stdout.strip()
        print(f"old: {args.baseline}   new: {commit}{' + uncommitted changes' if dirty else ''}"
              f"   queue: {args.queue}   {args.workers} workers, {os.cpu_count()} CPUs, "
              f"{rounds} round(s) of {seconds:g} s after {warmup:g} s warm-up", flush=True)
        runs: list[Run] = []
        for round_ in range(rounds):
            for shape in shapes:
                for version, source in (("old", tree), ("new", ROOT)):
                    run = measure(version, source, shape, wrk=wrk, lua=lua, seconds=seconds,
                                  warmup=warmup, workers=args.workers, kafka=kafka,
                                  scratch=scratch, site=site if version == "old" else None)
                    runs.append(run)
                    print(f"  round {round_ + 1} {shape:10} {version}: "
                          f"{run.events_per_s:10,.0f} events/s  p50 {run.p50_ms:6.1f} ms  "
                          f"p99 {run.p99_ms:7.1f} ms  errors {run.errors}  "
                          f"CPU {run.cpu_us_per_event:6.1f} µs/event  workers "
                          f"{run.worker_shares} sockets {run.worker_sockets}  "
                          f"stored {run.stored_ok}  "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
        print()
        print(table(runs, shapes))
        bad = [r for r in runs if not r.stored_ok]
        if bad:
            print(f"\n(!) {len(bad)} run(s) had errors or events missing from the queue",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        if broker is not None:
            broker.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(scratch / "baseline")], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
