"""Activation layers: `ReLU`, `Sigmoid`, `Tanh`, `Softmax`."""
from .. import functional as F
from .module import Module


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise (LeNet's activation)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softmax(Module):
    """Softmax along `dim`: each slice along it becomes probabilities that sum to 1. For training, give
    CrossEntropyLoss the raw scores instead: it takes the log-softmax itself, more accurately."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        if self.dim is None:
            raise ValueError("Softmax: give the axis, e.g. nn.Softmax(dim=1) for scores (N, C)")
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"
