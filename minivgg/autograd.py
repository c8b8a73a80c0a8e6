"""The autograd engine's front: `Tensor`, its operators and in-place ops, and the backward walk.

`Function` (minivgg/function.py) records one graph node per op call; the ops are in minivgg/ops.py.
`Tensor.backward()` sorts those functions in topological order without recursion and calls each one's
`backward` once, after every gradient that flows into its output has arrived.
`Tensor.backward_steps()` is the same walk, yielded one node at a time.
"""
import operator
import weakref

import numpy as np

from . import backend, ops, printing
from .function import (  # noqa: F401  (re-exported: the engine's names, importable from here)
    AnomalyError,
    Edge,
    Function,
    TensorBase,
    VersionCounter,
    _check_finite,
    _constant,
    _state,
    detect_anomaly,
    is_grad_enabled,
    no_grad,
)


def _as_tensor(x, like=()):
    """Wrap a Python number or array as a constant tensor with the dtype/device of its Tensor peers."""
    if isinstance(x, Tensor):
        return x
    peer = next((t for t in like if isinstance(t, Tensor)), None)
    return Tensor(np.asarray(x) if peer is None else _constant(x, peer))


def _ones_like(array):
    return backend.get_array_module(array).ones_like(array)


_TORCH_DTYPE_NAMES = {"float16": "Half", "float32": "Float", "float64": "Double", "int8": "Char", "int16": "Short",
                      "int32": "Int", "int64": "Long", "uint8": "Byte", "bool": "Bool"}


def _torch_dtype_name(dtype):
    return _TORCH_DTYPE_NAMES.get(np.dtype(dtype).name, str(dtype))


def _no_output():
    """The output of a Function whose output tensor an in-place op has since taken over."""
    return None


