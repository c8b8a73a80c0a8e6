"""`Function`, one graph node per op call: the contract every op implements, and what calling one records.
Also the switches that govern recording: `no_grad()` and `detect_anomaly()`.

A forward call of a `Function` computes on raw arrays and, when gradients are wanted, links the output
tensor to the function and the function to its inputs (`Edge`s). This module sits below the Tensor
(autograd.py) and the ops (ops.py), which both build on it: it knows tensors only as `TensorBase`, and
a Function makes its output through a tensor it was given (`like._new(array)`).
"""
import contextlib
import traceback
import weakref

import numpy as np

from . import backend

_state = {"grad_enabled": True, "anomaly": False}


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded (evaluation, optimizer updates)."""
    previous = _state["grad_enabled"]
    _state["grad_enabled"] = False
    try:
        yield
    finally:
        _state["grad_enabled"] = previous


def is_grad_enabled():
    return _state["grad_enabled"]


class AnomalyError(FloatingPointError):
    """Raised under `detect_anomaly()` at the first op that produces NaN or inf."""


@contextlib.contextmanager
def detect_anomaly():
    """Raise at the first forward or backward op whose result holds NaN or inf, naming the op and
    the line of user code that created it. Slow (one finiteness check per op): for debugging."""
    previous = _state["anomaly"]
    _state["anomaly"] = True
    try:
        yield
    finally:
        _state["anomaly"] = previous


def _user_line():
    """'file:line: code' of the innermost stack frame outside this package."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/minivgg/" not in frame.filename.replace("\\", "/"):
            return f"{frame.filename}:{frame.lineno}: {frame.line}"
    return "<unknown>"


def _check_finite(array, what):
    xp = backend.get_array_module(array)
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        raise AnomalyError(what)


class TensorBase:
    """What a Function takes and makes. `minivgg.Tensor` (autograd.py) is the one subclass: it has
    `data`, `requires_grad`, `creator`, `_version_counter`, and `_new(array)`, the tensor an op returns."""


class VersionCounter:
    """How many in-place changes a tensor's array has had (`t._version`). Tensors on one array (a view
    made by an op, `detach()`) share one counter, as in PyTorch."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


class Function:
    """One op. Subclasses define `forward(*arrays) -> array` and `backward(grad_out) -> grads`.

    `backward` returns one gradient per input (None where `self.needs_input_grad[i]` is False), each of
    the input's shape and a floating dtype; anything else is an error naming the op. Arrays of the
    inputs or the output that backward reads go through `self.save_for_backward(...)` and come back as
    `self.saved_tensors`, checked for in-place changes made in between (as PyTorch's ctx); what forward
    computes for itself (shapes, masks) it keeps on `self`. `inputs`: one `Edge` per input, the way back.
    """

    inputs = ()
    needs_input_grad = ()
    _saved, _saved_versions = (), None

    def __call__(self, *inputs):
        """Forward on the inputs' arrays, then link the graph (DeZero's two steps). `_track` holds what
        makes the engine behave as PyTorch's (version counters, anomaly mode); a first reading can skip it."""
        tensors = _as_tensors(self.name, inputs)
        self.needs_input_grad = tuple(t.requires_grad and _state["grad_enabled"] for t in tensors)
        out = tensors[0]._new(self.forward(*[t.data for t in tensors]))
        self._track(out, tensors)
        if any(self.needs_input_grad):  # under no_grad() nothing is kept for backward
            out.requires_grad, out.creator = True, self
            self.inputs = [Edge(t) for t in tensors]
            self.output = weakref.ref(out)  # weak: the output owns its creator, not the reverse
            self.output_shape, self.output_dtype = out.data.shape, out.data.dtype
            self._saved_versions = [_version_of(a, tensors, out) for a in self._saved]
        return out

    def _track(self, out, tensors):
        """PyTorch's bookkeeping: an output that is a view of an input shares its version counter; under
        detect_anomaly() the output is checked for NaN and inf, naming the user's line that made it."""
        _share_counter_if_view(out, tensors)
        if _state["anomaly"]:
            self.created_at = _user_line()
            _check_finite(out.data, f"forward of {self.name} produced NaN or inf, created at {self.created_at}")

    @property
    def name(self):
        """The op's name in errors and traces: Conv2dFunction -> 'Conv2d'."""
        return type(self).__name__.removesuffix("Function")

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def save_for_backward(self, *arrays):
        """Keep these arrays (None allowed) for backward. Those of an input or of the output are
        checked, when backward reads them, for in-place changes since (version counters)."""
        self._saved = arrays

    @property
    def saved_tensors(self):
        """The arrays given to save_for_backward; a RuntimeError if an in-place op changed one since."""
        for array, (counter, version, what) in zip(self._saved, self._saved_versions or ()):
            if counter is not None and counter.value != version:
                raise RuntimeError(
                    "one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{array.dtype} {tuple(array.shape)}], which is {what} of {self.name}Backward, "
                    f"is at version {counter.value}; expected version {version} instead. Hint: change it "
                    "out of place (x = x + 1), or after backward(); writes to .data are not tracked."
                )
        return self._saved

    def release(self):
        """Drop the graph links and saved arrays once backward is done (unless retain_graph)."""
        self.__dict__.clear()
        self.released = True


