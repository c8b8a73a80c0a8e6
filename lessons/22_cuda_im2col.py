"""Lesson 22: a CUDA kernel for im2col. The GPU's fast tier unrolls the windows with one thread per element of
the column matrix; here its kernel is read, drawn, run in Python thread by thread, and checked against the
reference im2col of lesson 4. With a GPU it also runs on the card."""
# %%
import inspect
import time

import numpy as np

import minivgg as mv
import minivgg.functional as F
from minivgg import fast_gpu
from lesson import QUICK, claim, exercises, notice, save_figure, section
from minivgg.plotting import pyplot


class Traced:
    """A 1-D array that records, for each read and write, the thread doing it (read from the kernel's `jit`)."""

    def __init__(self, array):
        self.array, self.reads, self.writes = array, [], []

    @staticmethod
    def thread():
        j = fast_gpu.jit
        return int(j.blockIdx.x * j.blockDim.x + j.threadIdx.x)

    def __getitem__(self, i):
        self.reads.append((self.thread(), int(i)))
        return self.array[i]

    def __setitem__(self, i, value):
        self.writes.append((self.thread(), int(i)))
        self.array[i] = value


def sizes(shape, kernel, stride, padding):
    n, c, h, w = shape
    oh, ow = F._output_size("im2col", shape, kernel, stride, padding)
    return fast_gpu._ints(c, h, w, *kernel, *stride, *padding, n, oh, ow)


def im2col_in_python(x, kernel, stride, padding, block=fast_gpu.BLOCK):
    """The kernel's columns, its traced input and output, and the number of threads launched."""
    ref_shape = F.im2col_array(x, kernel, stride, padding).shape
    src, col = Traced(x.ravel()), Traced(np.full(int(np.prod(ref_shape)), np.nan, dtype=x.dtype))
    threads = fast_gpu.run_in_python(fast_gpu.im2col_kernel, col.array.size, src, col,
                                     *sizes(x.shape, kernel, stride, padding), block=block)
    return col.array.reshape(ref_shape), src, col, threads


section("The reference and the kernel")
print(inspect.getsource(F.im2col_array))
print(inspect.getsource(fast_gpu.im2col_kernel))
print("  The reference pads x, then makes one strided copy per kernel offset (ki, kj): KH*KW whole-array")
print("  operations. The kernel is one launch: thread i computes element i of col, finds its row (ch, ki, kj) and")
print("  column (b, oy, ox) by division and remainder, and copies one pixel, or writes 0 in the padding.")

# %%
section("Thread by thread: 1 image, 2 channels, 4x4, a 3x3 kernel, padding 1")
x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
kernel, stride, padding = (3, 3), (1, 1), (1, 1)
reference = F.im2col_array(x, kernel, stride, padding)
col, src, out, threads = im2col_in_python(x, kernel, stride, padding, block=64)
print(f"  col is {reference.shape[0]} x {reference.shape[1]} = {reference.size} elements; "
      f"{threads // 64} blocks of 64 threads launched")
claim(np.array_equal(col, reference), "the kernel run in Python, thread by thread, gives im2col_array's columns")
writers = np.zeros(reference.size, dtype=int)
for t, i in out.writes:
    writers[i] += 1
claim((writers == 1).all() and all(t == i for t, i in out.writes),
      f"each of the {reference.size} elements of col is written once, by the thread of its own index")
