"""The CNN kernels, forward and backward side by side: im2col convolution, max- and average pooling
(adaptive too), ReLU, dropout, linear, cross-entropy, MSE and local response normalization. Imported as `F`.
Softmax, log-softmax, sigmoid and tanh are here as well, written in ops.py (see the import below).

These are the reference kernels: textbook NCHW layouts, no threads, no memory-order tricks. Each takes
`xp = get_array_module(x)` and uses only functions NumPy and CuPy both have, so the same lines run on the
CPU and the GPU. On the CPU, `minivgg.set_kernels("fast")` (the default) swaps in the tuned variants of
`minivgg.fast_cpu`, which compute the same numbers; `minivgg.kernels("reference")` shows these.
"""
import numpy as np

from . import backend, tiers
from .autograd import Function, Tensor, _as_tensor
from .ops import flatten as _flatten
# Elementwise and along-an-axis kernels, written (forward and backward side by side) with the other
# elementwise ops in ops.py, where Tensor's methods reach them too.
from .ops import (  # noqa: F401  (re-exported)
    LogSoftmaxFunction, SoftmaxFunction, log_softmax, log_softmax_array, sigmoid, softmax, tanh)


def _pair(value, name="kernel_size"):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def output_size(op, in_shape, kernel, stride, padding):
    """(OH, OW) of a sliding window; raises a readable error when the window does not fit. Part of the
    tier contract: the wrappers check the geometry with it before any op runs, and every variant, reference
    or fast, computes its output shape with it."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = in_shape[-2:], kernel, stride, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(
            f"{op}: the kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{w + 2 * pw} "
            f"(input shape {tuple(in_shape)}, padding {ph},{pw}). Use a larger input (e.g. resize), more "
            "padding or fewer pooling layers."
        )
    if sh < 1 or sw < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {sh},{sw}")
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _check_rank(op, x, rank=4, layout="(N, C, H, W)"):
    if x.ndim != rank:
        raise ValueError(f"{op}: expected a {rank}-D input {layout}, got shape {tuple(x.shape)}")


def check_conv_inputs(x, weight):
    """conv2d's input checks, made by the wrapper before any variant runs (the tier contract)."""
    _check_rank("conv2d", x)
    _check_rank("conv2d", weight, layout="weight (K, C, KH, KW)")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv2d: input has {x.shape[1]} channels (shape {tuple(x.shape)}) but the weight expects "
            f"{weight.shape[1]} (weight shape {tuple(weight.shape)}). Check in_channels of the layer."
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"conv2d: input dtype {x.dtype} differs from weight dtype {weight.dtype}; "
                        "convert the input with .float() (float32)")


def wants_grad(fn, i):
    """True when input i of `fn` was given and needs a gradient (bias is optional). Part of the tier
    contract: every variant's backward asks it."""
    return len(fn.needs_input_grad) > i and fn.needs_input_grad[i]


def _choose(reference, x):
    """The op class to run on array x: the fast variant of `reference` for x's array module when the fast
    tier is on and one is registered (see tiers.variant), else `reference` itself."""
    return tiers.variant(reference, backend.get_array_module(x))


def _data(x):
    return x.data if isinstance(x, Tensor) else x


# ---------------------------------------------------------------------------------------------------
# im2col / col2im on raw arrays
# ---------------------------------------------------------------------------------------------------
def im2col_array(x, kernel, stride, padding):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW): column (n*OH + oh)*OW + ow is one receptive field.

    Rows are ordered (c, i, j) like a flattened weight (K, C, KH, KW), so a convolution is `W2d @ col`.
    One strided copy per kernel offset (i, j) fills row block (:, i, j) for every image and window.
    """
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size("im2col", x.shape, kernel, stride, padding)
    padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))           # (N, C, H+2P, W+2P), zeros around
    col = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]  # (N, C, OH, OW): offset (i, j)
            col[:, i, j] = window.transpose(1, 0, 2, 3)                # (C, N, OH, OW)
    return col.reshape(c * kh * kw, n * oh * ow)


def col2im_array(col, input_shape, kernel, stride, padding):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W), adding up every copy of a pixel: im2col's adjoint."""
    xp = backend.get_array_module(col)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = output_size("col2im", input_shape, kernel, stride, padding)
    if col.shape != (c * kh * kw, n * oh * ow):
        raise ValueError(
            f"col2im: col has shape {tuple(col.shape)}, but input_shape {tuple(input_shape)} with kernel "
            f"{kh}x{kw} needs ({c * kh * kw}, {n * oh * ow})"
        )
    col = col.reshape(c, kh, kw, n, oh, ow)
    padded = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += col[:, i, j].transpose(1, 0, 2, 3)
    return padded[:, :, ph:ph + h, pw:pw + w]                          # drop the padding


