"""A stand-in for CuPy, built on NumPy, that refuses what real CuPy would refuse.

- `StrictCupy` answers only the names recorded from an installed CuPy (tests/cupy_api.json); any other
  attribute raises AttributeError naming it.
- Its arrays are `DeviceArray`s (an ndarray subclass standing for GPU memory). As with CuPy:
  implicit conversion to NumPy (`np.asarray(device_array)`, guarded while installed) raises TypeError; mixing a device array
  with a NumPy array in one operation raises TypeError; `.get()` is the explicit copy to the host.
  NumPy functions reached through `__array_function__`/`__array_ufunc__` are allowed only under names
  CuPy itself has, as CuPy dispatches those.
- Every call is checked against CuPy's recorded signature (cupy_signatures.py): a keyword or an argument
  count CuPy refuses (`x.max(initial=0)`, `cupy.multiply(a, b, where=m)`) raises CupyRefusal naming both.
  Reductions and scalars come back as 0-d device arrays, as in CuPy, never as NumPy scalars.
- It counts CuPy calls (STATS["calls"]: functions, ufuncs, operators, methods), host-to-device and
  device-to-host copies, and every host synchronization (STATS["sync"], with
  SYNCS saying which): `.get()`, `.item()`, `.tolist()`, `float()`, `int()`, `complex()`, `bool()` (so
  `if array:`), and printing. CuPy arrays have no `__index__`: using one as a Python integer is refused.
- Its random generator draws from NumPy's Philox, not from NumPy's default PCG64: like a real GPU's, its
  numbers differ from `np.random.default_rng(seed)`'s, so code that expects equal draws on both devices
  fails here too. It has only cupy.random.Generator's methods (no `normal`), with their signatures.
- It has MACHINE["device_count"] GPUs and a current device (`with cupy.cuda.Device(n):`). An array remembers
  the device it was made on; an operation with an operand on another device raises CuPy's ValueError, a
  generator used on another device CuPy's RuntimeError, as with two GPUs without peer access.
  MACHINE["error"] makes counting the GPUs raise CUDARuntimeError (e.g. 35, cudaErrorInsufficientDriver).
- Integer-array indices out of range wrap around, as in CuPy (NumPy raises IndexError).
- `cupyx.jit` is a simulator (SimulatedJit): a `@jit.rawkernel()` kernel runs as Python, thread by thread, its
  integers with C's types and promotions (refusing overflow, unsigned wrap-around and // or % on negatives,
  where C and Python differ), its arrays checking bounds and races between threads.
"""
import contextlib
import inspect
import json
import os
import types

import numpy as np

from cupy_signatures import RECORDED, refusal, signature

API = json.load(open(os.path.join(os.path.dirname(__file__), "cupy_api.json")))
_np_array, _np_asarray = np.array, np.asarray  # the originals: `installed` guards the public ones


class CupyRefusal(TypeError):
    pass


def _unwrap(value):
    if isinstance(value, DeviceArray):
        _check_current_device(value)
        return np.ndarray.view(value, np.ndarray)  # not value.view: the stand-in's own calls are not CuPy calls
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, np.ndarray):
        raise CupyRefusal(f"a NumPy array of shape {value.shape} was mixed with device arrays "
                          "(CuPy raises TypeError here: move it with cupy.asarray first)")
    return value


