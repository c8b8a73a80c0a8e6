"""Lesson 13: dense evaluation. The paper turns the three dense layers into convolutions, so the trained net
slides over inputs larger than its training size and produces a map of class scores."""
# %%
import numpy as np

import minivgg as mv
from minivgg import models, nn
from lesson import QUICK, claim, exercises, section

train_size = 32 if QUICK else 224
mv.manual_seed(0)
net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 16)), (1, 1, train_size, train_size))
net.eval()
fcn = models.to_fully_convolutional(net).eval()
rng = np.random.default_rng(0)

section(f"The converted network (trained size {train_size}x{train_size})")
convs = [m for m in fcn.modules() if isinstance(m, nn.Conv2d)]
k = train_size // 32
claim(convs[-3].kernel_size == (k, k) and convs[-1].kernel_size == (1, 1),
      f"the first dense layer became a {k}x{k} convolution (the map after five poolings), the others 1x1")
claim(convs[-3].weight.size == net[6].weight.size, "it reuses the dense layer's weights, reshaped: nothing new")

x = mv.tensor(rng.random((2, 1, train_size, train_size)))
same = np.abs(fcn(x).numpy() - net(x).numpy()).max()
claim(same < 1e-4, f"at the training size both give the same logits (largest difference {same:.1e})")

# %%
section("Larger inputs give a map of class scores")
for factor in (1.5, 2):
    size = int(train_size * factor)
    big = mv.tensor(rng.random((1, 1, size, size)))
    score_map = fcn[:-2](big)  # stop before the spatial average
    expected = size // 32 - k + 1
    print(f"  {size}x{size} input -> class-score map {score_map.shape}")
    claim(score_map.shape == (1, 10, expected, expected), f"a {size}x{size} input gives {expected}x{expected} "
          "positions, each scored as a training-size crop would be")
    averaged = score_map.numpy().mean(axis=(2, 3))
    claim(np.allclose(fcn(big).numpy(), averaged, atol=1e-5), "the final scores are the map's spatial average")

exercises("Train a model with `minivgg train`, convert it, and evaluate on 48x48 test images. Does accuracy change?",
          "The paper also averages over horizontal flips. Add that and compare.",
          "Why could the original network (with Flatten and Linear) not take a larger input?")
