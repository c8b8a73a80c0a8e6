"""Pooling layers: `MaxPool2d` and `GlobalAvgPool2d`."""
from .. import functional as F
from . import _checks
from .module import Module


class MaxPool2d(Module):
    """Max over kernel-sized windows; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        kernel = _checks.int_pair("MaxPool2d", "kernel_size", kernel_size)
        if stride is not None:
            _checks.int_pair("MaxPool2d", "stride", stride)
        padding_pair = _checks.int_pair("MaxPool2d", "padding", padding, minimum=0)
        if any(p > k // 2 for p, k in zip(padding_pair, kernel)):  # PyTorch's rule
            raise ValueError(f"MaxPool2d: padding must be at most half of kernel_size, got padding={padding!r} "
                             f"and kernel_size={kernel_size!r}")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel's map (the paper's dense evaluation)."""

    def forward(self, x):
        return x.mean(axis=(2, 3), keepdims=True)
