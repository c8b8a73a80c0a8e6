"""Tensors made from a shape or a range, and the dtype names, as PyTorch spells them: `zeros`, `ones`,
`full`, `arange`, `linspace`, `eye`, `randn`, `rand`, `randint`, `normal`, `zeros_like`, `ones_like`,
`full_like`, `from_numpy`; `float32`, `int64`, ...

Each makes its array on `device` ('cpu' by default) with NumPy or CuPy, whichever holds arrays there. Floats
are float32 unless `dtype` says otherwise (PyTorch's default dtype); the random ones draw from the device's
seeded generator (`minivgg.manual_seed`). `size` is given as PyTorch allows: `zeros(2, 3)`, `zeros((2, 3))`,
`zeros(size=(2, 3))`.
"""
import numpy as np

from . import backend
from .autograd import Tensor

# The dtypes, as NumPy dtypes: `x.dtype == minivgg.float32` compares a tensor's dtype with one of them.
float16 = half = np.dtype("float16")
float32 = np.dtype("float32")
float64 = double = np.dtype("float64")
uint8 = np.dtype("uint8")
int8 = np.dtype("int8")
int16 = short = np.dtype("int16")
int32 = np.dtype("int32")
int64 = long = np.dtype("int64")
bool_ = np.dtype("bool")  # minivgg.bool, as minivgg.float is float32 and minivgg.int int32 (see __init__.py)


def _size(op, size, keywords=None):
    """The shape of zeros(2, 3), zeros((2, 3)) or zeros(size=(2, 3)) (`keywords`: the call's other keywords)."""
    keywords = dict(keywords or {})
    keyword = keywords.pop("size", None)
    if keywords:
        raise TypeError(f"{op}: unexpected keyword argument {next(iter(keywords))!r}")
    if keyword is not None:
        if size:
            raise TypeError(f"{op}: give the shape once, as {op}(2, 3), {op}((2, 3)) or {op}(size=(2, 3))")
        size = (keyword,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in size):
        raise TypeError(f"{op}: the shape must be non-negative ints, got {size!r}")
    return tuple(int(n) for n in size)


def _make(array, requires_grad):
    return Tensor(array, requires_grad=requires_grad)


def _xp(device):
    return backend.array_module_for(device)


def _float(dtype, op):
    dtype = np.dtype(float32 if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: draws floats, dtype must be a floating dtype, got {dtype}")
    return dtype


def zeros(*size, dtype=None, device=None, requires_grad=False, **keywords):
    """Zeros of the given shape (float32 unless `dtype`)."""
    return full(_size("zeros", size, keywords), 0, dtype=float32 if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **keywords):
    """Ones of the given shape (float32 unless `dtype`)."""
    return full(_size("ones", size, keywords), 1, dtype=float32 if dtype is None else dtype,
                device=device, requires_grad=requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor of shape `size` filled with `fill_value`; its dtype follows the value (a bool, an int:
    int64, a float: float32) unless `dtype` says."""
    if dtype is None:
        dtype = bool_ if isinstance(fill_value, bool) else int64 if isinstance(fill_value, int) else float32
    with backend.use_device(device or "cpu"):
        array = _xp(device).full(_size("full", (size,)), fill_value, dtype=dtype)
    return _make(array, requires_grad)


def zeros_like(t, *, dtype=None, device=None, requires_grad=False):
    """Zeros of t's shape, dtype and device (unless given)."""
    return full(t.shape, 0, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                requires_grad=requires_grad)


def ones_like(t, *, dtype=None, device=None, requires_grad=False):
    return full(t.shape, 1, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                requires_grad=requires_grad)


def full_like(t, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """start, start + step, ... below end (`arange(n)`: 0 .. n-1); int64 when all three are ints, else
    float32, as in PyTorch."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else float32
    if step == 0:
        raise ValueError("arange: step must not be zero")
    with backend.use_device(device or "cpu"):
        array = _xp(device).arange(start, end, step).astype(dtype)
    return _make(array, requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    """`steps` evenly spaced values from start to end, both included (float32 by default)."""
    with backend.use_device(device or "cpu"):
        array = _xp(device).linspace(start, end, int(steps)).astype(_float(dtype, "linspace"))
    return _make(array, requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    """The n x m identity matrix (m = n by default)."""
    with backend.use_device(device or "cpu"):
        array = _xp(device).eye(n, m, dtype=float32 if dtype is None else dtype)
    return _make(array, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None, **keywords):
    """Draws from N(0, 1) of the given shape (float32): `randn(2, 3)`, `randn(size=(1, 1, 224, 224))`."""
    shape = _size("randn", size, keywords)
    dtype = _float(dtype, "randn")
    with backend.use_device(device or "cpu"):
        z = (generator or backend.get_generator(device or "cpu")).standard_normal(shape, dtype=np.float32)
    return _make(z.astype(dtype, copy=False), requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None, **keywords):
    """Draws from U[0, 1) of the given shape (float32)."""
    shape = _size("rand", size, keywords)
    dtype = _float(dtype, "rand")
    with backend.use_device(device or "cpu"):
        u = (generator or backend.get_generator(device or "cpu")).random(shape, dtype=np.float32)
    return _make(u.astype(dtype, copy=False), requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, generator=None):
    """Integers drawn uniformly from [low, high) (`randint(high, size)`: from [0, high)), int64."""
    if size is None:  # randint(high, size): PyTorch's two-argument form
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint: needs a size, as randint(low, high, (2, 3)) or randint(high, size=(2, 3))")
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be larger than low ({low})")
    shape = _size("randint", (size,))
    with backend.use_device(device or "cpu"):
        array = (generator or backend.get_generator(device or "cpu")).integers(low, high, size=shape)
    return _make(array.astype(int64 if dtype is None else dtype, copy=False), False)


def normal(mean=0.0, std=1.0, size=None, *, dtype=None, device=None, requires_grad=False, generator=None):
    """Draws from N(mean, std^2): numbers with `size`, or tensors `mean` and/or `std` (one draw per element,
    on their device and of their broadcast shape), as torch.normal."""
    tensors = [v for v in (mean, std) if isinstance(v, Tensor)]
    if tensors:
        if size is not None:
            raise TypeError("normal: give a size only when mean and std are numbers")
        device = device or tensors[0].device
        size = np.broadcast_shapes(*(v.shape for v in tensors))
    elif size is None:
        raise TypeError("normal: with a number mean and std give a size, as normal(0.0, 1.0, size=(2, 3))")
    z = randn(_size("normal", (size,)), dtype=dtype, device=device, generator=generator)
    z = z * std + mean
    return _make(z.data, requires_grad)


def from_numpy(array):
    """A tensor sharing the NumPy array's memory (a change to one shows in the other), as torch.from_numpy."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)
