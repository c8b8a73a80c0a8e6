import types

import numpy as np
import pytest

import minivgg

# The GPU's fast tier is opt-in (MINIVGG_FAST_GPU=1); the tests that cover it turn it on themselves, and the
# stand-in's whole-network tests would otherwise run its kernels through the thread-by-thread simulator.
minivgg.tiers.enable_fast_gpu(False)


def pytest_addoption(parser):
    parser.addoption("--kernels", choices=minivgg.tiers.TIERS, default="fast",
                     help="the kernel tier every test runs under (tests that name a tier keep theirs)")


def pytest_collection_modifyitems(config, items):
    if minivgg.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device visible to CuPy (minivgg.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_and_kernels(request):
    minivgg.manual_seed(0)
    with minivgg.kernels(request.config.getoption("--kernels")):
        yield


@pytest.fixture(params=["stand-in", pytest.param("card", marks=pytest.mark.gpu)])
def cuda_device(request, monkeypatch):
    """The device 'cuda' a GPU test runs on: the strict CuPy stand-in (tests/strict_cupy.py), everywhere, and
    the real card, where CuPy sees one. So every GPU test's body runs in CI, and the `gpu` mark means "on a
    real card": `pytest -m gpu` runs exactly the card's share (skipped, with the reason, without a card).

    Yields .device ('cuda'), .strict (True for the stand-in) and .stats (the stand-in's transfer and
    synchronization counts, None on the card)."""
    if request.param == "card":
        if not minivgg.cuda.is_available():
            pytest.skip("no CUDA device visible to CuPy (minivgg.cuda.is_available() is False)")
        yield types.SimpleNamespace(device="cuda", strict=False, stats=None)
        minivgg.cuda.synchronize()
        return
    from strict_cupy import STATS, installed

    with installed(monkeypatch):
        yield types.SimpleNamespace(device="cuda", strict=True, stats=STATS)
