"""Run wherever CuPy sees a CUDA device; skipped elsewhere (see conftest.py) with the reason."""
import numpy as np
import pytest

import minivgg as mv
from minivgg import data, models, optim
import minivgg.functional as F

pytestmark = pytest.mark.gpu
TOL = dict(rtol=1e-4, atol=1e-5)


def _both(rng, *shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return mv.tensor(a, requires_grad=True), mv.tensor(a, device="cuda", requires_grad=True)


KERNELS = {
    "conv2d": lambda x, w: F.conv2d(x, w, stride=2, padding=1),
    "conv2d_1x1": lambda x, w: F.conv2d(x, w[:, :, :1, :1]),
    "max_pool2d": lambda x, w: F.max_pool2d(x, 3, 2, 1),
    "relu": lambda x, w: F.relu(x),
    "lrn": lambda x, w: F.local_response_norm(x, 3),
    "linear_ce": lambda x, w: F.cross_entropy(F.linear(F.flatten(x), w.reshape(4, -1)[:, :x.shape[1] * 49]),
                                             mv.tensor([1, 3], device=x.device)),
    "softmax": lambda x, w: F.log_softmax(F.flatten(x)) + F.softmax(F.flatten(x)),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_on_cupy_equals_numpy(name):
    rng = np.random.default_rng(0)
    (x, gx), (w, gw) = _both(rng, 2, 3, 7, 7), _both(rng, 4, 3, 3, 3)
    cpu, gpu = KERNELS[name](x, w), KERNELS[name](gx, gw)
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), **TOL)
    g = rng.standard_normal(cpu.shape).astype(np.float32)
    cpu.backward(mv.tensor(g))
    gpu.backward(mv.tensor(g, device="cuda"))
    for a, b in ((x, gx), (w, gw)):
        if a.grad is not None:
            np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), **TOL)


def test_dropout_on_cupy():
    x = mv.tensor(np.ones((100, 100)), device="cuda")
    mv.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    mv.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)
    assert set(np.unique(a)) == {0.0, 2.0}


def _losses(device, steps=20):
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 8))
    for m in net.modules():
        if isinstance(m, mv.nn.Dropout):
            m.p = 0.0  # the two devices draw different masks; compare without them
    models.initialize(net, (1, 1, 32, 32))  # same weights: drawn on the CPU, then moved
    net.to(device)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * 8, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, steps * 8)
    out = []
    for x, y in data.DataLoader((images, labels), 8, device=device, resize=32):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return np.array(out)


def test_twenty_steps_on_the_gpu_match_the_cpu():
    np.testing.assert_allclose(_losses("cuda"), _losses("cpu"), rtol=1e-3, atol=1e-4)


def test_checkpoint_round_trip_across_devices(tmp_path):
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    models.initialize(net, (1, 1, 32, 32))
    net.to("cuda").eval()
    x = mv.tensor(np.random.default_rng(0).random((2, 1, 32, 32)), device="cuda")
    y = net(x).numpy()
    mv.save(net.state_dict(), tmp_path / "m.npz")
    assert next(net.parameters()).device == "cuda:0"  # saving leaves the model where it was
    cpu = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    cpu.load_state_dict(mv.load(tmp_path / "m.npz"))
    np.testing.assert_allclose(cpu.eval()(x.to("cpu")).numpy(), y, **TOL)
    back = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    back.load_state_dict(mv.load(tmp_path / "m.npz", device="cuda"))
    assert next(back.parameters()).device == "cuda:0"
