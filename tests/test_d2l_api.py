"""PyTorch's names that D2L's code uses, each against PyTorch itself where it is installed: the tensor makers and
dtypes at the top level, `device`, the Tensor methods (`size()`, `dim=`/`keepdim=`, `max(dim)`, `view`, `type`,
`float(t)`, ...), the layers and `nn.functional`, and the initializers. Where PyTorch's meaning and NumPy's
spelling differ, PyTorch's wins (see the README's table)."""
import math

import numpy as np
import pytest

import minivgg as mv
from minivgg import nn

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


def same_dtype(ours, theirs):
    """A minivgg dtype (a NumPy dtype) names the same type as a torch dtype."""
    return ours == torch.empty(0, dtype=theirs).numpy().dtype


def against_torch(ours_fn, theirs_fn, *arrays, seed=0, rtol=1e-5, atol=1e-6):
    """Run one expression on minivgg tensors and on torch tensors made from the same float arrays: equal
    outputs (a tuple's each), and equal gradients of a random projection of the (first) output."""
    ours_in = [mv.tensor(a, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = ours_fn(*ours_in), theirs_fn(*theirs_in)
    ours_all = ours if isinstance(ours, tuple) else (ours,)
    theirs_all = tuple(theirs) if isinstance(theirs, tuple) else (theirs,)
    for a, b in zip(ours_all, theirs_all, strict=True):
        assert a.shape == tuple(b.shape) and same_dtype(a.dtype, b.dtype), (a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=rtol, atol=atol)
    projection = np.random.default_rng(seed).standard_normal(ours_all[0].shape).astype(np.float32)
    (ours_all[0] * mv.tensor(projection)).sum().backward()
    (theirs_all[0] * torch.tensor(projection)).sum().backward()
    for a, b in zip(ours_in, theirs_in):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)


# ---- dtypes and devices --------------------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("name", ["float16", "half", "float32", "float", "float64", "double", "uint8", "int8",
                                  "int16", "short", "int32", "int", "int64", "long", "bool"])
def test_dtype_names_are_torchs(name):
    assert same_dtype(getattr(mv, name), getattr(torch, name))


def test_dtypes_compare_and_convert():
    x = mv.tensor([1.5, -2.5])
    assert x.dtype == mv.float32 and x.dtype != mv.float64 and mv.tensor([1, 2]).dtype == mv.int64
    assert x.to(mv.float64).dtype == mv.float64 and x.type(mv.int64).dtype == mv.long
    assert x.to(dtype=mv.float16).dtype == mv.half and x.to("cpu", mv.float64).dtype == mv.double
    assert x.to(mv.tensor([1])).dtype == mv.int64 and x.to(x) is x and x.float() is x
    assert x.long().tolist() == [1, -2] and x.int().dtype == mv.int32 and x.bool().tolist() == [True, True]
    assert x.double().dtype == np.float64 and mv.tensor([0, 1]).float().dtype == mv.float32


@needs_torch
def test_type_without_a_dtype_names_the_tensor_type_as_torch_does():
    for dtype in ["float32", "float64", "int64", "int32", "uint8", "bool"]:
        ours, theirs = mv.zeros(2, dtype=getattr(mv, dtype)), torch.zeros(2, dtype=getattr(torch, dtype))
        assert ours.type().removeprefix("minivgg.") == theirs.type().removeprefix("torch.")


def test_casts_between_floats_keep_the_graph_and_to_integers_leave_it():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype == mv.float32 and x.grad.tolist() == [3.0, 3.0]
    assert not x.long().requires_grad and x.long().creator is None
    assert x.to(mv.float64).requires_grad and x.type(mv.float64).creator is not None
    with pytest.raises(TypeError, match="'cuda0' is not a dtype"):
        x.type("cuda0")


@needs_torch
@pytest.mark.parametrize("args", [("cpu",), ("cuda",), ("cuda:1",), ("cuda", 1)])
def test_device_prints_as_torchs(args):
    ours, theirs = mv.device(*args), torch.device(*args)
    assert (str(ours), repr(ours), ours.type, ours.index) == (str(theirs), repr(theirs), theirs.type, theirs.index)


