"""The two kernel tiers: the fast CPU variants (minivgg/fast_cpu.py) compute what the reference kernels
(minivgg/functional.py) compute, forward and backward, on drawn shapes, and what the optimizers' updates
(minivgg/optim.py) compute; the switch; the CPU machinery."""
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minivgg as mv
import minivgg.functional as F
from minivgg import cpu, fast_cpu, models, optim, tiers

TIGHT = dict(rtol=2e-5, atol=2e-5)


def run_both(op, arrays, seed, wants_grad=None):
    """op(*tensors) under each tier, one random output gradient back-propagated through both.
    Returns {tier: (output, [input gradients], the op that ran)}."""
    results = {}
    for tier in ("reference", "fast"):
        with mv.kernels(tier):
            wants = wants_grad or [True] * len(arrays)
            ins = [mv.tensor(a, requires_grad=w) for a, w in zip(arrays, wants)]
            y = op(*ins)
            g = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
            ran = type(y.creator)
            y.backward(mv.tensor(g))
            results[tier] = (y.numpy(), [t.grad.numpy() if t.grad is not None else None for t in ins], ran)
    return results


def assert_tiers_agree(results, reference_op, fast_op):
    (y_ref, g_ref, ran_ref), (y_fast, g_fast, ran_fast) = results["reference"], results["fast"]
    assert ran_ref is reference_op and ran_fast is fast_op  # each tier ran its own kernel
    assert y_fast.shape == y_ref.shape and y_fast.dtype == y_ref.dtype == np.float32
    np.testing.assert_allclose(y_fast, y_ref, **TIGHT)
    for fast, ref in zip(g_fast, g_ref):
        assert (fast is None) == (ref is None)
        if ref is not None:
            assert fast.dtype == ref.dtype == np.float32
            np.testing.assert_allclose(fast, ref, **TIGHT)


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), k=st.integers(1, 4), h=st.integers(1, 11), w=st.integers(1, 11),
       ksize=st.sampled_from([1, 2, 3, 5]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       bias=st.booleans(), image_batch=st.booleans(), seed=st.integers(0, 2**31),
       budget=st.sampled_from([None, 1, 200]))
def test_conv2d_fast_equals_reference(n, c, k, h, w, ksize, stride, padding, bias, image_batch, seed, budget):
    """budget: the fast convolution's column budget in bytes; 1 unrolls one input channel at a time, 200 a
    few (None: the default, one group at these sizes)."""
    assert fast_cpu.channel_groups((128, 64, 24, 24), (3, 3), (24, 24), 4) == [
        slice(0, 16), slice(16, 32), slice(32, 48), slice(48, 64)]  # 170 MB of columns, in groups of 16
    assume(h + 2 * padding >= ksize and w + 2 * padding >= ksize)
    rng = np.random.default_rng(seed)
    arrays = [normal(rng, n, c, h, w), normal(rng, k, c, ksize, ksize)] + ([normal(rng, k)] if bias else [])
    wants = [not image_batch] + [True] * (len(arrays) - 1)  # an image batch gets no gradient
    groups = []

    def op(*ts):
        y = F.conv2d(*ts, stride=stride, padding=padding)
        groups.append(getattr(y.creator, "groups", None))
        return y

    defaults = fast_cpu.COLUMN_BUDGET, fast_cpu.GROUP_CHANNELS
    if budget:  # groups of any size, so these few channels split
        fast_cpu.COLUMN_BUDGET, fast_cpu.GROUP_CHANNELS = budget, 1
    try:
        results = run_both(op, arrays, seed, wants)
    finally:
        fast_cpu.COLUMN_BUDGET, fast_cpu.GROUP_CHANNELS = defaults
    assert_tiers_agree(results, F.Conv2dFunction, fast_cpu.Conv2dFunction)
    assert (results["fast"][1][0] is None) == image_batch
    assert len(groups[1]) == (c if budget == 1 else 1 if budget is None else len(groups[1]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), ksize=st.integers(1, 3),
       stride=st.sampled_from([None, 1, 2]), padding=st.integers(0, 1), ties=st.booleans(),
       seed=st.integers(0, 2**31))
