"""The public API packages type-check: ``mypy`` on ``codec`` and ``bitstream`` with the
``[tool.mypy]`` settings of pyproject.toml (skipped where mypy is not installed)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")
ROOT = Path(__file__).resolve().parents[1]


def test_mypy_clean():
    r = subprocess.run([sys.executable, "-m", "mypy", "codec", "bitstream"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
