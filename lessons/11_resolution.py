"""Lesson 11: input resolution (D2L's exercise): 224 against 96, 56 and 32. From 32 to 224 the convolutions'
arithmetic grows 49 times, yet a training step costs only several times more: where the time goes at each
size, and the accuracy of a short run at 32 and at 96."""
# %%
import os
import time

# One BLAS thread, set before NumPy loads OpenBLAS: on a busy machine a product split over two threads waits for
# the second core, and the wait, not the work, would dominate the small layers' times.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

import minivgg as mv
from minivgg import data, models, nn, optim, train
from minivgg.autograd import Tensor
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, section

mv.cpu.tune()  # freed buffers are kept for reuse, as `minivgg train` does: a timed call pays no page faults
ratio, batch = 8, 16
sizes = [32, 56, 96, 224]
rng = np.random.default_rng(0)


def network(size, channels_ratio=ratio, init="xavier"):
    mv.manual_seed(0)
    return models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, channels_ratio)),
                             (1, 1, size, size), init)


section(f"Arithmetic per image, counted from the layers (channels / {ratio})")
flops = {s: models.count_flops(network(s), (1, 1, s, s)) for s in sizes}
print(f"  {'input':>7} {'conv MFLOPs':>12} {'dense MFLOPs':>13} {'total':>8} {'x 32x32':>8}")
for s in sizes:
    total = flops[s]["conv"] + flops[s]["dense"]
    print(f"  {s:>3}x{s:<3} {flops[s]['conv'] / 1e6:12.1f} {flops[s]['dense'] / 1e6:13.1f} {total / 1e6:8.1f} "
          f"{total / (flops[32]['conv'] + flops[32]['dense']):8.1f}")
conv_growth = flops[224]["conv"] / flops[32]["conv"]
total_growth = (flops[224]["conv"] + flops[224]["dense"]) / (flops[32]["conv"] + flops[32]["dense"])
dense_share = flops[32]["dense"] / (flops[32]["conv"] + flops[32]["dense"])
print(f"  the convolutions' work grows {conv_growth:g} times from 32 to 224: (224 / 32)^2 = 49 by arithmetic, since "
      "the same weights slide over 49 times as many positions in every layer")
claim(total_growth < 10, f"but the whole network's grows {total_growth:.1f} times: at 32 the dense layers do "
      f"{dense_share:.0%} of the work, and they grow only {flops[224]['dense'] / flops[32]['dense']:.1f} times (only "
      "the first one sees a larger map, 7x7 instead of 1x1)")

# %%
section(f"Where a training step's time goes (batch {batch}, SGD, one BLAS thread; the shortest of several runs)")
KINDS = ("convolutions", "dense layers", "pool, ReLU, dropout, loss", "SGD update")


def kind(layer):
    return "convolutions" if isinstance(layer, nn.Conv2d) else "dense layers" if isinstance(layer, nn.Linear) \
        else KINDS[2]


def best_of(fn, budget=0.2, most=20):
    """The shortest of several timed calls (at least 3; more, up to `most`, while they fit in `budget`
    seconds): other programs on the machine only ever add time, so the shortest is the closest to the cost."""
    times = []
    while len(times) < 3 or (sum(times) < budget and len(times) < most):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def step_parts(size):
    """Seconds of one whole training step, and of its parts: every layer's forward and backward timed on its
    own (on the input the layer gets in the step), the loss, and the optimizer's update; and the number of
    parameters the update moves."""
    net = network(size)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = mv.tensor(rng.random((batch, 1, size, size)))
    y = mv.tensor(rng.integers(0, 10, batch))

    def whole_step():
        train.train_step(net, x, y, opt)  # forward, loss, backward, update

    whole_step()  # the first call pays for allocating buffers
    whole = best_of(whole_step)
    parts = dict.fromkeys(KINDS, 0.0)
    layers = [layer for block in net for layer in (block if isinstance(block, nn.Sequential) else [block])]
    h = x.data
    for i, layer in enumerate(layers):
        inp = Tensor(h, requires_grad=i > 0)  # the images need no gradient, the other inputs do

        def forward_backward(layer=layer, inp=inp):
            out = layer(inp)
            out.backward(Tensor(np.ones(out.shape, np.float32)))
            return out

        parts[kind(layer)] += best_of(forward_backward)
        h = forward_backward().data
    logits = Tensor(h, requires_grad=True)
    parts[KINDS[2]] += best_of(lambda: F.cross_entropy(logits, y).backward())
    parts["SGD update"] = best_of(opt.step)
    return whole, parts, net.num_parameters()


