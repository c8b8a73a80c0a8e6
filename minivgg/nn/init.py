"""Weight initializers, in place, drawn from the parameter's device generator (repeatable under manual_seed)."""
import math

import numpy as np

from .. import backend


def fans(tensor):
    """(fan_in, fan_out) of a weight: (in, out) for Linear (out, in); C*KH*KW, K*KH*KW for Conv2d."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _generator(tensor):
    return backend.get_generator(tensor.device)


# Each initializer draws and computes on the tensor's device (made CuPy's current device: see use_device).
def uniform_(tensor, low=0.0, high=1.0):
    """Fill with U(low, high)."""
    with backend.use_device(tensor.device):
        u = _generator(tensor).random(tensor.shape, dtype=np.float32)
        tensor.data = (u * np.float32(high - low) + np.float32(low)).astype(tensor.dtype, copy=False)
    return tensor


def normal_(tensor, mean=0.0, std=0.01):
    """Fill with N(mean, std^2). The paper draws configuration A from "zero mean and 10^-2 variance", which
    is std 0.1; many reimplementations read it as std 0.01, this default."""
    with backend.use_device(tensor.device):
        z = _generator(tensor).standard_normal(tensor.shape, dtype=np.float32)
        tensor.data = (z * np.float32(std) + np.float32(mean)).astype(tensor.dtype, copy=False)
    return tensor


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio; D2L's choice for VGG)."""
    fan_in, fan_out = fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio)."""
    fan_in, fan_out = fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def calculate_gain(nonlinearity, param=None):
    """The factor PyTorch's initializers scale by for a layer followed by `nonlinearity`: sqrt(2) for
    'relu', sqrt(2 / (1 + a^2)) for 'leaky_relu' with slope a (`param`, default 0.01), 5/3 for 'tanh',
    1 for 'linear', 'conv2d' and 'sigmoid'."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; use 'relu', 'leaky_relu', 'tanh', "
                     "'sigmoid', 'linear' or 'conv2d'")


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = dict(zip(("fan_in", "fan_out"), fans(tensor)))[mode]
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, gain^2 / fan) (He et al.), fan = fan_in (default) or fan_out; with PyTorch's defaults (a leaky
    ReLU of slope a = 0) the gain is sqrt(2), so the variance is 2 / fan, as for a ReLU."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan): the uniform draw of kaiming_normal_'s variance."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def constant_(tensor, val):
    """Fill with the number `val`."""
    with backend.use_device(tensor.device):
        tensor.data = backend.get_array_module(tensor.data).full(tensor.shape, val, dtype=tensor.dtype)
    return tensor


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    with backend.use_device(tensor.device):
        tensor.data = backend.get_array_module(tensor.data).zeros(tensor.shape, dtype=tensor.dtype)
    return tensor
