"""Lazy layers' shared logic: the `_Lazy` mixin (input size read from the first input) and the creation
of a layer's weight and bias, as placeholders in a lazy layer."""
import numpy as np

from .. import backend
from .module import Parameter


def _lazy_parameter():
    p = Parameter(np.empty(0, dtype=np.float32))
    p._lazy = True
    return p


def create_weight_and_bias(layer, bias):
    """Give `layer` (a Conv2d or Linear) its weight and, if `bias`, its bias: placeholders in a lazy layer,
    else arrays of `layer._parameter_shapes()` with the layer's default values."""
    if not isinstance(bias, (bool, np.bool_)):  # bias='no' is truthy: it would give the layer a bias
        raise TypeError(f"{type(layer).__name__}: bias must be True or False, got {bias!r}")
    if isinstance(layer, _Lazy):
        layer.weight = _lazy_parameter()
        layer.bias = _lazy_parameter() if bias else None
        return
    shapes = layer._parameter_shapes()
    layer.weight = Parameter(np.empty(shapes["weight"], dtype=np.float32))
    layer.bias = Parameter(np.empty(shapes["bias"], dtype=np.float32)) if bias else None
    layer.reset_parameters()


class _Lazy:
    """Mixin of layers whose input size is read from the first input: `class LazyLinear(_Lazy, Linear)`.

    The subclass defines `_read_input_size(x)`, which sets the size the layer lacks. The first call then
    gives the placeholder parameters the layer's `_parameter_shapes()` on x's device, and default values.
    The Parameter objects stay the same, so an optimizer built before the first call still holds them."""

    device = "cpu"  # where load_state_dict puts the parameters of a layer not called yet

    def forward(self, x):
        if not self.weight.is_materialized:
            self._read_input_size(x)
            self._materialize(x.device)
        return super().forward(x)

    def _read_input_size(self, x):
        raise NotImplementedError(f"{type(self).__name__} must define _read_input_size(x)")

    def _materialize(self, device):
        """Give the placeholder parameters their shapes and default values on `device`."""
        shapes = self._parameter_shapes()
        with backend.use_device(device):  # CuPy allocates on its current device
            for name, p in self._parameters.items():
                p.data = backend.array_module_for(device).empty(shapes[name], dtype=np.float32)
                p._lazy = False
        self.reset_parameters()

    def to(self, device):
        super().to(device)
        self.device = backend.canonical_device(device)
        return self
