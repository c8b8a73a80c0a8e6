"""Lesson 10: gradients in a deep VGG. Configuration E (19 weight layers) after one SGD step, with its weights
drawn five ways: N(0, std 0.01), N(0, std 0.1) (the paper's "10^-2 variance"), Xavier (D2L), He (kaiming) and
PyTorch's default for Conv2d and Linear.
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
SCHEMES = {"std 0.01": "normal", "std 0.1": 0.1, "xavier": "xavier", "kaiming": "kaiming", "pytorch": "pytorch"}
PROBE = {"conv 9": 8, "dense 1": 16}  # two weight layers with many weights: their std is sharp


def build(scheme, config="E"):
    """Configuration `config` with its weights drawn by `scheme` (an initializer name, a std, or PyTorch's
    default), biases zero except in PyTorch's default."""
    mv.manual_seed(0)
    net = models.vgg_from_config(config, num_classes=10, in_channels=3, ratio=ratio)
    rule = SCHEMES[scheme]
    models.initialize(net, (1, 3, size, size), rule if rule in ("normal", "xavier", "kaiming") else "normal")
    for m in weight_layers(net):  # initialize() knows std 0.01 only: draw the others with nn.init directly
        if isinstance(rule, float):
            nn.init.normal_(m.weight, 0.0, rule)
        elif rule == "pytorch":  # what nn.Conv2d and nn.Linear draw in PyTorch's reset_parameters()
            nn.init.kaiming_uniform_(m.weight, a=np.sqrt(5))
            bound = 1 / np.sqrt(nn.init.fans(m.weight)[0])
            nn.init.uniform_(m.bias, -bound, bound)
    return net


def weight_layers(net):
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def first_step(scheme, config="E"):
    """One SGD step (lr 0.01, momentum 0.9) of E drawn by `scheme`, and what it did."""
    net = build(scheme, config)
    layers = weight_layers(net)
    signal = []
    hooks = [m.register_forward_hook(lambda mod, inputs, out: signal.append(float(out.data.std()))) for m in layers]
    monitor = inspection.GradientMonitor(net)
    opt = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    before = {name: p.numpy() for name, p in net.named_parameters()}
    probe = [i for i in PROBE.values() if i < len(layers)]  # A has 11 weight layers
    drawn = [float(layers[i].weight.numpy().std()) for i in probe]
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
        drawn=drawn, stepped=[float(layers[i].weight.numpy().std()) for i in probe],
        fans=[nn.init.fans(layers[i].weight) for i in probe], shapes=[layers[i].weight.shape for i in probe])


def rounding_rule(w, g):
    """Which entries w - lr * g moves, by float32 rounding alone: +1 moves, -1 stays, 0 a tie (too close to say).
    The step d = lr * g (momentum's first step is g itself) lands on w's neighbour only if |d| is more than half
    the gap between w and that neighbour."""
    d = lr * g  # as the optimizer computes it, in float32
    toward = np.where(d < 0, np.float32(np.inf), np.float32(-np.inf))  # the neighbour the step heads for
    gap = np.abs(np.nextafter(w, toward) - w)
    return np.where(d == 0, -1, np.sign(np.abs(d) - gap / 2)).astype(int)


runs = {scheme: first_step(scheme) for scheme in SCHEMES}  # what follows reads these steps

