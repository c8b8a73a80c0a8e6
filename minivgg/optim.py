"""Optimizers (SGD, Adam) with PyTorch's update rules, and learning-rate schedulers.

Each optimizer's `update` is the algorithm as PyTorch's documentation writes it, one line per line of
math, on the parameter's raw array in place (so the parameter keeps its identity) and on NumPy and CuPy
alike. State (momentum buffers, Adam's moments) is made on first use on the parameter's device and is
part of a checkpoint through `state_dict()`. Under the fast kernels, NumPy arrays take the same update
from minivgg/fast_cpu.py, split over the CPU threads.
"""
import math

from . import backend, tiers
from .autograd import Tensor


def _parameter_list(name, params):
    """The parameters as a list, refused as PyTorch refuses them: a single tensor (iterating it would give
    its rows, which no backward fills), an element that is no tensor, a non-leaf, an empty list; and a
    parameter given twice, which every step would move twice."""
    if isinstance(params, Tensor):
        raise TypeError(f"{name}: params argument given to the optimizer should be an iterable of Tensors or "
                        f"dicts, but got a single {type(params).__name__}: pass [p] or model.parameters()")
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{name}: params argument given to the optimizer should be an iterable of Tensors or "
                        f"dicts, but got {type(params).__name__}") from None
    if not params:
        raise ValueError(f"{name}: got an empty parameter list")
    seen = set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}: optimizer can only optimize Tensors, but one of the params is "
                            f"{type(p).__name__}")
        if not p.is_leaf:
            raise ValueError(f"{name}: can't optimize a non-leaf Tensor (one computed from others); optimize "
                             f"the tensors it was computed from")
        if id(p) in seen:
            which = p.name or f"shape {tuple(p.shape)}"
            raise ValueError(f"{name}: a parameter appears twice in the list ({which}): each "
                             f"step would move it twice; pass each parameter once")
        seen.add(id(p))
    return params


