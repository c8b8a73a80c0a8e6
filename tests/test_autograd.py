import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg.ops import sum_to
try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


def t64(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return mv.tensor(a, dtype="float64", requires_grad=True)


# Each case: name, function of tensors (works for minivgg and torch), input shapes, positive inputs?
CASES = [
    ("add_broadcast", lambda a, b: a + b, [(3, 4), (4,)], False),
    ("add_broadcast_keepdim", lambda a, b: a + b, [(3, 1, 5), (1, 4, 1)], False),
    ("sub", lambda a, b: a - b, [(2, 3), (2, 1)], False),
    ("mul_broadcast", lambda a, b: a * b, [(2, 3, 4), (3, 1)], False),
    ("div", lambda a, b: a / b, [(3, 4), (1, 4)], True),
    ("pow", lambda a: a ** 3, [(3, 4)], False),
    ("pow_frac", lambda a: a ** 0.5, [(5,)], True),
    ("neg", lambda a: -a, [(3,)], False),
    ("matmul", lambda a, b: a @ b, [(3, 4), (4, 5)], False),
    ("matmul_batched", lambda a, b: a @ b, [(2, 3, 4), (4, 5)], False),
    ("matmul_vec", lambda a, b: a @ b, [(3, 4), (4,)], False),
    ("vec_matmul", lambda a, b: a @ b, [(4,), (4, 5)], False),
    ("exp", lambda a: a.exp(), [(3, 4)], False),
    ("log", lambda a: a.log(), [(3, 4)], True),
    ("sqrt", lambda a: a.sqrt(), [(3, 4)], True),
    ("tanh", lambda a: a.tanh(), [(3, 4)], False),
    ("sigmoid", lambda a: a.sigmoid(), [(3, 4)], False),
    ("sum_all", lambda a: a.sum(), [(3, 4)], False),
    ("mean_axis", lambda a: a.mean(axis=1), [(3, 4, 2)], False),
    ("sum_keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True), [(3, 4, 2)], False),
    ("reshape", lambda a: a.reshape(4, 3) * 2, [(3, 4)], False),
    ("transpose", lambda a: a.transpose(2, 0, 1) * 1, [(2, 3, 4)], False),
    ("getitem_slice", lambda a: a[1:, ::2] * 1, [(3, 4)], False),
]


def _torch_apply(fn, arrays):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*[_TorchAdapter(t) for t in ts])
    return out.t, ts


class _TorchAdapter:
    """Gives a torch tensor the NumPy-style method names used in CASES."""

    def __init__(self, t):
        self.t = t

    def _w(self, other):
        return other.t if isinstance(other, _TorchAdapter) else other

    def __add__(self, o): return _TorchAdapter(self.t + self._w(o))
    def __sub__(self, o): return _TorchAdapter(self.t - self._w(o))
    def __mul__(self, o): return _TorchAdapter(self.t * self._w(o))
    def __truediv__(self, o): return _TorchAdapter(self.t / self._w(o))
    def __pow__(self, o): return _TorchAdapter(self.t ** o)
    def __neg__(self): return _TorchAdapter(-self.t)
    def __matmul__(self, o): return _TorchAdapter(self.t @ self._w(o))
    def __getitem__(self, i): return _TorchAdapter(self.t[i])
    def exp(self): return _TorchAdapter(self.t.exp())
    def log(self): return _TorchAdapter(self.t.log())
    def sqrt(self): return _TorchAdapter(self.t.sqrt())
    def tanh(self): return _TorchAdapter(self.t.tanh())
    def sigmoid(self): return _TorchAdapter(self.t.sigmoid())
    def sum(self, axis=None, keepdims=False):
        return _TorchAdapter(self.t.sum() if axis is None else self.t.sum(dim=axis, keepdim=keepdims))
    def mean(self, axis=None, keepdims=False):
        return _TorchAdapter(self.t.mean() if axis is None else self.t.mean(dim=axis, keepdim=keepdims))
    def reshape(self, *s): return _TorchAdapter(self.t.reshape(*s))
    def transpose(self, *axes): return _TorchAdapter(self.t.permute(*axes))


@pytest.mark.parametrize("name,fn,shapes,positive", CASES, ids=[c[0] for c in CASES])
def test_gradcheck_every_op(name, fn, shapes, positive, rng):
    inputs = [t64(rng, *s, positive=positive) for s in shapes]
    assert mv.gradcheck(fn, inputs)


@needs_torch
@pytest.mark.parametrize("name,fn,shapes,positive", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_float64(name, fn, shapes, positive, rng):
    inputs = [t64(rng, *s, positive=positive) for s in shapes]
    arrays = [t.numpy() for t in inputs]
    ours = fn(*inputs)
    theirs, theirs_in = _torch_apply(fn, arrays)
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-12)
    g = rng.standard_normal(ours.shape)
    ours.backward(mv.tensor(g, dtype="float64"))
    theirs.backward(torch.tensor(g))
    for a, b in zip(inputs, theirs_in):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-5, atol=1e-12)


