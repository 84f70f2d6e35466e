"""camelCase in, snake_case out, with the depth and string-length limits checked on the way."""

from __future__ import annotations

import re
from typing import Any

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SNAKE_CACHE: dict[str, str] = {}
_SNAKE_CACHE_MAX = 50_000


class LimitExceeded(Exception):
    def __init__(self, reason: str, path: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path
        self.message = message


class _Over(Exception):
    """Raised by the fast walk; the slow walk then finds the path for the error report."""


def snake(key: str) -> str:
    """`anonymousId` → `anonymous_id`, `userAgent` → `user_agent`, `URLPath` → `url_path`."""
    cached = _SNAKE_CACHE.get(key)
    if cached is None:
        cached = _BOUNDARY.sub("_", key).replace("-", "_").replace(" ", "_").lower()
        # Keys come from clients: bound the cache so a flood of random keys cannot grow it.
        if len(_SNAKE_CACHE) < _SNAKE_CACHE_MAX:
            _SNAKE_CACHE[key] = cached
    return cached


def normalise(value: Any, *, max_depth: int, max_string: int,
              encoded_size: int | None = None, without: str | None = None) -> Any:
    """A copy of `value` with snake_case keys; raises LimitExceeded past the limits.

    The walk runs on every event, so it builds no JSON paths; only when a limit is
    exceeded does a second, slower walk name the path for the error report.
    `encoded_size`, the length of `value` as JSON if the caller has it, bounds every
    string in it: under max_string, strings are not measured one by one.
    `without`: a top-level key of the dict `value` left out, as if it were not there
    (a message's context already known), without first copying the rest.
    """
    leaves = _SHORT_LEAVES if encoded_size is not None and encoded_size <= max_string \
        else _LEAVES
    try:
        if without is None:
            return _fast(value, max_depth, max_string, 0, leaves)
        if max_depth <= 0:
            raise _Over
        cache = _SNAKE_CACHE
        return {
            (cache.get(k) or snake(k)): (
                v if type(v) in leaves else _fast(v, max_depth, max_string, 1, leaves))
            for k, v in value.items() if k != without
        }
    except _Over:
        if without is not None:
            value = {k: v for k, v in value.items() if k != without}
        _report(value, max_depth, max_string, "$", 0)
        raise AssertionError("limit exceeded but not found again") from None


def _fast(value: Any, max_depth: int, max_string: int, depth: int,
          leaves: frozenset[type]) -> Any:
    kind = type(value)
    if kind is str:
        if len(value) > max_string:
            raise _Over
        return value
    if kind is dict:
        if depth >= max_depth:
            raise _Over
        depth += 1
        cache = _SNAKE_CACHE
        return {
            (cache.get(k) or snake(k)): (
                v if type(v) in leaves else _fast(v, max_depth, max_string, depth, leaves))
            for k, v in value.items()
        }
    if kind is list:
        if depth >= max_depth:
            raise _Over
        depth += 1
        return [v if type(v) in leaves else _fast(v, max_depth, max_string, depth, leaves)
                for v in value]
    return value


# Values copied as they are; strings too when none can be over the length limit.
_LEAVES: frozenset[type] = frozenset({int, float, bool, type(None)})
_SHORT_LEAVES = _LEAVES | {str}


def _report(value: Any, max_depth: int, max_string: int, path: str, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > max_string:
            raise LimitExceeded("string_too_long", path,
                                f"string of {len(value)} characters; limit {max_string}")
    elif isinstance(value, dict | list):
        if depth >= max_depth:
            raise LimitExceeded("too_deep", path, f"nesting deeper than {max_depth} levels")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            child_path = f"{path}.{key}" if isinstance(value, dict) else f"{path}[{key}]"
            _report(child, max_depth, max_string, child_path, depth + 1)
