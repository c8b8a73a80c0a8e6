"""Lesson 9: training VGG on Fashion-MNIST: the data, the loop, D2L's plot (and why its loss curve is a
sawtooth) and the test accuracy. D2L trains at 224x224 on a GPU; on a CPU this lesson trains at 32x32, with
its own learning rate (it prints both recipes). Quick mode trains the same network on a 1,024-image subset
for 3 epochs; the full version on all 60,000 images for 3 epochs."""
# %%
import numpy as np

import minivgg as mv
from minivgg import data, models, optim, train
from minivgg.plotting import plot_history
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, output, pyplot, save_figure, section

section("The data")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
claim(train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28), "60,000 training and 10,000 test "
      "images of 28x28 grey pixels")
claim(np.bincount(train_y).tolist() == [6000] * 10, "ten classes, 6,000 training images each")
plt = pyplot()
fig, axes = plt.subplots(2, 9, figsize=(11, 3.6))
for ax, image, label in zip(axes.ravel(), train_x[:18], train_y[:18]):
    ax.imshow(image, cmap="gray")
    ax.set_title(data.text_labels[label], fontsize=8)
    ax.axis("off")
fig.suptitle("The first 18 training images and their labels")
save_figure(fig, "09_fashion_mnist.png", dpi=80, label="a grid of images with their labels")

# %%
section("Batches on the device")
n_train, n_test = (1024, 500) if QUICK else (60000, 10000)
size = 32  # the smallest input that survives VGG's five poolings; D2L uses 224 on a GPU
train_loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), 64 if QUICK else 128, shuffle=True,
                               resize=size)
test_loader = data.DataLoader((test_x[:n_test], test_y[:n_test]), 256, resize=size)
images, labels = next(iter(train_loader))
claim(images.shape[1:] == (1, size, size) and images.dtype == np.float32, f"each batch is float32 (B, 1, {size}, "
      f"{size}): uint8 pixels divided by 255 and resized bilinearly, batch by batch")

# %%
section("The training loop")
mv.manual_seed(0)
net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, size, size), "kaiming")
lr, momentum, epochs = 0.01, 0.9, 3
optimizer = optim.SGD(net.parameters(), lr=lr, momentum=momentum)
print("  D2L's recipe: 224x224 on a GPU, Xavier init, SGD lr 0.05 without momentum, batch 128, 10 epochs")
print(f"  this lesson:  {size}x{size} on the CPU, He init, SGD lr {lr} with momentum {momentum}, "
      f"batch {train_loader.batch_size}, {epochs} epochs")
first_losses = []
for step, (images, labels) in enumerate(train_loader):
    loss = F.cross_entropy(net(images), labels)  # forward
    optimizer.zero_grad()
    loss.backward()                                # backward
    optimizer.step()                               # update
    first_losses.append(loss.item())
    if step == 4:
        break
print(f"  five steps by hand: losses {np.round(first_losses, 3).tolist()}")
claim(first_losses[0] > np.log(10), f"the first loss, {first_losses[0]:.2f}, is worse than guessing evenly among "
      f"ten classes (log 10 = {np.log(10):.2f}): random weights favour some classes, mostly the wrong ones")

# %%
section("The same loop, with the bookkeeping: train.fit")
net = models.initialize(net, (1, 1, size, size), "kaiming")  # fresh weights: the plot shows training from the start
optimizer = optim.SGD(net.parameters(), lr=lr, momentum=momentum)
untrained_acc = train.evaluate_accuracy(net, test_loader)
log_every = 4 if QUICK else 20  # steps between two points of the loss curve
history = train.fit(net, train_loader, test_loader, optimizer, epochs, progress=False, log_every=log_every)
plot_history(history, output("09_training.png"))
print(f"  D2L's plot: {output('09_training.png')}")
losses = [e["loss"] for e in history["epochs"]]
claim(all(b < a for a, b in zip(losses, losses[1:])),
      "the training loss went down epoch after epoch: " + " > ".join(f"{v:.3f}" for v in losses))
final = history["epochs"][-1]["test_acc"]
claim(final > max(untrained_acc, 0.1) + (0.15 if QUICK else 0.75),
      f"test accuracy {final:.3f}, far above the {untrained_acc:.3f} before training (chance: 0.1)")

# %%
section("Why the loss curve is a sawtooth")
# A point of D2L's curve is the mean loss of the epoch so far: fit keeps a running sum and restarts it at every
# epoch. Undone, (mean * seen - sum before) / (seen - seen before) is the loss of the batches since the last point.
batches = len(train_loader)
running, recent, epoch_ends = [], [], []
for p in history["points"]:
    step = (round(p["epoch"] * batches) - 1) % batches + 1  # 1 .. batches within its epoch
    seen = min(step * train_loader.batch_size, n_train)
    if step <= log_every:  # a new epoch: the sum restarts
        sum_before = seen_before = 0.0
        middle = None
    running.append(p["loss"])
    recent.append((p["loss"] * seen - sum_before) / (seen - seen_before))
    sum_before, seen_before = p["loss"] * seen, seen
    if middle is None and step >= batches / 2:
        middle = (sum_before, seen)
    if step == batches:  # the point's index, the epoch's mean, and the mean of the epoch's second half
        epoch_ends.append((len(running) - 1, p["loss"], (sum_before - middle[0]) / (seen - middle[1])))
for e, (i, mean, second_half) in enumerate(epoch_ends[:-1], 1):
    print(f"  epoch {e}: mean {mean:.3f}, its second half {second_half:.3f}; epoch {e + 1} starts at "
          f"{running[i + 1]:.3f}")
claim(np.allclose([mean for _, mean, _ in epoch_ends], losses)
      and all(second_half < mean and running[i + 1] < mean for i, mean, second_half in epoch_ends[:-1]),
      "each epoch's curve ends at the epoch's mean loss, above its second half's: the mean still carries the first "
      "half's worse batches, so the curve drops when the next epoch restarts it")
x = [p["epoch"] for p in history["points"]]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(x, running, "o-", markersize=4, label="mean of the epoch so far (D2L's curve)")
ax.plot(x, recent, "s--", markersize=4, label=f"mean of the last {log_every} batches")
for e in range(1, epochs):
    ax.axvline(e, color="black", linewidth=1.2, linestyle=":", label="new epoch: the mean restarts" if e == 1 else None)
ax.set(xlabel="epoch", ylabel="training loss", title="D2L's loss curve is a running mean, restarted every epoch")
ax.grid(True)
ax.legend()
save_figure(fig, "09_loss_curve.png", dpi=100, label="both curves")

notice("An untrained net does worse than guessing evenly (log 10): its random scores favour classes for no reason.",
       "D2L's loss curve averages over the epoch so far, so it lags behind the batches and drops at each new "
       "epoch; the loss of the last few batches shows the real trend.",
       "The test accuracy is measured on images the net never trained on, with dropout off.")

exercises("Train at 64x64 instead of 32x32. How do the epoch time and the accuracy change?",
          "D2L trains with lr 0.05 and no momentum, Xavier init. Try it at 32x32: what does the loss do in epoch 1?",
          "Run `minivgg train` and then `minivgg evaluate RUN_DIR`. Which classes are confused most?",
          "Initialize with `models.initialize(..., output_std=0.01)` (the CLI's CPU default): how close to log 10 "
          "is the first loss now? Does epoch 1 end lower than above? Why might small first logits help?")
