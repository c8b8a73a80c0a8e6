"""PyTorch habits that work as they do in PyTorch: submodules reached as attributes without importing them,
`nn.Parameter(tensor)`, `mv.tensor(tensor)` copying, and the printed form of tensors, modules and state dicts
(compared with torch's own output on the same values where torch is installed)."""
import collections
import inspect
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import nn

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


# ---- submodules on first use ---------------------------------------------------------------------------
def test_submodules_and_their_names_work_without_importing_them():
    code = ("import minivgg as mv; "
            "mv.optim.SGD, mv.data.DataLoader, mv.train.fit, mv.nn.init.uniform_, mv.inspection.draw_graph, "
            "mv.models.vgg, mv.recipe.build_model, mv.cpu.parallel, mv.fast_cpu, mv.functional.conv2d, "
            "mv.serialization, mv.plotting, mv.summary, mv.save, mv.load; "
            "from minivgg import optim, data, summary; "
            "assert optim is mv.optim and summary is mv.models.summary and mv.save is mv.serialization.save")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dir_lists_the_names_loaded_on_first_use():
    names = dir(mv)
    for name in ["optim", "data", "train", "nn", "models", "inspection", "recipe", "cpu", "fast_cpu", "gradcheck",
                 "functional", "summary", "save", "load", "Tensor", "tensor"]:
        assert name in names


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'minivgg' has no attribute 'optimizers'"):
        mv.optimizers  # noqa: B018
    assert not hasattr(mv, "optimizers")


def test_gradcheck_is_the_function_as_in_torch_autograd(rng):
    x = mv.tensor(rng.standard_normal((2, 3)), dtype="float64", requires_grad=True)
    assert mv.gradcheck(lambda a: (a * a).sum(), [x]) is True
    from minivgg.gradcheck import GradcheckError, gradcheck
    assert gradcheck is mv.gradcheck and GradcheckError is mv.GradcheckError
    assert list(inspect.signature(mv.gradcheck).parameters)[:2] == ["fn", "inputs"]


# ---- Parameter and tensor from a tensor --------------------------------------------------------------
def test_parameter_from_a_tensor_shares_its_array_and_starts_a_leaf():
    t = mv.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert p.data is t.data and p.requires_grad and p.is_leaf and p.dtype == np.float32
    q = nn.Parameter(p)
    assert q.data is p.data and isinstance(q, nn.Parameter)
    made = mv.tensor([1.0, 2.0], requires_grad=True) * 3
    r = nn.Parameter(made)
    assert r.is_leaf and r.creator is None and r.tolist() == [3.0, 6.0]
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(mv.tensor([1, 2]))


def test_parameter_from_a_tensor_is_learned_by_a_module():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(mv.tensor([2.0]))

        def forward(self, x):
            return x * self.w

    m = Scale()
    assert [name for name, _ in m.named_parameters()] == ["w"]
    m(mv.tensor([3.0])).sum().backward()
    mv.optim.SGD(m.parameters(), lr=0.5).step()
    assert m.w.tolist() == [0.5]


def test_tensor_of_a_tensor_is_a_copy():
    source = mv.tensor([[1.0, 2.0]], dtype="float64", requires_grad=True)
    copy = mv.tensor(source)
    assert not np.shares_memory(copy.data, source.data)
    assert copy.dtype == np.float64 and not copy.requires_grad and copy.is_leaf  # as torch.tensor(t)
    source.data[0, 0] = 5.0
    assert copy.tolist() == [[1.0, 2.0]]
    assert mv.tensor(source, dtype="float32").dtype == np.float32
    p = nn.Parameter(np.ones(2, dtype=np.float32))
    assert type(mv.tensor(p)) is mv.Tensor and not np.shares_memory(mv.tensor(p).data, p.data)


