"""Every lesson runs in quick mode and exits 0; the lessons' own assertions carry the checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = sorted(p for p in (Path(__file__).parent.parent / "lessons").glob("[0-9][0-9]_*.py"))
NEEDS_DATA = {"09_training.py", "11_resolution.py"}


def test_there_are_thirteen_lessons():
    assert len(LESSONS) >= 13


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_quick(path):
    if path.name in NEEDS_DATA and not os.path.isdir("/usr/share/datasets/fashion-mnist") \
            and not os.environ.get("MINIVGG_DATA"):
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    result = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True, text=True,
                            cwd=path.parent, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "\u2713" in result.stdout  # it checked at least one claim