def test_max_gradient_split_between_ties_like_torch_amax():
    x = mv.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], requires_grad=True)
    x.amax(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0.5, 0.5], [1, 0, 0]])
    assert mv.gradcheck(lambda a: a.amax(dim=0), [t64(np.random.default_rng(1), 3, 4)])
    if torch is not None:
        tx = torch.tensor([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]], requires_grad=True)
        torch.amax(tx, dim=1).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_getitem_integer_array_accumulates_repeats(rng):
    x = t64(rng, 5, 3)
    assert mv.gradcheck(lambda a: a[np.array([0, 2, 2, 4])], [x])
    y = mv.tensor(np.arange(4.0), requires_grad=True)
    y[np.array([1, 1, 3])].sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0, 2, 0, 1])


def test_getitem_boolean_mask(rng):
    x = t64(rng, 4, 3)
    mask = x.data > 0
    assert mv.gradcheck(lambda a: a[mask], [x])


def test_concatenate_stack_broadcast_flatten(rng):
    a, b = t64(rng, 2, 3), t64(rng, 4, 3)
    assert mv.gradcheck(lambda p, q: mv.concatenate([p, q], axis=0), [a, b])
    c, d = t64(rng, 2, 3), t64(rng, 2, 3)
    assert mv.gradcheck(lambda p, q: mv.stack([p, q], axis=1), [c, d])
    assert mv.gradcheck(lambda p: mv.broadcast_to(p, (4, 2, 3)), [c])
    e = t64(rng, 2, 3, 4)
    assert mv.flatten(e).shape == (24,)
    assert mv.gradcheck(lambda p: p.flatten(1), [e])


def test_functions_and_methods_agree(rng):
    x = t64(rng, 3, 4, positive=True)
    for name in ["exp", "log", "sqrt", "tanh", "sigmoid", "sum", "mean", "max"]:
        np.testing.assert_allclose(getattr(mv, name)(x).numpy(), getattr(x, name)().numpy())
    np.testing.assert_allclose(mv.matmul(x, x.T).numpy(), (x @ x.T).numpy())


def test_sum_to_reverses_broadcasting():
    g = np.ones((2, 3, 4))
    assert sum_to(g, (3, 1)).shape == (3, 1)
    assert sum_to(g, (3, 1))[0, 0] == 8


def test_deep_chain_does_not_recurse():
    x = mv.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert abs(x.grad.item() - 1.0001 ** 10_000) < 1e-2 * 1.0001 ** 10_000


def test_reused_tensor_accumulates():
    x = mv.tensor(3.0, requires_grad=True)
    y = x * x + x  # x used three times
    y.backward()
    assert x.grad.item() == 7.0
    z = x * 2  # a second backward adds to .grad, as in PyTorch
    z.backward()
    assert x.grad.item() == 9.0


def test_graph_freed_unless_retained():
    x = mv.tensor(2.0, requires_grad=True)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 8.0
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_only_inputs_that_require_grad_get_gradients():
    x = mv.tensor([1.0, 2.0])  # like an image batch: no gradient wanted
    w = mv.tensor([3.0, 4.0], requires_grad=True)
    (x * w).sum().backward()
    assert x.grad is None
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0])
    y = x * 2
    assert not y.requires_grad and y.creator is None


def test_no_grad_records_nothing():
    w = mv.tensor([1.0], requires_grad=True)
    with mv.no_grad():
        y = w * 2
    assert not y.requires_grad and y.creator is None
    assert mv.is_grad_enabled()


