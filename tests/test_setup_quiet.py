"""`scripts/setup` installs funnelhouse editable without a setuptools warning.

pip shows the build backend's Python warnings even with -q; the flat layout without a
named package folder made setuptools pick its import-hook strategy and warn
("Editable installation … folders with the same name as your package") on every setup.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from funnelhouse.config import REPO_ROOT

WARNING_LINE = re.compile(r"^\S+:\d+: \w*(Warning|InformationOnly)\w*: ", re.M)


def test_the_editable_build_warns_nothing(tmp_path: Path) -> None:
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_editable(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-W", "always", "-c", build, str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob("funnelhouse-*.whl")), result.stdout[-2000:]
    assert not WARNING_LINE.search(result.stderr), result.stderr[-3000:]
