"""Lesson 21: transfer learning, as the Keras walk-through does it: take a trained network, freeze its
convolutional part (`requires_grad_(False)`), replace its head with a single logit (`net[-1] = nn.Linear(...)`)
and fine-tune on a small set of a binary task with binary cross-entropy. Here the trained network is a small VGG
trained on Fashion-MNIST; with ImageNet's weights the steps are the same (README, "Transfer learning":
`models.load_torchvision_weights` into `vgg_from_config("vgg16")`, nothing of which this lesson downloads)."""
# %%
import io

import numpy as np

import minivgg as mv
from minivgg import data, models, nn, optim, train
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

# Quick mode narrows the two 4096-wide dense layers: Adam's step over 4096 x 4096 weights would be most of its time.
ratio, width, n_base, base_epochs = (16, 512, 3000, 2) if QUICK else (8, 4096, 30000, 2)
size, negative, positive, per_class = 32, 5, 7, 100  # the task: sandal (0) or sneaker (1)?
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")


def build(seed):
    mv.manual_seed(seed)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, ratio))
    if width != 4096:  # the dense layers at positions 6 and 9 of D2L's VGG: Flatten is 5, ReLU 7, Dropout 8
        layers = list(net)  # a new Sequential: replacing a middle module in place moves it to the end
        layers[6], layers[9] = nn.LazyLinear(width), nn.LazyLinear(width)
        net = nn.Sequential(*layers)
    return models.initialize(net, (1, 1, size, size), "kaiming", output_std=0.01)


section(f"The trained network: VGG (channels / {ratio}) on the ten classes")
base = build(0)
base_loader = data.DataLoader((train_x[:n_base], train_y[:n_base]), 64, shuffle=True, resize=size)
base_test = data.DataLoader((test_x[:1000], test_y[:1000]), 500, resize=size)
history = train.fit(base, base_loader, base_test, optim.Adam(base.parameters(), lr=1e-3), base_epochs,
                    progress=False)
claim(history["epochs"][-1]["test_acc"] > 0.6, f"the base network classifies "
      f"{history['epochs'][-1]['test_acc']:.1%} of 1,000 test images into the ten classes")
trained_state = {name: t.numpy().copy() for name, t in base.state_dict().items()}

# As in the walk-through, whose ImageNet base had seen many cats and dogs, the base has seen sandals and
# sneakers; the fine-tuning images come from the half of the training set it was not trained on.
pool_x, pool_y = train_x[30000:], train_y[30000:]
pick = np.concatenate([np.flatnonzero(pool_y == c)[:per_class] for c in (negative, positive)])
small_x, small_y = pool_x[pick], (pool_y[pick] == positive).astype(np.int64)
in_task = np.isin(test_y, (negative, positive))
task_test = data.DataLoader((test_x[in_task], (test_y[in_task] == positive).astype(np.int64)), 500, resize=size)
small_loader = data.DataLoader((small_x, small_y), 32, shuffle=True, resize=size)
print(f"  the small set: {len(small_y)} images, {per_class} {data.text_labels[negative]}s (label 0) and "
      f"{per_class} {data.text_labels[positive]}s (label 1); the test: {in_task.sum():,} test images of the two")

# %%
section("Freeze the convolutional part, replace the head")


def transfer(state, head_seed=2):
    """A network of the base's shape holding `state`, its five blocks frozen and a fresh single-logit head."""
    net = build(1)
    net.load_state_dict(state)
    net[:5].requires_grad_(False)   # the five convolutional blocks: no gradient, no update
    mv.manual_seed(head_seed)
    net[-1] = nn.Linear(width, 1)   # one logit: the probability of 'sneaker' is its sigmoid
    return net


net = transfer(trained_state)
frozen = {name: p.numpy().copy() for name, p in net.named_parameters() if not p.requires_grad}
trainable = [p for p in net.parameters() if p.requires_grad]
optimizer = optim.Adam(trainable, lr=1e-4)
claim({id(p) for p in optimizer.params} == {id(p) for p in net.parameters() if p.requires_grad}
      and len(optimizer.params) == 6,
      "the optimizer holds the six trainable tensors only: the weights and biases of the two dense layers and "
      "the new head")