def test_device_goes_where_a_device_name_goes():
    cpu = mv.device("cpu")
    assert cpu == "cpu" and cpu == mv.device("cpu") and mv.device("cuda") == "cuda:0" and mv.device("cuda") != "cpu"
    assert cpu != 0 and cpu != None and len({cpu, mv.device("cpu")}) == 1  # noqa: E711
    x = mv.ones(2).to(cpu)
    assert x.device == cpu and mv.zeros(2, device=cpu).device == "cpu"
    assert next(iter(nn.Linear(2, 3).to(cpu).parameters())).device == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mv.device("gpu")


# ---- tensor makers ------------------------------------------------------------------------------------------
MAKERS = [
    ("zeros(2, 3)", lambda m: m.zeros(2, 3)),
    ("zeros((2, 3))", lambda m: m.zeros((2, 3))),
    ("zeros(size=(2, 3))", lambda m: m.zeros(size=(2, 3))),
    ("zeros int64", lambda m: m.zeros(4, dtype=m.int64)),
    ("ones(3)", lambda m: m.ones(3)),
    ("ones bool", lambda m: m.ones(2, 2, dtype=m.bool)),
    ("full int", lambda m: m.full((2, 2), 7)),
    ("full float", lambda m: m.full((2,), 0.5)),
    ("full bool", lambda m: m.full((2,), True)),
    ("arange(5)", lambda m: m.arange(5)),
    ("arange(1, 7, 2)", lambda m: m.arange(1, 7, 2)),
    ("arange float", lambda m: m.arange(0, 1, 0.25)),
    ("arange float end", lambda m: m.arange(3.0)),
    ("linspace", lambda m: m.linspace(0, 1, 5)),
    ("eye(3)", lambda m: m.eye(3)),
    ("eye(3, 2)", lambda m: m.eye(3, 2)),
    ("zeros_like", lambda m: m.zeros_like(m.arange(4))),
    ("ones_like", lambda m: m.ones_like(m.arange(4.0))),
    ("ones_like dtype", lambda m: m.ones_like(m.arange(4), dtype=m.float32)),
    ("full_like", lambda m: m.full_like(m.zeros(2, 2), 3.0)),
]


@needs_torch
@pytest.mark.parametrize("make", [m for _, m in MAKERS], ids=[name for name, _ in MAKERS])
def test_makers_give_torchs_shape_dtype_and_values(make):
    ours, theirs = make(mv), make(torch)
    assert ours.shape == tuple(theirs.shape) and same_dtype(ours.dtype, theirs.dtype)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert not ours.requires_grad


@needs_torch
@pytest.mark.parametrize("make", [
    lambda m: m.randn(2, 3), lambda m: m.randn(size=(1, 1, 4, 4)), lambda m: m.rand(3, dtype=m.float64),
    lambda m: m.rand((2, 2)), lambda m: m.randint(0, 10, (3, 4)), lambda m: m.randint(5, (6,)),
    lambda m: m.normal(0.0, 1.0, size=(2, 3)), lambda m: m.normal(m.zeros(4), m.ones(4)),
    lambda m: m.normal(2.0, m.ones(2, 2))])
def test_random_makers_give_torchs_shape_and_dtype(make):
    ours, theirs = make(mv), make(torch)
    assert ours.shape == tuple(theirs.shape) and same_dtype(ours.dtype, theirs.dtype)


def test_random_makers_draw_the_right_numbers_repeatably():
    mv.manual_seed(1)
    z, u, k = mv.randn(10000), mv.rand(10000), mv.randint(2, 5, size=(10000,))
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.02
    assert set(k.tolist()) == {2, 3, 4}
    g = mv.normal(3.0, 0.5, size=(10000,))
    assert abs(float(g.mean()) - 3) < 0.05 and abs(float(g.std()) - 0.5) < 0.05
    mv.manual_seed(1)
    assert mv.randn(10000).tolist() == z.tolist()
    assert mv.randn(2, requires_grad=True).requires_grad


def test_makers_refuse_what_torch_refuses():
    with pytest.raises(TypeError, match="randn: draws floats"):
        mv.randn(2, dtype=mv.int64)
    with pytest.raises(TypeError, match="zeros: give the shape once"):
        mv.zeros(2, size=(2,))
    with pytest.raises(TypeError, match="zeros: unexpected keyword argument 'shape'"):
        mv.zeros(shape=(2,))
    with pytest.raises(ValueError, match=r"randint: high \(3\) must be larger than low \(3\)"):
        mv.randint(3, 3, (2,))


