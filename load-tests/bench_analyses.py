"""Benchmark of the analyses on chdb: a 5-step funnel with a breakdown and a weekly retention
on generated data (10M events by default), with windowFunnel beside it for scale.

Loading (generator → events_raw → identity_map + behavior_events) runs once into
--work-dir and is reused. The queries run in a fresh child process, so its peak RSS
(ru_maxrss) is the analyses' own plus chdb's ≈275 MB idle footprint.

    python load-tests/bench_analyses.py                    # 10M events
    python load-tests/bench_analyses.py --events 1000000   # a smaller run
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENTS_PER_PERSON = 36        # what the generator averages (measured on small runs)
DAYS = 28
START = date(2024, 3, 1)
SEED = 17
CHUNK = 5000
AS_OF = "2024-06-01T00:00:00Z"

FUNNEL = {"steps": ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase"],
          "window": "7d", "order": "loose", "breakdown": "session_campaign",
          "attribution": "first", "as_of": AS_OF}
RETENTION = {"cohort": "first_seen", "period": "week", "periods": 4, "mode": "on", "as_of": AS_OF}
WINDOW_FUNNEL = """
SELECT level, count() AS people FROM (
    SELECT person_id, windowFunnel(604800000)(toUInt64(toUnixTimestamp64Milli(event_at)),
        event = 'page_view', event = 'product_view', event = 'add_to_cart',
        event = 'begin_checkout', event = 'purchase') AS level
    FROM behavior_events
    WHERE event IN ('page_view', 'product_view', 'add_to_cart', 'begin_checkout', 'purchase')
    GROUP BY person_id)
GROUP BY level ORDER BY level"""


def _chunk(args: tuple[int, int, int]) -> list[bytes]:
    from funnelhouse.generator import iter_json_batches

    first, people, days = args
    out: list[bytes] = []
    for batch in iter_json_batches(SEED, people, days, START, batch_rows=10**9, first_person=first):
        out.extend(batch)
    return out


def load(folder: Path, people: int) -> dict:
    from funnelhouse.analyses.sample import build
    from funnelhouse.config import Settings
    from funnelhouse.generator import iter_json_batches
    from warehouse.chdb import ChdbWarehouse
    from warehouse.migrate import migrate

    settings = Settings(data_dir=folder, reporting_tz="Asia/Seoul")
    wh = ChdbWarehouse(settings.warehouse_dir)
    migrate(wh, ROOT / "sql" / "migrations")
    started = time.monotonic()
    rows = 0
    if "first_person" in inspect.signature(iter_json_batches).parameters:
        jobs = [(first, min(CHUNK, people - first), DAYS) for first in range(0, people, CHUNK)]
        with mp.get_context("fork").Pool(2) as pool:
            for chunk in pool.imap(_chunk, jobs):
                for i in range(0, len(chunk), 100_000):
                    rows += wh.insert_json_rows("events_raw", chunk[i:i + 100_000])
                print(f"  loaded {rows:,} rows", file=sys.stderr, flush=True)
    else:
        for batch in iter_json_batches(SEED, people, DAYS, START):
            rows += wh.insert_json_rows("events_raw", batch)
            print(f"  loaded {rows:,} rows", file=sys.stderr, flush=True)
    loaded = time.monotonic() - started
    started = time.monotonic()
    build(wh, settings, progress=lambda line: print("  " + line, file=sys.stderr, flush=True))
    built = time.monotonic() - started
    events = wh.query("SELECT count() FROM behavior_events").scalar()
    persons = wh.query("SELECT uniqExact(person_id) FROM behavior_events").scalar()
    wh.close()
    return {"raw_rows": rows, "events": events, "people": persons, "load_s": round(loaded, 1),
            "models_s": round(built, 1)}


def queries(folder: Path, runs: int) -> dict:
    from funnelhouse.analyses import run_analysis
    from funnelhouse.config import Settings
    from warehouse.chdb import ChdbWarehouse

    settings = Settings(data_dir=folder, reporting_tz="Asia/Seoul")
    wh = ChdbWarehouse(settings.warehouse_dir, readonly=True)
    out: dict = {"rss_idle_mb": _rss_mb()}

    def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t)
        out[name] = {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3),
                     "runs": runs, "rss_after_mb": _rss_mb()}
        out[name + "_answer"] = value

    timed("funnel_5_steps_breakdown", lambda: run_analysis(
        "funnel", FUNNEL, wh, settings.reporting_tz).summary)
    timed("retention_weekly", lambda: run_analysis(
        "retention", RETENTION, wh, settings.reporting_tz).summary)
    timed("windowFunnel_5_steps_no_times", lambda: wh.query(WINDOW_FUNNEL).rows)
    wh.close()
    out["peak_rss_mb"] = _rss_mb()
    return out


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--work-dir", default="/tmp/funnelhouse-bench-analyses")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--phase", choices=["all", "load", "query"], default="all")
    args = parser.parse_args()
    folder = Path(args.work_dir) / f"events-{args.events}"
    people = max(1, args.events // EVENTS_PER_PERSON)
    report: dict = {"events_wanted": args.events, "folder": str(folder),
                    "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.phase == "load":
        print(json.dumps(load(folder, people)))
        return 0
    if args.phase == "query":
        print(json.dumps(queries(folder, args.runs)))
        return 0
    marker = folder / "loaded.json"
    if marker.is_file():
        report["load"] = json.loads(marker.read_text())
    else:
        print(f"loading ~{args.events:,} events ({people:,} people, {DAYS} days) into {folder} …")
        done = subprocess.run([sys.executable, __file__, "--phase", "load", "--events",
                               str(args.events), "--work-dir", args.work_dir],
                              capture_output=False, stdout=subprocess.PIPE, text=True, check=True)
        report["load"] = json.loads(done.stdout.strip().splitlines()[-1])
        marker.write_text(json.dumps(report["load"]))
    print("running the analyses in a fresh process …", flush=True)
    done = subprocess.run([sys.executable, __file__, "--phase", "query", "--events",
                           str(args.events), "--work-dir", args.work_dir, "--runs", str(args.runs)],
                          stdout=subprocess.PIPE, text=True, check=True)
    report["queries"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
