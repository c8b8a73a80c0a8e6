"""Which kernels run: the reference tier (functional.py, optim.py) or the fast tier (fast_cpu.py on
NumPy arrays, fast_gpu.py on CuPy arrays once `enable_fast_gpu()` has opted in).

An op or optimizer asks `variant(ReferenceClass, array module)` for the class to run. Fast variants
register themselves here with `@fast_variant_of(ReferenceClass, xp)` when their module loads; the fast
tier's module is loaded by name on the first lookup that wants it, so no reference module imports a fast
one, and `import minivgg` never imports CuPy (array modules are known here by name).
"""
import contextlib
import importlib
import os

TIERS = ("reference", "fast")
_tier = "fast"

# The module holding each array library's fast variants, by the array module's name, loaded on first use.
_FAST_MODULES = {"numpy": "minivgg.fast_cpu", "cupy": "minivgg.fast_gpu"}
_variants = {}  # (array module's name, reference class) -> fast variant class
# The GPU's fast tier is opt-in: its kernels are tested on a simulator, not yet on a card.
_fast_gpu = os.environ.get("MINIVGG_FAST_GPU", "0") == "1"


def get_kernels():
    """The active kernel tier: 'reference' or 'fast'."""
    return _tier


def set_kernels(tier):
    """Choose the kernel tier ('reference' or 'fast') for every op from now on; returns the previous one."""
    global _tier
    if tier not in TIERS:
        raise ValueError(f"set_kernels: unknown tier {tier!r}; use 'reference' (the readable kernels of "
                         "minivgg/functional.py) or 'fast' (the tuned CPU kernels of minivgg/fast_cpu.py)")
    previous, _tier = _tier, tier
    return previous


@contextlib.contextmanager
def kernels(tier):
    """`with minivgg.kernels("reference"): ...` runs the block with that tier, then restores the previous."""
    previous = set_kernels(tier)
    try:
        yield
    finally:
        set_kernels(previous)


def enable_fast_gpu(enabled=True):
    """Let the fast tier run the GPU kernels of minivgg/fast_gpu.py on CuPy arrays (True), or keep the
    reference kernels there (False, the default); returns the previous setting. The environment variable
    MINIVGG_FAST_GPU=1 sets it at start-up. With it on, `minivgg doctor` checks these kernels against the
    CPU on the card (the README's GPU section says where they stand)."""
    global _fast_gpu
    previous, _fast_gpu = _fast_gpu, bool(enabled)
    return previous


def fast_gpu_enabled():
    """True when the fast tier takes the GPU kernels of fast_gpu.py on CuPy arrays."""
    return _fast_gpu


def _name(xp):
    """An array module's name ('numpy', 'cupy'); a name is returned as it is."""
    return xp if isinstance(xp, str) else xp.__name__


def fast_variant_of(reference, xp="numpy"):
    """Class decorator: register the decorated class as the fast variant of `reference` for arrays of `xp`
    (an array module or its name)."""
    def register(cls):
        _variants[(_name(xp), reference)] = cls
        return cls
    return register


def variant(reference, xp):
    """The class to run for arrays of module `xp`: the registered fast variant of `reference` when the fast
    tier is on (on CuPy arrays: and enable_fast_gpu() opted in) and one exists, else `reference` itself."""
    name = _name(xp)
    if _tier != "fast" or name not in _FAST_MODULES or (name == "cupy" and not _fast_gpu):
        return reference
    importlib.import_module(_FAST_MODULES[name])  # registers its variants on first import
    return _variants.get((name, reference), reference)


def registered_variants(xp="numpy"):
    """{reference class: fast variant} for arrays of `xp` (a module or its name), loading the fast tier's
    module first."""
    name = _name(xp)
    if name in _FAST_MODULES:
        importlib.import_module(_FAST_MODULES[name])
    return {reference: cls for (module, reference), cls in _variants.items() if module == name}
