"""Per-kernel forward+backward time of every layer shape of D2L's Fashion-MNIST VGG-11/4 (batch 128),
minivgg against PyTorch CPU in the same run, as a table.

    python benchmarks/kernels.py --size 32      # or 96, 224
    python benchmarks/kernels.py --size 32 --kernels reference
"""
import argparse
import time

import minivgg as mv
import numpy as np

from minivgg import models, nn


def layer_inputs(size, batch):
    """(name, minivgg module, input shape) for each layer of the network, in order."""
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, size, size))
    rows, shape = [], (batch, 1, size, size)
    x = mv.tensor(np.zeros(shape, dtype=np.float32))
    with mv.no_grad():
        for name, layer in _leaves(net):
            rows.append((name, layer, x.shape))
            x = layer(x)
    return rows


def _leaves(module, prefix=""):
    children = list(module.named_children())
    if not children:
        yield prefix, module
    for name, child in children:
        yield from _leaves(child, f"{prefix}.{name}" if prefix else name)


def best_of(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(layer, shape, rng):
    x = mv.tensor(rng.random(shape, dtype=np.float32), requires_grad=not isinstance(layer, nn.Conv2d)
                  or shape[1] > 1)

    def run():
        layer.zero_grad()  # as in training: no accumulation into an old .grad
        y = layer(x)
        y.backward(mv.Tensor(np.ones_like(y.data)))  # ones in the output's own memory order, as upstream sends
    return run


def theirs(layer, shape, rng, torch):
    tnn = torch.nn
    if isinstance(layer, nn.Conv2d):
        t = tnn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    elif isinstance(layer, nn.Linear):
        t = tnn.Linear(layer.in_features, layer.out_features)
    elif isinstance(layer, nn.MaxPool2d):
        t = tnn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    elif isinstance(layer, nn.ReLU):
        t = tnn.ReLU()
    elif isinstance(layer, nn.Dropout):
        t = tnn.Dropout(layer.p)
    else:
        t = tnn.Flatten()
    x = torch.tensor(rng.random(shape, dtype=np.float32), requires_grad=not isinstance(layer, nn.Conv2d)
                     or shape[1] > 1)

    def run():
        t.zero_grad(set_to_none=True)
        y = t(x)
        y.backward(torch.ones_like(y))
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kernels", choices=mv.tiers.TIERS, default="fast")
    args = parser.parse_args()
    mv.cpu.restart_with_blas_settings()  # OpenBLAS started as `minivgg train` starts it
    mv.cpu.tune()
    mv.set_kernels(args.kernels)
    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"forward + backward per layer, {args.kernels} kernels, batch {args.batch}, {args.size}x{args.size}, "
          f"best of {args.repeats}")
    print(f"{'layer':<8} {'type':<11} {'input shape':<22} {'minivgg ms':>10} {'torch ms':>9} {'ratio':>6}")
    total_ours = total_theirs = 0.0
    for name, layer, shape in layer_inputs(args.size, args.batch):
        a = best_of(ours(layer, shape, rng), args.repeats)
        total_ours += a
        line = f"{name:<8} {type(layer).__name__:<11} {str(shape):<22} {a * 1e3:>10.2f}"
        if torch is not None:
            b = best_of(theirs(layer, shape, rng, torch), args.repeats)
            total_theirs += b
            line += f" {b * 1e3:>9.2f} {a / b:>6.2f}"
        print(line)
    if torch is not None:
        print(f"{'total':<42} {total_ours * 1e3:>10.1f} {total_theirs * 1e3:>9.1f} {total_ours / total_theirs:>6.2f}")


if __name__ == "__main__":
    main()
