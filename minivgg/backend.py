"""Device layer: which array module (NumPy or CuPy) holds an array, moving arrays, seeded generators.

This is the only module that knows CuPy exists. Everything else asks `get_array_module(x)` and writes
code that works with whichever module comes back. CuPy is imported on first use, never at start-up.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

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


# ---- CPU threads for elementwise work ----------------------------------------------------------------
# NumPy runs each elementwise loop or copy on one core but releases the GIL inside it, so disjoint
# slices of one large array, handed to a few threads, run on several cores at once (BLAS already does).
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
CPU_THREADS = max(1, min(4, _cores))
PARALLEL_MIN_SIZE = 1 << 17  # elements; below this the hand-off to threads costs more than it saves
_pool = None


def _thread_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(CPU_THREADS, thread_name_prefix="minivgg")
    return _pool


def parallel_map(fn, items):
    """list(map(fn, items)) on the CPU thread pool; exceptions propagate to the caller."""
    return list(_thread_pool().map(fn, items))


def parallel(xp, fn, length, size):
    """Call fn(part) for slices `part` that together cover range(length), in parallel when it pays.

    `size` is how many elements the whole job touches. On the GPU (xp is CuPy, whose kernels are
    already parallel), for small jobs and on one core, this is the single call fn(slice(0, length)).
    Each fn(part) must write only its own part of the output: the parts run at the same time.
    """
    parts = min(CPU_THREADS, length)
    if xp is not np or parts < 2 or size < PARALLEL_MIN_SIZE:
        fn(slice(0, length))
        return
    bounds = [length * i // parts for i in range(parts + 1)]
    first, *rest = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    pending = [_thread_pool().submit(fn, part) for part in rest]
    try:
        fn(first)  # the calling thread takes a part too: one sleeping thread fewer to wake
    finally:
        for future in pending:  # even on an error: no part may still be writing when we return
            future.result()


# ---- CPU memory allocator ------------------------------------------------------------------------------
# A training step frees and allocates the same large arrays (im2col columns, activations, masks) every
# time. glibc hands blocks above a moving threshold back to the OS and maps fresh pages for the next
# one, so each step pays page faults on many MB (measured, VGG training loop at 32x32 on 2 cores:
# 357-370 ms per step without this setting, 323-348 ms with it). Fixing the threshold at glibc's maximum (32 MB) and trimming only above 256 MB keeps such
# blocks for reuse. Only glibc has mallopt; elsewhere, or when the user set MALLOC_MMAP_THRESHOLD_,
# nothing changes.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory_for_reuse():
    """Tune glibc's malloc as described above; True when it was applied."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 256 << 20))


keep_freed_memory_for_reuse()
