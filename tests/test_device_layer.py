"""The device layer: device names read in one place, CuPy imported in one place, random streams that never
share a seed, and `EpochTally`, which decides when a training epoch reads its numbers back from a GPU."""
import ast
import os

import numpy as np
import pytest

import minivgg as mv
from minivgg import backend, cuda, devices, generators
from minivgg.tally import EpochTally

from strict_cupy import MACHINE, STATS, installed

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minivgg")


@pytest.mark.parametrize("text, parsed", [
    ("cpu", ("cpu", None)), (None, ("cpu", None)), (" CPU ", ("cpu", None)),
    ("cuda", ("cuda", 0)), ("cuda:0", ("cuda", 0)), ("Cuda:12", ("cuda", 12)),
])
def test_parse_device(text, parsed):
    assert devices.parse_device(text) == parsed
    assert backend.canonical_device(text) == ("cpu" if parsed[0] == "cpu" else f"cuda:{parsed[1]}")


@pytest.mark.parametrize("text", ["tpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1:2", "cpu:0"])
def test_an_unknown_device_is_named_with_what_to_write(text):
    with pytest.raises(ValueError, match=r"unknown device .*use 'cpu', 'cuda' or 'cuda:N'"):
        devices.parse_device(text)


def _cupy_imports(path):
    """Line numbers of `import cupy...` / `from cupy... import` in the file at `path`."""
    tree = ast.parse(open(path).read())
    names = [(node.lineno, alias.name) for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [(node.lineno, node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    return [line for line, name in names if name == "cupy" or name.startswith("cupy.")]


def test_only_minivgg_cuda_imports_cupy():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and path != os.path.join(PACKAGE, "cuda.py") and _cupy_imports(path):
                offenders.append(os.path.relpath(path, PACKAGE))
    assert not offenders, f"these modules import CuPy; ask minivgg.cuda or minivgg.backend instead: {offenders}"


def test_the_device_layers_public_names_are_importable_from_backend():
    for name in ("get_array_module", "to_device", "to_numpy", "device_of", "array_module_for", "get_generator",
                 "manual_seed", "derive_generators", "generator_state", "set_generator_state",
                 "canonical_device", "parse_device", "use_device", "cuda_index", "device_problem",
                 "cuda_is_available", "require_cupy", "cuda_version", "driver_missing", "STEP_STREAM"):
        assert callable(getattr(backend, name)) or name == "STEP_STREAM", name
    assert mv.cuda.use_device is backend.use_device


def test_every_random_stream_has_its_own_seed_word():
    words = [generators.FLIP_STREAM, generators.AUGMENT_STREAM, generators.STEP_STREAM]
    assert len(set(words)) == len(words)


def test_a_steps_generator_differs_from_the_loaders_augmentation_of_the_same_batch():
    generators.derive_generators(seed=7, epoch=1, step=2)
    step_draws = generators.get_generator("cpu").random(4)
    augment_draws = generators.stream_rng(7, 1, generators.AUGMENT_STREAM, 2).random(4)
    assert not np.allclose(step_draws, augment_draws)


def test_generators_repeat_after_manual_seed():
    mv.manual_seed(5)
    first = backend.get_generator().random(3)
    mv.manual_seed(5)
    np.testing.assert_array_equal(backend.get_generator("cpu").random(3), first)


# ---- EpochTally ------------------------------------------------------------------------------------------
def _step(xp, loss, predicted, labels):
    """What a training step hands the tally: a loss Tensor and the (predicted, true) labels on `xp`."""
    labels = mv.tensor(np.asarray(labels), device="cpu" if xp is np else "cuda")
    return mv.tensor(np.float32(loss), device=labels.device), xp.asarray(np.asarray(predicted)), labels


def test_on_the_cpu_the_tally_reads_every_step():
    tally = EpochTally("cpu", num_batches=5, log_every=2)
    assert [tally.due(step) for step in range(1, 6)] == [True] * 5
    assert [tally.logging(step) for step in range(1, 6)] == [False, True, False, True, True]
    tally.add(*_step(np, 2.0, [1, 2], [1, 0]), classes=10)
    tally.add(*_step(np, 1.0, [3, 3], [3, 3]), classes=10)
    assert tally.read("here") == pytest.approx((1.5, 1.0, 0.75))
    assert tally.totals() == pytest.approx((1.5, 0.75, 4))


def test_an_empty_epoch_reads_zeros():
    assert EpochTally("cpu", num_batches=0, log_every=20).totals() == (0.0, 0.0, 0)


@pytest.fixture
def gpu(monkeypatch):
    with installed(monkeypatch) as fake:
        yield fake


def test_on_a_gpu_the_tally_reads_at_logging_steps_only_and_once_each(gpu):
    tally = EpochTally("cuda:0", num_batches=5, log_every=2)
    assert [tally.due(step) for step in range(1, 6)] == [False, True, False, True, True]
    steps = [_step(gpu, 2.0, [1, 2], [1, 0]), _step(gpu, 1.0, [3, 3], [3, 3])]
    before = STATS["sync"]
    for step in steps:
        tally.add(*step, classes=10)
    assert STATS["sync"] == before  # adding never waits for the GPU
    assert tally.read("here") == pytest.approx((1.5, 1.0, 0.75))
    assert STATS["sync"] == before + 1
    assert tally.totals() == pytest.approx((1.5, 0.75, 4)) and STATS["sync"] == before + 2


def test_on_a_gpu_the_labels_are_checked_when_read(gpu):
    tally = EpochTally("cuda:0", num_batches=5, log_every=2)
    tally.add(*_step(gpu, 1.0, [0, 1], [1, 12]), classes=10)  # CuPy would wrap label 12 around
    with pytest.raises(ValueError, match=r"cross_entropy: label 12 is out of range for 10 classes \(in step 1; "
                                         r"on a GPU the labels are checked when the loss is read, every 2 steps"):
        tally.read("in step 1")


def test_on_a_gpu_each_read_notes_the_memory_pools_high_water_mark(gpu, monkeypatch):
    noted = []
    monkeypatch.setattr(cuda, "memory_info", lambda: noted.append(1))
    tally = EpochTally("cuda:0", num_batches=1, log_every=1)
    tally.add(*_step(gpu, 1.0, [0], [0]), classes=10)
    tally.read("here")
    assert noted == [1]


def test_a_gpu_that_cannot_be_used_is_refused_with_the_reason(gpu):
    MACHINE.update(device_count=0)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        EpochTally("cuda:0", num_batches=1, log_every=1)
