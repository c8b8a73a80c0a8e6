"""The GPU's fast tier (minivgg/fast_gpu.py): each cupyx.jit kernel equals the reference tier, forward and
backward, on small awkward shapes (odd sizes, stride 2, padding, ties in pooling, batch 1). On the strict
CuPy stand-in the kernels run in its thread-by-thread simulator, which also refuses index arithmetic that C
computes otherwise than Python, out-of-bounds accesses and races; the `gpu`-marked runs compare on a card.
Also: the tier is opt-in, the switch, the simulator's own strictness, and `minivgg doctor` with the tier on."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minivgg as mv
import minivgg.functional as F
from minivgg import cli, doctor, fast_gpu, optim, tiers

import strict_cupy
from strict_cupy import CupyRefusal, SimulatorError, installed

TIGHT = dict(rtol=2e-5, atol=2e-5)


@pytest.fixture
def gpu_tier(cuda_device):
    """The GPU fast tier switched on (it is opt-in), on the stand-in or the card."""
    previous = tiers.enable_fast_gpu(True)
    yield cuda_device
    tiers.enable_fast_gpu(previous)


def run_both(op, arrays, seed, wants=None):
    """op(*tensors) on the device under each tier, one random output gradient back-propagated through both.
    Returns {tier: (output, [input gradients], the op class that ran)}."""
    results = {}
    for tier in ("reference", "fast"):
        with mv.kernels(tier):
            mv.manual_seed(seed)
            ins = [mv.tensor(a, device="cuda", requires_grad=w) for a, w in zip(arrays, wants or [True] * len(arrays))]
            y = op(*ins)
            g = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
            ran = type(y.creator)
            y.backward(mv.tensor(g, device="cuda"))
            results[tier] = (y.numpy(), [t.grad.numpy() if t.grad is not None else None for t in ins], ran)
    return results


def assert_tiers_agree(results, reference, fast, exact=False):
    (y_ref, g_ref, ran_ref), (y_fast, g_fast, ran_fast) = results["reference"], results["fast"]
    assert ran_ref is reference and ran_fast is fast  # each tier ran its own kernel
    check = np.testing.assert_array_equal if exact else lambda a, b: np.testing.assert_allclose(a, b, **TIGHT)
    assert y_fast.shape == y_ref.shape and y_fast.dtype == y_ref.dtype
    check(y_fast, y_ref)
    for fast_grad, ref_grad in zip(g_fast, g_ref):
        assert (fast_grad is None) == (ref_grad is None)
        if ref_grad is not None:
            assert fast_grad.dtype == ref_grad.dtype
            check(fast_grad, ref_grad)


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- each kernel against the reference tier ------------------------------------------------------------------
@pytest.mark.parametrize("n, c, k, h, w, ksize, stride, padding, bias, image_batch", [
    (1, 1, 1, 5, 5, 3, 1, 1, True, False),
    (2, 3, 4, 7, 6, 3, 2, 1, False, False),
    (1, 2, 3, 5, 7, 2, 2, 0, True, True),
    (2, 1, 2, 6, 5, 5, 1, 2, True, False),
    (1, 2, 1, 4, 3, 1, 1, 0, False, False),
    (1, 1, 2, 3, 3, 3, 2, 2, True, False),  # padding 2 on a 3x3 kernel: windows of padding only
])
def test_conv2d(gpu_tier, n, c, k, h, w, ksize, stride, padding, bias, image_batch):
    rng = np.random.default_rng(h * w + ksize)
    arrays = [normal(rng, n, c, h, w), normal(rng, k, c, ksize, ksize)] + ([normal(rng, k)] if bias else [])
    wants = [not image_batch] + [True] * (len(arrays) - 1)
    results = run_both(lambda *ts: F.conv2d(*ts, stride=stride, padding=padding), arrays, 0, wants)
    assert_tiers_agree(results, F.Conv2dFunction, fast_gpu.Conv2dFunction)


@pytest.mark.parametrize("n, c, h, w, ksize, stride, padding, ties", [
    (1, 1, 5, 5, 2, None, 0, False),
    (2, 2, 7, 6, 3, 2, 1, True),
    (1, 3, 5, 7, 3, 1, 1, True),   # stride < kernel: windows overlap
    (2, 1, 4, 4, 2, 1, 0, True),
    (1, 1, 6, 5, 3, 3, 1, False),
    (1, 2, 3, 3, 1, 2, 0, False),
])
def test_max_pool2d(gpu_tier, n, c, h, w, ksize, stride, padding, ties):
    rng = np.random.default_rng(h * w + ksize)
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float32) if ties else normal(rng, n, c, h, w)
    results = run_both(lambda t: F.max_pool2d(t, ksize, stride, padding), [x], 1)
    assert_tiers_agree(results, F.MaxPool2dFunction, fast_gpu.MaxPool2dFunction)


def test_max_pool2d_with_nan_and_inf_answers_as_the_reference(gpu_tier):
    x = np.array([[[[np.nan, 1.0, -np.inf], [2.0, np.nan, 0.0], [-np.inf, -np.inf, 3.0]]]], dtype=np.float32)
    results = run_both(lambda t: F.max_pool2d(t, 2, 1, 1), [x], 2)
    np.testing.assert_array_equal(results["fast"][0], results["reference"][0])  # NaN where the reference has it
    np.testing.assert_allclose(results["fast"][1][0], results["reference"][1][0], **TIGHT)  # sums in another order


@pytest.mark.parametrize("shape", [(1, 5), (2, 3, 4, 5), (3, 7)])
def test_relu(gpu_tier, shape):
    rng = np.random.default_rng(3)
    x = normal(rng, *shape)
    x[..., 0] = 0.0  # the kink: no gradient passes at exactly 0
    x.flat[1] = np.nan  # kept, as maximum(x, 0) keeps it
    results = run_both(F.relu, [x], 3)
    assert_tiers_agree(results, F.ReLUFunction, fast_gpu.ReLUFunction, exact=True)


def test_relu_of_a_strided_view(gpu_tier):
    x = mv.tensor(normal(np.random.default_rng(4), 3, 4), device="cuda")
    with mv.kernels("fast"):
        y = F.relu(x.transpose(1, 0))
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.numpy().T, 0))


@pytest.mark.parametrize("shape, p", [((4, 9), 0.5), ((1, 3, 5, 5), 0.2)])
def test_dropout_draws_the_reference_mask(gpu_tier, shape, p):
    x = normal(np.random.default_rng(5), *shape)
    results = run_both(lambda t: F.dropout(t, p), [x], 7)
    assert_tiers_agree(results, F.DropoutFunction, fast_gpu.DropoutFunction, exact=True)
    assert (results["fast"][0] == 0).any()


def _updated(tier, optimizer, kwargs, steps=3):
    rng = np.random.default_rng(6)
    p = mv.tensor(normal(rng, 3, 5), device="cuda", requires_grad=True)
    opt = optimizer([p], **kwargs)
    with mv.kernels(tier):
        for _ in range(steps):
            p.grad = mv.tensor(normal(rng, 3, 5), device="cuda")
            opt.step()
    return p.numpy(), [s.get() for s in opt.state[0].values() if hasattr(s, "get")]


@pytest.mark.parametrize("optimizer, kwargs", [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
])
def test_optimizer_updates(gpu_tier, monkeypatch, optimizer, kwargs):
    ran = []
    kernel = fast_gpu.sgd_kernel if optimizer is optim.SGD else fast_gpu.adam_kernel
    original = fast_gpu.launch
    monkeypatch.setattr(fast_gpu, "launch", lambda k, *a: (ran.append(k), original(k, *a)))
    (p_ref, s_ref), (p_fast, s_fast) = _updated("reference", optimizer, kwargs), _updated("fast", optimizer, kwargs)
    assert ran and set(ran) == {kernel}
    exact = optimizer is optim.SGD and gpu_tier.strict  # the same operations; a card may fuse a multiply-add
    for a, b in zip([p_fast] + s_fast, [p_ref] + s_ref):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- the switch -------------------------------------------------------------------------------------------
def test_cupy_arrays_take_the_fast_gpu_classes_only_when_opted_in(cuda_device):
    cupy = mv.cuda.require_cupy()
    x = cupy.zeros(1, dtype=np.float32)
    previous = tiers.enable_fast_gpu(False)
    try:
        with mv.kernels("fast"):
            assert F._choose(F.Conv2dFunction, x) is F.Conv2dFunction  # the default: reference on the GPU
            assert tiers.variant(optim.SGD, cupy) is optim.SGD
        tiers.enable_fast_gpu(True)
        with mv.kernels("fast"):
            for reference, fast in ((F.Conv2dFunction, fast_gpu.Conv2dFunction),
                                    (F.ReLUFunction, fast_gpu.ReLUFunction),
                                    (F.MaxPool2dFunction, fast_gpu.MaxPool2dFunction),
                                    (F.DropoutFunction, fast_gpu.DropoutFunction)):
                assert F._choose(reference, x) is fast
            assert F._choose(F.LinearFunction, x) is F.LinearFunction  # no fast variant: cuBLAS's product already
            assert tiers.variant(optim.SGD, cupy) is fast_gpu.SGD and tiers.variant(optim.Adam, cupy) is fast_gpu.Adam
            assert F._choose(F.Conv2dFunction, np.zeros(1)).__module__ == "minivgg.fast_cpu"
        with mv.kernels("reference"):
            assert F._choose(F.Conv2dFunction, x) is F.Conv2dFunction
    finally:
        tiers.enable_fast_gpu(previous)
    assert set(tiers.registered_variants("cupy").values()) == {
        fast_gpu.Conv2dFunction, fast_gpu.MaxPool2dFunction, fast_gpu.ReLUFunction, fast_gpu.DropoutFunction,
        fast_gpu.SGD, fast_gpu.Adam}


@pytest.mark.parametrize("env, enabled", [("", False), ("1", True), ("0", False)])
def test_the_environment_variable_opts_in_without_importing_cupy(env, enabled):
    code = ("import sys, minivgg; print(minivgg.tiers.fast_gpu_enabled(), 'cupy' in sys.modules, "
            "'cupyx' in sys.modules, 'minivgg.fast_gpu' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, MINIVGG_FAST_GPU=env))
    assert out.stdout.split() == [str(enabled), "False", "False", "False"]


def test_each_op_launches_its_kernels_and_no_others(gpu_tier, monkeypatch):
    # The convolution: im2col and the bias pass forward; backward, the layout pass, col2im for x and im2col
    # again for the weight (the columns are made again, not kept). The others: one kernel each way.
    launched = []
    original = fast_gpu.launch
    monkeypatch.setattr(fast_gpu, "launch", lambda k, *a: (launched.append(k.__name__), original(k, *a)))
    x = mv.tensor(normal(np.random.default_rng(8), 1, 2, 5, 5), device="cuda", requires_grad=True)
    w = mv.tensor(normal(np.random.default_rng(9), 3, 2, 3, 3), device="cuda", requires_grad=True)
    with mv.kernels("fast"):
        F.dropout(F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2), 0.5).sum().backward()
    assert launched == ["im2col_kernel", "rows_to_nchw_kernel", "relu_kernel", "max_pool_kernel", "dropout_kernel",
                        "dropout_backward_kernel", "max_pool_backward_kernel", "relu_backward_kernel",
                        "nchw_to_rows_kernel", "col2im_kernel", "im2col_kernel"]


# ---- the simulator refuses what C or a GPU would do otherwise than Python ---------------------------------------
jit = None  # the simulator binds cupyx.jit in the globals a simulated kernel sees


def _kernel(body):
    """A one-argument-array kernel running `body(a, i)` for thread i, through the stand-in's cupyx.jit."""
    def kernel(a, total, block):
        i = jit.blockIdx.x * block + jit.threadIdx.x
        if i < total:
            body(a, i)
    return kernel


