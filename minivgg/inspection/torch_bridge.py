"""A minivgg network as a PyTorch one, and the two compared layer by layer."""
import sys

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..nn.utils import eval_mode, leaf_modules
from .format import format_number


def _torch_layer(m, torch, dropout):
    from .. import nn

    tnn = torch.nn
    if isinstance(m, nn.Conv2d):
        layer = tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
    elif isinstance(m, nn.Linear):
        layer = tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif isinstance(m, nn.ReLU):
        return tnn.ReLU()
    elif isinstance(m, nn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    elif isinstance(m, nn.Dropout):
        return tnn.Dropout(m.p) if dropout else tnn.Identity()
    elif isinstance(m, nn.Flatten):
        return tnn.Flatten()
    elif isinstance(m, nn.LocalResponseNorm):
        return tnn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
    elif isinstance(m, nn.GlobalAvgPool2d):
        return tnn.AdaptiveAvgPool2d(1)
    elif isinstance(m, nn.AvgPool2d):
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    elif isinstance(m, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(m.output_size)
    elif isinstance(m, nn.Softmax):
        return tnn.Softmax(dim=m.dim)
    elif isinstance(m, (nn.Sigmoid, nn.Tanh, nn.Identity)):
        return getattr(tnn, type(m).__name__)()
    else:
        raise TypeError(f"to_torch: no PyTorch twin for {type(m).__name__}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(backend.to_numpy(m.weight.data)))
        if m.bias is not None:
            layer.bias.copy_(torch.from_numpy(backend.to_numpy(m.bias.data)))
    return layer


def to_torch(net, dropout=True):
    """The same network in PyTorch (torch.nn.Sequential of its leaf layers) with the weights copied.
    dropout=False puts Identity where the network has Dropout (for exact comparisons)."""
    import torch

    return torch.nn.Sequential(*[_torch_layer(m, torch, dropout) for _, m in leaf_modules(net)])


def compare_with_torch(net, images, labels, file=None):
    """Build the same network in PyTorch with copied weights, run both on (images, labels) with dropout
    disabled, back-propagate the cross-entropy, and print per layer the largest absolute difference of
    activations and of parameter gradients. Returns the rows (dicts). Needs torch installed."""
    try:
        import torch
    except ImportError:
        raise RuntimeError("compare_with_torch needs PyTorch: pip install torch==2.13.0 (CPU build)") from None
    from .. import functional as F

    images = images if isinstance(images, Tensor) else Tensor(np.asarray(images, dtype=np.float32))
    labels = labels if isinstance(labels, Tensor) else Tensor(np.asarray(labels, dtype=np.int64))
    layers = leaf_modules(net)
    twins = list(to_torch(net, dropout=False))
    with eval_mode(net):
        net.zero_grad()
        x, tx = images, torch.from_numpy(images.numpy())
        ours, theirs = [], []
        for (name, m), t in zip(layers, twins):
            x, tx = m(x), t(tx)
            x.retain_grad()
            tx.retain_grad()
            ours.append(x)
            theirs.append(tx)
        F.cross_entropy(x, labels).backward()
        torch.nn.functional.cross_entropy(tx, torch.from_numpy(labels.numpy())).backward()
    rows = []
    for (name, m), t, a, ta in zip(layers, twins, ours, theirs):
        row = {"layer": name, "type": type(m).__name__, "shape": tuple(a.shape),
               "activation": float(np.abs(a.numpy() - ta.detach().numpy()).max()),
               "grad_output": float(np.abs(a.grad.numpy() - ta.grad.numpy()).max())}
        if hasattr(m, "weight") and m.weight is not None:
            row["weight_grad"] = float(np.abs(m.weight.grad.numpy() - t.weight.grad.numpy()).max())
            if m.bias is not None:
                row["bias_grad"] = float(np.abs(m.bias.grad.numpy() - t.bias.grad.numpy()).max())
        rows.append(row)
    lines = [f"{'layer':<10} {'type':<18} {'output shape':<20} {'act diff':>10} {'dout diff':>10} "
             f"{'dW diff':>10} {'db diff':>10}"]
    for r in rows:
        lines.append(f"{r['layer']:<10} {r['type']:<18} {str(r['shape']):<20} {r['activation']:>10.2e} "
                     f"{r['grad_output']:>10.2e} {format_number(r.get('weight_grad')):>10} {format_number(r.get('bias_grad')):>10}")
    print("\n".join(lines), file=file or sys.stdout)
    return rows
