"""Lesson 11: input resolution (D2L's exercise): 224 against 96, 56 and 32: the cost of a training step and
the accuracy after a short run."""
# %%
import time

import numpy as np

import minivgg as mv
from minivgg import data, models, optim, train
import minivgg.functional as F
from lesson import QUICK, claim, exercises, section

ratio, batch = (8, 8) if QUICK else (4, 32)
sizes = [224, 96, 56, 32]
rng = np.random.default_rng(0)


def step_time(size, repeats=1 if QUICK else 3):
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, ratio)), (1, 1, size, size))
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = mv.tensor(rng.random((batch, 1, size, size)))
    y = mv.tensor(rng.integers(0, 10, batch))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the first call pays for allocating buffers


section("Arithmetic per image, counted")
flops = {}
for s in sizes:
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, ratio))
    flops[s] = models.count_flops(net, (1, 1, s, s))
    print(f"  {s:>3}x{s:<3}: convolutions {flops[s]['conv'] / 1e6:8.1f} MFLOPs, dense {flops[s]['dense'] / 1e6:6.1f} "
          f"MFLOPs   ({(s / 32) ** 2:4.1f}x the pixels of 32x32)")
claim(flops[224]["conv"] == 49 * flops[32]["conv"], "the convolutions' work grows exactly with the pixels: "
      "224x224 costs 49 times 32x32")
claim(flops[224]["dense"] < 3 * flops[32]["dense"], "the dense layers' work hardly grows (only the first one "
      "sees the larger 7x7 map): at 32x32 they are a large share of the step")

section(f"One SGD step, measured (batch {batch}; timings on a shared machine are noisy)")
times = {s: step_time(s) for s in sizes}
for s in sizes:
    print(f"  {s:>3}x{s:<3}: {times[s] * 1e3:8.1f} ms")

# %%
section("Accuracy after a short run")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
n, short_sizes = (1000, [32, 56]) if QUICK else (12000, [32, 56, 96])
results = {}
for s in short_sizes:
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 2 * ratio)), (1, 1, s, s),
                            "kaiming")
    loader = data.DataLoader((train_x[:n], train_y[:n]), 64, shuffle=True, resize=s)
    tests = data.DataLoader((test_x[:500], test_y[:500]), 250, resize=s)
    start = time.perf_counter()
    hist = train.fit(net, loader, tests, optim.Adam(net.parameters(), lr=1e-3), 1, progress=False,
                     print_fn=lambda *a: None)
    results[s] = (hist["epochs"][-1]["test_acc"], time.perf_counter() - start)
    print(f"  {s}x{s}: test acc {results[s][0]:.3f} after one epoch on {n} images, {results[s][1]:.1f} s")
claim(all(acc > 0.2 for acc, _ in results.values()), "with Adam every resolution is well above chance (0.1) "
      "after one short epoch; which one wins needs longer runs (exercise 2)")

exercises("At which size does the dense part stop dominating the step time? (benchmarks/kernels.py helps.)",
          "Train for three epochs at 32 and at 96. Is the accuracy gap worth the time?",
          "Fashion-MNIST is 28x28: what does resizing to 224 add that is not in the data?")
