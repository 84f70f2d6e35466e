"""The benchmark's shared data: ≈10M generated events, made once per bench run.

Generating 10M events with `funnelhouse.generator` takes 400–1000 s of Python on this
machine. So the generator makes a *base* population only (≈1M events, chunks of people
written as JSONEachRow files by both cores at once), and SQL copies that base N times
into `events_raw` with every identifier suffixed (`~1`, `~2`, …): message ids, anonymous
ids, user ids, alias previous ids, session ids and the order ids inside `properties`.
Copy 0 keeps the original ids, so a folder with one copy *is* the base population.

Each copy is a set of distinct people with exactly the base's behaviour — same times,
devices, campaigns, products, identity stitching, duplicates and late arrivals — and no
id of one copy ever meets an id of another. Whatever the generator planted per person
therefore holds per copy, and anything counted per person (users, sessions, orders,
funnel steps) is N times the base.

    python load-tests/dataset.py --folder DIR --events 10000000 --base-events 1000000
    python load-tests/dataset.py --folder DIR --events 200000 --base-events 50000 --build

A folder is a funnelhouse data dir (`DIR/warehouse` is the chdb folder). chdb serves one
folder per process, so each folder is loaded by its own process (this script, run once
per folder); the generated files can be shared by several folders (`--base-dir`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = date(2024, 3, 1)
DAYS = 30
SEED = 11
TZ = "Asia/Seoul"          # the reporting time zone the bench builds and queries in
EVENTS_PER_PERSON = 35.5    # what the generator averages over 30 days (measured)
CHUNK_PEOPLE = 2000         # people per generated file: ≈70k events, ≈1–3 s of Python
MARKER = "dataset.json"     # in a data folder: what it holds

Progress = Callable[[str], None]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---- generating the base population -------------------------------------------------------

def _write_chunk(job: tuple[Path, int, int, int, int, str]) -> int:
    from funnelhouse.demo.generator import iter_json_batches

    path, seed, first, people, days, start = job
    rows = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for batch in iter_json_batches(seed, people, days, date.fromisoformat(start),
                                       batch_rows=20_000, first_person=first):
            out.write(b"\n".join(batch))
            out.write(b"\n")
            rows += len(batch)
    tmp.rename(path)
    return rows


def generate(out_dir: Path, people: int, *, days: int = DAYS, start: date = START,
             seed: int = SEED, first_person: int = 0, workers: int = 2,
             progress: Progress = _say) -> dict[str, Any]:
    """Write people [first_person, first_person + people) as JSONEachRow files in out_dir.

    The files are what `events_raw` would receive; a `base.json` beside them records
    what was generated, and a folder that already holds the same generation is reused.
    """
    wanted = {"people": people, "days": days, "start": start.isoformat(), "seed": seed,
              "first_person": first_person}
    marker = out_dir / "base.json"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in wanted} == wanted:
            return {**done, "reused": True}
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    started = time.monotonic()
    jobs = [(out_dir / f"people-{first:09d}.jsonl", seed, first,
             min(CHUNK_PEOPLE, first_person + people - first), days, start.isoformat())
            for first in range(first_person, first_person + people, CHUNK_PEOPLE)]
    rows = 0
    # fork: the workers inherit sys.path and the imported generator.
    with mp.get_context("fork").Pool(workers) as pool:
        for n, chunk_rows in enumerate(pool.imap_unordered(_write_chunk, jobs), 1):
            rows += chunk_rows
            if n % 5 == 0 or n == len(jobs):
                progress(f"  generated {rows:,} rows ({n}/{len(jobs)} chunks, "
                         f"{time.monotonic() - started:.0f} s)")
    done = {**wanted, "rows": rows, "files": len(jobs),
            "seconds": round(time.monotonic() - started, 1)}
    marker.write_text(json.dumps(done))
    return {**done, "reused": False}


# ---- copying it in SQL --------------------------------------------------------------------

def _suffixed(column: str, suffix: str) -> str:
    return f"if({column} = '', '', concat({column}, '{suffix}')) AS {column}"


def copy_sql(source: str, copy: int) -> str:
    """INSERT … SELECT of copy number `copy` of table `source` into events_raw.

    Copy 0 is the source unchanged; copy N suffixes every identifier with `~N`, so its
    people, sessions, messages and orders are distinct from every other copy's.
    """
    if copy == 0:
        return f"INSERT INTO events_raw SELECT * FROM {source}"
    suffix = f"~{copy}"
    # The generator writes properties with orjson: `"order_id":"o-…"`, no spaces.
    order_id = ("replaceRegexpOne(properties, '\"order_id\":\"([^\"]+)\"', "
                f"'\"order_id\":\"\\\\1{suffix}\"') AS properties")
    columns = ",\n        ".join(
        [f"concat(message_id, '{suffix}') AS message_id",
         *(_suffixed(c, suffix) for c in ("anonymous_id", "user_id", "previous_id",
                                           "session_id")),
         order_id])
    return f"INSERT INTO events_raw SELECT * REPLACE (\n        {columns})\nFROM {source}"


def load(warehouse: Any, files: Path, copies: int, *, progress: Progress = _say,
         received_after_history: bool = False) -> int:
    """Insert the generated files `copies` times into events_raw; returns the rows added.

    The files are parsed once into a staging table (chdb inserts nothing when one
    INSERT … SELECT reads and writes the same table), copied from there, then dropped.
    `received_after_history`: the rows' `received_at` moved (all by one amount, order
    kept) to just after the latest already in events_raw, as a live collector would
    stamp what arrives next. The generator stamps a late batch a little after its event
    time, and the history's own late batches reach days past its last day, so a new
    day's store visits dated earlier would otherwise look received before the history.
    """
    from funnelhouse.config import PACKAGE_ROOT
    from funnelhouse.warehouse.migrate import migrate

    migrate(warehouse, PACKAGE_ROOT / "sql" / "migrations")
    before = warehouse.query("SELECT count() FROM events_raw").scalar()
    warehouse.execute("DROP TABLE IF EXISTS bench_base")
    warehouse.execute("CREATE TABLE bench_base AS events_raw")
    glob = str(files / "people-*.jsonl").replace("'", "\\'")
    warehouse.execute(f"INSERT INTO bench_base SELECT * FROM file('{glob}', JSONEachRow)")
    if received_after_history:
        shift_ms = int(warehouse.query(
            "SELECT greatest(0, (SELECT toUnixTimestamp64Milli(max(received_at)) FROM "
            "events_raw) - toUnixTimestamp64Milli(min(received_at)) + 1) FROM bench_base"
        ).scalar() or 0)
        if shift_ms:
            warehouse.execute("DROP TABLE IF EXISTS bench_shifted")
            warehouse.execute("CREATE TABLE bench_shifted AS events_raw")
            warehouse.execute(
                "INSERT INTO bench_shifted SELECT * REPLACE (received_at + "
                f"toIntervalMillisecond({shift_ms}) AS received_at) FROM bench_base")
            warehouse.execute("DROP TABLE bench_base")
            warehouse.execute("RENAME TABLE bench_shifted TO bench_base")
    for copy in range(copies):
        warehouse.execute(copy_sql("bench_base", copy))
        progress(f"  copy {copy + 1}/{copies} inserted")
    warehouse.execute("DROP TABLE bench_base")
    return warehouse.query("SELECT count() FROM events_raw").scalar() - before


def settle(warehouse: Any, optimize: tuple[str, ...] = (), *, quiet_s: float = 3,
           limit_s: float = 300) -> float:
    """Wait until the engine's background merges are done; returns the seconds it took.

    Right after a big load, pending merges make queries 2.5–3.5× slower (FACTS.md), so
    figures are taken once merges have stopped: no merge running for `quiet_s` seconds.
    That is the state the engine leaves a table in by itself (a few large parts per
    month), not a fully merged one; `optimize` names tables to merge down with
    OPTIMIZE … FINAL first (costly at 10M rows, and not what a live warehouse looks like).
    """
    started = time.monotonic()
    for table in optimize:
        warehouse.execute(f"OPTIMIZE TABLE {table} FINAL")
    quiet_since = time.monotonic()
    while time.monotonic() - started < limit_s:
        if warehouse.query("SELECT count() FROM system.merges").scalar():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        time.sleep(0.25)
    return time.monotonic() - started


# ---- a whole folder -----------------------------------------------------------------------

def people_for(events: int) -> int:
    return max(1, round(events / EVENTS_PER_PERSON))


def copies_for(events: int, base_events: int) -> int:
    return max(1, round(events / base_events))


def read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def prepare(folder: Path, events: int, base_events: int, *, base_dir: Path | None = None,
            build: bool = False, progress: Progress = _say) -> dict[str, Any]:
    """A data folder holding ≈`events` events: the base population, copied in SQL.

    Reuses the folder when its marker says it holds the same data (and, with `build`,
    that the models were built on it); else starts it afresh. Runs in the calling
    process, which must not have another chdb folder open.
    """
    from funnelhouse.config import Settings
    from funnelhouse.warehouse.chdb import ChdbWarehouse

    base_events = min(base_events, events)
    copies = copies_for(events, base_events)
    people = people_for(base_events)
    wanted = {"base_people": people, "copies": copies, "days": DAYS,
              "start": START.isoformat(), "seed": SEED}
    done = read_marker(folder)
    if done and {k: done.get(k) for k in wanted} == wanted and (done.get("built") or not build):
        progress(f"  reusing {folder} ({done['events']:,} events)")
        return done
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    base_dir = base_dir or folder / "generated"
    generated = generate(base_dir, people, progress=progress)
    settings = Settings(data_dir=folder, reporting_tz=TZ)
    wh = ChdbWarehouse(settings.warehouse_dir)
    started = time.monotonic()
    rows = load(wh, base_dir, copies, progress=progress)
    loaded_s = time.monotonic() - started
    settle_s = settle(wh)
    done = {**wanted, "events": rows, "base_rows": generated["rows"],
            "generate_s": generated["seconds"], "generate_reused": generated["reused"],
            "load_s": round(loaded_s, 1),
            "settle_s": round(settle_s, 1), "built": False}
    if build:
        done.update(build_models(wh, settings, progress=progress))
    wh.close()
    (folder / MARKER).write_text(json.dumps(done))
    return done


def build_models(wh: Any, settings: Any, *, progress: Progress = _say,
                 today: date | None = None) -> dict[str, Any]:
    """A full build of every model, then the built tables settled; for parts run alone."""
    from funnelhouse.models.run import run_models

    started = time.monotonic()
    run_models(wh, settings, full_refresh=True, today=today or last_day(),
               progress=lambda m: progress("  " + m))
    built_s = time.monotonic() - started
    settle_s = settle(wh)
    return {"built": True, "models_s": round(built_s, 1), "models_settle_s": round(settle_s, 1)}


def last_day() -> date:
    return START + timedelta(days=DAYS - 1)


def mark(folder: Path, **changes: Any) -> None:
    """Record in the folder's marker what happened to it since it was prepared."""
    done = read_marker(folder) or {}
    done.update(changes)
    (folder / MARKER).write_text(json.dumps(done))


def peak_rss_mb() -> int:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", required=True, help="the data folder to fill")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--base-events", type=int, default=1_000_000,
                        help="events generated in Python; the rest are SQL copies of them")
    parser.add_argument("--base-dir", default=None,
                        help="where the generated files go (shared by several folders)")
    parser.add_argument("--build", action="store_true", help="also build every model")
    args = parser.parse_args()
    done = prepare(Path(args.folder), args.events, args.base_events,
                   base_dir=Path(args.base_dir) if args.base_dir else None, build=args.build)
    print(json.dumps({**done, "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
