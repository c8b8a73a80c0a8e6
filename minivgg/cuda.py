"""`minivgg.cuda`: is a GPU usable here, and how much of its memory does CuPy hold."""
from . import backend


def is_available():
    """True when CuPy is installed and sees a CUDA device. Never raises."""
    return backend.cuda_is_available()


def device_count():
    if not is_available():
        return 0
    return backend.require_cupy().cuda.runtime.getDeviceCount()


def synchronize():
    """Wait for queued GPU work (for honest timing). No-op without a GPU."""
    if is_available():
        backend.require_cupy().cuda.Device().synchronize()


def memory_info():
    """CuPy memory pool use in bytes: {'used': ..., 'total': ...} (total = held by the pool)."""
    pool = backend.require_cupy().get_default_memory_pool()
    return {"used": int(pool.used_bytes()), "total": int(pool.total_bytes())}
