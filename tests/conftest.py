import numpy as np
import pytest

import minivgg


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
def _seed():
    minivgg.manual_seed(0)
