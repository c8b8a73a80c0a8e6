"""The GPU code path, run without a GPU: a full VGG training step with `xp` replaced by a strict NumPy
stand-in that refuses every name real CuPy (14.x, recorded in tests/cupy_api.json) lacks and every
keyword its signatures lack, refuses implicit host copies and NumPy/device mixing, counts transfers and
host synchronizations, and draws other random numbers than NumPy. Each strictness has a test here that
shows the stand-in refusing or counting it."""
import inspect

import numpy as np
import pytest

import minivgg

import minivgg as mv
from minivgg import autograd, data, fast_cpu, models, nn, optim, train
import minivgg.functional as F

from strict_cupy import API, STATS, SYNCS, CupyRefusal, DeviceArray, installed


@pytest.fixture
def strict(monkeypatch):
    with installed(monkeypatch) as fake:
        original = autograd.Function.__call__

        def checked(self, *inputs):
            for t in inputs:
                if isinstance(t, mv.Tensor):
                    assert isinstance(t.data, DeviceArray), f"{self.name} received a host array {t.shape}"
            out = original(self, *inputs)
            assert isinstance(out.data, DeviceArray), f"{self.name} produced a host array"
            return out
        monkeypatch.setattr(autograd.Function, "__call__", checked)
        yield fake


def test_the_recorded_api_is_cupy_14():
    assert API["cupy_version"].startswith("14.")
    for name in ("zeros", "empty", "maximum", "where", "ascontiguousarray", "zeros_like", "float32"):
        assert name in API["cupy"]
    assert "permutation" not in API["cupy.random.Generator"]  # so the loader shuffles on the host


def test_the_stand_in_refuses_what_cupy_refuses(strict):
    a = strict.zeros((2, 3), dtype=np.float32)
    with pytest.raises(AttributeError, match="no attribute 'errstate'"):
        strict.errstate
    with pytest.raises(CupyRefusal, match="implicit conversion"):
        np.asarray(a)
    with pytest.raises(CupyRefusal, match="mixed"):
        a + np.ones((2, 3), dtype=np.float32)
    with pytest.raises(AttributeError, match="has no attribute 'resize'"):
        a.resize
    assert isinstance(a.sum(), DeviceArray) and isinstance(a + 1, DeviceArray)


def _batches(n=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def test_vgg_training_step_on_strict_cupy(strict):
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)).to("cuda")
    models.initialize(net, (1, 1, 32, 32), device="cuda")
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loader = data.DataLoader(_batches(), 4, shuffle=True, device="cuda", resize=32, flip=True,
                             normalize=(0.5, 0.5))
    for images, labels in loader:
        assert isinstance(images.data, DeviceArray) and images.shape == (4, 1, 32, 32)
        assert images.dtype == np.float32 and labels.device == "cuda:0"
        STATS.update(device_to_host=0, sync=0)
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad()
        for step in loss.backward_steps():
            for g in [step.grad_output] + [g for g in step.grad_inputs if g is not None]:
                assert isinstance(g, DeviceArray), f"{step.op}: a gradient left the device"
        opt.step()
        assert STATS["device_to_host"] == 0  # nothing copied back to the host in forward/backward/update
        assert STATS["sync"] == 0, SYNCS  # and nothing made the host wait for the device
    for name, p in net.named_parameters():
        assert isinstance(p.data, DeviceArray) and p.dtype == np.float32, name
        assert isinstance(p.grad.data, DeviceArray), name
    for state in opt.state.values():
        assert isinstance(state["momentum_buffer"], DeviceArray)


def test_fit_and_checkpoint_on_strict_cupy(strict, tmp_path):
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)).to("cuda"), (1, 1, 32, 32),
                            device="cuda")
    opt = optim.Adam(net.parameters(), lr=1e-3)
    loader = data.DataLoader(_batches(), 4, device="cuda", resize=32)
    history = train.fit(net, loader, loader, opt, 1, out_dir=str(tmp_path), progress=False, print_fn=lambda *a: None)
    assert history["epochs"][0]["test_acc"] >= 0
    state = mv.load(tmp_path / "checkpoint.npz")  # saved from the device, loaded on the host
    assert all(type(a) is np.ndarray for a in state["model"].values())
    assert all(isinstance(p.data, DeviceArray) for p in net.parameters())  # the model stayed on its device
    cpu_net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    cpu_net.load_state_dict(state["model"])
    assert all(type(p.data) is np.ndarray for p in cpu_net.parameters())


