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


# A ReLU network is piecewise linear: between its corners a small step measures the slope backward computes. A
# float32 score is rounded to about 6e-8 of its size, and dividing by the step h magnifies that into noise as large
# as some slopes: the slopes are taken in float64, on a copy of the net.
SLOPE_DTYPE = np.float64
net64 = fresh_net(0).eval()
for p64, p in zip(net64.parameters(), net.parameters()):
    p64.data = p.data.astype(SLOPE_DTYPE)
x64 = mv.tensor(image, requires_grad=True, dtype=SLOPE_DTYPE)
net64(x64)[0, c].backward()
grad64 = x64.grad.numpy()[0, 0]


def score(pixels):
    with mv.no_grad():
        return float(net64(mv.tensor(pixels, dtype=SLOPE_DTYPE)).numpy()[0, c])


h = 1e-4
rng = np.random.default_rng(0)
item, background = image[0, 0] > 0.2, image[0, 0] == 0
strongest = np.argsort(-np.abs(grad * item), axis=None)[:4]
others = np.setdiff1d(np.flatnonzero(item), strongest)
pixels = [np.unravel_index(k, grad.shape) for k in np.concatenate([strongest, rng.choice(others, 4, replace=False)])]
pixels += [tuple(p) for p in np.argwhere(background)[rng.choice(int(background.sum()), 2, replace=False)]]
centre, scale = score(image), np.abs(grad64).max()
near = 1e-6 * scale  # far above float64's rounding of a slope (1e-11), far below any slope that matters
print(f"  {'pixel':<10} {'value':>6} {'backward':>9} {'(float64)':>10} {'slope from the left':>20} "
      f"{'from the right':>15}")
smooth_on_item, agree, corner_at, slopes = 0, True, {}, {}
for i, j in pixels:
    step = np.zeros_like(image, dtype=SLOPE_DTYPE)
    step[0, 0, i, j] = h
    left, right = (centre - score(image - step)) / h, (score(image + step) - centre) / h
    corner = abs(right - left) > near
    corner_at[i, j], slopes[i, j] = corner, (left, right)
    if item[i, j] and not corner:
        smooth_on_item += 1
        agree &= max(abs(grad64[i, j] - left), abs(grad64[i, j] - right)) < near
    print(f"  {f'({i}, {j})':<10} {image[0, 0, i, j]:>6.2f} {grad[i, j]:>9.4f} {grad64[i, j]:>10.4f} {left:>20.4f} "
          f"{right:>15.4f}" + ("   corner" if corner else ""))
claim(smooth_on_item >= 6 and agree, f"backward's value is the score's slope: at {smooth_on_item} of the 8 pixels "
      f"on the item the score has one slope (left and right agree within {near:.0e}, a millionth of the largest, "
      f"{scale:.2f}), and backward gives it to that precision")
gap32 = np.abs(grad - grad64).max()
claim(gap32 < 1e-4 * scale, f"the float32 map differs from the float64 one by at most {gap32:.1e}: float32's "
      "rounding of the sums along the way, under 1e-4 of the largest value, so the map below is the slope map")
kinks = [(i, j) for i, j in pixels if corner_at[i, j]]
match = {"left": 0, "right": 0, "neither": 0}
for i, j in kinks:
    left, right = slopes[i, j]
    match["left" if abs(grad64[i, j] - left) < near else "right" if abs(grad64[i, j] - right) < near
          else "neither"] += 1
claim(len(kinks) > 0 and all(background[p] for p in kinks), f"the {len(kinks)} corner(s) found are all on the black "
      "background, none on the item")
print(f"  At those corners backward's value matched the left slope {match['left']} time(s), the right "
      f"{match['right']}, neither {match['neither']}. On the flat black background neighbouring units hold "
      "equal values, so max-pooling windows hold exact ties and a step changes which unit passes the signal. "
      "Backward settles each tie by a fixed rule (the first maximum; likewise ReLU'(0) = 0), whichever way the step "
      "pushes that unit; one pixel feeds units through weights of both signs, so the sum of those choices can be "
      "the left slope, the right one, or neither.")


def score32(pixels):
    with mv.no_grad():
        return float(net(mv.tensor(pixels)).numpy()[0, c])


def slope32(i, j):
    step = np.zeros_like(image)
    step[0, 0, i, j] = h
    return (score32(image + step) - score32(image - step)) / (2 * h)


