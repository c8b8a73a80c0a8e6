"""Record the names an installed CuPy provides, for the conformance test (runs without a GPU).

    python -m venv /tmp/cupyenv && /tmp/cupyenv/bin/pip install cupy-cuda12x numpy
    /tmp/cupyenv/bin/python tests/record_cupy_api.py > tests/cupy_api.json
"""
import json

import cupy
import cupyx


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


print(json.dumps({
    "cupy_version": cupy.__version__,
    "cupy": public(cupy),
    "cupy.random": public(cupy.random),
    "cupy.linalg": public(cupy.linalg),
    "cupyx": public(cupyx),
    "cupy.random.Generator": public(cupy.random.Generator),
    "cupy.ndarray": public(cupy.ndarray) + ["__array_priority__"],
}, indent=1))
