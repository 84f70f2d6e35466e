"""ISO-8601 text for the times partners and files give in other shapes.

The plan takes a message's `timestamp` as ISO-8601 with a `T` (what SDKs send). Partner
postbacks and exported files often say `2024-05-01 10:11:12.123` (AppsFlyer, most CSV
exports) or epoch seconds; this turns those into `2024-05-01T10:11:12.123Z`.

Accepted: a date-time with `T` or a space between date and time, any fraction, `Z` or
an offset (without one, the time is in `tz`, UTC by default); epoch seconds (9–10
digits) or milliseconds (11–15 digits), as a number or as text. A date without a time,
or anything else, gives None: the caller keeps the value as it was, so the plan
refuses it with its path instead of a guess being stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

__all__ = ["to_iso"]

# Epoch numbers by their length: shorter runs are seconds, longer are milliseconds.
_SECONDS_DIGITS = range(9, 11)
_MILLIS_DIGITS = range(11, 16)


def to_iso(value: Any, tz: tzinfo = UTC) -> str | None:
    """`value` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC); None when it is not a time."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return _from_epoch_number(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text.isascii():
        return None
    digits = text[1:] if text[:1] == "-" else text
    if digits.isdigit():
        if len(digits) in _SECONDS_DIGITS:
            return _iso(float(text))
        if len(digits) in _MILLIS_DIGITS:
            return _iso(int(text) / 1000)
        return None
    if len(text) < 16 or text[10] not in "Tt ":
        return None  # a date alone, or not a date-time at all
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text[:10] + "T" + text[11:])
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return _iso(parsed.timestamp())


def _from_epoch_number(number: float) -> str | None:
    digits = len(str(int(abs(number))))
    if digits in _SECONDS_DIGITS:
        return _iso(number)
    if digits in _MILLIS_DIGITS:
        return _iso(number / 1000)
    return None


def _iso(epoch_seconds: float) -> str | None:
    try:
        moment = datetime.fromtimestamp(epoch_seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
