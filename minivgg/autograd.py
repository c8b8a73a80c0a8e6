"""The autograd engine: `Tensor`, `Function` (one graph node per op call) and the backward walk.

A forward call of a `Function` computes on raw arrays and, when gradients are wanted, links the output
tensor to the function and the function to its inputs. `Tensor.backward()` sorts those functions in
topological order without recursion and calls each one's `backward` once, after every gradient that
flows into its output has arrived. `Tensor.backward_steps()` is the same walk, yielded one node at a time.
"""
import contextlib
import traceback
import weakref

import numpy as np

from . import backend, printing

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


class Function:
    """One op. Subclasses define `forward(*arrays) -> array` and `backward(grad_out) -> grads`.

    `backward` returns one gradient per input (or None where `self.needs_input_grad[i]` is False),
    each of the input's shape. Forward stores on `self` only what backward needs. `inputs`, the graph's
    way back: each input that is a leaf tensor itself, an `Edge` to its maker for each other input.
    """

    inputs = ()
    needs_input_grad = ()

    def __call__(self, *inputs):
        tensors = [_as_tensor(x, like=inputs) for x in inputs]
        _check_same_device(self.name, tensors)
        self.needs_input_grad = tuple(t.requires_grad and _state["grad_enabled"] for t in tensors)
        records_graph = any(self.needs_input_grad)  # under no_grad() nothing is kept for backward
        y = self.forward(*[t.data for t in tensors])
        out = Tensor(y)
        if _state["anomaly"]:
            self.created_at = _user_line()
            _check_finite(y, f"forward of {self.name} produced NaN or inf, created at {self.created_at}")
        if records_graph:
            out.requires_grad = True
            out.creator = self
            self.inputs = [t if t.creator is None else Edge(t) for t in tensors]
            self.output = weakref.ref(out)  # weak: the output owns its creator, not the reverse
            self.output_shape, self.output_dtype = y.shape, y.dtype
        return out

    @property
    def name(self):
        """The op's name in errors and traces: Conv2dFunction -> 'Conv2d'."""
        return type(self).__name__.removesuffix("Function")

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError

    def release(self):
        """Drop the graph links and saved arrays once backward is done (unless retain_graph)."""
        self.__dict__.clear()
        self.released = True


class Edge:
    """A Function's link to an input that another Function made: that maker (where backward goes on),
    the input's shape and dtype, and a weak reference to the tensor itself.

    Holding the tensor would keep its array alive until backward even where no backward step reads it:
    a convolution's output, say, once the ReLU after it has kept its own output. Each Function keeps
    what its backward needs on `self`; the graph keeps only the way back (as PyTorch's next_functions).
    A tensor given a hook or retain_grad() is kept by its maker instead, so backward still finds it."""

    is_leaf = False

    def __init__(self, tensor):
        self.creator, self.shape, self.dtype, self.name = tensor.creator, tensor.shape, tensor.dtype, tensor.name
        self.tensor = weakref.ref(tensor)  # the tensor while someone else holds it, else None

    def __repr__(self):
        return f"Edge({self.creator.name}, shape={self.shape})"


def _check_same_device(op, tensors):
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        listing = ", ".join(f"{t.device} {t.shape}" for t in tensors)
        raise RuntimeError(
            f"{op}: inputs are on different devices ({listing}). Move them with .to(device) first."
        )


def _as_tensor(x, like=()):
    """Wrap a Python number or array as a constant tensor with the dtype/device of its Tensor peers."""
    if isinstance(x, Tensor):
        return x
    peer = next((t for t in like if isinstance(t, Tensor)), None)
    if peer is not None and np.isscalar(x):
        # NumPy 2 treats Python scalars as weak: 0.5 * float32 stays float32. Keep it so.
        return Tensor(peer.xp.asarray(x, dtype=peer.dtype if peer.dtype.kind == "f" else None))
    if peer is not None:
        return Tensor(peer.xp.asarray(x))
    return Tensor(np.asarray(x))


def _ones_like(array):
    return backend.get_array_module(array).ones_like(array)


