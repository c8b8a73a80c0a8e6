"""Nothing a user trained is lost and nothing is silently wrong: `minivgg train` never overwrites a run, two
processes never share a run folder, Ctrl-C at each phase (tests/stop_at.py makes the process send
itself SIGINT when that phase begins) keeps every finished epoch and prints the command that resumes, a full
disk or an unwritable folder names the file and keeps the last checkpoint, and a resumed run trains what
the run was. Each case: the exact command, its exit status, its one line, and checksums of the files before
and after."""
import errno
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import cli, data, files, nn, optim, runs, serialization, train
from minivgg.cli import folders

from cli_runs import TINY, finished, run  # noqa: F401 (fixtures)
from cli_runs import minivgg as _minivgg
from cli_runs import sums as _sums

pytestmark = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")
def _last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _no_temporary(folder):
    return [name for name in os.listdir(folder) if name.startswith((files.PREFIX, ".lock"))] == []


def _weights(path):
    state = mv.load(path)
    return state["epoch"], state["model"]


def _same_weights(a, b):
    (epoch_a, model_a), (epoch_b, model_b) = _weights(a), _weights(b)
    assert epoch_a == epoch_b and model_a.keys() == model_b.keys()
    for key in model_a:
        np.testing.assert_array_equal(model_a[key], model_b[key])


# ---- a run folder is never overwritten ---------------------------------------------------------------------
def test_out_onto_a_finished_run_is_refused_unless_overwrite(run, tmp_path):
    folder, before = run
    result = _minivgg("train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert _last_line(result.stderr) == (
        f"minivgg train: error: argument --out: {folder} already holds a run (checkpoint.npz, history.json): "
        f"continue it with --resume {folder}, give a fresh --out, or add --overwrite to replace it")
    assert _sums(folder) == before
    result = _minivgg("train", *TINY, "--epochs", "1", "--seed", "3", "--out", folder, "--overwrite", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"note: --overwrite: the earlier run in {folder} is moved to {folder / 'previous-run'}; it is removed "
            "when this run ends with an epoch saved") in result.stdout
    assert mv.load(folder / train.CHECKPOINT)["config"]["seed"] == 3 and _no_temporary(folder)
    assert not (folder / "previous-run").exists()  # the new run saved an epoch: the earlier one is gone


def test_a_folder_held_by_a_running_process_stops_a_second_one(run, tmp_path):
    folder, before = run
    with open(folder / folders.LOCK, "w") as lock:  # held by this process while the command runs
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        result = _minivgg("train", *TINY, "--resume", folder, "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"minivgg train: error: {folder} is in use by another minivgg train (process {os.getpid()}): wait for "
        f"it to end, or train into another --out"]
    assert _sums(folder) == {**before, folders.LOCK: _sums(folder)[folders.LOCK]}  # the lock is the other's
    assert (folder / folders.LOCK).read_text() == f"{os.getpid()}\n"


def test_a_stale_lock_and_temporary_files_are_cleaned_and_the_resume_keeps_the_runs_limits(run, tmp_path):
    folder, before = run
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process
    (folder / folders.LOCK).write_text(f"{dead.pid}\n")
    (folder / f"{files.PREFIX}{dead.pid}-0a1b2c3d-checkpoint.npz").write_bytes(b"half")  # a write killed by SIGKILL
    result = _minivgg("train", "--resume", folder, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"note: removed the temporary files a stopped minivgg write left in {folder}" in result.stdout
    assert _no_temporary(folder)
    state = mv.load(folder / train.CHECKPOINT)
    assert state["epoch"] == 2 and (state["config"]["train_limit"], state["config"]["limit_batches"]) == (256, 2)
    assert "epoch 2," in result.stdout and len(state["history"]["epochs"]) == 2


def test_two_default_run_folders_started_in_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(folders.time, "strftime", lambda fmt: "20261204-185210")
    base = tmp_path / "runs"
    first, second, third = (folders.new_run_path(str(base)) for _ in range(3))
    assert [os.path.basename(p) for p in (first, second, third)] == [
        "20261204-185210", "20261204-185210-2", "20261204-185210-3"]


@pytest.mark.parametrize("flags, line", [
    (["--lr", "0.05"], "the run was trained with --lr 0.1; got --lr 0.05"),
    (["--train-limit", "512"], "the run was trained with --train-limit 256; got --train-limit 512"),
    (["--arch", "vgg16"], "the run was trained with --arch d2l; got --arch vgg16"),
    (["--seed", "1"], "the run was trained with --seed 0; got --seed 1"),
    (["--no-flip"], None),  # the run's own value (flips off): no contradiction, so nothing is left to do
])
def test_a_resume_refuses_a_flag_that_contradicts_the_run(run, tmp_path, flags, line):
    folder, before = run
    result = _minivgg("train", "--resume", folder, "--epochs", "1", *flags, cwd=tmp_path)
    if line is None:
        assert result.returncode == 0 and "nothing to do: the run already has 1 of 1 epochs" in result.stdout
    else:
        assert result.returncode == 2 and result.stdout == ""
        assert _last_line(result.stderr) == (f"minivgg train: error: argument --resume: {line}. A resumed run "
                                             "keeps its settings; start a new run (--out) to change them")
    assert _sums(folder) == before


def test_inspect_run_refuses_a_contradicting_arch(run, tmp_path):
    folder, before = run
    result = _minivgg("inspect", "--run", folder, "--arch", "vgg16", cwd=tmp_path)
    assert result.returncode == 2
    assert _last_line(result.stderr) == (f"minivgg inspect: error: argument --arch: the run in {folder} was "
                                         "trained with --arch d2l; got --arch vgg16 (inspect --run uses the "
                                         "run's network: leave it out)")
    assert _sums(folder) == before


# ---- Ctrl-C at each phase --------------------------------------------------------------------------------
def _assert_interrupted(result, folder):
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"interrupted: resume with: minivgg train --resume {folder}"]
    assert _no_temporary(folder)


