"""D2L's PyTorch code for chapters 7.2-7.5 (convolutions and pooling by hand), 7.6 (LeNet), 8.1 (AlexNet),
8.2 (VGG) and 8.3 (NiN), run on minivgg with only its imports changed (`import minivgg as torch`,
`from minivgg import nn`) and its data loader: the numbers and shapes the book prints, and its `train_ch6`
with `accuracy`, `evaluate_accuracy_gpu` and `Accumulator` training each network for a few batches of small
images, on the CPU and on the strict CuPy stand-in GPU.

The book's code below is copied as it is printed, except that `Animator` and `Timer` (plots and clocks) are
replaced by a list of the batch losses, and the channel counts take a divisor so the nets stay small."""
import numpy as np
import pytest

import minivgg as torch
from minivgg import nn
from minivgg.data import DataLoader


# ---- D2L's helpers (d2l.Accumulator, d2l.accuracy, d2l.evaluate_accuracy_gpu, d2l.train_ch6) -----------------
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
                X = [x.to(device) for x in X]
            else:
                X = X.to(device)
            y = y.to(device)
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """Train a model with a GPU (the book's, its Animator and Timer replaced by the returned losses)."""
    def init_weights(m):
        if type(m) == nn.Linear or type(m) == nn.Conv2d:
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    print('training on', device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    losses, num_batches = [], len(train_iter)
    for epoch in range(num_epochs):
        # Sum of training loss, sum of training accuracy, no. of examples
        metric = Accumulator(3)
        net.train()
        for i, (X, y) in enumerate(train_iter):
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], accuracy(y_hat, y), X.shape[0])
            losses.append(float(l))
        train_l = metric[0] / metric[2]
        train_acc = metric[1] / metric[2]
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        print(f'loss {train_l:.3f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}, {num_batches} batches')
    return losses, test_acc


