"""The `minivgg` command refuses bad input before it starts: each mistake, typed on the real command line, ends
in argparse's usage error (exit code 2): one line naming the option and what it accepts, no banner, no
traceback, and no run folder. Each command here fails before training, so each takes about a second."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minivgg import cli, data, models, nn, optim, train

EMPTY, INTERRUPTED_ONLY, A_FILE, MISSING = "<empty folder>", "<interrupted only>", "<a file>", "<missing>"


def _minivgg(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "minivgg", *args], check=False, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture
def places(tmp_path):
    """A working folder (must stay empty), the --out run folder (must not appear) and paths to misuse."""
    work, out = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / train.INTERRUPTED).write_bytes(b"")
    (tmp_path / "a_file").write_text("not a folder")
    paths = {EMPTY: tmp_path / "empty", INTERRUPTED_ONLY: tmp_path / "stopped", A_FILE: tmp_path / "a_file",
             MISSING: tmp_path / "missing"}
    return work, out, paths


def _fill(texts, paths):
    """The texts with each placeholder (EMPTY, ...) replaced by its path."""
    for placeholder, path in paths.items():
        texts = [text.replace(placeholder, str(path)) for text in texts]
    return texts


def _assert_usage_error(result, command, expected):
    """Exit code 2, nothing on stdout, and argparse's usage, then exactly one error line holding `expected`."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""  # no banner
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert result.stderr.startswith("usage: minivgg")
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]  # the last line, after the usage
    assert errors[0].startswith(f"minivgg {command}: error: ")
    for part in expected:
        assert part in errors[0], errors[0]
    return errors[0]


TRAIN_MISTAKES = [
    (["--batch-size", "0"], ["argument --batch-size", "integer >= 1", "got 0"]),
    (["--batch-size", "ten"], ["argument --batch-size", "integer >= 1", "got ten"]),
    (["--lr", "-1"], ["argument --lr", "> 0", "got -1"]),
    (["--lr", "0"], ["argument --lr", "> 0", "got 0"]),
    (["--lr", "nan"], ["argument --lr", "finite", "got nan"]),
    (["--lr", "inf"], ["argument --lr", "finite", "got inf"]),
    (["--epochs", "0"], ["argument --epochs", "integer >= 1", "got 0"]),
    (["--momentum", "1"], ["argument --momentum", "in [0, 1)", "got 1"]),
    (["--momentum", "-0.5"], ["argument --momentum", "in [0, 1)", "got -0.5"]),
    (["--weight-decay", "-0.0001"], ["argument --weight-decay", ">= 0", "got -0.0001"]),
    # (argparse reads a lone -1e-4 as an option: "expected one argument"; with = it is the value)
    (["--weight-decay=-1e-4"], ["argument --weight-decay", ">= 0", "got -1e-4"]),
    (["--weight-decay", "inf"], ["argument --weight-decay", "finite", "got inf"]),
    (["--warmup-epochs", "-1"], ["argument --warmup-epochs", ">= 0", "got -1"]),
    (["--clip-grad-norm", "-5"], ["argument --clip-grad-norm", ">= 0", "got -5"]),
    (["--output-std", "-0.01"], ["argument --output-std", ">= 0", "got -0.01"]),
    (["--ratio", "0"], ["argument --ratio", "integer >= 1", "got 0"]),
    (["--ratio", "65"], ["argument --ratio", "from 1 to 64", "got 65"]),
    (["--arch", "vgg16", "--ratio", "128"], ["argument --ratio", "from 1 to 64", "--arch vgg16", "got 128"]),
    (["--resize", "16"], ["argument --resize", "integer >= 32", "got 16"]),
    (["--arch", "E", "--resize", "31"], ["argument --resize", "integer >= 32", "--arch E", "got 31"]),
    (["--resize", "0"], ["argument --resize", "integer >= 1", "got 0"]),
    (["--limit-batches", "0"], ["argument --limit-batches", "integer >= 1", "got 0"]),
    (["--train-limit", "0"], ["argument --train-limit", "integer >= 1", "got 0"]),
    (["--seed", "-1"], ["argument --seed", "integer >= 0", "got -1"]),
    (["--arch", "F"], ["argument --arch", "unknown architecture 'F'", "d2l", "vgg16"]),
    (["--device", "gpu"], ["argument --device", "cpu, cuda or cuda:N", "got 'gpu'"]),
    (["--device", "cuda:one"], ["argument --device", "cpu, cuda or cuda:N", "got 'cuda:one'"]),
    (["--data", MISSING], ["argument --data", "no folder at", MISSING]),
    (["--out", A_FILE], ["argument --out", A_FILE, "is a file"]),
    (["--out", os.path.join(A_FILE, "run")], ["argument --out", "cannot write into"]),
    (["--resume", MISSING], ["argument --resume", "no run folder at", MISSING]),
    (["--resume", EMPTY], ["argument --resume", EMPTY, "has no checkpoint.npz"]),
    (["--resume", INTERRUPTED_ONLY], ["argument --resume", INTERRUPTED_ONLY, "only interrupted.npz"]),
    (["--resume", EMPTY, "--out", MISSING], ["argument --out", "not allowed with argument --resume"]),
]