class Optimizer:
    """One parameter group: `param_groups[0]` holds 'params' and the hyperparameters, as in PyTorch."""

    def __init__(self, params, defaults):
        params = _parameter_list(type(self).__name__, params)
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
        """Update every parameter that has a gradient, in place, with `update`."""
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        # frozen: a stale .grad must not move it either
        todo = [(i, p) for i, p in enumerate(self.params) if p.grad is not None and p.requires_grad]
        if todo and tiers.variant(type(self), backend.get_array_module(todo[0][1].data)).update_all(self, todo):
            return  # the fast tier updated them all at once (PyTorch's foreach idea)
        for i, p in todo:
            # The fast tier's version of `update` for the array's module, if it has one; else this class's own.
            update = tiers.variant(type(self), backend.get_array_module(p.data)).update
            update(p.data, p.grad.data, self.state.setdefault(i, {}), **hyper)

    @staticmethod
    def update_all(optimizer, todo):
        """A fast variant may update all of `todo`, [(index, parameter)], at once and return True; here
        nothing is done (False) and `step` updates one parameter after another."""
        return False

    @staticmethod
    def update(p, g, state, **hyper):
        """One step of the algorithm for one parameter: move its array p in place, from its gradient g
        (left unchanged), its `state` dict and the hyperparameters of param_groups[0]."""
        raise NotImplementedError

    def state_dict(self):
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": {str(i): dict(s) for i, s in self.state.items()}, "hyper": hyper}

    def load_state_dict(self, state):
        """Take a state_dict() back, after checking every entry (a hyperparameter the constructor would
        refuse, a buffer of another shape or of no numbers): a ValueError naming the first wrong entry."""
        hyper = self._checked_state(state)
        for i, entries in state.get("state", {}).items():
            index = int(i)
            device = self.params[index].device
            self.state[index] = {k: (backend.to_device(v, device) if hasattr(v, "shape") else v)
                                 for k, v in entries.items()}
        self.param_groups[0].update(hyper)

    def _checked_state(self, state):
        """The hyperparameters of `state`, once every entry of it is checked."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict) or not isinstance(state.get("state", {}), dict) \
                or not isinstance(state.get("hyper", {}), dict):
            raise ValueError(f"{name}: expected {{'state': {{...}}, 'hyper': {{...}}}} as state_dict() gives")
        ours = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        hyper = state.get("hyper", {})
        for key, value in hyper.items():
            if key not in ours:
                raise ValueError(f"{name}: entry 'hyper/{key}' is not a setting of {type(self).__name__} "
                                 f"(it has {', '.join(ours)})")
            self._check_hyper(name, key, value)
        for i, entries in state.get("state", {}).items():
            if not (str(i).isdigit() and int(i) < len(self.params)):
                raise ValueError(f"{name}: entry 'state/{i}' names no parameter (the optimizer has "
                                 f"{len(self.params)})")
            if not isinstance(entries, dict):
                raise ValueError(f"{name}: entry 'state/{i}' must be a dict of buffers, got {entries!r}")
            for key, value in entries.items():
                where = f"entry 'state/{i}/{key}'"
                if key == "step":
                    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                        raise ValueError(f"{name}: {where} must be a whole number >= 0, got {value!r}")
                    continue
                shape = tuple(self.params[int(i)].shape)
                if not (hasattr(value, "shape") and hasattr(value, "dtype")) or value.dtype.kind != "f":
                    raise ValueError(f"{name}: {where} must be an array of floats of shape {shape}, got {value!r}")
                if tuple(value.shape) != shape:
                    raise ValueError(f"{name}: {where} has shape {tuple(value.shape)}; its parameter has {shape}")
        return hyper

    def _check_hyper(self, name, key, value):
        where = f"{name}: entry 'hyper/{key}'"
        if key == "nesterov":
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be True or False, got {value!r}")
            return
        values = value if key == "betas" else [value]
        if key == "betas" and not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise ValueError(f"{where} must be a pair (beta1, beta2), got {value!r}")
        for v in values:
            below = 1.0 if key in ("momentum", "betas") else math.inf
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < below
            if not ok:  # a rate of 0 is where a cosine schedule ends
                rule = "in [0, 1)" if below == 1.0 else ">= 0"
                raise ValueError(f"{where} must be a finite number {rule}, got {value!r}")


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum: PyTorch's algorithm (without dampening).

    for each step t = 1, 2, ...:
        g = gradient + weight_decay * p                       (if weight_decay)
        b = g at the first step, else momentum * b + g        (if momentum)
        g = g + momentum * b if nesterov else b               (if momentum)
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        hyper = dict(lr=self._checked("learning rate", lr), momentum=self._checked("momentum value", momentum),
                     weight_decay=self._checked("weight_decay value", weight_decay), nesterov=bool(nesterov))
        if nesterov and momentum <= 0:
            raise ValueError(f"{type(self).__name__}: nesterov=True needs momentum > 0")
        super().__init__(params, hyper)

    @staticmethod
    def update(p, g, state, lr, momentum, weight_decay, nesterov):
        if weight_decay != 0:
            g = g + weight_decay * p  # a new array: the gradient stays as backward left it
        if momentum != 0:
            b = state.get("momentum_buffer")
            if b is None:
                b = state["momentum_buffer"] = g.copy()  # the first step: b = g
            else:
                b *= momentum
                b += g  # b = momentum * b + g, in place
            g = g + momentum * b if nesterov else b
        p -= lr * g  # in place: the parameter keeps its array


class Adam(Optimizer):
    """Adam (Kingma & Ba): PyTorch's algorithm, with weight_decay as an L2 penalty added to the gradient
    (torch.optim.Adam; AdamW decays the weights directly instead).

    m = v = 0; for each step t = 1, 2, ...:
        g = gradient + weight_decay * p                       (if weight_decay)
        m = beta1 * m + (1 - beta1) * g                       running mean of the gradient
        v = beta2 * v + (1 - beta2) * g * g                   running mean of its square
        m_hat = m / (1 - beta1 ** t)                          bias corrections: m and v start at 0
        v_hat = v / (1 - beta2 ** t)
        p = p - lr * m_hat / (sqrt(v_hat) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        beta1, beta2 = betas
        super().__init__(params, dict(
            lr=self._checked("learning rate", lr),
            betas=(self._checked("beta parameter at index 0", beta1, below=1.0),
                   self._checked("beta parameter at index 1", beta2, below=1.0)),
            eps=self._checked("epsilon value", eps),
            weight_decay=self._checked("weight_decay value", weight_decay)))

    @staticmethod
    def start(p, state):
        """The state before the first step, made on the parameter's device: t = 0, m = v = 0."""
        if "step" not in state:
            xp = backend.get_array_module(p)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p)  # m
            state["exp_avg_sq"] = xp.zeros_like(p)  # v

    @staticmethod
    def update(p, g, state, lr, betas, eps, weight_decay):
        xp = backend.get_array_module(p)
        beta1, beta2 = betas
        Adam.start(p, state)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if weight_decay != 0:
            g = g + weight_decay * p
        m *= beta1
        m += (1 - beta1) * g  # m = beta1 * m + (1 - beta1) * g, in place
        v *= beta2
        v += (1 - beta2) * (g * g)  # v = beta2 * v + (1 - beta2) * g * g, in place
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        p -= lr * m_hat / (xp.sqrt(v_hat) + eps)


