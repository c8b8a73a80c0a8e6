"""The Python API checks its arguments as PyTorch does: a bad value is a ValueError, a bad type a TypeError,
and the message names the function or class, the argument and the value; the values at each boundary work."""
import math

import numpy as np
import pytest

import minivgg as mv
from minivgg import data, models, nn


def _refused(error, call, *words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("call, error, words", [
    (lambda: nn.Conv2d(1, 4, 0), ValueError, ("Conv2d", "kernel_size", "got 0")),
    (lambda: nn.Conv2d(1, 4, (3, -1)), ValueError, ("Conv2d", "kernel_size", "(3, -1)")),
    (lambda: nn.Conv2d(1, 4, (3,)), ValueError, ("Conv2d", "kernel_size", "(3,)")),
    (lambda: nn.Conv2d(1, 4, 3.0), TypeError, ("Conv2d", "kernel_size", "3.0")),
    (lambda: nn.Conv2d(1, 4, 3, padding=-1), ValueError, ("Conv2d", "padding", "non-negative", "got -1")),
    (lambda: nn.Conv2d(1, 4, 3, stride=0), ValueError, ("Conv2d", "stride", "got 0")),
    (lambda: nn.Conv2d(1, 0, 3), ValueError, ("Conv2d", "out_channels", "got 0")),
    (lambda: nn.Conv2d(0, 4, 3), ValueError, ("Conv2d", "in_channels", "got 0")),
    (lambda: nn.Conv2d(None, 4, 3), TypeError, ("Conv2d", "in_channels", "None")),
    (lambda: nn.LazyConv2d(0, 3), ValueError, ("LazyConv2d", "out_channels", "got 0")),
    (lambda: nn.Linear(0, 5), ValueError, ("Linear", "in_features", "got 0")),
    (lambda: nn.Linear(5, -2), ValueError, ("Linear", "out_features", "got -2")),
    (lambda: nn.Linear(5, True), TypeError, ("Linear", "out_features", "True")),
    (lambda: nn.LazyLinear(0), ValueError, ("LazyLinear", "out_features", "got 0")),
    (lambda: nn.LocalResponseNorm(0), ValueError, ("LocalResponseNorm", "size", "got 0")),
    (lambda: nn.MaxPool2d(0), ValueError, ("MaxPool2d", "kernel_size", "got 0")),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, ("MaxPool2d", "stride", "got 0")),
    (lambda: nn.MaxPool2d(2, padding=-1), ValueError, ("MaxPool2d", "padding", "got -1")),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, ("MaxPool2d", "padding", "half", "padding=2")),
    (lambda: nn.Dropout(1.5), ValueError, ("Dropout", "dropout probability p", "between 0 and 1", "1.5")),
    (lambda: nn.Dropout(-0.1), ValueError, ("Dropout", "p", "-0.1")),
    (lambda: nn.Dropout("0.5"), TypeError, ("Dropout", "p", "'0.5'")),
    (lambda: nn.Sequential(nn.ReLU(), 5), TypeError, ("Sequential", "module 1", "Module", "5")),
    (lambda: nn.Sequential().append("relu"), TypeError, ("Sequential", "module 0", "'relu'")),
])
def test_a_bad_layer_argument_is_refused_naming_it(call, error, words):
    _refused(error, call, *words)


def test_layers_at_the_boundaries_still_work():
    x = mv.tensor(np.ones((2, 1, 4, 4), dtype=np.float32))
    assert nn.Conv2d(1, 1, 1, stride=1, padding=0)(x).shape == (2, 1, 4, 4)
    assert nn.Conv2d(1, 2, (1, 3), stride=(1, 2), padding=(0, 1))(x).shape == (2, 2, 4, 2)
    assert nn.Conv2d(np.int64(1), np.int64(2), np.int64(3))(x).shape == (2, 2, 2, 2)  # NumPy ints are ints
    assert nn.LazyConv2d(1, 3, padding=1)(x).shape == (2, 1, 4, 4)
    assert nn.MaxPool2d(1)(x).shape == (2, 1, 4, 4)
    assert nn.MaxPool2d(2, stride=1, padding=1)(x).shape == (2, 1, 5, 5)
    assert nn.LocalResponseNorm(1)(x).shape == x.shape
    assert nn.Linear(1, 1)(mv.tensor(np.ones((3, 1), dtype=np.float32))).shape == (3, 1)
    for p in (0, 0.0, 1, 1.0, 0.5):
        assert nn.Dropout(p)(x).shape == x.shape
    assert len(nn.Sequential()) == 0


def test_linear_wants_its_own_float_dtype_as_conv2d_does():
    layer = nn.Linear(3, 2)
    out = layer(mv.tensor(np.ones((4, 3), dtype=np.float32)))
    assert out.dtype == np.float32
    _refused(TypeError, lambda: layer(mv.tensor(np.ones((4, 3), dtype=np.int64))),
             "Linear", "int64", "float32", ".float()")
    _refused(TypeError, lambda: layer(mv.tensor(np.ones((4, 3)), dtype="float64")), "Linear", "float64")
    _refused(TypeError, lambda: nn.Conv2d(1, 1, 1)(mv.tensor(np.ones((1, 1, 2, 2), dtype=np.int64))),
             "conv2d", "int64")
    lazy = nn.LazyLinear(2)
    _refused(TypeError, lambda: lazy(mv.tensor(np.ones((4, 3), dtype=np.int64))), "LazyLinear", "int64")
    assert lazy(mv.tensor(np.ones((4, 3), dtype=np.float32))).dtype == np.float32


