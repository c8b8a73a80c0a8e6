"""minivgg: a from-scratch deep-learning framework for learners, NumPy (CPU) or CuPy (GPU), and VGG."""
import os

# OpenBLAS's idle threads spin for a long while after each matrix product, taking the cores from the
# elementwise work minivgg splits across threads (backend.parallel); a short spin makes a VGG step ~15%
# faster. Read once, when NumPy loads OpenBLAS: it has no effect if NumPy was imported first, and a
# value the user set wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")

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
