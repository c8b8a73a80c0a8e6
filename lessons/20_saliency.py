"""Lesson 20: what the network looks at. The gradient of one class score with respect to the input image is a
saliency map (Simonyan, Vedaldi & Zisserman, 2013): how much each pixel would move that score. The same
backward pass that trains the weights computes it, once the image asks for a gradient."""
# %%
import numpy as np

import minivgg as mv
from minivgg import data, models, optim, train
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

section("A small VGG, trained briefly")
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
n_train, ratio, epochs = (3000, 16, 2) if QUICK else (30000, 8, 2)
size = 32
train_loader = data.DataLoader((train_x[:n_train], train_y[:n_train]), 64, shuffle=True, resize=size)
test_loader = data.DataLoader((test_x[:1000], test_y[:1000]), 250, resize=size)


def fresh_net(seed):
    mv.manual_seed(seed)
    return models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, ratio)), (1, 1, size, size),
                             "kaiming", output_std=0.01)


net = fresh_net(0)
first_filters = net[0][0].weight.numpy().copy()
history = train.fit(net, train_loader, test_loader, optim.Adam(net.parameters(), lr=1e-3), epochs,
                    progress=False)
accuracy = history["epochs"][-1]["test_acc"]
claim(accuracy > 0.6, f"after {epochs} epoch(s) on {n_train:,} images the net classifies {accuracy:.1%} of 1,000 "
      "test images correctly (chance: 10%)")
net.eval()  # dropout off: a saliency map should describe the network, not one draw of its masks

# %%
section("The gradient tools turned on the image")
images, labels = next(iter(data.DataLoader((test_x[:200], test_y[:200]), 200, resize=size)))
image = images.numpy()[:1]
x = mv.tensor(image, requires_grad=True)  # a leaf that asks for its gradient, like a weight does
logits = net(x)
c = int(logits.numpy().argmax())
logits[0, c].backward()  # one class score, not the loss: which pixels would raise it?
grad = x.grad.numpy()[0, 0]
print(f"  image 0 is a {data.text_labels[int(labels.numpy()[0])]}; the net says {data.text_labels[c]} "
      f"(logit {logits.numpy()[0, c]:.2f})")
print(f"  x.grad has the image's shape, {x.grad.shape}: one number per pixel")


def score(pixels):
    with mv.no_grad():
        return float(net(mv.tensor(pixels)).numpy()[0, c])


# A ReLU network is piecewise linear: between its corners a small step measures the slope backward computes.
h = 1e-4
rng = np.random.default_rng(0)
item, background = image[0, 0] > 0.2, image[0, 0] == 0
strongest = np.argsort(-np.abs(grad * item), axis=None)[:4]
others = np.setdiff1d(np.flatnonzero(item), strongest)
pixels = [np.unravel_index(k, grad.shape) for k in np.concatenate([strongest, rng.choice(others, 4, replace=False)])]
pixels += [tuple(p) for p in np.argwhere(background)[rng.choice(int(background.sum()), 2, replace=False)]]
centre, scale = score(image), np.abs(grad).max()
print(f"  {'pixel':<10} {'value':>6} {'backward':>9} {'slope from the left':>20} {'from the right':>15}")
smooth_on_item, agree = 0, True
for i, j in pixels:
    step = np.zeros_like(image)
    step[0, 0, i, j] = h
    left, right = (centre - score(image - step)) / h, (score(image + step) - centre) / h
    corner = abs(right - left) > 0.02 * scale
    if item[i, j] and not corner:
        smooth_on_item += 1
        agree &= max(abs(grad[i, j] - left), abs(grad[i, j] - right)) < 0.02 * scale
    print(f"  {f'({i}, {j})':<10} {image[0, 0, i, j]:>6.2f} {grad[i, j]:>9.4f} {left:>20.4f} {right:>15.4f}"
          + ("   corner" if corner else ""))
claim(smooth_on_item >= 4 and agree, f"at the {smooth_on_item} of 8 pixels on the item where the score has one "
      f"slope (left and right agree within 2% of the largest, {scale:.2f}), backward's value is that slope")
print("  A corner is where the slopes from the two sides differ. On the flat black background max-pooling windows "
      "hold ties and ReLUs sit at exactly 0, so any step changes which unit passes the signal; backward then "
      "reports one of the slopes (the first maximum of a tie, ReLU'(0) = 0).")

# %%
section("Saliency for a batch, in one backward pass")
x = mv.tensor(images.numpy(), requires_grad=True)
logits = net(x)
predicted = logits.numpy().argmax(axis=1)
chosen = np.eye(10, dtype=np.float32)[predicted]  # picks each image's own predicted-class score
(logits * mv.tensor(chosen)).sum().backward()
saliency = np.abs(x.grad.numpy()[:, 0])
gap, other = np.abs(saliency[0] - np.abs(grad)).max(), np.abs(saliency[1] - np.abs(grad)).max()
print(f"  largest difference from image 0's map alone: image 0 of the batch {gap:.2g}, image 1 {other:.2g} "
      f"(the map's largest value {np.abs(grad).max():.3g})")