def test_retain_grad_and_hooks():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    seen = []
    h.register_hook(lambda g: seen.append(g.numpy().copy()))
    handle = x.register_hook(lambda g: g * 10)  # replaces the gradient
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), [6.0, 12.0])
    np.testing.assert_array_equal(seen[0], [6.0, 12.0])
    np.testing.assert_array_equal(x.grad.numpy(), [180.0, 360.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_non_leaf_has_no_grad_by_default():
    x = mv.tensor([1.0], requires_grad=True)
    h = x * 2
    (h * h).sum().backward()
    assert h.grad is None and x.grad is not None


def test_tensor_factory_dtypes_and_properties():
    assert mv.tensor([1.0, 2.0]).dtype == np.float32
    assert mv.tensor(np.zeros(3)).dtype == np.float32  # float inputs default to float32
    assert mv.tensor([1, 2]).dtype == np.int64
    assert mv.tensor([1.0], dtype="float64").dtype == np.float64
    t = mv.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.shape == (1, 2) and t.device == "cpu" and t.requires_grad
    assert isinstance(t.numpy(), np.ndarray) and t.numpy() is not t.data
    assert t.to("cpu") is t and t.to("cuda:0" if False else "cpu") is t
    assert t.detach().creator is None and not t.detach().requires_grad
    assert mv.tensor(3.5).item() == 3.5


def test_float32_stays_float32():
    x = mv.tensor(np.ones((2, 3)), requires_grad=True)
    y = ((x * 0.5 + 1) / 3 - 2.0) ** 2
    z = y.exp().log().sqrt().tanh().sigmoid().mean()
    assert y.dtype == np.float32 and z.dtype == np.float32
    z.backward()
    assert x.grad.dtype == np.float32


def test_comparisons_give_plain_boolean_tensors():
    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x > 1.5
    assert m.dtype == np.bool_ and not m.requires_grad
    np.testing.assert_array_equal(m.numpy(), [False, True, True])
    assert (x == x).all()


def test_error_messages_name_shapes():
    a, b = mv.tensor(np.ones((2, 3))), mv.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        a + b
    y = mv.tensor(np.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="pass grad="):
        y.backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        mv.tensor([1.0]).sum().backward()


def test_backward_with_explicit_grad():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(mv.tensor([1.0, 0.5]))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_gradcheck_reports_a_wrong_gradient(rng):
    class WrongSquare(mv.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, gy):
            return gy * 3 * self.x  # should be 2x

    x = t64(rng, 3)
    with pytest.raises(mv.GradcheckError, match="numerical") as info:
        mv.gradcheck(lambda a: WrongSquare()(a), [x])
    assert "input 0" in str(info.value)
    with pytest.raises(mv.GradcheckError):
        mv.gradcheck(lambda a: WrongSquare()(a), [x], mode="directional")
    assert mv.gradcheck(lambda a: a * a, [t64(rng, 50, 40)], mode="directional")


def test_manual_seed_repeats_random_streams():
    mv.manual_seed(7)
    a = mv.backend.get_generator("cpu").random(5)
    mv.manual_seed(7)
    b = mv.backend.get_generator("cpu").random(5)
    np.testing.assert_array_equal(a, b)


def test_cuda_request_without_gpu_is_clear():
    if mv.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="cpu"):
        mv.tensor([1.0]).to("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        mv.tensor([1.0]).to("gpu")


def test_import_is_light():
    code = ("import sys, minivgg, minivgg.functional; "
            "bad = [m for m in ('matplotlib', 'tqdm', 'cupy', 'torch', 'graphviz') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_loads_only_the_engine():
    """The other submodules load on first use of `minivgg.<name>` (see minivgg/__init__.py)."""
    lazy = ["cli", "cpu", "data", "fast_cpu", "functional", "inspection", "models", "nn", "optim", "plotting",
            "recipe", "serialization", "train"]
    code = ("import sys, minivgg; "
            f"early = [m for m in {lazy!r} if 'minivgg.' + m in sys.modules]; "
            "assert not early, early; "
            "bad = [m for m in ('matplotlib', 'tqdm', 'cupy', 'torch', 'concurrent.futures') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_changes_nothing_in_the_process():
    """`import minivgg` sets no environment variable and starts no thread; cpu.tune() is explicit."""
    code = ("import os, threading; before = dict(os.environ); n = threading.active_count(); import minivgg; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
            "assert threading.active_count() == n and minivgg.cpu._pool is None")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_the_graph_does_not_hold_an_array_that_no_backward_step_needs():
    """The ReLU keeps its output for backward, so its input (the product before it) is freed after
    forward; backward still reaches the product's maker through the Edge and gives the right gradient."""
    import weakref

    from minivgg import functional as F
    from minivgg.autograd import Edge

    x = mv.tensor(np.array([-1.0, 0.5, 2.0], dtype=np.float32), requires_grad=True)
    h = x * 3.0
    held = weakref.ref(h)
    y = F.relu(h)
    link = y.creator.inputs[0]
    assert isinstance(link, Edge) and link.tensor() is h and link.shape == (3,)
    del h
    assert held() is None and link.tensor() is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 3.0, 3.0])


def test_hooks_and_retain_grad_on_a_tensor_nobody_holds_still_fire():
    """A module's forward may register a hook on an intermediate tensor and return without it: its maker
    keeps it, as PyTorch keeps hooks on the grad_fn."""
    x = mv.tensor(np.array([1.0, -2.0], dtype=np.float32), requires_grad=True)
    seen = []

    def forward(t):
        h = t * 2.0
        h.register_hook(lambda g: seen.append(g.numpy().copy()))
        return (h * h).sum()

    forward(x).backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [4.0, -8.0])  # d(h^2)/dh = 2h
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, -16.0])


