"""`minivgg doctor`: can this machine train on its GPU, and does the GPU compute what the CPU computes?

It prints CuPy's and CUDA's versions and the device, runs every kernel on the GPU and on the CPU on the same
small inputs (forward and backward) and compares them, times a training step of D2L's VGG-11 (channels / 4),
and ends with one line: "GPU path OK", or what failed. Without a usable GPU it says what is missing (CuPy
not installed, no device, or the CUDA error) and returns 1. Its output is what a GPU bug report needs.
"""
import math
import time

import numpy as np

from . import cuda, models, optim, tiers
from . import functional as F
from .autograd import tensor
from .devices import parse_device

TOLERANCE = 1e-4  # float32 on two devices: products summed in another order, relative to the largest value
DROPOUT_P = 0.5


def _unusable(device):
    """None if the GPU `device` can be used, else why not (CUDA's error, or a device that does not exist)."""
    try:
        return cuda.device_problem(device)
    except RuntimeError as exc:
        return str(exc)


# ---- the kernels, GPU against CPU -----------------------------------------------------------------------
def _difference(gpu, cpu):
    """The largest |gpu - cpu|, relative to the largest |cpu| (so it reads the same at any scale)."""
    return float(np.abs(gpu - cpu).max()) / max(float(np.abs(cpu).max()), 1e-30)


def _checks(device, rng):
    """(name, check) for every kernel; a check returns (ok, what it saw). Each kernel but dropout runs on both
    devices on the same float32 inputs."""
    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def cross_entropy(logits):
        return F.cross_entropy(logits, tensor(np.array([1, 3, 5, 7]), device=logits.device))

    def against_cpu(fn, *arrays):
        return lambda: _compare(fn, arrays, device, rng)

    return [
        ("conv2d", against_cpu(lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1), normal(2, 3, 9, 9),
                               normal(4, 3, 3, 3), normal(4))),
        ("conv2d stride 2", against_cpu(lambda x, w: F.conv2d(x, w, stride=2, padding=1), normal(2, 3, 9, 9),
                                        normal(4, 3, 3, 3))),
        ("max_pool2d", against_cpu(lambda x: F.max_pool2d(x, 2), normal(2, 3, 8, 8))),
        ("relu", against_cpu(F.relu, normal(2, 3, 8, 8))),
        ("dropout", lambda: _check_dropout(device)),
        ("linear", against_cpu(F.linear, normal(4, 27), normal(10, 27), normal(10))),
        ("cross_entropy", against_cpu(cross_entropy, normal(4, 10))),
        ("local_response_norm", against_cpu(lambda x: F.local_response_norm(x, 5), normal(2, 8, 5, 5))),
    ]


def _compare(fn, arrays, device, rng):
    """Run `fn` on both devices, forward and backward with the same output gradient; (ok, what was seen)."""
    cpu = [tensor(a, requires_grad=True) for a in arrays]
    gpu = [tensor(a, device=device, requires_grad=True) for a in arrays]
    cpu_out, gpu_out = fn(*cpu), fn(*gpu)
    if gpu_out.device != device:
        return False, f"the output is on {gpu_out.device}, not {device}"
    forward = _difference(gpu_out.numpy(), cpu_out.numpy())
    g = rng.standard_normal(cpu_out.shape).astype(np.float32)
    cpu_out.backward(tensor(g))
    gpu_out.backward(tensor(g, device=device))
    backward = max(_difference(b.grad.numpy(), a.grad.numpy()) for a, b in zip(cpu, gpu))
    return forward < TOLERANCE and backward < TOLERANCE, \
        f"largest difference {forward:.1e} forward, {backward:.1e} backward (limit {TOLERANCE:.0e})"


def _check_dropout(device):
    """The GPU draws its own masks (another generator than the CPU's), so dropout is checked for what must
    hold: the shape, zeros at about rate p, the kept values scaled by 1/(1-p), and a backward pass that lets
    through exactly the kept units."""
    x = tensor(np.ones((64, 256), dtype=np.float32), device=device, requires_grad=True)
    y = F.dropout(x, DROPOUT_P)
    y.backward(tensor(np.ones((64, 256), dtype=np.float32), device=device))
    out, grad = y.numpy(), x.grad.numpy()
    scale = 1 / (1 - DROPOUT_P)
    zeroed = float((out == 0).mean())
    ok = (y.shape == x.shape and y.device == device and set(np.unique(out).tolist()) <= {0.0, scale}
          and abs(zeroed - DROPOUT_P) < 0.1 and np.array_equal(grad, out))
    return ok, f"shape {tuple(y.shape)}, {zeroed:.0%} zeroed, the rest scaled by {scale:g}; backward: the same mask"


