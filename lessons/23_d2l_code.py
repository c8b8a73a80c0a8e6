"""Lesson 23: D2L's own PyTorch code on minivgg, with only its imports changed. LeNet (D2L 7.6) built, its shapes
printed and trained by the book's `train_ch6`, `evaluate_accuracy_gpu`, `accuracy` and `Accumulator`, copied as
the book prints them; then the book's exercise (ReLU instead of sigmoid), and where PyTorch's meaning of a name
wins over NumPy's. Quick mode trains on 2,560 images for 2 epochs and tests on 1,000; the full version is the
book's run: all 60,000 images, 10 epochs, the whole test set."""
# %%
import math
import time

import numpy as np

# The book's imports were `import torch`, `from torch import nn` and `from d2l import torch as d2l`.
import minivgg as torch
from minivgg import nn
from minivgg.data import DataLoader, load_data_fashion_mnist, load_fashion_mnist
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section

torch.manual_seed(0)

section("LeNet, as the book builds it")
net = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(),
    nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
    nn.Linear(120, 84), nn.Sigmoid(),
    nn.Linear(84, 10))

X = torch.rand(size=(1, 1, 28, 28), dtype=torch.float32)
printed = []
for layer in net:
    X = layer(X)
    print(layer.__class__.__name__, 'output shape: \t', X.shape)
    printed.append((layer.__class__.__name__, tuple(X.shape)))
BOOK = [("Conv2d", (1, 6, 28, 28)), ("Sigmoid", (1, 6, 28, 28)), ("AvgPool2d", (1, 6, 14, 14)),
        ("Conv2d", (1, 16, 10, 10)), ("Sigmoid", (1, 16, 10, 10)), ("AvgPool2d", (1, 16, 5, 5)),
        ("Flatten", (1, 400)), ("Linear", (1, 120)), ("Sigmoid", (1, 120)), ("Linear", (1, 84)),
        ("Sigmoid", (1, 84)), ("Linear", (1, 10))]
claim(printed == BOOK, "the twelve layers print the book's shapes, from (1, 6, 28, 28) to (1, 10) (a shape prints "
      "as a tuple here, as torch.Size there)")


# %%
section("The book's helpers, unchanged")


class Timer:
    """Record multiple running times (d2l.Timer)."""
    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        self.tik = time.time()

    def stop(self):
        self.times.append(time.time() - self.tik)
        return self.times[-1]

    def sum(self):
        return sum(self.times)


class Animator:
    """d2l.Animator's interface; it keeps the points, and `draw` plots them once at the end."""
    def __init__(self, xlabel=None, ylabel=None, legend=None, xlim=None, **kwargs):
        self.xlabel, self.legend, self.xlim = xlabel, legend or [], xlim
        self.X, self.Y = [], []

    def add(self, x, y):
        self.X.append(x)
        self.Y.append(y)

    def draw(self, ax, title):
        for k, name in enumerate(self.legend):
            points = [(x, y[k]) for x, y in zip(self.X, self.Y) if y[k] is not None]
            ax.plot(*zip(*points), "o-" if name == "test acc" else "-", label=name, markersize=4)
        ax.set(xlabel=self.xlabel, xlim=(0, self.xlim[1]), ylim=(0, 2.6), title=title)  # the first epoch too
        ax.legend()
        ax.grid(True)


