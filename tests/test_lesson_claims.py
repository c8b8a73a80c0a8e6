"""A lesson's ✓ must be able to fail: `claim` raises under `python -O` too, and copies of lessons 10, 17 and 18
with the thing a claim speaks of changed stop with the claim-failed message."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = Path(__file__).parent.parent / "lessons"
HAS_DATA = os.path.isdir("/usr/share/datasets/fashion-mnist") or bool(os.environ.get("MINIVGG_DATA"))
FAILED = "lesson.ClaimFailed: the lesson's claim failed: "


def run(script, tmp_path, *options):
    """Run `script` (a path) with `lesson` importable and figures written under tmp_path."""
    path = os.pathsep.join([str(LESSONS), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path,
               MINIVGG_LESSON_OUTPUT=str(tmp_path / "output"))
    return subprocess.run([sys.executable, *options, str(script), "--quick"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, env=env)


def test_a_false_claim_fails_under_python_O(tmp_path):
    script = tmp_path / "claims.py"
    script.write_text("from lesson import claim\nclaim(1 + 1 == 2, 'true')\nassert False\n"
                      "claim(1 + 1 == 3, 'one and one make three')\n")
    result = run(script, tmp_path, "-O")
    assert result.returncode != 0
    assert "\u2713 true" in result.stdout
    assert FAILED + "one and one make three" in result.stderr  # the assert before it was stripped, the claim not


# (lesson, text in its source, what it becomes, the start of the claim that must then fail)
MUTANTS = [
    ("10_gradients_in_vgg.py", 'SCHEMES = {"std 0.01": "normal", "std 0.1": 0.1,',
     'SCHEMES = {"std 0.01": "normal", "std 0.1": 0.05,', "each scheme's drawn weights have the std its rule gives"),
    ("17_paper_recipe.py", 'seed=seed, recipe="paper")', 'seed=seed, recipe="paper", resize=44)',
     "the test images are rescaled to Q = 40 and centre-cropped"),
    ("17_paper_recipe.py", "train.fit(net, train_loader, val_loader,", "train.fit(net, train_loader, test_loader,",
     "replayed on each run's validation accuracies"),  # the schedule watching the test set
    # The augmented runs given the loaders without augmentation: the comparison compares a run with itself.
    ("17_paper_recipe.py", "train_loader, val_loader, test_loader, seen_loader = make_loaders(config)",
     "train_loader, val_loader, test_loader, seen_loader = make_loaders(make_config(False, seed))",
     "what it did do: in each seed the augmented run's test accuracy is lower"),
    ("18_warm_start.py", "sigma = 0.1 * np.sqrt(ratio)", "sigma = 0.01 * np.sqrt(ratio)",
     f"std 0.1 x sqrt(8) = {0.01 * 8 ** 0.5:.3f} gives our narrow layers"),
]


@pytest.mark.parametrize("name, old, new, sentence", MUTANTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTANTS)])
def test_a_mutated_lesson_fails_its_claim(name, old, new, sentence, tmp_path):
    if name != "10_gradients_in_vgg.py" and not HAS_DATA:
        pytest.skip("needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    source = (LESSONS / name).read_text()
    assert source.count(old) == 1, f"{name} no longer holds {old!r}: update the mutant"
    mutant = tmp_path / name
    mutant.write_text(source.replace(old, new))
    result = run(mutant, tmp_path)
    assert result.returncode != 0, f"{name} mutated still passed:\n{result.stdout[-2000:]}"
    assert FAILED + sentence in result.stderr, result.stderr[-3000:]