def _gpu_tiers():
    """(tier, label, suffix) for each GPU tier to check: the one that runs, and the reference kernels too when
    the fast GPU tier (minivgg.tiers.enable_fast_gpu) is on, so a wrong fast kernel is told from a wrong GPU."""
    if not (tiers.fast_gpu_enabled() and tiers.get_kernels() == "fast"):
        return [(tiers.get_kernels(), "", "")]
    return [("reference", ", reference kernels,", ""),
            ("fast", ", fast kernels (minivgg/fast_gpu.py),", " (fast GPU)")]


def _check_kernels(device, say):
    """Run every kernel check on `device` under the current tier; print each; return the names that failed."""
    failed = []
    for name, check in _checks(device, np.random.default_rng(0)):
        try:
            ok, seen = check()
        except Exception as exc:  # an error is a finding to report, not a crash
            ok, seen = False, f"{type(exc).__name__}: {exc}"
        say(f"  {name:<20} {'ok' if ok else 'FAILED'}  {seen}")
        if not ok:
            failed.append(name)
    return failed


# ---- one training step --------------------------------------------------------------------------------------
def _training_step(device, size, batch, steps, say):
    """Time `steps` SGD steps (after one untimed step, in which CuPy compiles its kernels) of D2L's VGG-11
    with channels / 4 on a random batch; (ok, what was seen)."""
    arch = models.small_conv_arch(models.CONV_ARCH, 4)
    say(f"training step: D2L's VGG-11 with channels / 4, batch {batch} at {size}x{size}, SGD; {steps} steps timed "
        "after one untimed")
    net = models.initialize(models.vgg(arch).to(device), (1, 1, size, size), device=device)
    opt = optim.SGD(net.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    x = tensor(rng.random((batch, 1, size, size), dtype=np.float32), device=device)
    y = tensor(rng.integers(0, 10, batch), device=device)

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step()
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    cuda.synchronize()  # the steps were only queued: wait for the GPU to finish them
    seconds = (time.perf_counter() - start) / steps
    value = loss.item()
    forward = sum(models.count_flops(models.vgg(arch), (1, 1, size, size)).values())  # per image
    memory = cuda.memory_info()
    say(f"  {seconds * 1e3:.1f} ms per step, {batch / seconds:.0f} images/s, "
        f"{3 * forward * batch / seconds / 1e12:.2f} TFLOP/s (3 x {forward / 1e9:.2f} GFLOP per image: forward "
        f"and the two products of backward); loss {value:.3f}")
    say(f"  GPU memory: {memory['used'] / 2**20:.0f} MiB in use, {memory['total'] / 2**20:.0f} MiB held by "
        "CuPy's memory pool")
    if not math.isfinite(value):
        return False, f"the loss is {value}"
    return True, ""


def run(device="cuda", size=224, batch=128, steps=3, say=print):
    """Check the GPU path on `device` ('cuda' or 'cuda:N'); print as it goes; return 0 if all is right, else 1.
    `size` and `batch` set the timed training step (224 and 128: D2L's setting)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        raise ValueError("doctor checks a GPU: give cuda or cuda:N")
    device = f"cuda:{index}"
    say("minivgg doctor: the GPU path, checked against the CPU")
    say(f"CuPy:    {cuda.describe_cupy()}")
    problem = _unusable(device)
    if problem:
        say(f"GPU path unavailable: {problem}")
        return 1
    failed = []
    with cuda.use_device(device):  # CuPy allocates and computes on its current device
        say(f"device:  {cuda.describe_device(index)}")
        for tier, label, suffix in _gpu_tiers():
            say(f"kernels on the GPU{label} against the CPU (float32, same inputs, forward and backward):")
            with tiers.kernels(tier):
                failed += [name + suffix for name in _check_kernels(device, say)]
        for tier, label, suffix in _gpu_tiers():
            with tiers.kernels(tier):
                if label:
                    say(f"timed{label.rstrip(',')}:")
                try:
                    ok, seen = _training_step(device, size, batch, steps, say)
                except Exception as exc:
                    ok, seen = False, f"{type(exc).__name__}: {exc}"
            if not ok:
                say(f"  FAILED  {seen}")
                failed.append("training step" + suffix)
    if failed:
        say(f"GPU path FAILED: {', '.join(failed)} (send this whole output with the bug report)")
        return 1
    say("GPU path OK")
    return 0
