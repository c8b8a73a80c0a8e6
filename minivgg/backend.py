"""Arrays and where they live: which array module (NumPy or CuPy) holds an array, its device, moving it.

Everything else asks `get_array_module(x)` and writes code that works with whichever module comes back.
CuPy itself is `minivgg.cuda`'s business, device names `minivgg.devices`'s and seeded generators
`minivgg.generators`'s; their public names are importable from here too.
"""
import numpy as np

from . import cuda
from .cuda import (  # noqa: F401  (re-exported: the device layer's names, in one place)
    cuda_index,
    cuda_version,
    device_problem,
    driver_missing,
    require_cupy,
    use_device,
)
from .devices import canonical_device, parse_device  # noqa: F401
from .generators import (  # noqa: F401
    STEP_STREAM,
    derive_generators,
    generator_state,
    get_generator,
    manual_seed,
    set_generator_state,
)


def cuda_is_available():
    """True when CuPy imports and sees at least one CUDA device. Never raises."""
    return cuda.is_available()


def get_array_module(x):
    """The array module (numpy or cupy) that owns `x` (an array or a Tensor); numpy unless it is on CuPy."""
    cupy = cuda.loaded_cupy()  # never import CuPy just to answer "no"
    if cupy is None:
        return np
    if isinstance(x, cupy.ndarray) or isinstance(getattr(x, "data", None), cupy.ndarray):  # an array, a Tensor
        return cupy
    return np


def device_of(array):
    """The device name of an array: 'cpu' or 'cuda:N'."""
    if get_array_module(array) is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def array_module_for(device):
    """The array module that holds arrays on `device`."""
    return np if canonical_device(device) == "cpu" else require_cupy()


def to_device(array, device):
    """Copy `array` to `device` when it lives elsewhere; return it unchanged otherwise."""
    device = canonical_device(device)
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    cupy = require_cupy()
    with use_device(device):
        if isinstance(array, cupy.ndarray):  # from another GPU: copy() copies onto the current device
            return array.copy()
        return cupy.asarray(array)


def to_numpy(array):
    """A NumPy copy of `array`, from whichever device it is on."""
    if get_array_module(array) is np:
        return np.array(array, copy=True)
    return array.get()
