import numpy as np
import pytest

import minivgg as mv
from minivgg import backend, optim

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


def _pair(rng, shapes):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [mv.nn.Parameter(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays] if torch is not None else None
    return ours, theirs


def _run(ours, theirs, opt, topt, steps, rng):
    for _ in range(steps):
        for o, t in zip(ours, theirs):
            g = rng.standard_normal(o.shape).astype(np.float32)
            o.grad = mv.tensor(g)
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o.numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9,
                                    weight_decay=5e-4), dict(lr=0.01, momentum=0.8, nesterov=True)])
def test_sgd_matches_torch_step_for_step(kwargs, rng):
    ours, theirs = _pair(rng, [(4, 3), (3,)])
    _run(ours, theirs, optim.SGD(ours, **kwargs), torch.optim.SGD(theirs, **kwargs), 6, rng)


@needs_torch
@pytest.mark.parametrize("kwargs", [dict(lr=1e-3), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-3)])
def test_adam_matches_torch_step_for_step(kwargs, rng):
    ours, theirs = _pair(rng, [(5, 2), (2,)])
    _run(ours, theirs, optim.Adam(ours, **kwargs), torch.optim.Adam(theirs, **kwargs), 6, rng)


def test_float32_state_and_params(rng):
    ours, _ = _pair(rng, [(3,)])
    opt = optim.SGD(ours, lr=0.1, momentum=0.9, weight_decay=1e-4)
    ours[0].grad = mv.tensor(np.ones(3))
    opt.step()
    assert ours[0].dtype == np.float32 and opt.state[0]["momentum_buffer"].dtype == np.float32


def _torch_lrs(make, steps, metrics=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    out = []
    for i in range(steps):
        opt.step()
        sched.step(metrics[i]) if metrics else sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def _our_lrs(make, steps, metrics=None):
    opt = optim.SGD([mv.nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.1)
    sched = make(opt)
    out = []
    for i in range(steps):
        sched.step(metrics[i]) if metrics else sched.step()
        out.append(opt.lr)
    return out


@needs_torch
def test_schedulers_match_torch():
    np.testing.assert_allclose(_our_lrs(lambda o: optim.StepLR(o, 3, 0.5), 10),
                               _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5), 10), rtol=1e-9)
    np.testing.assert_allclose(_our_lrs(lambda o: optim.CosineAnnealingLR(o, 8, 0.001), 8),
                               _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.001), 8),
                               rtol=1e-6)
    warm = optim.warmup_cosine(3, 12)
    np.testing.assert_allclose(_our_lrs(lambda o: optim.LambdaLR(o, warm), 12),
                               _torch_lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, warm), 12), rtol=1e-9)
    metrics = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7]
    np.testing.assert_allclose(
        _our_lrs(lambda o: optim.ReduceLROnPlateau(o, "max", factor=0.1, patience=2), 10, metrics),
        _torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, "max", factor=0.1, patience=2), 10,
                   metrics), rtol=1e-9)


BAD_HYPERPARAMETERS = [
    (optim.SGD, dict(lr=-1), "SGD: Invalid learning rate: -1"),
    (optim.SGD, dict(lr=float("nan")), "SGD: Invalid learning rate: nan"),
    (optim.SGD, dict(lr=float("inf")), "SGD: Invalid learning rate: inf"),
    (optim.SGD, dict(lr=0.1, momentum=-0.5), "SGD: Invalid momentum value: -0.5"),
    (optim.SGD, dict(lr=0.1, momentum=float("inf")), "SGD: Invalid momentum value: inf"),
    (optim.SGD, dict(lr=0.1, weight_decay=-1e-4), "SGD: Invalid weight_decay value: -0.0001"),
    (optim.SGD, dict(lr=0.1, weight_decay=float("nan")), "SGD: Invalid weight_decay value: nan"),
    (optim.Adam, dict(lr=-1e-3), "Adam: Invalid learning rate: -0.001"),
    (optim.Adam, dict(lr=float("inf")), "Adam: Invalid learning rate: inf"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "Adam: Invalid beta parameter at index 0: 1.0"),
    (optim.Adam, dict(betas=(-0.1, 0.999)), "Adam: Invalid beta parameter at index 0: -0.1"),
    (optim.Adam, dict(betas=(0.9, 1.5)), "Adam: Invalid beta parameter at index 1: 1.5"),
    (optim.Adam, dict(betas=(0.9, float("nan"))), "Adam: Invalid beta parameter at index 1: nan"),
    (optim.Adam, dict(eps=-1e-8), "Adam: Invalid epsilon value: -1e-08"),
    (optim.Adam, dict(eps=float("inf")), "Adam: Invalid epsilon value: inf"),
    (optim.Adam, dict(weight_decay=-1), "Adam: Invalid weight_decay value: -1"),
]


@pytest.mark.parametrize("make,kwargs,message", BAD_HYPERPARAMETERS, ids=[m for _, _, m in BAD_HYPERPARAMETERS])
def test_optimizers_refuse_bad_hyperparameters_as_torch_does(make, kwargs, message):
    params = [mv.nn.Parameter(np.zeros(2, dtype=np.float32))]
    with pytest.raises(ValueError) as caught:
        make(params, **kwargs)
    assert str(caught.value) == message
    if torch is not None and not message.endswith(("inf", "nan")):  # torch lets some inf and NaN through
        tmake = getattr(torch.optim, make.__name__)
        with pytest.raises(ValueError, match=message.split(": ", 1)[1].split(":")[0]):
            tmake([torch.nn.Parameter(torch.zeros(2))], **kwargs)


@pytest.mark.parametrize("make,kwargs", [
    (optim.SGD, dict(lr=0, momentum=0, weight_decay=0)),  # the edges PyTorch accepts
    (optim.SGD, dict(lr=0.1, momentum=1.0)),  # PyTorch bounds momentum below only
    (optim.Adam, dict(lr=0, betas=(0.0, 0.0), eps=0, weight_decay=0)),
    (optim.Adam, dict(lr=np.float32(1e-3), betas=[0.5, 0.9])),
])
def test_optimizers_accept_the_values_torch_accepts(make, kwargs):
    opt = make([mv.nn.Parameter(np.zeros(2, dtype=np.float32))], **kwargs)
    if torch is not None:
        getattr(torch.optim, make.__name__)([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert opt.lr == float(kwargs.get("lr", 1e-3))


def test_optimizer_state_round_trip(tmp_path, rng):
    ours, _ = _pair(rng, [(3,)])
    opt = optim.Adam(ours, lr=0.01)
    ours[0].grad = mv.tensor(np.ones(3))
    opt.step()
    mv.save({"opt": opt.state_dict()}, tmp_path / "o.npz")
    other = optim.Adam(ours, lr=0.5)
    other.load_state_dict(mv.load(tmp_path / "o.npz")["opt"])
    assert other.lr == 0.01 and other.state[0]["step"] == 1
    np.testing.assert_array_equal(other.state[0]["exp_avg"], opt.state[0]["exp_avg"])


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9, weight_decay=1e-3), dict(momentum=0.9, nesterov=True),
                                    dict()])
def test_large_updates_split_across_threads_are_exact(kwargs, rng):
    """The update is bit for bit the textbook's NumPy expressions, under either tier (the fast one splits
    arrays this large into pieces on the CPU threads)."""
    n = 5_000_003  # not a multiple of the piece size
    w0 = rng.standard_normal(n).astype(np.float32)
    p = mv.nn.Parameter(w0.copy())
    opt = optim.SGD([p], lr=0.05, **kwargs)
    lr, m, wd = np.float32(0.05), np.float32(kwargs.get("momentum", 0)), np.float32(kwargs.get("weight_decay", 0))
    w, buf = w0.copy(), np.zeros(n, dtype=np.float32)
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        p.grad = mv.tensor(g)
        opt.step()
        d = g + wd * w if wd else g
        if m:
            buf = buf * m + d
            d = d + m * buf if kwargs.get("nesterov") else buf
        w = w - lr * d
        np.testing.assert_array_equal(p.numpy(), w)


