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


def tune():
    """Adjust this process for training on the CPU; returns {setting: applied?}.

    - `allocator`: freed large blocks are kept for reuse (see keep_freed_memory_for_reuse).
    - `openblas_thread_timeout`: whether OpenBLAS's idle threads give their cores back quickly to the
      fast kernels' threads. OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when NumPy loads it, so only
      a process that set it before importing NumPy has it (the `minivgg` command does).
    """
    return {"allocator": keep_freed_memory_for_reuse(),
            "openblas_thread_timeout": "OPENBLAS_THREAD_TIMEOUT" in os.environ}