@pytest.mark.parametrize("mistake, expected", TRAIN_MISTAKES, ids=[" ".join(m) for m, _ in TRAIN_MISTAKES])
def test_train_refuses_a_mistake_before_it_starts(places, mistake, expected):
    work, out, paths = places
    args, expected = _fill(mistake, paths), _fill(expected, paths)
    if "--out" not in mistake and "--resume" not in mistake:
        args += ["--out", str(out)]
    _assert_usage_error(_minivgg("train", *args, "--no-progress", cwd=work), "train", expected)
    assert not out.exists() and os.listdir(work) == []  # neither --out nor runs/<date-time>
    assert os.listdir(paths[EMPTY]) == [] and os.listdir(paths[INTERRUPTED_ONLY]) == [train.INTERRUPTED]


OTHER_MISTAKES = [
    (["evaluate", MISSING], ["no run folder at", MISSING, "minivgg train --out"]),
    (["evaluate", EMPTY], [EMPTY, "has no checkpoint.npz", "minivgg train --out"]),
    (["evaluate", A_FILE], [A_FILE, "is a file, not a run folder"]),
    (["evaluate", EMPTY, "--device", "gpu"], ["argument --device", "cpu, cuda or cuda:N"]),
    (["inspect", "--run", MISSING], ["argument --run", "no run folder at", MISSING]),
    (["inspect", "--run", EMPTY], ["argument --run", EMPTY, "has no checkpoint.npz"]),
    (["inspect", "--batch-size", "0"], ["argument --batch-size", "integer >= 1", "got 0"]),
    (["inspect", "--resize", "16"], ["argument --resize", "integer >= 32", "got 16"]),
    (["inspect", "--ratio", "100"], ["argument --ratio", "from 1 to 64", "got 100"]),
    (["inspect", "--out", MISSING], ["argument --out", "no folder at", MISSING]),
    (["summary", "--resize", "8"], ["argument --resize", "integer >= 32", "got 8"]),
    (["summary", "--classes", "0"], ["argument --classes", "integer >= 1", "got 0"]),
    (["summary", "--in-channels", "0"], ["argument --in-channels", "integer >= 1", "got 0"]),
    (["summary", "--arch", "vgg20"], ["argument --arch", "unknown architecture 'vgg20'"]),
]


@pytest.mark.parametrize("mistake, expected", OTHER_MISTAKES, ids=[" ".join(m) for m, _ in OTHER_MISTAKES])
def test_evaluate_inspect_and_summary_refuse_a_mistake(places, mistake, expected):
    work, _, paths = places
    args, expected = _fill(mistake, paths), _fill(expected, paths)
    _assert_usage_error(_minivgg(*args, cwd=work), mistake[0], expected)
    assert os.listdir(work) == [] and not paths[MISSING].exists()


