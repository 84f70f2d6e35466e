"""Files: exports stay in the export root, a private data folder, token shown once, disk full."""

from __future__ import annotations

import argparse
import base64
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import people as people_api
from funnelhouse.cli import people as cli_people
from funnelhouse.cli.client import Client, RemoteClient
from funnelhouse.collector.app import create_app
from funnelhouse.collector.sinks.base import Record
from funnelhouse.collector.sinks.embedded import EmbeddedSink
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import BROWSER_KEY, Funnelhouse, make_settings, track, wait_until
from tests.people_support import Built, built_warehouse

DAY = date(2024, 3, 2)


# ------------------------------------------------------------------ exports (finding 5)

@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("secfiles") / "data", people=20, days=3) as b:
        yield b


@pytest.fixture
def api(built: Built) -> Iterator[TestClient]:
    app = Starlette(routes=people_api.routes(built.settings, built.warehouse))
    with TestClient(app, headers={"Authorization": "Bearer admintok"}) as client:
        yield client


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder an attacker would like to write into (outside the export root)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / ".keep.tmp-1").write_text("someone else's")
    return folder


def export(client: TestClient, out: Any) -> httpx.Response:
    return client.post("/v1/exports", json={"date": DAY.isoformat(), "tables": ["orders"],
                                            "formats": ["csv"], "out": out})


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


ESCAPES = [
    "{outside}",                     # absolute, straight to the target
    "{outside}/sub",
    "/etc/funnelhouse-x",
    "//tmp/x",
    "../x",
    "..",
    ".",
    "./x",
    "a/../../x",
    "foo/../../../{outside_name}",
    "a/./../../x",
    "%2e%2e/%2e%2e/x",               # URL-encoded ..; never decoded, refused as text
    "..%2fx",
    "%2Fetc%2Fx",
    "..\\..\\x",                     # backslashes
    "C:\\x",
    "~/x",
    "\uff0e\uff0e/x",                # fullwidth dots
    "a\x00b",                        # NUL
    "a\nb",
    ".hidden",
    "a/.tmp",
    "a//b",
    "x" * 300,                       # very long
    "/".join(["d"] * 20),            # very deep
    " ",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_export_out_that_leaves_the_root_is_refused(built: Built, api: TestClient,
                                                    outside: Path, template: str) -> None:
    before_root = files_under(built.settings.export_dir) if built.settings.export_dir.exists() \
        else set()
    before_outside = files_under(outside)
    out = template.format(outside=outside, outside_name=outside.name)
    response = export(api, out)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "path_not_allowed"
    assert files_under(outside) == before_outside
    after_root = files_under(built.settings.export_dir) if built.settings.export_dir.exists() \
        else set()
    assert after_root == before_root
    # Nothing was created next to the data folder either (where ../x would land).
    assert not (built.settings.data_dir.parent / "x").exists()


@pytest.mark.parametrize("out", [123, ["a"], {"a": 1}, True])
def test_export_out_that_is_not_text_is_refused(api: TestClient, out: Any) -> None:
    response = export(api, out)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "path_not_allowed"


def test_symlink_inside_the_root_that_leads_out_is_refused(built: Built, api: TestClient,
                                                          outside: Path) -> None:
    root = built.settings.export_dir
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "legit").mkdir(exist_ok=True)
    # A day folder that is a link out: caught although the named folder is inside.
    (root / "legit" / DAY.isoformat()).symlink_to(outside, target_is_directory=True)
    before = files_under(outside)
    try:
        for out in ("link", "link/sub", "legit"):
            response = export(api, out)
            assert response.status_code == 400, (out, response.text)
            assert response.json()["reason"] == "path_not_allowed"
        assert files_under(outside) == before
    finally:
        (root / "link").unlink()
        (root / "legit" / DAY.isoformat()).unlink()


def test_a_relative_sub_folder_of_the_root_is_written(built: Built, api: TestClient) -> None:
    for out in ("team-a/daily", "team_b/2024.03/", None, ""):
        response = export(api, out)
        assert response.status_code == 200, response.text
        base = built.settings.export_dir.joinpath(*filter(None, (out or "").split("/")))
        assert Path(response.json()["folder"]).resolve() == (base / DAY.isoformat()).resolve()
        assert (base / DAY.isoformat() / "orders.csv").is_file()
        assert (base / DAY.isoformat() / "manifest.json").is_file()


def test_cleanup_touches_only_our_own_temp_files(built: Built, api: TestClient,
                                                 outside: Path) -> None:
    folder = built.settings.export_dir / "mixed" / DAY.isoformat()
    folder.mkdir(parents=True)
    victim = outside / "victim.txt"
    victim.write_text("not yours")
    foreign = {
        ".notes.tmp-keep": "a user's file",
        ".orders.csv.tmp-zzzz": "not one of our names (not 8 hex)",
        ".report.csv.tmp-0badc0de": "a file name an export never writes",
        ".orders.csv.tmp-0badc0de.bak": "a suffix after ours",
    }
    for name, text in foreign.items():
        (folder / name).write_text(text)
    (folder / ".orders.parquet.tmp-0badc0de").symlink_to(victim)     # a link: not ours
    (folder / ".users.csv.tmp-0badc0de").mkdir()                       # a folder: not ours
    (folder / ".sessions.csv.tmp-deadbeef").write_text("session_date\n2024-")   # ours, stale
    response = export(api, "mixed")
    assert response.status_code == 200, response.text
    for name, text in foreign.items():
        assert (folder / name).read_text() == text
    assert (folder / ".orders.parquet.tmp-0badc0de").is_symlink()
    assert victim.read_text() == "not yours"
    assert (folder / ".users.csv.tmp-0badc0de").is_dir()
    assert not (folder / ".sessions.csv.tmp-deadbeef").exists()


