"""`Dropout`: zeroes random activations while training."""
from .. import functional as F
from . import _checks
from .module import Module


class Dropout(Module):
    """Inverted dropout in training mode, identity after `.eval()`."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = _checks.number_between("Dropout", "dropout probability p", p, 0, 1)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
