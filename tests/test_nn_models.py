import io
import os

import numpy as np
import pytest

import minivgg as mv
from minivgg import models, nn

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None


def t64(rng, *shape):
    return mv.tensor(rng.standard_normal(shape), dtype="float64")


def _to_float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda: nn.Conv2d(2, 3, (1, 3), stride=2), (1, 2, 6, 7)),
    (lambda: nn.Linear(4, 3), (2, 4)),
    (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)),
     (2, 1, 6, 6)),
    (lambda: nn.LocalResponseNorm(3, alpha=0.1), (1, 4, 2, 2)),
])
def test_layer_gradients_through_modules(make, shape, rng):
    module = _to_float64(make())
    params = list(module.parameters())
    x = t64(rng, *shape).requires_grad_()
    assert mv.gradcheck(lambda *_: module(x), [x] + params)  # the parameters are perturbed in place


def test_named_parameters_in_definition_order():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3))
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert len(list(net.children())) == 4
    assert net[0] is list(net)[0] and len(net) == 4


def test_sequential_iterates_like_d2l():
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 8))
    x = mv.tensor(np.zeros((1, 1, 32, 32)))
    shapes = []
    for blk in net:
        x = blk(x)
        shapes.append(x.shape)
    assert shapes[:5] == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2), (1, 64, 1, 1)]
    assert shapes[-1] == (1, 10)


def test_train_eval_switch_dropout():
    net = nn.Sequential(nn.Dropout(0.5))
    x = mv.tensor(np.ones((10, 10)))
    assert (net(x).numpy() == 0).any()
    net.eval()
    assert not net.training and not net[0].training
    np.testing.assert_array_equal(net(x).numpy(), x.numpy())


def test_zero_grad_and_repr():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    net(mv.tensor([[1.0, 2.0]])).sum().backward()
    assert net[0].weight.grad is not None
    net.zero_grad()
    assert net[0].weight.grad is None
    assert repr(net) == "Sequential(\n  (0): Linear(in_features=2, out_features=2, bias=True)\n  (1): ReLU()\n)"


def test_state_dict_round_trip_through_file(tmp_path, rng):
    mv.manual_seed(1)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    net.eval()
    x = mv.tensor(rng.random((2, 1, 32, 32)))
    y = net(x).numpy()
    path = tmp_path / "net.npz"
    mv.save(net.state_dict(), path)
    mv.manual_seed(2)
    other = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    other.load_state_dict(mv.load(path))  # lazy layers take their shapes from the file
    other.eval()
    np.testing.assert_array_equal(other(x).numpy(), y)
    assert os.listdir(tmp_path) == ["net.npz"]  # the temporary file was renamed away


