"""Lesson 12: the GPU via CuPy. The same kernels run on CuPy arrays; only the array module changes."""
# %%
import inspect
import time

import numpy as np

import minivgg as mv
from minivgg import models, optim
import minivgg.functional as F
from lesson import QUICK, claim, exercises, section

section("One code path")
source = inspect.getsource(F.Conv2dFunction.forward) + inspect.getsource(F.im2col_array)
claim("get_array_module" in source and "cupy" not in source,
      "the convolution asks get_array_module(x) for its array module and never names CuPy")
claim(mv.get_array_module(mv.tensor([1.0])) is np, "for CPU tensors that module is NumPy")


def timed_steps(device, steps):
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)).to(device), (1, 1, 32, 32),
                            "kaiming", device=device)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = mv.tensor(np.random.default_rng(0).random((64, 1, 32, 32)), device=device)
    y = mv.tensor(np.arange(64) % 10, device=device)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())  # .item() waits for the GPU, so the timing is honest
    return (time.perf_counter() - start) / steps, losses


section("The same training on both devices")
steps = 3 if QUICK else 20
cpu_time, cpu_losses = timed_steps("cpu", steps)
print(f"  cpu: {cpu_time * 1e3:.0f} ms per step (batch 64, 32x32)")
if mv.cuda.is_available():
    gpu_time, gpu_losses = timed_steps("cuda", steps)
    print(f"  gpu: {gpu_time * 1e3:.0f} ms per step, {cpu_time / gpu_time:.1f}x faster")
    claim(abs(gpu_losses[0] - cpu_losses[0]) < 1e-3, "the first loss is the same on both devices (same weights)")
else:
    print("  No CUDA GPU is visible to CuPy here, so only the CPU ran. With an NVIDIA GPU:")
    print('    pip install -e ".[cuda12]"  and  minivgg train --device cuda')
    try:
        mv.tensor([1.0]).to("cuda")
        message = ""
    except RuntimeError as exc:
        message = str(exc)
    claim("CuPy" in message or "CUDA" in message, "asking for 'cuda' here says what is missing instead of crashing")
claim(cpu_losses[-1] < cpu_losses[0], "on the CPU the loss on this batch went down, as it will on the GPU")

exercises("With a GPU: run benchmarks/step_time.py --device cuda --sizes 224 and compare with D2L's 2,550 "
          "examples/sec on a V100.",
          "Why does the DataLoader send uint8 images to the GPU and convert them there?",
          "Where does the GPU wait for the CPU in the training loop? (Look for .item() and float().)")