def _wrap(value):
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_)):
        return _np_asarray(value).view(DeviceArray)  # CuPy returns 0-d arrays, not scalars
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class DeviceArray(np.ndarray):
    """An array 'on the GPU' of the strict stand-in."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ not in API["cupy"]:
            raise CupyRefusal(f"CuPy has no ufunc {ufunc.__name__}")
        if method != "__call__" and f"cupy.ufunc.{method}" not in RECORDED:
            raise CupyRefusal(f"CuPy's ufuncs have no method {method!r} (numpy.{ufunc.__name__}.{method})")
        if not _inside_method[0]:  # a method's own internal ufunc calls were checked as the method's call
            _refuse_unless_accepted(f"cupy.{ufunc.__name__}" if method == "__call__" else f"cupy.ufunc.{method}",
                                    inputs, kwargs)
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        if "where" in kwargs:
            kwargs["where"] = _unwrap(kwargs["where"])
        result = getattr(ufunc, method)(*[_unwrap(i) for i in inputs], **kwargs)
        if not _inside_method[0]:
            STATS["launches"] += 1
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in API["cupy"]:
            raise CupyRefusal(f"numpy.{func.__name__} was called on a device array; CuPy has no "
                              f"cupy.{func.__name__} to dispatch it to")
        _refuse_unless_accepted(f"cupy.{func.__name__}", args, kwargs)
        result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        _count_launch(f"cupy.{func.__name__}", result, *_unwrap(args))
        return _wrap(result)

    def __getattribute__(self, name):
        if name.startswith("_"):
            return super().__getattribute__(name)
        if name not in API["cupy.ndarray"]:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r}")
        value = super().__getattribute__(name)
        if callable(value) and f"cupy.ndarray.{name}" in RECORDED:
            return _checked_method(name, value)
        return value

    # Host synchronizations: each waits for the GPU and copies a result to the host.
    def item(self):
        _sync("item()")
        return self.view(np.ndarray).item()

    def tolist(self):
        _sync("tolist()")
        return self.view(np.ndarray).tolist()

    def __float__(self):
        _sync("float()")
        return float(self.view(np.ndarray))

    def __int__(self):
        _sync("int()")
        return int(self.view(np.ndarray))

    def __complex__(self):
        _sync("complex()")
        return complex(self.view(np.ndarray))

    def __bool__(self):
        _sync("bool()")
        return bool(self.view(np.ndarray))

    def __repr__(self):
        _sync("repr()")
        return repr(self.view(np.ndarray))

    def __str__(self):
        _sync("str()")
        return str(self.view(np.ndarray))

    def __format__(self, spec):
        _sync("format()")
        return format(self.view(np.ndarray), spec)

    def __index__(self):
        raise CupyRefusal("a device array was used as a Python integer (index, range, slice bound): cupy.ndarray "
                          "has no __index__; use int(x), a synchronization, if that is meant")

    def __iter__(self):  # CuPy yields 0-d device arrays from a 1-D array, not host scalars
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __array_finalize__(self, obj):
        self._device_id = getattr(obj, "_device_id", _current[-1])  # a view stays where its base is

    @property
    def device(self):
        return _Device(self._device_id)

    # CuPy wraps out-of-range integer-array indices around (NumPy raises IndexError).
    def __getitem__(self, index):  # an element comes back as a 0-d device array, as in CuPy
        result = super().__getitem__(_wrapped_index(self.shape, index))
        if not _inside_method[0]:
            _count_launch("cupy.ndarray.__getitem__", result, np.ndarray.view(self, np.ndarray))
        return _wrap(result)

    def __setitem__(self, index, value):
        if not _inside_method[0]:
            STATS["launches"] += 1  # a copy or a fill
        super().__setitem__(_wrapped_index(self.shape, index), value)

    def get(self):
        STATS["device_to_host"] += 1
        _sync("get()")
        return _np_array(self.view(np.ndarray), copy=True)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _wrap(self.view(np.ndarray).astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return _wrap(self.view(np.ndarray).copy(order=order))


def _wrapped_index(shape, index):
    parts = index if isinstance(index, tuple) else (index,)
    if any(p is None or p is Ellipsis for p in parts):
        return index
    parts = tuple(p.view(np.ndarray) % shape[axis] if isinstance(p, np.ndarray) and p.dtype.kind in "iu" else p
                  for axis, p in enumerate(parts))
    return parts if isinstance(index, tuple) else parts[0]


STATS = {"host_to_device": 0, "device_to_host": 0, "sync": 0, "calls": 0, "launches": 0}
ALLOCATE_ONLY = ("cupy.empty", "cupy.empty_like")  # CuPy allocates and launches nothing


def _count_launch(name, result, *inputs):
    """Count the kernel a CuPy call launches: every call that computes, copies or fills, but not one that
    only allocates or whose result is a view of an input (reshape, ravel, transpose, a contiguous
    ascontiguousarray, a basic slice)."""
    if name in ALLOCATE_ONLY:
        return
    plain = [np.ndarray.view(a, np.ndarray) for a in (result, *inputs) if isinstance(a, np.ndarray)]
    if isinstance(result, np.ndarray) and any(np.may_share_memory(plain[0], a) for a in plain[1:]):
        return
    STATS["launches"] += 1
SYNCS = []  # what each synchronization counted in STATS["sync"] was: "float()", "get()", ...
_inside_method = [0]  # > 0 while a device array's (already checked) method runs NumPy's implementation


def _sync(what):
    STATS["sync"] += 1
    SYNCS.append(what)


def _refuse_unless_accepted(name, args, kwargs):
    STATS["calls"] += 1  # every CuPy function, ufunc, operator and method call passes here once
    reason = refusal(name, args, kwargs)
    if reason:
        raise CupyRefusal(reason)


def _checked_method(name, method):
    """A device array's method that refuses what CuPy's would, and returns 0-d device arrays for scalars."""
    def call(*args, **kwargs):
        _refuse_unless_accepted(f"cupy.ndarray.{name}", args, kwargs)
        _inside_method[0] += 1
        try:
            result = method(*args, **kwargs)
        finally:
            _inside_method[0] -= 1
        if not _inside_method[0]:
            _count_launch(f"cupy.ndarray.{name}", result, getattr(method, "__self__", None))
        return _wrap(result) if isinstance(result, np.generic) else result
    call.__name__ = name
    return call


# The machine the stand-in pretends to be: how many GPUs, or the CUDA error (a status from CUDA_ERRORS)
# that counting them raises. `installed` resets it; a test may change it.
MACHINE = {"device_count": 1, "error": None}
_current = [0]  # the current device, innermost `with Device(n):` last
CUDA_ERRORS = {
    3: ("cudaErrorInitializationError", "initialization error"),
    35: ("cudaErrorInsufficientDriver", "CUDA driver version is insufficient for CUDA runtime version"),
    100: ("cudaErrorNoDevice", "no CUDA-capable device is detected"),
    101: ("cudaErrorInvalidDevice", "invalid device ordinal"),
}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError: `status` and CuPy's text 'name: description'."""

    def __init__(self, status):
        self.status = status
        super().__init__("%s: %s" % CUDA_ERRORS[status])


