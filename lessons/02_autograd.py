"""Lesson 2: autograd by hand. One small expression differentiated three ways: the chain rule on paper,
backward(), and a numerical gradient check."""
# %%
import math

import minivgg as mv
from lesson import claim, exercises, notice, section

section("The expression")
print("  f(a, b) = exp(a * b) + a / b   at a = 0.5, b = 2")
a_val, b_val = 0.5, 2.0

section("On paper: the chain rule")
# df/da = b * exp(ab) + 1/b,  df/db = a * exp(ab) - a / b^2
dfda = b_val * math.exp(a_val * b_val) + 1 / b_val
dfdb = a_val * math.exp(a_val * b_val) - a_val / b_val ** 2
print(f"  df/da = b exp(ab) + 1/b = {dfda:.6f}")
print(f"  df/db = a exp(ab) - a/b^2 = {dfdb:.6f}")

# %%
section("By backward()")
a = mv.tensor(a_val, requires_grad=True)
b = mv.tensor(b_val, requires_grad=True)
f = (a * b).exp() + a / b
f.backward()
print(f"  a.grad = {a.grad.item():.6f}, b.grad = {b.grad.item():.6f}")
claim(abs(a.grad.item() - dfda) < 1e-5 and abs(b.grad.item() - dfdb) < 1e-5,
      "backward() gives the same numbers as the chain rule on paper")
claim(f.creator.name == "Add", "f remembers the op that made it (f.creator), which is how backward walks back")

# %%
section("By finite differences: gradcheck")
a64 = mv.tensor(a_val, dtype="float64", requires_grad=True)
b64 = mv.tensor(b_val, dtype="float64", requires_grad=True)
claim(mv.gradcheck(lambda p, q: (p * q).exp() + p / q, [a64, b64]),
      "gradcheck agrees: (f(x + eps) - f(x - eps)) / 2eps matches backward in float64")


class BadSquare(mv.Function):
    """x^2 with a wrong backward, to see gradcheck fail."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        return gy * self.x  # should be 2 x


try:
    mv.gradcheck(lambda p: BadSquare()(p), [mv.tensor([1.0, 2.0], dtype="float64", requires_grad=True)])
    caught = None
except mv.GradcheckError as exc:
    caught = str(exc)
    print("  " + caught.replace("\n", "\n  "))
claim(caught is not None and "numerical" in caught, "a wrong backward is caught, with a table of the differences")

notice("backward() is the chain rule applied node by node, from f back to a and b.",
       "gradcheck needs no calculus: it nudges each input and compares, so it can catch a wrong backward.",
       "Check in float64: in float32 the rounding in f(x + eps) - f(x - eps) is as large as the errors sought.")

exercises("Differentiate g(x) = tanh(x) * sigmoid(x) on paper and check it with backward and gradcheck.",
          "Use x twice in an expression (x * x + x). Why must backward add the two gradients, not overwrite?",
          "Call f.backward() twice. What happens, and what does retain_graph=True change?")
