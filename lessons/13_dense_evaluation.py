"""Lesson 13: dense evaluation. The paper turns the three dense layers into convolutions, so the trained net
slides over inputs larger than its training size and produces a map of class scores. Each position of that
map looks at a window of the training size, but it is not the score that window gets as a crop: the crop's
convolutions pad its borders with zeros, the dense net sees the window's surroundings there instead."""
# %%
import numpy as np

import minivgg as mv
from minivgg import evaluation, models, nn
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

train_size = 64 if QUICK else 224  # five poolings leave 2x2 (quick) or 7x7 (the paper's 224) maps
big_size = 2 * train_size
mv.manual_seed(0)
# Random weights, drawn by He's rule so that the logits are of order 1; the effect shown here is geometry.
print("  The network here is untrained (random weights): every comparison below is about where the scores come")
print("  from, not about accuracy. A random net's accuracy is chance whatever the evaluation; what dense and")
print("  multi-crop evaluation give a trained net: benchmarks/RESULTS.md (Fashion-MNIST) and the paper's Table 5")
print("  (ImageNet).")
net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)), (1, 1, train_size, train_size),
                        "kaiming").eval()
fcn = models.to_fully_convolutional(net).eval()
rng = np.random.default_rng(0)

section(f"The converted network (training size {train_size}x{train_size})")
k = train_size // 32
dense = [m for m in net.modules() if isinstance(m, nn.Linear)]
convs = [m for m in fcn.modules() if isinstance(m, nn.Conv2d)][-3:]
print(f"  dense layers: {[tuple(m.weight.shape) for m in dense]}")
print(f"  as convolutions: {[tuple(c.weight.shape) for c in convs]}")
claim(convs[0].kernel_size == (k, k) and convs[1].kernel_size == convs[2].kernel_size == (1, 1),
      f"the first dense layer became a {k}x{k} convolution over the {k}x{k} map left after five poolings, "
      "the other two 1x1 convolutions")
w_dense, w_conv = dense[0].weight.numpy(), convs[0].weight.numpy()
channels = w_conv.shape[1]
c, i, j = channels - 1, k - 1, 0
claim(all(np.array_equal(cv.weight.numpy().reshape(d.weight.shape), d.weight.numpy()) for cv, d in zip(convs, dense))
      and w_conv[5, c, i, j] == w_dense[5, c * k * k + i * k + j],
      f"the convolutions hold the dense layers' own numbers: kernel entry [out, c, i, j] is the dense weight "
      f"[out, c*{k * k} + i*{k} + j], the order in which Flatten laid out the (C, H, W) map")
claim(all(np.shares_memory(cv.weight.data, d.weight.data) for cv, d in zip(convs, dense)),
      "nothing was copied: the convolutions' kernels are views of the dense layers' weight arrays")

x = mv.tensor(rng.random((2, 1, train_size, train_size)))
same = np.abs(fcn(x).numpy() - net(x).numpy()).max()
claim(same < 1e-4, f"at the training size both give the same logits (largest difference {same:.1e})")

# %%
section(f"A {big_size}x{big_size} input gives a map of class scores")
big = rng.random((1, 1, big_size, big_size)).astype(np.float32)
score_map = fcn[:-2](mv.tensor(big)).numpy()[0]  # stop before the spatial average
side = big_size // 32 - k + 1
print(f"  class-score map {score_map.shape}: one column of 10 scores per position, positions 32 pixels apart")
claim(score_map.shape == (10, side, side), f"{side}x{side} positions: a {train_size}-pixel window moved in "
      "steps of 32 pixels (the five poolings' stride) fits that many times")
claim(np.allclose(fcn(mv.tensor(big)).numpy()[0], score_map.mean(axis=(1, 2)), atol=1e-5),
      "the converted net's output is the map's spatial average")