def test_the_package_imports_without_circles():
    """Every import statement in minivgg/, at any depth (one inside a function too), read statically:
    no module reaches itself again."""
    import ast
    import pathlib

    package = pathlib.Path(mv.__file__).parent
    modules = {".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}

    def reaches_itself(start):
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == start:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    assert graph["minivgg.function"] <= {"minivgg.backend"}
    assert [m for m in graph if reaches_itself(m)] == []


class Square(mv.Function):
    """x -> x * x, a custom Function written as a user would."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, gy):
        x, = self.saved_tensors
        return 2 * x * gy


def test_a_custom_function_works_and_may_return_extra_none_gradients(rng):
    class Scale(mv.Function):
        def forward(self, x, factor):
            self.factor = factor
            return x * factor

        def backward(self, gy):
            return gy * self.factor, None, None  # one more than inputs: allowed, as in PyTorch

    assert mv.gradcheck(lambda a: Square()(a), [t64(rng, 3)])
    x = t64(rng, 3)
    y = Scale()(Square()(x), 3.0)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


@pytest.mark.parametrize("shape", [(1,), (3, 3)])
def test_a_gradient_of_the_wrong_shape_is_an_error_naming_the_op(shape):
    class MyOp(mv.Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return np.ones(shape, dtype=gy.dtype)

    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    expected = (f"Function MyOpBackward returned an invalid gradient at index 0 - got {list(shape)} but "
                "expected shape compatible with [3]")
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        MyOp()(x).sum().backward()


def test_too_few_gradients_is_an_error_naming_the_op():
    class MyOp(mv.Function):
        def forward(self, a, b):
            return a * b

        def backward(self, gy):
            return gy  # one gradient for two inputs

    a = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = mv.tensor([4.0, 5.0, 6.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape(
            "function MyOpBackward returned an incorrect number of gradients (expected 2, got 1)")):
        MyOp()(a, b).sum().backward()


def test_too_many_gradients_and_a_non_float_gradient_are_errors():
    class TooMany(mv.Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy, gy

    class Integer(mv.Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return (gy > 0).astype(np.int64)

    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape("TooManyBackward returned an incorrect number of gradients "
                                                     "(expected 1, got 2)")):
        TooMany()(x).sum().backward()
    with pytest.raises(RuntimeError, match="IntegerBackward returned an invalid gradient at index 0 - expected "
                                           "dtype float32 but got int64"):
        Integer()(x).sum().backward()


def test_a_float64_gradient_for_a_float32_input_is_cast_as_in_pytorch():
    class Wide(mv.Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.astype(np.float64) * 2

    x = mv.tensor([1.0, 2.0], requires_grad=True)
    Wide()(x).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_every_input_is_an_edge():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2.0) * x
    edges = y.creator.inputs
    assert [e.is_leaf for e in edges] == [False, True]
    assert edges[0].creator.name == "Mul" and edges[1].tensor() is x and edges[1].creator is None
    assert repr(edges[1]) == "Edge(leaf, shape=(2,))"


def test_an_op_needs_a_tensor_among_its_inputs():
    with pytest.raises(TypeError, match="Tensor"):
        mv.exp(np.ones(3))
