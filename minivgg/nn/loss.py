"""Losses as layers, named as in `torch.nn`: `CrossEntropyLoss` (integer class labels), `BCEWithLogitsLoss`
(one raw score per example and float targets in [0, 1]) and `MSELoss` (squared error, for regression). Each
calls its function in `minivgg.functional`."""
from .. import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """Mean cross-entropy of logits (N, C) against integer labels (N,): `F.cross_entropy`."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction != "mean":  # F.cross_entropy computes the batch mean only
            raise ValueError(f"CrossEntropyLoss: only reduction='mean' is implemented, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels)


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy of logits (any shape) against targets of the same shape:
    `F.binary_cross_entropy_with_logits`; reduction 'mean' (default), 'sum' or 'none'."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"BCEWithLogitsLoss: reduction must be one of {', '.join(F.REDUCTIONS)}, "
                             f"got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, self.reduction)


class MSELoss(Module):
    """Mean squared error of predictions against targets of the same shape: `F.mse_loss`; reduction 'mean'
    (default), 'sum' or 'none'."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"MSELoss: reduction must be one of {', '.join(F.REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