def test_max_pool2d_fast_equals_reference(n, c, h, w, ksize, stride, padding, ties, seed):
    assume(padding <= ksize // 2 and h + 2 * padding >= ksize and w + 2 * padding >= ksize)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, c, h, w)).astype(np.float32) if ties else normal(rng, n, c, h, w)
    results = run_both(lambda t: F.max_pool2d(t, ksize, stride, padding), [x], seed)
    assert_tiers_agree(results, F.MaxPool2dFunction, fast_cpu.MaxPool2dFunction)
    # ties: each output's gradient reaches exactly one input, in both tiers
    np.testing.assert_array_equal(results["fast"][1][0], results["reference"][1][0])


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from([(1, 5), (3, 4, 5), (2, 3, 4, 5), (128, 8, 16, 16)]), layout=st.sampled_from(["C", "T"]),
       seed=st.integers(0, 2**31))
def test_relu_fast_equals_reference_in_any_memory_order(shape, layout, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, *shape)
    x[..., 0] = 0.0  # the kink: no gradient passes at exactly 0, in both tiers
    if layout == "T":  # the same values laid out batch-last, as the fast convolution leaves them
        x = np.ascontiguousarray(np.moveaxis(x, 0, -1))
        x = np.moveaxis(x, -1, 0)
    results = run_both(F.relu, [x], seed)
    assert_tiers_agree(results, F.ReLUFunction, fast_cpu.ReLUFunction)
    np.testing.assert_array_equal(results["fast"][0], results["reference"][0])


def test_the_switch_picks_the_kernel_class():
    """Under "fast", NumPy arrays take the fast variants; ops without one keep the reference."""
    with mv.kernels("fast"):
        assert F._choose(F.Conv2dFunction, np.zeros(1)) is fast_cpu.Conv2dFunction
        assert F._choose(F.CrossEntropyFunction, np.zeros(1)) is F.CrossEntropyFunction  # no fast variant
        assert F._choose(F.LinearFunction, np.zeros(1)) is F.LinearFunction  # its products are BLAS's already
        assert tiers.variant(optim.SGD, np) is fast_cpu.SGD and tiers.variant(optim.Adam, np) is fast_cpu.Adam
    with mv.kernels("reference"):
        assert F._choose(F.Conv2dFunction, np.zeros(1)) is F.Conv2dFunction
        assert tiers.variant(optim.SGD, np) is optim.SGD


def test_fast_is_the_default_on_a_fresh_import():
    out = subprocess.run([sys.executable, "-c", "import minivgg; print(minivgg.get_kernels())"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fast"


def test_the_switch():
    mv.set_kernels("fast")
    assert mv.set_kernels("reference") == "fast" and mv.get_kernels() == "reference"
    assert mv.set_kernels("fast") == "reference"
    with pytest.raises(ValueError, match=r"unknown tier 'quick'.*'reference'.*'fast'"):
        mv.set_kernels("quick")
    with pytest.raises(KeyError):
        with mv.kernels("reference"):
            assert mv.get_kernels() == "reference"
            raise KeyError("inside")
    assert mv.get_kernels() == "fast"  # restored, even after an error


def test_public_im2col_has_the_textbook_layout_under_both_tiers(rng):
    x = normal(rng, 2, 3, 5, 4)
    for tier in ("reference", "fast"):
        with mv.kernels(tier):
            col = F.im2col(x, 3, stride=1, padding=1)
        assert col.shape == (3 * 9, 2 * 5 * 4)
        # row (c, i, j) = (1, 0, 2), column (n, oh, ow) = (1, 2, 3): x[1, 1, 2 + 0 - 1, 3 + 2 - 1] (in the padding)
        assert col[1 * 9 + 0 * 3 + 2, (1 * 5 + 2) * 4 + 3] == 0.0
        assert col[1 * 9 + 1 * 3 + 1, (1 * 5 + 2) * 4 + 3] == x[1, 1, 2, 3]  # the window's centre


def test_batch_last_im2col_is_the_reference_with_columns_reordered(rng):
    x = normal(rng, 3, 2, 6, 5)
    geometry = ((3, 2), (2, 1), (1, 0))
    ref = F.im2col_array(x, *geometry)            # columns (n, oh, ow)
    fast = fast_cpu.im2col_batch_last(x, *geometry)  # columns (oh, ow, n)
    oh, ow = F.output_size("im2col", x.shape, *geometry)
    reordered = fast.reshape(-1, oh, ow, 3).transpose(0, 3, 1, 2).reshape(ref.shape)
    np.testing.assert_array_equal(reordered, ref)
    c = normal(rng, *fast.shape)
    back = fast_cpu.col2im_batch_last(c, x.shape, *geometry)
    ref_back = F.col2im_array(c.reshape(-1, oh, ow, 3).transpose(0, 3, 1, 2).reshape(ref.shape), x.shape, *geometry)
    np.testing.assert_allclose(back, ref_back, **TIGHT)


def _vgg_step(tier):
    """One SGD training step of D2L's VGG-11 (channels / 4) with dropout on; loss, gradients, new weights."""
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, 32, 32), "kaiming")
    rng = np.random.default_rng(1)
    x, y = mv.tensor(rng.random((8, 1, 32, 32), dtype=np.float32)), mv.tensor(rng.integers(0, 10, 8))
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    with mv.kernels(tier):
        mv.manual_seed(7)  # the same dropout masks in both tiers
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        grads = {name: p.grad.numpy() for name, p in net.named_parameters()}
        opt.step()
    return loss.item(), grads, {name: p.numpy() for name, p in net.named_parameters()}


