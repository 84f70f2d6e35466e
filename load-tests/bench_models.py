"""Benchmark of the model runner on chdb: full builds at 1M and 10M events, and an
incremental run of one new day on top of the 10M build. Prints a table.

Each measured step runs in a fresh child process, so its peak RSS (ru_maxrss of the
child) is the runner's alone, not the generator's. Data folders are kept under
--work-dir and reused when they already hold the wanted number of events.

    python load-tests/bench_models.py                 # 1M and 10M
    python load-tests/bench_models.py --sizes 1000000 # one size
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EVENTS_PER_PERSON = 35  # what the generator averages (measured)
DAYS = 30
START = date(2024, 3, 1)
SEED = 11
CHUNK_PEOPLE = 4000


def _generate_chunk(args: tuple[int, int, int, int, str]) -> list[bytes]:
    from funnelhouse.generator import iter_json_batches

    seed, first, people, days, start = args
    out: list[bytes] = []
    for batch in iter_json_batches(
        seed, people, days, date.fromisoformat(start), batch_rows=10**9, first_person=first
    ):
        out.extend(batch)
    return out


def load(
    folder: Path, people: int, days: int, start: date, seed: int, first_person: int = 0
) -> int:
    """Generate people [first_person, first_person + people) into events_raw (2 processes)."""
    from warehouse.chdb import ChdbWarehouse
    from warehouse.migrate import migrate

    wh = ChdbWarehouse(folder)
    migrate(wh, ROOT / "sql" / "migrations")
    jobs = [
        (seed, first, min(CHUNK_PEOPLE, first_person + people - first), days, start.isoformat())
        for first in range(first_person, first_person + people, CHUNK_PEOPLE)
    ]
    rows = 0
    with mp.get_context("fork").Pool(2) as pool:
        for chunk in pool.imap(_generate_chunk, jobs):
            for i in range(0, len(chunk), 100_000):
                rows += wh.insert_json_rows("events_raw", chunk[i : i + 100_000])
    wh.execute("OPTIMIZE TABLE events_raw FINAL")  # let merges settle before timing
    wh.close()
    return rows


def child(args: argparse.Namespace) -> None:
    """One measured step, run in its own process; prints a JSON line."""
    from funnelhouse.config import Settings
    from funnelhouse.models import run_models
    from warehouse.chdb import ChdbWarehouse

    folder = Path(args.folder)
    started = time.monotonic()
    if args.step == "load":
        rows = load(
            folder,
            args.people,
            args.days,
            date.fromisoformat(args.start),
            args.seed,
            args.first_person,
        )
        print(json.dumps({"rows": rows, "seconds": time.monotonic() - started}))
        return
    wh = ChdbWarehouse(folder)
    settings = Settings(data_dir=folder, reporting_tz=args.tz, lookback_days=args.lookback)
    runs = run_models(
        wh,
        settings,
        full_refresh=args.step == "full",
        today=date.fromisoformat(args.today) if args.today else None,
        progress=lambda m: print(m, file=sys.stderr),
    )
    events = wh.query("SELECT count() FROM behavior_events").scalar()
    print(
        json.dumps(
            {
                "seconds": time.monotonic() - started,
                "events": events,
                "models": [[r.model, r.rows, r.seconds, r.mode, r.days] for r in runs],
            }
        )
    )


def measure(step: str, folder: Path, **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", step, "--folder", str(folder)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the max over all children so far; steps run in
    # increasing size order, so a larger value is this child's own peak.
    result["peak_rss_mb"] = round(max(peak, before) / 1024)
    result["peak_is_own"] = peak > before
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--work-dir", default="/tmp/funnelhouse-bench")
    parser.add_argument("--tz", default="Asia/Seoul")
    parser.add_argument("--child")
    parser.add_argument("--folder")
    parser.add_argument("--people", type=int, default=0)
    parser.add_argument("--first-person", type=int, default=0)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--start", default=START.isoformat())
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--lookback", type=int, default=3)
    parser.add_argument("--today", default="")
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    args = parser.parse_args()
    if args.child:
        args.step = args.child
        child(args)
        return

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    table = []
    last_day = (START + timedelta(days=DAYS - 1)).isoformat()
    for size in sizes:
        folder = work / f"events-{size}"
        people = size // EVENTS_PER_PERSON
        if folder.exists():
            shutil.rmtree(folder)
        loaded = measure("load", folder, people=people, days=DAYS, start=START, seed=SEED)
        table.append(
            (f"load {size:,} (generate + insert)", loaded["rows"], loaded["seconds"], None)
        )
        full = measure("full", folder, tz=args.tz, today=last_day)
        table.append(
            (
                f"full build, {full['events']:,} events",
                full["events"],
                full["seconds"],
                full["peak_rss_mb"],
            )
        )
        print_models(f"full build at {size:,}", full["models"])
        if size == max(sizes):
            # One more day arrives: a day's share of new people, plus nothing else.
            next_day = START + timedelta(days=DAYS)
            day_people = people // DAYS
            added = measure(
                "load",
                folder,
                people=day_people,
                days=1,
                start=next_day,
                seed=SEED,
                first_person=people,
            )
            for lookback in (0, 3):
                inc = measure(
                    "incremental", folder, tz=args.tz, today=next_day.isoformat(), lookback=lookback
                )
                table.append(
                    (
                        f"incremental, +{added['rows']:,} events of a new day, "
                        f"look-back {lookback}",
                        inc["events"],
                        inc["seconds"],
                        inc["peak_rss_mb"],
                    )
                )
                print_models(f"incremental at {size:,}, look-back {lookback}", inc["models"])
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nchdb, {os.cpu_count()} cores, reporting tz {args.tz}")
    print(f"{'step':<62} {'events':>12} {'seconds':>9} {'peak RSS MB':>12}")
    for name, rows, seconds, rss in table:
        print(f"{name:<62} {rows:>12,} {seconds:>9.1f} {rss if rss is not None else '':>12}")


def print_models(title: str, models: list) -> None:
    print(f"\n{title}:")
    for name, rows, seconds, mode, days in models:
        print(
            f"  {name:<22} {rows:>12,} rows {seconds:>8.2f}s  {mode}"
            + (f" ({days} days)" if days else "")
        )


if __name__ == "__main__":
    main()
