"""Acknowledged means durable: `funnelhouse up` is SIGKILLed while clients stream batches;
after a restart every event that got a 2xx is in events_raw, and none of them twice.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BROWSER_KEY, SERVER_KEY, Funnelhouse, wait_until

BATCH = 25
SENDERS = 4


class Senders:
    """Threads posting batches of fresh ids until told to stop or the server goes away."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.acknowledged: list[str] = []
        self.unanswered: list[str] = []   # sent, but no answer (the kill): may or may not land
        self.statuses: list[int] = []
        self.partial: list[str] = []      # 2xx answers that did not accept the whole batch
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(SENDERS)]

    def start(self) -> Senders:
        for thread in self._threads:
            thread.start()
        return self

    def acked(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive()

    def _run(self, sender: int) -> None:
        key = SERVER_KEY if sender % 2 else BROWSER_KEY
        with httpx.Client(base_url=self.url, auth=(key, ""), timeout=30) as client:
            while not self._stop.is_set():
                with self._lock:
                    ids = [f"{self.prefix}-{next(self._ids)}" for _ in range(BATCH)]
                batch = [{"type": "track", "event": "click", "anonymousId": f"crash-{sender}",
                          "messageId": message_id,
                          "properties": {"element": f"#b{sender}", "x": n}}
                         for n, message_id in enumerate(ids)]
                try:
                    response = client.post("/v1/batch", json={"batch": batch})
                except httpx.HTTPError:
                    with self._lock:
                        self.unanswered.extend(ids)
                    return  # the server is gone
                with self._lock:
                    self.statuses.append(response.status_code)
                    if 200 <= response.status_code < 300:
                        if response.json()["accepted"] != BATCH:
                            self.partial.append(response.text)
                        self.acknowledged.extend(ids)


def loaded(instance: Funnelhouse) -> bool:
    """The queue is empty: everything acknowledged has been handed to the warehouse."""
    ready = httpx.get(f"{instance.url}/readyz", timeout=10).json()
    return ready.get("depth") == 0


def warehouse_ids(instance: Funnelhouse, prefix: str) -> dict[str, int]:
    rows = instance.sql(
        "SELECT message_id, count() AS copies FROM events_raw "
        f"WHERE startsWith(message_id, '{prefix}-') GROUP BY message_id")
    return {row["message_id"]: int(row["copies"]) for row in rows}


def totals(instance: Funnelhouse, prefix: str) -> dict[str, Any]:
    [row] = instance.sql(
        "SELECT count() AS n, uniqExact(message_id) AS u FROM events_raw "
        f"WHERE startsWith(message_id, '{prefix}-')")
    return {"n": int(row["n"]), "u": int(row["u"])}


def kill_mid_stream(instance: Funnelhouse, prefix: str, at_least: int) -> Senders:
    """Stream batches, SIGKILL the server while the senders are still posting."""
    senders = Senders(instance.url, prefix).start()
    wait_until(lambda: senders.acked() >= at_least, timeout=120, interval=0.01)
    instance.kill()       # no shutdown, no drain: acknowledged rows must already be durable
    senders.stop()
    return senders


@pytest.mark.timeout(300)
def test_sigkill_after_ack_loses_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Funnelhouse(data_dir).start()
    senders = kill_mid_stream(first, "k1", at_least=2000)
    assert senders.unanswered, "the senders were still posting when the server died"
    assert senders.partial == []
    acknowledged = set(senders.acknowledged)
    assert len(acknowledged) == len(senders.acknowledged) >= 2000
    assert set(senders.statuses) == {200}

    second = Funnelhouse(data_dir).start()
    try:
        wait_until(lambda: loaded(second), timeout=120)
        stored = warehouse_ids(second, "k1")
        missing = acknowledged - stored.keys()
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
        twice = {m: n for m, n in stored.items() if n > 1}
        assert not twice, f"stored more than once: {list(twice.items())[:5]}"
        # Events sent but not answered may have landed; nothing else can have.
        assert stored.keys() <= acknowledged | set(senders.unanswered)
        counts = totals(second, "k1")
        assert counts["n"] == counts["u"] == len(stored)
        assert counts["n"] >= len(acknowledged)
    finally:
        second.stop()


@pytest.mark.timeout(300)
def test_repeated_sigkills_lose_nothing_and_store_nothing_twice(tmp_path: Path) -> None:
    # Kill, restart, keep streaming, kill again: the loader is caught mid-batch at some
    # point, and its retry after restart must not double the rows.
    data_dir = tmp_path / "data"
    acknowledged: set[str] = set()
    maybe: set[str] = set()
    for round_ in range(3):
        instance = Funnelhouse(data_dir).start()
        senders = kill_mid_stream(instance, f"r{round_}", at_least=800)
        acknowledged |= set(senders.acknowledged)
        maybe |= set(senders.unanswered)

    final = Funnelhouse(data_dir).start()
    try:
        wait_until(lambda: loaded(final), timeout=120)
        stored: dict[str, int] = {}
        for round_ in range(3):
            stored.update(warehouse_ids(final, f"r{round_}"))
        assert not acknowledged - stored.keys()
        assert all(copies == 1 for copies in stored.values())
        assert stored.keys() <= acknowledged | maybe
        [row] = final.sql(
            "SELECT count() AS n, uniqExact(message_id) AS u FROM events_raw "
            "WHERE match(message_id, '^r[0-9]-')")
        assert int(row["n"]) == int(row["u"]) == len(stored) >= len(acknowledged)
    finally:
        final.stop()
