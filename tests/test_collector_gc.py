"""The collector worker's GC settings: start-up frozen, collections spaced out, cycles still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from funnelhouse.collector import gc_tuning


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
