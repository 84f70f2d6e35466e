"""`funnelhouse demo`: realistic demo traffic through the collector's HTTP API, then the
models built through the running instance, so every view has something to show."""

from __future__ import annotations

import argparse
import sys
import time

import httpx

from funnelhouse.cli.client import ClientError, RemoteClient
from funnelhouse.cli.common import Subparsers, command, settings_of
from funnelhouse.cli.progress import Status
from funnelhouse.config import Settings
from funnelhouse.server import instance

LOAD_WAIT_SECONDS = 300      # the loader takes ~1 s per 100k events; generous for slow disks
MODELS_WAIT_SECONDS = 600    # the scheduler's own refresh may hold the models lease


def cmd_demo(args: argparse.Namespace) -> int:
    from funnelhouse.demo.send import run_demo

    try:
        # A collector named with its key needs no data folder here: look for none.
        settings = settings_of(args, find=not (args.url and args.write_key))
    except ClientError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    local_url = instance.running_url(settings)
    url = args.url or local_url
    if not url:
        # Nothing is made in the folder (no credentials) when there is nothing to send to.
        print(f"no running funnelhouse for {settings.data_dir.resolve()}: start "
              "`funnelhouse up` (or pass --data-dir of a running one, or --url and "
              "--write-key)", file=sys.stderr)
        return 1
    write_key = args.write_key
    if not write_key:
        settings = instance.with_local_credentials(settings)
        server_keys = [k.key for k in settings.write_keys if k.kind == "server"]
        write_key = server_keys[0] if server_keys else settings.write_keys[0].key
    status = Status()
    status.say(f"sending {args.people:,} visitors of the last {args.days} days to {url} …")
    result = run_demo(url, write_key, people=args.people, days=args.days, seed=args.seed,
                      progress=status.note)
    status.say(f"sent {result.sent:,} events in {result.seconds:.1f}s: accepted "
               f"{result.accepted:,}, rejected {result.rejected:,} (see events_invalid), "
               f"duplicates {result.duplicates:,}")
    if args.no_models:
        status.say("the models are built by the next scheduled refresh (every few minutes), "
                   "or now by `funnelhouse models run`")
        return 0
    if url != local_url:
        status.say(f"the models are built where the warehouse is: run `funnelhouse models "
                   f"run` there (this folder has no instance of {url})")
        return 0
    try:
        build_models(instance.with_local_credentials(settings), url, status)
    except ClientError as exc:
        status.clear()
        print(f"the events are in, but the models could not be built: {exc}; run "
              "`funnelhouse models run`", file=sys.stderr)
        return 1
    status.say(f"models built: every view of the console has data — {url}/console/")
    return 0


def build_models(settings: Settings, url: str, status: Status) -> None:
    """Wait until the loader has loaded what was sent, then refresh the models through
    the running instance (after the scheduler's refresh, if one is running)."""
    _wait_loaded(url, settings, status)
    deadline = time.monotonic() + MODELS_WAIT_SECONDS
    with RemoteClient(settings, url) as client:
        while True:
            waiting = status.ticking("building the models …")
            try:
                client.models_run(progress=status.model_line)
                return
            except ClientError as exc:
                if exc.reason != "job_running" or time.monotonic() > deadline:
                    raise
                status.note("the scheduled model refresh is running; waiting for it …")
                time.sleep(3)
            finally:
                waiting()


def _wait_loaded(url: str, settings: Settings, status: Status) -> None:
    """Until every accepted event is in events_raw: the embedded queue is empty; through
    Kafka (whose depth is only the collector's spool), events_raw stopped growing."""
    deadline = time.monotonic() + LOAD_WAIT_SECONDS
    counts: list[bytes] = []
    with instance.http_client(settings, url, timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                state = http.get("/readyz").json()
            except (httpx.HTTPError, ValueError):
                state = {}
            depth = state.get("depth")
            if state.get("queue") == "embedded":
                if depth == 0:
                    return
                status.note(f"loading: {depth:,} events still queued …")
            else:
                answer = http.post("/v1/sql", json={"sql": "SELECT count() FROM events_raw",
                                                    "format": "csv"})
                counts.append(answer.content)
                if len(counts) >= 4 and len(set(counts[-4:])) == 1:
                    return
                status.note(f"loading: {answer.text.strip()} events in events_raw …")
            time.sleep(0.5)


def register(sub: Subparsers) -> None:
    demo = command(sub, "demo", cmd_demo,
                   "send realistic demo traffic through the HTTP API, then build the models")
    demo.add_argument("--url", default=None, help="collector URL (default: the local instance)")
    demo.add_argument("--write-key", default=None,
                      help="a server write key (default: the local instance's)")
    demo.add_argument("--people", type=int, default=3000)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--no-models", dest="no_models", action="store_true",
                      help="send only; leave the models to the next scheduled refresh")
