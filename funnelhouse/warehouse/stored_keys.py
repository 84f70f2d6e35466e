"""Which (source, message_id) keys a table already holds: the first-copy check's lookup."""

from __future__ import annotations

from typing import Final, Literal

# Every key stored in events_raw, found by a hash of the pair (migration 0020).
STORED_EVENTS: Final = "message_keys"

StoredIn = Literal["message_keys", "events_invalid"]


def stored_among(table: StoredIn, keys: str) -> str:
    """A SELECT of `source, message_id` for those of `keys` that `table` holds.

    `keys` is a SELECT of two String columns, `source` and `message_id`. Only those
    keys are read: message_keys by the pairs' hashes (the granules they fall in, then
    the pairs compared), events_invalid (only for a split batch's share) through its
    message_id bloom filter. `table` is one of two names fixed in code."""
    if table == STORED_EVENTS:
        return (f"SELECT source, message_id FROM {STORED_EVENTS} "
                f"PREWHERE h IN (SELECT sipHash64(source, message_id) FROM ({keys})) "
                f"WHERE (source, message_id) IN ({keys})")
    if table == "events_invalid":
        return (f"SELECT source, message_id FROM events_invalid "
                f"WHERE (source, message_id) IN ({keys})")
    raise ValueError(f"no stored keys in {table!r}")
