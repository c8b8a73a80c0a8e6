"""Pooling layers: `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d` and `GlobalAvgPool2d`."""
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


class AvgPool2d(Module):
    """Mean over kernel-sized windows; stride defaults to kernel_size; zero padding counts in the mean."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        kernel = _checks.int_pair("AvgPool2d", "kernel_size", kernel_size)
        if stride is not None:
            _checks.int_pair("AvgPool2d", "stride", stride)
        padding_pair = _checks.int_pair("AvgPool2d", "padding", padding, minimum=0)
        if any(p > k // 2 for p, k in zip(padding_pair, kernel)):  # PyTorch's rule
            raise ValueError(f"AvgPool2d: padding must be at most half of kernel_size, got padding={padding!r} "
                             f"and kernel_size={kernel_size!r}")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, *output_size) for any H and W, by averaging windows of about H / OH by W / OW
    (`F.adaptive_avg_pool2d`); output_size 1 is NiN's global average pooling."""

    def __init__(self, output_size):
        super().__init__()
        pair = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
        for size in pair:
            if size is not None:
                _checks.int_at_least("AdaptiveAvgPool2d", "output_size", size)
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel's map (the paper's dense evaluation)."""

    def forward(self, x):
        return x.mean(axis=(2, 3), keepdims=True)
