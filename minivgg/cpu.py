"""CPU machinery for the fast kernels: a small thread pool, and control of OpenBLAS's own threads so that
the fast tier's matrix products run on that pool, one BLAS thread each.

Nothing here runs at `import minivgg`, and nothing a fast op changes outlasts it: the pool starts on the
first large op, and OpenBLAS's thread count is set for each product and put back when it returns (or
raises). A process needs no settings, restart or call to run the fast tier at its speed.
"""
import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
CPU_THREADS = max(1, min(4, CORES))  # parts of an elementwise job: a few cores already saturate memory
PARALLEL_MIN_SIZE = 1 << 17  # elements; below this the hand-off to threads costs more than it saves
_pool = None


def _thread_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(CORES, thread_name_prefix="minivgg")
    return _pool


def parallel_map(fn, items):
    """list(map(fn, items)) on the CPU thread pool; exceptions propagate to the caller."""
    return list(_thread_pool().map(fn, items))


def parallel(fn, length, size, parts=None):
    """Call fn(part) for slices `part` that together cover range(length), on several cores when it pays.

    NumPy runs each elementwise loop on one core but releases the GIL inside it, so disjoint slices of
    one large array, handed to threads, run at the same time. `size` is how many elements the whole job
    touches; small jobs (and one-core machines) get the single call fn(slice(0, length)). `parts`: at
    most this many slices (default CPU_THREADS). Each fn(part) must write only its own part of the
    output: the parts run at the same time.
    """
    parts = min(CPU_THREADS if parts is None else parts, length)
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


# ---- OpenBLAS's threads ---------------------------------------------------------------------------------
# After each product OpenBLAS's own threads spin for a while (OPENBLAS_THREAD_TIMEOUT, read only at
# start-up) waiting for the next one, taking the cores the fast kernels' threads need. So the fast tier runs
# its products at one BLAS thread, cut in parts on the pool above: OpenBLAS's threads are never woken.
# OpenBLAS's thread count is one number for the whole process: set it for the product, then put it back.
_blas = None  # (get_num_threads, set_num_threads) of the OpenBLAS NumPy loaded, False where none is found
_blas_lock = threading.Lock()
_blas_users = 0  # products running at one BLAS thread now, from any thread
_blas_saved = None  # the thread count to put back when the last of them ends


def _find_openblas():
    """OpenBLAS's (get, set) thread-count functions, found as threadpoolctl finds them: among the shared
    libraries loaded into this process (/proc/self/maps, so Linux only) under the names of the builds NumPy
    ships (scipy-openblas prefixes its symbols and adds a suffix for 64-bit integers). None if not found."""
    import ctypes

    import numpy  # noqa: F401 (loads the BLAS it uses)

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5 and "openblas" in line.lower()}
    except (OSError, IndexError):
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64", ""):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    return get, set_
    return None


def blas_threads_controllable():
    """True when the fast tier can run NumPy's BLAS at one thread (OpenBLAS on Linux); elsewhere its
    products are left whole to the BLAS and its own threads."""
    global _blas
    if _blas is None:
        _blas = _find_openblas() or False
    return bool(_blas)


def blas_thread_count():
    """OpenBLAS's thread count for this process now (None when it cannot be read)."""
    return _blas[0]() if blas_threads_controllable() else None


@contextlib.contextmanager
def one_blas_thread():
    """Run the block with OpenBLAS at one thread, then put back the thread count it had, also when the
    block raises. Blocks in several threads at once share one setting: the first sets it, the last puts
    it back. Other threads' products during the block run at one thread too."""
    global _blas_users, _blas_saved
    if not blas_threads_controllable():
        yield
        return
    get, set_ = _blas
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = get()
            set_(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                set_(_blas_saved)


def tune():
    """Nothing to do any more; kept so that scripts calling it still run. Returns {} (no setting applied).

    It once set glibc's allocator to keep freed memory and reported OpenBLAS's start-up settings: the
    fast tier now reuses its own large buffers and runs its products without OpenBLAS's threads, so a
    process needs neither."""
    return {}


# ---- OpenBLAS's kernels: an option -----------------------------------------------------------------------
# OpenBLAS chooses its kernels once, when NumPy loads it; OPENBLAS_CORETYPE in the environment before that
# overrides its choice, and nothing can change it later. Nothing in minivgg needs it; on AMD processors with
# AVX-512 the Zen kernels run the fast tier's products faster, so a user may start Python with it.
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
    """{variable: value} for OpenBLAS's start-up, leaving out any already in `environ` (default
    os.environ: what the user set wins): OPENBLAS_CORETYPE where preferred_blas_core() asks for one."""
    environ = os.environ if environ is None else environ
    wanted = {"OPENBLAS_CORETYPE": preferred_blas_core()}
    return {k: v for k, v in wanted.items() if v is not None and k not in environ}


def restart_with_blas_settings(argv=None):
    """Start this program again with blas_settings() in its environment, unless nothing is missing.

    `argv`: the arguments after the interpreter (default: this process's own, sys.orig_argv). Returns
    only if nothing was missing; does nothing off POSIX and when run interactively (at the Python prompt,
    in Jupyter), where a restart would lose the user's work."""
    settings = blas_settings()
    interactive = hasattr(sys, "ps1") or sys.flags.interactive or "ipykernel" in sys.modules
    if not settings or os.name != "posix" or interactive:
        return
    argv = sys.orig_argv[1:] if argv is None else argv
    os.execve(sys.executable, [sys.executable, *argv], dict(os.environ, **settings))
