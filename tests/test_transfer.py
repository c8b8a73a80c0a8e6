"""Transfer learning: freezing with `requires_grad_`, torchvision's VGG weights (`load_torchvision_weights`),
Keras's per-layer `summary`, and the paper's warm start (`init_from`, `minivgg train --init-from`)."""
import io
import os
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import cli, data, models, nn, optim, train
from minivgg.autograd import Tensor, graph_functions
from minivgg.functional import cross_entropy


def _small(config="A", num_classes=5, ratio=16, size=32, seed=0):
    mv.manual_seed(seed)
    return models.initialize(models.vgg_from_config(config, num_classes, in_channels=1, ratio=ratio),
                             (1, 1, size, size), "kaiming")


def _images(n=4, size=32, channels=1, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal((n, channels, size, size)).astype(np.float32))


def _values(net):
    return {name: p.numpy().copy() for name, p in net.named_parameters()}


# ---- 3. freezing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("tier", ["reference", "fast"])
def test_a_frozen_convolution_keeps_no_col_and_gets_no_gradient(tier):
    with mv.kernels(tier):
        conv = nn.Conv2d(3, 4, 3, padding=1)
        assert conv.requires_grad_(False) is conv
        x = Tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32), requires_grad=True)
        y = conv(x)
        fn = y.creator
        # the reference keeps im2col's matrix, the fast tier its input (unrolled again in backward): each
        # serves only the weight's gradient
        kept = (lambda f: f.col) if tier == "reference" else (lambda f: f.saved_tensors[0])
        assert kept(fn) is None
        weight = fn.saved_tensors[0] if tier == "reference" else fn.saved_tensors[1]
        assert weight is not None  # the input's gradient still needs the weight
        y.sum().backward()
        assert conv.weight.grad is None and conv.bias.grad is None
        assert x.grad is not None and x.grad.shape == x.shape

        conv.requires_grad_()  # unfrozen again: the column matrix is kept once more
        assert kept(conv(x).creator) is not None


def test_a_frozen_feature_extractor_is_left_out_of_the_graph():
    """The image needs no gradient and no convolution weight does: backward starts at the first dense layer."""
    net = _small()
    for block in list(net)[:5]:
        block.requires_grad_(False)
    loss = cross_entropy(net(_images()), Tensor(np.array([0, 1, 2, 3])))
    ops = {fn.name for fn in graph_functions(loss)}
    assert not ops & {"Conv2d", "MaxPool2d"}, ops
    loss.backward()
    frozen = [p for block in list(net)[:5] for p in block.parameters()]
    assert frozen and all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in net[-1].parameters())


@pytest.mark.parametrize("make", [
    lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
    lambda params: optim.Adam(params, lr=0.01, weight_decay=0.1)], ids=["sgd", "adam"])
def test_frozen_parameters_are_not_updated_nor_decayed(make):
    """Frozen before the optimizer is built, or after it took steps and holds momentum for them, and even with
    a stale gradient left in place by zero_grad(set_to_none=False): the frozen parameters do not move."""
    net = _small()
    images, labels = _images(), Tensor(np.array([0, 1, 2, 3]))
    opt = make(net.parameters())
    for _ in range(2):  # everything trains: momentum buffers / moments exist for every parameter
        opt.zero_grad()
        cross_entropy(net(images), labels).backward()
        opt.step()
    features = list(net)[:5]
    for block in features:
        block.requires_grad_(False)
    before = _values(net)
    opt.zero_grad(set_to_none=False)  # the frozen parameters keep a (zeroed) .grad
    cross_entropy(net(images), labels).backward()
    opt.step()
    after = _values(net)
    frozen = {name for name, _ in net.named_parameters() if name.split(".")[0] in {"0", "1", "2", "3", "4"}}
    assert frozen
    for name in before:
        if name in frozen:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        else:
            assert not np.array_equal(after[name], before[name]), name


def test_the_keras_recipe_freeze_replace_the_head_and_fine_tune():
    """As in the README: a slice of the net holds the same blocks, so freezing it freezes them in the net."""
    net = _small(num_classes=10)
    net[:5].requires_grad_(False)
    net = nn.Sequential(*list(net)[:-1], nn.Linear(4096, 3))  # the new head, trainable
    opt = optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    assert len(opt.params) == 6  # the two hidden dense layers and the new head
    before = _values(net)
    loss = cross_entropy(net(_images()), Tensor(np.array([0, 1, 2, 0])))
    loss.backward()
    opt.step()
    after = _values(net)
    changed = sorted(name for name in before if not np.array_equal(before[name], after[name]))
    assert changed == ["12.bias", "12.weight", "6.bias", "6.weight", "9.bias", "9.weight"]


