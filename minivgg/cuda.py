"""`minivgg.cuda`: CuPy and the GPU: is one usable here (and if not, why), which one computes, how much of
its memory CuPy holds, and TF32.

This is the only module that imports CuPy, on first use, never at start-up; the others ask it (or
`minivgg.backend`, for arrays). Without a GPU every function here answers instead of failing:
`is_available()` is False, `device_count()` 0, `synchronize()` has nothing to wait for, `memory_info()`
reports zeros with "available": False.
"""
import contextlib
import os
import sys
import types
import warnings

import numpy as np

from .devices import canonical_device, parse_device

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


def loaded_cupy():
    """CuPy if something imported it already, else None. Never imports it: an array can only be CuPy's if
    CuPy is loaded, so this answers "is that a GPU array?" for free."""
    return sys.modules.get("cupy")


def _count_devices():
    """(number of CUDA devices CuPy sees, None), or (0, the exception CUDA raised while counting them)."""
    cupy = _import_cupy()
    if cupy is None:
        return 0, None
    try:
        return int(cupy.cuda.runtime.getDeviceCount()), None
    except Exception as exc:  # CUDARuntimeError: no driver, a driver too old, no device, ...
        return 0, exc


def is_available():
    """True when CuPy is installed and sees a CUDA device. Never raises."""
    return _count_devices()[0] > 0


def device_count():
    """How many CUDA devices CuPy sees; 0 without CuPy or a working driver. Never raises."""
    return _count_devices()[0]


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
    count, error = _count_devices()
    if count == 0:
        raise RuntimeError(_no_device_message(cupy, error))
    return cupy


# ---- which GPU computes ----------------------------------------------------------------------------------
def device_problem(device):
    """None if `device` ('cpu' or 'cuda:N') can be used, else why not: CUDA unusable (require_cupy's
    error) or N beyond the GPUs CuPy sees."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return None
    count = require_cupy().cuda.runtime.getDeviceCount()
    if index < count:
        return None
    which = "cuda:0 only" if count == 1 else f"cuda:0 to cuda:{count - 1}"
    return f"cuda:{index} does not exist: CuPy sees {count} CUDA device{'s' * (count != 1)} ({which})"


def cuda_index(device):
    """N of the device 'cuda:N', after checking that CuPy sees it (ValueError if not)."""
    problem = device_problem(device)
    if problem:
        raise ValueError(f"device {problem}")
    return parse_device(device)[1]


@contextlib.contextmanager
def use_device(device):
    """Make `device` CuPy's current device inside the block; nothing to do for 'cpu'.

    CuPy allocates new arrays, launches kernels and draws random numbers on its current device, whatever
    device the operands live on, so work on 'cuda:N' for N > 0 must run inside this block. fit,
    train_epoch, evaluate_accuracy, predict, the DataLoader and the initializers enter it themselves;
    a loop of one's own on 'cuda:1' runs under `with minivgg.cuda.use_device("cuda:1"):`."""
    if canonical_device(device) == "cpu":
        yield
        return
    index = cuda_index(device)
    with require_cupy().cuda.Device(index):
        yield


def current_device_index():
    """The index of CuPy's current device."""
    return require_cupy().cuda.Device().id


def synchronize():
    """Wait for the current device's queued work (for honest timing). Nothing to wait for without a GPU."""
    if is_available():
        require_cupy().cuda.Device().synchronize()


# ---- memory ----------------------------------------------------------------------------------------------
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
    cupy = require_cupy()
    pool = cupy.get_default_memory_pool()
    used, total = int(pool.used_bytes()), int(pool.total_bytes())
    device = cupy.cuda.Device().id
    _peaks[device] = max(_peaks.get(device, 0), total)
    return {"available": True, "used": used, "total": total, "peak": _peaks[device]}


def reset_peak_memory():
    """Start a new high-water mark for memory_info()["peak"] on the current device (fit does at every
    epoch). Nothing to reset without a GPU."""
    if is_available():
        _peaks.pop(current_device_index(), None)


# ---- what CUDA says: versions, and why no GPU is usable ----------------------------------------------------
# The oldest NVIDIA driver (Linux) that runs each CUDA major version.
MINIMUM_DRIVER = {12: 525, 13: 580}


