"""Benchmark of the analyses on chdb at 10M events: a 5-step funnel with a breakdown and a
weekly retention (with windowFunnel beside it for scale), trends (daily counts, people,
revenue; DAU/WAU/MAU), stickiness, a 5-step user flow, the page report and a funnel
correlation.

They read the shared data folder the bench builds once (load-tests/dataset.py: a
generated base population copied in SQL, every model built by bench_models.py) —
`--folder` names it. Run alone without `--folder`, the script prepares such a folder
itself under --work-dir (generate, copy, build every model), reused on the next run.
The queries run in a fresh child process, so its peak RSS (ru_maxrss) is the analyses'
own plus chdb's ≈275 MB idle footprint.

    python load-tests/bench_analyses.py --folder /tmp/funnelhouse-bench-data/events-10000000
    python load-tests/bench_analyses.py --events 1000000      # a smaller run, prepared here
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402

AS_OF = "2024-06-01T00:00:00Z"

FUNNEL = {"steps": ["page_view", "product_view", "add_to_cart", "begin_checkout", "purchase"],
          "window": "7d", "order": "loose", "breakdown": "session_campaign",
          "attribution": "first", "as_of": AS_OF}
RETENTION = {"cohort": "first_seen", "period": "week", "periods": 4, "mode": "on", "as_of": AS_OF}
TRENDS = {"series": ["page_view", "*|people", "purchase|sum:revenue"], "interval": "day",
          "as_of": AS_OF}
ACTIVE = {"series": ["*|dau", "*|wau", "*|mau"], "interval": "day", "as_of": AS_OF}
STICKINESS = {"period": "week", "as_of": AS_OF}
FLOWS = {"start": "/", "steps": 5, "as_of": AS_OF}
PAGES = {"top": 50, "as_of": AS_OF}
CORRELATION = {"funnel": {"steps": ["product_view", "add_to_cart", "purchase"], "window": "2d",
                          "as_of": AS_OF}, "properties": ["device_type"]}
WINDOW_FUNNEL = """
SELECT level, count() AS people FROM (
    SELECT person_id, windowFunnel(604800000)(toUInt64(toUnixTimestamp64Milli(event_at)),
        event = 'page_view', event = 'product_view', event = 'add_to_cart',
        event = 'begin_checkout', event = 'purchase') AS level
    FROM behavior_events
    WHERE event IN ('page_view', 'product_view', 'add_to_cart', 'begin_checkout', 'purchase')
    GROUP BY person_id)
GROUP BY level ORDER BY level"""
# Weekly retention the plainest way ClickHouse does it (one pass, arrays per person,
# first-seen week as the cohort): what the retention analysis is measured against.
BARE_RETENTION = """
SELECT cohort, count() AS people,
       sumForEach(arrayMap(k -> toUInt64(has(weeks, addWeeks(cohort, k))), range(0, 5))) AS back
FROM (
    SELECT person_id, min(toMonday(event_date)) AS cohort,
           groupUniqArray(toMonday(event_date)) AS weeks
    FROM behavior_events
    WHERE event_at <= toDateTime64('2024-06-01 00:00:00', 3, 'UTC')
    GROUP BY person_id)