def test_a_refused_train_command_does_not_restart_itself(tmp_path):
    """The checks run before the restart that sets OPENBLAS_THREAD_TIMEOUT: Python starts once."""
    probe = tmp_path / "sitecustomize.py"  # runs in every Python start-up
    probe.write_text("import os\nwith open(os.environ['PROBE_OUT'], 'a') as f:\n    f.write('start\\n')\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env.update(PYTHONPATH=str(tmp_path), PROBE_OUT=str(tmp_path / "starts.txt"))
    result = _minivgg("train", "--batch-size", "0", "--out", str(tmp_path / "run"), cwd=tmp_path, env=env)
    _assert_usage_error(result, "train", ["argument --batch-size"])
    assert (tmp_path / "starts.txt").read_text().split() == ["start"]


def _check(argv):
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    cli.check_args(parser.commands[args.command], args)
    return args


def test_the_edges_of_each_range_are_accepted(tmp_path):
    args = _check(["train", "--batch-size", "1", "--lr", "1e-9", "--epochs", "1", "--momentum", "0",
                   "--weight-decay", "0", "--warmup-epochs", "0", "--clip-grad-norm", "0", "--output-std", "0",
                   "--ratio", "64", "--resize", "32", "--limit-batches", "1", "--train-limit", "1", "--seed", "0",
                   "--arch", "a-lrn", "--device", "CUDA", "--out", str(tmp_path / "new" / "run")])
    assert (args.batch_size, args.momentum, args.ratio, args.resize, args.device) == (1, 0.0, 64, 32, "cuda:0")
    assert args.arch == "a-lrn"  # kept as typed: the run's config holds what the user wrote
    assert os.listdir(tmp_path) == []  # checking that --out can be written leaves nothing behind
    assert _check(["train", "--momentum", "0.999"]).momentum == 0.999
    assert _check(["train"]).resize is None  # the device's default applies later


@pytest.mark.parametrize("arch", ["d2l", "A-LRN", "vgg16-c", "E"])
def test_the_ratio_and_resize_limits_are_the_models_own(arch):
    """The largest accepted ratio keeps every convolution at >= 1 channel, and the smallest accepted resize
    goes through all the poolings to 1x1; one pixel less does not."""
    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        _check(["summary", "--arch", arch, "--ratio", "65"])
    with pytest.raises(SystemExit):
        _check(["summary", "--arch", arch, "--resize", "31"])
    args = _check(["summary", "--arch", arch, "--ratio", "64", "--resize", "32"])
    net = models.build(args.arch, args.ratio)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.LazyConv2d))]
    assert min(m.out_channels for m in convs) == 1
    shapes = [shape for _, _, shape in models.dry_run(net, (1, 1, 32, 32), "cpu")]
    assert shapes[4][2:] == (1, 1)
    with pytest.raises(Exception, match="larger input"):
        models.dry_run(models.build(args.arch, args.ratio), (1, 1, 31, 31), "cpu")
    assert parser.commands["summary"].prog == "minivgg summary"


def test_a_run_that_fails_before_its_first_file_leaves_no_folder(tmp_path):
    """The run folder appears with the first file written into it: a loss that is NaN from the first step
    stops training, and no empty folder is left behind."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    net[1].weight.data[:] = np.nan
    loader = data.DataLoader((np.zeros((8, 2, 2), dtype=np.uint8), np.zeros(8, dtype=np.int64)), 4)
    out = tmp_path / "runs" / "new"
    with pytest.raises(train.TrainingDiverged):
        train.fit(net, loader, loader, optim.SGD(net.parameters(), lr=0.1), 1, out_dir=str(out),
                  progress=False, print_fn=lambda *a: None)
    assert os.listdir(tmp_path) == []