def test_every_kernel_runs_on_strict_cupy(strict):
    rng = np.random.default_rng(0)
    x = mv.tensor(rng.standard_normal((2, 3, 7, 7)), device="cuda", requires_grad=True)
    w = mv.tensor(rng.standard_normal((4, 3, 3, 3)), device="cuda", requires_grad=True)
    y = F.conv2d(x, w, stride=2, padding=1)
    y = F.local_response_norm(F.relu(y), size=3)
    y = F.max_pool2d(y, 3, stride=1, padding=1)
    y = F.dropout(F.flatten(y), 0.3)
    logits = F.linear(y, mv.tensor(rng.standard_normal((5, y.shape[1])), device="cuda", requires_grad=True))
    loss = F.cross_entropy(logits, mv.tensor([1, 4], device="cuda")) + F.log_softmax(logits).sum() * 0 \
        + F.softmax(logits).sum() * 0
    loss.backward()
    assert isinstance(x.grad.data, DeviceArray) and isinstance(w.grad.data, DeviceArray)
    col = F.im2col(x.data, 3, 1, 1)
    assert isinstance(F.col2im(col, x.shape, 3, 1, 1), DeviceArray)


def test_mixed_devices_name_both(monkeypatch):
    with installed(monkeypatch):  # without the fixture's check that every input is on the device
        _check_mixed_devices()


def _check_mixed_devices():
    a = mv.tensor([1.0, 2.0], device="cuda")
    b = mv.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"Add: inputs are on different devices \(cuda:0 \(2,\), cpu \(2,\)\)"):
        a + b
    assert (a + 1).device == "cuda:0" and a.to("cpu").device == "cpu"
    assert type(a.numpy()) is np.ndarray


# ---- keywords: the stand-in refuses what CuPy's signatures refuse ------------------------------------------
def test_cupy_itself_refuses_these_keywords():
    """What real CuPy 14 said when record_cupy_api.py made these calls (its argument parsing runs without a GPU)."""
    probes = API["probes"]
    for call, keyword in (("x.max(initial=0)", "initial"), ("x.sum(where=True)", "where"),
                          ("cupy.multiply(x, x, where=True)", "where")):
        assert probes[call].startswith("refused") and keyword in probes[call], (call, probes[call])
    assert probes["x.max(axis=0, keepdims=True)"] == "accepted"
    assert "initial" not in API["signatures"]["cupy.ndarray.max"]
    assert "where" not in API["signatures"]["cupy.ndarray.sum"] + API["signatures"]["cupy.multiply"]


@pytest.mark.parametrize("call", list(API["probes"]))
def test_the_stand_in_answers_each_probe_as_cupy_did(strict, call):
    x = strict.zeros((2, 3), dtype=np.float32)
    if API["probes"][call] == "accepted":
        eval(call, {"cupy": strict, "x": x})
    else:
        with pytest.raises(CupyRefusal, match="unexpected keyword argument"):
            eval(call, {"cupy": strict, "x": x})


@pytest.mark.parametrize("call, names", [
    ("x.max(initial=0)", r"cupy\.ndarray\.max\(\) .*'initial'"),
    ("x.sum(where=x > 0)", r"cupy\.ndarray\.sum\(\) .*'where'"),
    ("cupy.multiply(x, x, where=x > 0)", r"cupy\.multiply\(\) .*'where'"),
    ("np.multiply(x, x, where=x > 0)", r"cupy\.multiply\(\) .*'where'"),       # NumPy's ufunc on device arrays
    ("np.sum(x, where=x > 0)", r"cupy\.sum\(\) .*'where'"),                     # NumPy's function on device arrays
    ("np.maximum.reduce(x, initial=0)", r"cupy\.ufunc\.reduce\(\) .*'initial'"),
    ("cupy.add.at(x, ([0], [1]), 1.0, where=True)", r"cupy\.ufunc\.at\(\) .*'where'"),
    ("cupy.zeros((2,), cupy.float32, 'C', 0)", r"cupy\.zeros\(\).*too many positional"),
    ("x.reshape(6, order='C', copy=None, subok=True)", r"cupy\.ndarray\.reshape\(\) .*'subok'"),
])
def test_a_refused_keyword_names_the_function_and_the_keyword(strict, call, names):
    x = strict.ones((2, 3), dtype=np.float32)
    with pytest.raises(CupyRefusal, match=names):
        eval(call, {"cupy": strict, "np": np, "x": x})