def test_one_vgg_training_step_is_the_same_under_both_tiers():
    loss_ref, grads_ref, weights_ref = _vgg_step("reference")
    loss_fast, grads_fast, weights_fast = _vgg_step("fast")
    assert abs(loss_fast - loss_ref) <= 1e-5 * abs(loss_ref)
    assert len(grads_ref) == 22 and grads_ref.keys() == grads_fast.keys()  # 8 conv + 3 dense layers, w and b
    for name in grads_ref:
        scale = np.abs(grads_ref[name]).max()
        assert scale > 0, f"{name} got no gradient"
        np.testing.assert_allclose(grads_fast[name], grads_ref[name], rtol=1e-4, atol=1e-4 * scale, err_msg=name)
        np.testing.assert_allclose(weights_fast[name], weights_ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


# ---- the optimizers' updates ---------------------------------------------------------------------------
LARGE = 4 * fast_cpu.PIECE + 12_345  # split into pieces on the threads, the last one short


def _steps(make, tier, shapes, steps, seed, monkeypatch):
    """Parameters and optimizer state after `steps` steps of make(params) under `tier` from the same start
    and gradients; also how many updates ran in pieces on the threads."""
    rng = np.random.default_rng(seed)
    params = [mv.nn.Parameter(normal(rng, *s)) for s in shapes]
    opt = make(params)
    split, parallel_map = [], cpu.parallel_map
    monkeypatch.setattr(cpu, "parallel_map", lambda fn, items: split.append(1) or parallel_map(fn, items))
    with mv.kernels(tier):
        for _ in range(steps):
            for p in params:
                p.grad = mv.tensor(normal(rng, *p.shape))
            opt.step()
    return [p.numpy() for p in params], opt.state, len(split)


SGD_SETTINGS = [dict(), dict(momentum=0.9), dict(momentum=0.9, weight_decay=5e-4),
                dict(momentum=0.8, nesterov=True, weight_decay=1e-3), dict(weight_decay=1e-2)]


@pytest.mark.parametrize("kwargs", SGD_SETTINGS, ids=str)
def test_fast_sgd_update_is_the_reference_bit_for_bit(kwargs, monkeypatch):
    """The same operations on the same float32 numbers, in pieces on threads or not: the same bits."""
    shapes = [(LARGE,), (64, 3, 3, 3), (7,)]
    make = lambda ps: optim.SGD(ps, lr=0.05, **kwargs)  # noqa: E731
    ref_params, ref_state, ref_split = _steps(make, "reference", shapes, 3, 0, monkeypatch)
    fast_params, fast_state, fast_split = _steps(make, "fast", shapes, 3, 0, monkeypatch)
    assert ref_split == 0 and fast_split == (2 if kwargs.get("momentum") else 3)  # the large one, after the first
    for ref, fast in zip(ref_params, fast_params):
        np.testing.assert_array_equal(fast, ref)
    assert ref_state.keys() == fast_state.keys()
    for i in ref_state:
        assert ref_state[i].keys() == fast_state[i].keys() == ({"momentum_buffer"} if kwargs.get("momentum") else set())
        for key in ref_state[i]:
            np.testing.assert_array_equal(fast_state[i][key], ref_state[i][key])


@pytest.mark.parametrize("kwargs", [dict(), dict(betas=(0.8, 0.99), weight_decay=1e-3)], ids=str)
def test_fast_adam_update_is_the_reference_to_float32_rounding(kwargs, monkeypatch):
    """The fast update folds the bias corrections into two numbers instead of dividing m and v, so a step
    may differ by a rounding of the step: the parameters agree to a few units in their last place. m and v
    are the same operations on the same numbers: the same bits, as long as the gradient is (weight decay
    adds the parameter to it)."""
    shapes = [(LARGE,), (64, 3, 3, 3), (7,)]
    make = lambda ps: optim.Adam(ps, lr=1e-2, **kwargs)  # noqa: E731
    ref_params, ref_state, ref_split = _steps(make, "reference", shapes, 4, 1, monkeypatch)
    fast_params, fast_state, fast_split = _steps(make, "fast", shapes, 4, 1, monkeypatch)
    assert ref_split == 0 and fast_split == 4
    for ref, fast in zip(ref_params, fast_params):
        np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-7)
    for i in ref_state:
        assert ref_state[i]["step"] == fast_state[i]["step"] == 4
        for key in ("exp_avg", "exp_avg_sq"):
            if kwargs.get("weight_decay"):
                np.testing.assert_allclose(fast_state[i][key], ref_state[i][key], rtol=1e-6, atol=1e-9)
            else:
                np.testing.assert_array_equal(fast_state[i][key], ref_state[i][key])