noise32 = max(abs(slope32(i, j) - grad64[i, j]) for i, j in pixels if item[i, j])
print(f"  The same differences taken on the float32 net miss the slope at these item pixels by up to {noise32:.3f}: "
      "a float32 score's rounding divided by h. Judged in float32, smooth pixels would look like corners.")

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
      f"rounding (the products sum in another order for {len(images)} images than for 1): in evaluation mode the "
      "images of a batch do not touch each other, so one backward gives every map")

# %%
section("Three maps of one decision: the gradient, SmoothGrad, occlusion (one trained net, seed 0)")
shown = 32 if QUICK else 100  # occlusion runs one forward pass per patch: fewer images
pixels_ = images.numpy()[:shown]
classes = predicted[:shown]
onehot = np.eye(10, dtype=np.float32)[classes]


def gradients(model, batch):
    x = mv.tensor(batch, requires_grad=True)
    (model(x) * mv.tensor(onehot)).sum().backward()
    return x.grad.numpy()[:, 0]


def smoothgrad(model, samples=16, std=0.15):
    """Smilkov et al. (2017): the gradient averaged over copies of the images with Gaussian noise added. Also
    the mean size of one copy's gradient, and the copies' gradients."""
    noise = np.random.default_rng(0)
    draws = [gradients(model, pixels_ + noise.normal(0, std, pixels_.shape).astype(np.float32))
             for _ in range(samples)]
    return np.mean(draws, axis=0), np.mean(np.abs(draws), axis=0), np.array(draws)


def occlusion(model, patch=4, stride=2):
    """Zeiler & Fergus (2014): black out a patch, see how far the class score falls. Each pixel gets the mean fall
    over the patches that cover it (black is the background's value: a patch on the background changes nothing)."""
    corners = [(i, j) for i in range(0, size - patch + 1, stride) for j in range(0, size - patch + 1, stride)]
    falls, covered = np.zeros((shown, size, size)), np.zeros((size, size))
    for i, j in corners:
        covered[i:i + patch, j:j + patch] += 1
    for n in range(shown):
        copies = np.repeat(pixels_[n:n + 1], len(corners) + 1, axis=0)  # the last copy stays whole
        for k, (i, j) in enumerate(corners):
            copies[k, 0, i:i + patch, j:j + patch] = 0
        with mv.no_grad():
            scores = model(mv.tensor(copies)).numpy()[:, classes[n]]
        for k, (i, j) in enumerate(corners):
            falls[n, i:i + patch, j:j + patch] += scores[-1] - scores[k]
    return falls / covered


plain = gradients(net, pixels_)
smooth, smooth_size, draws = smoothgrad(net)
occluded = occlusion(net)


def same_sign_neighbours(maps):
    """How often two side-by-side pixels' values have the same sign: 0.5 for independent coin flips."""
    return np.mean(np.sign(maps[:, :, 1:]) == np.sign(maps[:, :, :-1]))


print(f"  {shown} test images, each map for the predicted class; neighbours of the same sign: gradient "
      f"{same_sign_neighbours(plain):.2f}, SmoothGrad {same_sign_neighbours(smooth):.2f}, occlusion "
      f"{same_sign_neighbours(occluded):.2f} (0.50: signs that owe nothing to the neighbour's)")
claim(abs(same_sign_neighbours(plain) - 0.5) < 0.1 < same_sign_neighbours(occluded) - 0.5,
      "the gradient's speckle is sign noise: side by side, two pixels' gradients agree in sign about as often as "
      "coin flips would, where occlusion's falls agree far more often")
kept = np.abs(smooth).mean() / smooth_size.mean()
on_item = (pixels_[:, 0] > 0.1) & (plain != 0)
flipped = np.mean(np.sign(draws)[:, on_item] != np.sign(plain)[on_item])
print(f"  SmoothGrad (16 copies, noise std 0.15): a copy's gradient has the other sign than the noise-free one at "
      f"{flipped:.0%} of the item's pixels (a coin: 50%); the average keeps {kept:.2f} of one copy's size (1 if "
      f"the signs never changed, 1/sqrt(16) = 0.25 for random signs of equal size)")
claim(abs(flipped - 0.5) < 0.1 and kept < (1 + 0.25) / 2, f"a little noise makes each pixel's gradient sign "
      f"nearly a coin flip ({flipped:.0%} flipped): the slope changes at every corner the noise crosses, so "
      "averaging 16 copies cancels most of it, nearer random signs' 0.25 than fixed signs' 1, and leaves speckle "
      "(the shattered gradients of Balduzzi et al. 2017); on this net SmoothGrad would need far more copies")

