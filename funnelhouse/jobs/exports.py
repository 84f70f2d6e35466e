"""Exports: the eight tables and the segments as CSV, Parquet or XLSX files, one folder a day.

`exports/YYYY-MM-DD/` holds, for the day D (a day of the reporting time zone):

* tables with a day column — that day's rows (behavior_events by event_date, sessions by
  session_date, orders and order_items by order_date, …);
* `users` — the whole table as it stands (a snapshot: one row per person);
* `segment__<id>` — the members of each exported segment as last materialised;
* `manifest.json` — per file: table, format, rows, bytes, sha256, period, columns.

Every file is written to a hidden temporary file in the same folder and moved into
place with `os.replace`, so a reader never sees half a file and an interrupted export
leaves the previous file (or none) — never a partial one. The manifest is written the
same way, last, and only lists files that were completed. People who were forgotten
(`funnelhouse forget`) are left out of every export made afterwards.

Parquet is written by pyarrow, XLSX by openpyxl (write-only mode), CSV by the standard
library; the rows come from ClickHouse as Arrow, so all three see the same typed values.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from funnelhouse.warehouse.base import Warehouse, WarehouseError

__all__ = ["EXPORT_TABLES", "FORMATS", "ExportResult", "PathNotAllowed", "confined_folder",
           "default_day", "export_day"]

# Table → its day column, in order of preference (the first that exists is used);
# () means the table is exported whole, as a snapshot.
EXPORT_TABLES: dict[str, tuple[str, ...]] = {
    "users": (),
    "sessions": ("session_date",),
    "behavior_events": ("event_date",),
    "product_engagement": ("activity_date",),
    "orders": ("order_date",),
    "order_items": ("order_date",),
    "campaign_performance": ("performance_date",),
    "funnel_stages": ("stage_date",),
}
FORMATS = ("csv", "parquet", "xlsx")
EXTENSIONS = {"csv": "csv", "parquet": "parquet", "xlsx": "xlsx"}
XLSX_SHEET_ROWS = 1_000_000          # Excel's limit is 1,048,576 rows a sheet
XLSX_CELL_CHARS = 32_767             # and 32,767 characters a cell
_FORGOTTEN = "lower(hex(SHA256(person_id))) NOT IN (SELECT id_hash FROM forgotten_ids)"
# One export at a time in a process: they share temp-file cleanup and the manifest.
_EXPORT_LOCK = threading.Lock()
# A sub-folder an API caller may name: plain ASCII names joined by "/", none starting
# with a dot (so no "..", no hidden names), nothing to decode (no %, no backslash).
_FOLDER_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_FOLDER_CHARS = 255
MAX_FOLDER_DEPTH = 8
# The temp names _write_file and _write_manifest make; only these are ever cleaned up.
_TEMP_NAME = re.compile(r"\.(?P<file>.+)\.tmp-[0-9a-f]{8}")


class PathNotAllowed(ValueError):
    """A caller named a folder outside the export root (→ 400 path_not_allowed)."""

    reason = "path_not_allowed"


def confined_folder(root: Path, name: object) -> Path:
    """The sub-folder `name` of `root`, as an HTTP caller may name it; else PathNotAllowed.

    Absolute paths, "..", hidden or encoded names, NUL and other control characters,
    over-long names, and symlinks that lead out of the root are all refused.
    """
    if name is None or name == "":
        return root
    if not isinstance(name, str):
        raise PathNotAllowed("out must be a relative folder name (text)")
    if len(name) > MAX_FOLDER_CHARS:
        raise PathNotAllowed(f"out is longer than {MAX_FOLDER_CHARS} characters")
    parts = name.removesuffix("/").split("/")
    if (name.startswith("/") or len(parts) > MAX_FOLDER_DEPTH
            or not all(_FOLDER_PART.fullmatch(part) for part in parts)):
        raise PathNotAllowed(
            "out must be a relative sub-folder of the export root: names of letters, digits, "
            f"'_', '-' and '.' (not first) joined by '/', at most {MAX_FOLDER_DEPTH} deep")
    folder = root.joinpath(*parts)
    _check_inside(root, folder)
    return folder


def _check_inside(root: Path, folder: Path) -> None:
    # resolve() follows every symlink that exists: a link inside the root that points
    # out of it is caught here, before anything is created through it.
    if not folder.resolve().is_relative_to(root.resolve()):
        raise PathNotAllowed("out leads outside the export root (a symbolic link)")


@dataclass
class ExportFile:
    file: str
    table: str
    format: str
    rows: int
    bytes: int
    sha256: str
    period: dict[str, Any]
    columns: list[str]
    generated_at: str


@dataclass
class ExportResult:
    day: str
    folder: str
    files: list[ExportFile] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def default_day(tz: str, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the reporting time zone: the last complete day."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(tz)).date() - dt.timedelta(days=1)


def export_day(reader: Warehouse, export_dir: Path, day: dt.date, *,
               tables: Iterable[str] | None = None, formats: Iterable[str] = ("csv", "parquet"),
               segments: Iterable[str] | None = None, tz: str = "UTC",
               now: Callable[[], dt.datetime] | None = None,
               root: Path | None = None) -> ExportResult:
    """Export `tables` (default: all eight) and `segments` (ids, or ["all"]) for `day`.

    With `root`, the day's folder must stay inside it (PathNotAllowed otherwise), also
    when a symlink sits where the day's folder would be.
    """
    formats = list(dict.fromkeys(formats))
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    tables = list(EXPORT_TABLES) if tables is None else list(dict.fromkeys(tables))
    for table in tables:
        if table not in EXPORT_TABLES:
            raise ValueError(f"unknown table {table!r}: one of {', '.join(EXPORT_TABLES)}")
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    folder = export_dir / day.isoformat()
    result = ExportResult(day.isoformat(), str(folder))
    with _EXPORT_LOCK:
        if root is not None:
            _check_inside(root, folder)
        folder.mkdir(parents=True, exist_ok=True)
        if root is not None:
            _check_inside(root, folder)   # again: a link swapped in while we created it
        _remove_stale_temp_files(folder)
        columns = _columns(reader)
        has_forgotten = "forgotten_ids" in columns
        jobs: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        for table in tables:
            if table not in columns:
                result.skipped.append({"table": table, "reason": "table does not exist yet"})
                continue
            sql, params, period = _table_query(table, columns[table], day, tz, has_forgotten)
            jobs.append((table, sql, params, period))
        for segment_id, materialised_at in _segments(reader, segments):
            sql, params = _segment_query(segment_id, "identity_map" in columns,
                                         "users" in columns)
            jobs.append((f"segment__{segment_id}", sql, params,
                         {"segment_id": segment_id, "snapshot_at": materialised_at}))
        for name, sql, params, period in jobs:
            try:
                data = _fetch(reader, sql, params)
            except WarehouseError as exc:
                result.errors.append({"table": name, "format": "*", "error": _line(exc)})
                continue
            for fmt in formats:
                try:
                    result.files.append(_write_file(folder, name, fmt, data, period, clock))
                except Exception as exc:  # noqa: BLE001 - recorded, the rest goes on
                    result.errors.append({"table": name, "format": fmt, "error": _line(exc)})
        _write_manifest(folder, result, tz, clock)
    return result


# -- what to read ---------------------------------------------------------------------------

def _columns(reader: Warehouse) -> dict[str, list[tuple[str, str]]]:
    """Existing tables → [(column, type)], plus each table's sort key under "__order"."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, name, ch_type in reader.query(
            "SELECT table, name, type FROM system.columns WHERE database = currentDatabase() "
            "ORDER BY table, position").rows:
        out.setdefault(table, []).append((name, ch_type))
    for table, key in reader.query(
            "SELECT name, sorting_key FROM system.tables WHERE database = currentDatabase()").rows:
        if table in out and key:
            out[table].append(("__order", key))
    return out


