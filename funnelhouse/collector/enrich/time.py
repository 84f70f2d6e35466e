"""Event time: parse client timestamps, correct device clock skew, format for ClickHouse.

The product's rule for `timestamp` (the clock-skew corrected time of an event):

1. Inputs are the device's `original_timestamp` (when the event happened, device clock),
   the device's `sent_at` (when the batch left the device, device clock) and our own
   `received_at` (server clock).
2. Both `original_timestamp` and `sent_at` present:
       timestamp = received_at − (sent_at − original_timestamp)
   The device clock may be wrong, but the *difference* between two readings of the same
   clock is right, and sending takes (almost) no time, so the event happened that long
   before we received the batch.
3. Only `original_timestamp` present: timestamp = original_timestamp, for browser and
   server keys alike — without `sent_at` there is nothing to correct with.
4. No `original_timestamp` (with or without `sent_at`): timestamp = received_at.
5. What is stored as `original_timestamp` and `sent_at` is always what the client gave;
   a missing one is stored as `received_at`.
6. Then the guards, each replacing `timestamp` with `received_at` and adding a flag:
   - later than received_at + `Limits.max_future_skew_seconds` → "timestamp_clamped_future";
   - from a browser key, earlier than received_at − `Limits.max_past_days_browser` days
     → "timestamp_clamped_past" (a browser cannot backdate events);
   - from any key, earlier than 2000-01-01 → "timestamp_clamped_past" (server keys may
     import history, but nothing this product tracks predates 2000).

Input formats accepted by `parse_timestamp`: ISO-8601 date-times (`Z` or `±HH:MM` offsets,
any number of fractional digits, no offset = UTC; a date without a time is rejected), and
epoch *milliseconds* as a number or as a string of 11–15 digits (the GET pixel sends
strings).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

__all__ = ["correct_timestamp", "format_ts", "parse_timestamp"]

FLAG_FUTURE = "timestamp_clamped_future"
FLAG_PAST = "timestamp_clamped_past"

_YEAR_2000 = 946_684_800.0
# What datetime can represent; outside this a number is garbage, not a time.
_MIN_EPOCH = -62_135_596_800.0  # 0001-01-01
_MAX_EPOCH = 253_402_300_799.999  # 9999-12-31 23:59:59.999
# ClickHouse DateTime64(3) range; format_ts saturates to it as ClickHouse would.
_CH_MIN_MS = -2_208_988_800_000  # 1900-01-01 00:00:00.000
_CH_MAX_MS = 10_413_791_999_999  # 2299-12-31 23:59:59.999

_fromisoformat = datetime.fromisoformat
_isfinite = math.isfinite


def parse_timestamp(value: str | int | float | None) -> float | None:
    """Epoch seconds from an ISO-8601 string or epoch milliseconds; None when unusable."""
    if value.__class__ is str:
        # Fast path: the shape every Segment SDK sends, `2024-05-06T10:11:12.345Z`.
        # datetime.fromisoformat is C code and reads it directly (3.11+).
        if len(value) == 24 and value[23] == "Z" and value[10] == "T":
            try:
                return _fromisoformat(value).timestamp()
            except ValueError:
                return None
        return _parse_string(value)
    if value is None or value.__class__ is bool:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000.0
        if _isfinite(seconds) and _MIN_EPOCH <= seconds <= _MAX_EPOCH:
            return float(seconds)
    return None


def sdk_text(value: Any) -> str | None:
    """format_ts(parse_timestamp(value)) without the round trip, for the shape SDKs send.

    `2024-05-06T10:11:12.345Z` already holds the stored text, `2024-05-06 10:11:12.345`;
    None for anything else (other shapes, years ClickHouse saturates). Only meaningful
    once parse_timestamp(value) has succeeded: the digits are not checked here.
    """
    if value.__class__ is str and len(value) == 24 and value[23] == "Z" \
            and value[10] == "T" and value[19] == "." and "1900" <= value[:4] <= "2299":
        return value[:10] + " " + value[11:23]
    return None


def _parse_string(value: str) -> float | None:
    text = value.strip()
    if not text.isascii():
        return None
    if text.isdigit():
        # 11+ digits: shorter runs are ISO basic dates (`20240506`) or seconds, not ms.
        return parse_timestamp(int(text)) if 11 <= len(text) <= 15 else None
    # A date-time needs a time part; `2024-05-06` (or its basic form) alone is rejected.
    if len(text) < 11 or ("T" not in text and "t" not in text and " " not in text):
        return None
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    try:
        parsed = _fromisoformat(text.replace("t", "T", 1) if "t" in text else text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):
        return None


def correct_timestamp(
    original: float | None,
    sent_at: float | None,
    received_at: float,
    *,
    key_kind: str,
    max_future_skew_seconds: int,
    max_past_days_browser: int,
) -> tuple[float, float, float, tuple[str, ...]]:
    """(timestamp, original_timestamp, sent_at, flags) by the rule in the module docstring."""
    if original is None:
        timestamp = original = received_at
    elif sent_at is None:
        timestamp = original
    else:
        timestamp = received_at - (sent_at - original)
    if sent_at is None:
        sent_at = received_at

    if timestamp > received_at + max_future_skew_seconds:
        return received_at, original, sent_at, (FLAG_FUTURE,)
    if timestamp < _YEAR_2000 or (
        key_kind == "browser" and timestamp < received_at - max_past_days_browser * 86_400
    ):
        return received_at, original, sent_at, (FLAG_PAST,)
    return timestamp, original, sent_at, ()


# Events arrive in time order, so most share their minute with the previous one: the
# `YYYY-MM-DD HH:MM:` prefix is cached and only seconds and milliseconds are formatted.
_MINUTE_PREFIX: dict[int, str] = {}
_MINUTE_PREFIX_MAX = 4096


def format_ts(epoch_seconds: float) -> str:
    """`YYYY-MM-DD HH:MM:SS.mmm` in UTC: ClickHouse DateTime64(3) text.

    Millisecond-rounded; saturates to DateTime64(3)'s range (1900–2299) like ClickHouse.
    """
    try:
        ms = round(epoch_seconds * 1000)
    except (ValueError, OverflowError):  # NaN or ±inf
        ms = _CH_MAX_MS if epoch_seconds > 0 else _CH_MIN_MS
    if ms < _CH_MIN_MS:
        ms = _CH_MIN_MS
    elif ms > _CH_MAX_MS:
        ms = _CH_MAX_MS
    minute, ms = divmod(ms, 60_000)
    prefix = _MINUTE_PREFIX.get(minute)
    if prefix is None:
        if len(_MINUTE_PREFIX) >= _MINUTE_PREFIX_MAX:
            _MINUTE_PREFIX.clear()
        prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%d %H:%M:")
        _MINUTE_PREFIX[minute] = prefix
    seconds, ms = divmod(ms, 1000)
    return "%s%02d.%03d" % (prefix, seconds, ms)  # noqa: UP031 — faster than an f-string
