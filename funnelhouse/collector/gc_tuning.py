"""The collector worker's garbage-collector settings: fewer and cheaper collections.

CPython counts tracked containers alive since the last collection. A 50-event request
holds ≈800 of them at its peak (the parsed body, the normalised messages, the rows), so
with requests in flight together the default thresholds (700, 10, 10) started a young
collection on most requests — 30 for 120 requests, 16 at a time, in the test — and
every hundredth of those a full one, which walks every object the worker holds:
modules, the tracking plan, caches. Reference counting frees that garbage anyway; the
collector is only there for cycles.

What start-up built lives as long as the worker, so it is frozen (never walked again),
and a young collection waits for 10,000 more live containers: a few concurrent
requests' worth, so a garbage cycle waits for at most that many containers.
"""

from __future__ import annotations

import gc

YOUNG_CONTAINERS = 10_000   # net new containers between young collections (default 700)
YOUNG_PER_MIDDLE = 20        # young collections per middle-generation one (default 10)
MIDDLE_PER_FULL = 50         # middle collections per full one (default 10)


def tune_gc() -> None:
    """Freeze what start-up allocated and space the collections out (once per worker)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_CONTAINERS, YOUNG_PER_MIDDLE, MIDDLE_PER_FULL)
