"""Lesson 16: LRN does not help. The paper's Table 3 puts configuration A-LRN at 29.7% top-1 and 10.5% top-5
error against A's 29.6% and 10.4%, and notes that LRN costs memory and computation time. Here A and A-LRN train
briefly on the same Fashion-MNIST images with the same seeds: what LRN costs (parameters, memory, time), what it
does to the activations, and the accuracy it buys."""
# %%
import os
import time
import tracemalloc

# One BLAS thread (OpenBLAS reads this when NumPy loads): several spin while they wait for each other, which on a
# busy machine costs far more than they save.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import minivgg as mv  # noqa: E402
import minivgg.functional as F  # noqa: E402
from minivgg import data, models, nn, optim, train  # noqa: E402
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section  # noqa: E402

mv.cpu.tune()  # freed buffers are kept for reuse: steady step times
CONFIGS = ("A", "A-LRN")
SEEDS = (0, 1, 2)
ratio, n_train, n_test, epochs, batch = (8, 1000, 1000, 1, 64) if QUICK else (4, 4000, 3000, 3, 128)
size = 32  # the smallest input that survives five poolings
rng = np.random.default_rng(0)


def build(config, seed):
    mv.manual_seed(seed)
    return models.initialize(models.vgg_from_config(config, num_classes=10, in_channels=1, ratio=ratio),
                             (1, 1, size, size), "kaiming")


section("Where A-LRN differs from A")
nets = {c: build(c, 0) for c in CONFIGS}
lrn = next(m for m in nets["A-LRN"].modules() if isinstance(m, nn.LocalResponseNorm))
print(f"  A's first block:     {list(nets['A'][0])}")
print(f"  A-LRN's first block: {list(nets['A-LRN'][0])}")
params = {c: net.num_parameters() for c, net in nets.items()}
print(f"  parameters: A {params['A']:,}, A-LRN {params['A-LRN']:,}")
claim(len(nets["A-LRN"][0]) == len(nets["A"][0]) + 1 and params["A"] == params["A-LRN"],
      "A-LRN is A with one LocalResponseNorm after the first convolution's ReLU, and it adds no parameter")

# %%
section("What LRN does to the activations it sees")
images = mv.tensor(data.load_fashion_mnist("test")[0][:batch, None] / np.float32(255))
images = mv.tensor(data.resize_bilinear(images.data, size))
seen = {}
handle = lrn.register_forward_hook(lambda module, inputs, out: seen.update(x=inputs[0].numpy(), y=out.numpy()))
with mv.no_grad():
    nets["A-LRN"](images)
handle.remove()
active = seen["x"] > 1e-3 * seen["x"].max()  # the ReLU's zeros stay zero
factor = seen["y"][active] / seen["x"][active]
print(f"  on {batch} Fashion-MNIST images in [0, 1]: output / input from {factor.min():.4f} to {factor.max():.4f}; "
      f"2^-0.75 = {2 ** -0.75:.4f}")
print("  minivgg's LRN is PyTorch's: b = a / (k + alpha / n * sum of a^2 over n = 5 channels)^beta. AlexNet's paper "
      "has alpha * sum, without the / n:")
print("  with the same constants this LRN normalizes 5 times more weakly (AlexNet's formula with alpha = 2e-5).")
claim(np.abs(factor / 2 ** -0.75 - 1).max() < 0.01, "with AlexNet's constants (k = 2, alpha = 1e-4) and pixels in "
      "[0, 1], LRN multiplies every activation by 2^-0.75 to within 1%: the sum of squares is too small to matter")
with mv.no_grad():
    scaled = lrn(mv.tensor(seen["x"] * 255)).numpy()  # pixels in 0..255, as the paper fed them
factor_255 = scaled[active] / (seen["x"][active] * 255)
print(f"  the same activations times 255: output / input from {factor_255.min():.3f} to {factor_255.max():.3f}")
claim(factor_255.min() < 0.9 * 2 ** -0.75, "on 0..255 pixels, the paper's scale, LRN does divide the strong "
      "activations by their neighbours' energy: on [0, 1] data it is close to a constant")

