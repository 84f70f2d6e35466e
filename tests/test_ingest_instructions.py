"""load-tests/ingest_instructions.py: the bodies it counts, and its child ingesting them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "load-tests"))

import ingest_instructions  # noqa: E402


def test_bodies_hold_the_events_asked_for_each_with_its_own_id() -> None:
    bodies = ingest_instructions.make_bodies("mixed", 50, 150)
    events = [event for body in bodies for event in orjson.loads(body)]
    assert len(bodies) == 3 and len(events) == 150
    assert len({event["messageId"] for event in events}) == 150
    assert {event.get("type") for event in events} >= {"page", "track"}


def test_the_child_ingests_the_bodies_with_a_tree(tmp_path: Path) -> None:
    # What callgrind runs, here without it: a broken child would make every count fail.
    path = tmp_path / "bodies"
    path.write_bytes(b"\n".join(ingest_instructions.make_bodies("click", 1, 5)))
    done = subprocess.run([sys.executable, str(ROOT / "load-tests" / "ingest_instructions.py"),
                           "--child", str(ROOT), str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["accepted", "5"]
