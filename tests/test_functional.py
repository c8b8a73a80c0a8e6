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


@pytest.fixture(autouse=True)
def reference_kernels():
    """These tests read the reference kernels (functional.py); tests/test_tiers.py ties the fast tier to them."""
    with mv.kernels("reference"):
        yield


def t64(rng, *shape, requires_grad=True):
    return mv.tensor(rng.standard_normal(shape), dtype="float64", requires_grad=requires_grad)


# ---- im2col / col2im --------------------------------------------------------------------------
def test_im2col_small_example():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    col = F.im2col(x, 3)
    assert col.shape == (9, 4)
    np.testing.assert_array_equal(col[:, 0], [0, 1, 2, 4, 5, 6, 8, 9, 10])
    np.testing.assert_array_equal(col[:, 3], [5, 6, 7, 9, 10, 11, 13, 14, 15])


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (2, 2, 0), ((1, 3), (2, 1), (0, 1)), (5, 3, 2)])
def test_col2im_is_adjoint_of_im2col(kernel, stride, padding, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    col = F.im2col(x, kernel, stride, padding)
    c = rng.standard_normal(col.shape)
    lhs = (col * c).sum()
    rhs = (x * F.col2im(c, x.shape, kernel, stride, padding)).sum()
    assert abs(lhs - rhs) < 1e-9 * max(1.0, abs(lhs))


def test_im2col_on_tensors_has_gradients(rng):
    x = t64(rng, 2, 2, 5, 5)
    assert isinstance(F.im2col(x, 3, 1, 1), mv.Tensor)
    assert mv.gradcheck(lambda a: F.im2col(a, 3, 2, 1), [x])
    c = t64(rng, 2 * 9, 2 * 9)
    assert mv.gradcheck(lambda a: F.col2im(a, (2, 2, 5, 5), 3, 2, 1), [c])


def naive_conv(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, k, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


@pytest.mark.parametrize("ksize,stride,padding", [(3, 1, 1), (1, 1, 0), (7, 2, 3), (3, 2, 0), (5, 1, 2)])
def test_conv2d_matches_naive_loop(ksize, stride, padding, rng):
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, ksize, ksize)), rng.standard_normal(4)
    ours = F.conv2d(mv.tensor(x, dtype="float64"), mv.tensor(w, dtype="float64"), mv.tensor(b, dtype="float64"),
                    stride=stride, padding=padding)
    np.testing.assert_allclose(ours.numpy(), naive_conv(x, w, b, stride, padding), rtol=1e-10, atol=1e-10)


# ---- gradcheck (float64) ----------------------------------------------------------------------
@pytest.mark.parametrize("n,c,h,w,k,kh,kw,stride,padding", [
    (1, 2, 5, 5, 3, 3, 3, 1, 1),
    (2, 3, 7, 6, 2, 3, 3, 2, 0),
    (2, 2, 5, 5, 3, 1, 1, 1, 0),
    (1, 1, 9, 9, 2, 7, 7, 2, 2),
    (2, 2, 6, 7, 2, 2, 3, 1, 2),
])
def test_conv2d_gradcheck(n, c, h, w, k, kh, kw, stride, padding, rng):
    x, wt, b = t64(rng, n, c, h, w), t64(rng, k, c, kh, kw), t64(rng, k)
    assert mv.gradcheck(lambda a, p, q: F.conv2d(a, p, q, stride=stride, padding=padding), [x, wt, b])


def test_conv2d_skips_input_gradient_for_image_batch(rng):
    x = t64(rng, 2, 1, 5, 5, requires_grad=False)
    w = t64(rng, 3, 1, 3, 3)
    y = F.conv2d(x, w, padding=1)
    assert y.creator.saved_tensors == (None,)  # W is only kept to compute dx, and dx is not wanted
    y.sum().backward()
    assert x.grad is None and w.grad is not None


@pytest.mark.parametrize("kernel,stride,padding,h,w", [(2, None, 0, 6, 6), (2, 2, 0, 7, 5), (3, 2, 1, 7, 7),
                                                        (3, 1, 1, 5, 6), ((2, 3), (1, 2), 0, 5, 7)])
def test_max_pool2d_gradcheck(kernel, stride, padding, h, w, rng):
    x = t64(rng, 2, 3, h, w)
    assert mv.gradcheck(lambda a: F.max_pool2d(a, kernel, stride, padding), [x])


def test_max_pool_pads_with_minus_infinity():
    x = mv.tensor(-np.ones((1, 1, 2, 2)) * 5)
    y = F.max_pool2d(x, 3, stride=1, padding=1)
    assert (y.numpy() == -5).all()  # zero padding would wrongly give 0


def test_max_pool_ties_send_gradient_once():
    x = mv.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    g = x.grad.numpy()[0, 0]
    assert g.sum() == 4 and g[0, 0] == 1 and g[0, 1] == 0 and g[1, 0] == 0  # the first maximum of each window


