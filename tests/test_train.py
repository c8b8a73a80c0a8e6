import json
import os

import numpy as np
import pytest

import minivgg as mv
from minivgg import cli, data, models, nn, optim, train

needs_data = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")


@needs_data
def test_training_on_a_real_subset_learns():
    mv.manual_seed(0)
    x, y = data.load_fashion_mnist("train")
    tx, ty = data.load_fashion_mnist("test")
    train_loader = data.DataLoader((x[:2000], y[:2000]), 64, shuffle=True, resize=32)
    test_loader = data.DataLoader((tx[:1000], ty[:1000]), 250, resize=32)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 8)), (1, 1, 32, 32))
    before = train.evaluate_accuracy(net, test_loader)
    history = train.fit(net, train_loader, test_loader, optim.Adam(net.parameters(), lr=1e-3), 2,
                        progress=False, print_fn=lambda *a: None)
    losses = [e["loss"] for e in history["epochs"]]
    assert losses[1] < losses[0] < 2.31
    assert before < 0.2 and history["epochs"][-1]["test_acc"] > 0.45  # chance is 0.1; measured 0.58


def _train_cli(tmp_path, *extra):
    args = ["train", "--ratio", "16", "--train-limit", "256", "--limit-batches", "4", "--batch-size", "32",
            "--no-progress", "--data", data.DEBIAN_DIR, *extra]
    assert cli.main(args) == 0


@needs_data
def test_cli_smoke_run_writes_plot_history_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    _train_cli(tmp_path, "--epochs", "1", "--out", str(out))
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "history.json", "training.png"]
    history = json.loads((out / "history.json").read_text())
    assert history["epochs"][0]["epoch"] == 1 and {"loss", "train_acc", "test_acc", "lr", "time",
                                                   "examples_per_sec"} <= set(history["epochs"][0])
    text = capsys.readouterr().out
    assert "at 32x32" in text.splitlines()[0] and "Nesterov momentum 0.9" in text.splitlines()[0]
    assert "output layer N(0, 0.01)" in text.splitlines()[0]
    assert "epoch 1, loss" in text and "examples/sec on cpu" in text
    assert cli.main(["evaluate", str(out), "--data", data.DEBIAN_DIR]) == 0
    assert (out / "confusion.png").exists() and "ankle boot" in capsys.readouterr().out


@needs_data
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_is_exact(tmp_path, optimizer):
    straight, split = tmp_path / "straight", tmp_path / "split"
    chosen = ["--scheduler", "none", "--optimizer", optimizer] + (["--lr", "0.001"] if optimizer == "adam"
                                                                   else ["--no-nesterov"])
    _train_cli(tmp_path, "--epochs", "2", "--out", str(straight), *chosen)
    _train_cli(tmp_path, "--epochs", "1", "--out", str(split), *chosen)
    _train_cli(tmp_path, "--epochs", "2", "--resume", str(split))
    a = mv.load(straight / "checkpoint.npz")
    b = mv.load(split / "checkpoint.npz")
    assert a["epoch"] == b["epoch"] == 2 and a["config"]["optimizer"] == b["config"]["optimizer"] == optimizer
    assert a["config"]["nesterov"] is b["config"]["nesterov"] is (optimizer == "adam")  # default kept for Adam
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, state in a["optimizer"]["state"].items():
        assert set(state) == ({"momentum_buffer"} if optimizer == "sgd" else {"step", "exp_avg", "exp_avg_sq"})
        for name in state:
            np.testing.assert_array_equal(state[name], b["optimizer"]["state"][key][name])


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    net[1].weight.data[:] = np.nan
    images, labels = np.zeros((8, 2, 2), dtype=np.uint8), np.zeros(8, dtype=np.int64)
    loader = data.DataLoader((images, labels), 4)
    with pytest.raises(train.TrainingDiverged, match=r"at epoch 1, step 1; last good checkpoint: none yet"):
        train.fit(net, loader, loader, optim.SGD(net.parameters(), lr=0.1), 1, out_dir=str(tmp_path),
                  progress=False, print_fn=lambda *a: None)


def test_interrupt_saves_the_weights(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    images, labels = np.zeros((8, 2, 2), dtype=np.uint8), np.zeros(8, dtype=np.int64)

    class Interrupting(data.DataLoader):
        def __iter__(self):
            yield from list(super().__iter__())[:1]
            raise KeyboardInterrupt

    loader = Interrupting((images, labels), 4)
    with pytest.raises(KeyboardInterrupt):
        train.fit(net, loader, loader, optim.SGD(net.parameters(), lr=0.1), 1, out_dir=str(tmp_path),
                  progress=False, print_fn=lambda *a: None)
    saved = mv.load(tmp_path / "interrupted.npz")
    np.testing.assert_array_equal(saved["model"]["1.weight"], net[1].weight.numpy())


def test_cli_summary_prints_the_d2l_table(capsys):
    assert cli.main(["summary", "--arch", "vgg11"]) == 0
    text = capsys.readouterr().out
    for shape in ["(1, 64, 112, 112)", "(1, 128, 56, 56)", "(1, 256, 28, 28)", "(1, 512, 14, 14)",
                  "(1, 512, 7, 7)", "(1, 10)"]:
        assert shape in text


def test_cli_reports_a_missing_gpu(capsys):
    if mv.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["train", "--device", "cuda"]) == 1
    assert "CuPy" in capsys.readouterr().err


