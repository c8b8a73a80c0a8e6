"""`minivgg.cuda`: is a GPU usable here, which one computes, how much of its memory CuPy holds, and TF32.

Without a GPU every function here answers instead of failing: `is_available()` is False, `device_count()`
0, `synchronize()` has nothing to wait for, `memory_info()` reports zeros with "available": False.
"""
import os
import sys
import types
import warnings

import numpy as np

from . import backend

use_device = backend.use_device  # `with minivgg.cuda.use_device("cuda:1"): ...` computes on GPU 1


def is_available():
    """True when CuPy is installed and sees a CUDA device. Never raises."""
    return backend.cuda_is_available()


def device_count():
    if not is_available():
        return 0
    return backend.require_cupy().cuda.runtime.getDeviceCount()


def synchronize():
    """Wait for the current device's queued work (for honest timing). Nothing to wait for without a GPU."""
    if is_available():
        backend.require_cupy().cuda.Device().synchronize()


# Device index -> the most bytes its memory pool was seen holding since reset_peak_memory().
_peaks = {}


def memory_info():
    """Memory of CuPy's pool on the current device, in bytes: "used" by live arrays, "total" held by the
    pool (used plus freed blocks it keeps for reuse: what the process took from the GPU), "peak" the largest
    total seen by a call since reset_peak_memory(), "available" False (and zeros) without a GPU.

    CuPy has no peak counter, and its pool keeps freed blocks, so the total only grows until someone calls
    the pool's free_all_blocks(): calls at a few points (fit makes one at every logging step) catch its
    high-water mark. The counters are kept on the host: reading them does not wait for the GPU."""
    if not is_available():
        return {"available": False, "used": 0, "total": 0, "peak": 0}
    cupy = backend.require_cupy()
    pool = cupy.get_default_memory_pool()
    used, total = int(pool.used_bytes()), int(pool.total_bytes())
    device = cupy.cuda.Device().id
    _peaks[device] = max(_peaks.get(device, 0), total)
    return {"available": True, "used": used, "total": total, "peak": _peaks[device]}


def reset_peak_memory():
    """Start a new high-water mark for memory_info()["peak"] on the current device (fit does at every
    epoch). Nothing to reset without a GPU."""
    if is_available():
        _peaks.pop(backend.require_cupy().cuda.Device().id, None)


# ---- TF32 ------------------------------------------------------------------------------------------------
# CuPy reads the environment variable CUPY_TF32 (docs.cupy.dev, "Environment variables": "If set to 1, it
# allows CUDA libraries to use Tensor Cores TF32 compute for 32-bit floating point compute"; default 0) not
# at import but at the process's first float32 matrix product, and then keeps its choice
# (cupy/_core/_routines_linalg.pyx, get_compute_type). Setting the variable therefore works any time before
# that product; later, CuPy's kept choice must be forgotten too, which only its internal set_compute_type
# can do.
def tf32_enabled():
    """True when CUPY_TF32 asks CuPy for TF32 matrix products."""
    try:
        return int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        return False


def set_tf32(enabled=True):
    """Let (True) or forbid (False) float32 matrix products on the GPU to use TF32 tensor cores (NVIDIA
    Ampere or newer): the convolutions (im2col products) and linear layers get faster, their inputs rounded
    to a 10-bit mantissa (float32 keeps 23). Off by default. Returns the previous setting.

    Sets CUPY_TF32, which CuPy reads at its first float32 matrix product: call this before training (the
    `--tf32` option of `minivgg train` does it first thing). If CuPy is loaded already, its kept choice is
    reset as well, so the next product reads the variable again; a CuPy whose internals differ gets a
    warning instead. On GPUs older than Ampere CuPy keeps full float32 (and warns). No effect on the CPU."""
    previous = tf32_enabled()
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    cupy = sys.modules.get("cupy")
    if isinstance(cupy, types.ModuleType):  # CuPy is loaded: make it forget its choice
        try:
            from cupy._core import _routines_linalg as linalg

            if linalg.compute_type_to_str(0) != "COMPUTE_TYPE_TBD":
                raise AttributeError("compute type 0 is not 'to be decided'")
            linalg.set_compute_type(np.float32, 0)
        except (ImportError, AttributeError) as exc:
            warnings.warn(f"set_tf32: CUPY_TF32 is set, but this CuPy ({exc}) may have chosen its float32 "
                          "matrix mode already; it applies for sure in a new process", RuntimeWarning,
                          stacklevel=2)
    return previous