def test_relu_linear_softmax_lrn_gradcheck(rng):
    assert mv.gradcheck(F.relu, [t64(rng, 3, 4)])
    assert mv.gradcheck(lambda a, w, b: F.linear(a, w, b), [t64(rng, 3, 4), t64(rng, 5, 4), t64(rng, 5)])
    assert mv.gradcheck(lambda a, w: F.linear(a, w), [t64(rng, 1, 4), t64(rng, 2, 4)])
    assert mv.gradcheck(lambda a: F.log_softmax(a, dim=1), [t64(rng, 3, 5)])
    assert mv.gradcheck(lambda a: F.softmax(a, dim=1), [t64(rng, 3, 5)])
    assert mv.gradcheck(lambda a: F.local_response_norm(a, size=5, alpha=0.1, beta=0.75, k=2.0), [t64(rng, 2, 7, 3, 2)])
    assert mv.gradcheck(lambda a: F.local_response_norm(a, size=2, alpha=0.5), [t64(rng, 1, 4, 2, 2)])
    assert mv.gradcheck(lambda a: F.flatten(a), [t64(rng, 2, 3, 2, 2)])


def test_cross_entropy_gradcheck_and_value(rng):
    logits = t64(rng, 4, 6)
    labels = mv.tensor(np.array([0, 5, 2, 2]))
    assert mv.gradcheck(lambda a: F.cross_entropy(a, labels), [logits])
    x = logits.numpy()
    expected = -np.mean([x[i, l] - np.log(np.exp(x[i]).sum()) for i, l in enumerate([0, 5, 2, 2])])
    assert abs(F.cross_entropy(logits, labels).item() - expected) < 1e-12


def test_cross_entropy_is_stable_for_huge_logits():
    logits = mv.tensor([[1000.0, 0.0], [0.0, -1000.0]], requires_grad=True)
    loss = F.cross_entropy(logits, mv.tensor([0, 0]))
    assert np.isfinite(loss.item()) and loss.item() < 1e-6
    loss.backward()
    assert np.isfinite(logits.grad.numpy()).all()


def test_dropout_scaling_modes_and_gradcheck(rng):
    x = mv.tensor(np.ones((200, 100)))
    y = F.dropout(x, 0.3)
    kept = y.numpy() != 0
    assert np.allclose(y.numpy()[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01  # 20,000 draws
    assert F.dropout(x, 0.5, training=False).numpy().tolist() == x.numpy().tolist()
    assert (F.dropout(x, 0.0).numpy() == 1).all()
    assert (F.dropout(x, 1.0).numpy() == 0).all()
    xd = t64(rng, 4, 5)

    def fn(a):
        mv.manual_seed(3)  # the same mask at every call, so finite differences are meaningful
        return F.dropout(a, 0.4)
    assert mv.gradcheck(fn, [xd])
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.5)


def test_dropout_repeatable_under_manual_seed():
    x = mv.tensor(np.ones((10, 10)))
    mv.manual_seed(42)
    a = F.dropout(x, 0.5).numpy()
    mv.manual_seed(42)
    b = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)


def test_everything_stays_float32(rng):
    x = mv.tensor(rng.standard_normal((2, 3, 8, 8)), requires_grad=True)
    w = mv.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = mv.tensor(rng.standard_normal(4), requires_grad=True)
    lw = mv.tensor(rng.standard_normal((10, 16)), requires_grad=True)
    h = F.local_response_norm(F.relu(F.conv2d(x, w, b, padding=1)))
    h = F.dropout(F.max_pool2d(h, 4), 0.5)
    logits = F.linear(F.flatten(h), lw)
    for t in (h, logits, F.softmax(logits), F.log_softmax(logits)):
        assert t.dtype == np.float32
    loss = F.cross_entropy(logits, mv.tensor([1, 9]))
    assert loss.dtype == np.float32
    loss.backward()
    for p in (x, w, b, lw):
        assert p.grad.dtype == np.float32