table = io.StringIO()
rows = mv.summary(net, (1, 1, size, size), per_layer=True, file=table)
print(table.getvalue())
printed = {line.split(":")[0]: int(line.split(":")[1].replace(",", "")) for line in table.getvalue().splitlines()
           if line.endswith(tuple("0123456789")) and "params:" in line}
counted_trainable = sum(p.numel() for p in trainable)
counted_frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
in_blocks = sum(count for name, _, _, count in rows if name.split(".")[0] in ("0", "1", "2", "3", "4"))
claim(printed["Trainable params"] == counted_trainable and printed["Non-trainable params"] == counted_frozen
      == in_blocks, f"the table's {printed['Trainable params']:,} trainable and {printed['Non-trainable params']:,} "
      "non-trainable parameters match a count of the parameters, and the non-trainable ones are exactly the "
      "five blocks' rows")

# %%
section("Fine-tune on the small set")
loss_fn = nn.BCEWithLogitsLoss()
images, labels = next(iter(small_loader))
logits = net(images)
targets = labels.numpy().astype(np.float32).reshape(-1, 1)  # one float target per logit
z = logits.numpy().astype(np.float64)
by_hand = np.mean(np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z))))
loss = loss_fn(logits, mv.tensor(targets))
claim(abs(loss.item() - by_hand) < 1e-5 and abs(F.binary_cross_entropy_with_logits(logits, targets).item()
                                                 - loss.item()) < 1e-7,
      f"nn.BCEWithLogitsLoss gives {loss.item():.5f}, as F.binary_cross_entropy_with_logits and the formula "
      "mean(max(z, 0) - z y + log(1 + exp(-|z|))) in NumPy do")
net.zero_grad()
loss.backward()
claim(all(p.grad is None for p in net.parameters() if not p.requires_grad)
      and all(p.grad is not None for p in trainable), "after backward the frozen parameters have no .grad at all; "
      "the trainable ones have one")


