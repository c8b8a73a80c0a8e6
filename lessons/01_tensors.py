"""Lesson 1: tensors, dtypes and devices. A minivgg Tensor is a NumPy array (CuPy on a GPU) plus what
autograd needs."""
# %%
import textwrap

import numpy as np

import minivgg as mv
from lesson import claim, exercises, notice, section

section("A tensor wraps an array")
x = mv.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
print(x)
claim(isinstance(x.data, np.ndarray), "on the CPU, x.data is a plain NumPy array")
claim(x.shape == (2, 3) and x.device == "cpu", "x has shape (2, 3) and lives on the cpu")
claim(x.dtype == np.float32, "Python floats become float32, the dtype of training (NumPy alone would pick float64)")
claim(mv.tensor([1, 2]).dtype == np.int64, "integers become int64, the dtype of class labels")
claim(mv.tensor([1.0], dtype="float64").dtype == np.float64, "float64 is there when asked for (gradient checks)")

# %%
section("float32 stays float32")
y = x * 0.5 + 1
claim(y.dtype == np.float32, "x * 0.5 + 1 is still float32: NumPy 2 treats Python numbers as 'weak'")
z = x.numpy()
z[0, 0] = 100.0
claim(x.data[0, 0] == 1.0, ".numpy() returns a copy: changing it leaves the tensor alone")
total = x.sum().item()
claim(type(total) is float and total == 21.0, ".item() turns a one-element tensor into a Python float (21.0)")

# %%
section("Devices")
if mv.cuda.is_available():
    g = x.to("cuda")
    claim(g.device == "cuda:0", "x.to('cuda') copies the tensor to the GPU; its .data is a CuPy array")
    claim(mv.get_array_module(g).__name__ == "cupy", "get_array_module tells the kernels to use CuPy")
else:
    try:
        x.to("cuda")
        raised = ""
    except RuntimeError as exc:
        raised = str(exc)
    print("  no GPU here; asking for one says:\n    " + "\n    ".join(textwrap.wrap(raised, 100)))
    claim("CuPy" in raised and "device='cpu'" in raised and x.device == "cpu",
          "without a GPU, .to('cuda') fails with a message that names the cause (CuPy) and what to do instead "
          "(device='cpu'); x stays on the cpu")
claim(mv.get_array_module(x) is np, "kernels call get_array_module(x) and get NumPy for CPU tensors")

notice("A tensor is an array plus what autograd needs; .data is the array itself, on the CPU or the GPU.",
       "Floats are float32 unless you ask for float64, and arithmetic with Python numbers keeps them float32.",
       "Moving to a device is explicit (.to), and a missing GPU is an error that says what to use instead.")

exercises("Create a tensor from np.arange(6.0) and check its dtype. Why is it not float64?",
          "What is the dtype of mv.tensor([1, 2]) / 2? Try it, and explain with NumPy's promotion rules.",
          "If you have a GPU: time x @ x.T for a 4096x4096 x on both devices.")
