"""Helpers on modules: their device, evaluation mode (with or without a graph), their leaf layers, the
check that lazy layers have run; and on parameters' gradients, `clip_grad_norm_` as in `torch.nn.utils`."""
import contextlib
import math

from .. import backend
from ..autograd import Tensor, no_grad
from . import _checks


def device_of(module):
    """The device of a module's parameters ('cpu' or 'cuda:N'); 'cpu' for a module without any."""
    first = next(module.parameters(), None)
    return "cpu" if first is None else first.device


@contextlib.contextmanager
def eval_mode(module):
    """Evaluation mode (dropout off) inside the block, the module's previous mode restored on leaving; the
    graph is still built (for gradients in evaluation mode)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def evaluating(module):
    """Evaluation mode, no graph, and CuPy's current device the module's; on leaving, the module's previous
    mode is restored, so a helper using it leaves the caller's model as it found it."""
    with eval_mode(module), no_grad(), backend.use_device(device_of(module)):
        yield module


def check_materialized(module, what):
    """Raise, naming them, if lazy layers of `module` have not been called yet (their shapes are unknown);
    `what` names the caller in the message."""
    lazy = [name for name, p in module.named_parameters() if not p.is_materialized]
    if lazy:
        raise RuntimeError(f"{what}: {', '.join(lazy)} belong to lazy layers not yet called; run one "
                           "forward pass first (e.g. net(x) or minivgg.summary(net, input_shape))")


def leaf_modules(module):
    """[(dotted name, module)] of every module without children, in definition (forward) order; a module
    without children is its own only leaf, named ''."""
    return [(name, m) for name, m in module.named_modules() if next(m.children(), None) is None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together so their joint norm is at most `max_norm`; returns the norm before.

    PyTorch's rule: total = the norm of all gradients as one vector, coef = max_norm / (total + 1e-6),
    and every gradient is multiplied by min(coef, 1), in place. A step's direction is kept; only a rare
    huge step (a deep plain net leaving its first plateau) is shortened. `norm_type` 2 or inf.
    """
    _checks.number_between("clip_grad_norm_", "max_norm", max_norm, 0)
    if isinstance(parameters, Tensor):  # one tensor, as PyTorch takes it (iterating it would give its rows)
        parameters = [parameters]
    grads = [p.grad.data for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    xp = backend.get_array_module(grads[0])
    if norm_type == math.inf:
        total = float(xp.stack([xp.abs(g).max() for g in grads]).max())
    elif norm_type == 2:
        flats = [g.reshape(-1) for g in grads]
        # dot: one BLAS pass per array; summed on the device, so a GPU waits once, not per array
        total = math.sqrt(float(xp.stack([xp.dot(f, f) for f in flats]).sum()))
    else:
        raise ValueError(f"clip_grad_norm_: norm_type must be 2 or inf, got {norm_type}")
    coef = max_norm / (total + 1e-6)
    if coef >= 1.0:  # multiplying by min(coef, 1) = 1 would change nothing
        return total
    scale = grads[0].dtype.type(coef)  # NaN for a NaN norm, as in PyTorch: the loss check then stops
    for g in grads:
        g *= scale
    return total
