"""Nothing silently wrong: a run never lands inside its image folder or reads one as a class, the plateau rule
never looks at the test set, and command-line mistakes are usage errors. Commands run in a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import data, train
from minivgg.config import RunConfig


def _minivgg(*args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "minivgg", *map(str, args)], check=False, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def _png(path, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


@pytest.fixture
def images(tmp_path):
    pytest.importorskip("PIL.Image")
    folder = tmp_path / "images"
    for c, name in enumerate(["cats", "dogs"]):
        for i in range(5):
            _png(folder / name / f"{i}.png", 40 * c + i)
    return folder


SMALL = ["--ratio", "16", "--batch-size", "4", "--epochs", "1", "--no-progress"]


# ---- 8. a run never lands in its image folder, nor reads as a class --------------------------------------------
def test_the_default_run_folder_is_never_inside_the_image_folder(images):
    result = _minivgg("train", "--data-dir", ".", *SMALL, cwd=images)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "minivgg train: error: argument --data-dir: the default run folder runs/ would be inside the image folder "
        "., where it would read as a class; give --out a folder outside it")
    assert sorted(os.listdir(images)) == ["cats", "dogs"]


def test_run_folders_inside_an_image_folder_are_not_classes(images, tmp_path):
    result = _minivgg("train", "--data-dir", ".", *SMALL, "--out", "run", cwd=images)
    assert result.returncode == 0, result.stderr
    (images / "runs" / "20260101-000000").mkdir(parents=True)  # a default runs/ left by an older version
    (images / "runs" / "20260101-000000" / "history.json").write_text("{}")
    assert data.class_folders(str(images)) == ["cats", "dogs"]
    for argv in (["evaluate", "run"], ["train", "--resume", "run", "--epochs", "2", "--no-progress"],
                 ["train", "--data-dir", ".", *SMALL, "--out", str(tmp_path / "second")]):
        result = _minivgg(*argv, cwd=images)
        assert result.returncode == 0, (argv, result.stderr)
    assert mv.load(tmp_path / "second" / train.CHECKPOINT)["config"]["classes"] == ["cats", "dogs"]


# ---- 15. an empty folder name is a usage error -------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--out", "--resume", "--init-from"])
def test_an_empty_folder_name_is_a_usage_error(tmp_path, flag):
    result = _minivgg("train", flag, "", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"minivgg train: error: argument {flag}: an empty folder name; give "
                                              f"the run folder, e.g. {flag} runs/first")
    assert os.listdir(tmp_path) == []


# ---- 9. the plateau rule watches a validation split, never the test set ---------------------------------------
@pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR), reason="install dataset-fashion-mnist (Debian)")
def test_the_paper_recipe_steps_its_plateau_rule_on_a_validation_split(tmp_path):
    result = _minivgg("train", "--recipe", "paper", "--ratio", "16", "--train-limit", "512", "--batch-size", "64",
                      "--limit-batches", "3", "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("plateau rule: watches the accuracy on 51 training images held out (--plateau-split 0.1); the test set "
            "is only scored") in result.stdout
    state = mv.load(tmp_path / "run" / train.CHECKPOINT)
    epochs = state["history"]["epochs"]
    assert state["config"]["plateau_split"] == 0.1 and all("val_acc" in e for e in epochs)
    assert state["scheduler"]["best"] == max(e["val_acc"] for e in epochs)  # what the rule saw
    assert " val acc " in result.stdout


def test_fit_steps_the_scheduler_on_the_validation_accuracy():
    from minivgg import nn, optim

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (40, 4, 4), dtype=np.uint8), rng.integers(0, 3, 40)
    loader = data.DataLoader((images, labels), 8)
    test = data.DataLoader((images[:8], np.zeros(8, dtype=np.int64)), 8)  # a different accuracy
    validation = data.DataLoader((images[8:24], labels[8:24]), 8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    seen = []
    scheduler = optim.ReduceLROnPlateau(optim.SGD(net.parameters(), lr=0.1))
    scheduler.step = seen.append
    history = train.fit(net, loader, test, scheduler.optimizer, 2, scheduler=scheduler, val_loader=validation,
                        progress=False, print_fn=lambda *a: None)
    assert seen == [e["val_acc"] for e in history["epochs"]]
    assert [train.evaluate_accuracy(net, validation)] == seen[-1:]


def test_a_run_from_before_the_split_keeps_watching_what_it_watched():
    from minivgg.config import RunConfig, resume_config

    old = RunConfig(scheduler="plateau", epochs=2).fill_defaults("cpu").to_dict()
    del old["plateau_split"]
    assert resume_config(old, RunConfig()).fill_defaults("cpu").plateau_split == 0.0
    assert RunConfig(scheduler="plateau").fill_defaults("cpu").plateau_split == 0.1
    assert RunConfig(recipe="paper").fill_defaults("cpu").plateau_split == 0.1


def test_a_plateau_split_without_the_plateau_rule_is_a_usage_error(capsys):
    from minivgg import cli

    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--scheduler", "cosine", "--plateau-split", "0.2"])
    assert stop.value.code == 2
    assert "argument --plateau-split: it holds out images for the plateau rule" in capsys.readouterr().err
    with pytest.raises(ValueError, match="plateau_split .* the scheduler is 'step'"):
        RunConfig(scheduler="step", plateau_split=0.2).validate()
