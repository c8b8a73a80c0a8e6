"""Lesson 5: the convolution layer: output sizes, gradients, and why VGG uses 3x3 kernels."""
# %%
import numpy as np

import minivgg as mv
from minivgg import nn
import minivgg.functional as F
from lesson import claim, exercises, notice, section

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
three = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1) for _ in range(3)])
seven = nn.Conv2d(c, c, 7, padding=3)
stack = sum(p.numel() for p in three.parameters())
single = sum(p.numel() for p in seven.parameters())
print(f"  C = {c}: three 3x3 layers have {stack:,} parameters, one 7x7 layer has {single:,}")
claim(stack == 27 * c * c + 3 * c and single == 49 * c * c + c,
      f"counted in real layers: 27 C^2 + 3 C against 49 C^2 + C, the stack is {1 - stack / single:.0%} smaller")

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

notice("Three stacked 3x3 layers see the same 7x7 patch as one 7x7 layer, with 45% fewer parameters.",
       "In VGG each 3x3 layer has its ReLU: three non-linearities where a 7x7 layer has one (the paper's other "
       "reason).",
       "The receptive field was measured, not computed: backward from one output pixel lights up what it saw.")

exercises("What receptive field do five VGG blocks have at the last convolution (count the poolings)?",
          "Compare the FLOPs of three 3x3 layers and one 7x7 layer on a 56x56x256 input.",
          "C (Table 1) uses 1x1 convolutions. What do they add, if not a larger receptive field?")
