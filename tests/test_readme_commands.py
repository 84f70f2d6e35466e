"""Every command of README.md's ```sh blocks, run as written.

Against a fresh data folder with a running `funnelhouse up` (its own port and folder,
credentials made by `up` as on a first start) after `funnelhouse demo`. The commands run
from the checkout (README's `.venv/bin/funnelhouse` and relative paths mean that), with
the venv's bin first on PATH (`funnelhouse` as installed), `FUNNELHOUSE_DATA_DIR` naming
the fresh folder, and README's default address `127.0.0.1:8080` read as the test's port.
Each must exit 0 without a Traceback. A line ending in `\\` goes on with the next; a
block's commands run in order, each with `bash -e -o pipefail` (`a ; b` fails if a does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from funnelhouse.config import REPO_ROOT
from tests.conftest import Funnelhouse, wait_until

# FUNNELHOUSE_README_UNDER_TEST: check a proposed README text before it lands.
README = Path(os.environ.get("FUNNELHOUSE_README_UNDER_TEST") or REPO_ROOT / "README.md")
DEFAULT_ADDRESS = "127.0.0.1:8080"

# Commands not run here, by how they start, each with the reason. Keep it short.
NOT_RUN = {
    # Sets up the venv and serves until Ctrl-C; the test's own `funnelhouse up` stands in.
    "./scripts/up": "a server that runs until Ctrl-C",
    # The whole CI run (≈18 minutes), this test included.
    "./scripts/test": "the whole test suite",
    # Fetches Kafka through Maven and serves until Ctrl-C (tests/test_kafka_*.py run it).
    ".venv/bin/funnelhouse up --with-kafka": "a server with a Kafka broker",
    # The scaled deployment's block: a ClickHouse server at ch:8123 and Kafka at
    # kafka:9092, which CI does not have (tests/test_scaled_topology.py runs these roles
    # against stand-ins).
    "export FUNNELHOUSE_CLICKHOUSE_URL=": "needs a ClickHouse server and Kafka",
    "funnelhouse migrate": "scaled deployment (ClickHouse server)",
    "funnelhouse collector": "scaled deployment (Kafka; runs until stopped)",
    "funnelhouse loader": "scaled deployment (Kafka; runs until stopped)",
    "funnelhouse serve": "scaled deployment (ClickHouse server; runs until stopped)",
}
DEMO = re.compile(r"^(\.venv/bin/)?funnelhouse demo\b")


def readme_commands(text: str) -> list[str]:
    """The commands of every ```sh block, continuation lines joined, in README order."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        current = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1]
                continue
            current += line
            if current.strip():
                commands.append(current.strip())
            current = ""
    return commands


def not_run(command: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if command.startswith(start)), None)


COMMANDS = readme_commands(README.read_text())
TO_RUN = [c for c in COMMANDS if not not_run(c)]
# `demo` first (the README's own, as written; else the plain command), then README order.
ORDERED = ([c for c in TO_RUN if DEMO.match(c)] or ["funnelhouse demo"]) + \
    [c for c in TO_RUN if not DEMO.match(c)]


def test_the_allow_list_names_only_commands_the_readme_has() -> None:
    assert COMMANDS, "README.md has no ```sh blocks"
    for start in NOT_RUN:
        assert any(c.startswith(start) for c in COMMANDS), f"{start!r} is not in README.md"


@pytest.fixture(scope="module")
def fresh_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Funnelhouse, dict]]:
    root = tmp_path_factory.mktemp("readme")
    up = Funnelhouse(root / "data", env={"FUNNELHOUSE_INSTANCES_DIR": str(root / "instances")})
    # A first start: `up` makes the keys and the admin token in the data folder.
    for configured in ("FUNNELHOUSE_WRITE_KEYS", "FUNNELHOUSE_ADMIN_TOKEN"):
        up.env.pop(configured, None)
    env = {**up.env, "FUNNELHOUSE_DATA_DIR": str(up.data_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    up.env = env
    up.start()
    try:
        wait_until(lambda: (up.data_dir / "instance.json").is_file())
        yield up, env
    finally:
        assert up.stop() == 0


@pytest.mark.parametrize("command", ORDERED,
                         ids=[f"{n:02d} {re.sub(r'[^ -~]', '?', c)[:70]}"
                              for n, c in enumerate(ORDERED)])
def test_readme_command_runs_as_written(command: str, fresh_up: tuple[Funnelhouse, dict]
                                        ) -> None:
    up, env = fresh_up
    line = command.replace(DEFAULT_ADDRESS, f"127.0.0.1:{up.port}")
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", line], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=240)
    said = f"$ {command}\n--- stdout\n{result.stdout[-2000:]}\n--- stderr\n{result.stderr[-2000:]}"
    assert result.returncode == 0, said
    assert "Traceback" not in result.stdout + result.stderr, said
    if command.startswith("curl"):   # curl exits 0 on a 401 too: the answer must not refuse
        assert '"error"' not in result.stdout, said
