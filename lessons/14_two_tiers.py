"""Lesson 14: two tiers of kernels. The reference convolution, max-pooling and ReLU (minivgg/functional.py,
the ones lessons 04-06 read) against the fast CPU variants (minivgg/fast_cpu.py): the same numbers forward and
backward, the time of each op in each tier, and what each of the fast tier's tricks buys."""
# %%
import os
import time
import tracemalloc

# One BLAS thread (OpenBLAS reads this when NumPy loads): both tiers call the same matrix product, and with one
# thread its time depends on its own work, not on when a second thread gets a core of a busy machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import minivgg as mv  # noqa: E402
import minivgg.functional as F  # noqa: E402
from minivgg import cpu, fast_cpu, models  # noqa: E402
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section  # noqa: E402

cpu.tune()  # freed buffers are kept for reuse, so a timed call does not pay page faults for fresh memory
batch, repeats, step_repeats = (64, 25, 3) if QUICK else (128, 40, 5)  # repeats: for one op, cheap
rng = np.random.default_rng(0)
TIERS = ("reference", "fast")

section("One switch, two kernels behind every op")
x = mv.tensor(rng.standard_normal((2, 3, 8, 8)), requires_grad=True)
w = mv.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
ran = {}
for tier in TIERS:
    with mv.kernels(tier):
        ran[tier] = type(F.conv2d(x, w, padding=1).creator)
    print(f"  under {tier!r:11}: F.conv2d builds a {ran[tier].__module__}.{ran[tier].__name__}")
claim(ran["reference"] is F.Conv2dFunction and ran["fast"] is fast_cpu.Conv2dFunction,
      "the same call runs functional.py's convolution under 'reference' and fast_cpu.py's under 'fast'")
claim(issubclass(ran["fast"], ran["reference"]) and mv.get_kernels() == "fast",
      "the fast op is a subclass of the reference one, and leaving `with mv.kernels(...)` restores 'fast'")

# %%
section(f"The same numbers, forward and backward (batch {batch})")
# Two layers of D2L's VGG-11 (channels / 4) at 32x32: block 2 (16x16 maps) and block 5 (2x2 maps).
LAYERS = {"16x16 maps": (16, 32, 16), "2x2 maps": (128, 128, 2)}  # in channels, out channels, side
OPS = {"conv": lambda x, w, b: F.conv2d(x, w, b, padding=1), "relu": F.relu,
       "pool": lambda x: F.max_pool2d(x, 2)}


def layer_arrays(channels, out_channels, side):
    """The conv's input, weight (He's scale) and bias for one layer, float32."""
    x = rng.standard_normal((batch, channels, side, side)).astype(np.float32)
    w = rng.standard_normal((out_channels, channels, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * channels))
    return x, w, rng.standard_normal(out_channels).astype(np.float32)


def forward_backward(tier, op, arrays, upstream):
    """op on fresh leaf tensors under `tier`, then `upstream` (a gradient of the output) sent back.
    Returns the output array and the inputs' gradients."""
    with mv.kernels(tier):
        leaves = [mv.tensor(a, requires_grad=True) for a in arrays]
        y = op(*leaves)
        y.backward(mv.tensor(upstream))
    return y.data, [leaf.grad.numpy() for leaf in leaves]


worst = {}
for layer, shape in LAYERS.items():
    x_, w_, b_ = layer_arrays(*shape)
    for name, arrays in (("conv", (x_, w_, b_)), ("relu", (x_,)), ("pool", (x_,))):
        with mv.no_grad():
            out_shape = OPS[name](*map(mv.tensor, arrays)).shape
        upstream = rng.standard_normal(out_shape).astype(np.float32)
        (y_ref, g_ref), (y_fast, g_fast) = (forward_backward(t, OPS[name], arrays, upstream) for t in TIERS)
        gaps = [np.abs(a - b).max() / np.abs(a).max() for a, b in zip([y_ref, *g_ref], [y_fast, *g_fast])]
        worst[layer, name] = max(gaps)
        print(f"  {name} on {layer}: largest difference {worst[layer, name]:.1e} of the largest value "
              f"(output and {len(g_ref)} gradient{'s' * (len(g_ref) > 1)})")
claim(all(worst[layer, "conv"] < 1e-5 for layer in LAYERS), "the convolutions agree to float32 rounding "
      "(about 1e-7 per operation): the same products, summed in another order")