def test_load_state_dict_errors_are_clear():
    net = nn.Sequential(nn.Linear(2, 3))
    with pytest.raises(KeyError, match="missing keys: 0.bias"):
        net.load_state_dict({"0.weight": np.zeros((3, 2))})
    with pytest.raises(KeyError, match=r"0.weight: checkpoint has shape \(4, 2\), the model has \(3, 2\)"):
        net.load_state_dict({"0.weight": np.zeros((4, 2)), "0.bias": np.zeros(3)})
    with pytest.raises(KeyError, match="unexpected keys: extra"):
        net.load_state_dict({"0.weight": np.zeros((3, 2)), "0.bias": np.zeros(3), "extra": np.zeros(1)})


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "model.npz"
    mv.save({"w": np.ones(3)}, path)
    with pytest.raises(TypeError):
        mv.save({"w": np.zeros(3), "bad": object()}, path)
    np.testing.assert_array_equal(mv.load(path)["w"], np.ones(3))  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        mv.load(tmp_path / "nothing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        mv.load(bad)


def test_lazy_layers_materialize_once():
    conv, lin = nn.LazyConv2d(4, 3, padding=1), nn.LazyLinear(5)
    assert not conv.weight.is_materialized
    with pytest.raises(RuntimeError, match="lazy"):
        conv.state_dict()
    y = conv(mv.tensor(np.zeros((2, 3, 6, 6))))
    assert conv.weight.shape == (4, 3, 3, 3) and y.shape == (2, 4, 6, 6)
    with pytest.raises(ValueError, match="weight expects 3"):
        conv(mv.tensor(np.zeros((2, 5, 6, 6))))  # keeps its shape afterwards
    lin(mv.tensor(np.zeros((2, 7))))
    assert lin.weight.shape == (5, 7)
    with pytest.raises(ValueError, match="linear"):
        lin(mv.tensor(np.zeros((2, 8))))


def test_init_functions(rng):
    w = nn.Parameter(np.zeros((64, 32, 3, 3), dtype=np.float32))
    nn.init.xavier_uniform_(w)
    bound = np.sqrt(6 / (32 * 9 + 64 * 9))
    assert w.dtype == np.float32 and np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.9 * bound
    nn.init.normal_(w, std=0.01)
    assert abs(w.numpy().std() - 0.01) < 0.001
    nn.init.kaiming_normal_(w)
    assert abs(w.numpy().std() - np.sqrt(2 / (32 * 9))) < 0.005
    nn.init.zeros_(w)
    assert not w.numpy().any()


PAPER_COUNTS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952,
                "D": 138_357_544, "E": 143_667_240}


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_parameter_counts_match_the_paper(name):
    net = models.vgg_from_config(name, num_classes=1000, in_channels=3)
    rows = mv.summary(net, (1, 3, 224, 224), file=io.StringIO())
    assert net.num_parameters() == PAPER_COUNTS[name]
    assert [r[1] for r in rows[:5]] == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28),
                                        (1, 512, 14, 14), (1, 512, 7, 7)]
    assert rows[-1][1] == (1, 1000)
    small = models.vgg_from_config(name, num_classes=10, in_channels=3, ratio=8)
    assert small(mv.tensor(np.zeros((1, 3, 32, 32)))).shape == (1, 10)  # 32 survives five poolings


def test_aliases_and_unknown_config():
    n16 = sum(isinstance(m, nn.Conv2d) for m in models.vgg_from_config("vgg16", ratio=16).modules())
    n19 = sum(isinstance(m, nn.Conv2d) for m in models.vgg_from_config("vgg19", ratio=16).modules())
    assert (n16, n19) == (13, 16)
    c_convs = [m.kernel_size for m in models.vgg_from_config("C", ratio=16).modules() if isinstance(m, nn.Conv2d)]
    assert c_convs.count((1, 1)) == 3
    lrn = [m for m in models.vgg_from_config("A-LRN", ratio=16).modules() if isinstance(m, nn.LocalResponseNorm)]
    assert len(lrn) == 1
    with pytest.raises(ValueError, match="unknown VGG configuration 'Z'"):
        models.vgg_from_config("Z")


def test_d2l_model_summary_and_count():
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, ratio=4))
    out = io.StringIO()
    rows = mv.summary(net, (1, 1, 224, 224), file=out)
    assert net.num_parameters() == 43_093_322
    assert [r[1] for r in rows[:5]] == [(1, 16, 112, 112), (1, 32, 56, 56), (1, 64, 28, 28),
                                        (1, 128, 14, 14), (1, 128, 7, 7)]
    assert "43,093,322" in out.getvalue()
    full = models.vgg(models.CONV_ARCH)
    rows = mv.summary(full, (1, 1, 224, 224), file=io.StringIO())
    assert [r[1] for r in rows[:5]] == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28),
                                        (1, 512, 14, 14), (1, 512, 7, 7)]
    assert rows[-1][1] == (1, 10)
    block = models.vgg_block(2, 8)
    assert block(mv.tensor(np.zeros((1, 3, 10, 10)))).shape == (1, 8, 5, 5)


def test_too_small_input_names_the_block():
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    with pytest.raises(ValueError, match=r"Sequential \(4\) cannot take input of shape \(1, 32, 1, 1\)"):
        mv.summary(net, (1, 1, 16, 16), file=io.StringIO())
    with pytest.raises(ValueError, match=r"^Sequential \(4\) .*: MaxPool2d \(4\) .*max_pool2d: the kernel 2x2"):
        net(mv.tensor(np.zeros((1, 1, 16, 16))))  # a plain forward names the path to the layer too


