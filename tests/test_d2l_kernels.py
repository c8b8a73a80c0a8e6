"""The kernels D2L's chapters around VGG add: average pooling, adaptive average pooling (NiN), sigmoid and tanh
(LeNet), MSE loss, and the ops behind the new Tensor methods (max/min along a dim, topk, sort, abs, var/std,
norm, casts, clone). Each gradient-checked in float64, compared with PyTorch on drawn shapes, float32 kept
float32, and run on the strict CuPy stand-in GPU against the CPU."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minivgg as mv
import minivgg.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


def t64(rng, *shape):
    return mv.tensor(rng.standard_normal(shape), dtype="float64", requires_grad=True)


# ---- gradcheck (float64) ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,stride,padding,h,w", [(2, None, 0, 6, 6), (3, 2, 1, 7, 6), ((2, 3), (1, 2), 0, 5, 7),
                                                       (3, 1, 1, 4, 4)])
def test_avg_pool2d_gradcheck(kernel, stride, padding, h, w, rng):
    assert mv.gradcheck(lambda a: F.avg_pool2d(a, kernel, stride, padding), [t64(rng, 2, 3, h, w)])


@pytest.mark.parametrize("output_size,h,w", [((1, 1), 5, 6), (2, 5, 5), ((3, 4), 7, 6), ((None, 2), 3, 5),
                                             (4, 3, 3)])
def test_adaptive_avg_pool2d_gradcheck(output_size, h, w, rng):
    assert mv.gradcheck(lambda a: F.adaptive_avg_pool2d(a, output_size), [t64(rng, 2, 2, h, w)])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradcheck(reduction, rng):
    assert mv.gradcheck(lambda a, b: F.mse_loss(a, b, reduction), [t64(rng, 3, 4), t64(rng, 3, 4)])


@pytest.mark.parametrize("name,fn", [
    ("sigmoid", F.sigmoid), ("tanh", F.tanh), ("abs", lambda a: a.abs()), ("clone", lambda a: a.clone()),
    ("max(dim)", lambda a: a.max(dim=1).values), ("min(dim, keepdim)", lambda a: a.min(0, keepdim=True)[0]),
    ("topk", lambda a: a.topk(2, dim=1)[0]), ("sort", lambda a: a.sort(dim=0, descending=True)[0]),
    ("take_along_dim", lambda a: mv.take_along_dim(a, mv.tensor([[0, 0, 2, 1]]), 1)),  # a repeated index adds up
    ("var", lambda a: a.var(dim=1)), ("std", lambda a: a.std()), ("norm", lambda a: a.norm(dim=0)),
    ("norm p=1", lambda a: a.norm(p=1)),
    ("squeeze/unsqueeze/permute", lambda a: a.unsqueeze(0).permute(2, 0, 1).squeeze()),
    ("to float32 and back", lambda a: a.float().double() * 1),
])
def test_new_ops_gradcheck(name, fn, rng):
    x = t64(rng, 3, 4)
    if name.startswith("abs"):
        x.data[np.abs(x.data) < 0.1] += 0.5  # |x| has a corner at 0
    if name.startswith("to float32"):  # float32 rounding: a looser check
        assert mv.gradcheck(fn, [x], eps=1e-2, atol=1e-3, rtol=1e-3)
    else:
        assert mv.gradcheck(fn, [x])


def test_abs_at_zero_sends_no_gradient_as_torch():
    x = mv.tensor([0.0, -1.0, 2.0], requires_grad=True)
    x.abs().sum().backward()
    assert x.grad.tolist() == [0.0, -1.0, 1.0]


# ---- against PyTorch, on drawn shapes ------------------------------------------------------------------------
@needs_torch
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 3),
       stride=st.integers(1, 3), pad=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
def test_avg_pool2d_matches_torch(n, c, h, w, k, stride, pad, seed):
    pad = min(pad, k // 2)
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    ours = mv.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, ty = F.avg_pool2d(ours, k, stride, pad), TF.avg_pool2d(theirs, k, stride, pad)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    y.backward(mv.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 5), ow=st.integers(1, 5),
       seed=st.integers(0, 2 ** 16))
def test_adaptive_avg_pool2d_matches_torch(h, w, oh, ow, seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w)).astype(np.float32)
    ours = mv.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, ty = F.adaptive_avg_pool2d(ours, (oh, ow)), TF.adaptive_avg_pool2d(theirs, (oh, ow))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    y.backward(mv.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("fn,tfn", [(F.sigmoid, torch.sigmoid if torch else None),
                                    (F.tanh, torch.tanh if torch else None)], ids=["sigmoid", "tanh"])
def test_sigmoid_and_tanh_match_torch_even_far_out(fn, tfn):
    x = np.array([-1000.0, -30.0, -2.0, 0.0, 0.5, 30.0, 1000.0], dtype=np.float32)
    ours, theirs = mv.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = fn(ours), tfn(theirs)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---- dtypes and errors -------------------------------------------------------------------------------------
def test_new_kernels_keep_float32(rng):
    x = mv.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    outputs = [F.avg_pool2d(x, 2), F.adaptive_avg_pool2d(x, 1), F.sigmoid(x), F.tanh(x),
               F.mse_loss(x, mv.zeros(2, 3, 6, 6)), x.max(dim=1)[0], x.topk(2)[0], x.std(), x.norm(), x.abs()]
    for y in outputs:
        assert y.dtype == np.float32
        x.grad = None
        y.sum().backward()
        assert x.grad.dtype == np.float32


def test_errors_name_the_op_the_value_and_the_fix():
    x = mv.zeros(1, 1, 4, 4)
    cases = [
        (lambda: F.avg_pool2d(mv.zeros(4, 4), 2), ValueError,
         r"avg_pool2d: expected a 4-D input \(N, C, H, W\), got shape \(4, 4\)"),
        (lambda: F.avg_pool2d(x, 5), ValueError, r"avg_pool2d: the kernel 5x5 is larger than the padded input 4x4"),
        (lambda: F.avg_pool2d(x, 2, padding=2), ValueError,
         r"avg_pool2d: padding \(2, 2\) must be at most half the kernel"),
        (lambda: F.adaptive_avg_pool2d(x, 0), ValueError, "adaptive_avg_pool2d: output_size must be a positive int"),
        (lambda: mv.nn.AdaptiveAvgPool2d(0), ValueError,
         "AdaptiveAvgPool2d: output_size must be a positive int, got 0"),
        (lambda: mv.nn.AvgPool2d(3, padding=2), ValueError, "AvgPool2d: padding must be at most half of kernel_size"),
        (lambda: F.mse_loss(x, mv.zeros(1, 1, 4, 4, dtype=mv.float64)), TypeError,
         "mse_loss: input and target must be floats of one dtype"),
        (lambda: mv.nn.Softmax()(x), ValueError, r"Softmax: give the axis, e.g. nn.Softmax\(dim=1\)"),
        (lambda: x.topk(5, dim=3), ValueError, "topk: k must be between 1 and the size 4 of dim 3, got 5"),
        (lambda: x.norm(p=3), ValueError, "norm: p must be 2, 'fro' or 1, got 3"),
        (lambda: x.permute(0, 1), ValueError, r"permute: dims \(0, 1\) must name each of the 4 axes"),
        (lambda: x.t(), ValueError, r"t\(\): expects a tensor with at most 2 dimensions, got shape \(1, 1, 4, 4\)"),
        (lambda: mv.take_along_dim(x, mv.zeros(1, 1, 1, 4), 2), TypeError, "take_along_dim: indices must be integers"),
        (lambda: x.max(mv.zeros(1)), TypeError,
         r"max\(x, other\): the elementwise max of two tensors is not in minivgg"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message) as info:
            call()
        assert "\n" not in str(info.value)


# ---- on the GPU (the strict CuPy stand-in, and a card where there is one) ------------------------------------
GPU_CASES = {
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, 2, 1),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
    "sigmoid+tanh": lambda x: F.sigmoid(x) * F.tanh(x),
    "mse_loss": lambda x: F.mse_loss(x, x.detach() * 0.5),
    "max(dim)": lambda x: x.max(dim=1)[0],
    "topk+sort": lambda x: x.topk(2, dim=3)[0].sum() + x.sort(dim=2)[0].sum(),
    "var+std+norm": lambda x: x.var(dim=1) + x.std(dim=1) + x.norm(dim=1),
    "abs+clone+cast": lambda x: x.abs().clone().double().float(),
}


@pytest.mark.parametrize("name", list(GPU_CASES))
def test_new_kernels_on_the_gpu_equal_the_cpu(name, cuda_device, rng):
    fn = GPU_CASES[name]
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    results = []
    for device in ("cpu", cuda_device.device):
        t = mv.tensor(x, device=device, requires_grad=True)
        y = fn(t)
        y.sum().backward()
        assert y.device == t.device == t.grad.device
        results.append((y.numpy(), t.grad.numpy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_makers_on_the_gpu(cuda_device):
    device = mv.device(cuda_device.device)
    for t in [mv.zeros(2, 3, device=device), mv.ones(2, device="cuda"), mv.full((2,), 3, device=device),
              mv.arange(5, device=device), mv.linspace(0, 1, 3, device=device), mv.eye(2, device=device),
              mv.randn(2, 3, device=device), mv.rand(size=(2,), device=device), mv.randint(0, 4, (3,), device=device),
              mv.normal(mv.zeros(3, device=device), 1.0), mv.zeros_like(mv.ones(2, device=device))]:
        assert t.device == "cuda:0" == device
    x = mv.randn(3, 4, device=device)
    assert float(x.sum()) == pytest.approx(float(x.cpu().sum()), rel=1e-5, abs=1e-5)
    assert x.max(dim=1).indices.tolist() == x.cpu().max(dim=1).indices.tolist()
    assert x.to(mv.float64).device == "cuda:0" and x.to("cpu", mv.float64).device == "cpu"