# ---- the data: Fashion-MNIST's form (uint8 28x28, ten classes), made up so that a few steps can learn it ---------
def fake_fashion_mnist(batch_size, resize=None, n=32, device="cpu"):
    """(train_iter, test_iter) as `load_data_fashion_mnist` gives them (uint8 28x28 images, labels 0-9),
    made up so that a few steps can learn them: only the labels 0 and 1 occur, a bright band at the top or
    at the bottom of noise. The loss falls from ln 10 as soon as the net learns that much."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 4 + 14 * k:10 + 14 * k] = 255
    train = DataLoader((images, labels), batch_size, shuffle=True, device=device, resize=resize)
    return train, DataLoader((images, labels), batch_size, device=device, resize=resize)


def shapes_as_printed(net, X):
    """The book's loop `for layer in net: X = layer(X); print(layer.__class__.__name__, 'output shape:\\t',
    X.shape)`, returning what it prints."""
    printed = []
    for layer in net:
        X = layer(X)
        print(layer.__class__.__name__, 'output shape:\t', X.shape)
        printed.append((layer.__class__.__name__, tuple(X.shape)))
    return printed


def falls(losses, steps=4):
    """The mean loss of the last `steps` batches is below that of the first `steps`."""
    return np.mean(losses[-steps:]) < np.mean(losses[:steps])


# ---- 7.2-7.5: convolutions and pooling written by hand, then as layers ------------------------------------------
def corr2d(X, K):
    """Compute 2D cross-correlation."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


def corr2d_multi_in(X, K):
    # Iterate through the 0th dimension (channel) of K first, then add them up
    return sum(corr2d(x, k) for x, k in zip(X, K))


def corr2d_multi_in_out(X, K):
    # Iterate through the 0th dimension of K, and each time, perform cross-correlation operations with input X.
    # All of the results are stacked together
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)


def corr2d_multi_in_out_1x1(X, K):
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    # Matrix multiplication in the fully connected layer
    Y = torch.matmul(K, X)
    return Y.reshape((c_o, h, w))


def pool2d(X, pool_size, mode='max'):
    p_h, p_w = pool_size
    Y = torch.zeros((X.shape[0] - p_h + 1, X.shape[1] - p_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            if mode == 'max':
                Y[i, j] = X[i: i + p_h, j: j + p_w].max()
            elif mode == 'avg':
                Y[i, j] = X[i: i + p_h, j: j + p_w].mean()
    return Y


def test_chapter_7_code_gives_the_books_numbers():
    X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert corr2d(X, K).tolist() == [[19.0, 25.0], [37.0, 43.0]]
    assert pool2d(X, (2, 2)).tolist() == [[4.0, 5.0], [7.0, 8.0]]
    assert pool2d(X, (2, 2), 'avg').tolist() == [[2.0, 3.0], [5.0, 6.0]]
    X = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
                      [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    K = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert corr2d_multi_in(X, K).tolist() == [[56.0, 72.0], [104.0, 120.0]]
    K = torch.stack((K, K + 1, K + 2), 0)
    assert K.shape == (3, 2, 2, 2) and corr2d_multi_in_out(X, K).shape == (3, 2, 2)
    X = torch.normal(0, 1, (3, 3, 3))
    K = torch.normal(0, 1, (2, 3, 1, 1))
    Y1 = corr2d_multi_in_out_1x1(X, K)
    Y2 = corr2d_multi_in_out(X, K)
    assert float(torch.abs(Y1 - Y2).sum()) < 1e-6
    X = torch.arange(16, dtype=torch.float32).reshape((1, 1, 4, 4))
    assert nn.MaxPool2d(3)(X).tolist() == [[[[10.0]]]]
    assert nn.MaxPool2d((2, 3), stride=(2, 3), padding=(0, 1))(X).tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    X = torch.cat((X, X + 1), 1)
    assert nn.MaxPool2d(3, padding=1, stride=2)(X).tolist() == [[[[5.0, 7.0], [13.0, 15.0]],
                                                                 [[6.0, 8.0], [14.0, 16.0]]]]


def test_chapter_7_learns_the_edge_detector():
    X = torch.ones((6, 8))
    X[:, 2:6] = 0
    K = torch.tensor([[1.0, -1.0]])
    Y = corr2d(X, K)
    # Construct a two-dimensional convolutional layer with 1 output channel and a kernel of shape (1, 2). For the
    # sake of simplicity, we ignore the bias here
    conv2d = nn.LazyConv2d(1, kernel_size=(1, 2), bias=False)
    X = X.reshape((1, 1, 6, 8))
    Y = Y.reshape((1, 1, 6, 7))
    lr = 3e-2  # Learning rate
    losses = []
    for i in range(10):
        Y_hat = conv2d(X)
        l = (Y_hat - Y) ** 2
        conv2d.zero_grad()
        l.sum().backward()
        # Update the kernel
        conv2d.weight.data[:] -= lr * conv2d.weight.grad
        if (i + 1) % 2 == 0:
            print(f'epoch {i + 1}, loss {l.sum():.3f}')
        losses.append(float(l.sum()))
    assert losses[-1] < 0.1 * losses[0]
    np.testing.assert_allclose(conv2d.weight.data.reshape((1, 2)), [[1.0, -1.0]], atol=0.05)


# ---- 7.6 LeNet ------------------------------------------------------------------------------------------------
def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, 10))


def test_lenet_prints_the_books_shapes():
    X = torch.rand(size=(1, 1, 28, 28), dtype=torch.float32)
    assert shapes_as_printed(lenet(), X) == [
        ("Conv2d", (1, 6, 28, 28)), ("Sigmoid", (1, 6, 28, 28)), ("AvgPool2d", (1, 6, 14, 14)),
        ("Conv2d", (1, 16, 10, 10)), ("Sigmoid", (1, 16, 10, 10)), ("AvgPool2d", (1, 16, 5, 5)),
        ("Flatten", (1, 400)), ("Linear", (1, 120)), ("Sigmoid", (1, 120)), ("Linear", (1, 84)),
        ("Sigmoid", (1, 84)), ("Linear", (1, 10))]


def test_lenet_trains_with_train_ch6():
    train_iter, test_iter = fake_fashion_mnist(batch_size=8)  # the book: batch 256, lr 0.9, 10 epochs
    losses, test_acc = train_ch6(lenet(), train_iter, test_iter, num_epochs=4, lr=0.3, device=torch.device("cpu"))
    assert len(losses) == 4 * 4 and falls(losses) and 0 <= test_acc <= 1


# ---- 8.1 AlexNet ----------------------------------------------------------------------------------------------
def alexnet(r=1):
    """The book's AlexNet (`r` = 1); r > 1 divides every width by r."""
    return nn.Sequential(
        nn.Conv2d(1, 96 // r, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96 // r, 256 // r, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256 // r, 384 // r, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384 // r, 384 // r, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384 // r, 256 // r, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400 // r, 4096 // r), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096 // r, 4096 // r), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096 // r, 10))


def test_alexnet_prints_the_books_shapes():
    X = torch.randn(1, 1, 224, 224)
    r = 16  # the spatial sizes are the book's; the widths a sixteenth
    assert shapes_as_printed(alexnet(r), X) == [
        ("Conv2d", (1, 96 // r, 54, 54)), ("ReLU", (1, 96 // r, 54, 54)), ("MaxPool2d", (1, 96 // r, 26, 26)),
        ("Conv2d", (1, 256 // r, 26, 26)), ("ReLU", (1, 256 // r, 26, 26)), ("MaxPool2d", (1, 256 // r, 12, 12)),
        ("Conv2d", (1, 384 // r, 12, 12)), ("ReLU", (1, 384 // r, 12, 12)),
        ("Conv2d", (1, 384 // r, 12, 12)), ("ReLU", (1, 384 // r, 12, 12)),
        ("Conv2d", (1, 256 // r, 12, 12)), ("ReLU", (1, 256 // r, 12, 12)), ("MaxPool2d", (1, 256 // r, 5, 5)),
        ("Flatten", (1, 6400 // r)), ("Linear", (1, 4096 // r)), ("ReLU", (1, 4096 // r)),
        ("Dropout", (1, 4096 // r)), ("Linear", (1, 4096 // r)), ("ReLU", (1, 4096 // r)),
        ("Dropout", (1, 4096 // r)), ("Linear", (1, 10))]


def test_alexnet_trains_with_train_ch6():
    train_iter, test_iter = fake_fashion_mnist(batch_size=8, resize=224, n=16)
    losses, _ = train_ch6(alexnet(16), train_iter, test_iter, num_epochs=2, lr=0.05, device=torch.device("cpu"))
    assert falls(losses, 2)


# ---- 8.2 VGG --------------------------------------------------------------------------------------------------
def vgg_block(num_convs, in_channels, out_channels):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


conv_arch = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg(conv_arch):
    conv_blks = []
    in_channels = 1
    # The convolutional part
    for (num_convs, out_channels) in conv_arch:
        conv_blks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels

    return nn.Sequential(
        *conv_blks, nn.Flatten(),
        # The fully connected part
        nn.Linear(out_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 10))


def test_vgg_prints_the_books_shapes():
    ratio = 16  # the book's is 4
    small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
    net = vgg(small_conv_arch)
    X = torch.randn(size=(1, 1, 224, 224))
    assert shapes_as_printed(net, X) == [
        ("Sequential", (1, 64 // ratio, 112, 112)), ("Sequential", (1, 128 // ratio, 56, 56)),
        ("Sequential", (1, 256 // ratio, 28, 28)), ("Sequential", (1, 512 // ratio, 14, 14)),
        ("Sequential", (1, 512 // ratio, 7, 7)), ("Flatten", (1, 512 // ratio * 49)), ("Linear", (1, 4096)),
        ("ReLU", (1, 4096)), ("Dropout", (1, 4096)), ("Linear", (1, 4096)), ("ReLU", (1, 4096)),
        ("Dropout", (1, 4096)), ("Linear", (1, 10))]


def test_vgg_trains_with_train_ch6():
    ratio = 32
    small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
    net = vgg(small_conv_arch)
    train_iter, test_iter = fake_fashion_mnist(batch_size=8, resize=224, n=16)
    losses, _ = train_ch6(net, train_iter, test_iter, num_epochs=2, lr=0.05, device=torch.device("cpu"))
    assert falls(losses, 2)


# ---- 8.3 NiN --------------------------------------------------------------------------------------------------
def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def nin(r=1):
    """The book's NiN (`r` = 1); r > 1 divides the widths of its first three blocks by r."""
    return nn.Sequential(
        nin_block(1, 96 // r, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96 // r, 256 // r, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256 // r, 384 // r, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        # There are 10 label classes
        nin_block(384 // r, 10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        # Transform the four-dimensional output into two-dimensional output with a shape of (batch size, 10)
        nn.Flatten())


def test_nin_prints_the_books_shapes():
    r = 16
    X = torch.rand(size=(1, 1, 224, 224))
    assert shapes_as_printed(nin(r), X) == [
        ("Sequential", (1, 96 // r, 54, 54)), ("MaxPool2d", (1, 96 // r, 26, 26)),
        ("Sequential", (1, 256 // r, 26, 26)), ("MaxPool2d", (1, 256 // r, 12, 12)),
        ("Sequential", (1, 384 // r, 12, 12)), ("MaxPool2d", (1, 384 // r, 5, 5)), ("Dropout", (1, 384 // r, 5, 5)),
        ("Sequential", (1, 10, 5, 5)), ("AdaptiveAvgPool2d", (1, 10, 1, 1)), ("Flatten", (1, 10))]


def test_nin_trains_with_train_ch6():
    train_iter, test_iter = fake_fashion_mnist(batch_size=8, resize=224, n=16)
    losses, _ = train_ch6(nin(16), train_iter, test_iter, num_epochs=2, lr=0.1, device=torch.device("cpu"))
    assert falls(losses, 2)


# ---- the same code on the GPU: the strict CuPy stand-in everywhere, and a card where there is one --------------
def try_gpu(i=0):
    """Return gpu(i) if exists, otherwise return cpu() (the book's d2l.try_gpu)."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f'cuda:{i}')
    return torch.device('cpu')


def test_lenet_and_nin_train_on_the_gpu(cuda_device):
    device = try_gpu()
    assert device == "cuda:0"
    train_iter, test_iter = fake_fashion_mnist(batch_size=8)
    losses, _ = train_ch6(lenet(), train_iter, test_iter, num_epochs=2, lr=0.3, device=device)
    assert np.isfinite(losses).all() and next(lenet().to(device).parameters()).device == "cuda:0"
    train_iter, test_iter = fake_fashion_mnist(batch_size=8, resize=96, n=16)
    net = nn.Sequential(nin_block(1, 6, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
                        nin_block(6, 10, kernel_size=3, strides=1, padding=1), nn.AdaptiveAvgPool2d((1, 1)),
                        nn.Flatten())
    losses, test_acc = train_ch6(net, train_iter, test_iter, num_epochs=2, lr=0.1, device=device)
    assert np.isfinite(losses).all() and 0 <= test_acc <= 1


def test_vgg_trains_on_the_gpu(cuda_device):
    """The chapter's own network: vgg(small_conv_arch) at 224x224, the book's dense layers included."""
    ratio = 64
    small_conv_arch = [(pair[0], pair[1] // ratio) for pair in conv_arch]
    net = vgg(small_conv_arch)
    train_iter, test_iter = fake_fashion_mnist(batch_size=4, resize=224, n=8, device=try_gpu())
    losses, test_acc = train_ch6(net, train_iter, test_iter, num_epochs=1, lr=0.05, device=try_gpu())
    assert len(losses) == 2 and np.isfinite(losses).all() and 0 <= test_acc <= 1
    assert next(iter(net.parameters())).device == "cuda:0"


@pytest.mark.parametrize("make", [lenet, lambda: nin(16)], ids=["lenet", "nin"])
def test_a_forward_pass_on_the_gpu_equals_the_cpus(make, cuda_device):
    net = make()
    X = torch.rand(size=(2, 1, 28, 28)) if make is lenet else torch.rand(size=(2, 1, 96, 96))
    net.eval()
    on_cpu = net(X).numpy()
    on_gpu = net.to(try_gpu())(X.to(try_gpu())).numpy()
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)


# ---- the same networks in PyTorch, layer by layer ---------------------------------------------------------------
@pytest.mark.parametrize("make, side", [(lenet, 28), (lambda: nin(16), 96)], ids=["lenet", "nin"])
def test_the_chapters_nets_compute_what_torch_computes(make, side):
    pytest.importorskip("torch")
    from minivgg.inspection import compare_with_torch

    net = make()
    images = torch.rand(size=(4, 1, side, side))
    rows = compare_with_torch(net, images, torch.tensor([0, 1, 2, 3]))
    assert len(rows) == sum(1 for m in net.modules() if next(m.children(), None) is None)
    for row in rows:
        assert row["activation"] < 1e-5 and row["grad_output"] < 1e-6, row
        assert row.get("weight_grad", 0) < 1e-5 and row.get("bias_grad", 0) < 1e-5, row
