"""Which kernels run: the reference tier (functional.py, optim.py) or the fast tier (fast_cpu.py).

An op or optimizer asks `variant(ReferenceClass, array)` for the class to run. Fast variants register
themselves here with `@fast_variant_of(ReferenceClass)` when their module loads; the fast tier's module is
loaded by name on the first lookup that wants it, so no reference module imports a fast one.
"""
import contextlib
import importlib

import numpy as np

TIERS = ("reference", "fast")
_tier = "fast"

# The module holding each array library's fast variants, loaded on first use.
_FAST_MODULES = {np: "minivgg.fast_cpu"}
_variants = {}  # (array module, reference class) -> fast variant class


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


def fast_variant_of(reference, xp=np):
    """Class decorator: register the decorated class as the fast variant of `reference` for arrays of `xp`."""
    def register(cls):
        _variants[(xp, reference)] = cls
        return cls
    return register


def variant(reference, xp):
    """The class to run for arrays of module `xp`: the registered fast variant of `reference` when the fast
    tier is on and one exists, else `reference` itself."""
    if _tier != "fast" or xp not in _FAST_MODULES:
        return reference
    importlib.import_module(_FAST_MODULES[xp])  # registers its variants on first import
    return _variants.get((xp, reference), reference)


def registered_variants(xp=np):
    """{reference class: fast variant} for arrays of `xp`, loading the fast tier's module first."""
    if xp in _FAST_MODULES:
        importlib.import_module(_FAST_MODULES[xp])
    return {reference: cls for (module, reference), cls in _variants.items() if module is xp}
