"""Exports: files read back equal the tables; atomic writes; manifest; the nightly schedule."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pyarrow.parquet as pq
import pytest

from funnelhouse.jobs import exports
from funnelhouse.jobs.exports import EXPORT_TABLES, export_day
from funnelhouse.jobs.scheduler import build_scheduler
from funnelhouse.people.segments import from_people
from tests.people_support import Built, built_warehouse

DAY = date(2024, 3, 6)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("exports") / "data", people=80) as b:
        yield b


@pytest.fixture(scope="module")
def exported(built: Built, tmp_path_factory: pytest.TempPathFactory) -> exports.ExportResult:
    vip = [t.person_id for t in built.data.truth[:15]]
    from_people(built.warehouse, built.settings, "VIP", vip)
    out = tmp_path_factory.mktemp("out")
    return export_day(built.warehouse.readonly(), out, DAY, formats=["csv", "parquet", "xlsx"],
                      segments=["all"], tz=built.settings.reporting_tz)


def table_rows(built: Built, table: str) -> tuple[list[str], list[list[Any]]]:
    """The rows the export of `table` must hold, read with a plain query."""
    columns = [r[0] for r in built.warehouse.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}"
        " ORDER BY position", {"t": table}).rows]
    day_column = next((c for c in EXPORT_TABLES[table] if c in columns), None)
    where = f" WHERE {day_column} = '{DAY}'" if day_column else ""
    result = built.warehouse.query(f"SELECT * FROM {table}{where}")
    return result.columns, result.rows


def same(expected: Any, got: Any) -> bool:
    """One warehouse value (JSON) against one value read back from a file."""
    if isinstance(got, str) and not isinstance(expected, str):
        if expected is None:
            return got == ""
        if isinstance(expected, list):
            return same(expected, orjson.loads(got))
        return math.isclose(float(expected), float(got), rel_tol=1e-6)
    if expected is None or got is None:
        # Neither CSV nor a spreadsheet cell tells NULL from an empty text.
        return expected in (None, "") and got in (None, "")
    if isinstance(got, datetime) and len(expected) == 10:
        return got.date().isoformat() == expected    # a spreadsheet date is a date-time
    if isinstance(got, datetime):
        got = got.astimezone(UTC) if got.tzinfo else got
        return got.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] == expected
    if isinstance(got, date):
        return got.isoformat() == expected
    if isinstance(got, (int, float, Decimal)) and not isinstance(got, bool):
        return math.isclose(float(expected), float(got), rel_tol=1e-6)
    if isinstance(got, list):
        return len(got) == len(expected) and all(
            same(e, g) for e, g in zip(expected, got, strict=True))
    return expected == got


def assert_same_rows(expected: list[list[Any]], got: list[list[Any]]) -> None:
    assert len(got) == len(expected)
    unmatched = list(got)
    for row in expected:
        match = next((g for g in unmatched if all(same(e, v) for e, v in zip(row, g, strict=True))),
                     None)
        assert match is not None, f"row not in the file: {row[:5]}"
        unmatched.remove(match)
    assert not unmatched


@pytest.mark.parametrize("table", list(EXPORT_TABLES))
def test_csv_read_back_equals_the_table(built: Built, exported, table: str) -> None:
    columns, expected = table_rows(built, table)
    with open(Path(exported.folder) / f"{table}.csv", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == columns
        got = list(reader)
    assert expected, f"{table} has no rows on {DAY}: the test would prove nothing"
    assert_same_rows(expected, got)


@pytest.mark.parametrize("table", list(EXPORT_TABLES))
def test_parquet_read_back_equals_the_table(built: Built, exported, table: str) -> None:
    columns, expected = table_rows(built, table)
    data = pq.read_table(Path(exported.folder) / f"{table}.parquet")
    assert data.schema.names == columns
    assert_same_rows(expected, [list(r.values()) for r in data.to_pylist()])


@pytest.mark.parametrize("table", list(EXPORT_TABLES))
def test_xlsx_read_back_equals_the_table(built: Built, exported, table: str) -> None:
    columns, expected = table_rows(built, table)
    sheet = openpyxl.load_workbook(Path(exported.folder) / f"{table}.xlsx", read_only=True).active
    # A row whose last cells are empty reads back shorter: pad it.
    rows = [list(r) + [None] * (len(columns) - len(r)) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == columns
    assert_same_rows(expected, rows[1:])


def test_manifest_lists_every_file_with_rows_checksum_and_period(built: Built, exported) -> None:
    folder = Path(exported.folder)
    assert folder.name == DAY.isoformat()
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    files = {f["file"]: f for f in manifest["files"]}
    on_disk = {p.name for p in folder.iterdir() if p.name != "manifest.json"}
    assert set(files) == on_disk
    assert len(files) == (len(EXPORT_TABLES) + 1) * 3      # eight tables + one segment, 3 formats
    for name, entry in files.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
        assert (folder / name).stat().st_size == entry["bytes"]
    assert files["orders.csv"]["period"] == {"from": "2024-03-06", "to": "2024-03-06",
                                             "column": "order_date", "timezone": "Asia/Seoul"}
    assert "snapshot_at" in files["users.parquet"]["period"]
    assert files["sessions.csv"]["rows"] == len(table_rows(built, "sessions")[1])
    assert manifest["errors"] == [] and manifest["day"] == "2024-03-06"


def test_segment_file_holds_its_members_with_contact_fields(built: Built, exported) -> None:
    with open(Path(exported.folder) / "segment__vip.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = {r[0] for r in built.warehouse.query(
        "SELECT person_id FROM segment_members WHERE segment_id = 'vip'").rows}
    assert {r["person_id"] for r in rows} == expected
    identified = [r for r in rows if r["user_id"]]
    assert any(r["email"] for r in identified)
    assert all(r["email"].endswith("@example.com") for r in rows if r["email"])


def test_an_interrupted_write_leaves_no_partial_file(built: Built, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real_csv = exports.WRITERS["csv"]

    def dies_half_way(path: Path, data) -> None:  # type: ignore[no-untyped-def]
        if "orders" not in path.name or "order_items" in path.name:
            return real_csv(path, data)
        with open(path, "w") as fh:
            fh.write("order_id,person_id\nhalf,")
        raise OSError("disk full")

    monkeypatch.setitem(exports.WRITERS, "csv", dies_half_way)
    # A temp file left by an export killed outright (SIGKILL) earlier today:
    folder = tmp_path / DAY.isoformat()
    folder.mkdir()
    (folder / ".sessions.csv.tmp-0badc0de").write_text("session_date\n2024-")
    result = export_day(built.warehouse.readonly(), tmp_path, DAY, tables=["orders", "sessions"],
                        formats=["csv"], tz=built.settings.reporting_tz)
    assert [e["table"] for e in result.errors] == ["orders"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "sessions.csv"]
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert [f["file"] for f in manifest["files"]] == ["sessions.csv"]
    assert manifest["errors"][0]["error"] == "disk full"


def test_a_failed_rewrite_keeps_the_previous_complete_file(built: Built, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reader = built.warehouse.readonly()
    export_day(reader, tmp_path, DAY, tables=["orders"], formats=["csv"])
    before = (tmp_path / DAY.isoformat() / "orders.csv").read_bytes()

    def fails(path: Path, data) -> None:  # type: ignore[no-untyped-def]
        path.write_text("order_id\n")
        raise RuntimeError("killed")

    monkeypatch.setitem(exports.WRITERS, "csv", fails)
    export_day(reader, tmp_path, DAY, tables=["orders"], formats=["csv"])
    folder = tmp_path / DAY.isoformat()
    assert (folder / "orders.csv").read_bytes() == before
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    assert manifest["files"][0]["sha256"] == hashlib.sha256(before).hexdigest()


def test_xlsx_splits_sheets_at_the_row_limit(built: Built, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "XLSX_SHEET_ROWS", 50)
    export_day(built.warehouse.readonly(), tmp_path, DAY, tables=["behavior_events"],
               formats=["xlsx"])
    book = openpyxl.load_workbook(tmp_path / DAY.isoformat() / "behavior_events.xlsx",
                                  read_only=True)
    rows = sum(sum(1 for _ in sheet.iter_rows()) - 1 for sheet in book.worksheets)
    assert len(book.worksheets) > 1
    assert rows == len(table_rows(built, "behavior_events")[1])


def test_unknown_table_or_format_is_refused(built: Built, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        export_day(built.warehouse, tmp_path, DAY, tables=["events_raw"])
    with pytest.raises(ValueError):
        export_day(built.warehouse, tmp_path, DAY, formats=["json"])


def test_nightly_export_fires_once_after_export_time_in_seoul(built: Built,
                                                              tmp_path: Path) -> None:
    settings = built.settings.replace(data_dir=tmp_path, export_time="02:00",
                                      export_formats=("csv",))
    now = [datetime(2024, 3, 7, 16, 50, tzinfo=UTC)]          # 01:50 on 8 March in Seoul
    scheduler = build_scheduler(settings, built.warehouse, clock=lambda: now[0],
                                segments_every_minutes=0)

    async def run_day() -> list[str]:
        fired: list[str] = []
        for _ in range(24 * 6):
            fired += await scheduler.tick()
            now[0] += timedelta(minutes=10)
        return fired

    assert asyncio.run(run_day()) == ["nightly-export"]
    manifest = settings.export_dir / "2024-03-07" / "manifest.json"   # the day before
    assert manifest.is_file()
    doc = orjson.loads(manifest.read_bytes())
    assert doc["day"] == "2024-03-07"
    assert {f["table"] for f in doc["files"]} >= set(EXPORT_TABLES)     # and the segments
    # A restarted `up` the same day sees the manifest and does not export again.
    again = build_scheduler(settings, built.warehouse, clock=lambda: now[0] - timedelta(hours=1),
                            segments_every_minutes=0)
    assert asyncio.run(again.tick()) == []


def test_export_over_http_and_from_the_cli(built: Built, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    import argparse

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from funnelhouse.api import people as people_api
    from funnelhouse.cli.people import register

    app = Starlette(routes=people_api.routes(built.settings, built.warehouse))
    with TestClient(app, headers={"Authorization": "Bearer admintok"}) as client:
        answer = client.post("/v1/exports", json={"date": "2024-03-06", "tables": ["orders"],
                                                  "formats": ["parquet"],
                                                  "out": "http/daily"})
    assert answer.status_code == 200, answer.text
    assert [f["file"] for f in answer.json()["files"]] == ["orders.parquet"]
    # Over HTTP `out` is a sub-folder of the export root (tests/test_security_files.py).
    assert (built.settings.export_dir / "http" / "daily" / "2024-03-06" /
            "orders.parquet").is_file()

    parser = argparse.ArgumentParser(prog="funnelhouse")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", "--data-dir", str(built.settings.data_dir),
                              "--date", "2024-03-06", "--tables", "sessions,orders",
                              "--format", "csv,xlsx", "--out", str(tmp_path / "cli")])
    assert args.handler(args) == 0
    assert "sessions.xlsx" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "cli" / "2024-03-06").iterdir()) == [
        "manifest.json", "orders.csv", "orders.xlsx", "sessions.csv", "sessions.xlsx"]
