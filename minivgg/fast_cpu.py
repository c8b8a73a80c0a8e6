"""The fast tier: CPU variants of the reference kernels in functional.py and of the optimizers' updates
in optim.py, computing the same numbers.

Each class here subclasses the reference of the same name and says what it does differently and why.
They run on NumPy arrays when `minivgg.get_kernels() == "fast"` (the default); each registers itself
with `tiers.fast_variant_of`, and tests/test_tiers.py checks each against its reference. The tricks, in
short:

- Batch innermost. Convolution outputs stay in memory as (K, OH, OW, N), viewed as (N, K, OH, OW). The
  next im2col then copies runs of OW*N values instead of OW, which matters once maps are 4x4 or 2x2,
  and the convolution's backward reads the gradient in that order for free.
- Threads. NumPy runs an elementwise loop on one core; large kernels here cut their work into channel
  slices, and optimizer updates into pieces, run on the CPU thread pool (`minivgg.cpu`).
- Outputs keep their input's memory order, so elementwise passes read both arrays in order.
"""
import math

import numpy as np

from . import cpu, optim
from . import functional as F
from .tiers import fast_variant_of


def memory_order(array):
    """The axes of `array` from the largest stride to the smallest (its layout in memory)."""
    return tuple(sorted(range(array.ndim), key=lambda a: -array.strides[a]))


def _in_order(make, shape, order):
    """An array of `shape` laid out in memory in axis order `order`: make(the shape listed in that order),
    viewed with its axes put back (a view, no copy)."""
    return make([shape[a] for a in order]).transpose(np.argsort(order))


def _elementwise(fn, like):
    """Call fn(index) for index tuples that slice `like`'s outermost memory axis into parts, run on CPU
    threads when large; fn must write only the part it is given."""
    if like.ndim == 0:
        fn(Ellipsis)
        return
    axis = memory_order(like)[0]
    lead = (slice(None),) * axis
    cpu.parallel(lambda part: fn(lead + (part,)), like.shape[axis], like.size)


