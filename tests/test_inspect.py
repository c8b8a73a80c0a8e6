import io
import os
import re

import numpy as np
import pytest

import minivgg as mv
from minivgg import cli, data, inspection, models, nn, optim
import minivgg.functional as F

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None


def two_layer(rng):
    mv.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x = mv.tensor(rng.standard_normal((6, 4)))
    y = mv.tensor(rng.integers(0, 3, 6))
    return net, x, y


def test_full_walk_equals_backward(rng):
    net, x, y = two_layer(rng)
    F.cross_entropy(net(x), y).backward()
    expected = {n: p.grad.numpy() for n, p in net.named_parameters()}
    net.zero_grad()
    steps = list(F.cross_entropy(net(x), y).backward_steps())
    assert [s.op for s in steps] == ["CrossEntropy", "Linear", "ReLU", "Linear"]
    for n, p in net.named_parameters():
        np.testing.assert_array_equal(p.grad.numpy(), expected[n])


def test_stopping_early_leaves_only_processed_gradients(rng):
    net, x, y = two_layer(rng)
    walk = F.cross_entropy(net(x), y).backward_steps()
    first, second = next(walk), next(walk)
    assert first.op == "CrossEntropy" and second.op == "Linear"
    assert second.output_shape == (6, 3) and second.input_shapes == [(6, 5), (3, 5), (3,)]
    assert second.grad_output.shape == (6, 3) and [g.shape for g in second.grad_inputs] == [(6, 5), (3, 5), (3,)]
    assert net[2].weight.grad is not None and net[2].bias.grad is not None
    assert net[0].weight.grad is None and net[0].bias.grad is None  # not reached yet
    np.testing.assert_array_equal(net[2].weight.grad.numpy(), second.grad_inputs[1])


def test_trace_lists_every_vgg_layer_in_order(rng):
    mv.manual_seed(0)
    net = models.vgg(models.small_conv_arch(models.CONV_ARCH, 16))
    x = mv.tensor(rng.random((2, 1, 32, 32)))
    loss = F.cross_entropy(net(x), mv.tensor([1, 2]))
    out = io.StringIO()
    rows = inspection.trace(loss, file=out)
    ops = [r["op"] for r in rows]
    assert ops.count("Conv2d") == 8 and ops.count("MaxPool2d") == 5 and ops.count("Linear") == 3
    assert ops.count("ReLU") == 10 and ops.count("Dropout") == 2 and ops[0] == "CrossEntropy"
    assert ops[-1] == "Conv2d" and "|grad out|" in out.getvalue()
    assert net[0][0].weight.grad is not None


def _parse_dot(text):
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    nodes = re.findall(r"^\s+(\w+) \[", text, re.M)
    edges = re.findall(r"^\s+(\w+) -> (\w+);", text, re.M)
    assert len(set(nodes)) == len(nodes)
    assert all(a in nodes and b in nodes for a, b in edges)  # every edge joins declared nodes
    return nodes, edges


def test_dot_matches_the_graph(rng):
    net, x, y = two_layer(rng)
    loss = F.cross_entropy(net(x), y)
    text_with_data = inspection.to_dot(loss, params=net, show_data=True)
    nodes, edges = _parse_dot(text_with_data)
    # ops: Linear, ReLU, Linear, CrossEntropy; tensors: x, 4 parameters, labels, 4 outputs
    assert sum(n.startswith("f") for n in nodes) == 4 and sum(n.startswith("t") for n in nodes) == 10
    assert len(edges) == (3 + 1 + 3 + 2) + 4  # inputs of each op, plus each op's output
    # the outputs of Linear, ReLU, Linear are gone after forward (the graph links to them by Edge): drawn
    # dashed, from the shapes their ops recorded; the loss is alive and drawn with its data
    assert text_with_data.count('style="filled,dashed"') == 3 and "tensor released after forward" in text_with_data
    text = inspection.to_dot(loss, params=net)
    assert "0.weight" in text and "(5, 4) float32" in text
    loss.backward()
    with pytest.raises(RuntimeError, match="freed"):
        inspection.to_dot(loss)


def test_draw_and_print_graph(tmp_path, rng, capsys):
    net, x, y = two_layer(rng)
    loss = F.cross_entropy(net(x), y)
    path = inspection.draw_graph(loss, str(tmp_path / "g.svg"), params=net)
    assert os.path.exists(path) and os.path.exists(tmp_path / "g.dot")
    inspection.print_graph(loss, params=net)
    text = capsys.readouterr().out
    assert "CrossEntropy" in text and "  Linear" in text and "2.weight (3, 5)" in text


def test_module_hooks_order_and_removal(rng):
    net, x, y = two_layer(rng)
    calls = []
    h1 = net[0].register_forward_hook(lambda m, i, o: calls.append(("fwd0", o.shape)))
    h2 = net[2].register_forward_hook(lambda m, i, o: calls.append(("fwd2", o.shape)))
    grads = {}

    def backward_hook(m, grad_in, grad_out):
        calls.append(("bwd2", grad_out[0].shape))
        grads["in"], grads["out"] = grad_in, grad_out
    h3 = net[2].register_backward_hook(backward_hook)
    out = net(x)
    out.retain_grad()
    F.cross_entropy(out, y).backward()
    assert calls == [("fwd0", (6, 5)), ("fwd2", (6, 3)), ("bwd2", (6, 3))]
    np.testing.assert_allclose(grads["out"][0].numpy(), out.grad.numpy())
    assert grads["in"][0].shape == (6, 5)
    np.testing.assert_allclose(grads["in"][0].numpy(), out.grad.numpy() @ net[2].weight.numpy(), rtol=1e-6)
    for h in (h1, h2, h3):
        h.remove()
    calls.clear()
    F.cross_entropy(net(x), y).backward()
    assert calls == []