# ---- learning-rate schedulers ----------------------------------------------------------------------
class _Scheduler:
    """Sets the optimizer's rate from the number of `.step()` calls made so far (`last_epoch`).

    Call `.step()` once per epoch, or once per batch for a schedule counted in batches. Every scheduler
    takes the epoch's metric, `.step(metric)`, and only ReduceLROnPlateau uses it, so a training loop
    can call any of them the same way."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self, metric=None):
        self.last_epoch += 1
        self.optimizer.lr = self._lr_at(self.last_epoch)

    def _lr_at(self, epoch):
        """The rate after `epoch` calls of .step()."""
        raise NotImplementedError

    def get_last_lr(self):
        return [self.optimizer.lr]

    def state_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state):
        """Take a state_dict() back, after checking that each of this scheduler's entries is of its kind (a
        count a whole number, a rate a finite number): a ValueError naming the first wrong entry. Entries it
        does not have (another scheduler's, an older version's) are left out."""
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise ValueError(f"{name}: expected a dict as state_dict() gives, got {type(state).__name__}")
        ours = self.state_dict()
        state = {key: value for key, value in state.items() if key in ours}
        for key, value in state.items():
            current = ours[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if isinstance(current, bool) or isinstance(current, str):
                ok = type(value) is type(current)
            elif isinstance(current, int):
                ok = number and isinstance(value, int) and value >= 0
            elif isinstance(current, float) or current is None:
                ok = number or value is None
            else:
                ok = True
            if not ok:
                kind = ("a whole number >= 0" if isinstance(current, int) and not isinstance(current, bool)
                        else "a finite number" if not isinstance(current, (bool, str)) else type(current).__name__)
                raise ValueError(f"{name}: entry {key!r} must be {kind}, got {value!r}")
        self.__dict__.update(state)


class StepLR(_Scheduler):
    """Multiply the rate by gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def _lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Scheduler):
    """lr = eta_min + (base - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max, self.eta_min = int(T_max), float(eta_min)

    def _lr_at(self, epoch):
        cos = math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + cos) / 2


class LambdaLR(_Scheduler):
    """lr = base_lr * lr_lambda(step count), as PyTorch's LambdaLR: lr_lambda(0) applies at once, then each
    .step() moves to the next count. The function is not part of state_dict (rebuild it, then load)."""

    def __init__(self, optimizer, lr_lambda):
        super().__init__(optimizer)
        self.lr_lambda = lr_lambda
        self.optimizer.lr = self._lr_at(0)

    def _lr_at(self, epoch):
        return self.base_lr * self.lr_lambda(epoch)

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
    """Multiply the rate by `factor` when the watched metric has not improved for `patience` epochs
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

    def step(self, metric=None):
        if metric is None:
            raise TypeError("ReduceLROnPlateau.step needs the watched metric: scheduler.step(val_accuracy)")
        self.last_epoch += 1
        metric = float(metric)
        if self._improved(metric):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0
