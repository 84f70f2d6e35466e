"""Reading an import file row by row: CSV (with a header) or JSON lines.

Each row carries the line of the file it starts on, so a refusal names it. A row that
cannot be read as a row (a CSV record with more or fewer cells than the header, a line
that is not a JSON object) is still a row: it is sent as its text and refused like any
event that is not an object, so it lands in the dead letter with what the file said.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

__all__ = ["FORMATS", "FileError", "Row", "format_of", "read_rows"]

FORMATS = ("csv", "jsonl")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class FileError(ValueError):
    """The file as a whole cannot be read (no header, repeated column names …)."""


@dataclass(frozen=True)
class Row:
    line: int                          # where the row starts in the file (1-based)
    values: dict[str, Any] | None      # column → cell (CSV), or the JSON object
    text: str = ""                     # the row as written, when values is None
    problem: str = ""                  # why values is None


def format_of(path: Path, stated: str | None) -> str:
    if stated:
        return stated
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise FileError(f"{path.name}: say --format csv or --format jsonl")
    return found


def read_rows(handle: TextIO, fmt: str, *, delimiter: str = ",") -> tuple[list[str], Iterator[Row]]:
    """(columns, rows): the CSV header, or [] for JSON lines, and the rows in file order."""
    if fmt == "csv":
        return _csv_rows(handle, delimiter)
    if fmt == "jsonl":
        return [], _json_rows(handle)
    raise FileError(f"format {fmt!r}: one of {', '.join(FORMATS)}")


def _csv_rows(handle: TextIO, delimiter: str) -> tuple[list[str], Iterator[Row]]:
    reader = csv.reader(handle, delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise FileError("the CSV file has no header row")
    columns = [cell.strip() for cell in header]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise FileError(f"repeated column names: {', '.join(repeated)}")

    def rows() -> Iterator[Row]:
        line = reader.line_num + 1
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue   # a blank line
            if len(record) != len(columns):
                yield Row(start, None, _csv_text(record, delimiter),
                          f"{len(record)} cells, the header has {len(columns)}")
                continue
            yield Row(start, dict(zip(columns, record, strict=True)))

    return columns, rows()


def _json_rows(handle: TextIO) -> Iterator[Row]:
    for number, text in enumerate(handle, 1):
        if not text.strip():
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            yield Row(number, None, text.rstrip("\r\n"), f"not JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield Row(number, None, text.rstrip("\r\n"), "not a JSON object")
            continue
        yield Row(number, value)


def _csv_text(record: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(record)
    return out.getvalue()
