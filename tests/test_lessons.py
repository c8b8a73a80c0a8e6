"""Every lesson runs in quick mode and exits 0; its claims (lesson.claim, which raises ClaimFailed) carry the checks.
Each lesson's wall time is listed at the end of pytest's report: the README promises under a minute on two cores."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

LESSONS = sorted(p for p in (Path(__file__).parent.parent / "lessons").glob("[0-9][0-9]_*.py"))
NEEDS_DATA = {"09_training.py", "11_resolution.py", "16_lrn.py", "17_paper_recipe.py", "18_warm_start.py",
              "19_stuck_at_chance.py", "20_saliency.py", "21_transfer_learning.py", "23_d2l_code.py"}
QUICK_LIMIT = 60  # seconds, the README's promise for --quick on two cores


class LessonTimes:
    """A plugin registered while this module runs: it prints the lessons' times in the terminal summary, which
    pytest shows without -s (a test's own print is captured)."""

    def __init__(self):
        self.seconds = {}

    def pytest_terminal_summary(self, terminalreporter):
        if not self.seconds:
            return
        terminalreporter.section("lessons, --quick wall time")
        for name, seconds in self.seconds.items():
            over = f"  (over the README's {QUICK_LIMIT} s)" if seconds > QUICK_LIMIT else ""
            terminalreporter.write_line(f"{name:<28} {seconds:6.1f} s{over}")


@pytest.fixture(scope="module")
def lesson_times(request):
    plugin = request.config.pluginmanager.get_plugin("lesson-times")
    if plugin is None:
        plugin = LessonTimes()
        request.config.pluginmanager.register(plugin, "lesson-times")
    return plugin.seconds


def test_every_lesson_is_in_the_readme_index():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert len(LESSONS) >= 21
    assert [p.name for p in LESSONS if f"`{p.name}`" not in readme] == []


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_quick(path, lesson_times):
    if path.name in NEEDS_DATA and not os.path.isdir("/usr/share/datasets/fashion-mnist") \
            and not os.environ.get("MINIVGG_DATA"):
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True, text=True,
                            cwd=path.parent, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    lesson_times[path.name] = time.perf_counter() - start
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "\u2713" in result.stdout  # it checked at least one claim
