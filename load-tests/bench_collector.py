"""Collector benchmark: the real collector beside a bare endpoint, in one run, on this machine.

    python load-tests/bench_collector.py            # 10 s per measurement
    python load-tests/bench_collector.py --quick    # 3 s per measurement
    python load-tests/bench_collector.py --workers 1 --modes single

Servers, each with 1 and with 2 workers (uvicorn, uvloop + httptools):
  bare       load-tests/bare_endpoint.py under stock uvicorn: reads the body, answers 204.
             The ceiling.
  collector  `funnelhouse collector`, as it ships (settings from env): parse, normalise,
             validate against the tracking plan, enrich, and append durably (SQLite WAL,
             synchronous=FULL, group commit) to the embedded queue before answering. No
             loader, no warehouse.

Load: wrk (Debian package; installed with apt-get if missing) with a Lua script that
POSTs Segment-style click events, each with a unique messageId (so the collector's dedup
window never skips work), either one event per request to /v1/track or 50 per request
to /v1/batch. wrk runs one thread so it takes as little CPU from the servers as it can;
its own CPU use is reported. Each measurement is preceded by a short warm-up.

Printed: events/s and p50/p99 latency per server, worker count and request shape, the
servers' CPU time per event (all their processes, read from /proc: the figure other work
on a shared machine skews least), and the ratio collector/bare. After each collector run
the queue is counted: every request wrk saw answered must have left its events in the
log (else the run is marked invalid).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
WRITE_KEY = "wk_bench"
BATCH = 50

# One realistic browser event (~600 bytes); MESSAGE_ID is replaced per event by wrk.
EVENT = {
    "type": "track", "event": "click", "messageId": "MESSAGE_ID", "anonymousId":
    "a1b2c3d4-5e6f-4a0b-9c8d-7e6f5a4b3c2d", "timestamp": "TIMESTAMP",
    "properties": {"element": "#add-to-cart", "elementText": "Add to cart",
                   "elementType": "button", "productId": "sku-1234", "x": 412, "y": 988},
    "context": {
        "page": {"url": "https://shop.example/p/sku-1234?utm_source=newsletter&utm_medium=email"
                        "&utm_campaign=spring", "path": "/p/sku-1234",
                 "title": "Trail shoe", "referrer": "https://www.google.com/"},
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
                     " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "library": {"name": "funnelhouse.js", "version": "1.0.0"},
        "locale": "de-DE", "timezone": "Europe/Berlin", "sessionId": "s-8f7e6d",
    },
}

LUA = r"""
-- Segment-style POSTs with a unique messageId per event.
local head, tail, path, per_request, batch
local counter = 0
local prefix = "w"

function setup(thread)
  thread:set("thread_prefix", string.format("%d-%d", os.time(), math.random(1, 1e9)))
end

function init(args)
  path, per_request = args[1], tonumber(args[2])
  batch = path == "/v1/batch"
  prefix = thread_prefix or prefix
  head, tail = [==[HEAD]==], [==[TAIL]==]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = [==[AUTH]==]
end

function request()
  local parts = {}
  for i = 1, per_request do
    counter = counter + 1
    parts[i] = head .. prefix .. "-" .. counter .. tail
  end
  local body
  if batch then
    body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  else
    body = parts[1]
  end
  return wrk.format("POST", path, nil, body)
