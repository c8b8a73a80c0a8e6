"""Convolution layers: `Conv2d` and `LazyConv2d`, which reads in_channels from its first input."""
import math

from .. import functional as F
from . import _checks, init
from .lazy import _Lazy, create_weight_and_bias
from .module import Module


class Conv2d(Module):
    """2-D convolution: (N, in_channels, H, W) -> (N, out_channels, OH, OW). Weight (out, in, KH, KW).

    Default values as in PyTorch: weight and bias uniform in +-1/sqrt(fan_in)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _checks.int_at_least(owner, "in_channels", in_channels, none_ok=isinstance(self, _Lazy))
        self.out_channels = _checks.int_at_least(owner, "out_channels", out_channels)
        self.kernel_size = _checks.int_pair(owner, "kernel_size", kernel_size)
        self.stride = _checks.int_pair(owner, "stride", stride)
        self.padding = _checks.int_pair(owner, "padding", padding, minimum=0)
        create_weight_and_bias(self, bias)

    def _parameter_shapes(self):
        return {"weight": (self.out_channels, self.in_channels) + self.kernel_size, "bias": (self.out_channels,)}

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(init.fans(self.weight)[0])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):  # PyTorch's: padding and bias only when not their defaults
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
                + (f", padding={self.padding}" if self.padding != (0, 0) else "")
                + ("" if self.bias is not None else ", bias=False"))


class LazyConv2d(_Lazy, Conv2d):
    """Conv2d whose in_channels is taken from the first input (D2L's choice)."""

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, bias=True):
        Conv2d.__init__(self, None, out_channels, kernel_size, stride, padding, bias)

    def _read_input_size(self, x):
        self.in_channels = x.shape[1]