class Tensor(TensorBase):
    """An array (`.data`, NumPy or CuPy) plus what autograd needs: `.grad`, `.requires_grad`, `.creator`.

    In-place ops (`add_`, `-=`, `zero_`, `x[i] = v`, ...) write into the tensor's own array and keep its
    dtype. Each bumps the tensor's version (`t._version`): a Function that saved the array for backward
    then refuses to compute a gradient from the changed values. On a leaf that requires grad they are
    refused outside `no_grad()`; on another tensor, while gradients are recorded, they become a graph
    node (as in PyTorch), except on a view of another tensor (a slice, a reshape), where they are refused.

    `.data` is the raw array. Changing it (`t.data[...] = 0`, `t.data = array`) bypasses the graph and
    the version check, as `.data` does in PyTorch: a gradient may then silently be wrong. Use it only
    for that, and the in-place ops otherwise.
    """

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
        self._version_counter = VersionCounter()
        self._is_view = False

    def _new(self, data):
        """A plain Tensor on `data`: what an op on this tensor returns (a Parameter's ops give Tensors)."""
        return Tensor(data)

    def _alias(self, data):
        """A new tensor, cut from the graph, on `data`; it shares this tensor's version if that is its array."""
        out = Tensor(data)
        if data is self.data:
            out._version_counter = self._version_counter
        return out

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

    def size(self, dim=None):
        """The shape, as PyTorch's `x.size()`; `x.size(0)` is the length of axis 0. (NumPy's `a.size`, the
        number of elements, is `x.numel()`.)"""
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        """The number of elements (NumPy's `a.size`)."""
        return int(self.data.size)

    def dim(self):
        """The number of axes (`ndim`)."""
        return self.data.ndim

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    @property
    def _version(self):
        """How many in-place ops have changed this tensor's array (PyTorch's `t._version`)."""
        return self._version_counter.value

    def __len__(self):
        return len(self.data)

    def __float__(self):
        return float(self._one_element("float"))

    def __int__(self):
        return int(self._one_element("int"))

    def __format__(self, spec):
        """f"{loss:.3f}" formats a 0-d tensor's value, as in PyTorch; other tensors take no format spec."""
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __index__(self):
        """An integer tensor of one element used as an index (range(t), a list's [t])."""
        if self.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors of a single element can be converted to an index, got dtype "
                            f"{self.dtype}")
        return int(self._one_element("index"))

    def _one_element(self, what):
        if self.data.size != 1:
            raise ValueError(f"{what}(): only one element tensors can be converted to Python scalars, this one "
                             f"has shape {self.shape}; reduce it first (.sum(), .mean()) or use .tolist()")
        return self.data.reshape(()).item()

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

    def to(self, *args, device=None, dtype=None):
        """This tensor on another device and/or in another dtype, as PyTorch's `.to`: `x.to('cuda')`,
        `x.to(minivgg.device('cpu'))`, `x.to(minivgg.float64)`, `x.to(device, dtype)`, `x.to(other_tensor)`.
        Itself when nothing changes. A cast between float dtypes stays in the graph (see ops.cast)."""
        for arg in args:
            if isinstance(arg, Tensor):
                device, dtype = arg.device, arg.dtype
            elif _as_dtype(arg) is not None:
                dtype = arg
            else:
                device = arg
        out = self if dtype is None else ops.cast(self, _as_dtype(dtype, "to"))
        if device is None:
            return out
        data = backend.to_device(out.data, device)
        if data is out.data:
            return out
        return Tensor(data, requires_grad=out.requires_grad and out.is_leaf, name=out.name)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def detach(self):
        """The same data (and version counter), cut from the graph."""
        return self._alias(self.data)

    def astype(self, dtype):
        """NumPy's spelling: the values in `dtype`, cut from the graph (PyTorch's is `.to(dtype)`)."""
        return self._alias(self.data.astype(dtype, copy=False))

    def type(self, dtype=None):
        """With a dtype, `x.to(dtype)`; without, the type's name as PyTorch gives it ('minivgg.FloatTensor')."""
        if dtype is None:
            return f"minivgg.{_torch_dtype_name(self.dtype)}Tensor"
        return ops.cast(self, _as_dtype(dtype, "type"))

    # PyTorch's casts: x.float() is x.to(float32), x.long() is x.to(int64), ...
    def float(self):
        return ops.cast(self, np.float32)

    def double(self):
        return ops.cast(self, np.float64)

    def half(self):
        return ops.cast(self, np.float16)

    def long(self):
        return ops.cast(self, np.int64)

    def int(self):
        return ops.cast(self, np.int32)

    def bool(self):
        return ops.cast(self, np.bool_)

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
            self.grad.zero_()

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` that requires grad.

        `grad` is needed when self is not a scalar: the gradient of some scalar w.r.t. self, same shape.
        """
        for _ in self.backward_steps(grad, retain_graph=retain_graph):
            pass

    def backward_steps(self, grad=None, retain_graph=False):
        """Backward one graph node at a time: a generator of `BackwardStep`s (see `minivgg.inspection`)."""
        return _backward_walk(self, grad, retain_graph)

    # ---- the operators: each an op of minivgg/ops.py, recorded in the graph --------------------------
    __add__, __sub__, __mul__, __truediv__ = ops.add, ops.sub, ops.mul, ops.div
    __pow__, __neg__, __matmul__, __getitem__ = ops.pow, ops.neg, ops.matmul, ops.getitem
    matmul, exp, log, sqrt, tanh, sigmoid = ops.matmul, ops.exp, ops.log, ops.sqrt, ops.tanh, ops.sigmoid
    sum, mean, max, flatten, broadcast_to = ops.sum, ops.mean, ops.max, ops.flatten, ops.broadcast_to
    min, amax, amin, argmax, argmin = ops.min, ops.amax, ops.amin, ops.argmax, ops.argmin
    var, std, norm, abs, clone = ops.var, ops.std, ops.norm, ops.abs, ops.clone
    topk, sort, softmax, log_softmax = ops.topk, ops.sort, ops.softmax, ops.log_softmax
    squeeze, unsqueeze, take_along_dim = ops.squeeze, ops.unsqueeze, ops.take_along_dim
    __abs__ = ops.abs

    def __radd__(self, other):
        return ops.add(other, self)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def reshape(self, *shape):
        """x.reshape(2, 3) and x.reshape((2, 3)) both mean the shape (2, 3)."""
        return ops.reshape(self, _shape_args(shape))

    def view(self, *shape):
        """x.view(2, 3), x.view(-1): a reshape (here it copies when the array is not contiguous, where
        PyTorch's view refuses)."""
        return ops.reshape(self, _shape_args(shape))

    def view_as(self, other):
        return ops.reshape(self, other.shape)

    def permute(self, *dims):
        """x.permute(1, 0) and x.permute((1, 0)): the axes in that order."""
        return ops.permute(self, _shape_args(dims))

    def transpose(self, *axes):
        """PyTorch's x.transpose(dim0, dim1) swaps two axes; NumPy's x.transpose(), x.transpose(axes)
        (all of them) orders them all."""
        if len(axes) == 2 and all(isinstance(a, (int, np.integer)) for a in axes):
            return ops.swapaxes(self, *axes)
        return ops.transpose(self, _shape_args(axes) or None)

    def t(self):
        """The transpose of a matrix (a 0-d or 1-d tensor is returned as it is), as torch.t."""
        if self.ndim > 2:
            raise ValueError(f"t(): expects a tensor with at most 2 dimensions, got shape {self.shape}; "
                             "use .permute() or .transpose(dim0, dim1)")
        return self if self.ndim < 2 else ops.transpose(self)

    @property
    def T(self):
        return ops.transpose(self)

    # ---- in-place ops: they write into this tensor's own array (see the class docstring) ------------
    def add_(self, other, alpha=1):
        return self._inplace(ops.add, operator.iadd, other if alpha == 1 else other * alpha)

    def sub_(self, other, alpha=1):
        return self._inplace(ops.sub, operator.isub, other if alpha == 1 else other * alpha)

    def mul_(self, other):
        # the gradient for `other` needs self's old value, which the op overwrites: the node gets a copy
        # (PyTorch saves `original_self` the same way)
        return self._inplace(lambda t, o: ops.mul(_old_value(t, o), o), operator.imul, other)

    def div_(self, other):
        return self._inplace(lambda t, o: ops.div(_old_value(t, o), o), operator.itruediv, other, division=True)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def __setitem__(self, index, value):
        """x[index] = value; the value is cast to x's dtype, as in PyTorch."""
        index = ops.as_index(index)
        self._inplace(lambda t, v: ops.setitem(t, index, v), lambda a, v: a.__setitem__(index, v), value,
                      cast_any=True)

    def fill_(self, value):
        self[...] = value
        return self

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        """Copy src's values (broadcast to this tensor's shape, cast to its dtype, from any device) into
        this tensor."""
        if isinstance(src, Tensor) and src.device != self.device:
            src = src.to(self.device)
        self[...] = src
        return self

    def _inplace(self, graph_op, array_op, other, cast_any=False, division=False):
        """What every in-place op does. `graph_op(self, other)` computes the result out of place, as a
        graph node, when gradients are recorded; else `array_op(array, other)` changes the array itself.
        The result must fit the tensor's dtype (a division's is a float) unless `cast_any`."""
        other_data = other.data if isinstance(other, Tensor) else other
        if not np.isscalar(other_data):  # a list, or an array of the tensor's device
            other_data = self.xp.asarray(other_data)
        recording = _state["grad_enabled"] and (self.requires_grad or getattr(other, "requires_grad", False))
        self._check_inplace(other_data, recording, cast_any, division)
        if recording:
            self._take_over(graph_op(self, other))
        else:
            array_op(self.data, other_data)
        self._version_counter.value += 1
        return self

    def _check_inplace(self, other, recording, cast_any, division):
        if recording and self.is_leaf and self.requires_grad:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if recording and self._is_view:
            raise RuntimeError(
                "an in-place operation on a view of another tensor (a slice, a reshape) cannot be recorded "
                "for backward: do it out of place (y = x + 1), or inside no_grad()."
            )
        if cast_any:
            return
        result = np.result_type(self.dtype, getattr(other, "dtype", other))
        if division:  # a true division of integers gives floats
            result = np.result_type(result, np.float32)
        if not np.can_cast(result, self.dtype, casting="same_kind"):
            raise RuntimeError(f"result type {_torch_dtype_name(result)} can't be cast to the desired output "
                               f"type {_torch_dtype_name(self.dtype)}")
        if np.broadcast_shapes(self.shape, np.shape(other)) != self.shape:
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(np.broadcast_shapes(self.shape, np.shape(other)))}")

    def _take_over(self, result):
        """Make this tensor the output of `result`'s graph node: the in-place op becomes that node, whose
        input is this tensor's previous value (whose maker no longer has an output tensor)."""
        self.data[...] = result.data
        if self.creator is not None:
            self.creator.output = _no_output
        self.creator, self.requires_grad = result.creator, True
        self.creator.output = weakref.ref(self)
        if self._hooks or self._retains_grad:
            self._keep_for_backward()

    # ---- comparisons give plain boolean tensors -------------------------------------------------------
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

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    __hash__ = object.__hash__  # tensors are graph nodes: hashed by identity

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous; use .all() or .any()")
        return bool(self.data)

    def all(self):
        return bool(self.data.all())

    def any(self):
        return bool(self.data.any())


def _as_dtype(value, op=None):
    """`value` as a NumPy dtype if it names one (minivgg.float32, numpy.int64, 'float32'), else None; with
    `op`, a dtype it does not name is an error naming that op."""
    if isinstance(value, np.dtype):
        return value
    if (isinstance(value, type) and issubclass(value, np.generic)) or value in _TORCH_DTYPE_NAMES:
        return np.dtype(value)
    if op is not None:
        raise TypeError(f"{op}: {value!r} is not a dtype; use minivgg.float32, minivgg.int64, ...")
    return None


def _shape_args(args):
    """(2, 3) and ((2, 3),) both mean the shape (2, 3)."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


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
        stack.extend((e.creator, False) for e in fn.inputs if e.creator is not None and e.creator not in seen)
    return order


def _finish_gradient(t, g, stored):
    """Run `t`'s hooks on its complete gradient `g`; store it if `t` keeps grads. Returns the final g.

    A stored gradient is the tensor's own array (in-place ops like `grad.zero_()` may change it): a view,
    or an array already stored for another tensor (`stored`, ids), is copied first."""
    for hook in list(t._hooks):
        replaced = hook(Tensor(g))
        if replaced is not None:
            new = replaced.data if isinstance(replaced, Tensor) else t.xp.asarray(replaced)
            name = getattr(hook, "__name__", "hook")
            if new.shape != g.shape:  # PyTorch's check: the graph's other gradients have g's shape
                raise RuntimeError(f"hook '{name}' has changed the size of value: it returned shape "
                                   f"{list(new.shape)}, the gradient has shape {list(g.shape)}")
            if new.dtype != g.dtype:
                raise RuntimeError(f"hook '{name}' has changed the type of value (was "
                                   f"{_torch_dtype_name(g.dtype)} got {_torch_dtype_name(new.dtype)})")
            g = new
    if t.is_leaf or t._retains_grad:
        if t.grad is not None:
            t.grad = Tensor(t.grad.data + g)
        else:
            t.grad = Tensor(g if g.base is None and id(g) not in stored else g.copy())
            stored.add(id(t.grad.data))
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
    return grad.astype(root.dtype, copy=False)  # PyTorch casts it: a float32 leaf keeps a float32 .grad


def _old_value(t, other):
    """`t`, or a copy of it in the graph (ops.clone) when `other` requires grad: the in-place op's node then
    keeps t's value from before the op for other's gradient."""
    return ops.clone(t) if getattr(other, "requires_grad", False) else t


def _checked_gradients(fn, gxs):
    """What `fn.backward` returned, as one gradient per input (None where none is needed). A wrong count,
    shape or dtype is an error naming the op, in PyTorch's words; a float of another width is cast to the
    input's dtype, as PyTorch does (keeps float32 float32 where an op's arithmetic upcast)."""
    gxs = tuple(gxs) if isinstance(gxs, (tuple, list)) else (gxs,)
    n = len(fn.inputs)
    if len(gxs) < n or any(g is not None for g in gxs[n:]):  # extra gradients are allowed if None
        raise RuntimeError(f"function {fn.name}Backward returned an incorrect number of gradients "
                           f"(expected {n}, got {len(gxs)})")
    checked = []
    for i, (edge, needed, gx) in enumerate(zip(fn.inputs, fn.needs_input_grad, gxs)):
        if isinstance(gx, Tensor):
            gx = gx.data
        if not needed or gx is None:
            checked.append(None)
            continue
        if not (hasattr(gx, "shape") and hasattr(gx, "dtype")):  # a float, a string: name the op, not .shape
            raise TypeError(f"function {fn.name}Backward returned {type(gx).__name__} {gx!r} as the gradient at "
                            f"index {i}; expected an array or Tensor of shape {list(edge.shape)}, or None")
        if gx.shape != edge.shape:
            raise RuntimeError(f"Function {fn.name}Backward returned an invalid gradient at index {i} - got "
                               f"{list(gx.shape)} but expected shape compatible with {list(edge.shape)}")
        if gx.dtype != edge.dtype:
            if gx.dtype.kind != "f":
                raise RuntimeError(f"Function {fn.name}Backward returned an invalid gradient at index {i} - "
                                   f"expected dtype {edge.dtype} but got {gx.dtype}")
            gx = gx.astype(edge.dtype)
        checked.append(gx)
    return checked


def _backward_walk(root, grad, retain_graph):
    grad = _root_gradient(root, grad)
    stored = {id(grad)}  # arrays stored as some tensor's .grad (or the caller's own): never stored twice
    if root.creator is None:
        _finish_gradient(root, grad, stored)
        return
    order = graph_functions(root)[::-1]  # consumers before the functions that made their inputs
    leaf_uses = {}  # graph edges into each leaf: its gradient is complete when all have delivered
    for fn in order:
        for e, needed in zip(fn.inputs, fn.needs_input_grad):
            if needed and e.is_leaf:
                leaf_uses[e.tensor()] = leaf_uses.get(e.tensor(), 0) + 1
    # Outputs with hooks or retain_grad, held here: releasing their consumer may drop the last reference.
    watched = {fn: out for fn in order if (out := fn.output()) is not None and (out._hooks or out._retains_grad)}
    pending, leaf_grads = {root.creator: grad}, {}  # gradients still arriving, per function and per leaf
    for index, fn in enumerate(order):
        gy = pending.pop(fn, None)
        if gy is None:  # every gradient sent towards it was None
            continue
        if fn in watched:
            gy = _finish_gradient(watched.pop(fn), gy, stored)
        gxs = _checked_gradients(fn, fn.backward(gy))
        for i, (e, needed, gx) in enumerate(zip(fn.inputs, fn.needs_input_grad, gxs)):
            if not needed:
                continue
            if _state["anomaly"] and gx is not None:
                _check_finite(gx, f"backward of {fn.name} (step {index}) produced NaN or inf in the gradient "
                                  f"of input {i}; the node was created at {getattr(fn, 'created_at', '?')}")
            if not e.is_leaf:  # a gradient for the function that made the input: add it to what it has
                if gx is not None:
                    pending[e.creator] = gx if e.creator not in pending else pending[e.creator] + gx
                continue
            t = e.tensor()
            if gx is not None:
                leaf_grads[t] = gx if t not in leaf_grads else leaf_grads[t] + gx
            leaf_uses[t] -= 1
            if leaf_uses[t] == 0 and t in leaf_grads:
                _finish_gradient(t, leaf_grads.pop(t), stored)
        yield BackwardStep(index, fn, gy, gxs)
        if not retain_graph:
            fn.release()
