"""Numerical gradient check: compare backward() with central finite differences, in float64."""
import numpy as np

from . import backend
from .autograd import Tensor, no_grad


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message holds a table of the worst entries."""


def _as_float64_inputs(inputs):
    """float64 tensors are used as they are (so a module's own float64 parameters can be checked in
    place); other float tensors are copied to float64."""
    result = []
    for t in inputs:
        if isinstance(t, Tensor) and t.dtype == np.float64:
            xp = backend.get_array_module(t.data)
            t.data = xp.ascontiguousarray(t.data)  # perturbed through a flat view below
            t.grad = None
            result.append(t)
        elif isinstance(t, Tensor) and t.dtype.kind == "f":
            result.append(Tensor(t.data.astype("float64"), requires_grad=t.requires_grad))
        else:
            result.append(t)
    return result


def _projected(fn, inputs, projection):
    """sum(fn(inputs) * projection): a scalar whose gradient tests every output entry at once."""
    return float((fn(*inputs).data * projection).sum())


def _disagrees(numerical, exact, atol, rtol):
    return abs(numerical - exact) > atol + rtol * abs(numerical)


def _directional_rows(value, inputs, checked, analytic, rng, eps, atol, rtol):
    """One central difference along a random direction d of every checked input, against sum(grad * d)."""
    xp = backend.get_array_module(inputs[checked[0]].data)
    directions = {i: xp.asarray(rng.standard_normal(inputs[i].shape)) for i in checked}
    for i in checked:
        inputs[i].data = inputs[i].data + eps * directions[i]
    plus = value()
    for i in checked:
        inputs[i].data = inputs[i].data - 2 * eps * directions[i]
    minus = value()
    for i in checked:
        inputs[i].data = inputs[i].data + eps * directions[i]
    numerical = (plus - minus) / (2 * eps)
    exact = float(sum(float((analytic[i] * directions[i]).sum()) for i in checked))
    return [("all (direction)", "-", numerical, exact)] if _disagrees(numerical, exact, atol, rtol) else []


def _elementwise_rows(value, inputs, checked, analytic, eps, atol, rtol):
    """A central difference for every entry of every checked input, against that entry of the gradient."""
    rows = []
    for i in checked:
        data = inputs[i].data
        flat = data.reshape(-1)  # a view: writing into it perturbs the input
        grad = analytic[i].reshape(-1)
        for k in range(flat.size):
            original = float(flat[k])
            flat[k] = original + eps
            plus = value()
            flat[k] = original - eps
            minus = value()
            flat[k] = original
            numerical, exact = (plus - minus) / (2 * eps), float(grad[k])
            if _disagrees(numerical, exact, atol, rtol):
                index = tuple(int(v) for v in np.unravel_index(k, data.shape))
                rows.append((f"input {i}", index, numerical, exact))
    return rows


def _failure(rows, atol, rtol, max_rows):
    """The GradcheckError for the entries that differ, the worst first."""
    rows = sorted(rows, key=lambda r: -abs(r[2] - r[3]))
    lines = [f"{'input':<16} {'index':<16} {'numerical':>14} {'analytic':>14} {'difference':>12}"]
    for name, index, numerical, exact in rows[:max_rows]:
        lines.append(f"{name:<16} {str(index):<16} {numerical:>14.6g} {exact:>14.6g} {exact - numerical:>12.3g}")
    return GradcheckError(f"gradcheck failed: {len(rows)} entries differ (atol={atol}, rtol={rtol})\n"
                          + "\n".join(lines))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="elementwise", seed=0, max_rows=10):
    """Check the gradients of `fn(*inputs)` w.r.t. every input that requires grad. Returns True or raises.

    Inputs are taken in float64 (copied when they are not). A fixed random projection r turns any output into
    the scalar sum(fn(x) * r). mode="elementwise" perturbs every entry (2 calls per entry); mode="directional"
    perturbs all inputs along one random direction d and compares sum(grad * d) (2 calls in total),
    Chainer's check for large inputs.
    """
    if mode not in ("elementwise", "directional"):
        raise ValueError(f"gradcheck: mode must be 'elementwise' or 'directional', got {mode!r}")
    inputs = _as_float64_inputs(list(inputs))
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    rng = np.random.default_rng(seed)
    out = fn(*inputs)
    xp = backend.get_array_module(out.data)
    projection = xp.asarray(rng.standard_normal(out.shape))
    out.backward(Tensor(projection.astype(out.dtype)))
    analytic = {i: (inputs[i].grad.data if inputs[i].grad is not None else xp.zeros_like(inputs[i].data))
                for i in checked}

    def value():
        with no_grad():
            return _projected(fn, inputs, projection)

    if mode == "directional":
        rows = _directional_rows(value, inputs, checked, analytic, rng, eps, atol, rtol)
    else:
        rows = _elementwise_rows(value, inputs, checked, analytic, eps, atol, rtol)
    if rows:
        raise _failure(rows, atol, rtol, max_rows)
    return True
