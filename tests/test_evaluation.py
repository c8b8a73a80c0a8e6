"""Test-time evaluation (minivgg/evaluation.py, the paper's section 3.2): multi-crop scores are the average of
the crops' soft-max scores computed by hand; one crop at the training size without a flip, and dense
evaluation at the training size, are plain evaluation; one scale is single-scale; flips flip; the results are
float32 on the net's device, the net's mode is kept; and `minivgg evaluate --multi-crop / --dense / --scales`."""
import os

import numpy as np
import pytest

import minivgg as mv
from minivgg import backend, cli, data, evaluation, models, nn, optim, train
from minivgg import functional as F

needs_data = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")


def _tiny_vgg():
    """Five one-convolution blocks and a narrow dense head with dropout: VGG's shape (smallest input 32,
    to_fully_convolutional applies) at a fraction of the cost."""
    widths = (4, 8, 8, 8, 8)
    blocks = [models.vgg_block(1, out, inp) for inp, out in zip((1,) + widths, widths)]
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))


def _images(n, size, seed=0):
    """Float32 images (n, 1, size, size) in [0, 1], left-right asymmetric (a ramp) so that a flip matters."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    return (0.5 * rng.random((n, 1, size, size)) + 0.5 * ramp).astype(np.float32)


@pytest.fixture(scope="module")
def net():
    """The tiny net after a few SGD steps on random labelled images (so its scores are not uniform); left
    in training mode, as after training, so that every function has to switch dropout off itself."""
    mv.manual_seed(0)
    net = models.initialize(_tiny_vgg(), (1, 1, 32, 32), "kaiming")
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(5):
        loss = F.cross_entropy(net(mv.tensor(_images(16, 32, rng.integers(1 << 30)))),
                               mv.tensor(rng.integers(0, 10, 16)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.train()
    return net


def _by_hand(net, batch):
    """Soft-max of the net's logits on one batch, in float64 NumPy, dropout off."""
    net.eval()
    try:
        with mv.no_grad():
            z = net(mv.tensor(np.ascontiguousarray(batch))).numpy().astype(np.float64)
    finally:
        net.train()
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_crop_offsets_span_the_image_corners_centre_and_between():
    assert evaluation.crop_offsets(40, 32, 3) == [0, 4, 8]
    assert evaluation.crop_offsets(40, 32, 5) == [0, 2, 4, 6, 8]
    assert evaluation.crop_offsets(40, 32, 1) == [4]  # the centre
    assert evaluation.crop_offsets(37, 32, 3) == [0, 2, 5]
    assert evaluation.crop_offsets(32, 32, 3) == [0]  # no room: one position
    assert evaluation.crop_offsets(34, 32, 5) == [0, 1, 2]
    assert evaluation.default_crop_scale(32) == 37 and evaluation.default_crop_scale(224) == 256
    with pytest.raises(ValueError, match="does not fit"):
        evaluation.crop_offsets(31, 32, 3)


