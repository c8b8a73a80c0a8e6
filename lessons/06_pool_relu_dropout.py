"""Lesson 6: max-pooling, ReLU and dropout: where each one sends its gradient."""
# %%
import numpy as np

import minivgg as mv
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, section

mv.set_kernels("reference")  # the plain kernels of minivgg/functional.py, the ones this lesson reads

section("Max-pooling routes each gradient to one input")
x = mv.tensor([[[[1.0, 5.0, 2.0, 0.0],
                 [3.0, 4.0, 8.0, 8.0],
                 [0.0, 1.0, 6.0, 2.0],
                 [7.0, 2.0, 1.0, 3.0]]]], requires_grad=True)
y = F.max_pool2d(x, 2)
print(y.numpy()[0, 0])
y.sum().backward()
print(x.grad.numpy()[0, 0])
claim(y.numpy()[0, 0].tolist() == [[5, 8], [7, 6]], "each 2x2 window keeps its maximum")
claim(x.grad.numpy().sum() == 4 and x.grad.numpy()[0, 0, 0, 1] == 1,
      "the gradient of each window goes to its maximum only (one position per window)")
claim(x.grad.numpy()[0, 0, 1, 2] == 1 and x.grad.numpy()[0, 0, 1, 3] == 0,
      "with a tie (8 and 8) only the first maximum gets it, as in PyTorch: ties never double a gradient")
neg = F.max_pool2d(mv.tensor(-np.ones((1, 1, 2, 2))), 3, stride=1, padding=1)
claim((neg.numpy() == -1).all(), "padding is -inf, so an all-negative map stays negative (zero padding would not)")

# %%
section("ReLU passes gradients where its input was positive")
a = mv.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
F.relu(a).sum().backward()
print(f"  input {a.numpy()}, gradient {a.grad.numpy()}")
claim(a.grad.numpy().tolist() == [0, 0, 0, 1, 1], "gradient 1 for positive inputs, 0 otherwise (also at 0)")

# %%
section("Dropout: inverted scaling keeps the expected activation")
mv.manual_seed(0)
n = 10_000 if QUICK else 1_000_000
ones = mv.tensor(np.ones(n))
dropped = F.dropout(ones, p=0.5)
kept = dropped.numpy() != 0
mean = dropped.numpy().mean()
print(f"  kept {kept.mean():.4f} of the {n:,} units, each scaled to {dropped.numpy()[kept][0]}; mean {mean:.4f}")
claim(set(np.unique(dropped.numpy())) == {0.0, 2.0}, "training: units are zeroed or scaled by 1/(1-p) = 2")
claim(abs(mean - 1.0) < 5 / np.sqrt(n), f"so the mean activation stays 1 in expectation: {mean:.4f} is within "
      f"5 standard errors ({5 / np.sqrt(n):.3f}) of 1")
claim((F.dropout(ones, 0.5, training=False).numpy() == 1).all(), "evaluation: dropout is the identity")
g = mv.tensor(np.ones(8), requires_grad=True)
mv.manual_seed(1)
out = F.dropout(g, 0.5)
out.sum().backward()
claim(np.array_equal(g.grad.numpy(), out.numpy()), "its gradient uses the same mask and scale as the forward pass")

notice("Max-pooling sends each window's gradient to one pixel, the maximum; the other three get zero.",
       "ReLU and dropout are gates too: the gradient goes back only where the forward pass let the value through.",
       "Dropout scales what it keeps by 1/(1-p) in training, so the next layer sees the same mean at test time, "
       "when dropout is off.")

exercises("Pool a 5x5 map with kernel 2, stride 2. Which row and column are never looked at?",
          "Why is the gradient of ReLU at exactly 0 a choice? What does PyTorch choose?",
          "Train with dropout p = 0.9. What happens to the training loss, and why?")