def _as_tensors(op, inputs):
    """The inputs as tensors (numbers and arrays made constants on the first tensor's device), all on one
    device."""
    like = _first_tensor(op, inputs)
    tensors = [x if isinstance(x, TensorBase) else like._new(_constant(x, like)) for x in inputs]
    _check_same_device(op, tensors)
    return tensors


def _first_tensor(op, inputs):
    for x in inputs:
        if isinstance(x, TensorBase):
            return x
    kinds = ", ".join(type(x).__name__ for x in inputs)
    raise TypeError(f"{op}(): expected at least one Tensor among the inputs, got ({kinds}). Wrap arrays "
                    "with minivgg.tensor(...)")


def _constant(x, like):
    """A Python number or array as an array on `like`'s device; a number takes like's float dtype."""
    if np.isscalar(x):
        # NumPy 2 treats Python scalars as weak: 0.5 * float32 stays float32. Keep it so.
        return like.xp.asarray(x, dtype=like.dtype if like.dtype.kind == "f" else None)
    return like.xp.asarray(x)


def _share_counter_if_view(out, tensors):
    """An output that is a view of an input's array (reshape, slices) shares that input's version counter,
    so an in-place change through either is seen by the ops that saved the other."""
    base = out.data.base
    if base is None:
        return
    for t in tensors:
        if base is t.data or base is t.data.base:
            out._version_counter, out._is_view = t._version_counter, True
            return


def _version_of(array, tensors, out):
    """(counter, its value now, 'output 0' / 'input i') for a saved array that is the output's or an
    input's; (None, 0, '') for one forward made for itself, which no in-place op can reach."""
    if array is out.data:
        return out._version_counter, out._version_counter.value, "output 0"
    for i, t in enumerate(tensors):
        if array is t.data:
            return t._version_counter, t._version_counter.value, f"input {i}"
    return None, 0, ""


class Edge:
    """A Function's link to one input: the Function that made it (`creator`, None for a leaf), the
    input's shape, dtype and name, and `tensor()`, the input itself.

    A leaf is held: backward stores its `.grad`. A tensor another Function made is held only weakly:
    holding it would keep its array alive until backward even where no backward step reads it (a
    convolution's output, say, once the ReLU after it has saved its own output). Each Function saves what
    its backward needs; the graph keeps only the way back (as PyTorch's next_functions). A tensor given a
    hook or retain_grad() is kept by its maker instead, so backward still finds it."""

    def __init__(self, tensor):
        self.creator, self.shape, self.dtype, self.name = tensor.creator, tensor.shape, tensor.dtype, tensor.name
        self.is_leaf = tensor.creator is None
        self._tensor = tensor if self.is_leaf else weakref.ref(tensor)

    def tensor(self):
        """The input tensor: a leaf always; a made tensor while someone else holds it, else None."""
        return self._tensor if self.is_leaf else self._tensor()

    def __repr__(self):
        maker = "leaf" if self.is_leaf else self.creator.name
        return f"Edge({maker}, shape={self.shape})"


def _check_same_device(op, tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        listing = ", ".join(f"{t.device} {t.shape}" for t in tensors)
        raise RuntimeError(
            f"{op}: inputs are on different devices ({listing}). Move them with .to(device) first."
        )
