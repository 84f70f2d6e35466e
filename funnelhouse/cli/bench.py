"""`funnelhouse bench`: the one-command benchmark (load-tests/bench.py, from a checkout)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from funnelhouse.cli.common import Subparsers


def cmd_bench(args: argparse.Namespace) -> int:
    from funnelhouse.config import REPO_ROOT

    script = REPO_ROOT / "load-tests" / "bench.py"
    if not script.exists():
        print(f"{script} not found: the benchmark runs from a checkout of the repository",
              file=sys.stderr)
        return 1
    argv = [sys.executable, str(script)]
    argv += ["--quick"] if args.quick else []
    argv += ["--no-kafka"] if args.no_kafka else []
    for name in ("out", "markdown", "only", "work_dir"):
        if getattr(args, name):
            argv += [f"--{name.replace('_', '-')}", getattr(args, name)]
    return subprocess.call(argv, cwd=REPO_ROOT)


def register(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="the one-command benchmark (load-tests/bench.py)")
    bench.add_argument("--quick", action="store_true", help="small sizes, short runs (≈3 min)")
    bench.add_argument("--out", default=None, help="write every figure as JSON here")
    bench.add_argument("--markdown", default=None, help="write the summary table here")
    bench.add_argument("--only", default=None, help="collector,pipeline,models,analyses,segments")
    bench.add_argument("--no-kafka", action="store_true", help="skip the Kafka measurements")
    bench.add_argument("--work-dir", default=None, help="scratch folder (removed unless given)")
    bench.set_defaults(handler=cmd_bench)
