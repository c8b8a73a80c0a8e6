"""Device layer: which array module (NumPy or CuPy) holds an array, moving arrays, seeded generators.

This is the only module that knows CuPy exists. Everything else asks `get_array_module(x)` and writes
code that works with whichever module comes back. CuPy is imported on first use, never at start-up.
"""
import contextlib
import os
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


def _count_devices():
    """(number of CUDA devices CuPy sees, None), or (0, the exception CUDA raised while counting them)."""
    cupy = _import_cupy()
    if cupy is None:
        return 0, None
    try:
        return int(cupy.cuda.runtime.getDeviceCount()), None
    except Exception as exc:  # CUDARuntimeError: no driver, a driver too old, no device, ...
        return 0, exc


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device. Never raises."""
    return _count_devices()[0] > 0


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


def _no_device_message(cupy, error):
    """Why CuPy sees no device: CUDA's own error (kept, as it names the cause), what it means, what to do."""
    if error is None:
        return ("device 'cuda' was asked for, but CuPy sees no CUDA device (no NVIDIA GPU or driver on this "
                "machine). Use device='cpu', or check `nvidia-smi`.")
    text = f"device 'cuda' was asked for, but CUDA failed when CuPy counted the GPUs ({error})."
    if "cudaErrorInsufficientDriver" in str(error):
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
    if "cudaErrorNoDevice" in str(error):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hidden = f" CUDA_VISIBLE_DEVICES={visible!r} limits which GPUs CUDA may use." if visible is not None else ""
        return (f"{text} CUDA found no GPU: check that `nvidia-smi` lists one (in a container, start it with GPU "
                f"access, e.g. `docker run --gpus all`).{hidden} Or use device='cpu'.")
    return (f"{text} Check that `nvidia-smi` works: if it fails too, the NVIDIA driver needs reinstalling or a "
            "reboot after an update. Or use device='cpu'.")


def device_problem(device):
    """None if `device` ('cpu' or 'cuda:N') can be used, else why not: CUDA unusable (require_cupy's
    error) or N beyond the GPUs CuPy sees."""
    device = canonical_device(device)
    if device == "cpu":
        return None
    count = require_cupy().cuda.runtime.getDeviceCount()
    index = int(device[5:])
    if index < count:
        return None
    which = "cuda:0 only" if count == 1 else f"cuda:0 to cuda:{count - 1}"
    return f"{device} does not exist: CuPy sees {count} CUDA device{'s' * (count != 1)} ({which})"


def cuda_index(device):
    """N of the device 'cuda:N', after checking that CuPy sees it (ValueError if not)."""
    problem = device_problem(device)
    if problem:
        raise ValueError(f"device {problem}")
    return int(canonical_device(device)[5:])


@contextlib.contextmanager
def use_device(device):
    """Make `device` CuPy's current device inside the block; nothing to do for 'cpu'.

    CuPy allocates new arrays, launches kernels and draws random numbers on its current device, whatever
    device the operands live on, so work on 'cuda:N' for N > 0 must run inside this block. fit,
    train_epoch, evaluate_accuracy, predict, the DataLoader and the initializers enter it themselves;
    a loop of one's own on 'cuda:1' runs under `with minivgg.cuda.use_device("cuda:1"):`."""
    device = canonical_device(device)
    if device == "cpu":
        yield
        return
    index = cuda_index(device)
    with require_cupy().cuda.Device(index):
        yield


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
    index = cuda_index(device)
    cupy = require_cupy()
    with cupy.cuda.Device(index):
        if isinstance(array, cupy.ndarray):  # from another GPU: copy() copies onto the current device
            return array.copy()
        return cupy.asarray(array)


def to_numpy(array):
    """A NumPy copy of `array`, from whichever device it is on."""
    if get_array_module(array) is np:
        return np.array(array, copy=True)
    return array.get()


# One seeded generator per device, so that a seed makes a run repeatable bit for bit.
_generators = {}
_seed = None
# The loader draws its order from (seed, epoch) and its flips from (seed, epoch, 1); the training steps' own
# generators take this third word, so that no two streams share a seed.
STEP_STREAM = 2


def get_generator(device="cpu"):
    """The random generator of `device` (NumPy's or CuPy's `Generator`), created on first use from the seed
    of `manual_seed` or, inside fit, of `derive_generators`."""
    device = canonical_device(device)
    if device not in _generators:
        if device == "cpu":
            _generators[device] = np.random.default_rng(_seed)
        else:
            cupy = require_cupy()
            with cupy.cuda.Device(cuda_index(device)):  # a CuPy generator draws on the device it was made on
                _generators[device] = cupy.random.default_rng(_seed)
    return _generators[device]


def manual_seed(seed):
    """Seed every device's generator. Afterwards a run repeats bit for bit."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def derive_generators(seed, epoch, step):
    """Give every device a generator that depends only on (seed, epoch, step) (each made on first use, so
    a step that draws nothing costs nothing). fit calls it before every step: dropout's masks then do not
    depend on what drew random numbers before (initialization, an earlier epoch, a resume), so a resumed
    run draws the masks of the run that went straight through, on every device, without checkpointing any
    generator state."""
    global _seed
    key = np.random.SeedSequence([int(seed), int(epoch), STEP_STREAM, int(step)])
    _seed = int(key.generate_state(1, np.uint64)[0])  # an int: what both NumPy and CuPy accept as a seed
    _generators.clear()


def generator_state():
    """The CPU generator's state, to store in a checkpoint."""
    return get_generator("cpu").bit_generator.state


def set_generator_state(state):
    get_generator("cpu").bit_generator.state = state