end
"""


@dataclass
class Measurement:
    server: str
    workers: int
    mode: str
    events_per_request: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    wrk_cpu: float            # share of one core wrk used
    stored_ok: bool | None    # collector only: every answered request's events in the log
    load: float = 0.0         # 1-minute load average when the measurement started
    # Server CPU (all its processes) per event answered: what an event costs, which other
    # work on the machine changes far less than it changes events/s.
    cpu_us_per_event: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.requests_per_s * self.events_per_request


# ---------------------------------------------------------------- wrk

def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        print(f"wrk: {found}")
        return found
    print("wrk not found: installing the Debian package (apt-get install -y wrk) …", flush=True)
    install = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0:
        install = ["sudo", "-n", *install]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*install[:-3], "update"], stdout=subprocess.DEVNULL, check=False)
        subprocess.run(install, stdout=subprocess.DEVNULL, check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk could not be installed")
    return found


def write_lua(folder: Path) -> Path:
    event = json.dumps(EVENT, separators=(",", ":")).replace(
        "TIMESTAMP", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
    head, tail = event.split("MESSAGE_ID")
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    script = LUA.replace("HEAD", head).replace("TAIL", tail).replace("AUTH", auth)
    path = folder / "post.lua"
    path.write_text(script)
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(wrk: str, lua: Path, url: str, path: str, per_request: int, seconds: float,
            connections: int) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "--timeout", "10s", "-s", str(lua), url, "--", path, str(per_request)],
        capture_output=True, text=True)
    if done.returncode != 0:
        # wrk says why (a refused connection, a Lua error) on its own output: keep it.
        raise RuntimeError(f"wrk exited {done.returncode} against {url}{path} with "
                           f"{connections} connections:\n{done.stdout[-1500:]}"
                           f"{done.stderr[-1500:]}")
    out = done.stdout
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+[a-z]+)\s*$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {"rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": _ms(latency["50"]), "p99": _ms(latency["99"]), "requests": requests,
            "errors": errors, "cpu": cpu / elapsed, "raw": out}


# ---------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One uvicorn process tree (supervisor + workers), in its own process group."""

    def __init__(self, kind: str, workers: int, data_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        # The bare endpoint under stock uvicorn; the collector as it ships (`funnelhouse
        # collector`: its edge protocol, no proxy-header rewrite, a SO_REUSEPORT socket
        # per worker), not its ASGI app under stock uvicorn, which measured a server
        # nobody runs.
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE),
                   "bare_endpoint:app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(workers), "--log-level", "warning", "--no-access-log",
                   "--loop", "uvloop", "--http", "httptools"] if kind == "bare" else \
            [sys.executable, "-m", "funnelhouse", "collector", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers)]
        env = {**os.environ, "FUNNELHOUSE_DATA_DIR": str(data_dir),
               "FUNNELHOUSE_WRITE_KEYS": f"{WRITE_KEY}:web:browser",
               "FUNNELHOUSE_ADMIN_TOKEN": "bench", "FUNNELHOUSE_KAFKA_BOOTSTRAP": "",
               "FUNNELHOUSE_CLICKHOUSE_URL": ""}
        self.log = open(data_dir.parent / f"{kind}-{workers}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every process of this server's group."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            # After the command name: state ppid pgrp … utime(12th) stime(13th).
            if int(fields[2]) == self.process.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick


def stored_events(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "queue.sqlite3") as db:
        return db.execute("SELECT count(*) FROM log WHERE stream = 0").fetchone()[0]


# ---------------------------------------------------------------- the run

def wait_for_quiet(limit: float, patience: float) -> float:
    """Wait (up to `patience` s) until the 1-minute load average is under `limit`.

    Other work on the machine takes CPU from the servers and skews every figure; the
    load average at the start of each measurement is printed with it.
    """
    deadline = time.monotonic() + patience
    load = os.getloadavg()[0]
    if load >= limit and patience > 0:
        print(f"  load average {load:.1f}: waiting up to {patience:.0f} s for < {limit:g} …",
              flush=True)
    while load >= limit and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def measure(wrk: str, lua: Path, kind: str, workers: int, mode: str, seconds: float,
            warmup: float, connections: int, scratch: Path) -> Measurement:
    data_dir = scratch / f"{kind}-{workers}-{mode}" / "data"
    data_dir.mkdir(parents=True)
    per_request = 1 if mode == "single" else BATCH
    path = "/v1/track" if mode == "single" else "/v1/batch"
    server = Server(kind, workers, data_dir)
    try:
        server.wait_ready()
        warm = run_wrk(wrk, lua, server.url, path, per_request, warmup, connections)
        cpu_before = server.cpu_seconds()
        result = run_wrk(wrk, lua, server.url, path, per_request, seconds, connections)
        server_cpu = server.cpu_seconds() - cpu_before
    finally:
        server.stop()
    stored_ok = None
    if kind == "collector":
        answered = (warm["requests"] + result["requests"]) * per_request
        stored_ok = stored_events(data_dir) >= answered and result["errors"] == 0
    shutil.rmtree(data_dir.parent, ignore_errors=True)
    events = max(1, result["requests"] * per_request)
    return Measurement(kind, workers, mode, per_request, result["rps"], result["p50"],
                       result["p99"], result["requests"], result["errors"], result["cpu"],
                       stored_ok, cpu_us_per_event=server_cpu / events * 1e6)


def table(results: list[Measurement]) -> str:
    by_key = {(m.server, m.workers, m.mode): m for m in results}
    lines = [
        "| workers | request | bare events/s | bare p50 / p99 ms | bare CPU µs/event "
        "| collector events/s | collector p50 / p99 ms | collector CPU µs/event "
        "| collector / bare (events/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workers in sorted({m.workers for m in results}):
        for mode in ("single", "batch"):
            bare = by_key.get(("bare", workers, mode))
            real = by_key.get(("collector", workers, mode))
            if not bare and not real:
                continue
            shape = "1 event" if mode == "single" else f"{BATCH} events"

            def cells(m: Measurement | None) -> tuple[str, str, str]:
                if m is None:
                    return "–", "–", "–"
                note = "" if m.errors == 0 and m.stored_ok is not False else " (!)"
                return (f"{m.events_per_s:,.0f}{note}", f"{m.p50_ms:.2f} / {m.p99_ms:.2f}",
                        f"{m.cpu_us_per_event:,.1f}")

            ratio = f"{real.events_per_s / bare.events_per_s:.2f}" if bare and real else "–"
            lines.append(f"| {workers} | {shape} | {' | '.join(cells(bare))} | "
                         f"{' | '.join(cells(real))} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (10)")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts, e.g. 1,2")
    parser.add_argument("--modes", default="single,batch", help="single and/or batch")
    parser.add_argument("--servers", default="bare,collector")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="wait for the 1-minute load average to drop under this")
    parser.add_argument("--patience", type=float, default=120,
                        help="seconds to wait for a quiet machine before measuring anyway")
    args = parser.parse_args(argv)
    seconds = args.seconds or (3 if args.quick else 10)
    warmup = 1 if args.quick else 2

    # A SIGTERM runs the `finally` blocks, so no server outlives the benchmark.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wrk = ensure_wrk()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"{seconds:g} s per measurement after {warmup:g} s warm-up; wrk -t1 "
          f"-c{args.connections}", flush=True)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as folder:
        scratch = Path(folder)
        lua = write_lua(scratch)
        for workers in (int(w) for w in args.workers.split(",")):
            for mode in args.modes.split(","):
                for kind in args.servers.split(","):
                    load = wait_for_quiet(args.quiet_load, args.patience)
                    m = measure(wrk, lua, kind, workers, mode, seconds, warmup,
                                args.connections, scratch)
                    m.load = load
                    results.append(m)
                    stored = "" if m.stored_ok is None else \
                        f", queue holds every answered event: {m.stored_ok}"
                    print(f"  {kind:9} workers={workers} {mode:6}: {m.requests_per_s:9,.0f} req/s"
                          f" {m.events_per_s:10,.0f} events/s  p50 {m.p50_ms:6.2f} ms"
                          f"  p99 {m.p99_ms:7.2f} ms  errors {m.errors}  wrk CPU "
                          f"{m.wrk_cpu:.0%}  server CPU {m.cpu_us_per_event:,.1f} µs/event"
                          f"  load {m.load:.1f}{stored}", flush=True)
    print()
    print(table(results))
    busiest = max(m.load for m in results)
    print(f"\nhighest 1-minute load average at the start of a measurement: {busiest:.1f} "
          f"({os.cpu_count()} CPUs){'  — figures skewed by other work' if busiest >= 1.5 else ''}")
    if args.json:
        args.json.write_text(json.dumps([{**m.__dict__, "events_per_s": m.events_per_s}
                                         for m in results], indent=2))
    bad = [m for m in results if m.errors or m.stored_ok is False]
    if bad:
        print(f"\n(!) {len(bad)} measurement(s) had errors or unstored events", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
