"""Benchmark of the model runner on chdb: full builds at 1M, 10M and 30M events, and an
incremental run of the same new day on top of each build (the default look-back of 3
days), with the growth ratio of that refresh from the smallest history to the largest
(issue 17: at most 1.5x from 1M to 30M), then a refresh with nothing new since. The
new day is received after the whole history, as from a live collector, including its
store visits dated up to three days earlier. Prints a table (and, with --json, writes
its figures).

The data comes from load-tests/dataset.py: the smallest size is generated in Python
(the base population), every larger size is that base copied in SQL with suffixed ids.
Each size gets its own data folder, `WORK/events-<size>`; the largest one, built and
settled here, is the folder bench_analyses.py and bench_segments.py then read
(`--folder WORK/events-<largest size>`), so this build is their setup as well.

Every step runs in a fresh child process: a timed step's peak RSS is that process's
own (ru_maxrss), i.e. the runner plus chdb, not the generator's.

    python load-tests/bench_models.py                         # 1M, 10M and 30M
    python load-tests/bench_models.py --sizes 50000,200000    # a quick look
    python load-tests/bench_models.py --baseline a673ec7      # old and new refresh

With --baseline, the new day's refresh on each history is run --rounds times by the
baseline (a git ref checked out into a temporary worktree, its own bench_models.py
child) and by this checkout, alternated, each on a fresh copy of the same folder; the
medians, their ratio and both growth ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One step, in its own process; returns what the parent prints and records."""
    from funnelhouse.config import Settings
    from funnelhouse.models.run import run_models
    from funnelhouse.warehouse.chdb import ChdbWarehouse

    folder = Path(args.folder)
    started = time.monotonic()
    if args.child == "prepare":
        done = dataset.prepare(folder, args.events, args.base_events,
                               base_dir=Path(args.base_dir))
        return {"seconds": time.monotonic() - started, **done}
    settings = Settings(data_dir=folder, reporting_tz=args.tz, lookback_days=args.lookback)
    wh = ChdbWarehouse(settings.warehouse_dir)
    # opening the engine (every table's parts loaded) is paid by each CLI run, once by
    # `up`, whose scheduler refreshes on the open engine: reported apart
    open_s = time.monotonic() - started
    if args.child == "add-day":
        # A new day arrives: a day's share of the base's new people, the SAME day (one
        # copy) whatever the history, so the refresh is compared at a fixed new day.
        marker = dataset.read_marker(folder) or {}
        day = date.fromisoformat(args.today)
        people = max(1, marker["base_people"] // dataset.DAYS)
        generated = dataset.generate(Path(args.base_dir), people, days=1, start=day,
                                     first_person=marker["base_people"])
        # received after everything before it, as from a live collector: the refresh
        # then has to take the day's store visits dated up to three days earlier too
        rows = dataset.load(wh, Path(args.base_dir), 1, received_after_history=True)
        wh.close()
        return {"seconds": time.monotonic() - started, "rows": rows,
                "generated": generated["rows"]}
    if args.child == "settle":
        seconds = dataset.settle(wh)
        wh.close()
        return {"seconds": seconds}
    runs = run_models(wh, settings, full_refresh=args.child == "full",
                      today=date.fromisoformat(args.today),
                      received_margin=timedelta(seconds=args.margin),
                      progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
    seconds = time.monotonic() - started
    events = wh.query("SELECT count() FROM behavior_events").scalar()
    counts = {table: wh.query(f"SELECT count() FROM {table}").scalar()
              for table in ("users", "sessions", "orders")}
    wh.close()
    return {"seconds": seconds, "open_s": open_s, "events": events, "rows": counts,
            "peak_rss_mb": dataset.peak_rss_mb(),
            "models": [[r.model, r.rows, r.seconds, r.mode, r.days] for r in runs]}


def step(name: str, folder: Path, tree: Path = ROOT, quiet: bool = False,
         env: dict[str, str] | None = None, **options: Any) -> dict[str, Any]:
    """Run one step in a fresh process, with `tree`'s code (its own bench_models.py);
    its stderr (progress) goes straight through unless quiet.

    The disk is synced first: a step right after a copy of the history (or after a
    full build) otherwise shares the disk with gigabytes of write-back, and ClickHouse's
    fsyncs on CREATE and ALTER stalled 0.7-2 s at random statements of a 30M refresh."""
    os.sync()
    command = [sys.executable, str(tree / "load-tests" / "bench_models.py"),
               "--child", name, "--folder", str(folder)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, cwd=tree,
                         stderr=subprocess.DEVNULL if quiet else None, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def refresh_side_by_side(folder: Path, trees: dict[str, tuple[Path, dict[str, str] | None]],
                         rounds: int, **options: Any) -> dict[str, list[dict[str, Any]]]:
    """The new day's refresh by each tree, alternated, each on a fresh copy of `folder`
    as it is now; leaves `folder` as the last tree's run left it."""
    pristine = folder.with_name(folder.name + "-before-refresh")
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(folder, pristine, symlinks=True)
    runs: dict[str, list[dict[str, Any]]] = {version: [] for version in trees}
    try:
        for round_ in range(rounds):
            # old-new, then new-old: whichever runs second in a round measured 0.2-0.3 s
            # slower at 10M even with both trees the same code (2026-12-06)
            order = list(trees.items())
            for version, (tree, env) in (order if round_ % 2 == 0 else order[::-1]):
                shutil.rmtree(folder)
                shutil.copytree(pristine, folder, symlinks=True)
                run = step("incremental", folder, tree=tree, quiet=True, env=env, **options)
                runs[version].append(run)
                print(f"  round {round_ + 1} {version}: {run['seconds']:.2f} s", flush=True)
    finally:
        shutil.rmtree(pristine, ignore_errors=True)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000,30000000",
                        help="events per full build; the smallest is generated, the rest "
                             "are SQL copies of it")
    parser.add_argument("--work-dir", default="/tmp/funnelhouse-bench-data")
    parser.add_argument("--tz", default=dataset.TZ)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--margin", type=int, default=0,
                        help="the runner's received margin, seconds (default 0: the data are "
                             "loaded before the build, no loader commits late; with the "
                             "live 600, the refresh re-reads the history's last 10 minutes "
                             "of received_at, which in generated data are late batches of "
                             "several days, copied with the base)")
    parser.add_argument("--baseline", default="",
                        help="git ref whose refresh runs beside this checkout's")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of old and new refresh (with --baseline), in turn "
                             "old first and new first: an even number balances the order")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base-events", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--base-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--lookback", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--today", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    trees: dict[str, tuple[Path, dict[str, str] | None]] = {}
    side_by_side: dict[int, dict[str, list[dict[str, Any]]]] = {}
    if args.baseline:
        from bench_ab import baseline_site, worktree
        scratch = Path(tempfile.mkdtemp(prefix="bench-models-ab-"))
        old = worktree(args.baseline, scratch)
        site = baseline_site(old, scratch)
        env = ({**os.environ, "PYTHONPATH": f"{old}{os.pathsep}{site}"} if site else None)
        trees = {"old": (old, env), "new": (ROOT, None)}
    try:
        return run_sizes(args, work, trees, side_by_side)
    finally:
        if trees:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(trees["old"][0])], capture_output=True)
            shutil.rmtree(trees["old"][0].parent, ignore_errors=True)


