"""In-place ops as PyTorch has them: they write into the tensor's own array, keep its dtype, bump its
version, and an engine that refuses to compute a gradient from a saved array changed since forward."""
import numpy as np
import pytest

import minivgg as mv
import minivgg.functional as F

VERSION_ERROR = "one of the variables needed for gradient computation has been modified by an inplace operation"


def test_d2l_sgd_from_scratch_updates_the_weights():
    """D2L's linear regression from scratch: `param -= lr * param.grad` inside no_grad(), then zero_()."""
    rng = np.random.default_rng(0)
    features = mv.tensor(rng.standard_normal((100, 2)))
    labels = features @ mv.tensor([[2.0], [-3.4]]) + 4.2
    w = mv.tensor(rng.normal(0, 0.01, (2, 1)), requires_grad=True)
    b = mv.tensor(np.zeros(1), requires_grad=True)
    arrays = (w.data, b.data)

    def sgd(params, lr, batch_size):
        with mv.no_grad():
            for param in params:
                param -= lr * param.grad / batch_size
                param.grad.zero_()

    for _ in range(200):
        loss = ((features @ w + b - labels) ** 2 / 2).sum()
        loss.backward()
        sgd([w, b], lr=0.1, batch_size=100)
    assert w.data is arrays[0] and b.data is arrays[1]  # updated in place, not rebound
    assert w.dtype == np.float32 and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.numpy().ravel(), [2.0, -3.4], atol=1e-3)
    np.testing.assert_allclose(b.numpy(), [4.2], atol=1e-3)
    assert not w.grad.numpy().any() and w._version == 200


def test_grad_is_a_tensor_that_zero_clears_without_touching_other_gradients():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    b = mv.tensor([3.0, 4.0], requires_grad=True)
    c = mv.tensor([[1.0, 2.0]], requires_grad=True)
    ((a + b).sum() + c.sum()).backward()  # a and b get the same upstream array; c's is a broadcast view
    assert isinstance(a.grad, mv.Tensor)
    assert a.grad.zero_() is a.grad
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])
    c.grad.zero_()
    np.testing.assert_array_equal(c.grad.numpy(), [[0.0, 0.0]])


