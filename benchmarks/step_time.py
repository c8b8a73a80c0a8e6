"""Time one SGD training step of D2L's Fashion-MNIST VGG-11 (channels / 4) on minivgg and on PyTorch CPU,
in the same run, and print each variant's time, its ratio to PyTorch and its peak memory.

    python benchmarks/step_time.py                         # sizes 32 and 96, batch 128
    python benchmarks/step_time.py --sizes 32 --repeats 5
    python benchmarks/step_time.py --sizes 32 --variants fast --rounds 5    # five turns each: the ratio's spread
    python benchmarks/step_time.py --baseline /tmp/old     # also time the minivgg checked out in /tmp/old
    python benchmarks/step_time.py --checkout /tmp/old --variants fast-plain fast-timeout  # time only /tmp/old
    python benchmarks/step_time.py --device cuda --sizes 224 --batch 32

Variants, each in its own process (so peak memory, the max RSS above the footprint after set-up, is
measured separately), started without OPENBLAS_* or MALLOC_* variables of their own (from this shell)
beyond those listed:
  fast            the fast kernels as `minivgg train` runs them on an AMD processor with AVX-512: started
                  with OPENBLAS_THREAD_TIMEOUT=10 and OPENBLAS_CORETYPE=Zen (cpu.blas_settings), calling
                  minivgg.cpu.tune()
  fast-plain      the fast kernels in a user's script that imports NumPy, then minivgg, and calls nothing
  fast-notebook   the same lines typed at an interactive prompt (`python -i`, fed through its stdin), as in
                  a notebook: no restart is possible there
  fast-timeout    fast-plain started with OPENBLAS_THREAD_TIMEOUT=10 (OpenBLAS's idle threads stop
                  spinning soon after a product)
  fast-zen        fast-plain started with OPENBLAS_CORETYPE=Zen (OpenBLAS's Zen kernels instead of its
                  own choice)
  fast-allocator  fast-plain started with MALLOC_MMAP_MAX_=0 and MALLOC_TRIM_THRESHOLD_=1073741824 (glibc
                  keeps freed large blocks for reuse)
  fast-all        fast-plain started with all three: what `minivgg train` restarts with, and tune()'s
                  allocator setting as environment variables
  reference       the reference kernels of functional.py (what a learner reads)
  baseline        (with --baseline) the default kernels of another minivgg checkout, started as
                  --baseline-as says (default fast-all)
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

TIMEOUT = {"OPENBLAS_THREAD_TIMEOUT": "10"}
ZEN = {"OPENBLAS_CORETYPE": "Zen"}
KEEP_FREED = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
VARIANTS = {
    # name: (framework, kernels, variables it starts with, minivgg.cpu functions the script calls)
    "fast": ("minivgg", "fast", dict(TIMEOUT, **ZEN), ("tune",)),
    "fast-plain": ("minivgg", "fast", {}, ()),
    "fast-notebook": ("minivgg", "fast", {}, ()),
    "fast-timeout": ("minivgg", "fast", TIMEOUT, ()),
    "fast-zen": ("minivgg", "fast", ZEN, ()),
    "fast-allocator": ("minivgg", "fast", KEEP_FREED, ()),
    "fast-all": ("minivgg", "fast", dict(TIMEOUT, **ZEN, **KEEP_FREED), ()),
    "reference": ("minivgg", "reference", {}, ()),
    "baseline": ("minivgg", None, {}, ()),
    "torch": ("torch", None, {}, ()),
}
INTERACTIVE = {"fast-notebook"}


def variant_environment(variables):
    """This process's environment without OPENBLAS_* and MALLOC_* variables, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "MALLOC_"))}
    return dict(env, **variables)


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parts(framework, size, batch, device):
    """(the model on `device`, one batch x and y, the loss function, an SGD optimizer): minivgg's, or PyTorch's
    with the same layers and weights."""
    import numpy as np

    import minivgg as mv
    from minivgg import functional as F
    from minivgg import models, optim

    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, size, size))
    rng = np.random.default_rng(0)
    images = rng.random((batch, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, 10, batch)
    if framework == "minivgg":
        opt = optim.SGD(net.to(device).parameters(), lr=0.05, momentum=0.9)
        return net, mv.tensor(images, device=device), mv.tensor(labels, device=device), F.cross_entropy, opt
    import torch

    from minivgg import inspection

    net = inspection.to_torch(net).to(device)  # the same layers and weights, in PyTorch
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    return net, x, y, torch.nn.functional.cross_entropy, opt


def training_step(net, x, y, loss_fn, opt):
    """One SGD training step on the batch (x, y) as a function returning the loss."""
    def step():
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step


def build(framework, size, batch, kernels, calls, device):
    """One SGD training step of the model on `device` as a function."""
    import numpy as np  # noqa: F401 (a user's script: NumPy first, then minivgg)

    import minivgg as mv

    for name in calls:  # minivgg.cpu's functions, in order
        getattr(mv.cpu, name)()
    if kernels:
        mv.set_kernels(kernels)
    return training_step(*parts(framework, size, batch, device))


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
    print(json.dumps({"median_s": sorted(times)[len(times) // 2], "min_s": min(times), "peak_mb": _rss_mb() - before,
                      "interactive": hasattr(sys, "ps1")}), flush=True)


def measure(variant, size, args):
    env = dict(variant_environment(VARIANTS[args.baseline_as if variant == "baseline" else variant][2]),
               PYTHONWARNINGS="ignore")
    checkout = args.baseline if variant == "baseline" else args.checkout if variant != "torch" else None
    if checkout:
        env["PYTHONPATH"] = checkout
    options = dict(child=variant, size=size, batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                   device=args.device)
    if variant in INTERACTIVE:  # the lines a learner would type, then the timing
        typed = (f"import sys, argparse\nsys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
                 "import numpy as np\nimport minivgg as mv\nimport step_time\n"
                 f"step_time.child(argparse.Namespace(**{options!r}))\n")
        cmd, stdin = [sys.executable, "-i", "-q"], typed
    else:
        cmd = [sys.executable, os.path.abspath(__file__)] + [f"--{k}={v}" for k, v in options.items()]
        stdin = None
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, cwd=checkout or None)
    results = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not results:
        return None, (out.stderr.strip().splitlines() or ["failed"])[-1]
    result = json.loads(results[-1])
    if result["interactive"] != (variant in INTERACTIVE):
        return None, "ran interactively" if result["interactive"] else "did not run at an interactive prompt"
    return result, None


def gemm_rate(framework, n=4096, repeats=3):
    """This machine's float32 matrix-product rate in GFLOP/s (best of `repeats` n x n products, all cores)
    through NumPy's BLAS or PyTorch's, in a child process started without OpenBLAS settings."""
    code = (f"import time, numpy as np{', torch' if framework == 'torch' else ''}\n"
            f"a = np.random.default_rng(0).random(({n}, {n}), dtype=np.float32)\n"
            + ("a = torch.from_numpy(a)\n" if framework == "torch" else "")
            + f"best = 1e9\nfor _ in range({repeats + 1}):\n"
              f"    t = time.perf_counter(); a @ a; best = min(best, time.perf_counter() - t)\n"
              f"print(2 * {n} ** 3 / best / 1e9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=variant_environment({}))
    return float(out.stdout.strip()) if out.returncode == 0 else None


def step_flops(size, batch):
    """Floating-point operations of one training step: forward, plus in backward each convolution and
    dense layer's weight gradient and input gradient (each as costly as its forward), except the first
    layer's input gradient (the images need none)."""
    from minivgg import models

    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 4))
    counts = models.count_flops(net, (1, 1, size, size))
    first = 2 * net[0][0].weight.numel() * size * size  # padding 1 keeps the size
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
    parser.add_argument("--variants", nargs="+", default=["fast", "fast-plain", "fast-notebook", "reference"],
                        choices=[v for v in VARIANTS if v not in ("torch", "baseline")])
    parser.add_argument("--baseline", metavar="DIR", help="a checkout of minivgg to time as well")
    parser.add_argument("--baseline-as", default="fast-all", choices=[v for v in VARIANTS if VARIANTS[v][2]],
                        help="the variant whose environment the baseline starts with")
    parser.add_argument("--checkout", metavar="DIR", help="time the minivgg checked out in DIR instead of this one")
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    variants = ["torch"] + args.variants + (["baseline"] if args.baseline else [])
    if args.checkout:
        print(f"minivgg from {args.checkout}")
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
    print(f"{'size':>5} {'variant':<14} {'ms':>8} {'ratio':>6} {'peak MB':>8} {'x limit':>8}"
          + (f"  ratio in each of {args.rounds} rounds" if spread else ""))
    for size in args.sizes:
        limit_s = step_flops(size, args.batch) / (rate * 1e9) if rate else None
        if limit_s:
            print(f"{size:>5} {'limit':<14} {limit_s * 1e3:>8.1f} {'':>6} {'':>8} {1:>8.2f}  "
                  f"({step_flops(size, args.batch) / 1e9:.1f} GFLOP)")
        results = {variant: [] for variant in variants}  # variant -> one result per round
        for _ in range(args.rounds):  # PyTorch and minivgg take turns, so each round shares its minutes' noise
            for variant in variants:
                result, err = measure(variant, size, args)
                if result is None:
                    print(f"{size:>5} {variant:<14} failed: {err}")
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
            print(f"{size:>5} {variant:<14} {ms * 1e3:>8.1f} {ratio} {max(r['peak_mb'] for r in rounds):>8.0f} "
                  f"{multiple}{each}", flush=True)


def _median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


if __name__ == "__main__":
    main()