@needs_data
def test_cli_watch_grads_saves_the_gradient_plot(tmp_path):
    out = tmp_path / "watched"
    _train_cli(tmp_path, "--epochs", "1", "--out", str(out), "--watch-grads")
    assert (out / "gradients.png").stat().st_size > 1000


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine"])
def test_resume_with_a_per_batch_schedule_is_exact(tmp_path, schedule):
    """A run stopped after epoch 1 of 2 (e.g. Ctrl-C) and resumed equals the run that went straight
    through: weights, momentum, dropout's random state and the schedule (the CLI's CPU default is
    warmup then cosine, a LambdaLR) all continue."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8), rng.integers(0, 10, 96)

    def setup():
        mv.manual_seed(0)
        net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)), (1, 1, 32, 32))
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        loader = data.DataLoader((images, labels), 32, shuffle=True, resize=32, seed=1)
        total = 2 * len(loader)
        sched = (optim.CosineAnnealingLR(opt, T_max=total) if schedule == "cosine"
                 else optim.LambdaLR(opt, optim.warmup_cosine(2, total)))
        return net, opt, sched, loader

    quiet = dict(progress=False, print_fn=lambda *a: None, scheduler_per_step=True)
    net, opt, sched, loader = setup()
    train.fit(net, loader, loader, opt, 2, scheduler=sched, **quiet)
    net2, opt2, sched2, loader2 = setup()
    train.fit(net2, loader2, loader2, opt2, 1, scheduler=sched2, out_dir=str(tmp_path), **quiet)
    net3, opt3, sched3, loader3 = setup()
    start, history = train.restore(str(tmp_path), net3, opt3, sched3)
    train.fit(net3, loader3, loader3, opt3, 1, scheduler=sched3, start_epoch=start, history=history, **quiet)
    assert start == 1 and opt3.lr == opt.lr
    for (name, a), b in zip(net.named_parameters(), net3.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_fit_clips_every_step_when_asked():
    """With a tiny max norm every step is shortened to almost nothing; without it the weights move."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64).astype(np.int64)
    moved = {}
    for clip in (None, 1e-8):
        mv.manual_seed(0)
        net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)), (1, 1, 32, 32))
        start = [p.numpy().copy() for p in net.parameters()]
        loader = data.DataLoader((images, labels), 32, resize=32)
        train.fit(net, loader, loader, optim.SGD(net.parameters(), lr=0.1), 1, progress=False,
                  print_fn=lambda *a: None, clip_grad_norm=clip)
        moved[clip] = max(float(np.abs(p.numpy() - s).max()) for p, s in zip(net.parameters(), start))
    assert moved[None] > 1e-4 and moved[1e-8] < 1e-8  # two steps of lr * norm <= 1e-8 each


@needs_data
@pytest.mark.parametrize("flag, expected", [((), 5.0), (("--clip-grad-norm", "2"), 2.0),
                                            (("--clip-grad-norm", "0"), 0.0)])
def test_cli_clip_grad_norm_is_stated_and_kept_for_resume(tmp_path, capsys, flag, expected):
    """The CPU default clips at 5; a flag changes it, 0 turns it off; the first line says which."""
    out = tmp_path / "run"
    for run in (("--epochs", "1", "--out", str(out), *flag),
                ("--epochs", "2", "--resume", str(out))):  # no flag on resume: the run's own setting
        _train_cli(tmp_path, *run)
        first = capsys.readouterr().out.splitlines()[0]
        assert ("gradient norm clipped at" in first) == bool(expected)
        assert not expected or f"clipped at {expected}" in first
        assert mv.load(str(out / "checkpoint.npz"))["config"]["clip_grad_norm"] == expected


@needs_data
@pytest.mark.parametrize("user_settings", [{}, {"OPENBLAS_THREAD_TIMEOUT": "0"},
                                           {"OPENBLAS_THREAD_TIMEOUT": "0", "OPENBLAS_CORETYPE": "Haswell"}])
def test_the_train_command_tunes_the_cpu_and_gives_openblas_its_settings_before_numpy_loads(tmp_path, user_settings):
    """`minivgg train` calls cpu.tune() and, since OpenBLAS reads its settings only when NumPy loads,
    starts itself again with the missing ones set (cpu.blas_settings); values the user set are kept."""
    import subprocess
    import sys

    names = ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_CORETYPE")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(user_settings)
    probe = tmp_path / "sitecustomize.py"  # runs in every Python start-up: records what NumPy will see
    probe.write_text("import os\nwith open(os.environ['PROBE_OUT'], 'a') as f:\n"
                     f"    f.write(','.join(os.environ.get(k, '-') for k in {names!r}) + '\\n')\n")
    env.update(PYTHONPATH=str(tmp_path), PROBE_OUT=str(tmp_path / "seen.txt"))
    result = subprocess.run([sys.executable, "-m", "minivgg", "train", "--ratio", "16", "--train-limit", "256",
                             "--limit-batches", "2", "--batch-size", "32", "--epochs", "1", "--no-progress",
                             "--data", data.DEBIAN_DIR, "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    starts = (tmp_path / "seen.txt").read_text().split()
    wanted = {"OPENBLAS_THREAD_TIMEOUT": "10", "OPENBLAS_CORETYPE": mv.cpu.preferred_blas_core() or "-"}
    first = [user_settings.get(k, "-") for k in names]
    final = [user_settings.get(k, wanted[k]) for k in names]
    expected = [",".join(first)] + ([",".join(final)] if final != first else [])  # one restart, or none
    assert starts == expected
    assert "cpu: fast kernels; tuned: allocator, openblas_thread_timeout" in result.stdout