def test_ufunc_methods_are_cupys(strict):
    x = mv.tensor(np.arange(4, dtype=np.float32), device="cuda", requires_grad=True)
    x[strict.asarray(np.array([0, 0, 3]))].sum().backward()  # a gather's backward adds with cupy.add.at
    np.testing.assert_array_equal(x.grad.numpy(), [2, 0, 0, 1])
    assert strict.maximum.reduce(strict.ones(3)).ndim == 0 and strict.add.nin == 2
    with pytest.raises(AttributeError, match="cupy.ufunc has no attribute 'signature'"):
        strict.add.signature


def test_reductions_and_elements_stay_on_the_device(strict):
    x = strict.arange(6, dtype=np.float32).reshape(2, 3)
    for value in (x.sum(), x.max(), x.argmax(), x[1, 2], x.mean(), next(iter(x[0]))):
        assert isinstance(value, DeviceArray) and value.ndim == 0  # CuPy's 0-d arrays, never NumPy scalars
    assert STATS["sync"] == 0


# ---- synchronizations: every way a value reaches the host is counted ---------------------------------------
@pytest.mark.parametrize("read, kind", [
    (lambda x: x.get(), "get()"),
    (lambda x: x.sum().item(), "item()"),
    (lambda x: x.tolist(), "tolist()"),
    (lambda x: float(x.sum()), "float()"),
    (lambda x: int(x.argmax()), "int()"),
    (lambda x: complex(x.sum()), "complex()"),
    (lambda x: bool(x.any()), "bool()"),
    (lambda x: "yes" if x.all() else "no", "bool()"),  # `if array:`
    (lambda x: f"{x.sum():.3f}", "format()"),
    (lambda x: repr(x), "repr()"),
    (lambda x: str(x), "str()"),
    (lambda x: mv.Tensor(x).sum().item(), "item()"),
    (lambda x: mv.Tensor(x).numpy(), "get()"),
])
def test_each_host_read_is_counted_as_one_synchronization(strict, read, kind):
    x = strict.ones((2, 3), dtype=np.float32)
    STATS["sync"] = 0
    SYNCS.clear()
    read(x)
    assert STATS["sync"] == 1 and SYNCS == [kind]


def test_a_device_array_is_not_a_python_integer(strict):
    n = strict.asarray(np.int64(3))
    for use in (lambda: range(n), lambda: [0, 1, 2, 3][n], lambda: strict.ones(5)[:n]):
        with pytest.raises(CupyRefusal, match="no __index__"):
            use()


def _step_setup(dropout=0.5):
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)).to("cuda")
    models.initialize(net, (1, 1, 32, 32), device="cuda")
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = dropout
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loader = data.DataLoader(_batches(), 4, device="cuda", resize=32)
    return net, opt, loader


@pytest.mark.parametrize("clip", [None, 1e6, 1e-3])
def test_a_training_step_synchronizes_only_for_the_clipping_norm(strict, clip):
    """Forward, backward and the update only queue work on the device: no synchronization. Clipping must
    know the gradients' joint norm on the host to decide whether to scale them: one synchronization per step
    (the norms of all gradients are combined on the device and read once), whether it then scales (max norm
    1e-3) or not (1e6)."""
    net, opt, loader = _step_setup()
    for images, labels in loader:
        STATS.update(sync=0)
        SYNCS.clear()
        loss, _ = train.train_step(net, images, labels, opt, clip_grad_norm=clip)
        assert SYNCS == ([] if clip is None else ["float()"])
        loss.item()  # reading the loss is the caller's choice, and costs one more
        assert STATS["sync"] == (1 if clip is None else 2)


@pytest.mark.parametrize("norm_type", [2, float("inf")])
@pytest.mark.parametrize("max_norm", [1e6, 1e-3])
def test_clipping_reads_the_joint_norm_once(strict, norm_type, max_norm):
    net, opt, loader = _step_setup()
    images, labels = next(iter(loader))
    F.cross_entropy(net(images), labels).backward()
    STATS.update(sync=0)
    SYNCS.clear()
    norm = nn.utils.clip_grad_norm_(net.parameters(), max_norm, norm_type)
    assert SYNCS == ["float()"] and isinstance(norm, float)
    assert (norm > max_norm) == (max_norm < 1)  # both ways through: scaled, and left alone