# %%
section(f"Five ways to draw the weights (configuration E, channels / {ratio}, {size}x{size} inputs)")
print("  models.initialize draws every weight with nn.init: 'normal' is N(0, 0.01^2), 'xavier' is uniform with")
print("  std sqrt(2 / (fan_in + fan_out)), 'kaiming' is normal with std sqrt(2 / fan_in) (fan_in = C_in x 3 x 3).")
print("  PyTorch's Conv2d and Linear draw kaiming_uniform_(a=sqrt(5)): uniform with std sqrt(1 / (3 fan_in)), a")
print("  gain of sqrt(2 / (1 + 5)) where He's has sqrt(2); their biases uniform in +-1 / sqrt(fan_in).")
print("  The paper's N(0, 10^-2) is a variance: std 0.1, ten times minivgg's 'normal' (std 0.01, the reading")
print("  common in Caffe-era code).")
rules = {"std 0.01": lambda fi, fo: 0.01, "std 0.1": lambda fi, fo: 0.1,
         "xavier": lambda fi, fo: np.sqrt(2 / (fi + fo)), "kaiming": lambda fi, fo: np.sqrt(2 / fi),
         "pytorch": lambda fi, fo: np.sqrt(1 / (3 * fi))}
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
# Xavier is D2L's init for VGG-11 and the paper's note (after submission) says Glorot's rule trains its nets
# without the warm start: one step of the 11-layer A shows why that is no contradiction.
in_a = first_step("xavier", "A").record
steps_a = np.median([in_a[n]["update_ratio"] for n in in_a if n.endswith("weight")])
print(f"  Xavier's step is small, {steps['xavier']:.0e} of each layer's size in E, yet D2L trains VGG-11 with Xavier")
print("  and the paper notes (added after submission) that Glorot's rule trains its nets without the warm start.")
print("  A small step is not no step: every layer of E moved, and in the 11-layer A the same rule's first step is")
print(f"  {steps_a:.0e}, {steps_a / steps['xavier']:.0f}x larger; each layer fewer multiplies by about one less")
print("  factor below 1, and training then grows the signal. Std 0.01 moves no weight at all.")
still = {s: int((update[s] == 0).sum()) for s in ("xavier", "std 0.01")}
claim(still["xavier"] == 0 and still["std 0.01"] > len(weights) // 2 and steps_a > 10 * steps["xavier"],
      f"Xavier is slow, not stuck: its step in E moves all {len(weights)} weight layers, where std 0.01's leaves "
      f"{still['std 0.01']} untouched, and in the 11-layer A its median step is {steps_a / steps['xavier']:.0f} "
      "times larger")
first_last = update["pytorch"][0], update["pytorch"][-1]
claim(gain["pytorch"] < 0.5 and comeback["pytorch"] < 1e-4 and first_last[0] < 1e-6 * first_last[1],
      f"PyTorch's default (gain sqrt(1/3) where He's is sqrt(2)) multiplies by about {gain['pytorch']:.2f} per "
      f"layer: the gradient reaching layer 1 is {comeback['pytorch']:.0e} of its size at the output, and one step "
      f"moves layer 1 by {first_last[0]:.0e} of its size against {first_last[1]:.0e} for the last; its random "
      "biases keep the forward signal from vanishing, nothing does that for the gradient")

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
fig.suptitle(f"Configuration E (channels / {ratio}), one SGD step, five initializations", fontsize=11)
save_figure(fig, "10_gradient_flow.png")

notice("Too small a std starves every layer: the signal shrinks forward, the gradient shrinks backward, and "
       "a step moves the weights by nothing; too large a std blows both up.",
       "Weight-gradient norms alone hide this (they come out level); the biases' gradients and the update "
       "ratio |dW|/|W| show it.",
       "He's rule, std sqrt(2 / fan_in), keeps the signal's size through 19 ReLU layers; the paper instead "
       "trained the 11-layer A first and copied its layers into the deeper nets.",
       "Xavier's rule and PyTorch's default shrink the signal more gently than std 0.01 (about 0.6 and 0.4 per "
       "layer here): over 19 layers the first steps are tiny, over D2L's 11 far less so; PyTorch's starves the "
       "layers nearest the input most.")

exercises("Draw configuration A (11 layers) from N(0, 0.1^2), the paper's setting for A. Does the signal still "
          "blow up?",
          "Train E with std 0.01 for 50 steps with the GradientMonitor. Does the first layer ever move?",
          "Copy the first 4 convolutions and the dense layers of a trained A into E (models.init_from, the "
          "paper's recipe) and look at the forward signal again.")
