"""Lesson 9: training VGG on Fashion-MNIST: the data, the loop, D2L's plot and the test accuracy.
Quick mode trains on a 2,000-image subset; the full version trains on all 60,000 images for 3 epochs."""
# %%
import numpy as np

import minivgg as mv
from minivgg import data, models, optim, train
import minivgg.functional as F
from lesson import QUICK, claim, exercises, output, pyplot, section

section("The data")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
claim(train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28), "60,000 training and 10,000 test "
      "images of 28x28 grey pixels")
claim(np.bincount(train_y).tolist() == [6000] * 10, "ten classes, 6,000 training images each")
plt = pyplot()
fig, axes = plt.subplots(2, 9, figsize=(11, 3))
for ax, image, label in zip(axes.ravel(), train_x[:18], train_y[:18]):
    ax.imshow(image, cmap="gray")
    ax.set_title(data.text_labels[label], fontsize=8)
    ax.axis("off")
fig.savefig(output("09_fashion_mnist.png"), dpi=80)
print(f"  a grid of images with their labels: {output('09_fashion_mnist.png')}")

# %%
section("Batches on the device")
n_train = 2000 if QUICK else 60000
size = 32  # the smallest input that survives VGG's five poolings; D2L uses 224 on a GPU
train_loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), 64 if QUICK else 128, shuffle=True,
                               resize=size)
test_loader = data.DataLoader((test_x[:1000], test_y[:1000]) if QUICK else (test_x, test_y), 256, resize=size)
images, labels = next(iter(train_loader))
claim(images.shape[1:] == (1, size, size) and images.dtype == np.float32, f"each batch is float32 (B, 1, {size}, "
      f"{size}): uint8 pixels divided by 255 and resized bilinearly, batch by batch")

# %%
section("The training loop")
mv.manual_seed(0)
net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 8 if QUICK else 4)),
                        (1, 1, size, size), "kaiming")
optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
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
claim(first_losses[0] > 2.0, f"the first loss, {first_losses[0]:.2f}, is no better than guessing among ten "
      "classes (log 10 = 2.30)")

# %%
section("The same loop, with the bookkeeping: train.fit")
epochs = 2 if QUICK else 3
history = train.fit(net, train_loader, test_loader, optimizer, epochs, progress=False)
train.plot_history(history, output("09_training.png"))
print(f"  D2L's plot: {output('09_training.png')}")
final = history["epochs"][-1]
claim(final["loss"] < history["epochs"][0]["loss"] < 2.3, "the training loss went down epoch after epoch")
claim(final["test_acc"] > (0.3 if QUICK else 0.85),
      f"test accuracy {final['test_acc']:.3f}, far above chance (0.1)")

exercises("Train at 64x64 instead of 32x32. How do the epoch time and the accuracy change?",
          "D2L trains with lr 0.05 and no momentum, Xavier init. Try it at 32x32: what does the loss do in epoch 1?",
          "Run `minivgg train` and then `minivgg evaluate RUN_DIR`. Which classes are confused most?",
          "Initialize with `models.initialize(..., output_std=0.01)` (the CLI's CPU default): the first loss is "
          "now log 10 almost exactly. Does epoch 1 end lower than above? Why might small first logits help?")
