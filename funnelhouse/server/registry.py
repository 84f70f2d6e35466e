"""The running `up`/`serve` instances of this user, so a command finds one by itself.

Each instance announces itself in its data folder (instance.json, server/instance.py) and
here, in a per-user folder, by its process id: a command run from another directory,
without --data-dir, can then reach the one instance that runs. Entries of processes that
are gone are dropped when read. `FUNNELHOUSE_INSTANCES_DIR` moves the folder (tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Running:
    data_dir: Path
    url: str
    pid: int


def registry_dir() -> Path:
    given = os.environ.get("FUNNELHOUSE_INSTANCES_DIR")
    if given:
        return Path(given)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".cache"
    return base / "funnelhouse" / "instances"


def add(data_dir: Path, url: str) -> None:
    """Say that this process serves `data_dir` at `url` (best effort: a read-only home
    only means commands need --data-dir)."""
    try:
        folder = registry_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / f"{os.getpid()}.json").write_bytes(orjson.dumps(
            {"data_dir": str(data_dir.resolve()), "url": url, "pid": os.getpid()}))
    except OSError:
        pass


def remove() -> None:
    try:
        (registry_dir() / f"{os.getpid()}.json").unlink(missing_ok=True)
    except OSError:
        pass


def running() -> list[Running]:
    """The instances whose process is alive, most recent first; stale entries go."""
    folder = registry_dir()
    if not folder.is_dir():
        return []
    found: list[tuple[float, Running]] = []
    for path in folder.glob("*.json"):
        try:
            doc = orjson.loads(path.read_bytes())
            entry = Running(Path(doc["data_dir"]), str(doc["url"]), int(doc["pid"]))
            mtime = path.stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(entry.pid):
            path.unlink(missing_ok=True)
            continue
        found.append((mtime, entry))
    return [entry for _, entry in sorted(found, key=lambda item: -item[0])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process reuses the id: not ours
        return False
    return True
