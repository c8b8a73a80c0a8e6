"""The GPU against the CPU. Every test takes `cuda_device` (tests/conftest.py): its body runs on the strict
CuPy stand-in everywhere, and again on the real card where CuPy sees one (those runs carry the `gpu` mark:
`pytest -m gpu` selects them)."""
import numpy as np
import pytest

import minivgg as mv
from minivgg import models, nn
import minivgg.functional as F

TOL = dict(rtol=1e-4, atol=1e-5)


def _both(rng, *shape):
    a = rng.standard_normal(shape).astype(np.float32)
    return mv.tensor(a, requires_grad=True), mv.tensor(a, device="cuda", requires_grad=True)


# x is (2, 3, 7, 7) and w (4, 3, 3, 3), on the same device.
KERNELS = {
    "conv2d": lambda x, w: F.conv2d(x, w, stride=2, padding=1),
    "conv2d_1x1": lambda x, w: F.conv2d(x, w[:, :, :1, :1]),
    "max_pool2d": lambda x, w: F.max_pool2d(x, 3, 2, 1),
    "relu": lambda x, w: F.relu(x),
    "lrn": lambda x, w: F.local_response_norm(x, 3),
    # a 3x3 pooling of stride 2 leaves (2, 3, 3, 3): 27 features, as many as the (4, 27) weight takes
    "linear_ce": lambda x, w: F.cross_entropy(F.linear(F.flatten(F.max_pool2d(x, 3, 2)), w.reshape(4, -1)),
                                             mv.tensor([1, 3], device=x.device)),
    "softmax": lambda x, w: F.log_softmax(F.flatten(x)) + F.softmax(F.flatten(x)),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_kernel_on_cupy_equals_numpy(name, cuda_device):
    rng = np.random.default_rng(0)
    (x, gx), (w, gw) = _both(rng, 2, 3, 7, 7), _both(rng, 4, 3, 3, 3)
    cpu, gpu = KERNELS[name](x, w), KERNELS[name](gx, gw)
    assert gpu.device == "cuda:0" and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), **TOL)
    g = rng.standard_normal(cpu.shape).astype(np.float32)
    cpu.backward(mv.tensor(g))
    gpu.backward(mv.tensor(g, device="cuda"))
    assert x.grad is not None
    for a, b in ((x, gx), (w, gw)):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            assert b.grad.device == "cuda:0"
            np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), **TOL)


def test_dropout_on_cupy(cuda_device):
    x = mv.tensor(np.ones((100, 100)), device="cuda")
    mv.manual_seed(3)
    a = F.dropout(x, 0.5).numpy()
    mv.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), a)  # the device generator is seeded
    assert set(np.unique(a)) == {0.0, 2.0} and 0.4 < (a == 0).mean() < 0.6


def _vgg():
    return models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))


def test_checkpoint_round_trip_across_devices(cuda_device, tmp_path):
    net = models.initialize(_vgg(), (1, 1, 32, 32)).to("cuda").eval()
    x = mv.tensor(np.random.default_rng(0).random((2, 1, 32, 32)), device="cuda")
    y = net(x).numpy()
    mv.save(net.state_dict(), tmp_path / "m.npz")
    assert {p.device for p in net.parameters()} == {"cuda:0"}  # saving leaves the model where it was
    cpu = _vgg()
    cpu.load_state_dict(mv.load(tmp_path / "m.npz"))
    assert {p.device for p in cpu.parameters()} == {"cpu"}
    np.testing.assert_allclose(cpu.eval()(x.to("cpu")).numpy(), y, **TOL)
    # load_state_dict copies each array onto its parameter's current device (as PyTorch's does), so a model
    # goes to the GPU first, and then takes a checkpoint from either device
    for where in ("cuda", "cpu"):
        back = _vgg().to("cuda")
        back.load_state_dict(mv.load(tmp_path / "m.npz", device=where))
        assert {p.device for p in back.parameters()} == {"cuda:0"}, where
        np.testing.assert_allclose(back.eval()(x).numpy(), y, **TOL)


@pytest.mark.parametrize("scheme, output_std", [("kaiming", None), ("normal", None), ("xavier", None),
                                                ("kaiming", 0.01)])
def test_initializers_draw_on_the_device(cuda_device, scheme, output_std):
    """The weights are drawn by the device's own generator: the right spread, repeatable under a seed, and not
    the CPU's numbers (a GPU's generator is another algorithm; copy weights across to compare devices)."""
    def initialized(device):
        mv.manual_seed(0)
        net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)).to(device)
        return models.initialize(net, (1, 1, 32, 32), scheme, device=device, output_std=output_std)

    net, again, cpu = initialized("cuda"), initialized("cuda"), initialized("cpu")
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, m in enumerate(layers):
        w = m.weight.numpy()
        assert m.weight.device == "cuda:0" and m.weight.dtype == np.float32
        assert not m.bias.numpy().any()
        fan_in, fan_out = nn.init.fans(m.weight)
        std = {"kaiming": np.sqrt(2 / fan_in), "normal": 0.01, "xavier": np.sqrt(2 / (fan_in + fan_out))}[scheme]
        if output_std is not None and i == len(layers) - 1:
            std = output_std
        error = 4 / np.sqrt(w.size)  # four standard errors of the sample's mean (in stds) and about its std
        assert abs(w.std() / std - 1) < error and abs(w.mean()) < error * std, (i, w.size, w.mean(), w.std(), std)
    for a, b, c in zip(net.parameters(), again.parameters(), cpu.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        if a.numpy().any():
            assert not np.allclose(a.numpy(), c.numpy())
