"""One SGD training step of D2L's Fashion-MNIST VGG-11 (channels / 4) on a GPU: PyTorch and minivgg's two GPU
tiers, each in float32 and with TF32 products, and what a step launches and holds.

    python benchmarks/gpu_step.py                   # on a card: sizes 224 and 32, batch 128
    python benchmarks/gpu_step.py --sizes 32 --repeats 50
    python benchmarks/gpu_step.py --stand-in        # without a card, on the tests' strict CuPy stand-in

On a card each variant runs in its own process: the step synchronised (the loss read back), median of
--repeats steps after --warmup; memory is PyTorch's torch.cuda.max_memory_allocated() against the bytes
CuPy's memory pool holds after the steps (a pool keeps every block it was given, so that is its peak).
PyTorch float32 means torch.backends.cuda.matmul.allow_tf32 = False and cudnn.allow_tf32 = False.

On the stand-in (no card needed) it counts, per training step at 32x32, the kernel launches (the fast tier's
jit kernels) and CuPy calls (functions, ufuncs, operators, methods) of each tier, and the bytes each tier's
graph holds for backward at 224x224, batch 128: the arrays the Functions keep, each allocation once,
measured at batch 1 and 2 (the kernels not run: only shapes matter) and extended linearly to the batch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import step_time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
VARIANTS = {  # name: (framework, kernels, TF32)
    "torch-fp32": ("torch", None, False),
    "torch-tf32": ("torch", None, True),
    "reference-fp32": ("minivgg", "reference", False),
    "reference-tf32": ("minivgg", "reference", True),
    "fast-fp32": ("minivgg", "fast", False),
    "fast-tf32": ("minivgg", "fast", True),
}


def build(framework, kernels, tf32, size, batch, device="cuda"):
    """(the model, the batch x and y, one training step as a function returning the loss): step_time.py's
    model and batch, under minivgg's `kernels` tier (its GPU fast tier on for "fast") or in PyTorch, with
    TF32 products or without."""
    import minivgg as mv

    if framework == "minivgg":
        mv.tiers.enable_fast_gpu(kernels == "fast")
        mv.set_kernels(kernels)
        if device != "cpu":
            mv.cuda.set_tf32(tf32)
    else:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    net, x, y, loss_fn, opt = step_time.parts(framework, size, batch, device)
    return net, x, y, step_time.training_step(net, x, y, loss_fn, opt)


def child(variant, size, batch, repeats, warmup):
    framework, kernels, tf32 = VARIANTS[variant]
    *_, step = build(framework, kernels, tf32, size, batch)
    for _ in range(warmup):
        step().item()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().item()  # the loss read back: the GPU has finished the step
        times.append(time.perf_counter() - start)
    if framework == "torch":
        import torch
        memory = torch.cuda.max_memory_allocated()
    else:
        import cupy
        memory = cupy.get_default_memory_pool().total_bytes()
    print(json.dumps({"median_s": sorted(times)[len(times) // 2], "min_s": min(times), "memory": memory}), flush=True)


def on_card(args):
    print(f"{'size':>4} {'variant':<15} {'median ms':>10} {'min ms':>8} {'x torch':>8} {'memory MiB':>11}")
    for size in args.sizes:
        results = {}
        for variant in args.variants:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--sizes", str(size),
                   "--batch", str(args.batch), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode or not lines:
                print(f"{size:>4} {variant:<15} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
                continue
            r = results[variant] = json.loads(lines[-1])
            peer = results.get("torch-tf32" if variant.endswith("tf32") else "torch-fp32")
            ratio = f"{r['median_s'] / peer['median_s']:.2f}" if peer else "-"
            print(f"{size:>4} {variant:<15} {r['median_s'] * 1e3:>10.2f} {r['min_s'] * 1e3:>8.2f} {ratio:>8} "
                  f"{r['memory'] / 2**20:>11.0f}", flush=True)


def _allocation(array):
    """(identity, bytes) of the memory block an array lives in, so views of one block count once."""
    mem = getattr(getattr(array, "data", None), "mem", None)
    if mem is not None:  # a CuPy array
        return id(mem), mem.size
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return id(array), array.nbytes


def held_for_backward(loss, parameters=()):
    """Bytes of the arrays the graph behind `loss` keeps for backward (saved arrays and arrays an op keeps as
    attributes: columns, masks, argmax), each allocation once, parameters left out."""
    leave_out = {_allocation(p.data)[0] for p in parameters}
    blocks, seen, todo = {}, set(), [loss.creator]
    while todo:
        fn = todo.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        arrays = [a for a in getattr(fn, "_saved", ()) if a is not None]
        arrays += [v for v in vars(fn).values() if hasattr(v, "nbytes") and hasattr(v, "shape") and v.ndim]
        for a in arrays:
            key, size = _allocation(a)
            if key not in leave_out:
                blocks[key] = size
        todo += [edge.creator for edge in getattr(fn, "inputs", ())]
    return sum(blocks.values())


def launches_per_step(kernels, size=32, batch=2):
    """(kernel launches, CuPy calls) of one training step (the third: the first two set up the optimizer's
    state) under `kernels`, on the strict stand-in, which must be importable (tests/ on sys.path). A
    launch is a CuPy call that computes, copies or fills (the stand-in's STATS["launches"]) or a jit kernel."""
    from minivgg import fast_gpu
    from strict_cupy import STATS, installed

    original, jit_launches = fast_gpu.launch, []
    # Counted, not run: the stand-in would run each kernel thread by thread (16.8 million threads for the
    # update of one 4096x4096 weight), and only the count matters here.
    fast_gpu.launch = lambda kernel, *a: jit_launches.append(kernel.__name__)
    try:
        with installed():
            *_, step = build("minivgg", kernels, False, size, batch)
            step()  # makes the momentum buffers
            step()  # the fast tier packs the parameters and buffers for its one-launch update
            launches, calls, jits = STATS["launches"], STATS["calls"], len(jit_launches)
            step()
            return STATS["launches"] - launches + len(jit_launches) - jits, STATS["calls"] - calls
    finally:
        fast_gpu.launch = original


def stand_in(args):
    sys.path.insert(0, TESTS)
    print("per training step at 32x32 (batch 2; the counts do not depend on the batch), strict stand-in:")
    counts = {kernels: launches_per_step(kernels) for kernels in ("reference", "fast")}
    for kernels, (launches, calls) in counts.items():
        print(f"  {kernels:<9}: {launches} kernel launches, {calls} CuPy calls")
    print(f"  fast / reference: launches {counts['fast'][0] / counts['reference'][0]:.2f}, "
          f"CuPy calls {counts['fast'][1] / counts['reference'][1]:.2f}")

    size, batch = 224, args.batch
    print(f"bytes held for backward at {size}x{size}, batch {batch} (from batch 1 and 2, linear in the batch):")
    for kernels in ("reference", "fast"):
        total, per_image = bytes_held(kernels, size, batch)
        print(f"  {kernels:<9}: {total / 2**20:,.0f} MiB ({per_image / 2**20:.1f} MiB per image)")


def bytes_held(kernels, size, batch):
    """(bytes the graph holds for backward at `batch`, bytes per image) under `kernels` on the strict
    stand-in: measured at batch 1 and 2 (what is held is linear in the batch), the kernels not run."""
    from minivgg import fast_gpu
    from minivgg import functional as F
    from strict_cupy import installed

    original, held = fast_gpu.launch, []
    fast_gpu.launch = lambda *a: None  # shapes only: the stand-in would run the kernels thread by thread
    try:
        for b in (1, 2):
            with installed():
                net, x, y, _ = build("minivgg", kernels, False, size, b)
                held.append(held_for_backward(F.cross_entropy(net(x), y), net.parameters()))
    finally:
        fast_gpu.launch = original
    return held[0] + (held[1] - held[0]) * (batch - 1), held[1] - held[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 32])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--stand-in", action="store_true", help="no card: count launches and bytes held")
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.sizes[0], args.batch, args.repeats, args.warmup)
    elif args.stand_in:
        stand_in(args)
    else:
        on_card(args)


if __name__ == "__main__":
    main()