def test_forward_hook_can_replace_output(rng):
    net, x, _ = two_layer(rng)
    net[2].register_forward_hook(lambda m, i, o: o * 0)
    assert not net(x).numpy().any()


def test_detect_anomaly_forward_and_backward():
    x = mv.tensor([0.0, 1.0], requires_grad=True)
    with mv.detect_anomaly():
        with pytest.raises(mv.AnomalyError, match=r"forward of Log .*test_inspect.py"):
            x.log()
    y = mv.tensor([0.0, 4.0], requires_grad=True)
    with mv.detect_anomaly():
        z = y.sqrt().sum()  # finite forward, d sqrt(0) = inf in backward
        with pytest.raises(mv.AnomalyError, match=r"backward of Sqrt \(step \d\).*test_inspect.py"):
            z.backward()
    x.log()  # outside the block: no check


def test_gradient_monitor_matches_hand_computation(rng):
    net, x, y = two_layer(rng)
    monitor = inspection.GradientMonitor(net)
    opt = optim.SGD(net.parameters(), lr=0.1)
    before = {n: p.numpy().copy() for n, p in net.named_parameters()}
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    hidden = F.relu(F.linear(x, net[0].weight, net[0].bias)).numpy()
    monitor.before_step()
    opt.step()
    monitor.after_step()
    record = monitor.history[-1]
    g = net[2].weight.grad.numpy().astype(np.float64)
    s = record["params"]["2.weight"]
    assert s["norm"] == pytest.approx(np.linalg.norm(g)) and s["mean"] == pytest.approx(g.mean())
    assert s["std"] == pytest.approx(g.std()) and s["max_abs"] == pytest.approx(np.abs(g).max())
    assert s["zero_frac"] == pytest.approx((g == 0).mean())
    w0 = before["2.weight"].astype(np.float64)
    assert s["update_ratio"] == pytest.approx(np.linalg.norm(0.1 * g) / np.linalg.norm(w0), rel=1e-5)
    assert record["relu"]["1"] == pytest.approx(1 - (hidden > 0).any(axis=0).mean())
    out = io.StringIO()
    monitor.table(file=out)
    assert "2.weight" in out.getvalue() and "dead units" in out.getvalue()


def test_gradient_monitor_plot(tmp_path, rng):
    net, x, y = two_layer(rng)
    monitor = inspection.GradientMonitor(net)
    opt = optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        monitor.before_step()
        opt.step()
        monitor.after_step()
    assert len(monitor.history) == 3
    path = monitor.plot(str(tmp_path / "grads.png"))
    assert os.path.getsize(path) > 1000


@pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")
def test_compare_with_torch_on_vgg11_quarter(rng):
    mv.manual_seed(0)
    net = models.initialize(models.vgg(models.small_conv_arch(models.CONV_ARCH, 4)), (1, 1, 32, 32))
    images = rng.random((4, 1, 32, 32)).astype(np.float32)
    rows = inspection.compare_with_torch(net, images, np.array([0, 3, 5, 9]), file=io.StringIO())
    assert len(rows) == len(nn.utils.leaf_modules(net)) == 29
    worst = max(max(v for k, v in r.items() if k in ("activation", "grad_output", "weight_grad", "bias_grad"))
                for r in rows)
    assert worst < 1e-4


@pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR), reason="install dataset-fashion-mnist (Debian)")
def test_cli_inspect_prints_the_table(tmp_path, capsys):
    assert cli.main(["inspect", "--ratio", "16", "--data", data.DEBIAN_DIR, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "|grad out|" in text and "Conv2d" in text and "LazyLinear" in text
    assert (tmp_path / "graph.dot").exists()


def test_backward_hook_fires_when_only_the_graph_holds_the_output(rng):
    net, x, y = two_layer(rng)
    seen = []
    net[0].register_backward_hook(lambda m, gin, gout: seen.append(gout[0].shape))
    h = net[1](net[0](x))
    h.retain_grad()
    F.cross_entropy(net[2](h), y).backward()  # net[0]'s output is referenced by the graph alone
    assert seen == [(6, 5)]


@pytest.mark.parametrize("chosen, expected", [(None, "agg"), ("svg", "svg")])
def test_pyplot_keeps_a_backend_already_chosen(chosen, expected):
    """Without a display and without a choice, figures go to files through Agg; a user's choice is kept."""
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    if not sys.platform.startswith("linux"):
        pytest.skip("a display is assumed on macOS and Windows")
    code = ("import matplotlib\n" + (f"matplotlib.use({chosen!r})\n" if chosen else "") +
            "from minivgg.plotting import pyplot\npyplot()\nprint(matplotlib.get_backend().lower())")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == expected
