"""Every kernel of the GPU's fast tier compiles, without a card: the kernels the ops launch on the strict
stand-in, with the argument types they pass, go through CuPy's own cupyx.jit and NVRTC for Ampere (sm_80)
and Hopper (sm_90), in a 32-bit build (what every launch below 2**31 elements gets) and a 64-bit one. The
32-bit build must hold no 64-bit division: a GPU has no integer divider, and a 64-bit division is a routine
several times longer than a 32-bit one, paid for every element written."""
import numpy as np
import pytest

import minivgg as mv
import minivgg.functional as F
from minivgg import fast_gpu, optim, tiers

import kernel_build
from strict_cupy import installed

WHY_NOT = kernel_build.available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT or "")
ARCHS = ("80", "90")
jit = None  # bound to cupyx.jit while a kernel of this module is transpiled


def _run_every_op():
    """Each op of the tier forward and backward, and each optimizer branch, on the stand-in."""
    rng = np.random.default_rng(0)
    previous = tiers.enable_fast_gpu(True)
    try:
        with mv.kernels("fast"):
            for bias in (True, False):
                x = mv.tensor(rng.standard_normal((2, 2, 5, 5)).astype(np.float32), device="cuda", requires_grad=True)
                w = mv.tensor(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), device="cuda", requires_grad=True)
                b = mv.tensor(rng.standard_normal(3).astype(np.float32), device="cuda", requires_grad=True)
                y = F.conv2d(x, w, b if bias else None, padding=1)
                F.dropout(F.max_pool2d(F.relu(y), 2), 0.5).sum().backward()
            for make, kwargs in ((optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                 (optim.Adam, dict(lr=0.01))):
                p = mv.nn.Parameter(mv.tensor(rng.standard_normal(4).astype(np.float32), device="cuda"))
                p.grad = mv.tensor(np.ones(4, np.float32), device="cuda")
                opt = make([p], **kwargs)
                opt.step()
                opt.step()
    finally:
        tiers.enable_fast_gpu(previous)


@pytest.fixture(scope="module")
def launches():
    with pytest.MonkeyPatch.context() as patch, installed(patch):
        return kernel_build.record_launches(_run_every_op)


def test_every_kernel_of_the_tier_is_launched(launches):
    kernels = {name for name in dir(fast_gpu) if name.endswith("_kernel")}
    assert {name for name, _ in launches} == kernels


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_compiles_and_its_32_bit_build_divides_in_32_bits(launches, arch):
    for name, args in launches:
        kernel = getattr(fast_gpu, name)
        narrow = kernel_build.build(kernel, kernel_build.argument_types(args, 32), arch)
        wide = kernel_build.build(kernel, kernel_build.argument_types(args, 64), arch)
        assert ".entry " + name in narrow and ".entry " + name in wide
        counts = kernel_build.divisions(narrow)
        assert not any(op.endswith("64") for op in counts), f"{name}'s 32-bit build divides in 64 bits: {counts}"


def test_the_64_bit_build_is_the_one_that_divides_in_64_bits(launches):
    # The check above can fail: the same kernel given 64-bit sizes does hold 64-bit divisions.
    name, args = next((n, a) for n, a in launches if n == "im2col_kernel")
    wide = kernel_build.divisions(kernel_build.build(fast_gpu.im2col_kernel, kernel_build.argument_types(args, 64),
                                                     "90"))
    assert any(op.endswith("64") for op in wide), wide


def test_a_kernel_that_does_not_compile_is_reported(launches):
    def broken_kernel(x, total, block):
        i = jit.blockIdx.x * block + jit.threadIdx.x
        if i < total:
            x[i] = x.no_such_attribute

    with pytest.raises(Exception, match="no_such_attribute|broken_kernel"):
        kernel_build.build(broken_kernel, kernel_build.argument_types((np.zeros(1, np.float32), np.uint32(1),
                                                                       np.uint32(1)), 32), "90")
