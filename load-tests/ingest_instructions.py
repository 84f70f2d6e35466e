"""Instructions per event of the collector's ingest, counted by callgrind: A/B without noise.

    python load-tests/ingest_instructions.py                     # this checkout
    python load-tests/ingest_instructions.py --baseline HEAD~1   # an earlier one beside it

On these VMs two runs of the same served benchmark differ by up to 15%, so a change
worth 5–10% of a batched event cannot be told from noise by timing. Instructions can:
valgrind's callgrind counts every instruction a process executes, the same count for
the same code and input whatever else the machine is doing. Each count here is a whole
Python process, so start-up is subtracted: the ingest of N events and of 3N events are
counted in two processes, and the difference divided by 2N is one event's cost.

What is counted is the body parsed (orjson) and `Ingestor.process` — normalise,
validate against the plan, enrich, build and serialise the row, the dedup window's
check, the debug ring — with no queue and no HTTP. Shapes:

  click×50   50 copies of bench_collector's click event per request (one context)
  mixed×50   50 realistic demo messages per request (page, screen, track, identify;
             many contexts, a few refused by the plan)
  click×1    one click event per request
  mixed×1    one demo message per request

Every tree ingests the same bodies (made once by this checkout). The figures are
instructions, not time: a lower count is less CPU on every machine, but a cache miss
counts as one instruction, so compare versions with it, and report speed with
bench_ab.py. Needs valgrind (`apt-get install valgrind`); each count takes 10–40 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

SHAPES = {"click×50": ("click", 50), "mixed×50": ("mixed", 50), "click×1": ("click", 1),
          "mixed×1": ("mixed", 1)}
# The received time every request is given: the events' timestamps are near it.
RECEIVED_AT = 1764928800.0


def make_bodies(kind: str, per_request: int, events: int) -> list[bytes]:
    """Request bodies (JSON lists) holding `events` events, each with its own messageId."""
    import bench_collector as bc
    import bench_pipeline as bp

    click = dict(bc.EVENT, timestamp="2025-12-05T09:59:00.000Z")
    mixed = bp.sample_messages()
    bodies = []
    for request in range(events // per_request):
        messages = []
        for place in range(per_request):
            n = request * per_request + place
            message = dict(click if kind == "click" else mixed[n % len(mixed)])
            message["messageId"] = f"m-{n}"
            messages.append(orjson.dumps(message))
        bodies.append(b"[" + b",".join(messages) + b"]")
    return bodies


def child(tree: Path, bodies_file: Path) -> None:
    """Ingest the bodies in `bodies_file` with the funnelhouse in `tree` (under callgrind)."""
    sys.path.insert(0, str(tree))
    import gc

    from funnelhouse.collector.ingest import Ingestor, RequestInfo
    from funnelhouse.collector.plan import TrackingPlan
    from funnelhouse.config import Settings, parse_write_keys

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ingest-instructions-")),
                        write_keys=parse_write_keys("bench-key:web"))
    ingestor = Ingestor(settings, TrackingPlan.load(settings.plan_dir), None)
    key = settings.write_keys[0]
    bodies = bodies_file.read_bytes().split(b"\n")
    gc.disable()  # a collection's timing depends on what ran before: not counted
    accepted = 0
    for body in bodies:
        accepted += ingestor.process(orjson.loads(body), RequestInfo(
            write_key=key, ip="127.0.0.1", user_agent="wrk", received_at=RECEIVED_AT)).accepted
    print(f"accepted {accepted}")


def instructions(valgrind: str, tree: Path, bodies_file: Path, site: Path | None) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0",
               PYTHONPATH=os.pathsep.join([str(tree), *([str(site)] if site else [])]))
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", str(tree), str(bodies_file)],
        env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"callgrind run failed ({tree}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_event(valgrind: str, tree: Path, scratch: Path, shape: str, events: int,
              site: Path | None) -> float:
    counts = []
    for n in (events, 3 * events):
        path = scratch / f"{shape}-{n}.bodies"
        counts.append(instructions(valgrind, tree, path, site))
    return (counts[1] - counts[0]) / (2 * events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git ref of an earlier collector, counted beside")
    parser.add_argument("--events", type=int, default=1000,
                        help="N: counted at N and 3N events (default 1000)")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--child", nargs=2, metavar=("TREE", "BODIES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    import bench_ab

    shapes = args.shapes.split(",")
    scratch = Path(tempfile.mkdtemp(prefix="ingest-instructions-"))
    try:
        for shape in shapes:
            kind, per_request = SHAPES[shape]
            for n in (args.events, 3 * args.events):
                (scratch / f"{shape}-{n}.bodies").write_bytes(
                    b"\n".join(make_bodies(kind, per_request, n)))
        trees: list[tuple[str, Path, Path | None]] = []
        if args.baseline:
            tree = bench_ab.worktree(args.baseline, scratch)
            trees.append((args.baseline, tree, bench_ab.baseline_site(tree, scratch)))
        trees.append(("this checkout", ROOT, None))
        figures: dict[str, dict[str, float]] = {}
        for shape in shapes:
            for name, tree, site in trees:
                figure = per_event(valgrind, tree, scratch, shape, args.events, site)
                figures.setdefault(shape, {})[name] = figure
                print(f"  {shape:9} {name}: {figure:,.0f} instructions an event", flush=True)
        print()
        names = [name for name, _, _ in trees]
        print("| shape | " + " | ".join(names) + (" | new / old |" if args.baseline else " |"))
        print("|---" * (len(names) + 1 + bool(args.baseline)) + "|")
        for shape in shapes:
            row = figures[shape]
            cells = [f"{row[name]:,.0f}" for name in names]
            if args.baseline:
                cells.append(f"**{row[names[1]] / row[names[0]]:.3f}**")
            print(f"| {shape} | " + " | ".join(cells) + " |")
        return 0
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(scratch / "baseline")], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
