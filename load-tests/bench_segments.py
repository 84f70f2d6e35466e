"""Benchmark: segment materialisation at ~10M events, membership latency, a day's export, forget.

    python load-tests/bench_segments.py --people 13000 --days 30 --copies 10   # ≈10M events
    python load-tests/bench_segments.py --people 2000 --days 14     # a quick look

Builds a fresh embedded warehouse in --dir (default a temp folder): generated events →
events_raw → all models, then times:
  * materialising a rule segment (2 containers, 4 groups: intersection, exclusion, a
    30-day window, a count threshold) and a raw-SQL segment;
  * N membership checks (random members and non-members, by person id and by
    anonymous id) in process, and through the HTTP route (Starlette test client: ASGI,
    admin check and thread hop included, no socket);
  * one day's export of the eight tables as CSV + Parquet;
  * forgetting one person (mutations on every table).
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from funnelhouse.config import Settings  # noqa: E402
from funnelhouse.exports import export_day  # noqa: E402
from funnelhouse.forget import forget  # noqa: E402
from funnelhouse.generator import iter_json_batches  # noqa: E402
from funnelhouse.models import run_models  # noqa: E402
from funnelhouse.segments import Segments  # noqa: E402
from warehouse.chdb import ChdbWarehouse  # noqa: E402
from warehouse.migrate import migrate  # noqa: E402

START = date(2024, 3, 1)

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
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--copies", type=int, default=1,
                        help="replicate the generated population N times with SQL (ids "
                             "suffixed), to reach 10M events without generating each one")
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--models", default=None,
                        help="comma-separated models to build (default: all)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-segments-"))
    settings = Settings(data_dir=folder, reporting_tz="Asia/Seoul", admin_token="bench")
    wh = ChdbWarehouse(settings.warehouse_dir)
    migrate(wh, settings.sql_dir / "migrations")
    figures: dict[str, object] = {"people": args.people, "days": args.days}

    started = time.monotonic()
    events = 0
    for batch in iter_json_batches(7, args.people, args.days, START, batch_rows=200_000):
        events += wh.insert_json_rows("events_raw", batch)
    if args.copies > 1:
        # chdb inserts nothing when a table is read and written by one INSERT … SELECT:
        # copy the generated population aside first.
        wh.execute("CREATE TABLE bench_base AS events_raw")
        wh.execute("INSERT INTO bench_base SELECT * FROM events_raw")
    for copy in range(1, args.copies):
        suffix = f"~{copy}"
        wh.execute(f"""
            INSERT INTO events_raw
            SELECT * REPLACE (
                concat(message_id, '{suffix}') AS message_id,
                if(anonymous_id = '', '', concat(anonymous_id, '{suffix}')) AS anonymous_id,
                if(user_id = '', '', concat(user_id, '{suffix}')) AS user_id,
                if(previous_id = '', '', concat(previous_id, '{suffix}')) AS previous_id,
                if(session_id = '', '', concat(session_id, '{suffix}')) AS session_id,
                replaceRegexpAll(properties, '"order_id":"([^"]+)"',
                                 '"order_id":"\\1{suffix}"') AS properties)
            FROM bench_base""")
    wh.execute("DROP TABLE IF EXISTS bench_base")
    events = wh.query("SELECT count() FROM events_raw").scalar()
    figures["copies"] = args.copies
    figures["events"] = events
    figures["load_seconds"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    run_models(wh, settings, progress=lambda _: None, today=START + timedelta(days=args.days),
               select=args.models.split(",") if args.models else None)
    figures["models_seconds"] = round(time.monotonic() - started, 1)
    figures["behavior_events_rows"] = wh.query("SELECT count() FROM behavior_events").scalar()
    # Right after a big load, background merges slow queries 2.5-3.5x (FACTS.md): let
    # them finish so the figures are of a settled warehouse.
    for table in ("events_raw", "behavior_events", "sessions"):
        wh.execute(f"OPTIMIZE TABLE {table} FINAL")
    while wh.query("SELECT count() FROM system.merges").scalar():
        time.sleep(1)

    store = Segments(wh, settings)
    as_of = datetime.combine(START + timedelta(days=args.days), datetime.min.time(), UTC)
    for key, doc in (("rule_segment", RULE), ("sql_segment", RAW)):
        segment = store.create(doc)
        runs = []
        for _ in range(5):
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

    from funnelhouse import people_api

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

    day = START + timedelta(days=args.days // 2)
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
