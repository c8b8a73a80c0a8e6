"""Device layer: which array module (NumPy or CuPy) holds an array, moving arrays, seeded generators.

This is the only module that knows CuPy exists. Everything else asks `get_array_module(x)` and writes
code that works with whichever module comes back. CuPy is imported on first use, never at start-up.
"""
import contextlib
import sys

import numpy as np

_cupy_module = None
_cupy_error = None


def _import_cupy():
    """Import CuPy once; remember why it failed so later errors can say so."""
    global _cupy_module, _cupy_error
    if _cupy_module is None and _cupy_error is None:
        try:
            import cupy

            _cupy_module = cupy
        except Exception as exc:  # ImportError, or a CUDA library that fails to load
            _cupy_error = exc
    return _cupy_module


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def require_cupy():
    """Return the CuPy module or raise an error that says what is missing and how to fix it."""
    cupy = _import_cupy()
    if cupy is None:
        raise RuntimeError(
            "device 'cuda' needs CuPy, which could not be imported "
            f"({type(_cupy_error).__name__}: {_cupy_error}). "
            'Install it with `pip install -e ".[cuda12]"` (CUDA 12) or `".[cuda13]"` (CUDA 13), '
            "or use device='cpu'."
        )
    if not cuda_is_available():
        raise RuntimeError(
            "device 'cuda' was asked for, but CuPy sees no CUDA device (no NVIDIA GPU or driver on this "
            "machine). Use device='cpu', or check `nvidia-smi`."
        )
    return cupy


def get_array_module(x):
    """The array module (numpy or cupy) that owns `x` (an array or a Tensor); numpy unless it is on CuPy."""
    cupy = sys.modules.get("cupy")  # never import CuPy just to answer "no"
    if cupy is None:
        return np
    if isinstance(x, cupy.ndarray) or isinstance(getattr(x, "data", None), cupy.ndarray):  # an array, a Tensor
        return cupy
    return np


def canonical_device(device):
    """'cpu', 'cuda' or 'cuda:N' -> 'cpu' or 'cuda:N'. None means 'cpu'."""
    if device is None:
        return "cpu"
    device = str(device).strip().lower()
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "cuda:0"
    if device.startswith("cuda:") and device[5:].isdigit():
        return device
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def device_of(array):
    """The device name of an array: 'cpu' or 'cuda:N'."""
    if get_array_module(array) is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def array_module_for(device):
    """The array module that holds arrays on `device`."""
    device = canonical_device(device)
    return np if device == "cpu" else require_cupy()


def to_device(array, device):
    """Copy `array` to `device` when it lives elsewhere; return it unchanged otherwise."""
    device = canonical_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    cupy = require_cupy()
    with cupy.cuda.Device(int(device[5:])):
        return cupy.asarray(array)


def to_numpy(array):
    """A NumPy copy of `array`, from whichever device it is on."""
    if get_array_module(array) is np:
        return np.array(array, copy=True)
    return array.get()


# One seeded generator per device, so that a seed makes a CPU run repeatable bit for bit.
_generators = {}
_seed = None


def get_generator(device="cpu"):
    """The random generator of `device` (NumPy's or CuPy's `Generator`), created on first use."""
    device = canonical_device(device)
    if device not in _generators:
        xp = array_module_for(device)
        if device == "cpu":
            _generators[device] = np.random.default_rng(_seed)
        else:
            with xp.cuda.Device(int(device[5:])):
                _generators[device] = xp.random.default_rng(_seed)
    return _generators[device]


def manual_seed(seed):
    """Seed every device's generator. Afterwards a CPU run repeats bit for bit."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator_state():
    """The CPU generator's state, to store in a checkpoint."""
    return get_generator("cpu").bit_generator.state


def set_generator_state(state):
    get_generator("cpu").bit_generator.state = state


# ---- which kernels run ---------------------------------------------------------------------------------
# "reference": the plain kernels of functional.py, everywhere. "fast": on the CPU, the tuned variants of
# fast_cpu.py (same numbers, faster); on the GPU the reference kernels still run, as CuPy's own kernels
# are already parallel and the reference layout (NCHW) is the one they read fastest.
KERNEL_TIERS = ("reference", "fast")
_kernels = "fast"


def get_kernels():
    """The active kernel tier: 'reference' or 'fast'."""
    return _kernels


def set_kernels(tier):
    """Choose the kernel tier ('reference' or 'fast') for every op from now on; returns the previous one."""
    global _kernels
    if tier not in KERNEL_TIERS:
        raise ValueError(f"set_kernels: unknown tier {tier!r}; use 'reference' (the readable kernels of "
                         "minivgg/functional.py) or 'fast' (the tuned CPU kernels of minivgg/fast_cpu.py)")
    previous, _kernels = _kernels, tier
    return previous


@contextlib.contextmanager
def kernels(tier):
    """`with minivgg.kernels("reference"): ...` runs the block with that tier, then restores the previous."""
    previous = set_kernels(tier)
    try:
        yield
    finally:
        set_kernels(previous)