@pytest.mark.parametrize("change", [
    lambda w: w.add_(1.0),
    lambda w: w.sub_(1.0, alpha=2),
    lambda w: w.mul_(2.0),
    lambda w: w.div_(2.0),
    lambda w: w.zero_(),
    lambda w: w.fill_(3.0),
    lambda w: w.copy_(mv.tensor([1.0, 2.0])),
    lambda w: w.__setitem__(0, 5.0),
    lambda w: w.__isub__(1.0),
], ids=["add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "setitem", "isub"])
def test_a_leaf_that_requires_grad_refuses_in_place_changes_outside_no_grad(change):
    w = mv.tensor([1.0, 2.0], requires_grad=True)
    message = "a leaf Variable that requires grad is being used in an in-place operation."
    with pytest.raises(RuntimeError, match=message):
        change(w)
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert w._version == 0
    with mv.no_grad():
        result = change(w)  # allowed there: the optimizer's update
    assert result is w or result is None
    assert w._version == 1 and w.is_leaf and w.requires_grad


def test_in_place_ops_write_the_same_array_and_keep_the_dtype():
    x = mv.tensor([1.0, 2.0, 3.0])
    array = x.data
    x += 1
    x -= mv.tensor([1.0, 1.0, 1.0], dtype="float64")  # a float64 operand: the float32 tensor stays float32
    x *= 2
    x /= 4
    x.add_(mv.tensor([2.0, 2.0, 2.0]), alpha=0.5)
    x[1] = 7
    assert x.data is array and x.dtype == np.float32 and x._version == 6
    np.testing.assert_array_equal(x.numpy(), [1.5, 7.0, 2.5])
    counts = mv.tensor([1, 2, 3])
    counts += 2
    counts[0] = 1.9  # item assignment casts, as in PyTorch
    np.testing.assert_array_equal(counts.numpy(), [1, 4, 5])
    assert counts.dtype == np.int64


def test_a_float_result_into_an_integer_tensor_is_refused():
    counts = mv.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="result type Double can't be cast to the desired output type Long"):
        counts += 1.5
    with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
        counts.div_(2)
    np.testing.assert_array_equal(counts.numpy(), [1, 2, 3])


def test_a_result_larger_than_the_tensor_is_refused():
    x = mv.tensor([0.0, 0.0, 0.0])
    with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the broadcast shape \[2, 3\]"):
        x += mv.tensor(np.ones((2, 3)))


def test_changing_a_saved_input_of_mul_in_place_makes_backward_refuse():
    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = mv.tensor([4.0, 5.0, 6.0], requires_grad=True)
    y = (x * w).sum()
    with mv.no_grad():
        w.mul_(10)  # Mul saved w for x's gradient
    with pytest.raises(RuntimeError, match=VERSION_ERROR) as error:
        y.backward()
    assert "which is input 1 of MulBackward, is at version 1; expected version 0 instead" in str(error.value)


@pytest.mark.parametrize("tier", ["reference", "fast"])
def test_changing_the_saved_output_of_relu_in_place_makes_backward_refuse(tier):
    x = mv.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    with mv.kernels(tier):
        y = F.relu(x * 1.0)
    y.add_(1.0)  # recorded as an Add in the graph; ReLU's saved output has changed
    with pytest.raises(RuntimeError, match=VERSION_ERROR) as error:
        y.sum().backward()
    assert "which is output 0 of ReLUBackward, is at version 1; expected version 0 instead" in str(error.value)


@pytest.mark.parametrize("tier", ["reference", "fast"])
def test_changing_a_convolution_weight_in_place_makes_backward_refuse(tier):
    rng = np.random.default_rng(0)
    x = mv.tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
    w = mv.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with mv.kernels(tier):
        y = F.conv2d(x, w, padding=1)
    with mv.no_grad():
        w.sub_(0.1)  # an update between forward and backward: x's gradient would use the new weight
    with pytest.raises(RuntimeError, match=VERSION_ERROR) as error:
        y.sum().backward()
    assert "of Conv2dBackward" in str(error.value)


def test_a_detached_tensor_shares_the_version_and_so_does_a_view():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    y.detach().zero_()
    with pytest.raises(RuntimeError, match="output 0 of ExpBackward, is at version 1"):
        y.sum().backward()
    w = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with mv.no_grad():
        w[1:].zero_()  # a view: the change reaches w, and w's version
    np.testing.assert_array_equal(w.numpy(), [1.0, 0.0, 0.0])
    assert w._version == 1


def test_writes_to_data_are_raw_access_without_a_version():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    y.data[...] = 0  # as in PyTorch: bypasses the check, so the gradient uses the changed values
    y.sum().backward()
    assert y._version == 0
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_the_right_gradient_flows_through_recorded_in_place_ops():
    x = mv.tensor([1.0, -2.0, 3.0], requires_grad=True, dtype="float64")
    h = x * 2.0
    h.add_(1.0)
    h.mul_(3.0)
    h[0] = 0.0
    assert h.creator.name == "SetItem" and h._version == 3
    (h * h).sum().backward()
    expected = 2 * (3 * (2 * x.numpy() + 1)) * 3 * 2  # d(h^2)/dx where h = 3 (2x + 1)
    expected[0] = 0.0
    np.testing.assert_allclose(x.grad.numpy(), expected)
    a = mv.tensor(np.arange(1.0, 4.0), dtype="float64", requires_grad=True)
    assert mv.gradcheck(_in_place_chain, [a])


def _in_place_chain(a):
    h = a.exp()
    h = h * 1.0  # exp saves its output: change a copy, not that
    h.sub_(a, alpha=2.0)
    h.div_(3.0)
    h[1] = a[0] * a[2]
    return h


def test_nothing_modified_gives_the_same_gradient_as_before():
    rng = np.random.default_rng(1)
    x = mv.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = mv.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    with mv.kernels("reference"):
        F.relu(F.linear(x, w)).sigmoid().sum().backward()
    z = x.numpy() @ w.numpy().T
    s = 1 / (1 + np.exp(-np.maximum(z, 0)))
    gz = s * (1 - s) * (z > 0)
    np.testing.assert_allclose(w.grad.numpy(), gz.T @ x.numpy(), rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), gz @ w.numpy(), rtol=1e-5)


def test_an_in_place_op_on_a_view_is_refused_while_recording():
    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1.0
    with pytest.raises(RuntimeError, match="in-place operation on a view of another tensor"):
        h[1:].add_(1.0)
    with pytest.raises(RuntimeError, match="in-place operation on a view of another tensor"):
        x[0:2].zero_()