@needs_torch
def test_large_adam_update_in_pieces_matches_torch(rng):
    """A parameter above the piece threshold (updated on several threads) follows torch.optim.Adam."""
    ours, theirs = _pair(rng, [(5_000_003,)])
    kwargs = dict(lr=1e-3, weight_decay=1e-4)
    _run(ours, theirs, optim.Adam(ours, **kwargs), torch.optim.Adam(theirs, **kwargs), 2, rng)


@pytest.mark.parametrize("tier", ["reference", "fast"])
@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
                                  lambda ps: optim.Adam(ps, lr=0.1, weight_decay=1e-2)], ids=["SGD", "Adam"])
def test_step_moves_the_parameters_in_place_and_leaves_the_gradients(make, tier, rng):
    params = [mv.nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(600_000,), (3, 4)]]
    arrays = [p.data for p in params]
    before = [a.copy() for a in arrays]
    opt = make(params)
    with mv.kernels(tier):
        for _ in range(2):
            grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
            for p, g in zip(params, grads):
                p.grad = mv.tensor(g)
            opt.step()
            for p, g in zip(params, grads):
                np.testing.assert_array_equal(p.grad.numpy(), g)
    for i, (p, a, b) in enumerate(zip(params, arrays, before)):
        assert p.data is a and p.dtype == np.float32 and (a != b).any()
        assert all(s.dtype == np.float32 for s in opt.state[i].values() if hasattr(s, "dtype"))


