"""What the tests of `minivgg` as a command share: tiny training settings, the command in a new process,
checksums of a folder's files, and one finished run per test module to copy."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from minivgg import data

TINY = ["--ratio", "16", "--train-limit", "256", "--batch-size", "64", "--limit-batches", "2", "--no-progress",
        "--data", data.DEBIAN_DIR]
STOP_AT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stop_at.py")


def minivgg(*args, cwd, signal_at=None, preexec_fn=None):
    """`minivgg ARGS` in a new process; with signal_at ('test', 'step@2', ...), Ctrl-C'd when that phase begins."""
    command = [STOP_AT, signal_at] if signal_at else ["-m", "minivgg"]
    return subprocess.run([sys.executable, *command, *map(str, args)], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=600, preexec_fn=preexec_fn)


def sums(folder):
    """{name: sha256} of the files in `folder`."""
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in sorted(os.listdir(folder))
            if (folder / name).is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of one epoch (the tiny settings), trained once for the module; tests copy it."""
    work = tmp_path_factory.mktemp("finished")
    result = minivgg("train", *TINY, "--epochs", "1", "--out", work / "run", cwd=work)
    assert result.returncode == 0, result.stderr
    return work / "run"


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run, and its checksums."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy, sums(copy)