@pytest.fixture
def fast_kernels():
    with mv.kernels("fast"):
        yield


@pytest.mark.usefixtures("fast_kernels")
def test_fast_max_pool_keeps_a_compact_argmax():
    """One byte per output for the winning offset, instead of the reference's (N, C, KH*KW, OH, OW) windows."""
    x = mv.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), requires_grad=True)
    y = F.max_pool2d(x, 2)
    assert y.creator.argmax.dtype == np.uint8 and y.creator.argmax.shape == (2, 3, 4, 4)


# ---- the CPU machinery of the fast tier --------------------------------------------------------------
@pytest.mark.usefixtures("fast_kernels")
@pytest.mark.parametrize("pool", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1)])
def test_kernels_split_across_threads_match_one_thread(pool, rng, monkeypatch):
    """Large CPU inputs are cut into channel slices run on threads (cpu.parallel): forward and backward
    must equal, bit for bit, the single-call result, including overlapping pooling windows."""
    x0 = normal(rng, 64, 8, 24, 24)  # 294,912 elements: above the threshold
    w0 = normal(rng, 16, 8, 3, 3)
    calls = []  # one entry per part handed to a pool thread (the calling thread runs the other part)
    threads = cpu._thread_pool()

    class CountingPool:
        def submit(self, fn, part):
            calls.append(part)
            return threads.submit(fn, part)

    monkeypatch.setattr(cpu, "_thread_pool", CountingPool)
    monkeypatch.setattr(cpu, "CPU_THREADS", 2)  # split even on a one-core machine
    gy = None
    results = []
    for min_size in (cpu.PARALLEL_MIN_SIZE, 1 << 62):
        monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", min_size)
        x, w = mv.tensor(x0, requires_grad=True), mv.tensor(w0, requires_grad=True)
        y = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), **pool)
        gy = rng.standard_normal(y.shape).astype(np.float32) if gy is None else gy
        y.backward(mv.tensor(gy))
        results.append([y.numpy(), x.grad.numpy(), w.grad.numpy()])
        if min_size == 1 << 62:
            assert calls == [], "nothing should be split above the threshold"
        else:
            assert len(calls) >= 5  # conv, relu, pool: forward and backward
            assert all(0 < part.start < part.stop for part in calls)  # the second half went to a thread
            calls.clear()
    for threaded, single in zip(*results):
        np.testing.assert_array_equal(threaded, single)


def test_parallel_covers_every_part_and_waits_for_all_before_raising(monkeypatch):
    """cpu.parallel runs one part on the calling thread and the rest on the pool: together they cover
    the range once, and an error in any part is raised only after every part has finished."""
    monkeypatch.setattr(cpu, "CPU_THREADS", 3)
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)
    parts = []
    cpu.parallel(lambda part: parts.append((part, threading.current_thread().name)), 10, 10)
    assert sorted((p.start, p.stop) for p, _ in parts) == [(0, 3), (3, 6), (6, 10)]
    assert {name for p, name in parts if p.start == 0} == {threading.current_thread().name}

    finished = []

    def work(part):
        if part.start == 0:
            raise RuntimeError("part 0 failed")
        time.sleep(0.05)
        finished.append(part.start)

    with pytest.raises(RuntimeError, match="part 0 failed"):
        cpu.parallel(work, 10, 10)
    assert sorted(finished) == [3, 6]


def test_tune_applies_the_allocator_setting_on_glibc_and_respects_the_user(monkeypatch):
    import platform

    monkeypatch.delenv("MALLOC_MMAP_MAX_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    applied = cpu.tune()
    assert applied["allocator"] is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    assert cpu.tune()["allocator"] is False


AMD_ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512bw\n\nprocessor\t: 1\n"
AMD_ZEN2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma\n"
INTEL_AVX512 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f\n"


def test_openblas_is_asked_for_its_zen_kernels_only_on_amd_processors_with_avx512():
    assert cpu.preferred_blas_core(AMD_ZEN4) == "Zen"
    assert cpu.preferred_blas_core(AMD_ZEN2) is None  # OpenBLAS picks its Zen kernels there itself
    assert cpu.preferred_blas_core(INTEL_AVX512) is None  # its SkylakeX kernels are Intel's own
    assert cpu.preferred_blas_core("") is None


def test_blas_settings_leave_out_what_the_user_set(monkeypatch):
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(cpu, "preferred_blas_core", lambda: "Zen")
    assert cpu.blas_settings() == {"OPENBLAS_THREAD_TIMEOUT": "10", "OPENBLAS_CORETYPE": "Zen"}
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert cpu.blas_settings() == {"OPENBLAS_THREAD_TIMEOUT": "10"}
    monkeypatch.setattr(cpu, "preferred_blas_core", lambda: None)
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "1")
    assert cpu.blas_settings() == {}


def test_a_script_that_calls_restart_with_blas_settings_runs_once_more_with_them(tmp_path):
    script = tmp_path / "train_mine.py"
    script.write_text("import os, sys\nimport minivgg as mv\n"
                      "print('start', os.environ.get('OPENBLAS_THREAD_TIMEOUT', '-'), sys.argv[1:], flush=True)\n"
                      "mv.cpu.restart_with_blas_settings()\nprint('running')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    out = subprocess.run([sys.executable, str(script), "--epochs", "2"], capture_output=True, text=True, env=env,
                         check=True).stdout.splitlines()
    assert out == ["start - ['--epochs', '2']", "start 10 ['--epochs', '2']", "running"]


@pytest.mark.parametrize("tier", ["reference", "fast"])
def test_the_linear_layer_answers_in_row_order_whatever_its_input_layout(tier):
    """Its output feeds dropout and ReLU, whose masks lie in row order: mixed layouts would make every
    elementwise pass after it stride through memory. NumPy's products give row order, so both tiers
    run the reference layer."""
    rng = np.random.default_rng(0)
    x = mv.tensor(np.asfortranarray(normal(rng, 8, 5)), requires_grad=True)  # batch innermost, as after a convolution
    layer = mv.nn.Linear(5, 3)
    with mv.kernels(tier):
        y = layer(x)
        assert type(y.creator) is F.LinearFunction and y.data.flags.c_contiguous
        y.backward(mv.tensor(normal(rng, 8, 3)))
    assert x.grad.data.flags.c_contiguous


def test_restart_with_blas_settings_leaves_the_interactive_prompt_alone(monkeypatch):
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("the interactive prompt was restarted"))
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    cpu.restart_with_blas_settings()  # returns: the prompt stays
    monkeypatch.delattr(sys, "ps1")
    monkeypatch.setattr(os, "execve", lambda *args: sys.exit("restarted"))
    with pytest.raises(SystemExit, match="restarted"):  # the same call in a script restarts
        cpu.restart_with_blas_settings(["-c", "pass"])


def test_the_fast_tiers_use_only_functional_public_names():
    # The tier contract: checks and geometry are public in functional.py and made by its wrappers, so a
    # variant only computes; none reaches into functional's private helpers.
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minivgg")
    for name in ("fast_cpu.py", "fast_gpu.py"):
        source = open(os.path.join(package, name)).read()
        assert not re.search(r"\bF\._[a-z]", source), name
