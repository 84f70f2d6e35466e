"""Pipeline benchmark: collector throughput against the bare-endpoint ceiling (embedded
queue and Kafka side by side), collector RSS under load, end-to-end freshness, loader
rows/s, and a per-stage profile of the collector's ingest path.

Everything runs as real processes on this machine, started and stopped here:

    python load-tests/bench_pipeline.py                # everything, Kafka included
    python load-tests/bench_pipeline.py --quick        # shorter runs, smaller loads
    python load-tests/bench_pipeline.py --only throughput,profile --no-kafka
    python load-tests/bench_pipeline.py --json out.json

Load comes from wrk (Lua-scripted: every event carries a unique messageId, so the
collector's dedup window never shortcuts the work) with realistic Segment messages
from `funnelhouse.demo`. The last line printed is `RESULT_JSON {...}` for bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from funnelhouse.config import Settings  # noqa: E402  (this tree's, first on the path)

SERVER_KEY = "sk_bench"
BROWSER_KEY = "wk_bench"
ADMIN_TOKEN = "bench-admin"
WRITE_KEYS = f"{SERVER_KEY}:backend:server,{BROWSER_KEY}:web:browser"
BATCH = 50
WORKERS = 2


# ---- processes: everything started here is stopped here, even on failure -------------

_STARTED: list[subprocess.Popen[bytes]] = []
_BROKERS: list[Any] = []


def _cleanup() -> None:
    for proc in _STARTED:
        stop_process(proc, grace=5)
    for broker in _BROKERS:
        try:
            broker.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            broker.kill()
    _BROKERS.clear()


def _on_signal(signum: int, frame: Any) -> None:
    _cleanup()
    sys.exit(128 + signum)


atexit.register(_cleanup)


def start_process(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    # Own session: the whole tree (uvicorn's workers) is signalled as one group.
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    log.close()
    _STARTED.append(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    if proc.poll() is None:
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # The group may outlive its leader (a worker still closing): make sure it is gone.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc in _STARTED:
        _STARTED.remove(proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s:\n{log_path.read_text()[-3000:]}")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELHOUSE_")}
    env.update(FUNNELHOUSE_DATA_DIR=str(data_dir), FUNNELHOUSE_WRITE_KEYS=WRITE_KEYS,
               FUNNELHOUSE_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


# ---- memory ------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as fh:
                kids = [int(p) for p in fh.read().split()]
        except OSError:
            kids = []
        found.extend(kids)
        todo.extend(kids)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU so far of these processes (all their threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def broker_pid() -> int | None:
    """The local broker this run started, if any (its CPU is Kafka's share of the cores)."""
    return _BROKERS[0]._pid() if _BROKERS else None


class RssSampler:
    """Samples the RSS of a process tree in the background; keeps the maxima."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.max_process = 0.0      # the largest single process (a worker, or `up`)
        self.max_total = 0.0        # the whole tree at one moment
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            sizes = [rss_mb(p) for p in [self.pid, *descendants(self.pid)]]
            self.max_process = max(self.max_process, *sizes)
            self.max_total = max(self.max_total, sum(sizes))


# ---- load: realistic messages, unique ids, driven by wrk ------------------------------

def sample_messages(count: int = 400) -> list[dict[str, Any]]:
    """Realistic Segment messages (web and app, page/screen/track/identify, a few invalid).

    Of the first 400, one is refused by the plan on purpose (a purchase with no items):
    sent one per request, ≈0.25% of the answers are that 400 — the plan working, not
    an error (a batch answers 200 and lists the refused event)."""
    from funnelhouse.demo.send import demo_messages

    out = []
    for demo in demo_messages(people=60, days=3, seed=5):
        out.append(demo.message)
        if len(out) >= count:
            break
    return out


ID_MARK = "@@ID@@"


def lua_script(messages: list[dict[str, Any]], path: str, per_request: int, run: str) -> str:
    """A wrk script posting `per_request` messages per request, each with a unique id.

    One message per request goes to /v1/<its type>; several go to `path` as a batch."""
    import orjson

    pieces = []
    for message in messages:
        text = orjson.dumps({**message, "messageId": ID_MARK}).decode()
        before, after = text.split(f'"{ID_MARK}"')
        assert "]==]" not in text
        # Singles go to the endpoint of their type (/v1/page, /v1/identify, …), as SDKs do.
        single_path = f"/v1/{message.get('type') or 'track'}"
        pieces.append(f'{{[==[{before}"]==],[==["{after}]==],"{single_path}"}}')
    auth = base64.b64encode(f"{SERVER_KEY}:".encode()).decode()
    return f"""
local t = {{ {",".join(pieces)} }}
local n = #t
local per = {per_request}
local counter = 0
local headers = {{ ["Content-Type"] = "application/json", ["Authorization"] = "Basic {auth}" }}
next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function request()
  counter = counter + 1
  local base = "{run}-" .. tid .. "-" .. counter .. "-"
  if per == 1 then
    local e = t[(counter % n) + 1]
    return wrk.format("POST", e[3], headers, e[1] .. base .. e[2])
  end
  local parts = {{}}
  for i = 1, per do
    local e = t[((counter * per + i) % n) + 1]
    parts[i] = e[1] .. base .. i .. e[2]
  end
  return wrk.format("POST", "{path}", headers, '{{"batch":[' .. table.concat(parts, ",") .. ']}}')
end
"""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is needed for the throughput runs: apt-get install wrk")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
         "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    result: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in", out)
    result["requests"] = int(match.group(1)) if match else 0
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = match.group(1).strip() if match else ""
    return result


# ---- the bare ceiling: a Starlette endpoint that reads the body and answers 204 -------

def bare_app() -> Any:
    """uvicorn --factory bench_pipeline:bare_app"""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(routes=[Route("/v1/{kind}", endpoint, methods=["POST"]),
                             Route("/healthz", health)])


# ---- throughput ---------------------------------------------------------------------

def throughput(work: Path, seconds: float, kafka_bootstrap: str, messages: list[dict[str, Any]],
               wanted: list[str]) -> dict[str, Any]:
    """Singles and 50-event batches against: bare endpoint, collector (embedded, Kafka)."""
    # In the order asked for, so two runs can alternate which queue goes first.
    targets = [(name, kafka_bootstrap if name == "kafka" else "")
               for name in wanted if name in ("bare", "embedded", "kafka")]
    if not kafka_bootstrap:
        targets = [t for t in targets if t[0] != "kafka"]
    results: dict[str, Any] = {}
    for name, bootstrap in targets:
        port = free_port()
        data_dir = work / f"collector-{name}"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = work / f"collector-{name}.log"
        if name == "bare":
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench_pipeline:bare_app",
                   "--app-dir", str(ROOT / "load-tests"), "--port", str(port),
                   "--workers", str(WORKERS), "--log-level", "warning", "--no-access-log"]
            env = base_env(data_dir)
        else:
            cmd = [sys.executable, "-m", "funnelhouse.cli", "collector", "--port", str(port),
                   "--workers", str(WORKERS)]
            extra = {}
            if bootstrap:
                extra = dict(FUNNELHOUSE_KAFKA_BOOTSTRAP=bootstrap,
                             FUNNELHOUSE_KAFKA_TOPIC_EVENTS="bench.collector.events",
                             FUNNELHOUSE_KAFKA_TOPIC_INVALID="bench.collector.invalid")
            env = base_env(data_dir, **extra)
        proc = start_process(cmd, env, log_path)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/healthz", proc, log_path)
            for shape, per, path, conns in (("single", 1, "", 64),
                                            ("batch50", BATCH, "/v1/batch", 32)):
                run = f"{name[0]}{shape[0]}{int(time.time()) % 100000}"
                script = work / f"wrk-{name}-{shape}.lua"
                script.write_text(lua_script(messages, path, per, run))
                run_wrk(url, script, 1, conns)                       # warm-up
                processes = [proc.pid, *descendants(proc.pid)]
                broker = broker_pid() if bootstrap else None
                cpu_before = cpu_seconds(processes), cpu_seconds([broker] if broker else [])
                with RssSampler(proc.pid) as rss:
                    res = run_wrk(url, script, seconds, conns)
                cpu_after = cpu_seconds(processes), cpu_seconds([broker] if broker else [])
                res["events_per_s"] = res["rps"] * per
                events = max(res["requests"] * per, 1)
                # CPU per event of the server's processes, and of the broker beside them:
                # on this one machine both share the two cores.
                res["cpu_us_per_event"] = round((cpu_after[0] - cpu_before[0]) / events * 1e6, 1)
                if broker:
                    res["broker_cpu_us_per_event"] = round(
                        (cpu_after[1] - cpu_before[1]) / events * 1e6, 1)
                res["rss_worker_mb"] = round(rss.max_process)
                res["rss_total_mb"] = round(rss.max_total)
                results[f"{name}/{shape}"] = res
                print(f"  {name:<9} {shape:<8} {res['events_per_s']:>10,.0f} events/s  "
                      f"p50 {res['p50_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  "
                      f"non-2xx {res['non_2xx']} ({res['non_2xx'] / max(res['requests'], 1):.2%})"
                      f"  RSS/worker {res['rss_worker_mb']} MB"
                      f"  CPU {res['cpu_us_per_event']} µs/event"
                      + (f" (+ broker {res['broker_cpu_us_per_event']})"
                         if "broker_cpu_us_per_event" in res else ""),
                      flush=True)
        finally:
            stop_process(proc)
        # Where the accepted events ended up: the log, or Kafka (and its local spool, used
        # when Kafka did not acknowledge within the sink's ack timeout).
        if name == "embedded":
            results["embedded/queued"] = _log_depth(data_dir / "queue.sqlite3")
        if name == "kafka":
            results["kafka/in_kafka"] = asyncio.run(kafka_count(
                bootstrap, ["bench.collector.events", "bench.collector.invalid"]))
            results["kafka/left_in_spool"] = _spooled(data_dir)
            print(f"  kafka: {results['kafka/in_kafka']:,} records in Kafka, "
                  f"{results['kafka/left_in_spool']:,} left in the local spool", flush=True)
    return results


async def kafka_count(bootstrap: str, topics: list[str]) -> int:
    """Rows in these topics (the topics are fresh): every record read, since a record
    holds one row or several (newline-delimited; collectors before 2026-12-05 wrote one)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from funnelhouse.loader.sources.kafka import rows_in

    # Subscribed (without a group) so the client holds the topics' metadata.
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest",
                                max_partition_fetch_bytes=16 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics
                      for p in (consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        rows = 0
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            got = await consumer.getmany(timeout_ms=1000)
            rows += sum(rows_in(records) for records in got.values())
        return rows
    finally:
        await consumer.stop()


def _spooled(data_dir: Path) -> int:
    return sum(_log_depth(p) for p in data_dir.glob("kafka-spool*.sqlite3"))


def _log_depth(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM log").fetchone()[0]


# ---- freshness: acknowledged → queryable in events_raw ---------------------------------

async def _freshness_run(url: str, rate: float, seconds: float, poll: float,
                         messages: list[dict[str, Any]]) -> dict[str, Any]:
    import httpx
    import orjson

    requests_per_s = rate / BATCH
    total = max(1, int(seconds * requests_per_s))
    acked: dict[int, float] = {}       # batch number → when its 2xx arrived
    accepted: dict[int, int] = {}      # batch number → events accepted into events_raw
    seen: dict[int, float] = {}        # batch number → first poll that saw all of it
    errors = 0
    auth = (SERVER_KEY, "")

    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=32)) as client:
        async def send(b: int) -> None:
            nonlocal errors
            batch = []
            for i in range(BATCH):
                message = messages[(b * BATCH + i) % len(messages)]
                batch.append({**message, "messageId": f"fr{b:07d}{i:02d}"})
            response = await client.post("/v1/batch", content=orjson.dumps({"batch": batch}),
                                         auth=auth, headers={"Content-Type": "application/json"})
            if response.status_code != 200:
                errors += 1
                return
            acked[b] = time.monotonic()
            accepted[b] = response.json().get("accepted", 0)

        async def poller(stop: asyncio.Event) -> None:
            lowest = 0
            while not stop.is_set():
                sql = ("SELECT toUInt32(substring(message_id, 3, 7)) AS b, count() AS n "
                       "FROM events_raw WHERE startsWith(message_id, 'fr') AND "
                       f"toUInt32(substring(message_id, 3, 7)) >= {lowest} GROUP BY b")
                response = await client.post("/v1/sql", json={"sql": sql},
                                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                now = time.monotonic()
                if response.status_code == 200:
                    for row in response.json()["data"]:
                        b, n = int(row["b"]), int(row["n"])
                        if b in accepted and b not in seen and n >= accepted[b]:
                            seen[b] = now
                    while lowest in seen or (lowest < total and lowest in acked
                                             and accepted.get(lowest) == 0):
                        lowest += 1
                await asyncio.sleep(poll)

        stop = asyncio.Event()
        poll_task = asyncio.create_task(poller(stop))
        started = time.monotonic()
        sends = []
        for b in range(total):
            await asyncio.sleep(max(0.0, started + b / requests_per_s - time.monotonic()))
            sends.append(asyncio.create_task(send(b)))
        await asyncio.gather(*sends)
        send_seconds = time.monotonic() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(b not in seen for b in acked if accepted[b]):
            await asyncio.sleep(0.2)
        stop.set()
        await poll_task

    lags = sorted(seen[b] - acked[b] for b in seen)
    missing = sum(1 for b in acked if accepted[b] and b not in seen)
    return {
        "rate_events_per_s": round(total * BATCH / send_seconds),
        "batches": total, "errors": errors, "missing": missing, "poll_s": poll,
        "p50_s": _pct(lags, 50), "p95_s": _pct(lags, 95), "max_s": lags[-1] if lags else None,
    }


def _pct(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def freshness(work: Path, name: str, bootstrap: str, rate: float, seconds: float,
              messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`funnelhouse up` (default settings) at a steady load; how soon each batch is queryable."""
    data_dir = work / f"up-{name}"
    port = free_port()
    log_path = work / f"up-{name}.log"
    extra = {}
    if bootstrap:
        extra = dict(FUNNELHOUSE_KAFKA_BOOTSTRAP=bootstrap,
                     FUNNELHOUSE_KAFKA_TOPIC_EVENTS=f"bench.fresh.{os.getpid()}.events",
                     FUNNELHOUSE_KAFKA_TOPIC_INVALID=f"bench.fresh.{os.getpid()}.invalid")
    proc = start_process([sys.executable, "-m", "funnelhouse.cli", "up", "--data-dir",
                          str(data_dir), "--port", str(port)],
                         base_env(data_dir, **extra), log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, log_path)
        with RssSampler(proc.pid) as rss:
            result = asyncio.run(_freshness_run(url, rate, seconds, 0.1, messages))
        result["rss_up_mb"] = round(rss.max_total)
    finally:
        stop_process(proc)
    # Sends are scheduled open-loop; a lower achieved rate means `up` could not keep up
    # (requests queued), and the figure then measures a backlog, not steady load.
    result["saturated"] = result["rate_events_per_s"] < 0.9 * rate
    print(f"  freshness {name:<8} at {result['rate_events_per_s']:,} events/s"
          f"{' (SATURATED: asked ' + format(rate, ',.0f') + ')' if result['saturated'] else ''}: "
          f"p50 {_f(result['p50_s'])} s  p95 {_f(result['p95_s'])} s  max {_f(result['max_s'])} s"
          f"  (missing {result['missing']}, errors {result['errors']}, "
          f"up RSS {result['rss_up_mb']} MB)", flush=True)
    return result


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# ---- loader rows/s: queue filled first, then drained into chdb (with --history stored) ---

def loader(work: Path, queue: str, rows: int, bootstrap: str, history: int = 0,
           batch_rows: int = Settings.loader_batch_rows) -> dict[str, Any]:
    folder = work / f"loader-{queue}"
    history_seconds = 0.0
    if history:
        # Stored by a process of its own, so the drain's peak RSS is the drain's.
        out = subprocess.run([sys.executable, __file__, "--child", "history", "--folder",
                              str(folder), "--history", str(history)],
                             capture_output=True, text=True, cwd=ROOT, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"loader history failed:\n{out.stderr[-3000:]}")
        history_seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    cmd = [sys.executable, __file__, "--child", "loader", "--queue", queue, "--rows", str(rows),
           "--folder", str(folder), "--bootstrap", bootstrap, "--history", str(history),
           "--batch-rows", str(batch_rows)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"loader benchmark ({queue}) failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["history_fill_seconds"] = round(history_seconds, 1)
    shutil.rmtree(folder, ignore_errors=True)
    split = ", ".join(f"{k} {v:.1f} s" for k, v in result["drain_split_s"].items())
    print(f"  loader    {queue:<8} {result['loaded']:,} rows: {result['rows_per_s']:,.0f} rows/s "
          f"({split}; merges ran {result['settle_seconds']:.1f} s after the drain; queue fill "
          f"{result['fill_rows_per_s']:,.0f} rows/s, peak RSS {result['peak_rss_mb']} MB)",
          flush=True)
    return result


def _rows_for_loader(rows: int, tag: str = "c") -> Any:
    """`rows` events_raw rows; at most 100k generated, the rest copies with new ids.

    Every id gets a hash of itself and its copy (`tag` and number) in front, so ids are
    spread as an SDK's random UUIDs are. The generator's own ids share long prefixes,
    and ids that sit together in a sorted index flattered the first-copy lookup
    (docs/benchmarks.md, 2026-12-05). A repeated generated id stays repeated."""
    from datetime import date

    from funnelhouse.demo.generator import iter_json_batches

    base: list[bytes] = []
    for batch in iter_json_batches(17, max(1, min(rows, 100_000) // 30), 30, date(2024, 3, 1),
                                   batch_rows=100_000):
        base.extend(batch)
    base = base[:rows]
    prefix = b'{"message_id":"'
    assert all(r.startswith(prefix) for r in base[:10])
    copy = 0
    made = 0
    while made < rows:
        label = f"{tag}{copy}".encode()
        chunk = [prefix + _spread(label, r[len(prefix):r.index(b'"', len(prefix))])
                 + r[len(prefix):] for r in base[: rows - made]]
        made += len(chunk)
        copy += 1
        yield chunk


def _spread(label: bytes, message_id: bytes) -> bytes:
    return hashlib.blake2b(label + b"/" + message_id, digest_size=8).hexdigest().encode() \
        + b"-" + label + b"-"


def _history_child(args: argparse.Namespace) -> dict[str, Any]:
    """A fresh warehouse in `args.folder` holding `args.history` events (_fill_history)."""
    from funnelhouse.config import PACKAGE_ROOT
    from funnelhouse.warehouse.chdb import ChdbWarehouse
    from funnelhouse.warehouse.migrate import migrate

    folder = Path(args.folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    warehouse = ChdbWarehouse(folder / "warehouse")
    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")
    _fill_history(warehouse, args.history)
    warehouse.close()
    return {"seconds": time.perf_counter() - started}


def _fill_history(warehouse: Any, rows: int) -> None:
    """Store `rows` events before the drain, ids spread like the drained ones', and wait
    for merges to stop. A loader that has been running looks each batch's keys up among
    everything stored: with the old sorted key table the drain took 163-168k rows/s
    into an empty warehouse and 24-30k with 10M events stored (2026-12-05)."""
    started = time.perf_counter()
    base = next(_rows_for_loader(min(rows, 100_000), tag="h"))
    warehouse.execute("CREATE TABLE bench_history AS events_raw")
    warehouse.insert_json_rows("bench_history", base)
    for copy, at in enumerate(range(0, rows, len(base))):
        warehouse.execute(f"INSERT INTO events_raw SELECT * REPLACE (concat(message_id, "
                          f"'~{copy}') AS message_id) FROM bench_history "
                          f"LIMIT {min(len(base), rows - at)}")
    warehouse.execute("DROP TABLE bench_history")
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3 and time.perf_counter() - started < 600:
        if warehouse.query("SELECT count() FROM system.merges").scalar():
            quiet_since = time.monotonic()
        time.sleep(0.25)


async def _loader_child(args: argparse.Namespace) -> dict[str, Any]:
    from funnelhouse.collector.sinks.base import Record
    from funnelhouse.config import PACKAGE_ROOT
    from funnelhouse.loader.load import Loader
    from funnelhouse.queue.eventlog import EventLog
    from funnelhouse.warehouse.chdb import ChdbWarehouse
    from funnelhouse.warehouse.migrate import migrate

    folder = Path(args.folder)
    if not args.history:   # else the history child made the folder and its warehouse
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    topics = {"topic_events": f"bench.loader.{os.getpid()}.events",
              "topic_invalid": f"bench.loader.{os.getpid()}.invalid"}

    fill_seconds = 0.0
    spooled = 0
    if args.queue == "embedded":
        log = EventLog(folder / "queue.sqlite3")
        for chunk in _rows_for_loader(args.rows):
            started = time.perf_counter()
            for i in range(0, len(chunk), 5000):
                log.append([Record("events", "k", v) for v in chunk[i:i + 5000]])
            fill_seconds += time.perf_counter() - started
        from funnelhouse.loader.sources.embedded import EmbeddedSource

        source: Any = EmbeddedSource(log)
    else:
        from funnelhouse.collector.sinks.kafka import KafkaSink
        from funnelhouse.loader.sources.kafka import KafkaSource

        sink = KafkaSink(args.bootstrap, folder / "spool", **topics)
        await sink.start()
        for chunk in _rows_for_loader(args.rows):
            started = time.perf_counter()
            # Keys spread over partitions like people do; publish waits for acks=all.
            # A few requests' worth at a time, as a collector under load would send.
            for i in range(0, len(chunk), 8000):
                await asyncio.gather(*(sink.publish([Record("events", f"p{(k + j) % 997}", v)
                                                     for j, v in enumerate(chunk[k:k + 2000])])
                                       for k in range(i, min(i + 8000, len(chunk)), 2000)))
            fill_seconds += time.perf_counter() - started
        # Whatever the sink had to spool (Kafka slower than its ack timeout) must reach
        # Kafka before the drain is timed.
        deadline = time.monotonic() + 300
        while sink.status()["depth"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        spooled = sink.status()["spooled_total"]
        await sink.stop()
        in_kafka = await kafka_count(args.bootstrap, [topics["topic_events"]])
        if in_kafka < args.rows:
            raise RuntimeError(f"only {in_kafka} of {args.rows} rows reached Kafka")
        source = KafkaSource(args.bootstrap, group_id=f"bench-loader-{os.getpid()}", **topics)

    warehouse = ChdbWarehouse(folder / "warehouse")
    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")
    forgotten = None
    if args.forgotten:
        # Someone was forgotten once: from then on the loader checks every row's ids.
        from funnelhouse.people.forget import ForgottenSet, hash_id

        warehouse.insert_json_rows("forgotten_ids", [json.dumps(
            {"id_hash": hash_id("someone forgotten"),
             "forgotten_at": "2024-03-01 00:00:00.000"}).encode()])
        forgotten = ForgottenSet(warehouse)
    await source.start()
    # The queue is full before the drain starts, so there is no trickle to wait for:
    # from the embedded log a batch is read at once. With the loader's 0.5 s the drain's
    # last batch (a partial one: the log's chunks do not end on a batch's edge) waited
    # 0.5 s for rows that never came, and every loader figure before 2026-12-05 counted
    # that idle half second (as "read"). From Kafka the first batch waits the loader's
    # 0.5 s (the consumer joins its group and starts fetching), the later ones 0.1 s: a
    # batch ends at the record that reaches the bound, and a record holds many rows
    # (since 2026-12-05), so the last batch is partial and waits that long for rows
    # that never come (with one row a record, batches ended on the edge).
    loader_ = Loader(source, warehouse, batch_rows=args.batch_rows,
                     batch_seconds=0.0 if args.queue == "embedded" else 0.5,
                     forgotten=forgotten)
    # Where the drain's time goes: reading the queue, inserting, committing.
    spent = {"read": 0.0, "insert": 0.0, "commit": 0.0}

    def timed(part: str, fn: Any) -> Any:
        async def run(*a: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*a)
            finally:
                spent[part] += time.perf_counter() - started
        return run

    source.next_batch = timed("read", source.next_batch)
    source.commit = timed("commit", source.commit)
    loader_._insert_with_retries = timed("insert", loader_._insert_with_retries)
    # The first batch includes the consumer joining its group; time from after it.
    first_started = time.perf_counter()
    first = loaded = await loader_.load_once()
    first_seconds = time.perf_counter() - first_started
    loader_.batch_seconds = min(loader_.batch_seconds, 0.1)
    started = time.perf_counter()
    progress_at = time.monotonic()
    while loaded < args.rows and time.monotonic() - progress_at < 30:
        got = await loader_.load_once()
        if got:
            loaded += got
            progress_at = time.monotonic()
    seconds = time.perf_counter() - started
    split = dict(spent)   # includes the first batch
    # The drain leaves merges of the parts it wrote still running: a setting that only
    # put them off would look faster by the drain alone, so how long they ran on is shown.
    settle_seconds = _merges_settled(warehouse)
    await source.stop()
    in_table = warehouse.query("SELECT count() FROM events_raw").scalar()
    warehouse.close()
    import resource

    return {"queue": args.queue, "rows": args.rows, "loaded": loaded,
            "history": args.history,
            "forgotten": bool(args.forgotten),
            "distinct_in_table": int(in_table),   # the generator repeats some message ids
            "drain_split_s": {k: round(v, 2) for k, v in split.items()},
            "seconds": seconds, "first_batch_seconds": first_seconds,
            # After the first batch when there were more; all of it when one batch held all.
            "rows_per_s": ((loaded - first) / seconds if loaded > first and seconds
                           else loaded / first_seconds),
            "rows_per_s_incl_first": loaded / (seconds + first_seconds),
            # how long the merges of the parts the drain wrote ran on after it
            "settle_seconds": round(settle_seconds, 2),
            "fill_rows_per_s": args.rows / fill_seconds if fill_seconds else 0,
            "fill_spooled": spooled if args.queue == "kafka" else 0,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _merges_settled(warehouse: Any, quiet: float = 1.0, limit: float = 120.0) -> float:
    """Seconds until no merge has run for `quiet` seconds (the quiet wait not counted)."""
    started = time.perf_counter()
    last_busy = started
    while time.perf_counter() - last_busy < quiet and time.perf_counter() - started < limit:
        if warehouse.query("SELECT count() FROM system.merges").scalar():
            last_busy = time.perf_counter()
        time.sleep(0.1)
    return last_busy - started


# ---- profile: where one event's time goes in Ingestor.process -------------------------

class _Stages:
    """Self time per stage: a stage's nested stages are not counted in it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.stack: list[list[Any]] = []    # [name, started, child_time]

    def wrap(self, name: str, fn: Any) -> Any:
        clock = time.perf_counter

        def timed(*a: Any, **kw: Any) -> Any:
            frame = [name, clock(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                self.stack.pop()
                elapsed = clock() - frame[1]
                self.totals[name] = self.totals.get(name, 0.0) + elapsed - frame[2]
                if self.stack:
                    self.stack[-1][2] += elapsed

        return timed


class _TimedJson:
    """Stands in for the `orjson` module inside collector.ingest, timing dumps/loads."""

    def __init__(self, stages: _Stages, real: Any) -> None:
        self._real = real
        self.dumps = stages.wrap("serialise (orjson.dumps)", real.dumps)
        self.loads = real.loads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def profile(batches: int) -> dict[str, Any]:
    """Per-event cost of Ingestor.process on 50-event batches, split by stage; plus parse
    (orjson.loads of the body) and enqueue (EventLog.append of the rows, fsync full)."""
    import orjson

    import funnelhouse.collector.ingest as ingest
    from funnelhouse.collector.app import Collector  # noqa: F401 - the same imports the app has
    from funnelhouse.collector.ingest import Ingestor, RequestInfo
    from funnelhouse.collector.plan import TrackingPlan
    from funnelhouse.config import WriteKey
    from funnelhouse.queue.eventlog import EventLog

    key = WriteKey(SERVER_KEY, "backend", "server")
    settings = Settings(write_keys=(key,), admin_token=ADMIN_TOKEN)
    plan = TrackingPlan.load(settings.plan_dir)
    messages = sample_messages(1000)
    bodies = []
    for b in range(batches):
        batch = [{**messages[(b * BATCH + i) % len(messages)], "messageId": f"p{b}-{i}"}
                 for i in range(BATCH)]
        bodies.append(orjson.dumps({"batch": batch}))
    info = RequestInfo(write_key=key, ip="203.0.113.9", user_agent="bench", received_at=time.time())

    def run(ingestor: Ingestor, bodies: list[bytes]) -> tuple[float, float, int, list]:
        parse = process = 0.0
        records = []
        for body in bodies:
            t0 = time.perf_counter()
            parsed = orjson.loads(body)["batch"]
            t1 = time.perf_counter()
            outcome = ingestor.process(parsed, info)
            process += time.perf_counter() - t1
            parse += t1 - t0
            records.append(outcome.records)
            ingestor.dedup.add_all(outcome.dedup_keys)
        return parse, process, sum(len(r) for r in records), records

    events = batches * BATCH
    # Plain run first (no wrappers): the true per-event cost. Warm the caches once.
    run(Ingestor(settings, plan, None), bodies[: max(1, batches // 10)])
    plain = min((run(Ingestor(settings, plan, None), bodies) for _ in range(3)),
                key=lambda r: r[1])
    parse_us, process_us = plain[0] / events * 1e6, plain[1] / events * 1e6

    # Then with every stage wrapped: the shares (scaled to the plain total).
    stages = _Stages()
    patches = {
        "normalise": "normalise",
        "parse_timestamp": "enrich: time", "correct_timestamp": "enrich: time",
        "format_ts": "enrich: time",
        "parse_user_agent": "enrich: user agent",
        "classify_traffic": "enrich: campaign/referrer",
        "anonymise_ip": "enrich: ip",
        "_channel": "enrich: row (dict build, channel)",
        "_message_id": "message id",
    }
    originals: dict[str, Any] = {}
    for attr, stage in patches.items():
        if hasattr(ingest, attr):
            originals[attr] = getattr(ingest, attr)
            setattr(ingest, attr, stages.wrap(stage, originals[attr]))
    originals["orjson"] = ingest.orjson
    ingest.orjson = _TimedJson(stages, orjson)
    method_patches = {"_row": "enrich: row (dict build, channel)", "_remember": "debug ring",
                      "_reject": "dead-letter rows"}
    ingestor = Ingestor(settings, plan, None)
    plan_validate = ingestor.plan.validate
    try:
        for attr, stage in method_patches.items():
            if hasattr(ingestor, attr):
                setattr(ingestor, attr, stages.wrap(stage, getattr(ingestor, attr)))
        ingestor.plan = _PlanProxy(ingestor.plan, stages)
        top = stages.wrap("other (_process_one: dedup, dict copies, Record)",
                          ingestor._process_one)
        ingestor._process_one = top
        run(ingestor, bodies)
    finally:
        for attr, value in originals.items():
            setattr(ingest, attr, value)
    del plan_validate
    wrapped_total = sum(stages.totals.values())
    shares = {name: t / wrapped_total for name, t in stages.totals.items()}

    # Enqueue: the rows of one 50-event request appended as one transaction (the sink
    # groups concurrent requests, so under load one fsync covers several requests).
    folder = Path(tempfile.mkdtemp(prefix="fh-prof-"))
    enqueue = {}
    try:
        for fsync in ("full", "normal"):
            log = EventLog(folder / f"q-{fsync}.sqlite3", fsync)
            recs = plain[3]
            started = time.perf_counter()
            for group in recs[:200]:
                log.append(group)
            enqueue[fsync] = (time.perf_counter() - started) / (min(200, len(recs)) * BATCH) * 1e6
            log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    breakdown = {name: round(share * process_us, 2) for name, share in
                 sorted(shares.items(), key=lambda kv: -kv[1])}
    result = {"events": events, "parse_us": round(parse_us, 2),
              "process_us": round(process_us, 2), "stages_us": breakdown,
              "enqueue_us_full_fsync": round(enqueue["full"], 2),
              "enqueue_us_normal_fsync": round(enqueue["normal"], 2)}
    print(f"  profile over {events:,} events in {batches} batches of {BATCH} (µs per event):")
    print(f"    {'parse (orjson.loads of the body)':<52} {parse_us:>7.2f}")
    print(f"    {'Ingestor.process, total':<52} {process_us:>7.2f}")
    for name, us in breakdown.items():
        print(f"      {name:<50} {us:>7.2f}  {us / process_us:>5.0%}")
    print(f"    {'enqueue (EventLog.append, 50 rows/txn, fsync full)':<52} {enqueue['full']:>7.2f}")
    print(f"    {'enqueue (same, synchronous=NORMAL)':<52} {enqueue['normal']:>7.2f}", flush=True)
    return result


class _PlanProxy:
    def __init__(self, plan: Any, stages: _Stages) -> None:
        self._plan = plan
        self.validate = stages.wrap("validate (tracking plan)", plan.validate)
        self.canonical_event = stages.wrap("validate (tracking plan)", plan.canonical_event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plan, name)


# ---- py-spy on a running collector under load -----------------------------------------

def pyspy(work: Path, seconds: float, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Sample one collector worker (a single process) under 50-event batch load, twice:
    every active thread (the writer thread's SQLite time included), then only the thread
    holding the GIL (the Python work that bounds one worker)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy not installed (pip install py-spy)"}
    data_dir = work / "collector-spy"
    port = free_port()
    log_path = work / "collector-spy.log"
    proc = start_process([sys.executable, "-m", "uvicorn", "funnelhouse.collector.asgi:app",
                          "--port", str(port), "--log-level", "warning", "--no-access-log"],
                         base_env(data_dir), log_path)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        wait_http(f"{url}/healthz", proc, log_path)
        script = work / "wrk-spy.lua"
        script.write_text(lua_script(messages, "/v1/batch", BATCH, f"s{int(time.time())}"))
        run_wrk(url, script, 1, 16)                                     # warm-up
        for mode, flags in (("active_threads", []), ("gil", ["--gil"])):
            raw = work / f"pyspy-{mode}.txt"
            spy_proc = subprocess.Popen(
                [spy, "record", "--pid", str(proc.pid), "--duration", str(int(seconds)),
                 "--format", "raw", "--output", str(raw), "--nonblocking", *flags],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            run_wrk(url, script, seconds, 16)
            text, _ = spy_proc.communicate(timeout=60)
            out[mode] = summarise_pyspy(raw) if raw.exists() else {
                "error": f"py-spy failed: {text.strip()[-500:]}"}
    finally:
        stop_process(proc)
    return out


# (bucket, substrings of one frame "function (file:line)"); a sample goes to the bucket
# of the frame nearest its leaf that matches any of them.
PYSPY_BUCKETS = [
    ("idle thread", ("_worker (concurrent/futures/thread.py:81)",)),
    ("enqueue: SQLite append (writer thread)", ("eventlog.py",)),
    ("parse: orjson.loads of the body", ("parse_json (",)),
    ("normalise", ("normalise.py",)),
    ("validate: tracking plan", ("plan.py", "jsonschema_rs")),
    ("enrich: user agent", ("useragent.py", "ua_parser")),
    ("enrich: campaign/referrer", ("campaign.py",)),
    ("enrich: time", ("enrich/time.py",)),
    ("enrich: ip", ("enrich/ip.py",)),
    ("enrich: row build + serialise", ("Ingestor._row (",)),
    ("debug ring", ("Ingestor._remember (",)),
    ("dedup window", ("limits.py",)),
    ("ingest: rest of _process_one (msg id, raw dumps, Record)", ("ingest.py",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("collector app: auth, body read, answer", ("collector/",)),
    ("starlette: routing, middleware, responses", ("starlette/",)),
    ("uvicorn + httptools: HTTP parsing, transport", ("uvicorn/", "httptools")),
    ("event loop (asyncio/uvloop)", ("asyncio/", "uvloop", "selectors.py")),
]


def summarise_pyspy(raw: Path) -> dict[str, Any]:
    """Shares of py-spy's collapsed stacks per bucket (idle threads left out)."""
    buckets: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        name = "other"
        for frame in reversed(stack.split(";")):
            match = next((b for b, needles in PYSPY_BUCKETS
                          if any(needle in frame for needle in needles)), None)
            if match:
                name = match
                break
        buckets[name] = buckets.get(name, 0) + int(count)
    buckets.pop("idle thread", None)
    total = sum(buckets.values())
    return {"samples": total,
            "shares": {k: round(v / total, 3) for k, v in
                       sorted(buckets.items(), key=lambda kv: -kv[1])} if total else {}}


# ---- main ---------------------------------------------------------------------------

SECTIONS = ("throughput", "freshness", "loader", "profile", "pyspy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, small loads (~2 min)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--no-kafka", action="store_true", help="skip everything Kafka")
    parser.add_argument("--targets", default="bare,embedded,kafka",
                        help="servers for the throughput runs (bare, embedded, kafka)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each wrk run")
    parser.add_argument("--fresh-rate", type=float, default=2000, help="events/s for freshness")
    parser.add_argument("--loader-rows", type=int, default=None)
    parser.add_argument("--loader-history", type=int, default=None,
                        help="events stored before the loader's drain (default 2M; quick: 0)")
    parser.add_argument("--loader-batch-rows", type=int, default=Settings.loader_batch_rows,
                        help="the loader's batch_rows (default: the shipped setting, "
                             f"{Settings.loader_batch_rows:,})")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child")
    parser.add_argument("--queue")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--batch-rows", type=int, default=Settings.loader_batch_rows)
    parser.add_argument("--folder")
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--forgotten", action="store_true",
                        help="loader child: one person forgotten (every row's ids checked)")
    args = parser.parse_args()

    if args.child == "history":
        print(json.dumps(_history_child(args)))
        return
    if args.child == "loader":
        print(json.dumps(asyncio.run(_loader_child(args))))
        return

    signal.signal(signal.SIGTERM, _on_signal)
    only = set(args.only.split(","))
    seconds = args.seconds or (3 if args.quick else 10)
    fresh_seconds = 6 if args.quick else 30
    loader_rows = args.loader_rows or (50_000 if args.quick else 1_000_000)
    loader_history = args.loader_history if args.loader_history is not None else (
        0 if args.quick else 2_000_000)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="fh-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"quick": args.quick, "workers": WORKERS,
                               "wrk_seconds": seconds, "started": time.strftime("%F %T")}
    messages = sample_messages()
    started = time.monotonic()
    try:
        bootstrap = ""
        needs_kafka = not args.no_kafka and only & {"throughput", "freshness", "loader"}
        if needs_kafka:
            bootstrap = start_broker(work)
            results["kafka"] = "Apache Kafka 4 (KRaft, one local node)" if bootstrap else None
        if "profile" in only:
            print("profile (in process, Ingestor.process):", flush=True)
            results["profile"] = profile(100 if args.quick else 400)
        if "throughput" in only:
            print(f"throughput ({WORKERS} uvicorn workers, wrk -t2, {seconds:g} s per run):",
                  flush=True)
            results["throughput"] = throughput(work, seconds, bootstrap, messages,
                                               args.targets.split(","))
        if "freshness" in only:
            print(f"freshness (funnelhouse up, {args.fresh_rate:g} events/s in batches of "
                  f"{BATCH} for {fresh_seconds} s, polling /v1/sql every 0.1 s):", flush=True)
            results["freshness"] = {"embedded": freshness(work, "embedded", "", args.fresh_rate,
                                                          fresh_seconds, messages)}
            if bootstrap:
                results["freshness"]["kafka"] = freshness(work, "kafka", bootstrap,
                                                          args.fresh_rate, fresh_seconds,
                                                          messages)
        if "loader" in only:
            print(f"loader ({loader_rows:,} rows queued first, then drained in batches of "
                  f"{args.loader_batch_rows:,} into a chdb holding {loader_history:,} events):",
                  flush=True)
            results["loader"] = {"embedded": loader(work, "embedded", loader_rows, "",
                                                    loader_history, args.loader_batch_rows)}
            if bootstrap:
                results["loader"]["kafka"] = loader(work, "kafka", loader_rows, bootstrap,
                                                    loader_history, args.loader_batch_rows)
        if "pyspy" in only:
            print("py-spy (one collector worker under 50-event batches):", flush=True)
            results["pyspy"] = pyspy(work, 6 if args.quick else 15, messages)
            for mode, summary in results["pyspy"].items():
                if not isinstance(summary, dict):
                    continue
                print(f"  {mode} ({summary.get('samples', 0)} samples):")
                for name, share in summary.get("shares", {}).items():
                    print(f"    {name:<58} {share:>6.1%}")
                if "error" in summary:
                    print(f"    {summary['error']}")
            if "error" in results["pyspy"]:
                print(f"    {results['pyspy']['error']}")
    finally:
        _cleanup()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("RESULT_JSON " + json.dumps(results), flush=True)


def start_broker(work: Path) -> str:
    from funnelhouse.queue.kafka_broker import KafkaBroker, KafkaBrokerError

    broker = KafkaBroker(work / "kafka", die_with_parent=True)
    _BROKERS.append(broker)
    try:
        print("starting a local Apache Kafka broker …", flush=True)
        return broker.start(timeout=120)
    except KafkaBrokerError as exc:
        print(f"  Kafka unavailable, Kafka figures skipped: {exc}", flush=True)
        _BROKERS.remove(broker)
        return ""


if __name__ == "__main__":
    main()
