"""How scripts/test spreads the suite over pytest-xdist workers (`-n N --dist loadfile`).

A module runs whole on one worker: its module-scoped fixtures are built once, and chdb
serves one data folder per process. Modules that write into the checkout itself
(setuptools' build/ and egg-info) share one unit of work, so they never overlap. The
longest modules start first, so that no worker is left with a long one at the end
while the others idle. Without xdist (a plain `pytest tests/...`) nothing changes.
"""

from __future__ import annotations

from typing import Any

import pytest

# Modules that must not run at the same time as each other: one unit of work.
SHARED_UNITS = {
    "tests/test_packaging.py": "builds-in-the-checkout",
    "tests/test_setup_quiet.py": "builds-in-the-checkout",
}

# Measured with --durations (2026-12-02), longest first; the rest follow in file order.
LONGEST_FIRST = (
    "tests/test_models.py",
    "tests/test_kafka_pipeline.py",
    "tests/test_models_incremental.py",
    "tests/test_cli.py",
    "tests/test_forget.py",
    "tests/test_security_http.py",
    "tests/test_readme_commands.py",
    "tests/test_analyses_result_people.py",
    "tests/test_kafka_broker.py",
    "tests/test_models_rules.py",
    "tests/test_roles.py",
)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def unit_of(nodeid: str) -> str:
    module = module_of(nodeid)
    return SHARED_UNITS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile`, with the shared units above joined (None: xdist's own choice)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleUnits(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return ModuleUnits(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the longest modules first (each keeps its own order); the
    controller hands out units in this order when run with --no-loadscope-reorder."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        module = module_of(item.nodeid)
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable
