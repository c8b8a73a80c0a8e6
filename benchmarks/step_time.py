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

import minivgg as mv  # before NumPy: minivgg sets OpenBLAS's thread spin, read when NumPy loads it
import numpy as np


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(framework, size, batch, device):
    """One SGD training step of the model as a function, and a function that waits for the device."""
    from minivgg import functional as F
    from minivgg import inspect, models, optim

    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, size, size))
    rng = np.random.default_rng(0)
    images = rng.random((batch, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    if framework == "minivgg":
        net.to(device)
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x, y = mv.tensor(images, device=device), mv.tensor(labels, device=device)
        loss_fn, sync = F.cross_entropy, mv.cuda.synchronize
    else:
        import torch

        net = inspect.to_torch(net).to(device)  # the same layers and weights, in PyTorch
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
        loss_fn = torch.nn.functional.cross_entropy
        sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)

    def step():
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, sync


def timed(step, sync, repeats, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step().item()  # waits for the GPU
        times.append(time.perf_counter() - start)
    return times


def child(args):
    before = _rss_mb()
    times = timed(*build(args.framework, args.size, args.batch, args.device), args.repeats, args.warmup)
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
