"""Seeing gradients: step-by-step backward tables, graph drawings, a gradient monitor, a per-layer activation
and gradient table, and a layer-by-layer comparison with PyTorch. (Step-through backward itself is
`Tensor.backward_steps()`; anomaly detection is `minivgg.detect_anomaly()`.)"""
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from . import backend
from .autograd import Tensor, graph_functions
from .nn.utils import eval_mode, leaf_modules


def _norm(array):
    if array is None:
        return None
    return float(backend.get_array_module(array).sqrt((array.astype(np.float64) ** 2).sum()))


def _fmt(value):
    return "-" if value is None else f"{value:.3e}"


def trace(loss, file=None, retain_graph=False):
    """Run backward on `loss` node by node and print a table: step, op, output shape, norm of the incoming
    gradient, norms of the outgoing gradients, time spent. Returns the rows (dicts). Leaves the same
    `.grad` values as `loss.backward()`."""
    rows = []
    walk = loss.backward_steps(retain_graph=retain_graph)
    while True:
        start = time.perf_counter()
        try:
            step = next(walk)
        except StopIteration:
            break
        rows.append({"step": step.index, "op": step.op, "output_shape": tuple(step.output_shape),
                     "grad_out_norm": _norm(step.grad_output),
                     "grad_in_norms": [_norm(g) for g in step.grad_inputs],
                     "ms": (time.perf_counter() - start) * 1e3})
    lines = [f"{'step':>4}  {'op':<16} {'output shape':<20} {'|grad out|':>10}  {'|grad in| per input':<34} {'ms':>7}"]
    for r in rows:
        grads = ", ".join(_fmt(g) for g in r["grad_in_norms"])
        lines.append(f"{r['step']:>4}  {r['op']:<16} {str(r['output_shape']):<20} {_fmt(r['grad_out_norm']):>10}  "
                     f"{grads:<34} {r['ms']:>7.2f}")
    print("\n".join(lines), file=file or sys.stdout)
    return rows


# ---------------------------------------------------------------------------------------------------
# The graph as text and as Graphviz DOT
# ---------------------------------------------------------------------------------------------------
def _parameter_names(params):
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    return {id(p): name for name, p in params.items()}


def _summary(array):
    a = backend.to_numpy(array).astype(np.float64)
    if a.size == 0:
        return "empty"
    return f"mean {a.mean():.3g} std {a.std():.3g} min {a.min():.3g} max {a.max():.3g}"


def _tensor_label(t, names, show_data, show_grad):
    name = names.get(id(t)) or t.name or ("output" if t.creator is not None else "input")
    parts = [name, f"{tuple(t.shape)} {t.dtype}"]
    if show_data:
        parts.append("data: " + _summary(t.data))
    if show_grad and t.grad is not None:
        parts.append("grad: " + _summary(t.grad.data))
    return "\\n".join(parts)


def to_dot(tensor, show_data=False, show_grad=True, params=None):
    """Graphviz DOT text of the graph that made `tensor`: one box per tensor (parameter name if `params`,
    a Module or a dict of name->Parameter, names it; shape, dtype, optional data/grad summaries) and one
    ellipse per op, edges in the direction of the forward pass."""
    names = _parameter_names(params)
    functions = graph_functions(tensor, "to_dot()")
    lines = ["digraph minivgg {", '  rankdir=TB;', '  node [fontname="Helvetica", fontsize=10];']
    tensor_ids = {}

    def tensor_node(t):
        if id(t) not in tensor_ids:
            tensor_ids[id(t)] = f"t{len(tensor_ids)}"
            color = "lightblue" if t.is_leaf and t.requires_grad else "white"
            label = _tensor_label(t, names, show_data, show_grad)
            lines.append(f'  {tensor_ids[id(t)]} [shape=box, style=filled, fillcolor={color}, label="{label}"];')
        return tensor_ids[id(t)]

    outputs = {}
    for i, fn in enumerate(functions):
        out = fn.output()
        fid = f"f{i}"
        lines.append(f'  {fid} [shape=ellipse, style=filled, fillcolor=lightyellow, label="{fn.name}"];')
        for t in fn.inputs:
            src = outputs.get(t.creator) if t.creator is not None else None
            lines.append(f"  {src or tensor_node(t.tensor())} -> {fid};")
        if out is not None:
            outputs[fn] = tensor_node(out)
        else:  # the graph holds only an Edge to this output, whose tensor is gone: drawn from what the op recorded
            outputs[fn] = f"t{len(tensor_ids)}"
            tensor_ids[("freed", fid)] = outputs[fn]
            label = f"output\\n{tuple(fn.output_shape)} {fn.output_dtype}"
            label += "\\ntensor released after forward" * show_data
            lines.append(f'  {outputs[fn]} [shape=box, style="filled,dashed", fillcolor=white, label="{label}"];')
        lines.append(f"  {fid} -> {outputs[fn]};")
    if not functions:
        tensor_node(tensor)
    lines.append("}")
    return "\n".join(lines)


