"""Train the CPU default (D2L's VGG-11/4 at 32x32 on Fashion-MNIST) with minivgg and with PyTorch CPU, same
initial weights, data order and hyperparameters, in one run: epoch time, test accuracy and their ratio.

    python benchmarks/train_time.py                       # the CPU default: 3 epochs, batch 128, lr 0.02,
                                                          # momentum 0.9, cosine decay per batch
    python benchmarks/train_time.py --epochs 1 --frameworks torch
"""
import argparse
import time

import numpy as np

import minivgg as mv
from minivgg import data, inspect, models, optim, train


def run_minivgg(net, loaders, args):
    opt = optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    sched = optim.CosineAnnealingLR(opt, args.epochs * len(loaders[0])) if args.cosine else None
    history = train.fit(net, *loaders, opt, args.epochs, scheduler=sched, progress=False,
                        scheduler_per_step=args.cosine)
    return [(e["time"], e["test_acc"]) for e in history["epochs"]]


def run_torch(net, loaders, args):
    import torch

    tnet = inspect.to_torch(net)
    opt = torch.optim.SGD(tnet.parameters(), lr=args.lr, momentum=args.momentum)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * len(loaders[0])) if args.cosine else None
    train_loader, test_loader = loaders
    results = []
    for epoch in range(args.epochs):
        train_loader.set_epoch(epoch)
        tnet.train()
        start = time.perf_counter()
        for images, labels in train_loader:
            loss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(images.data)), torch.from_numpy(labels.data))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        tnet.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (tnet(torch.from_numpy(images.data)).argmax(1).numpy() == labels.data).sum()
                total += len(labels.data)
        results.append((time.perf_counter() - start, correct / total))
        print(f"torch epoch {epoch + 1}, test acc {correct / total:.3f}, time {results[-1][0]:.1f} sec", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--no-cosine", dest="cosine", action="store_false", help="constant learning rate")
    parser.add_argument("--resize", type=int, default=32)
    parser.add_argument("--frameworks", nargs="+", default=["minivgg", "torch"])
    args = parser.parse_args()
    results = {}
    for framework in args.frameworks:
        mv.manual_seed(0)
        net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)),
                                (1, 1, args.resize, args.resize), "kaiming")
        loaders = data.load_data_fashion_mnist(args.batch_size, resize=args.resize, seed=0)
        results[framework] = (run_minivgg if framework == "minivgg" else run_torch)(net, loaders, args)
    print(f"\n{'framework':<10} {'epoch s':>8} {'total s':>8} {'final test acc':>15}")
    for framework, rows in results.items():
        times = [t for t, _ in rows]
        print(f"{framework:<10} {np.mean(times):>8.1f} {sum(times):>8.1f} {rows[-1][1]:>15.4f}")
    if len(results) == 2:
        a, b = (np.mean([t for t, _ in results[f]]) for f in args.frameworks)
        print(f"epoch time ratio {args.frameworks[0]}/{args.frameworks[1]}: {a / b:.2f}")


if __name__ == "__main__":
    main()