item = pixels_[:, 0] > 0.1  # the item; Fashion-MNIST's background is exactly 0
share = {name: (np.abs(m) * item).sum() / np.abs(m).sum() for name, m in
         (("gradient", plain), ("SmoothGrad", smooth), ("occlusion", occluded))}
print(f"  the item covers {item.mean():.0%} of the pixels; share of each map's total on it: "
      + ", ".join(f"{name} {s:.0%}" for name, s in share.items()))

# A map is faithful if what it ranks highest matters: delete each map's top 5% of pixels, see the score fall.
# Blacking them out is the very change occlusion measured (black patches), which favours occlusion; replacing
# them by a blurred copy of the image (a 5x5 mean) is a change none of the maps measured.
count = int(0.05 * size * size)
blurred = np.lib.stride_tricks.sliding_window_view(np.pad(pixels_, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge"),
                                                   (5, 5), axis=(2, 3)).mean(axis=(-2, -1))


def fall_after_deleting(maps, fill):
    copies = pixels_.copy()
    for n in range(shown):
        top = np.argsort(-maps[n].ravel())[:count]
        copies[n, 0].flat[top] = fill[n, 0].flat[top]
    with mv.no_grad():
        before, after = (net(mv.tensor(p)).numpy()[np.arange(shown), classes] for p in (pixels_, copies))
    return np.median(before - after)


at_random = np.random.default_rng(1).random(item.shape) * item  # random pixels of the item
maps = (("gradient", np.abs(plain)), ("SmoothGrad", np.abs(smooth)), ("occlusion", occluded),
        ("random item pixels", at_random))
fall = {name: fall_after_deleting(m, np.zeros_like(pixels_)) for name, m in maps}
blur_fall = {name: fall_after_deleting(m, blurred) for name, m in maps}
for how, falls in (("blacked out", fall), ("blurred", blur_fall)):
    print(f"  median fall of the class score when each map's top {count} pixels are {how}: "
          + ", ".join(f"{name} {f:.2f}" for name, f in falls.items()))
claim(fall["occlusion"] > 2 * max(fall["gradient"], fall["SmoothGrad"], fall["random item pixels"]),
      "blacking out occlusion's top pixels lowers the score more than twice as much as blacking out the "
      "gradient's, SmoothGrad's or random item pixels; a test in occlusion's favour, since black is what it "
      "measured")
claim(blur_fall["occlusion"] > 1.5 * max(blur_fall["gradient"], blur_fall["SmoothGrad"],
                                         blur_fall["random item pixels"]),
      "blurring the top pixels instead, a change no map measured, occlusion's still lower the score most, more "
      "than 1.5 times as much as any other map's")
untrained = fresh_net(1).eval()
raw = gradients(untrained, pixels_)
occluded_untrained = occlusion(untrained)


def rank_correlation(a, b):
    """Spearman's correlation of two maps per image: the Pearson correlation of their pixel ranks."""
    ra, rb = (np.argsort(np.argsort(m.reshape(len(m), -1), axis=1), axis=1).astype(float) for m in (a, b))
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


same_model = np.median(rank_correlation(occluded, occluded_untrained))
print(f"  occlusion maps of the trained and of an untrained net: rank correlation per image, median "
      f"{same_model:.2f}")
claim(same_model < 0.3 and share["occlusion"] > item.mean() + 0.2, "occlusion's map is the trained net's: it sits "
      "on the item, and an untrained net's occlusion map hardly correlates with it (Adebayo et al. 2018's check: a "
      "map that survives randomizing the weights only draws the image)")
far = np.array([np.lib.stride_tricks.sliding_window_view(np.pad(p, 2), (5, 5)).max(axis=(2, 3)) == 0
                for p in pixels_[:, 0]])  # pixels whose 5x5 neighbourhood is black
print(f"  gradient on pixels with a black 5x5 neighbourhood: untrained net exactly 0 at {np.mean(raw[far] == 0):.0%}, "
      f"trained net at {np.mean(plain[far] == 0):.0%}")
claim(np.all(raw[far] == 0) and np.mean(plain[far] == 0) < 0.5, "the untrained net's gradient outlines the item "
      "for a dull reason: its biases are 0, so on black input every first-layer unit sits at exactly 0 and "
      "ReLU'(0) = 0 stops the gradient; trained biases open those units")

plt = pyplot()
show = 8
rows = [("image\n(predicted)", None), ("|gradient|", np.abs(plain)), ("|SmoothGrad|", np.abs(smooth)),
        ("occlusion:\nscore's fall", occluded), ("|gradient|,\nuntrained net", np.abs(raw))]
fig, axes = plt.subplots(len(rows), show + 1, figsize=(1.45 * show + 1.2, 1.5 * len(rows) + 0.5),
                         gridspec_kw={"width_ratios": [1] * show + [0.12]})
for r, (name, maps) in enumerate(rows):
    for k in range(show):
        ax = axes[r, k]
        if maps is None:
            im = ax.imshow(pixels_[k, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(data.text_labels[int(classes[k])], fontsize=8,
                         color="black" if classes[k] == labels.numpy()[k] else "red")
        elif maps is occluded:  # signed: a fall (red) or a rise (blue) of the score
            im = ax.imshow(maps[k] / np.abs(maps[k]).max(), cmap="bwr", vmin=-1, vmax=1)
        else:
            im = ax.imshow(maps[k] / maps[k].max(), cmap="hot", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[r, 0].set_ylabel(name, fontsize=8)
    bar = fig.colorbar(im, cax=axes[r, show])
    bar.ax.tick_params(labelsize=7)
    bar.set_label("pixel value" if maps is None else "fraction of its max", fontsize=7)
fig.suptitle("Saliency of the predicted class's score, each map divided by its own largest |value| "
             "(red title: a wrong prediction)", fontsize=9)
save_figure(fig, "20_saliency.png")

# %%
section("The first layer's filters")
filters = net[0][0].weight.numpy()
change = filters - first_filters
moved = np.linalg.norm(change) / np.linalg.norm(first_filters)
print(f"  {filters.shape[0]} filters of shape {filters.shape[1:]} (one grey input channel); training moved them by "
      f"{moved:.0%} of their initial norm: drawn on one scale, initial and trained look alike")
with mv.no_grad():
    responses = net[0][1](net[0][0](mv.tensor(image))).numpy()[0]  # the first convolution and its ReLU
count = filters.shape[0]
fig, axes = plt.subplots(4, count + 1, figsize=(max(1.4 * count, 6) + 1, 5.8),
                         gridspec_kw={"width_ratios": [1] * count + [0.1]})
bound, change_bound = np.abs(filters).max(), np.abs(change).max()
for k in range(count):
    for row, weights, b in ((0, first_filters, bound), (1, filters, bound), (2, change, change_bound)):
        drawn = axes[row, k].imshow(weights[k, 0], cmap="bwr", vmin=-b, vmax=b)
        if k == count - 1:
            fig.colorbar(drawn, cax=axes[row, count]).ax.tick_params(labelsize=7)
    response = axes[3, k].imshow(responses[k], cmap="gray", vmin=0, vmax=responses.max())
    for ax in axes[:, k]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(response, cax=axes[3, count]).ax.tick_params(labelsize=7)
for row, name in enumerate(("initial", "trained", f"change\n({moved:.0%} of the\nnorm, own scale)",
                            "response to\nimage 0 (ReLU)")):
    axes[row, 0].set_ylabel(name, fontsize=8)
fig.suptitle("First-layer 3x3 filters: weight value (red positive, blue negative),\nthe change on its own scale, "
             "and what each filter passes on", fontsize=9)
save_figure(fig, "20_filters.png")

notice("A saliency map is the ordinary backward pass with the image as the leaf: x.requires_grad, one logit's "
       "backward(), then x.grad.",
       "The gradient is a local slope of a function with corners everywhere; on this net it changes sign from one "
       "pixel to the next, so its picture is speckle, background included. It says what an infinitesimal step "
       "would do, not which part of the image the decision rests on.",
       "Occlusion asks the second question with steps of visible size and passed both checks here: its top "
       "pixels matter to the score (blacked out, the test it was built for, and blurred, one it was not), and it "
       "depends on the trained weights. SmoothGrad, with 16 copies, did not tame this net's gradient.")

exercises("Take the gradient of the loss instead of one logit. How does the map change for a misclassified image?",
          "SmoothGrad with 64 or 256 copies, and noise of std 0.3: when does its deletion fall catch up with "
          "occlusion's?",
          "Occlude with grey (0.5) instead of black. What happens to the background's share of the map, and why?")
