"""Every lesson runs in quick mode and exits 0; its claims (lesson.claim, which raises ClaimFailed) carry the checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = sorted(p for p in (Path(__file__).parent.parent / "lessons").glob("[0-9][0-9]_*.py"))
NEEDS_DATA = {"09_training.py", "11_resolution.py", "16_lrn.py", "17_paper_recipe.py", "18_warm_start.py",
              "19_stuck_at_chance.py", "20_saliency.py", "21_transfer_learning.py"}


def test_every_lesson_is_in_the_readme_index():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert len(LESSONS) >= 21
    assert [p.name for p in LESSONS if f"`{p.name}`" not in readme] == []


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_quick(path):
    if path.name in NEEDS_DATA and not os.path.isdir("/usr/share/datasets/fashion-mnist") \
            and not os.environ.get("MINIVGG_DATA"):
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    result = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True, text=True,
                            cwd=path.parent, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "\u2713" in result.stdout  # it checked at least one claim
