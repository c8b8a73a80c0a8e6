"""Lesson 3: stepping through backward. A two-layer network, its graph, and backward one node at a time."""
# %%
import numpy as np

import minivgg as mv
from minivgg import inspection, nn
import minivgg.functional as F
from lesson import claim, exercises, output, section

mv.manual_seed(0)
net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
x = mv.tensor(np.random.default_rng(0).standard_normal((5, 4)))
labels = mv.tensor([0, 2, 1, 1, 0])
loss = F.cross_entropy(net(x), labels)

section("The graph")
inspection.print_graph(loss, params=net)
path = inspection.draw_graph(loss, output("03_graph.svg"), params=net)
print(f"  drawn to {path}")

# %%
section("Backward, one node at a time")
walk = loss.backward_steps()
for step in walk:
    sent = ", ".join("-" if g is None else str(g.shape) for g in step.grad_inputs)
    print(f"  step {step.index}: {step.op:<12} gradient in {step.grad_output.shape}, sent out {sent}")
    if step.op == "ReLU":
        claim(net[2].weight.grad is not None and net[0].weight.grad is None,
              "halfway (at the ReLU), the last layer has its gradient and the first does not yet")
        relu_step = step
claim(net[0].weight.grad is not None, "at the end of the walk every parameter has its gradient")
stopped = (relu_step.grad_output != 0) & (relu_step.grad_inputs[0] == 0)
print(f"  the ReLU stopped {stopped.mean():.0%} of the gradients that reached it")
claim(stopped.any(), "the ReLU step shows which gradients it stopped (where its input was negative)")

# %%
section("The same walk as backward()")
grads = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
claim(all(np.array_equal(grads[n], p.grad.numpy()) for n, p in net.named_parameters()),
      "backward() is the same walk run to the end: identical gradients")

# %%
section("Hooks")
seen = []
handle = net[1].register_forward_hook(lambda m, i, o: seen.append(float((o.data == 0).mean())))
back = net[2].register_backward_hook(lambda m, gin, gout: seen.append(gout[0].shape))
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
print(f"  the ReLU zeroed {seen[0]:.0%} of its outputs; the last layer's output gradient had shape {seen[1]}")
claim(len(seen) == 2, "a forward hook saw the ReLU's output and a backward hook the last layer's gradient")
handle.remove()
back.remove()
h = x.requires_grad_().register_hook(lambda g: g * 0)
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
claim(not x.grad.numpy().any(), "a tensor hook can replace a gradient (here with zeros)")
h.remove()

exercises("Stop the walk after two steps. Which parameters have a .grad? Why?",
          "Draw the graph of a network with a residual connection (y = x + f(x)). Where do gradients add up?",
          "Use inspection.trace(loss) on this network and read the gradient norms from output to input.")
