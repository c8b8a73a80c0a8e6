"""Numbers as the inspection tables print them."""
import numpy as np

from .. import backend


def norm(array):
    if array is None:
        return None
    return float(backend.get_array_module(array).sqrt((array.astype(np.float64) ** 2).sum()))


def format_number(value):
    return "-" if value is None else f"{value:.3e}"
