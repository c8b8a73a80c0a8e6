"""minivgg: a from-scratch deep-learning framework for learners, NumPy (CPU) or CuPy (GPU), and VGG.

`import minivgg` loads the engine (Tensor, the ops, the tensor makers and dtype names, gradcheck) and NumPy,
nothing more. Every other submodule, and the names taken from them (`summary`, `save`, `load`, `relu`), loads
on first use through the module `__getattr__` below (PEP 562): `mv.optim.SGD` and `mv.nn.Linear` work without
importing `minivgg.optim` or `minivgg.nn` first, and a script pays only for the parts it uses.

The top-level names are PyTorch's, so that `import minivgg as torch` runs code written for PyTorch (see the
README's table of what does and does not): `torch.randn(size=...)`, `torch.float32`, `torch.device('cpu')`.
"""
from importlib import import_module as _import_module

from . import backend, cuda
from .autograd import AnomalyError, BackwardStep, Function, Tensor, detect_anomaly, is_grad_enabled, no_grad, tensor
from .ops import (
    abs,
    add,
    amax,
    amin,
    argmax,
    argmin,
    broadcast_to,
    cat,
    clone,
    concatenate,
    div,
    exp,
    flatten,
    log,
    log_softmax,
    matmul,
    max,
    mean,
    min,
    mul,
    neg,
    norm,
    permute,
    pow,
    reshape,
    sigmoid,
    softmax,
    sort,
    sqrt,
    squeeze,
    stack,
    std,
    sub,
    sum,
    take_along_dim,
    tanh,
    topk,
    transpose,
    unsqueeze,
    var,
)
from .creation import (  # PyTorch's tensor makers and dtype names (`bool`, `float`, `int` among them, as torch.bool)
    arange,
    double,
    eye,
    float16,
    float32,
    float64,
    from_numpy,
    full,
    full_like,
    half,
    int8,
    int16,
    int32,
    int64,
    linspace,
    long,
    normal,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    short,
    uint8,
    zeros,
    zeros_like,
)
from .creation import bool_ as bool, float32 as float, int32 as int  # noqa: A001  (torch.bool, torch.float, torch.int)
from .devices import device
from .backend import get_array_module, manual_seed
from .tiers import get_kernels, kernels, set_kernels
from .gradcheck import GradcheckError, gradcheck  # the function, as torch.autograd.gradcheck

__version__ = "0.1.0"

_SUBMODULES = ("augment", "checkpoint", "cli", "config", "cpu", "data", "doctor", "evaluation", "fast_cpu",
               "functional", "inspection", "models", "nn", "optim", "plotting", "recipe", "serialization", "tiers", "train")
_NAMES = {"summary": "models", "save": "serialization", "load": "serialization",  # name -> submodule it is in
          "relu": "functional"}


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
