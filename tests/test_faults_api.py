"""APIs that refuse what PyTorch refuses and get right what PyTorch gets right: optimizers given one tensor or
a parameter twice, clip_grad_norm_ given one tensor, hooks that change a gradient's shape or type, a float64
gradient for a float32 tensor, in-place products with a tensor that requires grad; and the data loader's
and layers' arguments checked when they are given."""
import numpy as np
import pytest

import minivgg as mv
from minivgg import data, models, nn, optim


def _param(values):
    return nn.Parameter(mv.Tensor(np.asarray(values, dtype=np.float32)))


# ---- 10. optimizers and clip_grad_norm_ ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [optim.SGD, optim.Adam])
def test_an_optimizer_given_one_parameter_is_a_type_error(make):
    p = _param([1.0, 2.0])
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable of "
                                        "Tensors or dicts, but got a single Parameter"):
        make(p, lr=0.1)


def test_an_optimizer_refuses_a_parameter_given_twice_and_what_is_no_tensor():
    p, q = _param([1.0]), _param([2.0])
    with pytest.raises(ValueError, match="a parameter appears twice in the list"):
        optim.SGD([p, q, p], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors, but one of the params is float"):
        optim.SGD([p, 1.0], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts, but got int"):
        optim.SGD(3, lr=0.1)


def test_clip_grad_norm_takes_one_tensor_as_pytorch_does():
    p = _param([6.0, 8.0])
    p.grad = mv.Tensor(np.array([6.0, 8.0], dtype=np.float32))
    total = nn.utils.clip_grad_norm_(p, 1.0)
    assert total == pytest.approx(10.0)
    np.testing.assert_allclose(p.grad.data, [0.6, 0.8], rtol=1e-5)


def test_against_pytorch():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.tensor([6.0, 8.0]))
    p.grad = torch.tensor([6.0, 8.0])
    assert float(torch.nn.utils.clip_grad_norm_(p, 1.0)) == pytest.approx(10.0)
    with pytest.raises(TypeError, match="params argument given to the optimizer should be an iterable"):
        torch.optim.SGD(p, lr=0.1)


# ---- 10. hooks, backward's gradient, in-place products ---------------------------------------------------------
def test_a_hook_that_changes_the_gradients_shape_or_type_is_refused():
    x = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    handle = x.register_hook(lambda g: mv.Tensor(np.ones(2, dtype=np.float32)))
    with pytest.raises(RuntimeError, match="has changed the size of value: it returned shape \\[2\\], the "
                                           "gradient has shape \\[3\\]"):
        (x * 2).sum().backward()
    handle.remove()
    x.register_hook(lambda g: mv.Tensor(g.data.astype(np.float64)))
    with pytest.raises(RuntimeError, match="has changed the type of value"):
        (x * 2).sum().backward()


def test_a_float64_gradient_for_a_float32_leaf_is_cast():
    x = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    x.backward(mv.Tensor(np.full(3, 2.0)))  # float64
    assert x.grad.dtype == np.float32 and x.grad.data.tolist() == [2.0, 2.0, 2.0]
    y = mv.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    (y * 3).backward(np.ones(3))
    assert y.grad.dtype == np.float32


@pytest.mark.parametrize("op", ["mul_", "div_"])
def test_an_in_place_product_with_a_tensor_that_requires_grad(op):
    torch = pytest.importorskip("torch")
    values = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    others = np.array([2.0, 4.0, -0.5], dtype=np.float32)
    grads = []
    for lib, make in ((mv, lambda v: mv.Tensor(v.copy(), requires_grad=True)),
                      (torch, lambda v: torch.tensor(v.copy(), requires_grad=True))):
        x, z = make(values), make(others)
        y = x * 1
        getattr(y, op)(z)
        (y * y).sum().backward()
        grads.append([np.asarray(t.grad.data if lib is mv else t.grad.numpy()) for t in (x, z)])
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