claim(gap <= 1e-5 * np.abs(grad).max() < other, "image 0's map from the batch equals its map alone, to float32 "
      "rounding (the products sum in another order for 8 images than for 1): in evaluation mode the images of a "
      "batch do not touch each other, so one backward gives every map")

# %%
section("Whose map is it? The trained net's against an untrained one's")
untrained = fresh_net(1).eval()
x0 = mv.tensor(images.numpy(), requires_grad=True)
(untrained(x0) * mv.tensor(chosen)).sum().backward()
raw = np.abs(x0.grad.numpy()[:, 0])


def rank_correlation(a, b):
    """Spearman's correlation of two maps per image: the Pearson correlation of their pixel ranks."""
    ra, rb = (np.argsort(np.argsort(m.reshape(len(m), -1), axis=1), axis=1).astype(float) for m in (a, b))
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


same_model = rank_correlation(saliency, raw)
same_image = rank_correlation(saliency, images.numpy()[:, 0])
print(f"  rank correlation per image, median over {len(images)}: trained map vs untrained map "
      f"{np.median(same_model):.2f}, trained map vs the image itself {np.median(same_image):.2f}")
claim(np.median(same_model) < 0.3 and np.median(same_image) < 0.3, "the map is the trained net's, not the image's "
      "or the architecture's: it hardly correlates with an untrained net's map or with the pixels themselves "
      "(Adebayo et al. 2018's check: a saliency method that fails it only draws edges)")

objects = images.numpy()[:, 0] > 0.1  # the item; Fashion-MNIST's background is exactly 0
on_item = saliency[objects].mean()
off_item = saliency[~objects].mean()
print(f"  the item covers {objects.mean():.0%} of the pixels and holds {saliency[objects].sum() / saliency.sum():.0%} "
      f"of the saliency; mean |gradient| per pixel {on_item:.3f} on the item, {off_item:.3f} on the background")
claim(off_item > 0.5 * on_item, f"the map is not confined to the item: a black background pixel gets "
      f"{off_item / on_item:.0%} of an item pixel's saliency on average; lighting it would change the outline "
      "the net sees, and the gradient says by how much")

plt = pyplot()
show = 8
fig, axes = plt.subplots(3, show, figsize=(1.45 * show, 4.9))
for k in range(show):
    axes[0, k].imshow(images.numpy()[k, 0], cmap="gray")
    axes[0, k].set_title(data.text_labels[int(predicted[k])], fontsize=8,
                         color="black" if predicted[k] == labels.numpy()[k] else "red")
    axes[1, k].imshow(saliency[k], cmap="hot")
    axes[2, k].imshow(raw[k], cmap="hot")
    for ax in axes[:, k]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("image\n(predicted)", fontsize=8)
axes[1, 0].set_ylabel("|d score / d x|\ntrained", fontsize=8)
axes[2, 0].set_ylabel("|d score / d x|\nuntrained", fontsize=8)
fig.suptitle("|gradient of the predicted class's score| per pixel, each map on its own scale "
             "(bright: moves the score most; red title: a wrong prediction)",
             fontsize=9)
save_figure(fig, "20_saliency.png")

# %%
section("The first layer's filters")
filters = net[0][0].weight.numpy()
moved = np.linalg.norm(filters - first_filters) / np.linalg.norm(first_filters)
print(f"  {filters.shape[0]} filters of shape {filters.shape[1:]} (one grey input channel); training moved them by "
      f"{moved:.0%} of their initial norm")
with mv.no_grad():
    responses = net[0][1](net[0][0](mv.tensor(image))).numpy()[0]  # the first convolution and its ReLU
count = filters.shape[0]
fig, axes = plt.subplots(3, count, figsize=(max(1.3 * count, 6), 4.4))
for k in range(count):
    for row, weights in enumerate((first_filters, filters)):
        bound = np.abs(weights[k, 0]).max()
        axes[row, k].imshow(weights[k, 0], cmap="bwr", vmin=-bound, vmax=bound)
    axes[2, k].imshow(responses[k], cmap="gray")
    for ax in axes[:, k]:
        ax.set_xticks([])
        ax.set_yticks([])
for row, name in enumerate(("initial", "trained", "its response\nto image 0")):
    axes[row, 0].set_ylabel(name, fontsize=8)
fig.suptitle("First-layer 3x3 filters (red positive, blue negative, each on its own scale)\nand what each "
             "passes on after ReLU", fontsize=9)
save_figure(fig, "20_filters.png")

notice("A saliency map is the ordinary backward pass with the image as the leaf: x.requires_grad, one logit's "
       "backward(), then x.grad.",
       "It is a local slope: it says which pixels would move the score, background pixels included, not which "
       "pixels the class 'is'; where the score has corners (ties on the black background) there is no one slope.",
       "This net's maps are speckled and spread over the whole image. They pass the sanity check (they are the "
       "trained net's, not the image's), but one gradient is a noisy picture of what a network uses: the reason "
       "for SmoothGrad (exercise 2), occlusion tests and class-activation maps.")

exercises("Take the gradient of the loss instead of one logit. How does the map change for a misclassified image?",
          "SmoothGrad: average the map over 20 copies of the image with noise of std 0.1 added. Is it less speckled?",
          "Compare the map of the predicted class with that of the second-best class on a shirt: where do they differ?")