# ---- printing ----------------------------------------------------------------------------------------
def test_tensor_repr_literals():
    assert repr(mv.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mv.tensor([1.0, 2.0], requires_grad=True)) == "tensor([1., 2.], requires_grad=True)"
    assert repr(mv.tensor(3.0)) == "tensor(3.)"
    assert repr(mv.tensor([1.5, 2.25, -3.0])) == "tensor([ 1.5000,  2.2500, -3.0000])"
    assert repr(mv.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(mv.tensor([1, 2], dtype="int32")) == "tensor([1, 2], dtype=int32)"
    assert repr(mv.tensor([1.0, 2.0], dtype="float64")) == "tensor([1., 2.], dtype=float64)"
    assert repr(mv.tensor([True, False])) == "tensor([ True, False])"
    assert repr(mv.tensor([1e-5, 1e5])) == "tensor([1.0000e-05, 1.0000e+05])"
    assert repr(mv.tensor(np.zeros((2, 0)))) == "tensor([], size=(2, 0))"
    assert repr(mv.tensor([[1.0, 2.0], [3.0, 4.0]])) == "tensor([[1., 2.],\n        [3., 4.]])"
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    assert repr(a * 2) == "tensor([2., 4.], grad_fn=<MulBackward>)"
    assert repr((a * 2).sum()) == "tensor(6., grad_fn=<SumBackward>)"
    x, w = mv.tensor(np.ones((1, 1, 3, 3)), requires_grad=True), mv.tensor(np.ones((1, 1, 2, 2)))
    assert repr(mv.functional.conv2d(x, w)) == ("tensor([[[[4., 4.],\n          [4., 4.]]]], "
                                                 "grad_fn=<Conv2dBackward>)")
    with mv.no_grad():
        assert repr(a * 2) == "tensor([2., 4.])"
    assert repr(nn.Parameter(mv.tensor([1.0, 2.0]))) == "Parameter containing:\ntensor([1., 2.], requires_grad=True)"


def _values():
    rng = np.random.default_rng(0)
    f32 = np.float32
    return [
        np.array([1.0, 2.0], f32), f32(3.0), np.array([1, 2]), np.int64(5), np.array([1.0, 2.0]),
        np.array([1, 2], np.int32), np.array([True, False]), np.bool_(True), np.array([1.0, 2.0], np.float16),
        np.array([1.5, 2.25, -3.0], f32), np.array([1e-5, 1e5], f32), np.array([[1.0, 2.0], [3.0, 4.0]], f32),
        np.zeros(0, f32), np.zeros((2, 0), f32), np.zeros(0, np.int64), np.zeros((0, 3), bool),
        np.array([1, 2], np.uint8), np.array([0.1, 0.123456789], f32), np.array([1.0, np.nan, np.inf], f32),
        np.array([1e10], f32), f32(1e-10), np.zeros(5, f32), np.full(3, np.nan, f32), np.array([-0.0, 1.0], f32),
        np.array([1e-3, 1.5], f32), np.array([123456789.0], f32), rng.standard_normal(100).astype(f32),
        rng.standard_normal((3, 4)).astype(f32), rng.standard_normal(1000).astype(f32),
        rng.standard_normal(1001).astype(f32), rng.standard_normal((40, 40)).astype(f32),
        rng.standard_normal((2, 3, 4, 5)).astype(f32), rng.standard_normal((10, 10, 11)),
        np.arange(2000).reshape(2, 1000), (rng.standard_normal((5, 7)) * 1e4).astype(f32),
        rng.integers(-1000, 1000, (4, 30)), rng.standard_normal((2, 8)),
    ]


REPR_CASES = [(a, grad) for a in _values() for grad in ((False, True) if a.dtype.kind == "f" else (False,))]


@needs_torch
@pytest.mark.parametrize("a,requires_grad", REPR_CASES,
                         ids=[f"{a.dtype}{list(a.shape)}{'-grad' * g}" for a, g in REPR_CASES])
def test_tensor_repr_matches_torch(a, requires_grad):
    ours = mv.tensor(a, dtype=a.dtype, requires_grad=requires_grad)
    theirs = torch.tensor(a, requires_grad=requires_grad)
    assert repr(ours) == repr(theirs).replace("torch.", "")  # dtype=float64 here, dtype=torch.float64 there


@needs_torch
def test_a_long_suffix_wraps_as_in_torch():
    a = np.random.default_rng(1).standard_normal((2, 7))
    ours = repr(mv.tensor(a, dtype="float64", requires_grad=True))
    assert ours.endswith(",\n       dtype=float64, requires_grad=True)")
    assert ours == repr(torch.tensor(a, requires_grad=True)).replace("torch.", "")


@needs_torch
@pytest.mark.parametrize("op", [lambda a: a * 2, lambda a: a + 1, lambda a: (a * a).sum(), lambda a: a.mean(),
                                lambda a: a.exp()], ids=["mul", "add", "sum", "mean", "exp"])
def test_grad_fn_names_the_op_as_torch_does(op):
    values = np.array([[0.5, -1.25], [2.0, 3.0]], dtype=np.float32)
    ours = op(mv.tensor(values, requires_grad=True))
    theirs = op(torch.tensor(values, requires_grad=True))
    assert repr(ours) == repr(theirs).replace("Backward0>", "Backward>")


@needs_torch
def test_parameter_repr_matches_torch():
    values = np.array([[0.25, -1.5]], dtype=np.float32)
    assert repr(nn.Parameter(mv.tensor(values))) == repr(torch.nn.Parameter(torch.tensor(values)))
    assert (repr(nn.Parameter(mv.tensor(values), requires_grad=False))
            == repr(torch.nn.Parameter(torch.tensor(values), requires_grad=False)))


def _copy_into_torch(ours, theirs):
    with torch.no_grad():
        for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert name == tname
            tp.copy_(torch.tensor(p.numpy()))
    return theirs


@needs_torch
def test_module_repr_matches_torch():
    ours = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()), nn.Linear(2, 3),
                         nn.Linear(3, 4, bias=False), nn.Conv2d(2, 4, (1, 3), stride=2, bias=False),
                         nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
    theirs = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU()),
                                 torch.nn.Linear(2, 3), torch.nn.Linear(3, 4, bias=False),
                                 torch.nn.Conv2d(2, 4, (1, 3), stride=2, bias=False),
                                 torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0))
    assert repr(ours) == repr(theirs)
    assert repr(nn.ReLU()) == repr(torch.nn.ReLU()) == "ReLU()"