def fine_tune(net, optimizer, epochs=10):
    for epoch in range(epochs):
        small_loader.set_epoch(epoch)
        for images, labels in small_loader:
            loss = loss_fn(net(images), mv.tensor(labels.numpy().astype(np.float32).reshape(-1, 1)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return train.evaluate_accuracy(net, task_test)  # a single logit: predicted 1 where it is positive


dense_before = net[6].weight.numpy().copy()
accuracy = fine_tune(net, optimizer)
claim(all(np.array_equal(p.numpy(), frozen[name]) for name, p in net.named_parameters() if name in frozen),
      f"after {10 * len(small_loader)} steps every frozen parameter is bitwise what it was")
claim(not np.array_equal(net[6].weight.numpy(), dense_before), "while the trainable dense layers moved")
print(f"  test accuracy on the {in_task.sum():,} test images of the two classes: {accuracy:.3f}")

# %%
section("Against chance and against random features")
# The frozen blocks hold no dropout: they give an image the same features in every epoch. So the runs below
# compute them once per image and train only what follows them (net[5:]), with the steps fine_tune takes.
small_images = next(iter(data.DataLoader((small_x, small_y), len(small_y), resize=size)))[0]
test_images = [images for images, _ in task_test]


def fine_tuned(state, head_seed, epochs=10):
    net = transfer(state, head_seed)
    head, optimizer = net[5:], optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    with mv.no_grad():
        features = net[:5](small_images).numpy()
        test_features = [net[:5](images) for images in test_images]
    for epoch in range(epochs):
        order = np.random.default_rng([head_seed, epoch]).permutation(len(small_y))
        for batch in np.array_split(order, len(small_loader)):
            loss = loss_fn(head(mv.tensor(features[batch])), mv.tensor(small_y[batch].astype(np.float32)[:, None]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    head.eval()
    with mv.no_grad():
        predicted = np.concatenate([head(f).numpy()[:, 0] > 0 for f in test_features])
    return float(np.mean(predicted == (test_y[in_task] == positive)))


# New heads on the trained features; new random features (an untrained network each) with new heads.
head_seeds = (2, 5, 6, 7, 8)
trained_runs = np.array([fine_tuned(trained_state, seed) for seed in head_seeds])
random_runs = np.array([fine_tuned(build(3 + k).state_dict(), seed) for k, seed in enumerate(head_seeds)])
baseline_accuracy = random_runs.mean()
n = int(in_task.sum())
S = len(trained_runs)
test_var = 2 * 0.25 / n  # the most two accuracies on the same n test images can vary by sampling
error = np.sqrt(trained_runs.var(ddof=1) / S + random_runs.var(ddof=1) / S + test_var)
print(f"  test accuracy on {n:,} images, {S} runs each (same steps): trained frozen features "
      + ", ".join(f"{a:.3f}" for a in trained_runs) + "; random frozen features "
      + ", ".join(f"{a:.3f}" for a in random_runs) + f"; standard error of the difference of the means {error:.3f}")
claim(trained_runs.min() > 0.5 + 3 * np.sqrt(0.25 / n), f"fine-tuned, the net tells {data.text_labels[negative]}s "
      f"from {data.text_labels[positive]}s far above chance in every run (at least {trained_runs.min():.3f} "
      "against 0.5)")
claim(trained_runs.mean() - baseline_accuracy > 3 * error and trained_runs.min() > random_runs.max(),
      f"over {S} runs trained features beat random ones by {trained_runs.mean() - baseline_accuracy:.3f} on "
      "average, more than three standard errors (the runs' spread and the test set's), and the worst run on "
      "trained features beats the best on random ones: what the base learned carries over (one base network, "
      "trained once)")
accuracy = trained_runs.mean()

plt = pyplot()
fig, ax = plt.subplots(figsize=(5, 3.2))
names = ["chance", "random frozen\nfeatures", "trained frozen\nfeatures"]
values = [0.5, baseline_accuracy, accuracy]
bars = ax.bar(names, values, color=["lightgray", "tab:orange", "tab:blue"],
              yerr=[0, random_runs.std(ddof=1), trained_runs.std(ddof=1)], capsize=4)
for x, runs_ in ((1, random_runs), (2, trained_runs)):
    ax.plot([x] * len(runs_), runs_, "k.", markersize=4)
for bar, value, top in zip(bars, values, [0.5, random_runs.max(), trained_runs.max()]):
    ax.text(bar.get_x() + bar.get_width() / 2, max(value + 0.035, top + 0.02), f"{value:.3f}", ha="center",
            fontsize=9)
ax.set_ylim(0, 1.05)
ax.set_ylabel(f"test accuracy ({n:,} images);\nbar: mean of {S} runs (dots) ± 1 std", fontsize=9)
ax.set_title(f"{data.text_labels[negative]} or {data.text_labels[positive]}? {len(small_y)} training images",
             fontsize=10)
save_figure(fig, "21_transfer_learning.png")

notice("Freezing is per parameter: requires_grad_(False) on a module reaches every parameter below it, backward "
       "skips them, and an optimizer built from the trainable ones never sees them.",
       "The same 200 images and steps gave a clearly better classifier on trained frozen features than on random "
       "ones, in each of the runs: the base's training, not only its architecture, is what carries over.",
       "With ImageNet's weights (models.load_torchvision_weights, see the README) the same three lines apply to "
       "a 224x224 VGG-16; the images must then be normalized as ImageNet's were.")

exercises("Leave sandals and sneakers out of the base network's training data. How much of the gain remains?",
          "The walk-through's second stage: unfreeze everything (requires_grad_(True)) and fine-tune with lr 1e-5. "
          "Does the test accuracy move?",
          f"Freeze the two dense layers as well, so that only the head ({width + 1:,} parameters) trains. Better "
          "or worse?")