def _table_query(table: str, columns: list[tuple[str, str]], day: dt.date, tz: str,
                 has_forgotten: bool) -> tuple[str, dict[str, Any], dict[str, Any]]:
    names = [c for c, _ in columns if c != "__order"]
    sort_key = next((t for c, t in columns if c == "__order"), "")
    day_column = next((c for c in EXPORT_TABLES[table] if c in names), None)
    conditions, params = [], {}
    if day_column:
        conditions.append(f"`{day_column}` = {{day:Date}}")
        params["day"] = day.isoformat()
        period = {"from": day.isoformat(), "to": day.isoformat(), "column": day_column,
                  "timezone": tz}
    else:
        period = {"snapshot_at": _utc_text(dt.datetime.now(dt.UTC))}
    if has_forgotten and "person_id" in names:
        conditions.append(_FORGOTTEN)
    where = ("\nWHERE " + "\n  AND ".join(conditions)) if conditions else ""
    # The table's own sort key: cheap to read in order, and a stable order for diffs.
    order = sort_key or ", ".join(f"`{c}`" for c in names[:3])
    select = ", ".join(f"`{c}`" for c in names)
    return f"SELECT {select}\nFROM {table}{where}\nORDER BY {order}", params, period


def _segments(reader: Warehouse, segments: Iterable[str] | None) -> list[tuple[str, str]]:
    wanted = list(segments or [])
    if not wanted:
        return []
    rows = reader.query("""
        SELECT s.segment_id, toString(max(m.materialised_at))
        FROM (SELECT segment_id, argMax(deleted, version) AS deleted
              FROM segments GROUP BY segment_id) AS s
        LEFT JOIN segment_members AS m ON m.segment_id = s.segment_id
        WHERE s.deleted = 0
        GROUP BY s.segment_id
        ORDER BY s.segment_id""").rows
    known = {r[0]: r[1] for r in rows}
    if wanted in (["all"], ["*"]):
        return list(known.items())
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(f"unknown segment(s): {', '.join(unknown)}")
    return [(s, known[s]) for s in wanted]