class Im2colFunction(Function):
    """x (N, C, H, W) -> (C*KH*KW, N*OH*OW). Backward: col2im of the gradient."""

    def __init__(self, kernel, stride, padding):
        self.geometry = (kernel, stride, padding)

    def forward(self, x):
        _check_rank("im2col", x)
        self.in_shape = x.shape
        return im2col_array(x, *self.geometry)

    def backward(self, gy):
        return col2im_array(gy, self.in_shape, *self.geometry)


class Col2imFunction(Function):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W). Backward: im2col of the gradient."""

    def __init__(self, input_shape, kernel, stride, padding):
        self.input_shape = tuple(input_shape)
        self.geometry = (kernel, stride, padding)

    def forward(self, col):
        return col2im_array(col, self.input_shape, *self.geometry)

    def backward(self, gy):
        return im2col_array(gy, *self.geometry)


def im2col(x, kernel_size, stride=1, padding=0):
    """Unroll every kernel-sized window of x (N, C, H, W) into a column: -> (C*KH*KW, N*OH*OW).

    Row (c*KH + i)*KW + j, column (n*OH + oh)*OW + ow holds x[n, c, oh*S + i - P, ow*S + j - P].
    Works on a raw array (returns an array) and on a Tensor (returns a Tensor with gradients).
    """
    geometry = (_pair(kernel_size), _pair(stride, "stride"), _pair(padding, "padding"))
    if isinstance(x, Tensor):
        return Im2colFunction(*geometry)(x)
    _check_rank("im2col", x)
    return im2col_array(x, *geometry)


def col2im(col, input_shape, kernel_size, stride=1, padding=0):
    """Fold columns (C*KH*KW, N*OH*OW) back into an image of `input_shape`, summing overlaps.

    The adjoint of im2col: <im2col(x), c> == <x, col2im(c)>. Arrays in, array out; Tensor in, Tensor out.
    """
    geometry = (_pair(kernel_size), _pair(stride, "stride"), _pair(padding, "padding"))
    if isinstance(col, Tensor):
        return Col2imFunction(input_shape, *geometry)(col)
    return col2im_array(col, tuple(input_shape), *geometry)


# ---------------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------------
class Conv2dFunction(Function):
    """x (N, C, H, W), weight (K, C, KH, KW), bias (K,) -> y (N, K, OH, OW).

    Forward: col = im2col(x) (C*KH*KW, N*OH*OW); y = weight (K, C*KH*KW) @ col, one matrix product.
    Backward: dW = dy @ col^T, dx = col2im(W^T @ dy), db = dy summed over N, OH, OW.
    Keeps col only if the weight needs a gradient and W only if x needs one (not for the image batch).
    """
    # The unrolling and folding it uses, as class attributes so that a variant can swap in its own.
    im2col = staticmethod(im2col_array)
    col2im = staticmethod(col2im_array)

    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def forward(self, x, weight, bias=None):
        xp = backend.get_array_module(x)
        n, k = x.shape[0], weight.shape[0]
        self.kernel = weight.shape[2:]
        oh, ow = output_size("conv2d", x.shape, self.kernel, self.stride, self.padding)
        col = self.im2col(x, self.kernel, self.stride, self.padding)       # (C*KH*KW, N*OH*OW)
        y = weight.reshape(k, -1) @ col                                    # (K, N*OH*OW)
        y = xp.ascontiguousarray(y.reshape(k, n, oh, ow).transpose(1, 0, 2, 3))  # (N, K, OH, OW)
        if bias is not None:
            y += bias.reshape(1, k, 1, 1)
        self.col = col if self.needs_input_grad[1] else None
        self.save_for_backward(weight if self.needs_input_grad[0] else None)
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        k = gy.shape[1]
        g = gy.transpose(1, 0, 2, 3).reshape(k, -1)                        # (K, N*OH*OW)
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            weight, = self.saved_tensors
            gcol = weight.reshape(k, -1).T @ g                             # (C*KH*KW, N*OH*OW)
            gx = self.col2im(gcol, self.x_shape, self.kernel, self.stride, self.padding)
        if self.needs_input_grad[1]:
            gw = (g @ self.col.T).reshape(k, -1, *self.kernel)            # (K, C, KH, KW)
        if wants_grad(self, 2):
            gb = gy.sum(axis=(0, 2, 3))                                    # (K,)
        return gx, gw, gb


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) with weight (K, C, KH, KW)."""
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    check_conv_inputs(_data(x), _data(weight))
    output_size("conv2d", _data(x).shape, _data(weight).shape[2:], stride, padding)
    fn = _choose(Conv2dFunction, _data(x))(stride, padding)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


