"""Query-string numbers parsed one way everywhere: in range, or 400 `bad_parameter`."""

from __future__ import annotations

import math
from typing import overload

from starlette.requests import Request

from funnelhouse.collector.reasons import Refusal

# More digits than any range we accept needs; int() of thousands of digits is slow
# and past 4,300 it raises (that was a 500 on /v1/debug/events?limit=…).
MAX_DIGITS = 24


@overload
def query_int(request: Request, name: str, default: int, low: int, high: int) -> int: ...
@overload
def query_int(request: Request, name: str, default: None, low: int, high: int) -> int | None: ...


def query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """`?name=` as an integer in [low, high]; `default` when absent or empty."""
    text = request.query_params.get(name)
    if text is None or text.strip() == "":
        return default
    text = text.strip()
    digits = text[1:] if text[:1] in "+-" else text
    # isascii: str.isdecimal() also accepts other scripts' digits ("٣"), which int() reads.
    if not (digits.isascii() and digits.isdecimal()) or len(digits) > MAX_DIGITS \
            or not low <= int(text) <= high:
        raise Refusal("bad_parameter", f"{name} is a whole number from {low} to {high}")
    return int(text)


def query_float(request: Request, name: str, default: float | None, low: float,
                high: float) -> float | None:
    """`?name=` as a finite number in [low, high]; `default` when absent or empty."""
    text = request.query_params.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = float(text) if len(text) <= 64 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise Refusal("bad_parameter", f"{name} is a number from {low:g} to {high:g}")
    return value
