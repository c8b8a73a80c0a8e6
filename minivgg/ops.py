"""The elementwise, reduction and shape ops of the engine: each a `Function` subclass (forward and
backward side by side, shapes in the docstring) followed by its snake_case wrapper.

`sum`, `max`, `min`, `abs` and `pow` are named like their torch functions so that code carries over;
inside this module they shadow Python's builtins, which it therefore does not use. Reductions take
PyTorch's `dim=`/`keepdim=` and NumPy's `axis=`/`keepdims=` alike, with PyTorch's meaning (`max(x, dim)`
gives values and indices). Tensor's operators and in-place ops (autograd.py) call these; this module knows
tensors only as `TensorBase`.
"""
import numpy as np

from . import backend
from .function import Function, TensorBase


def sum_to(g, shape):
    """Sum a broadcast gradient `g` back down to `shape` (the adjoint of broadcasting)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _broadcast_shapes(op, a, b):
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        raise ValueError(f"{op}: shapes {a} and {b} cannot be broadcast together") from None


class _Binary(Function):
    def forward(self, a, b):
        _broadcast_shapes(self.name, a.shape, b.shape)
        self.shapes = (a.shape, b.shape)
        return self.compute(a, b)


class Add(_Binary):
    """a (broadcastable) + b -> broadcast shape."""

    def compute(self, a, b):
        return a + b

    def backward(self, gy):
        sa, sb = self.shapes
        return (sum_to(gy, sa) if self.needs_input_grad[0] else None,
                sum_to(gy, sb) if self.needs_input_grad[1] else None)


def add(a, b):
    return Add()(a, b)


class Sub(_Binary):
    """a - b -> broadcast shape."""

    def compute(self, a, b):
        return a - b

    def backward(self, gy):
        sa, sb = self.shapes
        return (sum_to(gy, sa) if self.needs_input_grad[0] else None,
                sum_to(-gy, sb) if self.needs_input_grad[1] else None)


def sub(a, b):
    return Sub()(a, b)


class Mul(_Binary):
    """a * b -> broadcast shape. Keeps the other factor of each input that needs a gradient."""

    def compute(self, a, b):
        self.save_for_backward(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None)
        return a * b

    def backward(self, gy):
        a, b = self.saved_tensors
        sa, sb = self.shapes
        return (sum_to(gy * b, sa) if self.needs_input_grad[0] else None,
                sum_to(gy * a, sb) if self.needs_input_grad[1] else None)


def mul(a, b):
    return Mul()(a, b)


class Div(_Binary):
    """a / b -> broadcast shape. Keeps b, and a only if b needs a gradient."""

    def compute(self, a, b):
        self.save_for_backward(a if self.needs_input_grad[1] else None, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved_tensors
        sa, sb = self.shapes
        ga = sum_to(gy / b, sa) if self.needs_input_grad[0] else None
        gb = sum_to(-gy * a / (b * b), sb) if self.needs_input_grad[1] else None
        return ga, gb


def div(a, b):
    return Div()(a, b)


class Pow(Function):
    """x ** c for a constant exponent c (a number) -> x's shape."""

    def __init__(self, exponent):
        self.c = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x ** self.c

    def backward(self, gy):
        x, = self.saved_tensors
        return gy * self.c * x ** (self.c - 1)


def pow(x, exponent):
    """x ** exponent. Named like torch.pow (`minivgg.pow`), so it shadows the builtin `pow` in this module."""
    if isinstance(exponent, TensorBase):
        raise TypeError("pow: the exponent must be a number; for a tensor exponent use exp(b * log(a))")
    return Pow(exponent)(x)


class Neg(Function):
    """-x -> x's shape."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


def neg(x):
    return Neg()(x)


class Exp(Function):
    """exp(x) -> x's shape. Keeps the output."""

    def forward(self, x):
        y = backend.get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy * y


def exp(x):
    return Exp()(x)


