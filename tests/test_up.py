"""`funnelhouse up` as a whole: HTTP in, events_raw out, SQL, replay, clean stop."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from funnelhouse.config import PACKAGE_ROOT
from tests.conftest import ADMIN_TOKEN, Funnelhouse, track, wait_until


def cli(instance: Funnelhouse, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnelhouse.cli", *args, "--data-dir",
                           str(instance.data_dir)], env=instance.env, capture_output=True,
                          text=True, timeout=120)


def test_curl_style_event_is_queryable_with_funnelhouse_sql(funnelhouse_up: Funnelhouse) -> None:
    response = funnelhouse_up.post("/v1/track", track("click", "visitor-7", messageId="q1"))
    assert response.status_code == 200
    wait_until(lambda: funnelhouse_up.sql("SELECT 1 FROM events_raw WHERE message_id = 'q1'"))

    result = cli(funnelhouse_up, "sql", "SELECT event, anonymous_id, source FROM events_raw",
                 "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['"event","anonymous_id","source"',
                                          '"click","visitor-7","web"']


def test_sql_endpoint_requires_the_admin_token(funnelhouse_up: Funnelhouse) -> None:
    url = f"{funnelhouse_up.url}/v1/sql"
    assert httpx.post(url, json={"sql": "SELECT 1"}).status_code == 401
    wrong = httpx.post(url, json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["reason"] == "unauthorized"


def test_sql_endpoint_refuses_writes_and_ddl(funnelhouse_up: Funnelhouse) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for statement in ("INSERT INTO events_raw (message_id) VALUES ('x')",
                      "DROP TABLE events_raw",
                      "CREATE TABLE evil (a UInt8) ENGINE = Memory",
                      "SELECT 1 SETTINGS readonly = 0",
                      "SELECT 1 -- \n SETTINGS readonly = 0",
                      "SELECT * FROM file('/etc/passwd', 'LineAsString')"):
        response = httpx.post(f"{funnelhouse_up.url}/v1/sql", json={"sql": statement},
                              headers=headers, timeout=30)
        assert response.status_code == 400, statement
        assert response.json()["reason"] in ("sql_refused", "read_only", "query_failed")
    assert funnelhouse_up.sql("SELECT count() AS n FROM system.tables WHERE name = 'evil'") == [
        {"n": 0}]
    # And reads still work, as CSV too.
    csv = httpx.post(f"{funnelhouse_up.url}/v1/sql", json={"sql": "SELECT 1 AS one",
                                                         "format": "csv"}, headers=headers)
    assert csv.text.splitlines() == ['"one"', "1"]


def test_replay_moves_dead_letters_after_the_plan_is_fixed(tmp_path: Path) -> None:
    plan_dir = tmp_path / "plan"
    shutil.copytree(PACKAGE_ROOT / "schemas", plan_dir)
    instance = Funnelhouse(tmp_path / "data", env={"FUNNELHOUSE_PLAN_DIR": str(plan_dir)}).start()
    try:
        # The plan requires `element` on click; this tag sends `selector` instead.
        bad = track("click", "tagger-1", messageId="needs-fix",
                    properties={"selector": "#buy"})
        assert instance.post("/v1/track", bad).status_code == 400
        wait_until(lambda: instance.sql(
            "SELECT 1 FROM events_invalid WHERE message_id = 'needs-fix'"))

        nothing_yet = cli(instance, "replay-invalid")
        assert "moved to events_raw 0" in nothing_yet.stdout, nothing_yet.stdout

        schema_path = plan_dir / "events" / "click" / "1-0-0.json"
        schema = json.loads(schema_path.read_text())
        schema["required"] = []
        schema_path.write_text(json.dumps(schema))

        replayed = cli(instance, "replay-invalid")
        assert "moved to events_raw 1" in replayed.stdout, replayed.stdout + replayed.stderr
        rows = instance.sql("SELECT anonymous_id, JSONExtractString(properties, 'selector') AS s "
                            "FROM events_raw WHERE message_id = 'needs-fix'")
        assert rows == [{"anonymous_id": "tagger-1", "s": "#buy"}]
        again = cli(instance, "replay-invalid")
        assert "moved to events_raw 0" in again.stdout
        assert instance.sql("SELECT count() AS n FROM events_raw") == [{"n": 1}]
    finally:
        instance.stop()


def test_ctrl_c_drains_the_queue_and_exits_cleanly(tmp_path: Path) -> None:
    instance = Funnelhouse(tmp_path / "data", env={"FUNNELHOUSE_LOADER_BATCH_SECONDS": "5"}).start()
    batch = {"batch": [track("click", f"p{i}", messageId=f"drain-{i}") for i in range(200)]}
    assert instance.post("/v1/batch", batch).json()["accepted"] == 200
    assert instance.stop() == 0

    # Offline now: the data folder alone answers, and holds everything acknowledged.
    result = subprocess.run([sys.executable, "-m", "funnelhouse.cli", "sql", "--data-dir",
                             str(instance.data_dir), "--format", "csv",
                             "SELECT count(), uniqExact(message_id) FROM events_raw"],
                            env=instance.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "200,200"


def test_up_prints_what_a_first_hour_needs(tmp_path: Path) -> None:
    """Both write keys `up` made (the server one for imports and backdated events), the
    admin token once with where it is kept, the console URL and the demo command."""
    instance = Funnelhouse(tmp_path / "data",
                           env={"FUNNELHOUSE_INSTANCES_DIR": str(tmp_path / "instances")})
    for configured in ("FUNNELHOUSE_WRITE_KEYS", "FUNNELHOUSE_ADMIN_TOKEN"):
        instance.env.pop(configured)
    instance.start()
    try:
        wait_until(lambda: "Ctrl-C" in instance.log_path.read_text())
    finally:
        assert instance.stop() == 0
    said = instance.log_path.read_text()
    made = json.loads((instance.data_dir / "credentials.json").read_text())
    assert f"write key (web, browser):    {made['write_key']}" in said
    assert f"write key (server, server):  {made['server_key']}" in said
    assert made["admin_token"] in said and "credentials.json" in said
    assert f"{instance.url}/console/" in said
    assert f"funnelhouse demo --data-dir {instance.data_dir}" in said
    assert "HTTP Request" not in said and "Traceback" not in said
