"""The shipped package: one import root, data inside it, and a plain install that runs.

`pip install .` (not editable) into a fresh venv, run from another folder: `funnelhouse up`
takes events, serves the console and builds the models. The fresh venv borrows the
dependencies of the test venv through a path entry (no downloads, no editable finder:
a path in a .pth is not itself a site dir, so the editable install's hooks stay out).
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from funnelhouse.config import REPO_ROOT
from tests.conftest import free_port, track, wait_until


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO_ROOT / "funnelhouse" / "console_dist" / "index.html").exists():
        pytest.fail("the console is not built: npm --prefix console run build (scripts/setup)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(REPO_ROOT)], check=True, timeout=300)
    [built] = out.glob("funnelhouse-*.whl")
    return built


def test_the_distribution_adds_exactly_one_top_level_import_name(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"funnelhouse"}
    top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    if top_level:
        text = zipfile.ZipFile(wheel).read(top_level[0]).decode().split()
        assert text == ["funnelhouse"]


def test_schemas_sql_and_console_ship_inside_the_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "funnelhouse/console_dist/index.html" in names
    assert "funnelhouse/console_dist/app.js" in names
    assert any(n.startswith("funnelhouse/sql/migrations/") and n.endswith(".sql") for n in names)
    assert any(n.startswith("funnelhouse/sql/models/") and n.endswith(".sql") for n in names)
    assert any(n.startswith("funnelhouse/schemas/events/") and n.endswith(".json")
               for n in names)
    # Test oracles and their helpers stay out of the product.
    assert not [n for n in names if "reference" in n or n.startswith("tests/")]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True
                             ).stdout.strip()
    # Dependencies from the test venv, as a plain path (its .pth files are not processed).
    Path(purelib, "deps-from-test-venv.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    return venv


def test_an_installed_package_imports_from_site_packages(installed: Path,
                                                          tmp_path: Path) -> None:
    out = subprocess.run([str(installed / "bin" / "python"), "-c",
                          "import funnelhouse, funnelhouse.config as c; "
                          "print(funnelhouse.__file__); print(c.PACKAGE_ROOT)"],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert str(installed) in out and str(REPO_ROOT / "funnelhouse") not in out


@pytest.fixture
def up_from_install(installed: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    data = tmp_path / "empty" / "data"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNNELHOUSE_")}
    log = (tmp_path / "up.log").open("wb")
    process = subprocess.Popen(
        [str(installed / "bin" / "funnelhouse"), "up", "--data-dir", str(data), "--port",
         str(port)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), timeout=90)
        yield url, data
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_pip_install_then_up_from_an_empty_folder_serves_everything(
        up_from_install: tuple[str, Path]) -> None:
    url, data = up_from_install
    credentials = orjson.loads((data / "credentials.json").read_bytes())
    token = credentials["admin_token"]
    key = credentials["server_key"]
    admin = {"Authorization": f"Bearer {token}"}

    events = [track("click", f"pkg-{i % 5}", messageId=f"pkg-{i}") for i in range(40)]
    sent = httpx.post(f"{url}/v1/batch", json={"batch": events}, auth=(key, ""), timeout=30)
    assert sent.status_code == 200 and sent.json()["accepted"] == 40, sent.text

    def sql(query: str) -> list[dict]:  # type: ignore[type-arg]
        answer = httpx.post(f"{url}/v1/sql", json={"sql": query}, headers=admin, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]  # type: ignore[no-any-return]

    wait_until(lambda: int(sql("SELECT count() AS n FROM events_raw")[0]["n"]) == 40,
               timeout=60)
    built = httpx.post(f"{url}/v1/admin/models/run", json={"full_refresh": True},
                       headers=admin, timeout=300)
    assert built.status_code == 200, built.text
    assert int(sql("SELECT count() AS n FROM behavior_events")[0]["n"]) == 40
    assert int(sql("SELECT uniqExact(person_id) AS n FROM users")[0]["n"]) == 5

    console = httpx.get(f"{url}/console/", timeout=10)
    assert console.status_code == 200 and "<script" in console.text
    assert "script-src 'self'" in console.headers["content-security-policy"]
    script = httpx.get(f"{url}/console/app.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 10_000