GROUP BY cohort ORDER BY cohort"""


def prepare(folder: Path, events: int, base_events: int) -> dict:
    """A data folder of ≈`events` events with every model built (when run alone)."""
    done = dataset.prepare(folder, events, base_events, build=True)
    return {"raw_rows": done["events"], "copies": done["copies"],
            "generate_s": done["generate_s"], "load_s": done["load_s"],
            "models_s": done.get("models_s")}


def describe(folder: Path) -> dict:
    """What the queries run on: behavior_events rows and people in the folder."""
    from funnelhouse.config import Settings
    from funnelhouse.warehouse.chdb import ChdbWarehouse

    wh = ChdbWarehouse(Settings(data_dir=folder).warehouse_dir, readonly=True)
    events = wh.query("SELECT count() FROM behavior_events").scalar()
    persons = wh.query("SELECT uniqExact(person_id) FROM behavior_events").scalar()
    wh.close()
    return {"events": events, "people": persons, **(dataset.read_marker(folder) or {})}


def queries(folder: Path, runs: int) -> dict:
    from funnelhouse.analyses import run_analysis
    from funnelhouse.config import Settings
    from funnelhouse.warehouse.chdb import ChdbWarehouse

    settings = Settings(data_dir=folder, reporting_tz="Asia/Seoul")
    wh = ChdbWarehouse(settings.warehouse_dir, readonly=True)
    out: dict = {"rss_idle_mb": _rss_mb()}

    def record(name: str, times: list[float], value: object) -> None:
        out[name] = {"first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3),
                     "runs": runs, "rss_after_mb": _rss_mb()}
        out[name + "_answer"] = value

    def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t)
        record(name, times, value)

    def timed_beside(name: str, fn, bare_name: str, bare) -> None:  # type: ignore[no-untyped-def]
        """An analysis and its bare-function yardstick run by turns (which goes first
        alternates), so the ratio compares the same minutes of a noisy machine."""
        times: dict[str, list[float]] = {name: [], bare_name: []}
        values: dict[str, object] = {}
        for run in range(runs):
            pair = [(name, fn), (bare_name, bare)]
            for which, call in pair if run % 2 == 0 else pair[::-1]:
                t = time.perf_counter()
                values[which] = call()
                times[which].append(time.perf_counter() - t)
        for which in (name, bare_name):
            record(which, times[which], values[which])

    timed_beside("funnel_5_steps_breakdown", lambda: run_analysis(
        "funnel", FUNNEL, wh, settings.reporting_tz).summary,
        "windowFunnel_5_steps_no_times", lambda: wh.query(WINDOW_FUNNEL).rows)
    timed_beside("retention_weekly", lambda: run_analysis(
        "retention", RETENTION, wh, settings.reporting_tz).summary,
        "bare_retention_weekly", lambda: wh.query(BARE_RETENTION).rows)
    for name, analysis, spec in (("trends_daily_3_series", "trends", TRENDS),
                                 ("trends_dau_wau_mau", "trends", ACTIVE),
                                 ("stickiness_weekly", "stickiness", STICKINESS),
                                 ("flows_5_steps", "flows", FLOWS),
                                 ("pages_top_50", "pages", PAGES),
                                 ("correlation_funnel", "correlation", CORRELATION)):
        timed(name, lambda a=analysis, d=spec: run_analysis(
            a, d, wh, settings.reporting_tz).summary)
    out["peak_rss_mb"] = _rss_mb()
    wh.close()
    out["data"] = describe(folder)     # after the peak: counting people takes memory too
    return out


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=None,
                        help="a prepared data folder with every model built (the bench's "
                             "shared one); without it, one is prepared under --work-dir")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--base-events", type=int, default=1_000_000,
                        help="events generated in Python when preparing; the rest are copies")
    parser.add_argument("--work-dir", default="/tmp/funnelhouse-bench-analyses")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--phase", choices=["all", "prepare", "query"], default="all",
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder or Path(args.work_dir) / f"events-{args.events}")
    if args.phase == "prepare":
        print(json.dumps(prepare(folder, args.events, args.base_events)))
        return 0
    if args.phase == "query":
        print(json.dumps(queries(folder, args.runs)))
        return 0
    report: dict = {"folder": str(folder), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    marker = dataset.read_marker(folder)
    if not (marker and marker.get("built")):
        if args.folder:
            print(f"{folder} holds no built data set (run bench_models.py first, or leave "
                  "out --folder)", file=sys.stderr)
            return 2
        print(f"preparing ≈{args.events:,} events in {folder} …", flush=True)
        subprocess.run([sys.executable, __file__, "--phase", "prepare", "--events",
                        str(args.events), "--base-events", str(args.base_events),
                        "--folder", str(folder)], stdout=subprocess.PIPE, text=True, check=True)
    print("running the analyses in a fresh process …", flush=True)
    done = subprocess.run([sys.executable, __file__, "--phase", "query", "--folder", str(folder),
                           "--runs", str(args.runs)],
                          stdout=subprocess.PIPE, text=True, check=True)
    report["queries"] = json.loads(done.stdout.strip().splitlines()[-1])
    report["load"] = report["queries"].pop("data")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
