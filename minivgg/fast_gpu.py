"""The GPU's fast tier: CuPy variants of the reference kernels in functional.py and of the optimizers'
updates in optim.py, computing the same numbers. Opt-in: CuPy arrays take them under the fast tier only
after `minivgg.tiers.enable_fast_gpu()` (or MINIVGG_FAST_GPU=1); `minivgg doctor` checks them on a card.

Each class subclasses the reference of the same name and says what it does differently and why; each
registers itself with `tiers.fast_variant_of(..., "cupy")`. The reference kernels build their results
from many whole-array operations (a pad, one strided copy per kernel offset, masks multiplied in), each a
kernel launch and a pass over memory; here each op is one or two hand-written kernels, the well-known
ones of Caffe's im2col.cu and Chainer's im2col_gpu.

The kernels are written with cupyx.jit (Python that CuPy compiles to CUDA) rather than as CUDA C strings,
because the same Python function then also runs as Python: the tests' CuPy stand-in simulates each one
thread by thread (tests/strict_cupy.py), so its index arithmetic is tested without a GPU. Two habits keep
C and Python agreeing: index arithmetic never goes negative (C's / and % truncate where Python's floor, and
an unsigned index would wrap around), and every integer of a launch has the launch's index type
(`index_type`), so C computes each index in that one type.
"""
import importlib
import math

import numpy as np

from . import backend, cuda, optim
from . import functional as F
from .tiers import fast_variant_of

BLOCK = 256  # threads per block

# Bound to cupyx.jit and cupy by _jit() before a kernel compiles: CuPy's compiler looks up the names a
# kernel uses in this module's globals.
jit = cupy = None


def _jit():
    """cupyx.jit, loaded once CuPy is known to be usable (cuda.require_cupy), never at `import minivgg`."""
    cuda_module = cuda.require_cupy()
    jit_module = importlib.import_module("cupyx.jit")
    globals().update(jit=jit_module, cupy=cuda_module)
    return jit_module


_compiled = {}  # (cupyx.jit module, kernel function) -> the compiled kernel


def index_type(*sizes):
    """The integer type of a launch's index arithmetic: uint32 when every array of the launch has fewer than
    2**31 elements, else int64. A GPU has no integer divider; a 32-bit division is a short routine, a 64-bit
    one several times longer, and the index arithmetic divides for every element written. Unsigned, because
    the indices are never negative and unsigned division needs no sign fix-up."""
    return np.uint32 if max(sizes, default=0) < 2**31 else np.int64


