"""Lesson 12: the GPU via CuPy. The same kernels run on CuPy arrays; what moves to the device, what stays on
the host, where the host waits for the GPU, and what the arithmetic predicts.

With an NVIDIA GPU (and CuPy) the device parts run on it. Without one they run on the strict CuPy stand-in
of minivgg's test suite (tests/strict_cupy.py): NumPy underneath, but only the names and signatures a real
CuPy has, device arrays that refuse silent copies to the host, and every wait for the GPU counted. It is
not a GPU (it says nothing about speed); it runs every line minivgg runs for 'cuda'."""
# %%
import contextlib
import os
import sys
import time

import numpy as np

import minivgg as mv
from minivgg import backend, data, models, optim, train
import minivgg.functional as F
from lesson import QUICK, claim, exercises, notice, section

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")
GPU = mv.cuda.is_available()
strict_cupy = None
if os.path.exists(os.path.join(TESTS, "strict_cupy.py")):  # a checkout of the repository has the test suite
    sys.path.insert(0, TESTS)  # strict_cupy imports its neighbour cupy_signatures
    import strict_cupy


def cpu_weights():
    """A small VGG whose weights are drawn on the CPU. A GPU has its own generator (CuPy's), which gives
    other numbers for the same seed: to start both devices from the same weights, draw them once and copy."""
    mv.manual_seed(0)
    return models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, 32, 32), "kaiming")


def seconds(*fns, rounds):
    """For each fn the shortest of `rounds` timed calls, the fns taken in turn in each round (so a busy spell
    on the machine slows all of them alike), after one untimed round (buffers, CuPy compiling its kernels);
    on a GPU each call waits for its queued work before the clock is read."""
    best = [float("inf")] * len(fns)
    for round_ in range(rounds + 1):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            mv.cuda.synchronize()
            if round_:
                best[i] = min(best[i], time.perf_counter() - start)
    return best


section("The arithmetic, measured on this CPU")
mv.cpu.tune()  # freed buffers are kept for reuse, as `minivgg train` does: a timed call pays no page faults
batch, rounds = (32, 3) if QUICK else (64, 8)
net = cpu_weights()
opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
x = mv.tensor(rng.random((batch, 1, 32, 32), dtype=np.float32))
y = mv.tensor(np.arange(batch) % 10)
forward_time, step_time = seconds(lambda: F.cross_entropy(net(x), y),
                                  lambda: train.train_step(net, x, y, opt),  # forward, loss, backward, update
                                  rounds=rounds)
counted = models.count_flops(net, (1, 1, 32, 32))
per_step = 3 * (counted["conv"] + counted["dense"]) * batch  # backward: two products per layer, for W and for x
rate = per_step / step_time
print(f"  small VGG (channels / 4), 32x32, batch {batch}: forward {forward_time * 1e3:.0f} ms, training step "
      f"{step_time * 1e3:.0f} ms")
print(f"  counted: {(counted['conv'] + counted['dense']) / 1e6:.0f} MFLOPs per image forward, x 3 x {batch} = "
      f"{per_step / 1e9:.1f} GFLOPs per step: this CPU did {rate / 1e9:.1f} GFLOP/s")
print(f"  the step took {step_time / forward_time:.1f} forward passes (measured). The count says 3: backward makes two")
print("  products per layer (for the weights and for the input). The count weighs every FLOP alike; time does not. A")
print("  forward pass also spends time the count leaves out (im2col's copies, pooling, ReLU, dropout, building the")
print("  graph) that backward does not spend twice, and backward's products have other shapes and run at another")
print("  rate; the update adds work with no products. So the ratio lands above or below 3; on a busy machine it moves.")
print("  Lesson 11's rate measures something else: the convolutions alone, timed one layer at a time, up to 224x224")
print("  maps. This one divides a whole step's counted FLOPs by its time, pooling, ReLU, loss and update included.")

