"""The collector worker's GC settings: start-up frozen, collections spaced out, cycles freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from funnelhouse.collector import gc_tuning
from tests.test_security_http import BROWSER_KEY, CollectorProcess


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_start_up_is_frozen_and_collections_are_spaced_out(restored_gc: None) -> None:
    gc_tuning.tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (gc_tuning.YOUNG_CONTAINERS, gc_tuning.YOUNG_PER_MIDDLE,
                                  gc_tuning.MIDDLE_PER_FULL)
    assert gc.isenabled()


def test_a_reference_cycle_is_still_freed_without_an_explicit_collect(restored_gc: None) -> None:
    gc_tuning.tune_gc()
    freed = []
    a, b = Node(), Node()
    a.other, b.other = b, a
    weakref.finalize(a, freed.append, "a")
    del a, b                       # only the cycle holds them now
    # Containers freed at once do not count; a few requests' worth held together do.
    held = [[] for _ in range(gc_tuning.YOUNG_CONTAINERS // 2)]
    assert freed == []             # not yet: half the young threshold
    held += [[] for _ in range(gc_tuning.YOUNG_CONTAINERS)]
    assert freed == ["a"]          # the young collection this started found the cycle
    del held


def gc_collections(text: str) -> dict[str, float]:
    """python_gc_collections_total per generation, from a /metrics answer."""
    out = {}
    for line in text.splitlines():
        if line.startswith("python_gc_collections_total{"):
            generation = line.split('generation="')[1].split('"')[0]
            out[generation] = float(line.rsplit(" ", 1)[1])
    return out


def test_a_running_collector_does_not_collect_per_request(tmp_path: Path) -> None:
    # The real `funnelhouse collector` process: its app's start-up tunes the collector.
    # A 50-event request holds ≈800 tracked containers at its peak; with requests in
    # flight together, CPython's default threshold (700) started a young collection on
    # most of them. Tuned, 120 such requests start a handful.
    collector = CollectorProcess(tmp_path).wait_ready()
    requests = 120

    def post(r: int) -> None:
        batch = [{"type": "page", "anonymousId": f"gc-{r}", "messageId": f"gc-{r}-{i}",
                  "properties": {"path": f"/p/{i}", "url": f"https://shop.example/p/{i}",
                                 "title": "A page"},
                  "context": {"page": {"referrer": "https://www.google.com/"},
                              "campaign": {"source": "news", "medium": "email",
                                           "name": f"issue-{i}"}}}
                 for i in range(50)]
        with collector.client() as client:
            answer = client.post("/v1/batch", json={"batch": batch}, auth=(BROWSER_KEY, ""))
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 50

    try:
        with collector.client() as client:
            before = gc_collections(client.get("/metrics").text)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(post, range(requests)))
        with collector.client() as client:
            after = gc_collections(client.get("/metrics").text)
    finally:
        collector.stop()
    assert after["0"] - before["0"] < requests / 10, (before, after)
    assert after["2"] - before["2"] == 0, (before, after)