def run_sizes(args: argparse.Namespace, work: Path,
              trees: dict[str, tuple[Path, dict[str, str] | None]],
              side_by_side: dict[int, dict[str, list[dict[str, Any]]]]) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base_events = sizes[0]
    last_day = dataset.last_day()
    # The new day comes after the history's late batches (received up to 3 days after
    # its last day): its events are what the runner's received-since watermark finds.
    next_day = last_day + timedelta(days=4)
    table: list[dict[str, Any]] = []
    setup: list[tuple[str, float]] = []
    for size in sizes:
        folder = work / f"events-{size}"
        print(f"\n-- {size:,} events: data folder {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)     # fresh: the new day changes it
        made = step("prepare", folder, events=size, base_events=base_events,
                    base_dir=work / "generated")
        generated = ("files reused" if made["generate_reused"]
                     else f"generate {made['generate_s']:.0f} s")
        setup.append((f"data for {size:,} (×{made['copies']} of the base; {generated}, "
                      f"load {made['load_s']:.0f} s, merges {made['settle_s']:.0f} s)",
                      made["seconds"]))
        full = step("full", folder, tz=args.tz, today=last_day)
        table.append({"step": f"full build, {full['events']:,} events",
                      "events": full["events"], "seconds": round(full["seconds"], 1),
                      "peak_rss_mb": full["peak_rss_mb"], "rows": full["rows"],
                      "copies": made["copies"]})
        print_models(f"full build at {full['events']:,} events", full)
        if size == sizes[-1]:
            # Built: the analyses and segments parts can use the folder from here on,
            # even if this part is stopped during the incremental run.
            dataset.mark(folder, built=True, events=full["events"], built_by="bench_models.py")
        added = step("add-day", folder, tz=args.tz, today=next_day,
                     base_dir=work / "generated-day")
        setup.append((f"a new day: {added['rows']:,} events", added["seconds"]))
        # The new day with the default look-back (3), then a refresh with nothing new
        # since (look-back 0: the window's days were recorded by the first run).
        if trees:
            print(f"\nthe new day's refresh at {size:,} events, old and new alternated:",
                  flush=True)
            side_by_side[size] = refresh_side_by_side(
                folder, trees, args.rounds, tz=args.tz, today=next_day, lookback=3,
                margin=args.margin)
        for lookback, what in ((3, f"+{added['rows']:,} events of a new day"),
                               (0, "nothing new since")):
            if trees and lookback == 3:  # the folder holds the new code's last round
                runs = side_by_side[size]["new"]
                inc = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            else:
                inc = step("incremental", folder, tz=args.tz, today=next_day,
                           lookback=lookback, margin=args.margin)
            table.append({"step": f"incremental, {what}, look-back {lookback}",
                          "events": inc["events"], "seconds": round(inc["seconds"], 1),
                          "open_s": round(inc["open_s"], 2),
                          "peak_rss_mb": inc["peak_rss_mb"], "rows": inc["rows"],
                          "lookback": lookback, "history": size})
            print_models(f"incremental at {inc['events']:,} events, look-back {lookback}", inc)
        if size != sizes[-1]:
            continue
        settled = step("settle", folder, tz=args.tz)
        setup.append(("merge the built tables (for the analyses and segments)",
                      settled["seconds"]))
        dataset.mark(folder, settled=True, events=inc["events"])

    print(f"\nchdb, reporting tz {args.tz}; untimed setup:")
    for name, seconds in setup:
        print(f"  {name:<76} {seconds:>7.1f} s")
    check_scaling(table)
    check_growth(table)
    print_side_by_side(side_by_side)
    print(f"\n{'step':<62} {'events':>12} {'seconds':>9} {'peak RSS MB':>12}")
    for r in table:
        print(f"{r['step']:<62} {r['events']:>12,} {r['seconds']:>9.1f} {r['peak_rss_mb']:>12}")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": table, "setup": setup,
                                               "shared_folder": str(work / f"events-{sizes[-1]}")},
                                              indent=2))
    return 0