def test_module_repr_puts_extra_repr_lines_before_the_children():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.ReLU()

        def extra_repr(self):
            return "scale=2"

    assert repr(Block()) == "Block(\n  scale=2\n  (body): ReLU()\n)"


def test_state_dict_is_an_ordered_dict_of_tensors_sharing_the_parameters():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    state = net.state_dict()
    assert type(state) is collections.OrderedDict
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(type(v) is mv.Tensor and not v.requires_grad for v in state.values())
    assert state["0.weight"].data is net[0].weight.data  # as in PyTorch: a later step shows in it
    assert repr(state).startswith("OrderedDict([('0.weight', tensor([[")


def test_state_dict_still_loads_and_saves(tmp_path):
    net, other = nn.Sequential(nn.Linear(2, 3)), nn.Sequential(nn.Linear(2, 3))
    other.load_state_dict(net.state_dict())
    assert other[0].weight.data is not net[0].weight.data
    np.testing.assert_array_equal(other[0].weight.numpy(), net[0].weight.numpy())
    mv.save(net.state_dict(), tmp_path / "net.npz")
    loaded = mv.load(tmp_path / "net.npz")
    assert all(type(v) is np.ndarray for v in loaded.values())
    np.testing.assert_array_equal(loaded["0.bias"], net[0].bias.numpy())


@needs_torch
def test_state_dict_prints_as_torch_on_the_same_values():
    ours = nn.Linear(2, 3)
    theirs = _copy_into_torch(ours, torch.nn.Linear(2, 3))
    assert repr(ours.state_dict()) == repr(theirs.state_dict())
    ours = nn.Sequential(nn.Linear(2, 1))
    theirs = _copy_into_torch(ours, torch.nn.Sequential(torch.nn.Linear(2, 1)))
    assert str(ours.state_dict()) == str(theirs.state_dict())