def draw_graph(tensor, path, show_data=False, show_grad=True, params=None):
    """Render the graph to `path` (.svg or .png) with Graphviz's `dot`; without `dot`, write the .dot text
    next to it and say how to render it. Returns the path written."""
    dot_text = to_dot(tensor, show_data, show_grad, params)
    base, ext = os.path.splitext(path)
    fmt = ext.lstrip(".").lower() or "svg"
    dot_path = base + ".dot"
    with open(dot_path, "w") as f:
        f.write(dot_text)
    exe = shutil.which("dot")
    if exe and fmt in ("svg", "png", "pdf"):
        subprocess.run([exe, f"-T{fmt}", dot_path, "-o", path], check=True)
        return path
    print(f"Graphviz 'dot' is not installed: wrote {dot_path}. Render it with `dot -T{fmt} {dot_path} -o {path}` "
          "(apt-get install graphviz), or paste it into an online Graphviz viewer.")
    return dot_path


def print_graph(tensor, params=None, file=None):
    """Print the graph as an indented tree, from `tensor` back to the leaves (shared nodes once)."""
    names = _parameter_names(params)
    lines, seen = [], set()
    stack = [(tensor, 0)]
    while stack:
        t, depth = stack.pop()
        label = names.get(id(t)) or t.name or ("leaf" if t.is_leaf else "")
        op = f"{t.creator.name} -> " if t.creator is not None else ""
        lines.append(f"{'  ' * depth}{op}{label} {tuple(t.shape)} {t.dtype}".rstrip())
        if t.creator is not None:
            if t.creator in seen:
                lines[-1] += "  (shown above)"
                continue
            seen.add(t.creator)
            # An input is an Edge: its leaf tensor itself (so a parameter is named), else the Edge's record.
            edges = reversed(getattr(t.creator, "inputs", ()))
            stack.extend((e.tensor() if e.is_leaf else e, depth + 1) for e in edges)
    print("\n".join(lines), file=file or sys.stdout)