timed = [32, 224] if QUICK else [32, 96, 224]
measured = {s: step_parts(s) for s in timed}
# How much more each kind has to do at 224 than at 32, counted from the networks: multiply-adds for the
# layers, elements for pooling and ReLU (the pixels), parameters for the update.
work = {KINDS[0]: conv_growth, KINDS[1]: flops[224]["dense"] / flops[32]["dense"], KINDS[2]: (224 / 32) ** 2,
        KINDS[3]: measured[224][2] / measured[32][2]}
print(f"  {'ms per step':<27}" + "".join(f"{f'{s}x{s}':>10}" for s in timed) + f"{'time 224/32':>13}"
      f"{'work 224/32':>13}")
for k in KINDS:
    print(f"  {k:<27}" + "".join(f"{measured[s][1][k] * 1e3:10.1f}" for s in timed)
          + f"{measured[224][1][k] / measured[32][1][k]:13.1f}{work[k]:13.1f}")
print(f"  {'sum of the parts':<27}" + "".join(f"{sum(measured[s][1].values()) * 1e3:10.1f}" for s in timed))
print(f"  {'whole step, measured':<27}" + "".join(f"{measured[s][0] * 1e3:10.1f}" for s in timed)
      + f"{measured[224][0] / measured[32][0]:13.1f}{total_growth:13.1f}")
conv_rate = {s: 3 * flops[s]["conv"] * batch / measured[s][1]["convolutions"] / 1e9 for s in timed}
print("  the convolutions ran at " + ", ".join(f"{conv_rate[s]:.1f} GFLOP/s at {s}x{s}" for s in timed)
      + " (forward and backward, 3x the forward's count)")
print("  (a rate of the convolutions alone, layer by layer: lesson 12's rate is a whole step's, pooling, ReLU, loss "
      "and update included)")
fixed = {s: measured[s][1]["dense layers"] + measured[s][1]["SGD update"] for s in timed}
step_growth = measured[224][0] / measured[32][0]
print("  measured on this machine (times, not claims: another machine, or a busier one, moves them):")
print(f"    at 32x32 the dense layers and the update took {fixed[32] * 1e3:.0f} ms, the convolutions "
      f"{measured[32][1]['convolutions'] * 1e3:.0f} ms")
print(f"    at 224x224 the convolutions took {measured[224][1]['convolutions'] * 1e3:.0f} ms, the dense layers and the "
      f"update {fixed[224] * 1e3:.0f} ms")
print(f"    the whole step grew {step_growth:.1f} times from 32 to 224; the counted arithmetic says "
      f"{total_growth:.1f} times, the convolutions' alone 49")

# %%
section("Accuracy after a short run")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
n, short_sizes = (1024, [32, 96]) if QUICK else (12000, [32, 56, 96])
results = {}
for s in short_sizes:
    net = network(s, 2 * ratio, "kaiming")
    loader = data.DataLoader((train_x[:n], train_y[:n]), 64, shuffle=True, resize=s)
    tests = data.DataLoader((test_x[:500], test_y[:500]), 250, resize=s)
    start = time.perf_counter()
    hist = train.fit(net, loader, tests, optim.Adam(net.parameters(), lr=1e-3), 1, progress=False,
                     print_fn=lambda *a: None)
    results[s] = (hist["epochs"][-1]["test_acc"], time.perf_counter() - start)
    print(f"  {s}x{s}: test acc {results[s][0]:.3f} after one epoch on {n} images (channels / {2 * ratio}), "
          f"{results[s][1]:.1f} s")
(acc32, time32), (acc96, time96) = results[32], results[96]
claim(min(acc for acc, _ in results.values()) > 0.2, "every run learned: each size is above 0.2 on 500 test images "
      "(chance is 0.1)")
print(f"  one run each (seed 0): 96x96 reached {acc96:.3f} against 32x32's {acc32:.3f}, in {time96 / time32:.1f} "
      "times the time (measured here); one seed does not say which size is better, nor by how much")

notice("The 49x of the arithmetic is the convolutions' alone; at 32x32 a large share of the count is the dense "
       "layers', which hardly grow with the image (the times above show where it went on this machine).",
       "So a larger input costs less than its pixels suggest, until the convolutions take over the step.",
       "Resizing adds no information (Fashion-MNIST has 28x28 pixels), yet the short runs differ: at 32 five "
       "poolings leave a 1x1 map, at 96 a 3x3 one. Whether that is worth the time needs longer runs.")

exercises("At which size do the convolutions start to take most of the step? Time 56 and 96 as well.",
          "Train for three epochs at 32 and at 96. Is the accuracy gap worth the time?",
          "Fashion-MNIST is 28x28: what does resizing to 224 add that is not in the data?")