class Log(Function):
    """log(x) -> x's shape."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.get_array_module(x).log(x)

    def backward(self, gy):
        x, = self.saved_tensors
        return gy / x


def log(x):
    return Log()(x)


class Sqrt(Function):
    """sqrt(x) -> x's shape. Keeps the output."""

    def forward(self, x):
        y = backend.get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy / (2 * y)


def sqrt(x):
    return Sqrt()(x)


class Tanh(Function):
    """tanh(x) -> x's shape. Keeps the output."""

    def forward(self, x):
        y = backend.get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy * (1 - y * y)


def tanh(x):
    return Tanh()(x)


class Sigmoid(Function):
    """1 / (1 + exp(-x)) -> x's shape, computed as 0.5 tanh(x/2) + 0.5 (no overflow). Keeps the output."""

    def forward(self, x):
        y = backend.get_array_module(x).tanh(x * 0.5) * 0.5 + 0.5
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy * y * (1 - y)


def sigmoid(x):
    return Sigmoid()(x)


class MatMul(Function):
    """a (..., n, k) @ b (..., k, m) -> (..., n, m); 1-D operands as in NumPy."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least one dimension, got {a.shape} @ {b.shape}")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ValueError(
                f"matmul: shapes {a.shape} @ {b.shape} do not fit: the last dimension of the first ({ka}) must "
                f"equal the {'second-to-last' if b.ndim > 1 else 'only'} dimension of the second ({kb})"
            )
        self.save_for_backward(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None)
        self.shapes = (a.shape, b.shape)
        return a @ b

    def backward(self, gy):
        a, b = self.saved_tensors
        sa, sb = self.shapes
        xp = backend.get_array_module(gy)
        a_ = a if a is None or a.ndim > 1 else a[None, :]
        b_ = b if b is None or b.ndim > 1 else b[:, None]
        g = gy
        if len(sa) == 1:
            g = xp.expand_dims(g, -2)
        if len(sb) == 1:
            g = xp.expand_dims(g, -1)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = g @ xp.swapaxes(b_, -1, -2)
            ga = sum_to(ga, sa if len(sa) > 1 else (1,) + sa).reshape(sa)
        if self.needs_input_grad[1]:
            gb = xp.swapaxes(a_, -1, -2) @ g
            gb = sum_to(gb, sb if len(sb) > 1 else sb + (1,)).reshape(sb)
        return ga, gb


def matmul(a, b):
    return MatMul()(a, b)


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def _expand_reduced(g, shape, axes, keepdims):
    """Put back the reduced axes of a reduction's gradient, so it broadcasts against the input."""
    if not keepdims:
        for a in axes:
            g = backend.get_array_module(g).expand_dims(g, a)
    return g


class Sum(Function):
    """x.sum(axis, keepdims) -> x's shape without (or with size 1 on) the summed axes."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.shape = x.shape
        self.axes = _normalize_axis(self.axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        g = _expand_reduced(gy, self.shape, self.axes, self.keepdims)
        return backend.get_array_module(g).broadcast_to(g, self.shape)


def reduction_args(op, dim, keepdim, axis, keepdims):
    """(dim, keepdim) of a reduction called PyTorch's way (`dim=`, `keepdim=`) or NumPy's (`axis=`,
    `keepdims=`), which PyTorch also accepts; both spellings of one argument at once is an error."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; they mean the same, pass one")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return (tuple(dim) if isinstance(dim, list) else dim), bool(keepdim)


