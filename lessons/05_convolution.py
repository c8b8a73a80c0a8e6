"""Lesson 5: the convolution layer: output sizes, gradients, and why VGG uses 3x3 kernels."""
# %%
import numpy as np

import minivgg as mv
from minivgg import nn
import minivgg.functional as F
from lesson import claim, exercises, section

mv.set_kernels("reference")  # the plain kernels of minivgg/functional.py, the ones this lesson reads

section("Output size: floor((H + 2P - K) / S) + 1")
for h, k, p, s in [(28, 3, 1, 1), (28, 5, 0, 1), (224, 7, 3, 2), (7, 3, 0, 2)]:
    out = F.conv2d(mv.tensor(np.zeros((1, 1, h, h))), mv.tensor(np.zeros((1, 1, k, k))), stride=s, padding=p)
    formula = (h + 2 * p - k) // s + 1
    claim(out.shape[-1] == formula, f"H={h}, K={k}, P={p}, S={s}: output {formula}x{formula}")
same = nn.Conv2d(1, 1, 3, padding=1)(mv.tensor(np.zeros((1, 1, 28, 28))))
claim(same.shape[-2:] == (28, 28), "padding 1 keeps a 3x3 convolution's size (VGG's choice)")

# %%
section("Gradients of weight and input")
rng = np.random.default_rng(0)
x = mv.tensor(rng.standard_normal((2, 3, 5, 5)), dtype="float64", requires_grad=True)
w = mv.tensor(rng.standard_normal((4, 3, 3, 3)), dtype="float64", requires_grad=True)
claim(mv.gradcheck(lambda a, b: F.conv2d(a, b, padding=1), [x, w]),
      "dL/dW = dY @ col^T and dL/dX = col2im(W^T @ dY) pass the numerical check")

# %%
section("Three 3x3 layers against one 7x7")
c = 64
stack = 3 * (3 * 3 * c * c)
single = 7 * 7 * c * c
print(f"  C = {c}: three 3x3 layers have {stack:,} weights, one 7x7 has {single:,}")
claim(stack == 27 * c * c and single == 49 * c * c, "27 C^2 against 49 C^2: the stack is 45% smaller")
three = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1) for _ in range(3)])
claim(sum(p.size for p in three.parameters()) - 3 * c == stack, "counted in real layers (biases aside)")

# %%
section("Receptive field, measured by back-propagating from one output pixel")


def receptive_field(num_layers):
    layers = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(num_layers)]
    for layer in layers:
        layer.weight.data[:] = 1.0  # positive weights: no accidental cancellation
    image = mv.tensor(np.ones((1, 1, 15, 15)), requires_grad=True)
    out = image
    for layer in layers:
        out = layer(out)
    out[0, 0, 7, 7].backward()  # one output pixel in the middle
    rows, cols = np.nonzero(image.grad.numpy()[0, 0])
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


for n, expected in [(1, 3), (2, 5), (3, 7)]:
    size = receptive_field(n)
    claim(size == (expected, expected),
          f"{n} stacked 3x3 convolution(s) see a {expected}x{expected} patch of the input")

exercises("What receptive field do five VGG blocks have at the last convolution (count the poolings)?",
          "Compare the FLOPs of three 3x3 layers and one 7x7 layer on a 56x56x256 input.",
          "C (Table 1) uses 1x1 convolutions. What do they add, if not a larger receptive field?")
