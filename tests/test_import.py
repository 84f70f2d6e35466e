"""`funnelhouse import`: files of events (offline store purchases as CSV with a mapping,
Segment-shaped history as JSON lines) through the same plan validation, dead letter and
dedup as HTTP events — through a running `up`, and in process into the queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from funnelhouse.imports.values import declared_type, typed
from funnelhouse.queue.eventlog import EventLog
from tests.conftest import ADMIN_TOKEN, SERVER_KEY, Funnelhouse, track, wait_until


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Funnelhouse]:
    instance = Funnelhouse(Path(tmp_path_factory.mktemp("import")) / "data").start()
    yield instance
    instance.stop()


def funnelhouse_import(*args: str, env: dict[str, str],
                       **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "funnelhouse.cli", "import", *args],
                          env={**env, **extra_env}, capture_output=True, text=True,
                          timeout=300)


def sql(live: Funnelhouse, query: str, **params: Any) -> list[dict[str, Any]]:
    response = httpx.post(f"{live.url}/v1/sql", json={"sql": query, "params": params},
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def orders_stored(live: Funnelhouse, prefix: str) -> list[dict[str, Any]]:
    return sql(live, "SELECT message_id, event, user_id, channel, source, schema_version, "
                     "flags, properties, toString(timestamp) AS ts FROM events_raw "
                     "WHERE startsWith(JSONExtractString(properties, 'order_id'), {p:String}) "
                     "ORDER BY ts, message_id", p=prefix)


def dead_letters(live: Funnelhouse, text: str) -> list[dict[str, Any]]:
    return sql(live, "SELECT reason, errors, payload FROM events_invalid "
                     "WHERE position(payload, {t:String}) > 0", t=text)


def loaded_so_far(live: Funnelhouse) -> None:
    """Everything queued before now has been loaded: the loader takes the queue in order,
    so once an event sent now is stored, every row queued earlier was handled."""
    marker = f"m-{uuid.uuid4()}"
    assert live.post("/v1/batch", {"batch": [track(messageId=marker)]}).status_code == 200
    wait_until(lambda: sql(live, "SELECT 1 FROM events_raw WHERE message_id = {m:String}",
                           m=marker), timeout=60)


STORE_MAP = ("userId=customer,event='purchase',timestamp=sold_at,properties.order_id=receipt,"
             "properties.revenue=total,properties.currency=currency,properties.store_id=store,"
             "properties.staff_id=staff,properties.items[0].product_id=sku,"
             "properties.items[0].quantity=qty,properties.items[0].price=price,"
             "properties.member=member,context.channel='offline'")
STORE_HEADER = "receipt,customer,store,staff,sold_at,total,currency,sku,qty,price,member"


def store_csv(path: Path, prefix: str, rows: list[str]) -> Path:
    path.write_text(STORE_HEADER + "\n" + "".join(f"{prefix}{row}\n" for row in rows))
    return path


# ------------------------------------------------------------------ CSV with a mapping

def test_offline_store_purchases_from_csv_land_typed_with_their_own_times(
        live: Funnelhouse, tmp_path: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    path = store_csv(tmp_path / "pos.csv", prefix, [
        "1001,c-1,seoul-1,007,2024-03-01 10:15:00,25000.50,KRW,12345,2,12500.25,true",
        "1002,c-2,seoul-2,011,2024-03-01 18:40:05,9900,KRW,sku-9,1,9900,false",
    ])
    done = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), "--map", STORE_MAP,
                              "--timezone", "Asia/Seoul", env=live.env)
    assert done.returncode == 0, done.stderr
    assert f"→ {live.url}" in done.stdout     # through the running up's collector
    assert "rows 2: accepted 2, duplicates 0, refused 0" in done.stdout

    rows = wait_until(lambda: len(found := orders_stored(live, prefix)) == 2 and found,
                      timeout=60)
    first, second = rows
    # Seoul wall-clock times, stored in UTC; a server key keeps historical times.
    assert (first["ts"], second["ts"]) == ("2024-03-01 01:15:00.000", "2024-03-01 09:40:05.000")
    assert (first["event"], first["user_id"], first["channel"], first["source"]) \
        == ("purchase", "c-1", "offline", "backend")
    assert first["schema_version"] == "purchase/1-0-0"
    properties = orjson.loads(first["properties"])
    # Typed by the plan: ids declared as strings stay strings ("1001", "007", "12345").
    assert properties == {
        "order_id": f"{prefix}1001", "revenue": 25000.5, "currency": "KRW",
        "store_id": "seoul-1", "staff_id": "007", "member": True,
        "items": [{"product_id": "12345", "quantity": 2, "price": 12500.25}]}
    # `member` is not in the plan: typed by the generic rule, and flagged as usual.
    assert list(first["flags"]) == ["extra_properties"]
    assert orjson.loads(second["properties"])["member"] is False


def test_a_refused_row_is_reported_by_its_line_and_dead_lettered(
        live: Funnelhouse, tmp_path: Path) -> None:
    prefix = f"r{uuid.uuid4().hex[:6]}-"
    path = store_csv(tmp_path / "pos.csv", prefix, [
        "1,c-1,seoul-1,007,2024-03-01 10:15:00,100,KRW,sku-1,1,100,true",
        "2,c-2,seoul-1,007,2024-03-01 10:16:00,\"12,000\",KRW,sku-1,1,100,true",
        "3,c-3,seoul-1,007,2024-03-01,100,KRW,sku-1,1,100,true",
        "4,c-4,seoul-1",
    ])
    done = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), "--map", STORE_MAP,
                              env=live.env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "rows 4: accepted 1, duplicates 0, refused 3" in done.stdout
    lines = done.stdout.splitlines()
    assert "line 3: schema_violation: $.properties.revenue '12,000' is not of type 'number'" \
        in lines
    assert any(line.startswith("line 4: envelope_violation: $.timestamp") for line in lines)
    assert any(line.startswith("line 5: not_an_object:") and "3 cells, the header has 11"
               in line for line in lines)

    # Each refused row is in the dead letter with what it said.
    [revenue] = wait_until(lambda: dead_letters(live, f'"{prefix}2"'), timeout=60)
    assert revenue["reason"] == "schema_violation"
    assert orjson.loads(revenue["payload"])["properties"]["revenue"] == "12,000"
    [ragged] = wait_until(lambda: dead_letters(live, f"{prefix}4,c-4"), timeout=60)
    assert ragged["reason"] == "not_an_object"
    assert [r["event"] for r in orders_stored(live, prefix)] == ["purchase"]

    allowed = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), "--map",
                                 STORE_MAP, "--allow-refused", env=live.env)
    assert allowed.returncode == 0
    assert "rows 4: accepted 0, duplicates 1, refused 3" in allowed.stdout


# ------------------------------------------------------------------ idempotent re-runs

def test_importing_the_same_file_again_stores_nothing_twice(live: Funnelhouse,
                                                            tmp_path: Path) -> None:
    prefix = f"d{uuid.uuid4().hex[:6]}-"
    rows = ["1,c-1,seoul-1,007,2024-03-01 10:15:00,100,KRW,sku-1,1,100,true",
            "2,c-2,seoul-1,007,2024-03-01 11:00:00,200,KRW,sku-2,1,200,true",
            # twice the same line: two identical sales, two events
            "3,c-3,seoul-1,007,2024-03-01 12:00:00,300,KRW,sku-3,1,300,true",
            "3,c-3,seoul-1,007,2024-03-01 12:00:00,300,KRW,sku-3,1,300,true"]
    path = store_csv(tmp_path / "pos.csv", prefix, rows)
    args = (str(path), "--data-dir", str(live.data_dir), "--map", STORE_MAP)
    first = funnelhouse_import(*args, env=live.env)
    again = funnelhouse_import(*args, env=live.env)
    assert "accepted 4, duplicates 0" in first.stdout, first.stdout + first.stderr
    assert "accepted 0, duplicates 4" in again.stdout, again.stdout + again.stderr

    # Next month's export: columns in another order, newest first, one new sale.
    columns = STORE_HEADER.split(",")
    order = list(reversed(columns))
    cells = [dict(zip(columns, f"{prefix}{row}".split(","), strict=True)) for row in rows]
    cells.append(dict(zip(columns, f"{prefix}5,c-5,seoul-2,011,2024-04-01 09:00:00,500,KRW,"
                                   "sku-5,1,500,false".split(","), strict=True)))
    export = tmp_path / "pos-april.csv"
    export.write_text(",".join(order) + "\n" + "".join(
        ",".join(row[c] for c in order) + "\n" for row in reversed(cells)))
    later = funnelhouse_import(str(export), "--data-dir", str(live.data_dir), "--map",
                               STORE_MAP, env=live.env)
    assert "rows 5: accepted 1, duplicates 4" in later.stdout, later.stdout + later.stderr

    # Past the collector's dedup window (here: none at all, in process) the rows are
    # accepted again, and the loader drops every message id already stored.
    past_window = funnelhouse_import(*args, "--in-process", env=live.env,
                                     FUNNELHOUSE_DEDUP_WINDOW_SECONDS="0")
    assert "accepted 4, duplicates 0" in past_window.stdout, past_window.stderr
    assert f"→ {live.data_dir / 'queue.sqlite3'}" in past_window.stdout
    loaded_so_far(live)
    stored = orders_stored(live, prefix)
    by_order: dict[str, int] = {}
    for row in stored:
        order_id = orjson.loads(row["properties"])["order_id"]
        by_order[order_id] = by_order.get(order_id, 0) + 1
    assert by_order == {f"{prefix}1": 1, f"{prefix}2": 1, f"{prefix}3": 2, f"{prefix}5": 1}
    assert len({row["message_id"] for row in stored}) == 5


# ------------------------------------------------------------------ JSON lines

def test_segment_shaped_history_in_json_lines_needs_no_mapping(live: Funnelhouse,
                                                               tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    user = f"hist-{run}"
    lines = [
        {"type": "identify", "userId": user, "anonymousId": f"a-{run}",
         "traits": {"email": f"{run}@example.com", "plan": "gold"},
         "timestamp": "2023-06-01T08:00:00.000Z", "messageId": f"id-{run}"},
        {"type": "page", "anonymousId": f"a-{run}", "userId": user,
         "properties": {"url": "https://shop.example/sale?utm_source=news&utm_medium=email"
                               "&utm_campaign=june", "path": "/sale", "title": "Sale"},
         "timestamp": "2023-06-01T08:01:00.000Z"},
        None,   # a blank line
        {"type": "track", "event": "Order Completed", "userId": user,
         "timestamp": "2023-06-01T08:05:00.000Z",
         "properties": {"order_id": f"h-{run}", "revenue": 59.9, "currency": "EUR",
                        "products": [{"product_id": "sku-1", "price": 59.9, "quantity": 1}]}},
        "not json {",
        {"type": "track", "event": "purchase", "userId": user,
         "timestamp": "2023-06-02T08:05:00.000Z",
         "properties": {"order_id": f"h2-{run}", "revenue": -1, "currency": "EUR",
                        "items": [{"product_id": "sku-1", "price": 1, "quantity": 1}]}},
    ]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(("" if line is None else line if isinstance(line, str)
                             else orjson.dumps(line).decode()) + "\n" for line in lines))
    done = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), env=live.env)
    assert done.returncode == 1
    assert "rows 5: accepted 3, duplicates 0, refused 2" in done.stdout, done.stdout
    assert any(line.startswith("line 5: not_an_object") and "not JSON" in line
               for line in done.stdout.splitlines())
    assert any(line.startswith("line 6: schema_violation: $.properties.revenue")
               for line in done.stdout.splitlines())

    stored = wait_until(lambda: len(found := sql(
        live, "SELECT event, message_id, toString(timestamp) AS ts, traffic_medium, "
              "utm_campaign, properties, traits FROM events_raw WHERE user_id = {u:String} "
              "ORDER BY timestamp", u=user)) == 3 and found, timeout=60)
    assert [(r["event"], r["ts"]) for r in stored] == [
        ("identify", "2023-06-01 08:00:00.000"), ("page_view", "2023-06-01 08:01:00.000"),
        ("purchase", "2023-06-01 08:05:00.000")]
    assert stored[0]["message_id"] == f"id-{run}"      # the file's own id is kept
    assert stored[1]["message_id"].startswith("imp-")  # else one from the row
    assert (stored[1]["traffic_medium"], stored[1]["utm_campaign"]) == ("email", "june")
    assert orjson.loads(stored[2]["properties"])["items"][0]["product_id"] == "sku-1"
    assert orjson.loads(stored[0]["traits"])["plan"] == "gold"

    again = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), env=live.env)
    assert "rows 5: accepted 0, duplicates 3, refused 2" in again.stdout


def test_json_lines_with_a_mapping_from_a_crm_export(live: Funnelhouse,
                                                     tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    path = tmp_path / "crm.ndjson"
    path.write_text(orjson.dumps({"contact": {"id": f"crm-{run}", "plan": "pro"},
                                  "created": "2024-01-05 12:00:00"}).decode() + "\n")
    done = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), "--type",
                              "identify", "--map", "userId=contact.id,timestamp=created,"
                              "traits.plan=contact.plan,traits.source='crm'", env=live.env)
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = wait_until(lambda: sql(live, "SELECT event, traits, toString(timestamp) AS ts "
                                         "FROM events_raw WHERE user_id = {u:String}",
                                   u=f"crm-{run}"), timeout=60)
    assert (row["event"], row["ts"]) == ("identify", "2024-01-05 12:00:00.000")
    assert orjson.loads(row["traits"]) == {"plan": "pro", "source": "crm"}


# ------------------------------------------------------------------ dry run

def test_dry_run_validates_every_row_and_stores_nothing(live: Funnelhouse,
                                                        tmp_path: Path) -> None:
    prefix = f"y{uuid.uuid4().hex[:6]}-"
    path = store_csv(tmp_path / "pos.csv", prefix, [
        "1,c-1,seoul-1,007,2024-03-01 10:15:00,100,KRW,sku-1,1,100,true",
        "2,c-2,seoul-1,007,2024-03-01 10:16:00,-5,KRW,sku-1,1,100,true",
    ])
    done = funnelhouse_import(str(path), "--data-dir", str(live.data_dir), "--map", STORE_MAP,
                              "--dry-run", env=live.env)
    assert done.returncode == 1
    assert "rows 2: would accept 1, duplicates 0, would refuse 1" in done.stdout
    assert any(line.startswith("line 3: schema_violation: $.properties.revenue")
               for line in done.stdout.splitlines())
    loaded_so_far(live)
    assert orders_stored(live, prefix) == []
    assert dead_letters(live, prefix) == []


# ------------------------------------------------------------------ in process, no up

def test_without_a_running_instance_rows_are_queued_in_process_and_loaded_by_up(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    prefix = f"q{uuid.uuid4().hex[:6]}-"
    path = store_csv(tmp_path / "pos.csv", prefix, [
        "1,c-1,seoul-1,007,2024-03-01 10:15:00,100,KRW,sku-1,1,100,true",
        "2,c-2,seoul-1,007,2024-03-01 10:16:00,oops,KRW,sku-1,1,100,true",
    ])
    up = Funnelhouse(data)   # not started yet: its env (keys) is the one the import uses
    done = funnelhouse_import(str(path), "--data-dir", str(data), "--map", STORE_MAP,
                              env=up.env)
    assert done.returncode == 1, done.stderr
    assert f"→ {data / 'queue.sqlite3'}" in done.stdout
    assert "rows 2: accepted 1, duplicates 0, refused 1" in done.stdout
    log = EventLog(data / "queue.sqlite3")
    try:
        streams = sorted(record.stream for _, record in log.read(0, 100))
    finally:
        log.close()
    assert streams == ["events", "invalid"]

    up.start()
    try:
        [row] = wait_until(lambda: orders_stored(up, prefix), timeout=60)
        assert row["source"] == "backend"
        wait_until(lambda: dead_letters(up, f'"{prefix}2"'), timeout=60)
    finally:
        up.stop()


def test_mapping_mistakes_are_said_before_anything_is_sent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = store_csv(tmp_path / "pos.csv", "x-", [
        "1,c-1,seoul-1,007,2024-03-01 10:15:00,100,KRW,sku-1,1,100,true"])
    env = {**os.environ, "FUNNELHOUSE_WRITE_KEYS": f"{SERVER_KEY}:backend:server"}
    typo = funnelhouse_import(str(path), "--data-dir", str(data), "--map",
                              "userId=custmer,event=purchase", env=env)
    assert typo.returncode == 2
    assert "'custmer' (for userId)" in typo.stderr and "'purchase' (for event)" in typo.stderr
    assert "quote a constant" in typo.stderr
    unmapped = funnelhouse_import(str(path), "--data-dir", str(data), env=env)
    assert unmapped.returncode == 2
    assert "columns that name no message field: 'receipt'" in unmapped.stderr
    bad_target = funnelhouse_import(str(path), "--data-dir", str(data), "--map",
                                    "revenue=total", env=env)
    assert bad_target.returncode == 2 and "target 'revenue'" in bad_target.stderr
    twice = funnelhouse_import(str(path), "--data-dir", str(data), "--map",
                               "properties.items=sku,properties.items[0].price=price", env=env)
    assert twice.returncode == 2 and "properties.items is mapped and" in twice.stderr
    assert not data.exists()


# ------------------------------------------------------------------ the typing rule

@pytest.mark.parametrize(("text", "declared", "value"), [
    ("1001", "string", "1001"), ("007", None, "007"), ("42", None, 42), ("-7", None, -7),
    ("3.25", None, 3.25), ("TRUE", None, True), ("no", None, "no"), ("1e3", None, "1e3"),
    ("12", "number", 12), ("12.5", "number", 12.5), ("1e3", "number", 1000.0),
    ("12,000", "number", "12,000"), ("3", "integer", 3), ("3.0", "integer", "3.0"),
    ("yes", "boolean", True), ("0", "boolean", False), ("maybe", "boolean", "maybe"),
    ("[1, 2]", "array", [1, 2]), ("[1,", "array", "[1,"),
])
def test_csv_cells_are_typed_by_the_plan_then_by_one_generic_rule(
        text: str, declared: str | None, value: Any) -> None:
    assert typed(text, declared) == value
    assert type(typed(text, declared)) is type(value)


def test_declared_types_follow_the_plans_references() -> None:
    from funnelhouse.collector.plan import TrackingPlan
    from funnelhouse.config import PACKAGE_ROOT

    purchase = TrackingPlan.load(PACKAGE_ROOT / "schemas").schema("purchase")
    assert declared_type(purchase, purchase, ["revenue"]) == "number"
    assert declared_type(purchase, purchase, ["order_id"]) == "string"
    assert declared_type(purchase, purchase, ["items", 0, "quantity"]) == "integer"
    assert declared_type(purchase, purchase, ["items", 0, "nope"]) is None
    assert declared_type(purchase, purchase, ["member"]) is None
