"""Forget through a running pipeline: queue file, debug ring and late events keep no trace."""

from __future__ import annotations

from pathlib import Path

import orjson
from starlette.testclient import TestClient

from funnelhouse.collector.sinks.base import Record
from funnelhouse.people.forget import TOMBSTONE, ForgottenSet, hash_id, queue_scrubber
from funnelhouse.queue.eventlog import EventLog
from funnelhouse.server.up import build_pipeline
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.conftest import (
    ADMIN_TOKEN,
    SERVER_KEY,
    every_handle_closed,
    make_settings,
    track,
    wait_until,
)
from tests.people_support import files_holding

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_queued_records_of_a_forgotten_person_leave_the_log_file_and_its_wal(
        tmp_path: Path) -> None:
    log = EventLog(tmp_path / "queue.sqlite3")
    ids = {"victim-anon-1", "victim-user-1"}

    def row(n: int, anon: str, user: str = "") -> Record:
        return Record("events", f"k{n}", orjson.dumps(
            {"message_id": f"m{n}", "anonymous_id": anon, "user_id": user, "event": "x"}))

    # Loaded and deleted records leave freed pages; pending ones are still queued.
    log.append([row(n, "victim-anon-1" if n % 3 == 0 else f"other-{n}") for n in range(300)])
    log.delete_through(150)
    log.append([row(300, "other-300", "victim-user-1"), row(301, "other-301"),
                Record("invalid", "k302", orjson.dumps({"message_id": "m302", "payload":
                       orjson.dumps({"userId": "victim-user-1"}).decode()})),
                # A variant: the id inside someone else's longer id is not theirs.
                row(303, "victim-anon-10")])
    assert files_holding(tmp_path, ids)

    changed = queue_scrubber(log)(ids)

    assert changed == 150 // 3 + 2
    assert files_holding(tmp_path, ids) == {}
    records = log.read(0, 10_000)
    assert len(records) == 154                       # seqs kept: batch tokens stay valid
    values = [r.value for _, r in records]
    assert values.count(TOMBSTONE) == changed
    assert any(b"victim-anon-10" in v for v in values)
    # The loader drops the tombstones and any late row of theirs.
    hashes = frozenset(hash_id(i) for i in ids)
    kept, dropped = ForgottenSet(None).keep([b"\n".join(values)], hashes)  # type: ignore[arg-type]
    assert dropped == changed and kept and TOMBSTONE not in kept[0]
    log.close()


def test_forget_over_http_clears_queue_debug_ring_and_suppresses_late_events(
        tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    anon, user, other = "fg-anon-7", "fg-user-7", "fg-anon-8"
    ids = {anon, user}
    with every_handle_closed():
        pipeline = build_pipeline(settings)
        wh = pipeline.warehouse
        with TestClient(pipeline.app) as client:
            sent = client.post("/v1/batch", auth=(SERVER_KEY, ""), json={"batch": [
                track("click", anon), track("click", anon, userId=user),
                {"type": "identify", "anonymousId": anon, "userId": user,
                 "traits": {"plan": "gold"}, "messageId": "fg-identify"},
                track("click", other)]})
            assert sent.status_code == 200 and sent.json()["accepted"] == 4
            wait_until(lambda: wh.query("SELECT count() FROM events_raw").scalar() == 4,
                       timeout=60)
            ran = client.post("/v1/admin/models/run", json={"full_refresh": True},
                              headers=ADMIN)
            assert ran.status_code == 200
            assert client.get("/v1/debug/events", params={"person": user},
                              headers=ADMIN).json()["events"]

            done = client.post("/v1/forget", json={"user_id": user, "reason": "test"},
                               headers=ADMIN)

            assert done.status_code == 200, done.text
            body = done.json()
            assert body["ids_found"] == 2 and body["rows_deleted"]["events_raw"] == 3
            assert body["scrubbed"]["debug_ring"] == 3
            for person in ids:
                assert client.get("/v1/debug/events", params={"person": person},
                                  headers=ADMIN).json()["events"] == []
            assert files_holding(settings.data_dir, ids) == {}
            assert wh.query("SELECT count() FROM events_raw WHERE anonymous_id = "
                            "{a:String}", {"a": other}).scalar() == 1

            # Late events of theirs (a device still sending) are not loaded, whichever
            # id they carry; someone else's event in the same batch is.
            late = client.post("/v1/batch", auth=(SERVER_KEY, ""), json={"batch": [
                track("click", anon), track("click", "fresh-anon", userId=user),
                {"type": "alias", "previousId": anon, "userId": "new-user-7",
                 "messageId": "fg-alias"},
                track("click", other)]})
            assert late.json()["accepted"] == 4
            wait_until(lambda: wh.query("SELECT count() FROM events_raw WHERE anonymous_id = "
                                        "{a:String}", {"a": other}).scalar() == 2, timeout=60)
            wait_until(lambda: pipeline.source.status()["lag"] == 0, timeout=60)
            assert client.post("/v1/admin/models/run", json={"full_refresh": True},
                               headers=ADMIN).status_code == 200
            assert rows_of(wh, ids) == {}


def rows_of(wh: ChdbWarehouse, ids: set[str]) -> dict[str, int]:
    """Rows carrying any of `ids` in any id column, id array or payload, per table."""
    tables: dict[str, list[str]] = {}
    for table, column in wh.query(
            "SELECT table, name FROM system.columns WHERE database = currentDatabase()").rows:
        tables.setdefault(table, []).append(column)
    params = {"ids": orjson.dumps(sorted(ids)).decode()}
    wanted = "JSONExtract({ids:String}, 'Array(String)')"
    found = {}
    for table, columns in tables.items():
        conditions = [f"has({wanted}, toString({c}))" for c in
                      ("person_id", "user_id", "anonymous_id", "previous_id", "id")
                      if c in columns]
        conditions += [f"hasAny({wanted}, {c})" for c in ("user_ids", "anonymous_ids")
                       if c in columns]
        if "payload" in columns:
            conditions.append(f"multiSearchAny(payload, {wanted})")
        if conditions:
            n = wh.query(f"SELECT count() FROM `{table}` WHERE " + " OR ".join(conditions),
                         params).scalar()
            if n:
                found[table] = n
    return found
