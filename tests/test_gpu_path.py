"""The GPU path's promises, checked without a GPU through the strict CuPy stand-in (tests/strict_cupy.py):
complete CUDA extras, CUDA errors that name their cause, exact resume (dropout masks from (seed, epoch,
step)), cuda:N that really runs on device N, out-of-range labels caught without a per-step
synchronization, the TF32 switch, memory figures that mean what they say, and twenty training steps on the
GPU within float32's own rounding of the CPU's."""
import functools
import os
import re

import numpy as np
import pytest

import minivgg as mv
from minivgg import backend, cli, cuda, data, models, nn, optim, train
import minivgg.functional as F

import strict_cupy
from strict_cupy import MACHINE, DeviceArray, installed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = dict(progress=False, print_fn=lambda *a: None)
needs_data = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")


@pytest.fixture
def gpu(monkeypatch):
    with installed(monkeypatch) as fake:
        yield fake


def _dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def _mlp():
    """A small net with dropout, so that resuming depends on the masks."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))


def _setup(device, dataset, seed=3):
    mv.manual_seed(0)
    net = models.initialize(_mlp(), (1, 1, 8, 8), device="cpu").to(device)
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    loader = data.DataLoader(dataset, 16, shuffle=True, device=device, resize=8, seed=seed)
    return net, opt, loader


def _weights(net):
    return [backend.to_numpy(p.data) for p in net.parameters()]


# ---- 3. the CUDA extras bring the CUDA libraries -----------------------------------------------------------
def test_the_cuda_extras_install_cupy_with_its_cuda_libraries():
    """cupy-cudaXXx alone lacks cuBLAS, cuRAND and NVRTC; its `ctk` extra installs them from PyPI."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra, package in (("cuda12", "cupy-cuda12x"), ("cuda13", "cupy-cuda13x")):
        cupy = [r for r in extras[extra] if re.match(rf"{package}\b", r)]
        assert len(cupy) == 1, extras[extra]
        named = re.match(rf"{package}\s*\[([^\]]*)\]", cupy[0])
        assert named and "ctk" in [e.strip() for e in named.group(1).split(",")], cupy[0]


# ---- 4. the CUDA error behind "no device" ------------------------------------------------------------------
@pytest.mark.parametrize("status, name, advice", [
    (35, "cudaErrorInsufficientDriver", r"No NVIDIA driver was found.*nvidia-smi"),  # driver version 0
    (100, "cudaErrorNoDevice", r"found no GPU.*nvidia-smi"),
    (3, "cudaErrorInitializationError", r"nvidia-smi"),
])
def test_a_cuda_error_is_named_with_what_it_means_and_what_to_do(gpu, status, name, advice):
    MACHINE["error"] = status
    assert backend.cuda_is_available() is False and cuda.device_count() == 0  # these never raise
    with pytest.raises(RuntimeError) as caught:
        backend.require_cupy()
    message = str(caught.value)
    assert name in message and strict_cupy.CUDA_ERRORS[status][1] in message
    assert re.search(advice, message), message


def test_an_old_driver_is_told_apart_from_no_driver(gpu, monkeypatch):
    MACHINE["error"] = 35
    monkeypatch.setattr(strict_cupy._Runtime, "driverGetVersion", staticmethod(lambda: 11040))
    with pytest.raises(RuntimeError, match=r"runs CUDA 11\.4 at most\) is older than CUDA 12 needs \(525 or newer\)"
                                           r".*Update the NVIDIA driver"):
        backend.require_cupy()


def test_an_old_driver_under_cuda_13_suggests_the_cuda12_extra(gpu, monkeypatch):
    MACHINE["error"] = 35
    monkeypatch.setattr(strict_cupy._Runtime, "runtimeGetVersion", staticmethod(lambda: 13000))
    monkeypatch.setattr(strict_cupy._Runtime, "driverGetVersion", staticmethod(lambda: 12020))
    with pytest.raises(RuntimeError, match=r'runs CUDA 12\.2 at most\) is older than CUDA 13 needs.*'
                                           r'pip install -e "\.\[cuda12\]"'):
        backend.require_cupy()


