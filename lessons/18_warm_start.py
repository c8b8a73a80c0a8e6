"""Lesson 18: deeper nets from a shallower one. Simonyan & Zisserman (Sec. 3.1) trained configuration A first and
started the deeper configurations from it, because a deep net drawn from N(0, 0.01) did not learn: they copied
A's first four convolutions and its three dense layers (`models.init_from`) and drew the rest at random. Here A is
trained briefly, then configuration B starts cold, from the paper's warm start, and from every layer of A, and the
gradient monitor shows what each start gives the layers."""
# %%
import numpy as np

import minivgg as mv
from minivgg import data, inspection, models, nn, optim, train
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

ratio, size, batch = 8, 32, 64
steps_a, steps_b = (60, 30) if QUICK else (300, 150)
train_x, train_y = data.load_fashion_mnist("train")
n_train = batch * 100
loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), batch, shuffle=True, resize=size)
probe = next(iter(data.DataLoader((train_x[n_train:], train_y[n_train:]), 256, resize=size)))[0]


def train_for(net, steps, monitor=None):
    """`steps` SGD steps with the paper's lr 0.01 and momentum 0.9, on the same batches for every net."""
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses, epoch = [], 0
    while len(losses) < steps:
        loader.set_epoch(epoch)
        for images, labels in loader:
            losses.append(train.train_step(net, images, labels, optimizer, monitor=monitor)[0].item())
            if len(losses) == steps:
                break
        epoch += 1
    return losses


def rms(array):
    return float(np.sqrt((array.astype(np.float64) ** 2).mean()))


# %%
section(f"The paper's N(0, 0.01), carried to 1/{ratio} of the width")
sigma = 0.01 * np.sqrt(ratio)
rng = np.random.default_rng(0)


def layer_gain(channels, std):
    """How much one convolution + ReLU, weights from N(0, std), scales the rms of a ReLU-like input."""
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    nn.init.normal_(conv.weight, 0.0, std)
    nn.init.zeros_(conv.bias)
    x = np.maximum(rng.standard_normal((4, channels, 16, 16)), 0).astype(np.float32)
    return rms(np.maximum(conv(mv.tensor(x)).numpy(), 0)) / rms(x)


mv.manual_seed(0)
full, narrow, carried = layer_gain(512, 0.01), layer_gain(512 // ratio, 0.01), layer_gain(512 // ratio, sigma)
print(f"  one 3x3 convolution + ReLU scales its input's rms by: {full:.3f} at the paper's 512 channels with std "
      f"0.01, {narrow:.3f} at {512 // ratio} channels with std 0.01, {carried:.3f} at {512 // ratio} channels with "
      f"std {sigma:.4f}")
claim(abs(narrow * np.sqrt(ratio) / full - 1) < 0.1, f"at 1/{ratio} of the channels the same std shrinks the "
      f"signal {np.sqrt(ratio):.2f} times more per layer: what a layer does depends on std x sqrt(fan-in), "
      "not on the std alone")
claim(abs(carried / full - 1) < 0.1, f"std 0.01 x sqrt({ratio}) = {sigma:.4f} gives our narrow layers the gain the "
      "paper's had; it stands in for N(0, 0.01) in B's convolutions below (the dense layers keep 0.01; in the "
      "warm starts they come from A)")

# %%
section("Net A, trained briefly")
mv.manual_seed(0)
net_a = models.initialize(models.vgg_from_config("A", num_classes=10, in_channels=1, ratio=ratio),
                          (1, 1, size, size), "kaiming")
# He's initialization (2015) lets A learn within a few steps; the paper trained A from N(0, 0.01).
losses_a = train_for(net_a, steps_a)
claim(np.mean(losses_a[-10:]) < np.log(10) - 0.5, f"A learns: its loss went from {losses_a[0]:.2f} to "
      f"{np.mean(losses_a[-10:]):.2f} (mean of the last ten of {steps_a} steps)")

# %%
section("Configuration B, three starts")


def paper_init():
    """B with every weight drawn from the paper's distribution (carried to our width) and zero biases."""
    mv.manual_seed(1)
    net = models.initialize(models.vgg_from_config("B", num_classes=10, in_channels=1, ratio=ratio),
                            (1, 1, size, size), "normal")
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, sigma)
    return net


starts = {"cold": paper_init(), "paper's warm start": paper_init(), "all of A": paper_init()}
copied = models.init_from(net_a, starts["paper's warm start"])
copied_all = models.init_from(net_a, starts["all of A"], convs=None)
convs_b = [name for name, m in starts["cold"].named_modules() if isinstance(m, nn.Conv2d)]
print(f"  init_from(A, B) copied {copied}; with convs=None {copied_all}")
claim(copied == ["0.0", "1.0", "2.0", "2.2", "6", "9", "12"], "the paper's warm start copies conv1_1, conv2_1, "
      "conv3_1, conv3_2 and the three dense layers; the other six convolutions of B stay random")
