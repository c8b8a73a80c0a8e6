"""Optimizers (SGD, Adam) with PyTorch's exact update rules, and learning-rate schedulers.

Updates run in place on each parameter's device; state (momentum buffers, Adam moments) is created on
first use on that device and is part of a checkpoint via `state_dict()`.
"""
import math

import numpy as np

from . import backend, cpu, tiers
from .autograd import no_grad

_CHUNK = 1 << 17  # elements per piece (512 KB of float32) when an update is split across CPU threads


def _in_pieces(update, *arrays):
    """Call update(*arrays) — in place, elementwise — once, or, under the fast kernels on the CPU, piece
    by piece on the CPU threads for large arrays: pieces of 512 KB per array stay in a core's cache
    across the update's several passes. Same arithmetic, same result either way.
    """
    if (tiers.get_kernels() != "fast" or backend.get_array_module(arrays[0]) is not np
            or arrays[0].size < 4 * _CHUNK or not all(a.flags.c_contiguous for a in arrays)):
        update(*arrays)
        return
    flats = [a.reshape(-1) for a in arrays]
    pieces = [slice(i, i + _CHUNK) for i in range(0, arrays[0].size, _CHUNK)]
    cpu.parallel_map(lambda s: update(*[f[s] for f in flats]), pieces)


