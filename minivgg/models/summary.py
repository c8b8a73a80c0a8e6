"""Looking at a network: `summary` (per block, or Keras's per-layer table) and `count_flops`."""
from .. import nn
from ..nn.utils import leaf_modules
from .initialization import dry_run


def summary(net, input_shape, file=None, device="cpu", per_layer=False):
    """Print, per top-level block, its name, output shape and parameter count, then the total.

    Runs one forward pass on zeros (which also materializes lazy layers).
    Returns the rows as a list of (name, output shape, parameters).

    per_layer=True prints Keras's table instead: every leaf layer (its dotted name and type, output shape,
    parameters), then the total, trainable and non-trainable (frozen) parameter counts; it returns
    rows of (name, type, output shape, parameters).
    """
    if per_layer:
        return _layer_summary(net, input_shape, file, device)
    outputs = dry_run(net, input_shape, device)
    rows = [(type(block).__name__, tuple(shape), sum(p.numel() for p in block.parameters()))
            for _, block, shape in outputs]
    total = sum(r[2] for r in rows)
    lines = [f"{'layer':<20} {'output shape':<22} {'parameters':>12}"]
    lines += [f"{name + ' ' + str(i):<20} {str(shape):<22} {count:>12,}" for i, (name, shape, count) in enumerate(rows)]
    lines.append(f"{'total':<20} {'':<22} {total:>12,}")
    print("\n".join(lines), file=file)
    return rows


def _layer_summary(net, input_shape, file, device):
    leaves = leaf_modules(net)
    shapes = {}

    def recorder(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)
        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in leaves]
    try:
        dry_run(net, input_shape, device)
    finally:
        for h in handles:
            h.remove()
    rows = [(name, type(m).__name__, shapes.get(name), sum(p.numel() for p in m.parameters())) for name, m in leaves]
    params = list(net.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    rule = "=" * 72
    lines = [f"{'Layer (type)':<32} {'Output Shape':<24} {'Param #':>14}", rule]
    lines += [f"{f'{name} ({kind})':<32} {str(shape) if shape else '-':<24} {count:>14,}"
              for name, kind, shape, count in rows]
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}"]
    print("\n".join(lines), file=file)
    return rows


def count_flops(net, input_shape):
    """Floating-point operations of one forward pass for one input of `input_shape`, split into
    {"conv": ..., "dense": ...}: 2 per multiply-add, counted from each layer's weight and output size."""
    counts = {"conv": 0, "dense": 0}

    def conv_hook(module, inputs, output):
        positions = output.shape[2] * output.shape[3] * output.shape[0] // input_shape[0]
        counts["conv"] += 2 * module.weight.numel() * positions

    def dense_hook(module, inputs, output):
        counts["dense"] += 2 * module.weight.numel() * output.shape[0] // input_shape[0]

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else dense_hook)
               for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        dry_run(net, input_shape, "cpu")
    finally:
        for h in handles:
            h.remove()
    return counts
