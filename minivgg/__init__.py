"""minivgg: a from-scratch deep-learning framework for learners, NumPy (CPU) or CuPy (GPU), and VGG."""
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
from .backend import get_array_module, get_kernels, kernels, manual_seed, set_kernels
from .gradcheck import GradcheckError, gradcheck

__version__ = "0.1.0"

from . import cpu, functional, nn, models  # noqa: E402  (need the names above)
from .models import summary  # noqa: E402
from .serialization import load, save  # noqa: E402