print(f"\n  each position against the same window cut out as a {train_size}x{train_size} crop:")
print(f"  {'position':>9} {'max |map - crop|':>17} {'max |crop logit|':>17} {'top class map/crop':>19}")
gaps, tops, largest = {}, {}, 0.0
for r in range(side):
    for q in range(side):
        crop = net(mv.tensor(big[:, :, 32 * r:32 * r + train_size, 32 * q:32 * q + train_size].copy())).numpy()[0]
        gaps[r, q] = np.abs(score_map[:, r, q] - crop).max()
        largest = max(largest, np.abs(crop).max())
        tops[r, q] = (int(score_map[:, r, q].argmax()), int(crop.argmax()))
        if r == q or (r, q) == (0, side - 1):
            print(f"  {str((r, q)):>9} {gaps[r, q]:17.3f} {np.abs(crop).max():17.3f} {str(tops[r, q]):>19}")
smallest = min(gaps.values())
differ = sum(a != b for a, b in tops.values())
claim(smallest > 1e-2, f"no position of the map is its crop's score: the smallest gap over all {side * side} "
      f"positions is {smallest:.3f}, on crop logits up to {largest:.2f}")
print(f"  the top class differs between map and crop at {differ} of {side * side} positions")

# %%
section("Why: zero padding at the crop's inner edges")
# The crop at (0, 0) shares its top and left edges with the big image: only its bottom and right edges are
# new, and there the crop's convolutions read zeros where the big image has more picture.
layers = [layer for block in fcn for layer in (block if isinstance(block, nn.Sequential) else [block])]
a, b = mv.tensor(big), mv.tensor(big[:, :, :train_size, :train_size].copy())
bands = []
print(f"  {'layer':<16} {'crop map':>9} {'rows/cols that differ':>22} {'= input pixels':>15}")
for n, layer in enumerate(layers):
    if not isinstance(layer, (nn.Conv2d, nn.ReLU, nn.MaxPool2d)):
        break
    a, b = layer(a), layer(b)
    h = b.shape[-1]
    agree = np.abs(a.numpy()[0, :, :h, :h] - b.numpy()[0]).max(axis=0) <= 1e-5
    square = max(s for s in range(h + 1) if agree[:s, :s].all())  # the top-left block where they agree
    bands.append((type(layer).__name__, h, h - square, (h - square) * train_size // h))
    if isinstance(layer, nn.Conv2d):
        print(f"  {f'{n} ' + type(layer).__name__:<16} {h:>6}x{h:<2} {h - square:>22} {bands[-1][3]:>15}")
first_conv = bands[0]
claim(first_conv[2] == 1, f"after the first 3x3 convolution crop and image disagree only in the last row and "
      f"column of the {first_conv[1]}x{first_conv[1]} map: the pixels whose window reaches past the crop's edge")
grew = [band[3] for band in bands if band[0] == "Conv2d"]
claim(all(later >= earlier for earlier, later in zip(grew, grew[1:])) and grew[-2] > grew[0],
      f"every convolution widens the disagreeing band: from {grew[0]} to {grew[-2]} input pixels at the last "
      "3x3 convolution")
claim(bands[-1][2] == bands[-1][1], f"the {k}x{k} convolution (the first dense layer) sees the whole last map, "
      "so every class score differs")

# %%
section("Each score of the map sees past its window")
image = mv.tensor(big, requires_grad=True)
scores = fcn[:-2](image)
scores[0, int(score_map[:, 0, 0].argmax()), 0, 0].backward()  # the top class at position (0, 0)
reach = np.abs(image.grad.numpy()[0, 0])
cols = np.nonzero(reach.max(axis=0))[0]
extent = cols.max() + 1
print(f"  score (0, 0): its window is pixels 0-{train_size - 1}, its gradient reaches pixel {extent - 1}")
field, jump = 1, 1  # the receptive field of one cell of the last pooling, from the layers' kernels and strides
for layer in layers[:layers.index(convs[0])]:
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
        kernel, stride = (np.ravel(v)[0] for v in (layer.kernel_size, layer.stride or layer.kernel_size))
        field, jump = field + (kernel - 1) * jump, jump * stride
print(f"  one cell of the last pooling sees {field} pixels, {(field - jump) // 2} beyond its {jump}-pixel step on "
      "each side")
claim(extent - train_size == (field - jump) // 2 > 0, f"the score at (0, 0) depends on pixels up to column "
      f"{extent - 1}: {extent - train_size} columns beyond its {train_size}-pixel window, as the receptive field says")

plt = pyplot()
fig, ax = plt.subplots(figsize=(5.2, 5.0))
shown = ax.imshow(np.log10(reach + reach.max() * 1e-6), cmap="magma")
# The window's pixels run from 0 to train_size - 1: its outline drawn just inside their outer edges, clear of
# the frame.
ax.add_patch(plt.Rectangle((0, 0), train_size - 1, train_size - 1, fill=False, edgecolor="cyan", linewidth=2,
                           label=f"its {train_size}x{train_size} window (the crop)"))
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
ax.set_title("|d score(0, 0) / d pixel| of the dense net (black: 0)", fontsize=10)
ax.set_xlabel("input column")
ax.set_ylabel("input row")
fig.colorbar(shown, ax=ax, label="log10 |gradient|")
save_figure(fig, "13_receptive_field.png")

# %%
section("Dense against multi-crop over the same windows")
dense_probs = evaluation.dense_scores(net, big, fcn=fcn)[0]
crop_probs = evaluation.multi_crop_scores(net, big, train_size, scale=big_size, grid=side, flips=False)[0]
offsets = evaluation.crop_offsets(big_size, train_size, side)
print(f"  multi-crop: {side}x{side} crops at offsets {offsets} (the map's positions), soft-max averaged")
print(f"  dense:    {np.round(dense_probs, 3)}")
print(f"  crops:    {np.round(crop_probs, 3)}")
gap = np.abs(dense_probs - crop_probs).max()
claim(offsets == [32 * p for p in range(side)] and gap > 1e-2,
      f"the same {side * side} windows give other class probabilities (largest difference {gap:.3f}): "
      "multi-crop pads each crop with zeros, dense evaluation sees its surroundings")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


crop_logits = np.array([net(mv.tensor(big[:, :, a:a + train_size, b:b + train_size].copy())).numpy()[0]
                        for a in offsets for b in offsets])
# float32 logits of order 1 through exp: agreement to 1e-5 is that rounding, far below the 1e-2 gap above
claim(np.allclose(dense_probs, softmax(score_map.mean(axis=(1, 2))), atol=1e-5)
      and np.allclose(crop_probs, softmax(crop_logits).mean(axis=0), atol=1e-5),
      "and they average different things: dense evaluation averages the map's logits, then takes one soft-max; "
      "multi-crop takes each crop's soft-max, then averages the probabilities")

notice("A position of the class-score map is not the crop's score: the crop is padded with zeros at its edges, "
       "the dense net reads the neighbouring picture there.",
       "The disagreement starts one pixel wide at the crop's inner edges and widens with every 3x3 layer; the "
       "first dense layer, now a convolution, reads the whole last map, so every score differs.",
       "The paper found dense and multi-crop evaluation complementary (averaging both helped) and offers these "
       "different borders as its hypothesis for why (section 3.2, recalled in 4.3); it does not test it.",
       "This net is random, so none of the numbers above is an accuracy; trained nets' accuracies under each mode "
       "are in benchmarks/RESULTS.md and the paper's Table 5.")

exercises("Train a model with `minivgg train`, convert it, and evaluate on 48x48 test images. Does accuracy change?",
          "The paper also averages over horizontal flips (dense_scores(..., flips=True)). Do a map position and "
          "its crop disagree more or less after averaging with the flipped image?",
          "Why could the original network (with Flatten and Linear) not take a larger input?")
