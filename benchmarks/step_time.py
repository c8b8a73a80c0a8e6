"""Time one SGD training step of D2L's Fashion-MNIST VGG-11 (channels / 4) on minivgg and on PyTorch CPU,
in the same run, and print each variant's time, its ratio to PyTorch and its peak memory.

    python benchmarks/step_time.py                         # sizes 32 and 96, batch 128
    python benchmarks/step_time.py --sizes 32 --repeats 5
    python benchmarks/step_time.py --sizes 32 --variants fast --rounds 5    # five turns each: the ratio's spread
    python benchmarks/step_time.py --baseline /tmp/old     # also time the minivgg checked out in /tmp/old
    python benchmarks/step_time.py --device cuda --sizes 224 --batch 32

Variants, each in its own subprocess (so peak memory, the max RSS above the footprint after set-up, is
measured separately):
  fast        the fast kernels as `minivgg train` runs them: OpenBLAS's settings (cpu.blas_settings) set
              before NumPy loads, and minivgg.cpu.tune()
  fast-tuned  the fast kernels in a user's script that imports NumPy first, then calls
              minivgg.cpu.restart_with_blas_settings() and minivgg.cpu.tune() (the README's advice)
  fast-plain  the fast kernels in a user's script that imports NumPy first and calls nothing
  reference   the reference kernels of functional.py (what a learner reads)
  baseline    (with --baseline) the default kernels of another minivgg checkout, OpenBLAS set as for `fast`
Every variant starts without OPENBLAS_* variables of its own (from this shell) beyond these.
On the CPU each time is also given as a multiple of the step's arithmetic limit: its floating-point
operations (`step_flops`) at the machine's float32 matrix-product rate, the faster of NumPy's and
PyTorch's measured in the same run. Shared machines are noisy: read the ratios, not the ms.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

VARIANTS = {
    # name: (framework, kernels, OpenBLAS started as `minivgg train` starts it, what the script calls)
    "fast": ("minivgg", "fast", True, ("tune",)),
    "fast-tuned": ("minivgg", "fast", False, ("restart_with_blas_settings", "tune")),
    "fast-plain": ("minivgg", "fast", False, ()),
    "reference": ("minivgg", "reference", False, ()),
    "baseline": ("minivgg", None, True, ()),
    "torch": ("torch", None, False, ()),
}


def variant_environment(blas_as_cli):
    """This process's environment without OPENBLAS_* variables, plus the settings `minivgg train`
    starts OpenBLAS with (`blas_as_cli`)."""
    from minivgg import cpu

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    return dict(env, **cpu.blas_settings(environ={})) if blas_as_cli else env


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(framework, size, batch, kernels, calls, device):
    """One SGD training step of the model on `device` as a function."""
    import numpy as np  # a user's script: NumPy first, then minivgg

    import minivgg as mv
    from minivgg import functional as F
    from minivgg import models, optim

    for name in calls:  # minivgg.cpu's functions, in order
        getattr(mv.cpu, name)()
    if kernels:
        mv.set_kernels(kernels)
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, size, size))
    rng = np.random.default_rng(0)
    images = rng.random((batch, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    if framework == "minivgg":
        opt = optim.SGD(net.to(device).parameters(), lr=0.05, momentum=0.9)
        x, y = mv.tensor(images, device=device), mv.tensor(labels, device=device)
        loss_fn = F.cross_entropy
    else:
        import torch

        from minivgg import inspection

        net = inspection.to_torch(net).to(device)  # the same layers and weights, in PyTorch
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
        loss_fn = torch.nn.functional.cross_entropy

    def step():
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def timed(step, repeats, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().item()  # waits for the GPU too
        times.append(time.perf_counter() - start)
    return times


def child(args):
    framework, kernels, _, calls = VARIANTS[args.child]
    step = build(framework, args.size, args.batch, kernels, calls, args.device)
    before = _rss_mb()  # after set-up: the step's own memory
    times = timed(step, args.repeats, args.warmup)
    print(json.dumps({"median_s": sorted(times)[len(times) // 2], "min_s": min(times), "peak_mb": _rss_mb() - before}))


def measure(variant, size, args):
    env = dict(variant_environment(VARIANTS[variant][2]), PYTHONWARNINGS="ignore")
    if variant == "baseline":
        env["PYTHONPATH"] = args.baseline
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--size", str(size), "--batch",
           str(args.batch), "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=args.baseline or None)
    if out.returncode != 0:
        return None, (out.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def gemm_rate(framework, n=4096, repeats=3):
    """This machine's float32 matrix-product rate in GFLOP/s (best of `repeats` n x n products, all cores)
    through NumPy's BLAS or PyTorch's, in a child process with OpenBLAS started as for the `fast` variant."""
    code = (f"import time, numpy as np{', torch' if framework == 'torch' else ''}\n"
            f"a = np.random.default_rng(0).random(({n}, {n}), dtype=np.float32)\n"
            + ("a = torch.from_numpy(a)\n" if framework == "torch" else "")
            + f"best = 1e9\nfor _ in range({repeats + 1}):\n"
              f"    t = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t)\n"
              f"print(2 * {n} ** 3 / best / 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=variant_environment(True))
    return float(out.stdout.strip()) if out.returncode == 0 else None


def step_flops(size, batch):
    """Floating-point operations of one training step: forward, plus in backward each convolution and
    dense layer's weight gradient and input gradient (each as costly as its forward), except the first
    layer's input gradient (the images need none)."""
    from minivgg import models

    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 4))
    counts = models.count_flops(net, (1, 1, size, size))
    first = 2 * net[0][0].weight.size * size * size  # padding 1 keeps the size
    return batch * (3 * (counts["conv"] + counts["dense"]) - first)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 96])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, taking turns; ms and ratio are medians over rounds")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the GPU runs the reference kernels)")
    parser.add_argument("--variants", nargs="+", default=["fast", "fast-tuned", "fast-plain", "reference"],
                        choices=[v for v in VARIANTS if v not in ("torch", "baseline")])
    parser.add_argument("--baseline", metavar="DIR", help="a checkout of minivgg to time as well")
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    variants = ["torch"] + args.variants + (["baseline"] if args.baseline else [])
    print(f"one SGD step (momentum 0.9), VGG-11/4 of D2L, batch {args.batch}, {os.cpu_count()} cores, "
          f"device {args.device}, median of {args.repeats}; ratio = time / PyTorch's time in this run"
          + (f" (in the same round; medians over {args.rounds} rounds; peak MB: the largest)" if args.rounds > 1 else ""))
    rate = None
    if args.device == "cpu":
        rates = {framework: gemm_rate(framework) for framework in ("numpy", "torch")}
        rate = max(r for r in rates.values() if r) if any(rates.values()) else None
        print("float32 4096x4096 product: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items() if v)
              + "; the arithmetic limit of a step = its FLOPs at the faster rate")
    spread = args.rounds > 1
    print(f"{'size':>5} {'variant':<11} {'ms':>8} {'ratio':>6} {'peak MB':>8} {'x limit':>8}"
          + (f"  ratio in each of {args.rounds} rounds" if spread else ""))
    for size in args.sizes:
        limit_s = step_flops(size, args.batch) / (rate * 1e9) if rate else None
        if limit_s:
            print(f"{size:>5} {'limit':<11} {limit_s * 1e3:>8.1f} {'':>6} {'':>8} {1:>8.2f}  "
                  f"({step_flops(size, args.batch) / 1e9:.1f} GFLOP)")
        results = {variant: [] for variant in variants}  # variant -> one result per round
        for _ in range(args.rounds):  # PyTorch and minivgg take turns, so each round shares its minutes' noise
            for variant in variants:
                result, err = measure(variant, size, args)
                if result is None:
                    print(f"{size:>5} {variant:<11} failed: {err}")
                    continue
                results[variant].append(result)
        torch_rounds = results["torch"]
        for variant, rounds in results.items():
            if not rounds:
                continue
            ms = _median([r["median_s"] for r in rounds])
            ratios = [r["median_s"] / t["median_s"] for r, t in zip(rounds, torch_rounds)]
            ratio = f"{_median(ratios):>6.2f}" if ratios else f"{'-':>6}"
            multiple = f"{ms / limit_s:>8.2f}" if limit_s else f"{'-':>8}"
            each = "  " + " ".join(f"{r:.2f}" for r in ratios) if spread and variant != "torch" else ""
            print(f"{size:>5} {variant:<11} {ms * 1e3:>8.1f} {ratio} {max(r['peak_mb'] for r in rounds):>8.0f} "
                  f"{multiple}{each}", flush=True)


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


if __name__ == "__main__":
    main()
