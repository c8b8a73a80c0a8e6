"""Lesson 19: stuck at chance. A VGG-16 trained from scratch whose accuracy never leaves 10%, the stall the Keras
write-up meets when it trains VGG-16 from scratch; the cause found with the gradient tools (GradientMonitor,
inspection.layer_table), and the fix, measured before and after."""
# %%
import numpy as np

import minivgg as mv
from minivgg import data, inspection, models, nn, optim, train
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

ratio, n_train = (16, 2560) if QUICK else (8, 12800)
size, batch = 32, 64
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
train_loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), batch, shuffle=True, resize=size)
test_loader = data.DataLoader((test_x[:1000], test_y[:1000]), 250, resize=size)


def run(lr, seed=0):
    """One epoch of configuration D (VGG-16) from He's initialization, SGD with momentum 0.9; the loss of every
    step and a gradient monitor's record of every step of the convolutional part."""
    mv.manual_seed(seed)
    net = models.initialize(models.vgg_from_config("D", num_classes=10, in_channels=1, ratio=ratio),
                            (1, 1, size, size), "kaiming")
    optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    # net[:5] holds the same layer objects (and names) as net; leaving out the dense part's 4096x4096
    # weights spares the monitor a copy of them at every step.
    monitor = inspection.GradientMonitor(net[:5])
    train_loader.set_epoch(0)
    losses = [train.train_step(net, images, labels, optimizer, monitor=monitor)[0].item()
              for images, labels in train_loader]
    monitor.remove()
    return net, monitor, losses


section(f"VGG-16 (channels / {ratio}) from scratch, SGD lr 0.1 (one run, seed 0; other seeds at the end)")
net, monitor, losses = run(0.1)
predicted, true = train.predict(net, test_loader)
accuracy = (predicted == true).mean()
print(f"  {len(losses)} steps: loss {losses[0]:.3f} at the first, {np.mean(losses[-10:]):.4f} over the last ten; "
      f"test accuracy {accuracy:.3f}")
claim(abs(np.mean(losses[-10:]) - np.log(10)) < 0.05, f"the loss ends at log 10 = {np.log(10):.4f}, what "
      "uniform guessing among ten classes costs")
claim(len(set(predicted.tolist())) == 1, f"the net gives every one of the 1,000 test images the same class, "
      f"'{data.text_labels[predicted[0]]}': its accuracy, {accuracy:.3f}, is just that class's share")

