"""Lesson 10: gradients in a deep VGG. Configuration E (19 layers) initialized with the paper's N(0, 0.01)
against Xavier: what happens to the gradient norms layer by layer, and why the authors pre-trained from A."""
# %%
import numpy as np

import minivgg as mv
from minivgg import inspection, models, nn, optim
import minivgg.functional as F
from lesson import QUICK, claim, exercises, output, pyplot, section

ratio, size, batch = (8, 32, 8) if QUICK else (4, 64, 32)
rng = np.random.default_rng(0)
images = mv.tensor(rng.random((batch, 3, size, size)))
labels = mv.tensor(rng.integers(0, 10, batch))


def first_step(scheme):
    """One SGD step of configuration E; the monitor's record of it."""
    mv.manual_seed(0)
    net = models.initialize(models.vgg_from_config("E", num_classes=10, in_channels=3, ratio=ratio),
                            (1, 3, size, size), scheme)
    monitor = inspection.GradientMonitor(net)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    F.cross_entropy(net(images), labels).backward()
    monitor.before_step()
    opt.step()
    monitor.after_step()
    return net, monitor


section("Configuration E, one step, two initializations")
norms, records = {}, {}
for scheme in ("normal", "xavier"):
    net, monitor = first_step(scheme)
    record = records[scheme] = monitor.history[-1]["params"]
    weights = [n for n, p in net.named_parameters() if n.endswith("weight")]
    norms[scheme] = np.array([record[n]["norm"] for n in weights])
    print(f"\n  {scheme}: gradient norm per weight layer, input to output")
    print("  " + " ".join(f"{v:.1e}" for v in norms[scheme]))
    monitor.plot(output(f"10_gradients_{scheme}.png"))
    if scheme == "normal":
        monitor.table()

convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
claim(convs == 16 and len(norms["normal"]) == 19, "E has 16 convolutions and 3 dense layers")
ratio_first = norms["xavier"][0] / norms["normal"][0]
print(f"\n  first layer: Xavier's gradient is {ratio_first:.1e} times N(0, 0.01)'s")
claim(ratio_first > 1e3, "with N(0, 0.01) the first layers' gradients all but vanish: each layer shrinks the "
      "signal (std 0.01 is far below Xavier's sqrt(2 / (fan_in + fan_out)))")
claim(norms["normal"].max() < 1e-6 * norms["xavier"].min(), "and not only the first: every weight layer's "
      "gradient vanishes, because the forward signal itself dies on the way through 19 layers")
last_bias = [n for n in records["normal"] if n.endswith("bias")][-1]
claim(records["normal"][last_bias]["norm"] > 1e-2, "only the biases near the output get a usable gradient: the "
      "net cannot start learning, which is why the paper trained A first and copied its layers into E")
claim(norms["xavier"][0] > 1e-2 * norms["xavier"][-1], "with Xavier the gradient reaches the first layer intact")

plt = pyplot()
fig, ax = plt.subplots(figsize=(6, 3.2))
for scheme, values in norms.items():
    ax.semilogy(range(1, len(values) + 1), values, marker="o", label=scheme)
ax.set_xlabel("weight layer (1 = input side)")
ax.set_ylabel("gradient norm")
ax.legend()
fig.tight_layout()
fig.savefig(output("10_gradient_flow.png"), dpi=90)
print(f"  figure: {output('10_gradient_flow.png')}")

exercises("Repeat with kaiming init. Where does it sit between the two?",
          "Train E with N(0, 0.01) for 50 steps with the GradientMonitor. Does the first layer ever move?",
          "Copy the 4 first convolutions and the dense layers of a trained A into E (the paper's recipe).")
