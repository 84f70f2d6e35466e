"""`funnelhouse plan check`: report problems in the tracking plan and verdicts for a sample file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from funnelhouse.collector.plan import InvalidPlan, TrackingPlan, Verdict, to_snake_case_keys


def plan_check(plan_dir: Path, sample_file: Path | None) -> int:
    """Print a readable report; 0 when the plan is sound and every sample message is valid."""
    try:
        plan = TrackingPlan.load(plan_dir)
    except InvalidPlan as exc:
        print(f"Tracking plan {plan_dir}: cannot be loaded")
        for problem in exc.problems:
            print(f"  - {problem}")
        return 1

    failed = False
    events = plan.events()
    problems = plan.check()
    print(f"Tracking plan {plan_dir}: {len(events)} events, {len(plan.aliases())} aliases")
    if problems:
        failed = True
        print(f"  {len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
    else:
        print("  no problems")

    if sample_file is not None:
        try:
            messages = read_messages(sample_file)
        except ValueError as exc:
            print(f"\nSample {sample_file}: {exc}")
            return 1
        print(f"\nSample {sample_file}: {len(messages)} message(s)")
        invalid = 0
        for i, message in enumerate(messages):
            verdict = plan.validate(message)
            invalid += not verdict.ok
            print(_describe(i, message, verdict))
        print(f"\n{len(messages) - invalid} valid, {invalid} invalid")
        failed = failed or invalid > 0
    return 1 if failed else 0


def read_messages(sample_file: Path) -> list[Any]:
    """The messages in a sample file, keys in snake_case.

    Accepts one message (a JSON object), a Segment batch `{"batch": [...]}`, or a JSON list.
    Fields set on the batch itself (context, integrations …) are not merged into its messages.
    """
    try:
        data = json.loads(Path(sample_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        data = data["batch"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("expected a message object, a {\"batch\": [...]} object or a list")
    return [to_snake_case_keys(message) for message in data]


def _describe(index: int, message: Any, verdict: Verdict) -> str:
    sent = message.get("event") if isinstance(message, dict) else None
    call = message.get("type") if isinstance(message, dict) else None
    what = f"{call} {sent!r}" if sent is not None else str(call)
    target = verdict.schema_version or verdict.event or "?"
    status = "ok" if verdict.ok else "INVALID"
    flags = f" [{', '.join(verdict.flags)}]" if verdict.flags else ""
    lines = [f"  [{index}] {what} -> {target}: {status}{flags}"]
    lines += [f"        {error.reason:<20} {error.path}: {error.message}"
              for error in verdict.errors]
    return "\n".join(lines)