@needs_torch
def test_from_numpy_shares_memory_as_torchs():
    a = np.arange(3.0)
    ours, theirs = mv.from_numpy(a), torch.from_numpy(a)
    a[0] = 9
    assert ours.tolist() == theirs.tolist() == [9.0, 1.0, 2.0] and same_dtype(ours.dtype, theirs.dtype)
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        mv.from_numpy([1.0])


@needs_torch
def test_top_level_functions_match_torch(rng):
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((2, 4)).astype(np.float32)
    against_torch(lambda x, y: mv.cat([x, y]), lambda x, y: torch.cat([x, y]), a, b)
    against_torch(lambda x: mv.cat((x, x), dim=1), lambda x: torch.cat((x, x), dim=1), a)
    against_torch(lambda x: mv.softmax(x, dim=1), lambda x: torch.softmax(x, dim=1), a)
    against_torch(lambda x: mv.log_softmax(x, 0), lambda x: torch.log_softmax(x, 0), a)
    against_torch(mv.relu, torch.relu, a)
    assert mv.argmax(mv.tensor(a), dim=1).tolist() == torch.argmax(torch.tensor(a), dim=1).tolist()
    assert int(mv.argmax(mv.tensor(a))) == int(torch.argmax(torch.tensor(a)))


# ---- Tensor methods -----------------------------------------------------------------------------------------
def test_size_is_a_method_returning_the_shape_as_in_torch():
    x = mv.zeros(2, 3, 4)
    assert x.size() == (2, 3, 4) == x.shape and x.size(0) == 2 and x.size(-1) == 4 and x.size(dim=1) == 3
    assert x.numel() == 24 and x.dim() == 3 and len(x) == 2


@needs_torch
def test_size_numel_and_dim_are_torchs():
    for shape in [(2, 3, 4), (5,), ()]:
        ours, theirs = mv.zeros(shape), torch.zeros(shape)
        assert ours.size() == tuple(theirs.size()) and ours.numel() == theirs.numel() and ours.dim() == theirs.dim()
        if shape:
            assert ours.size(0) == theirs.size(0) and ours.size(-1) == theirs.size(-1)


@needs_torch
@pytest.mark.parametrize("cast", ["float", "double", "half", "long", "int", "bool"])
def test_casts_match_torch(cast):
    data = np.array([-2.7, -0.5, 0.0, 0.5, 3.9], dtype=np.float32)
    ours, theirs = getattr(mv.tensor(data), cast)(), getattr(torch.tensor(data), cast)()
    assert same_dtype(ours.dtype, theirs.dtype) and ours.tolist() == theirs.tolist()


def test_float_and_int_of_a_one_element_tensor_only():
    assert float(mv.tensor([2.5])) == 2.5 and int(mv.tensor(-2.7)) == -2 and int(mv.tensor([[3]])) == 3
    assert [10, 20, 30][mv.tensor(1)] == 20 and list(range(mv.tensor(3))) == [0, 1, 2]
    assert f"{mv.tensor(2.0 / 3):.3f}" == "0.667" and f"{mv.tensor([1.0])}" == "tensor([1.])"
    with pytest.raises(TypeError, match="unsupported format string"):  # as in PyTorch: only a 0-d tensor
        f"{mv.ones(2):.3f}"
    with pytest.raises(ValueError, match=r"float\(\): only one element tensors .* shape \(2,\)"):
        float(mv.ones(2))
    with pytest.raises(ValueError, match=r"int\(\): only one element tensors"):
        int(mv.ones(2, 2))
    with pytest.raises(TypeError, match="only integer tensors of a single element can be converted to an index"):
        [1, 2][mv.tensor(0.0)]


@needs_torch
def test_float_and_int_agree_with_torch():
    for value in [2.5, -2.7, 0.0, 7.0]:
        assert float(mv.tensor(value)) == pytest.approx(float(torch.tensor(value)))
        assert int(mv.tensor(value)) == int(torch.tensor(value))
    with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
        float(torch.ones(2))


