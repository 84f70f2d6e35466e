"""Fixtures that run a test on both warehouse backends: chdb, and a ClickHouse server."""

# The server backend talks to FUNNELHOUSE_CLICKHOUSE_URL when it is set (a real
# server, e.g. docker-compose), else to the chdb-backed HTTP test fixture started
# once per session (tests/clickhouse_http_fixture.py). Every server warehouse gets a
# database of its own, dropped when its module ends, so runs stay independent.

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from funnelhouse.warehouse.base import Warehouse
from funnelhouse.warehouse.chdb import ChdbWarehouse
from tests.clickhouse_http_fixture import start_fixture

BACKENDS = ["chdb", pytest.param("server", marks=pytest.mark.server)]

# Opens a warehouse on the backend under test; a chdb one lives in the folder given.
WarehouseMaker = Callable[[Path], Warehouse]


@pytest.fixture(scope="session")
def clickhouse_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ClickHouse HTTP interface: the real server named by the environment, else the fixture."""
    real = os.environ.get("FUNNELHOUSE_CLICKHOUSE_URL")
    if real:
        yield real.rstrip("/")
        return
    # A folder no other test opens: chdb locks its data folder to one process.
    with start_fixture(tmp_path_factory.mktemp("clickhouse-http") / "chdb") as url:
        yield url


class ServerDatabases:
    """Fresh databases on one server, one per warehouse opened, all dropped by close()."""

    def __init__(self, base_url: str) -> None:
        from funnelhouse.warehouse.server import ServerWarehouse

        self.base = urlparse(base_url)
        self.admin = ServerWarehouse(base_url)
        self.names: list[str] = []
        self.opened: list[Warehouse] = []

    def open(self, _path: Path | None = None) -> Warehouse:
        from funnelhouse.warehouse.server import ServerWarehouse

        name = f"fh_test_{uuid.uuid4().hex[:12]}"
        self.admin.execute(f"CREATE DATABASE {name}")
        self.names.append(name)
        warehouse = ServerWarehouse(urlunparse(self.base._replace(path=f"/{name}")))
        self.opened.append(warehouse)
        return warehouse

    def close(self) -> None:
        for warehouse in self.opened:
            warehouse.close()
        for name in self.names:
            self.admin.execute(f"DROP DATABASE IF EXISTS {name} SYNC")
        self.admin.close()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend the module's tests run on ("chdb" | "server"), one module run each."""
    return request.param


@pytest.fixture(scope="module")
def make_warehouse(backend: str, request: pytest.FixtureRequest) -> Iterator[WarehouseMaker]:
    if backend == "chdb":
        yield ChdbWarehouse
        return
    databases = ServerDatabases(request.getfixturevalue("clickhouse_url"))
    yield databases.open
    databases.close()
