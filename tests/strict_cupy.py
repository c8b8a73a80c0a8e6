"""A stand-in for CuPy, built on NumPy, that refuses what real CuPy would refuse.

- `StrictCupy` answers only the names recorded from an installed CuPy (tests/cupy_api.json); any other
  attribute raises AttributeError naming it.
- Its arrays are `DeviceArray`s (an ndarray subclass standing for GPU memory). As with CuPy:
  implicit conversion to NumPy (`np.asarray(device_array)`, guarded while installed) raises TypeError; mixing a device array
  with a NumPy array in one operation raises TypeError; `.get()` is the explicit copy to the host.
  NumPy functions reached through `__array_function__`/`__array_ufunc__` are allowed only under names
  CuPy itself has, as CuPy dispatches those.
- It counts host-to-device and device-to-host copies, so a test can see copies in the hot loop.
"""
import contextlib
import json
import os

import numpy as np

API = json.load(open(os.path.join(os.path.dirname(__file__), "cupy_api.json")))
_np_array, _np_asarray = np.array, np.asarray  # the originals: `installed` guards the public ones


class CupyRefusal(TypeError):
    pass


def _unwrap(value):
    if isinstance(value, DeviceArray):
        return value.view(np.ndarray)
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
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        if "where" in kwargs:
            kwargs["where"] = _unwrap(kwargs["where"])
        result = getattr(ufunc, method)(*[_unwrap(i) for i in inputs], **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ not in API["cupy"]:
            raise CupyRefusal(f"numpy.{func.__name__} was called on a device array; CuPy has no "
                              f"cupy.{func.__name__} to dispatch it to")
        return _wrap(func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def __getattribute__(self, name):
        if not name.startswith("_") and name not in API["cupy.ndarray"]:
            raise AttributeError(f"cupy.ndarray has no attribute {name!r}")
        return super().__getattribute__(name)

    @property
    def device(self):
        return _Device(0)

    def get(self):
        STATS["device_to_host"] += 1
        return _np_array(self.view(np.ndarray), copy=True)

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        return _wrap(self.view(np.ndarray).astype(dtype, order=order, copy=copy))

    def copy(self, order="C"):
        return _wrap(self.view(np.ndarray).copy(order=order))


STATS = {"host_to_device": 0, "device_to_host": 0}


class _Device:
    def __init__(self, id=0):
        self.id = id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount():
        return 1


class _Cuda:
    Device = _Device
    runtime = _Runtime()


class _Generator:
    """cupy.random.Generator's methods only."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        if name not in API["cupy.random.Generator"]:
            raise AttributeError(f"cupy.random.Generator has no method {name!r}")
        method = getattr(self._rng, name)
        return lambda *a, **k: _wrap(method(*a, **k))


class _Random:
    def __getattr__(self, name):
        if name not in API["cupy.random"]:
            raise AttributeError(f"cupy.random has no {name!r}")
        if name == "default_rng":
            return _Generator
        raise AttributeError(f"the strict stand-in does not provide cupy.random.{name}")


class StrictCupy:
    """`xp` for device arrays: NumPy's implementation under CuPy's names only."""

    __name__ = "cupy"
    ndarray = DeviceArray
    cuda = _Cuda()
    random = _Random()

    def __getattr__(self, name):
        if name not in API["cupy"]:
            raise AttributeError(f"module 'cupy' has no attribute {name!r} (minivgg must not use it)")
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            def call(*args, **kwargs):
                return _wrap(value(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
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


@contextlib.contextmanager
def installed(monkeypatch):
    """Make minivgg see the stand-in as CuPy with one GPU."""
    import sys

    from minivgg import backend

    fake = StrictCupy()
    for name in ("array", "asarray", "ascontiguousarray", "asanyarray"):
        monkeypatch.setattr(np, name, _refusing(getattr(np, name)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(backend, "_cupy_module", fake)
    monkeypatch.setattr(backend, "_generators", {})
    STATS.update(host_to_device=0, device_to_host=0)
    yield fake
