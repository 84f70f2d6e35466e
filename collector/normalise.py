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


def snake(key: str) -> str:
    """`anonymousId` → `anonymous_id`, `userAgent` → `user_agent`, `URLPath` → `url_path`."""
    cached = _SNAKE_CACHE.get(key)
    if cached is None:
        cached = _BOUNDARY.sub("_", key).replace("-", "_").replace(" ", "_").lower()
        # Keys come from clients: bound the cache so a flood of random keys cannot grow it.
        if len(_SNAKE_CACHE) < _SNAKE_CACHE_MAX:
            _SNAKE_CACHE[key] = cached
    return cached


def normalise(value: Any, *, max_depth: int, max_string: int, path: str = "$",
              depth: int = 0) -> Any:
    """A copy of `value` with snake_case keys; raises LimitExceeded past the limits."""
    if isinstance(value, str):
        if len(value) > max_string:
            raise LimitExceeded("string_too_long", path,
                                f"string of {len(value)} characters; limit {max_string}")
        return value
    if isinstance(value, dict):
        if depth >= max_depth:
            raise LimitExceeded("too_deep", path, f"nesting deeper than {max_depth} levels")
        return {
            snake(k): normalise(v, max_depth=max_depth, max_string=max_string,
                                path=f"{path}.{k}", depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        if depth >= max_depth:
            raise LimitExceeded("too_deep", path, f"nesting deeper than {max_depth} levels")
        return [
            normalise(v, max_depth=max_depth, max_string=max_string,
                      path=f"{path}[{i}]", depth=depth + 1)
            for i, v in enumerate(value)
        ]
    return value