def test_every_scheduler_takes_the_metric_and_only_reduce_on_plateau_needs_it():
    """One call for a training loop, `scheduler.step(metric)`, whatever the scheduler."""
    def make(kind, opt):
        return {"step": lambda: optim.StepLR(opt, 2, 0.5), "cosine": lambda: optim.CosineAnnealingLR(opt, 5),
                "lambda": lambda: optim.LambdaLR(opt, optim.warmup_cosine(1, 5)),
                "plateau": lambda: optim.ReduceLROnPlateau(opt, patience=0)}[kind]()

    for kind in ["step", "cosine", "lambda"]:
        rates = []
        for with_metric in (False, True):
            opt = optim.SGD([mv.nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.1)
            sched = make(kind, opt)
            for epoch in range(5):
                sched.step(0.5) if with_metric else sched.step()
            rates.append(opt.lr)
        assert rates[0] == rates[1] != 0.1, kind
    opt = optim.SGD([mv.nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.1)
    plateau = make("plateau", opt)
    plateau.step(0.5)
    plateau.step(0.4)
    assert opt.lr == pytest.approx(0.01)
    with pytest.raises(TypeError, match=r"needs the watched metric"):
        plateau.step()


def test_warmup_cosine_rises_then_decays_to_zero():
    def lrs(make, steps):
        opt = optim.SGD([mv.nn.Parameter(np.zeros(1, dtype=np.float32))], lr=0.1)
        sched = make(opt)
        out = [opt.lr]
        for _ in range(steps):
            sched.step()
            out.append(opt.lr)
        return out, sched

    warm, sched = lrs(lambda o: optim.LambdaLR(o, optim.warmup_cosine(4, 10)), 10)
    np.testing.assert_allclose(warm[:5], [0.025, 0.05, 0.075, 0.1, 0.1])
    assert all(a > b for a, b in zip(warm[4:], warm[5:])) and warm[-2] > 0 and warm[-1] == 0.0
    assert "lr_lambda" not in sched.state_dict()
    plain, _ = lrs(lambda o: optim.LambdaLR(o, optim.warmup_cosine(0, 10)), 10)
    cosine, _ = lrs(lambda o: optim.CosineAnnealingLR(o, 10), 10)
    np.testing.assert_allclose(plain, cosine, atol=1e-12)


def _with_grads(rng, shapes, scale):
    params = [mv.nn.Parameter(np.zeros(s, dtype=np.float32)) for s in shapes]
    for p in params:
        p.grad = mv.tensor((scale * rng.standard_normal(p.shape)).astype(np.float32))
    return params


@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
def test_clip_grad_norm_scales_large_gradients_jointly_and_leaves_small_ones(norm_type, rng):
    shapes = [(64, 3, 3, 3), (64,), (10, 300)]
    params = _with_grads(rng, shapes, scale=5.0)
    before = [p.grad.numpy().copy() for p in params]
    flat = np.concatenate([b.ravel() for b in before]).astype(np.float64)
    expected = np.abs(flat).max() if norm_type == float("inf") else np.sqrt((flat ** 2).sum())
    total = mv.nn.utils.clip_grad_norm_(params, 1.0, norm_type)
    assert total == pytest.approx(expected, rel=1e-5)
    after = np.concatenate([p.grad.numpy().ravel() for p in params]).astype(np.float64)
    clipped = np.abs(after).max() if norm_type == float("inf") else np.sqrt((after ** 2).sum())
    assert clipped == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(after, flat / (expected + 1e-6), rtol=1e-5)  # one factor for all: direction kept
    assert all(p.grad.dtype == np.float32 for p in params)

    small = _with_grads(rng, shapes, scale=1e-3)
    kept = [p.grad.numpy().copy() for p in small]
    mv.nn.utils.clip_grad_norm_(small, 1.0, norm_type)
    for p, k in zip(small, kept):
        np.testing.assert_array_equal(p.grad.numpy(), k)


@needs_torch
def test_clip_grad_norm_matches_torch(rng):
    shapes = [(32, 16, 3, 3), (32,), (4096, 128)]
    ours, theirs = _pair(rng, shapes)
    for o, t in zip(ours, theirs):
        g = (3 * rng.standard_normal(o.shape)).astype(np.float32)
        o.grad, t.grad = mv.tensor(g), torch.tensor(g)
    total = mv.nn.utils.clip_grad_norm_(ours, 2.5)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 2.5)
    assert total == pytest.approx(float(expected), rel=1e-5)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("owner", ["optimizer", "module"])
def test_zero_grad_set_to_none_false_zeroes_in_place_and_the_next_backward_is_right(owner, rng):
    """PyTorch's zero_grad(set_to_none=False): the same .grad array, filled with zeros; the next
    backward then gives the same gradient as after zero_grad()."""
    layer = mv.nn.Linear(3, 2)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    x = mv.tensor(rng.standard_normal((4, 3)))
    (layer(x) ** 2).sum().backward()
    first = layer.weight.grad.numpy()
    kept = layer.weight.grad
    (opt if owner == "optimizer" else layer).zero_grad(set_to_none=False)
    assert layer.weight.grad is kept and not kept.numpy().any()
    (layer(x) ** 2).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(), first, rtol=1e-6)
    (opt if owner == "optimizer" else layer).zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2, nesterov=True),
                                  lambda ps: optim.Adam(ps, lr=0.01, weight_decay=1e-2)], ids=["SGD", "Adam"])
def test_the_updates_run_on_the_device_as_on_the_cpu(make, cuda_device, rng):
    """The reference updates use array operations CuPy has, keep their state on the parameter's device,
    and compute the CPU's numbers (to float32 rounding: the device's kernels may round differently)."""
    start = [rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (3,)]]
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in start] for _ in range(3)]
    results = []
    for device in ("cpu", cuda_device.device):
        params = [mv.nn.Parameter(mv.tensor(a, device=device)) for a in start]
        opt = make(params)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = mv.tensor(g, device=device)
            opt.step()
        assert all(p.device.startswith(device) for p in params)
        xp = backend.get_array_module(params[0].data)
        assert all(backend.get_array_module(array) is xp
                   for state in opt.state.values() for key, array in state.items() if key != "step")
        results.append([p.numpy() for p in params])
    for cpu_result, device_result in zip(*results):
        np.testing.assert_allclose(device_result, cpu_result, rtol=1e-5, atol=1e-6)