def _check_current_device(array):
    """CuPy launches a kernel on the current device and refuses an operand that lives on another one."""
    if array._device_id != _current[-1]:
        raise ValueError(f"The device where the array resides ({array._device_id}) is different from the current "
                         f"device ({_current[-1]}). Peer access is unavailable between these devices.")


class _Device:
    def __init__(self, id=None):
        self.id = _current[-1] if id is None else int(id)

    def __enter__(self):
        if not 0 <= self.id < _Runtime.getDeviceCount():
            raise CUDARuntimeError(101)
        _current.append(self.id)
        return self

    def __exit__(self, *exc):
        _current.pop()
        return False

    def synchronize(self):
        pass


class _Runtime:
    CUDARuntimeError = CUDARuntimeError

    @staticmethod
    def getDeviceCount():
        if MACHINE["error"] is not None:
            raise CUDARuntimeError(MACHINE["error"])
        return MACHINE["device_count"]

    @staticmethod
    def runtimeGetVersion():
        return 12080

    @staticmethod
    def driverGetVersion():  # the newest CUDA the driver supports; 0 without a driver
        return 0 if MACHINE["error"] == 35 else 12080

    @staticmethod
    def getDeviceProperties(device):
        if not 0 <= device < _Runtime.getDeviceCount():
            raise CUDARuntimeError(101)
        return {"name": b"strict CuPy stand-in (NumPy on the CPU, no GPU)", "major": 0, "minor": 0,
                "totalGlobalMem": 0, "multiProcessorCount": 0}


class _Cuda:
    Device = _Device
    runtime = _Runtime()


class _Generator:
    """cupy.random.Generator's methods only, with CuPy's signatures. The bits come from NumPy's Philox (CuPy's
    default_rng uses XORWOW): the same seed gives other numbers than np.random.default_rng(seed), as on a GPU."""

    def __init__(self, seed=None):
        self._rng = np.random.Generator(np.random.Philox(seed))
        self._device_id = _current[-1]  # its state lives on the device current at creation

    def __getattr__(self, name):
        if name not in API["cupy.random.Generator"]:
            raise AttributeError(f"cupy.random.Generator has no method {name!r}")
        method = getattr(self._rng, name)
        qualname = f"cupy.random.Generator.{name}"

        def draw(*a, **k):
            if self._device_id != _current[-1]:
                raise RuntimeError("This Generator state is allocated in a different device")
            _refuse_unless_accepted(qualname, a, k)
            given = signature(qualname).bind(*a, **k).arguments if signature(qualname) else dict(k)
            # CuPy draws in `dtype` where NumPy has no dtype parameter (uniform, beta, ...): cast after
            dtype = given.pop("dtype", None) if "dtype" not in inspect.signature(method).parameters else None
            out = given.get("out")
            result = method(**{key: _unwrap(v) for key, v in given.items()})
            STATS["launches"] += 1
            if out is not None:
                return out
            return _wrap(result if dtype is None else _np_asarray(result).astype(dtype))
        return draw