class Optimizer:
    """One parameter group: `param_groups[0]` holds 'params' and the hyperparameters, as in PyTorch."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        self.param_groups = [dict(defaults, params=params)]
        self.state = {}  # parameter index -> {name: array}

    def _checked(self, what, value, below=math.inf):
        """float(value) if it is finite, >= 0 and < `below`, else PyTorch's ValueError naming the optimizer.
        PyTorch lets inf through; an infinite rate or decay makes the weights inf or NaN at the first step."""
        number = float(value)
        if not (math.isfinite(number) and 0.0 <= number < below):
            raise ValueError(f"{type(self).__name__}: Invalid {what}: {value}")
        return number

    @property
    def params(self):
        return self.param_groups[0]["params"]

    @property
    def lr(self):
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        self.param_groups[0]["lr"] = float(value)

    def zero_grad(self, set_to_none=True):
        """Forget the gradients before the next backward: `.grad = None` (PyTorch's default), or, with
        set_to_none=False, each existing `.grad` filled with zeros in place."""
        for p in self.params:
            p.zero_grad(set_to_none)

    def step(self):
        group = self.param_groups[0]
        with no_grad():
            for i, p in enumerate(self.params):
                if p.grad is None or not p.requires_grad:  # frozen: a stale .grad must not move it either
                    continue
                self._update(p, p.grad.data, self.state.setdefault(i, {}), group)

    def _update(self, p, g, state, group):
        raise NotImplementedError

    def state_dict(self):
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {str(i): dict(s) for i, s in self.state.items()}, "hyper": hyper}

    def load_state_dict(self, state):
        for i, entries in state.get("state", {}).items():
            index = int(i)
            if index >= len(self.params):
                raise KeyError(f"{type(self).__name__}.load_state_dict: state for parameter {index}, but the "
                               f"optimizer has {len(self.params)} parameters")
            device = self.params[index].device
            self.state[index] = {k: (backend.to_device(v, device) if hasattr(v, "shape") else v)
                                 for k, v in entries.items()}
        self.param_groups[0].update(state.get("hyper", {}))


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule:
    g = grad + wd * p;  buf = momentum * buf + g (buf = g at the first step);
    g = g + momentum * buf (nesterov) or buf;  p -= lr * g.
    Large CPU updates run in pieces on CPU threads (see _in_pieces)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        hyper = dict(lr=self._checked("learning rate", lr), momentum=self._checked("momentum value", momentum),
                     weight_decay=self._checked("weight_decay value", weight_decay), nesterov=bool(nesterov))
        if nesterov and momentum <= 0:
            raise ValueError(f"{type(self).__name__}: nesterov=True needs momentum > 0")
        super().__init__(params, hyper)

    def _update(self, p, g, state, group):
        xp = backend.get_array_module(p.data)
        dtype = p.dtype.type
        lr, momentum, wd = dtype(group["lr"]), dtype(group["momentum"]), dtype(group["weight_decay"])
        nesterov = group["nesterov"]
        if momentum and "momentum_buffer" not in state:
            state["momentum_buffer"] = xp.zeros_like(p.data)  # 0 * m + g = g: PyTorch's first buffer exactly

        def step(w, d, b=None):
            if wd:
                d = d + wd * w
            if b is None:
                w -= lr * d
                return
            b *= momentum
            b += d
            if nesterov:  # one scratch array: this update is memory-bound
                scratch = b * momentum
                scratch += d
                scratch *= lr
            else:
                scratch = b * lr
            w -= scratch  # w -= lr * (d + momentum * b) or lr * b

        if momentum:
            _in_pieces(step, p.data, g, state["momentum_buffer"])
        else:
            _in_pieces(step, p.data, g)


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule with bias correction; weight_decay adds wd * p to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        beta1, beta2 = betas
        super().__init__(params, dict(
            lr=self._checked("learning rate", lr),
            betas=(self._checked("beta parameter at index 0", beta1, below=1.0),
                   self._checked("beta parameter at index 1", beta2, below=1.0)),
            eps=self._checked("epsilon value", eps),
            weight_decay=self._checked("weight_decay value", weight_decay)))

    def _update(self, p, g, state, group):
        xp = backend.get_array_module(p.data)
        dtype = p.dtype.type
        beta1, beta2 = group["betas"]
        b1, b2 = dtype(beta1), dtype(beta2)
        wd, eps = dtype(group["weight_decay"]), dtype(group["eps"])
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        step_size = dtype(group["lr"] / (1 - beta1 ** t))
        bias_correction2_sqrt = dtype(math.sqrt(1 - beta2 ** t))

        def step(w, d, m, v):  # one scratch array, reused: this update is memory-bound
            if wd:
                d = d + wd * w
            scratch = (1 - b1) * d
            m *= b1
            m += scratch  # m = b1 m + (1 - b1) g
            xp.multiply(d, d, out=scratch)
            scratch *= 1 - b2
            v *= b2
            v += scratch  # v = b2 v + (1 - b2) g^2
            xp.sqrt(v, out=scratch)
            scratch /= bias_correction2_sqrt
            scratch += eps
            xp.divide(m, scratch, out=scratch)
            scratch *= step_size
            w -= scratch  # w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

        _in_pieces(step, p.data, g, state["exp_avg"], state["exp_avg_sq"])


# ---- learning-rate schedulers ----------------------------------------------------------------------
class _Scheduler:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def get_last_lr(self):
        return [self.optimizer.lr]

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state):
        self.__dict__.update(state)


class StepLR(_Scheduler):
    """Multiply the rate by gamma every step_size epochs (call .step() once per epoch)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(_Scheduler):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max, self.eta_min = int(T_max), float(eta_min)

    def step(self):
        self.last_epoch += 1
        cos = math.cos(math.pi * self.last_epoch / self.T_max)
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * (1 + cos) / 2


class LambdaLR(_Scheduler):
    """lr = base_lr * lr_lambda(step count), as PyTorch's LambdaLR: lr_lambda(0) applies at once, then each
    .step() moves to the next count. The function is not part of state_dict (rebuild it, then load)."""

    def __init__(self, optimizer, lr_lambda):
        super().__init__(optimizer)
        self.lr_lambda = lr_lambda
        self.optimizer.lr = self.base_lr * lr_lambda(0)

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.base_lr * self.lr_lambda(self.last_epoch)

    def state_dict(self):
        return {k: v for k, v in super().state_dict().items() if k != "lr_lambda"}


def warmup_cosine(warmup_steps, total_steps):
    """A factor for LambdaLR: rise linearly to 1 over `warmup_steps` (1/W, 2/W, ..., 1), then follow a
    cosine down to 0 at `total_steps`. A short warmup keeps the first, largest updates from a fresh
    network in check; with warmup_steps=0 it is CosineAnnealingLR."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return (1 + math.cos(math.pi * min(progress, 1.0))) / 2

    return factor


class ReduceLROnPlateau(_Scheduler):
    """Divide the rate by 1/factor when the watched metric has not improved for `patience` epochs
    (the paper divides by 10 when validation accuracy stops improving: mode='max', factor=0.1)."""

    def __init__(self, optimizer, mode="max", factor=0.1, patience=10, threshold=1e-4, min_lr=0.0):
        super().__init__(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        self.mode, self.factor, self.patience = mode, float(factor), int(patience)
        self.threshold, self.min_lr = float(threshold), float(min_lr)
        self.best, self.bad_epochs = None, 0

    def _improved(self, value):  # PyTorch's relative threshold
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best * (1 + self.threshold)
        return value < self.best * (1 - self.threshold)

    def step(self, metric):
        self.last_epoch += 1
        metric = float(metric)
        if self._improved(metric):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0
