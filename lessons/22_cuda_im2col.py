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
    """A 1-D array that records, for each read and write, the thread doing it (read from the kernel's `jit`): in
    its own lists, and in order in `events`, which arrays may share."""

    def __init__(self, array, events=None):
        self.array, self.reads, self.writes = array, [], []
        self.events = [] if events is None else events

    @staticmethod
    def thread():
        j = fast_gpu.jit
        return int(j.blockIdx.x * j.blockDim.x + j.threadIdx.x)

    def __getitem__(self, i):
        self.reads.append((self.thread(), int(i)))
        self.events.append(("read", self, self.thread(), int(i)))
        return self.array[i]

    def __setitem__(self, i, value):
        self.writes.append((self.thread(), int(i)))
        self.events.append(("write", self, self.thread(), int(i)))
        self.array[i] = value


def sizes(shape, kernel, stride, padding):
    n, c, h, w = shape
    oh, ow = F.output_size("im2col", shape, kernel, stride, padding)
    return fast_gpu._ints(c, h, w, *kernel, *stride, *padding, n, oh, ow)


def im2col_in_python(x, kernel, stride, padding, block=fast_gpu.BLOCK):
    """The kernel's columns; its traced input and output; the threads that have work (one per channel, image and
    output pixel, as fast_gpu.im2col launches it) and the threads launched; and for each element of col the
    pixel copied into it (-1: the padding's 0)."""
    ref_shape = F.im2col_array(x, kernel, stride, padding).shape
    events = []
    src, col = Traced(x.ravel(), events), Traced(np.full(int(np.prod(ref_shape)), np.nan, dtype=x.dtype), events)
    n, c = x.shape[:2]
    oh, ow = F.output_size("im2col", x.shape, kernel, stride, padding)
    tasks = c * n * oh * ow
    threads = fast_gpu.run_in_python(fast_gpu.im2col_kernel, tasks, src, col, *sizes(x.shape, kernel, stride, padding),
                                     block=block)
    source = np.full(col.array.size, -1)
    for (kind, array, thread, i), (next_kind, next_array, next_thread, j) in zip(events, events[1:]):
        if kind == "read" and array is src and next_kind == "write" and next_array is col and thread == next_thread:
            source[j] = i  # `col[out] = x[...]`: the read, then the write of what was read
    return col.array.reshape(ref_shape), src, col, tasks, threads, source


def pixel_names(x, kernel, stride, padding):
    """im2col of the pixels' flat indices: which pixel each element of col should hold (-1: padding)."""
    names = (np.arange(x.size) + 1).reshape(x.shape).astype(np.float64)
    return F.im2col_array(names, kernel, stride, padding).ravel().astype(int) - 1


section("The reference and the kernel")
print(inspect.getsource(F.im2col_array))
print(inspect.getsource(fast_gpu.im2col_kernel))
print("  The reference pads x, then makes one strided copy per kernel offset (ki, kj): KH*KW whole-array")
print("  operations. The kernel is one launch: thread i finds its channel, image and output pixel (ch, b, oy, ox)")
print("  by division, then walks the KH*KW offsets of that window, copying one pixel into each of col's rows")
print("  (ch, ki, kj) at column (b, oy, ox), or writing 0 in the padding.")

# %%
section("Thread by thread: 1 image, 2 channels, 4x4, a 3x3 kernel, padding 1")
x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
kernel, stride, padding = (3, 3), (1, 1), (1, 1)
block = 64  # the drawing's block size; the card's launches use fast_gpu.BLOCK threads a block
reference = F.im2col_array(x, kernel, stride, padding)
col, src, out, tasks, threads, source = im2col_in_python(x, kernel, stride, padding, block=block)
rows, cols = reference.shape
print(f"  col is {rows} x {cols} = {reference.size} elements; {tasks} threads have work (2 channels x 16 output "
      f"pixels), launched as {threads // block} block(s) of {block}")
claim(np.array_equal(col, reference), "the kernel run in Python, thread by thread, gives im2col_array's columns")
writers = np.bincount([i for _, i in out.writes], minlength=reference.size)
per_thread = np.bincount([t for t, _ in out.writes], minlength=threads)
claim((writers == 1).all() and (per_thread[:tasks] == 9).all() and (per_thread[tasks:] == 0).all()
      and all(i % cols == t % cols and i // cols // 9 == t // cols for t, i in out.writes),
      f"each of the {reference.size} elements of col is written once: thread t writes the 9 elements of column "
      f"t mod {cols} in its channel's 9 rows, and the {threads - tasks} threads past the {tasks} (the launch "
      "rounds up to whole blocks) fail `i < total` and write nothing")
claim(np.array_equal(source, pixel_names(x, kernel, stride, padding)),
      "every element that lies on x is a copy of the very pixel its row and column name, read by the thread "
      "that writes it just before; the padding's elements are written 0 with no read")
per_pixel = np.bincount([i for _, i in src.reads], minlength=x.size).reshape(x.shape)
print("  how many threads read each pixel of channel 0:\n   " + str(per_pixel[0, 0]).replace("\n", "\n   "))
claim(per_pixel[0, 0, 1, 1] == 9 and per_pixel[0, 0, 0, 0] == 4,
      "an inner pixel is read by 9 threads (one per window holding it), a corner one by 4")

# %%
section("The mapping, drawn")
plt = pyplot()
writer = np.full(reference.size, -1)
for t, i in out.writes:
    writer[i] = t
colors = plt.get_cmap("viridis")
fig, axes = plt.subplots(2, 2, figsize=(17, 13), gridspec_kw=dict(width_ratios=[16, 4.5], height_ratios=[4, 18]))
ax_t, ax, ax_x = axes[0, 0], axes[1, 0], axes[1, 1]
axes[0, 1].axis("off")
lanes = np.arange(threads).reshape(-1, cols)  # the block's threads, cols to a row
ax_t.imshow(np.where(lanes < tasks, lanes // cols, np.nan), cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
for t in range(threads):
    r, q = divmod(t, cols)
    ax_t.text(q, r, f"t{t}\n" + (f"ch{t // cols} {(t % cols) // 4},{t % 4}" if t < tasks else "idle"),
              ha="center", va="center", fontsize=8)
ax_t.add_patch(plt.Rectangle((-0.5, tasks // cols - 0.5), cols, (threads - tasks) // cols, facecolor="none",
                             edgecolor="0.5", hatch="//"))
ax_t.add_patch(plt.Rectangle((-0.45, -0.45), cols - 0.1, threads // cols - 0.1, fill=False, edgecolor="red",
                             linewidth=2))
ax_t.set_xticks([])
ax_t.set_yticks([])
ax_t.set_title(f"the launch: one block of {block} threads (red; the card's blocks hold {fast_gpu.BLOCK}). Thread t "
               f"works on channel t // {cols}\nand output pixel (oy, ox) of t mod {cols}; the last "
               f"{threads - tasks} fail `i < total` and do nothing (hatched)", fontsize=11)
ax.imshow(np.ma.masked_less(source.reshape(rows, cols), 0), cmap=colors, vmin=0, vmax=x.size - 1, aspect="auto")
for r in range(rows):
    for q in range(cols):
        e = r * cols + q
        text = f"t{writer[e]}\nx{source[e]}" if source[e] >= 0 else f"t{writer[e]}\n0"
        ax.text(q, r, text, ha="center", va="center", fontsize=8, color="white" if 0 <= source[e] < 20 else "black")
ax.axhline(8.5, color="red", linewidth=1.5)
ax.set_facecolor("0.85")
ax.set_xticks(range(cols), [f"{oy},{ox}" for oy in range(4) for ox in range(4)], fontsize=9)
ax.set_yticks(range(rows), [f"{ch},{ki},{kj}" for ch in range(2) for ki in range(3) for kj in range(3)], fontsize=9)
ax.set_xlabel("column (oy, ox): the window")
ax.set_ylabel("row (ch, ki, kj): the position in the window")
ax.set_title("col: tT wrote the element, xP is the pixel it copied (grey: padding, it wrote 0); each thread fills "
             "one column of its channel's 9 rows", fontsize=11)
ax_x.imshow(np.vstack([x[0, 0], np.full((1, 4), np.nan), x[0, 1]]), cmap=colors, vmin=0, vmax=x.size - 1)
for ch in range(2):
    for yy in range(4):
        for xx in range(4):
            p = (ch * 4 + yy) * 4 + xx
            ax_x.text(xx, yy + 5 * ch, f"x{p}\n{per_pixel[0, ch, yy, xx]} reads", ha="center", va="center",
                      fontsize=9, color="white" if p < 20 else "black")
ax_x.set_xticks([])
ax_x.set_yticks([1.5, 6.5], ["channel 0", "channel 1"])
ax_x.set_title("x, flat index P", fontsize=11)
save_figure(fig, "22_im2col_threads.png", dpi=100)

# %%
section("Stride 2: 2 images, 3 channels, 7x6, a 3x3 kernel, padding 1")
x2 = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
reference2 = F.im2col_array(x2, (3, 3), (2, 2), (1, 1))
col2, src2, out2, _, _, source2 = im2col_in_python(x2, (3, 3), (2, 2), (1, 1))
claim(np.array_equal(col2, reference2), f"with stride 2 the kernel's {reference2.shape[0]} x {reference2.shape[1]} "
      "columns equal im2col_array's too")
claim(sorted(i for _, i in out2.writes) == list(range(reference2.size))
      and np.array_equal(source2, pixel_names(x2, (3, 3), (2, 2), (1, 1))),
      "again each element is written by exactly one thread, with the pixel its row and column name")

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
came_from = {e: i for e, i in enumerate(source2) if i >= 0}  # im2col: element e of col is a copy of pixel i
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
    print("  another. On a card the same function is compiled to CUDA by cupyx.jit and launched in blocks of")
    print(f"  {fast_gpu.BLOCK} threads (the drawing used 64 to stay small). The card schedules the blocks over its")
    print("  multiprocessors, as many at a time as fit, the rest after them; a block's threads run 32 to a warp,")
    print("  and neighbouring threads write neighbouring elements of col, so a warp's writes coalesce.")

notice("The reference loops over the kernel's offsets with whole-array copies; the kernel's grid of threads is the "
       "loop over windows, one thread per channel and output pixel, each walking its window's KH*KW offsets.",
       "Padding costs no copy: a thread whose window falls off x writes 0 instead of reading.",
       "col2im turns the mapping around, one thread per pixel summing its windows, so no two threads write one "
       "place and no atomic additions are needed.")

exercises("Thread 21 of the first case: work out by hand its channel and (oy, ox), the 9 elements of col it writes "
          "and the pixels it reads.",
          "col2im_kernel finds the first window reaching its pixel as (max(yp + 1, kh) - kh + sh - 1) // sh, a "
          "numerator that is never negative, and im2col_kernel compares yp with ph rather than yp - ph with 0. "
          "Work out (yp - kh + sh) // sh for yp = 0, kh = 3, sh = 2 with Python's // and with C's / on signed "
          "integers (which rounds toward zero), against ceil((yp - kh + 1) / sh); then yp - ph for yp = 0, ph = 1 "
          "in unsigned 32-bit integers, the type launch gives the sizes when they fit (fast_gpu.index_type).",
          "Write col2im with one thread per element of col and an atomic add into gx: what changes in the result "
          "from one run to the next, and why?")