# %%
section("Slow or dead? The gradient monitor")
last = monitor.history[-1]
conv_weights = [f"{name}.weight" for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
zero = [last["params"][n]["zero_frac"] for n in conv_weights]
print("  fraction of exact zeros in each convolution's weight gradient, last step:")
print("  " + " ".join(f"{z:.2f}" for z in zero))
claim(min(zero) == 1.0, f"all {len(conv_weights)} convolutions got a gradient of exactly zero: not small, zero")
dead = {name: frac for name, frac in last["relu"].items() if frac == 1.0}
claim(len(dead) > 0, f"the monitor names the cause: ReLU {', '.join(dead)} outputs 0 for every image of the "
      "batch, in every channel and position (dead units: 100%)")

relu = dict(net.named_modules())[next(iter(dead))]
seen = []
handle = relu.register_forward_hook(lambda module, inputs, out: seen.append(out.numpy()))
handle_flat = net[5].register_forward_hook(lambda module, inputs, out: seen.append(out.numpy()))
images, labels = next(iter(test_loader))
print("\n  inspection.layer_table on 250 test images:")
inspection.layer_table(net, images, labels)
handle.remove()
handle_flat.remove()
dense_in = seen[1]
logits = net.eval()(images).numpy()
spread = np.abs(logits - logits[0]).max()
# Equal rows in, so rows out differ only where the BLAS sums them in another order (its blocking treats rows
# differently, and differently on each processor). Bound that by float32's worst-case rounding of a K-term dot
# product, K * eps * sum_k |w_k x_k| (Higham's gamma_K), carried through the dense layers in float64.
eps = np.finfo(np.float32).eps
dense = [m for m in net[5:] if isinstance(m, nn.Linear)]
dense_spread = float(np.abs(dense_in - dense_in[0]).max())
h, bound = dense_in[:1].astype(np.float64), dense_spread
for layer in dense:
    w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
    bound = w.shape[1] * eps * (np.abs(h) @ np.abs(w).T).max() + np.abs(w).sum(axis=1).max() * bound
    h = np.maximum(h @ w.T + b, 0) if layer is not net[-1] else h @ w.T + b
claim(np.all(seen[0] == 0), "on test images too: that ReLU's output is all zeros, so from there on every image "
      f"is computed from the same numbers (the rows entering the dense layers differ by {dense_spread:.1e}); "
      "nothing below it can get a gradient through a ReLU that is off everywhere")
claim(spread <= bound, f"every image gets the same logits, up to float32's rounding of the dense products "
      f"(largest difference {spread:.1e}, worst-case bound {bound:.1e}); the net cannot tell images apart")

steps = [r["step"] for r in monitor.history]
first_name = conv_weights[0]
alive = [r["params"][first_name]["zero_frac"] < 1.0 for r in monitor.history]
died = steps[alive.index(False)]
dying = next(iter(dead))
dead_over_steps = [r["relu"][dying] for r in monitor.history]
print(f"\n  ReLU {dying}'s dead units, step by step: "
      + " ".join(f"{d:.2f}" for d in dead_over_steps[:died + 1]) + " ...")
claim(died < len(steps) // 2 and not any(alive[died:]), f"it died early: from step {died} of {len(steps)} on, the "
      "first convolution's gradient is exactly zero and never comes back; a dead layer cannot recover, because "
      "no gradient reaches the weights that could revive it")

# %%
section("The fix: a ten times smaller learning rate, all else equal")
net2, monitor2, losses2 = run(0.01)
accuracy2 = train.evaluate_accuracy(net2, test_loader)
last2 = monitor2.history[-1]
zero2 = [last2["params"][n]["zero_frac"] for n in conv_weights]
print(f"  lr 0.01: loss {np.mean(losses2[-10:]):.3f} over the last ten steps, test accuracy {accuracy2:.3f} "
      f"(lr 0.1: {accuracy:.3f})")
print(f"  most dead units in any ReLU at the last step: {max(last2['relu'].values()):.0%}; largest gradient zero "
      f"fraction of a convolution: {max(zero2):.2f}")
claim(max(last2["relu"].values()) < 1.0 and max(zero2) < 1.0, "no ReLU is off for the whole batch and every "
      "convolution gets a gradient")
claim(accuracy2 > accuracy + 0.2, f"test accuracy {accuracy2:.3f} after the same {len(losses2)} steps, against "
      f"{accuracy:.3f}: the net learns (seed 0's run)")
dead2 = [r["relu"][dying] for r in monitor2.history]
print(f"  ReLU {dying}'s dead units at lr 0.01: at most {max(dead2):.0%} over the {len(dead2)} steps")
claim(max(dead2) < 0.9, f"with the smaller steps ReLU {dying} never comes near dying (at most {max(dead2):.0%} of "
      "its units off for a whole batch, against 100% at lr 0.1)")

# %%
section("Other seeds: is it the learning rate, or seed 0?")
more = (1,) if QUICK else (1, 2)  # each seed is two more runs: quick mode takes one
outcome = {}
for lr in (0.1, 0.01):
    for seed in more:
        _, mon, seed_losses = run(lr, seed)
        dead_at_end = mon.history[-1]["params"][first_name]["zero_frac"] == 1.0
        outcome[lr, seed] = dead_at_end
        print(f"  lr {lr:<4} seed {seed}: loss {np.mean(seed_losses[-10:]):.3f} over the last ten steps; first "
              f"convolution's gradient {'exactly zero (dead)' if dead_at_end else 'alive'} at the last step")
claim(all(outcome[0.1, s] for s in more) and not any(outcome[0.01, s] for s in more),
      f"with seed{'s' * (len(more) > 1)} {', '.join(map(str, more))} as with seed 0, lr 0.1 killed the net and lr "
      f"0.01 did not: {len(more) + 1} seeds of "
      "each, so the learning rate, not one draw of the weights, decides here (alive is not yet learned: the "
      "losses say how far each got in one epoch)")

plt = pyplot()
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6))
left.plot(losses, label="lr 0.1", color="tab:red")
left.plot(losses2, label="lr 0.01", color="tab:blue")
left.axhline(np.log(10), color="gray", linestyle=":", label="log 10 (chance)")
left.set(xlabel="step", ylabel="training loss (batch)", title="VGG-16 from scratch")
left.legend()
middle.plot(dead_over_steps, marker=".", color="tab:red", label="lr 0.1")
middle.plot(dead2, marker=".", color="tab:blue", label="lr 0.01")
middle.set(xlabel="step", ylabel="fraction of dead units", title=f"ReLU {dying}: units off for the whole batch",
           ylim=(0, 1.05))
middle.legend()
for rec, lr, color in ((monitor, "0.1", "tab:red"), (monitor2, "0.01", "tab:blue")):
    norms = np.array([r["params"][first_name]["norm"] for r in rec.history])
    right.semilogy(np.where(norms > 0)[0], norms[norms > 0], marker=".", color=color, label=f"lr {lr}")
right.axvline(died, color="tab:red", linestyle="--", label=f"lr 0.1: exactly 0 from step {died}\n(not drawable "
              "on a log axis)")
right.set(xlabel="step", ylabel=f"gradient norm of {first_name}", title="first convolution's gradient")
right.legend(fontsize=8)
save_figure(fig, "19_stuck_at_chance.png")

notice("Accuracy at exactly one class's share and a loss pinned at log 10 mean the output ignores the input: look "
       "for a layer whose output is the same for every image.",
       "The monitor tells 'slow' from 'dead': a gradient that is small can grow, a gradient of exact zeros "
       "(a ReLU off for every input) never will.",
       "He initialization does not protect against a step that is too large; a smaller rate (or warmup and "
       "gradient clipping, as `minivgg train` does) does.")

exercises("Try lr 0.02 and 0.05. Where between 0.01 and 0.1 does the net start to die, and does the seed matter?",
          "Keep lr 0.1 but clip the gradient norm at 5 (train_step's clip_grad_norm). Does the net survive?",
          "Give the dead net's last-block biases a value of 0.1 by hand. Does training resume?")