claim(all(worst[layer, op] == 0 for layer in LAYERS for op in ("relu", "pool")), "ReLU and max-pooling agree bit "
      "for bit, forward and backward: they choose and copy values, they add nothing up")

mv.manual_seed(0)  # the same net on every run
net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 8 if QUICK else 4)), (1, 1, 32, 32),
                        "kaiming")
images = mv.tensor(rng.random((batch, 1, 32, 32)))
labels = mv.tensor(rng.integers(0, 10, batch))


def training_step(tier):
    """Loss and every parameter's gradient of one step of the whole network (dropout masks from seed 0)."""
    with mv.kernels(tier):
        mv.manual_seed(0)
        net.zero_grad()
        loss = F.cross_entropy(net(images), labels)
        loss.backward()
    return loss.item(), {name: p.grad.numpy() for name, p in net.named_parameters()}


(loss_ref, grads_ref), (loss_fast, grads_fast) = training_step("reference"), training_step("fast")
step_gap = max(np.abs(grads_ref[k] - grads_fast[k]).max() / np.abs(grads_ref[k]).max() for k in grads_ref)
print(f"  the whole VGG: loss {loss_ref:.6f} (reference) and {loss_fast:.6f} (fast); {len(grads_ref)} gradients, "
      f"largest relative difference {step_gap:.1e}")
claim(len(grads_ref) == 22 and abs(loss_ref - loss_fast) < 1e-5 * loss_ref and step_gap < 1e-4,
      "a whole training step of VGG gives the same loss and the same gradients (weights and biases) for all 11 "
      "layers in both tiers")

# %%
section(f"Time, op by op (best of {repeats}; the tiers take turns, so both see the same noise)")


def timed(tier, op, arrays):
    """(forward seconds, backward seconds) of one call on fresh leaves; the output's gradient is ones laid out
    in memory as the output is (as ReLU's backward would hand it on)."""
    with mv.kernels(tier):
        leaves = [mv.tensor(a, requires_grad=True) for a in arrays]
        start = time.perf_counter()
        y = op(*leaves)
        middle = time.perf_counter()
        g = mv.tensor(np.ones_like(y.data))  # ones_like and the copy keep y's memory order
        start_back = time.perf_counter()
        y.backward(g)
        return middle - start, time.perf_counter() - start_back


times = {}  # (layer, op, tier) -> (forward, backward) in seconds, the best of the repeats
for layer, shape in LAYERS.items():
    x_, w_, b_ = layer_arrays(*shape)
    conv_out = {}  # each tier's ReLU and pooling get the array its own convolution produced, in its layout
    for tier in TIERS:
        with mv.kernels(tier), mv.no_grad():
            conv_out[tier] = F.relu(F.conv2d(*map(mv.tensor, (x_, w_, b_)), padding=1)).data
    for name in OPS:
        runs = {tier: [] for tier in TIERS}
        for _ in range(repeats):
            for tier in TIERS:
                runs[tier].append(timed(tier, OPS[name], (x_, w_, b_) if name == "conv" else (conv_out[tier],)))
        for tier in TIERS:
            times[layer, name, tier] = tuple(np.min(runs[tier], axis=0))

print(f"  {'op':<26} {'reference ms':>13} {'fast ms':>9} {'reference / fast':>17}")
for layer in LAYERS:
    for name in OPS:
        for part, which in (("forward", 0), ("backward", 1)):
            ref, fast = (times[layer, name, t][which] * 1e3 for t in TIERS)
            print(f"  {name + ' ' + part + ', ' + layer:<26} {ref:>13.2f} {fast:>9.2f} {ref / fast:>16.1f}x")


def both_ways(layer, name, tier):
    return sum(times[layer, name, tier])


# Times depend on the machine and on what else runs on it: printed, never claimed.
for layer, name, why in (("2x2 maps", "conv", "where keeping the batch innermost is expected to pay most"),
                         ("16x16 maps", "pool", "without the window array")):
    ratio = both_ways(layer, name, "reference") / both_ways(layer, name, "fast")
    print(f"  measured: {name} on {layer} ({why}), forward and backward, the reference took {ratio:.2f}x "
          f"the fast tier's time")

