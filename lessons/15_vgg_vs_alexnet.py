"""Lesson 15: why VGG is slower and hungrier than AlexNet (D2L's exercise 2 of the VGG chapter). D2L's AlexNet
and D2L's VGG-11, both for 224x224 one-channel images: arithmetic, parameters and activation memory, layer by
layer, counted from the models and their real outputs, then the memory a training step holds and its time."""
# %%
import os
import time
import tracemalloc

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: times depend less on a busy machine

import numpy as np  # noqa: E402

import minivgg as mv  # noqa: E402
import minivgg.functional as F  # noqa: E402
from minivgg import models, nn, optim  # noqa: E402
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section  # noqa: E402

SIZE = 224
step_size, batch, repeats = (112, 2, 3) if QUICK else (224, 4, 3)
rng = np.random.default_rng(0)


def alexnet(num_classes=10):
    """D2L's AlexNet (section 8.1), as the book writes it; the same nn layers VGG is built from."""
    return nn.Sequential(
        nn.LazyConv2d(96, kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.LazyConv2d(256, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
        nn.LazyConv2d(384, kernel_size=3, padding=1), nn.ReLU(),
        nn.LazyConv2d(256, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.LazyLinear(num_classes))


BUILD = {"AlexNet": alexnet, "VGG-11": models.vgg}


def per_layer(net, size):
    """One forward pass of one image through `net`, recorded by hooks on every leaf layer. Returns one row per
    weight layer: name, output shape, FLOPs, parameters, and the bytes of new arrays it and the ReLU, pooling
    and dropout after it produced (views such as Flatten's share their input's memory and are not counted)."""
    rows, handles = [], []

    def record(module, inputs, out):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            k = module.kernel_size[0] if isinstance(module, nn.Conv2d) else None
            positions = out.shape[2] * out.shape[3] if k else 1
            label = f"conv {k}x{k}, {out.shape[1]} @{out.shape[-1]}" if k else f"dense {out.shape[1]}"
            rows.append(dict(name=label, shape=out.shape, flops=2 * module.weight.numel() * positions,
                             params=sum(p.numel() for p in module.parameters()), bytes=0))
        if not np.shares_memory(out.data, inputs[0].data):
            rows[-1]["bytes"] += out.data.nbytes

    for m in net.modules():
        if not m._modules:  # a leaf layer
            handles.append(m.register_forward_hook(record))
    net(mv.tensor(rng.random((1, 1, size, size))))
    for h in handles:
        h.remove()
    return rows


section(f"Both networks on one {SIZE}x{SIZE} image, layer by layer")
nets, layers, totals = {}, {}, {}
for name, build in BUILD.items():
    mv.manual_seed(0)
    nets[name] = models.initialize(build(), (1, 1, SIZE, SIZE))
    layers[name] = per_layer(nets[name], SIZE)
    totals[name] = {k: sum(r[k] for r in layers[name]) for k in ("flops", "params", "bytes")}
    print(f"\n  {name}: {'layer':<22} {'output':<20} {'MFLOPs':>8} {'parameters':>12} {'activations':>12}")
    for r in layers[name]:
        print(f"  {'':<{len(name) + 1}} {r['name']:<22} {str(r['shape']):<20} {r['flops'] / 1e6:8.0f} "
              f"{r['params']:>12,} {r['bytes'] / 2**20:9.2f} MiB")
    print(f"  {'':<{len(name) + 1}} {'total':<22} {'':<20} {totals[name]['flops'] / 1e6:8.0f} "
          f"{totals[name]['params']:>12,} {totals[name]['bytes'] / 2**20:9.2f} MiB")
    counted = models.count_flops(nets[name], (1, 1, SIZE, SIZE))
    claim(counted["conv"] + counted["dense"] == totals[name]["flops"] and
          totals[name]["params"] == nets[name].num_parameters(), f"{name}: the rows add up to the package's "
          "count_flops and num_parameters (no layer left out)")

alex, vgg = layers["AlexNet"], layers["VGG-11"]
flat = {name: next(r for r in rows if r["name"].startswith("dense"))["params"] // 4096 - 1
        for name, rows in layers.items()}  # inputs of the first dense layer: its weights / 4096 (minus the bias)
print(f"\n  the first dense layer reads {flat['AlexNet']:,} numbers in AlexNet (256 x 5 x 5) and {flat['VGG-11']:,} "
      "in VGG (512 x 7 x 7)")
claim(flat["AlexNet"] == 256 * 5 * 5 and flat["VGG-11"] == 512 * 7 * 7, "AlexNet's stride-4 convolution and "
      "three 3/2 poolings leave a 5x5 map, VGG's five 2/2 poolings a 7x7 map with twice the channels")

# %%
section("Parameters: VGG has more, nearly all in its first dense layer")
p_ratio = totals["VGG-11"]["params"] / totals["AlexNet"]["params"]
extra = totals["VGG-11"]["params"] - totals["AlexNet"]["params"]
extra_dense1 = (flat["VGG-11"] - flat["AlexNet"]) * 4096
print(f"  AlexNet {totals['AlexNet']['params'] / 1e6:.1f} M, VGG-11 {totals['VGG-11']['params'] / 1e6:.1f} M "
      f"({p_ratio:.1f}x); of the {extra / 1e6:.1f} M more, {extra_dense1 / 1e6:.1f} M are the first dense "
      "layer's extra inputs")
claim(p_ratio > 2 and extra_dense1 > 0.75 * extra, "VGG-11 has more than twice AlexNet's parameters, and over "
      "three quarters of the difference is the wider input of the first dense layer, not the convolutions")

section("Arithmetic: VGG does its work at high resolution")
f_ratio = totals["VGG-11"]["flops"] / totals["AlexNet"]["flops"]
heavier = [r["name"] for r in vgg if r["flops"] > totals["AlexNet"]["flops"]]
print(f"  AlexNet {totals['AlexNet']['flops'] / 1e9:.2f} GFLOPs, VGG-11 {totals['VGG-11']['flops'] / 1e9:.2f} GFLOPs "
      f"per image ({f_ratio:.1f}x)")
print(f"  AlexNet's first layer leaves {alex[0]['shape'][-1]}x{alex[0]['shape'][-1]} maps (stride 4); VGG's first "
      f"block keeps {SIZE}x{SIZE}. VGG layers that each cost more than all of AlexNet: {', '.join(heavier)}")
claim(f_ratio > 5, f"VGG-11 needs {f_ratio:.1f} times AlexNet's arithmetic per image")
claim(len(heavier) >= 2, f"{len(heavier)} of VGG's convolutions each cost more than the whole of AlexNet: 3x3 "
      "kernels are small, but VGG applies them with many channels on large maps")

section("Activation memory: VGG's maps are larger")
a_ratio = totals["VGG-11"]["bytes"] / totals["AlexNet"]["bytes"]
print(f"  new arrays of one forward pass: AlexNet {totals['AlexNet']['bytes'] / 2**20:.1f} MiB, VGG-11 "
      f"{totals['VGG-11']['bytes'] / 2**20:.1f} MiB per image ({a_ratio:.1f}x)")
claim(a_ratio > 5 and vgg[0]["bytes"] > totals["AlexNet"]["bytes"], "VGG-11's outputs take more than 5 times "
      "AlexNet's memory: its first layer alone (64 maps of 224x224, with their ReLU) outweighs all of AlexNet's")

# %%
section(f"A training step, measured (batch {batch} at {step_size}x{step_size})")
held, outputs, layer_outputs, compute, update = {}, {}, {}, {}, {}
images = mv.tensor(rng.random((batch, 1, step_size, step_size)))
labels = mv.tensor(rng.integers(0, 10, batch))
for name, build in BUILD.items():
    mv.manual_seed(0)
    net = models.initialize(build(), (1, 1, step_size, step_size))  # the dense layers' inputs depend on the size
    rows = per_layer(net, step_size)
    outputs[name] = batch * sum(r["bytes"] for r in rows)
    layer_outputs[name] = batch * sum(4 * int(np.prod(r["shape"])) for r in rows)  # the weight layers' own (float32)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(repeats + 2):  # step 0 also creates the momentum buffers; the last one is traced
        traced = i == repeats + 1
        if traced:  # tracemalloc slows allocations: this step is not timed
            tracemalloc.start()
        start = time.perf_counter()
        loss = F.cross_entropy(net(images), labels)
        if traced:
            held[name] = tracemalloc.get_traced_memory()[0]  # what the graph keeps for backward
        opt.zero_grad()
        loss.backward()
        middle = time.perf_counter()
        opt.step()
        times.append((middle - start, time.perf_counter() - middle))
    tracemalloc.stop()
    compute[name], update[name] = np.min(times[1:-1], axis=0)
    print(f"  {name:<8}: forward and backward {compute[name] * 1e3:6.0f} ms, SGD update {update[name] * 1e3:4.0f} ms "
          f"(best of {repeats}, measured on this machine); held between forward and backward "
          f"{held[name] / 2**20:5.1f} MiB")
    del net, opt, loss
t_ratio = compute["VGG-11"] / compute["AlexNet"]
s_ratio = (compute["VGG-11"] + update["VGG-11"]) / (compute["AlexNet"] + update["AlexNet"])
h_ratio = held["VGG-11"] / held["AlexNet"]
print(f"  VGG-11 / AlexNet: forward and backward {t_ratio:.1f}x, whole step {s_ratio:.1f}x, memory held "
      f"{h_ratio:.1f}x; arithmetic {f_ratio:.1f}x, parameters {p_ratio:.1f}x")
claim(h_ratio > 4, f"the graph VGG-11 keeps for backward is {h_ratio:.1f} times AlexNet's (tracemalloc counts bytes: "
      "the same on any machine); the times are this machine's")
print("  the forward pass makes more new arrays than the graph holds: the weight layers' own outputs are freed")
for n in BUILD:
    print(f"  {n:<8}: new arrays {outputs[n] / 2**20:5.1f} MiB = the convolutions' and dense layers' own outputs "
          f"{layer_outputs[n] / 2**20:5.1f} MiB + the ReLU, pooling and dropout outputs "
          f"{(outputs[n] - layer_outputs[n]) / 2**20:5.1f} MiB; held {held[n] / 2**20:5.1f} MiB")
extra = {n: held[n] - (outputs[n] - layer_outputs[n]) for n in BUILD}  # arrays the hooks do not see
claim(all(0 <= extra[n] < 0.1 * layer_outputs[n] for n in BUILD), "each graph holds the ReLU, pooling and dropout "
      "outputs (what backward needs; beyond them only " + ", ".join(f"{extra[n] / 2**10:.0f} KiB" for n in BUILD)
      + " of other arrays, dropout's masks among them) and not the weight layers' own outputs: each ReLU keeps its "
      "output, so the array before it is freed. A step's memory grows with the activations, not the parameters")

plt = pyplot()
fig, axes = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
names = [f"AlexNet {r['name']}" for r in alex] + [f"VGG {r['name']}" for r in vgg]
colours = ["tab:red"] * len(alex) + ["tab:blue"] * len(vgg)
for ax, key, unit, scale in ((axes[0], "flops", "MFLOPs per image", 1e6), (axes[1], "params", "parameters (M)", 1e6),
                             (axes[2], "bytes", "activations per image\n(MiB)", 2**20)):
    values = [r[key] / scale for r in alex + vgg]
    bars = ax.bar(range(len(values)), values, color=colours)
    ax.set_yscale("log")
    ax.set_ylabel(unit + " (log)")
    ax.axvline(len(alex) - 0.5, color="grey", linestyle=":")
    ax.grid(True, axis="y", alpha=0.3)
axes[0].legend([bars[0], bars[-1]], [f"{n}: {t['flops'] / 1e9:.1f} GFLOPs, {t['params'] / 1e6:.1f} M parameters, "
                                     f"{t['bytes'] / 2**20:.1f} MiB activations" for n, t in totals.items()],
               loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=9)
fig.suptitle(f"D2L's AlexNet against D2L's VGG-11, one {SIZE}x{SIZE} image, per weight layer\n(activations: its "
             "output and the ReLU/pooling outputs after it; @: the output map's side)")
axes[2].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
save_figure(fig, "15_vgg_vs_alexnet.png")

notice("AlexNet shrinks the image at once (11x11 stride 4); VGG keeps full resolution through its first block, and "
       "arithmetic and activation memory grow with the pixels each layer sees.",
       "VGG's extra parameters sit in the first dense layer (7x7x512 inputs), not in its small 3x3 kernels.",
       "Between forward and backward a step holds what backward needs, the ReLU and pooling outputs, so VGG's "
       "large early maps cost memory for every image of the batch.")

exercises("Make VGG's first convolution stride 2. How do FLOPs, memory and accuracy after a short run change?",
          "D2L's AlexNet pads its first layer by 1. Why does 224 then give 54x54 maps?",
          "Which layer would you change first to make VGG fit a small GPU: the first block or the dense head?")
