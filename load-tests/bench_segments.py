"""Benchmark: segment materialisation at ≈10M events, membership latency, a day's export, forget.

    python load-tests/bench_segments.py --folder /tmp/funnelhouse-bench-data/events-10000000
    python load-tests/bench_segments.py --events 200000 --base-events 50000   # prepared here

Reads the shared data folder the bench builds once (load-tests/dataset.py: a generated
base population copied in SQL with suffixed ids, every model built by bench_models.py),
named by `--folder`. Without `--folder` it prepares such a folder itself in --dir
(default a temp folder; generate, copy, build every model). Then times:
  * materialising a rule segment (2 containers, 4 groups: intersection, exclusion, a
    30-day window, a count threshold) and a raw-SQL segment;
  * N membership checks (random members and non-members, by person id and by
    anonymous id) in process, and through the HTTP route (Starlette test client: ASGI,
    admin check and thread hop included, no socket);
  * one day's export of the eight tables as CSV + Parquet;
  * forgetting one person (mutations on every table) — the last step, since it
    changes the data.
Prints one JSON document with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402

from funnelhouse.config import Settings  # noqa: E402
from funnelhouse.jobs.exports import export_day  # noqa: E402
from funnelhouse.people.forget import forget  # noqa: E402
from funnelhouse.people.segments import Segments  # noqa: E402
from funnelhouse.warehouse.chdb import ChdbWarehouse  # noqa: E402

START = dataset.START

RULE = {"name": "Re-engage cart abandoners", "containers": [
    {"groups": [
        {"table": "behavior_events", "filters": [{"column": "event", "value": "add_to_cart"}],
         "within_days": 30},
        {"table": "orders", "filters": [], "exclude": True},
        {"table": "sessions", "filters": [{"column": "landing_medium", "op": "in",
                                           "value": ["paid", "email"]}]}]},
    {"groups": [
        {"table": "behavior_events", "filters": [{"column": "event", "value": "product_view"}],
         "having": [{"fn": "count", "op": ">=", "value": 10}]}]},
]}
RAW = {"name": "Two orders or more", "sql":
       "SELECT person_id FROM orders GROUP BY person_id HAVING count() >= 2"}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 3), "p95_ms": round(pick(0.95) * 1000, 3),
            "p99_ms": round(pick(0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=None,
                        help="a prepared data folder with every model built (the bench's "
                             "shared one)")
    parser.add_argument("--events", type=int, default=10_000_000,
                        help="without --folder: events to prepare in --dir")
    parser.add_argument("--base-events", type=int, default=1_000_000,
                        help="without --folder: events generated in Python; the rest are "
                             "SQL copies of them")
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5, help="materialisations per segment")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    figures: dict[str, object] = {}
    if args.folder:
        folder = Path(args.folder)
        marker = dataset.read_marker(folder)
        if not (marker and marker.get("built")):
            sys.exit(f"{folder} holds no built data set (run bench_models.py first, or "
                     "leave out --folder)")
    else:
        folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-segments-"))
        marker = dataset.prepare(folder, args.events, args.base_events, build=True)
    figures.update(people=marker["base_people"] * marker["copies"], days=marker["days"],
                   copies=marker["copies"])
    settings = Settings(data_dir=folder, reporting_tz="Asia/Seoul", admin_token="bench")
    wh = ChdbWarehouse(settings.warehouse_dir)
    figures["events"] = wh.query("SELECT count() FROM events_raw").scalar()
    figures["behavior_events_rows"] = wh.query("SELECT count() FROM behavior_events").scalar()
    # Right after a big load, background merges slow queries 2.5-3.5x (FACTS.md): the
    # folder was merged when it was built; wait for any merge this process started.
    figures["settle_seconds"] = round(dataset.settle(wh, limit_s=120), 1)

    store = Segments(wh, settings)
    as_of = datetime.combine(START + timedelta(days=dataset.DAYS), datetime.min.time(), UTC)
    for key, doc in (("rule_segment", RULE), ("sql_segment", RAW)):
        segment = store.create(doc)
        runs = []
        for _ in range(args.runs):
            started = time.monotonic()
            done = store.materialise(segment.segment_id, as_of=as_of)
            runs.append(time.monotonic() - started)
        figures[key] = {"members": done.members, "seconds_runs": [round(r, 3) for r in runs],
                        "seconds_median": round(statistics.median(runs), 3),
                        "seconds_min": round(min(runs), 3)}

    rule_id = store.list()[0]["segment_id"]
    members = [r[0] for r in wh.query(
        "SELECT person_id FROM segment_members WHERE segment_id = {s:String} LIMIT 5000",
        {"s": rule_id}).rows]
    anonymous = [r[0] for r in wh.query(
        "SELECT id FROM identity_map WHERE id_kind = 'anonymous' LIMIT 5000").rows]
    rng = random.Random(1)
    ids = [rng.choice(members) if i % 2 else rng.choice(anonymous) for i in range(args.checks)]
    for any_id in ids[:50]:
        store.membership(rule_id, any_id)                      # warm caches
    samples = []
    for any_id in ids:
        started = time.perf_counter()
        store.membership(rule_id, any_id)
        samples.append(time.perf_counter() - started)
    figures["membership_in_process"] = {"checks": len(ids), **percentiles(samples)}

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from funnelhouse.api import people as people_api

    app = Starlette(routes=people_api.routes(settings, wh))
    with TestClient(app, headers={"Authorization": "Bearer bench"}) as client:
        for any_id in ids[:50]:
            client.get(f"/v1/segments/{rule_id}/members/{any_id}")
        samples = []
        for any_id in ids:
            started = time.perf_counter()
            assert client.get(f"/v1/segments/{rule_id}/members/{any_id}").status_code == 200
            samples.append(time.perf_counter() - started)
    figures["membership_http_asgi"] = {"checks": len(ids), **percentiles(samples)}

    day = START + timedelta(days=dataset.DAYS // 2)
    started = time.monotonic()
    result = export_day(wh.readonly(), folder / "exports", day, formats=["csv", "parquet"],
                        tz=settings.reporting_tz)
    figures["export_one_day"] = {"seconds": round(time.monotonic() - started, 2),
                                 "files": len(result.files), "errors": len(result.errors),
                                 "rows": sum(f.rows for f in result.files) // 2}

    person = wh.query("SELECT person_id FROM sessions ORDER BY person_id LIMIT 1").scalar()
    started = time.monotonic()
    gone = forget(wh, person, requested_by="bench")
    figures["forget_one_person"] = {"seconds": round(time.monotonic() - started, 2),
                                    "tables": len(gone.rows_deleted)}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