# %%
section("What each trick buys")
print("  1. batch innermost: im2col copies runs of OW*N values instead of OW")
unroll = {}
for layer, (channels, _, side) in LAYERS.items():
    x_ = rng.standard_normal((batch, channels, side, side)).astype(np.float32)
    x_last = np.ascontiguousarray(x_.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)  # how the fast conv leaves it
    best, cols = {"reference": np.inf, "fast": np.inf}, {}
    for _ in range(repeats):
        for tier, fn, arr in (("reference", F.im2col_array, x_), ("fast", fast_cpu.im2col_batch_last, x_last)):
            start = time.perf_counter()
            cols[tier] = fn(arr, (3, 3), (1, 1), (1, 1))
            best[tier] = min(best[tier], time.perf_counter() - start)
    rows = cols["fast"].shape[0]
    # The fast columns are ordered (oh, ow, n), the reference's (n, oh, ow): reorder them to compare.
    reordered = cols["fast"].reshape(rows, side, side, batch).transpose(0, 3, 1, 2).reshape(rows, -1)
    unroll[layer] = np.array_equal(reordered, cols["reference"])
    print(f"     im2col on {layer:<10}: reference {best['reference'] * 1e3:6.2f} ms, batch innermost "
          f"{best['fast'] * 1e3:6.2f} ms ({best['reference'] / best['fast']:.1f}x, measured here)")
claim(all(unroll.values()), "both im2cols copy the same values, only in another order: the batch-innermost one "
      "moves runs of OW*N values where the reference moves runs of OW (2 on 2x2 maps)")

x_, w_, b_ = layer_arrays(*LAYERS["16x16 maps"])
with mv.no_grad():
    y_ = F.conv2d(*map(mv.tensor, (x_, w_, b_)), padding=1).data  # fast tier: batch innermost in memory
with mv.kernels("reference"), mv.no_grad():
    y_ref = F.conv2d(*map(mv.tensor, (x_, w_, b_)), padding=1).data
print(f"     the convolution's output, shape {y_.shape}: axes in memory order {fast_cpu.memory_order(y_ref)} "
      f"(reference), {fast_cpu.memory_order(y_)} (fast)")
claim(fast_cpu.memory_order(y_) == (1, 2, 3, 0) and fast_cpu.memory_order(y_ref) == (0, 1, 2, 3),
      "the fast output is an (N, C, H, W) view of memory laid out (C, H, W, N): no copy to put N first")

print(f"  2. the convolution keeps its input for backward, not its columns (the 16x16 layer; a layer whose columns "
      f"exceed {fast_cpu.COLUMN_BUDGET // 2**20} MiB is unrolled a group of channels at a time)")
leaves = [mv.tensor(a, requires_grad=True) for a in (x_, w_, b_)]  # the input exists before the layer runs
conv_memory = {}
for tier in TIERS:
    with mv.kernels(tier):
        tracemalloc.start()
        out = F.conv2d(*leaves, padding=1)
        held = tracemalloc.get_traced_memory()[0]  # new memory alive until backward: the output and what is kept
        tracemalloc.stop()
    kept = {name: array for name, array in vars(out.creator).items() if isinstance(array, np.ndarray)}
    for array in out.creator.saved_tensors:  # what went through save_for_backward
        if array is not None:
            kept["x" if np.shares_memory(array, leaves[0].data) else "weight" if array.shape == w_.shape
                 else "saved"] = array
    conv_memory[tier] = (held, kept)
    listing = ", ".join(f"{name} {array.shape} {array.nbytes / 2**20:.2f} MiB" for name, array in kept.items())
    print(f"     {tier:<9}: new memory held after the forward pass {held / 2**20:5.2f} MiB; kept: {listing}")
    del out
columns = conv_memory["reference"][1]["col"]
claim(conv_memory["reference"][0] - conv_memory["fast"][0] > 0.9 * columns.nbytes and
      np.shares_memory(conv_memory["fast"][1]["x"], leaves[0].data), "the reference holds its im2col columns "
      f"({columns.nbytes / 2**20:.1f} MiB) until backward; the fast tier holds only its output and keeps the input it "
      "was given (no copy), and unrolls it again in backward (tracemalloc counts bytes: the same on any machine)")

print("  3. max-pooling without the window array, with a one-byte argmax")
memory = {}
feature = mv.tensor(F.relu(mv.tensor(y_ref)).data, requires_grad=True)
for tier in TIERS:
    with mv.kernels(tier):
        tracemalloc.start()
        pooled = F.max_pool2d(feature, 2)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    kept = pooled.creator.argmax
    memory[tier] = (peak, kept.nbytes)
    print(f"     {tier:<9}: peak memory of the forward pass {peak / 2**20:5.2f} MiB; kept for backward: argmax "
          f"{kept.dtype} {kept.shape}, {kept.nbytes / 2**20:.2f} MiB")