def test_a_lazy_layer_frozen_before_its_first_call_stays_frozen():
    layer = nn.LazyLinear(3).requires_grad_(False)
    layer(_images(2, 4).reshape(2, -1))
    assert layer.weight.is_materialized and not layer.weight.requires_grad


# ---- 4. Keras's per-layer summary -------------------------------------------------------------------
def test_per_layer_summary_counts_total_trainable_and_frozen_parameters():
    net = models.vgg_from_config("D", num_classes=17)
    net[0].requires_grad_(False)  # conv1_1 and conv1_2: 1,792 + 36,928
    out = io.StringIO()
    rows = models.summary(net, (1, 3, 224, 224), file=out, per_layer=True)
    text = out.getvalue()
    assert "Total params: 134,330,193" in text
    assert "Trainable params: 134,291,473" in text
    assert "Non-trainable params: 38,720" in text
    assert len(rows) == 13 * 2 + 5 + 8  # conv + ReLU each, five poolings, then the dense head's 8 layers
    assert rows[0] == ("0.0", "Conv2d", (1, 64, 224, 224), 1792)
    assert rows[-1] == ("12", "LazyLinear", (1, 17), 4096 * 17 + 17)
    assert sum(r[3] for r in rows) == 134_330_193
    assert text.splitlines()[-1] == "Non-trainable params: 38,720"


def test_the_default_summary_is_still_per_block():
    out = io.StringIO()
    rows = mv.summary(models.vgg(models.small_conv_arch(ratio=4)), (1, 1, 32, 32), file=out)
    assert out.getvalue().splitlines()[0].split() == ["layer", "output", "shape", "parameters"]
    assert len(rows) == 13 and all(len(r) == 3 for r in rows)


# ---- 6. warm start -------------------------------------------------------------------------------------
PAPER_COPY = ["0.0", "1.0", "2.0", "2.2", "6", "9", "12"]


def test_init_from_a_into_d_copies_the_first_four_convolutions_and_the_dense_layers():
    a, d = _small("A", seed=1), _small("D", seed=2)
    before = _values(d)
    copied = models.init_from(a, d)
    assert copied == PAPER_COPY
    source = dict(a.named_parameters())
    from_a = {"0.0": "0.0", "1.0": "1.0", "2.0": "2.0", "2.2": "2.2", "6": "6", "9": "9", "12": "12"}
    for name, p in d.named_parameters():
        layer, kind = name.rsplit(".", 1)
        if layer in from_a:
            np.testing.assert_array_equal(p.numpy(), source[f"{from_a[layer]}.{kind}"].numpy(), err_msg=name)
        else:
            np.testing.assert_array_equal(p.numpy(), before[name], err_msg=name)
    assert not np.shares_memory(d[0][0].weight.data, a[0][0].weight.data)


def test_init_from_with_every_convolution_and_mismatched_dense_layers():
    a, d = _small("A", seed=1), _small("D", seed=2, size=64)  # 64x64: the first dense layer is 4x larger
    copied = models.init_from(a, d, convs=None)
    assert copied == ["0.0", "1.0", "2.0", "2.2", "3.0", "3.2", "4.0", "4.2", "9", "12"]
    with pytest.raises(RuntimeError, match="init_from"):
        models.init_from(a, models.vgg_from_config("D", 5, in_channels=1, ratio=16))


def _run_dir(tmp_path, arch="A"):
    """A run folder holding a checkpoint of an `arch` net, as `minivgg train` writes it."""
    config = dict(arch=arch, ratio=16, resize=32, init="kaiming", output_std=0.01, seed=3, batch_size=4,
                  optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0, scheduler="none",
                  warmup_epochs=0.0, epochs=1, clip_grad_norm=0.0)
    mv.manual_seed(3)
    net = models.build(arch, 16)
    models.initialize(net, (1, 1, 32, 32), "kaiming")
    opt = optim.SGD(net.parameters(), lr=0.1)
    run = tmp_path / "source"
    mv.save(train.training_state(net, opt, None, 1, {"epochs": []}, config), run / train.CHECKPOINT)
    return run, net