def test_the_cli_shows_the_cuda_error(gpu, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MACHINE["error"] = 35
    assert cli.main(["train", "--device", "cuda"]) == 1
    assert "cudaErrorInsufficientDriver" in capsys.readouterr().err


# ---- 5. exact resume: dropout masks depend on (seed, epoch, step) only -------------------------------------
def _straight_and_resumed(device, tmp_path, between=lambda: None):
    dataset = _dataset()
    net, opt, loader = _setup(device, dataset)
    train.fit(net, loader, loader, opt, 2, **QUIET)
    net2, opt2, loader2 = _setup(device, dataset)
    train.fit(net2, loader2, loader2, opt2, 1, out_dir=str(tmp_path), **QUIET)
    net3, opt3, loader3 = _setup(device, dataset)  # a new process: seeded again, as `--resume` does
    start, history = train.restore(str(tmp_path), net3, opt3, device=device)
    between()
    train.fit(net3, loader3, loader3, opt3, 1, start_epoch=start, history=history, **QUIET)
    return net, net3


def test_masks_do_not_depend_on_what_else_drew_random_numbers(tmp_path):
    """On the CPU: the resumed epoch equals the straight one even when other code drew from the generator
    after the checkpoint was restored."""
    straight, resumed = _straight_and_resumed(
        "cpu", tmp_path, between=lambda: backend.get_generator("cpu").random(1000))
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_gpu_resume_is_exact(gpu, tmp_path):
    """One epoch, then one more after a resume, equals two epochs straight, bit for bit, on the device."""
    straight, resumed = _straight_and_resumed("cuda", tmp_path)
    assert all(isinstance(p.data, DeviceArray) for p in resumed.parameters())
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_different_steps_draw_different_masks():
    backend.derive_generators(0, 0, 1)
    a = backend.get_generator("cpu").random(8)
    backend.derive_generators(0, 0, 2)
    b = backend.get_generator("cpu").random(8)
    backend.derive_generators(0, 0, 1)
    np.testing.assert_array_equal(backend.get_generator("cpu").random(8), a)
    assert not np.array_equal(a, b)


def _cli_train(*extra):
    return cli.main(["train", "--ratio", "16", "--resize", "32", "--train-limit", "64", "--limit-batches", "2",
                     "--batch-size", "32", "--no-progress", "--data", data.DEBIAN_DIR, *extra])


@needs_data
def test_cli_resume_on_the_gpu_is_exact(gpu, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _cli_train("--device", "cuda", "--epochs", "2", "--out", str(straight)) == 0
    assert _cli_train("--device", "cuda", "--epochs", "1", "--out", str(split)) == 0
    assert _cli_train("--device", "cuda", "--epochs", "2", "--resume", str(split)) == 0
    a, b = mv.load(straight / "checkpoint.npz"), mv.load(split / "checkpoint.npz")
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=key)


# ---- 6. cuda:N runs on device N ----------------------------------------------------------------------------
def test_cuda_1_trains_on_device_1(gpu):
    MACHINE["device_count"] = 2
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)).to("cuda:1")
    models.initialize(net, (1, 1, 32, 32), device="cuda:1")
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loader = data.DataLoader(_dataset(8), 4, shuffle=True, device="cuda:1", resize=32, flip=True)
    history = train.fit(net, loader, loader, opt, 1, **QUIET)
    assert history["epochs"][0]["test_acc"] >= 0
    assert {p.device for p in net.parameters()} == {"cuda:1"}
    assert {backend.device_of(s["momentum_buffer"]) for s in opt.state.values()} == {"cuda:1"}
    assert strict_cupy._current == [0]  # fit leaves the current device as it found it


def test_the_stand_in_refuses_an_operand_on_another_device(gpu):
    MACHINE["device_count"] = 2
    a = mv.tensor([1.0, 2.0], device="cuda:1")
    with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
        a.data * 2
    with backend.use_device("cuda:1"):
        assert (a + 1).device == "cuda:1"


def test_a_tensor_moves_from_one_gpu_to_another(gpu):
    MACHINE["device_count"] = 2
    a = mv.tensor([1.0, 2.0], device="cuda:0")
    b = a.to("cuda:1")
    assert b.device == "cuda:1" and a.device == "cuda:0"
    np.testing.assert_array_equal(b.numpy(), [1.0, 2.0])


def test_a_device_that_does_not_exist_is_refused(gpu, capsys, tmp_path, monkeypatch):
    MACHINE["device_count"] = 2
    with pytest.raises(ValueError, match=r"cuda:2 does not exist: CuPy sees 2 CUDA devices \(cuda:0 to cuda:1\)"):
        mv.tensor([1.0], device="cuda:2")
    with pytest.raises(ValueError, match=r"cuda:5 does not exist"):
        _mlp().to("cuda:5")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--device", "cuda:2"])
    assert exited.value.code == 2
    assert "argument --device: cuda:2 does not exist: CuPy sees 2 CUDA devices" in capsys.readouterr().err


