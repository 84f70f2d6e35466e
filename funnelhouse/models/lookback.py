"""The look-back window, rebuilt only where its raw events changed.

The look-back window (`lookback_days` before the latest event day) is the runner's
safety net under the received-since watermark: it catches raw events that the
watermark cannot see, such as a loader that committed a batch later than the margin
allows (its `received_at` is older than the previous run's watermark), or rows
deleted from events_raw. Rebuilding those days on every run made a refresh cost the
history's density rather than what is new: at 10M events, 3 days were ≈1M events
re-read every 5 minutes even when nothing had arrived for them.

So each by-day model records, per day it builds, a digest of the raw rows the day was
built from (their count and a sum of hashes of `(timestamp, received_at)`: two
numeric columns, a third of the cost of hashing the message ids); the next
run rebuilds a window day only when its digest now differs (a row added, removed or
replaced) or was never recorded. The digest is read before the model builds, so a
row arriving during the build either made it in or changes the digest: it can make
a day rebuild once more, never skip one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from funnelhouse.warehouse.base import Warehouse

__all__ = ["DIGEST_TABLE", "WindowDigests"]

DIGEST_TABLE = "model_window_digests"

Digest = tuple[int, int]  # rows, sum of row hashes (wrapping)
_EMPTY: Digest = (0, 0)


class WindowDigests:
    """Raw digests of some days as of this run's start, and each model's record."""

    def __init__(self, wh: Warehouse, tz: str, days: set[date],
                 bounds: tuple[str, str] = ("", "")) -> None:
        """`bounds`: the window's first instant and the instant after it, in UTC."""
        self.wh = wh
        self.days = sorted(days)
        wh.execute(f"""
            CREATE TABLE IF NOT EXISTS {DIGEST_TABLE}
            (model String, day Date, rows UInt64, hash_sum UInt64,
             recorded_at DateTime64(3, 'UTC'))
            -- the latest record per (model, day) wins
            ENGINE = ReplacingMergeTree(recorded_at) ORDER BY (model, day)""")
        self.current: dict[date, Digest] = {}
        if self.days:
            # The window as a range of events_raw's sort key (its day comes first).
            rows = wh.query(
                "SELECT toString(toDate(timestamp, {tz:String})) AS d, count(), "
                "sum(cityHash64(timestamp, received_at)) FROM events_raw "
                "WHERE timestamp >= {f:DateTime64(3, 'UTC')} "
                "AND timestamp < {t:DateTime64(3, 'UTC')} GROUP BY d",
                {"tz": tz, "f": bounds[0], "t": bounds[1]}).rows
            self.current = {date.fromisoformat(d): (int(n), int(h)) for d, n, h in rows}

    def changed(self, model: str) -> set[date]:
        """The window days whose raw rows differ from what `model` last built them from."""
        if not self.days:
            return set()
        recorded = {date.fromisoformat(d): (int(n), int(h)) for d, n, h in self.wh.query(
            f"SELECT toString(day), argMax(rows, recorded_at), argMax(hash_sum, recorded_at) "
            f"FROM {DIGEST_TABLE} WHERE model = {{m:String}} AND day >= {{f:Date}} "
            f"AND day <= {{t:Date}} GROUP BY day",
            {"m": model, "f": self.days[0].isoformat(), "t": self.days[-1].isoformat()}).rows}
        return {day for day in self.days
                if recorded.get(day) != self.current.get(day, _EMPTY)}

    def record(self, model: str, rebuilt: Iterable[date] | None = None) -> None:
        """`model` rebuilt these days (None: every day) from the rows the digests read."""
        days = self.days if rebuilt is None else sorted(set(self.days) & set(rebuilt))
        if not days:
            return
        values = ", ".join(
            f"('{day.isoformat()}', {rows}, {hash_sum})"
            for day in days
            for rows, hash_sum in [self.current.get(day, _EMPTY)])
        self.wh.execute(
            f"INSERT INTO {DIGEST_TABLE} (model, day, rows, hash_sum, recorded_at) "
            f"SELECT {{m:String}}, d.1, d.2, d.3, now64(3) "
            f"FROM (SELECT arrayJoin([{values}]) AS d)",
            {"m": model})