def _layer_with_grad():
    layer = nn.Linear(2, 1)
    layer(mv.tensor(np.full((1, 2), 10.0, dtype=np.float32))).sum().backward()
    return layer


def test_clip_grad_norm_refuses_a_negative_max_norm():
    layer = _layer_with_grad()
    before = layer.weight.grad.data.copy()
    _refused(ValueError, lambda: nn.utils.clip_grad_norm_(layer.parameters(), -1), "clip_grad_norm_", "max_norm",
             "got -1")
    _refused(ValueError, lambda: nn.utils.clip_grad_norm_(layer.parameters(), math.nan), "max_norm", "nan")
    _refused(TypeError, lambda: nn.utils.clip_grad_norm_(layer.parameters(), "1"), "max_norm", "'1'")
    np.testing.assert_array_equal(layer.weight.grad.data, before)  # untouched, not flipped
    nn.utils.clip_grad_norm_(layer.parameters(), 0)  # allowed, as in PyTorch: zeroes the gradients
    assert not layer.weight.grad.data.any()
    layer = _layer_with_grad()
    total = nn.utils.clip_grad_norm_(layer.parameters(), 1)
    assert total > 1 and np.all(np.sign(layer.weight.grad.data) == np.sign(before))


@pytest.mark.parametrize("call, error, words", [
    (lambda: models.vgg_block(0, 4), ValueError, ("vgg_block", "num_convs", "got 0")),
    (lambda: models.vgg_block(1, 0), ValueError, ("vgg_block", "out_channels", "got 0")),
    (lambda: models.vgg_block(1, 4, in_channels=0), ValueError, ("vgg_block", "in_channels", "got 0")),
    (lambda: models.vgg(((1, 64), (0, 128))), ValueError, ("vgg", "num_convs of conv_arch[1]", "got 0")),
    (lambda: models.vgg(((1, 64), (1, -8))), ValueError, ("vgg", "out_channels of conv_arch[1]", "got -8")),
    (lambda: models.vgg(((1, 64), 128)), TypeError, ("vgg", "conv_arch[1]", "pair", "128")),
    (lambda: models.vgg(((1, 64, 3),)), TypeError, ("vgg", "conv_arch[0]", "(1, 64, 3)")),
    (lambda: models.build("d2l", 0), ValueError, ("build", "ratio", "got 0")),
    (lambda: models.build("vgg11", -4), ValueError, ("build", "ratio", "got -4")),
    (lambda: models.build("d2l", 2.5), TypeError, ("build", "ratio", "2.5")),
    (lambda: models.build("d2l", 128), ValueError, ("build", "ratio", "at most 64", "128")),
    (lambda: models.build("vgg99", 4), ValueError, ("unknown VGG configuration", "vgg99")),
    (lambda: models.vgg_from_config("A", ratio=0), ValueError, ("vgg_from_config", "ratio", "got 0")),
    (lambda: models.small_conv_arch(ratio=0), ValueError, ("small_conv_arch", "ratio", "got 0")),
    (lambda: models.small_conv_arch(((1, 8),), ratio=16), ValueError, ("small_conv_arch", "at most 8", "16")),
])
def test_a_bad_model_argument_is_refused_naming_it(call, error, words):
    _refused(error, call, *words)


def test_models_at_the_boundaries_still_work():
    assert len(models.vgg_block(1, 1)) == 3
    assert models.small_conv_arch(ratio=64) == ((1, 1), (1, 2), (2, 4), (2, 8), (2, 8))
    assert models.small_conv_arch(ratio=1) == models.CONV_ARCH
    assert models.small_conv_arch([[1, 8]], ratio=8) == ((1, 1),)
    net = models.build("d2l", 64)
    assert net(mv.tensor(np.zeros((1, 1, 32, 32), dtype=np.float32))).shape == (1, 10)
    assert isinstance(models.build("vgg11", 64), nn.Sequential)


def _pair(n=10):
    return np.zeros((n, 2, 2), dtype=np.uint8), np.arange(n)


@pytest.mark.parametrize("batch_size, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                               ("8", TypeError), (None, TypeError)])
def test_dataloader_refuses_a_bad_batch_size(batch_size, error):
    _refused(error, lambda: data.DataLoader(_pair(), batch_size), "DataLoader", "batch_size", repr(batch_size))


def test_dataloader_batch_size_one_and_larger_than_the_data():
    assert len(data.DataLoader(_pair(3), 1)) == 3
    assert len(data.DataLoader(_pair(3), np.int64(5))) == 1


@pytest.mark.parametrize("fraction, error", [(1.5, ValueError), (1, ValueError), (0, ValueError), (-0.2, ValueError),
                                             (math.nan, ValueError), ("0.2", TypeError)])
def test_split_refuses_a_fraction_outside_0_1(fraction, error):
    _refused(error, lambda: data.split(_pair(), fraction), "split", "fraction", repr(fraction))


def test_split_just_inside_0_1():
    (train, _), (held, _) = data.split(_pair(), 0.01)
    assert (len(train), len(held)) == (9, 1)
    (train, _), (held, _) = data.split(_pair(), 0.99)
    assert (len(train), len(held)) == (1, 9)
