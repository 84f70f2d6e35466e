"""What each by-day model built a day from: a digest of the day's raw rows.

Each by-day model records, per day it builds, a digest of the raw rows the day was
built from: their count and a sum of hashes of `(timestamp, received_at)` (two
numeric columns, a third of the cost of hashing the message ids), over the rows
received up to the run's watermark (the latest `received_at` when it started). A later
run reads the same digest for the days it may rebuild, before any model builds them
(so a row arriving during a build either made it in or changes the digest: it can make
a day rebuild once more, never skip one), and asks two questions:

* changed — does the day's digest differ from the record? The look-back window
  (`lookback_days` before the latest day) is the safety net under the received-since
  watermark: it catches raw rows the watermark cannot see, such as a batch the loader
  committed after a run had passed its `received_at`, or rows deleted from events_raw.
  A window day is rebuilt only when it changed: re-reading three whole days every 5
  minutes made a refresh cost the history's density rather than what is new.

* explained — do the day's rows received up to the model's previous watermark still
  digest to the record? Then nothing the previous run built from was added or
  removed, and the day differs from it only by rows received since, which are the
  run's new events: rebuilding the people those touch (people.py) is exact, and
  the rest of the day is kept (run.py's partial days).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from funnelhouse.warehouse.base import Warehouse

__all__ = ["DIGEST_TABLE", "DayDigests"]

DIGEST_TABLE = "model_window_digests"

Digest = tuple[int, int]  # rows, sum of row hashes (wrapping)
_EMPTY: Digest = (0, 0)
_NEVER = "1970-01-01 00:00:00.000"


class DayDigests:
    """Raw digests of some days as of this run's start, and each model's record."""

    def __init__(self, wh: Warehouse, tz: str, watermark: str | None,
                 previous: Iterable[str], span: Callable[[list[date]], tuple[str, str]]) -> None:
        """`watermark`: this run's; `previous`: the models' previous watermarks (the
        `explained` question reads the digest as of each); `span(days)`: the UTC
        instants from the first day's start to the last day's end."""
        self.wh = wh
        self.tz = tz
        self.span = span
        self.watermark = watermark or _NEVER
        self.previous = sorted(set(previous))
        self.current: dict[date, Digest] = {}
        self.before: dict[str, dict[date, Digest]] = {w: {} for w in self.previous}
        self.read_days: set[date] = set()
        wh.execute(f"""
            CREATE TABLE IF NOT EXISTS {DIGEST_TABLE}
            (model String, day Date, rows UInt64, hash_sum UInt64,
             recorded_at DateTime64(3, 'UTC'))
            -- the latest record per (model, day) wins
            ENGINE = ReplacingMergeTree(recorded_at) ORDER BY (model, day)""")

    def read(self, days: Iterable[date]) -> None:
        """Read the digests of the days not read yet in this run (before they are built)."""
        todo = sorted(set(days) - self.read_days)
        if not todo:
            return
        self.read_days |= set(todo)
        # Runs of consecutive days: each is a range of events_raw's sort key (its day
        # comes first), so scattered late days do not read the months between them.
        runs: list[list[date]] = []
        for day in todo:
            if runs and (day - runs[-1][-1]).days == 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        params = {"tz": self.tz, "w": self.watermark}
        ranges = []
        for n, run in enumerate(runs):
            params[f"f{n}"], params[f"t{n}"] = self.span(run)
            ranges.append(f"(timestamp >= {{f{n}:DateTime64(3, 'UTC')}} "
                          f"AND timestamp < {{t{n}:DateTime64(3, 'UTC')}})")
        as_of: list[tuple[str, str | None]] = [("{w:DateTime64(3, 'UTC')}", None)]
        for n, previous in enumerate(self.previous):
            params[f"p{n}"] = previous
            as_of.append((f"{{p{n}:DateTime64(3, 'UTC')}}", previous))
        sums = ", ".join(f"countIf(received_at <= {bound}), "
                         f"sumIf(cityHash64(timestamp, received_at), received_at <= {bound})"
                         for bound, _ in as_of)
        rows = self.wh.query(
            f"SELECT toString(toDate(timestamp, {{tz:String}})) AS d, {sums} "
            f"FROM events_raw WHERE {' OR '.join(ranges)} GROUP BY d", params).rows
        wanted = set(todo)
        for row in rows:
            day = date.fromisoformat(row[0])
            if day not in wanted:  # a day the ranges' UTC edges share with a neighbour
                continue
            for n, (_, watermark) in enumerate(as_of):
                digest = (int(row[1 + 2 * n]), int(row[2 + 2 * n]))
                if watermark is None:
                    self.current[day] = digest
                else:
                    self.before[watermark][day] = digest

    def _recorded(self, model: str, days: list[date]) -> dict[date, Digest]:
        if not days:
            return {}
        return {date.fromisoformat(d): (int(n), int(h)) for d, n, h in self.wh.query(
            f"SELECT toString(day), argMax(rows, recorded_at), argMax(hash_sum, recorded_at) "
            f"FROM {DIGEST_TABLE} WHERE model = {{m:String}} AND day >= {{f:Date}} "
            f"AND day <= {{t:Date}} GROUP BY day",
            {"m": model, "f": days[0].isoformat(), "t": days[-1].isoformat()}).rows}

    def changed(self, model: str, days: Iterable[date]) -> set[date]:
        """The days whose raw rows differ from what `model` last built them from."""
        days = sorted(days)
        self.read(days)
        recorded = self._recorded(model, days)
        return {day for day in days if recorded.get(day) != self.current.get(day, _EMPTY)}

    def explained(self, model: str, days: Iterable[date], previous: str | None) -> set[date]:
        """The days whose rows received up to `previous` (the model's previous
        watermark) are still exactly the rows `model` last built them from."""
        days = sorted(days)
        if previous not in self.before:
            return set()
        self.read(days)
        recorded = self._recorded(model, days)
        before = self.before[previous]
        return {day for day in days
                if day in recorded and recorded[day] == before.get(day, _EMPTY)}

    def record(self, model: str, rebuilt: Iterable[date]) -> None:
        """`model` rebuilt these days from the rows the digests read."""
        days = sorted(set(rebuilt) & self.read_days)
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