class Accumulator:
    """For accumulating sums over `n` variables."""
    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def try_gpu(i=0):
    """Return gpu(i) if exists, otherwise return cpu()."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f'cuda:{i}')
    return torch.device('cpu')


def accuracy(y_hat, y):
    """Compute the number of correct predictions."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy_gpu(net, data_iter, device=None):
    """Compute the accuracy for a model on a dataset using a GPU."""
    if isinstance(net, nn.Module):
        net.eval()  # Set the model to evaluation mode
        if not device:
            device = next(iter(net.parameters())).device
    # No. of correct predictions, no. of predictions
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            if isinstance(X, list):
                # Required for BERT Fine-tuning (to be covered later)
                X = [x.to(device) for x in X]
            else:
                X = X.to(device)
            y = y.to(device)
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """Train a model with a GPU (defined in Chapter 6)."""
    def init_weights(m):
        if type(m) == nn.Linear or type(m) == nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    print('training on', device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    animator = Animator(xlabel='epoch', xlim=[1, num_epochs],
                        legend=['train loss', 'train acc', 'test acc'])
    timer, num_batches = Timer(), len(train_iter)
    for epoch in range(num_epochs):
        # Sum of training loss, sum of training accuracy, no. of examples
        metric = Accumulator(3)
        net.train()
        for i, (X, y) in enumerate(train_iter):
            timer.start()
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], accuracy(y_hat, y), X.shape[0])
            timer.stop()
            train_l = metric[0] / metric[2]
            train_acc = metric[1] / metric[2]
            if (i + 1) % (num_batches // 5) == 0 or i == num_batches - 1:
                animator.add(epoch + (i + 1) / num_batches,
                             (train_l, train_acc, None))
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        animator.add(epoch + 1, (None, None, test_acc))
    print(f'loss {train_l:.3f}, train acc {train_acc:.3f}, '
          f'test acc {test_acc:.3f}')
    print(f'{metric[2] * num_epochs / timer.sum():.1f} examples/sec '
          f'on {str(device)}')
    return animator  # the book's returns nothing: its Animator has drawn already


claim(try_gpu() == ("cuda:0" if torch.cuda.device_count() else "cpu"), f"try_gpu() gives {try_gpu()!r}: "
      "torch.cuda.device_count() and torch.device work as the book expects")

# %%
section("Training, with the book's data loader")
batch_size = 256
if QUICK:  # a subset (data loaders aside, the code is the book's)
    train_iter, _ = load_data_fashion_mnist(batch_size=batch_size, train_limit=2560)
    test_x, test_y = load_fashion_mnist("test")
    test_iter = DataLoader((test_x[:1000], test_y[:1000]), batch_size)
    lr, num_epochs = 0.9, 2
else:
    train_iter, test_iter = load_data_fashion_mnist(batch_size=batch_size)
    lr, num_epochs = 0.9, 10
first = next(iter(train_iter))
claim(first[0].shape == (batch_size, 1, 28, 28) and first[0].dtype == torch.float32 and first[1].dtype == torch.int64,
      f"a batch is X {first[0].shape} float32 and y {first[1].shape} int64, as torch's loader gives them")
sigmoid_curves = train_ch6(net, train_iter, test_iter, num_epochs, lr, try_gpu())
losses = [y[0] for y in sigmoid_curves.Y if y[0] is not None]
if QUICK:
    claim(abs(losses[-1] - math.log(10)) < 0.1, f"after {num_epochs} short epochs the sigmoid LeNet's loss, "
          f"{losses[-1]:.2f}, is still about log 10 = {math.log(10):.2f}, guessing: with the sigmoid the signal "
          "takes hundreds of steps to reach the first layers (the book's curve starts flat too)")
else:
    claim(losses[-1] < 1.0 and evaluate_accuracy_gpu(net, test_iter) > 0.6, f"after {num_epochs} epochs the loss "
          f"is {losses[-1]:.2f} and the test accuracy above 0.6 (the book's run: 0.469 and 0.779)")

# %%
section("The book's exercise: ReLU instead of sigmoid")
relu_net = nn.Sequential(
    nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.ReLU(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(),
    nn.AvgPool2d(kernel_size=2, stride=2),
    nn.Flatten(),
    nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(),
    nn.Linear(84, 10))
relu_curves = train_ch6(relu_net, train_iter, test_iter, num_epochs, 0.1, try_gpu())
relu_losses = [y[0] for y in relu_curves.Y if y[0] is not None]
claim(relu_losses[-1] < losses[-1] - (0.2 if QUICK else 0), f"with ReLU and lr 0.1 the same steps bring the loss "
      f"to {relu_losses[-1]:.2f} (sigmoid: {losses[-1]:.2f}): ReLU passes gradients on undiminished where it is "
      "active")

plt = pyplot()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
sigmoid_curves.draw(axes[0], f"LeNet (sigmoid), lr {lr}")
relu_curves.draw(axes[1], "LeNet with ReLU, lr 0.1")
save_figure(fig, "23_train_ch6.png", dpi=90, label="the book's plots of both runs")

# %%
section("Where PyTorch's meaning wins over NumPy's")
X = torch.randn(size=(4, 3, 28, 28))
claim(X.size() == (4, 3, 28, 28) and X.size(0) == 4 and X.numel() == 4 * 3 * 28 * 28,
      "X.size() is the shape and X.size(0) its first entry, as in PyTorch; NumPy's count of elements, a.size, is "
      "X.numel()")
y_hat = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
values, indices = y_hat.max(dim=1)
claim(values.tolist() == [2.0, 3.0] and indices.tolist() == [1, 0] == y_hat.argmax(dim=1).tolist(),
      "y_hat.max(dim=1) gives (values, indices) as PyTorch's does; y_hat.amax(dim=1) gives the values alone")
try:
    float(y_hat)
    refused = False
except ValueError as error:
    refused = True
    print(f"  float(y_hat): {error}")
claim(refused and abs(float(y_hat.sum()) - 4.6) < 1e-6,
      "float(t) takes a tensor of one element only, as in PyTorch (that is why the book writes float(... .sum()))")
claim(X.dtype == torch.float32 and X.to(torch.float64).dtype == torch.double and X.device == torch.device("cpu"),
      "dtypes and devices compare as in PyTorch: X.dtype == torch.float32, X.device == torch.device('cpu')")

notice("Only the imports changed: the network, the printout loop, accuracy, evaluate_accuracy_gpu, Accumulator "
       "and train_ch6 are the book's lines.",
       "The sigmoid LeNet sits at log 10 for its first hundreds of steps; ReLU starts learning at once.",
       "Where PyTorch and NumPy spell a name alike but mean different things (size, max), minivgg means PyTorch's.")

exercises("Run the book's AlexNet (D2L 8.1) through the same train_ch6 with load_data_fashion_mnist(128, "
          "resize=224), on a tenth of the widths: what does one epoch cost on the CPU?",
          "Replace nn.AvgPool2d by nn.MaxPool2d in the sigmoid LeNet. Does the flat start get shorter?",
          "Print net[0].weight.grad.norm() after a few steps of each run: how much smaller is the sigmoid "
          "LeNet's first-layer gradient?")
