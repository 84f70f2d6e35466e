"""One import: rows → messages (with ids that make a re-run harmless) → batches → a sender,
and the report of what was accepted, what was a duplicate and which lines were refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from funnelhouse.imports.mapping import RowMapping
from funnelhouse.imports.readers import Row
from funnelhouse.imports.senders import Sender

__all__ = ["ImportReport", "Refused", "RowIds", "import_rows"]

# Well under the collector's 512 KiB body and 2,500 events per batch.
BATCH_ROWS = 500
BATCH_BYTES = 256 * 1024
PROGRESS_ROWS = 50_000     # a line on the way through a big file


@dataclass
class Refused:
    line: int
    reason: str
    errors: list[dict[str, str]]
    note: str = ""          # why the row could not be read as a row, if it could not

    def text(self) -> str:
        detail = "; ".join(f"{e.get('path', '')} {e.get('message', '')}".strip()
                           for e in self.errors)
        note = f" ({self.note})" if self.note else ""
        return f"line {self.line}: {self.reason}: {detail}{note}"


@dataclass
class ImportReport:
    where: str
    dry_run: bool = False
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: list[Refused] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"where": self.where, "dry_run": self.dry_run, "rows": self.rows,
                "accepted": self.accepted, "duplicates": self.duplicates,
                "refused": [{"line": r.line, "reason": r.reason, "errors": r.errors,
                             "note": r.note} for r in self.refused]}


class RowIds:
    """A message id for each row that has none: a hash of the row's content (its columns
    by name, so a re-export with the columns reordered is the same row) and of how many
    identical rows came before it in the file.

    The same file imported twice gives the same ids, so the collector's dedup (by source
    and message id) and the loader store nothing twice — whatever the file's row order, or
    rows added since. Two identical rows of one file stay two events. Memory: one small
    hash per distinct row.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._repeats: dict[bytes, int] = {}

    def of(self, values: dict[str, Any]) -> str:
        content = hashlib.blake2b(orjson.dumps(values, option=orjson.OPT_SORT_KEYS),
                                  digest_size=12).digest()
        occurrence = 0
        if content in self._seen:
            occurrence = self._repeats[content] = self._repeats.get(content, 0) + 1
        else:
            self._seen.add(content)
        key = content + occurrence.to_bytes(8, "big")
        return "imp-" + hashlib.blake2b(key, digest_size=16).hexdigest()


def import_rows(rows: Iterable[Row], mapping: RowMapping, sender: Sender, *,
                base_rows: bool, progress: Callable[[str], None] | None = None,
                batch_rows: int = BATCH_ROWS, batch_bytes: int = BATCH_BYTES,
                dry_run: bool = False) -> ImportReport:
    """Send every row; `base_rows`: a row is itself a message (JSON lines) that the
    mapping completes, else the mapping alone makes the message (CSV)."""
    report = ImportReport(where=sender.where, dry_run=dry_run)
    ids = RowIds()
    batch: list[tuple[Row, Any]] = []
    size = 0

    next_progress = PROGRESS_ROWS

    def flush() -> None:
        nonlocal size, next_progress
        answer = sender.send([message for _, message in batch])
        report.accepted += answer.accepted
        report.duplicates += answer.duplicates
        for index, reason, errors in answer.rejected:
            row = batch[index][0]
            report.refused.append(Refused(row.line, reason, errors, row.problem))
        batch.clear()
        size = 0
        if progress and report.rows >= next_progress:
            progress(f"  {report.rows:,} rows …")
            next_progress = report.rows + PROGRESS_ROWS

    for row in rows:
        report.rows += 1
        message: Any
        if row.values is None:
            message = row.text   # refused as not an object: dead-lettered as written
        else:
            # Before the mapping, which may set fields inside a JSON line's objects.
            row_id = ids.of(row.values)
            message = mapping.message(row.values, row.values if base_rows else None)
            if not (message.get("messageId") or message.get("message_id")):
                message["messageId"] = row_id
        batch.append((row, message))
        size += len(orjson.dumps(message))
        if len(batch) >= batch_rows or size >= batch_bytes:
            flush()
    if batch:
        flush()
    report.refused.sort(key=lambda r: r.line)
    return report
