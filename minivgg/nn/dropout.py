"""`Dropout`: zeroes random activations while training."""
from .. import functional as F
from .module import Module


class Dropout(Module):
    """Inverted dropout in training mode, identity after `.eval()`."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
