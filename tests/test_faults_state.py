"""An edited checkpoint is refused with one line naming the entry, never a traceback or a silent run; the
commands' outputs replace a symlink rather than write through it; a resumed run that completes removes its
stale interrupted.npz; a custom Function's backward that returns no array is named."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import data, train
from minivgg.function import Function

from cli_runs import TINY, finished  # noqa: F401 (a fixture)
from cli_runs import minivgg as _minivgg

pytestmark = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")


@pytest.fixture
def run(finished, tmp_path):  # a copy of the finished run (no checksums needed here)
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


# ---- 13. every entry of the training state is checked ------------------------------------------------------------
def _set(state, where, value):
    *path, last = where.split("/")
    node = state
    for key in path:
        node = node[key]
    node[last] = value


@pytest.mark.parametrize("where, value, words", [
    ("config/binary", "no", "its run config is wrong: binary must be True or False, got 'no'"),
    ("history/epochs", [5, 6], "entry 'history/epochs/0' must be a dict of the epoch's numbers, got 5"),
    ("history/points", [1, 2], "entry 'history/points/0' must be a dict of the numbers epoch, loss, acc, got 1"),
    ("optimizer/hyper/lr", "abc", "SGD.load_state_dict: entry 'hyper/lr' must be a finite number >= 0, got 'abc'"),
    ("optimizer/hyper/lr", -5, "SGD.load_state_dict: entry 'hyper/lr' must be a finite number >= 0, got -5"),
    ("optimizer/hyper/momentum", 1.5, "entry 'hyper/momentum' must be a finite number in [0, 1), got 1.5"),
    ("optimizer/state/0/momentum_buffer", "abc", "entry 'state/0/momentum_buffer' must be an array of floats"),
    ("optimizer/state/0/momentum_buffer", np.zeros(3, dtype=np.float32), "entry 'state/0/momentum_buffer' has shape"),
    ("scheduler/last_epoch", "abc", "LambdaLR.load_state_dict: entry 'last_epoch' must be a whole number >= 0, "
                                    "got 'abc'"),
])
def test_an_edited_training_state_is_named_on_resume(run, tmp_path, where, value, words):
    path = run / train.CHECKPOINT
    state = mv.load(path)
    _set(state, where, value)
    mv.save(state, path)
    before = path.read_bytes()
    result = _minivgg("train", "--resume", run, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    if where.startswith("config/"):  # the config is read while the flags are checked: a usage error
        assert result.returncode == 2 and lines[-1].startswith(f"minivgg train: error: argument --resume: {path}")
    else:
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"minivgg train: error: {path}")
    assert words in lines[-1], lines
    assert path.read_bytes() == before and "epoch 2" not in result.stdout


# ---- 14. outputs replace a symlink, never write through it ------------------------------------------------------
def test_evaluate_replaces_a_symlinked_confusion_png(run, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (run / "confusion.png").symlink_to(victim)
    result = _minivgg("evaluate", run, "--data", data.DEBIAN_DIR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me"
    assert not (run / "confusion.png").is_symlink() and (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_inspect_replaces_symlinked_graph_files(run, tmp_path):
    victims = {}
    for name in ("graph.dot", "graph.svg"):
        victims[name] = tmp_path / f"precious-{name}"
        victims[name].write_text("keep me")
        (run / name).symlink_to(victims[name])
    result = _minivgg("inspect", "--run", run, "--data", data.DEBIAN_DIR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name, victim in victims.items():
        assert victim.read_text() == "keep me"
    assert not (run / "graph.dot").is_symlink()


def test_training_replaces_symlinked_run_files(run, tmp_path):
    victims = {}
    for name in ("history.json", "training.png", train.CHECKPOINT):
        victims[name] = tmp_path / f"precious-{name}"
        (run / name).rename(victims[name])
        (run / name).symlink_to(victims[name])
    kept = {name: victim.read_bytes() for name, victim in victims.items()}
    result = _minivgg("train", "--resume", run, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {name: victim.read_bytes() for name, victim in victims.items()} == kept
    assert mv.load(run / train.CHECKPOINT)["epoch"] == 2


# ---- 15. a stale interrupted.npz; a custom backward that returns no array ----------------------------------------
def test_a_resumed_run_that_completes_removes_its_stale_interrupted_npz(tmp_path):
    code = ("import os, signal, sys\nfrom minivgg import cli, train\nreal = train.train_step\n"
            "def step(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    return real(*a, **k)\n"
            "train.train_step = step\nsys.exit(cli.main(sys.argv[1:]))\n")
    folder = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", code, "train", *TINY, "--epochs", "1", "--out", str(folder)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 130 and (folder / train.INTERRUPTED).exists(), result.stderr
    result = _minivgg("train", "--resume", folder, "--no-progress", "--data", data.DEBIAN_DIR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (folder / train.INTERRUPTED).exists() and mv.load(folder / train.CHECKPOINT)["epoch"] == 1


@pytest.mark.parametrize("returned", [1.5, "abc"])
def test_a_custom_backward_that_returns_no_array_is_named(returned):
    class Twice(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return returned

    x = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = Twice()(x) if not hasattr(Twice, "apply") else Twice.apply(x)
    with pytest.raises(TypeError, match="function TwiceBackward returned"):
        y.sum().backward()