# ---------------------------------------------------------------------------------------------------
# im2col with the batch innermost
# ---------------------------------------------------------------------------------------------------
def im2col_batch_last(x, kernel, stride, padding):
    """x (N, C, H, W) -> col (C*KH*KW, OH*OW*N): the reference im2col with columns ordered (oh, ow, n).

    Images are held as (C, H, W, N), so each of the KH*KW strided copies moves runs of OW*N values;
    only the padding border is zeroed, and channel slices run on threads.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = F.output_size("im2col", x.shape, kernel, stride, padding)
    padded = np.empty((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype)
    col = np.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)

    def unroll(cs):  # channels cs; channels are independent
        padded[cs, ph:ph + h, pw:pw + w, :] = x[:, cs].transpose(1, 2, 3, 0)
        _zero_border(padded[cs], ph, pw)
        for i in range(kh):
            for j in range(kw):
                col[cs, i, j] = padded[cs, i:i + sh * oh:sh, j:j + sw * ow:sw, :]

    cpu.parallel(unroll, c, col.size)
    return col.reshape(c * kh * kw, oh * ow * n)


def _zero_border(padded, ph, pw):
    """Zero the padding rows and columns of a (C, H + 2ph, W + 2pw, N) buffer (cheaper than zeroing it all)."""
    if ph:
        padded[:, :ph] = 0
        padded[:, -ph:] = 0
    if pw:
        padded[:, :, :pw] = 0
        padded[:, :, -pw:] = 0


def col2im_batch_last(col, input_shape, kernel, stride, padding, out=None):
    """col (C*KH*KW, OH*OW*N) -> (N, C, H, W): the adjoint of im2col_batch_last.

    The result is a (N, C, H, W) view of a (C, H, W, N) buffer, like the convolution's output. `out`: a
    zeroed (C, H + 2PH, W + 2PW, N) buffer to add into instead of a new one (a group of channels' part).
    """
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = F.output_size("col2im", input_shape, kernel, stride, padding)
    col = col.reshape(c, kh, kw, oh, ow, n)
    padded = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=col.dtype) if out is None else out

    def fold(cs):  # channels cs
        for i in range(kh):
            for j in range(kw):
                padded[cs, i:i + sh * oh:sh, j:j + sw * ow:sw, :] += col[cs, i, j]

    cpu.parallel(fold, c, col.size)
    return padded[:, ph:ph + h, pw:pw + w, :].transpose(3, 0, 1, 2)


# ---------------------------------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------------------------------
COLUMN_BUDGET = 48 * 2**20  # bytes of im2col columns made at once; larger layers go by channel groups
GROUP_CHANNELS = 16  # fewest channels in a group: a product over fewer rows of columns runs far below peak


def channel_groups(x_shape, kernel, out_size, itemsize):
    """Slices of the C input channels, of nearly equal size, such that each group's columns
    (len(group)*KH*KW, OH*OW*N) stay within COLUMN_BUDGET bytes where groups of GROUP_CHANNELS channels or
    more allow it: one slice for all of C when they fit."""
    n, c = x_shape[:2]
    total = c * kernel[0] * kernel[1] * out_size[0] * out_size[1] * n * itemsize
    count = max(1, min(-(-total // COLUMN_BUDGET), c // GROUP_CHANNELS))
    bounds = [round(i * c / count) for i in range(count + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(count)]


@fast_variant_of(F.Conv2dFunction)
class Conv2dFunction(F.Conv2dFunction):
    """The reference convolution on batch-innermost columns: the product W (K, C*KH*KW) @ col gives
    (K, OH*OW*N), returned as a (N, K, OH, OW) view without a copy.

    Memory: it keeps the input x for backward, not the columns (KH*KW times larger), and unrolls x again
    there for the weight gradient (x is kept anyway: it is the previous ReLU's output, which that ReLU
    keeps). A layer whose columns exceed COLUMN_BUDGET is unrolled a group of input channels at a time,
    each group's product added up, so a step holds little beyond its activations."""

    def forward(self, x, weight, bias=None):
        n, k = x.shape[0], weight.shape[0]
        self.kernel = weight.shape[2:]
        oh, ow = F.output_size("conv2d", x.shape, self.kernel, self.stride, self.padding)
        self.groups = channel_groups(x.shape, self.kernel, (oh, ow), x.itemsize)
        y = None
        for cs in self.groups:
            col = im2col_batch_last(x[:, cs], self.kernel, self.stride, self.padding)
            part = weight[:, cs].reshape(k, -1) @ col  # (K, OH*OW*N)
            y = part if y is None else np.add(y, part, out=y)
        y = y.reshape(k, oh, ow, n)
        if bias is not None:
            y += bias.reshape(k, 1, 1, 1)
        self.save_for_backward(x if self.needs_input_grad[1] else None, weight if self.needs_input_grad[0] else None)
        self.x_shape = x.shape
        return y.transpose(3, 0, 1, 2)

    def backward(self, gy):
        x, weight = self.saved_tensors
        n, c, h, w = self.x_shape
        k = gy.shape[1]
        g = gy.transpose(1, 2, 3, 0).reshape(k, -1)  # (K, OH*OW*N): free when gy kept forward's order
        gx = gw = gb = None
        (ph, pw), (kh, kw) = self.padding, self.kernel
        if self.needs_input_grad[1]:
            gw = np.empty((k, c, kh, kw), dtype=g.dtype)
            for cs in self.groups:
                col = im2col_batch_last(x[:, cs], self.kernel, self.stride, self.padding)
                gw[:, cs] = (g @ col.T).reshape(k, -1, kh, kw)
                del col  # before the next group's columns
        if self.needs_input_grad[0]:
            padded = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=g.dtype)
            for cs in self.groups:
                gcol = weight[:, cs].reshape(k, -1).T @ g  # (len(cs)*KH*KW, OH*OW*N)
                group_shape = (n, cs.stop - cs.start, h, w)
                col2im_batch_last(gcol, group_shape, self.kernel, self.stride, self.padding, out=padded[cs])
                del gcol
            gx = padded[:, ph:ph + h, pw:pw + w, :].transpose(3, 0, 1, 2)
        if F.wants_grad(self, 2):
            gb = g.sum(axis=1)
        return gx, gw, gb


@fast_variant_of(F.MaxPool2dFunction)
class MaxPool2dFunction(F.MaxPool2dFunction):
    """The reference max-pooling without the (N, C, KH*KW, OH, OW) window array: a running maximum over
    the KH*KW offsets, and the winning offset kept as one byte per output (a compact argmax), updated
    with arithmetic rather than a boolean-mask scatter. Channel slices run on threads; outputs keep the
    input's memory order."""

    def _windows(self, oh, ow):
        (kh, kw), (sh, sw) = self.kernel, self.stride
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (Ellipsis, slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw))

    def forward(self, x):
        (kh, kw), (ph, pw) = self.kernel, self.padding
        oh, ow = F.output_size("max_pool2d", x.shape, self.kernel, self.stride, self.padding)
        n, c, h, w = x.shape
        if ph or pw:
            padded = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf, dtype=x.dtype)
            padded[:, :, ph:ph + h, pw:pw + w] = x
        else:
            padded = x
        layout = memory_order(padded)
        best = _in_order(lambda s: np.empty(s, dtype=x.dtype), (n, c, oh, ow), layout)
        index_type = np.uint8 if kh * kw < 256 else np.int32
        argmax = _in_order(lambda s: np.empty(s, dtype=index_type), (n, c, oh, ow), layout)

        def pool(cs):  # channels cs; channels are independent
            top, where, source = best[:, cs], argmax[:, cs], padded[:, cs]
            for offset, window in self._windows(oh, ow):
                values = source[window]
                if offset == 0:
                    top[...] = values
                    where[...] = 0
                    continue
                better = values > top  # strict: the first maximum keeps the gradient
                np.maximum(top, values, out=top)
                where *= ~better  # clear the slots where a new maximum appeared...
                where += better * where.dtype.type(offset)  # ...and write this offset there

        cpu.parallel(pool, c, padded.size)
        self.argmax, self.padded_shape, self.x_shape = argmax, padded.shape, x.shape
        self.x_layout = memory_order(x)
        return best

    def backward(self, gy):
        (ph, pw), (h, w) = self.padding, self.x_shape[2:]
        gx = _in_order(lambda s: np.zeros(s, dtype=gy.dtype), self.padded_shape, self.x_layout)
        oh, ow = gy.shape[-2:]
        overlapping = any(s < k for s, k in zip(self.stride, self.kernel))

        def route(cs):  # channels cs
            g, where, target = gy[:, cs], self.argmax[:, cs], gx[:, cs]
            for offset, window in self._windows(oh, ow):
                if overlapping:  # a position can be the maximum of several windows: add
                    target[window] += g * (where == offset)
                else:  # each position is in one window at most: write straight into gx
                    np.multiply(g, where == offset, out=target[window])

        cpu.parallel(route, gy.shape[1], gx.size)
        return gx if not (ph or pw) else gx[:, :, ph:ph + h, pw:pw + w]