def cuda_version(get):
    """(major, minor) from a CUDA version query such as runtimeGetVersion (12080 -> (12, 8)), or None."""
    try:
        version = int(get())
    except Exception:
        return None
    return (version // 1000, version % 1000 // 10) if version > 0 else None


def driver_missing(cupy):
    """True when the CUDA driver API answers version 0: no NVIDIA driver is installed."""
    try:
        return int(cupy.cuda.runtime.driverGetVersion()) == 0
    except Exception:
        return False


def describe_cupy():
    """One line for a bug report: CuPy's version, the CUDA it was built for, what the driver runs and how many
    devices CUDA counts (or the error counting them), or why CuPy did not import. Never raises."""
    cupy = _import_cupy()
    if cupy is None:
        return f"not installed ({type(_cupy_error).__name__}: {_cupy_error})"
    runtime = cupy.cuda.runtime
    built, supported = cuda_version(runtime.runtimeGetVersion), cuda_version(runtime.driverGetVersion)
    built = f"CUDA runtime {built[0]}.{built[1]}" if built else "CUDA runtime unreadable"
    driver = (f"driver supports CUDA {supported[0]}.{supported[1]}" if supported
              else "no NVIDIA driver found" if driver_missing(cupy) else "driver version unreadable")
    try:
        devices = f"{runtime.getDeviceCount()} CUDA device(s)"
    except Exception as exc:  # the CUDA error that keeps the GPU away: the heart of the diagnosis
        devices = f"counting the devices failed: {exc}"
    return f"{cupy.__version__} ({built}, {driver}); {devices}"


def describe_device(index):
    """'cuda:N, its name, compute capability M.m, its memory in GiB'."""
    props = require_cupy().cuda.runtime.getDeviceProperties(index)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return (f"cuda:{index}, {name}, compute capability {props['major']}.{props['minor']}, "
            f"{props['totalGlobalMem'] / 2**30:.1f} GiB")


def _no_device_message(cupy, error):
    """Why CuPy sees no device: CUDA's own error (kept, as it names the cause), what it means, what to do."""
    if error is None:
        return ("device 'cuda' was asked for, but CuPy sees no CUDA device (no NVIDIA GPU or driver on this "
                "machine). Use device='cpu', or check `nvidia-smi`.")
    text = f"device 'cuda' was asked for, but CUDA failed when CuPy counted the GPUs ({error})."
    if "cudaErrorInsufficientDriver" in str(error):
        return _old_driver_message(cupy, text)
    if "cudaErrorNoDevice" in str(error):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f" CUDA_VISIBLE_DEVICES={visible!r} limits which GPUs CUDA may use." if visible is not None else ""
        return (f"{text} CUDA found no GPU: check that `nvidia-smi` lists one (in a container, start it with GPU "
                f"access, e.g. `docker run --gpus all`).{hidden} Or use device='cpu'.")
    return (f"{text} Check that `nvidia-smi` works: if it fails too, the NVIDIA driver needs reinstalling or a "
            "reboot after an update. Or use device='cpu'.")


def _old_driver_message(cupy, text):
    """`text` (CUDA's 'insufficient driver' error) completed: no driver at all, or one too old, and what to do."""
    runtime = cuda_version(cupy.cuda.runtime.runtimeGetVersion)  # what this CuPy was built for
    driver = cuda_version(cupy.cuda.runtime.driverGetVersion)  # the newest CUDA the driver runs
    if driver_missing(cupy):  # CUDA reports a missing driver as an insufficient one
        return (f"{text} No NVIDIA driver was found on this machine: install it (`nvidia-smi` then lists "
                "the GPU), or use device='cpu'.")
    runs = f" (it runs CUDA {driver[0]}.{driver[1]} at most)" if driver else ""
    if runtime is None:
        return (f"{text} The NVIDIA driver{runs} is older than the CUDA version this CuPy was built for. Update "
                "the NVIDIA driver (`nvidia-smi` shows its version).")
    major = runtime[0]
    needs = f" ({MINIMUM_DRIVER[major]} or newer)" if major in MINIMUM_DRIVER else ""
    text = (f"{text} The NVIDIA driver{runs} is older than CUDA {major} needs{needs}; `nvidia-smi` shows "
            "its version. Update the NVIDIA driver")
    older = [m for m in MINIMUM_DRIVER if m < major and (driver is None or m <= driver[0])]
    if not older:
        return text + "."
    return (f'{text}, or use CuPy for CUDA {max(older)}: pip uninstall cupy-cuda{major}x, then '
            f'pip install -e ".[cuda{max(older)}]".')


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

    Which products it reaches, per CuPy's source (cupy/_core/_routines_linalg.pyx; not verified on a card):
    2-D products (`@`, matmul, dot, tensordot of 2-D operands), which go to cuBLAS's gemmEx with the compute
    type read from CUPY_TF32; minivgg's convolutions and linear layers multiply 2-D matrices, so all of them.
    Batched products (matmul of 3-D or more operands: gemmStridedBatchedEx or sgemmBatched) keep full float32.
    CuPy's documentation says only that CUPY_TF32=1 "allows CUDA libraries to use Tensor Cores TF32 compute".

    Sets CUPY_TF32, which CuPy reads at its first float32 matrix product: call this before training (the
    `--tf32` option of `minivgg train` does it first thing). If CuPy is loaded already, its kept choice is
    reset as well, so the next product reads the variable again; a CuPy whose internals differ gets a
    warning instead. On GPUs older than Ampere CuPy keeps full float32 (and warns). No effect on the CPU."""
    previous = tf32_enabled()
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    if isinstance(loaded_cupy(), types.ModuleType):  # CuPy is loaded: make it forget its choice
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
