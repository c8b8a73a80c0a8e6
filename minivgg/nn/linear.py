"""Dense layers: `Linear`, `LazyLinear` (in_features read from its first input), `Flatten`, which
turns feature maps into the rows they take, and `Identity`, which passes its input on."""
import math

from .. import functional as F
from . import _checks, init
from .lazy import _Lazy, create_weight_and_bias
from .module import Module


class Linear(Module):
    """(N, in_features) -> (N, out_features); weight (out, in) as in PyTorch, default uniform +-1/sqrt(in)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        owner = type(self).__name__
        self.in_features = _checks.int_at_least(owner, "in_features", in_features, none_ok=isinstance(self, _Lazy))
        self.out_features = _checks.int_at_least(owner, "out_features", out_features)
        create_weight_and_bias(self, bias)

    def _parameter_shapes(self):
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        dtype = self.weight.dtype
        if x.dtype != dtype:  # NumPy would silently compute in float64
            convert = ".float()" if dtype == "float32" else f".astype('{dtype}')"
            raise TypeError(f"{type(self).__name__}: input dtype {x.dtype} differs from weight dtype {dtype}; "
                            f"convert the input with {convert}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class LazyLinear(_Lazy, Linear):
    """Linear whose in_features is taken from the first input (D2L's choice after Flatten)."""

    def __init__(self, out_features, bias=True):
        Linear.__init__(self, None, out_features, bias)

    def _read_input_size(self, x):
        if x.ndim != 2:
            raise ValueError(f"LazyLinear: expected a 2-D input (N, features), got shape {x.shape}; "
                             "put nn.Flatten() before it")
        self.in_features = x.shape[1]


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x):
        return F.flatten(x, 1)


class Identity(Module):
    """Returns its input: a placeholder where a network has no layer (a head removed, an optional step).
    Arguments are accepted and ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x
