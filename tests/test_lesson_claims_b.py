"""Claims of lessons 16, 19 and 20 can fail: a copy of the lesson with the thing a claim speaks of changed stops
with the claim-failed message at that claim; and a claim about float32 results holds when the same numbers are
computed in another order."""
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
     "blacking out occlusion's top pixels lowers the score"),
    # The finite differences in float32: rounding noise in the slopes, smooth pixels taken for corners.
    ("20_saliency.py", "SLOPE_DTYPE = np.float64", "SLOPE_DTYPE = np.float32", "backward's value is the score's slope"),
    # Rows of the logits made really different: the net would tell images apart.
    ("19_stuck_at_chance.py", "logits = net.eval()(images).numpy()",
     "logits = net.eval()(images).numpy() + 1e-3 * np.arange(len(images))[:, None]",
     "every image gets the same logits"),
]
# (lesson, text in its source, what it becomes, the start of the claim that must still hold, where to stop after it)
SAME_NUMBERS = [
    # The logits in chunks of 7 images: another BLAS blocking, another order of the sums.
    ("19_stuck_at_chance.py", "logits = net.eval()(images).numpy()",
     "logits = np.concatenate([net.eval()(mv.tensor(images.numpy()[k:k + 7])).numpy() "
     "for k in range(0, len(images), 7)])",
     "every image gets the same logits", 'steps = [r["step"] for r in monitor.history]'),
]


def run_mutant(name, replacements, tmp_path):
    source = (LESSONS / name).read_text()
    for old, new in replacements:
        assert source.count(old) == 1, f"{name} no longer holds {old!r}: update the mutant"
        source = source.replace(old, new)
    mutant = tmp_path / name
    mutant.write_text(source)
    path = os.pathsep.join([str(LESSONS), os.environ.get("PYTHONPATH", "")])  # `import lesson` from the copy
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=path, MINIVGG_LESSON_OUTPUT=str(tmp_path / "output"))
    return subprocess.run([sys.executable, str(mutant), "--quick"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=900, env=env)


@pytest.mark.skipif(not HAS_DATA, reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("name, old, new, sentence", MUTANTS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MUTANTS)])
def test_a_mutated_lesson_fails_its_claim(name, old, new, sentence, tmp_path):
    result = run_mutant(name, [(old, new)], tmp_path)
    assert result.returncode != 0, f"{name} mutated still passed:\n{result.stdout[-2000:]}"
    assert "claim failed: " + sentence in result.stderr, result.stderr[-3000:]


@pytest.mark.skipif(not HAS_DATA, reason="needs Fashion-MNIST (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("name, old, new, sentence, stop", SAME_NUMBERS,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(SAME_NUMBERS)])
def test_a_claim_holds_for_the_same_numbers_in_another_order(name, old, new, sentence, stop, tmp_path):
    result = run_mutant(name, [(old, new), (stop, "raise SystemExit(0)\n" + stop)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\u2713 " + sentence in result.stdout, result.stdout[-3000:]
