"""How a tensor prints: PyTorch's format (torch/_tensor_str.py), so output reads as in PyTorch's tutorials.

All values of a float tensor share one format, chosen from its nonzero finite values: whole numbers as
`1.`, others with 4 decimals (`1.5000`), and scientific notation (`1.0000e-05`) when the values span more
than a factor 1000, exceed 1e8, or fall below 1e-4. Values are right-aligned to a common width, rows wrap
at 80 columns, and a tensor of more than 1000 values shows the first and last 3 along each dimension.
After the values: the device unless 'cpu', the dtype unless PyTorch's defaults (float32, int64, bool), and
`grad_fn=<...>` for a tensor made by an op that records the graph, else `requires_grad=True` if set.
"""
import math

import numpy as np

LINEWIDTH, PRECISION, THRESHOLD, EDGEITEMS = 80, 4, 1000, 3
UNNAMED_DTYPES = ("float32", "int64", "bool")


class _Formatter:
    """One format and width for every value of a tensor, chosen as PyTorch's _Formatter chooses them."""

    def __init__(self, values):
        self.is_float = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        if not self.is_float:
            self.width = max(len(str(v)) for v in values.reshape(-1).tolist())
            return
        shown = values[np.isfinite(values) & (values != 0)].astype(np.float64)
        if shown.size == 0:  # only zeros, NaN and inf: they print as `0.`, `nan`, `inf`
            return
        low, high = np.abs(shown).min(), np.abs(shown).max()
        self.int_mode = bool((shown == np.ceil(shown)).all())
        self.sci_mode = bool(high / low > 1000.0 or high > 1.0e8 or low < 1.0e-4)
        self.width = max(len(self._text(v)) for v in shown.tolist())

    def _text(self, value):
        if not self.is_float:
            return str(value)
        if self.sci_mode:
            return f"{value:.{PRECISION}e}"
        if self.int_mode:  # the '.' says "float" even when every value is whole
            return f"{value:.0f}" + ("" if math.isinf(value) or math.isnan(value) else ".")
        return f"{value:.{PRECISION}f}"

    def format(self, value):
        return self._text(value).rjust(self.width)


def _summarized(a):
    """The values a summarized print shows: the first and last EDGEITEMS along every dimension."""
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * EDGEITEMS:
        a = np.concatenate([a[:EDGEITEMS], a[-EDGEITEMS:]])
    return np.stack([_summarized(row) for row in a]) if a.ndim > 1 else a


def _body(a, fmt, indent, summarize):
    """The bracketed values of `a`; `indent` is the column of its opening bracket."""
    if a.ndim == 0:
        return fmt.format(a.item())

    def show(part):  # the values of a vector; the bracketed rows of a matrix and up
        if a.ndim == 1:
            return [fmt.format(v) for v in part.tolist()]
        return [_body(row, fmt, indent + 1, summarize) for row in part]

    if summarize and a.shape[0] > 2 * EDGEITEMS:
        items = show(a[:EDGEITEMS]) + [" ..." if a.ndim == 1 else "..."] + show(a[-EDGEITEMS:])
    else:
        items = show(a)
    if a.ndim > 1:  # rows one per line; blocks of 3-D and up separated by blank lines
        return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(items) + "]"
    per_line = max(1, (LINEWIDTH - indent) // (fmt.width + 2))
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _add_suffixes(text, suffixes, indent):
    """Append ', suffix' for each suffix, on a new line when it would pass LINEWIDTH (as PyTorch does)."""
    parts, line_length = [text], len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if line_length + len(suffix) + 2 > LINEWIDTH:
            parts.append(",\n" + " " * indent + suffix)
            line_length = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            line_length += len(suffix) + 2
    return "".join(parts) + ")"


def tensor_repr(t):
    """`repr` of Tensor `t`, e.g. "tensor([1., 2.], grad_fn=<MulBackward>)".

    `grad_fn` names the op that made `t` (`Function.name`, e.g. Mul, Conv2d) + 'Backward'. PyTorch writes
    MulBackward0 (its generated class name, numbered per overload of the op); minivgg has one backward
    per op, so no number."""
    prefix = "tensor("
    a = t.numpy()
    suffixes = [f"device='{t.device}'"] if t.device != "cpu" else []
    if a.size == 0:
        body = "[]"
        if a.ndim != 1:
            suffixes.append(f"size={a.shape}")
        if a.dtype != np.float32:  # no values to tell an empty int or bool tensor from a float one
            suffixes.append(f"dtype={a.dtype}")
    else:
        summarize = a.size > THRESHOLD
        body = _body(a, _Formatter(_summarized(a) if summarize else a), len(prefix), summarize)
        if a.dtype.name not in UNNAMED_DTYPES:
            suffixes.append(f"dtype={a.dtype}")
    if t.creator is not None:
        suffixes.append(f"grad_fn=<{t.creator.name}Backward>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _add_suffixes(prefix + body, suffixes, len(prefix))
