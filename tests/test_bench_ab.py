"""load-tests/bench_ab.py: what a baseline needs beyond this venv is found from its pyproject."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "load-tests"))

import bench_ab  # noqa: E402


def _tree(tmp_path: Path, dependencies: list[str]) -> Path:
    listed = ",\n".join(f"  {json.dumps(d)}" for d in dependencies)  # a TOML basic string
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "old"\nversion = "0"\ndependencies = [\n{listed}\n]\n')
    return tmp_path


def test_a_baseline_lists_only_what_this_venv_lacks(tmp_path: Path) -> None:
    orjson = metadata.version("orjson")
    tree = _tree(tmp_path, [
        "orjson>=1",                                  # installed, satisfied
        "uvicorn[standard]>=0.1",                     # extras: judged by the name
        "no-such-library-funnelhouse>=2.20",          # missing: a library since replaced
        f"orjson<{orjson}",                           # installed, another version pinned
        'also-missing-funnelhouse; python_version < "3"',  # not for this Python
    ])
    assert bench_ab.missing_requirements(tree) == [
        "no-such-library-funnelhouse>=2.20", f"orjson<{orjson}"]


def test_no_site_folder_when_nothing_is_missing(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    tree = _tree(tmp_path / "tree", ["orjson>=1", "starlette>=1.0"])
    assert bench_ab.baseline_site(tree, tmp_path / "scratch") is None
    assert not (tmp_path / "scratch").exists()
