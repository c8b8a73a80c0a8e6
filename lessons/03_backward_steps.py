"""Lesson 3: stepping through backward. A two-layer network, its graph, and backward one node at a time."""
# %%
import numpy as np

import minivgg as mv
from minivgg import inspection, nn
import minivgg.functional as F
from lesson import claim, exercises, notice, output, section

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
        relu_link, relu_out_grad, relu_in_grad = step.function.inputs[0], step.grad_output, step.grad_inputs[0]
claim(all(p.grad is not None for p in net.parameters()), "at the end of the walk every parameter has its gradient")
print(f"  the ReLU node's link back: {relu_link}; the tensor itself: {relu_link.tensor()}")
claim(relu_link.tensor() is None and relu_link.creator.name == "Linear",
      "the graph keeps the way back to the first Linear, not the ReLU's input: nothing held that array after "
      "forward (the ReLU kept its own output, which is all its backward needs)")
with mv.no_grad():
    relu_in = net[0](x).numpy()  # the ReLU's input again: the same weights, the first layer once more
negative = relu_in <= 0
print(f"  the ReLU's input was negative at {negative.sum()} of {negative.size} places; the gradient it sent "
      f"is zero at {(relu_in_grad == 0).sum()}")
claim(np.array_equal(relu_in_grad == 0, negative) and np.array_equal(relu_in_grad[~negative], relu_out_grad[~negative]),
      "the ReLU step zeroed the gradient exactly where its input was negative and passed the rest unchanged")

# %%
section("The same walk as backward()")
grads = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
claim(all(np.array_equal(grads[n], p.grad.numpy()) for n, p in net.named_parameters()),
      "backward() is the same walk run to the end: identical gradients")

# %%
section("Hooks")
# What the hooks should see, computed without them: the ReLU's output, and dL/dlogits = (softmax - one-hot) / N.
hidden = np.maximum(net[0](x).numpy(), 0)
logits = net(x).numpy()
probs = np.exp(logits - logits.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)
dlogits = (probs - np.eye(3)[labels.numpy()]) / len(logits)
seen = {}
handle = net[1].register_forward_hook(lambda m, i, o: seen.update(relu=o.numpy()))
back = net[2].register_backward_hook(lambda m, gin, gout: seen.update(dlogits=gout[0].numpy()))
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
print(f"  the forward hook saw the ReLU's output {seen['relu'].shape}, {(seen['relu'] == 0).mean():.0%} zeros; "
      f"the backward hook saw dL/dlogits {seen['dlogits'].shape}, first row {np.round(seen['dlogits'][0], 4)}")
claim(np.array_equal(seen["relu"], hidden) and np.allclose(seen["dlogits"], dlogits, atol=1e-6),
      "the forward hook saw max(0, first layer's output); the backward hook saw (softmax - one-hot) / 5")
handle.remove()
back.remove()
h = x.requires_grad_().register_hook(lambda g: g * 0)
net.zero_grad()
F.cross_entropy(net(x), labels).backward()
claim(not x.grad.numpy().any(), "a tensor hook can replace a gradient (here with zeros)")
h.remove()

notice("Backward visits the graph from the loss to the inputs; a layer has its .grad only once the walk has "
       "passed it.",
       "A ReLU is a gate: where its input was negative, no gradient gets through to the layers before it.",
       "The graph holds the way back (each node's link to the node before) and what each backward needs, not "
       "every array of the forward pass: that is how a deep network's training step fits in memory.",
       "Hooks let you look at (or change) what flows through a layer without editing the layer.")

exercises("Stop the walk after two steps. Which parameters have a .grad? Why?",
          "Draw the graph of a network with a residual connection (y = x + f(x)). Where do gradients add up?",
          "Use inspection.trace(loss) on this network and read the gradient norms from output to input.")
