"""minivgg: a from-scratch deep-learning framework for learners, NumPy (CPU) or CuPy (GPU), and VGG.

`import minivgg` loads the engine (Tensor, the ops, gradcheck) and NumPy, nothing more. Every other
submodule, and the names taken from them (`summary`, `save`, `load`), loads on first use through the
module `__getattr__` below (PEP 562): `mv.optim.SGD` and `mv.nn.Linear` work without importing
`minivgg.optim` or `minivgg.nn` first, and a script pays only for the parts it uses.
"""
from importlib import import_module as _import_module

from . import backend, cuda
from .autograd import AnomalyError, BackwardStep, Function, Tensor, detect_anomaly, is_grad_enabled, no_grad, tensor
from .ops import (
    add,
    broadcast_to,
    concatenate,
    div,
    exp,
    flatten,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    pow,
    reshape,
    sigmoid,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    transpose,
)
from .backend import get_array_module, manual_seed
from .tiers import get_kernels, kernels, set_kernels
from .gradcheck import GradcheckError, gradcheck  # the function, as torch.autograd.gradcheck

__version__ = "0.1.0"

_SUBMODULES = ("augment", "checkpoint", "cli", "config", "cpu", "data", "doctor", "evaluation", "fast_cpu",
               "functional", "inspection", "models", "nn", "optim", "plotting", "recipe", "serialization", "tiers", "train")
_NAMES = {"summary": "models", "save": "serialization", "load": "serialization"}  # name -> submodule it is in


def __getattr__(name):
    """Called only for names not (yet) in this module: import the submodule on first use."""
    if name in _SUBMODULES:
        return _import_module(f"{__name__}.{name}")  # which also sets it as an attribute here
    if name in _NAMES:
        value = getattr(_import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_NAMES))
