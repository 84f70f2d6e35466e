"""The one-command benchmark: every figure of the performance targets, in one run, on this
machine, printed as one table (targets beside them) and written as JSON.

    python load-tests/bench.py                  # everything, within 20 min on 2 cores
    python load-tests/bench.py --quick          # small sizes, short runs, within 3 min
    python load-tests/bench.py --out results.json --markdown table.md
    funnelhouse bench [--quick] [--out …]       # the same

Each part is a script of its own in load-tests/, run here as a subprocess (its output is
shown as it runs and kept in --work-dir/logs), so any of them can also be run alone:

    bench_collector.py   collector vs the bare-endpoint ceiling, singles and 50-batches
    bench_pipeline.py    embedded queue vs Kafka, freshness, loader rows/s, collector RSS,
                         the per-stage profile of the ingest path
    bench_models.py      the shared data set (dataset.py: 1M generated events, copied in
                         SQL to 10M), full builds at 1M and 10M, an incremental day
    bench_analyses.py    5-step funnel with a breakdown, weekly retention (the 10M folder)
    bench_segments.py    segment materialisation and membership checks (the 10M folder)

The 10M-event data folder is made once, by bench_models.py, in --work-dir/data; the
analyses and segments parts read that same folder afterwards (one process at a time:
chdb serves a folder to one process). The whole run has a time budget (20 min; --quick
3 min): each part's limit is its share of the budget plus whatever earlier parts left
unused, so the run ends within the budget even when a part has to be stopped.

A part that fails or runs past its time limit is reported as such; the others still run.
Every process a part starts (servers, Kafka) is stopped when it ends, fails or times out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Part:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    timeout_full: int          # seconds
    timeout_quick: int
    json_flag: bool = False    # the script writes its figures to --json FILE
    result: Any = None
    error: str = ""
    seconds: float = 0.0
    log: Path | None = None
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# Sizes of the shared data set: the first is generated in Python, the second is copies of
# it (load-tests/dataset.py); the second is the one the analyses and segments read.
SIZES_FULL = (1_000_000, 10_000_000)
SIZES_QUICK = (25_000, 100_000)
BUDGET_FULL = 20 * 60      # seconds, the whole run
BUDGET_QUICK = 3 * 60


def shared_folder(work: Path, quick: bool) -> Path:
    """The data folder bench_models.py builds and the analyses and segments parts read."""
    return work / "data" / f"events-{(SIZES_QUICK if quick else SIZES_FULL)[-1]}"


def _cpu_per_event(embedded: dict, kafka: dict) -> str:
    """The collector's CPU per event on each queue, and the broker's beside it."""
    if "cpu_us_per_event" not in embedded or "cpu_us_per_event" not in kafka:
        return ""
    ours, theirs = kafka["cpu_us_per_event"], embedded["cpu_us_per_event"]
    return (f"; collector CPU {ours:g} vs {theirs:g} µs/event (embedded / Kafka "
            f"{theirs / max(ours, 0.1):.0%}), broker {kafka.get('broker_cpu_us_per_event', 0):g}"
            " µs/event on the same cores")


def parts(work: Path, no_kafka: bool) -> list[Part]:
    kafka = ["--no-kafka"] if no_kafka else []
    data = str(work / "data")
    full_folder, quick_folder = str(shared_folder(work, False)), str(shared_folder(work, True))
    # Limits (full, quick) sum to the budgets above: what a part leaves unused goes to the
    # parts after it (see run_all).
    return [
        # bench_collector waits (up to --patience s) for a quiet machine before each
        # measurement; bounded here so the whole bench keeps its time budget, as are the
        # wrk runs (6 s, the scripts' default is 10). --quick leaves bench_collector out:
        # bench_pipeline measures the same bare/collector pair, shorter.
        Part("collector", "bench_collector.py",
             ["--workers", "1,2", "--seconds", "6", "--patience", "3"], [], 140, 0,
             json_flag=True),
        Part("pipeline", "bench_pipeline.py", [*kafka, "--seconds", "6", "--loader-rows", "600000"],
             ["--quick", *kafka, "--only", "throughput,freshness,loader,profile"],
             260, 100, json_flag=True),
        Part("models", "bench_models.py",
             ["--sizes", ",".join(map(str, SIZES_FULL)), "--work-dir", data],
             ["--sizes", ",".join(map(str, SIZES_QUICK)), "--work-dir", data], 610, 45,
             json_flag=True),
        # Five runs: the funnel and retention take turns with their bare queries, and a
        # median of three swung by a fifth on this VM.
        Part("analyses", "bench_analyses.py", ["--folder", full_folder, "--runs", "5"],
             ["--folder", quick_folder, "--runs", "1"], 80, 15),
        Part("segments", "bench_segments.py",
             ["--folder", full_folder, "--checks", "2000", "--runs", "3"],
             ["--folder", quick_folder, "--checks", "200", "--runs", "1"], 110, 20),
    ]


# ---- running a part ---------------------------------------------------------------------

_RUNNING: list[subprocess.Popen[str]] = []


def _kill_running(*_: Any) -> None:
    for proc in list(_RUNNING):
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            continue
    # Leftovers in the group (a server a script forgot) go too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def limit(part: Part, quick: bool) -> int:
    """The part's own share of the time budget, in seconds (0: not run)."""
    if quick:
        return part.timeout_quick if part.quick else 0
    return part.timeout_full


