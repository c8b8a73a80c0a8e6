"""Time one SGD training step of D2L's Fashion-MNIST VGG-11 (channels / 4) on minivgg and on PyTorch CPU,
in the same run, and print the ratio and the peak memory of each.

    python benchmarks/step_time.py                 # sizes 32 and 96, batch 128
    python benchmarks/step_time.py --sizes 32 --repeats 5

Each (framework, size) runs in its own subprocess, so peak memory (max RSS above the process's
footprint after set-up) is measured separately. Shared machines are noisy: read the ratio, not the ms.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_minivgg(size, batch, repeats, warmup, device):
    import minivgg as mv
    from minivgg import functional as F
    from minivgg import models, optim

    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)).to(device)
    models.initialize(net, (1, 1, size, size), "xavier", device=device)
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    x = mv.tensor(rng.random((batch, 1, size, size), dtype=np.float32), device=device)
    y = mv.tensor(rng.integers(0, 10, batch), device=device)

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        mv.cuda.synchronize() if device != "cpu" else None
        t = time.perf_counter()
        loss = step()
        loss.item()  # waits for the GPU
        times.append(time.perf_counter() - t)
    return times, base


def run_torch(size, batch, repeats, warmup, device):
    import torch
    from torch import nn

    torch.manual_seed(0)

    def block(n, cin, cout):
        layers = []
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            cin = cout
        return nn.Sequential(*layers, nn.MaxPool2d(2, 2))

    arch = ((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))
    blocks, cin = [], 1
    for n, c in arch:
        blocks.append(block(n, cin, c))
        cin = c
    flat = cin * (size // 32) ** 2
    net = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 10)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x = torch.rand(batch, 1, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    base = _rss_mb()
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step().item()
        times.append(time.perf_counter() - t)
    return times, base


def child(args):
    fn = run_minivgg if args.framework == "minivgg" else run_torch
    before = _rss_mb()
    times, _ = fn(args.size, args.batch, args.repeats, args.warmup, args.device)
    print(json.dumps({"median_s": float(np.median(times)), "min_s": float(min(times)),
                      "peak_mb": _rss_mb() - before}))


def measure(framework, size, args):
    cmd = [sys.executable, __file__, "--child", framework, "--size", str(size), "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=["minivgg", "torch"])
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    if args.child:
        args.framework = args.child
        return child(args)
    print(f"one SGD step (momentum 0.9), VGG-11/4 of D2L, batch {args.batch}, device {args.device}, "
          f"{os.cpu_count()} cores, median of {args.repeats}")
    print(f"{'size':>5} {'minivgg ms':>11} {'torch ms':>9} {'ratio':>6} {'minivgg MB':>11} {'torch MB':>9}")
    for size in args.sizes:
        ours, err = measure("minivgg", size, args)
        if ours is None:
            print(f"{size:>5} minivgg failed: {err}")
            continue
        theirs, terr = measure("torch", size, args)
        if theirs is None:
            print(f"{size:>5} {ours['median_s'] * 1e3:>11.1f} {'-':>9} {'-':>6} {ours['peak_mb']:>11.0f} "
                  f"{'-':>9}  (torch: {terr})")
            continue
        print(f"{size:>5} {ours['median_s'] * 1e3:>11.1f} {theirs['median_s'] * 1e3:>9.1f} "
              f"{ours['median_s'] / theirs['median_s']:>6.2f} {ours['peak_mb']:>11.0f} {theirs['peak_mb']:>9.0f}")


if __name__ == "__main__":
    main()