# %%
section(f"Cost per training step (batch {batch})")
labels = mv.tensor(rng.integers(0, 10, batch))
held, step = {}, {c: np.inf for c in CONFIGS}
for c in CONFIGS:
    tracemalloc.start()
    loss = F.cross_entropy(nets[c](images), labels)
    held[c] = tracemalloc.get_traced_memory()[0]  # what the graph keeps until backward
    tracemalloc.stop()
    del loss
for _ in range(3 if QUICK else 5):
    for c in CONFIGS:  # the two take turns, so both see the same load
        start = time.perf_counter()
        F.cross_entropy(nets[c](images), labels).backward()
        step[c] = min(step[c], time.perf_counter() - start)
activation = seen["x"].nbytes
print(f"  held between forward and backward: A {held['A'] / 2**20:.1f} MiB, A-LRN {held['A-LRN'] / 2**20:.1f} MiB "
      f"(the LRN's input is {activation / 2**20:.1f} MiB)")
print(f"  forward and backward, measured on this machine: A {step['A'] * 1e3:.0f} ms, "
      f"A-LRN {step['A-LRN'] * 1e3:.0f} ms (best of the repeats; on a busy machine either can come out ahead)")
claim(held["A-LRN"] - held["A"] > 1.5 * activation, f"A-LRN holds {(held['A-LRN'] - held['A']) / 2**20:.1f} MiB more: "
      "LRN keeps its output and its denominators, two more arrays the size of the first block's activations "
      "(tracemalloc counts bytes allocated: the same on any machine)")
layer_time = {}
for name, layer in (("LRN", lrn), ("ReLU", nn.ReLU())):
    best = np.inf
    for _ in range(10):
        x = mv.tensor(seen["x"], requires_grad=True)
        start = time.perf_counter()
        layer(x).backward(mv.tensor(np.ones_like(seen["x"])))
        best = min(best, time.perf_counter() - start)
    layer_time[name] = best
print(f"  on those activations, forward and backward, measured on this machine: LRN {layer_time['LRN'] * 1e3:.1f} ms, "
      f"ReLU {layer_time['ReLU'] * 1e3:.1f} ms ({layer_time['LRN'] / layer_time['ReLU']:.0f}x): squares, a sum over "
      "5 channels and a power, and the same again backward, where ReLU compares once")

# %%
section(f"Accuracy: {n_train} training images, {epochs} epoch{'s' * (epochs > 1)}, seeds {SEEDS}, Adam lr 1e-3")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
tests = data.DataLoader((test_x[:n_test], test_y[:n_test]), 500, resize=size)
runs = {}
for seed in SEEDS:
    for c in CONFIGS:
        net = build(c, seed)
        loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), batch, shuffle=True, resize=size, seed=seed)
        start = time.perf_counter()
        history = train.fit(net, loader, tests, optim.Adam(net.parameters(), lr=1e-3), epochs, progress=False,
                            log_every=4, print_fn=lambda *a: None)
        runs[c, seed] = history
        last = history["epochs"][-1]
        print(f"  {c:<6} seed {seed}: train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f} "
              f"({time.perf_counter() - start:.0f} s)")
acc = {c: np.array([runs[c, s]["epochs"][-1]["test_acc"] for s in SEEDS]) for c in CONFIGS}
S = len(SEEDS)
seed_var = np.mean([acc[c].var(ddof=1) for c in CONFIGS])  # one run's variance from seed to seed, pooled
typical = np.mean(list(acc.values()))
test_var = typical * (1 - typical) / n_test  # the n_test test images' own sampling variance
se_mean = np.sqrt(seed_var / S + test_var)  # of one configuration's mean over the seeds
se_gain = np.sqrt(2 * seed_var / S + 2 * test_var)  # of the difference of the two means
gain = acc["A-LRN"].mean() - acc["A"].mean()
print(f"  mean test accuracy over {S} seeds: A {acc['A'].mean():.3f}, A-LRN {acc['A-LRN'].mean():.3f} "
      f"(A-LRN - A = {gain:+.3f}); seed-to-seed std of one run {np.sqrt(seed_var):.3f}, standard error of the "
      f"difference {se_gain:.3f}")