def launch(kernel, total, *args):
    """Run `kernel` on `total` threads, BLOCK to a block. Every Python int in `args` (the sizes) is passed
    in the launch's index type (`index_type`), and so are `total` and the block size, the kernel's last two
    arguments: thread i = blockIdx.x * block + threadIdx.x then computes in that type too."""
    if total == 0:
        return
    jit_module = _jit()
    key = (jit_module, kernel)
    if key not in _compiled:
        _compiled[key] = jit_module.rawkernel()(kernel)
    itype = index_type(total + BLOCK, *(a.size + BLOCK for a in args if hasattr(a, "size") and hasattr(a, "dtype")))
    args = tuple(itype(a) if type(a) is int else a for a in args)
    blocks = -(-total // BLOCK)
    _compiled[key]((blocks,), (BLOCK,), args + (itype(total), itype(BLOCK)))


def run_in_python(kernel, total, *args, block=BLOCK):
    """For learning: run a kernel's Python body once per thread on NumPy arrays, one thread at a time, as
    `launch` would on the card (blocks of `block` threads, the last one partly idle). C's integer semantics
    are not modelled: the strict simulator in the tests does that. Returns the number of threads run."""
    global jit
    blocks = -(-total // block)
    saved = jit
    try:
        for b in range(blocks):
            for t in range(block):
                jit = _Thread(b, t, block)
                kernel(*args, np.int64(total), np.int64(block))
    finally:
        jit = saved
    return blocks * block


class _Thread:
    """What a kernel reads as `jit` in run_in_python: its thread's blockIdx.x, threadIdx.x and blockDim.x."""

    def __init__(self, block_index, thread_index, block):
        self.blockIdx = _X(np.int64(block_index))
        self.threadIdx = _X(np.int64(thread_index))
        self.blockDim = _X(np.int64(block))


class _X:
    def __init__(self, x):
        self.x = x


def _ints(*values):
    return tuple(np.int64(v) for v in values)


# ---------------------------------------------------------------------------------------------------
# The kernels. Arrays are 1-D (C-order arrays raveled), addressed with flat indices. A flat index is split
# into coordinates with one division per coordinate: q = i // n, then i - q * n for the remainder (a
# multiply, where % would divide again).
# ---------------------------------------------------------------------------------------------------
def im2col_kernel(x, col, c, h, w, kh, kw, sh, sw, ph, pw, n, oh, ow, total, block):
    # Caffe's im2col: one thread per (channel, image, output pixel), writing that pixel's KH*KW entries of
    # col (C*KH*KW, N*OH*OW), rows (ch, ki, kj), columns (b, oy, ox); its divisions serve KH*KW writes, and
    # neighbouring threads write neighbouring columns. Positions outside x read 0: no padded copy of x.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // ow
        ox = i - t * ow
        t2 = t // oh
        oy = t - t2 * oh
        ch = t2 // n
        b = t2 - ch * n
        columns = n * oh * ow
        column = i - ch * columns  # (b * OH + oy) * OW + ox
        for ki in range(kh):
            yp = oy * sh + ki  # in padded coordinates, never negative
            for kj in range(kw):
                xp = ox * sw + kj
                out = ((ch * kh + ki) * kw + kj) * columns + column
                if yp >= ph and yp < h + ph and xp >= pw and xp < w + pw:
                    col[out] = x[((b * c + ch) * h + (yp - ph)) * w + (xp - pw)]
                else:
                    col[out] = 0.0


def col2im_kernel(col, gx, c, h, w, kh, kw, sh, sw, ph, pw, n, oh, ow, total, block):
    # One thread per pixel of gx (N, C, H, W): it sums the column entries of every window covering it, so
    # no two threads write one pixel (no atomics). Windows oy with oy*sh <= yp < oy*sh + kh.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // w
        xp = i - t * w + pw
        t2 = t // h
        yp = t - t2 * h + ph
        b = t2 // c
        ch = t2 - b * c
        oy0 = (max(yp + 1, kh) - kh + sh - 1) // sh  # the first window reaching yp: ceil((yp-kh+1)/sh), >= 0
        oy1 = min(yp // sh + 1, oh)
        ox0 = (max(xp + 1, kw) - kw + sw - 1) // sw
        ox1 = min(xp // sw + 1, ow)
        columns = n * oh * ow
        s = 0.0
        for oy in range(oy0, oy1):
            for ox in range(ox0, ox1):
                row = (ch * kh + (yp - oy * sh)) * kw + (xp - ox * sw)
                s += col[row * columns + (b * oh + oy) * ow + ox]
        gx[i] = s


def rows_to_nchw_kernel(rows, bias, y, k, n, hw, has_bias, total, block):
    # One thread per element of y (N, K, OH, OW): the product's (K, N*OH*OW) entry, plus the bias, in one
    # pass (without it: a transposed copy, then a second pass adding the bias). Without a bias, `bias` is
    # a placeholder never read.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // hw
        p = i - t * hw
        b = t // k
        ch = t - b * k
        v = rows[(ch * n + b) * hw + p]
        if has_bias:
            v += bias[ch]
        y[i] = v


def nchw_to_rows_kernel(gy, rows, k, n, hw, total, block):
    # One thread per element of rows (K, N*OH*OW): the output gradient (N, K, OH, OW) in the product's
    # layout; neighbouring threads read and write neighbouring pixels.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // hw
        p = i - t * hw
        ch = t // n
        b = t - ch * n
        rows[i] = gy[(b * k + ch) * hw + p]


def max_pool_kernel(x, y, argmax, neg_inf, h, w, kh, kw, sh, sw, ph, pw, oh, ow, total, block):
    # One thread per output (N, C, OH, OW): the maximum of its window and where it is (offset ki*KW + kj).
    # Padding reads -inf; the first maximum wins, a NaN wins and stays, as the reference's argmax.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // ow
        ox = i - t * ow
        plane = t // oh  # b*C + ch
        oy = t - plane * oh
        best = neg_inf
        where = kw * 0  # a zero of the index type: a jit variable keeps the type it is first given
        for ki in range(kh):
            for kj in range(kw):
                yp = oy * sh + ki
                xp = ox * sw + kj
                v = neg_inf
                if yp >= ph and yp < h + ph and xp >= pw and xp < w + pw:
                    v = x[(plane * h + (yp - ph)) * w + (xp - pw)]
                if best == best and (v > best or v != v):
                    best = v
                    where = ki * kw + kj
        y[i] = best
        argmax[i] = where


def max_pool_backward_kernel(gy, argmax, gx, h, w, kh, kw, sh, sw, ph, pw, oh, ow, total, block):
    # One thread per input pixel (N, C, H, W): the sum of the gradients of the windows whose maximum it is.
    # Windows overlap when the stride is below the kernel, so a thread per output could collide.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        t = i // w
        xp = i - t * w + pw
        plane = t // h
        yp = t - plane * h + ph
        oy0 = (max(yp + 1, kh) - kh + sh - 1) // sh
        oy1 = min(yp // sh + 1, oh)
        ox0 = (max(xp + 1, kw) - kw + sw - 1) // sw
        ox1 = min(xp // sw + 1, ow)
        s = 0.0
        for oy in range(oy0, oy1):
            for ox in range(ox0, ox1):
                o = (plane * oh + oy) * ow + ox
                if argmax[o] == (yp - oy * sh) * kw + (xp - ox * sw):
                    s += gy[o]
        gx[i] = s


def relu_kernel(x, y, total, block):
    # One thread per element. `not x < 0` keeps a NaN, as maximum(x, 0) does.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        if x[i] < 0:
            y[i] = 0.0
        else:
            y[i] = x[i]


def relu_backward_kernel(gy, y, gx, total, block):
    # One thread per element: gy * (y > 0), multiplied as the reference does (so inf * 0 is NaN there too).
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        m = 0.0
        if y[i] > 0:
            m = 1.0
        gx[i] = gy[i] * m


def dropout_kernel(x, u, p, scale, y, keep, total, block):
    # One thread per element: the mask from the uniform draw u and the scaled output in one pass.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        k = 0.0
        keep[i] = u[i] >= p
        if u[i] >= p:
            k = 1.0
        y[i] = x[i] * k * scale


def dropout_backward_kernel(gy, keep, scale, gx, total, block):
    # One thread per element: gy * keep * scale.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        k = 0.0
        if keep[i]:
            k = 1.0
        gx[i] = gy[i] * k * scale


def sgd_kernel(p, g, buf, lr, momentum, weight_decay, nesterov, total, block):
    # One thread per element: the reference's operations in its order; buf is the momentum buffer (with
    # momentum 0, a placeholder never read).
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        d = g[i]
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        if momentum != 0:
            b = buf[i] * momentum + d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        p[i] = p[i] - lr * d


def adam_kernel(p, g, m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, step_size, bias_correction2_sqrt,
                eps, weight_decay, total, block):
    # One thread per element: m and v as the reference, the step in the folded form of fast_cpu.Adam.
    i = jit.blockIdx.x * block + jit.threadIdx.x
    if i < total:
        d = g[i]
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        mi = m[i] * beta1 + one_minus_beta1 * d
        vi = v[i] * beta2 + one_minus_beta2 * (d * d)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - mi / (cupy.sqrt(vi) / bias_correction2_sqrt + eps) * step_size


# ---------------------------------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------------------------------
def _flat(xp, array):
    """A 1-D view of `array` in C order (a copy only if it is not C-contiguous)."""
    return xp.ascontiguousarray(array).ravel()


def _sizes(*values):
    """Sizes as Python ints, which `launch` passes in the launch's index type."""
    return tuple(int(v) for v in values)


def im2col(x, kernel, stride, padding):
    """x (N, C, H, W) -> col (C*KH*KW, N*OH*OW), the reference im2col_array's layout, in one kernel."""
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = F.output_size("im2col", x.shape, kernel, stride, padding)
    col = xp.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    launch(im2col_kernel, c * n * oh * ow, _flat(xp, x), col.ravel(),
           *_sizes(c, h, w, kh, kw, sh, sw, ph, pw, n, oh, ow))
    return col


def col2im(col, input_shape, kernel, stride, padding):
    """col (C*KH*KW, N*OH*OW) -> (N, C, H, W), summing every copy of a pixel: the reference col2im_array."""
    xp = backend.get_array_module(col)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = F.output_size("col2im", input_shape, kernel, stride, padding)
    gx = xp.empty((n, c, h, w), dtype=col.dtype)
    launch(col2im_kernel, gx.size, _flat(xp, col), gx.ravel(), *_sizes(c, h, w, kh, kw, sh, sw, ph, pw, n, oh, ow))
    return gx


@fast_variant_of(F.Conv2dFunction, "cupy")
class Conv2dFunction(F.Conv2dFunction):
    """The reference convolution with three changes:
    - im2col and col2im are one kernel each (im2col_kernel, col2im_kernel) instead of a padded copy and one
      strided copy per kernel offset;
    - the product's (K, N*OH*OW) result becomes NCHW with the bias added in one pass (rows_to_nchw_kernel),
      and backward brings the output gradient into the product's layout in one pass (nchw_to_rows_kernel);
    - the column matrix is not kept for backward, which makes it again from x: a step then holds the
      activations, not KH*KW copies of them, for the price of one more im2col per layer.
    The products stay cuBLAS's."""

    im2col = staticmethod(im2col)
    col2im = staticmethod(col2im)

    def forward(self, x, weight, bias=None):
        xp = backend.get_array_module(x)
        n, k = x.shape[0], weight.shape[0]
        self.kernel = weight.shape[2:]
        oh, ow = F.output_size("conv2d", x.shape, self.kernel, self.stride, self.padding)
        rows = weight.reshape(k, -1) @ self.im2col(x, self.kernel, self.stride, self.padding)  # (K, N*OH*OW)
        y = xp.empty((n, k, oh, ow), dtype=rows.dtype)
        launch(rows_to_nchw_kernel, y.size, rows.ravel(), rows.ravel() if bias is None else _flat(xp, bias),
               y.ravel(), *_sizes(k, n, oh * ow), bias is not None)
        self.save_for_backward(x if self.needs_input_grad[1] else None,
                               weight if self.needs_input_grad[0] else None)
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, k, oh, ow = gy.shape
        x, weight = self.saved_tensors
        g = xp.empty((k, n * oh * ow), dtype=gy.dtype)
        launch(nchw_to_rows_kernel, g.size, _flat(xp, gy), g.ravel(), *_sizes(k, n, oh * ow))
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gcol = weight.reshape(k, -1).T @ g                                 # (C*KH*KW, N*OH*OW)
            gx = self.col2im(gcol, self.x_shape, self.kernel, self.stride, self.padding)
        if self.needs_input_grad[1]:
            col = self.im2col(x, self.kernel, self.stride, self.padding)
            gw = (g @ col.T).reshape(k, -1, *self.kernel)                      # (K, C, KH, KW)
        if F.wants_grad(self, 2):
            gb = g.sum(axis=1)                                                 # (K,), rows contiguous
        return gx, gw, gb


@fast_variant_of(F.MaxPool2dFunction, "cupy")
class MaxPool2dFunction(F.MaxPool2dFunction):
    """The reference max-pooling in one kernel each way, without the padded copy and the
    (N, C, KH*KW, OH, OW) window array: a thread per output finds its maximum and keeps where it is (an
    offset per output, in the launch's index type); backward, a thread per input pixel adds the gradients
    of the windows it won."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        n, c, h, w = x.shape
        oh, ow = F.output_size("max_pool2d", x.shape, self.kernel, self.stride, self.padding)
        y = xp.empty((n, c, oh, ow), dtype=x.dtype)
        self.argmax = xp.empty((n, c, oh, ow), dtype=index_type(x.size + BLOCK, y.size + BLOCK))  # launch's choice
        launch(max_pool_kernel, y.size, _flat(xp, x), y.ravel(), self.argmax.ravel(), x.dtype.type(-np.inf),
               *_sizes(h, w, *self.kernel, *self.stride, *self.padding, oh, ow))
        self.x_shape = x.shape
        return y

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, c, h, w = self.x_shape
        oh, ow = gy.shape[2:]
        gx = xp.empty(self.x_shape, dtype=gy.dtype)
        launch(max_pool_backward_kernel, gx.size, _flat(xp, gy), self.argmax.ravel(), gx.ravel(),
               *_sizes(h, w, *self.kernel, *self.stride, *self.padding, oh, ow))
        return gx


@fast_variant_of(F.ReLUFunction, "cupy")
class ReLUFunction(F.ReLUFunction):
    """The reference ReLU, forward and backward each one kernel: backward reads y and gy once, without
    the reference's boolean array y > 0 in between."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        x = xp.ascontiguousarray(x)
        y = xp.empty_like(x)
        launch(relu_kernel, x.size, x.ravel(), y.ravel())
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        y, = self.saved_tensors
        xp = backend.get_array_module(gy)
        gx = xp.empty(y.shape, dtype=gy.dtype)
        launch(relu_backward_kernel, gx.size, _flat(xp, gy), y.ravel(), gx.ravel())
        return gx


@fast_variant_of(F.DropoutFunction, "cupy")
class DropoutFunction(F.DropoutFunction):
    """The reference dropout with the same draw from the device's generator, and the mask and the scaled
    output made in one kernel (the reference makes them in three passes)."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        u = backend.get_generator(backend.device_of(x)).random(x.shape, dtype=np.float32)
        self.scale = x.dtype.type(1.0 / (1.0 - self.p))
        y = xp.empty(x.shape, dtype=x.dtype)
        self.keep = xp.empty(x.shape, dtype=bool)
        launch(dropout_kernel, y.size, _flat(xp, x), u.ravel(), np.float32(self.p), self.scale, y.ravel(),
               self.keep.ravel())
        return y

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.empty(gy.shape, dtype=gy.dtype)
        launch(dropout_backward_kernel, gx.size, _flat(xp, gy), self.keep.ravel(), self.scale, gx.ravel())
        return gx


# ---------------------------------------------------------------------------------------------------
# The optimizers' updates
# ---------------------------------------------------------------------------------------------------
def _scalar(p, value):
    """A hyperparameter in the parameter's dtype: the kernel then computes in float32, as the reference
    does with Python floats and float32 arrays."""
    return p.dtype.type(value)


def _packed(optimizer, todo, names):
    """{'param': flat array, name: flat array for each state buffer in `names`} of which the parameters'
    arrays and their state buffers are views, so that one kernel updates them all (PyTorch's foreach and
    fused optimizers do this over lists of tensors). Packed on the first call and again whenever one of
    those arrays was replaced since (`p.data = ...`, `load_state_dict`, `.to()`); the values are kept.
    None where the parameters cannot share one array (other dtypes or devices)."""
    params = [p for _, p in todo]
    states = [optimizer.state.setdefault(i, {}) for i, _ in todo]
    arrays = [p.data for p in params]
    if len({(a.dtype, backend.device_of(a)) for a in arrays}) != 1:
        return None
    packed = getattr(optimizer, "_packed_arrays", None)
    current = [[p.data] + [state[n] for n in names] for p, state in zip(params, states)]
    if packed is not None and len(packed["views"]) == len(current) and all(
            a is b for now, then in zip(current, packed["views"]) for a, b in zip(now, then)):
        return packed["flat"]
    xp = backend.get_array_module(arrays[0])
    flat = {}
    for column, name in enumerate(["param"] + names):
        flat[name] = xp.concatenate([row[column].ravel() for row in current])
    views, start = [], 0
    for p, state in zip(params, states):
        row = []
        for name in ["param"] + names:
            view = flat[name][start:start + p.data.size].reshape(p.data.shape)
            if name == "param":
                p.data = view
            else:
                state[name] = view
            row.append(view)
        views.append(row)
        start += p.data.size
    optimizer._packed_arrays = {"flat": flat, "views": views}
    return flat


def _gradients(todo):
    """The gradients of `todo` laid end to end, in the packed parameters' order: one copy kernel."""
    grads = [p.grad.data for _, p in todo]
    return backend.get_array_module(grads[0]).concatenate([g.ravel() for g in grads])


@fast_variant_of(optim.SGD, "cupy")
class SGD(optim.SGD):
    """The reference update as one kernel (sgd_kernel) for all parameters at once: the parameters and
    their momentum buffers live as views of one flat array each (`_packed`), the gradients are laid end to
    end in one copy, then one thread per element does the reference's operations in the same order.
    `update` is the same kernel for one parameter."""

    @staticmethod
    def update_all(optimizer, todo):
        hyper = optimizer.param_groups[0]
        momentum = hyper["momentum"]
        # The first step makes the momentum buffers (b = g), as the reference: one parameter at a time.
        if momentum != 0 and any("momentum_buffer" not in optimizer.state.get(i, {}) for i, _ in todo):
            return False
        flat = _packed(optimizer, todo, ["momentum_buffer"] if momentum != 0 else [])
        if flat is None:
            return False
        p, g = flat["param"], _gradients(todo)
        launch(sgd_kernel, p.size, p, g, flat.get("momentum_buffer", g), _scalar(p, hyper["lr"]),
               _scalar(p, momentum), _scalar(p, hyper["weight_decay"]), bool(hyper["nesterov"]))
        return True

    @staticmethod
    def update(p, g, state, lr, momentum, weight_decay, nesterov):
        # The first step makes the buffer, as the reference; a parameter that is a strided view (rare) cannot
        # be updated through a flat view: the reference updates it.
        if (momentum != 0 and "momentum_buffer" not in state) or not p.flags.c_contiguous:
            optim.SGD.update(p, g, state, lr, momentum, weight_decay, nesterov)
            return
        xp = backend.get_array_module(p)
        buf = state.get("momentum_buffer", g)  # momentum 0: a placeholder the kernel never reads
        launch(sgd_kernel, p.size, p.ravel(), _flat(xp, g), buf.ravel(), _scalar(p, lr), _scalar(p, momentum),
               _scalar(p, weight_decay), bool(nesterov))


@fast_variant_of(optim.Adam, "cupy")
class Adam(optim.Adam):
    """The reference update as one kernel (adam_kernel) for all parameters at once, packed as fast SGD's,
    with the bias corrections folded into two numbers as fast_cpu.Adam does: m and v are the reference's,
    the step agrees to float32 rounding. `update` is the same kernel for one parameter."""

    @staticmethod
    def update_all(optimizer, todo):
        for i, p in todo:
            optim.Adam.start(p.data, optimizer.state.setdefault(i, {}))
        steps = {optimizer.state[i]["step"] for i, _ in todo}
        flat = _packed(optimizer, todo, ["exp_avg", "exp_avg_sq"]) if len(steps) == 1 else None
        if flat is None:  # parameters at different steps (some had no gradient): one at a time
            return False
        for i, _ in todo:
            optimizer.state[i]["step"] += 1
        hyper = optimizer.param_groups[0]
        p, g = flat["param"], _gradients(todo)
        launch(adam_kernel, p.size, p, g, flat["exp_avg"], flat["exp_avg_sq"],
               *(_scalar(p, s) for s in Adam._scalars(hyper["lr"], hyper["betas"], hyper["eps"],
                                                      hyper["weight_decay"], steps.pop() + 1)))
        return True

    @staticmethod
    def _scalars(lr, betas, eps, weight_decay, t):
        beta1, beta2 = betas
        return (beta1, beta2, 1 - beta1, 1 - beta2, lr / (1 - beta1 ** t), math.sqrt(1 - beta2 ** t), eps,
                weight_decay)

    @staticmethod
    def update(p, g, state, lr, betas, eps, weight_decay):
        if not p.flags.c_contiguous:  # a strided view cannot be updated through a flat view
            optim.Adam.update(p, g, state, lr, betas, eps, weight_decay)
            return
        xp = backend.get_array_module(p)
        optim.Adam.start(p, state)
        state["step"] += 1
        launch(adam_kernel, p.size, p.ravel(), _flat(xp, g), state["exp_avg"].ravel(), state["exp_avg_sq"].ravel(),
               *(_scalar(p, s) for s in Adam._scalars(lr, betas, eps, weight_decay, state["step"])))