def run_all(selected: list[Part], quick: bool, work: Path) -> int:
    """Run the parts in order within the sum of their limits; returns that budget.

    A part may run until the time left minus what the parts after it are owed, i.e. its
    own limit plus whatever the parts before it left unused.
    """
    budget = sum(limit(p, quick) for p in selected)
    deadline = time.monotonic() + budget
    for i, part in enumerate(selected):
        owed_later = sum(limit(p, quick) for p in selected[i + 1:])
        run_part(part, quick, work, max(10, int(deadline - time.monotonic() - owed_later)))
    return budget


def run_part(part: Part, quick: bool, work: Path, timeout: int) -> None:
    script = HERE / part.script
    if quick and not part.quick:
        print(f"\n== {part.name}: not part of --quick", flush=True)
        part.skipped = True
        return
    if not script.exists():
        part.error = f"{part.script} is missing"
        print(f"\n== {part.name}: skipped ({part.error})", flush=True)
        return
    args = list(part.quick if quick else part.full)
    json_path = work / f"{part.name}.json"
    if part.json_flag:
        args += ["--json", str(json_path)]
    part.log = work / "logs" / f"{part.name}.log"
    part.log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(script), *args]
    print(f"\n== {part.name}: {' '.join(['python', f'load-tests/{part.script}', *args])}"
          f"  (limit {timeout // 60} min {timeout % 60} s: its {limit(part, quick)} s "
          f"+ {max(0, timeout - limit(part, quick))} s left by earlier parts)", flush=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    _RUNNING.append(proc)
    lines: list[str] = []

    def pump() -> None:
        with open(part.log, "w") as log:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                lines.append(line)
                if not line.startswith("RESULT_JSON"):
                    print(f"   {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        part.error = f"stopped after its {timeout} s limit"
    finally:
        _kill_group(proc)
        _RUNNING.remove(proc)
        reader.join(timeout=10)
    part.seconds = time.monotonic() - started
    output = "".join(lines)
    if not part.error and proc.returncode != 0:
        part.error = f"exit code {proc.returncode} (see {part.log})"
    try:
        part.result = PARSERS[part.name](output, json_path)
    except Exception as exc:  # noqa: BLE001 - a part's figures are optional to the table
        part.error = part.error or f"could not read its figures: {exc!r}"
    print(f"== {part.name}: {part.seconds:.0f} s{'  — ' + part.error if part.error else ''}",
          flush=True)


# ---- reading each part's figures --------------------------------------------------------

def _last_json_document(output: str) -> Any:
    """The last JSON object printed with `{` alone at the start of a line."""
    start = output.rfind("\n{\n")
    if start < 0:
        raise ValueError("no JSON document in the output")
    return json.JSONDecoder().raw_decode(output[start + 1:])[0]


def parse_collector(output: str, json_path: Path) -> Any:
    return json.loads(json_path.read_text())


def parse_pipeline(output: str, json_path: Path) -> Any:
    if json_path.exists():
        return json.loads(json_path.read_text())
    line = next(x for x in reversed(output.splitlines()) if x.startswith("RESULT_JSON "))
    return json.loads(line[len("RESULT_JSON "):])


def parse_models(output: str, json_path: Path) -> Any:
    return json.loads(json_path.read_text())


def parse_json_report(output: str, json_path: Path) -> Any:
    return _last_json_document(output)


PARSERS = {"collector": parse_collector, "pipeline": parse_pipeline, "models": parse_models,
           "analyses": parse_json_report, "segments": parse_json_report}


# ---- the table --------------------------------------------------------------------------

@dataclass
class Row:
    figure: str
    value: str
    target: str = ""
    verdict: str = ""        # "met", "missed by …", or "" (no target)
    source: str = ""


def _get(doc: Any, *keys: Any) -> Any:
    for key in keys:
        if doc is None:
            return None
        try:
            doc = doc[key]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _at_least(value: float | None, target: float, unit: str) -> str:
    if value is None:
        return "not measured"
    if value >= target:
        return "met"
    return f"missed: {value / target:.0%} of target ({_num(target - value)} {unit} short)"


def _at_most(value: float | None, target: float, unit: str) -> str:
    if value is None:
        return "not measured"
    if value <= target:
        return "met"
    return f"missed: {value / target:.1f}× the target (+{_num(value - target)} {unit})"


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def build_rows(results: dict[str, Part], quick: bool) -> list[Row]:
    rows: list[Row] = []
    collector = results["collector"].result if "collector" in results else None
    pipeline = results["pipeline"].result if "pipeline" in results else None
    models = results["models"].result if "models" in results else None
    analyses = results["analyses"].result if "analyses" in results else None
    segments = results["segments"].result if "segments" in results else None
    through = _get(pipeline, "throughput") or {}

    # Collector against the bare ceiling (2 workers: the machine's cores).
    def measurement(server: str, mode: str, workers: int = 2) -> dict | None:
        if collector:
            for m in collector:
                if m["server"] == server and m["mode"] == mode and m["workers"] == workers:
                    return m
        key = {"bare": "bare", "collector": "embedded"}[server]
        shape = "single" if mode == "single" else "batch50"
        return through.get(f"{key}/{shape}")

    src = "bench_collector" if collector else "bench_pipeline"
    for mode, label in (("single", "single events"), ("batch", "50-event batches")):
        bare, real = measurement("bare", mode), measurement("collector", mode)
        if not real:
            continue
        eps = real["events_per_s"]
        lat = f"p50 {_ms(real['p50_ms'])}, p99 {_ms(real['p99_ms'])}"
        ratio = eps / bare["events_per_s"] if bare else None
        ratio_text = f"{ratio:.0%} of bare ({bare['events_per_s']:,.0f}/s)" if ratio else ""
        if mode == "batch":
            rows.append(Row(f"collector, {label}, embedded queue (2 workers)",
                            f"{eps:,.0f} events/s; {lat}; {ratio_text}", "≥ 100,000 events/s",
                            _at_least(eps, 100_000, "events/s"), src))
        else:
            rows.append(Row(f"collector, {label}, embedded queue (2 workers)",
                            f"{eps:,.0f} events/s; {lat}; {ratio_text}", "≥ 50% of bare",
                            _at_least(ratio, 0.5, "") if ratio is not None else "not measured",
                            src))
    if collector:
        for m in collector:
            if m["workers"] == 1 and m["server"] == "collector":
                bare = measurement("bare", m["mode"], 1)
                ratio = m["events_per_s"] / bare["events_per_s"] if bare else None
                rows.append(Row(f"collector, {m['mode']}, embedded queue (1 worker)",
                                f"{m['events_per_s']:,.0f} events/s; p50 {_ms(m['p50_ms'])}, "
                                f"p99 {_ms(m['p99_ms'])}"
                                + (f"; {ratio:.0%} of bare" if ratio else ""), "", "", src))

    if collector:
        # bench_pipeline's own pair: mixed realistic messages rather than one event kind.
        for shape, label in (("single", "single events"), ("batch50", "50-event batches")):
            bare, emb = through.get(f"bare/{shape}"), through.get(f"embedded/{shape}")
            if bare and emb:
                rows.append(Row(f"collector, {label}, mixed realistic messages (2 workers)",
                                f"{emb['events_per_s']:,.0f} events/s; p50 {_ms(emb['p50_ms'])},"
                                f" p99 {_ms(emb['p99_ms'])}; "
                                f"{emb['events_per_s'] / bare['events_per_s']:.0%} of bare "
                                f"({bare['events_per_s']:,.0f}/s)", "", "", "bench_pipeline"))

    for shape, label in (("single", "single events"), ("batch50", "50-event batches")):
        emb, kaf = through.get(f"embedded/{shape}"), through.get(f"kafka/{shape}")
        if emb and kaf:
            rows.append(Row(f"collector, {label}: Kafka producer vs embedded queue",
                            f"Kafka {kaf['events_per_s']:,.0f} vs embedded "
                            f"{emb['events_per_s']:,.0f} events/s "
                            f"({kaf['events_per_s'] / emb['events_per_s']:.0%}); Kafka p50 "
                            f"{_ms(kaf['p50_ms'])}, p99 {_ms(kaf['p99_ms'])}"
                            + _cpu_per_event(emb, kaf), "≥ 90% of embedded",
                            _at_least(100 * kaf['events_per_s'] / emb['events_per_s'], 90, "%"),
                            "bench_pipeline"))

    for queue, target in (("embedded", 2.0), ("kafka", 5.0)):
        fresh = _get(pipeline, "freshness", queue)
        if fresh:
            p50, p95 = fresh.get("p50_s"), fresh.get("p95_s")
            rows.append(Row(f"freshness, {queue} (ack → queryable in events_raw)",
                            f"p50 {p50:.2f} s, p95 {p95:.2f} s at "
                            f"{fresh['rate_events_per_s']:,} events/s"
                            + (f", {fresh['missing']} batches never seen" if fresh["missing"]
                               else "")
                            + (" (saturated: `up` fell behind the asked rate)"
                               if fresh.get("saturated") else "")
                            if p95 is not None else "no batch seen",
                            f"p95 ≤ {target:g} s", _at_most(p95, target, "s"), "bench_pipeline"))

    for queue in ("embedded", "kafka"):
        load = _get(pipeline, "loader", queue)
        if load:
            split = ", ".join(f"{k} {v:.1f} s" for k, v in load.get("drain_split_s", {}).items())
            origin = "the embedded log" if queue == "embedded" else "Kafka topics"
            rows.append(Row(f"loader into chdb, from {origin}",
                            f"{load['rows_per_s']:,.0f} rows/s over {load['loaded']:,} rows "
                            f"into {load.get('history', 0):,} stored events ({split}; "
                            f"merges ran {load.get('settle_seconds', 0):.1f} s after the drain)",
                            "≥ 200,000 rows/s" if queue == "embedded" else "",
                            _at_least(load["rows_per_s"], 200_000, "rows/s")
                            if queue == "embedded" else "", "bench_pipeline"))

    if models:
        fulls = [r for r in models["steps"] if r["step"].startswith("full build")]
        incs = [r for r in models["steps"] if r["step"].startswith("incremental")]
        for r in fulls:
            big = r is fulls[-1] and not quick
            rows.append(Row(f"models: {r['step']}",
                            f"{r['seconds']:.1f} s, peak {r['peak_rss_mb']:,} MB",
                            "≤ 30 s, ≤ 4 GB" if big else "",
                            _combine(_at_most(r["seconds"], 30, "s"),
                                     _at_most(r["peak_rss_mb"], 4096, "MB")) if big else "",
                            "bench_models"))
        largest = max((r.get("history", 0) for r in incs), default=0)
        for r in incs:
            # The target is the refresh on the 10M history; the smaller one is for growth.
            judged = r.get("history", 0) == largest
            rows.append(Row(f"models: {r['step']}, on the {r.get('events', 0):,}-event history",
                            f"{r['seconds']:.1f} s, peak {r['peak_rss_mb']:,} MB",
                            *(_sized("≤ 3 s", _at_most(r["seconds"], 3, "s"), quick)
                              if judged else ("", "")),
                            "bench_models"))

    if analyses:
        events = _get(analyses, "load", "events")
        size = f" at {events:,} events" if events else ""
        for name, bare_name, label, bare_label in (
                ("funnel_5_steps_breakdown", "windowFunnel_5_steps_no_times",
                 "5-step funnel with a breakdown", "bare windowFunnel"),
                ("retention_weekly", "bare_retention_weekly", "weekly retention",
                 "bare array retention")):
            figure = _get(analyses, "queries", name)
            bare = _get(analyses, "queries", bare_name)
            if not figure:
                continue
            # the bare query ran by turns with the analysis (bench_analyses.timed_beside)
            ratio = figure["median_s"] / bare["median_s"] if bare else None
            beside = f", {ratio:.2f}× {bare_label} ({bare['median_s']:.2f} s)" if ratio else ""
            rows.append(Row(f"{label}{size}",
                            f"median {figure['median_s']:.2f} s (first {figure['first_s']:.2f} s)"
                            f"{beside}",
                            *_sized("≤ 1 s and ≤ 2× bare", _combine(
                                _at_most(figure["median_s"], 1.0, "s"),
                                _at_most(ratio, 2.0, "×")), quick),
                            "bench_analyses"))

    if segments:
        size = f" at {segments.get('events', 0):,} events"
        http = segments.get("membership_http_asgi") or {}
        inproc = segments.get("membership_in_process") or {}
        if http or inproc:
            rows.append(Row(f"segment membership check{size}",
                            f"p50 {http.get('p50_ms', float('nan')):.2f} ms, p95 "
                            f"{http.get('p95_ms', float('nan')):.2f} ms through the HTTP route "
                            f"(in process p50 {inproc.get('p50_ms', float('nan')):.2f} ms)",
                            *_sized("≤ 10 ms", _at_most(http.get("p95_ms",
                                                                inproc.get("p95_ms")), 10, "ms"),
                                    quick), "bench_segments"))
        rule = segments.get("rule_segment")
        if rule:
            rows.append(Row(f"segment materialisation (rule, 4 groups){size}",
                            f"median {rule['seconds_median']:.2f} s, {rule['members']:,} members",
                            "", "", "bench_segments"))

    worker_rss = max((m.get("rss_worker_mb", 0) for m in through.values()
                      if isinstance(m, dict)), default=None)
    if worker_rss:
        rows.append(Row("collector RSS under load (largest worker)", f"{worker_rss} MB",
                        "≤ 500 MB", _at_most(worker_rss, 500, "MB"), "bench_pipeline"))
    up_rss = _get(pipeline, "freshness", "embedded", "rss_up_mb")
    if up_rss:
        rows.append(Row("`funnelhouse up` RSS at steady load (collector + loader + chdb)",
                        f"{up_rss} MB", "", "", "bench_pipeline"))
    return rows


def _sized(target: str, verdict: str, quick: bool) -> tuple[str, str]:
    """Targets stated at 10M events are not judged on --quick's small data."""
    if quick:
        return f"{target} (at 10M)", "not judged at --quick sizes"
    return target, verdict


def _combine(*verdicts: str) -> str:
    missed = [v for v in verdicts if v != "met"]
    return "; ".join(missed) if missed else "met"


def markdown(rows: list[Row]) -> str:
    lines = ["| figure | measured | target | verdict |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.figure} | {r.value} | {r.target or '—'} | {r.verdict or '—'} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    memory = ""
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo")
                  if line.startswith("MemTotal"))
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": memory,
            "python": platform.python_version(), "os": platform.platform(),
            "load_average_at_start": os.getloadavg()}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs (≈3 min)")
    parser.add_argument("--out", default=None, help="write every figure as JSON here")
    parser.add_argument("--markdown", default=None, help="write the summary table here")
    parser.add_argument("--only", default=None,
                        help="comma-separated parts: collector,pipeline,models,analyses,segments "
                             "(analyses and segments read the folder models builds: "
                             "run them with it, or with the --work-dir of a run that did)")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka measurements")
    parser.add_argument("--work-dir", default=None, help="scratch folder (removed unless given)")
    args = parser.parse_args(sys.argv[1:])

    signal.signal(signal.SIGTERM, _interrupt)   # like Ctrl-C: stop parts, print what ran
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="funnelhouse-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    info = machine()
    started = time.monotonic()
    print(f"funnelhouse bench{' --quick' if args.quick else ''}: {info['cpus']} CPUs "
          f"({info['cpu']}), {info['memory']}, Python {info['python']}; load average at start "
          f"{', '.join(f'{x:.1f}' for x in info['load_average_at_start'])}", flush=True)
    selected = parts(work, args.no_kafka)
    if args.only:
        wanted = set(args.only.split(","))
        selected = [p for p in selected if p.name in wanted]
    budget = sum(limit(p, args.quick) for p in selected)
    print(f"time budget {budget // 60} min {budget % 60} s", flush=True)
    try:
        run_all(selected, args.quick, work)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what runs", flush=True)
    finally:
        _kill_running()
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started

    results = {p.name: p for p in selected}
    rows = build_rows(results, args.quick)
    command = "python load-tests/bench.py" + (" --quick" if args.quick else "")
    print(f"\n{'=' * 100}\n{command} — {time.strftime('%Y-%m-%d %H:%M')}, {total / 60:.1f} min; "
          f"{info['cpus']} CPUs ({info['cpu']}), {info['memory']}, Python {info['python']}")
    width = max((len(r.figure) for r in rows), default=10)
    for r in rows:
        print(f"{r.figure:<{width}}  {r.value}")
        if r.target:
            print(f"{'':<{width}}    target {r.target}: {r.verdict}")
    for p in selected:
        if p.error and not p.skipped:
            print(f"(!) {p.name}: {p.error}")
    ran = ", ".join(f"{p.name} {p.seconds / 60:.1f}" for p in selected if not p.skipped)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"total wall time {total / 60:.1f} min of a {budget / 60:.1f}-min budget ({ran} min); "
          f"load average at start {', '.join(f'{x:.1f}' for x in info['load_average_at_start'])}"
          f", at the end {load}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "command": command, "date": time.strftime("%F %T"), "machine": info,
            "total_seconds": round(total, 1), "budget_seconds": budget,
            "load_average_at_end": os.getloadavg(),
            "parts": {p.name: {"seconds": round(p.seconds, 1), "error": p.error,
                               "figures": p.result} for p in selected},
            "table": [r.__dict__ for r in rows]}, indent=2, default=str))
    return 1 if any(p.error for p in selected if not p.skipped) else 0


if __name__ == "__main__":
    sys.exit(main())