SHAPE_METHODS = [
    ("view(2, 6)", lambda x: x.view(2, 6)),
    ("view(-1)", lambda x: x.view(-1)),
    ("view((4, 3))", lambda x: x.view((4, 3))),
    ("reshape", lambda x: x.reshape(-1, 2)),
    ("unsqueeze(0)", lambda x: x.unsqueeze(0)),
    ("unsqueeze(-1)", lambda x: x.unsqueeze(-1)),
    ("unsqueeze squeeze", lambda x: x.unsqueeze(1).squeeze()),
    ("squeeze(0)", lambda x: x.unsqueeze(0).squeeze(0)),
    ("squeeze(1) of size 4 stays", lambda x: x.squeeze(1)),
    ("permute(1, 0)", lambda x: x.permute(1, 0)),
    ("permute((1, 0))", lambda x: x.permute((1, 0))),
    ("t()", lambda x: x.t()),
    ("transpose(0, 1)", lambda x: x.transpose(0, 1)),
    ("transpose of 3-d", lambda x: x.view(3, 2, 2).transpose(0, 2)),
    ("clone", lambda x: x.clone()),
    ("abs", lambda x: x.abs()),
    ("abs()", lambda x: abs(x)),
    ("flatten", lambda x: x.view(3, 2, 2).flatten(1)),
]


@needs_torch
@pytest.mark.parametrize("method", [m for _, m in SHAPE_METHODS], ids=[name for name, _ in SHAPE_METHODS])
def test_shape_and_elementwise_methods_match_torch(method, rng):
    against_torch(method, method, rng.standard_normal((3, 4)).astype(np.float32))


REDUCTIONS = [
    ("sum()", lambda x: x.sum()),
    ("sum(dim=0)", lambda x: x.sum(dim=0)),
    ("sum(1, keepdim=True)", lambda x: x.sum(1, keepdim=True)),
    ("sum(axis=1) NumPy's spelling, which torch accepts", lambda x: x.sum(axis=1)),
    ("sum(dim=(0, 2))", lambda x: x.sum(dim=(0, 2))),
    ("mean(dim=1, keepdim=True)", lambda x: x.mean(dim=1, keepdim=True)),
    ("mean(keepdims=True) NumPy's", lambda x: x.mean(-1, keepdims=True)),
    ("max()", lambda x: x.max()),
    ("max(dim=1)", lambda x: x.max(dim=1)),
    ("max(1, keepdim=True)", lambda x: x.max(1, keepdim=True)),
    ("max(axis=0)", lambda x: x.max(axis=0)),
    ("min(dim=2)", lambda x: x.min(dim=2)),
    ("min()", lambda x: x.min()),
    ("amax(dim=(1, 2))", lambda x: x.amax(dim=(1, 2))),
    ("amin(1)", lambda x: x.amin(1)),
    ("std()", lambda x: x.std()),
    ("std(dim=1)", lambda x: x.std(dim=1)),
    ("std(1, unbiased=False)", lambda x: x.std(1, unbiased=False)),
    ("var(dim=0, keepdim=True)", lambda x: x.var(dim=0, keepdim=True)),
    ("var(correction=0)", lambda x: x.var(correction=0)),
    ("norm()", lambda x: x.norm()),
    ("norm(dim=1)", lambda x: x.norm(dim=1)),
    ("norm(p=1)", lambda x: x.norm(p=1)),
    ("softmax(dim=1)", lambda x: x.softmax(dim=1)),
    ("log_softmax(-1)", lambda x: x.log_softmax(-1)),
    ("topk(2)", lambda x: x.topk(2)),
    ("topk(2, dim=1, largest=False)", lambda x: x.topk(2, dim=1, largest=False)),
    ("sort(dim=1)", lambda x: x.sort(dim=1)),
    ("sort(descending=True)", lambda x: x.sort(descending=True)),
]


@needs_torch
@pytest.mark.parametrize("method", [m for _, m in REDUCTIONS], ids=[name for name, _ in REDUCTIONS])
def test_reductions_match_torch_values_indices_and_gradients(method, rng):
    against_torch(method, method, rng.standard_normal((2, 3, 4)).astype(np.float32))


@needs_torch
def test_take_along_dim_matches_torch(rng):
    index = rng.integers(0, 4, (2, 3, 2))  # repeated indices: their gradients add up
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    against_torch(lambda t: mv.take_along_dim(t, mv.tensor(index), 2),
                  lambda t: torch.take_along_dim(t, torch.tensor(index), 2), x)
    against_torch(lambda x: x.take_along_dim(mv.tensor(index[:, :1] % 3), dim=1),
                  lambda x: x.take_along_dim(torch.tensor(index[:, :1] % 3), dim=1),
                  rng.standard_normal((2, 3, 2)).astype(np.float32))


@needs_torch
def test_max_with_ties_sends_the_gradient_where_torch_does():
    """max(dim) picks one index (the first maximum here, as NumPy's argmax) and only it gets the gradient;
    amax shares it among the tied maxima. PyTorch's CPU build picks the first maximum too."""
    data = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], dtype=np.float32)
    against_torch(lambda x: x.max(dim=1), lambda x: x.max(dim=1), data)
    against_torch(lambda x: x.amax(dim=1), lambda x: x.amax(dim=1), data)


