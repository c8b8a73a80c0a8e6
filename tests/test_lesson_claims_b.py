"""Claims of lessons 16 and 20 can fail: a copy of the lesson with the thing a claim speaks of changed stops with
the claim-failed message at that claim."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

LESSONS = Path(__file__).parent.parent / "lessons"
HAS_DATA = os.path.isdir("/usr/share/datasets/fashion-mnist") or bool(os.environ.get("MINIVGG_DATA"))

# (lesson, text in its source, what it becomes, the start of the claim that must then fail)
MUTANTS = [
    # A-LRN 0.3 worse than A: a one-sided "no better than A" would still pass.
    ("16_lrn.py", 'acc = {c: np.array([runs[c, s]["epochs"][-1]["test_acc"] for s in SEEDS]) for c in CONFIGS}',
     'acc = {c: np.array([runs[c, s]["epochs"][-1]["test_acc"] - 0.3 * (c == "A-LRN") for s in SEEDS]) '
     'for c in CONFIGS}', "A-LRN and A differ by"),
    # The randomization check compares the trained net with itself.
    ("20_saliency.py", "untrained = fresh_net(1).eval()", "untrained = net",
     "occlusion's map is the trained net's"),
    # One patch as large as the image: every pixel gets the same fall, the ranking says nothing.
    ("20_saliency.py", "def occlusion(model, patch=4, stride=2):", "def occlusion(model, patch=32, stride=2):",
     "occlusion's top pixels are the ones the score needs"),
]


@pytest.mark.skipif(not HAS_DATA, reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("name, old, new, sentence", MUTANTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTANTS)])
def test_a_mutated_lesson_fails_its_claim(name, old, new, sentence, tmp_path):
    source = (LESSONS / name).read_text()
    assert source.count(old) == 1, f"{name} no longer holds {old!r}: update the mutant"
    mutant = tmp_path / name
    mutant.write_text(source.replace(old, new))
    path = os.pathsep.join([str(LESSONS), os.environ.get("PYTHONPATH", "")])  # `import lesson` from the copy
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path, MINIVGG_LESSON_OUTPUT=str(tmp_path / "output"))
    result = subprocess.run([sys.executable, str(mutant), "--quick"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=900, env=env)
    assert result.returncode != 0, f"{name} mutated still passed:\n{result.stdout[-2000:]}"
    assert "claim failed: " + sentence in result.stderr, result.stderr[-3000:]
