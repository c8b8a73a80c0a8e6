"""The fast GPU tier's kernels built as a card would build them, without a card: CuPy's own cupyx.jit
transpiles each kernel to CUDA C for the argument types its op passes, and NVRTC compiles that to PTX for a
chosen architecture. CuPy's own compile step asks the driver which architecture it runs on, so this calls
NVRTC itself, with the options and include folders CuPy would give it.

`record_launches` runs the tier's ops on the strict CuPy stand-in and keeps each kernel with the arguments
it was launched with; `build` turns one into PTX; `divisions` reads the PTX's integer divisions."""
import importlib
import os
import re

import numpy as np

DIVISION = re.compile(r"\b(div|rem)\.(s|u)(32|64)\b")


def available():
    """'' when cupyx.jit and NVRTC can be used here, else why not."""
    try:
        cupy = importlib.import_module("cupy")
        importlib.import_module("cupyx.jit")
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as error:  # ImportError, or NVRTC's library missing
        return f"needs cupy-cuda12x and nvidia-cuda-nvrtc-cu12 ({type(error).__name__}: {error})"
    if not _include_folders(cupy)[-1].endswith(os.path.join("cuda_runtime", "include")):
        return "needs nvidia-cuda-runtime-cu12 (CUDA's runtime headers)"
    return ""


def _include_folders(cupy):
    site = os.path.dirname(cupy.__file__)
    folders = [os.path.join(site, "_core", "include")]
    cccl = os.path.join(site, "_core", "include", "cupy", "_cccl")
    folders += [os.path.join(cccl, name) for name in ("libcudacxx", "cub", "thrust")]
    try:
        nvidia = importlib.import_module("nvidia")
        for root in nvidia.__path__:
            runtime = os.path.join(root, "cuda_runtime", "include")
            if os.path.isdir(runtime):
                folders.append(runtime)
                break
    except ImportError:
        pass
    return folders


def record_launches(run_ops):
    """Call `run_ops()` (which runs ops on the stand-in) and return [(kernel name, launch arguments)], one
    per distinct kernel and argument-type list."""
    import pytest

    import strict_cupy

    seen = {}
    original = strict_cupy._SimulatedKernel.__call__

    def call(self, grid, block, args, shared_mem=0, stream=None):
        key = (self.func.__name__, tuple(_type_key(a) for a in args))
        seen.setdefault(key, (self.func.__name__, args))
        return original(self, grid, block, args, shared_mem, stream)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(strict_cupy._SimulatedKernel, "__call__", call)
        run_ops()
    return list(seen.values())


def _type_key(value):
    return ("array", value.dtype.str) if isinstance(value, np.ndarray) else type(value).__name__


def argument_types(args, bits):
    """cupyx.jit's types for a launch's arguments: as recorded (bits 32), or as the same launch over arrays
    of 2**31 elements or more would pass them (bits 64: 64-bit indices, arrays addressed in 64 bits)."""
    from cupyx.jit import _cuda_typerules, _cuda_types

    types = []
    for a in args:
        if isinstance(a, np.ndarray):  # an array of indices (pooling's argmax) holds the launch's index type
            dtype = np.int64 if a.dtype == np.uint32 and bits == 64 else a.dtype
            types.append(_cuda_types.CArray(dtype, 1, True, bits == 32))
        elif isinstance(a, np.integer) and bits == 64:
            types.append(_cuda_types.Scalar(np.dtype(np.int64)))
        else:
            types.append(_cuda_typerules.get_ctype_from_scalar("cuda", a))
    return types


def build(kernel, types, arch):
    """PTX of `kernel` (a fast_gpu function) for argument `types` on compute capability `arch` ('90')."""
    cupy = importlib.import_module("cupy")
    jit = importlib.import_module("cupyx.jit")
    from cupy.cuda import nvrtc
    from cupyx.jit import _compile, _cuda_types

    names = kernel.__globals__  # where the transpiler looks up `jit` and `cupy`
    saved = names.get("jit"), names.get("cupy")
    names.update(jit=jit, cupy=cupy)
    try:
        result = _compile.transpile(kernel, ['extern "C"', "__global__"], "cuda", types, _cuda_types.void)
    finally:
        names.update(jit=saved[0], cupy=saved[1])
    program = nvrtc.createProgram(result.code, f"{kernel.__name__}.cu", [], [])
    options = [f"-arch=compute_{arch}", *result.options] + [f"-I{f}" for f in _include_folders(cupy)]
    try:
        nvrtc.compileProgram(program, options)
    except Exception as error:
        raise AssertionError(f"{kernel.__name__} does not compile for compute_{arch}: {error}\n"
                             f"{nvrtc.getProgramLog(program)}") from None
    return nvrtc.getPTX(program).decode()


def divisions(ptx):
    """{'div.u32': count, 'rem.s64': count, ...}: the integer divisions in PTX (each a routine of tens of
    instructions on the card, 64-bit ones several times longer than 32-bit)."""
    counts = {}
    for op, sign, bits in DIVISION.findall(ptx):
        name = f"{op}.{sign}{bits}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def instructions(ptx):
    """The number of PTX instructions in the kernel's body (lines ending in ';' that are not declarations)."""
    return sum(1 for line in ptx.splitlines()
               if line.strip().endswith(";") and not line.strip().startswith((".", "//")))