def test_max_along_a_dim_unpacks_as_values_and_indices():
    x = mv.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0] and indices.dtype == mv.int64
    result = mv.max(x, 1)
    assert result.values.tolist() == [5.0, 7.0] and result.indices.tolist() == [1, 0]
    assert x.max().tolist() == 7.0 and x.argmax(dim=1, keepdim=True).shape == (2, 1)
    assert x.argmax(axis=1).tolist() == [1, 0] and x.argmax().tolist() == 3 and x.argmin(1).tolist() == [0, 1]
    with pytest.raises(TypeError, match=r"max: dim must be one int when indices are returned, got \(0, 1\)"):
        x.max(dim=(0, 1))
    with pytest.raises(TypeError, match="sum: got both dim=0 and axis=1"):
        x.sum(dim=0, axis=1)
    with pytest.raises(TypeError, match="mean: needs a floating-point tensor, got dtype int64"):
        mv.tensor([1, 2]).mean()


@needs_torch
@pytest.mark.parametrize("call", [lambda x: x.max(dim=1), lambda x: x.min(0), lambda x: x.topk(2),
                                  lambda x: x.sort(descending=True)], ids=["max", "min", "topk", "sort"])
def test_values_and_indices_print_as_torchs(call):
    data = [[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]]
    ours, theirs = repr(call(mv.tensor(data))), repr(call(torch.tensor(data)))
    assert ours.replace("minivgg.", "torch.", 1) == theirs


@needs_torch
def test_comparisons_and_eq_give_boolean_tensors_as_in_torch(rng):
    a = rng.integers(0, 3, (4,))
    b = rng.integers(0, 3, (4,))
    for name in ["eq", "ne", "lt", "le", "gt", "ge"]:
        ours = getattr(mv.tensor(a), name)(mv.tensor(b))
        theirs = getattr(torch.tensor(a), name)(torch.tensor(b))
        assert ours.dtype == mv.bool and ours.tolist() == theirs.tolist()


def test_clone_is_a_copy_in_the_graph():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    assert y.data is not x.data and y.creator is not None
    (y * y).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


# ---- layers, nn.functional and nn.init ----------------------------------------------------------------------
LAYERS = [
    ("AvgPool2d(2)", lambda n: n.AvgPool2d(2)),
    ("AvgPool2d(3, stride=2, padding=1)", lambda n: n.AvgPool2d(3, stride=2, padding=1)),
    ("AvgPool2d((2, 3), stride=(1, 2))", lambda n: n.AvgPool2d((2, 3), stride=(1, 2))),
    ("AdaptiveAvgPool2d((1, 1))", lambda n: n.AdaptiveAvgPool2d((1, 1))),
    ("AdaptiveAvgPool2d(3)", lambda n: n.AdaptiveAvgPool2d(3)),
    ("AdaptiveAvgPool2d((None, 2))", lambda n: n.AdaptiveAvgPool2d((None, 2))),
    ("Sigmoid", lambda n: n.Sigmoid()),
    ("Tanh", lambda n: n.Tanh()),
    ("Softmax(dim=1)", lambda n: n.Softmax(dim=1)),
    ("Identity", lambda n: n.Identity()),
]


@needs_torch
@pytest.mark.parametrize("make", [m for _, m in LAYERS], ids=[name for name, _ in LAYERS])
def test_layers_match_torch_forward_backward_and_print(make, rng):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    against_torch(ours, theirs, rng.standard_normal((2, 3, 7, 6)).astype(np.float32))


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction, rng):
    a, b = rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((2, 5)).astype(np.float32)
    assert repr(nn.MSELoss(reduction)) == repr(torch.nn.MSELoss(reduction=reduction))
    against_torch(nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), a, b)


def test_mse_loss_refuses_shapes_that_would_broadcast():
    with pytest.raises(ValueError, match=r"mse_loss: target of shape \(4,\) does not match input \(4, 1\)"):
        nn.MSELoss()(mv.zeros(4, 1), mv.zeros(4))
    with pytest.raises(ValueError, match="MSELoss: reduction must be one of mean, sum, none, got 'avg'"):
        nn.MSELoss("avg")