def test_fully_convolutional_gives_same_logits_and_takes_larger_inputs(rng):
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    models.initialize(net, (1, 1, 224, 224))
    net.eval()
    x = mv.tensor(rng.random((2, 1, 224, 224)))
    fcn = models.to_fully_convolutional(net)
    fcn.eval()
    np.testing.assert_allclose(fcn(x).numpy(), net(x).numpy(), rtol=1e-4, atol=1e-5)
    big = fcn(mv.tensor(rng.random((1, 1, 288, 256))))
    assert big.shape == (1, 10)
    class_map = fcn[:-2](mv.tensor(rng.random((1, 1, 288, 256))))
    assert class_map.shape == (1, 10, 3, 2)  # a 3x2 map of class scores, then averaged


def test_initialize_schemes():
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    models.initialize(net, (1, 1, 32, 32), "normal")
    w = net[0][0].weight.numpy()
    assert abs(w.std() - 0.01) < 0.005 and not net[0][0].bias.numpy().any()
    with pytest.raises(ValueError, match="unknown init"):
        models.initialize(net, (1, 1, 32, 32), "ones")


def test_initialize_can_start_the_output_layer_small():
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    models.initialize(net, (1, 1, 32, 32), "kaiming", output_std=0.01)
    first, last = net[0][0].weight.numpy(), net[-1].weight.numpy()
    assert abs(first.std() - np.sqrt(2 / 9)) < 0.1  # He: sqrt(2 / fan_in), fan_in = 1 * 3 * 3
    assert abs(last.std() - 0.01) < 0.001 and last.shape == (10, 4096)


def test_sequential_item_assignment_replaces_a_module_in_place():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4))
    head = nn.Linear(3, 5)
    net[-1] = head
    assert net[2] is head and [name for name, _ in net.named_children()] == ["0", "1", "2"]
    assert [name for name, _ in net.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert net(mv.tensor([[1.0, 2.0]])).shape == (1, 5)
    with pytest.raises(TypeError, match="can only hold Modules"):
        net[0] = "not a module"


def test_canonical_arch_is_the_one_name_lookup():
    assert [models.canonical_arch(n) for n in ("d2l", "VGG", "vgg16", "a-lrn", "E", "Vgg16-C")] == \
        ["d2l", "d2l", "D", "A-LRN", "E", "C"]
    with pytest.raises(ValueError, match="unknown VGG configuration 'vgg17'.*d2l.*A-LRN.*vgg19"):
        models.canonical_arch("vgg17")
    with pytest.raises(ValueError, match="build"):
        models.vgg_from_config("d2l")


def test_submodules_parameters_and_leaves_by_public_api():
    net = models.vgg(models.small_conv_arch(((1, 64), (2, 128)), 16), in_channels=1)
    assert net.get_submodule("") is net and net.get_submodule("1.2") is net[1][2]
    assert net.get_parameter("1.2.weight") is net[1][2].weight
    with pytest.raises(AttributeError, match="no sub-module '9'"):
        net.get_submodule("1.9")
    with pytest.raises(AttributeError, match="no parameter 'scale'"):
        net.get_parameter("1.2.scale")
    assert [name for name, _ in net[1][2].named_parameters(recurse=False)] == ["weight", "bias"]
    assert list(net[1].parameters(recurse=False)) == []
    leaves = nn.utils.leaf_modules(net)
    assert [name for name, _ in leaves[:4]] == ["0.0", "0.1", "0.2", "1.0"]
    assert all(next(m.children(), None) is None for _, m in leaves)
    relu = nn.ReLU()
    assert nn.utils.leaf_modules(relu) == [("", relu)]
    block = nn.Sequential()
    block.add_module("conv", nn.Conv2d(1, 2, 3))
    block.register_module("act", nn.ReLU())
    assert [name for name, _ in block.named_children()] == ["conv", "act"] and block.conv.weight.shape == (2, 1, 3, 3)
    with pytest.raises(TypeError):
        block.add_module("x", 3)


def test_submodules_load_on_first_use():
    import subprocess
    import sys

    code = ("import sys, minivgg as mv; before = sorted(m for m in sys.modules if m.startswith('minivgg')); "
            "mv.augment.rescale, mv.models.canonical_arch; print(before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'minivgg.nn'" not in out and "'minivgg.models'" not in out and "'minivgg.augment'" not in out