claim(memory["reference"][1] == 8 * memory["fast"][1], "the argmax kept for backward takes 8 times less memory "
      "in the fast tier (uint8 instead of int64)")
claim(memory["fast"][0] < memory["reference"][0] / 2, "and the forward pass needs less than half the reference's "
      "peak memory: it never builds the (N, C, 4, OH, OW) array of windows")

print(f"  4. threads: elementwise work cut into channel slices ({cpu.CPU_THREADS} threads here); one thread against "
      "the default, fast tier, 16x16 maps")
default_threads, thread_times = cpu.CPU_THREADS, {}
for threads in (1, default_threads):
    cpu.CPU_THREADS = threads  # cpu.parallel reads it at every call
    thread_times[threads] = {name: min(sum(timed("fast", OPS[name], (y_,))) for _ in range(repeats))
                             for name in ("relu", "pool")}
cpu.CPU_THREADS = default_threads
for name in ("relu", "pool"):
    one, many = thread_times[1][name], thread_times[default_threads][name]
    print(f"     {name}: 1 thread {one * 1e3:.2f} ms, {default_threads} threads {many * 1e3:.2f} ms "
          f"({one / many:.2f}x)")
print("     (threads pay only when the cores are idle: on a shared machine this ratio moves from run to run)")

# %%
section("A whole training step")
step = {tier: np.inf for tier in TIERS}
for _ in range(step_repeats):
    for tier in TIERS:
        start = time.perf_counter()
        training_step(tier)
        step[tier] = min(step[tier], time.perf_counter() - start)
print(f"  forward and backward of the network above, batch {batch}: reference {step['reference'] * 1e3:.0f} ms, "
      f"fast {step['fast'] * 1e3:.0f} ms ({step['reference'] / step['fast']:.1f}x)")

plt = pyplot()
fig, ax = plt.subplots(figsize=(9, 4.6))
labels_ = [f"{name} {part}, {layer}" for layer in LAYERS for name in OPS for part in ("fwd", "bwd")]
bars = {tier: [t * 1e3 for layer in LAYERS for name in OPS for t in times[layer, name, tier]] + [step[tier] * 1e3]
        for tier in TIERS}
ypos = np.arange(len(labels_) + 1)
speedup = np.array(bars["reference"]) / np.array(bars["fast"])
ax.barh(ypos, speedup, height=0.6, color=np.where(speedup >= 1, "tab:orange", "tab:blue"))
ax.axvline(1, color="black", linewidth=1)
for y, ratio_, ref, fast in zip(ypos, speedup, bars["reference"], bars["fast"]):
    ax.text(ratio_ + 0.05 * speedup.max(), y, f"{ratio_:.1f}x  ({ref:.2f} ms / {fast:.2f} ms)", va="center",
            fontsize=8)
ax.set_yticks(ypos, labels_ + ["whole training step"])
ax.invert_yaxis()
ax.set_xlim(0, speedup.max() * 1.6)
ax.set_xlabel("reference time / fast time (right of the line at 1: the fast tier is faster), measured on this "
              "machine")
ax.set_title(f"Reference against fast kernels, batch {batch}: best of the repeats (reference ms / fast ms)")
ax.grid(True, axis="x", alpha=0.3)
save_figure(fig, "14_two_tiers.png")

notice("The two tiers compute the same numbers; only the convolutions differ, in the last bits, because their sums "
       "run in another order.",
       "The fast tier wins where the reference wastes work or memory: short copies on tiny maps, a window array "
       "and an int64 argmax in pooling, im2col columns kept until backward (the fast tier recomputes them). "
       "Where there is nothing to save (ReLU) there is no trick to buy time: read the ReLU rows' measured ratios "
       "above, not a rule.",
       "Time on a shared machine is noisy: take the best of several runs, let the contenders take turns, and "
       "report times as measurements; what a lesson claims holds on any machine.")

exercises("Time the convolution on 32x32 maps with 16 channels (block 1). Which tier wins there, and why?",
          "Run the lesson with OPENBLAS_NUM_THREADS=2 set, then again while another program keeps both cores "
          "busy. Which timings move most, and why the matrix products?",
          "Read fast_cpu.MaxPool2dFunction: why must the backward add (+=) when windows overlap (kernel 3, "
          "stride 2) but may write (=) when they do not?")