def test_cli_through_a_running_up_names_only_folders_in_the_root(
        built: Built, outside: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """The CLI asks a running `up` over HTTP: it may name a folder inside the root (sent as
    a relative sub-folder), not one outside; without `up` it writes anywhere (test_exports)."""
    app = Starlette(routes=people_api.routes(built.settings, built.warehouse))

    def remote(settings: Any) -> RemoteClient:   # the running `up`, in process
        return RemoteClient(settings, "http://up.invalid", TestClient(
            app, base_url="http://up.invalid", headers={"Authorization": "Bearer admintok"}))

    monkeypatch.setattr(Client, "for_settings", staticmethod(remote))
    parser = argparse.ArgumentParser(prog="funnelhouse")
    cli_people.register(parser.add_subparsers(dest="command", required=True))

    def run(out: Path) -> int:
        args = parser.parse_args(["export", "--data-dir", str(built.settings.data_dir),
                                  "--date", DAY.isoformat(), "--tables", "orders",
                                  "--format", "csv", "--out", str(out)])
        return args.handler(args)

    assert run(outside) != 0
    assert "writes exports only under its export root" in capsys.readouterr().err
    assert files_under(outside) == {".keep.tmp-1"}
    inside = built.settings.export_dir / "from-cli"
    assert run(inside) == 0
    assert (inside / DAY.isoformat() / "orders.csv").is_file()
    assert "exported" in capsys.readouterr().out


# ------------------------------------------------- data folder and token (finding 12)

def group_or_other_bits(root: Path) -> list[str]:
    loose = []
    for folder, _, files in os.walk(root):
        for path in [folder, *(os.path.join(folder, f) for f in files)]:
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077:
                loose.append(f"{path} {stat.S_IMODE(info.st_mode):o}")
    return loose


def funnelhouse_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELHOUSE_")}
    return subprocess.run([sys.executable, "-m", "funnelhouse.cli", *args, "--data-dir",
                           str(data_dir)], env=env, capture_output=True, text=True, timeout=120)


def test_up_keeps_the_data_folder_private_and_shows_the_token_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # An earlier version's folder: made under the usual umask, every event readable.
    old_umask = os.umask(0o022)
    try:
        data_dir.mkdir(mode=0o755)
        old_log = EventLog(data_dir / "queue.sqlite3")
        old_log.append([Record("events", "k", b'{"message_id":"old"}')])
        old_log.close()
        (data_dir / "exports").mkdir(mode=0o755)
        (data_dir / "exports" / "old.csv").write_text("person_id\nalice\n")
    finally:
        os.umask(old_umask)
    assert group_or_other_bits(data_dir)     # the precondition: it is loose

    # No configured token or keys: up makes them (FUNNELHOUSE_ADMIN_TOKEN="" is unset).
    instance = Funnelhouse(data_dir, env={"FUNNELHOUSE_ADMIN_TOKEN": "",
                                          "FUNNELHOUSE_WRITE_KEYS": ""})
    instance.start()
    try:
        saved = orjson.loads((data_dir / "credentials.json").read_bytes())
        token, key = saved["admin_token"], saved["write_key"]
        sent = [track("click", f"p{i}", messageId=f"sec-{i}") for i in range(20)]
        response = httpx.post(f"{instance.url}/v1/batch", json={"batch": sent},
                              auth=(key, ""), timeout=30)
        assert response.status_code == 200, response.text

        def loaded() -> bool:
            answer = httpx.post(f"{instance.url}/v1/sql", timeout=30,
                                headers={"Authorization": f"Bearer {token}"},
                                json={"sql": "SELECT count() AS n FROM events_raw "
                                             "WHERE message_id LIKE 'sec-%'"})
            return answer.status_code == 200 and int(answer.json()["data"][0]["n"]) == 20

        wait_until(loaded, timeout=60)
        exported = httpx.post(f"{instance.url}/v1/exports", timeout=120,
                              headers={"Authorization": f"Bearer {token}"},
                              json={"date": "2024-03-02", "out": "shared"})
        assert exported.status_code == 200, exported.text
        assert group_or_other_bits(data_dir) == []
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert (data_dir / "queue.sqlite3-wal").exists() or (data_dir / "queue.sqlite3").exists()
        assert any((data_dir / "warehouse").rglob("*.bin")) or \
            any((data_dir / "warehouse").rglob("data*"))        # chdb's files were checked
    finally:
        assert instance.stop() == 0
    assert group_or_other_bits(data_dir) == []
    first = instance.log_path.read_text()
    assert token in first
    assert "shown this once" in first and "funnelhouse token show" in first
    assert "readable by others" in first                 # the tightening was logged
    assert saved["server_key"] in first    # the key up made, shown once (imports need it)
    assert key in first                                   # a browser key is public

    # The second start says where the token is, not what it is.
    size = instance.log_path.stat().st_size
    instance.start()
    try:
        assert httpx.get(f"{instance.url}/healthz", timeout=5).status_code == 200
    finally:
        assert instance.stop() == 0
    second = instance.log_path.read_text()[size:]
    assert "funnelhouse is up at" in second
    assert token not in second
    assert saved["server_key"] not in second              # not in every start's log
    assert f"in {data_dir / 'credentials.json'}" in second

    shown = funnelhouse_cli(data_dir, "token", "show")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == token
    assert group_or_other_bits(data_dir) == []


def test_a_configured_token_is_never_printed(tmp_path: Path) -> None:
    secret = "configured-" + uuid.uuid4().hex
    instance = Funnelhouse(tmp_path / "data", env={"FUNNELHOUSE_ADMIN_TOKEN": secret})
    instance.start()
    try:
        assert httpx.get(f"{instance.url}/healthz", timeout=5).status_code == 200
    finally:
        assert instance.stop() == 0
    text = instance.log_path.read_text()
    assert "funnelhouse is up at" in text
    assert secret not in text
    assert "as configured" in text


def test_token_show_without_a_data_folder_says_so(tmp_path: Path) -> None:
    shown = funnelhouse_cli(tmp_path / "nothing", "token", "show")
    assert shown.returncode == 1
    assert "no admin token yet" in shown.stderr
    assert shown.stdout == ""


# ----------------------------------------------------------- a full disk (finding 13b)

def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def fill_until_refused(client: TestClient, prefix: str) -> tuple[list[str], httpx.Response]:
    """Send batches until one is refused; the ids of every acknowledged event."""
    acknowledged: list[str] = []
    filler = "x" * 6000
    for i in range(2000):
        ids = [f"{prefix}-{i}-{j}" for j in range(10)]
        batch = [track("click", "a", messageId=m,
                       properties={"element": "#b", "note": filler}) for m in ids]
        response = client.post("/v1/batch", json={"batch": batch}, headers=basic(BROWSER_KEY))
        if response.status_code != 200:
            return acknowledged, response
        assert response.json()["accepted"] == 10, response.text
        acknowledged += ids
    raise AssertionError("the queue never filled up")


def assert_disk_full_answer(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["reason"] == "queue_unavailable"
    assert "disk full" in body["error"], body
    assert "cannot rollback" not in body["error"], body
    assert response.headers["Retry-After"]


def stored_ids(path: Path) -> set[str]:
    log = EventLog(path)
    try:
        return {orjson.loads(r.value)["message_id"] for _, r in log.read(0, 1_000_000)
                if r.stream == "events"}
    finally:
        log.close()


def test_a_full_database_answers_503_naming_the_full_disk(tmp_path: Path) -> None:
    """SQLITE_FULL through SQLite's own size cap (max_page_count): any machine, any user."""
    settings = make_settings(tmp_path / "data")
    writer = EventLog(settings.queue_path)
    writer._db.execute("PRAGMA max_page_count = 40")       # 40 × 16 KiB pages
    with TestClient(create_app(settings, EmbeddedSink(writer))) as client:
        acknowledged, refused = fill_until_refused(client, "cap")
        assert_disk_full_answer(refused)
        assert client.get("/readyz").status_code in (200, 503)
        # Room again: the same client's retry is stored.
        writer._db.execute("PRAGMA max_page_count = 100000")
        retry = client.post("/v1/track", json=track(messageId="cap-after"),
                            headers=basic(BROWSER_KEY))
        assert retry.status_code == 200, retry.text
    writer.close()
    ids = stored_ids(settings.queue_path)
    assert set(acknowledged) <= ids           # nothing acknowledged was lost
    assert "cap-after" in ids


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real ENOSPC under SQLite (needs root, which CI and this sandbox
    have; elsewhere the max_page_count test above covers the same SQLITE_FULL)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); "
                    "test_a_full_database_answers_503_naming_the_full_disk covers SQLITE_FULL")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_answers_503_naming_it_and_loses_nothing(tmp_path: Path,
                                                             tiny_disk: Path) -> None:
    settings = make_settings(tiny_disk / "data")
    writer = EventLog(settings.queue_path)
    with TestClient(create_app(settings, EmbeddedSink(writer))) as client:
        acknowledged, refused = fill_until_refused(client, "disk")
        assert_disk_full_answer(refused)
        # Every later request says the same, not the rollback that followed the first.
        big = track(properties={"element": "#b", "note": "y" * 8000})
        again = client.post("/v1/track", json=big,
                            headers=basic(BROWSER_KEY))
        if again.status_code != 200:
            assert_disk_full_answer(again)
    writer.close()
    assert set(acknowledged) <= stored_ids(settings.queue_path)
