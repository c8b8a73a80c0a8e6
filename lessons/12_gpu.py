"""Lesson 12: the GPU via CuPy. The same kernels run on CuPy arrays; only the array module changes."""
# %%
import os
import sys
import time

import numpy as np

import minivgg as mv
from minivgg import models, nn, optim
import minivgg.functional as F
from lesson import QUICK, claim, exercises, section

section("One code path")
claim(mv.get_array_module(mv.tensor([1.0])) is np, "for CPU tensors the array module is NumPy")
print("  Each kernel asks get_array_module(x) for its array module (NumPy or CuPy) and calls only functions")
print("  both have, so the same lines run on the CPU and on the GPU.")


def cpu_weights():
    """A small VGG whose weights are drawn on the CPU. A GPU has its own generator (CuPy's), which gives
    other numbers for the same seed: to start both devices from the same weights, draw them once and copy."""
    mv.manual_seed(0)
    return models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, 32, 32), "kaiming")


def run(device, steps):
    """The first loss with dropout off (the devices draw different dropout masks), then `steps` training
    steps with dropout on. Returns (first loss, seconds per step, the steps' losses)."""
    net = cpu_weights().to(device)  # .to copies the same numbers onto the device
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = mv.tensor(np.random.default_rng(0).random((64, 1, 32, 32), dtype=np.float32), device=device)
    y = mv.tensor(np.arange(64) % 10, device=device)
    net.eval()
    first = F.cross_entropy(net(x), y).item()
    net.train()
    losses = []
    for i in range(steps):
        if i == 1:
            start = time.perf_counter()  # from the second step: in the first, CuPy compiles its GPU kernels
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())  # .item() waits for the GPU, so the timing is honest
    return first, (time.perf_counter() - start) / (steps - 1), losses


def draw(device):
    """Four numbers from N(0, 1), drawn by nn.init on `device` right after manual_seed(0)."""
    mv.manual_seed(0)
    return nn.init.normal_(mv.tensor(np.zeros(4, dtype=np.float32), device=device), 0.0, 1.0).numpy()


SAME_SEED_OTHER_NUMBERS = ("after the same manual_seed(0) the device's generator draws other numbers than the "
                           "CPU's: weights are drawn once and copied across to compare the devices")

section("The same training on both devices")
steps = 3 if QUICK else 20  # at least 2: the first is not timed
cpu_first, cpu_time, cpu_losses = run("cpu", steps)
print(f"  cpu: {cpu_time * 1e3:.0f} ms per step (batch 64, 32x32), first loss {cpu_first:.5f}")
claim(cpu_losses[-1] < cpu_losses[0], "on the CPU the loss on this batch went down")
if mv.cuda.is_available():
    gpu_first, gpu_time, gpu_losses = run("cuda", steps)
    print(f"  gpu: {gpu_time * 1e3:.0f} ms per step, {cpu_time / gpu_time:.1f}x faster, first loss {gpu_first:.5f}")
    claim(abs(gpu_first - cpu_first) < 1e-4 * max(1.0, abs(cpu_first)),
          "with the same weights copied to the GPU and dropout off, the first loss agrees with the CPU's to 1e-4")
    claim(gpu_losses[-1] < gpu_losses[0], "on the GPU the loss went down too (its own dropout masks: its "
                                          "losses after the first step are not the CPU's)")
    claim(not np.allclose(draw("cuda"), draw("cpu")), SAME_SEED_OTHER_NUMBERS)
else:
    print("  No CUDA GPU is visible to CuPy here, so only the CPU ran. With an NVIDIA GPU:")
    print('    pip install -e ".[cuda12]"  then  minivgg doctor  and  minivgg train --device cuda')
    try:
        mv.tensor([1.0]).to("cuda")
        message = ""
    except RuntimeError as exc:
        message = str(exc)
    claim("CuPy" in message or "CUDA" in message, "asking for 'cuda' here says what is missing instead of crashing")

    section("Without a GPU: the GPU path on a strict stand-in for CuPy")
    print("  minivgg's tests run the GPU code on tests/strict_cupy.py: NumPy underneath, but only the names and")
    print("  signatures a real CuPy has (recorded from CuPy 14), no silent copies to the host, every wait for")
    print("  the GPU counted, and a random generator of its own. It is not a GPU (nothing about speed), but")
    print("  every line minivgg runs for 'cuda' runs on it.")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
    from strict_cupy import STATS, SYNCS, CupyRefusal, DeviceArray, installed

    with installed():
        stand_in_first, _, stand_in_losses = run("cuda", steps)
        claim(abs(stand_in_first - cpu_first) < 1e-4 * max(1.0, abs(cpu_first)),
              "with the same weights copied across and dropout off, the first loss on the stand-in is the CPU's")
        net = cpu_weights().to("cuda")
        claim(all(isinstance(p.data, DeviceArray) for p in net.parameters()),
              "after .to('cuda') every weight is a device array")
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        x = mv.tensor(np.random.default_rng(0).random((8, 1, 32, 32), dtype=np.float32), device="cuda")
        y = mv.tensor(np.arange(8) % 10, device="cuda")
        STATS["sync"] = 0
        SYNCS.clear()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        queued = STATS["sync"]
        loss.item()
        claim(queued == 0 and SYNCS == ["item()"],
              "a training step never waits for the GPU until loss.item() reads the loss: forward, backward and "
              "the update only queue work")
        claim(not np.allclose(draw("cuda"), draw("cpu")), SAME_SEED_OTHER_NUMBERS)
        try:
            net[-1].weight.data.max(initial=0)
            refused = ""
        except CupyRefusal as exc:
            refused = str(exc)
        claim("initial" in refused, "x.max(initial=0), fine in NumPy, is refused, as CuPy refuses it")

exercises("With a GPU: run `minivgg doctor`, then benchmarks/step_time.py --device cuda --sizes 224, and compare "
          "the images/s with the README's estimate from the step's FLOPs.",
          "Why does the DataLoader send uint8 images to the GPU and convert them there?",
          "Where does the GPU wait for the CPU in the training loop? (Look for .item() and float(), and count them "
          "with the stand-in's STATS['sync'].)")
