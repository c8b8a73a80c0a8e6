"""Lesson 10: gradients in a deep VGG. Configuration E (19 weight layers) after one SGD step, with its weights
drawn four ways: N(0, std 0.01), N(0, std 0.1) (the paper's "10^-2 variance"), Xavier (D2L) and He (kaiming).
What happens to the signal going forward, to the gradient coming back, and to the step each layer takes."""
# %%
import io
import types

import numpy as np

import minivgg as mv
from minivgg import inspection, models, nn, optim
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

ratio, size, batch = (8, 32, 8) if QUICK else (1, 32, 16)  # ratio divides the channels; 1 is the paper's width
lr = 0.01
rng = np.random.default_rng(0)
images = mv.tensor(rng.random((batch, 3, size, size)))
labels = mv.tensor(rng.integers(0, 10, batch))
SCHEMES = {"std 0.01": "normal", "std 0.1": 0.1, "xavier": "xavier", "kaiming": "kaiming"}
PROBE = {"conv 9": 8, "dense 1": 16}  # two weight layers with many weights: their std is sharp


def build(scheme):
    """Configuration E with its weights drawn by `scheme` (an initializer name, or a std), biases zero."""
    mv.manual_seed(0)
    net = models.vgg_from_config("E", num_classes=10, in_channels=3, ratio=ratio)
    rule = SCHEMES[scheme]
    models.initialize(net, (1, 3, size, size), "normal" if isinstance(rule, float) else rule)
    if isinstance(rule, float):  # initialize() knows std 0.01 only: draw the others with nn.init directly
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, rule)
    return net


def weight_layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def first_step(scheme):
    """One SGD step (lr 0.01, momentum 0.9) of E drawn by `scheme`, and what it did."""
    net = build(scheme)
    layers = weight_layers(net)
    signal = []
    hooks = [m.register_forward_hook(lambda mod, inputs, out: signal.append(float(out.data.std()))) for m in layers]
    monitor = inspection.GradientMonitor(net)
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    before = {name: p.numpy() for name, p in net.named_parameters()}
    drawn = [float(layers[i].weight.numpy().std()) for i in PROBE.values()]
    F.cross_entropy(net(images), labels).backward()
    grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
    monitor.before_step()
    opt.step()
    monitor.after_step()
    for h in hooks:
        h.remove()
    changed = {name: before[name] != p.numpy() for name, p in net.named_parameters()}
    return types.SimpleNamespace(
        record=monitor.history[-1]["params"], monitor=monitor,
        signal=np.array(signal),  # the std of every weight layer's output, input side first
        before=before, grads=grads, changed=changed,  # changed: bit for bit, per entry
        drawn=drawn, stepped=[float(layers[i].weight.numpy().std()) for i in PROBE.values()],
        fans=[nn.init.fans(layers[i].weight) for i in PROBE.values()],
        shapes=[layers[i].weight.shape for i in PROBE.values()])


def rounding_rule(w, g):
    """Which entries w - lr * g moves, by float32 rounding alone: +1 moves, -1 stays, 0 a tie (too close to say).
    The step d = lr * g (momentum's first step is g itself) lands on w's neighbour only if |d| is more than half
    the gap between w and that neighbour."""
    d = lr * g  # as the optimizer computes it, in float32
    toward = np.where(d < 0, np.float32(np.inf), np.float32(-np.inf))  # the neighbour the step heads for
    gap = np.abs(np.nextafter(w, toward) - w)
    return np.where(d == 0, -1, np.sign(np.abs(d) - gap / 2)).astype(int)


runs = {scheme: first_step(scheme) for scheme in SCHEMES}  # what follows reads these four steps