@fast_variant_of(F.ReLUFunction)
class ReLUFunction(F.ReLUFunction):
    """The reference ReLU in slices on threads, each output in its input's memory order."""

    def forward(self, x):
        y = np.empty_like(x)  # same memory order as x
        _elementwise(lambda i: np.maximum(x[i], 0, out=y[i]), x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        gx = np.empty_like(gy)
        _elementwise(lambda i: np.multiply(gy[i], y[i] > 0, out=gx[i]), gy)
        return gx


# ---------------------------------------------------------------------------------------------------
# The optimizers' updates
# ---------------------------------------------------------------------------------------------------
PIECE = 1 << 17  # elements (512 KB of float32) per piece of an update split across the CPU threads


def in_pieces(update, *arrays):
    """Call update(*arrays), an in-place elementwise update, once; or, for large contiguous arrays, piece
    by piece on the CPU threads: a piece of each array stays in a core's cache across the update's
    several passes, where whole arrays would stream from memory once per pass."""
    if arrays[0].size < 4 * PIECE or not all(a.flags.c_contiguous for a in arrays):
        update(*arrays)
        return
    flats = [a.reshape(-1) for a in arrays]
    pieces = [slice(i, i + PIECE) for i in range(0, arrays[0].size, PIECE)]
    cpu.parallel_map(lambda s: update(*[f[s] for f in flats]), pieces)


@fast_variant_of(optim.SGD)
class SGD(optim.SGD):
    """The reference update in pieces on the CPU threads (see in_pieces), each piece with one scratch
    array where the reference makes a new array per operation: the update is memory-bound. The same
    operations on the same numbers: the same bits."""

    @staticmethod
    def update(p, g, state, lr, momentum, weight_decay, nesterov):
        if momentum != 0 and "momentum_buffer" not in state:  # the first step makes the buffer: as the reference
            optim.SGD.update(p, g, state, lr, momentum, weight_decay, nesterov)
            return

        def step(w, d, b=None):
            if weight_decay != 0:
                d = d + weight_decay * w
            if b is None:
                w -= lr * d
                return
            b *= momentum
            b += d
            if nesterov:
                scratch = b * momentum
                scratch += d
                scratch *= lr
            else:
                scratch = b * lr
            w -= scratch  # w -= lr * (d + momentum * b), or lr * b

        if momentum != 0:
            in_pieces(step, p, g, state["momentum_buffer"])
        else:
            in_pieces(step, p, g)


@fast_variant_of(optim.Adam)
class Adam(optim.Adam):
    """The reference update in pieces on the CPU threads (see in_pieces), each piece with one scratch
    array, and the bias corrections folded into two numbers, as torch.optim.Adam does, instead of the
    arrays m_hat and v_hat: lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). m and v are
    the reference's operations, bit for bit; the step agrees to float32 rounding."""

    @staticmethod
    def update(p, g, state, lr, betas, eps, weight_decay):
        beta1, beta2 = betas
        optim.Adam.start(p, state)
        state["step"] += 1
        t = state["step"]
        step_size = lr / (1 - beta1 ** t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)

        def step(w, d, m, v):
            if weight_decay != 0:
                d = d + weight_decay * w
            scratch = (1 - beta1) * d
            m *= beta1
            m += scratch
            np.multiply(d, d, out=scratch)
            scratch *= 1 - beta2
            v *= beta2
            v += scratch
            np.sqrt(v, out=scratch)
            scratch /= bias_correction2_sqrt
            scratch += eps
            np.divide(m, scratch, out=scratch)
            scratch *= step_size
            w -= scratch

        in_pieces(step, p, g, state["exp_avg"], state["exp_avg_sq"])
