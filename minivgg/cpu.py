"""CPU machinery for the fast kernels: a small thread pool for elementwise work, and `tune()`, the one
explicit call that adjusts the process for training speed (the CLI and the benchmarks make it).

Nothing here runs at `import minivgg`: a user's process is left as it was until `tune()` is called.
"""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

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


def parallel(fn, length, size):
    """Call fn(part) for slices `part` that together cover range(length), on several cores when it pays.

    NumPy runs each elementwise loop on one core but releases the GIL inside it, so disjoint slices of
    one large array, handed to threads, run at the same time. `size` is how many elements the whole job
    touches; small jobs (and one-core machines) get the single call fn(slice(0, length)). Each fn(part)
    must write only its own part of the output: the parts run at the same time.
    """
    parts = min(CPU_THREADS, length)
    if parts < 2 or size < PARALLEL_MIN_SIZE:
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


# ---- the allocator ------------------------------------------------------------------------------------
# A training step frees and allocates the same large arrays (im2col columns, activations, gradients)
# every time. By default glibc returns blocks above a threshold to the OS and maps fresh pages for the
# next one, so every step pays page faults on them. Serving every block from the heap (no mmap) and
# trimming only above 1 GB keeps freed blocks for reuse. Only glibc has mallopt.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory_for_reuse():
    """Tune glibc's malloc as described above; True when it was applied (not when the user set
    MALLOC_MMAP_MAX_ or MALLOC_TRIM_THRESHOLD_, nor off glibc)."""
    if not sys.platform.startswith("linux") or {"MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


# ---- OpenBLAS's start-up settings ---------------------------------------------------------------------
# OpenBLAS reads these once, when NumPy loads it; a process must have them in its environment before that.
def preferred_blas_core(cpuinfo=None):
    """The OpenBLAS kernel family to ask for on this CPU (OPENBLAS_CORETYPE), or None to keep its own choice.

    On AMD processors with AVX-512 (Zen 4 and later) OpenBLAS picks its SkylakeX kernels, written for
    Intel's AVX-512 units, over its Zen kernels, written for these processors. `cpuinfo`: the text of
    /proc/cpuinfo (read when None; Linux only).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    first_processor = cpuinfo.split("\n\n")[0].splitlines()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first_processor if ":" in line)}
    amd = fields.get("vendor_id") == "AuthenticAMD"
    return "Zen" if amd and "avx512f" in fields.get("flags", "").split() else None


def blas_settings(environ=None):
    """{variable: value} OpenBLAS should start with for training, leaving out any already in `environ`
    (default os.environ: what the user set wins): OPENBLAS_THREAD_TIMEOUT (after each product its idle
    threads spin for a long while, taking the cores the fast kernels' threads need; a short spin gives
    them back) and, where it pays, OPENBLAS_CORETYPE (see preferred_blas_core)."""
    environ = os.environ if environ is None else environ
    wanted = {"OPENBLAS_THREAD_TIMEOUT": "10", "OPENBLAS_CORETYPE": preferred_blas_core()}
    return {k: v for k, v in wanted.items() if v is not None and k not in environ}


def restart_with_blas_settings(argv=None):
    """Start this program again with blas_settings() in its environment, unless nothing is missing.

    Importing minivgg has loaded NumPy, and with it OpenBLAS, before this can run: the only way to give
    OpenBLAS its settings is a fresh process. Call it first thing in a script (the `minivgg` command
    does). `argv`: the arguments after the interpreter (default: this process's own, sys.orig_argv).
    Returns only if nothing was missing; does nothing off POSIX and when run interactively (at the Python
    prompt, in Jupyter), where a restart would lose the user's work: there, set the variables before
    starting Python."""
    settings = blas_settings()
    interactive = hasattr(sys, "ps1") or sys.flags.interactive or "ipykernel" in sys.modules
    if not settings or os.name != "posix" or interactive:
        return
    argv = sys.orig_argv[1:] if argv is None else argv
    os.execve(sys.executable, [sys.executable, *argv], dict(os.environ, **settings))


def tune():
    """Adjust this process for training on the CPU; returns {setting: applied?}.

    - `allocator`: freed large blocks are kept for reuse (see keep_freed_memory_for_reuse).
    - `openblas_thread_timeout`, `openblas_coretype`: whether this process started with these OpenBLAS
      settings (see blas_settings); only a process that set them before NumPy loaded has them (the
      `minivgg` command and restart_with_blas_settings() do). The core type is listed only on CPUs
      where preferred_blas_core() asks for one.
    """
    applied = {"allocator": keep_freed_memory_for_reuse(),
               "openblas_thread_timeout": "OPENBLAS_THREAD_TIMEOUT" in os.environ}
    if preferred_blas_core() is not None:
        applied["openblas_coretype"] = "OPENBLAS_CORETYPE" in os.environ
    return applied
