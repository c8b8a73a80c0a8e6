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


def kaiming_normal_(tensor, mode="fan_in"):
    """N(0, 2 / fan) for ReLU networks (He et al.), fan = fan_in (default) or fan_out."""
    fan_in, fan_out = fans(tensor)
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    return normal_(tensor, 0.0, math.sqrt(2.0 / fan))


def zeros_(tensor):
    with backend.use_device(tensor.device):
        tensor.data = backend.get_array_module(tensor.data).zeros(tensor.shape, dtype=tensor.dtype)
    return tensor