claim(abs(gain) < 3 * se_gain, f"A-LRN and A differ by {gain:+.3f}, within three standard errors ({3 * se_gain:.3f}) "
      f"either way, over {S} seeds: no gain, and no loss, beyond the noise; as in the paper, LRN buys no accuracy "
      "here (differences smaller than the noise are not ruled out)")


def window_means(points, steps_per_epoch):
    """The mean loss over each stretch between two logged points: fit logs the running mean since the epoch
    began (point["epoch"] = epoch + step / steps), so mean * step differenced gives each stretch's sum."""
    xs, means, last = [], [], (None, 0, 0.0)
    for q in points:
        epoch = int(np.ceil(q["epoch"])) - 1
        step = round((q["epoch"] - epoch) * steps_per_epoch)
        total = q["loss"] * step
        done, done_total = (last[1], last[2]) if last[0] == epoch else (0, 0.0)
        xs.append(q["epoch"])
        means.append((total - done_total) / (step - done))
        last = (epoch, step, total)
    return xs, means


plt = pyplot()
fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
for (c, seed), history in runs.items():
    xs, means = window_means(history["points"], -(-n_train // batch))
    ax.plot(xs, means, color=f"C{seed}", linestyle="-" if c == "A" else "--", marker=".", label=f"{c}, seed {seed}")
ax.set_xlabel("epoch")
ax.set_ylabel("training loss\n(mean of the 4 steps before each point)")
ax.set_title("Training loss")
ax.legend()
ax.grid(True, alpha=0.3)
for i, c in enumerate(CONFIGS):
    for seed, value in zip(SEEDS, acc[c]):
        bx.plot(i - 0.1, value, "o", color=f"C{seed}", markersize=8, label=f"seed {seed}" if i == 0 else None)
    bx.errorbar(i + 0.15, acc[c].mean(), yerr=2 * se_mean, fmt="ks", capsize=6,
                label=f"mean of {S} seeds ± 2 s.e." if i == 0 else None)
values = np.concatenate(list(acc.values()))
room = np.ptp(values) + 4 * se_mean
bx.set_ylim(min(values.min(), typical - 2 * se_mean) - 0.1 * room,
            max(values.max(), typical + 2 * se_mean) + 0.6 * room)  # room for the legend
bx.set_xticks(range(len(CONFIGS)), CONFIGS)
bx.set_xlim(-0.5, len(CONFIGS) - 0.5)
bx.set_ylabel(f"test accuracy ({n_test} images)")
bx.set_title("Test accuracy after training")
bx.legend(loc="upper center", fontsize=8)
bx.grid(True, axis="y", alpha=0.3)
save_figure(fig, "16_lrn.png")

notice("LRN adds no parameters but costs memory and time, and A-LRN is neither more nor less accurate than A "
       "beyond the noise (the spread from seed to seed and the test set's own uncertainty, over the seeds run).",
       "With AlexNet's constants (divided by n, as PyTorch does) and images in [0, 1], LRN is almost a fixed scale "
       "factor 2^-0.75: the network can undo that with its next weights, so there is little it could add.",
       "A short run cannot show a small difference either way; the paper needed ImageNet and full training to "
       "conclude that LRN does not help.")

exercises("Train both for five epochs on all 60,000 images (`minivgg train --arch A-LRN`). Does the gap stay "
          "within the seeds' spread?",
          "Feed pixels in 0..255 (`DataLoader(..., normalize=(0, 1 / 255))`). Does LRN now change the accuracy?",
          "Why does a constant factor before a ReLU and a max-pooling change nothing a later convolution cannot undo?")