# ---------------------------------------------------------------------------------------------------
# Max-pooling
# ---------------------------------------------------------------------------------------------------
def check_pool(x, kernel, padding):
    """max_pool2d's input checks, made by the wrapper before any variant runs (the tier contract)."""
    _check_rank("max_pool2d", x)
    (kh, kw), (ph, pw) = kernel, padding
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"max_pool2d: padding {ph},{pw} must be at most half the kernel {kh}x{kw}")


class MaxPool2dFunction(Function):
    """x (N, C, H, W) -> y (N, C, OH, OW), OH = floor((H + 2P - K) / S) + 1 (PyTorch's floor mode).

    Forward lays the KH*KW values of every window side by side, (N, C, KH*KW, OH, OW), and takes their
    max and argmax (the first maximum wins a tie). Padding is -inf, so it never wins.
    Backward sends each output's gradient to exactly that one input position, so ties never double it.
    """

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        xp = backend.get_array_module(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = output_size("max_pool2d", x.shape, self.kernel, self.stride, self.padding)
        padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-xp.inf)
        windows = xp.empty(x.shape[:2] + (kh * kw, oh, ow), dtype=x.dtype)  # (N, C, KH*KW, OH, OW)
        for i in range(kh):
            for j in range(kw):
                windows[:, :, i * kw + j] = padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
        self.argmax = windows.argmax(axis=2)                               # (N, C, OH, OW)
        self.x_shape = x.shape
        return windows.max(axis=2)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = self.x_shape
        oh, ow = gy.shape[2:]
        gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=gy.dtype)
        for i in range(kh):
            for j in range(kw):                                            # windows may overlap: add
                gx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += gy * (self.argmax == i * kw + j)
        return gx[:, :, ph:ph + h, pw:pw + w]


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each KxK window; stride defaults to the kernel size (PyTorch's rule)."""
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    check_pool(_data(x), kernel, padding)
    output_size("max_pool2d", _data(x).shape, kernel, stride, padding)
    return _choose(MaxPool2dFunction, _data(x))(kernel, stride, padding)(x)


# ---------------------------------------------------------------------------------------------------
# Average pooling (LeNet's subsampling; NiN's global pooling)
# ---------------------------------------------------------------------------------------------------
class AvgPool2dFunction(Function):
    """x (N, C, H, W) -> y (N, C, OH, OW): the mean of each KHxKW window, OH as for max-pooling.

    The padding is zeros and counts in the mean (PyTorch's count_include_pad=True): every window divides
    by KH*KW. Backward hands each output's gradient, divided by KH*KW, to every input of its window.
    """

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        _check_rank("avg_pool2d", x)
        xp = backend.get_array_module(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oh, ow = output_size("avg_pool2d", x.shape, self.kernel, self.stride, self.padding)
        padded = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        total = xp.zeros(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):                                            # offset (i, j) of every window
                total += padded[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
        self.x_shape = x.shape
        return total / x.dtype.type(kh * kw)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = self.x_shape
        oh, ow = gy.shape[2:]
        share = gy / gy.dtype.type(kh * kw)                                # each input's part of the mean
        gx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=gy.dtype)
        for i in range(kh):
            for j in range(kw):                                            # windows may overlap: add
                gx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share
        return gx[:, :, ph:ph + h, pw:pw + w]


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each KxK window; stride defaults to the kernel size and zero padding counts in the mean
    (PyTorch's defaults)."""
    kernel = _pair(kernel_size)
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"avg_pool2d: padding {padding} must be at most half the kernel {kernel}")
    return AvgPool2dFunction(kernel, stride, padding)(x)


def adaptive_bins(size, out):
    """The `out` windows [start, end) that adaptive pooling averages along an axis of `size`: window i is
    floor(i * size / out) .. ceil((i + 1) * size / out), PyTorch's rule (they overlap when out does not
    divide size)."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


class AdaptiveAvgPool2dFunction(Function):
    """x (N, C, H, W) -> y (N, C, OH, OW) for any H, W: output (i, j) is the mean of the window of rows
    adaptive_bins(H, OH)[i] and columns adaptive_bins(W, OW)[j]. OH = OW = 1 is global average pooling.
    Backward spreads each output's gradient evenly over its window."""

    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        _check_rank("adaptive_avg_pool2d", x)
        xp = backend.get_array_module(x)
        h, w = x.shape[2:]
        oh, ow = (h if o is None else o for o, h in zip(self.output_size, (h, w)))
        self.rows, self.cols, self.x_shape = adaptive_bins(h, oh), adaptive_bins(w, ow), x.shape
        y = xp.empty(x.shape[:2] + (oh, ow), dtype=x.dtype)
        for i, (r0, r1) in enumerate(self.rows):
            for j, (c0, c1) in enumerate(self.cols):
                y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
        return y

    def backward(self, gy):
        gx = backend.get_array_module(gy).zeros(self.x_shape, dtype=gy.dtype)
        for i, (r0, r1) in enumerate(self.rows):
            for j, (c0, c1) in enumerate(self.cols):
                area = gy.dtype.type((r1 - r0) * (c1 - c0))
                gx[:, :, r0:r1, c0:c1] += (gy[:, :, i, j] / area)[:, :, None, None]
        return gx


def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size (OH, OW) whatever the input's (an int means OH = OW; None in
    the pair keeps that input size), as torch.nn.functional.adaptive_avg_pool2d."""
    size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(size) != 2 or not all(s is None or (isinstance(s, (int, np.integer)) and s >= 1) for s in size):
        raise ValueError(f"adaptive_avg_pool2d: output_size must be a positive int or a pair of them (or None), "
                         f"got {output_size!r}")
    return AdaptiveAvgPool2dFunction(size)(x)


# ---------------------------------------------------------------------------------------------------
# ReLU and dropout
# ---------------------------------------------------------------------------------------------------
class ReLUFunction(Function):
    """max(x, 0), any shape. Keeps the output: its positive entries are where the gradient passes."""

    def forward(self, x):
        y = backend.get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        return gy * (y > 0)


def relu(x):
    return _choose(ReLUFunction, _data(x))()(x)


class DropoutFunction(Function):
    """Inverted dropout, any shape: y = x * keep / (1 - p), keep ~ Bernoulli(1 - p) drawn as
    `uniform >= p` from the device's seeded generator. Keeps the boolean mask for backward."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        rng = backend.get_generator(backend.device_of(x))
        self.keep = rng.random(x.shape, dtype=np.float32) >= np.float32(self.p)
        self.scale = x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.keep * self.scale

    def backward(self, gy):
        return gy * self.keep * self.scale


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p during training and scale the rest by 1/(1-p); identity
    in evaluation (training=False) and for p=0; all zeros for p=1."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    if p == 1.0:
        return x * 0.0
    return _choose(DropoutFunction, _data(x))(float(p))(x)


# ---------------------------------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------------------------------
def _check_linear_inputs(x, weight):
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {tuple(x.shape)} does not fit weight of shape {tuple(weight.shape)} "
            f"(expected input (N, {weight.shape[1] if weight.ndim == 2 else '?'})). Flatten the input first "
            "or fix in_features."
        )