# %%
section(f"Four ways to draw the weights (configuration E, channels / {ratio}, {size}x{size} inputs)")
print("  models.initialize draws every weight with nn.init: 'normal' is N(0, 0.01^2), 'xavier' is uniform with")
print("  std sqrt(2 / (fan_in + fan_out)), 'kaiming' is normal with std sqrt(2 / fan_in) (fan_in = C_in x 3 x 3).")
print("  The paper's N(0, 10^-2) is a variance: std 0.1, ten times minivgg's 'normal' (std 0.01, the reading")
print("  common in Caffe-era code).")
rules = {"std 0.01": lambda fi, fo: 0.01, "std 0.1": lambda fi, fo: 0.1,
         "xavier": lambda fi, fo: np.sqrt(2 / (fi + fo)), "kaiming": lambda fi, fo: np.sqrt(2 / fi)}
shapes = [tuple(shape) for shape in runs["kaiming"].shapes]
print("\n  the std of two layers' weights: as drawn, what the rule asks for, and after one SGD step")
print(f"  {'':<9}" + "".join(f"{f'{name} {shape}':>30}" for name, shape in zip(PROBE, shapes)))
print(f"  {'':<9}" + f"{'drawn':>10}{'rule':>9}{'stepped':>11}" * len(PROBE))
drawn = {}
for scheme in SCHEMES:
    cells, drawn[scheme] = [], []
    for fans, measured, stepped in zip(runs[scheme].fans, runs[scheme].drawn, runs[scheme].stepped):
        rule = rules[scheme](*fans)
        drawn[scheme].append((measured, rule))
        cells.append(f"{measured:10.4g}{rule:9.4g}{stepped:11.4g}")
    print(f"  {scheme:<9}" + "".join(cells))
claim(all(abs(m / r - 1) < 0.05 for pairs in drawn.values() for m, r in pairs),
      "each scheme's drawn weights have the std its rule gives, within 5%")
print("  (how far one step moved them, and why, is the subject below)")
gain = {s: np.sqrt(runs[s].fans[0][0] / 2) * drawn[s][0][0] for s in SCHEMES}
print("  a ReLU layer multiplies the signal's size by about std x sqrt(fan_in / 2): for conv 9 that is "
      + ", ".join(f"{s} {g:.2f}" for s, g in gain.items()))

# %%
section("One SGD step per scheme")
records = {s: run.record for s, run in runs.items()}
weights = [n for n in records["kaiming"] if n.endswith("weight")]
biases = [n for n in records["kaiming"] if n.endswith("bias")]
forward = {s: run.signal for s, run in runs.items()}
backward = {s: np.array([records[s][n]["norm"] for n in biases]) for s in SCHEMES}
wgrad = {s: np.array([records[s][n]["norm"] for n in weights]) for s in SCHEMES}
update = {s: np.array([records[s][n]["update_ratio"] for n in weights]) for s in SCHEMES}

print("  forward: std of each weight layer's output; backward: norm of each bias's gradient, which is the")
print("  gradient arriving at that layer's output, summed over positions and batch. Layer 1 is the input side.")
print(f"\n  {'':<9} {'forward 1':>10} {'forward 19':>11} {'backward 1':>11} {'backward 19':>12} "
      f"{'|dW|/|W| (median)':>18}")
for s in SCHEMES:
    print(f"  {s:<9} {forward[s][0]:10.1e} {forward[s][-1]:11.1e} {backward[s][0]:11.1e} {backward[s][-1]:12.1e} "
          f"{np.median(update[s]):18.1e}")
shrink = {s: forward[s][-1] / forward[s][0] for s in SCHEMES}
claim(shrink["std 0.01"] < 1e-6, f"with std 0.01 the signal dies on the way forward: the logits' std is "
      f"{shrink['std 0.01']:.0e} of the first layer's output (each layer multiplies by about "
      f"{gain['std 0.01']:.2f})")
claim(shrink["std 0.1"] > 10, f"with std 0.1 it grows instead, {shrink['std 0.1']:.0e} times from first layer "
      f"to logits: where a layer has many inputs, 0.1 x sqrt(fan_in / 2) is above 1")
