"""The graph of a computation as text and as Graphviz DOT, and backward step by step as a table."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from .. import backend
from ..autograd import graph_functions
from ..files import replacing, write_text
from .format import format_number, norm


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
                     "grad_out_norm": norm(step.grad_output),
                     "grad_in_norms": [norm(g) for g in step.grad_inputs],
                     "ms": (time.perf_counter() - start) * 1e3})
    lines = [f"{'step':>4}  {'op':<16} {'output shape':<20} {'|grad out|':>10}  {'|grad in| per input':<34} {'ms':>7}"]
    for r in rows:
        grads = ", ".join(format_number(g) for g in r["grad_in_norms"])
        lines.append(f"{r['step']:>4}  {r['op']:<16} {str(r['output_shape']):<20} {format_number(r['grad_out_norm']):>10}  "
                     f"{grads:<34} {r['ms']:>7.2f}")
    print("\n".join(lines), file=file or sys.stdout)
    return rows


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
    write_text(dot_path, dot_text)
    exe = shutil.which("dot")
    if exe and fmt in ("svg", "png", "pdf"):
        with replacing(path) as tmp:
            subprocess.run([exe, f"-T{fmt}", dot_path, "-o", tmp], check=True)
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
