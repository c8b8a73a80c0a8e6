"""The per-layer activation and gradient table of one batch (`minivgg inspect`)."""
import sys

from ..nn.utils import leaf_modules
from .format import format_number, norm


def layer_table(net, images, labels, file=None):
    """One forward/backward pass; per leaf layer the output shape, activation mean/std, fraction of zeros
    and the gradient norm arriving at its output, plus each parameter's gradient norm."""
    from ..train import classification_loss

    layers = leaf_modules(net)
    outputs = []
    x = images
    for name, m in layers:
        x = m(x)
        x.retain_grad()
        outputs.append((name, m, x))
    loss = classification_loss(x, labels)  # cross-entropy, or binary cross-entropy for one logit
    net.zero_grad()
    loss.backward()
    lines = [f"loss {loss.item():.4f}",
             f"{'layer':<10} {'type':<12} {'output shape':<20} {'act mean':>10} {'act std':>10} {'zeros':>6} "
             f"{'|grad out|':>11} {'|grad W|':>10}"]
    for name, m, out in outputs:
        a = out.numpy()
        w = getattr(m, "weight", None)
        gw = format_number(norm(w.grad.data)) if w is not None and w.grad is not None else "-"
        lines.append(f"{name:<10} {type(m).__name__:<12} {str(tuple(out.shape)):<20} {a.mean():>10.3e} "
                     f"{a.std():>10.3e} {(a == 0).mean():>6.3f} {format_number(norm(out.grad.data)):>11} {gw:>10}")
    print("\n".join(lines), file=file or sys.stdout)
    return loss
