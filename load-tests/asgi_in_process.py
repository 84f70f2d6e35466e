"""The Python a single event costs inside the app, without uvicorn or the network.

    python load-tests/asgi_in_process.py                 # 30,000 requests per round
    python load-tests/asgi_in_process.py --requests 5000 --concurrency 64

Calls the ASGI apps directly — the bare endpoint (bare_endpoint.py) and the collector
as `create_app` builds it — with the click event of bench_collector.py, a unique
messageId each, and prints µs of CPU per request for each, alternated over rounds:

  bare               reads the body, answers 204
  collector, null    the whole collector (edge, CORS, auth, validation, enrichment,
                     dedup, the answer), its queue a sink that stores nothing
  collector, queue   the same on the embedded queue (group commit, fsync), with
                     `--concurrency` requests in flight so commits are shared

What the served figures add on top of these (bench_collector.py) is uvicorn, the
socket and the load generator sharing the cores. The figures are for comparing
versions of the app on one machine, not a throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import resource
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import bare_endpoint  # noqa: E402
import bench_collector as bc  # noqa: E402

from funnelhouse.collector.app import create_app  # noqa: E402
from funnelhouse.collector.gc_tuning import tune_gc  # noqa: E402
from funnelhouse.collector.sinks.open import make_sink  # noqa: E402
from funnelhouse.config import Settings, parse_write_keys  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
AUTH = b"Basic " + base64.b64encode(f"{bc.WRITE_KEY}:".encode())


class NullSink:
    """A queue that stores nothing: the app's own work, without the commit."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, records: Any) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"ready": True}


def scope_of(body: bytes) -> dict[str, Any]:
    """A request as uvicorn hands it over, body already read (as nearly always)."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/track",
            "raw_path": b"/v1/track", "root_path": "", "query_string": b"",
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
            "headers": [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json"),
                        (b"authorization", AUTH), (b"content-length", str(len(body)).encode())],
            "funnelhouse.body_received": True}


async def client(app: App, prefix: str, requests: int, statuses: dict[int, int]) -> None:
    event = dict(bc.EVENT, timestamp="2026-12-05T10:00:00.000Z")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    for i in range(requests):
        event["messageId"] = f"{prefix}-{i}"
        body = orjson.dumps(event)
        await app(scope_of(body), receiver(body), send)


def receiver(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """receive() for one request: its whole body, then a disconnect."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    return receive


async def cpu_per_request(app: App, prefix: str, requests: int, concurrency: int
                          ) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*[client(app, f"{prefix}-{c}", requests // concurrency, statuses)
                           for c in range(concurrency)])
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return cpu / (requests // concurrency * concurrency) * 1e6, statuses


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="asgi-in-process-"))
    settings = Settings(data_dir=folder, write_keys=parse_write_keys(f"{bc.WRITE_KEY}:web"))
    queue = make_sink(settings)
    await queue.start()
    apps: list[tuple[str, App, int]] = [
        ("bare", bare_endpoint.app, 1),
        ("collector, null", create_app(settings, NullSink()), 1),
        ("collector, queue", create_app(settings, queue), args.concurrency),
    ]
    tune_gc()   # as a collector worker does after start-up
    figures: dict[str, list[float]] = {name: [] for name, _, _ in apps}
    for round_ in range(args.rounds + 1):   # round 0 warms up, unreported
        for name, app, concurrency in apps:
            us, statuses = await cpu_per_request(app, f"r{round_}-{name}", args.requests,
                                                 concurrency)
            if set(statuses) - {200, 204}:
                raise SystemExit(f"{name}: unexpected answers {statuses}")
            if round_:
                figures[name].append(us)
    await queue.stop()
    print(f"µs of CPU per single-event request, {args.requests:,} requests a round, "
          f"{args.rounds} rounds (min / median / max):")
    for name, values in figures.items():
        values.sort()
        print(f"  {name:<18} {values[0]:7.1f} {values[len(values) // 2]:7.1f} "
              f"{values[-1]:7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64,
                        help="requests in flight on the queue (default 64, as wrk's)")
    uvloop.run(main(parser.parse_args()))