claim(0.1 < shrink["kaiming"] < 10, f"He's std sqrt(2 / fan_in) keeps it: the logits' std is "
      f"{shrink['kaiming']:.2f} of the first layer's")
claim(shrink["xavier"] < 1e-2, f"Xavier's rule ignores ReLU, which zeroes half of every layer's output: "
      f"over 19 layers the signal falls to {shrink['xavier']:.0e} of the first layer's")
comeback = {s: backward[s][0] / backward[s][-1] for s in SCHEMES}
claim(comeback["std 0.01"] < 1e-6 < 10 < comeback["std 0.1"] and 0.1 < comeback["kaiming"] < 10,
      f"the gradient coming back does the same: at layer 1 it is {comeback['std 0.01']:.0e} (std 0.01), "
      f"{comeback['std 0.1']:.0e} (std 0.1) and {comeback['kaiming']:.1f} (kaiming) times its size at the output")
spread = {s: (v.max() / v.min(), wgrad[s].max() / wgrad[s].min()) for s, v in backward.items()}
claim(spread["std 0.01"][1] < 100 < 1e6 < spread["std 0.01"][0],
      f"yet with std 0.01 the weight gradients are level ({spread['std 0.01'][1]:.0f}x from smallest to "
      f"largest, against {spread['std 0.01'][0]:.0e}x for the biases): a weight's gradient is the signal "
      "coming in times the gradient coming back; the first is smallest near the output, the second near the "
      "input, and their product comes out level")
steps = {s: np.median(update[s]) for s in SCHEMES}
claim(steps["std 0.01"] < 1e-9 and steps["std 0.1"] > 1e-2 and 1e-4 < steps["kaiming"] < 1e-2,
      f"so one step at lr {lr} moves a weight layer by {steps['std 0.01']:.0e} of its size with std 0.01 "
      f"(nothing), by {steps['std 0.1']:.0e} with std 0.1 (a jump), and by {steps['kaiming']:.0e} with kaiming")

# %%
section("The GradientMonitor's table (std 0.01), some of its rows")
run = runs["std 0.01"]
monitor = run.monitor
text = io.StringIO()
monitor.table(file=text)
lines = text.getvalue().splitlines()
keep = {weights[0], biases[0], weights[8], biases[8], weights[-1], biases[-1]}
print("\n".join("  " + line for line in lines[1:2] + [row for row in lines if row.split(" ")[0] in keep]))
print("  norm, mean, std, max|g|: of the gradient's entries. zeros: the fraction of entries exactly 0 (a unit")
print("  that ReLU switched off for the whole batch passes no gradient). |dW|/|W|: how far the step moved the")
print("  parameter, relative to its size.")
record = records["std 0.01"]
print("  Where it shows 0.00e+00, the step did not change a single bit. Neighbouring float32 numbers near w are")
print("  about |w| x 2^-23 apart, and a change smaller than half that gap rounds back to w: only weights with")
print("  |w| < lr x |g| x 2^25 can move at all.")
w1 = np.abs(run.before[weights[0]])
reach = lr * record[weights[0]]["max_abs"] * 2.0 ** 25
print(f"  Layer 1: lr x max|g| = {lr * record[weights[0]]['max_abs']:.1e}, so only |w| < {reach:.1e} could move; its "
      f"smallest |w| is {w1.min():.1e}, and the step changed {run.changed[weights[0]].mean():.2%} of its weights")
rule = {n: rounding_rule(run.before[n], run.grads[n]) for n in record}  # every parameter, biases too
ties = sum(int((r == 0).sum()) for r in rule.values())
agree = all(np.array_equal(run.changed[n][rule[n] != 0], rule[n][rule[n] != 0] > 0) for n in record)
count = {kind: (sum(int((run.grads[n] != 0).sum()) for n in names), sum(int(run.changed[n].sum()) for n in names))
         for kind, names in (("weights", weights), ("biases", biases))}