def sum(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """x summed over `dim` (an int, a tuple, or None for all), as torch.sum. Named like it (`minivgg.sum`),
    so it shadows the builtin in this module."""
    dim, keepdim = reduction_args("sum", dim, keepdim, axis, keepdims)
    return Sum(dim, keepdim)(x)


class Mean(Sum):
    """x.mean(axis, keepdims): a sum divided by the number of summed elements."""

    def forward(self, x):
        y = super().forward(x)
        self.count = int(np.prod([self.shape[a] for a in self.axes])) if self.axes else 1
        return (y / self.count).astype(x.dtype, copy=False)

    def backward(self, gy):
        return super().backward(gy / self.count)


def mean(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """x averaged over `dim` (an int, a tuple, or None for all), as torch.mean."""
    dim, keepdim = reduction_args("mean", dim, keepdim, axis, keepdims)
    if x.dtype.kind != "f":  # NumPy would return float64; PyTorch refuses
        raise TypeError(f"mean: needs a floating-point tensor, got dtype {x.dtype}; convert it first with .float()")
    return Mean(dim, keepdim)(x)


def var(x, dim=None, keepdim=False, *, correction=1, unbiased=None, axis=None, keepdims=None):
    """The variance over `dim`, sum((x - mean)^2) / (n - correction), as torch.var: by default the unbiased
    estimate (correction 1; `unbiased=False` means correction 0). Built from differentiable ops."""
    dim, keepdim = reduction_args("var", dim, keepdim, axis, keepdims)
    if unbiased is not None:
        correction = 1 if unbiased else 0
    axes = _normalize_axis(dim, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    deviation = x - mean(x, axes, keepdim=True)
    return sum(deviation * deviation, axes, keepdim) / (count - correction)


def std(x, dim=None, keepdim=False, *, correction=1, unbiased=None, axis=None, keepdims=None):
    """The standard deviation over `dim`: the square root of `var` with the same arguments (torch.std)."""
    return sqrt(var(x, dim, keepdim, correction=correction, unbiased=unbiased, axis=axis, keepdims=keepdims))


def norm(x, p=2, dim=None, keepdim=False):
    """The p-norm over `dim` (all elements by default), p = 2 (or 'fro') or 1, as torch.norm."""
    if p in (2, "fro"):
        return sqrt(sum(x * x, dim, keepdim))
    if p == 1:
        return sum(abs(x), dim, keepdim)
    raise ValueError(f"norm: p must be 2, 'fro' or 1, got {p!r}; for others compute (x.abs() ** p).sum() ** (1 / p)")


class Max(Function):
    """x.max(axis, keepdims) -> reduced shape. Tied maxima share the gradient equally (like torch.amax)."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axis(self.axis, x.ndim)
        y = x.max(axis=self.axes, keepdims=self.keepdims)
        self.save_for_backward(x, y)
        return y

    def backward(self, gy):
        x, y = self.saved_tensors
        g = _expand_reduced(gy, x.shape, self.axes, self.keepdims)
        is_max = x == _expand_reduced(y, x.shape, self.axes, self.keepdims)
        share = is_max / is_max.sum(axis=self.axes, keepdims=True)
        return (g * share).astype(x.dtype, copy=False)


def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The largest value over `dim` (an int, a tuple, or None for all), as torch.amax; tied maxima share
    the gradient."""
    dim, keepdim = reduction_args("amax", dim, keepdim, axis, keepdims)
    return Max(dim, keepdim)(x)


def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The smallest value over `dim`, as torch.amin: -amax(-x)."""
    return neg(amax(neg(x), dim, keepdim, axis=axis, keepdims=keepdims))


class ValuesIndices(tuple):
    """(values, indices), as PyTorch's max(dim), min(dim), topk and sort return them: unpack it, or read
    `.values` and `.indices`. `op` names the op in its printed form."""

    def __new__(cls, values, indices, op):
        result = super().__new__(cls, (values, indices))
        result.op = op
        return result

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]

    def __repr__(self):
        return f"minivgg.return_types.{self.op}(\nvalues={self[0]!r},\nindices={self[1]!r})"


def _extreme(op, x, dim, keepdim, axis, keepdims):
    """max/min: over everything a scalar, along one `dim` (values, indices) (PyTorch's torch.max/min)."""
    dim, keepdim = reduction_args(op, dim, keepdim, axis, keepdims)
    if dim is None:
        return amax(x) if op == "max" else amin(x)
    if isinstance(dim, TensorBase):
        raise TypeError(f"{op}(x, other): the elementwise {op} of two tensors is not in minivgg; "
                        f"write it as (x > other) * x + (x <= other) * other")
    if isinstance(dim, tuple):
        raise TypeError(f"{op}: dim must be one int when indices are returned, got {dim!r}; over several axes "
                        f"use a{op}(x, dim={dim!r}), which returns the values only")
    indices = argmax(x, dim, keepdim=True) if op == "max" else argmax(neg(x.detach()), dim, keepdim=True)
    values = take_along_dim(x, indices, dim)
    if not keepdim:
        values, indices = squeeze(values, dim), squeeze(indices, dim)
    return ValuesIndices(values, indices, op)


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """torch.max: x.max() is the largest value (a 0-d tensor); x.max(dim) gives (values, indices) along `dim`
    (the first maximum wins a tie, and the gradient goes to it). Named like torch.max (`minivgg.max`), so it
    shadows the builtin in this module. For the values over several axes: amax."""
    return _extreme("max", x, dim, keepdim, axis, keepdims)


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """torch.min: the smallest value, or (values, indices) along `dim` (see max)."""
    return _extreme("min", x, dim, keepdim, axis, keepdims)


def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The index of the largest value along `dim` (of the flattened tensor when dim is None), int64 and
    outside the graph, as torch.argmax; the first maximum wins a tie."""
    dim, keepdim = reduction_args("argmax", dim, keepdim, axis, keepdims)
    if isinstance(dim, tuple):
        raise TypeError(f"argmax: dim must be one int or None, got {dim!r}")
    xp = backend.get_array_module(x.data)
    index = x.data.argmax(axis=dim).astype(np.int64, copy=False)
    if keepdim:
        index = index.reshape((1,) * x.ndim) if dim is None else xp.expand_dims(index, dim)
    return x._new(index)


def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The index of the smallest value along `dim` (see argmax)."""
    return argmax(neg(x.detach()), dim, keepdim, axis=axis, keepdims=keepdims)


class TakeAlongDim(Function):
    """x, indices (x's shape except along `dim`) -> x's entries at those indices along `dim`, as
    numpy.take_along_axis. Backward adds each gradient back at its index (repeated indices add up)."""

    def __init__(self, indices, dim):
        self.indices, self.dim = indices, dim

    def forward(self, x):
        self.in_shape = x.shape
        return backend.get_array_module(x).take_along_axis(x, self.indices, axis=self.dim)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=gy.dtype)
        # every position of gy, named by one index array per axis: its own coordinates, the given index along dim
        where = [xp.arange(n).reshape((1,) * k + (n,) + (1,) * (gy.ndim - k - 1)) for k, n in enumerate(gy.shape)]
        where[self.dim] = self.indices
        xp.add.at(gx, tuple(where), gy)
        return gx


def take_along_dim(x, indices, dim):
    """x's values at integer `indices` along `dim` (torch.take_along_dim); `indices` has x's number of axes."""
    index = indices.data if isinstance(indices, TensorBase) else backend.get_array_module(x.data).asarray(indices)
    if index.dtype.kind not in "iu":
        raise TypeError(f"take_along_dim: indices must be integers, got dtype {index.dtype}")
    return TakeAlongDim(index, dim % x.ndim)(x)


def topk(x, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (`largest=False`: smallest) entries along `dim`, largest first,
    as torch.topk. The gradient goes to the entries picked."""
    if not 1 <= k <= x.shape[dim]:
        raise ValueError(f"topk: k must be between 1 and the size {x.shape[dim]} of dim {dim}, got {k}")
    order = sort(x.detach(), dim, descending=largest).indices
    indices = x._new(order.data[(slice(None),) * (dim % x.ndim) + (slice(0, k),)])
    return ValuesIndices(take_along_dim(x, indices, dim), indices, "topk")


def sort(x, dim=-1, descending=False):
    """(values, indices) of x sorted along `dim`, ascending unless `descending`, as torch.sort. Ties keep
    their order (a stable sort)."""
    data = x.data
    if descending:  # sorting -x keeps ties in order, where reversing an ascending sort would not
        data = ~data if data.dtype == bool else -data
    xp = backend.get_array_module(data)
    indices = x._new(xp.argsort(data, axis=dim, kind="stable").astype(np.int64, copy=False))
    return ValuesIndices(take_along_dim(x, indices, dim), indices, "sort")


class Abs(Function):
    """|x| -> x's shape. The gradient is sign(x): 0 at 0, as in PyTorch."""

    def forward(self, x):
        self.save_for_backward(x)
        return backend.get_array_module(x).abs(x)

    def backward(self, gy):
        x, = self.saved_tensors
        return gy * backend.get_array_module(x).sign(x)


def abs(x):
    """|x| (torch.abs). Named like it, so it shadows the builtin in this module."""
    return Abs()(x)


class Cast(Function):
    """x -> x in another floating dtype. Backward casts the gradient back to x's dtype."""

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.in_dtype)


def cast(x, dtype):
    """x in `dtype`; x itself when it has it already. Between floating dtypes a graph node; to an integer or
    boolean dtype a new tensor outside the graph (only floats carry gradients), as in PyTorch."""
    dtype = np.dtype(dtype)
    if x.dtype == dtype:
        return x
    if dtype.kind == "f":
        return Cast(dtype)(x)
    return x._new(x.data.astype(dtype))


class Clone(Function):
    """x -> a copy of x, in the graph (its gradient passes unchanged)."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


def clone(x):
    """A copy with its own array, still in the graph (torch.clone)."""
    return Clone()(x)


class Reshape(Function):
    """x -> the same elements in `shape` (one -1 allowed)."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an array of shape {x.shape} into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


def reshape(x, shape):
    return Reshape(shape)(x)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge the axes start_dim..end_dim into one (torch.flatten)."""
    shape = x.shape
    start, end = start_dim % len(shape), end_dim % len(shape)
    merged = int(np.prod(shape[start:end + 1]))
    return reshape(x, shape[:start] + (merged,) + shape[end + 1:])


class Transpose(Function):
    """x -> x.transpose(axes) (reversed axes when axes is None)."""

    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        return gy.transpose(tuple(np.argsort(self.axes)))


def transpose(x, axes=None):
    return Transpose(axes)(x)


def permute(x, dims):
    """x with its axes in the order `dims` (torch.permute; NumPy's transpose(axes))."""
    dims = tuple(d % x.ndim for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} must name each of the {x.ndim} axes of shape {x.shape} once")
    return transpose(x, dims)


def swapaxes(x, dim0, dim1):
    """x with axes dim0 and dim1 exchanged (torch.transpose(x, dim0, dim1))."""
    order = list(range(x.ndim))
    order[dim0], order[dim1] = order[dim1], order[dim0]
    return transpose(x, order)


def squeeze(x, dim=None):
    """x without its axes of size 1 (only `dim`, an int or a tuple, if given; one of another size is
    kept, as in torch.squeeze)."""
    dims = range(x.ndim) if dim is None else [d % x.ndim for d in (dim if isinstance(dim, tuple) else (dim,))]
    return reshape(x, tuple(n for k, n in enumerate(x.shape) if not (k in dims and n == 1)))


def unsqueeze(x, dim):
    """x with a new axis of size 1 at position `dim` (negative counts from the end of the result)."""
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


class BroadcastTo(Function):
    """x -> x broadcast to `shape`."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        _broadcast_shapes("broadcast_to", x.shape, self.shape)
        return backend.get_array_module(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to(gy, self.in_shape)


def broadcast_to(x, shape):
    return BroadcastTo(shape)(x)


class GetItem(Function):
    """x[index] for slices, integers, integer arrays and boolean masks."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=self.dtype)
        if _is_gather(self.index):
            xp.add.at(gx, self.index, gy)  # repeated integer indices must add up, not overwrite
        else:
            gx[self.index] = gy  # slices and masks pick each element at most once
        return gx


def as_index(index):
    """An index with its Tensors (integer or boolean) replaced by their arrays."""
    if isinstance(index, TensorBase):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, TensorBase) else i for i in index)
    return index


def getitem(x, index):
    return GetItem(as_index(index))(x)


class SetItem(Function):
    """(x, value) -> a copy of x with x[index] = value (value broadcast, cast to x's dtype): the graph node
    of the in-place `x[index] = value` while gradients are recorded."""

    def __init__(self, index):
        self.index = index

    def forward(self, x, value):
        self.value_shape = value.shape
        y = x.copy()
        y[self.index] = value
        return y

    def backward(self, gy):
        gx = gv = None
        if self.needs_input_grad[0]:
            gx = gy.copy()
            gx[self.index] = 0  # overwritten: x's old values there reach the output no more
        if self.needs_input_grad[1]:
            g = gy[self.index]  # the value may have had extra leading axes of size 1
            gv = sum_to(g.reshape((1,) * (len(self.value_shape) - g.ndim) + g.shape), self.value_shape)
        return gx, gv


def setitem(x, index, value):
    """x with x[index] = value, out of place (see SetItem)."""
    return SetItem(as_index(index))(x, value)


def _is_gather(index):
    """True when `index` holds an integer array (which may repeat positions)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(p, (slice, int, type(None), type(Ellipsis)))
               and backend.get_array_module(p).asarray(p).dtype.kind in "iu" and np.ndim(p) > 0
               for p in parts)


class Concatenate(Function):
    """Tensors of equal shape except along `axis` -> one tensor joined along `axis`."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.get_array_module(xs[0])
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        parts = xp.split(gy, bounds, axis=self.axis)
        return tuple(p if need else None for p, need in zip(parts, self.needs_input_grad))


def concatenate(tensors, axis=0):
    return Concatenate(axis)(*tensors)


def cat(tensors, dim=0, *, axis=None):
    """Tensors joined along `dim` (torch.cat); they agree in every other axis."""
    return Concatenate(dim if axis is None else axis)(*tensors)


class Stack(Function):
    """Tensors of one shape -> a new axis `axis` holding them."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        return backend.get_array_module(xs[0]).stack(xs, axis=self.axis)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        parts = [xp.take(gy, i, axis=self.axis) for i in range(gy.shape[self.axis])]
        return tuple(p if need else None for p, need in zip(parts, self.needs_input_grad))


def stack(tensors, dim=0, *, axis=None):
    """Tensors of one shape stacked along a new axis `dim` (torch.stack; NumPy's `axis=` too)."""
    return Stack(dim if axis is None else axis)(*tensors)


# ---------------------------------------------------------------------------------------------------
# Softmax along an axis (here, not in functional.py, so that Tensor.softmax can reach it)
# ---------------------------------------------------------------------------------------------------
def log_softmax_array(x, axis):
    """log softmax of an array along `axis`, computed stably: the largest exponent is exp(0)."""
    xp = backend.get_array_module(x)
    z = x - x.max(axis=axis, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))


class LogSoftmaxFunction(Function):
    """x (any shape) -> log softmax along `axis`. Keeps the output."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        y = log_softmax_array(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy - backend.get_array_module(gy).exp(y) * gy.sum(axis=self.axis, keepdims=True)


class SoftmaxFunction(Function):
    """x (any shape) -> softmax along `axis`. Keeps the output."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        y = backend.get_array_module(x).exp(log_softmax_array(x, self.axis))
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


def log_softmax(x, dim=-1):
    return LogSoftmaxFunction(dim)(x)


def softmax(x, dim=-1):
    return SoftmaxFunction(dim)(x)