@pytest.mark.parametrize("body, error", [
    (lambda a, i: a.__setitem__(i, (i - 3) // 2), "wrap"),  # a launch's indices are unsigned
    (lambda a, i: a.__setitem__(i, (i + 2**31 * 2**31 * 4)), "does not fit"),
    (lambda a, i: a.__setitem__(i + 1, 0), "out of bounds"),
    (lambda a, i: a.__setitem__(0, i), "a race"),
    (lambda a, i: a.__setitem__(i, a[(i + 1) % 4]), "a race"),
])
def test_the_simulator_refuses(monkeypatch, body, error):
    with installed(monkeypatch) as cupy:
        a = cupy.zeros(4, dtype=np.int64)
        with pytest.raises(SimulatorError, match=error):
            fast_gpu.launch(_kernel(body), 4, a.ravel())


def test_a_launch_computes_its_indices_in_32_bits_below_2_to_the_31(monkeypatch):
    assert fast_gpu.index_type(2**31 - 1) is np.uint32 and fast_gpu.index_type(5, 2**31) is np.int64
    seen = []
    with installed(monkeypatch) as cupy:
        fast_gpu.launch(_kernel(lambda a, i: seen.append(i.ctype)), 4, cupy.zeros(4).ravel())
    assert seen == ["uint32"] * 4


def test_the_simulator_refuses_negative_division_in_64_bits(monkeypatch):
    # A 64-bit build's indices are signed: C's / truncates a negative one where Python floors.
    with installed(monkeypatch) as cupy:
        kernel = sys.modules["cupyx.jit"].rawkernel()(_kernel(lambda a, i: a.__setitem__(i, (i - 3) // 2)))
        with pytest.raises(SimulatorError, match="C truncates toward zero"):
            kernel((1,), (4,), (cupy.zeros(4, dtype=np.int64), np.int64(4), np.int64(4)))


def test_c_integer_types_in_the_simulator():
    CInt = strict_cupy.CInt
    thread = CInt(5, "uint32")
    assert (thread * CInt(3, "int64")).ctype == "int64" and (thread + 1).ctype == "uint32"
    with pytest.raises(SimulatorError, match="wrap"):
        thread - 6  # an unsigned index going negative wraps around in C
    with pytest.raises(SimulatorError, match="does not fit"):
        CInt(2**31 - 1, "int32") + 1  # int32 overflow
    with pytest.raises(SimulatorError, match="as unsigned"):
        thread < -1


def test_the_simulator_takes_what_a_launch_takes(monkeypatch):
    with installed(monkeypatch) as cupy:
        jit = sys.modules["cupyx.jit"]
        kernel = jit.rawkernel()(_kernel(lambda a, i: None))
        with pytest.raises(CupyRefusal, match="NumPy array"):
            kernel((1,), (4,), (np.zeros(4), np.int64(4), np.int64(4)))
        with pytest.raises(SimulatorError, match="1-D"):
            kernel((1,), (4,), (cupy.zeros((2, 2)), np.int64(4), np.int64(4)))
        with pytest.raises(SimulatorError, match="threads per block"):
            kernel((1,), (2048,), (cupy.zeros(4), np.int64(4), np.int64(4)))
        with pytest.raises(AttributeError, match="does not provide cupyx.jit.syncthreads"):
            jit.syncthreads
        with pytest.raises(AttributeError, match="has no attribute 'gpu_magic'"):
            jit.gpu_magic


# ---- the doctor checks both tiers when the fast GPU tier is on -----------------------------------------------
def test_doctor_checks_the_kernels_of_both_tiers(monkeypatch, capsys):
    timed_under = []

    def training_step(*args):  # a VGG step is too long to simulate: note the tier it would be timed under
        timed_under.append(tiers.get_kernels())
        return True, ""

    monkeypatch.setattr(doctor, "_training_step", training_step)
    previous = tiers.enable_fast_gpu(True)
    try:
        with installed(monkeypatch), tiers.kernels("fast"):  # the fast tier, whatever tier the suite runs under
            code = cli.main(["doctor", "--size", "32", "--batch", "4"])
    finally:
        tiers.enable_fast_gpu(previous)
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[-1] == "GPU path OK", lines
    headers = [line for line in lines if line.startswith("kernels on the GPU")]
    assert len(headers) == 2 and "reference kernels" in headers[0] and "fast_gpu.py" in headers[1]
    assert sum(line.split()[:2] == ["conv2d", "ok"] for line in lines) == 2, lines
    assert timed_under == ["reference", "fast"]  # a step timed under each tier


# ---- what a training step launches and holds, counted on the stand-in (benchmarks/gpu_step.py prints them) ----
def _gpu_step():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import gpu_step
    return gpu_step


def test_a_fast_step_launches_at_most_a_third_of_the_reference_kernels():
    gpu_step = _gpu_step()
    (reference, _), (fast, _) = gpu_step.launches_per_step("reference"), gpu_step.launches_per_step("fast")
    assert fast * 3 <= reference, (fast, reference)


def test_a_fast_step_holds_for_backward_at_most_what_pytorch_allocates_in_all():
    # PyTorch 2.11's torch.cuda.max_memory_allocated() for this step on a card (an H200): 2,349 MiB.
    gpu_step = _gpu_step()
    fast, per_image = gpu_step.bytes_held("fast", 224, 128)
    reference, _ = gpu_step.bytes_held("reference", 224, 128)
    assert fast <= 2349 * 2**20 and fast * 3 < reference, (fast, reference)
    assert per_image > 0


# ---- the optimizers update every parameter in one launch ------------------------------------------------------
def _three_parameters(rng):
    return [mv.nn.Parameter(mv.tensor(normal(rng, *shape), device="cuda")) for shape in ((4, 3), (5,), (2, 2, 3))]


@pytest.mark.parametrize("optimizer, kwargs", [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (optim.SGD, dict(lr=0.1)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1)),
])
def test_one_launch_updates_every_parameter_as_the_reference_does(gpu_tier, monkeypatch, optimizer, kwargs):
    results, launched = {}, []
    original = fast_gpu.launch
    monkeypatch.setattr(fast_gpu, "launch", lambda k, *a: (launched.append(k.__name__), original(k, *a)))
    for tier in ("reference", "fast"):
        rng = np.random.default_rng(4)
        params = _three_parameters(rng)
        opt = optimizer(params, **kwargs)
        with mv.kernels(tier):
            for step in range(4):
                if step == 2:  # a parameter given a new array: the packed arrays are made again, values kept
                    params[1].data = params[1].data.copy()
                for p in params:
                    p.grad = mv.tensor(normal(rng, *p.shape), device="cuda")
                launched.clear()
                opt.step()
                if tier == "fast" and step >= 1:
                    assert len(launched) == 1, launched
        results[tier] = [p.numpy() for p in params] + [
            s.get() for i in range(3) for s in opt.state.get(i, {}).values() if hasattr(s, "get")]
    for fast, reference in zip(results["fast"], results["reference"]):
        np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-6)


def test_packed_parameters_keep_their_tensors_and_load_a_state(gpu_tier):
    rng = np.random.default_rng(5)
    params = _three_parameters(rng)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    with mv.kernels("fast"):
        for _ in range(3):
            for p in params:
                p.grad = mv.tensor(normal(rng, *p.shape), device="cuda")
            opt.step()
        saved = {k: {i: {n: v.get() for n, v in s.items()} for i, s in v.items()} if k == "state" else v
                 for k, v in opt.state_dict().items()}
        before = [p.numpy() for p in params]
        opt.load_state_dict(opt.state_dict())  # buffers replaced by copies: packed again on the next step
        for p in params:
            p.grad = mv.tensor(np.zeros(p.shape, np.float32), device="cuda")
        opt.step()  # g = 0: each parameter moves by lr * momentum * its buffer
    for i, p in enumerate(params):
        assert opt.params[i] is p
        np.testing.assert_allclose(p.numpy(), before[i] - 0.1 * 0.9 * saved["state"][str(i)]["momentum_buffer"],
                                   rtol=1e-5, atol=1e-6)