def check_scaling(table: list[dict[str, Any]]) -> None:
    """Copies of the base are distinct people: per-person counts must scale with them."""
    fulls = [r for r in table if r["step"].startswith("full")]
    if len(fulls) < 2:
        return
    small, big = fulls[0], fulls[-1]
    factor = big["copies"] / small["copies"]
    print(f"\nscaling check, {small['copies']} → {big['copies']} copies of the base "
          f"(expected ×{factor:g}):")
    for table_name in ("users", "sessions", "orders"):
        ratio = big["rows"][table_name] / max(1, small["rows"][table_name])
        print(f"  {table_name:<10} {small['rows'][table_name]:>12,} → "
              f"{big['rows'][table_name]:>12,}  ×{ratio:.2f}")


def check_growth(table: list[dict[str, Any]]) -> None:
    """The same new day refreshed on each history: how the refresh grows with it."""
    for lookback, what in ((3, "the same new day"), (0, "nothing new since")):
        runs = sorted((r for r in table if r.get("lookback") == lookback),
                      key=lambda r: r["history"])
        if len(runs) < 2:
            continue
        small, big = runs[0], runs[-1]
        ratio = big["seconds"] / max(small["seconds"], 1e-9)
        print(f"\nrefresh of {what}, look-back {lookback}: "
              + ", ".join(f"{r['history']:,} events {r['seconds']:.1f} s" for r in runs)
              + f"; growth {small['history']:,} → {big['history']:,}: ×{ratio:.2f}")
        print("  of which opening the engine (paid once by `up`): "
              + ", ".join(f"{r['open_s']:.2f} s" for r in runs))


def print_side_by_side(side_by_side: dict[int, dict[str, list[dict[str, Any]]]]) -> None:
    """Old and new refresh of the same new day: medians, ratio, growth of each."""
    if not side_by_side:
        return
    medians = {size: {version: statistics.median(r["seconds"] for r in runs)
                      for version, runs in by_version.items()}
               for size, by_version in side_by_side.items()}
    print("\nthe new day's refresh, look-back 3, old and new alternated (medians):")
    for size, median in medians.items():
        rounds = {v: ", ".join(f"{r['seconds']:.2f}" for r in runs)
                  for v, runs in side_by_side[size].items()}
        print(f"  {size:>12,} events: old {median['old']:.2f} s ({rounds['old']}), "
              f"new {median['new']:.2f} s ({rounds['new']}), "
              f"new / old {median['new'] / median['old']:.2f}")
        new = side_by_side[size]["new"]  # this checkout's child reports open_s
        print(f"  {'':>12}  new, engine already open (as `up` refreshes): "
              f"{statistics.median(r['seconds'] - r['open_s'] for r in new):.2f} s "
              f"(opening {statistics.median(r['open_s'] for r in new):.2f} s)")
    sizes = sorted(medians)
    if len(sizes) > 1:
        print("  growth " + f"{sizes[0]:,} → {sizes[-1]:,}: " + ", ".join(
            f"{v} ×{medians[sizes[-1]][v] / medians[sizes[0]][v]:.2f}" for v in ("old", "new")))


def print_models(title: str, run: dict[str, Any]) -> None:
    print(f"\n{title} ({run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:,} MB):")
    for name, rows, seconds, mode, days in run["models"]:
        print(f"  {name:<22} {rows:>12,} rows {seconds:>8.2f}s  {mode}"
              + (f" ({days} days)" if days else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