def test_cli_init_from_copies_the_run_and_leaves_the_rest_as_a_fresh_run(tmp_path, monkeypatch, capsys):
    """`--init-from RUN_DIR`: the copied layers hold the run's weights; every other layer is what a run
    without the option starts from (building the source draws no numbers from the run's stream)."""
    run, source = _run_dir(tmp_path)
    images = np.random.default_rng(0).integers(0, 255, (8, 28, 28), dtype=np.uint8)
    labels = np.arange(8) % 10
    monkeypatch.setattr(data, "load_data_fashion_mnist", lambda batch_size, **kw: (
        data.DataLoader((images, labels), batch_size, resize=kw["resize"]),
        data.DataLoader((images, labels), batch_size, resize=kw["resize"])))
    started = []
    monkeypatch.setattr(train, "fit", lambda net, *a, **kw: started.append(_values(net)))
    argv = ["train", "--arch", "D", "--ratio", "16", "--resize", "32", "--epochs", "1", "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "warm"), "--init-from", str(run)]) == 0
    printed = capsys.readouterr().out
    assert f"initialized from {run}: {', '.join(PAPER_COPY)}" in printed
    assert cli.main([*argv, "--out", str(tmp_path / "cold")]) == 0
    warm, cold = started
    source = _values(source)
    for name in warm:
        layer = name.rsplit(".", 1)[0]
        np.testing.assert_array_equal(warm[name], source[name] if layer in PAPER_COPY else cold[name],
                                      err_msg=name)


def test_cli_init_from_refuses_a_folder_without_a_checkpoint_and_resume(tmp_path, capsys):
    def usage_error(*argv):
        parser = cli.build_parser()
        args = parser.parse_args(["train", *argv])
        with pytest.raises(SystemExit) as stop:
            cli.check_args(parser.commands["train"], args)
        assert stop.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    (tmp_path / "empty").mkdir()
    line = usage_error("--init-from", str(tmp_path / "empty"), "--out", str(tmp_path / "run"))
    assert line.startswith("minivgg train: error: argument --init-from: ") and "has no checkpoint.npz" in line
    assert "no run folder at" in usage_error("--init-from", str(tmp_path / "missing"))
    run, _ = _run_dir(tmp_path)
    assert "not allowed with --resume" in usage_error("--init-from", str(run), "--resume", str(run))


# ---- 3. torchvision's weights ----------------------------------------------------------------------------
TORCHVISION_CFGS = {  # torchvision's `cfgs`: channels of each 3x3 convolution, "M" a 2x2 max-pooling
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _torchvision_vgg(torch, config, num_classes=1000, ratio=1, avgpool=True):
    """torchvision's VGG (features / avgpool / classifier, the same indices and parameter names), built here
    because torchvision is not installed. With avgpool=False the 7x7 average pooling is left out: at a
    32x32 input it would copy the 1x1 feature map 49 times, where minivgg flattens it as it is."""
    tnn = torch.nn
    layers, channels = [], 3
    for v in TORCHVISION_CFGS[config]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
            continue
        layers += [tnn.Conv2d(channels, v // ratio, 3, padding=1), tnn.ReLU(inplace=True)]
        channels = v // ratio
    side = 7 if avgpool else 1

    class VGG(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*layers)
            self.avgpool = tnn.AdaptiveAvgPool2d((7, 7)) if avgpool else tnn.Identity()
            self.classifier = tnn.Sequential(
                tnn.Linear(channels * side * side, 4096), tnn.ReLU(True), tnn.Dropout(),
                tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(), tnn.Linear(4096, num_classes))
            for m in self.modules():  # torchvision's initialization: activations keep their scale
                if isinstance(m, tnn.Conv2d):
                    tnn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    tnn.init.normal_(m.bias, 0, 0.1)
                elif isinstance(m, tnn.Linear):
                    tnn.init.normal_(m.weight, 0, 0.01)
                    tnn.init.normal_(m.bias, 0, 0.1)

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return VGG().eval()


def _assert_same_outputs(torch, tnet, net, size):
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = tnet(torch.from_numpy(x)).numpy()
    got = net.eval()(Tensor(x)).numpy()
    assert np.abs(expected).max() > 1e-2  # the comparison is not between two vanishing outputs
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_vgg16_from_torchvision_pth_and_npz(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tnet = _torchvision_vgg(torch, "D")
    state = tnet.state_dict()
    assert len(state) == 32 and "features.28.weight" in state and "classifier.6.bias" in state
    pth, npz = tmp_path / "vgg16.pth", tmp_path / "vgg16.npz"
    torch.save(state, pth)
    np.savez(npz, **{k: v.numpy() for k, v in state.items()})
    net = models.vgg_from_config("vgg16")  # lazy dense layers: they take the stored shapes
    assert models.load_torchvision_weights(net, pth) is net
    assert net[6].in_features == 25088
    _assert_same_outputs(torch, tnet, net, 224)
    loaded = _values(net)
    del net
    # The .npz brings the same arrays (a dict of torch tensors is the reduced VGG-11's case, below).
    net = models.load_torchvision_weights(models.vgg_from_config("vgg16"), str(npz))
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.numpy(), loaded[name], err_msg=name)


def test_vgg11_reduced_from_torchvision(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tnet = _torchvision_vgg(torch, "A", num_classes=7, ratio=8, avgpool=False)
    net = models.initialize(models.vgg_from_config("A", num_classes=7, ratio=8), (1, 3, 32, 32))
    trainable = optim.SGD(net.parameters(), lr=0.1).params
    models.load_torchvision_weights(net, tnet.state_dict())
    assert all(a is b for a, b in zip(trainable, net.parameters()))  # loaded in place: the optimizer still holds them
    _assert_same_outputs(torch, tnet, net, 32)


def _torchvision_state(net):
    """A minivgg net's weights under torchvision's keys (what load_torchvision_weights reads)."""
    return {key: p.numpy() for key, (_, p) in models._torchvision_names(net).items()}


def test_npz_round_trip_without_torch(tmp_path):
    source = _small("B", num_classes=4)
    path = tmp_path / "vgg13.npz"
    np.savez(path, **_torchvision_state(source))
    assert sorted(np.load(path).files)[:2] == ["classifier.0.bias", "classifier.0.weight"]
    target = models.load_torchvision_weights(models.vgg_from_config("B", 4, in_channels=1, ratio=16), path)
    x = _images(2)
    np.testing.assert_allclose(target.eval()(x).numpy(), source.eval()(x).numpy(), rtol=1e-5, atol=1e-6)


def test_load_torchvision_weights_names_what_does_not_fit(tmp_path, monkeypatch):
    state = _torchvision_state(_small("D", num_classes=1000))
    with pytest.raises(ValueError) as err:
        models.load_torchvision_weights(_small("D", num_classes=5), state)
    message = str(err.value)
    assert "classifier.6.weight has shape (1000, 4096)" in message and "12.weight has (5, 4096)" in message
    assert "num_classes=1000" in message

    with pytest.raises(ValueError) as err:
        models.load_torchvision_weights(_small("A", num_classes=1000), state)  # vgg16 weights into vgg11
    message = str(err.value)
    assert "missing keys: features.3.weight" in message  # A's second convolution, after a max-pooling
    assert "unexpected keys: features.2.weight" in message  # D's second convolution, where A pools

    broken = {k: v for k, v in state.items() if k != "features.0.bias"}
    broken["features.1.running_mean"] = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="missing keys: features.0.bias.*unexpected keys: features.1.running_mean"
                                         ".*vgg16_bn"):
        models.load_torchvision_weights(_small("D", num_classes=1000), broken)

    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without PyTorch
    pth = tmp_path / "vgg16-397923af.pth"
    pth.write_bytes(b"")
    with pytest.raises(ImportError, match="needs PyTorch.*numpy.savez"):
        models.load_torchvision_weights(_small("D"), pth)
    with pytest.raises(FileNotFoundError):
        models.load_torchvision_weights(_small("D"), os.path.join(tmp_path, "nothing.npz"))


def test_cli_summary_per_layer_prints_keras_totals(capsys):
    from minivgg import cli

    assert cli.main(["summary", "--arch", "D", "--in-channels", "3", "--classes", "17", "--per-layer"]) == 0
    text = capsys.readouterr().out
    assert "Total params: 134,330,193" in text and "Non-trainable params: 0" in text


def test_freeze_features_freezes_exactly_the_layers_before_flatten():
    net = models.initialize(models.vgg_from_config("A", 3, in_channels=1, ratio=16), (1, 1, 32, 32))
    assert models.freeze_features(net) == ["0", "1", "2", "3", "4"]
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {name for name, _ in net.named_parameters() if int(name.split(".")[0]) < 5}
    assert all(p.requires_grad for p in net[-1].parameters())
    with pytest.raises(ValueError, match="no Flatten"):
        models.freeze_features(nn.Sequential(nn.Linear(2, 2)))