def _segment_query(segment_id: str, has_map: bool, has_users: bool
                   ) -> tuple[str, dict[str, Any]]:
    """Members with what a CRM needs to reach them: user id and e-mail when known.

    Members are already filtered for forgotten people at materialisation, and forget
    deletes them from segment_members: no second filter here.
    """
    user = "if(i.id != '', m.person_id, '')" if has_map else "''"
    email = "u.email" if has_users else "''"
    join = ("LEFT JOIN (SELECT id FROM identity_map WHERE id_kind = 'user') AS i "
            "ON i.id = m.person_id\n" if has_map else "")
    if has_users:
        join += ("LEFT JOIN (SELECT person_id, email FROM users) AS u "
                 "ON u.person_id = m.person_id\n")
    return (f"SELECT m.person_id AS person_id, {user} AS user_id, {email} AS email, "
            "m.version AS segment_version, m.materialised_at AS materialised_at\n"
            f"FROM segment_members AS m\n{join}"
            "WHERE m.segment_id = {s:String}\nORDER BY m.person_id", {"s": segment_id})


def _fetch(reader: Warehouse, sql: str, params: dict[str, Any]) -> pa.Table:
    raw = reader.query_raw(sql, "ArrowStream", params or None)
    if not raw:
        raise WarehouseError("the query returned no Arrow stream")
    table = pa.ipc.open_stream(raw).read_all()
    # Strings may arrive as binary on some servers: make them text for every writer.
    fields = [pa.field(f.name, pa.string()) if pa.types.is_binary(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


# -- writing ----------------------------------------------------------------------------------

def _write_file(folder: Path, name: str, fmt: str, data: pa.Table, period: dict[str, Any],
                clock: Callable[[], dt.datetime]) -> ExportFile:
    file_name = f"{name}.{EXTENSIONS[fmt]}"
    if "/" in file_name or "\0" in file_name or file_name.startswith("."):
        raise PathNotAllowed(f"not a file name: {file_name!r}")   # ids are checked; belt
    temp = folder / f".{file_name}.tmp-{secrets.token_hex(4)}"
    try:
        WRITERS[fmt](temp, data)
        digest, size = _sha256(temp)
        _fsync(temp)
        os.replace(temp, folder / file_name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return ExportFile(file_name, name, fmt, data.num_rows, size, digest, period,
                      data.schema.names, _utc_text(clock()))


def write_csv(path: Path, data: pa.Table) -> None:
    """UTF-8, a header row, times as `YYYY-MM-DD HH:MM:SS.mmm` UTC, NULL as empty."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(data.schema.names)
        for batch in data.to_batches(max_chunksize=50_000):
            columns = [_text_values(col) for col in batch.columns]
            writer.writerows(zip(*columns, strict=True))


def write_parquet(path: Path, data: pa.Table) -> None:
    pq.write_table(data, path, compression="zstd")


def write_xlsx(path: Path, data: pa.Table) -> None:
    """One sheet per million rows; times as UTC date-times, lists as JSON text."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = None
    written = 0
    names = data.schema.names
    # Excel has one date-time type: give date columns a date-only display format.
    formats = ["yyyy-mm-dd" if pa.types.is_date(f.type) else
               "yyyy-mm-dd hh:mm:ss.000" if pa.types.is_timestamp(f.type) else None
               for f in data.schema]
    for batch in data.to_batches(max_chunksize=50_000):
        columns = [_excel_values(col, ILLEGAL_CHARACTERS_RE) for col in batch.columns]
        for row in zip(*columns, strict=True):
            if sheet is None or written % XLSX_SHEET_ROWS == 0:
                sheet = workbook.create_sheet(f"rows {written + 1}-" if written else "data")
                sheet.append(names)
            cells = list(row)
            for i, number_format in enumerate(formats):
                if number_format and cells[i] is not None:
                    cells[i] = WriteOnlyCell(sheet, value=cells[i])
                    cells[i].number_format = number_format
            sheet.append(cells)
            written += 1
    if sheet is None:
        workbook.create_sheet("data").append(names)
    workbook.save(path)


WRITERS: dict[str, Callable[[Path, pa.Table], None]] = {
    "csv": write_csv, "parquet": write_parquet, "xlsx": write_xlsx}


def _text_values(column: pa.Array) -> list[str]:
    return [_text(v) for v in column.to_pylist()]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return _utc_text(value)
    if isinstance(value, (dt.date, Decimal)):
        return str(value)
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _excel_values(column: pa.Array, illegal: Any) -> list[Any]:
    out: list[Any] = []
    for value in column.to_pylist():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        elif isinstance(value, (list, dict)):
            value = orjson.dumps(value, default=str).decode()
        if isinstance(value, str):
            value = illegal.sub("", value)[:XLSX_CELL_CHARS]
        out.append(value)
    return out


def _write_manifest(folder: Path, result: ExportResult, tz: str,
                    clock: Callable[[], dt.datetime]) -> None:
    path = folder / "manifest.json"
    previous: list[dict[str, Any]] = []
    if path.is_file():
        try:
            previous = orjson.loads(path.read_bytes()).get("files", [])
        except orjson.JSONDecodeError:
            previous = []
    # Entries of earlier runs stay while their file does: a failed rewrite left that
    # file untouched, so its old entry (rows, checksum) is still true.
    rewritten = {f.file for f in result.files}
    kept = [f for f in previous
            if f.get("file") not in rewritten and (folder / f.get("file", "")).is_file()]
    files = sorted(kept + [asdict(f) for f in result.files], key=lambda f: f["file"])
    doc = {"day": result.day, "timezone": tz, "generated_at": _utc_text(clock()),
           "files": files, "errors": result.errors, "skipped": result.skipped}
    temp = folder / f".manifest.json.tmp-{secrets.token_hex(4)}"
    try:
        temp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        _fsync(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _remove_stale_temp_files(folder: Path) -> None:
    """Temp files of an export killed mid-write (a crash, SIGKILL) are never completed.

    Only names an export makes (`.<one of our file names>.tmp-<8 hex>`) that are plain
    files of our own are removed: anything else in the folder is not ours to delete.
    """
    ours = {"manifest.json"} | {f"{table}.{ext}" for table in EXPORT_TABLES
                                for ext in EXTENSIONS.values()}
    for stale in folder.iterdir():
        match = _TEMP_NAME.fullmatch(stale.name)
        if not match:
            continue
        name = match["file"]
        if name not in ours and not (name.startswith("segment__")
                                     and name.rsplit(".", 1)[-1] in EXTENSIONS.values()):
            continue
        try:
            info = stale.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
            stale.unlink(missing_ok=True)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        _fsync(folder)
    except OSError:
        pass   # not every file system lets a directory be fsynced


def _utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__
