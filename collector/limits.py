"""Per-key rate limits and the message_id dedup window; both in memory, per process."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable


class TokenBucket:
    """Events per second with a burst of one second's worth."""

    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.updated = time.monotonic()

    def take(self, count: int) -> float:
        """Take `count` tokens; return 0 on success, else seconds until they would exist."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        # A batch bigger than the burst passes on a full bucket and leaves a debt that
        # later requests wait out; otherwise it could never pass, whatever Retry-After said.
        needed = min(count, self.rate)
        if needed <= self.tokens:
            self.tokens -= count
            return 0.0
        return (needed - self.tokens) / self.rate


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, rate: float, count: int) -> float:
        """0 when allowed, else the Retry-After in seconds. A rate of 0 means no limit."""
        if rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[key] = TokenBucket(rate)
        return bucket.take(count)


class DedupWindow:
    """message_ids seen in the last `seconds` (at most `size` of them).

    Catches client retries (a lost response, a beacon sent twice) before they reach
    the queue. Past the window the warehouse still collapses repeats by message_id.
    """

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, message_key: str) -> bool:
        seen_at = self._seen.get(message_key)
        return seen_at is not None and time.monotonic() - seen_at < self.seconds

    def add_all(self, message_keys: Iterable[str]) -> None:
        now = time.monotonic()
        seen = self._seen
        for key in message_keys:
            seen[key] = now
            seen.move_to_end(key)
        while len(seen) > self.size:
            seen.popitem(last=False)
        # Expire from the old end; entries are in insertion-time order.
        while seen:
            oldest_key, oldest_at = next(iter(seen.items()))
            if now - oldest_at < self.seconds:
                break
            del seen[oldest_key]
