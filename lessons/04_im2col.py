"""Lesson 4: im2col. Convolution becomes one matrix product once every window is unrolled into a column."""
# %%
import numpy as np

import minivgg as mv
import minivgg.functional as F
from lesson import claim, exercises, notice, section

mv.set_kernels("reference")  # the plain kernels of minivgg/functional.py, the ones this lesson reads

section("A 1x1x4x4 image, unrolled for a 3x3 kernel")
image = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
print(image[0, 0])
col = F.im2col(image, kernel_size=3)
print("im2col ->\n", col)
claim(col.shape == (9, 4), "a 4x4 image has 2x2 = 4 windows of 3x3 = 9 pixels: col is 9 x 4")
claim(col[:, 0].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10], "column 0 is the top-left window, read row by row")
claim(col[:, 3].tolist() == [5, 6, 7, 9, 10, 11, 13, 14, 15], "column 3 is the bottom-right window")
claim((col == 5).sum() == 4, "pixel 5 sits in all four windows, so im2col copies it four times")

# %%
section("Convolution = weight matrix @ col")
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)


def naive_conv(x, w):
    """Four nested loops: what a convolution means."""
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    y = np.zeros((n, k, h - kh + 1, wd - kw + 1), dtype=np.float32)
    for b in range(n):
        for o in range(k):
            for i in range(h - kh + 1):
                for j in range(wd - kw + 1):
                    y[b, o, i, j] = (x[b, :, i:i + kh, j:j + kw] * w[o]).sum()
    return y


col = F.im2col(x, 3)
n, oh, ow = 2, 4, 3
y = (w.reshape(4, -1) @ col).reshape(4, n, oh, ow).transpose(1, 0, 2, 3)  # columns run (n, oh, ow)
claim(np.allclose(y, naive_conv(x, w), atol=1e-4), "one matrix product (4 x 27) @ (27 x 24) equals the naive loops")
claim(np.array_equal(F.conv2d(mv.tensor(x), mv.tensor(w)).numpy(), y), "F.conv2d is exactly this: im2col, then one product")

# %%
section("col2im is im2col's adjoint")
c = rng.standard_normal(col.shape).astype(np.float64)
x64 = x.astype(np.float64)
lhs = (F.im2col(x64, 3) * c).sum()
rhs = (x64 * F.col2im(c, x.shape, 3)).sum()
print(f"  <im2col(x), c> = {lhs:.6f},  <x, col2im(c)> = {rhs:.6f}")
claim(abs(lhs - rhs) < 1e-9 * abs(lhs), "<im2col(x), c> = <x, col2im(c)>: col2im adds copies back, so it is "
      "how the gradient w.r.t. the input is computed")
ones = F.col2im(np.ones_like(col, dtype=np.float64), x.shape, 3)
print("  col2im(ones), one 6x5 channel:\n   " + str(ones[0, 0].astype(int)).replace("\n", "\n   "))
claim(ones[0, 0, 2, 2] == 9 and ones[0, 0, 0, 0] == 1,
      "col2im of ones counts how many windows hold each pixel: 9 in the middle, 1 in a corner")

notice("im2col trades memory for speed: each pixel is copied once per window that holds it (up to 9 times).",
       "After the copy, a convolution is one matrix product, the operation BLAS libraries run fastest.",
       "The backward pass runs the copy in reverse: col2im adds each column's gradient back onto its pixels.")

exercises("How large is col for a 224x224x64 input and a 3x3 kernel with padding 1, in megabytes (float32)?",
          "Unroll with stride 2: how many columns now? Check your answer with F.im2col.",
          "minivgg's fast tier (minivgg/fast_cpu.py) orders the columns (oh, ow, n) instead. Why is that faster "
          "on 2x2 maps? (Hint: how long is each strided copy?)")