# ---- 7. out-of-range labels on the device ------------------------------------------------------------------
SYNCING = ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__index__")


def _count_synchronizations(monkeypatch):
    """Count every read of a device value on the host (each one waits for the GPU)."""
    count = [0]
    for name in SYNCING:
        original = getattr(DeviceArray, name)

        def counting(self, *args, _original=original, **kwargs):
            count[0] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(DeviceArray, name, counting)
    return count


def _synchronizations_before_each_step(monkeypatch):
    """A list that gets, before each train_step, the number of host synchronizations so far."""
    synchronizations = _count_synchronizations(monkeypatch)
    seen = []
    original_step = train.train_step

    def step(*args, **kwargs):
        seen.append(synchronizations[0])
        return original_step(*args, **kwargs)
    monkeypatch.setattr(train, "train_step", step)
    return seen


def test_out_of_range_labels_on_the_gpu_raise_by_the_end_of_the_epoch(gpu, monkeypatch):
    images, labels = _dataset(48)
    labels[20] = 12  # in the second of three batches
    net, opt, loader = _setup("cuda", (images, labels))
    loader.shuffle = False
    seen = _synchronizations_before_each_step(monkeypatch)
    with pytest.raises(ValueError, match=r"cross_entropy: label 12 is out of range for 10 classes"):
        train.fit(net, loader, loader, opt, 1, log_every=100, **QUIET)
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]  # no step but the last (logging) one reads


def test_labels_in_range_cost_no_synchronization_per_step(gpu, monkeypatch):
    net, opt, loader = _setup("cuda", _dataset(48))
    seen = _synchronizations_before_each_step(monkeypatch)
    history = {"epochs": [], "points": []}
    train.train_epoch(net, loader, opt, 0, history, progress=False, log_every=100)
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]
    assert len(history["points"]) == 1


def test_out_of_range_labels_on_the_cpu_raise_at_once():
    images, labels = _dataset(48)
    labels[20] = -1
    net, opt, loader = _setup("cpu", (images, labels))
    with pytest.raises(ValueError, match=r"cross_entropy: label -1 is out of range for 10 classes"):
        train.fit(net, loader, loader, opt, 1, **QUIET)