claim(len({t for t, _ in out.writes}) == reference.size and threads == -(-reference.size // 64) * 64 > reference.size,
      f"{reference.size} threads write, as many as col has elements; the launch rounds up to whole blocks "
      f"({threads}), and the extra threads fail `i < total` and do nothing")
read_by = {t: i for t, i in src.reads}
inside = F.im2col_array(np.ones_like(x), kernel, stride, padding).ravel() == 1  # 0 where the window is off x
claim(len(read_by) == len(src.reads) and sorted(read_by) == np.flatnonzero(inside).tolist(),
      f"a thread reads at most one pixel: the {len(src.reads)} whose element lies on x read one, the other "
      f"{reference.size - len(src.reads)} write the padding's 0 and read nothing")
per_pixel = np.bincount([i for _, i in src.reads], minlength=x.size).reshape(x.shape)
print("  how many threads read each pixel of channel 0:\n   " + str(per_pixel[0, 0]).replace("\n", "\n   "))
claim(per_pixel[0, 0, 1, 1] == 9 and per_pixel[0, 0, 0, 0] == 4,
      "an inner pixel is read by 9 threads (one per window holding it), a corner one by 4")

# %%
section("The mapping, drawn")
plt = pyplot()
rows, cols = reference.shape
pixel = np.full(reference.size, -1)
for t, i in src.reads:
    pixel[t] = i
colors = plt.get_cmap("viridis")
fig, (ax, ax_x) = plt.subplots(1, 2, figsize=(14, 7.5), gridspec_kw=dict(width_ratios=[16, 5]))
grid = np.ma.masked_less(pixel.reshape(rows, cols), 0)
ax.imshow(grid, cmap=colors, vmin=0, vmax=x.size - 1, aspect="auto")
for r in range(rows):
    for c in range(cols):
        t = r * cols + c
        text = f"t{t}\nx{pixel[t]}" if pixel[t] >= 0 else f"t{t}\n0"
        ax.text(c, r, text, ha="center", va="center", fontsize=5.5, color="white" if 0 <= pixel[t] < 20 else "black")
ax.set_facecolor("0.85")
ax.set_xticks(range(cols), [f"{oy},{ox}" for oy in range(4) for ox in range(4)], fontsize=7)
ax.set_yticks(range(rows), [f"{ch},{ki},{kj}" for ch in range(2) for ki in range(3) for kj in range(3)], fontsize=7)
ax.set_xlabel("column (oy, ox): the window")
ax.set_ylabel("row (ch, ki, kj): the position in the window")
ax.set_title("col: thread t writes the element; xP is the pixel it reads (grey: padding, it writes 0)")
ax_x.imshow(np.vstack([x[0, 0], np.full((1, 4), np.nan), x[0, 1]]), cmap=colors, vmin=0, vmax=x.size - 1)
for ch in range(2):
    for yy in range(4):
        for xx in range(4):
            p = (ch * 4 + yy) * 4 + xx
            ax_x.text(xx, yy + 5 * ch, f"x{p}\n{per_pixel[0, ch, yy, xx]} reads", ha="center", va="center",
                      fontsize=7, color="white" if p < 20 else "black")
ax_x.set_xticks([])
ax_x.set_yticks([1.5, 6.5], ["channel 0", "channel 1"])
ax_x.set_title("x, flat index P")
save_figure(fig, "22_im2col_threads.png")

# %%
section("Stride 2: 2 images, 3 channels, 7x6, a 3x3 kernel, padding 1")
x2 = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
reference2 = F.im2col_array(x2, (3, 3), (2, 2), (1, 1))
col2, src2, out2, _ = im2col_in_python(x2, (3, 3), (2, 2), (1, 1))
claim(np.array_equal(col2, reference2), f"with stride 2 the kernel's {reference2.shape[0]} x {reference2.shape[1]} "
      "columns equal im2col_array's too")
claim(sorted(i for _, i in out2.writes) == list(range(reference2.size)),
      "again each element is written by exactly one thread")

# %%
section("col2im: one thread per input pixel")
print(inspect.getsource(fast_gpu.col2im_kernel))
g = np.random.default_rng(1).integers(-8, 9, reference2.shape).astype(np.float32)  # integers: sums exact
gcol, gx = Traced(g.ravel()), Traced(np.full(x2.size, np.nan, dtype=np.float32))
fast_gpu.run_in_python(fast_gpu.col2im_kernel, x2.size, gcol, gx, *sizes(x2.shape, (3, 3), (2, 2), (1, 1)))
claim(np.array_equal(gx.array.reshape(x2.shape), F.col2im_array(g, x2.shape, (3, 3), (2, 2), (1, 1))),
      "each thread's sum over the windows holding its pixel equals col2im_array")
written = np.bincount([i for _, i in gx.writes], minlength=x2.size)
claim((written == 1).all() and all(t == i for t, i in gx.writes),
      f"no two threads write one pixel: each of the {x2.size} pixels is written once, by its own thread (no atomics)")
came_from = {t: i for t, i in src2.reads}  # im2col: element t of col is a copy of pixel came_from[t]
read_by = {i: t for t, i in gcol.reads}  # col2im: element i of col is read by thread read_by[i]
claim(len(read_by) == len(gcol.reads) and read_by == came_from,
      f"col2im reads each of the {len(read_by)} column elements that hold a pixel once, in the thread of that "
      "very pixel, and never the padding's: it gathers back exactly what im2col copied out")

# %%
section("On the card")
if mv.cuda.is_available():
    mv.tiers.enable_fast_gpu()
    rng = np.random.default_rng(2)
    shape = (8, 16, 32, 32) if QUICK else (32, 64, 56, 56)
    xd = mv.tensor(rng.standard_normal(shape).astype(np.float32), device="cuda").data
    args = ((3, 3), (1, 1), (1, 1))
    ref_col, fast_col = F.im2col_array(xd, *args), fast_gpu.im2col(xd, *args)
    claim(bool((ref_col == fast_col).all()), f"on the GPU the kernel's columns equal the reference's for x {shape}")
    gd = fast_col * 0.5 - 1
    gap = abs(F.col2im_array(gd, shape, *args) - fast_gpu.col2im(gd, shape, *args)).max()
    claim(bool(gap <= 1e-5 * 9 * abs(gd).max()),  # a pixel sums at most 9 copies
          "and col2im's sums agree with the reference's (to float32 rounding: the order of the sums differs)")
    for name, fn in (("reference im2col_array", lambda: F.im2col_array(xd, *args)),
                     ("im2col_kernel", lambda: fast_gpu.im2col(xd, *args)),
                     ("reference col2im_array", lambda: F.col2im_array(gd, shape, *args)),
                     ("col2im_kernel", lambda: fast_gpu.col2im(gd, shape, *args))):
        fn()
        mv.cuda.synchronize()
        best = float("inf")
        for _ in range(5 if QUICK else 20):
            start = time.perf_counter()
            fn()
            mv.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        print(f"  {name:24s} {best * 1e3:7.3f} ms (measured on this card, the shortest of the runs)")
    with mv.kernels("fast"):
        w = mv.tensor(rng.standard_normal((32, shape[1], 3, 3)).astype(np.float32), device="cuda")
        y_fast = F.conv2d(mv.tensor(xd), w, padding=1).numpy()
    with mv.kernels("reference"):
        y_ref = F.conv2d(mv.tensor(xd), w, padding=1).numpy()
    with mv.kernels("fast"):
        swapped = mv.tiers.variant(F.Conv2dFunction, mv.backend.get_array_module(xd)) is fast_gpu.Conv2dFunction
    claim(swapped and np.allclose(y_fast, y_ref, rtol=1e-5, atol=1e-5 * abs(y_ref).max()),
          "in the fast tier a convolution runs fast_gpu.Conv2dFunction (the kernels' im2col and col2im), and "
          "equals the reference tier's")
else:
    print("  No GPU here (minivgg.cuda.is_available() is False): the kernel ran above as Python, one thread after")
    print("  another. On a card the same function is compiled to CUDA by cupyx.jit and its threads run at once,")
    print("  32 to a warp; neighbouring threads write neighbouring elements of col, so their writes coalesce.")

notice("The kernel needs no loop over kernel offsets: its grid of threads is the loop, one thread per element of col.",
       "Padding costs no copy: a thread whose window falls off x writes 0 instead of reading.",
       "col2im turns the mapping around, one thread per pixel summing its windows, so no two threads write one "
       "place and no atomic additions are needed.")

exercises("Thread 100 of the first case: work out by hand its (ch, ki, kj) and (oy, ox), and the pixel it reads.",
          "Why does the kernel compute yp = oy*sh + ki in padded coordinates and compare it with ph, rather than "
          "yp - ph and compare with 0? (Hint: C's / and % on negative numbers.)",
          "Write col2im with one thread per element of col and an atomic add into gx: what changes in the result "
          "from one run to the next, and why?")
