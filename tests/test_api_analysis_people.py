"""POST /v1/analyses/{name}/people (the people behind one figure, for the console) and the
not_built answer an analysis gives before the models have built its tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from funnelhouse.api import analyses as analyses_api
from funnelhouse.config import Settings
from funnelhouse.demo.generator import generate
from funnelhouse.models.run import run_models
from funnelhouse.warehouse.base import WarehouseError
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.support.sample import load_rows

TOKEN = "people-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FUNNEL = {"steps": ["page_view", "product_view", "purchase"], "window": "2d",
          "date_from": "2024-03-01", "date_to": "2024-03-07", "as_of": "2024-04-01T00:00:00Z"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("people"), admin_token=TOKEN,
                        reporting_tz="UTC")
    warehouse = ChdbWarehouse(settings.warehouse_dir)
    try:
        load_rows(warehouse, settings,
                  generate(seed=3, people=80, days=7, start_date=date(2024, 3, 1)).rows)
        # Every model, users included (the people list shows each person's profile from it).
        run_models(warehouse, settings, full_refresh=True)
        with TestClient(Starlette(routes=analyses_api.routes(settings, warehouse))) as test:
            yield test
    finally:
        warehouse.close()


def test_people_behind_funnel_steps_match_the_funnel(client: TestClient) -> None:
    steps = client.post("/v1/analyses/funnel", json=FUNNEL, headers=AUTH).json()[
        "data"]["groups"][0]["steps"]
    for who, expected in (("reached:2", steps[1]["people"]), ("dropped:3", steps[2]["dropped"]),
                          ("converted", steps[2]["people"])):
        answer = client.post("/v1/analyses/funnel/people", headers=AUTH,
                             json={"spec": FUNNEL, "who": who, "limit": 5})
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert doc["count"] == expected, who
        assert len(doc["people"]) == min(5, expected)
        # Each listed person comes with their profile from the users table.
        assert all(p["person_id"] and p["first_seen_at"] for p in doc["people"])
    assert steps[2]["dropped"] > 0


def test_people_csv_has_every_id(client: TestClient) -> None:
    body: dict[str, Any] = {"spec": FUNNEL, "who": "reached:2"}
    count = client.post("/v1/analyses/funnel/people", headers=AUTH, json=body).json()["count"]
    answer = client.post("/v1/analyses/funnel/people", headers=AUTH,
                         json={**body, "format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["person_id"] and len(rows) - 1 == count > 0
    assert len({r[0] for r in rows[1:]}) == count


def test_people_needs_a_known_analysis_and_who(client: TestClient) -> None:
    bad = client.post("/v1/analyses/funnel/people", headers=AUTH,
                      json={"spec": FUNNEL, "who": "nobody"})
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_spec"
    missing = client.post("/v1/analyses/funnel/people", headers=AUTH, json={"spec": FUNNEL})
    assert missing.status_code == 400
    assert client.post("/v1/analyses/funnel/people", json={"spec": FUNNEL,
                                                           "who": "converted"}).status_code == 401


class MissingTable:
    """A warehouse whose every query fails as ClickHouse does when a table does not exist."""

    def __init__(self, table: str) -> None:
        self.table = table

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise WarehouseError(
                f"Code: 60. DB::Exception: Unknown table expression identifier '{self.table}'. "
                f"In scope SELECT count() FROM {self.table}. (UNKNOWN_TABLE)")
        return fail


def _answer(tmp_path: Any, table: str) -> Any:
    settings = Settings(data_dir=tmp_path, admin_token=TOKEN)
    app = Starlette(routes=analyses_api.routes(settings, MissingTable(table)))  # type: ignore[arg-type]
    with TestClient(app) as test:
        return test.post("/v1/analyses/retention", json={}, headers=AUTH)


def test_a_missing_model_table_is_not_built_not_an_engine_error(tmp_path: Any) -> None:
    answer = _answer(tmp_path, "behavior_events")
    assert answer.status_code == 503
    doc = answer.json()
    assert doc["reason"] == "not_built" and doc["table"] == "behavior_events"
    assert "DB::Exception" not in doc["error"] and "models run" in doc["error"]


def test_another_missing_table_is_still_a_failed_query(tmp_path: Any) -> None:
    answer = _answer(tmp_path, "my_own_table")
    assert answer.status_code == 400 and answer.json()["reason"] == "query_failed"