claim(sorted(set(convs_b) - set(copied_all)) == ["0.2", "1.2"], "copying every convolution of A leaves only B's "
      "two extra layers (conv1_2, conv2_2) random")
claim(all(np.array_equal(dict(starts["all of A"].named_parameters())[f"{name}.weight"].numpy(),
                         dict(net_a.named_parameters())[f"{name}.weight"].numpy()) for name in copied_all),
      "each copied weight equals A's, bit for bit")

features_a = rms(net_a[:5](probe).numpy())
features = {name: rms(net[:5](probe).numpy()) for name, net in starts.items()}
print(f"  rms of the features reaching the dense layers (256 images): A {features_a:.2e}, "
      + ", ".join(f"{name} {value:.2e}" for name, value in features.items()))
claim(features["cold"] < features["paper's warm start"] < features["all of A"] < features_a,
      "the more random layers between the image and the dense layers, the less of the image arrives: "
      "each random layer shrinks the signal")

results = {}
for name, net in starts.items():
    monitor = inspection.GradientMonitor(net, every=steps_b - 1)  # the first and the last step
    losses = train_for(net, steps_b, monitor)
    monitor.remove()
    weights = [n for n in monitor.names if n.endswith("weight")]
    first = np.array([monitor.history[0]["params"][n]["norm"] for n in weights])
    results[name] = {"losses": losses, "first_step": first, "end": float(np.mean(losses[-10:]))}

print("\n  gradient norm per weight layer at the first step (input to output):")
print(f"  {'':<20}" + "".join(f"{n[:-7]:>9}" for n in weights))
for name, r in results.items():
    print(f"  {name:<20}" + "".join(f"{v:>9.1e}" for v in r["first_step"]))
cold, paper, every = (results[k] for k in starts)
claim(cold["first_step"][0] < 1e-4 * every["first_step"][0], f"cold, the first convolution's gradient is "
      f"{cold['first_step'][0]:.1e}, against {every['first_step'][0]:.1e} when every layer of A is copied: "
      "the paper's initialization starves the early layers")
claim(paper["first_step"][0] > 100 * cold["first_step"][0], "the paper's warm start gives the first convolution a "
      f"gradient {paper['first_step'][0] / cold['first_step'][0]:.0e} times the cold start's")

print(f"\n  loss, mean of the last ten of {steps_b} steps: " + ", ".join(f"{k} {r['end']:.3f}"
                                                                     for k, r in results.items()))
claim(abs(cold["end"] - np.log(10)) < 0.02, f"cold, B does not learn: its loss stays at log 10 = {np.log(10):.3f}")
claim(every["end"] < np.log(10) - 0.5 and every["end"] < paper["end"] - 0.3, f"started from every layer of A, B "
      f"learns at once ({every['end']:.2f}); from the paper's four convolutions it is at {paper['end']:.2f} after "
      f"the same {steps_b} steps, its early gradients "
      f"{np.median(every['first_step'][:6] / paper['first_step'][:6]):.0f} times smaller (median of the first six "
      "layers)")

plt = pyplot()
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
left.plot(losses_a, color="gray", linewidth=1, label="A (He init), for reference")
for (name, r), color in zip(results.items(), ("tab:red", "tab:orange", "tab:green")):
    left.plot(r["losses"], color=color, label=f"B, {name}")
    right.semilogy(range(len(weights)), r["first_step"], marker="o", color=color, label=f"B, {name}")
left.axhline(np.log(10), color="black", linestyle=":", linewidth=1, label="log 10 (chance)")
left.set_xlabel("step")
left.set_ylabel("training loss (batch)")
left.set_title("B from three starts")
left.legend(fontsize=8)
right.set_xticks(range(len(weights)), [n[:-7] + ("" if n[:-7] in copied else "*") for n in weights], rotation=60)
right.set_xlabel("weight layer (*: random in the paper's warm start;\n0.2 and 1.2 are random in 'all of A' too)")
right.set_ylabel("gradient norm, first step")
right.set_title("where the gradient reaches")
right.legend(fontsize=8)
save_figure(fig, "18_warm_start.png")

notice("A fixed std such as 0.01 shrinks the signal by std x sqrt(fan-in / 2) per layer; stacked ten times the "
       "image never reaches the output, and the gradient never reaches the image side.",
       "A warm start replaces random layers with trained ones that pass the signal on; the fewer random layers "
       "are left in a row, the sooner the deeper net learns.",
       "Glorot's and He's initializations choose the std from the fan-in of every layer, which is why plain deep "
       "nets no longer need the warm start (Sec. 3.1 of the paper already notes that Glorot's works without it).")

exercises("Start B cold with models.initialize(..., 'kaiming'). How does its loss after the same steps compare?",
          "Copy A into D with convs=None. Which layers stay random, and does D learn in the same steps?",
          "Draw B's random layers with std 0.01 exactly (not carried to our width). What happens to 'all of A'?")