# ---- 9. TF32 -----------------------------------------------------------------------------------------------
def test_set_tf32_sets_what_cupy_reads(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    assert cuda.tf32_enabled() is False
    assert cuda.set_tf32(True) is False
    assert os.environ["CUPY_TF32"] == "1" and cuda.tf32_enabled() is True
    assert cuda.set_tf32(False) is True
    assert os.environ["CUPY_TF32"] == "0" and cuda.tf32_enabled() is False


def test_tf32_is_off_by_default_and_documented():
    train_parser = cli.build_parser().commands["train"]
    assert train_parser.parse_args([]).tf32 is False
    text = train_parser.format_help()
    assert "--tf32" in text and "TF32" in text and "off by default" in " ".join(text.split())


def test_tf32_on_the_cpu_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--tf32"])
    assert exited.value.code == 2
    assert "argument --tf32: TF32 is a mode of NVIDIA GPUs" in capsys.readouterr().err


@needs_data
def test_tf32_on_the_gpu_is_switched_on_and_said(gpu, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.setenv("CUPY_TF32", "0")
    assert _cli_train("--device", "cuda", "--tf32", "--epochs", "1", "--out", str(tmp_path / "run")) == 0
    assert os.environ["CUPY_TF32"] == "1"
    assert "TF32 matrix products" in capsys.readouterr().out.splitlines()[0]


# ---- 10. minivgg.cuda without a GPU, and a real peak ------------------------------------------------------
def test_memory_info_and_synchronize_without_a_gpu(monkeypatch):
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    assert cuda.synchronize() is None
    assert cuda.memory_info() == {"available": False, "used": 0, "total": 0, "peak": 0}


def test_fit_records_the_pools_peak_not_its_last_size(gpu, monkeypatch):
    sizes = iter([100, 900, 400, 300] + [300] * 100)  # the pool grows, then frees blocks

    class Pool:
        def __init__(self):
            self.total = 0

        def used_bytes(self):
            return self.total // 2

        def total_bytes(self):
            self.total = next(sizes)
            return self.total

    pool = Pool()
    monkeypatch.setattr(gpu, "get_default_memory_pool", lambda: pool, raising=False)
    net, opt, loader = _setup("cuda", _dataset(48))
    history = train.fit(net, loader, loader, opt, 1, log_every=1, **QUIET)
    assert history["epochs"][0]["peak_gpu_bytes"] == 900
    info = cuda.memory_info()
    assert info["available"] is True and info["total"] == 300 and info["peak"] == 900
    cuda.reset_peak_memory()
    assert cuda.memory_info()["peak"] == 300


# ---- 11. twenty steps: the GPU within float32's own rounding of the CPU ------------------------------------
# Twenty steps do not merely add up rounding: somewhere a near-tie (two pooled values, a ReLU input near 0) is
# decided by the last bit, and after it the run follows another branch, every parameter moved by far more
# than a rounding (the first convolution's bias, a sum of 8192 nearly cancelling terms, by ~7% of itself).
# So the tolerance is measured, not chosen: the CPU's float32 run against the same steps changed only by
# rounding-sized amounts (in float64; every input pixel one float32 step off, twice), the largest distance
# each parameter shows, times ROUNDING_FACTOR. A gradient 1% off goes beyond it (the test after).
ROUNDING_FACTOR = 4


def _twenty_steps(device, dtype=np.float32, lr_scale=1.0, nudge=None, steps=20):
    """Losses of `steps` SGD steps from weights drawn on the CPU, and the weights after them; `nudge`, a
    generator, moves every input pixel one step of `dtype` up or down at random."""
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 8))
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the two devices draw different masks; compare without them
    models.initialize(net, (1, 1, 32, 32))  # same weights: drawn on the CPU, then moved
    for p in net.parameters():
        p.data = p.data.astype(dtype)
    net.to(device)
    opt = optim.SGD(net.parameters(), lr=0.01 * lr_scale, momentum=0.9)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * 8, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, steps * 8)
    losses = []
    for x, y in data.DataLoader((images, labels), 8, device=device, resize=32):
        x = x.data.astype(dtype)
        if nudge is not None:
            x = np.nextafter(x, np.where(nudge.random(x.shape) < 0.5, -np.inf, np.inf).astype(dtype))
        x = mv.tensor(x, device=device, dtype=dtype)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return dict(losses=np.array(losses), **{name: p.numpy() for name, p in net.named_parameters()})


@functools.lru_cache(maxsize=None)
def _cpu_and_rounding():
    """The CPU's float32 run and, for each parameter (and the losses), the largest distance to it of the runs
    changed by rounding alone; at least one float32 step of its largest value."""
    cpu = _twenty_steps("cpu")
    others = [_twenty_steps("cpu", np.float64)] + [_twenty_steps("cpu", nudge=np.random.default_rng(s))
                                                   for s in (1, 2)]
    spread = {k: max([float(np.abs(o[k] - v).max()) for o in others] + [float(np.spacing(np.abs(v).max()))])
              for k, v in cpu.items()}
    return cpu, spread


def _beyond_rounding(run, cpu, spread):
    """{name: distance / spread} of what `run` puts further from the CPU's than ROUNDING_FACTOR x the spread."""
    ratios = {k: float(np.abs(np.asarray(run[k], dtype=np.float64) - v).max()) / spread[k] for k, v in cpu.items()}
    return {k: r for k, r in ratios.items() if r > ROUNDING_FACTOR}


def test_twenty_steps_on_the_gpu_match_the_cpu(cuda_device):
    """The same weights copied to the device and twenty steps later the same losses and weights, to within
    ROUNDING_FACTOR times what float32's rounding alone does to them on the CPU (measured here, each time)."""
    cpu, spread = _cpu_and_rounding()
    assert _beyond_rounding(_twenty_steps("cuda"), cpu, spread) == {}


def test_twenty_steps_with_a_gradient_one_percent_off_do_not_match():
    """The tolerance leaves room for rounding, not for bugs: every gradient scaled by 1.01 (as a learning rate
    1% high does) puts the losses and most weights beyond it."""
    cpu, spread = _cpu_and_rounding()
    beyond = _beyond_rounding(_twenty_steps("cpu", lr_scale=1.01), cpu, spread)
    assert "losses" in beyond and len(beyond) > len(cpu) // 2, beyond
