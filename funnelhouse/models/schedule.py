"""Models built side by side: each starts once the models it waits for are built, on a
warehouse connection of its own, at most `threads` at once (dbt's `threads`).

A refresh is mostly small statements that each keep one core busy, so a second model
built beside the first uses the second core; a model still waits for the tables it
reads. The first failure stops new models from starting, lets the running ones finish
(each leaves its table whole: swaps are atomic) and is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from funnelhouse.warehouse.base import Warehouse

__all__ = ["build_side_by_side"]

T = TypeVar("T")


def build_side_by_side(
    names: Sequence[str],
    waits_for: Mapping[str, set[str]],
    warehouse: Warehouse,
    threads: int,
    build: Callable[[str, Warehouse], T],
) -> list[T]:
    """build(name, connection) for each name, in `names` order when one at a time;
    returns the results in `names` order. `waits_for[name]` are names built first."""
    if threads <= 1:
        return [build(name, warehouse) for name in names]
    results: dict[str, T] = {}
    started: set[str] = set()
    free = [warehouse]  # connections not in use
    opened: list[Warehouse] = []  # the ones opened here, closed at the end
    running: dict[Future[T], tuple[str, Warehouse]] = {}
    failure: BaseException | None = None
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="model") as pool:
            while True:
                for name in names:
                    if (failure is not None or len(running) >= threads or name in started
                            or not waits_for.get(name, set()) <= results.keys()):
                        continue
                    if not free:
                        opened.append(warehouse.sibling())
                        free.append(opened[-1])
                    connection = free.pop()
                    started.add(name)
                    running[pool.submit(build, name, connection)] = (name, connection)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name, connection = running.pop(future)
                    free.append(connection)
                    try:
                        results[name] = future.result()
                    except BaseException as exc:  # noqa: BLE001 — raised below, after the rest
                        failure = failure or exc
    finally:
        for connection in opened:
            connection.close()
    if failure is not None:
        raise failure
    unbuilt = [name for name in names if name not in results]
    if unbuilt:  # a wait on a name that is not built in this run, or a cycle
        raise ValueError(f"models never ready to build: {', '.join(unbuilt)}")
    return [results[name] for name in names]
