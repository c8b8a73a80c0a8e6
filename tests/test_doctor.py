"""`minivgg doctor`: without a GPU it says what is missing and fails; on the strict CuPy stand-in every check
runs and it ends "GPU path OK"; a kernel that computes wrong on the device is named."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minivgg
from minivgg import cli
import minivgg.functional as F

from strict_cupy import MACHINE, DeviceArray, installed

KERNELS = ("conv2d", "conv2d stride 2", "max_pool2d", "relu", "dropout", "linear", "cross_entropy",
           "local_response_norm")
SMALL = ["--size", "32", "--batch", "4"]


@pytest.mark.skipif(minivgg.cuda.is_available(), reason="this machine has a usable GPU")
def test_without_a_gpu_doctor_says_what_is_missing_and_fails():
    result = subprocess.run([sys.executable, "-m", "minivgg", "doctor"], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, MINIVGG_DEBUG=""))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("CuPy:")  # installed or not, with its versions or the import error
    assert lines[-1].startswith("GPU path unavailable: ") and ("CuPy" in lines[-1] or "CUDA" in lines[-1])


@pytest.fixture
def stand_in(monkeypatch):
    with installed(monkeypatch) as fake:
        yield fake


def _doctor(capsys, *args):
    code = cli.main(["doctor", *args])
    return code, capsys.readouterr().out.strip().splitlines()


def test_on_the_stand_in_every_check_runs_and_passes(stand_in, capsys):
    code, lines = _doctor(capsys, *SMALL)
    assert code == 0, "\n".join(lines)
    assert lines[-1] == "GPU path OK"
    assert lines[1].startswith("CuPy:    14.") and "1 CUDA device(s)" in lines[1]
    assert lines[2].startswith("device:  cuda:0, strict CuPy stand-in")
    for name in KERNELS:
        assert any(line.startswith(f"  {name:<20} ok  ") for line in lines), name
    step = next(line for line in lines if "ms per step" in line)
    assert "images/s" in step and "TFLOP/s" in step and "loss" in step
    assert any("GPU memory:" in line and "MiB" in line for line in lines)


@pytest.mark.parametrize("machine, says", [
    (dict(error=35), "cudaErrorInsufficientDriver"),
    (dict(error=100), "cudaErrorNoDevice"),
    (dict(device_count=0), "no CUDA device"),
])
def test_a_machine_without_a_usable_gpu_is_explained(stand_in, capsys, machine, says):
    MACHINE.update(machine)
    code, lines = _doctor(capsys)
    assert code == 1 and lines[-1].startswith("GPU path unavailable: ") and says in lines[-1], lines


def test_a_device_that_does_not_exist_is_named(stand_in, capsys):
    code, lines = _doctor(capsys, "--device", "cuda:3")
    assert code == 1 and "cuda:3 does not exist" in lines[-1], lines


def test_a_kernel_that_computes_wrong_on_the_device_is_named(stand_in, capsys, monkeypatch):
    original = F.ReLUFunction.forward

    def off_on_the_device(self, x):
        y = original(self, x)
        return y * np.float32(1.01) if isinstance(x, DeviceArray) else y

    monkeypatch.setattr(F.ReLUFunction, "forward", off_on_the_device)
    code, lines = _doctor(capsys, *SMALL)
    assert code == 1
    relu = next(line for line in lines if line.strip().startswith("relu "))
    assert "FAILED" in relu and "forward" in relu
    assert lines[-1].startswith("GPU path FAILED: relu") and "bug report" in lines[-1]


def test_a_kernel_that_raises_is_a_finding_not_a_crash(stand_in, capsys, monkeypatch):
    def broken(self, x):
        raise TypeError("cupy.ndarray.max() got an unexpected keyword argument 'initial'")

    monkeypatch.setattr(F.MaxPool2dFunction, "forward", broken)
    code, lines = _doctor(capsys, *SMALL)
    assert code == 1
    pool = next(line for line in lines if line.strip().startswith("max_pool2d "))
    assert "FAILED" in pool and "'initial'" in pool
    assert lines[-1].startswith("GPU path FAILED: max_pool2d, training step")  # the step needs pooling too


@pytest.mark.parametrize("mistake, says", [
    (["--device", "cpu"], "argument --device: doctor checks a GPU"),
    (["--device", "gpu"], "argument --device: must be cpu, cuda or cuda:N"),
    (["--size", "31"], "argument --size: must be an integer >= 32"),
    (["--batch", "0"], "argument --batch: must be an integer >= 1"),
])
def test_doctor_refuses_a_mistake_with_a_usage_error(capsys, mistake, says):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["doctor", *mistake])
    assert stopped.value.code == 2 and says in capsys.readouterr().err


def test_the_readmes_speed_estimate_is_count_flops_arithmetic():
    """README.md, "Training on a GPU", works out a step's FLOPs and a V100's time for it: the same numbers."""
    from minivgg import models

    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md")).read()
    section = readme.split("## Training on a GPU")[1].split("\n## ")[0]
    flops = models.count_flops(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, 224, 224))
    forward = sum(flops.values())
    step = 3 * forward * 128
    for text in (f"{forward / 1e9:.2f} GFLOP per image forward",
                 f"3 x {forward / 1e9:.2f} x 128 = {step / 1e9:.0f} GFLOP", "15.7 TFLOP/s",
                 f"that is {step / 15.7e12 * 1e3:.0f} ms", f"about {round(128 / (step / 15.7e12), -2):,.0f} images/s"):
        assert text.replace("\n", " ") in " ".join(section.split()), text