def test_multi_crop_is_the_average_of_the_crops_scored_by_hand(net):
    raw = _images(6, 28)
    scores = evaluation.multi_crop_scores(net, raw, 32, scale=40, grid=3, flips=True)
    big = data.resize_bilinear(raw, 40)
    assert big.shape == (6, 1, 40, 40)
    expected = []
    for top in (0, 4, 8):
        for left in (0, 4, 8):
            crop = big[:, :, top:top + 32, left:left + 32]
            expected += [_by_hand(net, crop), _by_hand(net, crop[:, :, :, ::-1])]
    assert len(expected) == 18
    np.testing.assert_allclose(scores, np.mean(expected, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(scores, _by_hand(net, data.resize_bilinear(raw, 32)), atol=1e-4)  # the crops count
    assert net.training  # the mode it had


def test_one_crop_at_the_training_size_without_a_flip_is_plain_evaluation(net):
    x = _images(8, 32)
    plain = evaluation.plain_scores(net, x)
    np.testing.assert_allclose(plain, _by_hand(net, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(evaluation.multi_crop_scores(net, x, 32, scale=32, grid=1, flips=False), plain)
    np.testing.assert_array_equal(evaluation.multi_crop_scores(net, x, 32, scale=32, grid=3, flips=False), plain)
    np.testing.assert_allclose(evaluation.dense_scores(net, x), plain, rtol=1e-5, atol=1e-6)
    raw = _images(8, 28)  # at a test scale Q above the training size: the centre crop, as training tests
    centre = data.resize_bilinear(raw, 40)[:, :, 4:36, 4:36]
    np.testing.assert_allclose(evaluation.class_scores(net, raw, "plain", size=32, scales=[40]),
                               _by_hand(net, centre), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(evaluation.plain_scores(net, raw, 32, scale=40),
                                  evaluation.multi_crop_scores(net, raw, 32, scale=40, grid=1, flips=False))


def test_evaluate_over_a_loader_agrees_with_plain_accuracy(net):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    images[:, :, 14:] //= 3  # asymmetric, so flips change scores
    pair = (images, rng.integers(0, 10, 40))
    at_32 = data.DataLoader(pair, 16, resize=32)
    raw = data.DataLoader(pair, 16)
    expected = train.evaluate_accuracy(net, at_32)
    assert evaluation.evaluate(net, at_32) == expected
    assert evaluation.evaluate(net, raw, size=32) == expected  # rescaled from 28 on the way
    assert evaluation.evaluate(net, raw, "multi-crop", size=32, scales=[32], grid=1, flips=False) == expected
    predicted, true = evaluation.predict(net, raw, "multi-crop", size=32, scales=[40, 48])
    assert predicted.shape == true.shape == (40,) and predicted.dtype.kind == "i"
    assert evaluation.evaluate(net, raw, "multi-crop", size=32, scales=[40, 48]) == (predicted == true).mean()
    by_batch = [evaluation.class_scores(net, x, "dense", size=32, scales=[48]).argmax(axis=1) for x, _ in raw]
    np.testing.assert_array_equal(evaluation.predict(net, raw, "dense", size=32, scales=[48])[0],
                                  np.concatenate(by_batch))


def test_predict_and_accuracy_leave_the_mode_as_they_found_it(net):
    rng = np.random.default_rng(3)
    loader = data.DataLoader((rng.integers(0, 256, (8, 32, 32), dtype=np.uint8), rng.integers(0, 10, 8)), 4)
    for helper in (train.predict, evaluation.predict, train.evaluate_accuracy, evaluation.evaluate):
        for mode in (True, False):
            net.train(mode)
            helper(net, loader)
            assert all(m.training is mode for m in net.modules()), helper.__qualname__
    net.train()
    with nn.utils.evaluating(net):
        assert not net.training and not mv.is_grad_enabled()
    assert net.training and mv.is_grad_enabled()
    assert nn.utils.device_of(net) == "cpu" and nn.utils.device_of(nn.ReLU()) == "cpu"


def test_multi_scale_with_one_scale_is_single_scale(net):
    raw = _images(5, 28)
    for q in (32, 40):
        np.testing.assert_array_equal(evaluation.multi_scale_scores(net, raw, [q], "multi-crop", crop=32),
                                      evaluation.multi_crop_scores(net, raw, 32, scale=q))
    np.testing.assert_array_equal(evaluation.multi_scale_scores(net, raw, [48], "dense", flips=False),
                                  evaluation.dense_scores(net, raw, 48))
    both = evaluation.multi_scale_scores(net, raw, [32, 64], "dense", flips=False)
    np.testing.assert_allclose(both, (evaluation.dense_scores(net, raw, 32) + evaluation.dense_scores(net, raw, 64))
                               / 2, rtol=1e-6, atol=1e-7)


def test_dense_evaluation_averages_the_class_score_map(net):
    x = data.resize_bilinear(_images(3, 28), 64)  # five poolings: a 2x2 class-score map
    fcn = models.to_fully_convolutional(net)
    net.eval()
    with mv.no_grad():
        score_map = fcn[:-2](mv.tensor(x)).numpy().astype(np.float64)
    net.train()
    assert score_map.shape == (3, 10, 2, 2)
    z = score_map.mean(axis=(2, 3))
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(evaluation.dense_scores(net, x, fcn=fcn), expected, rtol=1e-5, atol=1e-6)


def test_flips_really_flip(net):
    """Each flipped input is its crop mirrored left to right, and flipping changes the scores."""
    seen = []
    handle = net[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].numpy().copy()))
    try:
        x = _images(2, 32)
        with_flips = evaluation.multi_crop_scores(net, x, 32, scale=36, grid=2, flips=True)
        assert len(seen) == 2 * 2 * 2
        for plain, mirrored in zip(seen[0::2], seen[1::2]):
            np.testing.assert_array_equal(mirrored, plain[:, :, :, ::-1])
            assert not np.array_equal(mirrored, plain)
        seen.clear()
        evaluation.dense_scores(net, x, flips=True)
        assert len(seen) == 2
        np.testing.assert_array_equal(seen[1], seen[0][:, :, :, ::-1])
    finally:
        handle.remove()
    without = evaluation.multi_crop_scores(net, x, 32, scale=36, grid=2, flips=False)
    mirrored = evaluation.multi_crop_scores(net, x[:, :, :, ::-1], 32, scale=36, grid=2, flips=False)
    assert not np.allclose(without, mirrored, atol=1e-5)
    np.testing.assert_allclose(with_flips, (without + mirrored) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode, scales", [("plain", None), ("dense", None), ("dense", [32, 48]),
                                          ("multi-crop", None), ("multi-crop", [32, 40])])
def test_scores_are_float32_probabilities_and_keep_the_nets_mode(net, mode, scales):
    for images in (_images(4, 28), mv.tensor(_images(4, 28)), _images(4, 28).astype(np.float64)):
        scores = evaluation.class_scores(net, images, mode, size=32, scales=scales)
        assert scores.shape == (4, 10) and scores.dtype == np.float32
        np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)
        assert net.training
    net.eval()
    evaluation.class_scores(net, _images(2, 28), mode, size=32, scales=scales)
    assert not net.training and all(not m.training for m in net.modules())
    net.train()


def test_mistakes_are_named(net):
    x = _images(2, 28)
    with pytest.raises(ValueError, match="several scales need 'dense' or 'multi-crop'"):
        evaluation.class_scores(net, x, "plain", size=32, scales=[40, 48])
    with pytest.raises(ValueError, match="mode must be one of plain, dense, multi-crop"):
        evaluation.class_scores(net, x, "ten-crop", size=32)
    with pytest.raises(ValueError, match="a crop of 32 does not fit in 28"):
        evaluation.multi_crop_scores(net, x, 32, scale=28)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        evaluation.plain_scores(net, x[:, 0])
    with pytest.raises(ValueError, match="mode must be one of"):
        evaluation.evaluate(net, [], "ten-crop")


def test_on_a_device_the_scores_stay_there(net, cuda_device):
    """On the GPU path (the strict CuPy stand-in, or a card) every mode computes on the device, with no copy
    back to the host and no synchronization, and gives the CPU's scores."""
    on_cpu = {mode: evaluation.class_scores(net, _images(3, 28), mode, size=32, scales=scales)
              for mode, scales in (("plain", None), ("dense", [32, 48]), ("multi-crop", [32, 40]))}
    gpu_net = models.initialize(_tiny_vgg().to(cuda_device.device), (1, 1, 32, 32), device=cuda_device.device)
    gpu_net.load_state_dict(net.state_dict())
    x = backend.to_device(_images(3, 28), cuda_device.device)
    for mode, expected in on_cpu.items():
        if cuda_device.stats is not None:
            cuda_device.stats.update(device_to_host=0, sync=0)
        scores = evaluation.class_scores(gpu_net, x, mode, size=32, scales=None if mode == "plain" else
                                         ([32, 48] if mode == "dense" else [32, 40]))
        if cuda_device.stats is not None:
            assert cuda_device.stats["device_to_host"] == 0 and cuda_device.stats["sync"] == 0, mode
        assert backend.device_of(scores) == "cuda:0" and scores.dtype == np.float32
        np.testing.assert_allclose(backend.to_numpy(scores), expected, rtol=1e-4, atol=1e-5)


@pytest.fixture
def small_test_split(monkeypatch):
    """The first 300 test images stand for the 10,000, so that a run's training and its evaluations take
    seconds."""
    load = data.load_fashion_mnist

    def first_300(split="train", root=None, download=True):
        images, labels = load(split, root, download)
        return (images[:300], labels[:300]) if split == "test" else (images, labels)

    monkeypatch.setattr(data.fashion_mnist, "load_fashion_mnist", first_300)  # as the loaders call it
    monkeypatch.setattr(data, "load_fashion_mnist", first_300)  # as the commands call it


@needs_data
def test_the_evaluate_command_multi_crop_dense_and_scales(tmp_path, capsys, small_test_split):
    out = tmp_path / "run"
    assert cli.main(["train", "--ratio", "16", "--train-limit", "512", "--limit-batches", "4", "--batch-size", "64",
                     "--epochs", "1", "--out", str(out), "--no-progress", "--data", data.DEBIAN_DIR]) == 0
    capsys.readouterr()
    state = mv.load(out / train.CHECKPOINT)
    net = cli.build_model(state["config"], "cpu")
    net.load_state_dict(state["model"])
    test = data.DataLoader(data.load_fashion_mnist("test", data.DEBIAN_DIR), 100)

    def accuracy_line(*options):
        assert cli.main(["evaluate", str(out), "--data", data.DEBIAN_DIR, *options]) == 0
        text = capsys.readouterr().out
        assert "ankle boot" in text and (out / "confusion.png").exists()
        line = text.splitlines()[0]
        assert line.startswith("test accuracy ") and " on 300 images (1 epochs of d2l" in line
        return line, float(line.split()[2])

    line, plain = accuracy_line()
    assert plain == round(evaluation.evaluate(net, test, size=32), 4) and "crop" not in line
    line, value = accuracy_line("--multi-crop")
    assert "multi-crop 3x3 crops at 37 with flips" in line
    assert value == round(evaluation.evaluate(net, test, "multi-crop", size=32), 4)
    line, value = accuracy_line("--scales", "32", "40", "48")
    assert "dense at 32 40 48 with flips" in line
    assert value == round(evaluation.evaluate(net, test, "dense", size=32, scales=[32, 40, 48]), 4)
    line, value = accuracy_line("--multi-crop", "--scales", "32", "40", "--grid", "2", "--no-flip")
    assert "multi-crop 2x2 crops at 32 40" in line and "flips" not in line
    assert value == round(evaluation.evaluate(net, test, "multi-crop", size=32, scales=[32, 40], grid=2,
                                              flips=False), 4)
    line, value = accuracy_line("--dense")
    assert "dense at 32 with flips" in line
    line, value = accuracy_line("--dense", "--no-flip")
    assert value == plain  # the fully-convolutional net at the training size is the net

    for mistake, expected in [(["--scales", "16"], "argument --scales: each must be an integer >= 32 with --arch "
                                                   "d2l (its 5 max-poolings"),
                              (["--scales", "0"], "argument --scales: must be an integer >= 1, got 0"),
                              (["--grid", "0"], "argument --grid: must be an integer >= 1, got 0"),
                              (["--multi-crop", "--dense"], "argument --dense: not allowed with argument "
                                                            "--multi-crop")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(["evaluate", str(out), *mistake])
        assert stop.value.code == 2
        assert expected in capsys.readouterr().err


@needs_data
def test_multi_crop_scales_below_the_training_size_are_refused(tmp_path, capsys, small_test_split):
    out = tmp_path / "run"
    assert cli.main(["train", "--ratio", "16", "--resize", "40", "--train-limit", "64", "--limit-batches", "1",
                     "--batch-size", "64", "--epochs", "1", "--out", str(out), "--no-progress", "--data",
                     data.DEBIAN_DIR]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(["evaluate", str(out), "--multi-crop", "--scales", "48", "36"])
    assert stop.value.code == 2
    assert ("argument --scales: with --multi-crop each must be an integer >= 40 (the crops are the network's input, "
            "40x40), got 36") in capsys.readouterr().err
    assert cli.main(["evaluate", str(out), "--data", data.DEBIAN_DIR, "--scales", "36", "--no-flip"]) == 0
    assert "dense at 36" in capsys.readouterr().out  # dense evaluation may go below the training size
