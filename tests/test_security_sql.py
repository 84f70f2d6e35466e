"""User SQL cannot write or read files, see others' queries, reach the writer, or run unbounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import analyses as analyses_api
from funnelhouse.api import console as console_api
from funnelhouse.api import people as people_api
from funnelhouse.api.sql import sql_routes
from funnelhouse.collector.plan import TrackingPlan
from funnelhouse.config import Settings
from funnelhouse.people.segments import Segments
from funnelhouse.warehouse.sql_guard import SqlRefused, SqlRunner, guard
from tests.conftest import free_port, wait_until
from tests.people_support import Built, built_warehouse

AUTH = {"Authorization": "Bearer admintok"}
SECRET = "SECRET-admin-token-7f3a"
# A cross join nobody finishes: CPU-bound, no table function, no system table.
ENDLESS = ("SELECT count() FROM behavior_events AS a, behavior_events AS b, "
           "behavior_events AS c WHERE cityHash64(a.message_id, b.message_id, c.message_id) "
           "% 7 = 8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    with built_warehouse(tmp_path_factory.mktemp("security-sql") / "data") as b:
        # What finding 3 copied into segment_members: the instance's secrets.
        (b.settings.data_dir / "credentials.json").write_text(
            orjson.dumps({"write_key": SECRET + "-wk", "server_key": SECRET + "-sk",
                          "admin_token": SECRET}).decode())
        yield b


def make_app(built: Built, settings: Settings | None = None) -> Starlette:
    settings = settings or built.settings
    reader = built.warehouse.readonly()
    plan = TrackingPlan.load(settings.plan_dir)
    return Starlette(routes=[*sql_routes(settings, reader),
                             *console_api.routes(settings, reader, plan),
                             *people_api.routes(settings, built.warehouse),
                             *analyses_api.routes(settings, reader, writer=built.warehouse)])


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    with TestClient(make_app(built)) as client:
        yield client


def sql(api: TestClient, text: str, **extra: Any) -> Any:
    return api.post("/v1/sql", json={"sql": text, **extra}, headers=AUTH)


def refused(response: Any, reason: str = "sql_refused") -> None:
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == reason, response.text
    assert SECRET not in response.text


def count(built: Built, query: str) -> int:
    return int(built.warehouse.query(query).scalar())


# -- finding 1: files, KILL, other statements --------------------------------------------------

def outfile_payloads(target: Path) -> list[str]:
    t = str(target)
    code = 'import os; os.system("touch /tmp/pwned")'
    return [
        f"SELECT '{code}' INTO OUTFILE '{t}' TRUNCATE FORMAT RawBLOB",
        f"SELECT '{code}' INTO OUTFILE '{t}' APPEND FORMAT RawBLOB",
        f"SELECT 1 INTO OUTFILE '{t}'",
        f"SELECT 1 INTO OUTFILE '{t}' COMPRESSION 'gzip'",
        f"SELECT 1 INTO OUTFILE '{t}' AND STDOUT",
        f"select 1 into outfile '{t}' truncate format TSV -- and a comment",
        f"/* leading */ SELECT 1 UNION ALL SELECT 2 INTO OUTFILE '{t}' TRUNCATE",
        f"WITH x AS (SELECT 1) SELECT * FROM x INTO OUTFILE '{t}'",
        f"SELECT 1;\nSELECT 1 INTO OUTFILE '{t}' TRUNCATE",
        f"SELECT 1 -- \nINTO OUTFILE '{t}'",
        f"SELECT 1 INTO OUTFILE '{t}' FORMAT RawBLOB;",
    ]


def test_into_outfile_is_refused_and_no_file_is_written(api: TestClient, tmp_path: Path) -> None:
    target = tmp_path / "site-packages" / "evil.pth"
    target.parent.mkdir()
    for payload in outfile_payloads(target):
        refused(sql(api, payload))
        assert not target.exists(), payload
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize("statement", [
    "KILL QUERY WHERE 1", "KILL MUTATION WHERE 1", "KILL QUERY WHERE 1 SYNC",
    "SYSTEM FLUSH LOGS", "SYSTEM DROP MARK CACHE", "SET readonly = 0", "USE system",
    "INSERT INTO events_raw (message_id) VALUES ('x')", "ALTER TABLE events_raw DELETE WHERE 1",
    "DROP TABLE events_raw", "TRUNCATE TABLE events_raw", "OPTIMIZE TABLE events_raw FINAL",
    "CREATE TABLE evil (a UInt8) ENGINE = Memory", "RENAME TABLE events_raw TO x",
    "SHOW TABLES", "DESCRIBE TABLE events_raw", "EXPLAIN SELECT 1",
    "SELECT * FROM (EXPLAIN SELECT 1)", "SELECT 1; SELECT 2", "SELECT 1; DROP TABLE events_raw",
    "SELECT 1 -- x\n; KILL QUERY WHERE 1",
])
def test_only_one_select_may_run(api: TestClient, built: Built, statement: str) -> None:
    before = count(built, "SELECT count() FROM events_raw")
    response = sql(api, statement)
    assert response.status_code == 400, response.text
    assert response.json()["reason"] in ("sql_refused", "invalid_sql")
    assert count(built, "SELECT count() FROM events_raw") == before
    assert count(built, "SELECT count() FROM system.tables WHERE name IN ('evil', 'x') "
                        "AND database = currentDatabase()") == 0


@pytest.mark.parametrize("template", [
    "SELECT * FROM file('{p}', 'LineAsString')",
    "SELECT * FROM file('{p}')",
    "SELECT file('{p}')",
    "SELECT FILE('{p}')",
    "SELECT 1 WHERE 'x' IN file('{p}', 'LineAsString')",
    "SELECT (SELECT file('{p}')) AS x",
    "SELECT * FROM (SELECT * FROM file('{p}', 'RawBLOB'))",
    "WITH c AS (SELECT * FROM file('{p}', 'RawBLOB')) SELECT * FROM c",
    "SELECT * FROM url('http://127.0.0.1:9/{p}', 'RawBLOB')",
    "SELECT * FROM s3('http://127.0.0.1:9/x', 'RawBLOB')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM cluster('default', system.one)",
    "SELECT * FROM executable('cat {p}', 'RawBLOB', 'x String')",
    "SELECT * FROM input('x String')",
    "SELECT * FROM merge('system', '^mutations$')",
    "SELECT * FROM view(SELECT * FROM system.mutations)",
    "SELECT * FROM numbers(10)",
    "SELECT getServerSetting('path')",
    "SELECT aiGenerate('{p}')",
    "SELECT joinGet('system.x', 'y', 1)",
    "SELECT dictGet('d', 'a', 1)",
])
def test_files_and_network_are_unreachable(api: TestClient, built: Built, template: str) -> None:
    payload = template.format(p=built.settings.data_dir / "credentials.json")
    refused(sql(api, payload))


@pytest.mark.parametrize("payload", [
    "SELECT * FROM system.mutations", "SELECT command FROM system.mutations",
    "SELECT * FROM system.query_log", "SELECT * FROM system.processes",
    "SELECT * FROM system.settings", "SELECT * FROM system.parts",
    "SELECT count() FROM system.numbers WHERE number % 7 = 8",
    "SELECT * FROM system.numbers_mt LIMIT 1", "SELECT * FROM system.zeros LIMIT 1",
    "SELECT * FROM `system`.`mutations`", "SELECT * FROM `system.mutations`",
    "SELECT * FROM SYSTEM.mutations", "SELECT * FROM \"system\".\"mutations\"",
    "SELECT 1 WHERE 'x' IN system.mutations",
    "SELECT * FROM events_raw AS e JOIN system.mutations AS m ON 1",
    "SELECT * FROM (SELECT * FROM system.mutations)",
    "WITH m AS (SELECT command FROM system.mutations) SELECT * FROM m",
    "SELECT (SELECT any(command) FROM system.mutations)",
    "SELECT * FROM information_schema.processes", "SELECT * FROM INFORMATION_SCHEMA.PROCESSES",
    # funnelhouse's own bookkeeping: hashes of forgotten ids confirm a guess of who asked
    "SELECT * FROM forgotten_ids", "SELECT id_hash FROM default.forgotten_ids",
    "SELECT * FROM `forgotten_ids`", "SELECT * FROM FORGOTTEN_IDS",
    "SELECT * FROM forget_log", "SELECT 1 WHERE 'x' IN (SELECT id_hash FROM forgotten_ids)",
])
def test_system_tables_outside_the_allowlist_are_refused(api: TestClient, payload: str) -> None:
    refused(sql(api, payload))


@pytest.mark.parametrize("payload", [
    "SELECT 1 SETTINGS readonly = 0", "SELECT 1 SETTINGS max_execution_time = 0",
    "SELECT 1 -- \n SETTINGS readonly = 0",
    "SELECT * FROM (SELECT 1 SETTINGS max_result_rows = 0)",
    "SELECT 1 FORMAT JSON", "SELECT 1 FORMAT Native",
])
def test_settings_and_format_clauses_are_refused(api: TestClient, payload: str) -> None:
    refused(sql(api, payload))


def test_ordinary_analyst_queries_still_work(api: TestClient, built: Built) -> None:
    people = count(built, "SELECT uniqExact(person_id) FROM behavior_events")
    queries = {
        "SELECT uniqExact(person_id) AS n FROM behavior_events": people,
        "-- people\nWITH p AS (SELECT DISTINCT person_id FROM behavior_events)\n"
        "SELECT count() AS n FROM p /* done */;": people,
        "SELECT count() AS n FROM (SELECT person_id FROM behavior_events GROUP BY person_id)":
            people,
        "SELECT uniqExact(b.person_id) AS n FROM behavior_events AS b "
        "INNER JOIN users AS u ON u.person_id = b.person_id": people,
        "SELECT length(arrayDistinct(groupArray(person_id))) AS n FROM behavior_events": people,
        "SELECT count() AS n FROM (SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 2)": 1,
        "SELECT count() AS n FROM system.tables WHERE name = 'behavior_events' "
        "AND database = currentDatabase()": 1,
        "SELECT count() AS n FROM system.columns WHERE table = 'events_raw' "
        "AND name = 'message_id' AND database = currentDatabase()": 1,
    }
    for text, expected in queries.items():
        response = sql(api, text)
        assert response.status_code == 200, (text, response.text)
        assert response.json()["data"] == [{"n": expected}], text
    # Parameters travel as data, whatever they hold.
    tricky = "it's a \\ back'slash\t\"quote\" ')) OR 1 -- é"
    bound = sql(api, "SELECT {v:String} AS v", params={"v": tricky})
    assert bound.status_code == 200 and bound.json()["data"] == [{"v": tricky}]
    csv = sql(api, "SELECT 1 AS one", format="csv")
    assert csv.status_code == 200 and csv.text.splitlines() == ['"one"', "1"]


def test_bad_requests_are_4xx_with_a_reason(api: TestClient) -> None:
    for body in ({"sql": 5}, {"sql": ""}, {"sql": "SELECT 1", "format": "xml"},
                 {"sql": "SELECT {a:String}", "params": {"a": ["x"]}},
                 {"sql": "SELECT 1", "params": "a=1"}, {"sql": "SELEC 1"},
                 {"sql": "x" * 300_000}):
        response = api.post("/v1/sql", json=body, headers=AUTH)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["reason"] in ("bad_request", "invalid_sql", "query_failed")


# -- finding 4: limits and cancellation --------------------------------------------------------

def test_limits_stop_a_query_with_a_clear_400(built: Built) -> None:
    limited = built.settings.replace(sql_max_seconds=1, sql_max_result_rows=50,
                                     sql_max_memory_bytes=64 * 1024 * 1024)
    with TestClient(make_app(built, limited)) as client:
        started = time.monotonic()
        slow = sql(client, ENDLESS)
        assert time.monotonic() - started < 15
        refused(slow, "query_limit")
        assert "time limit" in slow.json()["error"]
        rows = sql(client, "SELECT message_id FROM behavior_events ORDER BY message_id")
        refused(rows, "query_limit")
        assert "result" in rows.json()["error"]
        memory = sql(client, "SELECT groupArray(concat(a.message_id, b.message_id)) "
                             "FROM behavior_events AS a, behavior_events AS b")
        refused(memory, "query_limit")
        # The next query on the same handles answers cleanly (chdb kept the stopped
        # query's partial output and put it in front of the next result).
        for _ in range(3):
            after = sql(client, "SELECT 42 AS n")
            assert after.status_code == 200 and after.json()["data"] == [{"n": 42}]


def test_limits_cannot_be_lifted_by_the_query(built: Built) -> None:
    runner = SqlRunner(built.warehouse.readonly(),
                       built.settings.replace(sql_max_seconds=1, sql_max_result_rows=5))
    for text in ("SELECT getSetting('max_execution_time') AS v",
                 "SELECT getSetting('max_result_rows') AS v"):
        got = orjson.loads(runner.run(guard(runner.control, text), "JSON"))["data"][0]["v"]
        assert int(got) in (1, 5)
    with pytest.raises(SqlRefused):
        guard(runner.control, "SELECT 1 SETTINGS max_execution_time = 100")
    runner.close()


def _running(built: Built) -> int:
    return count(built, "SELECT count() FROM system.processes WHERE query LIKE "
                        "'%funnelhouse-sql:%' AND query NOT LIKE '%system.processes%'")


def test_a_query_is_cancelled_when_its_client_goes_away(built: Built) -> None:
    settings = built.settings.replace(sql_max_seconds=300)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(built, settings), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    try:
        for _ in range(3):   # more clients than the pool has handles
            body = orjson.dumps({"sql": ENDLESS})
            conn = socket.create_connection(("127.0.0.1", port))
            conn.sendall(b"POST /v1/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admintok\r\n"
                         b"Content-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_until(lambda: _running(built) >= 1, timeout=20)
            conn.close()
            # Gone within a few polls, not after sql_max_seconds.
            wait_until(lambda: _running(built) == 0, timeout=10)
        import httpx

        started = time.monotonic()
        response = httpx.post(f"http://127.0.0.1:{port}/v1/sql", json={"sql": "SELECT 7 AS n"},
                              headers=AUTH, timeout=30)
        assert response.status_code == 200 and response.json()["data"] == [{"n": 7}]
        assert time.monotonic() - started < 5
    finally:
        server.should_exit = True
        thread.join(30)


# -- finding 3: segments from SQL ---------------------------------------------------------------

def _alias_payloads(cred: Path) -> list[str]:
    leak = f"(SELECT any(line) FROM file('{cred}', 'LineAsString'))"
    return [
        # Column names that close the quoting the old wrapper put around them.
        f"SELECT person_id AS `x``), {leak} AS `y` FROM behavior_events",
        f"SELECT person_id AS \"x`), {leak} AS `y\" FROM behavior_events",
        f"SELECT person_id AS `x\\`), {leak} --` FROM behavior_events",
        f"SELECT person_id AS `x`\n`), {leak} AS `y` FROM behavior_events",
        f"SELECT person_id AS `p`) AS person_id FROM (SELECT {leak} AS person_id) "
        f"UNION ALL SELECT toString(`` FROM behavior_events",
        "SELECT person_id AS `x`) AS person_id /*` FROM behavior_events",
    ]


def _leaked(built: Built) -> bool:
    return count(built, f"SELECT count() FROM segment_members "
                        f"WHERE position(person_id, '{SECRET}') > 0") > 0


def test_segment_sql_column_names_are_never_pasted_into_the_writer(api: TestClient,
                                                                  built: Built) -> None:
    cred = built.settings.data_dir / "credentials.json"
    everyone = {r[0] for r in built.warehouse.query(
        "SELECT DISTINCT person_id FROM behavior_events").rows}
    for n, payload in enumerate(_alias_payloads(cred)):
        for freeze in (False, True):
            response = api.post("/v1/segments/from-sql", headers=AUTH, json={
                "name": f"alias {n} {freeze}", "sql": payload, "freeze": freeze})
            assert response.status_code < 500, response.text
            assert SECRET not in response.text
            if response.status_code == 200:
                # The odd name is only a name: the members are the people, nothing else.
                sid = response.json()["segment"]["segment_id"]
                members = {r[0] for r in built.warehouse.query(
                    "SELECT person_id FROM segment_members WHERE segment_id = {s:String}",
                    {"s": sid}).rows}
                assert members == everyone, payload
            else:
                assert response.json()["reason"] in ("sql_refused", "invalid_sql")
    assert not _leaked(built)


@pytest.mark.parametrize("template", [
    "SELECT line AS person_id FROM file('{p}', 'LineAsString')",
    "SELECT file('{p}') AS person_id",
    "SELECT person_id FROM behavior_events UNION ALL SELECT file('{p}')",
    "SELECT person_id FROM behavior_events; INSERT INTO segment_members SELECT 'x', "
    "file('{p}'), 1, now64(3)",
    "SELECT person_id FROM behavior_events INTO OUTFILE '{p}.out'",
    "SELECT command AS person_id FROM system.mutations",
    "SELECT person_id FROM behavior_events SETTINGS readonly = 0",
])
def test_segment_sql_goes_through_the_guard(api: TestClient, built: Built, template: str) -> None:
    cred = built.settings.data_dir / "credentials.json"
    payload = template.format(p=cred)
    for path, body in (("/v1/segments/from-sql", {"name": "evil", "sql": payload}),
                       ("/v1/segments/from-sql", {"name": "evil", "sql": payload,
                                                  "freeze": True}),
                       ("/v1/segments", {"name": "evil", "sql": payload}),
                       ("/v1/segments/preview", {"sql": payload})):
        response = api.post(path, headers=AUTH, json=body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["reason"] in ("sql_refused", "invalid_sql"), response.text
        assert SECRET not in response.text
    assert not Path(f"{cred}.out").exists()
    assert not _leaked(built)


def test_a_stored_definition_from_before_the_guard_is_refused_at_materialisation(
        built: Built) -> None:
    cred = built.settings.data_dir / "credentials.json"
    definition = {"name": "old", "description": "", "kind": "sql", "params": {},
                  "sql": f"SELECT line AS person_id FROM file('{cred}', 'LineAsString')"}
    built.warehouse.execute(
        "INSERT INTO segments (segment_id, version, name, description, kind, definition, "
        "created_at, created_by, deleted) VALUES ('legacy-evil', 1, 'old', '', 'sql', "
        "{d:String}, now64(3), 'test', 0)", {"d": orjson.dumps(definition).decode()})
    store = Segments(built.warehouse, built.settings)
    try:
        done = {m.segment_id: m for m in store.materialise_all()}
    finally:
        store.close()
    assert done["legacy-evil"].members == -1   # failed, the others went on
    assert "file()" in done["legacy-evil"].sql.sql
    assert not _leaked(built)


def test_segment_sql_limits_apply(built: Built) -> None:
    settings = built.settings.replace(sql_max_seconds=1)
    with TestClient(make_app(built, settings)) as client:
        started = time.monotonic()
        response = client.post("/v1/segments/from-sql", headers=AUTH, json={
            "name": "slow", "sql": ENDLESS.replace("count()", "a.person_id AS person_id")})
        assert time.monotonic() - started < 20
        refused(response, "query_limit")


# -- segment filters and analysis filters: values are data --------------------------------------

INJECTIONS = ["x' OR '1'='1", "x') OR 1 --", "x')) OR 1 --", "x\\' OR 1=1 --", "x\\",
              "x`) OR 1 --", "x\" OR \"1\"=\"1", "' UNION SELECT file('/etc/passwd') --",
              "x'; DROP TABLE events_raw; --", "é' OR 1 --\u2028", "x\n) OR (1", "x\x00"]


def test_segment_filter_values_are_data(api: TestClient, built: Built) -> None:
    for value in INJECTIONS:
        for op in ("=", "!=", "contains", "starts_with", "in"):
            flt = {"column": "event", "op": op, "value": [value] if op == "in" else value}
            body = {"name": "probe", "containers": [{"groups": [{
                "table": "behavior_events", "filters": [flt]}]}]}
            response = api.post("/v1/segments/preview", headers=AUTH, json=body)
            assert response.status_code == 200, (value, op, response.text)
            assert response.json()["members"] == (count(built, (
                "SELECT uniqExact(person_id) FROM behavior_events")) if op == "!=" else 0)
    # Property keys and column names from the caller are checked, not pasted.
    for column in ("properties.x') OR 1 --", "event') OR 1 --", "traits.a`b", "event;",
                   "properties.", "x.y"):
        body = {"name": "probe", "containers": [{"groups": [{
            "table": "behavior_events", "filters": [{"column": column, "value": "1"}]}]}]}
        response = api.post("/v1/segments", headers=AUTH, json=body)
        assert response.status_code == 400 and response.json()["reason"] == "invalid_segment"
    assert count(built, "SELECT count() FROM events_raw") > 0


def test_segment_filter_injection_matches_nobody(built: Built) -> None:
    store = Segments(built.warehouse, built.settings)
    try:
        for value in INJECTIONS:
            segment = store.create({"name": "inj", "containers": [{"groups": [{
                "table": "behavior_events",
                "filters": [{"column": "event", "op": "=", "value": value},
                            {"column": "properties.path", "op": "contains", "value": value}]}]}]})
            assert store.materialise(segment.segment_id).members == 0, value
    finally:
        store.close()


def test_analysis_filters_and_breakdowns_are_data(api: TestClient, built: Built,
                                                  tmp_path: Path) -> None:
    target = tmp_path / "analysis.out"
    base = {"date_from": "2024-03-01", "date_to": "2024-03-14", "as_of": "2024-04-01T00:00:00Z"}
    for value in [*INJECTIONS, f"x' INTO OUTFILE '{target}' --"]:
        specs = [
            ("funnel", {**base, "steps": [{"event": "page_view",
                                           "filters": [{"prop": "path", "op": "=",
                                                        "value": value}]}, "purchase"]}),
            ("funnel", {**base, "steps": ["page_view", "purchase"], "breakdown": value}),
            ("funnel", {**base, "steps": ["page_view", "purchase"], "hold": value}),
            ("funnel", {**base, "steps": [value, "purchase"]}),
            ("retention", {**base, "period": "day", "periods": 3, "breakdown": value}),
            ("paths", {**base, "page": value}),
            ("paths", {**base, "page": "/", "conversion": {"event": value}}),
        ]
        for name, spec in specs:
            response = api.post(f"/v1/analyses/{name}", headers=AUTH, json=spec)
            assert response.status_code in (200, 400), (name, spec, response.text)
            if response.status_code == 400:
                assert response.json()["reason"] == "bad_spec"
        funnel = api.post("/v1/analyses/funnel", headers=AUTH, json=specs[0][1])
        if funnel.status_code == 200:
            assert funnel.json()["summary"]["entered"] == 0, value
    assert not target.exists()
    assert count(built, "SELECT count() FROM events_raw") > 0


def test_the_cli_goes_through_the_same_guard(built: Built, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from funnelhouse.cli.sql import cmd_sql

    target = tmp_path / "cli.out"

    class Args:
        data_dir = str(built.settings.data_dir)
        config = None
        format = "csv"
        query = f"SELECT 1 INTO OUTFILE '{target}'"

    # The module's warehouse holds the folder; the CLI's own handle shares the engine.
    assert cmd_sql(Args()) == 1  # type: ignore[arg-type]
    assert "OUTFILE" in capsys.readouterr().err
    assert not target.exists()
    Args.query = "SELECT 2 AS two"
    assert cmd_sql(Args()) == 0  # type: ignore[arg-type]
    assert capsys.readouterr().out.splitlines() == ['"two"', "2"]