class LinearFunction(Function):
    """x (N, in), weight (out, in), bias (out,) -> y (N, out) = x @ weight^T + bias."""

    def forward(self, x, weight, bias=None):
        _check_linear_inputs(x, weight)
        self.save_for_backward(x if self.needs_input_grad[1] else None, weight if self.needs_input_grad[0] else None)
        y = x @ weight.T                                                   # (N, out)
        return y if bias is None else y + bias

    def backward(self, gy):                                                # gy (N, out)
        x, weight = self.saved_tensors
        gx = gy @ weight if self.needs_input_grad[0] else None             # (N, in)
        gw = gy.T @ x if self.needs_input_grad[1] else None                # (out, in)
        gb = gy.sum(axis=0) if wants_grad(self, 2) else None                   # (out,)
        return gx, gw, gb


def linear(x, weight, bias=None):
    """y = x @ weight^T + bias, with weight (out_features, in_features) as in PyTorch."""
    fn = _choose(LinearFunction, _data(x))()
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def flatten(x, start_dim=1, end_dim=-1):
    """(N, C, H, W) -> (N, C*H*W): merges the axes start_dim..end_dim (like nn.Flatten)."""
    return _flatten(x, start_dim, end_dim)


# ---------------------------------------------------------------------------------------------------
# Softmax and cross-entropy
# ---------------------------------------------------------------------------------------------------
class CrossEntropyFunction(Function):
    """logits (N, C), labels (N,) integers in [0, C) -> mean over the batch of -log softmax[label].

    Backward: (softmax - one_hot(labels)) / N, in the logits' dtype (float32 stays float32).
    """

    def forward(self, logits, labels):
        xp = backend.get_array_module(logits)
        n = logits.shape[0]
        logp = log_softmax_array(logits, axis=1)                          # (N, C)
        self.logp = logp
        self.save_for_backward(labels)
        picked = logp[xp.arange(n), labels]                                # (N,)
        return -(picked.sum() / logits.dtype.type(n))

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n = self.logp.shape[0]
        g = xp.exp(self.logp)                                              # softmax (N, C)
        labels, = self.saved_tensors
        g[xp.arange(n), labels] -= 1
        g *= gy / g.dtype.type(n)
        return g, None