# ---------------------------------------------------------------------------------------------------
# Gradient monitor
# ---------------------------------------------------------------------------------------------------
class GradientMonitor:
    """Record, per parameter and per step, the gradient's norm, mean, std, max |g|, fraction of exact zeros
    and the update-to-weight ratio |dW|/|W|; per ReLU the fraction of dead units (outputs that are zero
    for every example of the batch).

    Call `before_step()` after backward and `after_step()` after `optimizer.step()` (`fit` does both);
    `every=k` records one step in k (the update ratio copies the weights).
    """

    def __init__(self, net, every=1):
        from . import nn

        self.names = [name for name, _ in net.named_parameters()]
        self.params = [p for _, p in net.named_parameters()]
        self.every, self.step = every, 0
        self.history = []  # one dict per recorded step: {"step", "params": {name: stats}, "relu": {name: frac}}
        self._relu_dead = {}
        self._before = None
        self._handles = [m.register_forward_hook(self._relu_hook(name))
                         for name, m in net.named_modules() if isinstance(m, nn.ReLU)]

    def _relu_hook(self, name):
        def hook(module, inputs, output):
            if module.training and self._recording():
                alive = (output.data > 0).any(axis=0)
                self._relu_dead[name] = 1.0 - float(alive.mean())
        return hook

    def _recording(self):
        return self.step % self.every == 0

    def before_step(self):
        if self._recording():
            self._before = [p.data.copy() for p in self.params]

    def after_step(self):
        if self._recording() and self._before is not None:
            record = {"step": self.step, "params": {}, "relu": dict(self._relu_dead)}
            for name, p, old in zip(self.names, self.params, self._before):
                record["params"][name] = self.statistics(p.grad.data if p.grad is not None else None, old, p.data)
            self.history.append(record)
            self._before = None
        self.step += 1

    @staticmethod
    def statistics(grad, weight_before, weight_after):
        """The monitor's numbers for one parameter: a dict of floats (NaN where there is no gradient)."""
        if grad is None:
            return {k: math.nan for k in ("norm", "mean", "std", "max_abs", "zero_frac", "update_ratio")}
        g = grad.astype(np.float64)
        w_norm = float(np.sqrt((weight_before.astype(np.float64) ** 2).sum()))
        update = float(np.sqrt(((weight_after.astype(np.float64) - weight_before) ** 2).sum()))
        return {"norm": float(np.sqrt((g ** 2).sum())), "mean": float(g.mean()), "std": float(g.std()),
                "max_abs": float(abs(g).max()), "zero_frac": float((g == 0).mean()),
                "update_ratio": update / w_norm if w_norm else math.nan}

    def remove(self):
        for h in self._handles:
            h.remove()

    def table(self, file=None):
        """Print the latest recorded values, one row per parameter, then the ReLUs' dead fractions."""
        if not self.history:
            print("GradientMonitor: nothing recorded yet", file=file or sys.stdout)
            return
        last = self.history[-1]
        lines = [f"step {last['step']}",
                 f"{'parameter':<22} {'norm':>10} {'mean':>10} {'std':>10} {'max|g|':>10} {'zeros':>6} {'|dW|/|W|':>9}"]
        for name, s in last["params"].items():
            lines.append(f"{name:<22} {s['norm']:>10.3e} {s['mean']:>10.2e} {s['std']:>10.3e} {s['max_abs']:>10.3e} "
                         f"{s['zero_frac']:>6.3f} {s['update_ratio']:>9.2e}")
        for name, frac in last["relu"].items():
            lines.append(f"ReLU {name:<17} dead units {frac:.3f}")
        print("\n".join(lines), file=file or sys.stdout)

    def plot(self, path):
        """Gradient flow: left, the latest gradient norm per weight across the layers (input to output);
        right, each weight's gradient norm over the recorded steps. PNG via matplotlib."""
        if not self.history:
            return None
        from .plotting import pyplot

        plt = pyplot()
        weights = [n for n in self.names if n.endswith("weight")]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        last = self.history[-1]["params"]
        left.bar(range(len(weights)), [last[n]["norm"] for n in weights], color="tab:blue")
        left.set_xticks(range(len(weights)), weights, rotation=70, fontsize=7)
        left.set_yscale("log")
        left.set_title("gradient norm per layer (latest step)")
        steps = [r["step"] for r in self.history]
        for n in weights:  # markers: a history of one step is a column of points, not an empty panel
            right.plot(steps, [r["params"][n]["norm"] for r in self.history], marker="o", markersize=3, label=n)
        left.set_ylabel("|grad|")
        right.set_yscale("log")
        right.set_xlabel("step")
        right.set_ylabel("|grad|")
        right.set_title("gradient norm over training")
        right.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


# ---------------------------------------------------------------------------------------------------
# Compare with PyTorch
# ---------------------------------------------------------------------------------------------------
def _torch_layer(m, torch, dropout):
    from . import nn

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
    from . import functional as F

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
                     f"{r['grad_output']:>10.2e} {_fmt(r.get('weight_grad')):>10} {_fmt(r.get('bias_grad')):>10}")
    print("\n".join(lines), file=file or sys.stdout)
    return rows


# ---------------------------------------------------------------------------------------------------
# Per-layer table (`minivgg inspect`)
# ---------------------------------------------------------------------------------------------------
def layer_table(net, images, labels, file=None):
    """One forward/backward pass; per leaf layer the output shape, activation mean/std, fraction of zeros
    and the gradient norm arriving at its output, plus each parameter's gradient norm."""
    from .train import classification_loss

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
        gw = _fmt(_norm(w.grad.data)) if w is not None and w.grad is not None else "-"
        lines.append(f"{name:<10} {type(m).__name__:<12} {str(tuple(out.shape)):<20} {a.mean():>10.3e} "
                     f"{a.std():>10.3e} {(a == 0).mean():>6.3f} {_fmt(_norm(out.grad.data)):>11} {gw:>10}")
    print("\n".join(lines), file=file or sys.stdout)
    return loss

