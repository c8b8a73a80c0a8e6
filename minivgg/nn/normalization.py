"""Normalization layers: `LocalResponseNorm`."""
from .. import functional as F
from . import _checks
from .module import Module


class LocalResponseNorm(Module):
    """Cross-channel normalization of AlexNet, used by the paper's configuration A-LRN."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size = _checks.int_at_least("LocalResponseNorm", "size", size)
        # the divisor (k + alpha * sum of squares) ** beta must stay positive: k > 0, alpha and beta >= 0
        self.alpha = _checks.number_between("LocalResponseNorm", "alpha", alpha, 0)
        self.beta = _checks.number_between("LocalResponseNorm", "beta", beta, 0)
        self.k = _checks.number_between("LocalResponseNorm", "k", k, 0, closed=False)

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
