"""What travels on the queue: a serialised warehouse row, its stream and its key."""

from __future__ import annotations

from typing import Literal, NamedTuple

Stream = Literal["events", "invalid"]

# On Kafka a record holds one row or several, newline-delimited; one of several rows
# carries this header saying how many (ASCII digits). See collector/sinks/kafka_batches.
ROWS_HEADER = "rows"


class QueueUnavailable(Exception):
    """Nothing could be stored durably; the collector answers 503, never 2xx."""


class Record(NamedTuple):
    """One row for the warehouse, already serialised (a NamedTuple: made once per event,
    and cheaper to make than a frozen dataclass).

    `stream` picks the table (events -> events_raw, invalid -> events_invalid); `key`
    keeps one person's events in order (Kafka partition key `source:person`); `value`
    is the JSON object of the row, column names as in sql/migrations.
    """

    stream: Stream
    key: str
    value: bytes