class _Random:
    def __getattr__(self, name):
        if name not in API["cupy.random"]:
            raise AttributeError(f"cupy.random has no {name!r}")
        if name == "default_rng":
            return _Generator
        raise AttributeError(f"the strict stand-in does not provide cupy.random.{name}")


class _Ufunc:
    """A CuPy ufunc: called, or through its methods (`cupy.add.at`, `.reduce`, ...), with CuPy's signatures."""

    _ATTRIBUTES = ("name", "nin", "nout", "nargs", "types")  # its other public names in CuPy

    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return self._checked(f"cupy.{self.__name__}", self._ufunc)(*args, **kwargs)

    def __getattr__(self, name):
        if f"cupy.ufunc.{name}" in RECORDED:
            return self._checked(f"cupy.ufunc.{name}", getattr(self._ufunc, name))
        if name in self._ATTRIBUTES:
            return getattr(self._ufunc, "__name__" if name == "name" else name)
        raise AttributeError(f"cupy.ufunc has no attribute {name!r}")

    @staticmethod
    def _checked(qualname, function):
        def call(*args, **kwargs):
            _refuse_unless_accepted(qualname, args, kwargs)
            STATS["launches"] += 1
            return _wrap(function(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
        return call


class StrictCupy:
    """`xp` for device arrays: NumPy's implementation under CuPy's names only."""

    __name__ = "cupy"
    __version__ = API["cupy_version"]
    ndarray = DeviceArray
    cuda = _Cuda()
    random = _Random()

    def __getattr__(self, name):
        if name not in API["cupy"]:
            raise AttributeError(f"module 'cupy' has no attribute {name!r} (minivgg must not use it)")
        value = getattr(np, name)
        if isinstance(value, np.ufunc):
            return _Ufunc(value)
        if callable(value) and not isinstance(value, type):
            def call(*args, **kwargs):
                _refuse_unless_accepted(f"cupy.{name}", args, kwargs)
                result = value(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
                _count_launch(f"cupy.{name}", result, *_unwrap(args))
                return _wrap(result)
            call.__name__ = name
            return call
        return value

    @staticmethod
    def asarray(value, dtype=None):
        if isinstance(value, DeviceArray):
            return value if dtype is None else value.astype(dtype, copy=False)
        if isinstance(value, np.ndarray):
            STATS["host_to_device"] += 1
        return _wrap(_np_array(value, dtype=dtype, copy=True))

    @staticmethod
    def array(value, dtype=None, copy=True, order="K"):
        if isinstance(value, DeviceArray):
            return _wrap(_np_array(value.view(np.ndarray), dtype=dtype, copy=copy, order=order))
        return StrictCupy.asarray(value, dtype)

    @staticmethod
    def get_default_memory_pool():
        class Pool:
            def used_bytes(self):
                return 0

            def total_bytes(self):
                return 0
        return Pool()


def _refusing(convert):
    """numpy.asarray & co. that refuse a device array, as CuPy does (no implicit device-to-host copy)."""
    def guarded(value, *args, **kwargs):
        if isinstance(value, DeviceArray):
            raise CupyRefusal("implicit conversion of a device array to NumPy (CuPy raises TypeError: "
                              "use .get() or minivgg.backend.to_numpy)")
        return convert(value, *args, **kwargs)
    return guarded


class _Patches:
    """The part of pytest's monkeypatch that `installed` uses, for use outside pytest (lesson 12)."""

    def __init__(self):
        self._undo = []

    def setattr(self, target, name, value):
        self._undo.append(lambda old=getattr(target, name): setattr(target, name, old))
        setattr(target, name, value)

    def setitem(self, mapping, key, value):
        if key in mapping:
            self._undo.append(lambda old=mapping[key]: mapping.__setitem__(key, old))
        else:
            self._undo.append(lambda: mapping.pop(key, None))
        mapping[key] = value

    def undo(self):
        while self._undo:
            self._undo.pop()()


@contextlib.contextmanager
def installed(monkeypatch=None):
    """Make minivgg see the stand-in as CuPy with one GPU. Without a monkeypatch (outside pytest) the patches
    are undone on leaving the block."""
    if monkeypatch is None:
        patches = _Patches()
        try:
            with installed(patches) as fake:
                yield fake
        finally:
            patches.undo()
        return
    import sys

    from minivgg import cuda, generators

    fake = StrictCupy()
    for name in ("array", "asarray", "ascontiguousarray", "asanyarray"):
        monkeypatch.setattr(np, name, _refusing(getattr(np, name)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    cupyx = SimulatedCupyx()
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.jit", cupyx.jit)
    monkeypatch.setattr(cuda, "_cupy_module", fake)
    monkeypatch.setattr(generators, "_generators", {})
    STATS.update(host_to_device=0, device_to_host=0, sync=0, calls=0, launches=0)
    SYNCS.clear()
    MACHINE.update(device_count=1, error=None)
    _current[:] = [0]
    yield fake


# ---- cupyx.jit, simulated thread by thread ---------------------------------------------------------------
# The cupyx.jit names of CuPy 14's documentation (docs.cupy.dev, "Custom kernels", "JIT kernel definition"):
# a subset written down by hand from that page, not by record_cupy_api.py. The simulator provides those in
# JIT_SIMULATED; the others are refused as not simulated, any other name as not CuPy's.
JIT_DOCUMENTED = ("rawkernel", "threadIdx", "blockDim", "blockIdx", "gridDim", "grid", "gridsize", "laneid",
                  "warpsize", "range", "syncthreads", "syncwarp", "shfl_sync", "shfl_up_sync", "shfl_down_sync",
                  "shfl_xor_sync", "shared_memory")
JIT_SIMULATED = ("rawkernel", "threadIdx", "blockDim", "blockIdx", "gridDim", "grid", "gridsize", "range")
MAX_THREADS_PER_BLOCK = 1024  # CUDA's limit
_C_RANGES = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1)}


class SimulatorError(AssertionError):
    """What a kernel did that C would do otherwise than Python, or that a GPU would race on."""


def _c_type(value):
    """The C type of an integer in a kernel: a CInt's own; a literal is an int, as in C."""
    return value.ctype if isinstance(value, CInt) else "int32"


def _promoted(a, b):
    """C's usual arithmetic conversions among int32, uint32 and int64."""
    types = {_c_type(a), _c_type(b)}
    return "int64" if "int64" in types else "uint32" if "uint32" in types else "int32"


class CInt(int):
    """An integer of a simulated kernel with its C type (int32, uint32 or int64). Arithmetic follows C's
    promotions and refuses what C computes differently: a result outside its type (int32 overflow, an
    unsigned value going negative) and // or % on a negative operand (C truncates toward zero, Python
    floors)."""

    def __new__(cls, value, ctype):
        low, high = _C_RANGES[ctype]
        if not low <= int(value) <= high:
            raise SimulatorError(f"{int(value)} does not fit in the kernel's {ctype}: C would wrap it around")
        self = super().__new__(cls, int(value))
        self.ctype = ctype
        return self

    def _op(self, other, fn, symbol, reverse=False):
        if isinstance(other, (float, np.floating)):
            return NotImplemented
        a, b = (other, self) if reverse else (self, other)
        if symbol in ("//", "%") and (int(a) < 0 or int(b) < 0):
            raise SimulatorError(f"{int(a)} {symbol} {int(b)}: C truncates toward zero where Python floors; "
                                 "keep index arithmetic non-negative")
        return CInt(fn(int(a), int(b)), _promoted(a, b))

    def __add__(self, o): return self._op(o, int.__add__, "+")
    def __radd__(self, o): return self._op(o, int.__add__, "+", True)
    def __sub__(self, o): return self._op(o, int.__sub__, "-")
    def __rsub__(self, o): return self._op(o, int.__sub__, "-", True)
    def __mul__(self, o): return self._op(o, int.__mul__, "*")
    def __rmul__(self, o): return self._op(o, int.__mul__, "*", True)
    def __floordiv__(self, o): return self._op(o, int.__floordiv__, "//")
    def __rfloordiv__(self, o): return self._op(o, int.__floordiv__, "//", True)
    def __mod__(self, o): return self._op(o, int.__mod__, "%")
    def __rmod__(self, o): return self._op(o, int.__mod__, "%", True)
    def __neg__(self): return CInt(-int(self), self.ctype)

    def _compare(self, other, fn):
        if not isinstance(other, (float, np.floating)) and _promoted(self, other) == "uint32" \
                and (int(self) < 0 or int(other) < 0):
            raise SimulatorError(f"comparing {int(self)} with {int(other)} as unsigned: C converts the negative one")
        return fn(int(self), other)

    def __lt__(self, o): return self._compare(o, int.__lt__ if isinstance(o, int) else lambda a, b: a < b)
    def __le__(self, o): return self._compare(o, int.__le__ if isinstance(o, int) else lambda a, b: a <= b)
    def __gt__(self, o): return self._compare(o, int.__gt__ if isinstance(o, int) else lambda a, b: a > b)
    def __ge__(self, o): return self._compare(o, int.__ge__ if isinstance(o, int) else lambda a, b: a >= b)
    __hash__ = int.__hash__

    def __truediv__(self, o):
        raise SimulatorError("/ on integers in a kernel: write // for an index")

    __rtruediv__ = __truediv__


class _Dim3:
    def __init__(self, x):
        self.x, self.y, self.z = CInt(x, "uint32"), CInt(0, "uint32"), CInt(0, "uint32")


class _KernelArray:
    """A 1-D device array inside a simulated kernel: an index must be an integer in [0, size) (C reads and
    writes out of bounds where Python wraps a negative index), and an element one thread writes may be
    neither written nor read by another thread of the launch (a race on a GPU)."""

    def __init__(self, array, name, launch):
        if array.ndim != 1:
            raise SimulatorError(f"kernel argument {name} has shape {array.shape}: pass 1-D arrays (ravel), "
                                 "indexed with flat indices")
        self._a, self._name, self._launch, self._writer = array.view(np.ndarray), name, launch, {}

    def _checked(self, i):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise SimulatorError(f"{self._name}[{i!r}]: a kernel indexes with one integer")
        if not 0 <= int(i) < self._a.size:
            raise SimulatorError(f"{self._name}[{int(i)}] is out of bounds (size {self._a.size})")
        return int(i)

    def __getitem__(self, i):
        i = self._checked(i)
        writer = self._writer.get(i)
        if writer is not None and writer != self._launch.thread:
            raise SimulatorError(f"a race: thread {self._launch.thread} reads {self._name}[{i}], which thread "
                                 f"{writer} wrote in the same launch")
        return self._a[i]

    def __setitem__(self, i, value):
        i = self._checked(i)
        writer = self._writer.setdefault(i, self._launch.thread)
        if writer != self._launch.thread:
            raise SimulatorError(f"a race: threads {writer} and {self._launch.thread} both write "
                                 f"{self._name}[{i}] in one launch")
        self._a[i] = value

    def __len__(self):
        return self._a.size


class _SimulatedKernel:
    """What cupyx.jit.rawkernel returns: called as kernel(grid, block, args), it runs the Python function
    once per thread, block by block, with jit.threadIdx & co. set for that thread."""

    def __init__(self, func, jit):
        names = dict(func.__globals__, jit=jit, range=jit.range, cupy=_ScalarUfuncs())
        self.func = types.FunctionType(func.__code__, names, func.__name__, func.__defaults__, func.__closure__)
        self.jit, self.thread = jit, None

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        grid, block = _launch_dims(grid, "grid"), _launch_dims(block, "block")
        if block > MAX_THREADS_PER_BLOCK:
            raise SimulatorError(f"{block} threads per block: CUDA allows {MAX_THREADS_PER_BLOCK}")
        if not isinstance(args, tuple):
            raise CupyRefusal(f"a jit kernel's args must be a tuple, got {type(args).__name__}")
        names = list(inspect.signature(self.func).parameters)
        if len(names) != len(args):
            raise CupyRefusal(f"kernel {self.func.__name__} takes {len(names)} arguments, got {len(args)}")
        values = [_kernel_argument(a, n, self) for a, n in zip(args, names)]
        jit = self.jit
        jit.gridDim, jit.blockDim = _Dim3(grid), _Dim3(block)
        for b in range(grid):
            jit.blockIdx = _Dim3(b)
            for t in range(block):
                jit.threadIdx = _Dim3(t)
                self.thread = b * block + t
                self.func(*values)


def _launch_dims(dims, what):
    """A 1-D launch's size; the simulator runs 1-D grids and blocks only."""
    if not isinstance(dims, tuple) or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                              for d in dims):
        raise CupyRefusal(f"a jit kernel's {what} must be a tuple of ints, got {dims!r}")
    if len(dims) != 1 or dims[0] < 1:
        raise SimulatorError(f"the simulator runs 1-D launches of at least one {what} unit, got {what} {dims}")
    return int(dims[0])


def _kernel_argument(value, name, launch):
    """An argument as the kernel sees it, of the types the launch accepts (bool, int, float, NumPy scalar,
    cupy.ndarray): an array as a bounds- and race-checked _KernelArray, an integer as a CInt (a Python int
    is a 64-bit integer to the kernel)."""
    if isinstance(value, DeviceArray):
        _check_current_device(value)
        return _KernelArray(value, name, launch)
    if isinstance(value, np.ndarray):
        raise CupyRefusal(f"kernel argument {name} is a NumPy array: a kernel takes device arrays")
    if isinstance(value, (bool, np.bool_, float, np.floating)):
        return value
    if isinstance(value, np.integer):
        return CInt(value, {"int32": "int32", "uint32": "uint32", "int64": "int64"}[value.dtype.name])
    if isinstance(value, int):
        return CInt(value, "int64")
    raise CupyRefusal(f"kernel argument {name} of type {type(value).__name__}: a jit kernel takes bool, int, "
                      "float, complex, NumPy scalars and cupy.ndarray")


class _ScalarUfuncs:
    """`cupy` inside a simulated kernel: its ufuncs, on scalars (CuPy's jit compiles a ufunc call to its
    scalar loop); NumPy's, which keep a float32 a float32."""

    def __getattr__(self, name):
        value = getattr(np, name, None)
        if name not in API["cupy"] or not isinstance(value, np.ufunc):
            raise SimulatorError(f"cupy.{name} in a kernel: the simulator runs CuPy's ufuncs only")
        return value


class SimulatedJit:
    """`cupyx.jit` for the stand-in: rawkernel, the thread coordinates, grid, gridsize and range, simulated.
    A kernel runs as Python, one thread after another, on the stand-in's arrays; its integers carry C's types
    (CInt) and its arrays check bounds and races (_KernelArray), so index arithmetic that only a GPU would get
    wrong fails here."""

    __name__ = "cupyx.jit"

    def __init__(self):
        self.threadIdx = self.blockIdx = self.blockDim = self.gridDim = None
        self.launches = []  # the kernels launched, by name, in order

    def __getattr__(self, name):
        if name in JIT_DOCUMENTED:
            raise AttributeError(f"the simulator does not provide cupyx.jit.{name}")
        raise AttributeError(f"module 'cupyx.jit' has no attribute {name!r}")

    def rawkernel(self, *, mode="cuda", device=False):
        if device:
            raise SimulatorError("the simulator runs kernels, not device functions")

        def wrap(func):
            kernel = _SimulatedKernel(func, self)
            launches = self.launches

            def launch(grid, block, args, shared_mem=0, stream=None):
                launches.append(func.__name__)
                STATS["launches"] += 1
                return kernel(grid, block, args, shared_mem, stream)
            launch.__name__ = func.__name__
            return launch
        return wrap

    def grid(self, ndim):
        if ndim != 1:
            raise SimulatorError("the simulator runs 1-D grids")
        return self.blockIdx.x * self.blockDim.x + self.threadIdx.x

    def gridsize(self, ndim):
        if ndim != 1:
            raise SimulatorError("the simulator runs 1-D grids")
        return self.blockDim.x * self.gridDim.x

    def range(self, *args, unroll=None):
        ctype = "int32"
        for a in args:
            ctype = _promoted(CInt(0, ctype), a)
        return (CInt(i, ctype) for i in range(*(int(a) for a in args)))


class SimulatedCupyx:
    """`cupyx`, as far as the fast GPU tier reaches: its `jit` module, simulated."""

    __name__ = "cupyx"

    def __init__(self):
        self.jit = SimulatedJit()

    def __getattr__(self, name):
        if name not in API["cupyx"]:
            raise AttributeError(f"module 'cupyx' has no attribute {name!r}")
        raise AttributeError(f"the strict stand-in does not provide cupyx.{name}")
