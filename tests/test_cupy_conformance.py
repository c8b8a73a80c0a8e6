"""The GPU code path, run without a GPU: a full VGG training step with `xp` replaced by a strict NumPy
stand-in that refuses every name real CuPy (14.x, recorded in tests/cupy_api.json) lacks, refuses
implicit host copies and NumPy/device mixing, and counts transfers."""
import numpy as np
import pytest

import minivgg as mv
from minivgg import autograd, data, models, optim, train
import minivgg.functional as F

from strict_cupy import API, STATS, CupyRefusal, DeviceArray, installed


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
        loss = F.cross_entropy(net(images), labels)
        opt.zero_grad()
        STATS["device_to_host"] = 0
        for step in loss.backward_steps():
            for g in [step.grad_output] + [g for g in step.grad_inputs if g is not None]:
                assert isinstance(g, DeviceArray), f"{step.op}: a gradient left the device"
        opt.step()
        assert STATS["device_to_host"] == 0  # nothing copied back to the host in forward/backward/update
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