def cross_entropy(logits, labels):
    """Mean cross-entropy of logits (N, C) against integer class labels (N,)."""
    logits = _as_tensor(logits)
    labels = labels if isinstance(labels, Tensor) else Tensor(backend.get_array_module(logits.data).asarray(labels))
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers (class indices), got dtype {labels.dtype} "
                        f"of shape {labels.shape}; convert with .astype('int64')")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: labels of shape {labels.shape} do not match logits {logits.shape}: "
                         f"expected ({logits.shape[0]},)")
    # On a GPU this check would wait for the device at every step (and CuPy wraps an out-of-range index
    # around instead of failing): train_epoch checks the labels there when it reads the loss anyway.
    if labels.device == "cpu" and labels.numel():
        check_label_range(int(labels.data.min()), int(labels.data.max()), logits.shape[1], f"logits {logits.shape}")
    return CrossEntropyFunction()(logits, labels)


def check_label_range(low, high, classes, where):
    """ValueError unless the smallest class label `low` and the largest `high` lie in [0, classes); `where`
    says where they were found."""
    if low < 0 or high >= classes:
        label = low if low < 0 else high
        raise ValueError(f"cross_entropy: label {label} is out of range for {classes} classes ({where})")


REDUCTIONS = ("mean", "sum", "none")


class BinaryCrossEntropyWithLogitsFunction(Function):
    """logits x (any shape), targets y (x's shape, probabilities in [0, 1]) -> the loss of each entry,
    -y log sigmoid(x) - (1 - y) log(1 - sigmoid(x)), reduced by `reduction`: 'mean' and 'sum' give a scalar,
    'none' x's shape.

    Written as max(x, 0) - x y + log(1 + exp(-|x|)), the same value: no exponent is ever positive, so a
    logit of 1e4 gives a finite loss instead of exp overflowing to inf.
    Backward: d/dx = sigmoid(x) - y, d/dy = -x, times the incoming gradient (divided by x.size for 'mean').
    """

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, x, y):
        xp = backend.get_array_module(x)
        self.save_for_backward(x, y)
        loss = xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))   # x's shape
        if self.reduction == "none":
            return loss
        total = loss.sum()
        return total / x.dtype.type(x.size) if self.reduction == "mean" else total

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        x, y = self.saved_tensors
        if self.reduction == "mean":
            gy = gy / x.dtype.type(x.size)
        e = xp.exp(-xp.abs(x))                                             # in (0, 1]: never overflows
        sigmoid = xp.where(x >= 0, 1, e) / (1 + e)                         # x's shape
        gx = (sigmoid - y) * gy if self.needs_input_grad[0] else None
        gt = -x * gy if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """Binary cross-entropy of raw scores `logits` (any shape) against `targets` of the same shape
    (probabilities, usually 0. or 1.), as torch.nn.functional.binary_cross_entropy_with_logits:
    reduction 'mean' (default), 'sum' or 'none'. Integer or boolean targets are taken as floats."""
    logits = _as_tensor(logits)
    xp = backend.get_array_module(logits.data)
    if reduction not in REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {', '.join(REDUCTIONS)}, "
                         f"got {reduction!r}")
    if logits.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy_with_logits: logits must be floats, got dtype {logits.dtype}")
    if not isinstance(targets, Tensor):
        targets = Tensor(xp.asarray(targets, dtype=logits.dtype))
    elif targets.dtype != logits.dtype:
        if targets.requires_grad:  # a copy would cut the graph: the caller converts
            raise TypeError(f"binary_cross_entropy_with_logits: targets of dtype {targets.dtype} do not match "
                            f"logits of dtype {logits.dtype}")
        targets = Tensor(targets.data.astype(logits.dtype))
    if targets.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: targets of shape {targets.shape} do not match logits "
                         f"{logits.shape}: they must have the same shape (one target per logit)")
    return BinaryCrossEntropyWithLogitsFunction(reduction)(logits, targets)


