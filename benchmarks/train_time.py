"""Train the CPU default of `minivgg train` (D2L's VGG-11/4 at 32x32 on Fashion-MNIST: SGD with Nesterov
momentum, warmup then cosine per batch, gradient clipping, He init with a small output layer; the values are
`config.DEVICE_DEFAULTS["cpu"]`) with minivgg and with PyTorch CPU, same initial weights, data order and
hyperparameters, in one run: epoch time, test accuracy and their ratio.

    python benchmarks/train_time.py                       # the CPU default, both frameworks
    python benchmarks/train_time.py --seeds 0 1 2            # minivgg over three seeds, PyTorch on the first
    python benchmarks/train_time.py --epochs 1 --frameworks torch
    python benchmarks/train_time.py --optimizer adam --lr 0.001 --warmup-epochs 0.2
"""
import argparse
import time

import minivgg as mv
import numpy as np

from minivgg import data, inspection, optim, recipe, train
from minivgg.config import DEVICE_DEFAULTS, RunConfig


def run_minivgg(net, loaders, config):
    opt, sched = recipe.build_optimizer(net, config, len(loaders[0]))
    history = train.fit(net, *loaders, opt, config.epochs, scheduler=sched, progress=False,
                        scheduler_per_step=True, clip_grad_norm=config.clip_grad_norm)
    return [(e["time"], e["test_acc"]) for e in history["epochs"]]


def run_torch(net, loaders, config):
    import torch

    tnet = inspection.to_torch(net)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(tnet.parameters(), lr=config.lr)
    else:
        opt = torch.optim.SGD(tnet.parameters(), lr=config.lr, momentum=config.momentum,
                              nesterov=config.nesterov and config.momentum > 0)
    steps = len(loaders[0])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, optim.warmup_cosine(
        round(config.warmup_epochs * steps), config.epochs * steps))
    train_loader, test_loader = loaders
    results = []
    for epoch in range(config.epochs):
        train_loader.set_epoch(epoch)
        tnet.train()
        start = time.perf_counter()
        for images, labels in train_loader:
            loss = torch.nn.functional.cross_entropy(tnet(torch.from_numpy(images.data)), torch.from_numpy(labels.data))
            opt.zero_grad()
            loss.backward()
            if config.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(tnet.parameters(), config.clip_grad_norm)
            opt.step()
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
    defaults = DEVICE_DEFAULTS["cpu"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("epochs", "batch_size"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=defaults[name])
    for name in ("lr", "momentum", "warmup_epochs", "output_std", "clip_grad_norm"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=defaults.get(name))
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default=defaults["optimizer"])
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=defaults["nesterov"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="minivgg trains once per seed; PyTorch on the first seed only")
    parser.add_argument("--frameworks", nargs="+", default=["minivgg", "torch"])
    args = parser.parse_args()
    mv.cpu.restart_with_blas_settings()  # OpenBLAS started as `minivgg train` starts it
    mv.cpu.tune()  # as `minivgg train` does
    flags = {k: v for k, v in vars(args).items() if k not in ("frameworks", "seeds")}
    config = RunConfig(arch="d2l", ratio=4, seed=args.seeds[0], **flags).fill_defaults("cpu").validate()
    print("config:", config, flush=True)
    results = {}  # (framework, seed) -> [(epoch seconds, test acc)]
    for seed in args.seeds:  # the first seed's runs side by side in time, for the ratio
        for framework in args.frameworks if seed == args.seeds[0] else [f for f in args.frameworks if f == "minivgg"]:
            config.seed = seed
            mv.manual_seed(seed)
            net = recipe.build_model(config, "cpu")
            loaders = data.load_data_fashion_mnist(config.batch_size, resize=config.resize, seed=seed)
            results[framework, seed] = (run_minivgg if framework == "minivgg" else run_torch)(net, loaders, config)
    print(f"\n{'framework':<10} {'seed':>4} {'epoch s':>8} {'total s':>8} {'final test acc':>15}")
    for (framework, seed), rows in results.items():
        times = [t for t, _ in rows]
        print(f"{framework:<10} {seed:>4} {np.mean(times):>8.1f} {sum(times):>8.1f} {rows[-1][1]:>15.4f}")
    epoch = {f: np.mean([t for (g, _), rows in results.items() if g == f for t, _ in rows]) for f in args.frameworks}
    if len(epoch) == 2:
        a, b = (epoch[f] for f in args.frameworks)
        print(f"epoch time ratio {args.frameworks[0]}/{args.frameworks[1]}: {a / b:.2f} (mean epoch over every seed)")


if __name__ == "__main__":
    main()