gpu_net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 4))  # `minivgg train --device cuda`: 224, batch 128
d2l = models.count_flops(gpu_net, (1, 1, 224, 224))
d2l_step = 3 * (d2l["conv"] + d2l["dense"]) * 128
V100 = 15.7e12  # NVIDIA's datasheet, float32 (the README's example)
print(f"  D2L's GPU setting (224x224, batch 128): {d2l_step / 1e9:.0f} GFLOPs per step; at this CPU's rate "
      f"{d2l_step / rate:.0f} s, at a V100's peak {d2l_step / V100 * 1e3:.0f} ms: a ceiling, not a forecast")


# %%
@contextlib.contextmanager
def device_module():
    """(CuPy, its name): the real CuPy on a machine with a GPU, else the strict stand-in, installed for the
    block (None without either)."""
    if GPU:
        yield backend.require_cupy(), "the GPU"
    elif strict_cupy is not None:
        with strict_cupy.installed() as fake:
            yield fake, "the strict CuPy stand-in"
    else:
        yield None, None


@contextlib.contextmanager
def watching_copies(xp):
    """Record (dtype, shape, bytes) of every host array that xp.asarray or xp.array copies to the device."""
    crossed, originals = [], {name: getattr(xp, name) for name in ("asarray", "array")}

    def watched(name):
        def copy(value, *args, **kwargs):
            if isinstance(value, np.ndarray) and not isinstance(value, xp.ndarray):
                crossed.append((str(value.dtype), value.shape, value.nbytes))
            return originals[name](value, *args, **kwargs)
        return copy

    for name in originals:
        setattr(xp, name, watched(name))
    try:
        yield crossed
    finally:
        for name, original in originals.items():
            setattr(xp, name, original)