class MSELossFunction(Function):
    """x, y (one shape) -> the squared error of each entry, (x - y)^2, reduced by `reduction` ('mean' and
    'sum' give a scalar, 'none' x's shape).

    Backward: d/dx = 2 (x - y), d/dy = -2 (x - y), times the incoming gradient (divided by x.size for 'mean').
    """

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, x, y):
        diff = x - y
        self.diff = diff
        loss = diff * diff
        if self.reduction == "none":
            return loss
        total = loss.sum()
        return total / x.dtype.type(x.size) if self.reduction == "mean" else total

    def backward(self, gy):
        if self.reduction == "mean":
            gy = gy / gy.dtype.type(self.diff.size)
        g = 2 * self.diff * gy
        return (g if self.needs_input_grad[0] else None), (-g if self.needs_input_grad[1] else None)


def mse_loss(input, target, reduction="mean"):
    """The mean (or 'sum', or per entry with 'none') of the squared differences of `input` and `target`,
    which have one shape (torch.nn.functional.mse_loss; D2L's linear regression)."""
    input = _as_tensor(input)
    target = target if isinstance(target, Tensor) else Tensor(backend.get_array_module(input.data).asarray(
        target, dtype=input.dtype))
    if reduction not in REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if input.dtype.kind != "f" or target.dtype != input.dtype:
        raise TypeError(f"mse_loss: input and target must be floats of one dtype, got {input.dtype} and "
                        f"{target.dtype}; convert with .float()")
    if target.shape != input.shape:  # PyTorch broadcasts with a warning; a mismatch is nearly always a bug
        raise ValueError(f"mse_loss: target of shape {target.shape} does not match input {input.shape}; "
                         "reshape one of them (e.g. y.reshape(y_hat.shape))")
    return MSELossFunction(reduction)(input, target)


# ---------------------------------------------------------------------------------------------------
# Local response normalization (AlexNet; VGG configuration A-LRN)
# ---------------------------------------------------------------------------------------------------
def _channel_window_sum(a, before, after):
    """s[:, c] = sum of a[:, c - before .. c + after] (zero outside the channels)."""
    xp = backend.get_array_module(a)
    c = a.shape[1]
    padded = xp.zeros((a.shape[0], c + before + after) + a.shape[2:], dtype=a.dtype)
    padded[:, before:before + c] = a
    out = padded[:, 0:c].copy()
    for shift in range(1, before + after + 1):
        out += padded[:, shift:shift + c]
    return out


class LocalResponseNormFunction(Function):
    """x (N, C, ...) -> x / (k + alpha/size * sum of x^2 over `size` neighbouring channels)^beta.

    PyTorch's definition: the window of channel c is c - size//2 .. c + (size-1)//2, zero-padded.
    """

    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        if x.ndim < 3:
            raise ValueError(f"local_response_norm: expected (N, C, ...) input, got shape {tuple(x.shape)}")
        self.before, self.after = self.size // 2, (self.size - 1) // 2
        dtype = x.dtype.type
        sq_sum = _channel_window_sum(x * x, self.before, self.after)
        self.d = dtype(self.k) + dtype(self.alpha / self.size) * sq_sum
        y = x * self.d ** dtype(-self.beta)
        self.save_for_backward(x, y)
        return y

    def backward(self, gy):
        x, y = self.saved_tensors
        dtype = gy.dtype.type
        # direct term, plus each channel's effect on the denominators of the channels whose window holds it
        t = gy * y / self.d
        spread = _channel_window_sum(t, self.after, self.before)  # the transposed window
        return gy * self.d ** dtype(-self.beta) - dtype(2 * self.alpha * self.beta / self.size) * x * spread


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Local response normalization across channels (AlexNet's, used by VGG A-LRN); PyTorch's formula."""
    return LocalResponseNormFunction(int(size), float(alpha), float(beta), float(k))(x)