# ---- random numbers: the device's generator is not NumPy's ---------------------------------------------------
def test_the_device_generator_draws_other_numbers_than_numpy(monkeypatch):
    with installed(monkeypatch) as fake:  # without the `strict` check, which refuses the CPU half
        cpu = np.random.default_rng(0).random(5, dtype=np.float32)
        a, b = fake.random.default_rng(0), fake.random.default_rng(0)
        drawn = a.random(5, dtype=np.float32)
        assert isinstance(drawn, DeviceArray) and drawn.dtype == np.float32
        np.testing.assert_array_equal(drawn.get(), b.random(5, dtype=np.float32).get())  # seeded: repeatable
        assert not np.allclose(drawn.get(), cpu)  # but not NumPy's numbers for that seed
        mv.manual_seed(0)
        on_cpu = F.dropout(mv.tensor(np.ones((20, 20), dtype=np.float32)), 0.5).numpy()
        on_gpu = F.dropout(mv.tensor(np.ones((20, 20), dtype=np.float32), device="cuda"), 0.5).numpy()
        assert (on_cpu != on_gpu).any()  # the same seed masks other units on each device


def test_the_device_generator_has_cupys_methods_and_signatures_only(strict):
    rng = strict.random.default_rng(0)
    assert "normal" not in API["cupy.random.Generator"]
    with pytest.raises(AttributeError, match="no method 'normal'"):
        rng.normal(0.0, 1.0, 3)
    with pytest.raises(CupyRefusal, match=r"Generator\.random\(\) .*'endpoint'"):
        rng.random(3, endpoint=True)
    assert rng.uniform(0, 1, 3, dtype=np.float32).dtype == np.float32  # CuPy's uniform takes a dtype
    assert rng.standard_normal((2, 2), dtype=np.float32).shape == (2, 2)


# ---- layout: the device runs the reference kernels, in NCHW ------------------------------------------------
@pytest.mark.parametrize("tier", ["fast", "reference"])
def test_the_device_runs_the_reference_kernels_in_c_contiguous_nchw(monkeypatch, tier):
    def trap(*args, **kwargs):
        raise AssertionError("a fast CPU kernel ran")

    for variant in minivgg.tiers.registered_variants().values():
        for method in ("forward", "backward"):
            if method in vars(variant):
                monkeypatch.setattr(variant, method, trap)
    for name, value in list(vars(fast_cpu).items()):
        if inspect.isfunction(value) and value.__module__ == fast_cpu.__name__:
            monkeypatch.setattr(fast_cpu, name, trap)
    rng = np.random.default_rng(0)
    with installed(monkeypatch), mv.kernels(tier):
        x = mv.tensor(rng.standard_normal((2, 3, 9, 9)), device="cuda", requires_grad=True)
        w = mv.tensor(rng.standard_normal((5, 3, 3, 3)), device="cuda", requires_grad=True)
        b = mv.tensor(rng.standard_normal(5), device="cuda", requires_grad=True)
        y = F.conv2d(x, w, b, padding=1)
        assert type(y.creator) is F.Conv2dFunction and y.shape == (2, 5, 9, 9)
        assert isinstance(y.data, DeviceArray) and y.data.flags.c_contiguous
        assert y.data.strides == (5 * 9 * 9 * 4, 9 * 9 * 4, 9 * 4, 4)  # N, C, H, W from the slowest
        p = F.max_pool2d(F.relu(y), 2)
        assert type(p.creator) is F.MaxPool2dFunction and p.shape == (2, 5, 4, 4) and p.data.flags.c_contiguous
        z = F.linear(F.flatten(p), mv.tensor(rng.standard_normal((3, 80)), device="cuda", requires_grad=True))
        assert type(z.creator) is F.LinearFunction
        z.sum().backward()
        assert x.grad.shape == x.shape and isinstance(w.grad.data, DeviceArray)
        if tier == "fast":  # the trap is armed: on the CPU this tier does reach the fast kernels
            with pytest.raises(AssertionError, match="fast CPU kernel"):
                F.conv2d(mv.tensor(rng.standard_normal((1, 3, 5, 5)).astype(np.float32)),
                         mv.tensor(rng.standard_normal((2, 3, 3, 3)).astype(np.float32)))