with device_module() as (xp, where):
    if xp is None:
        print("\n  No GPU here, and no tests/strict_cupy.py (a checkout of the repository has it): the device")
        print("  sections need one or the other.")
    else:
        section(f"What moves to the device, and what stays ({where})")
        if not GPU:
            print("  No GPU here: 'cuda' below is the test suite's stand-in (tests/strict_cupy.py, not part of the")
            print("  minivgg package), installed for these sections and removed after them.")
        dev_net = cpu_weights().to("cuda")  # .to copies the same numbers onto the device
        claim(all(backend.get_array_module(p.data) is xp for p in dev_net.parameters()),
              f"after net.to('cuda') all {len(list(dev_net.parameters()))} weight and bias arrays are device "
              f"arrays ({where})")
        n_images, size, b = 48, 32, 16
        pixels = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
        loader = data.DataLoader((pixels, np.arange(n_images) % 10), b, shuffle=True, device="cuda", resize=size)
        dev_opt = optim.SGD(dev_net.parameters(), lr=0.01, momentum=0.9)
        before = strict_cupy.STATS["host_to_device"] if not GPU else None
        with watching_copies(xp) as crossed:
            train.train_epoch(dev_net, loader, dev_opt, 0, {"epochs": [], "points": []}, progress=False)
        per_batch = {}
        for dtype, shape, nbytes in crossed:
            per_batch.setdefault((dtype, shape), [0, nbytes])[0] += 1
        print(f"  one epoch of {len(loader)} batches of {b} (28x28 uint8 images resized to {size}x{size}) sent:")
        what = {(b, 28, 28): "the batch's images", (b,): "the batch's labels",
                (size, 28): "the resize's interpolation matrices, rows and columns"}
        for (dtype, shape), (count, nbytes) in per_batch.items():
            print(f"    {count} x {dtype:<7} {str(shape):<14} {nbytes:>7,} bytes each: {what.get(shape, '')}")
        images = sum(count for (dtype, shape), (count, _) in per_batch.items() if shape == (b, 28, 28))
        claim(images == len(loader) and per_batch.get(("uint8", (b, 28, 28))) is not None and
              not any(nbytes >= b * size * size * 4 for _, _, nbytes in crossed),
              f"each batch's images crossed once, as uint8 28x28 ({b * 784:,} bytes): converted to float32 and "
              f"resized on the CPU they would have been {b * size * size * 4:,}")
        if not GPU:
            claim(strict_cupy.STATS["host_to_device"] - before == len(crossed),
                  f"the stand-in counted {len(crossed)} copies to the device too: nothing crossed unseen")
        buffers = [s["momentum_buffer"] for s in dev_opt.state.values()]
        claim(len(buffers) == len(list(dev_net.parameters())) and
              all(backend.get_array_module(a) is xp for a in buffers) and
              all(backend.get_array_module(p.grad.data) is xp for p in dev_net.parameters()),
              "the gradients and the optimizer's momentum buffers were created on the device and stayed there")
        claim(isinstance(loader.images, np.ndarray) and not isinstance(loader.images, xp.ndarray),
              "the dataset itself stays in host memory; only the batch in use is on the device")

        # %%
        section(f"Where the host waits for the device ({where})")
        if GPU:
            print("  CuPy does not count its synchronizations; the stand-in of the test suite does (run this")
            print("  lesson on a machine without a GPU to see them counted).")
        else:
            print("  CuPy queues each kernel and returns at once; the host waits only when it needs a value back")
            print("  (.item(), float(), printing). While it waits, the GPU's queue runs dry. The stand-in counts each")
            print("  wait in strict_cupy.SYNCS.")
            syncs = strict_cupy.SYNCS
            images, labels = next(iter(loader))
            start = len(syncs)
            loss, _ = train.train_step(dev_net, images, labels, dev_opt)
            after_step = len(syncs) - start
            value = loss.item()
            claim(after_step == 0 and syncs[start:] == ["item()"],
                  "a whole training step (forward, loss, backward, update) never waits: the host only queues "
                  f"work; loss.item() is the one wait, to copy the loss ({value:.3f}) to the host")
            for log_every in (1, 3):
                start = len(syncs)
                train.train_epoch(dev_net, loader, dev_opt, 1, {"epochs": [], "points": []}, progress=False,
                                  log_every=log_every)
                waits = syncs[start:]
                print(f"  train_epoch, {len(loader)} steps, log_every={log_every}: {len(waits)} waits {waits}")
                claim(len(waits) == -(-len(loader) // log_every) + 1,
                      f"with log_every={log_every} an epoch waits once per logged step and once at the end: the "
                      "running sums of loss and correct answers stay on the device in between")

        # %%
        section(f"The same numbers on both devices ({where})")
        cpu_net = cpu_weights().eval()
        first_cpu = F.cross_entropy(cpu_net(x), y).item()
        dev_x, dev_y = x.to("cuda"), y.to("cuda")
        first_dev = F.cross_entropy(cpu_weights().to("cuda").eval()(dev_x), dev_y).item()
        print(f"  first loss, dropout off: cpu {first_cpu:.6f}, {where} {first_dev:.6f}")
        claim(abs(first_dev - first_cpu) < 1e-4 * max(1.0, abs(first_cpu)),
              "with the same weights copied across, the device computes the CPU's loss to 1e-4 (the device runs "
              "the reference kernels, the CPU the fast ones)")
        if GPU:
            on_gpu = cpu_weights().to("cuda")
            gpu_opt = optim.SGD(on_gpu.parameters(), lr=0.01, momentum=0.9)

            gpu_time, = seconds(lambda: train.train_step(on_gpu, dev_x, dev_y, gpu_opt), rounds=rounds)
            print(f"  training step, measured on this machine: cpu {step_time * 1e3:.0f} ms, "
                  f"gpu {gpu_time * 1e3:.1f} ms ({step_time / gpu_time:.1f}x), "
                  f"{per_step / gpu_time / 1e9:.0f} GFLOP/s on the GPU")

notice("On the device live the weights, their gradients, the optimizer's buffers and the batch in use; the "
       "dataset, the shuffling and Python's control flow stay on the host.",
       "The host waits for the GPU only when it reads a value (.item(), float(), printing): keep those out of "
       "the step, and a GPU never idles waiting for Python.",
       "Counted FLOPs and a datasheet's peak give a ceiling, not a forecast: the update's memory traffic, "
       "im2col's copies and small layers keep a real run below it.")

exercises("With a GPU: run `minivgg doctor`, then benchmarks/step_time.py --device cuda --sizes 224, and compare "
          "the images/s with the ceiling printed above.",
          "Which arrays cross to the device in each batch besides the images and labels, and could they be sent "
          "once? (Look at data.resize_bilinear.)",
          "Add a loss.item() after every step of train_epoch's loop and count the waits again.")