def test_ctrl_c_in_the_first_epoch_saves_the_start_and_the_resume_matches_a_straight_run(finished, tmp_path):
    folder = tmp_path / "run"
    result = _minivgg("train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path, signal_at="step@1")
    _assert_interrupted(result, folder)
    assert (f"interrupted at epoch 1, step 1: the weights at that moment are in {folder / train.INTERRUPTED}; "
            f"{folder / train.CHECKPOINT} holds the start of the run (epoch 0)") in result.stdout
    assert mv.load(folder / train.CHECKPOINT)["epoch"] == 0
    result = _minivgg("train", "--resume", folder, "--no-progress", "--data", data.DEBIAN_DIR, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 0" in result.stdout
    _same_weights(folder / train.CHECKPOINT, finished / train.CHECKPOINT)


def test_ctrl_c_in_a_later_epoch_keeps_the_last_checkpoint(run, tmp_path):
    folder, before = run
    result = _minivgg("train", "--resume", folder, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path, signal_at="step@2")
    _assert_interrupted(result, folder)
    assert f"{folder / train.CHECKPOINT} holds epoch 1" in result.stdout
    after = _sums(folder)
    assert {name: after[name] for name in before} == before and train.INTERRUPTED in after


@pytest.mark.parametrize("phase", ["test@1", "checkpoint@1"])
def test_ctrl_c_after_the_steps_keeps_the_trained_epoch(finished, tmp_path, phase):
    folder = tmp_path / "run"
    result = _minivgg("train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path, signal_at=phase)
    _assert_interrupted(result, folder)
    assert f"interrupted after the training of epoch 1: it is saved in {folder / train.CHECKPOINT}" in result.stdout
    state = mv.load(folder / train.CHECKPOINT)
    assert state["epoch"] == 1
    _same_weights(folder / train.CHECKPOINT, finished / train.CHECKPOINT)
    if phase.startswith("test"):  # its test accuracy is computed by the resume, which trains nothing more
        assert state["history"]["epochs"][-1]["test_acc"] is None
        result = _minivgg("train", "--resume", folder, "--no-progress", "--data", data.DEBIAN_DIR, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        tested = mv.load(folder / train.CHECKPOINT)
        expected = mv.load(finished / train.CHECKPOINT)
        assert tested["history"]["epochs"][-1]["test_acc"] == expected["history"]["epochs"][-1]["test_acc"]
        assert tested["scheduler"] == expected["scheduler"]
        _same_weights(folder / train.CHECKPOINT, finished / train.CHECKPOINT)
    else:
        assert state["history"]["epochs"][-1]["test_acc"] is not None


def test_ctrl_c_in_evaluate_is_one_line(run, tmp_path):
    folder, before = run
    result = _minivgg("evaluate", folder, "--data", data.DEBIAN_DIR, cwd=tmp_path, signal_at="evaluate")
    assert result.returncode == 130 and result.stdout == ""
    assert result.stderr == "minivgg evaluate: interrupted\n"
    assert _sums(folder) == before


def test_an_interrupted_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "a.npz").write_bytes(b"the previous file")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        serialization.save({"w": np.zeros(3)}, tmp_path / "a.npz")
    assert os.listdir(tmp_path) == ["a.npz"] and (tmp_path / "a.npz").read_bytes() == b"the previous file"


# ---- a full disk, an unwritable folder -------------------------------------------------------------------
def _small_file_limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # 1 MiB: the checkpoint is larger


def test_a_full_disk_names_the_file_and_keeps_the_checkpoint(run, tmp_path):
    folder, before = run
    result = _minivgg("train", "--resume", folder, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path, preexec_fn=_small_file_limit)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert _last_line(result.stderr) == (
        f"minivgg train: error: cannot write {folder / train.CHECKPOINT}: file too large (disk full, or a "
        f"file-size limit: ulimit -f) (File too large); {folder / train.CHECKPOINT} is unchanged")
    assert _sums(folder) == before and _no_temporary(folder)


def test_an_unwritable_folder_names_the_file_and_keeps_the_checkpoint(run, monkeypatch, capsys):
    folder, before = run

    def refused(obj, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runs, "save", refused)
    code = cli.main(["train", "--resume", str(folder), "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR])
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines() == [
        f"minivgg train: error: cannot write {folder / train.CHECKPOINT}: permission denied (Permission denied); "
        f"{folder / train.CHECKPOINT} is unchanged"]
    assert _sums(folder) == before


# ---- one run-folder format ---------------------------------------------------------------------------------
def test_a_folder_written_by_fit_without_a_config_is_refused_with_what_it_lacks(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    loader = data.DataLoader((np.zeros((8, 2, 2), dtype=np.uint8), np.zeros(8, dtype=np.int64)), 4)
    train.fit(net, loader, loader, optim.SGD(net.parameters(), lr=0.1), 1, out_dir=str(tmp_path / "fit"),
              progress=False, print_fn=lambda *a: None)
    result = _minivgg("evaluate", tmp_path / "fit", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"minivgg evaluate: error: {tmp_path / 'fit' / train.CHECKPOINT} was written by fit() without a run config "
        "(arch, ratio, ...), so its network cannot be rebuilt: pass config=RunConfig(...).to_dict() to "
        "fit(out_dir=...), or train with minivgg train"]


# ---- an image folder that changes after training ---------------------------------------------------------
def _png(path, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_evaluate_uses_the_recorded_held_out_images(tmp_path):
    pytest.importorskip("PIL.Image")
    images = tmp_path / "images"
    for c, name in enumerate(["cats", "dogs"]):
        for i in range(5):
            _png(images / name / f"{i}.png", 40 * c + i)
    run = tmp_path / "run"
    result = _minivgg("train", "--data-dir", images, "--ratio", "16", "--batch-size", "4", "--epochs", "1",
                      "--no-progress", "--out", run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(json.dumps(mv.load(run / train.CHECKPOINT)["config"]))
    held, trained = config["held_out_files"], config["train_files"]
    assert len(held) == 2 and sorted(held + trained) == sorted(f"{n}/{i}.png" for n in ("cats", "dogs")
                                                                for i in range(5))
    for i in range(5, 8):  # images added after training
        _png(images / "cats" / f"{i}.png", 100 + i)
    os.remove(images / held[0])
    result = _minivgg("evaluate", run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (f"note: 3 images added to {images} since training are left out; "
                                             "1 held-out image is missing")
    assert "on 1 held-out images" in result.stdout
    result = _minivgg("evaluate", run, "--data", data.DEBIAN_DIR, cwd=tmp_path)
    assert result.returncode == 1 and _last_line(result.stderr) == (
        f"minivgg evaluate: error: --data: the run in {run} was trained on the image folder {images}, not on "
        "Fashion-MNIST: give a moved copy of that folder with --data-dir")


def test_evaluate_reads_the_data_folder_it_is_given(run, tmp_path):
    folder, before = run
    (tmp_path / "elsewhere").mkdir()
    result = _minivgg("evaluate", folder, "--data", tmp_path / "elsewhere", cwd=tmp_path)
    assert result.returncode == 1 and _last_line(result.stderr).startswith(
        f"minivgg evaluate: error: data folder {tmp_path / 'elsewhere'} has no t10k-images")
    assert _sums(folder) == before


@pytest.mark.parametrize("flags, line", [
    (["--data-dir", "<images>"], "argument --data-dir: the run in <run> was trained on Fashion-MNIST, not on an "
                                 "image folder; start a new run (--out) to train on <images>"),
    (["--overwrite"], "argument --overwrite: only with --out (the run folder to replace; a resumed run is never "
                      "replaced)"),
])
def test_a_resume_refuses_another_dataset_and_overwrite(run, tmp_path, flags, line):
    pytest.importorskip("PIL.Image")
    folder, before = run
    images = tmp_path / "images"
    for name in ("cats", "dogs"):
        _png(images / name / "0.png", 7)
    flags = [str(images) if flag == "<images>" else flag for flag in flags]
    result = _minivgg("train", "--resume", folder, *flags, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    expected = line.replace("<images>", str(images)).replace("<run>", str(folder))
    assert _last_line(result.stderr) == f"minivgg train: error: {expected}"
    assert _sums(folder) == before


def test_an_older_run_without_its_limits_takes_them_from_the_flags():
    from minivgg.config import resume_conflicts, RunConfig

    older = {"arch": "d2l", "lr": 0.1}  # a checkpoint from before train_limit was kept
    assert resume_conflicts(older, RunConfig(train_limit=512, lr=0.1), ["train_limit", "lr"]) == []
    assert resume_conflicts(older, RunConfig(lr=0.05), ["lr"]) == [("lr", 0.1, 0.05)]