# ---- errors -------------------------------------------------------------------------------------
def test_errors_name_op_and_shapes():
    x = mv.tensor(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"conv2d.*3 channels.*\(2, 3, 8, 8\).*\(4, 2, 3, 3\)"):
        F.conv2d(x, mv.tensor(np.zeros((4, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input.*\(3, 8, 8\)"):
        F.conv2d(mv.tensor(np.zeros((3, 8, 8))), mv.tensor(np.zeros((4, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"max_pool2d: the kernel 2x2 is larger than the padded input 1x1"):
        F.max_pool2d(mv.tensor(np.zeros((1, 1, 1, 1))), 2)
    with pytest.raises(ValueError, match=r"conv2d: the kernel 9x9"):
        F.conv2d(x, mv.tensor(np.zeros((4, 3, 9, 9))))
    logits = mv.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"label 3 is out of range for 3 classes"):
        F.cross_entropy(logits, mv.tensor([0, 3]))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.cross_entropy(logits, mv.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\).*\(4, 5\)"):
        F.linear(logits, mv.tensor(np.zeros((4, 5))))


# ---- against PyTorch, float32, randomized shapes ----------------------------------------------
TOL = dict(rtol=1e-4, atol=1e-5)


def _torch(a, grad=True):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def _same_forward_and_backward(y, ty, pairs, rng, grad_tol=TOL):
    """Back-propagate one random output gradient through both; outputs and input gradients must agree."""
    g = rng.standard_normal(ty.shape).astype(np.float32)
    y.backward(mv.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), **TOL)
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), **grad_tol)


@needs_torch
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), k=st.integers(1, 4), h=st.integers(5, 10), w=st.integers(5, 10),
       ksize=st.sampled_from([1, 2, 3, 5]), stride=st.integers(1, 3), padding=st.integers(0, 2),
       seed=st.integers(0, 2**31))
def test_conv2d_matches_torch(n, c, k, h, w, ksize, stride, padding, seed):
    rng = np.random.default_rng(seed)
    x, wt, b = (rng.standard_normal(s).astype(np.float32) for s in [(n, c, h, w), (k, c, ksize, ksize), (k,)])
    xs, ws, bs = (mv.tensor(a, requires_grad=True) for a in (x, wt, b))
    y = F.conv2d(xs, ws, bs, stride=stride, padding=padding)
    tx, tw, tb = _torch(x), _torch(wt), _torch(b)
    ty = TF.conv2d(tx, tw, tb, stride=stride, padding=padding)
    _same_forward_and_backward(y, ty, [(xs, tx), (ws, tw), (bs, tb)], rng, dict(rtol=1e-4, atol=1e-4))


@needs_torch
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
       ksize=st.integers(1, 3), stride=st.sampled_from([None, 1, 2, 3]), padding=st.integers(0, 1),
       ties=st.booleans(), seed=st.integers(0, 2**31))
def test_max_pool2d_matches_torch(n, c, h, w, ksize, stride, padding, ties, seed):
    if padding > ksize // 2 or h + 2 * padding < ksize or w + 2 * padding < ksize:
        return
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, c, h, w)) if ties else rng.standard_normal((n, c, h, w))
    x = x.astype(np.float32)
    ours_in, tx = mv.tensor(x, requires_grad=True), _torch(x)
    y = F.max_pool2d(ours_in, ksize, stride, padding)
    ty = TF.max_pool2d(tx, ksize, stride, padding)
    _same_forward_and_backward(y, ty, [(ours_in, tx)], rng)


@needs_torch
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), fin=st.integers(1, 20), fout=st.integers(1, 20), classes=st.integers(2, 12),
       seed=st.integers(0, 2**31))
def test_linear_and_cross_entropy_match_torch(n, fin, fout, classes, seed):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in [(n, fin), (fout, fin), (fout,)])
    w2 = rng.standard_normal((classes, fout)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    ours = [mv.tensor(a, requires_grad=True) for a in (x, w, b, w2)]
    theirs = [_torch(a) for a in (x, w, b, w2)]
    loss = F.cross_entropy(F.linear(F.linear(ours[0], ours[1], ours[2]), ours[3]), mv.tensor(labels))
    tloss = TF.cross_entropy(TF.linear(TF.linear(theirs[0], theirs[1], theirs[2]), theirs[3]), torch.tensor(labels))
    loss.backward()
    tloss.backward()
    np.testing.assert_allclose(loss.item(), tloss.item(), **TOL)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), **TOL)


@needs_torch
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 9), size=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_local_response_norm_matches_torch(n, c, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, 3, 4)).astype(np.float32) * 3
    xs, tx = mv.tensor(x, requires_grad=True), _torch(x)
    y = F.local_response_norm(xs, size, alpha=0.01, beta=0.75, k=2.0)
    ty = TF.local_response_norm(tx, size, alpha=0.01, beta=0.75, k=2.0)
    _same_forward_and_backward(y, ty, [(xs, tx)], rng)


@needs_torch
@settings(max_examples=10, deadline=None)
@given(shape=st.sampled_from([(4, 7), (2, 3, 5, 5)]), p=st.sampled_from([0.1, 0.5, 0.9]), seed=st.integers(0, 1000))
def test_dropout_matches_torch_with_the_same_mask(shape, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32) + 10  # nonzero, so the mask is visible in the output
    xs = mv.tensor(x, requires_grad=True)
    mv.manual_seed(seed)
    y = F.dropout(xs, p)
    mask = torch.tensor(y.numpy() != 0)
    tx = _torch(x)
    ty = tx * mask / (1 - p)  # PyTorch's inverted dropout with that mask
    _same_forward_and_backward(y, ty, [(xs, tx)], rng)
