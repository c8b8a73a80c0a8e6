"""minivgg: a from-scratch deep-learning framework for learners, NumPy (CPU) or CuPy (GPU), and VGG."""
from . import backend, cuda
from .autograd import (
    AnomalyError,
    BackwardStep,
    Function,
    Tensor,
    add,
    broadcast_to,
    concatenate,
    detect_anomaly,
    div,
    exp,
    flatten,
    is_grad_enabled,
    log,
    matmul,
    max,
    mean,
    mul,
    neg,
    no_grad,
    pow,
    reshape,
    sigmoid,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    tensor,
    transpose,
)
from .backend import get_array_module, manual_seed
from .gradcheck import GradcheckError, gradcheck

__version__ = "0.1.0"

from . import functional, nn, models  # noqa: E402  (need the names above)
from .models import summary  # noqa: E402
from .serialization import load, save  # noqa: E402