print(f"  entries with a nonzero gradient, and how many the step changed: weights {count['weights'][0]}, "
      f"{count['weights'][1]}; biases {count['biases'][0]}, {count['biases'][1]} ({ties} ties left out)")
claim(agree and count["weights"][1] < count["weights"][0] and count["biases"][1] > 0, "the step changed exactly "
      "the entries the float32 rounding rule picks, those where lr x |g| exceeds half the gap to the next float32 "
      f"number: {count['weights'][1]} of the {count['weights'][0]} weights with a nonzero gradient, "
      f"{count['biases'][1]} of the {count['biases'][0]} bias entries (next to 0 the gap is 1e-45); rounding, "
      "not the gradient alone, decides which weights a tiny step can change")
print("  nan there: |W| was 0 before the step (biases start at zero), so there is nothing to divide by.")
zero_rows = [n for n in record if record[n]["update_ratio"] == 0]
nan_rows = [n for n in record if np.isnan(record[n]["update_ratio"])]
claim(zero_rows == [n for n in weights if (rule[n] < 0).all()] and all(record[n]["norm"] > 0 for n in zero_rows),
      f"the rows showing 0.00e+00 ({len(zero_rows)} of {len(weights)} weights here) are exactly the layers in "
      "which the rounding rule lets no weight move, though their gradient was not zero")
bias_moved = all(np.array_equal(run.changed[n], run.grads[n] != 0) for n in biases)
claim(nan_rows == biases and bias_moved,
      f"the rows showing nan are the {len(biases)} biases, and the step moved every bias entry whose gradient was "
      f"not zero, layer 1's too (lr x max|g| = {lr * record[biases[0]]['max_abs']:.0e}): "
      "next to 0 the float32 gap is 1e-45, so any change lands")

# %%
plt = pyplot()
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
panels = [(forward, "forward: std of the layer's output", "weight layer (1 = input side)"),
          (backward, "backward: |gradient| at the layer's output", "weight layer (1 = input side)"),
          (update, f"one step's |dW| / |W| (lr {lr})", "weight layer (1 = input side)")]
for ax, (values, title, xlabel) in zip(axes, panels):
    for s in SCHEMES:
        v = values[s]
        shown = np.where(v > 0, v, np.nan)  # a log axis has no 0
        line, = ax.semilogy(range(1, len(v) + 1), shown, marker="o", markersize=4, label=s)
        if (v == 0).any():
            ax.text(0.03, 0.04, f"{s}: {int((v == 0).sum())} of {len(v)} layers exactly 0 (not drawn)",
                    transform=ax.transAxes, fontsize=8, color=line.get_color())
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_xticks(range(1, 20, 2))
    ax.grid(True, which="major", alpha=0.3)
axes[0].set_ylabel("std")
axes[1].set_ylabel("gradient norm (bias)")
axes[2].set_ylabel("update / weight norm")
axes[0].legend(fontsize=8)
fig.suptitle(f"Configuration E (channels / {ratio}), one SGD step, four initializations", fontsize=11)
save_figure(fig, "10_gradient_flow.png")

notice("Too small a std starves every layer: the signal shrinks forward, the gradient shrinks backward, and "
       "a step moves the weights by nothing; too large a std blows both up.",
       "Weight-gradient norms alone hide this (they come out level); the biases' gradients and the update "
       "ratio |dW|/|W| show it.",
       "He's rule, std sqrt(2 / fan_in), keeps the signal's size through 19 ReLU layers; the paper instead "
       "trained the 11-layer A first and copied its layers into the deeper nets.")

exercises("Draw configuration A (11 layers) from N(0, 0.1^2), the paper's setting for A. Does the signal still "
          "blow up?",
          "Train E with std 0.01 for 50 steps with the GradientMonitor. Does the first layer ever move?",
          "Copy the first 4 convolutions and the dense layers of a trained A into E (models.init_from, the "
          "paper's recipe) and look at the forward signal again.")