class Tensor:
    """An array (`.data`, NumPy or CuPy) plus what autograd needs: `.grad`, `.requires_grad`, `.creator`."""

    __array_priority__ = 100  # numpy_array * tensor -> Tensor.__rmul__

    def __init__(self, data, requires_grad=False, name=None):
        xp = backend.get_array_module(data)
        if not isinstance(data, xp.ndarray):
            data = xp.asarray(data)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self.name = name
        self._retains_grad = False
        self._hooks = []

    # ---- facts about the array -------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        """PyTorch's format: `tensor([1., 2.], grad_fn=<MulBackward>)` (see minivgg/printing.py)."""
        return printing.tensor_repr(self)

    # ---- conversions -------------------------------------------------------------------------
    def numpy(self):
        """A NumPy copy of the data (copied from the GPU when needed)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The single value as a Python number (one device synchronization)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """This tensor on `device` ('cpu', 'cuda', 'cuda:N'); itself when already there."""
        data = backend.to_device(self.data, device)
        if data is self.data:
            return self
        out = Tensor(data, requires_grad=self.requires_grad and self.is_leaf, name=self.name)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def float(self):
        return Tensor(self.data.astype("float32", copy=False))

    def astype(self, dtype):
        return Tensor(self.data.astype(dtype, copy=False))

    # ---- autograd ----------------------------------------------------------------------------
    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self):
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep it)."""
        self._retains_grad = True
        self._keep_for_backward()

    def register_hook(self, fn):
        """Call `fn(grad)` when this tensor's gradient is complete; a returned tensor replaces it."""
        self._hooks.append(fn)
        self._keep_for_backward()
        return _HookHandle(self._hooks, fn)

    def _keep_for_backward(self):
        """Have this tensor's maker hold it: the graph links to it only weakly (Edge), and backward must
        find it for its hooks and .grad even if the code that made it has let it go."""
        if self.creator is not None:
            self.creator.kept_output = self

    def zero_grad(self, set_to_none=True):
        """Forget the gradient: `.grad = None`, or with set_to_none=False fill it with zeros in place."""
        if set_to_none:
            self.grad = None
        elif self.grad is not None:
            self.grad.data[...] = 0

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` that requires grad.

        `grad` is needed when self is not a scalar: the gradient of some scalar w.r.t. self, same shape.
        """
        for _ in self.backward_steps(grad, retain_graph=retain_graph):
            pass

    def backward_steps(self, grad=None, retain_graph=False):
        """Backward one graph node at a time: a generator of `BackwardStep`s (see `minivgg.inspection`)."""
        return _backward_walk(self, grad, retain_graph)

    # ---- comparisons give plain boolean tensors; the arithmetic operators (+, *, @, [], .sum(), ...)
    # are the ops of minivgg/ops.py, attached to Tensor at the end of that module.
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(self.data, op)(other))

    def __lt__(self, other):
        return self._compare(other, "__lt__")

    def __le__(self, other):
        return self._compare(other, "__le__")

    def __gt__(self, other):
        return self._compare(other, "__gt__")

    def __ge__(self, other):
        return self._compare(other, "__ge__")

    def __eq__(self, other):
        return self._compare(other, "__eq__")

    def __ne__(self, other):
        return self._compare(other, "__ne__")

    __hash__ = object.__hash__  # tensors are graph nodes: hashed by identity

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .all() or .any()")
        return bool(self.data)

    def argmax(self, axis=None):
        return Tensor(self.data.argmax(axis=axis))

    def all(self):
        return bool(self.data.all())

    def any(self):
        return bool(self.data.any())


class _HookHandle:
    """Returned by register_hook: `.remove()` takes the hook off again."""

    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def tensor(data, requires_grad=False, device=None, dtype=None):
    """A new tensor holding a copy of `data` (a list, number, array or Tensor; never shared, as in PyTorch).
    Float data becomes float32 unless `dtype` says; a Tensor keeps its own dtype."""
    if isinstance(data, Tensor):
        data, dtype = data.data, data.dtype if dtype is None else dtype
    xp = backend.get_array_module(data)
    if dtype is None:
        kind = xp.asarray(data).dtype.kind
        dtype = {"f": "float32", "i": "int64", "u": None, "b": "bool"}.get(kind)
    array = xp.array(data, dtype=dtype, copy=True)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


# ---------------------------------------------------------------------------------------------------
# The backward walk
# ---------------------------------------------------------------------------------------------------
class BackwardStep:
    """What one step of backward did at one graph node (yielded by `Tensor.backward_steps`).

    index: position in the walk; op: the Function's name; function: the node itself;
    input_shapes/input_dtypes, output_shape/output_dtype; grad_output: the gradient that arrived at the
    node's output (array); grad_inputs: the gradient sent to each input (array, or None if not needed).
    """

    def __init__(self, index, function, grad_output, grad_inputs):
        self.index = index
        self.op = function.name
        self.function = function
        self.input_shapes = [t.shape for t in function.inputs]
        self.input_dtypes = [t.dtype for t in function.inputs]
        self.output_shape = function.output_shape
        self.output_dtype = function.output_dtype
        self.grad_output = grad_output
        self.grad_inputs = grad_inputs

    def __repr__(self):
        return f"BackwardStep({self.index}, {self.op}, output {self.output_shape}, inputs {self.input_shapes})"


def graph_functions(root, what="backward()"):
    """The Functions that made tensor `root`, each listed after the Functions that made its inputs
    (forward order). Iterative, so a deep graph does not reach Python's recursion limit."""
    if root.creator is None:
        return []
    order, seen = [], set()
    stack = [(root.creator, False)]
    while stack:
        fn, inputs_listed = stack.pop()
        if inputs_listed:
            order.append(fn)
            continue
        if fn in seen:
            continue
        if getattr(fn, "released", False):
            raise RuntimeError(
                f"{what}: the graph through {fn.name} was already freed by an earlier backward(). "
                "Pass retain_graph=True to that backward() to use the graph again."
            )
        seen.add(fn)
        stack.append((fn, True))  # listed once everything pushed after it (its inputs' makers) is
        stack.extend((t.creator, False) for t in fn.inputs if t.creator is not None and t.creator not in seen)
    return order


def _finish_gradient(t, g):
    """Run `t`'s hooks on its complete gradient `g`; store it if `t` keeps grads. Returns the final g."""
    for hook in list(t._hooks):
        replaced = hook(Tensor(g))
        if replaced is not None:
            g = replaced.data if isinstance(replaced, Tensor) else replaced
    if t.is_leaf or t._retains_grad:
        t.grad = Tensor(g) if t.grad is None else Tensor(t.grad.data + g)
    return g


def _root_gradient(root, grad):
    """The gradient that starts the walk: ones for a scalar, else `grad` (checked against root's shape)."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward(): this tensor does not require grad and has no graph. Create the inputs with "
            "requires_grad=True (or use nn.Parameter), and do not call backward inside no_grad()."
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward(): the tensor has shape {root.shape}, so its gradient is ambiguous. Call "
                "backward on a scalar (e.g. loss.sum() or loss.mean()), or pass grad=, a tensor of "
                f"shape {root.shape} holding d(scalar)/d(this tensor)."
            )
        return _ones_like(root.data)
    grad = grad.data if isinstance(grad, Tensor) else root.xp.asarray(grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward(): grad has shape {grad.shape}, the tensor has shape {root.shape}")
    return grad


def _backward_walk(root, grad, retain_graph):
    grad = _root_gradient(root, grad)
    if root.creator is None:
        _finish_gradient(root, grad)
        return
    order = graph_functions(root)[::-1]  # consumers before the functions that made their inputs
    leaf_uses = {}  # graph edges into each leaf: its gradient is complete when all have delivered
    for fn in order:
        for t, needed in zip(fn.inputs, fn.needs_input_grad):
            if needed and t.creator is None:
                leaf_uses[t] = leaf_uses.get(t, 0) + 1
    # Outputs with hooks or retain_grad, held here: releasing their consumer may drop the last reference.
    watched = {fn: out for fn in order if (out := fn.output()) is not None and (out._hooks or out._retains_grad)}
    pending, leaf_grads = {root.creator: grad}, {}  # gradients still arriving, per function and per leaf
    for index, fn in enumerate(order):
        gy = pending.pop(fn, None)
        if gy is None:  # unreachable in practice: every listed node has a consumer on the path
            continue
        if fn in watched:
            gy = _finish_gradient(watched.pop(fn), gy)
        gxs = fn.backward(gy)
        gxs = gxs if isinstance(gxs, tuple) else (gxs,)
        for i, (t, needed, gx) in enumerate(zip(fn.inputs, fn.needs_input_grad, gxs)):
            if not needed:
                continue
            if _state["anomaly"]:
                _check_finite(gx, f"backward of {fn.name} (step {index}) produced NaN or inf in the gradient "
                                  f"of input {i}; the node was created at {getattr(fn, 'created_at', '?')}")
            if gx.dtype != t.dtype:  # keep float32 float32 even if an op's arithmetic upcast
                gx = gx.astype(t.dtype)
            if t.creator is not None:  # a gradient for the function that made t: add it to what it has
                pending[t.creator] = gx if t.creator not in pending else pending[t.creator] + gx
                continue
            leaf_grads[t] = gx if t not in leaf_grads else leaf_grads[t] + gx
            leaf_uses[t] -= 1
            if leaf_uses[t] == 0:
                _finish_gradient(t, leaf_grads.pop(t))
        yield BackwardStep(index, fn, gy, list(gxs))
        if not retain_graph:
            fn.release()


from . import ops  # noqa: E402,F401  (defines the ops, which subclass Function, and attaches them to Tensor as operators)