def test_module_list_registers_its_modules():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 1)])
            self.layers.append(nn.Identity())

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    net = Net()
    assert [name for name, _ in net.named_parameters()] == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                            "layers.1.bias"]
    assert len(net.layers) == 3 and isinstance(net.layers[-1], nn.Identity) and len(net.layers[:2]) == 2
    assert net(mv.ones(4, 2)).shape == (4, 1)
    net.layers[0] = nn.Linear(2, 3, bias=False)
    assert [name for name, _ in net.named_parameters()][:2] == ["layers.0.weight", "layers.1.weight"]
    with pytest.raises(TypeError, match="ModuleList: module 3 must be a Module"):
        net.layers.append(lambda x: x)


@needs_torch
def test_module_list_prints_as_torchs():
    assert repr(nn.ModuleList([nn.Linear(2, 3), nn.ReLU()])) == repr(torch.nn.ModuleList([torch.nn.Linear(2, 3),
                                                                                          torch.nn.ReLU()]))


def test_a_replaced_layer_keeps_its_place():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    net[0] = nn.Linear(2, 3)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear"]
    layer = nn.Linear(2, 3)
    layer.weight = nn.Parameter(mv.zeros(3, 2))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


@needs_torch
def test_nn_functional_names_are_torchs():
    import minivgg.nn.functional as F
    import torch.nn.functional as TF

    names = [n for n in dir(F) if not n.startswith("_")]
    assert {"relu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "conv2d", "linear", "cross_entropy",
            "softmax", "log_softmax", "sigmoid", "tanh", "mse_loss", "dropout"} <= set(names)
    assert all(hasattr(TF, n) for n in names), [n for n in names if not hasattr(TF, n)]


@needs_torch
def test_calculate_gain_is_torchs():
    for nonlinearity, param in [("relu", None), ("tanh", None), ("sigmoid", None), ("linear", None),
                                ("conv2d", None), ("leaky_relu", None), ("leaky_relu", 0.2)]:
        assert nn.init.calculate_gain(nonlinearity, param) == pytest.approx(
            torch.nn.init.calculate_gain(nonlinearity, param))


@pytest.mark.parametrize("init, std", [
    (lambda w: nn.init.xavier_normal_(w), math.sqrt(2 / (200 + 100))),
    (lambda w: nn.init.xavier_normal_(w, gain=2.0), 2 * math.sqrt(2 / (200 + 100))),
    (lambda w: nn.init.kaiming_uniform_(w), math.sqrt(2 / 100)),
    (lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)), math.sqrt(1 / 3 / 100)),  # Linear's own default
    (lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / 200)),
])
def test_initializers_draw_torchs_spread(init, std):
    w = init(nn.Parameter(mv.zeros(200, 100)))  # fan_in 100, fan_out 200
    values = w.numpy()
    assert values.dtype == np.float32 and abs(values.std() / std - 1) < 0.03 and abs(values.mean()) < 0.03 * std


@needs_torch
@pytest.mark.parametrize("name, kwargs", [("xavier_uniform_", {}), ("xavier_normal_", {"gain": 2.0}),
                                          ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
                                          ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"})])
def test_initializers_spread_as_torchs(name, kwargs):
    ours = getattr(nn.init, name)(nn.Parameter(mv.zeros(300, 100)), **kwargs).numpy()
    theirs = getattr(torch.nn.init, name)(torch.empty(300, 100), **kwargs).numpy()
    assert abs(ours.std() / theirs.std() - 1) < 0.03
    if "uniform" in name:  # the same bound
        assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.01


@needs_torch
def test_constant_and_ones_fill_as_torchs():
    assert nn.init.constant_(nn.Parameter(mv.zeros(2, 3)), 0.25).tolist() == \
        torch.nn.init.constant_(torch.empty(2, 3), 0.25).tolist()
    assert nn.init.ones_(nn.Parameter(mv.zeros(2))).tolist() == torch.nn.init.ones_(torch.empty(2)).tolist()


def test_constant_and_ones_fill():
    w = nn.Parameter(mv.zeros(2, 3))
    assert nn.init.constant_(w, 0.25).tolist() == [[0.25] * 3] * 2 and w.dtype == mv.float32
    assert nn.init.ones_(w).tolist() == [[1.0] * 3] * 2
    with pytest.raises(ValueError, match="kaiming init: mode must be 'fan_in' or 'fan_out', got 'fan'"):
        nn.init.kaiming_uniform_(w, mode="fan")
